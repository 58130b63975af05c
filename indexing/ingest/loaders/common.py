"""What every format's parser shares: decoding text safely, tidying extracted lines, the length limit."""

from __future__ import annotations

import re
from collections.abc import Callable

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.types import PageSpan

# A parser turns a file's bytes into (text, title or None, page spans); it raises DocumentLoadError
# naming `doc_id` for anything wrong with the content, and refuses more than `max_chars` of text.
Parsed = tuple[str, str | None, tuple[PageSpan, ...]]
Parser = Callable[[bytes, str, int], Parsed]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def decode_text(data: bytes, name: str) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentLoadError(f"{name}: looks like binary data, not text")
    if b"\x00" in data:
        # Anywhere, not only at the start: Postgres cannot store NUL in text and failed the upload
        # as an outage (503), while the local store kept it and served it back.
        at = data.index(b"\x00")
        raise DocumentLoadError(f"{name}: contains a NUL character (byte {at}); not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentLoadError(f"{name}: not valid UTF-8 text (byte {exc.start})") from exc
    head = text[:8192]
    if head and len(_CONTROL.findall(head)) > len(head) // 10:
        raise DocumentLoadError(f"{name}: looks like binary data, not text")
    return text


def tidy_lines(text: str) -> str:
    """Strip each line and keep at most one blank line in a row (for extracted text only)."""
    lines = [line.strip() for line in text.splitlines()]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy).strip()


def too_long(doc_id: str, max_chars: int) -> DocumentLoadError:
    return DocumentLoadError(f"{doc_id}: more than {max_chars:,} characters of text (the limit)")
