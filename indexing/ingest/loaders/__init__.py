"""Turn files into Documents: one module per format (plain.py: plain text, markdown.py: Markdown without its
markup, html.py: the content without navigation, pdf.py: text per page, docx.py: Word's paragraphs, headings
and tables), each with its SUFFIXES and a
`parse`, registered once in FORMATS below. Here: the title, the date and the section paths."""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders import docx, html, markdown, pdf, plain
from citeqa.indexing.ingest.loaders.common import Parser, guess_title, section_spans, shortened
from citeqa.indexing.types import Document

log = logging.getLogger(__name__)

# The version of what the loaders make of a file (text, title, date, sections), part of the index's spec:
# an index built by other loaders is re-read and re-embedded whole, since unchanged files would keep
# their old text. 2: Markdown without markup, HTML without navigation, tables by row, PDF wraps joined,
# section paths. 3: a table row closed by a full stop.
LOADER_VERSION = 3

# Bounds for hostile or broken files: a small compressed PDF can expand into gigabytes of text,
# which would then be chunked and embedded. Policy documents are far below these.
MAX_TEXT_CHARS = 10_000_000
MAX_FILE_BYTES = 256 * 1024 * 1024

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
# ISO 2025-03-01, 2025/3/1, British "1 March 2025" / "1st Mar. 2025", American "March 1, 2025".
_DATES = [
    re.compile(r"\b(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})\b"),
    re.compile(r"\b(?P<year>\d{4})/(?P<month>\d{1,2})/(?P<day>\d{1,2})\b"),
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b", re.IGNORECASE),
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.IGNORECASE),
]
# What the date before a label says about the document, best first: when it applies, when it was last
# changed, when it was issued. A date under none of them ranks last, in order of appearance.
_LABELS = [
    re.compile(r"(effective|in force|applies|applicable|valid|commenc\w*|starts?)\b[^\n]{0,20}$", re.I),
    re.compile(r"(last\s+)?(updated|revised|reviewed|modified|amended)\b[^\n]{0,12}$", re.I),
    re.compile(r"(approved|issued?|published|adopted|dated?|version date)\b[^\n]{0,30}$", re.I),
]
# Where a label is not about this document's own date.
_NOT_THE_DATE = re.compile(r"(next|due|expir\w*|until|before|by)\b[^\n]{0,20}$", re.I)


@dataclass(frozen=True)
class LoadProblem:
    """A file that was skipped or could not be parsed, with the reason."""

    path: str
    reason: str


@dataclass(frozen=True)
class LoadedCorpus:
    documents: list[Document]
    problems: list[LoadProblem]


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_date(text: str) -> str | None:
    """The document's date as YYYY-MM-DD: from the opening of the text, the date labelled "Effective
    date" / "Applies from" first, then "Last updated", then "Approved" / "Issued", else the first date."""
    head = text[:3000]
    found: list[tuple[int, int, str]] = []  # (rank, position, date)
    for pattern in _DATES:
        for match in pattern.finditer(head):
            date = _valid_date(match)
            if date is None:
                continue
            line_start = head.rfind("\n", 0, match.start()) + 1
            before = head[max(line_start, match.start() - 40) : match.start()]
            if _NOT_THE_DATE.search(before):
                continue
            rank = next((n for n, label in enumerate(_LABELS) if label.search(before)), len(_LABELS))
            found.append((rank, match.start(), date))
    return min(found)[2] if found else None


def _valid_date(match: re.Match[str]) -> str | None:
    month_text = match.group("month")
    month = int(month_text) if month_text.isdigit() else _MONTHS[month_text.lower()]
    try:
        return datetime.date(int(match.group("year")), month, int(match.group("day"))).isoformat()
    except ValueError:  # 2022-13-45, 31 February
        return None


# A new format: a module with SUFFIXES and `parse` (see common.Parser), added here.
FORMATS = (plain, markdown, html, pdf, docx)
PARSERS: dict[str, Parser] = {suffix: module.parse for module in FORMATS for suffix in module.SUFFIXES}
SUPPORTED_SUFFIXES = tuple(PARSERS)


def is_supported(name: str) -> bool:
    return Path(name).suffix.lower() in PARSERS


def load_bytes(
    data: bytes, doc_id: str, source: str | None = None, max_chars: int = MAX_TEXT_CHARS
) -> Document:
    """Parse one file's bytes; `doc_id` names the document and picks the parser by suffix.

    Every problem with the content, however hostile, is a DocumentLoadError naming `doc_id`.
    """
    suffix = Path(doc_id).suffix.lower()
    parser = PARSERS.get(suffix)
    if parser is None:
        raise DocumentLoadError(f"{doc_id}: unsupported file type {suffix or '(none)'!r}")
    parsed = parser(data, doc_id, max_chars)
    text = parsed.text
    if "\x00" in text:  # from any parser (a PDF's text too): no store may be handed it
        raise DocumentLoadError(f"{doc_id}: the extracted text contains a NUL character")
    if not text.strip():
        raise DocumentLoadError(f"{doc_id}: no text found")
    title = shortened(" ".join(parsed.title.split()), 200) if parsed.title and parsed.title.strip() else ""
    title = title or guess_title(text, fallback=Path(doc_id).name)
    return Document(
        id=doc_id,
        text=text,
        title=title,
        content_hash=content_hash(data),
        date=_stated_date(parsed.date) or find_date(text),
        source=source,
        pages=parsed.pages,
        sections=section_spans(text, parsed.headings, title),
    )


def _stated_date(value: str | None) -> str | None:
    """A date a format states outright (front matter), in any of the forms find_date reads."""
    return find_date(value) if value else None


def load_file(path: Path, root: Path) -> Document:
    doc_id = path.relative_to(root).as_posix()
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DocumentLoadError(f"{doc_id}: file is {size:,} bytes (limit {MAX_FILE_BYTES:,})")
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentLoadError(f"{doc_id}: cannot read ({exc.strerror})") from exc
    return load_bytes(data, doc_id, source=str(path))


_LINKED_FOLDER_INSIDE = "link to a folder inside the corpus"


def _outside_reason(path: Path, real_root: Path) -> str | None:
    """Why `path` may not be indexed as part of the folder `real_root`, or None if it may."""
    try:
        real = path.resolve(strict=True)
        mode = real.stat().st_mode
    except (OSError, RuntimeError):  # a dangling or looping link
        return "broken symbolic link"
    if not real.is_relative_to(real_root):
        return f"symbolic link to {real}, outside the corpus folder"
    if stat.S_ISDIR(mode):
        return _LINKED_FOLDER_INSIDE
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def load_corpus(root: Path) -> LoadedCorpus:
    """Load every supported file under `root`; skipped and broken files are reported, not fatal."""
    documents: list[Document] = []
    problems: list[LoadProblem] = []
    real_root = root.resolve()
    # Links to folders are listed too (rglob does not enter them), so that one out of the folder is reported.
    for path in sorted(p for p in root.rglob("*") if p.is_symlink() or not p.is_dir()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        # A link out of the folder (`ln -s /etc/passwd corpus/x.txt`) must not publish what it points at.
        outside = _outside_reason(path, real_root)
        if outside == _LINKED_FOLDER_INSIDE:
            continue  # its files are listed under their real path
        if outside:
            log.warning("skipping %s: %s", rel, outside)
            problems.append(LoadProblem(rel, outside))
            continue
        if not is_supported(path.name):
            log.warning("skipping %s: unsupported file type", rel)
            problems.append(LoadProblem(rel, "unsupported file type"))
            continue
        try:
            documents.append(load_file(path, root))
        except DocumentLoadError as exc:
            log.warning("could not load %s", exc)
            problems.append(LoadProblem(rel, str(exc).removeprefix(f"{rel}: ")))  # the path is said once
    return LoadedCorpus(documents=documents, problems=problems)
