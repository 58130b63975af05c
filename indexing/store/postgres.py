"""The Postgres store: documents, chunks and pgvector embeddings shared by any number of service replicas.

Every update is one transaction that also appends a row to `citeqa_versions`; readers never see half an
update and a crashed writer leaves nothing behind. Dense search runs in the database (inner product:
HNSW, or IVF for a large bulk load, as the local store does). BM25 runs in a tantivy index on each
replica's disk, brought in step with the database's version before a snapshot is served: the versions
table lists the documents each version touched, so catching up re-indexes only those (a rebuild, or a
replica that has none yet, re-indexes everything).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import shutil
import threading
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from citeqa.indexing.durable import write_atomically
from citeqa.indexing.errors import IndexNotFoundError, StoreUnavailableError
from citeqa.indexing.store.base import (
    FORMAT_VERSION,
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
from citeqa.indexing.store.faiss_index import ivf_list_count
from citeqa.indexing.types import Chunk, Document, DocumentInfo, PageSpan
from pgvector.psycopg import register_vector
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
# Each entry brings the schema from its index to the next version; all run in one transaction.
_MIGRATIONS = [
    """
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE citeqa_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE citeqa_versions (
        id BIGSERIAL PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        full_rebuild BOOLEAN NOT NULL, upserted TEXT[] NOT NULL, deleted TEXT[] NOT NULL
    );
    CREATE TABLE citeqa_documents (
        id TEXT PRIMARY KEY, title TEXT NOT NULL, date TEXT, content_hash TEXT NOT NULL,
        source TEXT, pages JSONB NOT NULL, text TEXT NOT NULL, chunk_count INTEGER NOT NULL
    );
    """,
    # Deletions made through the service, until the document is written again: `citeqa index` in any
    # replica's data directory must not bring back a deleted upload whose file that directory still has.
    """
    CREATE TABLE citeqa_deletions (id TEXT PRIMARY KEY, deleted_at TIMESTAMPTZ NOT NULL DEFAULT now());
    """,
    # 3: section paths. Existing rows read as having none; a chunks table made by a later rebuild has the
    # column from _CHUNKS_TABLE.
    """
    ALTER TABLE citeqa_documents ADD COLUMN IF NOT EXISTS sections JSONB NOT NULL DEFAULT '[]';
    ALTER TABLE IF EXISTS citeqa_chunks ADD COLUMN IF NOT EXISTS section TEXT[] NOT NULL DEFAULT '{}';
    """,
]
# The chunks table is (re)made by a full rebuild, since its vector column has the embedder's dimension.
_CHUNKS_TABLE = """
DROP TABLE IF EXISTS citeqa_chunks;
CREATE TABLE citeqa_chunks (
    row BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL,
    doc_id TEXT NOT NULL REFERENCES citeqa_documents(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL,
    embedding vector({dimension}) NOT NULL, section TEXT[] NOT NULL DEFAULT '{{}}'
);
CREATE INDEX citeqa_chunks_doc ON citeqa_chunks (doc_id, seq);
"""
# The dense index is built after a bulk load (much faster than growing it row by row) and kept up by later
# inserts. Below `ann_threshold` chunks it is HNSW, which grows well from an empty table: on the
# benchmark's 100k chunks, ef_construction 128 (pgvector's default: 64) lifted recall@10 at ef_search 100
# from 0.84 to 0.92, for a build about 1.5x longer. From there it is IVF (ivfflat, exact distances in
# lists trained on the loaded rows): at 1M chunks HNSW reached only 0.748 / 0.831 / 0.898 recall@10 at
# ef_search 256 / 512 / 1000 (dense p50 11.8 / 19.8 / 30.4 ms), IVF with 2048 lists 0.963 / 0.988 /
# 0.999 at probes 8 / 16 / 32 (7.5 / 11.6 / 20.9 ms), for a 3-minute build.
_HNSW_INDEX = (
    "CREATE INDEX citeqa_chunks_ann ON citeqa_chunks USING hnsw (embedding vector_ip_ops) "
    "WITH (m = 16, ef_construction = 128)"
)
_IVF_INDEX = (
    "CREATE INDEX citeqa_chunks_ann ON citeqa_chunks USING ivfflat (embedding vector_ip_ops) "
    "WITH (lists = {lists})"
)
_LOCK_KEY = zlib.crc32(b"citeqa writer")  # pg_advisory_lock key shared by every writer of this database
_MIGRATION_LOCK_KEY = zlib.crc32(b"citeqa schema")
# A replica asks the database for its version at most this often (an upload elsewhere shows within it).
VERSION_POLL_S = 0.25
# HNSW candidates kept per search (pgvector's default: 40; CITEQA_PG_EF_SEARCH). Benchmark, 100k chunks,
# recall@10 against exact / dense p50 on 2 busy cores: 100: 0.916 / 5.1 ms, 200: 0.956 / 8.8 ms,
# 400: 0.988 / 14.3 ms. Corpora loaded at 1M chunks get IVF instead (above).
EF_SEARCH = 256
ANN_THRESHOLD = 50_000  # the local store's `auto` switches to IVF at the same size
BM25_STATE = "state.json"
BM25_PREFIX = "index-"
# This replica's BM25 folder inside the index directory: its own, so that the local store's versions
# in the same directory are never taken for stale BM25 folders and deleted (they once were).
BM25_SUBDIR = "postgres-bm25"
_CHUNK_COLUMNS = 'row, id, doc_id, seq, start, "end", text, section'


class DatabaseError(StoreUnavailableError):
    """The database cannot be reached or holds something this citeqa cannot use."""


def describe_url(url: str) -> str:
    """host:port/dbname, never the password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an unparsable CITEQA_DATABASE_URL"
    return f"postgresql://{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


# How long a query waits for a connection from the pool: a server that is down answers 503 after this
# rather than psycopg's 30 s, which outlast the health checks of load balancers.
POOL_WAIT_S = 5.0


class PostgresStore:
    def __init__(
        self,
        url: str,
        bm25_dir: Path,
        build_memory: str = "1GB",
        ef_search: int = EF_SEARCH,
        ann_threshold: int = ANN_THRESHOLD,
        nprobe: int = 0,
    ) -> None:
        """Cheap: nothing connects before the first use. `bm25_dir` is this replica's BM25 folder;
        `build_memory` is the maintenance_work_mem a full rebuild gives the index build; `ef_search` the
        HNSW candidates a search keeps and `nprobe` the IVF lists it scans (0: `default_probes`), both
        recall against latency; a full rebuild of at least `ann_threshold` chunks builds IVF."""
        self.url = url
        self.bm25_dir = bm25_dir
        self.build_memory = build_memory
        self.ef_search = ef_search
        self.ann_threshold = ann_threshold
        self.nprobe = nprobe
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._polled_at = 0.0
        self._polled: str | None = None
        self._bm25: BM25Index | None = None
        self._bm25_dir_name: str | None = None

    def describe(self) -> str:
        return describe_url(self.url)

    # --- connections and schema ------------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to the database at {self.describe()}: {exc}") from exc

    def pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                with self._connect() as conn:
                    try:
                        migrate(conn)
                    except psycopg.Error as exc:  # e.g. a role that may not create the vector extension
                        raise DatabaseError(
                            f"cannot set up citeqa's tables in {self.describe()} (the role needs to create "
                            f"tables, and the vector extension must exist or be creatable): {exc}"
                        ) from exc
                pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=8,
                    timeout=POOL_WAIT_S,
                    kwargs={"autocommit": True},
                    configure=functools.partial(_configure, ef_search=self.ef_search),
                    check=ConnectionPool.check_connection,
                    open=False,
                )
                try:
                    pool.open(wait=True, timeout=10)
                except Exception as exc:
                    raise DatabaseError(
                        f"cannot connect to the database at {self.describe()}: {exc}"
                    ) from exc
                self._pool = pool
            return self._pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        pool = self.pool()
        try:
            with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:  # connection lost, server gone, pool exhausted, schema tampered with
            if isinstance(exc, psycopg.OperationalError):  # PoolTimeout is one too
                self._discard(pool)
            raise DatabaseError(f"the database at {self.describe()} failed: {exc}") from exc

    def _discard(self, pool: ConnectionPool) -> None:
        """Drop a pool that lost its server: the next call connects afresh, at once, where the pool would
        reconnect in the background with a growing back-off (21 s after a restart, measured)."""
        with self._pool_lock:
            if self._pool is pool:
                self._pool = None
        pool.close(timeout=1.0)

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    # --- versions --------------------------------------------------------------------------
    def live_version(self) -> str | None:
        now = time.monotonic()
        if now - self._polled_at >= VERSION_POLL_S:
            with self.connection() as conn:
                latest = conn.execute("SELECT max(id) FROM citeqa_versions").fetchone()
            self._polled = None if latest is None or latest[0] is None else _version_name(latest[0])
            self._polled_at = now
        return self._polled

    def indexed_hash(self, doc_id: str) -> str | None:
        with self.connection() as conn:
            row = conn.execute("SELECT content_hash FROM citeqa_documents WHERE id = %s", [doc_id]).fetchone()
        return str(row[0]) if row else None

    def deleted_ids(self) -> set[str]:
        with self.connection() as conn:
            return {str(r[0]) for r in conn.execute("SELECT id FROM citeqa_deletions").fetchall()}

    def _stored_spec(self, conn: psycopg.Connection[Any]) -> IndexSpec | None:
        row = conn.execute("SELECT value FROM citeqa_meta WHERE key = 'spec'").fetchone()
        return IndexSpec(**json.loads(row[0])) if row else None

    def _manifest(self, conn: psycopg.Connection[Any], version: int, spec: IndexSpec) -> Manifest:
        documents = dict(conn.execute("SELECT id, content_hash FROM citeqa_documents").fetchall())
        chunk_count = conn.execute("SELECT coalesce(sum(chunk_count), 0) FROM citeqa_documents").fetchone()
        lists = _ivf_lists(conn)
        return Manifest(
            format_version=FORMAT_VERSION,
            embedder=spec.embedder,
            dimension=spec.dimension,
            chunking=spec.chunking,
            index_type=f"pgvector-ivfflat-{lists}" if lists else "pgvector-hnsw",
            documents=documents,
            files={},
            chunk_count=int(chunk_count[0]) if chunk_count else 0,
            created_at=time.time(),
            version=_version_name(version),
        )

    def _snapshot(self, expected: IndexSpec | None, with_bm25: bool) -> PostgresSnapshot:
        with self.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            latest = conn.execute("SELECT max(id) FROM citeqa_versions").fetchone()
            spec = self._stored_spec(conn)
            if latest is None or latest[0] is None or spec is None:
                raise IndexNotFoundError(
                    f"no index in the database at {self.describe()}; build one with `citeqa index`"
                )
            manifest = self._manifest(conn, int(latest[0]), spec)
            lists = _ivf_lists(conn)
        if expected is not None:
            check_compatible(manifest, expected, self.describe())
        bm25 = self.sync_bm25() if with_bm25 else None
        return PostgresSnapshot(self, manifest, bm25, lists)

    def open(self, expected: IndexSpec | None = None, verify: bool = True) -> PostgresSnapshot:
        """`verify` is the local store's checksum pass; the database keeps its own data consistent."""
        return self._snapshot(expected, with_bm25=True)

    def previous(self, spec: IndexSpec) -> PostgresSnapshot | None:
        with self.connection() as conn:
            stored = self._stored_spec(conn)
        if stored != spec:
            if stored is not None:
                log.warning("the database was indexed with %s; re-embedding every document", stored)
            return None
        try:
            return self._snapshot(spec, with_bm25=False)
        except IndexNotFoundError:
            return None

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """One writer at a time across replicas; a writer that dies drops the lock with its connection."""
        with self._connect() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", [_LOCK_KEY])
            try:
                yield
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])

    def write(
        self,
        updates: Sequence[DocumentUpdate],
        deletes: Sequence[str],
        spec: IndexSpec,
        previous: StoreSnapshot | None,
        replace_all: bool = False,
        record_deleted: Sequence[str] = (),
    ) -> Manifest:
        upserted = [u.document.id for u in updates]
        with self.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM citeqa_deletions WHERE id = ANY(%s::text[])", [upserted])
            if record_deleted:
                conn.execute(
                    "INSERT INTO citeqa_deletions (id) SELECT unnest(%s::text[]) "
                    "ON CONFLICT (id) DO UPDATE SET deleted_at = now()",
                    [[d for d in record_deleted if d not in upserted]],
                )
            if replace_all:
                # Dropping the chunks first spares a row-by-row cascade over every old chunk.
                conn.execute(_CHUNKS_TABLE.format(dimension=int(spec.dimension)))
                conn.execute("DELETE FROM citeqa_documents")
                conn.execute(
                    "INSERT INTO citeqa_meta VALUES ('spec', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [json.dumps(asdict(spec), sort_keys=True)],
                )
            else:
                conn.execute(
                    "DELETE FROM citeqa_documents WHERE id = ANY(%s::text[])", [[*deletes, *upserted]]
                )
            _insert(conn, updates)
            if replace_all:
                # The graph of 100k 384-d vectors outgrows the 64 MB default, and building it then crawls.
                conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", [self.build_memory])
                rows = sum(len(u.chunks) for u in updates)
                lists = ivf_list_count(rows) if rows >= self.ann_threshold else 0
                conn.execute(_IVF_INDEX.format(lists=lists) if lists else _HNSW_INDEX)
                conn.execute(
                    "INSERT INTO citeqa_meta VALUES ('ann', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [json.dumps({"lists": lists})],
                )
            version = conn.execute(
                "INSERT INTO citeqa_versions (full_rebuild, upserted, deleted) "
                "VALUES (%s, %s, %s) RETURNING id",
                [replace_all, upserted, list(deletes)],
            ).fetchone()
            assert version is not None
            manifest = self._manifest(conn, int(version[0]), spec)
            crash_point("pg_before_commit", upserted)
        self._polled_at = 0.0  # the next query looks again, and finds this version
        return manifest

    # --- BM25 ------------------------------------------------------------------------------
    def sync_bm25(self) -> BM25Index:
        """This replica's tantivy index, brought to the database's latest version."""
        self.bm25_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.bm25_dir / ".lock"), self.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            instance = conn.execute("SELECT value FROM citeqa_meta WHERE key = 'instance'").fetchone()
            latest = conn.execute("SELECT max(id) FROM citeqa_versions").fetchone()
            target = int(latest[0]) if latest and latest[0] is not None else 0
            state = self._read_state()
            same_database = instance is not None and state.get("instance") == instance[0]
            synced = int(state.get("version", -1)) if same_database and state.get("dir") else -1
            directory = self.bm25_dir / str(state.get("dir", ""))
            if synced >= 0 and directory.is_dir() and synced <= target:
                changes = conn.execute(
                    "SELECT full_rebuild, upserted, deleted FROM citeqa_versions WHERE id > %s", [synced]
                ).fetchall()
                if not any(full for full, _, _ in changes):
                    touched = sorted({d for _, up, dels in changes for d in (*up, *dels)})
                    try:
                        bm25 = self._open_bm25(directory)
                        if touched:
                            bm25.apply(touched, _chunk_entries(conn, touched))
                    except (OSError, ValueError) as exc:  # tantivy's errors for a damaged folder
                        log.warning("rebuilding this replica's BM25 index at %s: %s", directory, exc)
                    else:
                        self._write_state({**state, "version": target})
                        return bm25
            fresh = f"{BM25_PREFIX}{uuid.uuid4().hex[:12]}"
            bm25 = BM25Index.create(self.bm25_dir / fresh, _chunk_entries(conn, None))
            self._write_state({"instance": instance[0] if instance else "", "version": target, "dir": fresh})
            for entry in self.bm25_dir.iterdir():
                # Only folders this store made: whatever else lies here is not its to delete.
                if entry.is_dir() and entry.name.startswith(BM25_PREFIX) and entry.name != fresh:
                    shutil.rmtree(entry, ignore_errors=True)  # open readers keep their mapped files
            self._bm25, self._bm25_dir_name = bm25, fresh
            return bm25

    def _open_bm25(self, directory: Path) -> BM25Index:
        if self._bm25 is None or self._bm25_dir_name != directory.name:
            self._bm25, self._bm25_dir_name = BM25Index.open(directory), directory.name
        else:
            self._bm25.refresh()  # another process on this folder may have committed to it
        return self._bm25

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads((self.bm25_dir / BM25_STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self, state: dict[str, Any]) -> None:
        write_atomically(self.bm25_dir / BM25_STATE, json.dumps(state).encode("utf-8"))


def migrate(conn: psycopg.Connection[Any]) -> None:
    """Create or bring the schema up to SCHEMA_VERSION; concurrent first users wait on one another."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK_KEY])
        exists = conn.execute("SELECT to_regclass('citeqa_meta') IS NOT NULL").fetchone()
        current = 0
        if exists and exists[0]:
            row = conn.execute("SELECT value FROM citeqa_meta WHERE key = 'schema_version'").fetchone()
            current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise DatabaseError(
                f"the database schema is version {current}, newer than this citeqa "
                f"({SCHEMA_VERSION}): upgrade citeqa"
            )
        for step in _MIGRATIONS[current:]:
            conn.execute(step)
        if current < SCHEMA_VERSION:
            conn.execute(
                "INSERT INTO citeqa_meta VALUES ('schema_version', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [str(SCHEMA_VERSION)],
            )
            conn.execute(
                "INSERT INTO citeqa_meta VALUES ('instance', %s) ON CONFLICT (key) DO NOTHING",
                [uuid.uuid4().hex],
            )


def _ivf_lists(conn: psycopg.Connection[Any]) -> int:
    """The IVF index's list count; 0 for HNSW (and for databases from before IVF, which have no row)."""
    ann = conn.execute("SELECT value FROM citeqa_meta WHERE key = 'ann'").fetchone()
    return int(json.loads(ann[0]).get("lists", 0)) if ann else 0


def _configure(conn: psycopg.Connection[Any], ef_search: int) -> None:
    """Each pooled connection: numpy vectors in and out, and the search settings for its whole session."""
    register_vector(conn)
    conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
    # A filtered search keeps walking the graph, or scanning lists, until enough rows pass the filter
    # (pgvector >= 0.8).
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    conn.execute("SET ivfflat.iterative_scan = relaxed_order")


def default_probes(lists: int) -> int:
    """IVF lists a Postgres search scans: 16 of 2048 at 1M chunks (recall@10 0.988, dense p50 11.6 ms)."""
    return min(lists, max(16, lists // 128))


def _version_name(version: int) -> str:
    return f"pg-{version}"


def _insert(conn: psycopg.Connection[Any], updates: Sequence[DocumentUpdate]) -> None:
    if not updates:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO citeqa_documents VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    d.id,
                    d.title,
                    d.date,
                    d.content_hash,
                    d.source,
                    json.dumps([asdict(p) for p in d.pages]),
                    d.text,
                    len(u.chunks),
                    sections_json(d.sections),
                )
                for u in updates
                for d in [u.document]
            ],
        )
        # Binary COPY: the fastest way in for many vectors.
        with cur.copy(
            'COPY citeqa_chunks (id, doc_id, seq, start, "end", text, embedding, section) '
            "FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["text", "text", "int4", "int4", "int4", "text", "vector", "text[]"])
            for u in updates:
                vectors = np.asarray(u.embeddings, dtype=np.float32)
                for c, vector in zip(u.chunks, vectors, strict=True):
                    copy.write_row((c.id, c.doc_id, c.seq, c.start, c.end, c.text, vector, list(c.section)))


def _chunk_entries(
    conn: psycopg.Connection[Any], doc_ids: Sequence[str] | None
) -> Iterator[tuple[int, str, str]]:
    """(row, doc_id, text) of the given documents' chunks (all chunks for None), streamed."""
    sql = "SELECT row, doc_id, text FROM citeqa_chunks"
    params: list[Any] = []
    if doc_ids is not None:
        sql += " WHERE doc_id = ANY(%s::text[])"
        params = [list(doc_ids)]
    exists = conn.execute("SELECT to_regclass('citeqa_chunks') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return
    with conn.cursor(name=f"chunks_{uuid.uuid4().hex[:8]}") as cur:  # server-side: 1M texts need not fit
        cur.itersize = 5000
        cur.execute(sql, params)
        for row, doc_id, text in cur:
            yield int(row), doc_id, text


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _chunk(r: Sequence[Any]) -> Chunk:
    return Chunk(id=r[1], doc_id=r[2], seq=r[3], start=r[4], end=r[5], text=r[6], section=tuple(r[7] or ()))


class PostgresSnapshot:
    """A version of the shared store: its manifest and this replica's BM25 index at that version.

    Reads go to the database, so they see committed updates made after the snapshot was taken (never
    half of one); a row deleted since a search is simply not found.
    """

    def __init__(
        self, store: PostgresStore, manifest: Manifest, bm25: BM25Index | None, ivf_lists: int = 0
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.bm25 = bm25
        self.ivf_lists = ivf_lists  # 0: the dense index is HNSW

    @property
    def version(self) -> str:
        return self.manifest.version

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.store.connection() as conn:
            return conn.execute(sql, list(params)).fetchall()

    def dense(self, query_vector: np.ndarray, k: int, document_ids: Sequence[str] | None = None) -> Hits:
        if k <= 0 or (document_ids is not None and not document_ids):
            return []
        lists = self.ivf_lists
        if not lists:
            k = min(k, self.store.ef_search)  # HNSW returns at most ef_search rows; the retriever asks 30
        vector = np.asarray(query_vector, dtype=np.float32)
        where = "WHERE doc_id = ANY(%s::text[])" if document_ids is not None else ""
        params: list[Any] = (
            [vector] + ([list(document_ids)] if document_ids is not None else []) + [vector, k]
        )
        with self.store.connection() as conn, conn.transaction() if lists else contextlib.nullcontext():
            if lists:  # the lists scanned depend on this version's index, so they are set per search
                probes = self.store.nprobe or default_probes(lists)
                conn.execute(f"SET LOCAL ivfflat.probes = {int(min(probes, lists))}")
            rows = conn.execute(
                f"SELECT row, -(embedding <#> %s) FROM citeqa_chunks {where} "
                "ORDER BY embedding <#> %s LIMIT %s",
                params,
            ).fetchall()
        hits = [(int(r), float(s)) for r, s in rows]
        return sorted(hits, key=lambda h: (-h[1], h[0]))

    def sparse(self, query: str, k: int, document_ids: Sequence[str] | None = None) -> Hits:
        if self.bm25 is None:
            self.bm25 = self.store.sync_bm25()
        return self.bm25.search(query, k, document_ids)

    def chunks_by_rows(self, rows: Sequence[int]) -> dict[int, Chunk]:
        if not rows:
            return {}
        result = self._query(
            f"SELECT {_CHUNK_COLUMNS} FROM citeqa_chunks WHERE row = ANY(%s::bigint[])",
            [[int(r) for r in rows]],
        )
        return {int(r[0]): _chunk(r) for r in result}

    def chunks_of(self, doc_id: str) -> list[tuple[int, Chunk]]:
        rows = self._query(
            f"SELECT {_CHUNK_COLUMNS} FROM citeqa_chunks WHERE doc_id = %s ORDER BY seq",
            [doc_id],
        )
        return [(int(r[0]), _chunk(r)) for r in rows]

    def document(self, doc_id: str) -> Document | None:
        rows = self._query(
            "SELECT id, text, title, content_hash, date, source, pages, sections FROM citeqa_documents "
            "WHERE id = %s",
            [doc_id],
        )
        return _document(rows[0]) if rows else None

    def documents(self) -> list[Document]:
        rows = self._query(
            "SELECT id, text, title, content_hash, date, source, pages, sections FROM citeqa_documents "
            "ORDER BY id"
        )
        return [_document(r) for r in rows]

    def titles(self, doc_ids: Iterable[str]) -> dict[str, str]:
        ids = list(doc_ids)
        if not ids:
            return {}
        rows = self._query("SELECT id, title FROM citeqa_documents WHERE id = ANY(%s::text[])", [ids])
        return {r[0]: r[1] for r in rows}

    def document_infos(self, offset: int = 0, limit: int | None = None) -> list[DocumentInfo]:
        rows = self._query(
            "SELECT id, title, date, content_hash, chunk_count, length(text), source, pages "
            "FROM citeqa_documents ORDER BY id LIMIT %s OFFSET %s",
            [limit, offset],
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
                pages=tuple(PageSpan(**p) for p in r[7]),
            )
            for r in rows
        ]

    def document_count(self) -> int:
        return int(self._query("SELECT count(*) FROM citeqa_documents")[0][0])

    def close(self) -> None:
        """The connections belong to the store's pool, shared by every snapshot."""


def _document(r: Sequence[Any]) -> Document:
    return Document(
        id=r[0],
        text=r[1],
        title=r[2],
        content_hash=r[3],
        date=r[4],
        source=r[5],
        pages=tuple(PageSpan(**p) for p in r[6]),
        sections=sections_from(r[7]),
    )
