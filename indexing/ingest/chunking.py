"""Sentence-aware chunking sized in the embedder's own tokens, with exact character offsets."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

from citeqa.indexing.tokenizers import Tokenizer
from citeqa.indexing.types import Chunk, Document, SectionSpan

# A sentence ends at terminal punctuation followed by whitespace, or at a line break.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?;。！？；])\s+|\n")


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Character spans of the sentences in text[start:end], trimmed of surrounding whitespace."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in _SENTENCE_BREAK.finditer(text, start, end):
        spans.extend(_trimmed(text, cursor, match.start()))
        cursor = match.end()
    spans.extend(_trimmed(text, cursor, end))
    return spans


def _trimmed(text: str, start: int, end: int) -> list[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)] if start < end else []


# How far a cited sentence may run past the passage it was found in: a long sentence cut between two
# chunks is quoted whole, a run-on "sentence" of a whole document is not.
SENTENCE_REACH_CHARS = 300


def sentence_around(text: str, start: int, end: int, within: tuple[int, int]) -> tuple[int, int]:
    """The span of the sentence(s) around text[start:end] in the passage text[within], completed past
    the passage's edges by up to SENTENCE_REACH_CHARS."""
    lo = _sentence_start_before(text, within[0])
    hi = min(len(text), within[1] + SENTENCE_REACH_CHARS)
    spans = sentence_spans(text, lo, hi)
    covering = [s for s in spans if s[0] < end and s[1] > start]
    if not covering:
        return within
    return covering[0][0], max(covering[-1][1], end)


# Characters a chunk may hold per token of its budget. The embedder's tokenizer makes any word over 100
# characters one [UNK] token, so a token budget alone let a 9.5-million-character "word" become one chunk
# (and one 85 MB answer). Real text averages 4-6 characters a token; this only cuts such runs.
CHARS_PER_TOKEN = 16


def _sentence_start_before(text: str, position: int) -> int:
    """Where the sentence holding `position` starts, looking back at most SENTENCE_REACH_CHARS."""
    floor = max(0, position - SENTENCE_REACH_CHARS)
    starts = [m.end() for m in _SENTENCE_BREAK.finditer(text, floor, position)]
    return starts[-1] if starts else floor


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = 64
    overlap_tokens: int = 16
    max_chars: int = 0  # 0: max_tokens * CHARS_PER_TOKEN

    @property
    def char_budget(self) -> int:
        return self.max_chars or self.max_tokens * CHARS_PER_TOKEN


def _by_section(
    units: Sequence[tuple[int, int, int]], sections: Sequence[SectionSpan]
) -> list[tuple[tuple[str, ...], list[tuple[int, int, int]]]]:
    """Consecutive units grouped by the section their start lies in (path () outside every section)."""
    starts = [section.start for section in sections]
    groups: list[tuple[tuple[str, ...], list[tuple[int, int, int]]]] = []
    current: int | None = -2
    for unit in units:
        at = bisect.bisect_right(starts, unit[0]) - 1
        index = at if at >= 0 and unit[0] < sections[at].end else -1
        if index != current:
            groups.append((sections[index].path if index >= 0 else (), []))
            current = index
        groups[-1][1].append(unit)
    return groups


def token_spans(tokenizer: Tokenizer, text: str) -> list[tuple[int, int]]:
    """Character spans of the tokenizer's wordpieces over the whole text, special tokens excluded."""
    return [(s, e) for s, e in tokenizer.offsets(text) if e > s]


class Chunker:
    """Packs whole sentences into chunks of at most `max_tokens` tokens, overlapping by sentences.

    A sentence longer than the budget is cut at token boundaries, so no chunk is ever truncated
    silently by the embedder.
    """

    def __init__(self, tokenizer: Tokenizer, config: ChunkingConfig | None = None) -> None:
        self.tokenizer = tokenizer
        self.config = config or ChunkingConfig()
        if self.config.max_tokens < 8:
            raise ValueError("max_tokens must be at least 8")
        if not 0 <= self.config.overlap_tokens < self.config.max_tokens:
            raise ValueError("overlap_tokens must be in [0, max_tokens)")

    def chunk(self, document: Document) -> list[Chunk]:
        """Chunks in text order; none spans two sections, so each carries its section's heading path."""
        text = document.text
        tokens = token_spans(self.tokenizer, text)
        token_starts = [s for s, _ in tokens]
        units = self._units(text, tokens, token_starts)
        chunks: list[Chunk] = []
        for path, group in _by_section(units, document.sections):
            for first, last in self._pack(group):
                start, end = group[first][0], group[last][1]
                chunks.append(
                    Chunk(
                        id=f"{document.id}#{len(chunks)}",
                        doc_id=document.id,
                        seq=len(chunks),
                        start=start,
                        end=end,
                        text=text[start:end],
                        section=path,
                    )
                )
        return chunks

    def _units(
        self, text: str, tokens: Sequence[tuple[int, int]], token_starts: Sequence[int]
    ) -> list[tuple[int, int, int]]:
        """(start, end, token count) for each sentence, long sentences cut into token windows."""
        budget = self.config.max_tokens
        units: list[tuple[int, int, int]] = []
        for start, end in sentence_spans(text):
            lo = bisect.bisect_left(token_starts, start)
            hi = bisect.bisect_left(token_starts, end)
            count = hi - lo
            if count <= budget:
                units.append((start, end, max(count, 1)))
                continue
            piece_lo = lo
            while piece_lo < hi:
                piece_hi = self._cut_point(text, tokens, piece_lo, min(piece_lo + budget, hi), hi)
                piece_start = start if piece_lo == lo else tokens[piece_lo][0]
                piece_end = end if piece_hi == hi else tokens[piece_hi][0]
                units.extend((s, e, piece_hi - piece_lo) for s, e in _trimmed(text, piece_start, piece_end))
                piece_lo = piece_hi
        return [piece for unit in units for piece in self._cut_long(text, unit, token_starts)]

    def _cut_long(
        self, text: str, unit: tuple[int, int, int], token_starts: Sequence[int]
    ) -> list[tuple[int, int, int]]:
        """A unit over the character budget cut into pieces within it, at whitespace where there is some."""
        start, end, _ = unit
        limit = self.config.char_budget
        if end - start <= limit:
            return [unit]
        pieces: list[tuple[int, int, int]] = []
        while start < end:
            cut = min(start + limit, end)
            if cut < end:
                space = max(
                    text.rfind(" ", start + limit // 2, cut), text.rfind("\n", start + limit // 2, cut)
                )
                cut = space if space > start else cut
            for s, e in _trimmed(text, start, cut):
                tokens = bisect.bisect_left(token_starts, e) - bisect.bisect_left(token_starts, s)
                pieces.append((s, e, max(tokens, 1)))
            start = cut
        return pieces

    @staticmethod
    def _cut_point(text: str, tokens: Sequence[tuple[int, int]], lo: int, limit: int, hi: int) -> int:
        """The last token index in (lo, limit] that starts a new word, so words are not split."""
        if limit >= hi:
            return hi
        for cut in range(limit, lo, -1):
            previous_end, start = tokens[cut - 1][1], tokens[cut][0]
            if start > previous_end or not text[start].isalnum() or not text[start - 1].isalnum():
                return cut
        return limit

    def _pack(self, units: Sequence[tuple[int, int, int]]) -> list[tuple[int, int]]:
        """Greedy packing of unit indices into (first, last) ranges with sentence overlap."""
        budget, overlap = self.config.max_tokens, self.config.overlap_tokens
        char_budget = self.config.char_budget
        ranges: list[tuple[int, int]] = []
        first = 0
        while first < len(units):
            used, last = 0, first
            while (
                last < len(units)
                and used + units[last][2] <= budget
                and units[last][1] - units[first][0] <= char_budget
            ):
                used += units[last][2]
                last += 1
            last = max(last, first + 1) - 1
            ranges.append((first, last))
            if last + 1 >= len(units):
                break
            # Step back over trailing sentences worth at most `overlap` tokens, always moving forward.
            next_first, carried = last + 1, 0
            while (
                next_first - 1 > first
                and carried + units[next_first - 1][2] <= overlap
                and units[last][1] - units[next_first - 1][0] <= char_budget // 2
            ):
                next_first -= 1
                carried += units[next_first][2]
            first = next_first
        return ranges
