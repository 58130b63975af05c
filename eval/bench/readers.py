"""The models' runtimes side by side on one machine, in one run: read-stage latency per passage, and
answers per second with 1, 5 and 20 concurrent clients (threads calling the pipeline, answer cache off).
The torch and OpenVINO rows run both models (embedder and reader) on that runtime.

Every runtime answers the same seed questions over the same index. The latency part interleaves the
runtimes question by question, the throughput part in short rounds on long-lived client threads (as a
server's pool), so that load from other processes on the machine falls on all of them alike.
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
from citeqa.indexing.embedding import Embedder
from citeqa.service.qa.cache import AnswerCache
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.qa.reader import make_reader
from citeqa.service.settings import Settings

CLIENTS = (1, 5, 20)
ROUNDS = 4  # throughput rounds per client count, each through every runtime
BATCH_WINDOWS = 32  # the batched rows: up to 8 questions of 4 passages in one forward pass


def runtime_variants(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """torch unbatched with unpadded windows (the path before issue 20) first, then torch padded, unbatched
    and batched, then OpenVINO (when installed; bf16 or fp32, and its int8 model unbatched where there is
    one) and ONNX Runtime int8 the same two ways; the reader is exported first when it has no current
    export."""
    from citeqa.indexing.openvino_runtime import openvino_installed
    from citeqa.service.qa import onnx_reader
    from citeqa.service.qa.openvino_reader import current_int8_model

    # Exported here (seconds, skipped while current) so that every runtime is always in the run.
    onnx_reader.export_reader(settings.reader_path)
    batched = {"reader_batch_windows": BATCH_WINDOWS}
    torch = {"reader_runtime": "torch", "embedder_runtime": "torch"}
    variants: list[tuple[str, dict[str, Any]]] = [
        ("torch, unpadded", {**torch, "reader_batch_windows": 0, "reader_pad_to_multiple_of": 1}),
        ("torch", {**torch, "reader_batch_windows": 0}),
        ("torch, batched", {**torch, **batched}),
    ]
    if openvino_installed():
        openvino = {"reader_runtime": "openvino", "embedder_runtime": "openvino", "reader_int8": "off"}
        variants.append(("openvino", {**openvino, "reader_batch_windows": 0}))
        variants.append(("openvino, batched", {**openvino, **batched}))
        if current_int8_model(settings.reader_path) is not None:  # batched no faster on 2 cores, as above
            variants.append(("openvino int8", {**openvino, "reader_int8": "on", "reader_batch_windows": 0}))
    # ONNX Runtime's int8 only: its fp32 read 2x slower than either bf16 runtime here (docs/benchmarks.md).
    if onnx_reader.onnx_available(settings.model_copy(update={"reader_onnx_variant": "int8"})):
        onnx = {"reader_runtime": "onnx", "reader_onnx_variant": "int8"}
        variants.append(("onnx int8", {**onnx, "reader_batch_windows": 0}))
        variants.append(("onnx int8, batched", {**onnx, **batched}))
    return variants


def embedder_for(settings: Settings) -> Embedder:
    s = settings
    embedder = Embedder(s.embedder_path, device=s.device, dtype=s.model_dtype, runtime=s.embedder_runtime)
    embedder.warm_up()
    return embedder


def answers_per_second(
    pipeline: QAPipeline, questions: Sequence[str], pool: ThreadPoolExecutor, clients: int, total: int
) -> dict[str, Any]:
    """`clients` threads of `pool` ask `total` questions between them as fast as answers come back. The
    pool's threads live on from round to round, as a server's do: a thread's first question (its own
    tokenizer copies and infer requests) is not what is measured here."""
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
    for future in [pool.submit(client) for _ in range(clients)]:
        future.result()
    seconds = time.perf_counter() - started
    return {
        "clients": clients,
        "answers": total,
        "seconds": seconds,
        "answers_per_s": round(total / seconds, 2),
        "errors": len(errors),
    }


def warm_threads(pipeline: QAPipeline, question: str, pool: ThreadPoolExecutor, clients: int) -> None:
    """One question on each of the pool's `clients` threads (held at a barrier so that each takes one)."""
    barrier = threading.Barrier(clients)

    def ask() -> None:
        barrier.wait()
        pipeline.ask(question)

    for future in [pool.submit(ask) for _ in range(clients)]:
        future.result()


def bench_runtimes(
    make_pipeline: Callable[..., QAPipeline],
    settings: Settings,
    items: list[EvalItem],
    asks_per_level: int,
    log: Callable[[str], None],
    clients_levels: Sequence[int] = CLIENTS,
) -> dict[str, Any]:
    """One row per runtime: describe(), read ms per question and per passage, answers/s per client count
    (`clients_levels`), and the seed set's quality (the runtimes must answer alike)."""
    questions = [item.question for item in items]
    rows = []
    pipelines = []
    embedders: dict[str, Embedder] = {}  # one per embedder runtime, shared by the rows that use it
    for label, overrides in runtime_variants(settings):
        variant_settings = settings.model_copy(update=overrides)
        reader = make_reader(variant_settings)
        reader.warm_up()
        if variant_settings.embedder_runtime not in embedders:
            embedders[variant_settings.embedder_runtime] = embedder_for(variant_settings)
        embedder = embedders[variant_settings.embedder_runtime]
        pipeline = make_pipeline(reader=reader, embedder=embedder, **overrides)
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
    for clients in clients_levels:
        log(f"bench: answers/s with {clients} clients, {ROUNDS} rounds through every runtime")
        totals = {label: [0, 0.0, 0] for label, _, _ in pipelines}  # answers, seconds, errors
        pool = ThreadPoolExecutor(clients, thread_name_prefix="bench-client")
        for _, pipeline, _ in pipelines:
            warm_threads(pipeline, questions[0], pool, clients)
        for number in range(ROUNDS):
            turn = pipelines[number % len(pipelines) :] + pipelines[: number % len(pipelines)]
            for label, pipeline, _ in turn:
                measured = answers_per_second(pipeline, questions, pool, clients, max(per_round, clients))
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
        pool.shutdown()
    for label, pipeline, reader in pipelines:
        rows.append(
            {
                "label": label,
                "reader": reader.describe() if hasattr(reader, "describe") else {},
                "batch_windows": pipeline.settings.reader_batch_windows,
                "embedder_runtime": pipeline.settings.embedder_runtime,
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
