"""Write an EvalReport out: a terminal table, report.json, report.md and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from citeqa.eval.harness import EvalReport, QuestionResult
from citeqa.eval.metrics import is_right, reliability

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
    ("outcome_answer", "confident answers", False),
    ("outcome_not_sure", "not-sure answers", False),
    ("outcome_none", "no answer", False),
    ("answer_right", "confident answers right", True),
    ("not_sure_right", "not-sure answers right", True),
    ("answerable_right", "answerable: right (confident or not sure)", True),
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
    ("answer_threshold", "answer probability threshold", False),
    ("answer_floor", "answer probability floor", False),
    ("best_answer_threshold", "F1-best threshold on this set", False),
    ("ece", "expected calibration error", False),
    ("accuracy@50%", "right at 50% answered", True),
    ("accuracy@80%", "right at 80% answered", True),
    ("accuracy@100%", "right at 100% answered", True),
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
    intervals = report.summary.get("intervals") or {}
    for key, label, percent in TABLE_ROWS:
        if key in report.summary:
            line = f"{label:<{width}}  {_fmt(report.summary[key], percent):>10}"
            if intervals.get(key):
                low, high = intervals[key]
                line += f"  (95% interval {100 * low:.1f}-{100 * high:.1f})"
            lines.append(line)
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
        "outcome": result.outcome,
        "em": result.em,
        "f1": round(result.f1, 4),
        "score": result.answers[0]["score"] if result.answers else None,
        "reader_margin": result.answers[0]["reader_margin"] if result.answers else None,
        "best_candidate": (
            {"text": result.candidates[0].text, "probability": result.candidates[0].score}
            if result.candidates
            else None
        ),
        "first_relevant_rank": next((i + 1 for i, rel in enumerate(result.relevance) if rel), None),
        "citation_exact": all(c is not False for c in result.citation_checks),
        "evidence_overlap": result.evidence_overlap,
        "timings_ms": result.timings_ms,
        "error": result.error,
    }


def outcome_table(summary: dict[str, Any]) -> list[str]:
    """The three outcomes by kind of question, and the risk-coverage of the two kinds of answer."""
    if "outcome_none" not in summary:
        return []
    lines = [
        "## Outcomes",
        "",
        "| outcome | answerable | unanswerable | all | right | coverage (this level or better) | "
        "right among those |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for outcome, label in (("answer", "confident"), ("not_sure", "not sure"), ("none", "no answer")):
        right = _fmt(summary.get(f"{outcome}_right"), True) if outcome != "none" else ""
        coverage = _fmt(summary.get(f"coverage_{outcome}"), True) if outcome != "none" else ""
        accuracy = _fmt(summary.get(f"accuracy_{outcome}"), True) if outcome != "none" else ""
        lines.append(
            f"| {label} | {summary[f'outcome_{outcome}_answerable']} | "
            f"{summary[f'outcome_{outcome}_unanswerable']} | {summary[f'outcome_{outcome}']} | {right} | "
            f"{coverage} | {accuracy} |"
        )
    lines += [
        "",
        "An answer is right when its token F1 with a gold answer is at least 0.5. Answerable questions "
        f"answered right, confident or not sure: {_fmt(summary.get('answerable_right'), True)}.",
        "",
    ]
    return lines


def report_json(report: EvalReport) -> dict[str, Any]:
    return {
        "dataset": report.dataset,
        "backend": report.backend,
        "config": report.config,
        "summary": report.summary,
        "latency_ms": report.latency,
        "confidence": report.confidence,
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
        f"Backend: {report.backend}. Top-k read: {report.config['top_k']}; scope: {report.config['scope']}; "
        f"answer threshold: {report.config['answer_threshold']}; "
        f"floor: {report.config.get('answer_floor')}; wall time {report.wall_s} s.",
        "",
        *outcome_table(s),
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
    if report.confidence:
        c = report.confidence
        lines += [
            "",
            "## Confidence",
            "",
            f"An answer is right when its F1 with a gold answer is at least 0.5. Expected calibration error "
            f"of the best answer's probability: **{_fmt(c['ece'], False)}**. The F1-best threshold on this "
            f"set is {c['best_threshold']} (F1 {100 * c['best_f1']:.1f}%, EM {100 * c['best_em']:.1f}%); "
            f"the replay reproduces the live answer for {100 * (c['replay_agreement'] or 0):.1f}% of "
            "questions at the threshold in use.",
            "",
            "| probability | questions | mean probability | right |",
            "| --- | --- | --- | --- |",
        ]
        for b in c["reliability"]:
            lines.append(
                f"| {b['lo']:.1f}-{b['hi']:.1f} | {b['n']} | {b['mean_probability']:.3f} | "
                f"{100 * b['accuracy']:.1f}% |"
            )
        lines += ["", "| answered (most confident first) | right |", "| --- | --- |"]
        for coverage, accuracy in c["risk_coverage"].items():
            lines.append(f"| {coverage} | {_fmt(accuracy, True)} |")
    misses = [r for r in report.results if not r.correct or r.abstained]
    lines += ["", f"## Wrong or abstained ({len(misses)} of {len(report.results)})", ""]
    for r in misses:
        item = r.item
        level = " (not sure)" if r.outcome == "not_sure" else ""
        status = (
            "error" if r.error else ("abstained" if r.abstained else f"wrong{level} (F1 {100 * r.f1:.0f}%)")
        )
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
                f"- Prediction: {r.prediction!r} (probability {top['score']:.3f}, "
                f"margin {top['reader_margin']}, "
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


def plot_calibration(report: EvalReport, path: Path) -> None:
    """Reliability diagram: the best answer's probability against the share of such answers right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = report.confidence["reliability"] if report.confidence else _answered_reliability(report)
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    if bins:
        ax.plot([b["mean_probability"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                label="share right (F1 >= 0.5)")  # fmt: skip
        hist.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["n"] for b in bins], width=0.09)
    ax.set_ylabel("share right")
    ax.set_title(f"Reliability: {report.dataset}")
    ax.legend()
    hist.set_xlabel("probability of the best answer")
    hist.set_ylabel("questions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _answered_reliability(report: EvalReport) -> list[dict[str, float]]:
    """Over HTTP there are no candidates: the answers given, by their score."""
    answered = [r for r in report.results if r.answers and not r.abstained]
    return reliability(
        [float(r.answers[0]["score"]) for r in answered],
        [is_right(r.prediction, r.item.answers) for r in answered],
    ).bins


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
