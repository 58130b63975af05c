"""`citeqa train-reader` on a tiny SQuAD-format set: it learns, writes a reader the service loads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from citeqa.eval.cli import main
from citeqa.eval.training.reader import load_examples, make_windows, wrong_paragraph_examples
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
    ],
)
def test_train_reader_bad_input_is_one_line(
    tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["train-reader", "--out", str(tmp_path / "out"), *(a.format(tiny=tiny_set) for a in extra)]
    assert main(args) == 1
    assert message in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
