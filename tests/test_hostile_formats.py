"""Hostile office files, e-books and mail cost bounded work and are refused with a clear reason:
zip bombs in a .docx, .xlsx and .epub (one that says how large it unpacks, one that lies about
it), a spreadsheet with a million empty rows, an .eml with a 10 MB base64 attachment, and the
rest of what these formats let a file claim (repeat counts, nesting, entity expansion).

No timings are asserted: what is checked is where the reading stopped and why.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
import zipfile
from pathlib import Path

import pytest
from format_builders import make_docx, make_eml, make_epub, make_pptx, make_xlsx, understate_size, zip_bomb

from qa.documents import DocumentError, extract_text, load_corpus
from qa.formats import Limits, extract

MB = 1 << 20


def refusal(data: bytes, name: str) -> str:
    with pytest.raises(DocumentError) as caught:
        extract_text(data, Path(name).suffix, name)
    assert caught.value.path == name
    return caught.value.reason


# ----------------------------------------------------------------------------- zip bombs


BOMBS = [
    ("bomb.docx", lambda: make_docx([("p", "The vault opens at noon.")]), "word/document.xml"),
    ("bomb.xlsx", lambda: make_xlsx({"Data": [("key", "value"), ("vault", "noon")]}), "xl/worksheets/sheet1.xml"),
    ("bomb.epub", lambda: make_epub("Bomb", [("One", "<p>The vault opens at noon.</p>")]), "EPUB/chapter1.xhtml"),
]


@pytest.mark.parametrize(("name", "build", "member"), BOMBS, ids=[b[0] for b in BOMBS])
def test_a_zip_bomb_is_refused_from_the_zip_directory_before_any_library_unpacks_it(
    name: str, build, member: str
) -> None:
    bomb = zip_bomb(build(), member, 128 * MB)
    assert len(bomb) < 1 * MB  # about 1,000 times smaller than what it unpacks to
    assert re.fullmatch(rf"looks like a zip bomb: {re.escape(member)} would unpack 1,02\d times over, "
                        r"to 128.1 MB from 12\d(\.\d)? KB", refusal(bomb, name))


@pytest.mark.parametrize(("name", "build", "member"), BOMBS, ids=[b[0] for b in BOMBS])
def test_a_zip_member_that_lies_about_its_size_stops_at_the_size_it_claims(name: str, build, member: str) -> None:
    """The directory says 2 KB; the member really unpacks to 64 MB. zipfile stops at 2 KB and the
    checksum fails, so the file is refused as damaged instead of unpacked."""
    liar = understate_size(zip_bomb(build(), member, 64 * MB), member, 2048)
    assert zipfile.ZipFile(io.BytesIO(liar)).getinfo(member).file_size == 2048
    reason = refusal(liar, name)
    assert "damaged zip file" in reason or "not a readable" in reason, reason


def test_a_zip_with_too_many_members_or_too_much_inside_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i in range(10_001):
            archive.writestr(f"junk/{i}.xml", b"")
    assert refusal(out.getvalue(), "many.docx") == "holds 10,001 files inside; the limit is 10,000"
    big = make_docx([("p", "x " * 400_000)])  # document.xml: 800 KB; the others under 400 KB
    assert extract(big, ".docx", "big.docx", Limits(max_member_bytes=MB))[0].startswith("x x")
    with pytest.raises(DocumentError, match=r"is too large inside: word/document.xml would unpack to 782.\d KB; "
                                            r"the limit is 512 KB"):
        extract(big, ".docx", "big.docx", Limits(max_member_bytes=512 * 1024))
    with pytest.raises(DocumentError, match=r"would unpack to more than 512 KB, the limit"):
        extract(big, ".docx", "big.docx", Limits(max_member_bytes=MB, max_unpacked_bytes=512 * 1024))


# ----------------------------------------------------------------------------- spreadsheets


def million_empty_rows() -> bytes:
    """What formatting a whole column leaves behind: data at the top, then a million empty rows,
    and one more row of data far below them. Written as openpyxl writes it."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Stock")
    sheet.append(["item", "count"])
    sheet.append(["lamps", 12])
    sheet.append(["chairs", 40])
    for _ in range(1_000_000):
        sheet.append([None, None])
    sheet.append(["hidden treasure", 1])
    other = workbook.create_sheet("Suppliers")
    other.append(["supplier", "city"])
    other.append(["Svitlo", "Dnipro"])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def test_a_spreadsheet_with_a_million_empty_rows_stops_reading_after_ten_thousand(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="qa.formats.sheets"):
        text, pages = extract_text(million_empty_rows(), ".xlsx", "stock.xlsx")
    assert text == ("Sheet: Stock\n\nitem: lamps — count: 12.\n\nitem: chairs — count: 40.\n\n"
                    "Sheet: Suppliers\n\nsupplier: Svitlo — city: Dnipro.")
    assert pages == (0, text.index("Sheet: Suppliers"))
    assert ("stock.xlsx: sheet 'Stock': stopped reading at row 10003 after 10000 empty rows in a row; "
            "anything below is not indexed") in caplog.text


def test_rows_below_the_stop_are_never_parsed() -> None:
    """The sheet's XML is broken far below a million empty rows: a reader that parsed the whole
    sheet (openpyxl sizes a sheet without <dimension> that way before reading a row) would fail
    on it; this one stops after 10,000 empty rows and never gets there."""
    data = make_xlsx({"Stock": [("item", "count"), ("lamps", 12)]})
    source = zipfile.ZipFile(io.BytesIO(data))
    sheet = source.read("xl/worksheets/sheet1.xml")
    head, _, _ = sheet.partition(b"</sheetData>")
    head = head.replace(b'<dimension ref="A1:B2"/>', b"")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != "xl/worksheets/sheet1.xml":
                target.writestr(info, source.read(info.filename))
                continue
            with target.open(zipfile.ZipInfo(info.filename, info.date_time), "w") as stream:
                stream.write(head)
                stream.write(b"".join(b'<row r="%d"/>' % n for n in range(3, 1_000_003)))
                stream.write(b"<row r=\"1000003\"><c r=\"A1000003\" t=\"inlineStr\"><is><t>lost")  # cut off
    assert b"<dimension" not in zipfile.ZipFile(io.BytesIO(out.getvalue())).read("xl/worksheets/sheet1.xml")[:2000]
    assert extract_text(out.getvalue(), ".xlsx", "cut.xlsx") == ("Sheet: Stock\n\nitem: lamps — count: 12.", (0,))


def test_a_workbook_past_the_cell_budget_is_refused() -> None:
    data = make_xlsx({"Grid": [[f"r{r}c{c}" for c in range(20)] for r in range(200)]})
    assert "r199c19" in extract(data, ".xlsx", "grid.xlsx", Limits(max_cells=4000))[0]
    with pytest.raises(DocumentError) as caught:
        extract(data, ".xlsx", "grid.xlsx", Limits(max_cells=3999))
    assert caught.value.reason == "has more than 3,999 cells, the limit for one file; split it into smaller files"


def test_a_sheet_that_claims_a_huge_size_is_read_by_its_rows() -> None:
    """`<dimension ref="A1:XFD1048576">` would make openpyxl pad every row to 16,384 cells."""
    data = make_xlsx({"Small": [("name", "age"), ("Ivan", 30)]})
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            body = source.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                body = body.replace(b'<dimension ref="A1:B2"/>', b'<dimension ref="A1:XFD1048576"/>')
                assert b"XFD1048576" in body
            target.writestr(info, body)
    assert extract(out.getvalue(), ".xlsx", "claims.xlsx", Limits(max_cells=100))[0] == (
        "Sheet: Small\n\nname: Ivan — age: 30.")


def test_a_csv_with_a_million_empty_rows_is_cheap_and_keeps_its_data() -> None:
    data = b"city,river\n" + b",\n" * 1_000_000 + b"Kyiv,Dnipro\n"
    assert extract_text(data, ".csv", "rivers.csv") == ("city: Kyiv — river: Dnipro.", ())


def test_a_csv_cell_over_the_csv_modules_field_limit_is_refused_with_the_line() -> None:
    data = b"a,b\n1,\"" + b"x" * 200_000 + b"\"\n"
    assert refusal(data, "wide.csv").startswith("is not a readable CSV file (line 2: field larger than field limit")


def test_text_past_the_character_limit_is_refused_as_soon_as_it_passes() -> None:
    data = make_docx([("p", f"Paragraph {i} of a very long report.") for i in range(2000)])
    with pytest.raises(DocumentError) as caught:
        extract(data, ".docx", "long.docx", Limits(max_chars=10_000))
    assert caught.value.reason == ("has more than 10,000 characters of text, the limit for one file; "
                                   "split it into smaller files")
    with pytest.raises(DocumentError, match="more than 10,000 characters"):
        extract_text(data, ".docx", "long.docx", max_chars=10_000)


# ----------------------------------------------------------------------------- mail


def ten_megabyte_mail() -> bytes:
    rng = random.Random(41)
    words = ["amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "heron", "inlet", "juniper"]
    log_text = " ".join(rng.choice(words) for _ in range(1_800_000)).encode()  # about 11 MB of text
    assert len(log_text) > 10 * MB
    return make_eml(
        "Site survey", "Petro <petro@example.com>", "Mon, 02 Dec 2024 09:00:00 +0200",
        "The survey of the Irpin site is done. The foundation depth is 2.4 metres.\n",
        [("drone.mp4", os.urandom(10 * MB), "video/mp4"), ("survey-log.txt", log_text, "text/plain"),
         ("summary.docx", make_docx([("p", "Summary: the soil is clay.")]),
          "application/vnd.openxmlformats-officedocument.wordprocessingml.document")])


def test_an_eml_with_10_mb_base64_attachments_reads_the_message_and_names_what_it_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mail = ten_megabyte_mail()
    assert len(mail) > 27 * MB  # two attachments of 10 MB and more, in base64
    text, pages = extract_text(mail, ".eml", "survey.eml")
    message = text[: pages[1]]
    assert "The foundation depth is 2.4 metres." in message
    assert "drone.mp4 (not read: .mp4 not supported)" in message
    assert ("survey-log.txt (not read: has 11,159,869 characters of text, more than the 9,999,926 left of the "
            "limit of 10,000,000 for one file)") in message
    assert text[pages[1] :] == "Attachment 1: summary.docx\nSummary: the soil is clay."
    assert len(pages) == 2
    assert "survey.eml: attachment drone.mp4 not read: .mp4 not supported" in caplog.text


def test_mail_nested_in_mail_is_read_three_deep_and_no_deeper() -> None:
    inner = make_eml("Level 4", "d@example.com", "Mon, 02 Dec 2024 09:00:00 +0200", "Fourth level says hello.\n")
    for level in (3, 2, 1):
        inner = make_eml(f"Level {level}", "b@example.com", "Mon, 02 Dec 2024 09:00:00 +0200",
                         f"Level {level} body.\n", [(f"level{level + 1}.eml", inner, "message/rfc822")])
    text, pages = extract_text(inner, ".eml", "nested.eml")
    assert "Level 2 body." in text and "Level 3 body." in text
    assert "level4.eml (not read: mail nested more than 3 deep)" in text
    assert "Fourth level says hello." not in text
    assert text[pages[1] :].startswith("Attachment 1: level2.eml\nSubject: Level 2\n")


def test_mail_attached_in_base64_is_read_too() -> None:
    """Some mail programs encode an attached message in base64, which the parser leaves as is."""
    from email import policy
    from email.message import EmailMessage

    inner = make_eml("Minutes", "c@example.com", "Mon, 02 Dec 2024 09:00:00 +0200", "The board met on Friday.\n")
    message = EmailMessage(policy=policy.default)
    message["Subject"], message["From"] = "Fwd: minutes", "b@example.com"
    message.set_content("See attached.\n")
    message.add_attachment(inner, maintype="message", subtype="rfc822", filename="minutes.eml")
    assert b"Content-Transfer-Encoding: base64" in bytes(message)
    text, pages = extract_text(bytes(message), ".eml", "fwd.eml")
    assert "The board met on Friday." in text[pages[1] :]


def test_an_eml_with_many_attachments_reads_the_first_hundred() -> None:
    attachments = [(f"n{i}.txt", f"Note number {i}.".encode(), "text/plain") for i in range(105)]
    text, pages = extract_text(make_eml("Notes", "a@example.com", "Mon, 02 Dec 2024 09:00:00 +0200",
                                        "Many notes.\n", attachments), ".eml", "many.eml")
    assert len(pages) == 101 and "Note number 99." in text and "Note number 100." not in text
    assert "n100.txt (not read: more than 100 attachments)" in text


def test_a_binary_file_named_eml_is_refused() -> None:
    assert refusal(b"\x89PNG\r\n\x1a\n" + bytes(100), "photo.eml") == (
        "is not an e-mail message (it looks like a PNG image)")


# ----------------------------------------------------------------------------- XML tricks


def test_odt_repeat_counts_and_spaces_are_capped() -> None:
    """`<text:s text:c="1000000000"/>` would be a billion spaces (odfpy expands it), and a cell
    repeated a billion times across columns a billion cells."""
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"><office:body><office:text>'
        '<text:p>wide<text:s text:c="1000000000"/>gap</text:p>'
        '<table:table><table:table-row table:number-rows-repeated="1000000000">'
        '<table:table-cell table:number-columns-repeated="1000000000"><text:p>cell</text:p></table:table-cell>'
        '</table:table-row></table:table>'
        '</office:text></office:body></office:document-content>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        archive.writestr("content.xml", content)
    text, _ = extract_text(out.getvalue(), ".odt", "wide.odt")
    first, table = text.split("\n\n")
    assert first == "wide" + " " * 64 + "gap"
    assert table == " | ".join(["cell"] * 1024)


def test_entity_expansion_is_not_performed() -> None:
    """A billion-laughs DOCTYPE in an e-book's package file is refused, not expanded."""
    laughs = ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa">'
              + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
              + ']><package xmlns="http://www.idpf.org/2007/opf"><metadata>&i;</metadata>'
              '<manifest><item id="c" href="c.xhtml" media-type="application/xhtml+xml"/></manifest>'
              '<spine><itemref idref="c"/></spine></package>')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("META-INF/container.xml",
                         '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                         '<rootfile full-path="content.opf"/></rootfiles></container>')
        archive.writestr("content.opf", laughs)
        archive.writestr("c.xhtml", "<html><body><p>Only this chapter.</p></body></html>")
    assert "Maximum entity amplification factor exceeded" in refusal(out.getvalue(), "laughs.epub")


# ----------------------------------------------------------------------------- in a folder


def test_a_folder_of_hostile_files_indexes_the_good_ones_and_names_each_bad_one(tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "good.pptx").write_bytes(make_pptx([{"title": "Fine", "notes": "This deck is fine."}]))
    (corpus / "bomb.docx").write_bytes(zip_bomb(BOMBS[0][1](), BOMBS[0][2], 128 * MB))
    (corpus / "stock.xlsx").write_bytes(make_xlsx({"Stock": [("item", "count"), ("lamps", 12)]}))
    attachment = ("big.bin", os.urandom(10 * MB), "application/octet-stream")
    (corpus / "survey.eml").write_bytes(make_eml("Hi", "a@example.com", "Mon, 02 Dec 2024 09:00:00 +0200",
                                                 "Body.\n", [attachment]))
    documents, skipped = load_corpus(corpus)
    assert sorted(d.path for d in documents) == ["docs/good.pptx", "docs/stock.xlsx", "docs/survey.eml"]
    assert [(path, reason.split(":")[0]) for path, reason in skipped] == [("docs/bomb.docx", "looks like a zip bomb")]


@pytest.mark.slow
def test_hostile_files_in_an_indexed_folder_cost_their_reasons_and_the_good_facts_stay_answerable(
    tmp_path: Path,
) -> None:
    """The whole path: `build_index` reads each file (in the indexer's worker, under its budget),
    refuses the bombs with their reasons, reads the top of the million-row sheet and the mail
    without its 10 MB attachments, and `answer()` answers from both with the real models."""
    import qa

    corpus = tmp_path / "docs"
    corpus.mkdir()
    for name, build, member in BOMBS:
        (corpus / name).write_bytes(zip_bomb(build(), member, 128 * MB))
    (corpus / "stock.xlsx").write_bytes(million_empty_rows())
    (corpus / "survey.eml").write_bytes(ten_megabyte_mail())
    report = qa.build_index(corpus, tmp_path / "index", progress=False)
    assert sorted(report.added) == ["docs/stock.xlsx", "docs/survey.eml"]
    assert sorted((path, reason.split(":")[0]) for path, reason in report.skipped) == [
        (f"docs/{name}", "looks like a zip bomb") for name in ("bomb.docx", "bomb.epub", "bomb.xlsx")]

    chairs = qa.answer("How many chairs are in stock?", index_dir=tmp_path / "index", corpus_dir=corpus)
    assert (chairs.text, chairs.source, chairs.page) == ("40", "docs/stock.xlsx", 1)
    depth = qa.answer("What is the foundation depth at the Irpin site?", index_dir=tmp_path / "index",
                      corpus_dir=corpus)
    assert (depth.text, depth.source, depth.page) == ("2.4 metres", "docs/survey.eml", 1)
