"""A request with the wrong method is told which to use: `GET /v1/ask` (what a browser sends) answered a
bare 405 "Method Not Allowed"."""

from __future__ import annotations

from pathlib import Path

from citeqa.service.api import create_app
from citeqa.service.settings import Settings
from fastapi.testclient import TestClient

from tests.service.api.conftest import LOOPBACK_URL


def _client(tmp_path: Path) -> TestClient:
    # No lifespan (no `with`): nothing loads; routing alone answers a wrong method.
    return TestClient(create_app(Settings(data_dir=tmp_path, device="cpu")), base_url=LOOPBACK_URL)


def test_get_ask_says_to_post_a_json_question(tmp_path: Path) -> None:
    response = _client(tmp_path).get("/v1/ask", params={"question": "How many days of leave?"})
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert error["message"] == 'GET is not allowed on /v1/ask; POST a JSON body such as {"question": "..."}'


def test_other_wrong_methods_name_the_allowed_ones(tmp_path: Path) -> None:
    client = _client(tmp_path)
    response = client.put("/v1/search", params={"q": "leave"})
    assert response.status_code == 405
    assert response.json()["error"]["message"] == "PUT is not allowed on /v1/search; use GET"
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405 and "POST an OpenAI chat body" in response.json()["error"]["message"]
