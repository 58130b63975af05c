"""Uploads and deletes, from two writers at once, while 10 clients query a real server without pause.

No query may fail, a document never comes back once its delete has returned, and after the last
update the index, the document list and the kept uploads hold exactly the expected documents.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from citeqa.eval.bench.live_server import serve_app
from citeqa.indexing.store import IndexSnapshot
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline

from tests.service.api.conftest import API_KEY

pytestmark = pytest.mark.e2e

SEED_DOC_ID = "000_d31740c80f9a4c4e.txt"
SEED_QUESTION = "Which city was the first Made in China 2025 pilot demonstration city?"
READERS = 10
WRITERS = 2
ROUNDS = 3
NAMES = ["amber", "cobalt", "crimson", "jade", "ochre", "violet", "indigo", "saffron"]


def doc_id(writer: int, round_number: int) -> str:
    return f"notice-w{writer}-r{round_number}.txt"


def nonce(writer: int, round_number: int) -> str:
    return NAMES[writer * ROUNDS + round_number]


def doc_text(writer: int, round_number: int) -> str:
    word = nonce(writer, round_number)
    hour = 5 + writer * ROUNDS + round_number
    return (
        f"Harbor Notice {word.title()}\n\n"
        f"The {word} ferry leaves the harbor at {hour} o'clock every weekday. "
        f"Tickets for the {word} ferry are sold at the north gate.\n"
    )


def question(writer: int, round_number: int) -> str:
    return f"When does the {nonce(writer, round_number)} ferry leave the harbor?"


@dataclass
class Observed:
    """What a query saw: when it started, its status, and every document it cited."""

    started: float
    status: int
    cited: set[str]
    detail: str = ""


@dataclass
class Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    queries: list[Observed] = field(default_factory=list)
    deleted_at: dict[str, float] = field(default_factory=dict)  # doc id -> when its delete returned
    write_errors: list[str] = field(default_factory=list)


def cited_docs(body: dict[str, object]) -> set[str]:
    cited = {str(p["doc_id"]) for p in body.get("passages", [])}  # type: ignore[attr-defined]
    cited |= {str(a["doc_id"]) for a in body.get("answers", [])}  # type: ignore[attr-defined]
    return cited


def reader(url: str, number: int, log: Log, stop: threading.Event) -> None:
    questions = [SEED_QUESTION] + [question(w, r) for w in range(WRITERS) for r in range(ROUNDS)]
    turn = number
    with httpx.Client(base_url=url, timeout=120) as http:
        while not stop.is_set():
            text = questions[turn % len(questions)]
            turn += 1
            started = time.monotonic()
            try:
                if turn % 3:
                    response = http.post("/v1/ask", json={"question": text})
                else:
                    response = http.get("/v1/search", params={"q": text})
            except httpx.HTTPError as exc:
                observed = Observed(started, 0, set(), f"{type(exc).__name__}: {exc}")
            else:
                ok = response.status_code == 200
                observed = Observed(
                    started,
                    response.status_code,
                    cited_docs(response.json()) if ok else set(),
                    "" if ok else response.text[:300],
                )
            with log.lock:
                log.queries.append(observed)


def writer(url: str, number: int, log: Log) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=url, timeout=300, headers=auth) as http:
        for round_number in range(ROUNDS):
            name = doc_id(number, round_number)
            files = {"file": (name, doc_text(number, round_number).encode())}
            created = http.post("/v1/documents", files=files)
            if created.status_code != 201:
                log.write_errors.append(f"upload {name}: {created.status_code} {created.text[:200]}")
            if round_number:
                old = doc_id(number, round_number - 1)
                deleted = http.delete(f"/v1/documents/{old}")
                if deleted.status_code != 200:
                    log.write_errors.append(f"delete {old}: {deleted.status_code} {deleted.text[:200]}")
                with log.lock:
                    log.deleted_at[old] = time.monotonic()


def test_updates_under_query_load_lose_nothing(make_pipeline: Callable[..., QAPipeline]) -> None:
    pipeline = make_pipeline(api_key=API_KEY)
    log = Log()
    stop = threading.Event()
    with serve_app(create_app(pipeline=pipeline)) as url:
        readers = [threading.Thread(target=reader, args=(url, n, log, stop)) for n in range(READERS)]
        writers = [threading.Thread(target=writer, args=(url, n, log)) for n in range(WRITERS)]
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join(timeout=600)
        time.sleep(1.0)  # keep querying the final index for a moment
        stop.set()
        for thread in readers:
            thread.join(timeout=300)

        expected = {SEED_DOC_ID} | {doc_id(w, ROUNDS - 1) for w in range(WRITERS)}
        deleted = {doc_id(w, r) for w in range(WRITERS) for r in range(ROUNDS - 1)}
        listed = httpx.get(f"{url}/v1/documents", params={"limit": 200}).json()
        final_answers = {
            (w, r): httpx.post(f"{url}/v1/ask", json={"question": question(w, r)}, timeout=120).json()
            for w in range(WRITERS)
            for r in range(ROUNDS)
        }

    assert log.write_errors == []
    failed = [q for q in log.queries if q.status != 200]
    assert failed == [], failed[:3]
    assert len(log.queries) >= READERS * 3
    # A document never reappears in a query that started after its delete returned.
    stale = [(q, doc) for q in log.queries for doc in q.cited & deleted if q.started > log.deleted_at[doc]]
    assert stale == [], stale[:3]
    # Exactly the expected documents: in the API, in the index on disk and in the kept uploads.
    assert {d["id"] for d in listed["documents"]} == expected
    snapshot = IndexSnapshot.open(pipeline.index_dir)
    try:
        assert set(snapshot.manifest.documents) == expected
    finally:
        snapshot.close()
    # Uploads are kept in the data directory (so that re-indexing keeps them); the corpus is untouched.
    uploads = pipeline.sources().uploads_dir
    assert {p.name for p in uploads.iterdir() if not p.name.startswith(".")} == expected - {SEED_DOC_ID}
    assert [p.name for p in pipeline.settings.corpus_dir.iterdir()] == [SEED_DOC_ID]
    for (w, r), body in final_answers.items():
        assert not cited_docs(body) & deleted
        if r == ROUNDS - 1:  # the surviving document answers its own question
            assert body["answers"] and body["answers"][0]["doc_id"] == doc_id(w, r)
            assert f"{5 + w * ROUNDS + r} o'clock" in body["answers"][0]["text"]
