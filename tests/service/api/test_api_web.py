"""The page at / and its static files (no build step)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration


def test_page_and_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for marker in ('id="ask-form"', 'id="question"', "/static/app.js", "/static/style.css"):
        assert marker in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200
    assert "/v1/ask" in script.text and "innerHTML" not in script.text.replace("never innerHTML", "")
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/missing.js").status_code == 404
