"""`citeqa eval`: score the pipeline on a question set, write reports, and gate on the baseline."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from citeqa.eval.datasets import SEED_SET, EvalSet, load_dataset, parse_spec
from citeqa.eval.gate import (
    DEFAULT_BASELINE,
    DEFAULT_TOLERANCE,
    GATED_METRICS,
    compare,
    load_baseline,
    write_baseline,
)
from citeqa.indexing.errors import CiteqaError
from citeqa.service.settings import Settings

if TYPE_CHECKING:
    # The harness pulls in the pipeline (torch, faiss): loaded only when `eval` runs, not for --help.
    from citeqa.eval.harness import Backend
    from citeqa.indexing.embedding import Embedder
    from citeqa.service.qa.answering import AnswerAggregator
    from citeqa.service.qa.pipeline import QAPipeline
    from citeqa.service.qa.reader import Reader


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser], handlers: dict[str, Any]
) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score the system on a question set (retrieval, answers, citations, latency)",
        description="Run every question of an evaluation set through the pipeline and score it.",
    )
    p.add_argument(
        "--dataset",
        default=str(SEED_SET),
        help="evaluation file (default: the seed set); FILE:part scores one part of a SQuAD-format file's "
        "article split (policyqa: train/calibrate/test; squad: calibrate/test)",
    )
    p.add_argument("--format", choices=["jsonl", "squad"], help="file format (default: by file name)")
    p.add_argument("--top-k", type=int, help="passages read per question (default: CITEQA_TOP_K)")
    p.add_argument("--limit", type=int, help="score only the first N questions")
    p.add_argument(
        "--url", help="score a running service at this base URL instead of the in-process pipeline"
    )
    p.add_argument(
        "--report", type=Path, default=Path("reports") / "eval", help="report folder (default: reports/eval)"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="exit non-zero if EM, F1, answerable F1, unanswerable accuracy or recall@5 fall below the "
        "baseline",
    )
    p.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="baseline file for --check")
    p.add_argument(
        "--tolerance", type=float, help="points (0..1 scale) a metric may drop (default: the baseline's)"
    )
    p.add_argument("--update-baseline", action="store_true", help="write this run's metrics as the baseline")
    p.add_argument(
        "--scope",
        choices=["corpus", "document"],
        default="corpus",
        help="search the whole corpus (default), or ask each question about its own document only",
    )
    p.add_argument(
        "--unit",
        choices=["paragraph", "article"],
        default="paragraph",
        help="SQuAD-format files: one document per paragraph (default) or per article (a whole policy)",
    )
    p.add_argument(
        "--squad-index-dir",
        type=Path,
        help="keep the SQuAD corpus index here and reuse it on the next run (default: a temporary folder)",
    )
    p.add_argument(
        "--squad-corpus",
        choices=["file", "asked"],
        default="file",
        help="index every paragraph of the file (default), or only the articles of the scored questions",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show progress bars (default: when stderr is a terminal)",
    )
    handlers["eval"] = cmd_eval


def _squad_corpus(eval_set: EvalSet, scope: str) -> list[Any]:
    documents = eval_set.documents or []
    if scope == "file":
        return documents
    articles = {item.doc_id.split("/", 1)[0] for item in eval_set.items}
    return [d for d in documents if d.id.split("/", 1)[0] in articles]


def _progress(args: argparse.Namespace) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


@contextmanager
def _backend(
    args: argparse.Namespace, settings: Settings, eval_set: EvalSet, models: Models
) -> Iterator[tuple[Backend, AnswerAggregator | None]]:
    """The backend to score, and in process the pipeline's aggregator, whose decisions are replayed."""
    from citeqa.eval.harness import HttpBackend, PipelineBackend

    if args.url:
        if eval_set.documents is not None:
            raise CiteqaError("this set indexes its own corpus in process; it cannot run with --url")
        client = HttpBackend(
            args.url, settings.corpus_dir, settings.api_key.get_secret_value() if settings.api_key else None
        )
        try:
            yield client, None
        finally:
            client.close()
        return
    seed_set = parse_spec(args.dataset)[0].resolve() == SEED_SET.resolve()
    with pipeline_for(
        eval_set, settings, models, args.squad_index_dir, args.squad_corpus, _progress(args), seed_set
    ) as pipeline:
        yield PipelineBackend(pipeline), pipeline.aggregator


@contextmanager
def pipeline_for(
    eval_set: EvalSet,
    settings: Settings,
    models: Models,
    index_dir: Path | None = None,
    squad_corpus: str = "file",
    progress: bool = False,
    index_corpus: bool = False,
) -> Iterator[QAPipeline]:
    """A warm pipeline over the set's own corpus (SQuAD formats: indexed into `index_dir`, or a
    temporary folder), or over the configured index; `index_corpus` (the seed set) builds that index from
    CITEQA_CORPUS_DIR when there is none, where any other set is refused (it would index the seeds)."""
    from citeqa.service.qa.pipeline import QAPipeline

    with ExitStack() as stack:
        if eval_set.documents is not None:
            # A SQuAD file is its own corpus: index it away from the user's index.
            root = index_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="citeqa-eval-")))
            settings = settings.model_copy(
                update={"data_dir": root, "index_dir": root / "index", "corpus_dir": root}
            )
        pipeline = QAPipeline(settings, embedder=models.embedder, reader=models.reader)
        pipeline.warm_up(require_index=False)
        if eval_set.documents is not None:
            documents = _squad_corpus(eval_set, squad_corpus)
            builder = pipeline.builder()
            builder.show_progress = progress
            print(
                f"indexing {len(documents)} documents of {eval_set.name} into {pipeline.index_dir}",
                file=sys.stderr,
            )
            built = builder.build(documents)
            print(
                f"indexed {built.manifest.chunk_count} chunks ({built.embedded_chunks} embedded) "
                f"in {built.seconds:.1f}s",
                file=sys.stderr,
            )
            pipeline.reload()
        elif not pipeline.ready and index_corpus:
            print(f"no index at {pipeline.index_dir}: indexing {settings.corpus_dir} first", file=sys.stderr)
            pipeline.index_folder(settings.corpus_dir, show_progress=progress)
        elif not pipeline.ready:
            pipeline.require_index()
        gold = {i.doc_id for i in eval_set.items}
        missing = gold - pipeline.document_ids()
        if gold and missing == gold:  # every score would be 0: not a result to print
            raise CiteqaError(
                f"none of the {len(gold)} documents {eval_set.name} asks about is in the index at "
                f"{pipeline.store.describe()} (e.g. {sorted(gold)[0]}): put them in a docs/ folder beside "
                "the question file, or index them first (CITEQA_DATA_DIR or `citeqa index FOLDER`)"
            )
        if missing:
            print(
                f"warning: {len(missing)} gold documents are not in the index, e.g. {sorted(missing)[0]}",
                file=sys.stderr,
            )
        yield pipeline


@dataclass(frozen=True)
class Models:
    """Already-loaded models to share (tests); None loads them as the settings say."""

    embedder: Embedder | None = None
    reader: Reader | None = None


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    return run_eval(args, settings, Models())


def run_eval(args: argparse.Namespace, settings: Settings, models: Models) -> int:
    from citeqa.eval.harness import Evaluator
    from citeqa.eval.report import terminal_table, write_report

    if args.limit is not None and args.limit < 1:
        print("citeqa: error: --limit must be at least 1", file=sys.stderr)
        return 2
    eval_set = load_dataset(args.dataset, args.format, args.unit).limited(args.limit)
    top_k = args.top_k or settings.top_k
    with _backend(args, settings, eval_set, models) as (backend, aggregator):
        evaluator = Evaluator(
            eval_set, top_k=top_k, aggregator=aggregator, scope=args.scope, show_progress=_progress(args)
        )
        report = evaluator.run(backend)
    if eval_set.documents is not None:
        report.config["squad_corpus"] = args.squad_corpus
    paths = write_report(report, args.report)
    print(terminal_table(report))
    print(f"reports: {', '.join(str(p) for p in paths)}")
    if args.update_baseline:
        tolerance = args.tolerance if args.tolerance is not None else DEFAULT_TOLERANCE
        write_baseline(args.baseline, report.summary, report.dataset, tolerance)
        print(f"baseline written to {args.baseline}")
    if not args.check:
        return 0
    baseline = load_baseline(args.baseline)
    tolerance = (
        args.tolerance if args.tolerance is not None else float(baseline.get("tolerance", DEFAULT_TOLERANCE))
    )
    regressions = compare(report.summary, baseline, report.dataset, tolerance)
    failed = False
    for regression in regressions:
        print(f"check failed: {regression.describe(tolerance)}", file=sys.stderr)
        failed = True
    if report.summary.get("citation_exact") not in (None, 1.0):
        print(
            f"check failed: citation_exact is {report.summary['citation_exact']:.4f}, not 1.0",
            file=sys.stderr,
        )
        failed = True
    if report.summary.get("errors"):
        print(f"check failed: {report.summary['errors']} questions failed", file=sys.stderr)
        failed = True
    if failed:
        return 1
    print(f"check passed: {', '.join(GATED_METRICS)} within {100 * tolerance:.1f} points of {args.baseline}")
    return 0
