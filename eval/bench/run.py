"""`citeqa bench`: indexing throughput, ask/search latency per stage, quality, and search at scale.

It prints numbers and writes report.json, report.md and latency.png; it asserts nothing about speed.
`--quick` (CI) caps the corpus sizes so that the whole run, model loading included, stays short.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from citeqa.eval.bench.cold_start import measure_cold_start
from citeqa.eval.bench.corpus import make_corpus, make_templates, seed_sentences, write_documents
from citeqa.eval.bench.measure import Stopwatch, load_average, machine_info, peak_memory, summarize_ms
from citeqa.eval.bench.over_http import run_http
from citeqa.eval.bench.quality import load_questions, score
from citeqa.eval.bench.readers import bench_runtimes
from citeqa.eval.bench.report import markdown, write_report
from citeqa.eval.bench.scale import run_size
from citeqa.eval.datasets import EvalItem
from citeqa.indexing.embedding import resolve_device
from citeqa.service.qa.cache import AnswerCache
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.settings import Settings

QUICK_SIZES = (1_000, 20_000)
FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000)


@dataclass(frozen=True)
class BenchConfig:
    quick: bool = False
    sizes: tuple[int, ...] = FULL_SIZES
    real_limit: int = 10_000  # sizes up to this embed every chunk; larger ones use synthetic vectors
    templates: int = 2_000
    indexing_chunks: int = 2_500
    passes: int = 3  # passes over the seed questions for latency
    http: bool = True
    cold_start: bool = True  # fresh processes answering one question (cold_start.py)
    runtimes: bool = True  # the reader runtimes side by side (readers.py)
    asks_per_level: int = 120  # questions asked at each client count there
    report_dir: Path = Path("reports/bench")

    @classmethod
    def for_mode(cls, quick: bool, report_dir: Path, sizes: tuple[int, ...] | None = None) -> BenchConfig:
        if quick:
            return cls(
                quick=True,
                sizes=sizes or QUICK_SIZES,
                real_limit=1_000,
                templates=300,
                indexing_chunks=300,
                passes=1,
                asks_per_level=40,
                report_dir=report_dir,
            )
        return cls(quick=False, sizes=sizes or FULL_SIZES, report_dir=report_dir)


Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_indexing(
    pipeline_for: Callable[..., QAPipeline], templates: list[str], chunks: int, work: Path
) -> dict[str, Any]:
    """Index seeds-like documents through the real loader, chunker and embedder, from scratch."""
    corpus = make_corpus(templates, chunks, chunks_per_doc=25)
    folder = work / "indexing-corpus"
    write_documents(corpus, folder)
    pipeline = pipeline_for(data_dir=work / "indexing-data", corpus_dir=folder)
    with peak_memory() as memory:
        report = pipeline.index_folder(folder, rebuild=True)
    chunk_count = report.manifest.chunk_count
    return {
        "documents": report.document_count,
        "chunks": chunk_count,
        "seconds": round(report.seconds, 2),
        "chunks_per_s": round(chunk_count / max(report.seconds, 1e-9), 1),
        **memory.as_dict(),
    }


def bench_seed(pipeline: QAPipeline, items: list[EvalItem], passes: int) -> dict[str, Any]:
    """Warm ask and search latency per stage on the seed corpus, cache off; then cached asks; quality."""
    questions = [item.question for item in items]
    pipeline.answer_cache = AnswerCache(0)
    pipeline.ask(questions[0])  # the first call pays one-time allocations; not a warm query
    stages: dict[str, list[float]] = {"retrieve": [], "read": [], "total": []}
    first_pass = []
    for number in range(passes):
        for question in questions:
            result = pipeline.ask(question)
            if number == 0:
                first_pass.append(result)
            for stage, values in stages.items():
                values.append(result.timings_ms[stage])
    search_ms = [pipeline.search(question).timings_ms["total"] for question in questions * passes]
    pipeline.answer_cache = AnswerCache(len(questions))
    for question in questions:
        pipeline.ask(question)
    cached = [pipeline.ask(question).timings_ms["total"] for question in questions]
    pipeline.answer_cache = AnswerCache(pipeline.settings.answer_cache_size)
    return {
        "questions": len(questions),
        "passes": passes,
        "ask_ms": {stage: summarize_ms(values) for stage, values in stages.items()},
        "search_ms": {"retrieve": summarize_ms(search_ms)},
        "ask_cached_ms": summarize_ms(cached),
        "quality": score(items, first_pass),
    }


def run_benchmark(config: BenchConfig, settings: Settings, log: Log = _stderr) -> dict[str, Any]:
    started = time.perf_counter()
    report: dict[str, Any] = {"quick": config.quick, "device": resolve_device(settings.device)}
    with tempfile.TemporaryDirectory(prefix="citeqa-bench-") as tmp:
        work = Path(tmp)
        watch = Stopwatch()
        base = QAPipeline(settings.model_copy(update={"data_dir": work / "seed-data"}))
        base.warm_up(require_index=False)
        report["model_load_s"] = round(watch.ms() / 1000, 2)
        report["machine"] = machine_info()
        describe = getattr(base.reader, "describe", None)
        report["reader"] = describe() if describe else {}

        def pipeline_for(**overrides: Any) -> QAPipeline:
            return QAPipeline(
                settings.model_copy(update=overrides), embedder=base.embedder, reader=base.reader
            )

        sentences = seed_sentences(settings.corpus_dir)
        templates = make_templates(sentences, config.templates)

        if config.indexing_chunks:
            log(f"bench: indexing {config.indexing_chunks} seeds-like chunks")
            report["indexing"] = bench_indexing(pipeline_for, templates, config.indexing_chunks, work)
            report["indexing"]["load_average"] = load_average()

        log("bench: seed corpus ask/search latency and quality")
        seed_corpus = work / "seed-corpus"
        shutil.copytree(settings.corpus_dir, seed_corpus)
        seed_pipeline = pipeline_for(data_dir=work / "seed-data", corpus_dir=seed_corpus)
        seed_pipeline.index_folder(seed_corpus)
        items = load_questions()
        report["seed"] = bench_seed(seed_pipeline, items, config.passes)
        report["seed"]["load_average"] = load_average()

        if config.cold_start:
            log("bench: a cold start (fresh processes answering one question)")
            try:
                report["cold_start"] = measure_cold_start(seed_pipeline.settings.data_dir, items[0].question)
            except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
                log(f"bench: the cold start measurement failed: {exc}")
                report["cold_start"] = {"error": str(exc)}

        if config.runtimes:
            log("bench: reader runtimes side by side")

            def seed_pipeline_with(reader: Any, embedder: Any, **overrides: Any) -> QAPipeline:
                return QAPipeline(
                    seed_pipeline.settings.model_copy(update=overrides), embedder=embedder, reader=reader
                )

            report["runtimes"] = bench_runtimes(
                seed_pipeline_with, settings, items, config.asks_per_level, log
            )
            report["runtimes"]["load_average"] = load_average()

        if config.http:
            log("bench: over HTTP against the real server")
            try:
                report["http"] = run_http(
                    settings, seed_pipeline.settings, [i.question for i in items], config.passes
                )
                report["http"]["load_average"] = load_average()
            except (RuntimeError, OSError, httpx.HTTPError) as exc:
                # A broken server is a finding to report, not a reason to lose the other numbers.
                log(f"bench: the HTTP measurement failed: {exc}")
                report["http"] = {"error": str(exc)}

        # Embedded only when a size is measured (`--runtimes-only` measures none).
        template_vectors = base.embedder.embed(templates[: len(templates) if config.sizes else 1])
        rows = []
        for size in config.sizes:
            log(f"bench: search at {size:,} chunks")
            rows.append(
                run_size(
                    size,
                    templates=templates,
                    template_vectors=template_vectors,
                    real_limit=config.real_limit,
                    embedder=base.embedder,
                    reader=base.reader,
                    base_settings=settings.model_copy(update={"verify_index": False}),
                    questions=[i.question for i in items],
                    work_dir=work,
                )
            )
            last = rows[-1]
            log(f"bench:   {last['search_ms']['p50']:.1f} ms p50, recall@10 {last['recall_at_10']:.3f}")
        if rows:
            report["scale"] = {"rows": rows, "templates": config.templates, "real_limit": config.real_limit}
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    if sizes is not None and any(s < 100 for s in sizes):
        print("citeqa: error: --sizes must be comma-separated chunk counts of at least 100", file=sys.stderr)
        return 2
    config = BenchConfig.for_mode(args.quick, Path(args.report), sizes)
    if args.no_http:
        config = BenchConfig(**{**config.__dict__, "http": False})
    if args.runtimes_only:
        # The reader runtimes alone: no indexing, HTTP or scale sections (a few minutes on 2 cores).
        config = BenchConfig(
            **{**config.__dict__, "http": False, "sizes": (), "indexing_chunks": 0, "cold_start": False}
        )
    report = run_benchmark(config, settings)
    paths = write_report(report, config.report_dir)
    print(markdown(report))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0
