"""Plain text: the file's text exactly as it is (UTF-8), with numbered headings ("2.1 Financial records")
as section paths. Markdown has its own module (markdown.py)."""

from __future__ import annotations

from citeqa.indexing.ingest.loaders.common import Parsed, decode_text, numbered_headings, too_long

SUFFIXES = (".txt",)


def parse(data: bytes, doc_id: str, max_chars: int) -> Parsed:
    text = decode_text(data, doc_id)
    if len(text) > max_chars:
        raise too_long(doc_id, max_chars)
    return Parsed(text=text, headings=tuple(numbered_headings(text)))
