"""Two real `citeqa serve` replicas on one real PostgreSQL: what one is told, the other knows within 2 s.

The replicas are separate processes with separate data directories (each its own BM25 folder); the only
thing they share is the database. Replica A is started with the writer's crash hook armed for one
document id, so that uploading that document SIGKILLs A inside its open database transaction.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from citeqa.eval.bench.live_server import free_port, wait_until_ready
from citeqa.indexing.embedding import Embedder
from citeqa.indexing.store import CRASH_AT_ENV, pgserver
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.reader import Reader
from citeqa.service.settings import REPO_ROOT, Settings

from tests.conftest import child_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

API_KEY = "replica-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PROPAGATION_S = 2.0
CRASH_DOC = "crash-mid-upload.txt"


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]


@dataclass
class Cluster:
    database_url: str
    a: Replica
    b: Replica
    root: Path  # a/ and b/: the replicas' data directories; corpus/: the indexed folder


def _start_replica(database_url: str, data_dir: Path, crash_doc: str | None) -> Replica:
    port = free_port()
    env = child_env(CITEQA_DATABASE_URL=database_url, CITEQA_DATA_DIR=str(data_dir), CITEQA_API_KEY=API_KEY)
    if crash_doc:
        env[CRASH_AT_ENV] = f"pg_before_commit:{crash_doc}"
    command = [
        sys.executable,
        "-m",
        "citeqa.service.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    process = subprocess.Popen(
        command, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return Replica(f"http://127.0.0.1:{port}", process)


@pytest.fixture(scope="module")
def cluster(
    postgres_server: str, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, reader: Reader
) -> Iterator[Cluster]:
    name = f"replicas_{uuid.uuid4().hex[:8]}"
    pgserver.create_database(postgres_server, name)
    database_url = postgres_server.rsplit("/", 1)[0] + f"/{name}"
    root = tmp_path_factory.mktemp("replicas")
    shutil.copytree(REPO_ROOT / "seeds", root / "corpus")
    settings = Settings(
        data_dir=root / "indexer", corpus_dir=root / "corpus", device="cpu", database_url=database_url
    )  # type: ignore[arg-type]
    QAPipeline(settings, embedder=embedder, reader=reader).index_folder()
    a = _start_replica(database_url, root / "a", crash_doc=CRASH_DOC)
    b = _start_replica(database_url, root / "b", crash_doc=None)
    try:
        for replica in (a, b):
            wait_until_ready(replica.url, 240, process=replica.process)  # type: ignore[arg-type]
        yield Cluster(database_url, a, b, root)
    finally:
        for replica in (a, b):
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in (a, b):
            try:
                replica.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                replica.process.kill()


def _upload(replica: Replica, doc_id: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{replica.url}/v1/documents", files={"file": (doc_id, text.encode())}, headers=AUTH, timeout=60
    )


def _search_doc_ids(replica: Replica, query: str) -> set[str]:
    response = httpx.get(f"{replica.url}/v1/search", params={"q": query, "top_k": 5}, timeout=30)
    assert response.status_code == 200, response.text
    return {p["doc_id"] for p in response.json()["passages"]}


def _seconds_until(condition: Callable[[], bool], limit: float = 10.0) -> float:
    """Time until `condition()` holds (polled every 50 ms); the caller asserts on the figure."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            return float("inf")
        time.sleep(0.05)
    return time.monotonic() - started


def _listed(replica: Replica) -> set[str]:
    response = httpx.get(f"{replica.url}/v1/documents", params={"limit": 200}, timeout=30)
    return {d["id"] for d in response.json()["documents"]}


def _database(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def test_upload_through_a_is_answerable_through_b_and_a_delete_through_b_reaches_a(cluster: Cluster) -> None:
    text = (
        "Harbor Authority Records Policy\n\n"
        "Visitor logs at the harbor gate must be kept for exactly 45 days before they are destroyed.\n"
    )
    assert _upload(cluster.a, "harbor.txt", text).status_code == 201
    waited = _seconds_until(lambda: "harbor.txt" in _search_doc_ids(cluster.b, "harbor gate visitor logs"))
    print(f"upload through A found through B after {waited:.2f} s")  # shown by pytest -rP
    assert waited <= PROPAGATION_S
    answer = httpx.post(
        f"{cluster.b.url}/v1/ask", json={"question": "How long must visitor logs at the harbor gate be kept?"}
    ).json()
    assert answer["answers"][0]["text"] == "45 days" and answer["answers"][0]["doc_id"] == "harbor.txt"

    assert (
        httpx.delete(f"{cluster.b.url}/v1/documents/harbor.txt", headers=AUTH, timeout=60).status_code == 200
    )
    waited = _seconds_until(
        lambda: "harbor.txt" not in _search_doc_ids(cluster.a, "harbor gate visitor logs")
    )
    print(f"delete through B gone from A after {waited:.2f} s")
    assert waited <= PROPAGATION_S
    assert httpx.get(f"{cluster.a.url}/v1/documents/harbor.txt").status_code == 404


def test_concurrent_uploads_through_both_replicas_lose_nothing(cluster: Cluster) -> None:
    names = [f"{side}-{n}.txt" for side in ("a", "b") for n in range(3)]
    results: dict[str, int] = {}

    def upload(name: str) -> None:
        replica = cluster.a if name.startswith("a-") else cluster.b
        text = f"Notice {name}\n\nThe {name.split('.')[0]} depot opens at {len(name)} o'clock on Mondays.\n"
        results[name] = _upload(replica, name, text).status_code

    threads = [threading.Thread(target=upload, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == dict.fromkeys(names, 201)
    stored = {r[0] for r in _database(cluster.database_url, "SELECT id FROM citeqa_documents")}
    assert set(names) <= stored
    for replica in (cluster.a, cluster.b):
        assert _seconds_until(lambda r=replica: set(names) <= _listed(r)) <= PROPAGATION_S  # type: ignore[misc]


def test_an_upload_through_a_deleted_through_b_stays_deleted_after_citeqa_index_in_a(
    cluster: Cluster,
) -> None:
    """The probe of issue 19: A kept the upload's file in its uploads/, so `citeqa index` run in A's data
    directory added the deleted document back ("1 added"). The store records deletions; index obeys."""
    doc_id = "sensitive-memo.txt"
    text = "Sensitive memo\n\nThe staff salary review moves to the third week of October.\n"
    assert _upload(cluster.a, doc_id, text).status_code == 201
    assert (cluster.root / "a" / "uploads" / doc_id).is_file()
    assert httpx.delete(f"{cluster.b.url}/v1/documents/{doc_id}", headers=AUTH, timeout=60).status_code == 200
    index = subprocess.run(
        [sys.executable, "-m", "citeqa.service.cli", "index", str(cluster.root / "corpus")],
        env=child_env(CITEQA_DATABASE_URL=cluster.database_url, CITEQA_DATA_DIR=str(cluster.root / "a")),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert index.returncode == 0, index.stderr[-2000:]
    assert "0 added" in index.stdout, index.stdout
    assert not (cluster.root / "a" / "uploads" / doc_id).exists()  # the stale copy is gone too
    stored = {r[0] for r in _database(cluster.database_url, "SELECT id FROM citeqa_documents")}
    assert doc_id not in stored
    for replica in (cluster.a, cluster.b):
        replica_404 = lambda r=replica: httpx.get(f"{r.url}/v1/documents/{doc_id}").status_code == 404  # noqa: E731
        assert _seconds_until(replica_404) <= PROPAGATION_S  # type: ignore[misc]


def test_sigkill_inside_the_upload_transaction_leaves_the_database_consistent(cluster: Cluster) -> None:
    """Runs last in this module: it kills replica A."""
    versions_before = _database(cluster.database_url, "SELECT max(id) FROM citeqa_versions")
    documents_before = _database(cluster.database_url, "SELECT id FROM citeqa_documents ORDER BY id")
    with pytest.raises(httpx.TransportError):
        _upload(
            cluster.a, CRASH_DOC, "Crash notice\n\nThis upload dies with its replica before it commits.\n"
        )
    assert cluster.a.process.wait(timeout=30) == -signal.SIGKILL
    # Nothing of the killed update is visible: no document, no chunk, no version; counts agree.
    assert _database(cluster.database_url, "SELECT max(id) FROM citeqa_versions") == versions_before
    assert _database(cluster.database_url, "SELECT id FROM citeqa_documents ORDER BY id") == documents_before
    [(orphans, mismatched)] = _database(
        cluster.database_url,
        "SELECT (SELECT count(*) FROM citeqa_chunks c LEFT JOIN citeqa_documents d ON d.id = c.doc_id "
        "WHERE d.id IS NULL), (SELECT count(*) FROM citeqa_documents d WHERE d.chunk_count <> "
        "(SELECT count(*) FROM citeqa_chunks c WHERE c.doc_id = d.id))",
    )
    assert orphans == 0 and mismatched == 0
    # The dead writer's lock went with its connection: B writes at once, and answers for it.
    started = time.monotonic()
    assert (
        _upload(cluster.b, "after-crash.txt", "After the crash\n\nThe ferry leaves at noon.\n").status_code
        == 201
    )
    assert time.monotonic() - started < 30
    assert "after-crash.txt" in _search_doc_ids(cluster.b, "ferry leaves noon")
