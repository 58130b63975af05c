"""Every error leaves as JSON {"error": {"code", "message"}} with a fitting status, never a traceback."""

from __future__ import annotations

import errno
import json
import logging

from citeqa.indexing.errors import (
    CiteqaError,
    CorruptIndexError,
    DocumentLoadError,
    DocumentNotFoundError,
    EmptyCorpusError,
    IndexMismatchError,
    IndexNotFoundError,
    QuestionError,
    StoreUnavailableError,
    TopKError,
)
from citeqa.service.wire import error_json
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

log = logging.getLogger("citeqa.api")


class ApiError(Exception):
    """Raised by routers for a refusal that is not a pipeline error."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


# Most specific first: the first class the error is an instance of decides.
_CITEQA_ERRORS: tuple[tuple[type[CiteqaError], int, str], ...] = (
    (TopKError, 422, "invalid_top_k"),
    (QuestionError, 422, "invalid_question"),
    (DocumentNotFoundError, 404, "document_not_found"),
    (IndexNotFoundError, 503, "index_not_found"),
    (IndexMismatchError, 503, "index_mismatch"),
    (CorruptIndexError, 503, "index_corrupt"),
    (StoreUnavailableError, 503, "store_unavailable"),
    (DocumentLoadError, 422, "unreadable_document"),
    (EmptyCorpusError, 409, "empty_corpus"),
)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
    507: "insufficient_storage",
}
# A write that found no room: the client may retry once space is freed; nothing of the update was kept
# (the update journal undoes a half-kept upload).
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def citeqa_status(exc: CiteqaError) -> tuple[int, str]:
    for cls, status, code in _CITEQA_ERRORS:
        if isinstance(exc, cls):
            return status, code
    return 400, "bad_request"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


# What to send instead, for the routes people most often try with the wrong method (a browser's GET).
_BODY_HINTS = {
    "/v1/ask": 'POST a JSON body such as {"question": "..."}',
    "/v1/chat/completions": (
        'POST an OpenAI chat body such as {"messages": [{"role": "user", "content": "..."}]}'
    ),
    "/v1/feedback": "POST a JSON body with question, answer and correct",
}


def _wrong_method_message(request: Request, allow: str) -> str:
    """'GET is not allowed on /v1/ask: use POST ...': a bare "Method Not Allowed" left people guessing."""
    path = request.url.path
    allowed = [m.strip() for m in allow.split(",") if m.strip()]
    use = _BODY_HINTS.get(path) if allowed == ["POST"] else None
    if use is None:
        use = f"use {' or '.join(allowed)}" if allowed else "see /docs for the methods it takes"
    return f"{request.method} is not allowed on {path}; {use}"


async def send_error(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """An error written straight to the ASGI channel, by the layers that answer before a route runs (host
    and framing checks, rate and body limits): the same body as the handlers' JSONResponse."""
    body = JSONResponse(error_json(code, message)).body
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_json(exc.code, exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(CiteqaError)
    async def citeqa_error(_: Request, exc: CiteqaError) -> JSONResponse:
        status, code = citeqa_status(exc)
        return JSONResponse(error_json(code, str(exc)), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                error_json("invalid_json", "the request body is not valid JSON"), status_code=400
            )
        if errors and all(e.get("loc", ())[-1:] == ("top_k",) for e in errors):
            # The same error as a top_k over the configured limit, which the pipeline checks.
            limit = request.app.state.citeqa.settings.max_top_k
            got = json.dumps(errors[0].get("input"), default=str)[:20]
            message = f"top_k must be between 1 and {limit} (got {got})"
            return JSONResponse(error_json("invalid_top_k", message), status_code=422)
        return JSONResponse(error_json("invalid_request", _validation_message(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 405:
            allow = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "")
            message = _wrong_method_message(request, allow)
        return JSONResponse(error_json(code, message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(OSError)
    async def os_error(request: Request, exc: OSError) -> JSONResponse:
        if exc.errno not in _NO_SPACE:
            raise exc  # to the handler of unexpected errors below
        request_id = getattr(request.state, "request_id", "-")
        log.error("request %s: no space left to write %s", request_id, exc.filename or "a file")
        message = "the server's disk is full; nothing was changed: retry once space is freed"
        return JSONResponse(error_json("insufficient_storage", message), status_code=507)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "-")
        log.exception("unhandled error in request %s", request_id)
        return JSONResponse(
            error_json("internal_error", f"internal error; quote request id {request_id} when reporting it"),
            status_code=500,
        )
