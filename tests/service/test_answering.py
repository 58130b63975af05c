from __future__ import annotations

from citeqa.indexing.types import Chunk, Document
from citeqa.service.qa.answering import AnswerAggregator, AnsweringConfig, normalize_answer
from citeqa.service.qa.confidence import FEATURES, Calibrator
from citeqa.service.qa.reader import SpanCandidate
from citeqa.service.qa.types import Passage

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
        "How much is the levy?", candidates, [first, second], {"d.txt": DOC}.get
    )
    assert not abstain
    assert [a.text for a in answers] == ["5 euros", "2024"]
    # Two passages proposed "5 euros": the agreement is one of its features.
    assert answers[0].features["support"] > answers[1].features["support"]
    assert set(answers[0].features) == set(FEATURES)
    for answer in answers:
        assert DOC.text[answer.start : answer.end] == answer.text
        assert 0.0 <= answer.score <= 1.0
    best = answers[0].citation
    assert best.sentence.text == "The levy is 5 euros per tonne."
    assert TEXT[best.context.start : best.context.end] == best.context.text
    assert best.passage_id == "d.txt#0" and best.date == "2024-01-01"


def test_without_a_calibration_the_reader_decides_by_its_margin() -> None:
    passage = _passage(0, len(TEXT), 0)
    aggregator = AnswerAggregator(AnsweringConfig())  # the margin-only rule: answer when margin > 0
    _, abstain = aggregator.aggregate("Who pays?", [_candidate(passage, "Farmers", 0, 3.0, null=5.0)],
                                      [passage], {"d.txt": DOC}.get)  # fmt: skip
    assert abstain
    answers, abstain = aggregator.aggregate("Who pays?", [_candidate(passage, "Farmers", 0, 9.0, null=5.0)],
                                            [passage], {"d.txt": DOC}.get)  # fmt: skip
    assert not abstain and answers[0].score > 0.5


def test_threshold_and_calibrator_decide_and_rank() -> None:
    passage = _passage(0, len(TEXT), 0)
    candidates = [_candidate(passage, "5 euros", 0, 8.0), _candidate(passage, "2024", 0, 9.0)]
    # A calibrator that trusts only answers holding a number, and prefers short ones.
    calibrator = Calibrator(["type_match", "answer_chars"], [0.5, 1.5], [0.5, 1.0], [3.0, -2.0], 0.0, 0.9)
    aggregator = AnswerAggregator(AnsweringConfig(max_answers=3), calibrator)
    ranked = aggregator.rank("How much is the levy?", candidates, [passage], {"d.txt": DOC}.get)
    assert [a.text for a in ranked] == ["2024", "5 euros"]  # ranked by probability, not margin
    assert ranked[0].score > ranked[1].score
    answers, abstain = aggregator.decide(ranked)
    assert not abstain and [a.text for a in answers] == [a.text for a in ranked if a.score >= 0.9]
    assert aggregator.decide(ranked, threshold=1.0) == ([], True)
    everything, _ = aggregator.decide(ranked, threshold=0.0)
    assert [a.text for a in everything] == ["2024", "5 euros"]


def test_edge_punctuation_is_trimmed_from_answers() -> None:
    passage = _passage(0, len(TEXT), 0)
    local = TEXT.index("5 euros per tonne.")
    candidate = SpanCandidate(0, local - 1, local + len("5 euros,") - 1, 9.0, 0.0)
    answers, _ = AnswerAggregator(AnsweringConfig()).aggregate(
        "How much?", [candidate], [passage], {"d.txt": DOC}.get
    )
    assert answers[0].text == "5 euros"


def test_normalize_answer_follows_squad() -> None:
    assert normalize_answer("The  804.179 Billion, yuan!") == "804179 billion yuan"
