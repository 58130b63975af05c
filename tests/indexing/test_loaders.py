from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from citeqa.indexing.errors import DocumentLoadError
from citeqa.indexing.ingest.loaders import (
    FORMATS,
    PARSERS,
    SUPPORTED_SUFFIXES,
    find_date,
    load_bytes,
    load_corpus,
)
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject


def _pdf_with_pages(texts: list[str], title: str | None = None) -> bytes:
    writer = PdfWriter()
    for text in texts:
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
        stream = DecodedStreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        page[NameObject("/Contents")] = writer._add_object(stream)
    if title:
        writer.add_metadata({"/Title": title})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def test_plain_text_keeps_text_title_and_date(seed_text: str) -> None:
    doc = load_bytes(seed_text.encode("utf-8"), "000_d31740c80f9a4c4e.txt")
    assert doc.text == seed_text
    assert doc.title == "The hottest made in China 2025 pilot cities will b"
    assert doc.date == "2022-10-15"
    assert len(doc.content_hash) == 64


def test_markdown_title_drops_heading_marks() -> None:
    doc = load_bytes(b"# Water policy\n\nUse less water.", "notes/water.md")
    assert doc.title == "Water policy"
    assert doc.id == "notes/water.md"


def test_html_keeps_visible_text_only() -> None:
    html = b"""<html><head><title>Energy rules</title><style>p{color:red}</style></head>
    <body><script>var secret = 1;</script><h1>Energy</h1><p>Solar quota is 40%.</p></body></html>"""
    doc = load_bytes(html, "energy.html")
    assert doc.title == "Energy"  # the page's heading; <title> often adds the site's name to every page
    assert "Solar quota is 40%." in doc.text
    assert "secret" not in doc.text and "color" not in doc.text


def test_pdf_text_per_page_with_page_numbers() -> None:
    doc = load_bytes(_pdf_with_pages(["First page words", "Second page words"], title="Budget"), "b.pdf")
    assert doc.title == "Budget"
    assert [p.number for p in doc.pages] == [1, 2]
    second = doc.pages[1]
    assert doc.text[second.start : second.end] == "Second page words"
    assert doc.page_at(doc.text.index("Second")) == 2


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"\x00\x01\x02binary", "junk.txt", "binary"),
        ("café ".encode() + b"au l\xe9it", "mixed.txt", "not valid UTF-8"),
        (b"   \n  ", "blank.txt", "no text"),
        (b"%PDF-1.4 this is not really a pdf", "broken.pdf", "cannot parse PDF"),
        (b"hello", "sheet.xlsx", "unsupported"),
    ],
)
def test_bad_files_raise_a_clear_error(data: bytes, name: str, message: str) -> None:
    with pytest.raises(DocumentLoadError, match=message) as info:
        load_bytes(data, name)
    assert name in str(info.value)


def test_corpus_skips_unknown_and_reports_broken_files(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Good document.\nIt has text.", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.md").write_text("# Nested\nMore text.", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (tmp_path / ".hidden.txt").write_text("hidden", encoding="utf-8")
    corpus = load_corpus(tmp_path)
    assert [d.id for d in corpus.documents] == ["good.txt", "sub/nested.md"]
    assert sorted(p.path for p in corpus.problems) == ["broken.pdf", "image.png"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Title\n\n2022-10-15\nbody", "2022-10-15"),
        ("Issued on March 3, 2021 by the board", "2021-03-03"),
        ("Dated 2020/7/9.", "2020-07-09"),
        ("No date here, only 2025 as a year", None),
        ("Bad date 2022-13-45", None),
    ],
)
def test_find_date(text: str, expected: str | None) -> None:
    assert find_date(text) == expected


def test_corpus_skips_links_out_of_the_folder_and_special_files(tmp_path: Path) -> None:
    """M4: `ln -s /etc/passwd corpus/passwd.txt` must not index /etc/passwd; each skip says why."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("Secret text that lives outside the corpus.", encoding="utf-8")
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "good.txt").write_text("Good document.\nIt has text.", encoding="utf-8")
    (corpus / "passwd.txt").symlink_to("/etc/passwd")
    (corpus / "secret.txt").symlink_to(outside / "secret.txt")
    (corpus / "linked_folder").symlink_to(outside, target_is_directory=True)
    (corpus / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    (corpus / "sub" / "alias.txt").symlink_to(corpus / "good.txt")  # inside the folder: allowed
    os.mkfifo(corpus / "pipe.txt")  # reading it would block forever
    loaded = load_corpus(corpus)
    assert [d.id for d in loaded.documents] == ["good.txt", "sub/alias.txt"]
    reasons = {p.path: p.reason for p in loaded.problems}
    assert set(reasons) == {"passwd.txt", "secret.txt", "linked_folder", "dangling.txt", "pipe.txt"}
    assert "outside the corpus folder" in reasons["passwd.txt"]
    assert "outside the corpus folder" in reasons["linked_folder"]
    assert reasons["pipe.txt"] == "not a regular file"
    assert reasons["dangling.txt"] == "broken symbolic link"
    (corpus / "junk.pdf").write_bytes(b"not a pdf")  # said "skipped junk.pdf: junk.pdf: cannot parse PDF"
    assert {p.path: p.reason for p in load_corpus(corpus).problems}["junk.pdf"].startswith("cannot parse PDF")


def test_long_first_line_title_is_cut_between_words() -> None:
    line = "Rules for " + " ".join(["harbor"] * 60)
    title = load_bytes(f"{line}\n\nBody.".encode(), "t.txt").title
    assert len(title) <= 200 and title.endswith("harbor…")


def test_each_suffix_belongs_to_one_format() -> None:
    suffixes = [suffix for module in FORMATS for suffix in module.SUFFIXES]
    assert len(suffixes) == len(set(suffixes)) == len(PARSERS)
    assert all(s.startswith(".") and s == s.lower() for s in SUPPORTED_SUFFIXES)
