"""One data directory, both stores: switching between the local index and Postgres damages neither.

A new user who followed the README's Postgres recipe in a data directory holding a local index lost the
live local version: the Postgres store kept its BM25 folders in the same directory and deleted every
folder it did not know, `CURRENT` included the one it pointed at. The next `make run` re-embedded all.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
from citeqa.indexing.embedding import Embedder
from citeqa.indexing.errors import CiteqaError
from citeqa.indexing.store import LocalStore
from citeqa.service.cli import cmd_index
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.reader import Reader
from citeqa.service.settings import Settings

from tests.conftest import SEEDS

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def _pipeline(data_dir: Path, embedder: Embedder, reader: Reader, database_url: str | None) -> QAPipeline:
    settings = Settings(
        data_dir=data_dir, corpus_dir=data_dir / "corpus", device="cpu", database_url=database_url
    )  # type: ignore[arg-type]
    return QAPipeline(settings, embedder=embedder, reader=reader)


def test_indexing_into_postgres_leaves_the_local_index_of_the_same_data_dir_intact(
    tmp_path: Path, database_url: str, embedder: Embedder, reader: Reader
) -> None:
    shutil.copytree(SEEDS, tmp_path / "corpus")
    local = _pipeline(tmp_path, embedder, reader, None)
    local.index_folder()
    local_store = LocalStore(local.index_dir)
    version = local_store.live_version()
    assert version is not None

    postgres = _pipeline(tmp_path, embedder, reader, database_url)
    postgres.index_folder()
    assert postgres.search("pilot demonstration city").passages

    # The local index is still live and whole (its checksums verified), and answers.
    assert local_store.live_version() == version
    local_store.open(verify=True).close()
    local.reload()
    assert local.search("pilot demonstration city").passages

    # And back: a local re-index leaves the Postgres replica's BM25 folder alone.
    local.index_folder(rebuild=True)
    postgres.reload()
    assert postgres.search("pilot demonstration city").passages


def test_the_refusal_to_index_another_folder_names_the_store_in_use(
    tmp_path: Path, database_url: str, embedder: Embedder, reader: Reader
) -> None:
    shutil.copytree(SEEDS, tmp_path / "corpus")
    other = tmp_path / "other"
    shutil.copytree(SEEDS, other)
    postgres = _pipeline(tmp_path, embedder, reader, database_url)
    postgres.index_folder()
    args = argparse.Namespace(path=str(other), replace=False, rebuild=False, restore_deleted=False)
    with pytest.raises(CiteqaError) as refused:
        cmd_index(args, postgres.settings)
    message = str(refused.value)
    assert "postgresql://" in message and str(postgres.index_dir) not in message
