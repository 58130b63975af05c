"""`citeqa serve`, `citeqa mcp` and `citeqa feedback export`, registered into service/cli.py."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
from pathlib import Path
from typing import Any

from citeqa.indexing.errors import CiteqaError
from citeqa.service.settings import Settings


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    updates: dict[str, Any] = {}
    if args.host:
        updates["host"] = args.host
    if args.port is not None:
        updates["port"] = args.port
    settings = Settings.model_validate({**settings.model_dump(), **updates})
    # The port is taken before anything else (before indexing, which may take minutes), so that a busy
    # port is the only message and costs nothing: `make run` used to re-index, then fail on it.
    listener = _bind(settings.host, settings.port)
    try:
        pipeline = _index_first(settings) if args.index or args.corpus else None
        listener.listen(2048)
    except BaseException:
        listener.close()
        raise
    return _serve(args, settings, listener, pipeline)


def _index_first(settings: Settings) -> Any:
    """Bring the index of the corpus folder up to date (only what changed is embedded); the pipeline that
    did it serves next, so the embedder loads once."""
    from citeqa.service.cli import cmd_index_folder
    from citeqa.service.qa.pipeline import QAPipeline

    pipeline = QAPipeline(settings)
    cmd_index_folder(pipeline, settings.corpus_dir, replace=False, rebuild=False)
    return pipeline


def _serve(args: argparse.Namespace, settings: Settings, listener: socket.socket, pipeline: Any) -> int:
    import uvicorn
    from citeqa.service.api.app import create_app
    from citeqa.service.api.internal.server import uvicorn_config

    # One structured access line per request comes from our middleware, so uvicorn's is off.
    logging.getLogger("citeqa").setLevel(logging.INFO)
    if settings.api_key is None:
        print("citeqa: uploads and deletes are disabled (no CITEQA_API_KEY)", file=sys.stderr)
    elif settings.api_key_warning:
        print(f"citeqa: warning: {settings.api_key_warning}", file=sys.stderr)
    if settings.host_allow_list is None:
        print(
            "citeqa: answering to any Host name; set CITEQA_ALLOWED_HOSTS to the names clients use",
            file=sys.stderr,
        )
    port = listener.getsockname()[1]
    print(f"citeqa: serving on http://{settings.host}:{port} (docs at /docs)", file=sys.stderr)
    app = create_app(settings, pipeline)
    config = uvicorn_config(app, settings, log_level="info" if args.verbose else "warning")
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (not yet listening), or one CiteqaError line saying why it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            hint = "is already in use; stop the other server, or pick another port (--port, CITEQA_PORT)"
        elif isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:  # the host, not the port
            hint = f"cannot be used ({exc.strerror}): check the address (--host, CITEQA_HOST)"
        else:
            hint = f"cannot be used ({exc.strerror})"
        raise CiteqaError(f"{host}:{port} {hint}") from None
    listener.set_inheritable(True)
    return listener


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.service.api.routers.mcp import build_mcp_server
    from citeqa.service.qa.pipeline import QAPipeline

    pipeline = QAPipeline(settings)
    # Load before speaking MCP, so that a missing index is one clear line on stderr and exit 1.
    pipeline.warm_up()
    build_mcp_server(lambda: pipeline, max_top_k=settings.max_top_k).run("stdio")
    return 0


def cmd_feedback(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.service.api.internal.feedback_store import FeedbackStore, export_jsonl

    store = FeedbackStore(settings.resolved_feedback_db)
    destination = ""
    if args.output and args.output != "-":
        path = Path(args.output)
        if not path.parent.is_dir():  # a mistyped path must not make folders wherever it points
            raise CiteqaError(f"cannot export to {path}: the folder {path.parent} does not exist")
        if path.is_dir():
            raise CiteqaError(f"cannot export to {path}: it is a folder; name a file")
        partial = path.with_name(f".{path.name}.partial")  # renamed into place: a failure leaves no file
        try:
            with partial.open("w", encoding="utf-8") as out:
                count, left_out = export_jsonl(store, out, include_rejected=args.include_rejected)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        destination = f" to {path}"
    else:
        count, left_out = export_jsonl(store, sys.stdout, include_rejected=args.include_rejected)
    note = f"; left out {left_out} answers marked wrong (--include-rejected adds them)" if left_out else ""
    print(f"exported {count} feedback items{destination}{note}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], handlers: dict[str, Any]) -> None:
    p = sub.add_parser("serve", help="serve the HTTP API, the chat endpoint, MCP and the web page")
    p.add_argument("--host", help="address to listen on (CITEQA_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (CITEQA_PORT, default 8000)")
    p.add_argument(
        "--corpus",
        metavar="DIR",
        help="serve this folder of documents: indexed first (only what changed) into its own data directory, "
        ".citeqa/corpora/<folder>-<hash> unless CITEQA_DATA_DIR is set (same as CITEQA_CORPUS_DIR=DIR)",
    )
    p.add_argument(
        "--index",
        action="store_true",
        help="index the corpus folder (CITEQA_CORPUS_DIR, default seeds/) first, after taking the port",
    )
    handlers["serve"] = cmd_serve

    p = sub.add_parser("mcp", help="serve the MCP tools `ask` and `search` over stdio")
    handlers["mcp"] = cmd_mcp

    p = sub.add_parser("feedback", help="work with the feedback stored by the service")
    feedback_sub = p.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    e = feedback_sub.add_parser("export", help="write the stored feedback as evaluation-set JSONL")
    e.add_argument("-o", "--output", help="file to write (default: stdout)")
    e.add_argument(
        "--include-rejected",
        action="store_true",
        help="also export answers marked wrong (answers: null, rejected_answers: [...]) for review",
    )
    handlers["feedback"] = cmd_feedback
