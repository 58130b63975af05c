"""The README's commands work as printed from a fresh clone, and its chat and Python examples get the answers
it shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from citeqa.service.cli import _print_answers
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.settings import REPO_ROOT
from citeqa.service.wire import ask_json

from tests.conftest import child_env

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _code_lines() -> list[tuple[int, str]]:
    """(offset in the README, line) for every line inside a fenced code block."""
    lines, inside, offset = [], False, 0
    for line in README.splitlines(keepends=True):
        if line.startswith("```"):
            inside = not inside
        elif inside:
            lines.append((offset, line.strip()))
        offset += len(line)
    return lines


def test_bare_commands_come_after_the_virtual_environment_is_activated() -> None:
    """`make run` does not put `citeqa` on PATH: a bare `citeqa` before the activation was not found."""
    activation = README.index("source .venv/bin/activate")
    bare = [(at, line) for at, line in _code_lines() if re.match(r"(\$ )?(citeqa|python) ", line)]
    assert bare, "no commands found"
    assert all(at > activation for at, _ in bare), [line for at, line in bare if at < activation]
    assert (REPO_ROOT / ".venv" / "bin" / "citeqa").is_file()


@pytest.mark.integration
def test_the_openai_example_question_is_answered(seed_pipeline: QAPipeline) -> None:
    """The example asked "Which city was first?", which the service (rightly) declined to answer."""
    example = README[README.index("from openai import OpenAI") :]
    question = re.search(r'"content": "([^"]+)"', example)
    assert question is not None
    result = seed_pipeline.ask(question.group(1))
    assert not result.no_answer and result.answers[0].text == "Ningbo"


def _readme_ask_example() -> tuple[str, list[str]]:
    """The question of the README's `$ citeqa ask "..."` example and the lines it shows as printed."""
    lines = [line for _, line in _code_lines()]
    at = next(n for n, line in enumerate(lines) if line.startswith('$ citeqa ask "'))
    question = lines[at].split('"')[1]
    shown = []
    for line in lines[at + 1 :]:
        if not line or line.startswith("$"):
            break
        shown.append(line)
    return question, shown


@pytest.mark.integration
def test_the_readme_ask_example_prints_what_citeqa_prints(
    seed_pipeline: QAPipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README showed "score 0.87" long after the reader gave 0.71: its example is checked against a
    real run of the same printing code, the score within the last digit's wobble between CPUs (bf16 or
    fp32), the rest exactly."""
    question, shown = _readme_ask_example()
    _print_answers(ask_json(seed_pipeline.ask(question)), tty=False)
    printed = [line.strip() for line in capsys.readouterr().out.splitlines()]
    score = re.compile(r"\((?:score|probability) (\d\.\d\d)[,)]")
    readme_answer, real_answer = shown[0], printed[0]
    assert score.sub("", readme_answer) == score.sub("", real_answer)
    readme_score, real_score = (float(score.search(line).group(1)) for line in (readme_answer, real_answer))  # type: ignore[union-attr]
    assert abs(readme_score - real_score) <= 0.02, f"README: {readme_answer!r}, citeqa: {real_answer!r}"
    # The source line as printed; the context the README shortens between "..." lies within the real one.
    assert shown[1] == printed[1]
    assert shown[2].strip(".") in printed[2]


def _block_after(marker: str) -> str:
    """The body of the first fenced code block after `marker` in the README."""
    fence = README.index("```", README.index(marker))
    start = README.index("\n", fence) + 1
    return README[start : README.index("\n```", start) + 1]


@pytest.mark.e2e
def test_the_python_example_prints_what_the_readme_shows(tmp_path: Path) -> None:
    """The library example, run as printed in a fresh folder over the README's own example document, so a
    changed API, answer or score shows up here rather than in a newcomer's first minute."""
    shell = _block_after("## Use your own documents")
    heredoc = re.search(r"cat > (\S+) <<'EOF'\n(.*?)\nEOF\n", shell, re.S)
    assert heredoc is not None, shell
    document = tmp_path / heredoc.group(1)
    document.parent.mkdir(parents=True)
    document.write_text(heredoc.group(2) + "\n", encoding="utf-8")
    example = _block_after("## Python API")
    assert "from citeqa import QAPipeline, Settings" in example
    (tmp_path / "example.py").write_text(example, encoding="utf-8")

    run = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout == _block_after("run with `python example.py`")
