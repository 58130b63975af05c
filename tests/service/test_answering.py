from __future__ import annotations

from indexing.types import Chunk, Document
from service.answering import AnswerAggregator, AnsweringConfig, normalize_answer
from service.reading import SpanCandidate
from service.types import Passage

TEXT = "Intro line.\nThe levy is 5 euros per tonne. It starts in 2024. Farmers pay nothing."
DOC = Document(id="d.txt", text=TEXT, title="Levy", content_hash="h", date="2024-01-01")


def _passage(start: int, end: int, seq: int, score: float = 1.0) -> Passage:
    chunk = Chunk(id=f"d.txt#{seq}", doc_id="d.txt", seq=seq, start=start, end=end, text=TEXT[start:end])
    return Passage(chunk=chunk, title="Levy", rank=seq + 1, score=score, dense_score=0.5, bm25_score=1.0)


def _candidate(passage: Passage, answer: str, index: int, score: float, null: float = 0.0) -> SpanCandidate:
    local = passage.chunk.text.index(answer)
    return SpanCandidate(index, local, local + len(answer), score, null)


def test_overlapping_chunks_give_one_answer_per_span() -> None:
    first, second = _passage(0, 60, 0), _passage(12, len(TEXT), 1)  # both hold "5 euros"
    candidates = [
        _candidate(first, "5 euros", 0, 12.0),
        _candidate(second, "5 euros", 1, 11.0),
        _candidate(second, "5 euros per tonne", 1, 10.0),
        _candidate(second, "2024", 1, 8.0),
    ]
    answers, abstain = AnswerAggregator(AnsweringConfig(max_answers=5)).aggregate(
        candidates, [first, second], {"d.txt": DOC}.get
    )
    assert not abstain
    assert [a.text for a in answers] == ["5 euros", "2024"]
    for answer in answers:
        assert DOC.text[answer.start : answer.end] == answer.text
        assert 0.0 <= answer.score <= 1.0
    best = answers[0].citation
    assert best.sentence.text == "The levy is 5 euros per tonne."
    assert TEXT[best.context.start : best.context.end] == best.context.text
    assert best.passage_id == "d.txt#0" and best.date == "2024-01-01"


def test_abstains_when_no_span_beats_the_margin() -> None:
    passage = _passage(0, len(TEXT), 0)
    candidates = [_candidate(passage, "Farmers", 0, 3.0, null=5.0)]
    _, abstain = AnswerAggregator(AnsweringConfig(no_answer_margin=0.0)).aggregate(
        candidates, [passage], {"d.txt": DOC}.get
    )
    assert abstain
    _, lenient = AnswerAggregator(AnsweringConfig(no_answer_margin=-5.0)).aggregate(
        candidates, [passage], {"d.txt": DOC}.get
    )
    assert not lenient


def test_higher_margin_scores_higher() -> None:
    passage = _passage(0, len(TEXT), 0)
    aggregator = AnswerAggregator(AnsweringConfig())
    strong = aggregator.score(SpanCandidate(0, 0, 5, 10.0, 0.0), passage)
    weak = aggregator.score(SpanCandidate(0, 0, 5, 2.0, 0.0), passage)
    assert 0 < weak < strong < 1


def test_edge_punctuation_is_trimmed_from_answers() -> None:
    passage = _passage(0, len(TEXT), 0)
    local = TEXT.index("5 euros per tonne.")
    candidate = SpanCandidate(0, local - 1, local + len("5 euros,") - 1, 9.0, 0.0)
    answers, _ = AnswerAggregator(AnsweringConfig()).aggregate([candidate], [passage], {"d.txt": DOC}.get)
    assert answers[0].text == "5 euros"


def test_normalize_answer_follows_squad() -> None:
    assert normalize_answer("The  804.179 Billion, yuan!") == "804179 billion yuan"
