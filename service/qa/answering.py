"""Turn reader candidates into answers: one per distinct document span, scored, cited, or abstain."""

from __future__ import annotations

import dataclasses
import math
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from citeqa.indexing.ingest.chunking import sentence_around
from citeqa.indexing.types import Document
from citeqa.service.qa.confidence import (
    Calibrator,
    content_words,
    cuts_a_list,
    log1p_positive,
    overlap,
    qualifier_after,
    type_match,
)
from citeqa.service.qa.reader import SpanCandidate
from citeqa.service.qa.types import Answer, Citation, Passage, TextSpan

# What a result says besides its answers. Never more than the evidence: that this search found no answer,
# not that the documents hold none (a question worded differently, or a wider top_k, may find one).
NO_ANSWER_MESSAGE = "I found no answer in the documents."
NOT_SURE_MESSAGE = "Low confidence — check the source."
_EDGE_JUNK = string.whitespace + ",;:"
# A clause or list number before capitalised text ("3.2 Tuesday", "9. REPORTING", "(c) You"): when it opens a
# line, a label of the document's structure. A bare number ("25 December") is not one: it may be the answer.
_CLAUSE_LABEL = re.compile(r"(?:\d+(?:\.\d+)+\.?|\d+\.|\(?[a-z]{1,4}\)|\(\d{1,3}\))(?=[ \t]+[A-Z])")
# A table row as the loaders write it, one line of "Header: value, Header: value" (`table_row`): a line that
# opens with a header, has no sentence break, and where a capitalised header opens the next cell. An answer
# is one cell's value, never "£180, Meal allowance: £55". (Prose such as "(Portuguese: Floresta Amazônica;
# Spanish: Selva Amazónica, Amazonía ...)" or "we provide, including: the IP address" is not a row.)
_ROW_START = re.compile(r"[^:,.\n]{1,80}: ")
_SENTENCE_BREAK = re.compile(r"[.!?;] +[A-Z(]")
_NEXT_CELL = re.compile(r", (?=[A-Z0-9][^:,\n]{0,79}: )")
_MAX_ROW_CHARS = 1000


@dataclass(frozen=True)
class AnsweringConfig:
    max_answers: int = 3
    # A confident answer from this probability up; None: the calibration's threshold. Below it, down to
    # the calibration's floor, answers are "not sure".
    min_answer_probability: float | None = None
    context_chars: int = 120
    max_candidates: int = 10  # distinct answers scored per question


_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_NO_PUNCTUATION)).split())


def context_window(text: str, start: int, end: int, chars: int) -> TextSpan:
    """About `chars` characters either side of the span, widened to whole words."""
    lo = max(0, start - chars)
    hi = min(len(text), end + chars)
    while lo > 0 and not text[lo - 1].isspace() and lo > start - chars - 20:
        lo -= 1
    while hi < len(text) and not text[hi].isspace() and hi < end + chars + 20:
        hi += 1
    return TextSpan(text=text[lo:hi], start=lo, end=hi)


def _table_row_end(text: str, line_start: int, end: int) -> int | None:
    """The end of the table row that opens at `line_start` and holds `end`; None when that line is no row.
    Rows are short: a line longer than `_MAX_ROW_CHARS` is prose, and is not scanned for every span."""
    if not _ROW_START.match(text, line_start):
        return None
    limit = line_start + _MAX_ROW_CHARS
    line_end = text.find("\n", end, limit)
    if line_end < 0:
        if limit < len(text):
            return None
        line_end = len(text)
    return None if _SENTENCE_BREAK.search(text, line_start, line_end) else line_end


def trim_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The span without edge punctuation, without a clause or list number opening its line ("3.2 ",
    "c) "): the reader takes those for answers to "which number"/"what day" questions, and within one cell
    of a table row. A span that is only such a label comes back empty."""
    # The span's line start, looked for no further back than a row is long: a span further into its line
    # opens neither the line nor a row (and a long single-line text is not scanned for every span).
    lookback = max(0, start - _MAX_ROW_CHARS)
    newline = text.rfind("\n", lookback, start)
    line_start = newline + 1 if newline >= 0 or lookback == 0 else None
    row_end = None if line_start is None else _table_row_end(text, line_start, end)
    if row_end is not None:
        next_cell = _NEXT_CELL.search(text, start, row_end)
        if next_cell and next_cell.start() < end:
            end = next_cell.start()
    while start < end and text[start] in _EDGE_JUNK:
        start += 1
    while end > start and text[end - 1] in _EDGE_JUNK:
        end -= 1
    label = _CLAUSE_LABEL.match(text, start)
    if label and line_start is not None and not text[line_start:start].strip():
        start = label.end()
        while start < end and text[start].isspace():
            start += 1
    return start, end


class AnswerAggregator:
    """Distinct answers with their evidence, scored by the calibrator; confident from its threshold,
    "not sure" from its floor, none below."""

    def __init__(self, config: AnsweringConfig, calibrator: Calibrator | None = None) -> None:
        self.config = config
        self.calibrator = calibrator or Calibrator.margin_only()

    @property
    def threshold(self) -> float:
        """The probability from which an answer is confident."""
        configured = self.config.min_answer_probability
        return self.calibrator.threshold if configured is None else configured

    @property
    def floor(self) -> float:
        """The probability below which no answer is given (the calibration's floor, never above the
        threshold in use)."""
        return min(self.calibrator.effective_floor, self.threshold)

    def aggregate(
        self,
        question: str,
        candidates: Sequence[SpanCandidate],
        passages: Sequence[Passage],
        get_document: Callable[[str], Document | None],
        max_answers: int | None = None,
    ) -> tuple[list[Answer], bool]:
        """Answers best first, and whether the pipeline abstained."""
        return self.decide(self.rank(question, candidates, passages, get_document), max_answers)

    def decide(
        self,
        ranked: Sequence[Answer],
        max_answers: int | None = None,
        min_answer_probability: float | None = None,
        floor: float | None = None,
        best_guess: bool = False,
    ) -> tuple[list[Answer], bool]:
        """When the best answer (the first) is at or above the floor, the answers at or above it, at most
        `max_answers`, each with its confidence level: "answer" from the threshold up, "not_sure" below
        it. None means abstain.

        `min_answer_probability` replaces the threshold for this decision, `floor` the floor (never
        above the threshold). `best_guess`: when no answer reaches the floor, the best one
        anyway, "not_sure". The evaluation replays exactly this on `rank`'s output to sweep thresholds."""
        limit = max_answers or self.config.max_answers
        threshold = self.threshold if min_answer_probability is None else min_answer_probability
        cut = min(self.calibrator.effective_floor if floor is None else floor, threshold)
        # The reader's best span decides, as the calibration was fitted on it: others are only added to it.
        kept = [a for a in ranked if a.score >= cut][:limit] if ranked and ranked[0].score >= cut else []
        if not kept and best_guess and ranked:
            kept = [ranked[0]]
        answers = [
            dataclasses.replace(a, confidence_level="answer" if a.score >= threshold else "not_sure")
            for a in kept
        ]
        return answers, not answers

    def rank(
        self,
        question: str,
        candidates: Sequence[SpanCandidate],
        passages: Sequence[Passage],
        get_document: Callable[[str], Document | None],
    ) -> list[Answer]:
        """Every distinct answer (one per document span and normalised text), the best margin first."""
        by_margin = sorted(candidates, key=lambda c: -c.margin)
        documents = {d: get_document(d) for d in dict.fromkeys(p.chunk.doc_id for p in passages)}
        # Each span trimmed once, in its document, where its whole line can be seen; its text's key serves
        # both the agreement features and the one-answer-per-text rule below.
        spans: list[tuple[int, int, str] | None] = []
        for candidate in by_margin:
            chunk = passages[candidate.passage_index].chunk
            document = documents[chunk.doc_id]
            if document is None:
                spans.append(None)
                continue
            start, end = trim_span(document.text, chunk.start + candidate.start, chunk.start + candidate.end)
            spans.append((start, end, normalize_answer(document.text[start:end])))
        evidence = _Evidence(question, by_margin, passages, [span[2] if span else None for span in spans])
        kept: list[tuple[str, int, int]] = []
        seen_texts: set[str] = set()
        answers: list[Answer] = []
        for candidate, span in zip(by_margin, spans, strict=True):
            if len(answers) >= self.config.max_candidates:
                break
            passage = passages[candidate.passage_index]
            chunk = passage.chunk
            document = documents[chunk.doc_id]
            if document is None or span is None:
                continue
            doc_start, doc_end, key = span
            if doc_end <= doc_start or "\n" in document.text[doc_start:doc_end]:
                # Across a line break a span runs from one table row, list item or paragraph into the
                # next ("£210\n£65\n\nManchester"): never one answer.
                continue
            # Overlapping chunks yield the same span twice: keep one answer per document span.
            if any(d == chunk.doc_id and s < doc_end and doc_start < e for d, s, e in kept):
                continue
            if key in seen_texts:
                continue
            kept.append((chunk.doc_id, doc_start, doc_end))
            seen_texts.add(key)
            answer = self._answer(candidate, passage, document, doc_start, doc_end)
            features = evidence.features(candidate, answer, key, len(answers))
            answers.append(dataclasses.replace(answer, features=features))
        return self.score(answers)

    def score(self, answers: Sequence[Answer]) -> list[Answer]:
        """Each answer's calibrated probability, from its features, in the reader's order. Not re-sorted by
        probability: the calibration is fitted on the reader's best span, and picking among spans by it chose
        the right one less often than the reader's margin did on the fitting sets."""
        probabilities = self.calibrator.probabilities([a.features for a in answers])
        return [
            dataclasses.replace(a, score=round(float(p), 6))
            for a, p in zip(answers, probabilities, strict=True)
        ]

    def _answer(
        self, candidate: SpanCandidate, passage: Passage, document: Document, start: int, end: int
    ) -> Answer:
        chunk = passage.chunk
        text = document.text
        sentence_start, sentence_end = sentence_around(text, start, end, within=(chunk.start, chunk.end))
        citation = Citation(
            doc_id=document.id,
            title=document.title,
            date=document.date,
            start=start,
            end=end,
            page=document.page_at(start),
            sentence=TextSpan(text[sentence_start:sentence_end], sentence_start, sentence_end),
            passage_id=chunk.id,
            passage=TextSpan(chunk.text, chunk.start, chunk.end),
            context=context_window(text, start, end, self.config.context_chars),
            section=document.section_at(start) or chunk.section,
        )
        return Answer(
            text=text[start:end],
            score=0.0,  # set by `rank` once every candidate's features are known
            reader_margin=round(candidate.margin, 4),
            citation=citation,
        )


class _Evidence:
    """What one question's candidates say together: the softmax over every passage read, agreement."""

    def __init__(
        self,
        question: str,
        candidates: Sequence[SpanCandidate],
        passages: Sequence[Passage],
        keys: Sequence[str | None],
    ):
        """`keys`: each candidate's normalised text (None: its document is gone), in the same order."""
        self.question = question
        self.question_words = content_words(question)
        self.passages = passages
        # A plural "s" aside ("fees", "fee"): the words as retrieval matches them.
        read = {w.rstrip("s") for p in passages for w in content_words(p.chunk.text)}
        missing = sum(1 for w in self.question_words if w.rstrip("s") not in read)
        self.question_in_passages = 1.0 - missing / len(self.question_words) if self.question_words else 0.0
        self.question_missing = math.log1p(missing)
        # Each window reports its no-answer score with each of its candidates: count each window once.
        nulls = {(c.passage_index, c.null_score) for c in candidates}
        scores = np.asarray([c.score for c in candidates] + [n for _, n in nulls], dtype=np.float64)
        self.best_margin = candidates[0].margin if candidates else 0.0
        self.min_null = min((n for _, n in nulls), default=0.0)
        if len(scores):
            weights = np.exp(scores - scores.max())
            total = weights.sum()
            self.span_probs = weights[: len(candidates)] / total
            self.null_prob = float(weights[len(candidates) :].sum() / total)
        else:
            self.span_probs, self.null_prob = np.zeros(0), 1.0
        self.text_probs: dict[str, float] = {}
        self.supporters: dict[str, set[int]] = {}
        for candidate, prob, key in zip(candidates, self.span_probs, keys, strict=True):
            if key is None:
                continue
            self.text_probs[key] = self.text_probs.get(key, 0.0) + float(prob)
            self.supporters.setdefault(key, set()).add(candidate.passage_index)
        self._position = {id(c): i for i, c in enumerate(candidates)}

    def features(self, candidate: SpanCandidate, answer: Answer, key: str, rank: int) -> dict[str, float]:
        passage = self.passages[candidate.passage_index]
        sentence = answer.citation.sentence
        return {
            "margin": candidate.margin,
            "span_score": candidate.score,
            "null_score": candidate.null_score,
            "best_margin": self.best_margin,
            "margin_gap": self.best_margin - candidate.margin,
            "min_null_score": self.min_null,
            "span_prob": float(self.span_probs[self._position[id(candidate)]]),
            "text_prob": self.text_probs.get(key, 0.0),
            "null_prob": self.null_prob,
            "support": math.log1p(len(self.supporters.get(key, ()))),
            "inverse_rank": 1.0 / passage.rank,
            "retrieval_score": passage.score,
            "dense_score": passage.dense_score or 0.0,
            "bm25_score": log1p_positive(passage.bm25_score),
            "answer_chars": math.log1p(len(answer.text)),
            "answer_words": float(len(answer.text.split())),
            "question_in_passage": overlap(self.question_words, passage.chunk.text),
            "question_in_passages": self.question_in_passages,
            "question_missing": self.question_missing,
            "question_in_sentence": overlap(self.question_words, sentence.text),
            "question_in_clause": overlap(
                self.question_words,
                qualifier_after(sentence.text, answer.start - sentence.start, answer.end - sentence.start),
            ),
            "cut_list": cuts_a_list(
                sentence.text, answer.start - sentence.start, answer.end - sentence.start
            ),
            "sentence_words": math.log1p(len(sentence.text.split())),
            "answer_share": len(answer.text) / max(len(sentence.text), len(answer.text), 1),
            "answer_in_question": overlap(content_words(answer.text), self.question),
            "type_match": type_match(self.question, answer.text),
            "candidate_rank": float(rank),
        }
