"""Evaluator: ask every question through the pipeline (in process or over HTTP) and score the results."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from citeqa.eval.datasets import EvalItem, EvalSet
from citeqa.eval.metrics import (
    abstention_scores,
    bootstrap_interval,
    exact_match,
    f1_score,
    is_right,
    latency_summary,
    mean,
    ndcg_at_k,
    passage_is_relevant,
    recall_at_k,
    reciprocal_rank,
    reliability,
    risk_coverage,
    sweep_threshold,
)
from citeqa.indexing.errors import CiteqaError, DocumentNotFoundError, QuestionError
from citeqa.indexing.types import Document
from citeqa.service.qa.answering import AnswerAggregator
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.query import Query
from citeqa.service.qa.types import Answer
from citeqa.service.wire import ask_json, passage_json

RECALL_KS = (1, 3, 5, 10)
NDCG_K = 10


def replay_decision(aggregator: AnswerAggregator, candidates: Sequence[Answer], threshold: float) -> str:
    """The answer the pipeline gives when it answers nothing below `threshold`: its own `decide`,
    replayed ("" = abstain). Confident or "not sure" does not change which text comes first, so one
    cut stands for both the floor and the threshold."""
    answers, _ = aggregator.decide(candidates, min_answer_probability=threshold, floor=threshold)
    return answers[0].text if answers else ""


class QuestionFailed(CiteqaError):
    """One question failed at the backend; the run goes on and counts it wrong."""


class Backend(Protocol):
    """Where questions go: the in-process pipeline or a running service."""

    description: str

    def ask(
        self, question: str, top_k: int, document_ids: list[str] | None = None
    ) -> tuple[dict[str, Any], float, list[Answer] | None]:
        """The ask_json-shaped result, the wall time the caller saw in ms, and (in process) every
        candidate answer scored before abstention."""
        ...

    def search(
        self, question: str, top_k: int, document_ids: list[str] | None = None
    ) -> list[dict[str, Any]] | None:
        """passage_json-shaped passages, best first; None when the backend cannot search."""
        ...

    def document(self, doc_id: str) -> Document | None: ...


class PipelineBackend:
    def __init__(self, pipeline: QAPipeline) -> None:
        self.pipeline = pipeline
        self.description = f"in process, index {pipeline.index_dir}"
        adapted_on = pipeline.aggregator.calibrator.meta.get("adapted_on")
        if adapted_on:  # a corpus's own calibration (`citeqa calibrate --adapt`), not the reader's
            self.description += f", calibration adapted on {adapted_on}"
        self._documents: dict[str, Document | None] = {}

    def ask(
        self, question: str, top_k: int, document_ids: list[str] | None = None
    ) -> tuple[dict[str, Any], float, list[Answer] | None]:
        started = time.perf_counter()
        try:
            result = self.pipeline.ask(Query.of(question, top_k, None, document_ids))
        except QuestionError as exc:
            raise QuestionFailed(str(exc)) from exc
        elapsed = (time.perf_counter() - started) * 1000
        return ask_json(result), elapsed, result.candidates

    def search(
        self, question: str, top_k: int, document_ids: list[str] | None = None
    ) -> list[dict[str, Any]] | None:
        try:
            found = self.pipeline.search(question, top_k=top_k, document_ids=document_ids)
            return [passage_json(p) for p in found.passages]
        except QuestionError as exc:
            raise QuestionFailed(str(exc)) from exc

    def document(self, doc_id: str) -> Document | None:
        if doc_id not in self._documents:
            try:
                self._documents[doc_id] = self.pipeline.document(doc_id)[0]
            except DocumentNotFoundError:
                self._documents[doc_id] = None
        return self._documents[doc_id]


def _json_or_empty(response: Any) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


class HttpBackend:
    """A client of a running service: POST {url}/v1/ask and GET {url}/v1/search?q=&top_k=.

    Citations are checked against the local corpus folder, which must hold what the service indexed.
    """

    def __init__(
        self,
        url: str,
        corpus_dir: Path,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        unavailable_wait_s: float = 180.0,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.description = f"HTTP {self.url}"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)
        self._corpus_dir = corpus_dir
        self._documents: dict[str, Document | None] = {}
        self._can_search = True
        self.unavailable_wait_s = unavailable_wait_s

    def _send(self, method: str, path: str, **kwargs: Any) -> tuple[Any, float]:
        """One request and its time in ms; a 503 (still loading, overloaded) is retried for a while.

        Only the answered attempt is timed: waiting out a loading service is not latency.
        """
        import httpx

        deadline = time.monotonic() + self.unavailable_wait_s
        while True:
            started = time.perf_counter()
            try:
                response = self._client.request(method, f"{self.url}{path}", **kwargs)
            except httpx.HTTPError as exc:
                raise CiteqaError(f"cannot reach {self.url}{path}: {exc}") from exc
            if response.status_code != 503 or time.monotonic() >= deadline:
                return response, (time.perf_counter() - started) * 1000
            try:
                pause = float(response.headers.get("Retry-After", "1"))
            except ValueError:
                pause = 1.0
            time.sleep(min(max(pause, 0.2), 5.0))

    def ask(
        self, question: str, top_k: int, document_ids: list[str] | None = None
    ) -> tuple[dict[str, Any], float, list[Answer] | None]:
        body: dict[str, Any] = {"question": question, "top_k": top_k}
        if document_ids is not None:
            body["document_ids"] = document_ids
        response, elapsed = self._send("POST", "/v1/ask", json=body)
        payload = _json_or_empty(response)
        if response.status_code in (401, 403, 404):
            # Not this question's fault: every other question would fail the same way.
            raise CiteqaError(
                f"{self.url}/v1/ask answered HTTP {response.status_code}: {response.text[:200]}"
            )
        if response.status_code != 200:
            message = (
                payload.get("error", {}).get("message", response.text[:200])
                if isinstance(payload, dict)
                else ""
            )
            raise QuestionFailed(f"HTTP {response.status_code}: {message}")
        return payload, elapsed, None

    def search(
        self, question: str, top_k: int, document_ids: list[str] | None = None
    ) -> list[dict[str, Any]] | None:
        if not self._can_search or document_ids is not None:
            return None  # GET /v1/search has no document filter: score the passages /v1/ask read
        response, _ = self._send("GET", "/v1/search", params={"q": question, "top_k": top_k})
        if response.status_code != 200:
            # Without a search endpoint, retrieval is scored on the passages that /v1/ask returns.
            self._can_search = False
            return None
        passages = _json_or_empty(response).get("passages")
        return passages if isinstance(passages, list) else None

    def document(self, doc_id: str) -> Document | None:
        if doc_id not in self._documents:
            from citeqa.indexing.ingest.loaders import load_file

            path = self._corpus_dir / doc_id
            try:
                self._documents[doc_id] = load_file(path, self._corpus_dir) if path.is_file() else None
            except CiteqaError:
                self._documents[doc_id] = None
        return self._documents[doc_id]

    def close(self) -> None:
        self._client.close()


@dataclass
class QuestionResult:
    item: EvalItem
    prediction: str  # "" when the system abstained
    abstained: bool
    answers: list[dict[str, Any]]
    passages: list[dict[str, Any]]  # the retrieval ranking scored (deeper than what was read)
    relevance: list[bool]
    timings_ms: dict[str, float]
    em: float
    f1: float
    error: str | None = None
    candidates: list[Answer] | None = None  # in process: every answer scored, before abstention
    citation_checks: list[bool | None] = field(default_factory=list)  # per answer; None: doc unknown
    evidence_overlap: bool | None = None

    @property
    def correct(self) -> bool:
        return self.em == 1.0

    @property
    def outcome(self) -> str:
        """ "answer" (confident), "not_sure" or "none" (no answer, or the question failed). A service that
        predates confidence levels only gives confident answers."""
        if self.abstained or not self.answers:
            return "none"
        return str(self.answers[0].get("confidence_level", "answer"))

    @property
    def right(self) -> bool:
        """The answer given is right (token F1 >= 0.5 with a gold answer); never for an abstention."""
        return not self.abstained and is_right(self.prediction, self.item.answers)


@dataclass
class EvalReport:
    dataset: str
    backend: str
    config: dict[str, Any]
    summary: dict[str, Any]
    latency: dict[str, dict[str, float | None]]
    confidence: dict[str, Any] | None
    results: list[QuestionResult]
    wall_s: float


def evidence_spans(document: Document, evidence: str | None, answers: Sequence[str]) -> list[tuple[int, int]]:
    """Every place in the document where the gold evidence (or, lacking it, an answer) occurs."""
    needles = [evidence] if evidence else list(answers)
    spans: list[tuple[int, int]] = []
    for needle in needles:
        start = document.text.find(needle)
        while start != -1:
            spans.append((start, start + len(needle)))
            start = document.text.find(needle, start + 1)
    return spans


class Evaluator:
    """Runs an EvalSet through a Backend and computes every metric (sentence-transformers style)."""

    def __init__(
        self,
        eval_set: EvalSet,
        top_k: int,
        aggregator: AnswerAggregator | None = None,
        scope: str = "corpus",
        retrieval_depth: int = max(RECALL_KS),
        show_progress: bool = True,
    ) -> None:
        """`aggregator`: the pipeline's, to replay its abstention offline (in-process runs).
        `scope`: "corpus" searches everything; "document" asks each question about its own document."""
        self.eval_set = eval_set
        self.top_k = top_k
        self.aggregator = aggregator
        self.scope = scope
        self.retrieval_depth = max(retrieval_depth, top_k)
        self.show_progress = show_progress

    @contextmanager
    def _progress(self, description: str) -> Iterator[Any]:
        from tqdm import tqdm

        bar = tqdm(
            total=len(self.eval_set.items),
            desc=description,
            unit="q",
            file=sys.stderr,
            disable=not self.show_progress,
            dynamic_ncols=True,
        )
        try:
            yield bar
        finally:
            bar.close()

    def run(self, backend: Backend) -> EvalReport:
        """Ask every question; in process, also replay the abstention at every threshold."""
        started = time.perf_counter()
        results: list[QuestionResult] = []
        with self._progress("eval") as bar:
            for item in self.eval_set.items:
                results.append(self._one(backend, item))
                bar.update(1)
        ask_wall = sum(r.timings_ms.get("client", 0.0) for r in results) / 1000
        confidence = self.confidence(results)
        wall = time.perf_counter() - started
        latency = {
            stage: latency_summary([r.timings_ms[stage] for r in results if stage in r.timings_ms])
            for stage in ("retrieve", "read", "total", "client")
        }
        summary = self._summary(results, latency, ask_wall, confidence)
        return EvalReport(
            dataset=self.eval_set.name,
            backend=backend.description,
            config={
                "top_k": self.top_k,
                "retrieval_depth": self.retrieval_depth,
                "scope": self.scope,
                "answer_threshold": self.aggregator.threshold if self.aggregator else None,
                "answer_floor": self.aggregator.floor if self.aggregator else None,
                "limit": len(self.eval_set.items),
            },
            summary=summary,
            latency=latency,
            confidence=confidence,
            results=results,
            wall_s=round(wall, 2),
        )

    # --- one question ----------------------------------------------------------------------
    def _one(self, backend: Backend, item: EvalItem) -> QuestionResult:
        document_ids = [item.doc_id] if self.scope == "document" else None
        try:
            payload, client_ms, candidates = backend.ask(item.question, self.top_k, document_ids)
            ranking = backend.search(item.question, self.retrieval_depth, document_ids)
        except QuestionFailed as exc:
            return QuestionResult(
                item=item, prediction="", abstained=False, answers=[], passages=[], relevance=[],
                timings_ms={}, em=0.0, f1=0.0, error=str(exc),
            )  # fmt: skip
        answers = list(payload.get("answers") or [])
        abstained = bool(payload.get("no_answer")) or not answers
        prediction = "" if abstained else str(answers[0]["text"])
        passages = ranking if ranking is not None else list(payload.get("passages") or [])
        relevance = [
            passage_is_relevant(p["text"], p["doc_id"], item.doc_id, item.answers, item.evidence)
            for p in passages
        ]
        timings = {k: float(v) for k, v in (payload.get("timings_ms") or {}).items()}
        timings["client"] = client_ms
        if isinstance(backend, HttpBackend):
            timings["total"] = client_ms  # over HTTP, the total is what the client waited
        result = QuestionResult(
            item=item,
            prediction=prediction,
            abstained=abstained,
            answers=answers,
            passages=passages,
            relevance=relevance,
            timings_ms=timings,
            em=exact_match(prediction, item.answers),
            f1=f1_score(prediction, item.answers),
            candidates=candidates,
        )
        self._check_citations(backend, result)
        return result

    @staticmethod
    def _check_citations(backend: Backend, result: QuestionResult) -> None:
        for answer in result.answers:
            document = backend.document(answer["doc_id"])
            if document is None:
                result.citation_checks.append(None)
                continue
            result.citation_checks.append(document.text[answer["start"] : answer["end"]] == answer["text"])
        item = result.item
        if result.abstained or not item.answerable:
            return
        top = result.answers[0]
        document = backend.document(item.doc_id)
        if document is None or top["doc_id"] != item.doc_id:
            result.evidence_overlap = False if document is not None else None
            return
        result.evidence_overlap = any(
            s < top["end"] and top["start"] < e
            for s, e in evidence_spans(document, item.evidence, item.answers)
        )

    def decide(self, candidates: Sequence[Answer], threshold: float) -> str:
        assert self.aggregator is not None
        return replay_decision(self.aggregator, candidates, threshold)

    def confidence(self, results: Sequence[QuestionResult]) -> dict[str, Any] | None:
        """Calibration (reliability, ECE), risk-coverage and the F1 of every abstention threshold."""
        scored = [r for r in results if r.error is None and r.candidates is not None]
        if self.aggregator is None or not scored:
            return None
        sweep = sweep_threshold([(r.item.answers, r.candidates or []) for r in scored], self.decide)
        # The most probable answer of each question, and whether it is right.
        tops = [(r.candidates[0], r.item.answers) for r in scored if r.candidates]
        probabilities = [answer.score for answer, _ in tops]
        right = [is_right(answer.text, golds) for answer, golds in tops]
        calibration = reliability(probabilities, right)
        # The live answer is the first at or above the floor: what the replay at the floor gives.
        floor = self.aggregator.floor
        agreement = mean([float(self.decide(r.candidates or [], floor) == r.prediction) for r in scored])
        return {
            "threshold": self.aggregator.threshold,
            "floor": floor,
            "best_threshold": sweep.best_threshold,
            "best_f1": sweep.best_f1,
            "best_em": sweep.best_em,
            "replay_agreement": agreement,
            "ece": calibration.ece,
            "reliability": calibration.bins,
            "risk_coverage": risk_coverage(probabilities, right),
            "curve": [{"threshold": t, "f1": f1, "em": em} for t, f1, em in sweep.curve],
        }

    # --- the summary -----------------------------------------------------------------------
    def _summary(
        self,
        results: Sequence[QuestionResult],
        latency: dict[str, dict[str, float | None]],
        ask_wall_s: float,
        confidence: dict[str, Any] | None,
    ) -> dict[str, Any]:
        answerable = [r for r in results if r.item.answerable]
        unanswerable = [r for r in results if not r.item.answerable]
        abstention = abstention_scores([r.abstained for r in results], [r.item.answerable for r in results])
        checks = [c for r in results for c in r.citation_checks if c is not None]
        overlaps = [r.evidence_overlap for r in answerable if r.evidence_overlap is not None]
        summary: dict[str, Any] = {
            "n": len(results),
            "n_answerable": len(answerable),
            "n_unanswerable": len(unanswerable),
            "em": mean([r.em for r in results]),
            "f1": mean([r.f1 for r in results]),
            "has_ans_em": mean([r.em for r in answerable]),
            "has_ans_f1": mean([r.f1 for r in answerable]),
            "no_ans_accuracy": mean([float(r.abstained) for r in unanswerable]),
            "abstention_precision": abstention.precision,
            "abstention_recall": abstention.recall,
            "abstained": abstention.abstained,
        }
        for k in RECALL_KS:
            summary[f"recall@{k}"] = mean([recall_at_k(r.relevance, k) for r in answerable])
        summary["mrr"] = mean([reciprocal_rank(r.relevance) for r in answerable])
        summary[f"ndcg@{NDCG_K}"] = mean([ndcg_at_k(r.relevance, NDCG_K) for r in answerable])
        summary["citation_exact"] = mean([float(c) for c in checks])
        summary["citations_checked"] = len(checks)
        summary["citations_unverifiable"] = sum(1 for r in results for c in r.citation_checks if c is None)
        summary["citation_overlap"] = mean([float(o) for o in overlaps])
        total = latency["total"]
        summary["p50_ms"] = total["p50"]
        summary["p95_ms"] = total["p95"]
        summary["p99_ms"] = total["p99"]
        summary["qps"] = round(len(results) / ask_wall_s, 3) if ask_wall_s > 0 else None
        summary["errors"] = sum(1 for r in results if r.error is not None)
        summary.update(outcome_counts(results))
        # 95% intervals of the scores a reader of this report compares runs by (over the questions).
        summary["intervals"] = {
            key: bootstrap_interval(values)
            for key, values in (
                ("f1", [r.f1 for r in results]),
                ("has_ans_f1", [r.f1 for r in answerable]),
                ("no_ans_accuracy", [float(r.abstained) for r in unanswerable]),
                ("answerable_right", [float(r.right) for r in answerable]),
            )
        }
        summary["answer_threshold"] = self.aggregator.threshold if self.aggregator else None
        summary["answer_floor"] = self.aggregator.floor if self.aggregator else None
        summary["best_answer_threshold"] = confidence["best_threshold"] if confidence else None
        summary["ece"] = confidence["ece"] if confidence else None
        for coverage, accuracy in (confidence["risk_coverage"] if confidence else {}).items():
            summary[f"accuracy@{coverage}"] = accuracy
        return summary


OUTCOMES = ("answer", "not_sure", "none")


def outcome_counts(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """The three outcomes, counted over answerable and unanswerable questions, and how often each kind
    of answer is right: the two operating points of risk-coverage (confident only; confident or not sure).

    `outcome_<o>_answerable` / `_unanswerable`: questions of that kind with that outcome;
    `<o>_right`: share of the `<o>` answers that are right; `coverage_<o>`: share of questions answered
    at that level or better, and `accuracy_<o>` the share of those answers right."""
    out: dict[str, Any] = {}
    for outcome in OUTCOMES:
        of_kind = [r for r in results if r.outcome == outcome]
        out[f"outcome_{outcome}"] = len(of_kind)
        out[f"outcome_{outcome}_answerable"] = sum(1 for r in of_kind if r.item.answerable)
        out[f"outcome_{outcome}_unanswerable"] = sum(1 for r in of_kind if not r.item.answerable)
        if outcome != "none":
            out[f"{outcome}_right"] = mean([float(r.right) for r in of_kind])
    for label, levels in (("answer", {"answer"}), ("not_sure", {"answer", "not_sure"})):
        given = [r for r in results if r.outcome in levels]
        out[f"coverage_{label}"] = len(given) / len(results) if results else None
        out[f"accuracy_{label}"] = mean([float(r.right) for r in given])
    answerable = [r for r in results if r.item.answerable]
    # What a user sees: the right answer among the confident or "not sure" ones.
    out["answerable_right"] = mean([float(r.right) for r in answerable])
    return out
