"""POST /v1/ask: cited verbatim answers, abstentions, and every way a request can be wrong."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

QUESTION = "Which city was the first Made in China 2025 pilot demonstration city?"
UNANSWERABLE = "What is the boiling point of mercury on Mars?"


def test_ask_returns_verbatim_cited_answer(client: TestClient, seed_text: str) -> None:
    response = client.post("/v1/ask", json={"question": QUESTION, "max_answers": 2})
    assert response.status_code == 200
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["no_answer"] is False
    assert 1 <= len(body["answers"]) <= 2
    best = body["answers"][0]
    assert best["text"] == "Ningbo"
    assert seed_text[best["start"] : best["end"]] == best["text"]
    citation = best["citation"]
    assert citation["doc_id"] == best["doc_id"] == "000_d31740c80f9a4c4e.txt"
    assert citation["url"] == f"/v1/documents/{best['doc_id']}?start={best['start']}&end={best['end']}"
    assert (
        seed_text[citation["sentence"]["start"] : citation["sentence"]["end"]] == citation["sentence"]["text"]
    )
    assert set(body["timings_ms"]) >= {"retrieve", "read", "total"}
    passage = body["passages"][0]
    assert {"doc_id", "chunk_id", "start", "end", "text", "score", "url"} <= set(passage)
    assert seed_text[passage["start"] : passage["end"]] == passage["text"]


def test_ask_honours_top_k_and_request_id(client: TestClient) -> None:
    response = client.post(
        "/v1/ask", json={"question": QUESTION, "top_k": 2}, headers={"X-Request-ID": "abc-123"}
    )
    assert response.status_code == 200
    assert len(response.json()["passages"]) == 2
    assert response.headers["x-request-id"] == "abc-123"


def test_ask_abstains_when_documents_do_not_answer(client: TestClient) -> None:
    body = client.post("/v1/ask", json={"question": UNANSWERABLE}).json()
    assert body["no_answer"] is True
    assert body["answers"] == []
    assert body["confidence_level"] == "none"
    # What the search found, not a claim about what the documents hold.
    assert body["message"] == "I found no answer in the documents."


def test_a_confident_answer_says_so(client: TestClient) -> None:
    # Confident from the threshold up, whatever the shipped calibration's threshold: ask with one at the
    # answer's own probability.
    shown = client.post("/v1/ask", json={"question": QUESTION, "max_answers": 1}).json()["answers"][0]
    threshold = shown["score"]
    body = client.post(
        "/v1/ask", json={"question": QUESTION, "max_answers": 1, "min_answer_probability": threshold}
    ).json()
    assert body["answers"][0]["text"] == "Ningbo"
    assert body["answers"][0]["confidence_level"] == body["confidence_level"] == "answer"
    assert body["answers"][0]["score"] >= threshold
    assert body["message"] == ""


def test_best_guess_answers_below_the_floor_marked_not_sure(client: TestClient) -> None:
    body = client.post("/v1/ask", json={"question": UNANSWERABLE, "best_guess": True}).json()
    assert body["no_answer"] is False and body["confidence_level"] == "not_sure"
    [guess] = body["answers"]
    assert guess["confidence_level"] == "not_sure"
    assert guess["score"] < client.app.state.citeqa.pipeline.aggregator.floor  # type: ignore[attr-defined]
    assert body["message"] == "Low confidence — check the source."
    assert 'citeqa_answers_total{outcome="not_sure"}' in client.get("/metrics").text
    # The best guess is the best of what the reader found: the top answer with no floor at all.
    anything = client.post("/v1/ask", json={"question": UNANSWERABLE, "min_answer_probability": 0}).json()
    top = anything["answers"][0]
    assert (guess["text"], guess["start"]) == (top["text"], top["start"])
    bad = client.post("/v1/ask", json={"question": UNANSWERABLE, "best_guess": "perhaps"})
    assert "best_guess" in _error(bad, 422, "invalid_request")["message"]


def test_the_threshold_can_be_set_per_question(client: TestClient) -> None:
    """0 answers with whatever the reader found, each with its (low) probability; 1 withholds everything."""
    default = client.post("/v1/ask", json={"question": UNANSWERABLE}).json()
    anyway = client.post("/v1/ask", json={"question": UNANSWERABLE, "min_answer_probability": 0}).json()
    assert default["no_answer"] is True and anyway["no_answer"] is False
    margins = [a["reader_margin"] for a in anyway["answers"]]
    assert margins == sorted(margins, reverse=True)  # the reader's order
    assert max(a["score"] for a in anyway["answers"]) < 0.4  # below the calibrated threshold
    assert {a["confidence_level"] for a in anyway["answers"]} == {"answer"}
    # 1: no answer is confident; the best ones come back "not sure" (down to the floor), never confident.
    strict = client.post("/v1/ask", json={"question": QUESTION, "min_answer_probability": 1}).json()
    assert strict["answers"] and {a["confidence_level"] for a in strict["answers"]} == {"not_sure"}
    assert strict["confidence_level"] == "not_sure"
    assert strict["message"] == "Low confidence — check the source."
    for bad in (-0.1, 1.5, "high"):
        error = _error(
            client.post("/v1/ask", json={"question": QUESTION, "min_answer_probability": bad}),
            422,
            "invalid_request",
        )
        assert "min_answer_probability" in error["message"]


def test_ask_restricted_to_unknown_documents_is_an_error(client: TestClient) -> None:
    """It answered "no answer found" with no passages, as if the document had been read."""
    response = client.post("/v1/ask", json={"question": QUESTION, "document_ids": ["nope.txt"]})
    assert response.status_code == 404 and response.json()["error"]["code"] == "document_not_found"


def _error(response, status: int, code: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


def test_empty_and_blank_questions_are_rejected(client: TestClient) -> None:
    _error(client.post("/v1/ask", json={"question": ""}), 422, "invalid_request")
    _error(client.post("/v1/ask", json={"question": "   \n"}), 422, "invalid_question")
    _error(client.post("/v1/ask", json={}), 422, "invalid_request")


def test_too_long_question_is_rejected(client: TestClient) -> None:
    error = _error(client.post("/v1/ask", json={"question": "why " * 300}), 422, "invalid_question")
    assert "limit" in error["message"]


def test_bad_top_k_is_rejected(client: TestClient) -> None:
    for bad in (0, -1, 21, 51, "many", 2.5):
        error = _error(
            client.post("/v1/ask", json={"question": QUESTION, "top_k": bad}), 422, "invalid_top_k"
        )
        assert "top_k" in error["message"]


def test_unknown_fields_are_rejected(client: TestClient) -> None:
    _error(client.post("/v1/ask", json={"question": QUESTION, "topk": 3}), 422, "invalid_request")


def test_wrong_content_type_and_bad_json(client: TestClient) -> None:
    _error(
        client.post("/v1/ask", content=QUESTION, headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    _error(
        client.post("/v1/ask", content="{not json", headers={"content-type": "application/json"}),
        400,
        "invalid_json",
    )


def test_oversize_body_is_rejected(client: TestClient) -> None:
    big = {"question": QUESTION, "document_ids": ["x" * 1000] * 100}
    _error(client.post("/v1/ask", json=big), 413, "payload_too_large")


def test_unknown_route_and_method_are_json_errors(client: TestClient) -> None:
    _error(client.get("/v1/nothing-here"), 404, "not_found")
    _error(client.get("/v1/ask"), 405, "method_not_allowed")
