"""`citeqa train-reader` (continue training a reader), `citeqa reader-eval` (its gold-paragraph score) and
`citeqa quantize-reader` (its int8 model)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from citeqa.indexing.errors import CiteqaError
from citeqa.service.settings import Settings

DATA_HELP = (
    "SQuAD-format file, optionally FILE:PART for one part of the project's split by article "
    "(PolicyQA: train, calibrate, test; SQuAD dev: calibrate, test); repeatable"
)


def register(subparsers: argparse._SubParsersAction, handlers: dict[str, Any]) -> None:
    p = subparsers.add_parser(
        "train-reader",
        help="continue training a reader on SQuAD-format data and write a new model folder",
        description="Fine-tune a reader (default: the configured one) on in-domain SQuAD-format questions, "
        "mixed with general ones; writes the model folder, MODEL_CARD.md and training_metrics.json.",
    )
    p.add_argument(
        "--data", action="append", required=True, metavar="FILE[:PART]", help="in-domain: " + DATA_HELP
    )
    p.add_argument(
        "--mix", action="append", default=[], metavar="FILE[:PART]", help="general data: " + DATA_HELP
    )
    p.add_argument("--out", type=Path, required=True, help="new model folder (must not exist or be empty)")
    p.add_argument("--base", type=Path, help="reader to start from (default: CITEQA_READER_PATH)")
    p.add_argument(
        "--mix-ratio", type=float, default=1.0, help="mix windows per in-domain window (default 1)"
    )
    p.add_argument(
        "--mix-null-fraction",
        type=float,
        default=0.5,
        help="share of mix windows with no answer (default 0.5)",
    )
    p.add_argument(
        "--near-miss",
        action="store_true",
        help="no-answer mix examples pair a question with the paragraph of its article sharing the most of "
        "its words (without the answer) instead of a random one",
    )
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the in-domain windows (default 1)")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate (default 5e-5)")
    p.add_argument("--batch-size", type=int, default=16, help="windows a step (default 16)")
    p.add_argument("--max-length", type=int, default=256, help="window length in tokens (default 256)")
    p.add_argument("--stride", type=int, default=96, help="overlap of windows in tokens (default 96)")
    p.add_argument("--max-windows", type=int, help="stop after this many training windows")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time, and save")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        help="bf16 autocast (default: on CPUs with native bf16 units)",
    )
    p.add_argument(
        "--layers", type=int, help="keep this many of the base's transformer layers: a smaller, faster reader"
    )
    p.add_argument(
        "--teacher", type=Path, help="a reader whose span scores the new one learns too (distillation)"
    )
    p.add_argument(
        "--distill-weight",
        type=float,
        default=0.5,
        help="with --teacher: share of the loss that is the teacher's (default 0.5)",
    )
    p.add_argument(
        "--temperature", type=float, default=2.0, help="with --teacher: softening of both (default 2)"
    )
    p.add_argument(
        "--eval",
        action="append",
        default=[],
        metavar="FILE[:PART]",
        help="score the result on these gold paragraphs and put the scores in the model card; " + DATA_HELP,
    )
    p.add_argument(
        "--eval-limit", type=int, help="score at most N questions of each --eval set (a fixed sample)"
    )
    handlers["train-reader"] = cmd_train_reader

    e = subparsers.add_parser(
        "reader-eval",
        help="score a reader on gold paragraphs (EM/F1 of answerable questions, no-answer accuracy)",
        description="Read every question over its own paragraph with the service's Reader and score it.",
    )
    e.add_argument("--data", action="append", required=True, metavar="FILE[:PART]", help=DATA_HELP)
    e.add_argument("--reader", type=Path, help="model folder (default: CITEQA_READER_PATH)")
    e.add_argument("--limit", type=int, help="score at most N questions of each set (a fixed random sample)")
    e.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default 0)")
    e.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    e.add_argument(
        "--record",
        action="store_true",
        help="add the scores to the model folder's training_metrics.json and MODEL_CARD.md "
        "(a folder written by train-reader)",
    )
    handlers["reader-eval"] = cmd_reader_eval

    q = subparsers.add_parser(
        "quantize-reader",
        help="write the reader's int8 model for OpenVINO beside it (read by default where int8 is faster)",
        description="Quantize the configured reader to int8 with NNCF, its ranges measured on sample "
        "questions read over their own documents; written to <reader>/openvino-int8/.",
    )
    q.add_argument(
        "--data",
        default="default",
        metavar="FILE[:PART]",
        help="sample questions with their documents: a SQuAD-format file or a JSON-lines set with docs/ "
        "(default: the fitting part of eval/data/policies)",
    )
    q.add_argument("--reader", type=Path, help="model folder (default: CITEQA_READER_PATH)")
    q.add_argument("--limit", type=int, help="use at most N of its questions")
    q.add_argument("--force", action="store_true", help="quantize even when a current int8 model exists")
    handlers["quantize-reader"] = cmd_quantize_reader


def cmd_quantize_reader(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.eval.training.quantize import quantize_reader

    _check_positive(limit=args.limit)
    if args.reader is not None:
        settings = settings.model_copy(update={"reader_path": args.reader})
    folder = quantize_reader(settings, args.data, args.limit, args.force, _log)
    _log(f"int8 reader in {folder}")
    return 0


def _check_positive(**values: float | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise CiteqaError(f"--{name.replace('_', '-')} must be positive")


def _training_device(name: str) -> str:
    """The global --device (CITEQA_DEVICE): auto trains on a CUDA GPU when there is one."""
    import torch
    from citeqa.indexing.embedding import resolve_device

    device = resolve_device(name)
    if device != "cpu" and not torch.cuda.is_available():
        raise CiteqaError(f"--device {name}: torch sees no CUDA GPU here")
    return device


def _bf16_default(device: str) -> bool:
    """bf16 autocast where the hardware multiplies bf16 natively: CPUs with AVX512-BF16/AMX, recent GPUs."""
    import torch
    from citeqa.indexing.embedding import cpu_has_fast_bf16

    return cpu_has_fast_bf16() if device == "cpu" else torch.cuda.is_bf16_supported()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _reader(path: Path, settings: Settings) -> Any:
    from citeqa.service.qa.reader import TransformersReader

    # The service's reader, built from its settings, so that the score is the service's.
    reader = TransformersReader.from_settings(settings.model_copy(update={"reader_path": path}))
    reader.warm_up()
    return reader


def score_sets(
    reader_path: Path, specs: list[str], limit: int | None, seed: int, settings: Settings
) -> dict[str, Any]:
    from citeqa.eval.training.reader import evaluate_reader, load_examples, sample_examples

    examples = {spec: sample_examples(load_examples(spec), limit, seed) for spec in specs}
    reader = _reader(reader_path, settings)
    return {spec: evaluate_reader(reader, items, _log) for spec, items in examples.items()}


def cmd_train_reader(args: argparse.Namespace, settings: Settings) -> int:
    from citeqa.eval.training.reader import TrainConfig, load_examples, train_reader, write_model_card

    _check_positive(
        mix_ratio=args.mix_ratio,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_windows=args.max_windows,
        max_minutes=args.max_minutes,
        threads=args.threads,
        eval_limit=args.eval_limit,
        layers=args.layers,
        temperature=args.temperature,
    )
    shares = {"mix-null-fraction": args.mix_null_fraction, "distill-weight": args.distill_weight}
    for name, share in shares.items():
        if not 0 <= share <= 1:
            raise CiteqaError(f"--{name} must be between 0 and 1")
    if args.teacher is not None and not (args.teacher / "config.json").is_file():
        raise CiteqaError(f"teacher reader not found at {args.teacher}")
    device = _training_device(settings.device)
    if not 64 <= args.max_length <= 512 or not 0 <= args.stride < args.max_length // 2:
        raise CiteqaError("--max-length must be 64..512 and --stride under half of it")
    base = args.base or settings.reader_path
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise CiteqaError(f"{args.out} exists and is not an empty folder: choose a new --out")
    if args.layers is not None and (base / "config.json").is_file():
        total = json.loads((base / "config.json").read_text("utf-8"))["num_hidden_layers"]
        if args.layers > total:
            raise CiteqaError(f"--layers {args.layers}: the base reader at {base} has {total}")
    for spec in args.data + args.mix + args.eval:
        load_examples(spec)  # bad files and parts fail here, before minutes of training
    config = TrainConfig(
        data=args.data,
        mix=args.mix,
        mix_ratio=args.mix_ratio,
        mix_null_fraction=args.mix_null_fraction,
        near_miss=args.near_miss,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        stride=args.stride,
        max_windows=args.max_windows,
        max_minutes=args.max_minutes,
        seed=args.seed,
        threads=args.threads,
        bf16=_bf16_default(device) if args.bf16 is None else args.bf16,
        device=device,
        layers=args.layers,
        teacher=str(args.teacher) if args.teacher else None,
        distill_weight=args.distill_weight,
        temperature=args.temperature,
    )
    metrics = train_reader(base, args.out, config, log=_log)
    if args.eval:
        scores = score_sets(args.out, args.eval, args.eval_limit, args.seed, settings)
        metrics["gold_paragraph"] = {
            spec: {**row, "limit": args.eval_limit, "seed": args.seed} for spec, row in scores.items()
        }
        (args.out / "training_metrics.json").write_text(
            json.dumps(metrics, indent=1) + "\n", encoding="utf-8"
        )
        write_model_card(args.out, base, metrics, metrics["gold_paragraph"])
        _print_scores(scores)
    print(
        f"wrote {args.out} ({metrics['windows_trained']} windows in {metrics['train_seconds']} s, "
        f"loss {metrics['first_loss']:.3f} -> {metrics['final_loss']:.3f})"
    )
    return 0


def _print_scores(scores: dict[str, Any]) -> None:
    header = (
        f"{'has EM':>7} {'has F1':>7} {'no-ans acc':>10} {'F1':>6} {'no-ans AUC':>10} {'best F1 @margin':>16}"
    )
    print(f"{'set':<48} {'n':>5} {header}")
    for spec, row in scores.items():
        no_ans = f"{row['no_ans_acc']:.1f}" if row["no_ans"] else "-"
        auc = f"{row['no_ans_auc']:.3f}" if row.get("no_ans_auc") is not None else "-"
        best = f"{row['best_f1']:.1f} @{row['best_margin']:.2f}"
        text = (
            f"{row['has_em']:>7.1f} {row['has_f1']:>7.1f} {no_ans:>10} {row['f1']:>6.1f} {auc:>10} {best:>16}"
        )
        print(f"{spec[-48:]:<48} {row['n']:>5} {text}")


def cmd_reader_eval(args: argparse.Namespace, settings: Settings) -> int:
    _check_positive(limit=args.limit)
    reader_path = args.reader or settings.reader_path
    if not (reader_path / "config.json").is_file():
        raise CiteqaError(f"reader model not found at {reader_path}")
    metrics_path = reader_path / "training_metrics.json"
    if args.record and not metrics_path.is_file():
        raise CiteqaError(f"--record needs a folder written by train-reader ({metrics_path} is missing)")
    scores = score_sets(reader_path, args.data, args.limit, args.seed, settings)
    _print_scores(scores)
    if args.record:
        from citeqa.eval.training.reader import write_model_card

        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        recorded = metrics.setdefault("gold_paragraph", {})
        for spec, row in scores.items():
            recorded[spec] = {**row, "limit": args.limit, "seed": args.seed}
        metrics_path.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
        write_model_card(reader_path, Path(metrics["recipe"]["base"]), metrics, recorded)
    if args.json:
        payload = {"reader": str(reader_path), "limit": args.limit, "seed": args.seed, "sets": scores}
        args.json.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return 0
