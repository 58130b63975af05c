"""MCP tools `ask` and `search` (official SDK): over stdio (`citeqa mcp`) and streamable HTTP at /mcp."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field
from starlette.routing import Route

from indexing.errors import CiteqaError
from service.api.schemas import MAX_ANSWERS, MAX_TOP_K, AskResponse, SearchResponse
from service.api.views import ask_response, search_response
from service.pipeline import QAPipeline

T = TypeVar("T")
Runner = Callable[[Callable[[], T]], Awaitable[T]]

INSTRUCTIONS = (
    "citeqa answers questions about an indexed collection of policy documents with short verbatim "
    "answers and exact citations (document id, character span, passage). Use `ask` for a question and "
    "`search` to find passages. When `no_answer` is true, the documents do not answer the question."
)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(fn)


def build_mcp_server(get_pipeline: Callable[[], QAPipeline], run: Runner[Any] = _in_thread) -> MCPServer:
    """`get_pipeline` raises (or returns a loaded pipeline); `run` executes model work off the event loop."""
    server = MCPServer("citeqa", instructions=INSTRUCTIONS, log_level="WARNING")

    async def call(fn: Callable[[QAPipeline], T]) -> T:
        try:
            pipeline = get_pipeline()
            result: T = await run(lambda: fn(pipeline))
            return result
        except CiteqaError as exc:
            raise ToolError(str(exc)) from exc

    @server.tool(
        description="Answer a question from the indexed documents with verbatim, cited answers "
        "(document id, character span, sentence, passage), or say that the documents do not answer it."
    )
    async def ask(
        question: Annotated[str, Field(min_length=1, description="a natural-language question")],
        top_k: Annotated[int | None, Field(ge=1, le=MAX_TOP_K, description="passages to read")] = None,
        max_answers: Annotated[
            int | None, Field(ge=1, le=MAX_ANSWERS, description="answers, best first")
        ] = None,
    ) -> AskResponse:
        return await call(lambda p: ask_response(p.ask(question, top_k=top_k, max_answers=max_answers)))

    @server.tool(
        description="Find the passages of the indexed documents that best match a query, with citations."
    )
    async def search(
        query: Annotated[str, Field(min_length=1, description="what to look for")],
        top_k: Annotated[int | None, Field(ge=1, le=MAX_TOP_K, description="passages to return")] = None,
    ) -> SearchResponse:
        return await call(lambda p: search_response(p.search(query, top_k=top_k)))

    return server


def http_route(server: MCPServer, host: str) -> Route:
    """The streamable-HTTP endpoint as one route of the main app; its session manager runs in our lifespan.

    Stateless JSON responses: every tool call is independent, so no session needs to outlive a request.
    """
    loopback = host in ("127.0.0.1", "localhost", "::1")
    security = (
        TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "testserver"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
        if loopback
        else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    starlette_app = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=security,
        host=host,
    )
    route = next(r for r in starlette_app.routes if isinstance(r, Route) and r.path == "/mcp")
    return route
