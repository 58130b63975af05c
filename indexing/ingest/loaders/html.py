"""HTML: the visible text (no scripts, styles or head), and the <title>."""

from __future__ import annotations

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders.common import Parsed, decode_text, tidy_lines, too_long

SUFFIXES = (".html", ".htm")


def parse(data: bytes, doc_id: str, max_chars: int) -> Parsed:
    from bs4 import BeautifulSoup

    markup = decode_text(data, doc_id)
    try:
        soup = BeautifulSoup(markup, "html.parser")
        title = soup.title.get_text(strip=True) if soup.title else None
        for hidden in soup(["script", "style", "noscript", "template", "head", "svg"]):
            hidden.decompose()
        text = tidy_lines(soup.get_text("\n"))
    except Exception as exc:  # a parser bug on hostile markup must not escape as a crash
        raise DocumentLoadError(f"{doc_id}: cannot parse HTML ({type(exc).__name__})") from exc
    if len(text) > max_chars:
        raise too_long(doc_id, max_chars)
    return text, title or None, ()
