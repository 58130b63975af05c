"""Word files: paragraphs, headings, lists and tables in reading order, as citeqa's other formats give them;
broken or hostile files are one clear error."""

from __future__ import annotations

import io
import zipfile

import docx
import pytest
from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders import docx as docx_loader
from citeqa.indexing.ingest.loaders import load_bytes

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def _policy() -> bytes:
    """A policy as Word saves it (python-docx writes Word's own default template)."""
    document = docx.Document()
    document.add_paragraph("Travel and Expenses Policy", style="Title")
    document.add_paragraph("Effective date: 1 March 2025")
    document.add_heading("1. Booking travel", level=1)
    paragraph = document.add_paragraph("Book trains at least two weeks ahead.")
    paragraph.add_run().add_break()
    paragraph.add_run("First class\tis not allowed.")
    document.add_heading("1.1 Approvals", level=2)
    document.add_paragraph("Your line manager approves trips under £500.", style="List Bullet")
    document.add_paragraph("A director approves anything above.", style="List Number")
    document.add_heading("2. Allowances", level=1)
    table = document.add_table(rows=3, cols=3)
    rows = [
        ["City", "Hotel limit", "Meals per day"],
        ["London", "£180", "£55"],
        ["Manchester", "£120", "£40"],
    ]
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("Claims go through the expenses portal.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_a_word_policy_reads_like_the_other_formats() -> None:
    doc = load_bytes(_policy(), "travel.docx")
    assert doc.title == "Travel and Expenses Policy" and doc.date == "2025-03-01"
    assert doc.text == (
        "Travel and Expenses Policy\n\n"
        "Effective date: 1 March 2025\n\n"
        "1. Booking travel\n\n"
        "Book trains at least two weeks ahead.\nFirst class is not allowed.\n\n"
        "1.1 Approvals\n\n"
        "Your line manager approves trips under £500.\nA director approves anything above.\n\n"
        "2. Allowances\n\n"
        "City: London, Hotel limit: £180, Meals per day: £55.\n"
        "City: Manchester, Hotel limit: £120, Meals per day: £40.\n\n"
        "Claims go through the expenses portal."
    )
    at = doc.text.index("A director")
    (section,) = [s for s in doc.sections if s.start <= at < s.end]
    assert section.path == ("1. Booking travel", "1.1 Approvals")


def _zip(members: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return out.getvalue()


def _docx(body: str, styles: str | None = None) -> bytes:
    members = {"word/document.xml": f'<w:document xmlns:w="{_W}"><w:body>{body}</w:body></w:document>'}
    if styles is not None:
        members["word/styles.xml"] = f'<w:styles xmlns:w="{_W}">{styles}</w:styles>'
    return _zip(members)


def _run(text: str) -> str:
    return f"<w:r><w:t xml:space='preserve'>{text}</w:t></w:r>"


def test_deletions_and_field_codes_are_left_out_and_localized_headings_found() -> None:
    styles = (
        '<w:style w:type="paragraph" w:styleId="berschrift1"><w:name w:val="heading 1"/></w:style>'
        '<w:style w:type="paragraph" w:styleId="Gliederung"><w:name w:val="Gliederung"/>'
        '<w:pPr><w:outlineLvl w:val="1"/></w:pPr></w:style>'
    )
    body = (
        f'<w:p><w:pPr><w:pStyle w:val="berschrift1"/></w:pPr>{_run("Urlaub")}</w:p>'
        f'<w:p><w:pPr><w:pStyle w:val="Gliederung"/></w:pPr>{_run("Antrag")}</w:p>'
        f"<w:p>{_run('Leave is ')}<w:del><w:r><w:delText>twenty</w:delText></w:r></w:del>"
        f"<w:ins>{_run('30')}</w:ins>{_run(' days')}"
        f"<w:r><w:instrText> PAGE </w:instrText></w:r>{_run('.')}</w:p>"
        f"<w:sdt><w:sdtContent><w:p>{_run('Inside a content control.')}</w:p></w:sdtContent></w:sdt>"
    )
    doc = load_bytes(_docx(body, styles), "urlaub.docx")
    assert doc.text == "Urlaub\n\nAntrag\n\nLeave is 30 days.\n\nInside a content control."
    assert doc.title == "Urlaub"  # the lone top heading: the title, not a section of its own
    assert [s.path for s in doc.sections] == [("Antrag",)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip at all", "cannot parse DOCX (not a zip file: an old .doc, or encrypted?)"),
        (_zip({"word/other.xml": "<x/>"}), "not a Word document (no word/document.xml)"),
        (_docx("<w:p><w:r><w:t>unclosed</w:t></w:r>"), "cannot parse DOCX (word/document.xml"),
    ],
)
def test_broken_word_files_are_one_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(DocumentLoadError) as caught:
        load_bytes(data, "broken.docx")
    assert str(caught.value).startswith("broken.docx: ") and message in str(caught.value)


def test_entity_and_inflation_bombs_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    laughs = _zip(
        {
            "word/document.xml": '<?xml version="1.0"?>'
            '<!DOCTYPE w [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
            f'<w:document xmlns:w="{_W}"><w:body><w:p><w:r><w:t>&b;</w:t></w:r></w:p></w:body></w:document>'
        }
    )
    with pytest.raises(DocumentLoadError, match="declares entities"):
        load_bytes(laughs, "laughs.docx")
    monkeypatch.setattr(docx_loader, "MAX_XML_BYTES", 10_000)
    padded = _docx(f"<w:p>{_run('x' * 20_000)}</w:p>")
    with pytest.raises(DocumentLoadError, match="inflates past 10,000 bytes"):
        load_bytes(padded, "big.docx")


def _row(*cells: str, header: bool = False) -> str:
    props = "<w:trPr><w:tblHeader/></w:trPr>" if header else ""
    return f"<w:tr>{props}{''.join(cells)}</w:tr>"


def _cell(text: str, span: int = 1, merge: str | None = None) -> str:
    props = f'<w:gridSpan w:val="{span}"/>' if span > 1 else ""
    props += "" if merge is None else ('<w:vMerge w:val="restart"/>' if merge == "restart" else "<w:vMerge/>")
    return f"<w:tc><w:tcPr>{props}</w:tcPr><w:p>{_run(text)}</w:p></w:tc>"


def test_tables_read_labels_merged_cells_and_wrapped_rows() -> None:
    """Found by an outside probe: a document-control table's first row was taken for a header, merged cells
    put values under the wrong header or lost them, rows inside a content control were dropped."""
    control = _row(_cell("Policy owner"), _cell("HR Director")) + _row(
        _cell("Review date"), _cell("1 Jan 2026")
    )
    depots = (
        _row(_cell("Region"), _cell("Depot"), _cell("Limit"), header=True)
        + _row(_cell("North", merge="restart"), _cell("Leeds"), _cell("56 mph"))
        + _row(_cell("", merge="continue"), _cell("York"), _cell("50 mph"))
        + _row(_cell("Key fob, lost", span=2), _cell("Charged to the driver"))
        + "<w:sdt><w:sdtContent>"
        + _row(_cell("South"), _cell("Dover"), _cell("60 mph"))
        + "</w:sdtContent></w:sdt>"
    )
    shifts = _row(_cell("Shift", span=2), _cell("Allowance"), header=True) + _row(
        _cell("Night"), _cell("22:00-06:00"), _cell("£3.50")
    )
    body = f"<w:tbl>{control}</w:tbl><w:tbl>{depots}</w:tbl><w:tbl>{shifts}</w:tbl>"
    assert load_bytes(_docx(body), "tables.docx").text == (
        "Policy owner: HR Director.\nReview date: 1 Jan 2026.\n"
        "Region: North, Depot: Leeds, Limit: 56 mph.\nRegion: North, Depot: York, Limit: 50 mph.\n"
        "Region: Key fob, lost, Limit: Charged to the driver.\nRegion: South, Depot: Dover, Limit: 60 mph.\n"
        "Shift: Night, Shift: 22:00-06:00, Allowance: £3.50."
    )


def test_moved_hidden_wrapped_boxed_and_noted_text() -> None:
    body = (
        f"<w:p><w:moveFrom>{_run('Taxis need a receipt.')}</w:moveFrom>"
        f"{_run('Trains are standard class.')}</w:p>"
        f"<w:p><w:moveTo>{_run('Taxis need a receipt.')}</w:moveTo></w:p>"
        f"<w:p>{_run('Parking is paid.')}"
        "<w:r><w:rPr><w:vanish/></w:rPr><w:t>Free on Sundays.</w:t></w:r></w:p>"
        f"<w:customXml><w:p>{_run('Bicycles go in the cage.')}</w:p></w:customXml>"
        f"<w:p>{_run('Before.')}<w:r><w:drawing><w:txbxContent><w:p>{_run('Boxed.')}</w:p>"
        f"</w:txbxContent></w:drawing></w:r>{_run('After.')}</w:p>"
    )
    footnotes = (
        f'<w:footnotes xmlns:w="{_W}"><w:footnote w:type="separator" w:id="-1"><w:p>{_run("---")}</w:p>'
        f'</w:footnote><w:footnote w:id="1"><w:p>{_run("The HMRC rate is 45p.")}</w:p></w:footnote>'
        "</w:footnotes>"
    )
    data = _zip(
        {
            "word/document.xml": f'<w:document xmlns:w="{_W}"><w:body>{body}</w:body></w:document>',
            "word/footnotes.xml": footnotes,
        }
    )
    assert load_bytes(data, "moves.docx").text == (
        "Trains are standard class.\n\nTaxis need a receipt.\n\nParking is paid.\n\n"
        "Bicycles go in the cage.\n\n"
        "Before. Boxed. After.\n\nThe HMRC rate is 45p."
    )


def test_another_main_part_and_strict_open_xml_are_read() -> None:
    strict = "http://purl.oclc.org/ooxml/wordprocessingml/main"
    rels = (
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="r1" Type="http://purl.oclc.org/ooxml/officeDocument/relationships/officeDocument" '
        'Target="word/document2.xml"/></Relationships>'
    )
    document = (
        f'<w:document xmlns:w="{strict}"><w:body><w:p>{_run("Permits cost £12.")}</w:p></w:body></w:document>'
    )
    data = _zip({"_rels/.rels": rels, "word/document2.xml": document})
    assert load_bytes(data, "online.docx").text == "Permits cost £12."
