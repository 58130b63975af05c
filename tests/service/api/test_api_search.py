"""GET /v1/search: ranked passages with scores and citations, without the reader."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


def test_search_ranks_passages_with_citations(client: TestClient, seed_text: str) -> None:
    response = client.get("/v1/search", params={"q": "first pilot demonstration city Ningbo", "top_k": 4})
    assert response.status_code == 200
    body = response.json()
    passages = body["passages"]
    assert len(passages) == 4
    assert [p["rank"] for p in passages] == [1, 2, 3, 4]
    assert [p["score"] for p in passages] == sorted((p["score"] for p in passages), reverse=True)
    assert "Ningbo" in passages[0]["text"]
    for p in passages:
        assert seed_text[p["start"] : p["end"]] == p["text"]
        assert p["url"] == f"/v1/documents/{p['doc_id']}?start={p['start']}&end={p['end']}"
    assert "read" not in body["timings_ms"]
    assert body["index_version"]


def test_search_errors(client: TestClient) -> None:
    for params in (
        {},
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 1001},
        {"q": "city", "top_k": 0},
        {"q": "city", "top_k": "a"},
    ):
        response = client.get("/v1/search", params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["message"]
