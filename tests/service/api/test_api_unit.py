"""The HTTP API's logic on the fake models: the request and response shapes, citations, errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.settings import Settings
from fastapi.testclient import TestClient

from tests.conftest import FAKE_ANSWERS, FAKE_CORPUS
from tests.fakes import FixedSpanReader, HashingEmbedder
from tests.service.api.conftest import API_KEY, LOOPBACK_URL, wait_ready


@pytest.fixture
def fake_client(fake_pipeline: QAPipeline) -> Iterator[TestClient]:
    with TestClient(create_app(pipeline=fake_pipeline), base_url=LOOPBACK_URL) as client:
        wait_ready(client)
        yield client


def test_ask_returns_cited_verbatim_answers(fake_client: TestClient) -> None:
    body = fake_client.post("/v1/ask", json={"question": "How much is the water levy?"}).json()
    answer = body["answers"][0]
    assert body["no_answer"] is False and answer["text"] == "3 percent" and answer["doc_id"] == "water.txt"
    span = fake_client.get(answer["citation"]["url"]).json()["span"]
    assert span["text"] == "3 percent" and (span["start"], span["end"]) == (answer["start"], answer["end"])
    assert answer["citation"]["sentence"]["text"].startswith("The Lisbon water levy")


def test_ask_without_an_answer_says_so(fake_client: TestClient) -> None:
    body = fake_client.post("/v1/ask", json={"question": "Who chairs the harbour board?"}).json()
    assert body["no_answer"] is True and body["answers"] == [] and body["passages"]


def test_documents_are_listed_and_counted(fake_client: TestClient) -> None:
    listing = fake_client.get("/v1/documents").json()
    assert {d["id"] for d in listing["documents"]} == {"water.txt", "roads.txt"} and listing["total"] == 2
    ready = fake_client.get("/readyz").json()
    assert ready["documents"] == 2 and ready["index_version"] == listing["index_version"]
    missing = fake_client.get("/v1/documents/nothing.txt")
    assert missing.status_code == 404 and missing.json()["error"]["code"]


@pytest.mark.parametrize(
    "body",
    [{"question": ""}, {"question": "x", "top_k": 0}, {"question": "x", "min_answer_probability": 2}, {}],
)
def test_bad_requests_get_a_json_4xx(fake_client: TestClient, body: dict[str, object]) -> None:
    response = fake_client.post("/v1/ask", json=body)
    assert response.status_code == 422 and response.json()["error"]["message"]


def test_a_folder_indexed_into_its_own_data_directory_guards_its_documents(tmp_path: Path) -> None:
    """The index holds `mine/`, not the configured corpus folder (`citeqa index my-policies` into its own
    CITEQA_DATA_DIR, then `citeqa serve`): an upload named like one of its files was taken as a new
    document replacing it, and deleting that upload then kept the folder's file out of every build."""
    mine = tmp_path / "mine"
    mine.mkdir()
    for name, text in FAKE_CORPUS.items():
        (mine / name).write_text(text, encoding="utf-8")
    settings = Settings(
        data_dir=tmp_path / "data",
        corpus_dir=tmp_path / "configured",
        reader_path=tmp_path / "no-reader",
        device="cpu",
        api_key=API_KEY,
    )
    pipeline = QAPipeline(settings, embedder=HashingEmbedder(), reader=FixedSpanReader(FAKE_ANSWERS))
    pipeline.index_folder(mine)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(create_app(pipeline=pipeline), base_url=LOOPBACK_URL) as client:
        wait_ready(client)
        files = {"file": ("water.txt", b"Bicycle Policy\nRide safely.", "text/plain")}
        refused = client.post("/v1/documents", headers=auth, files=files)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "document_in_corpus"
        assert client.delete("/v1/documents/water.txt", headers=auth).status_code == 200
    report = pipeline.index_folder(mine)
    assert report.withheld == ["water.txt"] and not pipeline.has_document("water.txt")
    restored = pipeline.index_folder(mine, restore_deleted=True)
    assert restored.added == ["water.txt"] and restored.withheld == []
    assert pipeline.document("water.txt")[0].text == FAKE_CORPUS["water.txt"]
    assert pipeline.index_folder(mine).withheld == []  # and it stays


def test_chat_takes_a_long_conversation(fake_client: TestClient) -> None:
    """Chat tools send the whole conversation each turn: past 64 KiB (the JSON body cap) every later turn
    was a 413. Chat has a cap of its own (1 MiB); the answer is to the last user message."""
    turn = [
        {"role": "user", "content": "What about the roads? " * 5},
        {"role": "assistant", "content": "**40 euros a day** [1]\n\n**Sources**\n[1] roads.txt " * 4},
    ]
    messages = turn * 600 + [{"role": "user", "content": "How much is the water levy?"}]
    body = {"model": "citeqa", "messages": messages}
    assert 200_000 < len(json.dumps(body)) < 1024 * 1024
    reply = fake_client.post("/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text[:200]
    assert reply.json()["citations"][0]["quote"] == "3 percent"
    too_big = fake_client.post("/v1/chat/completions", json={**body, "messages": messages * 5})
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    assert b'{"error":{"code":"payload_too_large",' in too_big.content  # as compact as every other error
    asked = fake_client.post("/v1/ask", json={"question": "water levy", "padding": "x" * 70_000})
    assert asked.status_code == 413  # other JSON bodies keep their 64 KiB cap


def test_unknown_or_empty_document_ids_are_errors(fake_client: TestClient) -> None:
    """An id not in the index answered "no answer found", as if the document had been read."""
    asked = fake_client.post("/v1/ask", json={"question": "water levy?", "document_ids": ["water.txt"]})
    assert asked.status_code == 200 and asked.json()["answers"][0]["text"] == "3 percent"
    unknown = fake_client.post(
        "/v1/ask", json={"question": "water levy?", "document_ids": ["water.txt", "nope.txt", "x" * 5000]}
    )
    error = unknown.json()["error"]
    assert unknown.status_code == 404 and error["code"] == "document_not_found"
    assert "'nope.txt'" in error["message"] and "(2 of 3)" in error["message"] and len(error["message"]) < 300
    empty = fake_client.post("/v1/ask", json={"question": "water levy?", "document_ids": []})
    assert empty.status_code == 422


@pytest.mark.parametrize("top_k", [21, 51, 1000, 0, "many"])
def test_every_bad_top_k_is_the_same_error(fake_client: TestClient, top_k: object) -> None:
    """21-50 was `invalid_top_k` (the configured limit), 51 up `invalid_request` (the schema's cap)."""
    asked = fake_client.post("/v1/ask", json={"question": "water levy?", "top_k": top_k})
    searched = fake_client.get("/v1/search", params={"q": "water levy", "top_k": str(top_k)})
    for response in (asked, searched):
        error = response.json()["error"]
        assert response.status_code == 422 and error["code"] == "invalid_top_k", error
        assert error["message"].startswith("top_k must be between 1 and 20")


def test_span_and_id_errors_say_what_is_wrong_briefly(fake_client: TestClient) -> None:
    backwards = fake_client.get("/v1/documents/water.txt", params={"start": 8, "end": 5})
    assert backwards.status_code == 422 and "ends before it starts" in backwards.json()["error"]["message"]
    outside = fake_client.get("/v1/documents/water.txt", params={"start": 5, "end": 10**6})
    assert outside.status_code == 422 and "not inside the document" in outside.json()["error"]["message"]
    long_id = fake_client.get("/v1/documents/" + "x" * 5000 + ".txt")
    assert long_id.status_code == 404 and len(long_id.json()["error"]["message"]) < 400  # echoed whole
    # A citation's link after its document went: which version was looked in, and why it may be missing.
    gone = fake_client.get("/v1/documents/gone.txt", params={"start": 0, "end": 4}).json()["error"]["message"]
    assert "in index version v-" in gone and "deleted since it was cited" in gone
    paths = fake_client.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/ask", "post"), ("/v1/search", "get"), ("/v1/chat/completions", "post")):
        assert "429" in paths[path][method]["responses"], path  # rate limiting, when it is on


@pytest.mark.parametrize("field", ["stream", "best_guess"])
def test_chat_flags_are_json_booleans(fake_client: TestClient, field: str) -> None:
    messages = [{"role": "user", "content": "How much is the water levy?"}]
    response = fake_client.post("/v1/chat/completions", json={"messages": messages, field: "yes"})
    assert response.status_code == 422 and field in response.json()["error"]["message"]


def test_readiness_follows_an_index_built_by_another_process(tmp_path: Path) -> None:
    """/readyz said 503 "no index loaded" until some query loaded the index `citeqa index` had built: a load
    balancer, asking only /readyz, never sent that query."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in FAKE_CORPUS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = Settings(data_dir=tmp_path / "data", corpus_dir=corpus, reader_path=tmp_path / "no-reader")

    def pipeline() -> QAPipeline:
        return QAPipeline(settings, embedder=HashingEmbedder(), reader=FixedSpanReader(FAKE_ANSWERS))

    with TestClient(create_app(pipeline=pipeline()), base_url=LOOPBACK_URL) as client:
        for _ in range(100):  # the models load in the background
            body = client.get("/readyz").json()
            if "loading" not in body["message"]:
                break
        assert body["ready"] is False and "no index" in body["message"]
        pipeline().index_folder(corpus)  # another process: `citeqa index`
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["documents"] == 2


def test_readiness_is_bounded_and_never_holds_up_other_requests(
    fake_pipeline: QAPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database down: /readyz queried the store on the event loop and waited out the pool's 30 s, and
    /healthz and /metrics waited behind it."""
    import threading
    import time

    with TestClient(create_app(pipeline=fake_pipeline), base_url=LOOPBACK_URL) as client:
        wait_ready(client)
        monkeypatch.setattr(fake_pipeline.store, "live_version", lambda: time.sleep(6))
        answers: dict[str, tuple[int, float]] = {}

        def ask_ready() -> None:
            started = time.perf_counter()
            answers["ready"] = (client.get("/readyz").status_code, time.perf_counter() - started)

        checking = threading.Thread(target=ask_ready)
        checking.start()
        time.sleep(0.3)
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200
        assert time.perf_counter() - started < 1.0
        checking.join()
        status, seconds = answers["ready"]
        assert status == 503 and seconds < 4.0


def test_answers_from_the_cache_leave_the_read_and_retrieve_histograms_alone() -> None:
    """A cache hit's retrieve and read of 0 ms were observed: with the cache warm, their p50 read 0."""
    from citeqa.service.api.internal.metrics import Metrics

    metrics = Metrics()
    metrics.observe_stages({"retrieve": 4.0, "read": 30.0, "total": 35.0})
    metrics.observe_stages({"cache": 0.1, "retrieve": 0.0, "read": 0.0, "total": 0.1})
    text = metrics.render().decode()
    for stage, count in (("read", 1), ("retrieve", 1), ("cache", 1), ("total", 2)):
        assert f'citeqa_stage_duration_seconds_count{{stage="{stage}"}} {count}.0' in text


def test_metrics_label_refused_and_fixed_routes_and_give_the_index_size(fake_client: TestClient) -> None:
    """A body over the limit (refused before routing) and /openapi.json were counted as "unmatched", and
    nothing said how large the loaded index is."""
    assert fake_client.post("/v1/ask", json={"question": "x" * 70_000}).status_code == 413
    assert fake_client.get("/openapi.json").status_code == 200
    text = fake_client.get("/metrics").text
    assert 'citeqa_http_requests_total{method="POST",route="/v1/ask",status="413"} 1.0' in text
    assert 'route="/openapi.json",status="200"' in text and 'route="unmatched"' not in text
    assert "citeqa_index_documents 2.0" in text and re.search(r"citeqa_index_chunks [1-9]", text)
