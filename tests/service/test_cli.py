"""The command line: readable and JSON answers, and one clear line for each kind of bad input."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path

import pytest
from citeqa.service.cli import _print_answers, main
from citeqa.service.settings import Settings
from citeqa.service.wire import ask_json

from tests.conftest import SEEDS
from tests.service.outcome_fakes import CONFIDENT, NONE, NOT_SURE, OutcomePipeline


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CITEQA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CITEQA_DEVICE", "cpu")
    return tmp_path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.integration
def test_index_then_ask_prints_cited_answer(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = env / "corpus"
    shutil.copytree(SEEDS, corpus)
    (corpus / "notes.xyz").write_text("unsupported")
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    assert main(["index", str(corpus)]) == 0
    out, err = capsys.readouterr()
    assert "indexed 1 documents" in out
    assert "broken.pdf" in err and "notes.xyz" in err

    assert main(["ask", "Which city was the first Made in China 2025 pilot demonstration city?"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("Answer: Ningbo")
    assert "000_d31740c80f9a4c4e.txt" in out and "[[Ningbo]]" in out

    assert main(["ask", "What is the total investment of Shaanxi's projects?", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    best = result["answers"][0]
    text = (SEEDS / best["doc_id"]).read_text(encoding="utf-8")
    assert text[best["start"] : best["end"]] == best["text"] == "804.179 billion yuan"
    assert result["no_answer"] is False and result["passages"]

    # A second run embeds nothing: the document is unchanged.
    assert main(["index", str(corpus)]) == 0
    assert "0 chunks embedded" in capsys.readouterr().out


def test_ask_without_index(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "Anything?"]) == 1
    assert "citeqa index" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("question", ["", "   ", "y" * 1001])
def test_bad_question(env: Path, capsys: pytest.CaptureFixture[str], question: str) -> None:
    assert main(["ask", question]) != 0
    assert "question" in _one_error_line(capsys.readouterr().err)


def test_ask_reads_the_question_from_stdin(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y" * 1001 + "\n"))
    assert main(["ask", "-"]) != 0  # the question read, and checked as any other: 1001 characters
    assert "the question is 1001 characters long" in _one_error_line(capsys.readouterr().err)
    monkeypatch.setattr("sys.stdin", io.StringIO("Which city was first?\n"))
    assert main(["ask", "-"]) == 1  # read and valid: it gets as far as the missing index
    assert "citeqa index" in _one_error_line(capsys.readouterr().err)


def test_empty_corpus_folder(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "empty").mkdir()
    assert main(["index", str(env / "empty")]) == 1
    assert "no loadable documents" in _one_error_line(capsys.readouterr().err)
    assert main(["index", str(env / "missing")]) == 1
    assert "does not exist" in _one_error_line(capsys.readouterr().err)
    (env / "empty" / "leave.md").write_text("# Leave\n")
    assert main(["index", str(env / "empty" / "leave.md")]) == 1  # said "does not exist"
    assert "is a file; index the folder that holds it" in _one_error_line(capsys.readouterr().err)


def test_bad_flag_value(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "What?", "--top-k", "0"]) == 2
    assert "--top-k" in _one_error_line(capsys.readouterr().err)
    assert main(["ask", "What?", "--min-answer-probability", "1.5"]) == 2
    assert "between 0 and 1" in _one_error_line(capsys.readouterr().err)


def test_bad_setting(env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CITEQA_TOP_K", "many")
    assert main(["ask", "What?"]) == 2
    assert "CITEQA_TOP_K" in _one_error_line(capsys.readouterr().err)


@pytest.mark.integration
def test_index_from_another_embedder(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = env / "corpus"
    shutil.copytree(SEEDS, corpus)
    assert main(["index", str(corpus)]) == 0
    capsys.readouterr()
    index_dir = env / "data" / "index"
    version = (index_dir / "CURRENT").read_text().strip()
    manifest_path = index_dir / version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["embedder"] = "another-model"
    manifest_path.write_text(json.dumps(manifest))
    assert main(["ask", "Which city?"]) == 1
    assert "re-index" in _one_error_line(capsys.readouterr().err)


def test_index_dir_after_the_command_and_its_hint(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`citeqa index PATH --index-dir X` was refused, and the "build one" hint built elsewhere."""
    corpus = env / "corpus"
    shutil.copytree(SEEDS, corpus)
    assert main(["index", str(corpus), "--index-dir", str(env / "x")]) == 0
    assert (env / "x" / "CURRENT").is_file()
    capsys.readouterr()
    assert main(["ask", "Anything?", "--index-dir", str(env / "y")]) == 1
    assert f"`citeqa index --index-dir {env / 'y'}`" in _one_error_line(capsys.readouterr().err)


def test_indexing_another_folder_needs_replace(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, other = env / "first", env / "other"
    shutil.copytree(SEEDS, first)
    other.mkdir()
    (other / "harbor.txt").write_text("Harbor logs are kept for 45 days.\n", encoding="utf-8")
    assert main(["index", str(first)]) == 0
    assert main(["index", str(first)]) == 0  # the same folder again: fine
    capsys.readouterr()
    assert main(["index", str(other)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert str(first) in line and "--replace" in line
    assert main(["index", str(env / "missing")]) == 1  # not "would replace its documents"
    assert "does not exist" in _one_error_line(capsys.readouterr().err)
    assert main(["index", str(other), "--replace"]) == 0
    assert "indexed 1 documents" in capsys.readouterr().out


def test_ann_threshold_reads_its_variable_and_the_old_hnsw_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITEQA_HNSW_THRESHOLD", "7")
    assert Settings().ann_threshold == 7
    monkeypatch.setenv("CITEQA_ANN_THRESHOLD", "9")
    assert Settings().ann_threshold == 9
    assert Settings(ann_threshold=4).model_copy(update={"ann_threshold": 5}).ann_threshold == 5


def test_ask_prints_how_sure_each_answer_is(capsys: pytest.CaptureFixture[str]) -> None:
    """The three outcomes as `citeqa ask` prints them (a pipeline without models gives the results)."""
    pipeline = OutcomePipeline()
    _print_answers(ask_json(pipeline.ask(CONFIDENT)), tty=False)
    confident = capsys.readouterr().out
    assert confident.startswith("Answer: 14 days   (probability 0.90)\n")
    assert "Alternative 1: 5 euros   (probability 0.40, not sure)" in confident
    assert "Low confidence" not in confident  # the best answer is confident
    assert "[[14 days]]" in confident

    _print_answers(ask_json(pipeline.ask(NOT_SURE)), tty=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "Answer: 5 euros   (probability 0.45, not sure)",
        "  Low confidence — check the source.",
    ]
    assert lines[2] == "  Source: Refund policy [refunds.md, chars 63-70]"

    _print_answers(ask_json(pipeline.ask(NONE)), tty=False)
    none = capsys.readouterr().out
    assert none.startswith("I found no answer in the documents.\n")
    assert "Closest passage (Refund policy" in none and "--best-guess" in none


def test_ask_best_guess_flag_reaches_the_pipeline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: Path
) -> None:
    fake = OutcomePipeline()
    monkeypatch.setattr("citeqa.service.qa.pipeline.QAPipeline", lambda settings: _Loaded(fake), raising=True)
    assert main(["ask", NONE, "--best-guess", "--no-service", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["confidence_level"] == "not_sure" and body["answers"][0]["text"] == "Berlin"
    assert main(["ask", CONFIDENT, "--min-answer-probability", "0.95", "--no-service", "--json"]) == 0
    assert {a["confidence_level"] for a in json.loads(capsys.readouterr().out)["answers"]} == {"not_sure"}
    assert fake.calls == [
        {"question": NONE, "best_guess": True},
        {"question": CONFIDENT, "best_guess": False},
    ]


class _Loaded:
    """What `cmd_ask` needs of a pipeline besides `ask`: cheap checks and a warm-up, here no-ops."""

    def __init__(self, fake: OutcomePipeline) -> None:
        self.ask = fake.ask

    def validate_question(self, question: str) -> str:
        return question

    def require_index(self) -> None:
        pass

    def warm_up(self) -> None:
        pass


def test_probabilities_are_shown_rounded_down() -> None:
    """0.899, not sure, was printed "probability 0.90, not sure": the confident threshold's own number."""
    from citeqa.service.wire import shown_probability

    assert [shown_probability(p) for p in (0.899, 0.9, 0.41, 0.0, 1.0, 0.07)] == [
        "0.89", "0.90", "0.41", "0.00", "1.00", "0.07",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("CITEQA_DATA_DIR", "{file}", "CITEQA_DATA_DIR={file} is a file, not a folder"),
        ("CITEQA_INDEX_DIR", "{file}", "CITEQA_INDEX_DIR={file} is a file"),
        ("CITEQA_READER_PATH", "{missing}", "CITEQA_READER_PATH={missing}: no reader model"),
        ("CITEQA_EMBEDDER_PATH", "{missing}", "CITEQA_EMBEDDER_PATH={missing}: no embedding model"),
        ("CITEQA_CHUNK_OVERLAP_TOKENS", "150", "chunk_overlap_tokens (150) must be less than chunk_tokens"),
        ("CITEQA_TOP_K", "0", "bad setting top_k (CITEQA_TOP_K):"),
    ],
)
def test_unusable_paths_and_settings_are_one_line_naming_the_variable(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str,
    fragment: str,
) -> None:  # fmt: skip
    """Tracebacks before (a data directory that is a file, a missing embedder), or `citeqa serve` up and
    never ready; setting errors named the field, not the variable."""
    (env / "a-file").write_text("not a folder")
    paths = {"file": env / "a-file", "missing": env / "missing"}
    monkeypatch.setenv(variable, value.format(**paths))
    for command in (["ask", "Anything?", "--no-service"], ["index", str(SEEDS)]):
        assert main(command) != 0
        assert fragment.format(**paths) in _one_error_line(capsys.readouterr().err)


def test_every_command_describes_itself_in_its_help() -> None:
    """`citeqa export-reader --help` and `citeqa bench --help` said nothing of what they do."""
    from citeqa.eval.cli import build_parser

    parser, handlers = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == set(handlers)
    assert [name for name, command in commands.items() if not command.description] == []
