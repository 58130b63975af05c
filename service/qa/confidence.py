"""Calibrated confidence: the probability that an answer is right, from features the pipeline has.

A `Calibrator` is a logistic regression over `FEATURES`, fitted on held-out data (`citeqa calibrate`)
and stored as JSON beside the reader it was fitted for: scoring is a dot product, so it is cheap,
thread-safe (read-only arrays) and needs no scikit-learn at serving time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from citeqa.indexing.durable import write_atomically
from citeqa.indexing.errors import CiteqaError
from citeqa.service.qa.retrieval import bm25_tokens

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"

# The floor of a calibration that does not give one: half its threshold. Between the floor and the
# threshold an answer is shown as "not sure", with its probability and its cited passage, so that the
# reader can check it; below the floor nothing is shown. No data chose this fraction: it is the
# judgement that an answer at least half as likely to be right as the least likely confident one is
# worth a glance at its source, while one less likely than that is mostly noise. A fitted calibration
# (`citeqa calibrate`) stores the floor it chose on held-out data instead.
DEFAULT_FLOOR_FRACTION = 0.5

# What an answer's probability is computed from. Question-level features (the same for every candidate
# of one question) let the model learn "this question is not answered here"; candidate-level ones rank.
FEATURES: tuple[str, ...] = (
    "margin",  # span logit sum minus its window's no-answer logit sum
    "span_score",
    "null_score",
    "best_margin",  # the question's best margin
    "margin_gap",  # how far this candidate is behind the best one
    "min_null_score",  # the question's most confident "no answer" window
    "span_prob",  # softmax over every span and no-answer score of every passage read
    "text_prob",  # span_prob summed over candidates with the same normalised text
    "null_prob",  # the no-answer share of that softmax
    "support",  # passages proposing the same normalised text
    "inverse_rank",  # 1 / passage rank
    "retrieval_score",  # fused (reciprocal rank) score, 0..1
    "dense_score",
    "bm25_score",  # log1p of the BM25 score; 0 when BM25 did not retrieve the passage
    "answer_chars",  # log1p
    "answer_words",
    "question_in_passage",  # share of the question's content words found in the passage
    "question_in_passages",  # ... in any passage read: a word in none is a thing the question asks that
    "question_missing",  # ... no passage mentions (log1p of how many), the mark of a near miss
    "question_in_sentence",  # ... in the sentence holding the answer
    "question_in_clause",  # ... in the span and the rest of its clause (see `qualifier_after`)
    "cut_list",  # 1 when the span stops inside an enumeration ("Wuhan, Quanzhou" of three cities)
    "sentence_words",  # log1p of the words of the sentence holding the answer
    "answer_share",  # the answer's share of that sentence: small in a long clause that is the answer
    "answer_in_question",  # share of the answer's words that repeat the question (usually wrong)
    "type_match",  # 1: the span has the kind of value the question asks for; 0: not; 0.5: can't tell
    "candidate_rank",  # 0 for the best margin among distinct answers, 1 for the next, ...
)

_WORD = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"\d")
_MONTHS = re.compile(
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|\b1[0-9]{3}\b|\b20[0-9]{2}\b", re.I
)


def content_words(text: str) -> list[str]:
    """Lower-cased words and numbers without stop words: what retrieval matches on."""
    return bm25_tokens(text)


def overlap(words: Sequence[str], text: str) -> float:
    """Share of `words` that occur in `text` (0 when there are none)."""
    if not words:
        return 0.0
    present = set(_WORD.findall(text.lower()))
    return sum(1 for w in words if w in present) / len(words)


# Where one clause of a sentence ends and the next begins: what binds a value to its qualifier.
_CLAUSE_BREAK = re.compile(r"[,;:()]|\b(?:and|or|but|while|whereas|except|unless)\b", re.I)
_LIST_AFTER = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|\s(?:and|or)\s+)[\w\"'(]")
_LIST_BEFORE = re.compile(r"\w[\w\"')-]*(?:\s*,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+)$")


def qualifier_after(sentence: str, start: int, end: int) -> str:
    """The span and what follows it up to the next clause break: where a value's qualifier stands
    ("60 euros for Europe and 75 euros outside Europe": "75 euros outside Europe")."""
    after = _CLAUSE_BREAK.search(sentence, end)
    return sentence[start : after.start() if after else len(sentence)]


def cuts_a_list(text: str, start: int, end: int) -> float:
    """1.0 when the span ends where an enumeration goes on, or starts right after a list item."""
    return float(bool(_LIST_AFTER.match(text, end, min(len(text), end + 40))
                      or _LIST_BEFORE.search(text, max(0, start - 40), start)))  # fmt: skip


def expected_type(question: str) -> str | None:
    """The kind of value a question asks for, from its wording; None when it does not say."""
    q = question.lower()
    if re.search(r"\bhow (many|much|long|old|far|often|large|big|high)\b|\bwhat (percentage|number)\b", q):
        return "number"
    if re.search(r"\bwhen\b|\bwhat (year|date|day|month|time)\b|\bin which year\b", q):
        return "date"
    if re.search(r"\bwho(m|se)?\b", q):
        return "name"
    if re.search(r"\bwhere\b", q):
        return "name"
    return None


def type_match(question: str, answer: str) -> float:
    kind = expected_type(question)
    if kind is None:
        return 0.5
    if kind == "number":
        return float(bool(_NUMBER.search(answer)))
    if kind == "date":
        return float(bool(_MONTHS.search(answer) or _NUMBER.search(answer)))
    return float(any(w[:1].isupper() for w in answer.split()))


@dataclass
class Calibrator:
    """P(right) = sigmoid(intercept + coef . (features - mean) / scale).

    Three outcomes: a confident answer at or above `threshold`, a "not sure" one from `floor` up to it,
    none below `floor`. `floor` None: `DEFAULT_FLOOR_FRACTION` of the threshold, resolved when used, so
    that it follows a threshold set after construction (as `citeqa calibrate` does)."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)
    floor: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0 or (self.floor is not None and not 0.0 <= self.floor <= 1.0):
            raise CiteqaError("calibration: threshold and floor must be probabilities between 0 and 1")
        n = len(self.features)
        if not (len(self.mean) == len(self.scale) == len(self.coef) == n) or n == 0:
            raise CiteqaError("calibration: features, mean, scale and coef must have the same length")
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown:
            raise CiteqaError(f"calibration uses features this version does not compute: {unknown}")
        self._mean = np.asarray(self.mean, dtype=np.float64)
        self._scale = np.where(np.asarray(self.scale, dtype=np.float64) > 0, self.scale, 1.0)
        self._coef = np.asarray(self.coef, dtype=np.float64)

    @property
    def effective_floor(self) -> float:
        """The probability below which no answer is given: `floor`, or its default; never above the
        threshold (a floor above it would leave no room for "not sure" and hide confident answers)."""
        floor = DEFAULT_FLOOR_FRACTION * self.threshold if self.floor is None else self.floor
        return min(floor, self.threshold)

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        return np.asarray([[row[name] for name in self.features] for row in rows], dtype=np.float64)

    def probabilities(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        if not rows:
            return np.zeros(0)
        z = ((self.matrix(rows) - self._mean) / self._scale) @ self._coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))

    @classmethod
    def margin_only(cls) -> Calibrator:
        """The reader's own decision, for a reader nobody calibrated: answer when a span beats its window's
        no-answer score (margin > 0), with probability sigmoid(margin / 4). Its floor is its threshold
        (no "not sure" band): sigmoid(margin / 4) is no probability anyone measured, so a fraction of it
        would mark nothing in particular; a best guess can still be asked for."""
        return cls(["margin"], [0.0], [4.0], [1.0], 0.0, 0.5, {"fitted": False}, floor=0.5)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    def save(self, path: Path) -> None:
        write_atomically(path, (json.dumps(self.to_json(), indent=2) + "\n").encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> Calibrator:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                features=[str(f) for f in raw["features"]],
                mean=[float(x) for x in raw["mean"]],
                scale=[float(x) for x in raw["scale"]],
                coef=[float(x) for x in raw["coef"]],
                intercept=float(raw["intercept"]),
                threshold=float(raw["threshold"]),
                meta=dict(raw.get("meta") or {}),
                floor=None if raw.get("floor") is None else float(raw["floor"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CiteqaError(f"cannot read the calibration {path}: {exc}") from exc

    @classmethod
    def for_reader(cls, reader_path: Path) -> Calibrator:
        """The calibration stored with the reader, or the margin-only rule when there is none."""
        path = reader_path / CALIBRATION_FILE
        return cls.load(path) if path.is_file() else cls.margin_only()

    @classmethod
    def for_corpus(cls, reader_path: Path, data_dir: Path) -> Calibrator:
        """The reader's calibration, or its adaptation to the corpus of `data_dir` (`citeqa calibrate
        --adapt`, kept in that folder) when it was adapted from this very calibration."""
        base = cls.for_reader(reader_path)
        path = data_dir / CALIBRATION_FILE
        if not path.is_file():
            return base
        adapted = cls.load(path)
        if adapted.meta.get("adapted_from") != base.fingerprint():
            log.warning(
                "%s was adapted from another calibration than %s's: not used (run `citeqa calibrate --adapt` "
                "again)", path, reader_path.name,
            )  # fmt: skip
            return base
        return adapted

    def fingerprint(self) -> str:
        """Names this calibration: an adaptation records the one it was made from."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    def rescaled(self, scale: float, shift: float) -> Calibrator:
        """The same weights of the evidence, with the log-odds scaled and shifted: P = sigmoid(scale * z +
        shift). Refitting these two numbers on a corpus's own questions (Platt scaling) moves what a
        probability means there without learning the features again from a few dozen questions."""
        return Calibrator(
            self.features, self.mean, self.scale, [scale * c for c in self.coef],
            scale * self.intercept + shift, self.threshold, dict(self.meta), self.floor,
        )  # fmt: skip


def log1p_positive(value: float | None) -> float:
    return math.log1p(max(value or 0.0, 0.0))
