"""The README's commands work as printed from a fresh clone, and its chat example gets an answer."""

from __future__ import annotations

import re

import pytest
from citeqa.service.qa.pipeline import QAPipeline
from citeqa.service.settings import REPO_ROOT

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
