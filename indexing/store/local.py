"""The local store: versioned directories with FAISS vectors, a SQLite store, BM25 and a manifest.

Layout of the index root:
    CURRENT            name of the live version directory (replaced atomically)
    v-<stamp>/         manifest.json, store.sqlite, embeddings.npy, vectors.faiss, bm25/ (tantivy)
A build writes a new version directory and only then points CURRENT at it, so a crash at any
point leaves the previous version live and loadable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from citeqa.indexing.durable import fsync_dir, fsync_file
from citeqa.indexing.errors import CiteqaError, CorruptIndexError, IndexMismatchError, IndexNotFoundError
from citeqa.indexing.store.base import (
    FORMAT_VERSION,
    MANIFEST_ADAPTER,
    DocumentUpdate,
    Hits,
    IndexSpec,
    Manifest,
    StoreSnapshot,
    check_compatible,
    crash_point,
    sections_from,
    sections_json,
)
from citeqa.indexing.store.bm25 import BM25Index
from citeqa.indexing.store.faiss_index import (
    COMPRESSED_INDEX_TYPES,
    build_faiss_index,
    exact_rerank,
    faiss_thread_scope,
)
from citeqa.indexing.types import Chunk, Document, DocumentInfo, PageSpan

log = logging.getLogger(__name__)
_VERSION_NAME = re.compile(r"v-[0-9A-Za-z-]{1,64}")
CURRENT_FILE = "CURRENT"
# The manifest's `extra` key listing documents deleted through the service (Store.deleted_ids).
DELETED_KEY = "deleted"
LOCK_FILE = ".lock"
MANIFEST = "manifest.json"
SQLITE_FILE = "store.sqlite"
EMBEDDINGS_FILE = "embeddings.npy"
FAISS_FILE = "vectors.faiss"
BM25_DIR = "bm25"
DATA_FILES = (SQLITE_FILE, EMBEDDINGS_FILE, FAISS_FILE)
# Test hook (tests/indexing/test_crash_safety.py): naming a stage here makes the writer SIGKILL itself
# there, so tests can stop a build at exact points; unset, it costs one dict lookup per stage.

# `sections` (JSON [{start, end, path}]) and `section` (JSON [heading, ...]) came later: a version written
# before them has neither column and reads as having no sections (see IndexSnapshot._columns).
_SCHEMA = """
CREATE TABLE documents (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, date TEXT, content_hash TEXT NOT NULL,
    source TEXT, pages TEXT NOT NULL, text TEXT NOT NULL, chunk_count INTEGER NOT NULL,
    sections TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE chunks (
    row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL REFERENCES documents(id),
    seq INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL,
    section TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX chunks_doc ON chunks(doc_id, seq);
"""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def write_lock(root: Path) -> Iterator[None]:
    """Serialise writers of one index root, across threads and processes."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def current_version_dir(root: Path) -> Path | None:
    """The live version directory, None when there is no index; a bad pointer is CorruptIndexError."""
    pointer = root / CURRENT_FILE
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_bytes().decode("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(root, f"unreadable {CURRENT_FILE} file") from exc
    # Only names the writer makes: anything else (a path, "..", junk) must not be followed.
    if not _VERSION_NAME.fullmatch(name):
        raise _damaged(root, f"bad {CURRENT_FILE} file")
    return root / name


def _damaged(root: Path, what: str) -> CorruptIndexError:
    return CorruptIndexError(f"index at {root} is damaged ({what}); re-run `citeqa index --rebuild`")


class IndexWriter:
    """Writes a complete new version of the index and makes it live atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(
        self,
        documents: Sequence[Document],
        chunks_by_doc: dict[str, list[Chunk]],
        embeddings: np.ndarray,
        spec: IndexSpec,
        index_type: str = "auto",
        ann_threshold: int = 50_000,
        extra: dict[str, Any] | None = None,
    ) -> Manifest:
        """`embeddings` rows follow the chunks of `documents` in order; `extra` goes into the manifest."""
        self.root.mkdir(parents=True, exist_ok=True)
        version = f"v-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        staging = self.root / f".tmp-{version}"
        staging.mkdir()
        try:
            chunk_count = self._write_sqlite(staging / SQLITE_FILE, documents, chunks_by_doc)
            crash_point("after_sqlite")
            if chunk_count != len(embeddings):
                raise ValueError(f"{chunk_count} chunks but {len(embeddings)} embeddings")
            vectors = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, spec.dimension)
            np.save(staging / EMBEDDINGS_FILE, vectors)
            index, kind = build_faiss_index(vectors, index_type, ann_threshold)
            faiss.write_index(index, str(staging / FAISS_FILE))
            crash_point("after_faiss")
            BM25Index.create(staging / BM25_DIR, _bm25_entries(documents, chunks_by_doc))
            files = [*DATA_FILES, *_bm25_files(staging)]
            for name in files:
                fsync_file(staging / name)
            manifest = Manifest(
                format_version=FORMAT_VERSION,
                embedder=spec.embedder,
                dimension=spec.dimension,
                chunking=dict(spec.chunking),
                index_type=kind,
                documents={d.id: d.content_hash for d in documents},
                files={name: file_sha256(staging / name) for name in files},
                chunk_count=chunk_count,
                created_at=time.time(),
                version=version,
                extra=dict(extra or {}),
            )
            (staging / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")
            fsync_file(staging / MANIFEST)
            crash_point("before_rename")
            final = self.root / version
            staging.rename(final)
            self._point_current_at(version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        crash_point("after_swap")
        self._remove_stale(keep={version})
        return manifest

    def _write_sqlite(
        self, path: Path, documents: Sequence[Document], chunks_by_doc: dict[str, list[Chunk]]
    ) -> int:
        conn = sqlite3.connect(path)
        try:
            conn.executescript(_SCHEMA)
            row = 0
            for doc in documents:
                chunks = chunks_by_doc[doc.id]
                conn.execute(
                    "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        doc.id,
                        doc.title,
                        doc.date,
                        doc.content_hash,
                        doc.source,
                        json.dumps([asdict(p) for p in doc.pages]),
                        doc.text,
                        len(chunks),
                        sections_json(doc.sections),
                    ),
                )
                conn.executemany(
                    "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (row + i, c.id, c.doc_id, c.seq, c.start, c.end, c.text, json.dumps(list(c.section)))
                        for i, c in enumerate(chunks)
                    ],
                )
                row += len(chunks)
            conn.commit()
        finally:
            conn.close()
        return row

    def _point_current_at(self, version: str) -> None:
        tmp = self.root / f".{CURRENT_FILE}.{uuid.uuid4().hex[:8]}"
        tmp.write_text(version + "\n", encoding="utf-8")
        fsync_file(tmp)
        crash_point("before_swap")
        os.replace(tmp, self.root / CURRENT_FILE)
        fsync_dir(self.root)

    def _remove_stale(self, keep: set[str]) -> None:
        """Drop old versions and leftovers of interrupted builds.

        Readers that still hold an old version keep working: FAISS is in memory and an open SQLite
        file survives unlinking on POSIX.
        """
        for entry in self.root.iterdir():
            if entry.name in keep or entry.name in (CURRENT_FILE, LOCK_FILE):
                continue
            if entry.is_dir() and (entry.name.startswith("v-") or entry.name.startswith(".tmp-")):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(f".{CURRENT_FILE}."):
                entry.unlink(missing_ok=True)


def _bm25_entries(
    documents: Sequence[Document], chunks_by_doc: dict[str, list[Chunk]]
) -> Iterator[tuple[int, str, str]]:
    """(row, doc_id, text) in the row order the SQLite store gives the chunks."""
    row = 0
    for doc in documents:
        for chunk in chunks_by_doc[doc.id]:
            yield row, doc.id, chunk.text
            row += 1


def _bm25_files(version_dir: Path) -> list[str]:
    """The tantivy files, as paths relative to the version directory (its lock files are not data)."""
    return sorted(
        str(p.relative_to(version_dir))
        for p in (version_dir / BM25_DIR).iterdir()
        if p.is_file() and not p.name.startswith(".")
    )


class IndexSnapshot:
    """One immutable, loaded version of the local index. Safe to share between threads."""

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        index: faiss.Index,
        embeddings: np.ndarray,
        bm25: BM25Index | None = None,
        rerank_factor: int = 4,
        nprobe: int = 0,
    ) -> None:
        """`rerank_factor`: a compressed index returns k * factor rows, re-scored exactly, best k kept.
        `nprobe`: inverted lists an IVF index scans per query; 0 keeps the value chosen at build time."""
        self.directory = directory
        self.manifest = manifest
        self.index = index
        self.embeddings = embeddings
        self.bm25 = bm25 if bm25 is not None else BM25Index.open(directory / BM25_DIR)
        self.rerank_factor = rerank_factor
        self.nprobe = nprobe
        self._conn = sqlite3.connect(
            f"file:{directory / SQLITE_FILE}?mode=ro", uri=True, check_same_thread=False
        )
        # Closed as soon as the last query lets go of this snapshot: a connection is in a reference
        # cycle with its own statement cache, so left alone it (and its deleted file) lived until the
        # next garbage collection (88 deleted store.sqlite files, 82 MB, after 60 HTTP updates).
        weakref.finalize(self, self._conn.close)
        self._lock = threading.Lock()
        self._columns = self._section_columns()

    @classmethod
    def open(
        cls,
        root: Path,
        expected: IndexSpec | None = None,
        verify: bool = True,
        rerank_factor: int = 4,
        nprobe: int = 0,
    ) -> IndexSnapshot:
        """Load the live version; any damaged or missing part raises CorruptIndexError.

        With `verify` every data file must match its manifest checksum. Without it, the sizes and
        counts are still checked, so a truncated file is reported here rather than failing (or
        crashing) inside FAISS, NumPy or SQLite later.
        """
        directory = current_version_dir(root)
        if directory is None:
            raise IndexNotFoundError(f"no index at {root}; build one with `citeqa index`")
        if not directory.is_dir():
            raise _damaged(root, f"{CURRENT_FILE} names {directory.name}, which is missing")
        manifest = _read_manifest(directory, root)
        if manifest.format_version != FORMAT_VERSION:
            raise IndexMismatchError(
                f"index at {root} has format {manifest.format_version}, this citeqa reads "
                f"{FORMAT_VERSION}; re-index with `citeqa index --rebuild`"
            )
        if expected is not None:
            check_compatible(manifest, expected, root)
        bm25_files = [name for name in manifest.files if name.startswith(f"{BM25_DIR}/")]
        if not bm25_files:
            raise _damaged(root, f"{BM25_DIR} is missing from {MANIFEST}")
        for name in [*DATA_FILES, *bm25_files]:
            path = directory / name
            if not path.is_file():
                raise _damaged(root, f"{name} is missing")
            if verify and file_sha256(path) != manifest.files.get(name):
                raise _damaged(root, f"{name} fails its checksum")
        index, embeddings = _load_vectors(directory, manifest, root)
        try:
            bm25 = BM25Index.open(directory / BM25_DIR)
        except Exception as exc:  # tantivy reports a bad index as ValueError or its own errors
            raise _damaged(root, f"{BM25_DIR} cannot be read") from exc
        try:
            snapshot = cls(directory, manifest, index, embeddings, bm25, rerank_factor, nprobe)
        except sqlite3.Error as exc:
            raise _damaged(root, f"{SQLITE_FILE} cannot be opened: {exc}") from exc
        try:
            chunk_rows = snapshot._query("SELECT count(*) FROM chunks")[0][0]
            doc_rows = snapshot.document_count()
        except sqlite3.Error as exc:
            snapshot.close()
            raise _damaged(root, f"{SQLITE_FILE} cannot be read: {exc}") from exc
        if chunk_rows != manifest.chunk_count or doc_rows != len(manifest.documents):
            snapshot.close()
            raise _damaged(root, f"{SQLITE_FILE} does not match the manifest")
        return snapshot

    def _section_columns(self) -> tuple[str, str]:
        """The SQL for (documents.sections, chunks.section): the columns, or '[]' in a version written
        before they existed, so that an old index reads as one without sections."""
        try:
            names = {r[1] for r in self._conn.execute("PRAGMA table_info(chunks)")}
        except sqlite3.Error:
            names = set()  # reported by `open`, which counts the rows next
        if "section" in names:
            return "sections", "section"
        return "'[]'", "'[]'"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def version(self) -> str:
        return self.manifest.version

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def dense(
        self, query_vector: np.ndarray, k: int, document_ids: Sequence[str] | None = None
    ) -> list[tuple[int, float]]:
        if self.index.ntotal == 0:
            return []
        if document_ids is not None:
            # A restricted search is exact over just those rows.
            allowed = np.asarray(sorted(self.rows_of_documents(list(document_ids))), dtype=np.int64)
            if len(allowed) == 0:
                return []
            scores = np.asarray(self.embeddings[allowed]) @ query_vector
            order = np.argsort(-scores, kind="stable")[:k]
            return [(int(allowed[i]), float(scores[i])) for i in order]
        query = np.ascontiguousarray(query_vector, dtype=np.float32).reshape(1, -1)
        if self.manifest.index_type not in COMPRESSED_INDEX_TYPES:
            with faiss_thread_scope():
                scores_2d, ids_2d = self.index.search(query, min(k, self.index.ntotal))
            return [(int(i), float(s)) for i, s in zip(ids_2d[0], scores_2d[0], strict=True) if i >= 0]
        shortlist_k = min(k * max(self.rerank_factor, 1), self.index.ntotal)
        # Search parameters travel with the call, so the shared index object is never mutated.
        params = None
        if self.nprobe > 0:
            params = faiss.SearchParametersIVF()
            params.nprobe = self.nprobe
        with faiss_thread_scope():
            _, ids_2d = self.index.search(query, shortlist_k, params=params)
        return exact_rerank(self.embeddings, ids_2d[0], query[0], k)

    def sparse(self, query: str, k: int, document_ids: Sequence[str] | None = None) -> Hits:
        return self.bm25.search(query, k, document_ids)

    def chunks_by_rows(self, rows: Sequence[int]) -> dict[int, Chunk]:
        if not rows:
            return {}
        marks = ",".join("?" * len(rows))
        result = self._query(
            f'SELECT row, id, doc_id, seq, start, "end", text, {self._columns[1]} FROM chunks '
            f"WHERE row IN ({marks})",
            [int(r) for r in rows],
        )
        return {r[0]: _chunk(r) for r in result}

    def chunk_texts(self) -> list[tuple[int, str]]:
        return [(r[0], r[1]) for r in self._query("SELECT row, text FROM chunks ORDER BY row")]

    def chunks_of(self, doc_id: str) -> list[tuple[int, Chunk]]:
        rows = self._query(
            f'SELECT row, id, doc_id, seq, start, "end", text, {self._columns[1]} FROM chunks '
            "WHERE doc_id = ? ORDER BY seq",
            [doc_id],
        )
        return [(r[0], _chunk(r)) for r in rows]

    def rows_of_documents(self, doc_ids: Sequence[str]) -> list[int]:
        if not doc_ids:
            return []
        marks = ",".join("?" * len(doc_ids))
        return [r[0] for r in self._query(f"SELECT row FROM chunks WHERE doc_id IN ({marks})", list(doc_ids))]

    def document(self, doc_id: str) -> Document | None:
        rows = self._query(
            f"SELECT id, text, title, content_hash, date, source, pages, {self._columns[0]} FROM documents "
            "WHERE id = ?",
            [doc_id],
        )
        if not rows:
            return None
        r = rows[0]
        pages = tuple(PageSpan(**p) for p in json.loads(r[6]))
        return Document(
            id=r[0],
            text=r[1],
            title=r[2],
            content_hash=r[3],
            date=r[4],
            source=r[5],
            pages=pages,
            sections=sections_from(json.loads(r[7])),
        )

    def documents(self) -> list[Document]:
        ids = [r[0] for r in self._query("SELECT id FROM documents ORDER BY id")]
        return [doc for doc in (self.document(i) for i in ids) if doc is not None]

    def titles(self, doc_ids: Iterable[str]) -> dict[str, str]:
        ids = list(doc_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return {
            r[0]: r[1] for r in self._query(f"SELECT id, title FROM documents WHERE id IN ({marks})", ids)
        }

    def document_infos(self, offset: int = 0, limit: int | None = None) -> list[DocumentInfo]:
        rows = self._query(
            "SELECT id, title, date, content_hash, chunk_count, length(text), source, pages "
            "FROM documents ORDER BY id LIMIT ? OFFSET ?",
            [-1 if limit is None else limit, offset],
        )
        return [
            DocumentInfo(
                id=r[0],
                title=r[1],
                date=r[2],
                content_hash=r[3],
                chunk_count=r[4],
                length=r[5],
                source=r[6],
                pages=tuple(PageSpan(**p) for p in json.loads(r[7])),
            )
            for r in rows
        ]

    def document_count(self) -> int:
        return int(self._query("SELECT count(*) FROM documents")[0][0])


def _chunk(r: Sequence[Any]) -> Chunk:
    """A chunk from (row, id, doc_id, seq, start, end, text, section JSON)."""
    return Chunk(
        id=r[1], doc_id=r[2], seq=r[3], start=r[4], end=r[5], text=r[6], section=tuple(json.loads(r[7]))
    )


def _read_manifest(directory: Path, root: Path) -> Manifest:
    try:
        data = json.loads((directory / MANIFEST).read_bytes())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {k: v for k, v in data.items() if k in Manifest.__dataclass_fields__}
        return MANIFEST_ADAPTER.validate_python(known)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise _damaged(root, f"unreadable {MANIFEST}") from exc


def _load_vectors(directory: Path, manifest: Manifest, root: Path) -> tuple[faiss.Index, np.ndarray]:
    # Each file holds every vector (float32, or one byte a dimension in a compressed index); a
    # shorter file is truncated, and FAISS is not handed a file whose header promises more than there is.
    faiss_bytes_per_value = 1 if manifest.index_type in COMPRESSED_INDEX_TYPES else 4
    minimum_sizes = {
        FAISS_FILE: faiss_bytes_per_value * manifest.dimension * manifest.chunk_count,
        EMBEDDINGS_FILE: 4 * manifest.dimension * manifest.chunk_count,
    }
    for name, minimum in minimum_sizes.items():
        if (directory / name).stat().st_size < minimum:
            raise _damaged(root, f"{name} is truncated")
    try:
        index = faiss.read_index(str(directory / FAISS_FILE))
    except Exception as exc:  # FAISS reports every kind of bad file as RuntimeError with a C++ trace
        raise _damaged(root, f"{FAISS_FILE} cannot be read") from exc
    try:
        embeddings = np.load(directory / EMBEDDINGS_FILE, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # NumPy raises ValueError, EOFError, OSError... for a bad .npy file
        raise _damaged(root, f"{EMBEDDINGS_FILE} cannot be read") from exc
    if index.ntotal != manifest.chunk_count or index.d != manifest.dimension:
        raise _damaged(root, f"{FAISS_FILE} does not match the manifest")
    if embeddings.shape != (manifest.chunk_count, manifest.dimension) or embeddings.dtype != np.float32:
        raise _damaged(root, f"{EMBEDDINGS_FILE} does not match the manifest")
    return index, embeddings


class LocalStore:
    """The embedded default: one index root on this machine's disk, versions swapped by renaming."""

    def __init__(
        self,
        root: Path,
        index_type: str = "auto",
        ann_threshold: int = 50_000,
        rerank_factor: int = 4,
        nprobe: int = 0,
    ) -> None:
        self.root = root
        self.index_type = index_type
        self.ann_threshold = ann_threshold
        self.rerank_factor = rerank_factor
        self.nprobe = nprobe

    def describe(self) -> str:
        return str(self.root)

    def live_version(self) -> str | None:
        try:
            directory = current_version_dir(self.root)
        except CiteqaError:
            return None
        return directory.name if directory is not None else None

    def open(self, expected: IndexSpec | None = None, verify: bool = True) -> IndexSnapshot:
        return IndexSnapshot.open(self.root, expected, verify, self.rerank_factor, self.nprobe)

    def write_lock(self) -> contextlib.AbstractContextManager[None]:
        return write_lock(self.root)

    def _live_manifest_field(self, name: str) -> Any:
        """One field of the live manifest, read alone (crash recovery runs before any index is loaded);
        None when there is no index."""
        directory = current_version_dir(self.root)
        if directory is None:
            return None
        try:
            return json.loads((directory / MANIFEST).read_text(encoding="utf-8"))[name]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise _damaged(self.root, f"{MANIFEST} unreadable") from exc

    def indexed_hash(self, doc_id: str) -> str | None:
        hashes = self._live_manifest_field("documents")
        value = hashes.get(doc_id) if isinstance(hashes, dict) else None
        return str(value) if value is not None else None

    def deleted_ids(self) -> set[str]:
        """Kept in the live manifest's `extra` and carried from version to version."""
        try:
            extra = self._live_manifest_field("extra")
        except CiteqaError:
            return set()  # a damaged index is rebuilt; the data directory's deleted.json still holds
        deleted = extra.get(DELETED_KEY) if isinstance(extra, dict) else None
        return {str(d) for d in deleted} if isinstance(deleted, list) else set()

    def previous(self, spec: IndexSpec) -> IndexSnapshot | None:
        try:
            if current_version_dir(self.root) is None:
                return None
            previous = self.open(expected=spec)
        except IndexMismatchError as exc:
            log.warning("rebuilding from scratch: %s", exc)
            return None
        except CiteqaError as exc:
            log.warning("previous index unusable, rebuilding from scratch: %s", exc)
            return None
        if previous.manifest.chunking != spec.chunking:
            log.warning("chunking settings changed: re-embedding every document")
            previous.close()
            return None
        return previous

    def write(
        self,
        updates: Sequence[DocumentUpdate],
        deletes: Sequence[str],
        spec: IndexSpec,
        previous: StoreSnapshot | None,
        replace_all: bool = False,
        record_deleted: Sequence[str] = (),
    ) -> Manifest:
        """Every version is a complete copy: kept documents' chunks and vectors are copied from `previous`."""
        if previous is not None and not isinstance(previous, IndexSnapshot):
            raise TypeError("the local store copies kept documents from a local snapshot")
        fresh = {u.document.id: u for u in updates}
        deleted = (self.deleted_ids() | set(record_deleted)) - set(fresh)
        dropped = set(deletes) | set(fresh)
        kept: list[Document] = []
        if previous is not None and not replace_all:
            kept = [d for d in previous.documents() if d.id not in dropped]
        documents = sorted([*kept, *(u.document for u in updates)], key=lambda d: d.id)
        chunks_by_doc: dict[str, list[Chunk]] = {}
        blocks: list[np.ndarray] = []
        for doc in documents:
            if doc.id in fresh:
                chunks_by_doc[doc.id] = fresh[doc.id].chunks
                vectors = np.asarray(fresh[doc.id].embeddings, dtype=np.float32)
                blocks.append(vectors.reshape(-1, spec.dimension))
            else:
                assert previous is not None
                rows_and_chunks = previous.chunks_of(doc.id)
                chunks_by_doc[doc.id] = [c for _, c in rows_and_chunks]
                blocks.append(np.asarray(previous.embeddings[[r for r, _ in rows_and_chunks]]))
        embeddings = np.concatenate(blocks) if blocks else np.zeros((0, spec.dimension), dtype=np.float32)
        return IndexWriter(self.root).write(
            documents,
            chunks_by_doc,
            embeddings,
            spec,
            self.index_type,
            self.ann_threshold,
            extra={DELETED_KEY: sorted(deleted)} if deleted else None,
        )
