"""QAPipeline: the one object that the CLI, HTTP API, chat endpoints and evaluation all call."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from citeqa.indexing.embedding import Embedder, TextEmbedder
from citeqa.indexing.errors import (
    CiteqaError,
    DocumentNotFoundError,
    IndexNotFoundError,
    QuestionError,
    TopKError,
)
from citeqa.indexing.ingest.build import BuildReport, IndexBuilder
from citeqa.indexing.ingest.chunking import ChunkingConfig
from citeqa.indexing.ingest.journal import UpdateJournal
from citeqa.indexing.ingest.loaders import load_bytes
from citeqa.indexing.ingest.sources import DocumentSources
from citeqa.indexing.store import Store, make_store, set_faiss_threads
from citeqa.indexing.types import Document
from citeqa.service.qa.answering import (
    NO_ANSWER_MESSAGE,
    NOT_SURE_MESSAGE,
    AnswerAggregator,
    AnsweringConfig,
)
from citeqa.service.qa.cache import AnswerCache
from citeqa.service.qa.confidence import Calibrator
from citeqa.service.qa.query import Query
from citeqa.service.qa.reader import Reader, make_reader
from citeqa.service.qa.retrieval import HybridRetriever, SearchIndex
from citeqa.service.qa.types import Answer, AskResult, DocumentPage, Passage, SearchResult
from citeqa.service.settings import Settings

log = logging.getLogger(__name__)

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclasses.dataclass(frozen=True)
class RankedAnswers:
    passages: list[Passage]
    answers: list[Answer]  # every distinct answer, the reader's best first
    timings_ms: dict[str, float]


def outcome_message(answers: Sequence[Answer]) -> str:
    """What a result says of itself: nothing when its best answer is confident."""
    if not answers:
        return NO_ANSWER_MESSAGE
    return NOT_SURE_MESSAGE if answers[0].confidence_level == "not_sure" else ""


def _whole_number(value: object) -> bool:
    """An int that is not a bool: a library caller's "3" or True is not a count."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_scope(index: SearchIndex, document_ids: Sequence[str] | None) -> None:
    """A question scoped to documents must name some, each in the index: an unknown id answered "no
    answer found", as if the document had been read."""
    if document_ids is None:
        return
    if not document_ids:
        raise QuestionError("document_ids is empty; leave it out to search every document")
    known = index.snapshot.manifest.documents
    asked = list(dict.fromkeys(document_ids))
    unknown = [doc_id for doc_id in asked if doc_id not in known]
    if unknown:
        shown = ", ".join(repr(doc_id[:80]) for doc_id in unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        raise DocumentNotFoundError(
            f"document_ids not in the index: {shown} ({len(unknown)} of {len(asked)})"
        )


class QAPipeline:
    """Cheap to construct; `warm_up()` loads the models and the index once.

    Queries read an immutable `SearchIndex`; updates build a new index version and swap the
    reference, so a query in flight never sees a half-updated index.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        embedder: TextEmbedder | None = None,
        reader: Reader | None = None,
    ) -> None:
        """Pass `embedder` and `reader` to share already-loaded models between pipelines (or, in the
        unit tests, to run the pipeline on fakes)."""
        self.settings = settings or Settings()
        s = self.settings
        self.embedder = embedder or Embedder(
            s.embedder_path,
            device=s.device,
            batch_size=s.embed_batch_size,
            dtype=s.model_dtype,
            runtime=s.embedder_runtime,
        )
        self.reader: Reader = reader or make_reader(s)
        self.store: Store = make_store(
            s.resolved_index_dir,
            database_url=s.database_url.get_secret_value() if s.database_url else None,
            index_type=s.index_type,
            ann_threshold=s.ann_threshold,
            rerank_factor=s.rerank_factor,
            nprobe=s.ann_nprobe,
            pg_ef_search=s.pg_ef_search,
        )
        self.retriever = HybridRetriever(self.embedder, candidates_k=s.candidates_k, rrf_k=s.rrf_k)
        self.aggregator = AnswerAggregator(
            AnsweringConfig(
                max_answers=s.max_answers,
                min_answer_probability=s.min_answer_probability,
                context_chars=s.context_chars,
            ),
            # Fitted for this reader (`citeqa calibrate`) and stored in its folder, or adapted to this
            # corpus (`citeqa calibrate --adapt`) and kept in its data directory; a small JSON file.
            Calibrator.for_corpus(s.reader_path, s.data_dir),
        )
        self._index: SearchIndex | None = None
        self._unloadable_version: str | None = None  # a live version that failed to load
        self._update_lock = threading.RLock()
        self.answer_cache = AnswerCache(s.answer_cache_size)
        # Applied around each FAISS search only (see set_faiss_threads): the reader keeps its threads.
        set_faiss_threads(s.faiss_threads)

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def index_dir(self) -> Path:
        """The local index (with Postgres: this replica's BM25 index)."""
        return self.settings.resolved_index_dir

    def warm_up(self, require_index: bool = True) -> None:
        self.embedder.warm_up()
        self.reader.warm_up()
        self.recover_interrupted_update()
        if require_index or self.store.live_version() is not None:
            self.reload()

    def reload(self) -> None:
        snapshot = self.store.open(expected=self.builder().spec(), verify=self.settings.verify_index)
        self._swap(SearchIndex.load(snapshot))

    def _swap(self, index: SearchIndex) -> None:
        # Old snapshots are left to the garbage collector: a query may still hold one.
        self._index = index

    @property
    def ready(self) -> bool:
        return self._index is not None

    def loaded_index_size(self) -> tuple[int, int] | None:
        """Documents and chunks of the index version in memory (None before one is loaded); no store query."""
        if self._index is None:
            return None
        manifest = self._index.snapshot.manifest
        return len(manifest.documents), manifest.chunk_count

    def require_index(self) -> None:
        if self.store.live_version() is None:
            where = f" --index-dir {self.index_dir}" if self.settings.index_dir is not None else ""
            raise IndexNotFoundError(
                f"no index at {self.store.describe()}; build one with `citeqa index{where}`"
            )

    @property
    def index(self) -> SearchIndex:
        """The live index; a new version written by another process (`citeqa index`) is picked up."""
        current = self._index
        live = self._live_version()
        if current is None or live not in (None, current.snapshot.version, self._unloadable_version):
            with self._update_lock:
                if self._index is current:
                    try:
                        self.require_index()
                        self.reload()
                    except CiteqaError as exc:
                        if current is None:
                            raise
                        # Keep answering from the version in memory rather than fail every query;
                        # remembering the bad one spares each query a fresh (checksummed) load.
                        self._unloadable_version = live
                        log.error("still serving index %s: %s", current.snapshot.version, exc)
        assert self._index is not None
        return self._index

    def _live_version(self) -> str | None:
        return self.store.live_version()

    def builder(self) -> IndexBuilder:
        s = self.settings
        return IndexBuilder(
            self.store,
            self.embedder,
            ChunkingConfig(max_tokens=s.chunk_tokens, overlap_tokens=s.chunk_overlap_tokens),
        )

    # --- questions -------------------------------------------------------------------------
    def validate_question(self, question: str) -> str:
        if not isinstance(question, str):  # a library caller's None or bytes: say so, not AttributeError
            raise QuestionError(f"the question must be a string (got {type(question).__name__})")
        cleaned = question.strip()
        if not cleaned:
            raise QuestionError("the question is empty")
        if len(cleaned) > self.settings.max_question_chars:
            limit = self.settings.max_question_chars
            raise QuestionError(f"the question is {len(cleaned)} characters long; the limit is {limit}")
        if _CONTROL_CHARS.search(cleaned):
            raise QuestionError("the question contains control characters")
        if not any(ch.isalnum() for ch in cleaned):
            # Nothing to retrieve or read with: say so rather than return a meaningless "no answer".
            raise QuestionError("the question has no words, only punctuation or symbols")
        return cleaned

    def _top_k(self, top_k: int | None) -> int:
        if top_k is None:
            return self.settings.top_k
        if not _whole_number(top_k) or not 1 <= top_k <= self.settings.max_top_k:
            raise TopKError(f"top_k must be between 1 and {self.settings.max_top_k} (got {top_k})")
        return top_k

    def search(
        self, query: str, top_k: int | None = None, document_ids: Sequence[str] | None = None
    ) -> SearchResult:
        query = self.validate_question(query)
        index = self.index
        check_scope(index, document_ids)
        started = time.perf_counter()
        passages = self.retriever.retrieve(index, query, self._top_k(top_k), document_ids)
        elapsed = (time.perf_counter() - started) * 1000
        return SearchResult(
            query=query,
            passages=passages,
            timings_ms={"retrieve": round(elapsed, 2), "total": round(elapsed, 2)},
            index_version=index.snapshot.version,
        )

    def ask(
        self,
        query: Query | str,
        *,
        top_k: int | None = None,
        max_answers: int | None = None,
        document_ids: Sequence[str] | None = None,
        min_answer_probability: float | None = None,
        best_guess: bool = False,
    ) -> AskResult:
        """Answer a `Query` (the front ends build one), or a question with the same options by name.

        `min_answer_probability` replaces the calibrated threshold for this question: answers less likely
        than it to be right come back "not sure" (down to the floor) instead of confident. `best_guess`:
        when no answer reaches the floor, the best one anyway, "not sure"."""
        if not isinstance(query, Query):
            query = Query.of(query, top_k, max_answers, document_ids, min_answer_probability, best_guess)
        question = self.validate_question(query.question)
        most = query.max_answers
        if most is not None and (not _whole_number(most) or most < 1):
            raise QuestionError(f"max_answers must be at least 1 (got {most!r})")
        index = self.index
        check_scope(index, query.document_ids)
        started = time.perf_counter()
        top_k = self._top_k(query.top_k)
        threshold = query.min_answer_probability
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise QuestionError(f"min_answer_probability must be between 0 and 1 (got {threshold})")
        key = query.cache_key(index.snapshot.version, top_k)
        cached = self.answer_cache.get(key)
        if cached is not None:
            elapsed = round((time.perf_counter() - started) * 1000, 2)
            # The HTTP schema wants every stage; a cached answer spent nothing on retrieval or reading.
            timings = {"cache": elapsed, "retrieve": 0.0, "read": 0.0, "total": elapsed}
            return dataclasses.replace(cached, question=question, timings_ms=timings)
        ranked = self.rank_answers(index, question, top_k, query.document_ids)
        answers, no_answer = self.aggregator.decide(
            ranked.answers, query.max_answers, threshold, best_guess=query.best_guess
        )
        result = AskResult(
            question=question,
            answers=answers,
            passages=ranked.passages,
            no_answer=no_answer,
            message=outcome_message(answers),
            timings_ms={**ranked.timings_ms, "total": round((time.perf_counter() - started) * 1000, 2)},
            index_version=index.snapshot.version,
            candidates=ranked.answers,
        )
        self.answer_cache.put(key, result)
        return result

    def rank_answers(
        self, index: SearchIndex, question: str, top_k: int, document_ids: Sequence[str] | None = None
    ) -> RankedAnswers:
        """Retrieve, read and score every distinct answer, before any abstention: what `ask` decides
        on, and what the evaluation replays `AnswerAggregator.decide` on to choose thresholds."""
        started = time.perf_counter()
        passages = self.retriever.retrieve(index, question, top_k, document_ids)
        retrieved = time.perf_counter()
        candidates = self.reader.read(question, [p.chunk.text for p in passages])
        answers = self.aggregator.rank(question, candidates, passages, index.snapshot.document)
        finished = time.perf_counter()
        timings = {
            "retrieve": round((retrieved - started) * 1000, 2),
            "read": round((finished - retrieved) * 1000, 2),
        }
        return RankedAnswers(passages, answers, timings)

    # --- documents -------------------------------------------------------------------------
    @property
    def index_version(self) -> str:
        return self.index.snapshot.version

    def document_ids(self) -> set[str]:
        return set(self.index.snapshot.manifest.documents)

    @property
    def document_count(self) -> int:
        return len(self.index.snapshot.manifest.documents)

    def has_document(self, doc_id: str) -> bool:
        """Whether the live index holds `doc_id` (False while no index is loaded)."""
        return self.ready and self.index.snapshot.document(doc_id) is not None

    def document(self, doc_id: str) -> tuple[Document, str]:
        """A document of the live index, with that index's version."""
        snapshot = self.index.snapshot
        document = snapshot.document(doc_id)
        if document is None:
            # A citation's link outlives its document: say which version was looked in.
            raise DocumentNotFoundError(
                f"no document with id {doc_id[:200]!r} in index version {snapshot.version} "
                "(deleted since it was cited, or never indexed)"
            )
        return document, snapshot.version

    def chunk_count(self, doc_id: str) -> int:
        return len(self.index.snapshot.chunks_of(doc_id))

    def documents(self, offset: int = 0, limit: int = 50) -> DocumentPage:
        if offset < 0 or limit < 1:
            raise CiteqaError(f"offset must be at least 0 and limit at least 1 (got {offset}, {limit})")
        snapshot = self.index.snapshot
        infos = snapshot.document_infos(offset=offset, limit=limit)
        return DocumentPage(infos, snapshot.document_count(), offset, limit, snapshot.version)

    def sources(self, corpus: Path | None = None) -> DocumentSources:
        """The documents' sources; `corpus` defaults to the folder the index was last built from (else
        the configured one): an upload or delete must check the folder the index holds, which need not
        be CITEQA_CORPUS_DIR (`citeqa index my-policies` into its own data directory)."""
        if corpus is None:
            configured = DocumentSources(self.settings.corpus_dir, self.settings.data_dir)
            corpus = configured.recorded_corpus() or self.settings.corpus_dir
        return DocumentSources(corpus, self.settings.data_dir)

    def index_folder(
        self,
        corpus: Path | None = None,
        rebuild: bool = False,
        show_progress: bool = False,
        restore_deleted: bool = False,
    ) -> BuildReport:
        """Make the index hold the folder's documents, plus uploads and less deletions made by the service
        (but for those `restore_deleted` brings back)."""
        builder = self.builder()
        builder.show_progress = show_progress
        with self._update_lock:
            self.recover_interrupted_update()
            sources = self.sources(None if corpus is None else Path(corpus))
            # A shared store also holds what was uploaded through other replicas: index_folder keeps it.
            shared = self.settings.database_url is not None
            report = builder.build_from_sources(
                sources, rebuild=rebuild, keep_uploads=shared, restore_deleted=restore_deleted
            )
            sources.record_corpus()
            self.reload()
        return report

    def add_documents(self, documents: Sequence[Document]) -> BuildReport:
        """Add or replace documents (by id) in the index, re-embedding only those."""
        with self._update_lock:
            report = self.builder().update(documents)
            self.reload()
        return report

    def read_upload(self, doc_id: str, data: bytes) -> Document:
        """Parse an upload (DocumentLoadError for what cannot be read) without touching the index."""
        return load_bytes(data, doc_id)

    def upload_document(
        self,
        doc_id: str,
        data: bytes,
        original_name: str | None = None,
        document: Document | None = None,
    ) -> tuple[Document, BuildReport]:
        """Index an uploaded file and keep it in the data directory, so that re-indexing keeps it;
        `original_name`, the file name it was sent under, is remembered to tell renamed uploads apart;
        `document`: `data` already parsed (the service parses before an upload queues for the writer).

        Journaled: after a crash at any point the upload is either fully in or fully out."""
        document = document if document is not None else load_bytes(data, doc_id)
        with self._update_lock, self.journal().upload(doc_id, data, self._indexed_hash):
            report = self.add_documents([document])
        if original_name is not None:
            self.sources().remember_upload_name(doc_id, original_name)
        return document, report

    def delete_document(self, doc_id: str) -> BuildReport:
        with self._update_lock:
            if self.store.live_version() is None or self.index.snapshot.document(doc_id) is None:
                raise DocumentNotFoundError(f"no document with id {doc_id[:200]!r}")
            with self.journal().delete(doc_id, self._indexed_hash):
                report = self.builder().update([], [doc_id])
                self.reload()
            if not report.removed:  # another writer (a replica) deleted it first
                raise DocumentNotFoundError(f"no document with id {doc_id[:200]!r}")
        return report

    def journal(self) -> UpdateJournal:
        return UpdateJournal(self.settings.data_dir, self.sources())

    def recover_interrupted_update(self) -> str | None:
        """Finish or undo an upload or delete that a crash interrupted (see indexing/journal.py)."""
        with self._update_lock:
            outcome = self.journal().recover(self._indexed_hash)
        if outcome:
            log.warning("%s", outcome)
        return outcome

    def _indexed_hash(self, doc_id: str) -> str | None:
        """The content hash the live version holds for `doc_id` (None: not in it)."""
        return self.store.indexed_hash(doc_id)
