"""Write the benchmark's report.json, report.md (tables) and latency.png (latency against corpus size)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from citeqa.eval.bench.cold_start import HEAVY


def _ms(summary: dict[str, Any] | None) -> str:
    if not summary or not summary.get("n"):
        return "-"
    return f"{summary['p50']:.1f} / {summary['p95']:.1f}"


def scale_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| chunks | vectors | index | search p50 / p95 ms | dense p50 / p95 ms | BM25 p50 / p95 ms "
        "| recall@10 | BM25 score ratio | index bytes/chunk | BM25 MiB | build s |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        index = row["index_type"] + (
            f" (nlist {row['nlist']}, nprobe {row['nprobe']})" if "nlist" in row else ""
        )
        lines.append(
            f"| {row['size']:,} | {row['vectors']} | {index} | {_ms(row['search_ms'])} "
            f"| {_ms(row['dense_ms'])} "
            f"| {_ms(row['bm25_ms'])} | {row['recall_at_10']:.3f} | {row.get('bm25_score_ratio', 1.0):.3f} "
            f"| {row['index_bytes_per_chunk']:.0f} "
            f"| {row['bm25_mib']:.1f} | {row['write_s']:.1f} |"
        )
    return lines


def stage_table(title: str, stages: dict[str, dict[str, Any]]) -> list[str]:
    lines = [f"| {title} | p50 ms | p95 ms | mean ms | n |", "|---|---:|---:|---:|---:|"]
    for name, summary in stages.items():
        if summary.get("n"):
            lines.append(
                f"| {name} | {summary['p50']:.1f} | {summary['p95']:.1f} "
                f"| {summary['mean']:.1f} | {summary['n']} |"
            )
    return lines


def _reader(describe: dict[str, Any]) -> str:
    if not describe:
        return "-"
    padded = (
        f", windows padded to {describe['pad_to_multiple_of']}" if "pad_to_multiple_of" in describe else ""
    )
    return f"{describe.get('runtime')} {describe.get('dtype')}, {describe.get('threads')} threads{padded}"


def runtimes_table(section: dict[str, Any]) -> list[str]:
    levels = [t["clients"] for t in section["rows"][0]["throughput"]] if section["rows"] else []
    lines = [
        "| runtime | in use | read p50 / p95 ms | read per passage p50 ms | ask p50 ms | "
        + " | ".join(f"answers/s, {n} client{'s' if n > 1 else ''}" for n in levels)
        + " | errors | seed EM / F1 |",
        "|---|---|---:|---:|---:|" + "---:|" * len(levels) + "---:|---|",
    ]
    for row in section["rows"]:
        throughput = " | ".join(f"{t['answers_per_s']:.1f}" for t in row["throughput"])
        errors = sum(t["errors"] for t in row["throughput"])
        q = row["quality"]
        lines.append(
            f"| {row['label']} | {_reader(row['reader'])}; embedder {row.get('embedder_runtime', 'auto')} "
            f"| {_ms(row['read_ms'])} "
            f"| {row['read_per_passage_ms']['p50']:.1f} | {row['ask_ms']['p50']:.1f} | {throughput} "
            f"| {errors} | {q['em']:.2f} / {q['f1']:.2f} |"
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    features = ", ".join(machine.get("cpu_features", [])) or "none of AVX2/AVX-512/VNNI/AMX"
    out = [
        "# citeqa benchmark",
        "",
        f"Mode: {'quick' if report['quick'] else 'full'}; device {report['device']}; "
        f"{machine['cpu']}, {machine['cpu_count']} CPUs ({features}), {machine['memory_gib']} GiB; "
        f"torch {machine['torch']} "
        f"({machine['torch_threads']} threads), faiss {machine['faiss']}; load average at start "
        f"{machine['load_average_at_start']}; took {report['seconds']:.0f} s.",
        "",
        f"Reader in use by default: {_reader(report.get('reader', {}))}.",
        "",
    ]
    indexing = report.get("indexing")
    if indexing:
        out += [
            "## Indexing (real chunker and embedder, seeds-like synthetic documents)",
            "",
            f"{indexing['chunks']} chunks from {indexing['documents']} documents "
            f"in {indexing['seconds']:.1f} s: **{indexing['chunks_per_s']:.0f} chunks/s**; "
            f"process RSS peak {indexing['rss_peak_mib']:.0f} MiB "
            f"(+{indexing['rss_peak_delta_mib']:.0f} MiB over the loaded models).",
            "",
        ]
    seed = report.get("seed")
    if seed:
        out += ["## Seed corpus, in process (QAPipeline, answer cache off unless said)", ""]
        out += [*stage_table("/v1/ask stage", seed["ask_ms"]), ""]
        out += [*stage_table("/v1/search stage", seed["search_ms"]), ""]
        cached = seed["ask_cached_ms"]
        out += [
            f"Cached /v1/ask (same question again): {cached['p50']:.3f} / {cached['p95']:.3f} ms p50 / p95. "
            f"Load average after this section: {seed.get('load_average')}.",
            "",
        ]
        q = seed["quality"]
        out += [
            f"Quality on eval/data/seed_qa.jsonl: EM {q['em']:.2f}, F1 {q['f1']:.2f} on {q['answerable']} "
            f"answerable questions; abstained on {q['abstained_on_unanswerable']} of {q['unanswerable']} "
            "unanswerable.",
            "",
        ]
    cold = report.get("cold_start")
    if cold:
        out += ["## Cold start", ""]
        if "error" in cold:
            out += [f"The measurement failed: {cold['error']}", ""]
        else:
            heavy = ", ".join(cold["imported"]) or "none of " + ", ".join(HEAVY)
            out += [
                f"A fresh `citeqa ask --no-service` process (imports, models, index, one answer): "
                f"**{cold['median_s']:.2f} s** (median of {cold['runs']}: {cold['seconds']}); heavy "
                f"libraries it imported: {heavy}.",
                "",
            ]
    runtimes = report.get("runtimes")
    if runtimes:
        out += [
            "## Reader runtimes side by side (seed corpus, in process, answer cache off)",
            "",
            f"The same {runtimes['questions']} seed questions through each runtime in turn (interleaved "
            f"question by question), then about {runtimes['asks_per_level']} questions per runtime at each "
            "client count (threads calling the pipeline at once), in rounds that rotate through the "
            "runtimes. Batched: questions read at the same time share one forward pass. Load average "
            f"after: {runtimes.get('load_average')}.",
            "",
            *runtimes_table(runtimes),
            "",
        ]
    http = report.get("http")
    if http and "error" in http:
        out += ["## Over HTTP", "", f"The measurement failed: {http['error']}", ""]
    elif http:
        out += ["## Over HTTP (uvicorn subprocess, httpx client, seed corpus)", ""]
        out += [*stage_table("endpoint", http["endpoints_ms"]), ""]
    scale = report.get("scale")
    if scale:
        out += [
            "## Search against corpus size",
            "",
            "Search is the in-process hybrid /v1/search path (query embedding + dense + BM25 + fusion "
            "+ SQLite); dense and BM25 are timed alone. recall@10 is of the dense index against exact "
            "inner-product search over the same vectors; BM25 score ratio is the exact BM25 score of the "
            "rows BM25 returned over that of the exact top 30 (1.0 = as good; below 1 only where the "
            "pruned path ran). *real* vectors are embeddings of the chunk texts; "
            "*synthetic* vectors are real embeddings of template chunks plus Gaussian noise (see "
            "eval/bench/corpus.py), used where embedding every chunk would take hours. Index bytes/chunk is "
            "the serialized FAISS index (vectors and search structure, what stays in RAM); embeddings.npy "
            "stays on disk, memory-mapped, and only the re-ranked rows are read.",
            "",
        ]
        out += [*scale_table(scale["rows"]), ""]
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["size"] for r in rows]
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for key, label in (
        ("search_ms", "hybrid search"),
        ("dense_ms", "dense (FAISS + re-rank)"),
        ("bm25_ms", "BM25"),
    ):
        axis.plot(sizes, [r[key]["p50"] for r in rows], marker="o", label=f"{label} p50")
        axis.plot(
            sizes, [r[key]["p95"] for r in rows], marker="x", linestyle="--", alpha=0.6, label=f"{label} p95"
        )
    axis.set_xscale("log")
    axis.set_xlabel("chunks in the index")
    axis.set_ylabel("latency (ms)")
    axis.set_title("citeqa search latency against corpus size")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(report: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "report.json", directory / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2), encoding="utf-8")
    paths[1].write_text(markdown(report), encoding="utf-8")
    rows = report.get("scale", {}).get("rows", [])
    if rows:
        paths.append(directory / "latency.png")
        plot(rows, paths[-1])
    return paths
