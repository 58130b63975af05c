"""A pipeline without models for the front ends' unit tests: every question gets the same scored answers,
decided by the real `AnswerAggregator.decide` and worded by the real `outcome_message`.

Fixed probabilities make each of the three outcomes reachable on purpose: confident (>= THRESHOLD),
"not sure" (FLOOR <= p < THRESHOLD) and no answer (< FLOOR, unless the best guess is asked for)."""

from __future__ import annotations

from citeqa.indexing.errors import QuestionError
from citeqa.indexing.types import Chunk, Document
from citeqa.service.qa.answering import AnswerAggregator, AnsweringConfig
from citeqa.service.qa.confidence import Calibrator
from citeqa.service.qa.pipeline import outcome_message
from citeqa.service.qa.query import Query
from citeqa.service.qa.types import Answer, AskResult, Citation, Passage, TextSpan

TEXT = "Refund policy.\nRefunds are paid within 14 days. Shipping costs 5 euros. Returns go to Berlin."
DOCUMENT = Document(id="refunds.md", text=TEXT, title="Refund policy", content_hash="h", date="2026-01-01")
CHUNK = Chunk(id="refunds.md#0", doc_id="refunds.md", seq=0, start=0, end=len(TEXT), text=TEXT)
PASSAGE = Passage(chunk=CHUNK, title="Refund policy", rank=1, score=0.9, dense_score=0.6, bm25_score=2.0)
THRESHOLD, FLOOR = 0.6, 0.3

# Question -> the probabilities of its candidate answers ("14 days", "5 euros", "Berlin"), best first.
CONFIDENT = "How fast are refunds paid?"
NOT_SURE = "How much is shipping?"
NONE = "Who signs the refund form?"
SCORES = {CONFIDENT: (0.9, 0.4, 0.1), NOT_SURE: (0.45, 0.2, 0.1), NONE: (0.12, 0.05, 0.01)}
TEXTS = {CONFIDENT: "14 days", NOT_SURE: "5 euros", NONE: "Berlin"}


def answer(text: str, score: float) -> Answer:
    start = TEXT.index(text)
    end = start + len(text)
    sentence_start = TEXT.rindex(".", 0, start) + 2 if "." in TEXT[:start] else 0
    sentence_end = TEXT.index(".", end) + 1
    citation = Citation(
        doc_id=DOCUMENT.id,
        title=DOCUMENT.title,
        date=DOCUMENT.date,
        start=start,
        end=end,
        page=None,
        sentence=TextSpan(TEXT[sentence_start:sentence_end], sentence_start, sentence_end),
        passage_id=CHUNK.id,
        passage=TextSpan(CHUNK.text, CHUNK.start, CHUNK.end),
        context=TextSpan(TEXT, 0, len(TEXT)),
    )
    return Answer(text=text, score=score, reader_margin=1.0, citation=citation)


def ranked(question: str) -> list[Answer]:
    first = TEXTS[question]
    others = [t for t in ("14 days", "5 euros", "Berlin") if t != first]
    return [answer(t, p) for t, p in zip([first, *others], SCORES[question], strict=True)]


class OutcomePipeline:
    """Stands in for `QAPipeline` where a front end only calls `ask` (and reads `settings`)."""

    def __init__(self) -> None:
        calibrator = Calibrator(["margin"], [0.0], [1.0], [1.0], 0.0, THRESHOLD, floor=FLOOR)
        self.aggregator = AnswerAggregator(AnsweringConfig(), calibrator)
        self.calls: list[dict[str, object]] = []

    def ask(self, query: Query | str) -> AskResult:
        """What the front ends call: a `Query` (they all build one), or a bare question."""
        if isinstance(query, str):
            query = Query(query)
        question = query.question
        self.calls.append({"question": question, "best_guess": query.best_guess})
        if question not in SCORES:
            raise QuestionError(f"the fake knows no question {question!r}")
        candidates = ranked(question)
        answers, no_answer = self.aggregator.decide(
            candidates, query.max_answers, query.min_answer_probability, best_guess=query.best_guess
        )
        return AskResult(
            question=question,
            answers=answers,
            passages=[PASSAGE],
            no_answer=no_answer,
            message=outcome_message(answers),
            timings_ms={"retrieve": 1.0, "read": 2.0, "total": 3.0},
            index_version="v-fake",
            candidates=candidates,
        )
