"""Markdown: the text a reader sees, without the markup (no `#`, `**`, list markers or table pipes), its
headings as section paths, and each table row as one line of "header: value" pairs closed by a full stop.

Parsed with markdown-it-py (CommonMark, plus GFM tables and strikethrough). A paragraph's source line
breaks are joined with a space, so a sentence wrapped in the file stays one sentence. YAML front matter
gives the title and date when it names them, and is not part of the text."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders.common import (
    Block,
    Parsed,
    assemble_blocks,
    collapse_spaces,
    decode_text,
    table_row,
    too_long,
)

if TYPE_CHECKING:
    from markdown_it.token import Token

SUFFIXES = (".md", ".markdown")

_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")


def parse(data: bytes, doc_id: str, max_chars: int) -> Parsed:
    source = decode_text(data, doc_id)
    if len(source) > max_chars:
        raise too_long(doc_id, max_chars)
    meta, body = _front_matter(source)
    try:
        blocks = _blocks(body)
    except RecursionError as exc:  # deeply nested lists or quotes in a hostile file
        raise DocumentLoadError(f"{doc_id}: cannot parse Markdown (nested too deeply)") from exc
    text, headings = assemble_blocks(blocks)
    if len(text) > max_chars:
        raise too_long(doc_id, max_chars)
    first = min(headings, key=lambda h: (h.level, h.offset), default=None)
    title = meta.get("title") or (first.text if first is not None else None)
    date = meta.get("date") or meta.get("effective_date") or meta.get("last_updated")
    return Parsed(text=text, title=title or None, headings=tuple(headings), date=date)


def _front_matter(source: str) -> tuple[dict[str, str], str]:
    """Simple `key: value` lines of a leading YAML block (lower-case keys), and the text after it."""
    match = _FRONT_MATTER.match(source)
    if match is None:
        return {}, source
    meta: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            meta[key.strip().lower().replace(" ", "_").replace("-", "_")] = value.strip().strip("'\"")
    return meta, source[match.end() :]


def _blocks(source: str) -> list[Block]:
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(source)
    blocks: list[Block] = []
    header: list[str] = []
    row: list[str] | None = None
    in_head = False
    for i, token in enumerate(tokens):
        kind = token.type
        if kind == "heading_open":
            blocks.append(("heading", int(token.tag[1]), _inline(tokens[i + 1])))
        elif kind == "inline" and tokens[i - 1].type == "paragraph_open" and row is None:
            # A tight list's items are hidden paragraphs: one line each, without their markers.
            blocks.append(("item" if tokens[i - 1].hidden else "text", 0, _inline(token)))
        elif kind in ("fence", "code_block"):
            blocks.append(("text", 0, token.content.rstrip("\n")))
        elif kind == "html_block":
            stripped = " ".join(_HTML_TAG.sub(" ", token.content).split())
            if stripped:
                blocks.append(("text", 0, stripped))
        elif kind == "thead_open":
            in_head, header = True, []
        elif kind == "thead_close":
            in_head = False
        elif kind == "tr_open":
            row = []
        elif kind in ("th_open", "td_open") and row is not None:
            row.append(_inline(tokens[i + 1]))
        elif kind == "tr_close" and row is not None:
            if in_head:
                header = row
            else:
                blocks.append(("row", 0, table_row(header, row)))
            row = None
        elif kind == "table_close":
            header = []
    return blocks


def _inline(token: Token) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")  # a line wrapped in the source: the sentence goes on
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content)  # its alt text
    return collapse_spaces("".join(parts))
