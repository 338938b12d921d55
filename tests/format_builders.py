"""Real office files, e-books and mail built by the libraries people make them with (no checked-in
binaries): python-docx, python-pptx, openpyxl, odfpy, ebooklib and the `email` package."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from email.message import EmailMessage

#: A block of a document: ("h", text), ("p", text), ("li", text) or ("table", rows).
Block = tuple


def make_docx(blocks: Sequence[Block]) -> bytes:
    import docx

    document = docx.Document()
    for kind, content in blocks:
        if kind == "h":
            document.add_heading(content, 1)
        elif kind == "p":
            document.add_paragraph(content)
        elif kind == "li":
            document.add_paragraph(content, style="List Bullet")
        elif kind == "table":
            table = document.add_table(rows=len(content), cols=len(content[0]))
            for i, row in enumerate(content):
                for j, value in enumerate(row):
                    table.cell(i, j).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_pptx(slides: Sequence[dict]) -> bytes:
    """Each slide: {"title": ..., "lines": [...], "notes": ..., "table": rows} (all optional)."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for spec in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[5])  # title only
        if spec.get("title"):
            slide.shapes.title.text = spec["title"]
        if spec.get("lines"):
            box = slide.shapes.add_textbox(Inches(1), Inches(2), Inches(8), Inches(2)).text_frame
            box.text = spec["lines"][0]
            for line in spec["lines"][1:]:
                box.add_paragraph().text = line
        if spec.get("table"):
            rows = spec["table"]
            shape = slide.shapes.add_table(len(rows), len(rows[0]), Inches(1), Inches(4.5), Inches(8), Inches(2))
            for i, row in enumerate(rows):
                for j, value in enumerate(row):
                    shape.table.cell(i, j).text = value
        if spec.get("notes"):
            slide.notes_slide.notes_text_frame.text = spec["notes"]
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def make_xlsx(sheets: dict[str, Sequence[Sequence]]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def make_odt(blocks: Sequence[Block]) -> bytes:
    from odf.opendocument import OpenDocumentText
    from odf.table import Table, TableCell, TableColumn, TableRow
    from odf.text import H, List, ListItem, P

    document = OpenDocumentText()
    for kind, content in blocks:
        if kind == "h":
            document.text.addElement(H(outlinelevel=1, text=content))
        elif kind == "p":
            document.text.addElement(P(text=content))
        elif kind == "li":
            items = List()
            item = ListItem()
            item.addElement(P(text=content))
            items.addElement(item)
            document.text.addElement(items)
        elif kind == "table":
            table = Table(name=f"Table{len(document.text.childNodes)}")
            table.addElement(TableColumn(numbercolumnsrepeated=len(content[0])))
            for row in content:
                table_row = TableRow()
                for value in row:
                    cell = TableCell()
                    cell.addElement(P(text=value))
                    table_row.addElement(cell)
                table.addElement(table_row)
            document.text.addElement(table)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_epub(title: str, chapters: Sequence[tuple[str, str]]) -> bytes:
    """`chapters`: (title, HTML body) in reading order; the navigation page comes first, as
    ebooklib's own examples put it."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier(f"test-{title}")
    book.set_title(title)
    book.set_language("en")
    items = []
    for number, (heading, body) in enumerate(chapters, 1):
        chapter = epub.EpubHtml(title=heading, file_name=f"chapter{number}.xhtml", lang="en")
        chapter.content = f"<h1>{heading}</h1>{body}"
        book.add_item(chapter)
        items.append(chapter)
    book.toc = items
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    out = io.BytesIO()
    epub.write_epub(out, book)
    return out.getvalue()


def make_eml(subject: str, sender: str, date: str, body: str,
             attachments: Sequence[tuple[str, bytes, str]] = (), to: str = "team@example.com") -> bytes:
    """`attachments`: (file name, bytes, MIME type)."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message["Date"] = date
    message.set_content(body)
    for filename, data, mime in attachments:
        if mime == "message/rfc822":  # attached as mail programs attach mail: the message itself
            import email
            from email import policy

            message.add_attachment(email.message_from_bytes(data, policy=policy.default), filename=filename)
            continue
        maintype, subtype = mime.split("/", 1)
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return bytes(message)


def zip_bomb(data: bytes, member: str, extra_bytes: int) -> bytes:
    """A copy of the zip file `data` whose `member` is padded with `extra_bytes` of spaces before
    its last tag: still well-formed, but unpacking about 1,000 times its packed size."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            body = source.read(info.filename)
            if info.filename != member:
                target.writestr(info, body)
                continue
            padded = zipfile.ZipInfo(info.filename)
            padded.compress_type = zipfile.ZIP_DEFLATED
            with target.open(padded, "w", force_zip64=True) as stream:
                cut = body.rindex(b"<")
                stream.write(body[:cut])
                block = b" " * (1 << 20)
                for _ in range(extra_bytes >> 20):
                    stream.write(block)
                stream.write(body[cut:])
    return out.getvalue()


def understate_size(data: bytes, member: str, claimed: int) -> bytes:
    """The zip file `data` with `member`'s unpacked size claimed as `claimed` bytes in both its
    local header and the central directory: a bomb that lies about its size."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(member)
    raw = bytearray(data)
    size = claimed.to_bytes(4, "little")
    raw[info.header_offset + 22 : info.header_offset + 26] = size  # local header: uncompressed size
    position = _central_directory_start(data)
    while raw[position : position + 4] == b"PK\x01\x02":
        name_length, extra, comment = (int.from_bytes(raw[position + i : position + i + 2], "little")
                                       for i in (28, 30, 32))
        if raw[position + 46 : position + 46 + name_length].decode() == member:
            raw[position + 24 : position + 28] = size
            return bytes(raw)
        position += 46 + name_length + extra + comment
    raise ValueError(f"{member} is not in the central directory")


def _central_directory_start(data: bytes) -> int:
    end = data.rindex(b"PK\x05\x06")
    return int.from_bytes(data[end + 16 : end + 20], "little")
