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
MODEL_FIXTURES = frozenset({"embedder", "reader", "exported_reader_dir"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the real models, through any fixture, is `slow`: `make test-fast` leaves it out.
    Tests that load them another way (a CLI run, a subprocess) carry the mark themselves."""
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def exported_reader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default reader exported to ONNX (`citeqa export-reader`) in a folder of its own, whose model
    files link to the real ones: the tests never depend on an export left in models/."""
    from citeqa.service.qa.onnx_reader import export_reader

    folder = tmp_path_factory.mktemp("reader")
    for item in Settings().reader_path.iterdir():
        if item.is_file():
            (folder / item.name).symlink_to(item)
    export_reader(folder)
    return folder


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
