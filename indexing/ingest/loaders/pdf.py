"""PDF: the text of each page, pages joined by a blank line, with each page's character span.

Extracted lines are joined back into paragraphs: a line that fills the page's width continues on the next
(a wrap, not the end of a paragraph), so a cited sentence is whole rather than cut at the wrap. Running
headers and footers repeated on several pages ("Company - Policy name", "Page 2 of 3") are left out.
Sections come from the PDF's outline when it has one, else from numbered headings ("2.1 Financial
records"); the title from the metadata unless it is a file name, else from the first lines."""

from __future__ import annotations

import io
import re
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders.common import (
    Heading,
    Parsed,
    guess_title,
    numbered_heading,
    numbered_headings,
    tidy_lines,
    too_long,
)
from citeqa.indexing.types import PageSpan

SUFFIXES = (".pdf",)
MAX_PDF_PAGES = 5000
MAX_PDF_SECONDS = 120.0

# A line at least this share of the page's longest line is taken to wrap onto the next one.
_FULL_LINE = 0.75
_RUNNING_LINE_MAX_CHARS = 120
_BULLET = re.compile(r"[•◦▪‣∙·\-–—*]\s|\(?[a-z0-9]{1,3}[.)]\s")
_FILE_NAME_TITLE = re.compile(r"(\.(docx?|pdf|odt|rtf|pptx?|xlsx?)$)|^(microsoft \w+ - |untitled)", re.I)


def parse(data: bytes, doc_id: str, max_chars: int) -> Parsed:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    started = time.monotonic()
    try:
        reader = PdfReader(io.BytesIO(data))
        if len(reader.pages) > MAX_PDF_PAGES:
            raise DocumentLoadError(f"{doc_id}: PDF has {len(reader.pages)} pages (limit {MAX_PDF_PAGES})")
        raw_pages: list[list[str]] = []
        total = 0
        for page in reader.pages:
            lines = tidy_lines(page.extract_text() or "").split("\n")
            raw_pages.append(lines)
            total += sum(len(line) + 1 for line in lines)
            if total > max_chars:
                raise too_long(doc_id, max_chars)
            if time.monotonic() - started > MAX_PDF_SECONDS:
                raise DocumentLoadError(f"{doc_id}: PDF text extraction took over {MAX_PDF_SECONDS:.0f}s")
        meta_title = reader.metadata.title if reader.metadata else None
        outline = _outline(reader)
    except DocumentLoadError:
        raise
    except FileNotDecryptedError as exc:
        raise DocumentLoadError(f"{doc_id}: encrypted PDF (a password is needed to open it)") from exc
    except Exception as exc:
        # pypdf signals bad input with many exception types (PdfReadError, LimitReachedError on
        # decompression bombs, KeyError, struct.error, RecursionError...): all mean "unreadable".
        detail = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise DocumentLoadError(f"{doc_id}: cannot parse PDF ({type(exc).__name__}: {detail})") from exc
    repeated = _running_lines(raw_pages)
    parts: list[str] = []
    pages: list[PageSpan] = []
    offset = 0
    for number, lines in enumerate(raw_pages, start=1):
        kept = [
            line for n, line in enumerate(lines) if not (n in (0, len(lines) - 1) and _key(line) in repeated)
        ]
        page_text = join_wrapped_lines(kept)
        if parts:
            offset += 2  # the "\n\n" that joins pages
        pages.append(PageSpan(number=number, start=offset, end=offset + len(page_text)))
        parts.append(page_text)
        offset += len(page_text)
    text = "\n\n".join(parts)
    if pages and not text.strip():
        raise DocumentLoadError(f"{doc_id}: no text found (a scan without a text layer? citeqa does not OCR)")
    headings = _outline_headings(text, pages, outline) or numbered_headings(text)
    title = str(meta_title).strip() if meta_title else ""
    if not title or _FILE_NAME_TITLE.search(title):
        title = guess_title(text, fallback="")
    return Parsed(text=text, title=title or None, pages=tuple(pages), headings=tuple(headings))


def join_wrapped_lines(lines: Sequence[str]) -> str:
    """The page's lines with each wrap inside a paragraph joined by a space (a hyphen at the wrap is
    kept, without a space: "Company-funded"); headings, list items and short last lines end their line."""
    width = max((len(line) for line in lines), default=0)
    out: list[str] = []
    last = ""  # the last line as extracted (out[-1] may hold several, joined)
    for line in lines:
        if out and out[-1] and line and _continues(last, line, width):
            hyphen = last.endswith("-") and last[-2:-1].isalpha() and line[0].islower()
            out[-1] = out[-1] + ("" if hyphen else " ") + line
        else:
            out.append(line)
        last = line
    return "\n".join(out)


def _continues(last: str, line: str, width: int) -> bool:
    """Whether `line` carries on the paragraph whose last extracted line is `last`."""
    if numbered_heading(line) is not None or _BULLET.match(line) or numbered_heading(last) is not None:
        return False  # a heading stands alone; a list item starts its own line
    return len(last) >= _FULL_LINE * width or line[0].islower()


def _key(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.split()).casefold())


def _running_lines(pages: Sequence[Sequence[str]]) -> set[str]:
    """Short lines that open or close at least two pages (numbers aside): running headers and footers."""
    if len(pages) < 2:
        return set()
    counts = Counter(
        key
        for lines in pages
        if len(lines) > 2
        for key in {_key(lines[0]), _key(lines[-1])}
        if key.strip() and len(key) <= _RUNNING_LINE_MAX_CHARS
    )
    return {key for key, count in counts.items() if count >= 2}


def _outline(reader: Any) -> list[tuple[int, str, int]]:
    """(level, title, page index) of the PDF's bookmarks, in order; [] when it has none or they are bad."""
    entries: list[tuple[int, str, int]] = []

    def visit(items: Sequence[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                visit(item, level + 1)
                continue
            try:
                entries.append((level, str(item.title).strip(), reader.get_destination_page_number(item)))
            except Exception:  # a bookmark to nowhere: left out
                continue

    try:
        visit(reader.outline, 1)
    except Exception:
        return []
    return entries


def _outline_headings(
    text: str, pages: Sequence[PageSpan], outline: Sequence[tuple[int, str, int]]
) -> list[Heading]:
    """The outline's entries found at the start of a line of their page, in order; [] unless most are."""
    headings: list[Heading] = []
    for level, title, index in outline:
        if not title or not 0 <= index < len(pages):
            continue
        page = pages[index]
        start = max(page.start, headings[-1].offset + 1 if headings else 0)
        at = _line_starting_with(text, " ".join(title.split()), start, page.end)
        if at is not None:
            headings.append(Heading(at, level, " ".join(title.split())))
    return headings if outline and len(headings) * 2 >= len(outline) else []


def _line_starting_with(text: str, title: str, start: int, end: int) -> int | None:
    at = text.find(title, start, end)
    while at >= 0:
        if at == 0 or text[at - 1] == "\n":
            return at
        at = text.find(title, at + 1, end)
    return None
