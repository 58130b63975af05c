"""The page in a headless browser (Debian's chromium; skipped where none is installed).

`--dump-dom` with a virtual-time budget prints the DOM once the page's fetches have settled.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.conftest import LiveServer

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(BROWSER is None, reason="no chromium installed (.ci/run installs it)"),
]

QUESTION = "Which city was the first Made in China 2025 pilot demonstration city?"


def rendered(url: str) -> str:
    assert BROWSER is not None
    result = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return result.stdout


def test_page_shows_highlighted_answer_and_opens_the_cited_span(live_server: LiveServer) -> None:
    answers = httpx.post(f"{live_server.url}/v1/ask", json={"question": QUESTION}).json()["answers"]
    answer = answers[0]
    # One load: ?q= asks at once and the #doc= deep link opens the cited span, as a citation click does.
    url = (
        f"{live_server.url}/?q={quote(QUESTION)}"
        f"#doc={quote(answer['doc_id'])}&start={answer['start']}&end={answer['end']}"
    )
    dom = rendered(url)
    results = dom[dom.index('id="results"') : dom.index('id="document"')]
    assert '<div class="text">Ningbo</div>' in results
    assert "<mark>Ningbo</mark>" in results
    # Every answer the API gives (those at or above the answer threshold), and only those.
    assert len(re.findall(r'<article class="answer', results)) == len(answers)
    assert re.search(r"probability \d\.\d\d", results)
    assert 'data-confidence-level="answer"' in results
    assert "open the document at this span" in results
    viewer = dom[dom.index('id="document"') :]
    assert "hidden" not in viewer[: viewer.index(">")]
    assert "<mark>Ningbo</mark>" in viewer
    assert f"characters {answer['start']}–{answer['end']}" in viewer


def test_page_says_clearly_when_the_service_abstains(live_server: LiveServer) -> None:
    dom = rendered(f"{live_server.url}/?q={quote('What is the boiling point of mercury on Mars?')}")
    assert "I found no answer in the documents." in dom
    assert "do not answer" not in dom
    assert 'class="answer' not in dom
    assert "Show the best guess anyway" in dom  # the way to the best guess, from the abstention itself


ABSTAINED = "What is the boiling point of mercury on Mars?"


def test_abstention_asks_for_feedback_without_a_stray_separator(live_server: LiveServer) -> None:
    dom = rendered(f"{live_server.url}/?q={quote(ABSTAINED)}")
    assert "Was this right?" in dom
    assert "· was this right?" not in dom


def test_document_panel_closes_when_the_next_result_does_not_cite_it(live_server: LiveServer) -> None:
    """The panel of an earlier citation stayed open under the next result, even an abstention."""
    answers = httpx.post(f"{live_server.url}/v1/ask", json={"question": QUESTION}).json()["answers"]
    answer = answers[0]
    link = f"#doc={quote(answer['doc_id'])}&start={answer['start']}&end={answer['end']}"
    dom = rendered(f"{live_server.url}/?q={quote(ABSTAINED)}{link}")
    assert "I found no answer in the documents." in dom
    viewer = dom[dom.index('id="document"') :]
    assert "hidden" in viewer[: viewer.index(">")]


def test_answers_scored_zero_are_not_listed(live_server: LiveServer) -> None:
    dom = rendered(f"{live_server.url}/?q={quote(QUESTION)}&n=5")
    results = dom[dom.index('id="results"') : dom.index('id="document"')]
    assert '<article class="answer best"' in results
    assert "probability 0.00" not in results


def test_the_best_guess_is_shown_not_sure_with_its_probability_and_passage(live_server: LiveServer) -> None:
    """?guess=1 ticks the page's "best guess" box: below the floor, the top answer, marked as such."""
    guess = httpx.post(f"{live_server.url}/v1/ask", json={"question": ABSTAINED, "best_guess": True}).json()
    [answer] = guess["answers"]
    dom = rendered(f"{live_server.url}/?q={quote(ABSTAINED)}&guess=1")
    results = dom[dom.index('id="results"') : dom.index('id="document"')]
    assert '<article class="answer best not-sure" data-doc-id=' in results
    assert 'data-confidence-level="not_sure"' in results
    assert f"not sure · probability {answer['score']:.2f}" in results
    assert "Low confidence — check the source." in results
    assert f"<mark>{answer['text']}</mark>" in results
    # The whole cited passage is shown, so that the guess can be checked on the page.
    passage = answer["citation"]["passage"]["text"]
    after = passage[answer["end"] - answer["citation"]["passage"]["start"] :]
    assert html.escape(" ".join(after.split())[-40:], quote=False) in " ".join(results.split())
    assert "No answer found" not in dom and "1 answer(s), not sure in" in dom
