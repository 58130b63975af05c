"""The store seam: what the builder, the retriever and the pipeline need from an index.

Two implementations: `local` (files in one directory, the embedded default) and `postgres` (pgvector, shared
by service replicas). Chunks are addressed by integer row ids that stay valid for one snapshot.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from citeqa.indexing.errors import IndexMismatchError
from citeqa.indexing.types import Chunk, Document, DocumentInfo, SectionSpan
from pydantic import TypeAdapter

FORMAT_VERSION = 1
# Test hook for the crash-safety tests: `stage`, or `stage:<doc id>` for an update of that document,
# makes a writer SIGKILL itself there, as abruptly as a power cut.
CRASH_AT_ENV = "CITEQA_TEST_CRASH_AT"
# (row id, score) pairs, best first.
Hits = list[tuple[int, float]]


@dataclass(frozen=True)
class Manifest:
    """What one version of the index holds and how it was built."""

    format_version: int
    embedder: str
    dimension: int
    chunking: dict[str, int]
    index_type: str
    documents: dict[str, str]  # id -> content hash
    files: dict[str, str]  # file name -> sha256 (local store only)
    chunk_count: int
    created_at: float
    version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


MANIFEST_ADAPTER = TypeAdapter(Manifest)


@dataclass(frozen=True)
class IndexSpec:
    """What a reader of the index expects; a mismatch means the index must be rebuilt."""

    embedder: str
    dimension: int
    chunking: dict[str, int]


@dataclass(frozen=True)
class DocumentUpdate:
    """A document to add or replace, with its chunks and their embeddings (one row per chunk)."""

    document: Document
    chunks: list[Chunk]
    embeddings: np.ndarray


class StoreSnapshot(Protocol):
    """One version of the index as a reader sees it; safe to share between threads."""

    @property
    def version(self) -> str: ...

    @property
    def manifest(self) -> Manifest: ...

    def dense(self, query_vector: np.ndarray, k: int, document_ids: Sequence[str] | None = None) -> Hits: ...

    def sparse(self, query: str, k: int, document_ids: Sequence[str] | None = None) -> Hits: ...

    def chunks_by_rows(self, rows: Sequence[int]) -> dict[int, Chunk]: ...

    def chunks_of(self, doc_id: str) -> list[tuple[int, Chunk]]: ...

    def document(self, doc_id: str) -> Document | None: ...

    def documents(self) -> list[Document]: ...

    def titles(self, doc_ids: Iterable[str]) -> dict[str, str]: ...

    def document_infos(self, offset: int = 0, limit: int | None = None) -> list[DocumentInfo]: ...

    def document_count(self) -> int: ...

    def close(self) -> None: ...


class Store(Protocol):
    """Where versions of the index live. Writers hold `write_lock()` from reading the old state to `write`."""

    def describe(self) -> str: ...

    def live_version(self) -> str | None:
        """The version readers should use now (cheap: called per query); None when there is no index."""
        ...

    def open(self, expected: IndexSpec | None = None, verify: bool = True) -> StoreSnapshot: ...

    def indexed_hash(self, doc_id: str) -> str | None:
        """The content hash the live version holds for `doc_id` (None: not in it), without loading it."""
        ...

    def write_lock(self) -> AbstractContextManager[None]: ...

    def deleted_ids(self) -> set[str]:
        """Documents deleted through the service and not written since: a build must not bring them
        back from a file some data directory still holds (an upload kept by another replica)."""
        ...

    def previous(self, spec: IndexSpec) -> StoreSnapshot | None:
        """The live version when its documents can be kept as they are, else None (rebuild all)."""
        ...

    def write(
        self,
        updates: Sequence[DocumentUpdate],
        deletes: Sequence[str],
        spec: IndexSpec,
        previous: StoreSnapshot | None,
        replace_all: bool = False,
        record_deleted: Sequence[str] = (),
    ) -> Manifest:
        """Publish a new version: `previous`'s documents, less `deletes`, with `updates` added or
        replacing; with `replace_all`, exactly `updates`. All of it becomes visible at once or not at all.
        `record_deleted` (deletes asked for through the service, not files gone from the corpus folder)
        join `deleted_ids()`, in the same version; a document written again leaves it."""
        ...


def check_compatible(manifest: Manifest, expected: IndexSpec, where: object) -> None:
    problems = []
    if manifest.embedder != expected.embedder:
        problems.append(f"embedder {manifest.embedder!r} (expected {expected.embedder!r})")
    if manifest.dimension != expected.dimension:
        problems.append(f"dimension {manifest.dimension} (expected {expected.dimension})")
    if problems:
        raise IndexMismatchError(
            f"index at {where} was built with {', '.join(problems)}; re-index with `citeqa index --rebuild`"
        )


def crash_point(stage: str, doc_ids: Sequence[str] = ()) -> None:
    """Die here when the test hook (CRASH_AT_ENV) names `stage`, or `stage:<id>` of one of `doc_ids`."""
    wanted = os.environ.get(CRASH_AT_ENV)
    if wanted and (wanted == stage or wanted in {f"{stage}:{d}" for d in doc_ids}):
        os.kill(os.getpid(), signal.SIGKILL)


# Section spans as both stores keep them: JSON [{"start", "end", "path": [heading, ...]}].
def sections_json(sections: Sequence[SectionSpan]) -> str:
    return json.dumps([{"start": s.start, "end": s.end, "path": list(s.path)} for s in sections])


def sections_from(data: Sequence[dict[str, Any]]) -> tuple[SectionSpan, ...]:
    return tuple(SectionSpan(int(s["start"]), int(s["end"]), tuple(s["path"])) for s in data)
