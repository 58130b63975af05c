"""MCP tools `ask` and `search` (official SDK): over stdio (`citeqa mcp`) and streamable HTTP at /mcp."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from citeqa.indexing.errors import CiteqaError
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.query import Query
from citeqa.service.wire import (
    MAX_ANSWERS,
    MAX_TOP_K,
    AskResponse,
    SearchResponse,
    ask_response,
    error_json,
    search_response,
)
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

T = TypeVar("T")
Runner = Callable[[Callable[[], T]], Awaitable[T]]

INSTRUCTIONS = (
    "citeqa answers questions about an indexed collection of policy documents with short verbatim "
    "answers and exact citations (document id, character span, passage). Use `ask` for a question and "
    '`search` to find passages. Each answer has a `confidence_level`: "answer" (confident) or '
    '"not_sure" (low confidence: check the cited source before relying on it). When `no_answer` is '
    "true, no answer was found in the documents (which does not prove that they hold none): "
    "`best_guess` returns the best answer anyway, marked not sure."
)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(fn)


def build_mcp_server(
    get_pipeline: Callable[[], QAPipeline], run: Runner[Any] = _in_thread, max_top_k: int = MAX_TOP_K
) -> MCPServer:
    """`get_pipeline` raises (or returns a loaded pipeline); `run` executes model work off the event loop."""
    server = MCPServer("citeqa", instructions=INSTRUCTIONS, log_level="WARNING")

    async def call(fn: Callable[[QAPipeline], T]) -> T:
        try:
            pipeline = get_pipeline()
            result: T = await run(lambda: fn(pipeline))
            return result
        except CiteqaError as exc:
            raise ToolError(str(exc)) from exc

    async def ask(
        question: Annotated[str, Field(min_length=1, description="a natural-language question")],
        top_k: Annotated[int | None, Field(ge=1, le=MAX_TOP_K, description="passages to read")] = None,
        max_answers: Annotated[
            int | None, Field(ge=1, le=MAX_ANSWERS, strict=True, description="answers, best first")
        ] = None,
        # Strict, as in /v1/ask: `true` is not 1.0 and "0.5" is not a number.
        min_answer_probability: Annotated[
            float | None,
            Field(
                ge=0.0,
                le=1.0,
                strict=True,
                description="answers less likely than this to be right come back not_sure instead of "
                "confident (default: the calibrated threshold)",
            ),
        ] = None,
        best_guess: Annotated[
            bool,
            Field(
                strict=True,
                description="when no answer reaches the floor, return the best one, not_sure",
            ),
        ] = False,
    ) -> AskResponse:
        return await call(
            lambda p: ask_response(
                p.ask(Query.of(question, top_k, max_answers, None, min_answer_probability, best_guess))
            )
        )

    async def search(
        query: Annotated[str, Field(min_length=1, description="what to look for")],
        top_k: Annotated[int | None, Field(ge=1, le=MAX_TOP_K, description="passages to return")] = None,
    ) -> SearchResponse:
        return await call(lambda p: search_response(p.search(query, top_k=top_k)))

    # The configured limit, not the hard cap, so that the tools advertise what the pipeline accepts.
    # Set as objects: string annotations could not name this function's local `max_top_k`.
    for tool, what in ((ask, "passages to read"), (search, "passages to return")):
        tool.__annotations__["top_k"] = Annotated[
            int | None, Field(ge=1, le=max_top_k, strict=True, description=what)
        ]
    server.tool(
        description="Answer a question from the indexed documents with verbatim, cited answers "
        '(document id, character span, sentence, passage), each confident ("answer") or "not_sure", '
        "or say that it found no answer in the documents."
    )(ask)
    server.tool(
        description="Find the passages of the indexed documents that best match a query, with citations."
    )(search)

    return server


class McpHttpEndpoint:
    """The streamable-HTTP transport as one ASGI endpoint of the main app.

    The SDK's session manager runs once only, so every run of the app's lifespan makes a fresh one.
    Stateless JSON responses: every tool call is independent, no session needs to outlive a request.
    """

    def __init__(self, server: MCPServer, host: str) -> None:
        self.server = server
        self.host = host
        # Normally one; a second run of the lifespan (a test client inside another) stacks another.
        self._managers: list[StreamableHTTPSessionManager] = []

    def _security(self) -> TransportSecuritySettings:
        if self.host in ("127.0.0.1", "localhost", "::1"):
            # Refuse browsers on other sites (DNS rebinding) when only this machine is served.
            return TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1", "localhost", "[::1]", "127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
            )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self.server.streamable_http_app(
            streamable_http_path="/mcp",
            stateless_http=True,
            json_response=True,
            transport_security=self._security(),
            host=self.host,
        )
        manager = self.server.session_manager
        async with manager.run():
            self._managers.append(manager)
            try:
                yield
            finally:
                self._managers.remove(manager)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            # Stateless with JSON replies: there is no session to stream to (GET) or to end (DELETE).
            # The SDK would answer a GET with an event stream that never sends anything and never
            # ends, holding a connection slot for as long as the client likes.
            message = "the MCP endpoint takes JSON-RPC requests by POST only (no event streams)"
            reply = JSONResponse(
                error_json("method_not_allowed", message), status_code=405, headers={"Allow": "POST"}
            )
            await reply(scope, receive, send)
            return
        if not self._managers:
            message = "the MCP endpoint is not running"
            await JSONResponse(error_json("not_ready", message), status_code=503)(scope, receive, send)
            return
        body = await _read_body(receive)
        problem = _invalid_id(body)
        if problem:
            await JSONResponse(problem, status_code=400)(scope, receive, send)
            return
        await self._managers[-1].handle_request(scope, _replay(body, receive), send)


async def _read_body(receive: Receive) -> bytes:
    """The whole body (the request middleware caps its size, the guard its time)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the SDK: the body already read, then whatever the connection says next."""
    pending = [body]

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replayed


def _invalid_id(body: bytes) -> dict[str, Any] | None:
    """A JSON-RPC error for a request whose id is present but neither a string nor an integer.

    The SDK takes such a message for a notification (which gets no reply) and answers 202 with nothing,
    leaving the client to wait forever. Unparsable bodies are left to the SDK, which answers them."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or "id" not in message:
        return None
    request_id = message["id"]
    if isinstance(request_id, str) or (isinstance(request_id, int) and not isinstance(request_id, bool)):
        return None
    return {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "invalid request: id must be a string or an integer"},
    }
