"""SIGKILL the real `citeqa index` at named points of a first build and of an incremental update.

The writer's test hook (indexing.store.CRASH_AT_ENV) makes the child kill itself at an exact stage,
so every run hits the point it names. All crashing children run at once (they only share the CPU),
then each resulting index directory is checked: the previous index (or none, for a first build) is
what loads and answers, and the next index run completes and sweeps away the leftovers.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from citeqa.indexing.embedding import Embedder
from citeqa.indexing.errors import IndexNotFoundError
from citeqa.indexing.store import CRASH_AT_ENV, CURRENT_FILE, IndexSnapshot, current_version_dir
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.reader import Reader
from citeqa.service.settings import REPO_ROOT, Settings

from tests.conftest import child_env

pytestmark = pytest.mark.e2e

SEEDS = REPO_ROOT / "seeds"
SEED_DOC_ID = "000_d31740c80f9a4c4e.txt"
PipelineFactory = Callable[..., QAPipeline]

SEED_QUESTION = "Which city was the first Made in China 2025 pilot demonstration city?"
NEW_DOC_ID = "harbor_retention.txt"
NEW_DOC_TEXT = (
    "Harbor Authority Records Policy\n\n"
    "Visitor logs at the harbor gate must be kept for exactly 45 days before they are destroyed. "
    "Requests to see a visitor log are handled by the records office of the harbor authority.\n"
)
NEW_QUESTION = "How long must visitor logs at the harbor gate be kept?"

FIRST_BUILD_STAGES = ("after_faiss", "after_swap")
UPDATE_STAGES = ("after_sqlite", "before_rename", "before_swap", "after_swap")
CHILD_TIMEOUT_S = 240


@dataclass
class Crash:
    kind: str  # "first" or "update"
    stage: str
    data_dir: Path
    corpus: Path
    previous_version: str | None
    returncode: int = 0
    stderr: str = ""

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"


def crash_env(data_dir: Path, crash_at: str | None) -> dict[str, str]:
    env = child_env(CITEQA_DATA_DIR=str(data_dir))
    if crash_at:
        env[CRASH_AT_ENV] = crash_at
    return env


def index_command(corpus: Path) -> list[str]:
    return [sys.executable, "-m", "citeqa.service.cli", "index", str(corpus)]


@pytest.fixture(scope="module")
def crashes(
    tmp_path_factory: pytest.TempPathFactory, make_pipeline: PipelineFactory
) -> dict[tuple[str, str], Crash]:
    base = make_pipeline()  # seeds/ indexed in-process: the "previous" index of every update
    base_version = base.index.snapshot.version
    scenarios: list[Crash] = []
    for stage in FIRST_BUILD_STAGES:
        root = tmp_path_factory.mktemp(f"crash-first-{stage}")
        corpus = root / "corpus"
        shutil.copytree(SEEDS, corpus)
        scenarios.append(Crash("first", stage, root / "data", corpus, None))
    for stage in UPDATE_STAGES:
        root = tmp_path_factory.mktemp(f"crash-update-{stage}")
        shutil.copytree(base.settings.data_dir / "index", root / "data" / "index")
        corpus = root / "corpus"
        shutil.copytree(SEEDS, corpus)
        (corpus / NEW_DOC_ID).write_text(NEW_DOC_TEXT, encoding="utf-8")
        scenarios.append(Crash("update", stage, root / "data", corpus, base_version))

    children = [
        subprocess.Popen(
            index_command(c.corpus),
            env=crash_env(c.data_dir, c.stage),
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in scenarios
    ]
    try:
        for crash, child in zip(scenarios, children, strict=True):
            _, crash.stderr = child.communicate(timeout=CHILD_TIMEOUT_S)
            crash.returncode = child.returncode
            # Tests recover `data_dir` in place; keep the debris as the kill left it for the CLI test.
            shutil.copytree(crash.data_dir, crash.data_dir.parent / "debris")
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    return {(c.kind, c.stage): c for c in scenarios}


def pipeline_for(crash: Crash, embedder: Embedder, reader: Reader) -> QAPipeline:
    settings = Settings(data_dir=crash.data_dir, corpus_dir=crash.corpus, device="cpu")
    return QAPipeline(settings, embedder=embedder, reader=reader)


def leftovers(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.iterdir() if p.name.startswith((".tmp-", f".{CURRENT_FILE}.")))


def assert_recovers(crash: Crash, pipeline: QAPipeline) -> None:
    """The next index run completes, holds exactly the corpus and leaves one clean version."""
    report = pipeline.index_folder(crash.corpus)
    expected = {SEED_DOC_ID, NEW_DOC_ID} if crash.kind == "update" else {SEED_DOC_ID}
    assert set(report.manifest.documents) == expected
    assert leftovers(crash.index_dir) == []
    versions = [p.name for p in crash.index_dir.iterdir() if p.name.startswith("v-")]
    assert versions == [report.manifest.version]
    answer = pipeline.ask(SEED_QUESTION).answers[0]
    assert answer.text == "Ningbo"


@pytest.mark.parametrize("stage", FIRST_BUILD_STAGES)
def test_killed_first_build(
    stage: str, crashes: dict[tuple[str, str], Crash], embedder: Embedder, reader: Reader
) -> None:
    crash = crashes[("first", stage)]
    assert crash.returncode == -signal.SIGKILL, crash.stderr[-2000:]
    pipeline = pipeline_for(crash, embedder, reader)
    if stage == "after_swap":
        # The new version went live just before the kill: it is complete and answers.
        assert pipeline.ask(SEED_QUESTION).answers[0].text == "Ningbo"
    else:
        assert current_version_dir(crash.index_dir) is None
        with pytest.raises(IndexNotFoundError, match="citeqa index"):
            pipeline.ask(SEED_QUESTION)
        assert leftovers(crash.index_dir), "the kill should have left a staging directory behind"
    assert_recovers(crash, pipeline)


@pytest.mark.parametrize("stage", UPDATE_STAGES)
def test_killed_update(
    stage: str, crashes: dict[tuple[str, str], Crash], embedder: Embedder, reader: Reader
) -> None:
    crash = crashes[("update", stage)]
    assert crash.returncode == -signal.SIGKILL, crash.stderr[-2000:]
    snapshot = IndexSnapshot.open(crash.index_dir)  # verifies every checksum
    try:
        documents = set(snapshot.manifest.documents)
        version = snapshot.version
    finally:
        snapshot.close()
    pipeline = pipeline_for(crash, embedder, reader)
    if stage == "after_swap":
        assert version != crash.previous_version
        assert documents == {SEED_DOC_ID, NEW_DOC_ID}
        result = pipeline.ask(NEW_QUESTION)
        assert result.answers and result.answers[0].citation.doc_id == NEW_DOC_ID
        assert "45 days" in result.answers[0].text
    else:
        assert version == crash.previous_version
        assert documents == {SEED_DOC_ID}
        result = pipeline.ask(SEED_QUESTION)
        assert result.answers[0].text == "Ningbo"
        assert all(p.chunk.doc_id == SEED_DOC_ID for p in pipeline.search(NEW_QUESTION).passages)
    assert_recovers(crash, pipeline)


def test_cli_index_completes_after_killed_first_build(crashes: dict[tuple[str, str], Crash]) -> None:
    """The real `citeqa index`, run again over the debris of a killed first build, finishes cleanly."""
    crash = crashes[("first", "after_faiss")]
    fresh = crash.data_dir.parent / "debris"
    assert leftovers(fresh / "index")
    done = subprocess.run(
        index_command(crash.corpus),
        env=crash_env(fresh, None),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "indexed 1 documents" in done.stdout
    assert leftovers(fresh / "index") == []
    snapshot = IndexSnapshot.open(fresh / "index")
    try:
        assert set(snapshot.manifest.documents) == {SEED_DOC_ID}
    finally:
        snapshot.close()
