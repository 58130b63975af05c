"""HTML: the page's content as a reader sees it, without its navigation and boilerplate.

- Left out: scripts, styles, the head; navigation, site headers and footers, sidebars, forms, breadcrumbs,
  cookie banners and link bars ("Home | Policies | Contact"); with a <main> (or one <article>), only it.
- A block (paragraph, list item, heading, cell...) is one line with its whitespace collapsed, so inline
  tags (<a>, <strong>) and source line breaks never cut a sentence.
- Each table row is one line of "header: value" pairs (`table_row`), so an answer never runs across rows.
- Headings h1-h6 give the section paths; the title is the first <h1>, else <title>.

BeautifulSoup with rules rather than a boilerplate extractor (trafilatura, readability): policy pages are
mostly content, and those tools drop tables and short sections, or keep nothing of a page they score as
boilerplate, which an index must not do silently."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders.common import (
    Heading,
    Parsed,
    assemble_blocks,
    decode_text,
    table_row,
    too_long,
)

if TYPE_CHECKING:
    from bs4 import BeautifulSoup, Tag

SUFFIXES = (".html", ".htm")

_HIDDEN = ["script", "style", "noscript", "template", "head", "svg", "iframe", "object", "canvas"]
_CHROME = ["nav", "footer", "aside", "form", "button", "select", "input", "textarea", "dialog", "menu"]
_CHROME_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar"}
# Class or id words of page furniture (matched as whole words of the attribute, `site-footer` included).
_CHROME_NAMES = re.compile(
    r"(?:^|[-_\s])(nav|navbar|navigation|menu|breadcrumbs?|footer|sidebar|cookies?|banner|skip|share|"
    r"social|toolbar|pagination|pager|masthead|topbar|site-header)(?:$|[-_\s])",
    re.IGNORECASE,
)
_BLOCKS = frozenset(
    {
        *("p", "div", "section", "article", "main", "header", "li", "dt", "dd", "ul", "ol", "dl"),
        *("blockquote", "pre", "address", "figure", "figcaption", "caption", "details", "summary", "center"),
        *("table", "tr", "td", "th", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6"),
    }
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
# Link bars: short blocks that are mostly link text, with separators ("Home | Policies | Contact").
_LINK_BAR_MAX_CHARS = 200
_LINK_BAR_SHARE = 0.7


def parse(data: bytes, doc_id: str, max_chars: int) -> Parsed:
    from bs4 import BeautifulSoup

    markup = decode_text(data, doc_id)
    try:
        soup = BeautifulSoup(markup, "html.parser")
        page_title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
        root = _content_root(soup)
        blocks = _Blocks()
        blocks.walk(root)
        text, headings = blocks.assemble()
    except Exception as exc:  # a parser bug on hostile markup must not escape as a crash
        raise DocumentLoadError(f"{doc_id}: cannot parse HTML ({type(exc).__name__})") from exc
    if len(text) > max_chars:
        raise too_long(doc_id, max_chars)
    first_h1 = next((h.text for h in headings if h.level == 1), None)
    return Parsed(text=text, title=first_h1 or page_title or None, headings=tuple(headings))


def _content_root(soup: BeautifulSoup) -> Tag:
    for hidden in soup(_HIDDEN):
        hidden.decompose()
    for chrome in soup(_CHROME):
        chrome.decompose()
    # Chosen first, removed after: bs4's `decomposed` on a Tag searches its subtree (quadratic here).
    for element in [e for e in soup.find_all(True) if e.attrs is not None and _is_chrome(e)]:
        element.decompose()
    main: Tag | None = soup.find("main") or soup.find(role="main")
    articles = soup.find_all("article")
    if main is None and len(articles) == 1:
        main = articles[0]
    return main or soup.body or soup


def _is_chrome(element: Tag) -> bool:
    if element.get("role") in _CHROME_ROLES or element.get("aria-hidden") == "true":
        return True
    if element.has_attr("hidden"):
        return True
    classes: Any = element.get("class")
    words = [str(c) for c in classes] if isinstance(classes, list) else [str(classes or "")]
    names = " ".join([*words, str(element.get("id", ""))])
    if names and _CHROME_NAMES.search(names) and element.name not in ("main", "article", "body", "html"):
        return not element.find(["h1", "main", "article"])
    # A site header (logo and menu); a header that holds the page's heading is content.
    return element.name == "header" and not element.find(["h1", "h2", "h3"])


class _Blocks:
    """Collects the text of block elements as lines (headings and table rows marked). The walk keeps its
    own stack: a page of 20,000 nested <div>s must load, not overflow Python's."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, int, str]] = []  # (kind, heading level, text)
        self._inline: list[str] = []
        self._links = 0  # <a> elements in the line being collected
        self._link_letters = 0  # letters and digits inside them
        self._link_depth = 0

    def flush(self) -> None:
        text = " ".join("".join(self._inline).split())
        links, link_letters = self._links, self._link_letters
        self._inline, self._links, self._link_letters = [], 0, 0
        if not text:
            return
        letters = sum(ch.isalnum() for ch in text)
        if links >= 2 and len(text) <= _LINK_BAR_MAX_CHARS and link_letters >= _LINK_BAR_SHARE * letters:
            return  # a bar of links ("Home | Policies | Contact"): navigation, not content
        self.lines.append(("text", 0, text))

    def walk(self, root: Tag) -> None:
        from bs4 import NavigableString, Tag
        from bs4.element import Comment, Doctype, ProcessingInstruction

        stack: list[tuple[Tag, Iterator[Any], bool]] = [(root, iter(list(root.children)), False)]
        while stack:
            node, children, block = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                if block:
                    self.flush()
                if node.name == "a":
                    self._link_depth -= 1
                continue
            if isinstance(child, (Comment, Doctype, ProcessingInstruction)):
                continue
            if isinstance(child, NavigableString):
                self._inline.append(str(child))
                if self._link_depth:
                    self._link_letters += sum(ch.isalnum() for ch in child)
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name
            if name in _HEADINGS:
                self.flush()
                text = " ".join(child.get_text(" ").split())
                if text:
                    self.lines.append(("heading", _HEADINGS[name], text))
            elif name == "table":
                self.flush()
                self._table(child)
            elif name == "pre":
                self.flush()
                for line in child.get_text().splitlines():
                    if line.strip():
                        self.lines.append(("text", 0, line.rstrip()))
            else:
                if name in _BLOCKS:
                    self.flush()
                elif name == "a":
                    self._links += 1
                    self._link_depth += 1
                stack.append((child, iter(list(child.children)), name in _BLOCKS))

    def _table(self, table: Tag) -> None:
        caption = table.find("caption")
        if caption is not None:
            text = " ".join(caption.get_text(" ").split())
            if text:
                self.lines.append(("text", 0, text))
        header: list[str] = []
        for row in table.find_all("tr"):
            if row.find_parent("table") is not table:
                continue  # a nested table's rows are read with their own table
            cells = row.find_all(["th", "td"], recursive=False)
            texts = [" ".join(c.get_text(" ").split()) for c in cells]
            if not any(texts):
                continue
            if not header and all(c.name == "th" for c in cells):
                header = texts
                continue
            self.lines.append(("row", 0, table_row(header, texts)))

    def assemble(self) -> tuple[str, list[Heading]]:
        self.flush()
        # A blank line before a heading, so sections stand apart; a line break otherwise.
        return assemble_blocks(self.lines, lambda _, kind: "\n\n" if kind == "heading" else "\n")
