from __future__ import annotations

import itertools

import pytest
from citeqa.indexing.embedding import Embedder
from citeqa.indexing.ingest.chunking import (
    SENTENCE_REACH_CHARS,
    Chunker,
    ChunkingConfig,
    sentence_around,
    sentence_spans,
    token_spans,
)
from citeqa.indexing.ingest.loaders import load_bytes
from citeqa.indexing.tokenizers import Tokenizer
from citeqa.indexing.types import Document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def tokenizer(embedder: Embedder) -> Tokenizer:
    return embedder.tokenizer


def _doc(text: str) -> Document:
    return Document(id="d.txt", text=text, title="t", content_hash="h")


def _tokens_of(tokenizer: Tokenizer, text: str) -> int:
    return len(token_spans(tokenizer, text))


def test_sentence_spans_are_trimmed_and_exact() -> None:
    text = "  First one.  Second; third!\n\nFourth line\n"
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second;", "third!", "Fourth line"]


@pytest.mark.integration
def test_seed_chunks_hold_offsets_and_token_budget(tokenizer: Tokenizer, seed_text: str) -> None:
    config = ChunkingConfig(max_tokens=64, overlap_tokens=16)
    chunks = Chunker(tokenizer, config).chunk(_doc(seed_text))
    assert len(chunks) > 5
    for chunk in chunks:
        assert seed_text[chunk.start : chunk.end] == chunk.text
        assert _tokens_of(tokenizer, chunk.text) <= config.max_tokens + 2
    # Consecutive chunks overlap or touch, and together cover every sentence.
    for before, after in itertools.pairwise(chunks):
        assert after.start > before.start
        assert after.start <= before.end + 2 or seed_text[before.end : after.start].strip() == ""
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(
        i in covered for s, e in sentence_spans(seed_text) for i in range(s, e) if not seed_text[i].isspace()
    )


@pytest.mark.integration
def test_long_sentence_is_cut_not_truncated(tokenizer: Tokenizer) -> None:
    text = " ".join(f"word{i}" for i in range(600))  # one sentence, far over the budget
    chunks = Chunker(tokenizer, ChunkingConfig(max_tokens=50, overlap_tokens=0)).chunk(_doc(text))
    assert len(chunks) > 10
    # Cuts fall between words, so the chunks together give back every word intact.
    assert " ".join(c.text for c in chunks).split() == text.split()


_alphabet = st.sampled_from(
    [*list("abcXYZ éü中文 .,;!?\n\t\r  \xa0\u2028-0123456789"), "Ünïcödé", "🙂", "..."]
)


@pytest.mark.integration
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(_alphabet, min_size=0, max_size=400).map("".join), size=st.integers(8, 40))
def test_chunk_offsets_hold_for_any_text(tokenizer: Tokenizer, text: str, size: int) -> None:
    chunker = Chunker(tokenizer, ChunkingConfig(max_tokens=size, overlap_tokens=size // 4))
    for chunk in chunker.chunk(_doc(text)):
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.text


@pytest.mark.integration
def test_chunker_rejects_bad_config(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError):
        Chunker(tokenizer, ChunkingConfig(max_tokens=32, overlap_tokens=32))


@pytest.mark.integration
def test_chunk_ids_are_stable(tokenizer: Tokenizer, seed_text: str) -> None:
    doc = load_bytes(seed_text.encode(), "seed.txt")
    first = Chunker(tokenizer).chunk(doc)
    second = Chunker(tokenizer).chunk(doc)
    assert first == second
    assert [c.id for c in first][:2] == ["seed.txt#0", "seed.txt#1"]


@pytest.mark.integration
def test_one_huge_word_is_cut_to_the_character_budget(tokenizer: Tokenizer) -> None:
    """M3: the tokenizer makes a word over 100 characters one token; chunks still stay small."""
    word = "x" * 200_000
    text = f"Intro sentence. {word} tail words here."
    config = ChunkingConfig(max_tokens=64, overlap_tokens=16)
    chunks = Chunker(tokenizer, config).chunk(_doc(text))
    assert max(len(c.text) for c in chunks) <= config.char_budget == 64 * 16
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
    covered = "".join(text[c.start : c.end] for c in chunks if "x" in c.text)
    assert covered.count("x") >= len(word)  # every character of the word is in some chunk


@pytest.mark.integration
def test_character_budget_leaves_ordinary_text_alone(tokenizer: Tokenizer, seed_text: str) -> None:
    uncapped = ChunkingConfig(max_tokens=64, overlap_tokens=16, max_chars=10**9)
    capped = Chunker(tokenizer, ChunkingConfig(max_tokens=64, overlap_tokens=16)).chunk(_doc(seed_text))
    assert capped == Chunker(tokenizer, uncapped).chunk(_doc(seed_text))


@pytest.mark.integration
def test_cited_sentence_runs_past_the_chunk_edge(tokenizer: Tokenizer) -> None:
    """A sentence cut between two chunks is quoted whole, not stopped at the chunk's edge."""
    long_sentence = "The board " + " ".join(f"reviewed item {i}" for i in range(15)) + " and approved Ningbo."
    text = f"First sentence here. {long_sentence} Last sentence here."
    chunks = Chunker(tokenizer, ChunkingConfig(max_tokens=32, overlap_tokens=0)).chunk(_doc(text))
    answer_start = text.index("Ningbo")
    chunk = next(c for c in chunks if c.start <= answer_start < c.end)
    assert chunk.start > text.index("The board")  # the sentence began in an earlier chunk
    start, end = sentence_around(text, answer_start, answer_start + 6, within=(chunk.start, chunk.end))
    assert text[start:end] == long_sentence
    # Bounded: a sentence longer than the reach is quoted from at most that far back.
    huge = "a " * 5000 + "Ningbo."
    at = huge.index("Ningbo")
    start, _ = sentence_around(huge, at, at + 6, within=(at - 10, len(huge)))
    assert at - 10 - start <= SENTENCE_REACH_CHARS
