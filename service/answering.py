"""Turn reader candidates into answers: one per distinct document span, scored, cited, or abstain."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from indexing.chunking import sentence_around
from indexing.types import Document
from service.reading import SpanCandidate
from service.types import Answer, Citation, Passage, TextSpan

NO_ANSWER_MESSAGE = "No answer was found in the indexed documents."
_EDGE_JUNK = string.whitespace + ",;:"


@dataclass(frozen=True)
class AnsweringConfig:
    max_answers: int = 3
    no_answer_margin: float = 0.0
    reader_weight: float = 0.8
    temperature: float = 4.0
    context_chars: int = 120


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 60.0), -60.0)))


def combined_score(margin: float, retrieval_score: float, config: AnsweringConfig) -> float:
    """An answer's 0..1 score from its reader margin and its passage's retrieval score."""
    reader = _sigmoid((margin - config.no_answer_margin) / config.temperature)
    retrieval = max(retrieval_score, 1e-6)
    return float(reader**config.reader_weight * retrieval ** (1.0 - config.reader_weight))


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def context_window(text: str, start: int, end: int, chars: int) -> TextSpan:
    """About `chars` characters either side of the span, widened to whole words."""
    lo = max(0, start - chars)
    hi = min(len(text), end + chars)
    while lo > 0 and not text[lo - 1].isspace() and lo > start - chars - 20:
        lo -= 1
    while hi < len(text) and not text[hi].isspace() and hi < end + chars + 20:
        hi += 1
    return TextSpan(text=text[lo:hi], start=lo, end=hi)


class AnswerAggregator:
    def __init__(self, config: AnsweringConfig) -> None:
        self.config = config

    def score(self, candidate: SpanCandidate, passage: Passage) -> float:
        return combined_score(candidate.margin, passage.score, self.config)

    def aggregate(
        self,
        candidates: Sequence[SpanCandidate],
        passages: Sequence[Passage],
        get_document: Callable[[str], Document | None],
        max_answers: int | None = None,
    ) -> tuple[list[Answer], bool]:
        """Answers best first, and whether the reader abstained."""
        limit = max_answers or self.config.max_answers
        ranked = sorted(candidates, key=lambda c: (-self.score(c, passages[c.passage_index]), -c.margin))
        best_margin = max((c.margin for c in candidates), default=-math.inf)
        abstain = best_margin < self.config.no_answer_margin
        kept: list[tuple[str, int, int]] = []
        seen_texts: set[str] = set()
        answers: list[Answer] = []
        documents: dict[str, Document | None] = {}
        for candidate in ranked:
            if len(answers) >= limit:
                break
            passage = passages[candidate.passage_index]
            chunk = passage.chunk
            start, end = self._trim(chunk.text, candidate.start, candidate.end)
            if end <= start:
                continue
            doc_start, doc_end = chunk.start + start, chunk.start + end
            # Overlapping chunks yield the same span twice: keep one answer per document span.
            if any(d == chunk.doc_id and s < doc_end and doc_start < e for d, s, e in kept):
                continue
            key = normalize_answer(chunk.text[start:end])
            if key in seen_texts:
                continue
            if chunk.doc_id not in documents:
                documents[chunk.doc_id] = get_document(chunk.doc_id)
            document = documents[chunk.doc_id]
            if document is None:
                continue
            kept.append((chunk.doc_id, doc_start, doc_end))
            seen_texts.add(key)
            answers.append(self._answer(candidate, passage, document, doc_start, doc_end))
        return answers, abstain or not answers

    @staticmethod
    def _trim(text: str, start: int, end: int) -> tuple[int, int]:
        while start < end and text[start] in _EDGE_JUNK:
            start += 1
        while end > start and text[end - 1] in _EDGE_JUNK:
            end -= 1
        return start, end

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
        )
        return Answer(
            text=text[start:end],
            score=round(self.score(candidate, passage), 6),
            reader_margin=round(candidate.margin, 4),
            citation=citation,
        )
