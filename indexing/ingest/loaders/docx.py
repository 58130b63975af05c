"""Word (.docx, .docm): the paragraphs, headings, lists, tables and notes in reading order, read from the
file's XML with the standard library (no Word, no third-party parser; macros are never run).

- A paragraph is one block; a line break in it (Shift+Enter) a line break, a tab a space.
- Headings are paragraphs whose style is a built-in "heading N" or has an outline level, looked up in
  styles.xml, so that a localized Word's style ids ("berschrift1") are read as well; the "Title" style
  is the title (and a top-level heading).
- Numbered and bulleted paragraphs are lines of one block, as Markdown's list items (their numbers are
  Word's numbering, not text, and are not in the text).
- A table's rows are one line each (`table_row`): "header: value" pairs under the rows marked as the header
  ("repeat as header row"), else under the first row; a two-column table without a marked header is read
  as label and value ("Policy owner: HR Director."), which also reads a two-column table with a header
  row right. A cell merged across columns counts for each (a merged header names each column under it; a
  merged value goes under its first column), and one merged down repeats its value in each row.
- Footnotes and endnotes follow the body, in their order.
- Left out: tracked deletions and the old place of moved text, hidden text, field codes, and the fallback
  copy Word keeps of text boxes and shapes. Headers and footers (running page furniture) are not read.
- "Strict Open XML" files and a main part under another name than word/document.xml are read too.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Iterator
from xml.etree import ElementTree

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders.common import (
    Block,
    Parsed,
    assemble_blocks,
    collapse_spaces,
    table_row,
    too_long,
)

SUFFIXES = (".docx", ".docm")

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
# Strict Open XML names the same elements in other namespaces: read as the transitional ones.
_STRICT = {
    b"http://purl.oclc.org/ooxml/wordprocessingml/main": b"http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    b"http://purl.oclc.org/ooxml/officeDocument/relationships": b"http://schemas.openxmlformats.org/officeDocument/2006/relationships",
}
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_RELATIONSHIPS = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
# Not text a reader sees: deleted or moved-away text, field codes, properties, the fallback copy of shapes.
_SKIPPED = {_FALLBACK, f"{_W}del", f"{_W}moveFrom", f"{_W}instrText", f"{_W}pPr", f"{_W}rPr", f"{_W}tblPr"}
# Wrappers whose children are the body's own paragraphs, tables, rows or cells.
_WRAPPERS = {f"{_W}sdt", f"{_W}sdtContent", f"{_W}customXml", f"{_W}smartTag"}
# A hostile file: a zip member that inflates past this, or XML that declares entities (expansion bombs).
MAX_XML_BYTES = 64 * 1024 * 1024
_ENTITIES = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
_HEADING_NAME = re.compile(r"heading ([1-9])")
TITLE_LEVEL = 0  # the style map's level for "Title"
_MAIN_PART = "word/document.xml"


def parse(data: bytes, doc_id: str, max_chars: int) -> Parsed:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            main = _main_part(archive, doc_id)
            body = _xml(archive, main, doc_id)
            styles = _optional(archive, posixpath.join(posixpath.dirname(main), "styles.xml"), doc_id)
            notes = [
                _optional(archive, posixpath.join(posixpath.dirname(main), name), doc_id)
                for name in ("footnotes.xml", "endnotes.xml")
            ]
    except zipfile.BadZipFile as exc:
        raise DocumentLoadError(
            f"{doc_id}: cannot parse DOCX (not a zip file: an old .doc, or encrypted?)"
        ) from exc
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError) as exc:
        raise DocumentLoadError(f"{doc_id}: cannot parse DOCX ({type(exc).__name__})") from exc
    levels, lists = _styles(styles)
    root = body.find(f"{_W}body")
    blocks: list[Block] = []
    title = None
    for kind, level, text in _blocks(root if root is not None else body, levels, lists):
        if kind == "heading" and level == TITLE_LEVEL:
            title, level = title or text, 1
        blocks.append((kind, level, text))
    for part in notes:
        blocks.extend(_notes(part))
    text, headings = assemble_blocks(blocks)
    if len(text) > max_chars:
        raise too_long(doc_id, max_chars)
    first = min(headings, key=lambda h: (h.level, h.offset), default=None)
    return Parsed(text=text, title=title or (first.text if first else None), headings=tuple(headings))


def _main_part(archive: zipfile.ZipFile, doc_id: str) -> str:
    """The document's main part, as the package's relationships name it (Word Online may write
    word/document2.xml); word/document.xml when they do not say."""
    if "_rels/.rels" in archive.NameToInfo:
        for relation in _xml(archive, "_rels/.rels", doc_id).iter(_RELATIONSHIPS):
            if relation.get("Type", "").endswith("/officeDocument"):
                target = relation.get("Target", "").lstrip("/")
                if target in archive.NameToInfo:
                    return target
    return _MAIN_PART


def _optional(archive: zipfile.ZipFile, name: str, doc_id: str) -> ElementTree.Element | None:
    return _xml(archive, name, doc_id) if name in archive.NameToInfo else None


def _xml(archive: zipfile.ZipFile, name: str, doc_id: str) -> ElementTree.Element:
    if name not in archive.NameToInfo:
        raise DocumentLoadError(f"{doc_id}: not a Word document (no {name})")
    if archive.getinfo(name).file_size > MAX_XML_BYTES:
        raise DocumentLoadError(f"{doc_id}: {name} inflates past {MAX_XML_BYTES:,} bytes")
    with archive.open(name) as member:
        data = member.read(MAX_XML_BYTES + 1)  # the size in the header can lie
    if len(data) > MAX_XML_BYTES:
        raise DocumentLoadError(f"{doc_id}: {name} inflates past {MAX_XML_BYTES:,} bytes")
    if _ENTITIES.search(data[:4096]):
        raise DocumentLoadError(f"{doc_id}: {name} declares entities; not a Word document")
    for strict, transitional in _STRICT.items():
        data = data.replace(strict, transitional)
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
        outline = _outline_level(style)
        if style_id is None:
            continue
        if style.find(f"{_W}pPr/{_W}numPr") is not None or name.startswith("list "):
            lists.add(style_id)
        if name == "title":
            levels[style_id] = TITLE_LEVEL
        elif match := _HEADING_NAME.fullmatch(name):
            levels[style_id] = int(match.group(1))
        elif outline is not None:
            levels[style_id] = outline
    return levels, lists


def _outline_level(element: ElementTree.Element) -> int | None:
    """The heading level an outline level in a style's or paragraph's properties gives (Word's 0-8; 9 is
    body text), or None."""
    outline = element.find(f"{_W}pPr/{_W}outlineLvl")
    value = outline.get(f"{_W}val", "") if outline is not None else ""
    return int(value) + 1 if value.isdigit() and int(value) < 9 else None


def _children(element: ElementTree.Element, tag: str) -> Iterator[ElementTree.Element]:
    """`element`'s children of `tag`, looking inside content controls and custom XML that wrap them."""
    for child in element:
        if child.tag == tag:
            yield child
        elif child.tag in _WRAPPERS:
            yield from _children(child, tag)


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
        elif element.tag in _WRAPPERS:
            yield from _blocks(element, levels, lists)


def _notes(part: ElementTree.Element | None) -> Iterator[Block]:
    """Footnotes or endnotes, each a block (not the separator lines Word keeps among them)."""
    for note in [] if part is None else part:
        if note.get(f"{_W}type") in (None, "normal"):
            text = " ".join(_text(p) for p in _children(note, f"{_W}p")).strip()
            if text:
                yield "text", 0, text


def _style(paragraph: ElementTree.Element) -> str:
    style = paragraph.find(f"{_W}pPr/{_W}pStyle")
    return (style.get(f"{_W}val") or "") if style is not None else ""


def _paragraph_level(paragraph: ElementTree.Element, levels: dict[str, int]) -> int | None:
    """The paragraph's heading level by its style, or by an outline level set on it; None: not a heading."""
    level = levels.get(_style(paragraph))
    return _outline_level(paragraph) if level is None else level


def _text(element: ElementTree.Element) -> str:
    """The element's visible text: runs' text, tabs as spaces, line breaks kept; whitespace collapsed."""
    parts: list[str] = []
    _collect(element, parts)
    return collapse_spaces("".join(parts))


def _collect(element: ElementTree.Element, parts: list[str]) -> None:
    for child in element:
        tag = child.tag
        if tag == f"{_W}t":
            parts.append(child.text or "")
        elif tag in (f"{_W}tab", f"{_W}noBreakHyphen"):
            parts.append(" " if tag == f"{_W}tab" else "-")
        elif tag in (f"{_W}br", f"{_W}cr"):
            parts.append("\n")
        elif tag == f"{_W}p":  # a paragraph inside a text box or a table cell: words apart from its own
            parts.append(" ")
            _collect(child, parts)
            parts.append(" ")
        elif tag == f"{_W}r" and child.find(f"{_W}rPr/{_W}vanish") is not None:
            continue  # hidden text
        elif tag not in _SKIPPED:
            _collect(child, parts)


def _table(table: ElementTree.Element) -> Iterator[Block]:
    rows = list(_children(table, f"{_W}tr"))
    grid = _grid([_cells(row) for row in rows])
    marked = [n for n, row in enumerate(rows) if row.find(f"{_W}trPr/{_W}tblHeader") is not None]
    columns = max((len(row) for row in grid), default=0)
    header: list[str] = []
    if not marked and columns != 2 and len(grid) > 1:
        marked = [0]
    if marked:  # a header cell spanning columns names each of them
        header = [" ".join(dict.fromkeys(grid[n][i][0] for n in marked if i < len(grid[n]))).strip()
                  for i in range(columns)]  # fmt: skip
    content = False
    for n, row in enumerate(grid):
        values = ["" if spanned else text for text, spanned in row]  # a merged value under its first column
        if n in marked or not any(values):
            continue
        content = True
        if header:
            yield "row", 0, table_row(header, values)
        elif columns == 2:  # a label and its value (or a two-column table with an unmarked header row)
            yield "row", 0, table_row(values[:1], values[1:2])
        else:
            yield "row", 0, table_row([], values)
    if header and not content:  # only a header: its cells are the content
        yield "row", 0, table_row([], header)


# A row's cells: text, how many grid columns it spans, and whether it continues a cell merged down.
Cell = tuple[str, int, bool]


def _cells(row: ElementTree.Element) -> list[Cell]:
    cells = []
    for cell in _children(row, f"{_W}tc"):
        span = cell.find(f"{_W}tcPr/{_W}gridSpan")
        merge = cell.find(f"{_W}tcPr/{_W}vMerge")
        value = span.get(f"{_W}val", "") if span is not None else ""
        columns = min(int(value), 63) if value.isdigit() and int(value) > 0 else 1
        continues = merge is not None and merge.get(f"{_W}val", "continue") != "restart"
        cells.append((" ".join(_text(cell).split()), columns, continues))
    return cells


def _grid(rows: list[list[Cell]]) -> list[list[tuple[str, bool]]]:
    """Each row as one (text, spanned) per grid column: a cell spanning columns fills each (`spanned` for
    all but its first), and one merged down takes the text above it."""
    grid: list[list[tuple[str, bool]]] = []
    for cells in rows:
        row: list[tuple[str, bool]] = []
        for text, columns, continues in cells:
            if continues:
                above = grid[-1][len(row)][0] if grid and len(row) < len(grid[-1]) else ""
                text = above
            row.extend([(text, False)] + [(text, True)] * (columns - 1))
        grid.append(row)
    return grid
