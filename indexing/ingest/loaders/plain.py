"""Plain text and Markdown: the file's text as it is (UTF-8)."""

from __future__ import annotations

from citeqa.indexing.ingest.loaders.common import Parsed, decode_text, too_long

SUFFIXES = (".txt", ".md", ".markdown")


def parse(data: bytes, doc_id: str, max_chars: int) -> Parsed:
    text = decode_text(data, doc_id)
    if len(text) > max_chars:
        raise too_long(doc_id, max_chars)
    return text, None, ()
