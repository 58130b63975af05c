"""MCP tools `ask` and `search` (official SDK): over stdio (`citeqa mcp`) and streamable HTTP at /mcp."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

import anyio
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
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    CallToolResult,
    ErrorData,
    InputRequiredResult,
    JSONRPCError,
    jsonrpc_message_adapter,
)
from mcp.types import Tool as MCPTool
from pydantic import Field, ValidationError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
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


def _rpc_error(code: int, message: str) -> dict[str, Any]:
    """A JSON-RPC error reply to a message whose id could not be read (JSON-RPC 2.0 section 5)."""
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}


class CiteqaMCPServer(MCPServer[Any]):
    """The SDK's server, stricter where it is lenient: tools refuse arguments they do not declare, and
    `citeqa mcp` answers a line that is not a JSON-RPC message instead of dropping it."""

    async def list_tools(self) -> list[MCPTool]:
        # Advertised, so that clients (and models) know that extra arguments are refused, not ignored.
        return [
            tool.model_copy(update={"input_schema": {**tool.input_schema, "additionalProperties": False}})
            for tool in await super().list_tools()
        ]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        # The SDK drops unknown arguments silently: a misspelt option would then change nothing and
        # say nothing. A ToolError reaches the client as a tool result with isError true.
        schemas = {tool.name: tool.input_schema for tool in await self.list_tools()}
        declared = schemas.get(name, {}).get("properties")
        if declared is not None:
            unknown = sorted(set(arguments) - set(declared))
            if unknown:
                raise ToolError(
                    f"unknown argument(s) for {name}: {', '.join(unknown)} (it takes {', '.join(declared)})"
                )
        return await super().call_tool(name, arguments, context)

    async def run_stdio_async(
        self, stdin: anyio.AsyncFile[str] | None = None, stdout: anyio.AsyncFile[str] | None = None
    ) -> None:
        """The SDK's stdio loop, except that a line that does not parse as a JSON-RPC message gets an
        error reply with id null (the SDK's transport hands it on as an exception that is dropped, and
        the client waits for ever). `stdin` and `stdout` replace the process's own (tests)."""
        lowlevel = self._lowlevel_server
        async with stdio_server(stdin, stdout) as (read_stream, write_stream):
            send_checked, checked = anyio.create_memory_object_stream[SessionMessage | Exception](0)

            async def answer_bad_lines() -> None:
                async with send_checked:
                    async for item in read_stream:
                        if isinstance(item, Exception):
                            await write_stream.send(SessionMessage(_stdio_error(item)))
                        else:
                            await send_checked.send(item)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(answer_bad_lines)
                await lowlevel.run(checked, write_stream, lowlevel.create_initialization_options())


def _stdio_error(exc: Exception) -> JSONRPCError:
    """-32700 for a line that is not JSON, -32600 for JSON that is not one JSON-RPC message."""
    not_json = isinstance(exc, ValidationError) and any(e["type"] == "json_invalid" for e in exc.errors())
    if not_json or not isinstance(exc, ValidationError):
        return JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=PARSE_ERROR, message="Parse error"))
    message = "Invalid Request: not one JSON-RPC 2.0 message (batches are not supported)"
    return JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=INVALID_REQUEST, message=message))


def build_mcp_server(
    get_pipeline: Callable[[], QAPipeline], run: Runner[Any] = _in_thread, max_top_k: int = MAX_TOP_K
) -> CiteqaMCPServer:
    """`get_pipeline` raises (or returns a loaded pipeline); `run` executes model work off the event loop."""
    server = CiteqaMCPServer("citeqa", instructions=INSTRUCTIONS, log_level="WARNING")

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
        # As in /v1/ask.
        document_ids: Annotated[
            list[str] | None, Field(max_length=1000, description="search only these documents")
        ] = None,
    ) -> AskResponse:
        query = Query.of(question, top_k, max_answers, document_ids, min_answer_probability, best_guess)
        return await call(lambda p: ask_response(p.ask(query)))

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
        media = Headers(scope=scope).get("content-type", "")
        if media.split(";", 1)[0].strip().lower() != "application/json":
            # The SDK's refusal is the plain text "Invalid Content-Type header", which a client cannot parse.
            what = f"Unsupported Media Type: send the body as application/json (got {media or 'none'!r})"
            await JSONResponse(_rpc_error(INVALID_REQUEST, what), status_code=415)(scope, receive, send)
            return
        body = await _read_body(receive)
        try:
            rpc = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nesting too deep for the parser
            await JSONResponse(_rpc_error(PARSE_ERROR, "Parse error"), status_code=400)(scope, receive, send)
            return
        problem = _invalid_message(rpc)
        if problem:
            error = _rpc_error(INVALID_REQUEST, f"Invalid Request: {problem}")
            await JSONResponse(error, status_code=400)(scope, receive, send)
            return
        method = rpc.get("method")
        if "id" not in rpc and isinstance(method, str) and not method.startswith("notifications/"):
            # A request without an id is a notification to JSON-RPC, and a notification gets no reply; but
            # MCP defines no such notification (a `tools/call` without id is a client bug), so it is not
            # handed on: nothing runs. 202 is what the transport answers every notification.
            await Response(status_code=202)(scope, receive, send)
            return
        await self._managers[-1].handle_request(scope, _replay(body, receive), _json_errors(send))


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


def _invalid_message(message: Any) -> str | None:
    """Why a parsed body is not one JSON-RPC message, in a line; None when it is one.

    The SDK answers these with -32602 and a many-line pydantic dump; and a request whose id is neither a
    string nor an integer it takes for a notification, answering 202 and nothing, so the client waits
    for ever."""
    if isinstance(message, list):
        return "batches are not supported: send one JSON-RPC message per POST"
    if not isinstance(message, dict):
        return "the body must be a JSON-RPC request object"
    if message.get("jsonrpc") != "2.0":
        return 'the "jsonrpc" member must be "2.0"'
    if "id" in message:
        request_id = message["id"]
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            return "id must be a string or an integer"
    if "method" in message and not isinstance(message["method"], str):
        return 'the "method" member must be a string'
    if "method" not in message and "result" not in message and "error" not in message:
        return 'a request needs a "method"'
    try:
        jsonrpc_message_adapter.validate_python(message, by_name=False)
    except ValidationError:
        return 'not a JSON-RPC 2.0 request, notification or response ("params" must be an object)'
    return None


def _json_errors(send: Send) -> Send:
    """`send` that turns the SDK's plain-text or empty refusals (a foreign Origin: 403 "Invalid Origin
    header"; a missing Accept: an empty 406) into JSON-RPC errors, as every other refusal here is."""
    held: list[Message] = []
    chunks: list[bytes] = []

    async def json_send(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
            if not content_type.startswith("application/json"):
                held.append(message)
                return
        if not held or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status = held[0]["status"]
        text = b"".join(chunks).decode("utf-8", "replace").strip().splitlines()
        reply = _rpc_error(INVALID_REQUEST, text[0] if text else _phrase(status))
        body = json.dumps(reply, separators=(",", ":")).encode()
        replaced = (b"content-type", b"content-length")
        kept = [(k, v) for k, v in held[0].get("headers", []) if k.lower() not in replaced]
        length = str(len(body)).encode()
        headers = [*kept, (b"content-type", b"application/json"), (b"content-length", length)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return json_send


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
