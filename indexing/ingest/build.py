"""Build or update the index: chunk and embed only what changed, then write a new version to the store."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from citeqa.indexing.embedding import TextEmbedder
from citeqa.indexing.errors import CiteqaError, EmptyCorpusError
from citeqa.indexing.ingest.chunking import Chunker, ChunkingConfig
from citeqa.indexing.ingest.loaders import LOADER_VERSION, LoadProblem
from citeqa.indexing.ingest.sources import DocumentSources
from citeqa.indexing.store import DocumentUpdate, IndexSpec, LocalStore, Manifest, Store, StoreSnapshot
from citeqa.indexing.types import Chunk, Document

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    manifest: Manifest
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    embedded_chunks: int = 0
    problems: list[LoadProblem] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)  # folder documents deleted through the service
    shadowed: list[str] = field(default_factory=list)  # folder documents an upload replaces
    seconds: float = 0.0

    @property
    def document_count(self) -> int:
        return len(self.manifest.documents)


RESTORE_HINT = "`citeqa index --restore-deleted` brings them back"


def check_corpus_folder(corpus: Path) -> None:
    """One line saying why `corpus` is not a folder to index."""
    if corpus.is_file():
        raise EmptyCorpusError(f"{corpus} is a file; index the folder that holds it")
    if not corpus.is_dir():
        raise EmptyCorpusError(f"corpus folder {corpus} does not exist")


class IndexBuilder:
    """Turns documents into a new live version of a store, embedding only what changed."""

    def __init__(
        self,
        store: Store | Path,
        embedder: TextEmbedder,
        chunking: ChunkingConfig,
        index_type: str = "auto",
        ann_threshold: int = 50_000,
        show_progress: bool = False,
    ) -> None:
        """A path stands for the local store at that index root."""
        if isinstance(store, Path):
            store = LocalStore(store, index_type, ann_threshold)
        self.store: Store = store
        self.embedder = embedder
        self.chunking = chunking
        self.show_progress = show_progress

    @property
    def root(self) -> Path:
        assert isinstance(self.store, LocalStore), "only the local store has an index root"
        return self.store.root

    def spec(self) -> IndexSpec:
        return IndexSpec(
            embedder=self.embedder.name,
            dimension=self.embedder.dimension,
            chunking={
                "max_tokens": self.chunking.max_tokens,
                "overlap_tokens": self.chunking.overlap_tokens,
                # What the loaders make of a file: when it changes, unchanged files are read again.
                "loaders": LOADER_VERSION,
            },
        )

    def check_chunk_budget(self) -> None:
        if self.chunking.max_tokens > self.embedder.max_tokens:
            raise CiteqaError(
                f"chunk size {self.chunking.max_tokens} tokens exceeds what the embedder reads "
                f"({self.embedder.max_tokens}); lower CITEQA_CHUNK_TOKENS"
            )

    def build_from_sources(
        self,
        sources: DocumentSources,
        rebuild: bool = False,
        keep_uploads: bool = False,
        restore_deleted: bool = False,
    ) -> BuildReport:
        """Index the folder with the service's uploads and deletions applied; `restore_deleted` brings back
        the folder's documents deleted through the service."""
        corpus = sources.corpus_dir
        check_corpus_folder(corpus)
        # Deletions made through any replica, so that an upload file another data directory kept (or a
        # folder document deleted through another replica) does not come back.
        store_deleted = self.store.deleted_ids()
        deleted_in_folder = sources.withheld(store_deleted)
        restore, withheld = (deleted_in_folder, []) if restore_deleted else ([], deleted_in_folder)
        loaded = sources.load(store_deleted, restore=restore)
        if not loaded.documents:
            detail = f"; {len(loaded.problems)} files skipped" if loaded.problems else ""
            if withheld:
                detail += f"; {len(withheld)} deleted through the service ({RESTORE_HINT})"
            raise EmptyCorpusError(f"no loadable documents in {corpus}{detail}")
        report = self.build(loaded.documents, rebuild=rebuild, keep_uploads=keep_uploads)
        report.problems = loaded.problems
        report.withheld = withheld
        report.shadowed = sources.shadowed()
        return report

    def build(
        self, documents: Sequence[Document], rebuild: bool = False, keep_uploads: bool = False
    ) -> BuildReport:
        """Make the index hold exactly `documents`; with `keep_uploads`, also the documents uploaded through
        the service (no source file), which a shared store holds for every replica."""
        ids = [d.id for d in documents]
        if len(set(ids)) != len(ids):
            raise CiteqaError("duplicate document ids in the corpus")
        return self._write(documents, [], exact=True, rebuild=rebuild, keep_uploads=keep_uploads)

    def update(self, upserts: Sequence[Document], deletes: Sequence[str] = ()) -> BuildReport:
        """Add or replace `upserts` and drop `deletes`, keeping every other document of the live version."""
        return self._write(upserts, deletes, exact=False, rebuild=False)

    def _write(
        self,
        documents: Sequence[Document],
        deletes: Sequence[str],
        exact: bool,
        rebuild: bool,
        keep_uploads: bool = False,
    ) -> BuildReport:
        started = time.perf_counter()
        self.check_chunk_budget()
        spec = self.spec()
        # Deletes asked for (an update), not files gone from the folder (a build): the store records them,
        # so that no later build brings them back; kept even when the update becomes a rebuild below.
        asked_deletes = [] if exact else [d for d in deletes if d not in {doc.id for doc in documents}]
        # The lock covers reading the live version, embedding and writing, so that concurrent writers
        # (threads, processes or replicas) each build on the other's result and lose nothing.
        with self.store.write_lock():
            previous = None if rebuild else self.store.previous(spec)
            try:
                if previous is None and not exact:
                    # The live version cannot be built on (other embedder or chunking, damaged):
                    # re-embed the documents it still lists, with the update applied.
                    kept = {d.id: d for d in self._readable_documents() if d.id not in set(deletes)}
                    kept.update({d.id: d for d in documents})
                    documents, deletes, exact = list(kept.values()), [], True
                elif exact and keep_uploads:
                    documents = [*documents, *self._service_uploads({d.id for d in documents})]
                ordered = sorted(documents, key=lambda d: d.id)
                report = self._write_locked(ordered, deletes, exact, previous, spec, asked_deletes)
            finally:
                if previous is not None:
                    previous.close()
        report.seconds = time.perf_counter() - started
        return report

    def _open_live(self) -> StoreSnapshot | None:
        """The live version, unverified, or None when there is none or it cannot be read."""
        try:
            if self.store.live_version() is None:
                return None
            return self.store.open(verify=False)
        except CiteqaError:
            return None

    def _service_uploads(self, excluded: set[str]) -> list[Document]:
        """Documents uploaded through the service (they have no source file), less `excluded`."""
        snapshot = self._open_live()
        if snapshot is None:
            return []
        try:
            ids = [i.id for i in snapshot.document_infos() if i.source is None and i.id not in excluded]
            return [doc for doc in map(snapshot.document, ids) if doc is not None]
        finally:
            snapshot.close()

    def _readable_documents(self) -> list[Document]:
        snapshot = self._open_live()
        if snapshot is None:
            return []
        try:
            return snapshot.documents()
        finally:
            snapshot.close()

    def _write_locked(
        self,
        documents: list[Document],
        deletes: Sequence[str],
        exact: bool,
        previous: StoreSnapshot | None,
        spec: IndexSpec,
        asked_deletes: Sequence[str] = (),
    ) -> BuildReport:
        old_hashes = previous.manifest.documents if previous is not None else {}
        chunker = Chunker(self.embedder.tokenizer, self.chunking)
        chunks_by_doc: dict[str, list[Chunk]] = {}
        added: list[str] = []
        changed: list[str] = []
        unchanged: list[str] = []
        for doc in documents:
            old_hash = old_hashes.get(doc.id)
            if previous is not None and old_hash == doc.content_hash:
                unchanged.append(doc.id)
                continue
            (added if old_hash is None else changed).append(doc.id)
            chunks_by_doc[doc.id] = chunker.chunk(doc)
        to_embed = [c for doc_chunks in chunks_by_doc.values() for c in doc_chunks]
        vectors = self.embedder.embed([c.text for c in to_embed], show_progress=self.show_progress)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.embedder.dimension)
        updates: list[DocumentUpdate] = []
        offset = 0
        by_id = {d.id: d for d in documents}
        for doc_id, doc_chunks in chunks_by_doc.items():
            block = vectors[offset : offset + len(doc_chunks)]
            updates.append(DocumentUpdate(by_id[doc_id], doc_chunks, block))
            offset += len(doc_chunks)
        if exact:
            removed = sorted(set(old_hashes) - set(by_id))
        else:
            removed = sorted(d for d in set(deletes) if d in old_hashes and d not in by_id)
        manifest = self.store.write(
            updates, removed, spec, previous, replace_all=previous is None, record_deleted=asked_deletes
        )
        return BuildReport(
            manifest=manifest,
            added=added,
            changed=changed,
            removed=removed,
            unchanged=unchanged,
            embedded_chunks=len(to_embed),
        )
