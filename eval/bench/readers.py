"""The reader's runtimes side by side on one machine, in one run: read-stage latency per passage, and
answers per second with 1, 5 and 20 concurrent clients (threads calling the pipeline, answer cache off).

Every runtime answers the same seed questions over the same index. The latency part interleaves the
runtimes question by question, the throughput part in short rounds, so that load from other processes on
the machine falls on all of them alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from citeqa.eval.bench.measure import summarize_ms
from citeqa.eval.bench.quality import score
from citeqa.eval.datasets import EvalItem
from citeqa.service.qa.cache import AnswerCache
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.reader import make_reader
from citeqa.service.settings import Settings

CLIENTS = (1, 5, 20)
ROUNDS = 4  # throughput rounds per client count, each through every runtime
BATCH_WINDOWS = 32  # the batched rows: up to 8 questions of 4 passages in one forward pass


def runtime_variants(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """torch unbatched (today's path) first, torch batched, then each ONNX export, unbatched and batched;
    the reader is exported first when it has no current export."""
    from citeqa.service.qa import onnx_reader

    # Exported here (seconds, skipped while current) so that both runtimes are always in the run.
    onnx_reader.export_reader(settings.reader_path)
    batched = {"reader_batch_windows": BATCH_WINDOWS}
    variants: list[tuple[str, dict[str, Any]]] = [
        ("torch", {"reader_runtime": "torch", "reader_batch_windows": 0}),
        ("torch, batched", {"reader_runtime": "torch", **batched}),
    ]
    for variant in ("int8", "fp32"):
        if onnx_reader.onnx_available(settings.model_copy(update={"reader_onnx_variant": variant})):
            onnx = {"reader_runtime": "onnx", "reader_onnx_variant": variant}
            variants.append((f"onnx {variant}", {**onnx, "reader_batch_windows": 0}))
            variants.append((f"onnx {variant}, batched", {**onnx, **batched}))
    return variants


def answers_per_second(
    pipeline: QAPipeline, questions: Sequence[str], clients: int, total: int
) -> dict[str, Any]:
    """`clients` threads ask `total` questions between them as fast as answers come back."""
    counter = iter(range(total))
    lock = threading.Lock()
    errors: list[str] = []

    def client() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            try:
                pipeline.ask(questions[n % len(questions)])
            except Exception as exc:  # counted, not raised: a failure is a finding of the run
                errors.append(repr(exc))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    seconds = time.perf_counter() - started
    return {
        "clients": clients,
        "answers": total,
        "seconds": seconds,
        "answers_per_s": round(total / seconds, 2),
        "errors": len(errors),
    }


def bench_runtimes(
    make_pipeline: Callable[..., QAPipeline],
    settings: Settings,
    items: list[EvalItem],
    asks_per_level: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """One row per runtime: describe(), read ms per question and per passage, answers/s per client count,
    and the seed set's quality (the runtimes must answer alike)."""
    questions = [item.question for item in items]
    rows = []
    pipelines = []
    for label, overrides in runtime_variants(settings):
        variant_settings = settings.model_copy(update=overrides)
        reader = make_reader(variant_settings)
        reader.warm_up()
        pipeline = make_pipeline(reader=reader, **overrides)
        pipeline.answer_cache = AnswerCache(0)
        pipeline.ask(questions[0])
        pipelines.append((label, pipeline, reader))
    log(f"bench: reader runtimes {[label for label, _, _ in pipelines]}")
    stages: dict[str, dict[str, list[float]]] = {
        label: {"read": [], "total": [], "per_passage": []} for label, _, _ in pipelines
    }
    results: dict[str, list[Any]] = {label: [] for label, _, _ in pipelines}
    for number, question in enumerate(questions):
        # Rotate who goes first, so no runtime always meets the machine right after another's burst.
        turn = pipelines[number % len(pipelines) :] + pipelines[: number % len(pipelines)]
        for label, pipeline, _ in turn:
            result = pipeline.ask(question)
            results[label].append(result)
            read = result.timings_ms["read"]
            stages[label]["read"].append(read)
            stages[label]["total"].append(result.timings_ms["total"])
            stages[label]["per_passage"].append(read / max(1, len(result.passages)))
    # Throughput in short rounds that rotate through the runtimes, so that a burst of load from other
    # processes falls on all of them rather than on whichever ran during it.
    throughput: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in pipelines}
    per_round = max(1, asks_per_level // ROUNDS)
    for clients in CLIENTS:
        log(f"bench: answers/s with {clients} clients, {ROUNDS} rounds through every runtime")
        totals = {label: [0, 0.0, 0] for label, _, _ in pipelines}  # answers, seconds, errors
        for number in range(ROUNDS):
            turn = pipelines[number % len(pipelines) :] + pipelines[: number % len(pipelines)]
            for label, pipeline, _ in turn:
                measured = answers_per_second(pipeline, questions, clients, max(per_round, clients))
                totals[label][0] += measured["answers"]
                totals[label][1] += measured["seconds"]
                totals[label][2] += measured["errors"]
        for label, (answers, seconds, errors) in totals.items():
            throughput[label].append(
                {
                    "clients": clients,
                    "answers": answers,
                    "seconds": round(seconds, 2),
                    "answers_per_s": round(answers / max(seconds, 1e-9), 2),
                    "errors": errors,
                }
            )
    for label, pipeline, reader in pipelines:
        rows.append(
            {
                "label": label,
                "reader": reader.describe() if hasattr(reader, "describe") else {},
                "batch_windows": pipeline.settings.reader_batch_windows,
                "read_ms": summarize_ms(stages[label]["read"]),
                "read_per_passage_ms": summarize_ms(stages[label]["per_passage"]),
                "ask_ms": summarize_ms(stages[label]["total"]),
                "throughput": throughput[label],
                "quality": score(items, results[label]),
            }
        )
        if hasattr(reader, "close"):
            reader.close()
    return {"rows": rows, "questions": len(questions), "asks_per_level": asks_per_level}
