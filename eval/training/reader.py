"""Continue training an extractive reader on SQuAD-format data, and score a reader on gold paragraphs.

The recipe: (question, paragraph) pairs cut into overlapping token windows, each labelled with the answer's
start/end tokens, or with [CLS] (token 0) when the window holds no answer (unanswerable questions, windows
that miss the answer, and "wrong paragraph" pairs). In-domain data is read in full each epoch; a mix set
(general data) adds a fresh sample of windows each epoch so that general skill and no-answer ability stay.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from citeqa.eval.datasets import POLICYQA_PARTS, SQUAD_DEV_PARTS, squad_articles
from citeqa.eval.metrics import exact_match, f1_score
from citeqa.indexing.errors import DatasetError
from citeqa.service.qa.answering import normalize_answer
from citeqa.service.qa.confidence import content_words


@dataclass(frozen=True)
class QAExample:
    """One question over one paragraph; `answer_start is None` marks "no answer in this paragraph"."""

    question: str
    context: str
    answer_start: int | None = None
    answer_text: str = ""
    answers: tuple[str, ...] = ()  # every gold text, for scoring


@dataclass
class Window:
    input_ids: list[int]
    token_type_ids: list[int]
    start: int  # 0 ([CLS]) when the window holds no answer
    end: int


def _parts_of(path: Path) -> Sequence[str] | None:
    """The project's split for the files it knows (PolicyQA, SQuAD dev); other files have no parts."""
    if "policyqa" in str(path).lower():
        return POLICYQA_PARTS
    if path.name.startswith("dev"):
        return SQUAD_DEV_PARTS
    return None


def parse_data_spec(spec: str) -> tuple[Path, str | None]:
    """`FILE` or `FILE:PART` (PART of the project's split of that file, e.g. policyqa/dev.json.gz:train)."""
    path, _, part = spec.partition(":") if not Path(spec).is_file() else (spec, "", "")
    return Path(path), part or None


def load_examples(spec: str) -> list[QAExample]:
    """Every question of a SQuAD v1.1/v2.0 file (or one part of its split), first gold answer as label."""
    path, part = parse_data_spec(spec)
    articles = squad_articles(path, _parts_of(path) if part else None, part)
    examples = []
    for article in articles:
        for paragraph in article.get("paragraphs", []):
            context = paragraph["context"]
            for qa in paragraph.get("qas", []):
                gold = [] if qa.get("is_impossible") else [a for a in qa.get("answers", []) if a.get("text")]
                if not gold:
                    examples.append(QAExample(qa["question"], context))
                    continue
                text, start = gold[0]["text"], int(gold[0].get("answer_start", -1))
                if context[start : start + len(text)] != text:
                    start = context.find(text)
                    if start < 0:
                        continue  # a label that is not in its paragraph teaches nothing
                texts = tuple(dict.fromkeys(a["text"] for a in gold))
                examples.append(QAExample(qa["question"], context, start, text, texts))
    if not examples:
        raise DatasetError(f"{spec}: holds no questions")
    return examples


def wrong_paragraph_examples(spec: str, rng: random.Random, near_miss: bool = False) -> list[QAExample]:
    """Answerable questions paired with another paragraph of their article that holds none of the answers:
    no-answer examples over the same kind of text (how the shipped reader learnt to abstain). `near_miss`:
    the paragraph that shares the most of the question's words instead of a random one, the passage a
    retriever brings for a question it does not answer."""
    path, part = parse_data_spec(spec)
    examples = []
    for article in squad_articles(path, _parts_of(path) if part else None, part):
        contexts = [p["context"] for p in article.get("paragraphs", [])]
        normalized = [normalize_answer(c) for c in contexts]
        words = [set(content_words(c)) for c in contexts] if near_miss else []
        for number, paragraph in enumerate(article.get("paragraphs", [])):
            others = [i for i in range(len(contexts)) if i != number]
            for qa in paragraph.get("qas", []):
                golds = [normalize_answer(a["text"]) for a in qa.get("answers", []) if a.get("text")]
                if qa.get("is_impossible") or not golds or not others:
                    continue
                if near_miss:
                    asked = set(content_words(qa["question"]))
                    without = [i for i in others if not any(g in normalized[i] for g in golds)]
                    other = max(without, key=lambda i: (len(asked & words[i]), -i)) if without else None
                else:
                    other = rng.choice(others)  # as the shipped readers were trained: skipped if it holds one
                if other is not None and not any(g in normalized[other] for g in golds):
                    examples.append(QAExample(qa["question"], contexts[other]))
    return examples


def make_windows(
    tokenizer: Any,
    examples: Sequence[QAExample],
    max_length: int,
    stride: int,
    max_question_tokens: int = 64,
) -> list[list[Window]]:
    """Each example's windows (as the service's Reader cuts them), labelled with answer tokens or [CLS]."""
    questions = []
    for example in examples:
        # Clip long questions as service.reading.TransformersReader does: training sees what serving sees.
        offsets = tokenizer(example.question, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        clipped = example.question
        if len(offsets) > max_question_tokens:
            clipped = example.question[: offsets[max_question_tokens - 1][1]]
        questions.append(clipped)
    encoded = tokenizer(
        questions,
        [e.context for e in examples],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    windows: list[list[Window]] = [[] for _ in examples]
    for i, example_index in enumerate(encoded["overflow_to_sample_mapping"]):
        example = examples[example_index]
        sequence_ids = encoded.sequence_ids(i)
        offsets = encoded["offset_mapping"][i]
        start = end = 0
        if example.answer_start is not None:
            context_tokens = [t for t, s in enumerate(sequence_ids) if s == 1]
            first, last = context_tokens[0], context_tokens[-1]
            char_start, char_end = example.answer_start, example.answer_start + len(example.answer_text)
            if offsets[first][0] <= char_start and offsets[last][1] >= char_end:
                start = next(t for t in range(last, first - 1, -1) if offsets[t][0] <= char_start)
                end = next(t for t in range(first, last + 1) if offsets[t][1] >= char_end)
        windows[example_index].append(
            Window(encoded["input_ids"][i], encoded["token_type_ids"][i], start, end)
        )
    return windows


@dataclass
class TrainConfig:
    data: list[str]
    mix: list[str] = field(default_factory=list)
    mix_ratio: float = 1.0  # mix windows per in-domain window, each epoch
    mix_null_fraction: float = 0.5  # share of the mix windows labelled "no answer"
    near_miss: bool = False  # wrong-paragraph negatives: the most similar paragraph, not a random one
    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 16
    max_length: int = 256
    stride: int = 96
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_windows: int | None = None  # stop after this many training windows
    max_minutes: float | None = None  # stop (and save) after this much training time
    seed: int = 0
    threads: int | None = None
    bf16: bool = False
    device: str = "cpu"  # "cuda" trains on the GPU (bf16 autocast there too when `bf16`)
    layers: int | None = None  # keep this many of the base's transformer layers: a smaller, faster reader
    teacher: str | None = None  # a reader whose span scores the trained one also learns (distillation)
    distill_weight: float = 0.5  # share of the loss that is the teacher's, the rest the gold labels'
    temperature: float = 2.0  # softens both score distributions, so the teacher's runner-ups teach too


def _mix_windows(
    tokenizer: Any,
    config: TrainConfig,
    answer_pool: list[QAExample],
    null_pool: list[QAExample],
    count: int,
    rng: random.Random,
) -> list[Window]:
    """`count` mix windows: answerable examples by their answer's window, no-answer ones by their first."""
    n_null = min(len(null_pool), round(count * config.mix_null_fraction))
    n_answer = min(len(answer_pool), count - n_null)
    picked = rng.sample(answer_pool, n_answer) + rng.sample(null_pool, n_null)
    chosen = []
    for windows in make_windows(tokenizer, picked, config.max_length, config.stride):
        with_answer = [w for w in windows if w.start > 0]
        chosen.append(rng.choice(with_answer) if with_answer else windows[0])
    return chosen


def _batches(windows: list[Window], batch_size: int, pad_id: int) -> Iterable[dict[str, Any]]:
    import torch

    for lo in range(0, len(windows), batch_size):
        batch = windows[lo : lo + batch_size]
        width = max(len(w.input_ids) for w in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        types = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, w in enumerate(batch):
            n = len(w.input_ids)
            ids[row, :n] = torch.tensor(w.input_ids)
            types[row, :n] = torch.tensor(w.token_type_ids)
            mask[row, :n] = 1
        yield {
            "input_ids": ids,
            "token_type_ids": types,
            "attention_mask": mask,
            "start_positions": torch.tensor([w.start for w in batch]),
            "end_positions": torch.tensor([w.end for w in batch]),
        }


MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def kept_layers(total: int, keep: int) -> list[int]:
    """Which of `total` layers a `keep`-layer reader starts from: spread evenly, the first and the last
    always among them (as DistilBERT took every other layer of its teacher), so that the student starts
    with the base's lowest features and its last layer, the one the span head was trained on."""
    if not 1 <= keep <= total:
        raise ValueError(f"keep {keep} of {total} layers")
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def distillation_loss(student: Any, teacher: Any, mask: Any, temperature: float) -> Any:
    """KL divergence from the teacher's span-position distribution to the student's, both softened by
    `temperature` and scaled by its square (Hinton et al., 2015); padding positions take no part."""
    import torch

    hidden = ~mask.bool()
    s = (student.float() / temperature).masked_fill(hidden, -1e4)
    t = (teacher.float() / temperature).masked_fill(hidden, -1e4)
    kl = torch.nn.functional.kl_div(
        torch.log_softmax(s, dim=-1), torch.log_softmax(t, dim=-1), log_target=True, reduction="batchmean"
    )
    return kl * temperature**2


def _load_reader_model(path: Path, device: str, layers: int | None = None) -> Any:
    import torch
    from transformers import AutoModelForQuestionAnswering

    if not (path / "config.json").is_file():
        raise DatasetError(f"reader not found at {path}")
    model = AutoModelForQuestionAnswering.from_pretrained(str(path), dtype=torch.float32)
    if layers is not None:
        blocks = getattr(getattr(model.base_model, "encoder", None), "layer", None)
        if not isinstance(blocks, torch.nn.ModuleList):
            raise DatasetError(f"--layers needs a BERT-style reader, not {model.config.model_type}")
        total = len(blocks)
        if not 1 <= layers <= total:
            raise DatasetError(f"--layers must be 1..{total}: {path.name} has {total} layers")
        model.base_model.encoder.layer = torch.nn.ModuleList(blocks[i] for i in kept_layers(total, layers))
        model.config.num_hidden_layers = layers
    return model.to(device)


def train_reader(
    base: Path, out: Path, config: TrainConfig, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train from the model folder `base` and write the result to `out`; returns the training metrics."""
    import torch
    from transformers import AutoTokenizer

    if config.threads:
        torch.set_num_threads(config.threads)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    model = _load_reader_model(base, config.device, config.layers)
    teacher = _load_reader_model(Path(config.teacher), config.device).eval() if config.teacher else None
    tokenizer = AutoTokenizer.from_pretrained(str(base))

    in_domain = [e for spec in config.data for e in load_examples(spec)]
    domain_windows = [
        w for ws in make_windows(tokenizer, in_domain, config.max_length, config.stride) for w in ws
    ]
    answer_pool: list[QAExample] = []
    null_pool: list[QAExample] = []
    for spec in config.mix:
        for example in load_examples(spec):
            (null_pool if example.answer_start is None else answer_pool).append(example)
        null_pool.extend(wrong_paragraph_examples(spec, rng, config.near_miss))
    mix_per_epoch = round(len(domain_windows) * config.mix_ratio) if config.mix else 0
    per_epoch = len(domain_windows) + mix_per_epoch
    total = math.ceil(per_epoch * config.epochs)
    if config.max_windows is not None:
        total = min(total, config.max_windows)
    steps = max(1, math.ceil(total / config.batch_size))
    log(
        f"in-domain: {len(in_domain)} questions, {len(domain_windows)} windows; mix pool: "
        f"{len(answer_pool)} answerable, {len(null_pool)} no-answer; {mix_per_epoch} mix windows an epoch; "
        f"{total} windows, {steps} steps of {config.batch_size}"
    )

    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm"))]
    no_decay = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm"))]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    warmup_steps = max(1, int(steps * config.warmup))
    budget_s = 60 * config.max_minutes if config.max_minutes else math.inf

    def progress(step: int, elapsed: float) -> float:
        """How far through training: by steps, or by time when a time budget runs out first (a shared
        CPU's speed is not known in advance), so that the learning rate still decays to zero at the end."""
        return max(step / steps, elapsed / budget_s)

    def lr_factor(step: int, elapsed: float) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        done = progress(step, elapsed)
        return max(0.0, (1 - done) / max(1e-9, 1 - warmup_steps / steps))

    device_kind = torch.device(config.device).type  # autocast takes "cuda", not "cuda:0"
    model.train()
    losses: list[float] = []
    log_rows: list[dict[str, float]] = []
    step = seen = 0
    began = time.perf_counter()
    epoch = 0
    while step < steps:
        epoch_windows = list(domain_windows)
        if mix_per_epoch:
            epoch_windows += _mix_windows(tokenizer, config, answer_pool, null_pool, mix_per_epoch, rng)
        rng.shuffle(epoch_windows)
        for batch in _batches(epoch_windows, config.batch_size, tokenizer.pad_token_id or 0):
            elapsed = time.perf_counter() - began
            if step >= steps or (step and progress(step, elapsed) >= 1):
                steps = step  # out of windows or of time: stop here and save what was learnt
                break
            for group in optimizer.param_groups:
                group["lr"] = config.lr * lr_factor(step, elapsed)
            batch = {name: tensor.to(config.device) for name, tensor in batch.items()}
            with torch.autocast(device_kind, dtype=torch.bfloat16, enabled=config.bf16):
                output = model(**batch)
                loss = output.loss
                if teacher is not None:
                    with torch.no_grad():
                        taught = teacher(**{k: batch[k] for k in MODEL_INPUTS})
                    mask, temp = batch["attention_mask"], config.temperature
                    distilled = (
                        distillation_loss(output.start_logits, taught.start_logits, mask, temp)
                        + distillation_loss(output.end_logits, taught.end_logits, mask, temp)
                    ) / 2
                    loss = (1 - config.distill_weight) * loss + config.distill_weight * distilled
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            step += 1
            seen += len(batch["input_ids"])
            if step % 20 == 0 or step == steps:
                elapsed = time.perf_counter() - began
                row = {
                    "step": step,
                    "epoch": round(epoch + 1, 2),
                    "loss": float(np.mean(losses[-20:])),
                    "windows_per_s": seen / elapsed,
                    "elapsed_s": elapsed,
                }
                log_rows.append(row)
                log(
                    f"step {step}/{steps} loss {row['loss']:.3f} {row['windows_per_s']:.2f} windows/s "
                    f"{elapsed:.0f}s"
                )
        epoch += 1
    elapsed = time.perf_counter() - began
    edge = max(1, min(20, len(losses) // 4))
    metrics = {
        "recipe": {**asdict(config), "base": str(base)},
        "in_domain_questions": len(in_domain),
        "in_domain_windows": len(domain_windows),
        "windows_trained": seen,
        "steps": step,
        "train_seconds": round(elapsed, 1),
        "windows_per_s": round(seen / elapsed, 2),
        # Means over the first and last quarter of the steps (at most 20), so that short runs compare too.
        "first_loss": float(np.mean(losses[:edge])),
        "final_loss": float(np.mean(losses[-edge:])),
        "log": log_rows,
    }
    save_reader(model, tokenizer, base, out, metrics)
    return metrics


def save_reader(model: Any, tokenizer: Any, base: Path, out: Path, metrics: dict[str, Any]) -> None:
    """fp16 safetensors like the shipped reader (half the size; the service reads in bf16 or fp16 anyway)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.to("cpu", torch.float16).save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    (out / "training_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    write_model_card(out, base, metrics)


def write_model_card(
    out: Path, base: Path, metrics: dict[str, Any], evaluation: dict[str, Any] | None = None
) -> None:
    recipe = metrics["recipe"]
    device = recipe.get("device", "cpu")  # cards written before training took a device say nothing of it
    where = f"on {device}" if device != "cpu" else f"on CPU, {recipe['threads'] or 'default'} torch threads"
    smaller, distilled = [], []
    if recipe.get("layers"):
        smaller = [f"- {recipe['layers']} of the base's transformer layers kept (`kept_layers`)"]
    if recipe.get("teacher"):
        distilled = [
            f"- distilled from `{Path(recipe['teacher']).name}`: {recipe['distill_weight']} of the loss is "
            f"the KL divergence to its span scores at temperature {recipe['temperature']}, the rest the "
            "gold labels'"
        ]
    lines = [
        f"# {out.name}",
        "",
        f"An extractive reader continued from `{base.name}` with `citeqa train-reader`",
        "(eval/training/reader.py). Same architecture (but for the layer count, where the recipe says fewer",
        "were kept), tokenizer and decoding as the base reader (see its MODEL_CARD.md); fp16 safetensors.",
        "",
        "## Data",
        *(f"- in-domain, every window each epoch: `{spec}`" for spec in recipe["data"]),
        *(f"- mix, a fresh sample each epoch: `{spec}`" for spec in recipe["mix"]),
        f"- mix windows per in-domain window: {recipe['mix_ratio']}, of which no-answer ([CLS]): "
        f"{recipe['mix_null_fraction']} (unanswerable questions and answerable questions paired with another "
        "paragraph of their article that holds no answer)",
        "",
        "## Recipe",
        f"- windows {recipe['max_length']} tokens, stride {recipe['stride']}; batch {recipe['batch_size']}; "
        f"AdamW lr {recipe['lr']} ({recipe['warmup']:.0%} warm-up, linear decay), weight decay "
        f"{recipe['weight_decay']}; {recipe['epochs']} epochs; seed {recipe['seed']}; "
        f"bf16 autocast: {recipe['bf16']}; {where}",
        *smaller,
        *distilled,
        f"- {metrics['windows_trained']} windows in {metrics['steps']} steps, {metrics['train_seconds']} s "
        f"({metrics['windows_per_s']} windows/s); "
        f"loss {metrics['first_loss']:.3f} -> {metrics['final_loss']:.3f}",
    ]
    if evaluation:
        lines += ["", "## Measured quality (gold paragraph, `citeqa reader-eval`)", ""]
        lines += [
            "| set | questions | has-answer EM / F1 | no-answer accuracy | all F1 | no-answer AUC |",
            "|---|---|---|---|---|---|",
        ]
        for name, row in evaluation.items():
            no_ans = f"{row['no_ans_acc']:.1f}" if row["no_ans"] else "-"
            auc = f"{row['no_ans_auc']:.3f}" if row.get("no_ans_auc") is not None else "-"
            has = f"{row['has_em']:.1f} / {row['has_f1']:.1f}"
            sampled = f" (random sample, seed {row['seed']})" if row.get("limit") == row["n"] else ""
            lines.append(f"| `{name}`{sampled} | {row['n']} | {has} | {no_ans} | {row['f1']:.1f} | {auc} |")
        lines += [
            "",
            "Has-answer: the best span, forced. No-answer accuracy and all F1: abstain when the best span's "
            "score is below the window's [CLS] score (margin < 0), the reader's own null score with no tuned "
            "threshold. No-answer AUC: how well the margin separates unanswerable from answerable questions "
            "(the service abstains below a margin chosen on development data).",
        ]
    (out / "MODEL_CARD.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- gold-paragraph evaluation -------------------------------------------------------------------


def evaluate_reader(
    reader: Any, examples: Sequence[QAExample], log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Read each question over its own paragraph with the service's Reader; SQuAD EM/F1 in points.

    has_em/has_f1: answerable questions, best span forced. no_ans_acc: unanswerable questions on which
    the best span's margin over the null score is negative. em/f1: every question, abstaining at margin < 0.
    no_ans_auc: how well the margin alone separates unanswerable from answerable questions (threshold-free);
    best_f1 at best_margin: all questions, abstaining below the F1-best margin of this very set.
    """
    span_em, span_f1, margins, answerable = [], [], [], []
    for number, example in enumerate(examples, start=1):
        candidates = reader.read(example.question, [example.context])
        best = candidates[0] if candidates else None
        span = example.context[best.start : best.end] if best else ""
        # Scores of the span if answered; an unanswerable question scores 0 unless it abstains.
        span_em.append(exact_match(span, example.answers) if example.answers else 0.0)
        span_f1.append(f1_score(span, example.answers) if example.answers else 0.0)
        margins.append(best.margin if best else -math.inf)
        answerable.append(bool(example.answers))
        if log and number % 200 == 0:
            log(f"{number}/{len(examples)} read")
    em, f1, margin = np.array(span_em), np.array(span_f1), np.array(margins)
    has, none = np.array(answerable, dtype=bool), ~np.array(answerable, dtype=bool)

    def all_questions(scores: np.ndarray, threshold: float) -> np.ndarray:
        answered = margin >= threshold
        return np.where(answered, scores, none.astype(float))

    def points(values: np.ndarray) -> float:
        return round(100 * float(np.mean(values)), 2) if len(values) else 0.0

    thresholds = np.append(np.unique(margin), np.inf)
    sweep = [float(np.mean(all_questions(f1, t))) for t in thresholds]
    best = int(np.argmax(sweep))
    auc = None
    if has.any() and none.any():
        pairs = margin[none][:, None] - margin[has][None, :]
        auc = round(float(np.mean(pairs < 0) + 0.5 * np.mean(pairs == 0)), 4)
    return {
        "n": len(examples),
        "has_ans": int(has.sum()),
        "has_em": points(em[has]),
        "has_f1": points(f1[has]),
        "no_ans": int(none.sum()),
        "no_ans_acc": points((margin < 0)[none]),
        "em": points(all_questions(em, 0.0)),
        "f1": points(all_questions(f1, 0.0)),
        "no_ans_auc": auc,
        "best_f1": round(100 * sweep[best], 2),
        "best_margin": round(float(thresholds[best]), 3),
    }


def sample_examples(examples: list[QAExample], limit: int | None, seed: int) -> list[QAExample]:
    """A fixed random sample (same seed, same questions), so that two readers are scored alike."""
    if limit is None or limit >= len(examples):
        return examples
    return random.Random(seed).sample(examples, limit)
