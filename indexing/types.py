"""The data types shared by indexing, the service and the evaluation harness."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PageSpan:
    """Where one PDF page lies in its document's text."""

    number: int
    start: int
    end: int


@dataclass(frozen=True)
class SectionSpan:
    """Where one section lies in its document's text, and its path of headings, outermost first
    (("2. Retention periods", "2.1 Financial records")). The heading line belongs to the section it opens."""

    start: int
    end: int
    path: tuple[str, ...]


@dataclass(frozen=True)
class Document:
    """A loaded document. `text` is kept exactly as loaded: every offset points into it."""

    id: str
    text: str
    title: str
    content_hash: str
    date: str | None = None
    source: str | None = None
    pages: tuple[PageSpan, ...] = ()
    sections: tuple[SectionSpan, ...] = ()  # in text order, not overlapping; text before the first: none

    def page_at(self, offset: int) -> int | None:
        for page in self.pages:
            if page.start <= offset < page.end:
                return page.number
        return None

    def section_at(self, offset: int) -> tuple[str, ...]:
        """The heading path of the section holding `offset`; () outside every section."""
        for section in self.sections:
            if section.start <= offset < section.end:
                return section.path
        return ()


@dataclass(frozen=True)
class Chunk:
    """A contiguous piece of a document: `document.text[start:end] == text`."""

    id: str
    doc_id: str
    seq: int
    start: int
    end: int
    text: str
    section: tuple[str, ...] = ()  # the heading path of the section the chunk lies in (see SectionSpan)


@dataclass(frozen=True)
class DocumentInfo:
    """A document's metadata without its text."""

    id: str
    title: str
    date: str | None
    content_hash: str
    chunk_count: int
    length: int
    source: str | None = None
    pages: tuple[PageSpan, ...] = field(default=())
