"""Turn files into Documents: one module per format (plain.py: plain text and Markdown, html.py: visible
text, pdf.py: text per page), each with its SUFFIXES and a `parse`, registered once in FORMATS below."""

from __future__ import annotations

import hashlib
import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders import html, pdf, plain
from citeqa.indexing.ingest.loaders.common import Parser
from citeqa.indexing.types import Document

log = logging.getLogger(__name__)

# Bounds for hostile or broken files: a small compressed PDF can expand into gigabytes of text,
# which would then be chunked and embedded. Policy documents are far below these.
MAX_TEXT_CHARS = 10_000_000
MAX_FILE_BYTES = 256 * 1024 * 1024

_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_SLASH_DATE = re.compile(r"\b(\d{4})/(\d{1,2})/(\d{1,2})\b")
_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_WORDY_DATE = re.compile(r"\b(" + "|".join(m.capitalize() for m in _MONTHS) + r")\s+(\d{1,2}),\s+(\d{4})\b")


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
    """The first date the opening of the text gives, as YYYY-MM-DD."""
    head = text[:2000]
    candidates: list[tuple[int, str]] = []
    for match in _ISO_DATE.finditer(head):
        year, month, day = match.groups()
        if 1 <= int(month) <= 12 and 1 <= int(day) <= 31:
            candidates.append((match.start(), f"{year}-{month}-{day}"))
            break
    for match in _SLASH_DATE.finditer(head):
        year, month, day = match.groups()
        if 1 <= int(month) <= 12 and 1 <= int(day) <= 31:
            candidates.append((match.start(), f"{year}-{int(month):02d}-{int(day):02d}"))
            break
    for match in _WORDY_DATE.finditer(head):
        month_name, day, year = match.groups()
        month = _MONTHS.index(month_name.lower()) + 1
        candidates.append((match.start(), f"{year}-{month:02d}-{int(day):02d}"))
        break
    return min(candidates)[1] if candidates else None


def first_line_title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        stripped = line.strip().lstrip("#").strip()
        if stripped:
            return _shortened(stripped, 200)
    return fallback


def _shortened(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a word boundary, marked with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    words = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return words.rstrip(" ,;:-") + "…"


# A new format: a module with SUFFIXES and `parse` (see common.Parser), added here.
FORMATS = (plain, html, pdf)
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
    text, title, pages = parser(data, doc_id, max_chars)
    if "\x00" in text:  # from any parser (a PDF's text too): no store may be handed it
        raise DocumentLoadError(f"{doc_id}: the extracted text contains a NUL character")
    if not text.strip():
        raise DocumentLoadError(f"{doc_id}: no text found")
    return Document(
        id=doc_id,
        text=text,
        title=title or first_line_title(text, fallback=Path(doc_id).name),
        content_hash=content_hash(data),
        date=find_date(text),
        source=source,
        pages=pages,
    )


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
            problems.append(LoadProblem(rel, str(exc)))
    return LoadedCorpus(documents=documents, problems=problems)
