"""M1: an upload or delete killed (SIGKILL) part-way leaves the document fully in or fully out, everywhere.

Each scenario runs the real pipeline in a child process that the index writer's test hook
(CITEQA_TEST_CRASH_AT) kills just before or just after the new index version goes live. Then, as a
restarted service would, a fresh pipeline opens the data directory (which replays the journal), and
`citeqa index` runs over the corpus folder: the index, the kept upload and later builds must agree.
Before the journal, an upload killed before the swap came back at the next `citeqa index`, and a
delete killed after the swap did too (its file was still in uploads/).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from citeqa.indexing.ingest.journal import INTENT_FILE, JOURNAL_DIR
from citeqa.indexing.ingest.sources import UPLOADS
from citeqa.indexing.store import CRASH_AT_ENV
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.settings import REPO_ROOT, Settings

from tests.conftest import child_env

pytestmark = pytest.mark.e2e

DOC_ID = "harbor_retention.txt"
DOC_TEXT = (
    "Harbor Authority Records Policy\n\n"
    "Visitor logs at the harbor gate must be kept for exactly 45 days before they are destroyed.\n"
)
CHILD = """
import sys
from pathlib import Path
from citeqa.service.qa.pipeline import QAPipeline
pipeline = QAPipeline()
op, doc_id = sys.argv[1], sys.argv[2]
if op == "upload":
    pipeline.upload_document(doc_id, Path(sys.argv[3]).read_bytes())
else:
    pipeline.delete_document(doc_id)
"""
# (operation, stage the child dies at, whether the document must end up in)
SCENARIOS = [
    ("upload", "before_swap", False),
    ("upload", "after_swap", True),
    ("delete", "before_swap", True),
    ("delete", "after_swap", False),
]


@dataclass
class Scenario:
    op: str
    stage: str
    expect_in: bool
    data_dir: Path
    returncode: int = 0

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, corpus_dir=self.data_dir / "corpus", device="cpu")


@pytest.fixture(scope="module")
def crashed(
    tmp_path_factory: pytest.TempPathFactory, make_pipeline: Callable[..., QAPipeline]
) -> list[Scenario]:
    without = make_pipeline()
    with_upload = make_pipeline()
    with_upload.upload_document(DOC_ID, DOC_TEXT.encode())
    doc_file = tmp_path_factory.mktemp("upload") / DOC_ID
    doc_file.write_text(DOC_TEXT, encoding="utf-8")
    scenarios, children = [], []
    for op, stage, expect_in in SCENARIOS:
        data_dir = tmp_path_factory.mktemp(f"{op}-{stage}") / "data"
        source = without if op == "upload" else with_upload
        shutil.copytree(source.settings.data_dir, data_dir)
        scenario = Scenario(op, stage, expect_in, data_dir)
        env = child_env(
            CITEQA_DATA_DIR=str(data_dir), CITEQA_CORPUS_DIR=str(data_dir / "corpus"), **{CRASH_AT_ENV: stage}
        )
        command = [sys.executable, "-c", CHILD, op, DOC_ID, str(doc_file)]
        children.append(subprocess.Popen(command, env=env, cwd=REPO_ROOT, stderr=subprocess.PIPE))
        scenarios.append(scenario)
    for scenario, child in zip(scenarios, children, strict=True):
        _, stderr = child.communicate(timeout=240)
        scenario.returncode = child.returncode
        assert child.returncode == -9, stderr.decode()[-2000:]
        # As the kill left it, for the test of `citeqa index` alone (the others replay in place).
        shutil.copytree(scenario.data_dir, scenario.data_dir.parent / "as-killed")
    return scenarios


def _state(pipeline: QAPipeline) -> tuple[bool, bool]:
    """(in the live index, kept under uploads/)."""
    in_index = pipeline.index.snapshot.document(DOC_ID) is not None
    return in_index, (pipeline.settings.data_dir / UPLOADS / DOC_ID).is_file()


@pytest.mark.parametrize(("op", "stage", "expect_in"), SCENARIOS)
def test_interrupted_update_is_all_or_nothing(
    crashed: list[Scenario], make_pipeline: Callable[..., QAPipeline], op: str, stage: str, expect_in: bool
) -> None:
    scenario = next(s for s in crashed if (s.op, s.stage) == (op, stage))
    shared = make_pipeline(index=False)  # only for its loaded models
    restarted = QAPipeline(scenario.settings, embedder=shared.embedder, reader=shared.reader)
    restarted.warm_up()  # what the service does at start: the journal is replayed first
    assert _state(restarted) == (expect_in, expect_in)
    assert not (scenario.data_dir / JOURNAL_DIR / INTENT_FILE).exists()
    # `citeqa index` over the corpus folder agrees, and keeps agreeing.
    restarted.index_folder(scenario.data_dir / "corpus")
    assert _state(restarted) == (expect_in, expect_in)
    if expect_in:
        assert restarted.index.snapshot.document(DOC_ID).text == DOC_TEXT  # type: ignore[union-attr]
    # Nothing else was lost: the seed document is still served.
    assert restarted.index.snapshot.document_count() == 1 + expect_in


@pytest.mark.parametrize(("op", "stage", "expect_in"), SCENARIOS)
def test_index_command_replays_the_journal_by_itself(
    crashed: list[Scenario], make_pipeline: Callable[..., QAPipeline], op: str, stage: str, expect_in: bool
) -> None:
    """`citeqa index` alone, with no service start in between, finishes or undoes the operation too."""
    scenario = next(s for s in crashed if (s.op, s.stage) == (op, stage))
    data_dir = scenario.data_dir.parent / "as-killed"
    assert (data_dir / JOURNAL_DIR / INTENT_FILE).is_file()
    shared = make_pipeline(index=False)
    settings = Settings(data_dir=data_dir, corpus_dir=data_dir / "corpus", device="cpu")
    pipeline = QAPipeline(settings, embedder=shared.embedder, reader=shared.reader)
    pipeline.index_folder(data_dir / "corpus")
    assert _state(pipeline) == (expect_in, expect_in)
