"""A damaged index file is caught when the index opens, as a CiteqaError with a clear message.

Each file of a real index (built once per module) is truncated, emptied, bit-flipped, replaced by
junk or deleted in turn, on a copy; opening must raise a CiteqaError naming the index and what to
run, never a raw exception from FAISS, NumPy, SQLite or JSON. Without checksum verification the
structural checks must still catch every truncation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from citeqa.indexing.errors import CiteqaError, CorruptIndexError, IndexNotFoundError
from citeqa.indexing.store import (
    CURRENT_FILE,
    EMBEDDINGS_FILE,
    FAISS_FILE,
    MANIFEST,
    SQLITE_FILE,
    IndexSnapshot,
    current_version_dir,
)
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.settings import REPO_ROOT

from tests.conftest import child_env

pytestmark = pytest.mark.e2e

PipelineFactory = Callable[..., QAPipeline]
SEED_QUESTION = "Which city was the first Made in China 2025 pilot demonstration city?"
JUNK = bytes(range(256)) * 16  # NULs, invalid UTF-8, no structure


def _truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _flip_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(max(0, middle - 32), min(len(data), middle + 32)):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _junk(path: Path) -> None:
    path.write_bytes(JUNK)


def _delete(path: Path) -> None:
    path.unlink()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate_half,
    "empty": _empty,
    "bit-flipped": _flip_middle,
    "junk": _junk,
    "deleted": _delete,
}
FILES = (FAISS_FILE, SQLITE_FILE, EMBEDDINGS_FILE, MANIFEST, CURRENT_FILE)


@pytest.fixture(scope="module")
def built_index(make_pipeline: PipelineFactory) -> Path:
    return make_pipeline().index_dir


def damaged_copy(built_index: Path, tmp_path: Path, name: str, how: str) -> Path:
    root = tmp_path / "index"
    shutil.copytree(built_index, root)
    if name == CURRENT_FILE:
        target = root / CURRENT_FILE
    else:
        version_dir = current_version_dir(root)
        assert version_dir is not None
        target = version_dir / name
    DAMAGE[how](target)
    return root


def assert_clear(error: CiteqaError, root: Path) -> None:
    message = str(error)
    assert str(root) in message
    assert "citeqa index" in message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("name", FILES)
def test_damage_is_caught_at_open(built_index: Path, tmp_path: Path, name: str, how: str) -> None:
    root = damaged_copy(built_index, tmp_path, name, how)
    expected: type[CiteqaError] = (
        IndexNotFoundError if (name, how) == (CURRENT_FILE, "deleted") else CorruptIndexError
    )
    with pytest.raises(expected) as caught:
        IndexSnapshot.open(root)
    assert_clear(caught.value, root)


@pytest.mark.parametrize("how", ["truncated", "empty", "junk", "deleted"])
@pytest.mark.parametrize("name", [FAISS_FILE, SQLITE_FILE, EMBEDDINGS_FILE])
def test_damage_is_caught_without_checksums(built_index: Path, tmp_path: Path, name: str, how: str) -> None:
    """CITEQA_VERIFY_INDEX=false skips hashing; the structural checks still stop a broken file."""
    root = damaged_copy(built_index, tmp_path, name, how)
    with pytest.raises(CorruptIndexError) as caught:
        IndexSnapshot.open(root, verify=False)
    assert_clear(caught.value, root)


@pytest.fixture(scope="module")
def built_compressed_index(make_pipeline: PipelineFactory) -> Path:
    return make_pipeline(index_type="ivf_sq8").index_dir


def test_compressed_index_opens_and_its_damage_is_caught(
    built_compressed_index: Path, tmp_path: Path
) -> None:
    """A compressed FAISS file is a quarter of the float32 size: intact it opens, truncated it is caught."""
    assert IndexSnapshot.open(built_compressed_index, verify=False).manifest.index_type == "ivf_sq8"
    for how in ("truncated", "junk"):
        root = damaged_copy(built_compressed_index, tmp_path / how, FAISS_FILE, how)
        with pytest.raises(CorruptIndexError) as caught:
            IndexSnapshot.open(root, verify=False)
        assert_clear(caught.value, root)


@pytest.mark.parametrize(
    "manifest",
    [
        [],
        "v-1",
        {"format_version": 1},
        {"files": "nope"},
    ],
    ids=["list", "string", "missing-fields", "wrong-types"],
)
def test_manifest_of_the_wrong_shape(built_index: Path, tmp_path: Path, manifest: object) -> None:
    root = damaged_copy(built_index, tmp_path, MANIFEST, "empty")
    version_dir = current_version_dir(root)
    assert version_dir is not None
    if isinstance(manifest, dict) and "files" in manifest:
        # A real manifest with one field of the wrong type.
        real = json.loads((built_index / version_dir.name / MANIFEST).read_text(encoding="utf-8"))
        manifest = {**real, **manifest}
    (version_dir / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(CorruptIndexError) as caught:
        IndexSnapshot.open(root)
    assert_clear(caught.value, root)


@pytest.mark.parametrize("pointer", ["v-does-not-exist\n", "../outside\n", ".hidden\n", MANIFEST])
def test_current_pointing_nowhere(built_index: Path, tmp_path: Path, pointer: str) -> None:
    root = damaged_copy(built_index, tmp_path, CURRENT_FILE, "empty")
    (root / CURRENT_FILE).write_text(pointer, encoding="utf-8")
    with pytest.raises(CorruptIndexError) as caught:
        IndexSnapshot.open(root)
    assert_clear(caught.value, root)


def test_index_run_replaces_a_damaged_index(make_pipeline: PipelineFactory) -> None:
    """`citeqa index` over a damaged index rebuilds it instead of failing or reusing bad data."""
    pipeline = make_pipeline()
    version_dir = current_version_dir(pipeline.index_dir)
    assert version_dir is not None
    _flip_middle(version_dir / EMBEDDINGS_FILE)
    with pytest.raises(CorruptIndexError):
        pipeline.reload()
    report = pipeline.index_folder()
    assert report.embedded_chunks == report.manifest.chunk_count > 0  # nothing reused from the bad copy
    assert pipeline.ask(SEED_QUESTION).answers[0].text == "Ningbo"


def test_index_run_repairs_a_damaged_current_pointer(make_pipeline: PipelineFactory) -> None:
    pipeline = make_pipeline()
    _junk(pipeline.index_dir / CURRENT_FILE)
    with pytest.raises(CorruptIndexError, match=CURRENT_FILE):
        pipeline.reload()
    report = pipeline.index_folder()
    assert report.document_count == 1
    assert pipeline.ask(SEED_QUESTION).answers[0].text == "Ningbo"


def test_cli_ask_on_a_damaged_index_prints_one_line(built_index: Path, tmp_path: Path) -> None:
    root = damaged_copy(built_index, tmp_path, FAISS_FILE, "truncated")
    env = child_env(CITEQA_INDEX_DIR=str(root))
    done = subprocess.run(
        [sys.executable, "-m", "citeqa.service.cli", "ask", SEED_QUESTION],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.startswith("citeqa")]
    assert len(lines) == 1 and "damaged" in lines[0] and FAISS_FILE in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_running_pipeline_keeps_answering_when_a_new_version_is_damaged(
    make_pipeline: PipelineFactory, tmp_path: Path
) -> None:
    """Another process (`citeqa index`) publishes a version that turns out damaged on disk: queries
    keep being answered from the version in memory, and the next good version is picked up."""
    serving = make_pipeline()
    old_version = serving.index.snapshot.version
    other = QAPipeline(serving.settings, embedder=serving.embedder, reader=serving.reader)
    corpus = serving.settings.corpus_dir
    (corpus / "extra.txt").write_text("Extra notice.\nThe ferry leaves at noon.\n", encoding="utf-8")
    other.index_folder(corpus)
    damaged_dir = current_version_dir(serving.index_dir)
    assert damaged_dir is not None and damaged_dir.name != old_version
    _truncate_half(damaged_dir / FAISS_FILE)
    for _ in range(2):
        result = serving.ask(SEED_QUESTION)
        assert result.answers[0].text == "Ningbo" and result.index_version == old_version
    (corpus / "extra.txt").write_text("Extra notice.\nThe ferry leaves at one.\n", encoding="utf-8")
    repaired = other.index_folder(corpus)
    assert serving.ask(SEED_QUESTION).index_version == repaired.manifest.version
