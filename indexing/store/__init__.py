"""Where the index lives: the Store seam (base), the local files (local) and Postgres (postgres)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeqa.indexing.store.base import (
    CRASH_AT_ENV,
    FORMAT_VERSION,
    DocumentUpdate,
    IndexSpec,
    Manifest,
    Store,
    StoreSnapshot,
    check_compatible,
)

if TYPE_CHECKING:
    from citeqa.indexing.store.bm25 import BM25Index, bm25_tokens
    from citeqa.indexing.store.faiss_index import (
        COMPRESSED_INDEX_TYPES,
        INDEX_TYPES,
        build_faiss_index,
        set_faiss_threads,
    )
    from citeqa.indexing.store.local import (
        BM25_DIR,
        CURRENT_FILE,
        DATA_FILES,
        EMBEDDINGS_FILE,
        FAISS_FILE,
        MANIFEST,
        SQLITE_FILE,
        IndexSnapshot,
        IndexWriter,
        LocalStore,
        current_version_dir,
        write_lock,
    )

# Loaded on first use (PEP 562): the local store imports FAISS and BM25 tantivy, which the command line
# must not pay for to print its help or an error (tests/test_cli_startup.py).
_LAZY = {
    "BM25Index": "bm25",
    "bm25_tokens": "bm25",
    **{
        name: "faiss_index"
        for name in ("COMPRESSED_INDEX_TYPES", "INDEX_TYPES", "build_faiss_index", "set_faiss_threads")
    },
    **{
        name: "local"
        for name in (
            "BM25_DIR",
            "CURRENT_FILE",
            "DATA_FILES",
            "EMBEDDINGS_FILE",
            "FAISS_FILE",
            "MANIFEST",
            "SQLITE_FILE",
            "IndexSnapshot",
            "IndexWriter",
            "LocalStore",
            "current_version_dir",
            "write_lock",
        )
    },
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)


__all__ = [
    "BM25_DIR",
    "COMPRESSED_INDEX_TYPES",
    "CRASH_AT_ENV",
    "CURRENT_FILE",
    "DATA_FILES",
    "EMBEDDINGS_FILE",
    "FAISS_FILE",
    "FORMAT_VERSION",
    "INDEX_TYPES",
    "MANIFEST",
    "SQLITE_FILE",
    "BM25Index",
    "DocumentUpdate",
    "IndexSnapshot",
    "IndexSpec",
    "IndexWriter",
    "LocalStore",
    "Manifest",
    "Store",
    "StoreSnapshot",
    "bm25_tokens",
    "build_faiss_index",
    "check_compatible",
    "current_version_dir",
    "make_store",
    "set_faiss_threads",
    "write_lock",
]


def make_store(
    index_dir: Path,
    database_url: str | None = None,
    index_type: str = "auto",
    ann_threshold: int = 50_000,
    rerank_factor: int = 4,
    nprobe: int = 0,
    pg_ef_search: int = 256,
) -> Store:
    """Postgres when a database URL is given (its BM25 side then lives in `index_dir`/postgres-bm25, beside
    and apart from a local index there), else local files."""
    if database_url:
        from citeqa.indexing.store.postgres import BM25_SUBDIR, PostgresStore  # psycopg loads only here

        return PostgresStore(
            database_url,
            index_dir / BM25_SUBDIR,
            ef_search=pg_ef_search,
            ann_threshold=ann_threshold,
            nprobe=nprobe,
        )
    from citeqa.indexing.store.local import LocalStore

    return LocalStore(index_dir, index_type, ann_threshold, rerank_factor, nprobe)
