"""What every format's parser shares: decoding text safely, tidying extracted lines, the length limit,
titles and section paths from headings.

The text a parser returns is the document's text: offsets (citations, pages, sections) all index it, so a
parser that drops markup or joins wrapped lines does so here, once, and everything after agrees."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.types import PageSpan, SectionSpan


@dataclass(frozen=True)
class Heading:
    """A heading found at `offset` of the parsed text: its nesting `level` (1 outermost) and its text."""

    offset: int
    level: int
    text: str


@dataclass(frozen=True)
class Parsed:
    """A parser's result: the document text and what the format says about it."""

    text: str
    title: str | None = None
    pages: tuple[PageSpan, ...] = ()
    headings: tuple[Heading, ...] = ()
    date: str | None = None  # a date the format states outright (front matter); else found in the text


# A parser turns a file's bytes into Parsed; it raises DocumentLoadError naming `doc_id` for anything
# wrong with the content, and refuses more than `max_chars` of text.
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
        legacy = _legacy_text(data)
        if legacy is None:
            raise DocumentLoadError(f"{name}: not valid UTF-8 text (byte {exc.start})") from exc
        text = legacy
    head = text[:8192]
    if head and len(_CONTROL.findall(head)) > len(head) // 10:
        raise DocumentLoadError(f"{name}: looks like binary data, not text")
    return text


_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")


def _legacy_text(data: bytes) -> str | None:
    """A file saved in Windows-1252 (Latin-1's superset, what Windows editors and Excel long wrote) as
    text; None where it holds any well-formed UTF-8 sequence, so that damaged UTF-8 stays an error."""
    if _UTF8_SEQUENCE.search(data):
        return None
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:  # five bytes cp1252 leaves undefined
        return None


def collapse_spaces(text: str) -> str:
    """Each line's runs of whitespace as one space, its line breaks kept, the ends trimmed."""
    return "\n".join(" ".join(line.split()) for line in text.split("\n")).strip()


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


# --- sections ----------------------------------------------------------------------------------

# "2.1 Financial records", "3. WORKING HOURS", "12) Leave": a number, then a short capitalised title.
_NUMBERED = re.compile(r"(\d{1,3}(?:\.\d{1,3}){0,4})[.)]?[ \t]+([A-Z][^\n]{0,100})")
_HEADING_MAX_CHARS = 90
_HEADING_MAX_WORDS = 12


def numbered_heading(line: str) -> tuple[tuple[int, ...], str] | None:
    """(section number, heading text) when `line` reads as a numbered heading, else None.

    A heading is short, ends without sentence punctuation and is not a numbered paragraph
    ("1.1 Our reputation depends on ... every day. This Code ..." is body text)."""
    stripped = line.strip()
    match = _NUMBERED.fullmatch(stripped)
    if match is None or len(stripped) > _HEADING_MAX_CHARS:
        return None
    title = match.group(2).strip()
    if title[-1] in ".,;:!?" or len(title.split()) > _HEADING_MAX_WORDS or ". " in title:
        return None
    if sum(ch.isalpha() for ch in title) < 3:
        return None
    return tuple(int(n) for n in match.group(1).split(".")), stripped


def _follows(number: tuple[int, ...], stack: Sequence[tuple[int, ...]]) -> bool:
    """Whether section `number` can come next after the open sections `stack` (outermost first): a first
    subsection (2 -> 2.1), the next sibling of any open section (2.1 -> 2.2, 2.1 -> 3), or, first of all,
    any number. Numbered list items inside a section ("1. Fill in the form" in 4.2) are not headings."""
    if not stack:
        return True
    if number == (*stack[-1], 1):
        return True
    return any(number == (*open_[:-1], open_[-1] + 1) for open_ in stack)


def numbered_headings(text: str, line_starts: Sequence[int] | None = None) -> list[Heading]:
    """The numbered headings of plain or extracted text, each at the start of its line, levels by depth."""
    headings: list[Heading] = []
    stack: list[tuple[int, ...]] = []
    offset = 0
    for line in text.split("\n"):
        found = numbered_heading(line)
        if found is not None and _follows(found[0], stack):
            number, title = found
            stack = [open_ for open_ in stack if len(open_) < len(number)] + [number]
            headings.append(Heading(offset + (len(line) - len(line.lstrip())), len(number), title))
        offset += len(line) + 1
    return headings


def section_spans(
    text: str, headings: Sequence[Heading], title: str | None = None
) -> tuple[SectionSpan, ...]:
    """Sections from headings in text order: each runs from its heading to the next one, with the path of
    the headings it is nested in. A lone top heading that is the document's title is left out of the
    paths (the citation carries the title already); a heading with no text of its own (2., then 2.1 at
    once) starts the span of the section that follows, so no passage is a heading alone."""
    headings = sorted(headings, key=lambda h: h.offset)
    top = min((h.level for h in headings), default=0)
    tops = [h for h in headings if h.level == top]
    if len(tops) == 1 and tops[0] is headings[0] and len(headings) > 1:
        # A lone top heading that opens the document names it (the title, or a heading the front matter's
        # title replaced) unless it is a numbered section ("1. Introduction" with only 1.x under it).
        lone = tops[0]
        if (title is not None and _same(lone.text, title)) or not lone.text[:1].isdigit():
            headings = headings[1:]
    elif len(headings) == 1 and title is not None and _same(headings[0].text, title):
        headings = []
    spans: list[SectionSpan] = []
    stack: list[Heading] = []
    pending: int | None = None  # where an empty section's heading began
    for i, heading in enumerate(headings):
        stack = [h for h in stack if h.level < heading.level] + [heading]
        end = headings[i + 1].offset if i + 1 < len(headings) else len(text)
        start = heading.offset if pending is None else pending
        body_start = text.find("\n", heading.offset, end)
        if i + 1 < len(headings) and (body_start < 0 or not text[body_start:end].strip()):
            pending = start
            continue
        pending = None
        spans.append(SectionSpan(start, end, tuple(h.text for h in stack)))
    return tuple(spans)


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


# --- titles ------------------------------------------------------------------------------------

# Words that name what a document is: the line holding one is its title more often than the letterhead.
_DOCUMENT_WORDS = re.compile(
    r"\b(polic(?:y|ies)|handbook|notice|schedule|procedures?|terms|conditions|code|statement|guidelines?|"
    r"guide|standards?|agreement|charter|plan|rules|regulations?|manual|framework|protocol|guidance|"
    r"charter|contract|principles|faq)\b",
    re.IGNORECASE,
)
# A company name alone (the letterhead every document of one company starts with).
_COMPANY = re.compile(
    r"\b(ltd|limited|inc|llc|llp|plc|gmbh|corp|corporation|company|co|s\.a|ag|group|holdings)\.?$",
    re.IGNORECASE,
)


def guess_title(text: str, fallback: str) -> str:
    """The title of a document without markup: among the short lines that open it, the first that names a
    kind of document ("Data Retention Schedule"), else the first that is not only a company name."""
    candidates: list[str] = []
    for line in text.splitlines():
        stripped = " ".join(line.split()).lstrip("#").strip()
        if not stripped:
            continue
        if len(stripped) > 120 or len(candidates) == 5:
            break
        candidates.append(stripped)
    if not candidates:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return shortened(first, 200) if first else fallback
    named = next((c for c in candidates if _DOCUMENT_WORDS.search(c) and not _COMPANY.search(c)), None)
    chosen = named or next((c for c in candidates if not _COMPANY.search(c)), candidates[0])
    return shortened(chosen, 200)


def shortened(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a word boundary, marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    words = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return words.rstrip(" ,;:-") + "…"


# A block of output: its kind ("heading", "text", "item" of a list, "row" of a table), heading level (0
# otherwise) and text.
Block = tuple[str, int, str]


def table_row(header: list[str], cells: list[str]) -> str:
    """A table row as one line: "Hotel limit: £210, Meal allowance: £65.", or its cells when there is no
    header. Each row on its own line: an answer (a span within one line) never runs across rows. The closing
    full stop makes each row a sentence of its own to the reader, which otherwise reads a table as one run-on
    sentence and takes a value from the wrong row (on the own fitting part, 3 more right answers of 98)."""
    pairs = []
    for n, cell in enumerate(cells):
        name = header[n] if n < len(header) else ""
        if cell and name:
            pairs.append(f"{name}: {cell}")
        elif cell:
            pairs.append(cell)
    row = ", ".join(pairs)
    return row if not row or row[-1] in ".!?" else row + "."


def block_separator(previous: str, kind: str) -> str:
    """A blank line between blocks; rows of a table, and items of a list, one per line."""
    return "\n" if kind in ("row", "item") and kind == previous else "\n\n"


def assemble_blocks(
    blocks: Sequence[Block], separator: Callable[[str, str], str] = block_separator
) -> tuple[str, list[Heading]]:
    """Blocks joined into the document text, `separator(previous kind, kind)` between them, with the
    headings' offsets in it."""
    out: list[str] = []
    headings: list[Heading] = []
    length = 0
    previous = ""
    for kind, level, text in blocks:
        if not text:
            continue
        if out:
            separator_text = separator(previous, kind)
            out.append(separator_text)
            length += len(separator_text)
        if kind == "heading":
            headings.append(Heading(length, level, text))
        out.append(text)
        length += len(text)
        previous = kind
    return "".join(out), headings
