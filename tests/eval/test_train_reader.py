"""`citeqa train-reader` on a tiny SQuAD-format set: it learns, writes a reader the service loads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from citeqa.eval.cli import main
from citeqa.eval.training.reader import (
    distillation_loss,
    kept_layers,
    load_examples,
    make_windows,
    wrong_paragraph_examples,
)
from citeqa.service.qa.reader import TransformersReader
from citeqa.service.settings import Settings

# Policy-style questions whose answers are long clauses: the SQuAD-trained reader gets them partly wrong,
# so a few steps have something to learn.
PARAGRAPHS = [
    (
        "We keep your account data for as long as your account is open. When you close your account we "
        "delete your personal data within thirty days, except records we must keep for tax purposes.",
        [
            ("How long do you keep my data?", "for as long as your account is open"),
            ("What happens when I close my account?", "we delete your personal data within thirty days"),
        ],
    ),
    (
        "We share information with payment processors and delivery partners only to complete your order. "
        "We never sell your personal information to advertisers.",
        [
            ("Who do you share my information with?", "payment processors and delivery partners"),
            ("Do you sell my data?", "We never sell your personal information to advertisers"),
        ],
    ),
    (
        "You can opt out of marketing emails by clicking the unsubscribe link at the bottom of any email "
        "or by writing to privacy@example.com.",
        [
            ("How can I stop marketing emails?", "clicking the unsubscribe link at the bottom of any email"),
        ],
    ),
]


def torch_sees_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    paragraphs = []
    for number, (context, qas) in enumerate(PARAGRAPHS):
        items: list[dict[str, object]] = [
            {
                "id": f"q{number}-{i}",
                "question": q,
                "answers": [{"text": a, "answer_start": context.index(a)}],
            }
            for i, (q, a) in enumerate(qas)
        ]
        items.append(
            {
                "id": f"q{number}-none",
                "question": "What is the CEO's home address?",
                "answers": [],
                "is_impossible": True,
            }
        )
        paragraphs.append({"context": context, "qas": items})
    path = tmp_path_factory.mktemp("tiny") / "tiny.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "Shop", "paragraphs": paragraphs}]}))
    return path


def test_near_miss_negatives_pair_a_question_with_the_most_similar_paragraph_without_its_answer(
    tmp_path: Path,
) -> None:
    contexts = [
        "Refunds are paid within 14 days of the return.",
        "Returns of opened items: the refund for an opened item is store credit only.",
        "Our stores open at nine.",
        "Refunds for returns are paid to the original card.",
    ]
    qa = {"id": "q", "question": "How long do refunds for returns take?",
          "answers": [{"text": "within 14 days", "answer_start": 18}]}  # fmt: skip
    paragraphs = [{"context": c, "qas": [qa] if n == 0 else []} for n, c in enumerate(contexts)]
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "Shop", "paragraphs": paragraphs}]}))
    near = wrong_paragraph_examples(str(path), random.Random(0), near_miss=True)
    # Paragraph 3 shares two of the question's words ("refunds", "returns"), paragraph 1 one, 2 none.
    assert [(e.question, e.context, e.answer_start) for e in near] == [(qa["question"], contexts[3], None)]
    contexts[3] = "Refunds for returns are paid within 14 days to the original card."  # now it answers
    paragraphs[3]["context"] = contexts[3]
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "Shop", "paragraphs": paragraphs}]}))
    assert [e.context for e in wrong_paragraph_examples(str(path), random.Random(0), near_miss=True)] == [
        contexts[1]
    ]  # the most similar paragraph that does not hold the answer


def test_a_smaller_reader_keeps_layers_spread_evenly_with_the_first_and_the_last() -> None:
    assert kept_layers(6, 6) == [0, 1, 2, 3, 4, 5]
    assert kept_layers(6, 3) == [0, 2, 5]
    assert kept_layers(6, 2) == [0, 5]
    assert kept_layers(6, 1) == [5]  # the layer the span head was trained on
    assert kept_layers(12, 4) == [0, 4, 7, 11]
    for keep in (0, 7):
        with pytest.raises(ValueError):
            kept_layers(6, keep)


def test_distillation_loss_compares_real_tokens_only() -> None:
    import torch

    teacher = torch.tensor([[0.0, 3.0, 1.0, -2.0, 9.0], [2.0, 0.0, 0.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    assert distillation_loss(teacher.clone(), teacher, mask, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    padding_differs = teacher.clone()
    padding_differs[0, 4] = -50.0  # a padding position: no part of the loss
    assert distillation_loss(padding_differs, teacher, mask, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    flat = torch.zeros_like(teacher)
    loss = distillation_loss(flat, teacher, mask, 2.0)
    assert loss.item() > 0.1
    loss_hot = distillation_loss(flat, teacher, mask, 1.0)
    assert loss_hot.item() > loss.item() / 4  # scaled by T^2: softer targets are not a smaller signal


@pytest.mark.integration
def test_windows_label_answer_tokens_and_cls(tiny_set: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(Settings().reader_path))
    examples = load_examples(str(tiny_set))
    # Windows short enough that the first paragraph is cut in two: only one holds the answer.
    windows = make_windows(tokenizer, examples, max_length=40, stride=8)
    first = windows[1]  # "What happens when I close my account?": its answer is late in the paragraph
    assert len(first) > 1
    labelled = [w for w in first if w.start > 0]
    assert labelled and any(w.start == w.end == 0 for w in first)
    for w in labelled:
        answer = tokenizer.decode(w.input_ids[w.start : w.end + 1])
        assert answer == examples[1].answer_text.lower()
    unanswerable = windows[2]
    assert examples[2].answer_start is None and all(w.start == w.end == 0 for w in unanswerable)


@pytest.mark.integration
def test_train_reader_learns_and_writes_a_reader_the_service_loads(
    tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reader"
    args = ["train-reader", "--data", str(tiny_set), "--mix", str(tiny_set), "--out", str(out)]
    args += ["--epochs", "12", "--lr", "2e-4", "--batch-size", "4", "--max-length", "96", "--stride", "32"]
    assert main([*args, "--eval", str(tiny_set), "--threads", "1"]) == 0
    metrics = json.loads((out / "training_metrics.json").read_text())
    assert metrics["final_loss"] < 0.7 * metrics["first_loss"]
    assert metrics["recipe"]["data"] == [str(tiny_set)]
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Measured quality" in card and str(tiny_set) in card
    assert metrics["gold_paragraph"][str(tiny_set)]["has_ans"] == 5
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}

    reader = TransformersReader(out, device="cpu")
    context, qas = PARAGRAPHS[1]
    best = reader.read(qas[0][0], [context])[0]
    assert context[best.start : best.end] == qas[0][1]

    capsys.readouterr()
    assert (
        main(
            ["reader-eval", "--data", str(tiny_set), "--reader", str(out), "--json", str(tmp_path / "s.json")]
        )
        == 0
    )
    scores = json.loads((tmp_path / "s.json").read_text())["sets"][str(tiny_set)]
    assert scores["n"] == 8 and scores["no_ans"] == 3
    assert scores["has_f1"] >= 80


@pytest.mark.integration
def test_train_reader_distils_a_smaller_reader_the_service_loads(tiny_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    teacher = Settings().reader_path
    args = ["train-reader", "--data", str(tiny_set), "--out", str(out), "--layers", "2"]
    args += ["--teacher", str(teacher), "--distill-weight", "0.9", "--device", "cpu", "--threads", "1"]
    args += ["--epochs", "8", "--lr", "3e-4", "--batch-size", "4", "--max-length", "96", "--stride", "32"]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    metrics = json.loads((out / "training_metrics.json").read_text())
    assert metrics["recipe"]["layers"] == 2 and metrics["recipe"]["teacher"] == str(teacher)
    assert metrics["final_loss"] < 0.7 * metrics["first_loss"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "2 of the base's transformer layers kept" in card and f"distilled from `{teacher.name}`" in card

    reader = TransformersReader(out, device="cpu")
    context, qas = PARAGRAPHS[0]
    candidates = reader.read(qas[0][0], [context])
    assert candidates and 0 <= candidates[0].start < candidates[0].end <= len(context)


@pytest.mark.skipif(torch_sees_cuda(), reason="this machine has a CUDA GPU")
def test_train_reader_on_cuda_without_a_gpu_is_one_line(
    tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train-reader", "--data", str(tiny_set), "--out", str(tmp_path / "out"), "--device", "cuda"]
    assert main(args) == 1
    assert "torch sees no CUDA GPU" in _one_error_line(capsys.readouterr().err)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "missing.json.gz"], "does not exist"),
        (["--data", "{tiny}:nopart"], "unknown part 'nopart'"),
        (["--data", "{tiny}", "--lr", "0"], "--lr must be positive"),
        (["--data", "{tiny}", "--out", "{tiny}"], "not an empty folder"),
        (["--data", "{tiny}", "--layers", "0"], "--layers must be positive"),
        (["--data", "{tiny}", "--layers", "9"], "has 6"),
        (["--data", "{tiny}", "--teacher", "no-such-reader"], "teacher reader not found"),
        (["--data", "{tiny}", "--distill-weight", "1.5"], "--distill-weight must be between 0 and 1"),
    ],
)
def test_train_reader_bad_input_is_one_line(
    tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["train-reader", "--out", str(tmp_path / "out"), *(a.format(tiny=tiny_set) for a in extra)]
    assert main(args) == 1
    assert message in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
