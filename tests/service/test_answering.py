from __future__ import annotations

from citeqa.indexing.types import Chunk, Document
from citeqa.service.qa.answering import (
    NO_ANSWER_MESSAGE,
    NOT_SURE_MESSAGE,
    AnswerAggregator,
    AnsweringConfig,
    normalize_answer,
    trim_span,
)
from citeqa.service.qa.confidence import FEATURES, Calibrator
from citeqa.service.qa.query import Query
from citeqa.service.qa.reader import SpanCandidate
from citeqa.service.qa.types import Passage

from tests.service.outcome_fakes import CONFIDENT, FLOOR, NONE, NOT_SURE, THRESHOLD, OutcomePipeline

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


def test_the_readers_best_span_leads_and_decides_with_its_probability() -> None:
    passage = _passage(0, len(TEXT), 0)
    candidates = [_candidate(passage, "5 euros", 0, 9.0), _candidate(passage, "2024", 0, 8.0)]
    # A calibrator that trusts only answers holding a number, and prefers short ones.
    calibrator = Calibrator(["type_match", "answer_chars"], [0.5, 1.5], [0.5, 1.0], [3.0, -2.0], 0.0, 0.9)
    aggregator = AnswerAggregator(AnsweringConfig(max_answers=3), calibrator)
    ranked = aggregator.rank("How much is the levy?", candidates, [passage], {"d.txt": DOC}.get)
    assert [a.text for a in ranked] == ["5 euros", "2024"]  # the reader's order, not the probability's
    assert ranked[0].score < ranked[1].score
    answers, abstain = aggregator.decide(ranked)
    # Confident from the threshold (0.9), "not sure" from the floor (by default half of it), none below.
    assert not abstain
    assert [(a.text, a.confidence_level) for a in answers] == [("5 euros", "not_sure"), ("2024", "answer")]
    # The best span below the floor: no answer, though a runner-up is above it.
    assert ranked[0].score < 0.9 <= ranked[1].score
    assert aggregator.decide(ranked, min_answer_probability=0.9, floor=0.9) == ([], True)
    assert aggregator.decide(ranked, min_answer_probability=1.0, floor=1.0) == ([], True)
    everything, _ = aggregator.decide(ranked, min_answer_probability=0.0)
    assert [a.text for a in everything] == ["5 euros", "2024"]
    assert {a.confidence_level for a in everything} == {"answer"}


def test_edge_punctuation_is_trimmed_from_answers() -> None:
    passage = _passage(0, len(TEXT), 0)
    local = TEXT.index("5 euros per tonne.")
    candidate = SpanCandidate(0, local - 1, local + len("5 euros,") - 1, 9.0, 0.0)
    answers, _ = AnswerAggregator(AnsweringConfig()).aggregate(
        "How much?", [candidate], [passage], {"d.txt": DOC}.get
    )
    assert answers[0].text == "5 euros"


def _trimmed(text: str, span: str) -> str:
    """`span` (its first occurrence in `text`) as trim_span leaves it."""
    start = text.index(span)
    lo, hi = trim_span(text, start, start + len(span))
    return text[lo:hi]


def test_a_clause_number_opening_the_line_is_not_part_of_an_answer() -> None:
    text = "9. REPORTING\n9.2 Call 0800 123 456 to report.\n(c) Tuesday and Thursday\nHeld at 48.5 Celsius."

    assert _trimmed(text, "9.2 Call 0800 123 456") == "Call 0800 123 456"
    assert _trimmed(text, "(c) Tuesday") == "Tuesday"
    assert _trimmed(text, "9. REPORTING") == "REPORTING"
    assert _trimmed(text, "9.2") == ""  # a label alone is no answer
    # Not at a line's start, or before no capitalised text, a number stays: it may be the answer.
    assert _trimmed(text, "48.5 Celsius") == "48.5 Celsius"
    assert _trimmed(text, "0800 123 456") == "0800 123 456"
    assert trim_span("25 December Christmas", 0, 11) == (0, 11)
    far = "x" * 1500 + "\n9.2 Call 0800 123 456"  # the line start is found however far into the text
    assert _trimmed(far, "9.2 Call") == "Call"
    one_line = "x" * 1500 + " 9.2 Call 0800 123 456"  # ... and mid-line a number stays
    assert _trimmed(one_line, "9.2 Call") == "9.2 Call"


def test_an_answer_in_a_table_row_stays_within_its_cell() -> None:
    text = (
        "Limits per city.\nCity: London, Hotel limit: £180, Meal allowance: £55.\n"
        "Meals, drinks and taxis: £40 a day, or £60 for two days.\n"
        "Names (Spanish: Selva Amazónica, Amazonía or Amazonia; French: Forêt). More.\n"
        "Data: what we collect, including: the IP address, Flash cookies"
    )

    assert _trimmed(text, "£180, Meal allowance: £55") == "£180"
    assert _trimmed(text, "London, Hotel limit") == "London"
    assert _trimmed(text, "£55") == "£55"
    # Prose, even with a colon in it, is no table row: a list runs on across its commas.
    assert _trimmed(text, "£40 a day, or £60") == "£40 a day, or £60"
    assert _trimmed(text, "Limits per city") == "Limits per city"
    assert _trimmed(text, "Selva Amazónica, Amazonía or Amazonia") == "Selva Amazónica, Amazonía or Amazonia"
    assert _trimmed(text, "what we collect, including") == "what we collect, including"
    # A line too long for a table row is prose, however it opens.
    long_line = "Fees: £10, Extra: " + "£5 " * 400
    assert _trimmed(long_line, "£10, Extra") == "£10, Extra"


def test_a_span_that_is_only_a_clause_number_gives_no_answer() -> None:
    text = "Intro.\n9.2 Call the helpline.\nThe helpline is 0800 123 456."
    doc = Document(id="d.txt", text=text, title="Help", content_hash="h")
    chunk = Chunk(id="d.txt#0", doc_id="d.txt", seq=0, start=0, end=len(text), text=text)
    passage = Passage(chunk=chunk, title="Help", rank=1, score=1.0, dense_score=0.5, bm25_score=1.0)
    label, number = text.index("9.2"), text.index("0800")
    candidates = [
        SpanCandidate(0, label, label + 3, 9.0, 0.0),
        SpanCandidate(0, number, number + 12, 8.0, 0.0),
    ]
    ranked = AnswerAggregator(AnsweringConfig()).rank(
        "What number do I call?", candidates, [passage], {"d.txt": doc}.get
    )
    assert [a.text for a in ranked] == ["0800 123 456"]


def test_normalize_answer_follows_squad() -> None:
    assert normalize_answer("The  804.179 Billion, yuan!") == "804179 billion yuan"


def test_three_outcomes_confident_not_sure_and_none() -> None:
    """A confident answer from the threshold, "not sure" from the floor, none below it; the outcome
    message says no more than that."""
    pipeline = OutcomePipeline()
    confident = pipeline.ask(CONFIDENT)
    assert confident.confidence_level == "answer" and confident.message == ""
    # 0.9 is confident, 0.4 "not sure", 0.1 below the floor and left out.
    assert [(a.text, a.confidence_level) for a in confident.answers] == [
        ("14 days", "answer"),
        ("5 euros", "not_sure"),
    ]
    not_sure = pipeline.ask(NOT_SURE)
    assert not not_sure.no_answer and not_sure.confidence_level == "not_sure"
    assert [a.text for a in not_sure.answers] == ["5 euros"]
    assert not_sure.message == NOT_SURE_MESSAGE == "Low confidence — check the source."
    none = pipeline.ask(NONE)
    assert none.no_answer and none.answers == [] and none.confidence_level == "none"
    assert none.message == NO_ANSWER_MESSAGE == "I found no answer in the documents."


def test_best_guess_gives_the_top_answer_below_the_floor_as_not_sure() -> None:
    pipeline = OutcomePipeline()
    guess = pipeline.ask(Query(NONE, best_guess=True))
    assert not guess.no_answer
    assert [(a.text, a.score, a.confidence_level) for a in guess.answers] == [("Berlin", 0.12, "not_sure")]
    assert guess.message == NOT_SURE_MESSAGE
    # Above the floor it changes nothing: a best guess is not a confident answer.
    assert pipeline.ask(Query(CONFIDENT, best_guess=True)).answers == pipeline.ask(CONFIDENT).answers
    assert pipeline.aggregator.decide([], best_guess=True) == ([], True)  # nothing read: nothing to guess


def test_min_answer_probability_moves_the_threshold_and_the_floor_stays_below_it() -> None:
    pipeline = OutcomePipeline()
    strict = pipeline.ask(Query(CONFIDENT, min_answer_probability=0.95))
    assert [(a.text, a.confidence_level) for a in strict.answers] == [
        ("14 days", "not_sure"),
        ("5 euros", "not_sure"),
    ]
    # Under the floor (0.3) the threshold takes the floor down with it: 0 makes every span confident.
    anything = pipeline.ask(Query(NONE, min_answer_probability=0.0))
    assert [a.confidence_level for a in anything.answers] == ["answer"] * 3
    assert pipeline.aggregator.threshold == THRESHOLD and pipeline.aggregator.floor == FLOOR
    lowered = AnswerAggregator(
        AnsweringConfig(min_answer_probability=0.2), pipeline.aggregator.calibrator
    )  # a configured threshold under the calibrated floor
    assert lowered.floor == lowered.threshold == 0.2
