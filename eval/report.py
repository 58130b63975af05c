"""Write an EvalReport out: a terminal table, report.json, report.md and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eval.harness import EvalReport, QuestionResult

# (summary key, label, shown as a percentage)
TABLE_ROWS: tuple[tuple[str, str, bool], ...] = (
    ("n", "questions", False),
    ("em", "EM (all)", True),
    ("f1", "F1 (all)", True),
    ("has_ans_em", "EM (answerable)", True),
    ("has_ans_f1", "F1 (answerable)", True),
    ("no_ans_accuracy", "accuracy (unanswerable)", True),
    ("abstention_precision", "abstention precision", True),
    ("abstention_recall", "abstention recall", True),
    ("recall@1", "recall@1", True),
    ("recall@3", "recall@3", True),
    ("recall@5", "recall@5", True),
    ("recall@10", "recall@10", True),
    ("mrr", "MRR", False),
    ("ndcg@10", "nDCG@10", False),
    ("citation_exact", "citation exact", True),
    ("citation_overlap", "citation overlaps evidence", True),
    ("p50_ms", "latency p50 (ms)", False),
    ("p95_ms", "latency p95 (ms)", False),
    ("p99_ms", "latency p99 (ms)", False),
    ("qps", "questions per second", False),
    ("no_answer_margin", "no-answer margin used", False),
    ("best_no_answer_margin", "best no-answer margin (F1)", False),
    ("errors", "errors", False),
)


def _fmt(value: Any, percent: bool) -> str:
    if value is None:
        return "n/a"
    if percent:
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def terminal_table(report: EvalReport) -> str:
    width = max(len(label) for _, label, _ in TABLE_ROWS)
    lines = [f"{report.dataset} ({report.backend})", "-" * (width + 14)]
    for key, label, percent in TABLE_ROWS:
        if key in report.summary:
            lines.append(f"{label:<{width}}  {_fmt(report.summary[key], percent):>10}")
    lines.append("-" * (width + 14))
    stages = ", ".join(
        f"{stage} p50/p95/p99 {_fmt(s['p50'], False)}/{_fmt(s['p95'], False)}/{_fmt(s['p99'], False)} ms"
        for stage, s in report.latency.items()
        if s["p50"] is not None and stage in ("retrieve", "read")
    )
    if stages:
        lines.append(stages)
    return "\n".join(lines)


def _question_json(result: QuestionResult) -> dict[str, Any]:
    item = result.item
    return {
        "id": item.id,
        "question": item.question,
        "gold": list(item.answers),
        "doc_id": item.doc_id,
        "prediction": result.prediction,
        "abstained": result.abstained,
        "em": result.em,
        "f1": round(result.f1, 4),
        "score": result.answers[0]["score"] if result.answers else None,
        "reader_margin": result.answers[0]["reader_margin"] if result.answers else None,
        "best_sweep_margin": max((s.margin for s in result.sweep_spans), default=None)
        if result.sweep_spans is not None
        else None,
        "first_relevant_rank": next((i + 1 for i, rel in enumerate(result.relevance) if rel), None),
        "citation_exact": all(c is not False for c in result.citation_checks),
        "evidence_overlap": result.evidence_overlap,
        "timings_ms": result.timings_ms,
        "error": result.error,
    }


def report_json(report: EvalReport) -> dict[str, Any]:
    return {
        "dataset": report.dataset,
        "backend": report.backend,
        "config": report.config,
        "summary": report.summary,
        "latency_ms": report.latency,
        "margin_sweep": report.margin_sweep,
        "wall_s": report.wall_s,
        "questions": [_question_json(r) for r in report.results],
    }


def _md_escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def report_markdown(report: EvalReport) -> str:
    s = report.summary
    lines = [
        f"# Evaluation: {report.dataset}",
        "",
        f"Backend: {report.backend}. Top-k read: {report.config['top_k']}; "
        f"no-answer margin: {report.config['no_answer_margin']}; wall time {report.wall_s} s.",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key, label, percent in TABLE_ROWS:
        if key in s:
            lines.append(f"| {label} | {_fmt(s[key], percent)} |")
    lines += [
        "",
        "## Latency (ms)",
        "",
        "| stage | p50 | p95 | p99 | mean |",
        "| --- | --- | --- | --- | --- |",
    ]
    for stage, stats in report.latency.items():
        if stats["p50"] is not None:
            lines.append(f"| {stage} | {stats['p50']} | {stats['p95']} | {stats['p99']} | {stats['mean']} |")
    if report.margin_sweep:
        sweep = report.margin_sweep
        lines += [
            "",
            "## No-answer margin",
            "",
            f"Best margin on this set: **{sweep['best_no_answer_margin']}** "
            f"(F1 {100 * sweep['best_f1']:.1f}%, "
            f"EM {100 * sweep['best_em']:.1f}%). The offline replay reproduces the live answer for "
            f"{100 * (sweep['replay_agreement'] or 0):.1f}% of questions at the margin in use.",
        ]
    misses = [r for r in report.results if not r.correct or r.abstained]
    lines += ["", f"## Wrong or abstained ({len(misses)} of {len(report.results)})", ""]
    for r in misses:
        item = r.item
        status = "error" if r.error else ("abstained" if r.abstained else f"wrong (F1 {100 * r.f1:.0f}%)")
        if r.abstained and not item.answerable:
            status = "abstained (correct: unanswerable)"
        lines.append(f"### {item.id}: {status}")
        lines.append("")
        lines.append(f"- Question: {_md_escape(item.question)}")
        lines.append(
            f"- Gold: {', '.join(repr(a) for a in item.answers) if item.answers else '(unanswerable)'}"
        )
        if r.error:
            lines.append(f"- Error: {_md_escape(r.error)}")
        elif r.abstained:
            lines.append("- Prediction: (no answer)")
        else:
            top = r.answers[0]
            lines.append(
                f"- Prediction: {r.prediction!r} (score {top['score']:.3f}, margin {top['reader_margin']}, "
                f"{top['doc_id']} chars {top['start']}-{top['end']})"
            )
        if r.answers:
            lines.append(f"- Cited passage: {_md_escape(r.answers[0]['citation']['passage']['text'])}")
        elif r.passages:
            lines.append(f"- Top passage ({r.passages[0]['doc_id']}): {_md_escape(r.passages[0]['text'])}")
        if item.evidence:
            lines.append(f"- Gold evidence: {_md_escape(item.evidence)}")
        lines.append("")
    return "\n".join(lines)


def plot_latency(report: EvalReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for stage in ("retrieve", "read", "total"):
        values = [r.timings_ms[stage] for r in report.results if stage in r.timings_ms]
        if values:
            ax.hist(values, bins=40, alpha=0.55, label=stage)
    for key, style in (("p50_ms", "--"), ("p95_ms", ":")):
        if report.summary.get(key) is not None:
            ax.axvline(report.summary[key], color="black", linestyle=style, label=f"total {key[:-3]}")
    ax.set_xlabel("milliseconds per question")
    ax.set_ylabel("questions")
    ax.set_title(f"Latency by stage: {report.dataset}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_calibration(report: EvalReport, path: Path, bins: int = 10) -> None:
    """Answer score against the share of those answers that are right (exact match)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    answered = [r for r in report.results if r.answers and not r.abstained]
    scores = np.array([float(r.answers[0]["score"]) for r in answered])
    correct = np.array([r.em for r in answered])
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    if len(scores):
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.digitize(scores, edges) - 1, 0, bins - 1)
        centers, accuracy = [], []
        for b in range(bins):
            mask = which == b
            if mask.any():
                centers.append(float(scores[mask].mean()))
                accuracy.append(float(correct[mask].mean()))
        ax.plot(centers, accuracy, marker="o", label="exact-match rate")
        hist.hist(
            [scores[correct == 1], scores[correct == 0]], bins=edges, stacked=True, label=["right", "wrong"]
        )
        hist.legend()
    ax.set_ylabel("share right")
    ax.set_title(f"Score against correctness: {report.dataset}")
    ax.legend()
    hist.set_xlabel("answer score")
    hist.set_ylabel("answers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: EvalReport, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "report.json"
    json_path.write_text(
        json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    md_path = directory / "report.md"
    md_path.write_text(report_markdown(report) + "\n", encoding="utf-8")
    latency_path = directory / "latency.png"
    plot_latency(report, latency_path)
    calibration_path = directory / "calibration.png"
    plot_calibration(report, calibration_path)
    return [json_path, md_path, latency_path, calibration_path]
