"""What the loaders make of real company documents (issue 19): sentences whole across PDF line wraps, no
Markdown markup or HTML navigation in passages, table rows kept as rows, the document's own date and
title, and the section path of every passage, carried to the citation and through both stores."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from citeqa.indexing.ingest.chunking import Chunker, ChunkingConfig, sentence_spans
from citeqa.indexing.ingest.loaders import SUPPORTED_SUFFIXES, find_date, load_bytes
from citeqa.indexing.ingest.loaders.common import table_row
from citeqa.indexing.store import IndexSpec, LocalStore
from citeqa.indexing.store.base import DocumentUpdate
from citeqa.indexing.types import Chunk, Document, SectionSpan
from citeqa.service.qa.answering import AnswerAggregator, AnsweringConfig
from citeqa.service.qa.reader import SpanCandidate
from citeqa.service.qa.types import Passage
from citeqa.service.wire import answer_out
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from tests.fakes import WordTokenizer

# --- PDF ---------------------------------------------------------------------------------------


def _pdf(pages: list[list[str]], title: str | None = None, outline: list[tuple[int, str, int]] = ()) -> bytes:
    """A PDF whose pages draw the given lines top to bottom (as a word processor wraps a paragraph);
    `outline`: (level, title, page index) bookmarks."""
    writer = PdfWriter()
    for lines in pages:
        page = writer.add_blank_page(width=612, height=792)
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
        )
        drawn = "".join(f"1 0 0 1 72 {740 - 14 * n} Tm ({line}) Tj " for n, line in enumerate(lines))
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 10 Tf {drawn}ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    parents: dict[int, object] = {}
    for level, text, index in outline:
        parents[level] = writer.add_outline_item(title=text, page_number=index, parent=parents.get(level - 1))
    if title:
        writer.add_metadata({"/Title": title})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


RETENTION_PAGE_1 = [
    "HARBOURSIDE LOGISTICS LTD",
    "Data Retention Schedule",
    "2. Retention periods",
    "2.1 Financial records",
    "Accounting records, including ledgers, invoices, receipts and bank statements, are kept for",
    "six years after the end of the financial year to which they relate. The financial year ends on 31",
    "March. Expense claims are kept for the same period.",
    "2.2 Employee records",
    "Personnel files are kept for six years after employment ends. Records of pension contributions are",
    "kept for 12 years after the employee leaves.",
]
RETENTION_PAGE_2 = [
    "Harbourside Logistics Ltd - Data Retention Schedule",
    "2.3 Health and safety records",
    "Accident book entries are kept for three years from the date of the incident. Risk assessments are",
    "kept for three years after they are superseded.",
    "Page 2 of 3",
]
RETENTION_PAGE_3 = [
    "Harbourside Logistics Ltd - Data Retention Schedule",
    "2.4 Customer records",
    "Customer contracts are kept for six years after the contract ends.",
    "Page 3 of 3",
]


def _sentence_holding(doc: Document, phrase: str) -> str:
    at = doc.text.index(phrase)
    return next(doc.text[s:e] for s, e in sentence_spans(doc.text) if s <= at < e)


def test_pdf_line_wraps_are_joined_so_a_cited_sentence_is_whole() -> None:
    pdf = _pdf([RETENTION_PAGE_1, RETENTION_PAGE_2, RETENTION_PAGE_3], title="Microsoft Word - IG03.docx")
    doc = load_bytes(pdf, "retention.pdf")
    assert _sentence_holding(doc, "six years after the end") == (
        "Accounting records, including ledgers, invoices, receipts and bank statements, are kept for "
        "six years after the end of the financial year to which they relate."
    )
    assert "ends on 31 March." in doc.text  # a wrap between a number and its month
    # Headings keep their own lines; the pages' spans index the joined text exactly.
    assert "\n2.2 Employee records\n" in doc.text
    second = doc.pages[1]
    assert doc.text[second.start : second.end].startswith("2.3 Health and safety records\n")
    assert doc.page_at(doc.text.index("Accident book")) == 2
    # The running header and the page numbers repeated on pages 2 and 3 are not content.
    assert "Data Retention Schedule\n" in doc.text and "Ltd - Data Retention" not in doc.text
    assert "Page 2 of 3" not in doc.text
    # A file name as metadata title gives way to the document's name, not the letterhead.
    assert doc.title == "Data Retention Schedule"


def test_pdf_numbered_headings_give_section_paths() -> None:
    doc = load_bytes(_pdf([RETENTION_PAGE_1, RETENTION_PAGE_2, RETENTION_PAGE_3]), "retention.pdf")
    assert doc.section_at(doc.text.index("Accounting records")) == (
        "2. Retention periods",
        "2.1 Financial records",
    )
    assert doc.section_at(doc.text.index("Personnel files")) == (
        "2. Retention periods",
        "2.2 Employee records",
    )
    assert doc.section_at(doc.text.index("Customer contracts")) == (
        "2. Retention periods",
        "2.4 Customer records",
    )
    # The empty "2." section is no passage of its own: its heading opens 2.1's span.
    assert doc.section_at(doc.text.index("2. Retention periods")) == (
        "2. Retention periods",
        "2.1 Financial records",
    )


def test_pdf_outline_gives_section_paths_when_present() -> None:
    pages = [
        ["Travel Policy", "Scope", "This policy applies to all staff."],
        ["Rail", "Rail is standard class."],
    ]
    outline = [(1, "Scope", 0), (1, "Rail", 1)]
    doc = load_bytes(_pdf(pages, outline=outline), "travel.pdf")
    assert doc.section_at(doc.text.index("This policy")) == ("Scope",)
    assert doc.section_at(doc.text.index("Rail is")) == ("Rail",)


# --- Markdown ----------------------------------------------------------------------------------

HANDBOOK_MD = """---
title: Employee Handbook
---
# Harbourside Logistics Ltd: Employee Handbook

Version 4.1 | Effective date: 1 March 2025 | Owner: Head of People

## 3. Working hours

3.1 Standard **full-time** hours are 37.5 hours per week, *Monday to Friday*,
normally between 9:00am and 5:00pm, with an unpaid [lunch break](https://intra/lunch) of 30 minutes.

- Core hours are `10:00am` to 3:00pm.
- Overtime must be approved in advance.

### 3.2 Leave by service

| Completed years of service | Annual leave (days) |
|---|---|
| Less than 2 years | 25 |
| 5 to 9 years | 27 |

## 4. Pay

Salaried employees are paid on the 25th of each month.
"""


def test_markdown_is_a_supported_format_with_its_own_loader() -> None:
    assert {".md", ".markdown"} <= set(SUPPORTED_SUFFIXES)


def test_markdown_markup_is_not_in_the_text() -> None:
    doc = load_bytes(HANDBOOK_MD.encode(), "handbook.md")
    for markup in ("#", "**", "`", "](", "| 25", "|---", "---", "\n- ", "*Monday"):
        assert markup not in doc.text, markup
    assert not any(line.startswith("|") for line in doc.text.splitlines())  # table pipes
    # A paragraph wrapped in the file is one sentence.
    assert _sentence_holding(doc, "9:00am").startswith("3.1 Standard full-time hours are 37.5 hours")
    assert "with an unpaid lunch break of 30 minutes." in doc.text
    assert "\nCore hours are 10:00am to 3:00pm.\nOvertime must be approved in advance.\n" in doc.text


def test_markdown_title_date_sections_and_table_rows() -> None:
    doc = load_bytes(HANDBOOK_MD.encode(), "handbook.md")
    assert doc.title == "Employee Handbook"  # the front matter's
    assert doc.date == "2025-03-01"
    assert doc.section_at(doc.text.index("Overtime")) == ("3. Working hours",)
    assert doc.section_at(doc.text.index("Salaried")) == ("4. Pay",)
    rows = [line for line in doc.text.splitlines() if line.startswith("Completed years")]
    assert rows == [
        "Completed years of service: Less than 2 years, Annual leave (days): 25.",
        "Completed years of service: 5 to 9 years, Annual leave (days): 27.",
    ]
    assert doc.section_at(doc.text.index(rows[1])) == ("3. Working hours", "3.2 Leave by service")
    # The single top heading is the title, left out of the paths; without front matter it is the title.
    plain = load_bytes(HANDBOOK_MD.split("---\n", 2)[2].encode(), "handbook.md")
    assert plain.title == "Harbourside Logistics Ltd: Employee Handbook"
    assert plain.section_at(plain.text.index("Salaried")) == ("4. Pay",)


# --- HTML --------------------------------------------------------------------------------------

TRAVEL_HTML = """<!DOCTYPE html><html><head><title>Travel and Expenses Policy | Harbourside Logistics</title>
<script>var tracking = 1;</script></head><body>
<header class="site-header"><a class="logo" href="/">Harbourside Logistics</a>
  <nav><a href="/">Home</a> | <a href="/policies/">Policies</a> |
  <a href="/contact/">Contact</a></nav></header>
<div class="links"><a href="/">Home</a> | <a href="/policies/">Policies</a> |
  <a href="/contact/">Contact</a></div>
<main>
 <p class="breadcrumb"><a href="/">Home</a> &gt; <a href="/policies/">Policies</a> &gt; Finance</p>
 <h1>Travel and Expenses Policy</h1>
 <p>Policy reference: FIN-04 &middot; Last updated: 6 January 2025</p>
 <h2>7. Hotels and subsistence</h2>
 <p>Hotels must be booked through <a href="/clarion">Clarion Business
    Travel</a>. The <strong>hotel limit</strong> is the most the Company will pay per night.</p>
 <table>
  <caption>Hotel limits and daily meal allowances</caption>
  <thead><tr><th>City</th><th>Hotel limit per night</th><th>Meal allowance per day</th></tr></thead>
  <tbody>
   <tr><td>London</td><td>£180</td><td>£55</td></tr>
   <tr><td>Manchester</td><td>£120</td><td>£40</td></tr>
  </tbody>
 </table>
 <h3>7.1 Day trips</h3>
 <p>For day trips of more than five hours you may claim up to £10 for lunch.</p>
 <aside>Related: <a href="/x">Expenses FAQ</a></aside>
</main>
<footer>&copy; 2025 Harbourside Logistics | <a href="/privacy">Privacy</a> |
  <a href="/a11y">Accessibility</a></footer>
</body></html>"""


def test_html_navigation_and_boilerplate_are_not_content() -> None:
    doc = load_bytes(TRAVEL_HTML.encode(), "travel.html")
    for chrome in ("Home", "Contact", "Accessibility", "©", "Expenses FAQ", "tracking", "Finance"):
        assert chrome not in doc.text, chrome
    assert doc.text.startswith("Travel and Expenses Policy\n")
    # Inline tags and source line breaks do not cut a sentence.
    assert (
        "Hotels must be booked through Clarion Business Travel. The hotel limit is the most the Company "
        "will pay per night." in doc.text
    )


def test_html_tables_keep_their_rows_and_headings_give_sections() -> None:
    doc = load_bytes(TRAVEL_HTML.encode(), "travel.html")
    lines = doc.text.splitlines()
    assert "City: London, Hotel limit per night: £180, Meal allowance per day: £55." in lines
    assert "City: Manchester, Hotel limit per night: £120, Meal allowance per day: £40." in lines
    # No sentence (what an answer and its citation stay within) runs from one row into the next.
    assert all("\n" not in doc.text[s:e] for s, e in sentence_spans(doc.text))
    assert doc.title == "Travel and Expenses Policy"  # the page's heading, not <title> with the site name
    assert doc.date == "2025-01-06"
    assert doc.section_at(doc.text.index("Manchester")) == ("7. Hotels and subsistence",)
    assert doc.section_at(doc.text.index("day trips")) == ("7. Hotels and subsistence", "7.1 Day trips")


# --- dates and titles --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Leave Policy\nEffective date: 1 March 2025\n", "2025-03-01"),
        ("Leave Policy\nEffective date: March 1, 2025\n", "2025-03-01"),
        ("Leave Policy\nEffective from 2025-03-01\n", "2025-03-01"),
        ("Leave Policy\nLast updated: 6 January 2025\n", "2025-01-06"),
        ("Last updated: 1st Feb. 2025", "2025-02-01"),
        # The effective date wins over an approval date that comes first.
        ("Approved by the Board on 27 November 2024\nApplies from: 1 January 2025\n", "2025-01-01"),
        # A review due date is not the document's date.
        ("Next review due: 1 January 2026 | Last reviewed: 2025-01-15", "2025-01-15"),
        ("Effective date: 31 February 2025", None),
    ],
)
def test_document_dates_in_the_usual_written_forms(text: str, expected: str | None) -> None:
    assert find_date(text) == expected


def test_a_letterhead_is_not_the_title_so_documents_are_told_apart() -> None:
    security = (
        "HARBOURSIDE LOGISTICS LTD\n\nINFORMATION SECURITY POLICY\n\nVersion 2.3\n\n1. PURPOSE\n\nText."
    )
    conduct = "Harbourside Logistics Ltd\nCode of Conduct\n\n1. Introduction\n\nOur reputation matters."
    titles = {load_bytes(t.encode(), name).title for t, name in [(security, "a.txt"), (conduct, "b.txt")]}
    assert titles == {"INFORMATION SECURITY POLICY", "Code of Conduct"}


# --- plain text sections -----------------------------------------------------------------------

CONDUCT_TXT = """Code of Conduct
Harbourside Logistics Ltd

1. INTRODUCTION

1.1 Our reputation depends on the way each of us behaves every day. This Code sets out our standards.

2. GIFTS AND HOSPITALITY

2.1 Gifts

Report every gift to the Compliance Officer:
1. Fill in the gifts register
2. Tell your manager

2.2 Hospitality

Hospitality over £100 needs approval.
"""


def test_plain_text_numbered_headings_give_section_paths_and_the_text_is_untouched() -> None:
    doc = load_bytes(CONDUCT_TXT.encode(), "conduct.txt")
    assert doc.text == CONDUCT_TXT
    # A numbered paragraph is body text, not a heading.
    assert doc.section_at(doc.text.index("Our reputation")) == ("1. INTRODUCTION",)
    # A numbered list inside 2.1 does not open sections 1 and 2 again.
    assert doc.section_at(doc.text.index("Tell your manager")) == ("2. GIFTS AND HOSPITALITY", "2.1 Gifts")
    assert doc.section_at(doc.text.index("over £100")) == ("2. GIFTS AND HOSPITALITY", "2.2 Hospitality")
    assert doc.section_at(0) == ()


# --- chunks, citations and stores carry the section --------------------------------------------


def test_chunks_stay_within_one_section_and_carry_its_path() -> None:
    doc = load_bytes(CONDUCT_TXT.encode(), "conduct.txt")
    chunks = Chunker(WordTokenizer(), ChunkingConfig(max_tokens=64, overlap_tokens=8)).chunk(doc)
    assert [c.section for c in chunks] == [
        (),
        ("1. INTRODUCTION",),
        ("2. GIFTS AND HOSPITALITY", "2.1 Gifts"),
        ("2. GIFTS AND HOSPITALITY", "2.2 Hospitality"),
    ]
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert {doc.section_at(chunk.start), doc.section_at(chunk.end - 1)} == {chunk.section}


def test_a_citation_carries_the_section_of_its_answer() -> None:
    doc = load_bytes(CONDUCT_TXT.encode(), "conduct.txt")
    start = doc.text.index("Hospitality over")
    chunk = Chunk("conduct.txt#3", doc.id, 3, start, len(doc.text), doc.text[start:], ("x",))
    passage = Passage(chunk=chunk, title=doc.title, rank=1, score=1.0, dense_score=0.5, bm25_score=1.0)
    local = chunk.text.index("£100")
    candidate = SpanCandidate(0, local, local + 4, 9.0, 0.0)
    answers = AnswerAggregator(AnsweringConfig()).rank(
        "How much hospitality needs approval?", [candidate], [passage], {doc.id: doc}.get
    )
    assert answers[0].citation.section == ("2. GIFTS AND HOSPITALITY", "2.2 Hospitality")
    wire = answer_out(answers[0]).model_dump(mode="json")
    assert wire["citation"]["section"] == ["2. GIFTS AND HOSPITALITY", "2.2 Hospitality"]


def test_a_table_row_is_a_sentence_of_its_own() -> None:
    """Closed by a full stop (the reader otherwise runs a table's rows together), never by two."""
    assert table_row(["City", "Hotel limit"], ["Leeds", "£90"]) == "City: Leeds, Hotel limit: £90."
    assert table_row(["Step", "Action"], ["1", "Tell the DPO."]) == "Step: 1, Action: Tell the DPO."
    assert table_row(["Step", "Action"], ["2", "Is it urgent?"]) == "Step: 2, Action: Is it urgent?"
    assert table_row([], ["Leeds", "", "£90"]) == "Leeds, £90."
    assert table_row(["City"], [""]) == ""


def test_an_answer_never_runs_across_table_rows() -> None:
    doc = load_bytes(TRAVEL_HTML.encode(), "travel.html")
    start = doc.text.index("City: London")
    chunk = Chunk("travel.html#1", doc.id, 1, start, len(doc.text), doc.text[start:])
    passage = Passage(chunk=chunk, title=doc.title, rank=1, score=1.0, dense_score=0.5, bm25_score=1.0)
    across = chunk.text.index("£55"), chunk.text.index("Manchester") + len("Manchester")
    within = chunk.text.index("£120"), chunk.text.index("£120") + 4
    candidates = [SpanCandidate(0, *across, 12.0, 0.0), SpanCandidate(0, *within, 9.0, 0.0)]
    answers = AnswerAggregator(AnsweringConfig()).rank(
        "What is the hotel limit in Manchester?", candidates, [passage], {doc.id: doc}.get
    )
    assert [a.text for a in answers] == ["£120"]


def _update(doc: Document) -> DocumentUpdate:
    chunks = Chunker(WordTokenizer(), ChunkingConfig(max_tokens=64, overlap_tokens=8)).chunk(doc)
    vectors = np.random.default_rng(0).standard_normal((len(chunks), 8)).astype(np.float32)
    return DocumentUpdate(doc, chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


SPEC = IndexSpec("test-embedder", 8, {"max_tokens": 64, "overlap_tokens": 8})


def test_the_local_store_keeps_sections_and_reads_an_index_from_before_them(tmp_path: Path) -> None:
    doc = load_bytes(CONDUCT_TXT.encode(), "conduct.txt")
    store = LocalStore(tmp_path / "index")
    with store.write_lock():
        store.write([_update(doc)], [], SPEC, None, replace_all=True)
    snapshot = store.open(SPEC)
    stored = snapshot.document("conduct.txt")
    assert stored is not None and stored.sections == doc.sections
    assert [c.section for _, c in snapshot.chunks_of("conduct.txt")][-1] == (
        "2. GIFTS AND HOSPITALITY",
        "2.2 Hospitality",
    )
    snapshot.close()
    # An index written before the columns existed: it opens, with no sections.
    sqlite_file = next((tmp_path / "index").glob("v-*/store.sqlite"))
    with sqlite3.connect(sqlite_file) as conn:
        conn.execute("ALTER TABLE chunks DROP COLUMN section")
        conn.execute("ALTER TABLE documents DROP COLUMN sections")
    old = store.open(SPEC, verify=False)
    assert old.document("conduct.txt").sections == ()  # type: ignore[union-attr]
    assert {c.section for _, c in old.chunks_of("conduct.txt")} == {()}
    assert old.chunks_by_rows([0])[0].section == ()
    old.close()


@pytest.mark.e2e
@pytest.mark.postgres
def test_the_postgres_store_keeps_sections(database_url: str, tmp_path: Path) -> None:
    from citeqa.indexing.store.postgres import PostgresStore

    doc = load_bytes(CONDUCT_TXT.encode(), "conduct.txt")
    store = PostgresStore(database_url, tmp_path / "bm25")
    try:
        with store.write_lock():
            store.write([_update(doc)], [], SPEC, None, replace_all=True)
        snapshot = store.open(SPEC)
        stored = snapshot.document("conduct.txt")
        assert stored is not None and stored.sections == doc.sections
        sections = [c.section for _, c in snapshot.chunks_of("conduct.txt")]
        assert sections[-1] == ("2. GIFTS AND HOSPITALITY", "2.2 Hospitality")
        rows = [row for row, _ in snapshot.chunks_of("conduct.txt")]
        assert snapshot.chunks_by_rows(rows[-1:])[rows[-1]].section == sections[-1]
        # A database of schema 2 (before sections) is migrated on first use and reads as having none.
        with store.connection() as conn:
            conn.execute("ALTER TABLE citeqa_chunks DROP COLUMN section")
            conn.execute("ALTER TABLE citeqa_documents DROP COLUMN sections")
            conn.execute("UPDATE citeqa_meta SET value = '2' WHERE key = 'schema_version'")
    finally:
        store.close()
    upgraded = PostgresStore(database_url, tmp_path / "bm25")
    try:
        snapshot = upgraded.open(SPEC)
        assert snapshot.document("conduct.txt").sections == ()  # type: ignore[union-attr]
        assert {c.section for _, c in snapshot.chunks_of("conduct.txt")} == {()}
    finally:
        upgraded.close()


def test_section_spans_are_json_in_the_local_store(tmp_path: Path) -> None:
    """The stored form is plain JSON a person (or another tool) can read."""
    doc = Document("d.txt", "1. A\nx\n2. B\ny\n", "d", "h", sections=(SectionSpan(0, 7, ("1. A",)),))
    store = LocalStore(tmp_path / "index")
    with store.write_lock():
        store.write([_update(doc)], [], SPEC, None, replace_all=True)
    sqlite_file = next((tmp_path / "index").glob("v-*/store.sqlite"))
    with sqlite3.connect(sqlite_file) as conn:
        (sections,) = conn.execute("SELECT sections FROM documents").fetchone()
    assert json.loads(sections) == [{"start": 0, "end": 7, "path": ["1. A"]}]
