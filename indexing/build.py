"""Build or update the index: chunk and embed only what changed, then write a new version."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexing.chunking import Chunker, ChunkingConfig
from indexing.embedding import Embedder
from indexing.errors import CiteqaError, EmptyCorpusError, IndexMismatchError
from indexing.loaders import LoadProblem
from indexing.sources import DocumentSources
from indexing.store import IndexSnapshot, IndexSpec, IndexWriter, Manifest, current_version_dir, write_lock
from indexing.types import Chunk, Document

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
    seconds: float = 0.0

    @property
    def document_count(self) -> int:
        return len(self.manifest.documents)


class IndexBuilder:
    """Turns a set of documents into the live index, reusing embeddings of unchanged documents."""

    def __init__(
        self,
        root: Path,
        embedder: Embedder,
        chunking: ChunkingConfig,
        index_type: str = "auto",
        ann_threshold: int = 50_000,
        show_progress: bool = False,
    ) -> None:
        self.root = root
        self.embedder = embedder
        self.chunking = chunking
        self.index_type = index_type
        self.ann_threshold = ann_threshold
        self.show_progress = show_progress

    def spec(self) -> IndexSpec:
        return IndexSpec(
            embedder=self.embedder.name,
            dimension=self.embedder.dimension,
            chunking={"max_tokens": self.chunking.max_tokens, "overlap_tokens": self.chunking.overlap_tokens},
        )

    def check_chunk_budget(self) -> None:
        if self.chunking.max_tokens > self.embedder.max_tokens:
            raise CiteqaError(
                f"chunk size {self.chunking.max_tokens} tokens exceeds what the embedder reads "
                f"({self.embedder.max_tokens}); lower CITEQA_CHUNK_TOKENS"
            )

    def build_from_sources(self, sources: DocumentSources, rebuild: bool = False) -> BuildReport:
        corpus = sources.corpus_dir
        if not corpus.is_dir():
            raise EmptyCorpusError(f"corpus folder {corpus} does not exist")
        loaded = sources.load()
        if not loaded.documents:
            detail = f" ({len(loaded.problems)} files skipped)" if loaded.problems else ""
            raise EmptyCorpusError(f"no loadable documents in {corpus}{detail}")
        report = self.build(loaded.documents, rebuild=rebuild)
        report.problems = loaded.problems
        return report

    def build(self, documents: Sequence[Document], rebuild: bool = False) -> BuildReport:
        """Make the index hold exactly `documents`."""
        started = time.perf_counter()
        self.check_chunk_budget()
        ids = [d.id for d in documents]
        if len(set(ids)) != len(ids):
            raise CiteqaError("duplicate document ids in the corpus")
        with write_lock(self.root):
            previous = None if rebuild else self._open_previous()
            try:
                report = self._build_locked(sorted(documents, key=lambda d: d.id), previous)
            finally:
                if previous is not None:
                    previous.close()
        report.seconds = time.perf_counter() - started
        return report

    def _open_previous(self) -> IndexSnapshot | None:
        try:
            if current_version_dir(self.root) is None:
                return None
            previous = IndexSnapshot.open(self.root, expected=self.spec())
        except IndexMismatchError as exc:
            log.warning("rebuilding from scratch: %s", exc)
            return None
        except CiteqaError as exc:
            log.warning("previous index unusable, rebuilding from scratch: %s", exc)
            return None
        if previous.manifest.chunking != self.spec().chunking:
            log.warning("chunking settings changed: re-embedding every document")
            previous.close()
            return None
        return previous

    def _build_locked(self, documents: list[Document], previous: IndexSnapshot | None) -> BuildReport:
        old_hashes = previous.manifest.documents if previous else {}
        chunker = Chunker(self.embedder.tokenizer, self.chunking)
        chunks_by_doc: dict[str, list[Chunk]] = {}
        reused: dict[str, np.ndarray] = {}
        to_embed: list[Chunk] = []
        added: list[str] = []
        changed: list[str] = []
        unchanged: list[str] = []
        for doc in documents:
            old_hash = old_hashes.get(doc.id)
            if previous is not None and old_hash == doc.content_hash:
                rows_and_chunks = previous.chunks_of(doc.id)
                chunks_by_doc[doc.id] = [c for _, c in rows_and_chunks]
                reused[doc.id] = np.asarray(previous.embeddings[[r for r, _ in rows_and_chunks]])
                unchanged.append(doc.id)
                continue
            (added if old_hash is None else changed).append(doc.id)
            chunks_by_doc[doc.id] = chunker.chunk(doc)
            to_embed.extend(chunks_by_doc[doc.id])
        new_vectors = self.embedder.embed([c.text for c in to_embed], show_progress=self.show_progress)
        fresh: dict[str, list[np.ndarray]] = {}
        for chunk, vector in zip(to_embed, new_vectors, strict=True):
            fresh.setdefault(chunk.doc_id, []).append(vector)
        dimension = self.embedder.dimension
        blocks = [
            reused[d.id] if d.id in reused else np.asarray(fresh.get(d.id, []), dtype=np.float32)
            for d in documents
        ]
        embeddings = (
            np.concatenate([b.reshape(-1, dimension) for b in blocks])
            if blocks
            else np.zeros((0, dimension), dtype=np.float32)
        )
        manifest = IndexWriter(self.root).write(
            documents, chunks_by_doc, embeddings, self.spec(), self.index_type, self.ann_threshold
        )
        current = {d.id for d in documents}
        return BuildReport(
            manifest=manifest,
            added=added,
            changed=changed,
            removed=sorted(set(old_hashes) - current),
            unchanged=unchanged,
            embedded_chunks=len(to_embed),
        )
