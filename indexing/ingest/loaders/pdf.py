"""PDF: the text of each page, pages joined by a blank line, with each page's character span."""

from __future__ import annotations

import io
import time

from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders.common import Parsed, tidy_lines, too_long
from citeqa.indexing.types import PageSpan

SUFFIXES = (".pdf",)
MAX_PDF_PAGES = 5000
MAX_PDF_SECONDS = 120.0


def parse(data: bytes, doc_id: str, max_chars: int) -> Parsed:
    from pypdf import PdfReader

    started = time.monotonic()
    try:
        reader = PdfReader(io.BytesIO(data))
        if len(reader.pages) > MAX_PDF_PAGES:
            raise DocumentLoadError(f"{doc_id}: PDF has {len(reader.pages)} pages (limit {MAX_PDF_PAGES})")
        parts: list[str] = []
        pages: list[PageSpan] = []
        offset = 0
        for number, page in enumerate(reader.pages, start=1):
            page_text = tidy_lines(page.extract_text() or "")
            if parts:
                offset += 2  # the "\n\n" that joins pages
            pages.append(PageSpan(number=number, start=offset, end=offset + len(page_text)))
            parts.append(page_text)
            offset += len(page_text)
            if offset > max_chars:
                raise too_long(doc_id, max_chars)
            if time.monotonic() - started > MAX_PDF_SECONDS:
                raise DocumentLoadError(f"{doc_id}: PDF text extraction took over {MAX_PDF_SECONDS:.0f}s")
        meta_title = reader.metadata.title if reader.metadata else None
    except DocumentLoadError:
        raise
    except Exception as exc:
        # pypdf signals bad input with many exception types (PdfReadError, LimitReachedError on
        # decompression bombs, KeyError, struct.error, RecursionError...): all mean "unreadable".
        detail = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise DocumentLoadError(f"{doc_id}: cannot parse PDF ({type(exc).__name__}: {detail})") from exc
    return "\n\n".join(parts), (str(meta_title).strip() or None) if meta_title else None, tuple(pages)
