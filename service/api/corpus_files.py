"""Uploaded documents are kept as files in the corpus folder, so that a later `citeqa index` (which makes
the index hold exactly that folder) keeps them, and a deleted document does not come back."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def corpus_path(corpus_dir: Path, doc_id: str) -> Path | None:
    """The file behind `doc_id`, or None when the id would lead outside the corpus folder."""
    root = corpus_dir.resolve()
    path = (root / doc_id).resolve()
    return path if path.parent == root or root in path.parents else None


@contextlib.contextmanager
def _restorable(path: Path) -> Iterator[bytes | None]:
    previous = path.read_bytes() if path.is_file() else None
    try:
        yield previous
    except BaseException:
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            _write_atomically(path, previous)
        raise


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def store_then(corpus_dir: Path, doc_id: str, data: bytes, update: Callable[[], T]) -> T:
    """Write the file, then run the index update; if the update fails the folder is as it was."""
    path = corpus_path(corpus_dir, doc_id)
    if path is None:
        return update()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _restorable(path):
        _write_atomically(path, data)
        return update()


def remove_after(corpus_dir: Path, doc_id: str, update: Callable[[], T]) -> T:
    """Run the index update, then remove the document's file from the corpus folder."""
    result = update()
    path = corpus_path(corpus_dir, doc_id)
    if path is not None and path.is_file():
        path.unlink()
    return result
