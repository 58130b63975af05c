"""FastAPI dependencies: the app's state, its pipeline once loaded, and the API-key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from citeqa.service.api.internal.errors import ApiError
from citeqa.service.api.internal.state import ServiceState, StillLoadingError
from citeqa.service.qa.pipeline import QAPipeline
from fastapi import Depends, Header, Request


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.citeqa
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_pipeline(state: StateDep) -> QAPipeline:
    try:
        return state.loaded_pipeline()
    except StillLoadingError as exc:
        raise ApiError(503, "not_ready", str(exc), headers={"Retry-After": "5"}) from exc


PipelineDep = Annotated[QAPipeline, Depends(get_pipeline)]


def require_api_key(
    state: StateDep,
    authorization: Annotated[str | None, Header(description="Bearer <api key>")] = None,
    x_api_key: Annotated[str | None, Header(description="the API key (instead of Authorization)")] = None,
) -> None:
    """Uploads and deletes need the configured key; with none configured they are off, never open."""
    configured = state.settings.api_key
    if configured is None or not configured.get_secret_value():
        raise ApiError(
            403,
            "writes_disabled",
            "uploads and deletes are disabled: the server has no API key (set CITEQA_API_KEY)",
        )
    offered = x_api_key
    if offered is None and authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            offered = value.strip()
    challenge = {"WWW-Authenticate": "Bearer"}
    if not offered:
        raise ApiError(401, "missing_api_key", "send the API key as 'Authorization: Bearer <key>'", challenge)
    if not hmac.compare_digest(offered.encode(), configured.get_secret_value().encode()):
        raise ApiError(401, "invalid_api_key", "the API key is wrong", challenge)


ApiKeyDep = Depends(require_api_key)


def _require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send the body as application/json (got {content_type or 'none'!r})",
        )


require_json = Depends(_require_json)
