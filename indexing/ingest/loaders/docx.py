"""Word (.docx): the paragraphs, headings, lists and tables in reading order, read from the file's XML with
the standard library (no Word, no third-party parser).

- A paragraph is one block; a line break in it (Shift+Enter) a line break, a tab a space.
- Headings are paragraphs whose style is a built-in "heading N" or has an outline level, looked up in
  styles.xml, so that a localized Word's style ids ("berschrift1") are read as well; the "Title" style
  is the title (and a top-level heading).
- Numbered and bulleted paragraphs are lines of one block, as Markdown's list items (their numbers are
  Word's numbering, not text, and are not in the text).
- A table's rows are one line each of "header: value" pairs (`table_row`), its first row the header.
- Left out: tracked deletions, field codes, and the fallback copy Word keeps of text boxes and shapes.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from xml.etree import ElementTree

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders.common import Block, Parsed, assemble_blocks, table_row, too_long

SUFFIXES = (".docx",)

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
# A hostile file: a zip member that inflates past this, or XML that declares entities (expansion bombs).
MAX_XML_BYTES = 64 * 1024 * 1024
_ENTITIES = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
_HEADING_NAME = re.compile(r"heading ([1-9])")
TITLE_LEVEL = 0  # the style map's level for "Title"


def parse(data: bytes, doc_id: str, max_chars: int) -> Parsed:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            body = _xml(archive, "word/document.xml", doc_id)
            styles = _xml(archive, "word/styles.xml", doc_id) if _has(archive, "word/styles.xml") else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError) as exc:
        raise DocumentLoadError(f"{doc_id}: cannot parse DOCX ({type(exc).__name__})") from exc
    levels, lists = _styles(styles)
    root = body.find(f"{_W}body")
    blocks: list[Block] = []
    title = None
    for kind, level, text in _blocks(root if root is not None else body, levels, lists):
        if kind == "heading" and level == TITLE_LEVEL:
            title, level = title or text, 1
        blocks.append((kind, level, text))
    text, headings = assemble_blocks(blocks)
    if len(text) > max_chars:
        raise too_long(doc_id, max_chars)
    first = min(headings, key=lambda h: (h.level, h.offset), default=None)
    return Parsed(text=text, title=title or (first.text if first else None), headings=tuple(headings))


def _has(archive: zipfile.ZipFile, name: str) -> bool:
    return name in archive.NameToInfo


def _xml(archive: zipfile.ZipFile, name: str, doc_id: str) -> ElementTree.Element:
    if not _has(archive, name):
        raise DocumentLoadError(f"{doc_id}: not a Word document (no {name})")
    if archive.getinfo(name).file_size > MAX_XML_BYTES:
        raise DocumentLoadError(f"{doc_id}: {name} inflates past {MAX_XML_BYTES:,} bytes")
    with archive.open(name) as member:
        data = member.read(MAX_XML_BYTES + 1)  # the size in the header can lie
    if len(data) > MAX_XML_BYTES:
        raise DocumentLoadError(f"{doc_id}: {name} inflates past {MAX_XML_BYTES:,} bytes")
    if _ENTITIES.search(data[:4096]):
        raise DocumentLoadError(f"{doc_id}: {name} declares entities; not a Word document")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise DocumentLoadError(f"{doc_id}: cannot parse DOCX ({name}: {exc})") from exc


def _styles(styles: ElementTree.Element | None) -> tuple[dict[str, int], set[str]]:
    """Paragraph style id -> heading level (TITLE_LEVEL for the title), from the styles' built-in names
    ("heading 2", the same in every language) or outline levels; and the ids of list styles (numbered by
    the style, as "List Bullet" is)."""
    levels: dict[str, int] = {}
    lists: set[str] = set()
    for style in [] if styles is None else styles.iter(f"{_W}style"):
        style_id = style.get(f"{_W}styleId")
        name_element = style.find(f"{_W}name")
        name = (name_element.get(f"{_W}val") or "").lower() if name_element is not None else ""
        outline = style.find(f"{_W}pPr/{_W}outlineLvl")
        if style_id is None:
            continue
        if style.find(f"{_W}pPr/{_W}numPr") is not None or name.startswith("list "):
            lists.add(style_id)
        if name == "title":
            levels[style_id] = TITLE_LEVEL
        elif match := _HEADING_NAME.fullmatch(name):
            levels[style_id] = int(match.group(1))
        elif outline is not None and (value := outline.get(f"{_W}val", "")).isdigit() and int(value) < 9:
            levels[style_id] = int(value) + 1
    return levels, lists


def _blocks(container: ElementTree.Element, levels: dict[str, int], lists: set[str]) -> Iterator[Block]:
    for element in container:
        if element.tag == f"{_W}p":
            text = _text(element)
            level = _paragraph_level(element, levels)
            if not text:
                continue
            if level is not None:
                yield "heading", level, text
            elif element.find(f"{_W}pPr/{_W}numPr") is not None or _style(element) in lists:
                yield "item", 0, text
            else:
                yield "text", 0, text
        elif element.tag == f"{_W}tbl":
            yield from _table(element)
        elif element.tag == f"{_W}sdt":  # a content control: its content is part of the body
            content = element.find(f"{_W}sdtContent")
            if content is not None:
                yield from _blocks(content, levels, lists)


def _style(paragraph: ElementTree.Element) -> str:
    style = paragraph.find(f"{_W}pPr/{_W}pStyle")
    return (style.get(f"{_W}val") or "") if style is not None else ""


def _paragraph_level(paragraph: ElementTree.Element, levels: dict[str, int]) -> int | None:
    """The paragraph's heading level by its style, or by an outline level set on it; None: not a heading."""
    level = levels.get(_style(paragraph))
    outline = paragraph.find(f"{_W}pPr/{_W}outlineLvl")
    if level is None and outline is not None and (value := outline.get(f"{_W}val", "")).isdigit():
        level = int(value) + 1 if int(value) < 9 else None
    return level


def _text(element: ElementTree.Element) -> str:
    """The element's visible text: runs' text, tabs as spaces, line breaks kept; whitespace collapsed."""
    parts: list[str] = []
    _collect(element, parts)
    return "\n".join(" ".join(line.split()) for line in "".join(parts).split("\n")).strip()


def _collect(element: ElementTree.Element, parts: list[str]) -> None:
    for child in element:
        tag = child.tag
        if tag == f"{_W}t":
            parts.append(child.text or "")
        elif tag in (f"{_W}tab", f"{_W}noBreakHyphen"):
            parts.append(" " if tag == f"{_W}tab" else "-")
        elif tag in (f"{_W}br", f"{_W}cr"):
            parts.append("\n")
        elif tag == f"{_W}p":  # a paragraph inside a text box or a table cell
            parts.append(" ")
            _collect(child, parts)
        elif tag not in (_FALLBACK, f"{_W}del", f"{_W}instrText", f"{_W}pPr", f"{_W}rPr"):
            _collect(child, parts)


def _table(table: ElementTree.Element) -> Iterator[Block]:
    header: list[str] = []
    for n, row in enumerate(table.findall(f"{_W}tr")):
        cells = [" ".join(_text(cell).split()) for cell in row.findall(f"{_W}tc")]
        if not any(cells):
            continue
        if n == 0:
            header = cells
            continue
        yield "row", 0, table_row(header, cells)
    if header and len(table.findall(f"{_W}tr")) == 1:  # a one-row table: its cells are content
        yield "row", 0, table_row([], header)
