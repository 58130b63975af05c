"""Results as plain JSON for the CLI's --json and the evaluation harness: the HTTP API's own bodies."""

from __future__ import annotations

from typing import Any

from service.api.views import ask_response, passage_out
from service.types import AskResult, Passage


def ask_json(result: AskResult) -> dict[str, Any]:
    return ask_response(result).model_dump(mode="json")


def passage_json(passage: Passage) -> dict[str, Any]:
    return passage_out(passage).model_dump(mode="json")
