"""Shared fixtures: the real models, loaded once per test session, and pipelines over seeds/."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from citeqa.indexing.embedding import Embedder
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.reader import Reader, TransformersReader
from citeqa.service.settings import REPO_ROOT, Settings

from tests.fakes import FixedSpanReader, HashingEmbedder

SEEDS = REPO_ROOT / "seeds"


def child_env(**variables: str) -> dict[str, str]:
    """The environment of a citeqa child process: none of this shell's CITEQA_ settings, offline, one
    torch thread (children run beside the tests on a small machine), on the CPU, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        CITEQA_DEVICE="cpu",
    )
    env.update(variables)
    return env


SEED_DOC_ID = "000_d31740c80f9a4c4e.txt"
MODEL_FIXTURES = frozenset({"embedder", "reader", "exported_reader_dir", "linked_reader_dir"})


LANES = frozenset({"integration", "e2e"})  # unmarked tests are the unit lane: no model, no server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test says its lane with a mark; this only refuses a test whose mark is missing, so that the
    unit lane (`make test-fast`) can never load a real model by accident."""
    unmarked = [
        item.nodeid
        for item in items
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ()))
        and not LANES & {mark.name for mark in item.iter_markers()}
    ]
    if unmarked:
        raise pytest.UsageError(
            "these tests load the real models but are marked neither integration nor e2e: "
            + ", ".join(unmarked[:5])
        )


@pytest.fixture(scope="session")
def seed_text() -> str:
    return (SEEDS / SEED_DOC_ID).read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    model = Embedder(device="cpu")
    model.warm_up()
    return model


@pytest.fixture(scope="session")
def reader() -> Reader:
    model = TransformersReader(Settings().reader_path, device="cpu")
    model.warm_up()
    return model


def linked_reader_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of its own whose model files link to the default reader's: what a runtime converts or
    exports lands there, so the tests never depend on (or leave) files in models/."""
    folder = tmp_path_factory.mktemp("reader")
    for item in Settings().reader_path.iterdir():
        if item.is_file():
            (folder / item.name).symlink_to(item)
    return folder


@pytest.fixture(scope="session")
def exported_reader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default reader exported to ONNX (`citeqa export-reader`) in a linked folder of its own."""
    from citeqa.service.qa.onnx_reader import export_reader

    folder = linked_reader_copy(tmp_path_factory)
    export_reader(folder)
    return folder


@pytest.fixture(scope="session")
def linked_reader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default reader in a linked folder of its own, for the OpenVINO conversion kept beside it."""
    return linked_reader_copy(tmp_path_factory)


@pytest.fixture(scope="session")
def openvino_reader_dir(linked_reader_dir: Path, embedder: Embedder) -> Path:
    """The default reader's linked folder with its OpenVINO conversion kept there (and the embedder's kept
    beside its weights by the `embedder` fixture), for fresh processes that must not need torch to start:
    CITEQA_READER_PATH selects it."""
    from citeqa.service.qa.openvino_reader import OpenVinoReader

    OpenVinoReader(linked_reader_dir).warm_up()
    return linked_reader_dir


PipelineFactory = Callable[..., QAPipeline]


@pytest.fixture(scope="session")
def make_pipeline(
    tmp_path_factory: pytest.TempPathFactory, embedder: Embedder, reader: Reader
) -> PipelineFactory:
    """A fresh pipeline with its own data directory (a copy of seeds/ indexed), sharing the models."""

    def factory(corpus: Path | None = None, index: bool = True, **overrides: object) -> QAPipeline:
        data_dir = tmp_path_factory.mktemp("citeqa-data")
        corpus_dir = data_dir / "corpus"
        shutil.copytree(corpus or SEEDS, corpus_dir)
        settings = Settings(data_dir=data_dir, corpus_dir=corpus_dir, device="cpu", **overrides)  # type: ignore[arg-type]
        pipeline = QAPipeline(settings, embedder=embedder, reader=reader)
        if index:
            pipeline.index_folder(corpus_dir)
        return pipeline

    return factory


@pytest.fixture(scope="session")
def seed_pipeline(make_pipeline: PipelineFactory) -> QAPipeline:
    """A read-only pipeline over seeds/: tests must not add or delete documents through it."""
    return make_pipeline()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL with pgvector, started as `citeqa postgres start` does; yields its admin URL.

    Its folder lies in a fresh directory others may enter: the server runs as the unprivileged
    `postgres` user, who cannot reach pytest's private temporary folders.
    """
    from citeqa.indexing.store import pgserver

    base = Path(tempfile.mkdtemp(prefix="citeqa-pg-"))
    base.chmod(0o755)
    folder = base / "postgres"
    url = pgserver.start(folder, durable=False)
    try:
        yield url.rsplit("/", 1)[0] + "/postgres"
    finally:
        pgserver.stop(folder)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database_url(postgres_server: str) -> str:
    """A fresh, empty database on the shared test server."""
    from citeqa.indexing.store import pgserver

    name = f"t_{uuid.uuid4().hex[:12]}"
    pgserver.create_database(postgres_server, name)
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


# --- the unit lane's pipeline: fake models (tests/fakes.py), real chunking, FAISS, SQLite and BM25 ---------
FAKE_CORPUS = {
    "water.txt": "Water Rules\nThe Lisbon water levy is 3 percent of the bill. Farmers pay no levy at all.",
    "roads.txt": "Road Rules\nLorries over 12 tonnes pay a road charge of 40 euros a day in the city centre.",
}
FAKE_ANSWERS = {"water levy": "3 percent", "road charge": "40 euros a day", "farmers": "no levy"}


@pytest.fixture
def fake_pipeline(tmp_path: Path) -> QAPipeline:
    """A fresh, indexed pipeline over FAKE_CORPUS on the fakes. The reader folder has no calibration, so
    answers follow the reader's own margin rule and no shipped calibration changes these tests."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in FAKE_CORPUS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = Settings(
        data_dir=tmp_path / "data", corpus_dir=corpus, reader_path=tmp_path / "no-reader", device="cpu"
    )
    pipeline = QAPipeline(settings, embedder=HashingEmbedder(), reader=FixedSpanReader(FAKE_ANSWERS))
    pipeline.index_folder(corpus)
    return pipeline
