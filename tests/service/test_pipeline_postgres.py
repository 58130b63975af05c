"""The pipeline on the Postgres store: what only a shared store must get right."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from citeqa.indexing.embedding import Embedder
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.reader import Reader
from citeqa.service.settings import REPO_ROOT, Settings

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SEED_DOC_ID = "000_d31740c80f9a4c4e.txt"
HARBOR = (
    b"Harbor Authority Records Policy\n\n"
    b"Visitor logs at the harbor gate must be kept for exactly 45 days before they are destroyed.\n"
)


def test_index_folder_keeps_uploads_made_through_another_replica(
    database_url: str, tmp_path: Path, embedder: Embedder, reader: Reader
) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(REPO_ROOT / "seeds", corpus)

    def replica(name: str) -> QAPipeline:
        settings = Settings(
            data_dir=tmp_path / name, corpus_dir=corpus, device="cpu", database_url=database_url
        )  # type: ignore[arg-type]
        return QAPipeline(settings, embedder=embedder, reader=reader)

    indexer, other = replica("indexer"), replica("other")
    indexer.index_folder()
    other.reload()
    other.upload_document("harbor.txt", HARBOR)
    # The upload lives in the database (and in `other`'s data dir only): re-indexing the folder keeps it.
    report = indexer.index_folder()
    assert report.removed == [] and report.unchanged == [SEED_DOC_ID, "harbor.txt"]
    answer = indexer.ask("How long must visitor logs at the harbor gate be kept?").answers[0]
    assert "45 days" in answer.text and answer.doc_id == "harbor.txt"  # "exactly 45 days" is as right
    # A file taken out of the folder still leaves the index.
    (corpus / SEED_DOC_ID).unlink()
    (corpus / "ferry.txt").write_text("Ferry notice\n\nThe ferry leaves at noon.\n", encoding="utf-8")
    report = indexer.index_folder()
    assert report.removed == [SEED_DOC_ID] and report.added == ["ferry.txt"]
    assert sorted(indexer.index.snapshot.manifest.documents) == ["ferry.txt", "harbor.txt"]


def test_an_unreachable_database_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    from citeqa.indexing.errors import StoreUnavailableError
    from citeqa.service.api.internal.errors import citeqa_status

    settings = Settings(data_dir=tmp_path, database_url="postgresql://citeqa:s3cret@127.0.0.1:1/citeqa")  # type: ignore[arg-type]
    pipeline = QAPipeline(settings)  # cheap: models load in warm_up, the database on first use
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:1/citeqa") as caught:
        pipeline.require_index()
    assert "s3cret" not in str(caught.value)
    assert citeqa_status(caught.value) == (503, "store_unavailable")


def test_a_database_down_answers_within_seconds_and_back_up_at_once(tmp_path: Path) -> None:
    """A database down: every query waited out psycopg's 30 s; back up, the pool reconnected in the
    background with a growing back-off (a replica's first /readyz took 21.8 s). A server of its own here,
    stopped and started again (the shared one serves other tests)."""
    import tempfile
    import time

    from citeqa.indexing.errors import StoreUnavailableError
    from citeqa.indexing.store import pgserver
    from citeqa.indexing.store.postgres import POOL_WAIT_S, PostgresStore

    base = Path(tempfile.mkdtemp(prefix="citeqa-pg-"))
    base.chmod(0o755)  # the server runs as `postgres`
    folder = base / "postgres"
    url = pgserver.start(folder, durable=False)
    try:
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        store = PostgresStore(url, tmp_path / "bm25")
        assert store.live_version() is None
        pgserver.stop(folder)
        started = time.perf_counter()
        with pytest.raises(StoreUnavailableError):
            store.deleted_ids()  # a query every time (live_version is polled at most every 0.25 s)
        assert time.perf_counter() - started < POOL_WAIT_S + 2
        pgserver.start(folder, port=port, durable=False)
        started = time.perf_counter()
        assert store.deleted_ids() == set()
        assert time.perf_counter() - started < 2.0
        store.close()
    finally:
        pgserver.stop(folder)
        shutil.rmtree(base, ignore_errors=True)


def test_a_replica_refuses_an_upload_named_like_a_folder_document_indexed_elsewhere(
    database_url: str, tmp_path: Path, embedder: Embedder, reader: Reader
) -> None:
    """The folder was indexed through another data directory than the replica's: the replica's check read
    only its own record of folders, and the upload replaced the folder's document (201, replaced)."""
    from citeqa.service.api import create_app
    from fastapi.testclient import TestClient

    from tests.service.api.conftest import API_KEY, LOOPBACK_URL, wait_ready

    corpus = tmp_path / "corpus"
    shutil.copytree(REPO_ROOT / "seeds", corpus)
    (corpus / "harbor.txt").write_bytes(HARBOR)

    def replica(name: str) -> QAPipeline:
        settings = Settings(
            data_dir=tmp_path / name, device="cpu", database_url=database_url, api_key=API_KEY
        )  # type: ignore[arg-type]
        return QAPipeline(settings, embedder=embedder, reader=reader)

    replica("indexer").index_folder(corpus)
    with TestClient(create_app(pipeline=replica("serving")), base_url=LOOPBACK_URL) as client:
        wait_ready(client)
        files = {"file": ("harbor.txt", b"Not the harbor policy.", "text/plain")}
        refused = client.post("/v1/documents", headers={"Authorization": f"Bearer {API_KEY}"}, files=files)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "document_in_corpus"
        assert "45 days" in client.get("/v1/documents/harbor.txt").json()["text"]


def test_an_upload_says_what_its_own_write_did_on_a_shared_store(
    database_url: str, tmp_path: Path, embedder: Embedder, reader: Reader
) -> None:
    """Two replicas uploading one name: `replaced` and `index_version` were read from the replica's view
    (up to 0.25 s old), so the second was told it replaced nothing, with the other's version."""
    from citeqa.service.api import create_app
    from fastapi.testclient import TestClient

    from tests.service.api.conftest import API_KEY, LOOPBACK_URL, wait_ready

    def client(name: str) -> TestClient:
        settings = Settings(
            data_dir=tmp_path / name, device="cpu", database_url=database_url, api_key=API_KEY
        )  # type: ignore[arg-type]
        return TestClient(
            create_app(pipeline=QAPipeline(settings, embedder=embedder, reader=reader)), base_url=LOOPBACK_URL
        )

    QAPipeline(
        Settings(data_dir=tmp_path / "i", device="cpu", database_url=database_url),
        embedder=embedder,
        reader=reader,
    ).index_folder(REPO_ROOT / "seeds")  # type: ignore[arg-type]
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with client("a") as a, client("b") as b:
        wait_ready(a), wait_ready(b)
        b.get("/v1/documents")  # b's view of the store is fresh now, and stays so for 0.25 s
        first = a.post(
            "/v1/documents", headers=auth, files={"file": ("same.txt", b"Version A.", "text/plain")}
        )
        second = b.post(
            "/v1/documents", headers=auth, files={"file": ("same.txt", b"Version B.", "text/plain")}
        )
    assert first.status_code == second.status_code == 201
    assert first.json()["replaced"] is False and second.json()["replaced"] is True
    versions = [int(r.json()["index_version"].rsplit("-", 1)[1]) for r in (first, second)]
    assert versions[1] > versions[0]
