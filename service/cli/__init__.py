"""The `citeqa` command line, service layer: index, ask, serve, mcp and feedback.

The eval layer adds its commands on top of this parser (eval/cli.py), and the package root's `citeqa.cli`
is the installed `citeqa`, so each import points down the layers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that spin while idle slow every query several-fold once another process shares the
# cores (measured: 2 threads, 4 busy processes on 2 cores: ask p50 916 ms spinning, 224 ms passive).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from citeqa.indexing.errors import CiteqaError
from citeqa.service.cli import serve as serve_commands
from citeqa.service.qa.query import Query
from citeqa.service.settings import Settings
from pydantic import ValidationError

if TYPE_CHECKING:
    from citeqa.service.qa.pipeline import QAPipeline

Handler = Callable[[argparse.Namespace, Settings], int]
Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]", dict[str, Handler]], None]


def lazy_handler(module: str, name: str) -> Handler:
    """A handler that imports `module` only when its command runs: a command's registration must not
    load what only running it needs (torch, FAISS, the web stack), or every command pays for it."""

    def handler(args: argparse.Namespace, settings: Settings) -> int:
        import importlib

        run_command: Handler = getattr(importlib.import_module(module), name)
        return run_command(args, settings)

    return handler


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "index_dir", None):
        overrides["index_dir"] = Path(args.index_dir)
    if getattr(args, "device", None):
        overrides["device"] = args.device
    if getattr(args, "corpus", None):
        overrides["corpus_dir"] = Path(args.corpus)
    return Settings(**overrides)  # type: ignore[arg-type]


def _highlight(text: str, start: int, end: int, tty: bool) -> str:
    mark_on, mark_off = ("\033[1;33m", "\033[0m") if tty else ("[[", "]]")
    return text[:start] + mark_on + text[start:end] + mark_off + text[end:]


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.service.qa.pipeline import QAPipeline

    corpus = Path(args.path) if args.path else settings.corpus_dir
    pipeline = QAPipeline(settings)
    cmd_index_folder(pipeline, corpus, args.replace, args.rebuild, args.restore_deleted)
    return 0


def cmd_index_folder(
    pipeline: QAPipeline, corpus: Path, replace: bool, rebuild: bool, restore_deleted: bool = False
) -> None:
    """Index `corpus` into the pipeline's store and print the one-line summary (`index`, `serve --index`)."""
    from citeqa.indexing.ingest.build import RESTORE_HINT, check_corpus_folder

    check_corpus_folder(corpus)
    sources = pipeline.sources(corpus)
    previous = sources.recorded_corpus()
    if (
        previous is not None
        and previous != corpus.resolve()
        and not replace
        and pipeline.store.live_version() is not None
    ):
        raise CiteqaError(
            f"the index at {pipeline.store.describe()} holds the folder {previous}; "
            f"indexing {corpus} instead would replace its documents (a running service too): "
            "pass --replace to do that, or give that folder its own index: "
            f"`citeqa serve --corpus {corpus}` (CITEQA_DATA_DIR unset), or use another CITEQA_DATA_DIR"
        )
    report = pipeline.index_folder(
        corpus, rebuild=rebuild, show_progress=sys.stderr.isatty(), restore_deleted=restore_deleted
    )
    for problem in report.problems:
        print(f"skipped {problem.path}: {problem.reason}", file=sys.stderr)
    if report.withheld:
        print(
            f"left out {len(report.withheld)} documents deleted through the service "
            f"({_names(report.withheld)}); {RESTORE_HINT}",
            file=sys.stderr,
        )
    if report.shadowed:
        print(
            f"{len(report.shadowed)} documents of the folder are replaced by uploads of the same name "
            f"({_names(report.shadowed)}); the uploads, kept in {sources.uploads_dir}, win: "
            "remove one there to index the folder's file",
            file=sys.stderr,
        )
    print(
        f"indexed {report.document_count} documents, {report.manifest.chunk_count} chunks "
        f"({len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed, "
        f"{len(report.unchanged)} unchanged; {report.embedded_chunks} chunks embedded) "
        f"in {report.seconds:.1f}s -> {pipeline.store.describe()}"
    )


def _names(ids: Sequence[str], most: int = 5) -> str:
    return ", ".join(ids[:most]) + (", ..." if len(ids) > most else "")


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.service.qa.pipeline import QAPipeline
    from citeqa.service.wire import ask_json

    if args.question == "-":  # `echo "question" | citeqa ask -`
        args.question = sys.stdin.read(64 * 1024)
    pipeline = QAPipeline(settings)
    # Cheap checks first, so that bad input fails before the models load.
    pipeline.validate_question(args.question)
    pipeline.require_index()
    # A service on this machine serving this same index answers at once; loading the models takes ~12 s.
    result = None if args.no_service else _ask_service(args, settings)
    if result is None:
        pipeline.warm_up()
        result = ask_json(pipeline.ask(_query(args)))
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    _print_answers(result, sys.stdout.isatty())
    return 0


def _query(args: argparse.Namespace) -> Query:
    return Query.of(
        args.question, args.top_k, args.max_answers, None, args.min_answer_probability, args.best_guess
    )


def _ask_service(args: argparse.Namespace, settings: Settings) -> dict[str, Any] | None:
    """The answer of a running local service whose index is the one this command would load, or None."""
    import httpx
    from citeqa.indexing.store import make_store

    url = settings.database_url.get_secret_value() if settings.database_url else None
    live_version = make_store(settings.resolved_index_dir, database_url=url).live_version()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"
    body = dataclasses.asdict(_query(args))
    try:
        ready = httpx.get(f"{base}/readyz", timeout=0.5)
        if (
            live_version is None
            or ready.status_code != 200
            or ready.json().get("index_version") != live_version
        ):
            return None
        response = httpx.post(
            f"{base}/v1/ask", json={k: v for k, v in body.items() if v is not None}, timeout=120
        )
        data = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if 400 <= response.status_code < 500 and isinstance(data.get("error"), dict):
        raise CiteqaError(str(data["error"].get("message")))
    if response.status_code != 200:
        return None
    print(f"citeqa: answered by the service at {base} (--no-service loads the models here)", file=sys.stderr)
    return dict(data)


def _print_answers(result: dict[str, Any], tty: bool) -> None:
    from citeqa.service.wire import section_label, shown_probability

    if result["no_answer"]:
        print(result["message"])
        if result["passages"]:
            best = result["passages"][0]
            where = f"{best['doc_id']}, chars {best['start']}-{best['end']}"
            print(f"\nClosest passage ({best['title']}, {where}):")
            print(textwrap.indent(textwrap.fill(best["text"][:400], 100), "  "))
            print("\n(--best-guess shows the best answer anyway, marked not sure)")
        return
    for number, answer in enumerate(result["answers"], start=1):
        c = answer["citation"]
        # A service older than confidence levels gives confident answers only.
        not_sure = answer.get("confidence_level", "answer") == "not_sure"
        label = "Answer" if number == 1 else f"Alternative {number - 1}"
        level = ", not sure" if not_sure else ""
        print(f"{label}: {answer['text']}   (probability {shown_probability(answer['score'])}{level})")
        if not_sure and number == 1:
            print("  Low confidence — check the source.")
        page = f", page {c['page']}" if c["page"] else ""
        section = f", {section_label(c['section'])}" if c.get("section") else ""
        print(f"  Source: {c['title']}{section} [{c['doc_id']}{page}, chars {c['start']}-{c['end']}]")
        context = c["context"]
        marked = _highlight(context["text"], c["start"] - context["start"], c["end"] - context["start"], tty)
        print(textwrap.indent("..." + " ".join(marked.split()) + "...", "  "))
        if number == 1 and len(result["answers"]) > 1:
            print()
    print(f"\n({result['timings_ms']['total']:.0f} ms)")


def quiet_libraries() -> None:
    """Keep library progress bars and advisories off the terminal; errors still show.

    Through the environment, which transformers and huggingface_hub read when they load: importing
    transformers here to configure it cost every command (`--help`, a one-line error, a question
    forwarded to a running service) most of a second, and torch with it on some paths."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Already loaded (the CLI called in-process, as the tests and library users do): it has read the
    # environment, so it is told directly, at no import cost.
    transformers = sys.modules.get("transformers")
    if transformers is not None:
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    for noisy in ("transformers", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def cmd_postgres(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.indexing.store import pgserver

    folder = settings.data_dir / "postgres"
    if args.action == "start":
        if args.port is not None and not 1024 <= args.port <= 65535:
            raise CiteqaError(f"--port {args.port}: give a port from 1024 to 65535 (or none: a free one)")
        if args.port is not None and not _port_is_free(args.port):
            raise CiteqaError(f"port {args.port} is already in use on 127.0.0.1; give another, or none")
        url = pgserver.start(folder, port=args.port)
        print(f"PostgreSQL with pgvector running from {folder}; use it with:", file=sys.stderr)
        print(f"export CITEQA_DATABASE_URL={url}")
    elif args.action == "stop":
        stopped = pgserver.stop(folder)
        print("PostgreSQL stopped" if stopped else f"no PostgreSQL running from {folder}", file=sys.stderr)
    else:
        port = pgserver.running_port(folder)
        if port is None:
            print(f"no PostgreSQL running from {folder}", file=sys.stderr)
            return 1
        print(f"export CITEQA_DATABASE_URL={pgserver.url_for(port)}")
    return 0


def _port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cmd_export_reader(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.service.qa.onnx_reader import VARIANTS, export_reader

    path = Path(args.reader) if args.reader else settings.reader_path
    manifest = export_reader(path, force=args.force)
    where = path / "onnx"
    if manifest.get("skipped"):
        print(f"{where}: already exported from these weights (--force exports again)", file=sys.stderr)
    else:
        files = ", ".join(VARIANTS.values())
        print(f"exported {path.name} to {where}: {files}", file=sys.stderr)
    return 0


def build_parser(*more: Register) -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The service's commands, then those that each of `more` registers (the layers above)."""
    parser = argparse.ArgumentParser(
        prog="citeqa", description="Cited extractive answers over your documents."
    )
    parser.add_argument("--index-dir", help="index directory (CITEQA_INDEX_DIR)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where models run (CITEQA_DEVICE)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and warnings")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    handlers: dict[str, Handler] = {}

    p = sub.add_parser("index", help="index a folder of documents (default: seeds/)")
    p.add_argument("path", nargs="?", help="corpus folder (CITEQA_CORPUS_DIR)")
    p.add_argument("--rebuild", action="store_true", help="re-embed everything instead of only changes")
    p.add_argument(
        "--replace", action="store_true", help="index PATH even though the index holds another folder"
    )
    p.add_argument(
        "--restore-deleted",
        action="store_true",
        help="bring back the folder's documents deleted through the service",
    )
    handlers["index"] = cmd_index

    p = sub.add_parser("ask", help="answer a question with cited verbatim spans")
    p.add_argument("question", help='the question ("-": read it from standard input)')
    p.add_argument("--top-k", type=int, help="passages to retrieve and read")
    p.add_argument("--max-answers", type=int, help="answers to show (best first)")
    p.add_argument(
        "--min-answer-probability",
        type=float,
        help="answers less likely than this to be right are shown as not sure instead of confident "
        "(default: the calibrated threshold)",
    )
    p.add_argument(
        "--best-guess",
        action="store_true",
        help="when no answer reaches the floor, show the best one anyway, marked not sure",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument(
        "--no-service", action="store_true", help="load the models here even when a local service runs"
    )
    handlers["ask"] = cmd_ask

    p = sub.add_parser("postgres", help="start or stop a local PostgreSQL with pgvector (the shared store)")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    handlers["postgres"] = cmd_postgres

    p = sub.add_parser(
        "export-reader",
        help="export the reader to ONNX (fp32 and int8) beside it, for the faster ONNX Runtime reader",
    )
    p.add_argument("--reader", help="reader model folder (default: CITEQA_READER_PATH)")
    p.add_argument("--force", action="store_true", help="export even when the export is current")
    handlers["export-reader"] = cmd_export_reader

    for register in (serve_commands.register, *more):
        register(sub, handlers)
    # The global flags are accepted after the command too (`citeqa index PATH --index-dir X`);
    # SUPPRESS keeps a value given before the command when none is given after it.
    summaries = {action.dest: action.help for action in sub._choices_actions}
    for name, command in sub.choices.items():
        command.description = command.description or summaries.get(name)  # `citeqa CMD --help` says it too
        command.add_argument(
            "--index-dir", default=argparse.SUPPRESS, help="index directory (CITEQA_INDEX_DIR)"
        )
        command.add_argument(
            "--device", choices=["auto", "cpu", "cuda"], default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return parser, handlers


# Commands that load the models or an index: their paths and device are checked first (Settings.check_paths).
LOADS_MODELS = frozenset({"index", "ask", "serve", "mcp", "eval", "calibrate", "bench"})


def main(argv: Sequence[str] | None = None) -> int:
    """The service's commands alone (`python -m citeqa.service.cli serve`); `citeqa` is citeqa.cli.main."""
    return run(*build_parser(), argv)


def run(parser: argparse.ArgumentParser, handlers: dict[str, Handler], argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        quiet_libraries()
    for value_name in ("top_k", "max_answers"):
        value = getattr(args, value_name, None)
        if value is not None and value < 1:
            print(f"citeqa: error: --{value_name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    probability = getattr(args, "min_answer_probability", None)
    if probability is not None and not 0.0 <= probability <= 1.0:
        print("citeqa: error: --min-answer-probability must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        settings = _settings_from(args)
        if args.command in LOADS_MODELS:
            settings.check_paths()
        return handlers[args.command](args, settings)
    except CiteqaError as exc:
        print(f"citeqa: error: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        setting = f" {where} (CITEQA_{where.upper()})" if where else ""
        print(f"citeqa: error: bad setting{setting}: {first['msg']}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `citeqa ask ... | head -2`: the reader went away; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("citeqa: interrupted", file=sys.stderr)
        return 130
