"""Word, PowerPoint, Excel, CSV, OpenDocument, EPUB and e-mail: each file built by its own library,
read into text with pages where the format has them, indexed, and asked about through the real
`answer()` with the real models (the answers sit in a table, a slide's notes, a second sheet, a
later chapter or a mail's attachment). A file of a type we do not read, and one we cannot read,
are named with the reason by `qa index`, in the index report and in the chat's document list.

Hostile files of these kinds are in tests/test_hostile_formats.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from format_builders import make_docx, make_eml, make_epub, make_odt, make_pptx, make_xlsx

from qa.documents import DocumentError, extract_text, list_corpus_files, load_document
from qa.formats import page_label
from qa.passages import split_passages
from qa.types import Document

ROOT = Path(__file__).resolve().parents[1]
DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


# ----------------------------------------------------------------------------- the files


def handbook_docx() -> bytes:
    return make_docx([
        ("h", "Staff handbook"),
        ("p", "Welcome to Northwind. This handbook covers the basics of working in our Kyiv office."),
        ("h", "Opening hours"),
        ("p", "The office opens at 8:30 and closes at 18:00 from Monday to Friday. On Saturdays it stays closed."),
        ("li", "Visitors sign in at the front desk."),
        ("li", "badges are collected at the exit."),
    ])


def benefits_docx() -> bytes:
    return make_docx([
        ("h", "Employee benefits"),
        ("p", "Every employee may choose the benefits below once a year."),
        ("table", [("Benefit", "Amount", "Who gets it"),
                   ("Gym membership", "35 EUR a month", "everyone after probation"),
                   ("Language course", "600 EUR a year", "team leads"),
                   ("Bicycle lease", "20 EUR a month", "everyone")]),
        ("p", "Ask the people team to change your choice."),
    ])


def launch_pptx() -> bytes:
    return make_pptx([
        {"title": "Product launch", "lines": ["Spring release of the Kobza app"]},
        {"title": "Timeline", "lines": ["Beta in February", "Release in April"]},
        {"title": "Budget", "lines": ["Details are in the speaker notes"],
         "notes": "The marketing budget for the Kobza launch is 2 million hryvnias, approved by the board."},
    ])


def rivers_xlsx() -> bytes:
    return make_xlsx({
        "Cities": [("city", "founded"), ("Chernihiv", 907), ("Poltava", 1174)],
        "Rivers": [("river", "length (km)", "mouth"), ("Dnipro", 2201, "Black Sea"), ("Desna", 1130, "Dnipro"),
                   ("Southern Buh", 806, "Black Sea")],
    })


def data_csv() -> bytes:
    return ("city,population,oblast\nKyiv,2952301,Kyiv City\nLviv,717273,Lviv Oblast\n"
            "Odesa,1010537,Odesa Oblast\n").encode()


def garden_odt() -> bytes:
    return make_odt([
        ("h", "Community garden"),
        ("p", "The garden is shared by the residents of Sadova street."),
        ("li", "Water the beds in the evening."),
        ("table", [("Plant", "Bed", "Harvest month"), ("Tomato", "North", "August"),
                   ("Pumpkin", "South", "October"), ("Garlic", "East", "July")]),
    ])


def voyage_epub() -> bytes:
    return make_epub("The voyage", [
        ("Departure", "<p>The ship left Odesa at dawn, loaded with grain and letters.</p>"),
        ("The storm", "<p>On the third night a storm tore the foresail.</p>"),
        ("The captain", "<p>The captain of the Seagull was Mykola Hrab, a quiet man from Kherson.</p>"),
    ])


def access_docx() -> bytes:
    return make_docx([("h", "Access to the new warehouse"),
                      ("p", "The gate code at the Brovary warehouse is 4417. Change it every quarter.")])


def move_eml() -> bytes:
    return make_eml(
        "Warehouse move", "Olena Koval <olena@northwind.example>", "Tue, 03 Dec 2024 10:00:00 +0200",
        "Hello team,\n\nThe warehouse moves to Brovary on 14 March. Pack the archive boxes first.\n\nOlena\n",
        [("access.docx", access_docx(), DOCX_MIME), ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(200), "image/png")])


#: Every file of the test folder: its bytes.
FILES = {
    "handbook.docx": handbook_docx,
    "note_fr.txt": lambda: "Le bureau est fermé le dimanche. La cantine sert le déjeuner de midi à 14 h.\n".encode(),
    "data.csv": data_csv,
    "benefits.docx": benefits_docx,
    "launch.pptx": launch_pptx,
    "rivers.xlsx": rivers_xlsx,
    "garden.odt": garden_odt,
    "voyage.epub": voyage_epub,
    "move.eml": move_eml,
    "notes.xyz": lambda: b"a file of a type nobody reads",
    "broken.docx": lambda: b"PK\x03\x04 cut off in the middle of a download",
}
SKIPPED = {
    "notes.xyz": "has an unsupported type (.xyz)",
    "broken.docx": "is not a readable Word document (damaged zip file: File is not a zip file)",
}

#: (question, file, page label, accepted answers)
QUESTIONS = [
    ("When does the office open?", "handbook.docx", "", {"8:30"}),
    ("What is the population of Lviv?", "data.csv", "", {"717273"}),
    ("How much is the language course benefit?", "benefits.docx", "",
     {"600 EUR a year", "600 EUR", "600 EUR a year\n"}),
    ("What is the marketing budget for the Kobza launch?", "launch.pptx", "slide 3",
     {"2 million hryvnias", "2 million"}),
    ("How long is the Desna river in km?", "rivers.xlsx", "sheet 2", {"1130"}),
    ("In which month is the pumpkin harvested?", "garden.odt", "", {"October"}),
    ("Who was the captain of the Seagull?", "voyage.epub", "chapter 3", {"Mykola Hrab"}),
    ("When does the warehouse move to Brovary?", "move.eml", "message", {"14 March", "on 14 March"}),
    ("What is the gate code at the Brovary warehouse?", "move.eml", "attachment 1", {"4417"}),
]


def write_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, build in FILES.items():
        (folder / name).write_bytes(build())
    return folder


def text_of(data: bytes, name: str) -> tuple[str, tuple[int, ...]]:
    return extract_text(data, Path(name).suffix, name)


# ----------------------------------------------------------------------------- reading each format


def test_docx_reads_headings_paragraphs_lists_and_tables_in_order() -> None:
    text, pages = text_of(make_docx([
        ("h", "Plans"),
        ("p", "Pick a plan."),
        ("table", [("Plan", "Price", "Seats"), ("Basic", "10 EUR", "3"), ("Premium", "40 EUR", "25")]),
        ("li", "cancel any time"),
        ("table", [("Support", "by e-mail"), ("Hotline", "+380 44 000 0000")]),
        ("p", "Questions? Write to us."),
    ]), "plans.docx")
    assert text == ("Plans\nPick a plan.\n\n"
                    "Plan: Basic — Price: 10 EUR; Seats: 3.\n\nPlan: Premium — Price: 40 EUR; Seats: 25.\n"
                    "- cancel any time\n\n"
                    "Support: by e-mail\n\nHotline: +380 44 000 0000\n"
                    "Questions? Write to us.")
    assert pages == ()


def test_docx_reads_content_controls_tracked_insertions_and_text_boxes_once() -> None:
    """Templates keep text in content controls, reviewed documents in tracked insertions and
    layouts in text boxes (stored twice: a drawing and a fallback copy for old readers); deleted
    text is not read."""
    import io

    import docx
    from docx.oxml import parse_xml

    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    mc = 'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'
    wps = 'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape"'
    document = docx.Document()
    body = document.element.body
    body.insert(0, parse_xml(f'<w:sdt {w}><w:sdtContent><w:p><w:r><w:t>Contract number 77-B.</w:t></w:r></w:p>'
                             "</w:sdtContent></w:sdt>"))
    body.insert(1, parse_xml(f'<w:p {w}><w:r><w:t xml:space="preserve">The rent is </w:t></w:r>'
                             "<w:del><w:r><w:delText>900</w:delText></w:r></w:del>"
                             "<w:ins><w:r><w:t>950 EUR</w:t></w:r></w:ins><w:r><w:t>.</w:t></w:r></w:p>"))
    box = ("<w:txbxContent><w:p><w:r><w:t>Keys are at the reception.</w:t></w:r></w:p></w:txbxContent>")
    body.insert(2, parse_xml(
        f"<w:p {w} {mc} {wps}><w:r><w:t>See the box.</w:t></w:r><w:r><mc:AlternateContent>"
        f"<mc:Choice Requires=\"wps\"><w:drawing><wps:txbx>{box}</wps:txbx></w:drawing></mc:Choice>"
        f"<mc:Fallback><w:pict>{box}</w:pict></mc:Fallback></mc:AlternateContent></w:r></w:p>"))
    out = io.BytesIO()
    document.save(out)
    text, _ = text_of(out.getvalue(), "lease.docx")
    assert text == "Contract number 77-B.\nThe rent is 950 EUR.\nSee the box.\nKeys are at the reception."


def test_pptx_is_read_slide_by_slide_with_titles_tables_and_notes() -> None:
    text, pages = text_of(make_pptx([
        {"title": "Team", "table": [("Name", "Role", "City"), ("Oksana", "Designer", "Lviv")]},
        {},  # a slide without text keeps its number
        {"title": "Budget", "lines": ["See notes", "second line"], "notes": "Two million."},
    ]), "deck.pptx")
    slides = [text[start:end].strip() for start, end in zip(pages, [*pages[1:], len(text) + 2])]
    assert slides == ["Team\n\nName: Oksana — Role: Designer; City: Lviv.", "",
                      "Budget\nSee notes\nsecond line\n\nSpeaker notes:\nTwo million."]
    assert text.index("Two million") >= pages[2]


def test_xlsx_rows_read_as_sentences_named_by_the_header_sheet_by_sheet() -> None:
    import datetime as dt

    data = make_xlsx({
        "Cities": [("city", "population", "founded", "capital"), ("Kyiv", 2950000, dt.datetime(482, 1, 1), True),
                   (None, None, None, None), ("Lviv", 717273.0, dt.datetime(1256, 5, 1, 9, 30), False)],
        "Numbers": [(1, 2.5), (3, 0.1 + 0.2)],
    })
    text, pages = text_of(data, "cities.xlsx")
    assert text == ("Sheet: Cities\n\ncity: Kyiv — population: 2950000; founded: 0482-01-01; capital: TRUE.\n\n"
                    "city: Lviv — population: 717273; founded: 1256-05-01 09:30; capital: FALSE.\n\n"
                    "Sheet: Numbers\n\n1; 2.5\n\n3; 0.3")
    assert pages == (0, text.index("Sheet: Numbers"))


def test_csv_detects_the_delimiter_and_encoding() -> None:
    data = "ville;habitants\nLyon;522250\nSaint-\u00c9tienne;173089\n;\n".encode("cp1252")
    text, pages = text_of(data, "villes.csv")
    assert text == "ville: Lyon — habitants: 522250.\n\nville: Saint-\u00c9tienne — habitants: 173089."
    assert pages == ()
    text, _ = text_of(b"42,17\n43,18\n", "numbers.csv")  # no header row: plain values
    assert text == "42; 17\n\n43; 18"


def test_odt_reads_headings_lists_tables_and_spaces() -> None:
    from odf.opendocument import OpenDocumentText
    from odf.text import P, S

    text, _ = text_of(garden_odt(), "garden.odt")
    assert text == ("Community garden\nThe garden is shared by the residents of Sadova street.\n"
                    "- Water the beds in the evening.\n\n"
                    "Plant: Tomato — Bed: North; Harvest month: August.\n\n"
                    "Plant: Pumpkin — Bed: South; Harvest month: October.\n\n"
                    "Plant: Garlic — Bed: East; Harvest month: July.")
    document = OpenDocumentText()
    paragraph = P(text="three")
    paragraph.addElement(S(c=3))
    paragraph.addText("spaces")
    document.text.addElement(paragraph)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"spaces-{os.getpid()}.odt"
    try:
        document.save(str(path))
        assert text_of(path.read_bytes(), "spaces.odt")[0] == "three   spaces"
    finally:
        path.unlink(missing_ok=True)


def test_epub_is_read_chapter_by_chapter_in_reading_order_without_the_table_of_contents() -> None:
    text, pages = text_of(voyage_epub(), "voyage.epub")
    chapters = [text[start:end].strip() for start, end in zip(pages, [*pages[1:], len(text) + 2])]
    assert chapters == [
        "Departure\nThe ship left Odesa at dawn, loaded with grain and letters.",
        "The storm\nOn the third night a storm tore the foresail.",
        "The captain\nThe captain of the Seagull was Mykola Hrab, a quiet man from Kherson.",
    ]


def test_eml_reads_headers_body_and_attachments_as_pages_of_their_own(caplog: pytest.LogCaptureFixture) -> None:
    text, pages = text_of(move_eml(), "move.eml")
    message, attachment = text[: pages[1]].strip(), text[pages[1] :]
    assert message == (
        "Subject: Warehouse move\nFrom: Olena Koval <olena@northwind.example>\nTo: team@example.com\n"
        "Date: Tue, 03 Dec 2024 10:00:00 +0200\n"
        "Attachments: access.docx; photo.png (not read: .png not supported)\n\n"
        "Hello team,\n\nThe warehouse moves to Brovary on 14 March. Pack the archive boxes first.\n\nOlena")
    assert attachment == ("Attachment 1: access.docx\nAccess to the new warehouse\n"
                          "The gate code at the Brovary warehouse is 4417. Change it every quarter.")
    assert "move.eml: attachment photo.png not read: .png not supported" in caplog.text
    assert [page_label("inbox/move.eml", p) for p in (1, 2)] == ["message", "attachment 1"]


def test_an_eml_whose_html_body_is_read_as_visible_text() -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["Subject"], message["From"] = "Menu", "chef@example.com"
    message.set_content("<html><body><p>Borscht on <b>Monday</b></p><script>x()</script></body></html>",
                        subtype="html")
    text, pages = text_of(bytes(message), "menu.eml")
    assert text == "Subject: Menu\nFrom: chef@example.com\n\nBorscht on Monday"
    assert pages == ()


def test_an_eml_reads_text_and_html_attachments_too() -> None:
    """Text and HTML are read by `qa.documents`, not `qa.formats`; a mail's attachments of those
    types are read all the same (documents hands the mail reader its own reader)."""
    data = make_eml("Notes", "olena@northwind.example", "Tue, 03 Dec 2024 10:00:00 +0200", "See attached.", [
        ("gate.txt", b"The gate code is 4417.", "text/plain"),
        ("room.html", b"<p>Room <b>12</b> is free.</p><script>x()</script>", "text/html"),
        ("blank.md", b"  \n", "text/markdown"),
    ])
    text, pages = text_of(data, "notes.eml")
    assert "Attachments: gate.txt; room.html; blank.md (not read: is empty)\n" in text
    assert [text[start:].split("\n\n")[0] for start in pages[1:]] == [
        "Attachment 1: gate.txt\nThe gate code is 4417.", "Attachment 2: room.html\nRoom 12 is free."]


@pytest.mark.parametrize("name", [n for n in FILES if n not in SKIPPED and not n.endswith(".txt")])
def test_every_passage_is_the_document_text_at_its_offsets_and_stays_on_one_page(name: str) -> None:
    text, pages = text_of(FILES[name](), name)
    document = Document(f"docs/{name}", text, "hash", pages)
    passages = split_passages(document, target_words=12, overlap_words=4)
    assert passages
    for passage in passages:
        assert passage.text == document.text[passage.start : passage.end]
        assert passage.page == document.page_at(passage.end - 1)  # no passage runs over a page boundary


@pytest.mark.parametrize(("source", "page", "label"), [
    ("a/deck.pptx", 3, "slide 3"), ("a/b.XLSX", 2, "sheet 2"), ("book.epub", 1, "chapter 1"),
    ("x.pdf", 7, "page 7"), ("mail.eml", 1, "message"), ("mail.eml", 3, "attachment 2"),
    ("notes.docx", None, ""), ("data.csv", None, ""),
])
def test_page_labels_name_what_a_page_is(source: str, page: int | None, label: str) -> None:
    assert page_label(source, page) == label


def test_unreadable_files_of_each_kind_say_why() -> None:
    def reason(data: bytes, name: str) -> str:
        with pytest.raises(DocumentError) as caught:
            text_of(data, name)
        return caught.value.reason

    png = b"\x89PNG\r\n\x1a\n" + bytes(64)
    assert reason(png, "x.docx") == "is not a Word document (it looks like a PNG image)"
    assert reason(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "old.xlsx").startswith(
        "is not a Excel workbook: it is in the old binary Office format, or encrypted with a password")
    assert reason(make_docx([("p", "hi")]), "renamed.pptx").startswith("is not a readable PowerPoint presentation")
    assert reason(make_xlsx({"Empty": []}), "empty.xlsx") == "has no filled cells"
    assert reason(make_pptx([{}]), "blank.pptx") == "has no text on its slides or in their notes (only pictures?)"
    assert reason(b"just some words\n", "note.eml") == "is not an e-mail message (no From, To, Subject or Date header)"
    assert reason(make_docx([("p", "hi")]), "word.epub").startswith("is not a readable EPUB e-book")


# ----------------------------------------------------------------------------- every file accounted for


def test_files_of_other_types_are_listed_as_skipped_with_the_reason(tmp_path: Path) -> None:
    corpus = tmp_path / "docs"
    for name in ["a.docx", "b.xyz", "c/d.JPG", "README", ".hidden.xyz", "~$a.docx", "e.eml"]:
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_bytes(b"x")
    skipped: list = []
    found = [p.relative_to(corpus).as_posix() for p in list_corpus_files(corpus, skipped)]
    assert found == ["a.docx", "e.eml"]
    assert sorted(skipped) == [
        ("docs/README", "has an unsupported type: no suffix such as .txt or .docx"),
        ("docs/b.xyz", "has an unsupported type (.xyz)"),
        ("docs/c/d.JPG", "has an unsupported type (.jpg)"),
        ("docs/~$a.docx", "is an Office lock file (its document is open in Word or Excel), not a document"),
    ]


# ----------------------------------------------------------------------------- end to end, real models


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("formats") / "docs")


@pytest.fixture(scope="module")
def first_report(folder: Path):
    import qa

    return qa.build_index(folder, folder.parent / "index", progress=False)


@pytest.mark.slow
def test_every_file_is_indexed_or_skipped_with_its_reason(first_report) -> None:
    assert sorted(first_report.added) == sorted(f"docs/{n}" for n in FILES if n not in SKIPPED)
    assert sorted(first_report.skipped) == sorted((f"docs/{n}", r) for n, r in SKIPPED.items())
    assert "(9 added, 2 skipped)" in first_report.summary()


@pytest.mark.slow
@pytest.mark.parametrize(("question", "name", "label", "accepted"), QUESTIONS,
                         ids=[f"{q[1]}:{q[0]}" for q in QUESTIONS])
def test_the_answer_comes_from_the_right_file_and_page(
    folder: Path, first_report, question: str, name: str, label: str, accepted: set[str]
) -> None:
    import qa

    result = qa.answer(question, index_dir=folder.parent / "index", corpus_dir=folder)
    assert (result.text, result.source) in {(a, f"docs/{name}") for a in accepted}, (result.text, result.source,
                                                                                     result.score)
    assert page_label(result.source, result.page) == label
    document = load_document(folder / name, folder)
    assert document.text[result.start : result.end] == result.text
    assert document.text[result.context_start : result.context_start + len(result.context)] == result.context


@pytest.mark.slow
def test_sync_is_incremental_by_content_hash(folder: Path, first_report) -> None:
    import qa

    again = qa.build_index(folder, folder.parent / "index", progress=False)
    assert (again.added, again.changed, again.removed) == ([], [], [])
    assert len(again.unchanged) == 9 and sorted(again.skipped) == sorted(first_report.skipped)
    (folder / "launch.pptx").write_bytes(make_pptx([{"title": "Budget", "notes": "The budget is now 3 million."}]))
    changed = qa.build_index(folder, folder.parent / "index", progress=False)
    assert (changed.added, changed.changed, changed.removed) == ([], ["docs/launch.pptx"], [])
    (folder / "launch.pptx").write_bytes(launch_pptx())
    assert qa.build_index(folder, folder.parent / "index", progress=False).changed == ["docs/launch.pptx"]


@pytest.mark.slow
def test_qa_index_names_every_skipped_file_with_its_reason_and_counts_them(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "handbook.docx").write_bytes(handbook_docx())
    (docs / "notes.xyz").write_bytes(FILES["notes.xyz"]())
    (docs / "broken.docx").write_bytes(FILES["broken.docx"]())
    env = {**os.environ, "QA_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-m", "qa.cli", "index", str(docs), "--index-dir", str(tmp_path / "idx")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "1 document, 1 passage (1 added, 0 changed, 0 removed, 0 unchanged, 2 skipped)" in out.stdout
    assert f"skipped docs/notes.xyz: {SKIPPED['notes.xyz']}" in out.stderr
    assert f"skipped docs/broken.docx: {SKIPPED['broken.docx']}" in out.stderr
    assert "supported types: .csv .docx .eml .epub .htm .html .md .odt .pdf .pptx .txt .xlsx" in out.stderr


@pytest.mark.slow
def test_the_chat_lists_skipped_files_with_their_reasons_and_takes_the_new_formats(folder: Path, first_report) -> None:
    from qa.config import Settings
    from qa.pipeline import get_engine
    from qa.web import UPLOAD_TYPES, Backend, add_uploads, document_rows

    assert {".docx", ".pptx", ".xlsx", ".csv", ".odt", ".epub", ".eml"} <= set(UPLOAD_TYPES)
    settings = Settings.load(corpus_dir=str(folder), index_dir=str(folder.parent / "index"))
    backend = Backend(settings, get_engine(settings))
    backend.start_indexing()
    backend.wait_ready(600)
    rows = {row[0]: row for row in document_rows(backend.documents())}
    assert rows["docs/notes.xyz"][-1] == f"skipped: {SKIPPED['notes.xyz']}"
    assert rows["docs/broken.docx"][-1] == f"skipped: {SKIPPED['broken.docx']}"
    assert rows["docs/launch.pptx"][-1] == "indexed"

    upload = folder.parent / "menu.xlsx"
    upload.write_bytes(make_xlsx({"Menu": [("dish", "price"), ("Varenyky", "145 UAH")]}))
    notes = add_uploads(backend, [str(upload)])
    assert notes == ["Added menu.xlsx: you can ask about it now."], notes
    result = backend.engine.answer("How much do the varenyky cost?")
    assert (result.text, result.source, result.page) == ("145 UAH", "docs/uploads/menu.xlsx", 1)
    odd = folder.parent / "notes.xyz"
    odd.write_bytes(b"x")
    refused = add_uploads(backend, [str(odd)])
    assert len(refused) == 1 and refused[0].startswith("Not added: notes.xyz")
    assert "notes.xyz: .xyz not supported; use .csv, .docx, .eml, .epub, .htm, .html, .md, .odt, .pdf" in refused[0]
    backend.engine.remove_file("docs/uploads/menu.xlsx")


def test_uploads_of_each_format_are_checked_and_stored_atomically(tmp_path: Path) -> None:
    from format_builders import zip_bomb

    from qa.uploads import UploadError, save_upload

    for name in ("handbook.docx", "launch.pptx", "rivers.xlsx", "data.csv", "garden.odt", "voyage.epub", "move.eml"):
        data = FILES[name]()
        stored = save_upload(data, name, tmp_path, max_bytes=20 << 20)
        assert stored == tmp_path / name and stored.read_bytes() == data

    def refused(data: bytes, name: str) -> str:
        with pytest.raises(UploadError) as caught:
            save_upload(data, name, tmp_path / "refused", max_bytes=20 << 20)
        return str(caught.value)

    assert refused(b"\x89PNG\r\n\x1a\n" + bytes(64), "photo.docx") == (
        "photo.docx is not a Word document (it looks like a PNG image)")
    assert refused(zip_bomb(handbook_docx(), "word/document.xml", 128 << 20), "bomb.docx").startswith(
        "bomb.docx looks like a zip bomb: word/document.xml would unpack ")
    assert refused(b"\x00\x01\x02\x03" * 100, "data.csv") == (
        "data.csv looks like a binary file (unprintable characters), not text")
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").iterdir())
