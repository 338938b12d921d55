"""OpenDocument text (.odt, LibreOffice Writer) through `zipfile` and lxml: headings, paragraphs,
lists, tables, sections, text boxes and footnotes in reading order, from `content.xml`.

Not odfpy: it builds a pure-Python DOM (about ten times lxml's time and memory) and its text
helper expands `<text:s text:c="1000000000"/>` into a billion spaces. lxml (already here for
python-docx) parses with entities off and its default depth limit, and the walk below caps every
repeat count, so a hostile file costs bounded work.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from qa.errors import DocumentError
from qa.formats.common import TextBuilder, one_line, open_zip, table_lines
from qa.formats.limits import Limits

if TYPE_CHECKING:
    from lxml.etree import _Element

KIND = "OpenDocument text"
TEXT_MIMETYPE = b"application/vnd.oasis.opendocument.text"

_NS = {
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "text": "urn:oasis:names:tc:opendocument:xmlns:text:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
}


def _q(name: str) -> str:
    prefix, local = name.split(":")
    return f"{{{_NS[prefix]}}}{local}"


P, H, LIST = _q("text:p"), _q("text:h"), _q("text:list")
LIST_ITEM, LIST_HEADER = _q("text:list-item"), _q("text:list-header")
TABLE, ROW = _q("table:table"), _q("table:table-row")
CELL, COVERED = _q("table:table-cell"), _q("table:covered-table-cell")
SPACE, TAB, BREAK = _q("text:s"), _q("text:tab"), _q("text:line-break")
NOTE, NOTE_BODY, FRAME, TEXT_BOX = _q("text:note"), _q("text:note-body"), _q("draw:frame"), _q("draw:text-box")
#: Containers whose text is not the document's own reading text: deleted text kept for change
#: tracking, comments, and generated indexes that repeat the headings.
_SKIP = frozenset(_q(n) for n in (
    "text:tracked-changes", "office:annotation", "office:annotation-end", "text:table-of-content",
    "text:alphabetical-index", "text:illustration-index", "text:table-index", "text:object-index",
    "text:user-index", "text:bibliography", "text:sequence-decls", "text:variable-decls",
    "text:user-field-decls", "office:forms", "text:note-citation", "text:change", "text:change-start",
    "text:change-end", "table:table-header-columns", "table:table-columns", "table:table-column",
))
_ROW_GROUPS = frozenset(_q(n) for n in ("table:table-header-rows", "table:table-rows", "table:table-row-group"))
#: A cell repeated across columns is kept up to this many times; LibreOffice writes empty cells
#: repeated to column 1024, and a hostile file may claim billions.
_MAX_REPEAT = 1024
_MAX_SPACES = 64
_WHITESPACE = re.compile(r"[ \t\r\n]+")


def odt_text(data: bytes, name: str, limits: Limits) -> tuple[str, tuple[int, ...]]:
    """The body text of a Writer document, one line per paragraph, one sentence per table row."""
    from lxml import etree

    with open_zip(data, name, KIND, limits) as archive:
        names = set(archive.namelist())
        mimetype = archive.read("mimetype").strip() if "mimetype" in names else TEXT_MIMETYPE
        if not mimetype.startswith(TEXT_MIMETYPE) or "content.xml" not in names:
            what = mimetype.decode("ascii", "replace") if mimetype else "no content.xml"
            raise DocumentError(name, f"is not an {KIND} document ({what})")
        content = archive.read("content.xml")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as exc:
        raise DocumentError(name, f"is not a readable {KIND} (content.xml: {exc})") from exc
    body = root.find(f"{_q('office:body')}/{_q('office:text')}")
    if body is None:
        raise DocumentError(name, f"is not an {KIND} document (no text body)")
    out = TextBuilder(name, limits.max_chars)
    _blocks(body, out, list_item=False)
    if out.empty:
        raise DocumentError(name, "has no text")
    return out.build(paged=False)


def _blocks(parent: _Element, out: TextBuilder, list_item: bool) -> None:
    for child in parent:
        tag = child.tag
        if tag in (P, H):
            _paragraph(child, out, bullet=list_item)
            list_item = False  # only an item's first paragraph gets the bullet
        elif tag == LIST:
            for item in child:
                if item.tag in (LIST_ITEM, LIST_HEADER):
                    _blocks(item, out, list_item=item.tag == LIST_ITEM)
        elif tag == TABLE:
            for line in table_lines(_table_rows(child)):
                out.line(line, gap=True)
        elif tag not in _SKIP and isinstance(tag, str):
            _blocks(child, out, list_item)  # sections, divisions and other containers


def _paragraph(p: _Element, out: TextBuilder, bullet: bool) -> None:
    parts: list[str] = []
    inside: list[_Element] = []  # text boxes and footnotes: read after the paragraph
    _inline(p, parts, inside)
    text = "".join(parts).strip()
    if text:
        out.line(f"- {text}" if bullet else text)
    for element in inside:
        _blocks(element, out, list_item=False)


def _inline(element: _Element, parts: list[str], inside: list[_Element]) -> None:
    if element.text:
        parts.append(_WHITESPACE.sub(" ", element.text))
    for child in element:
        tag = child.tag
        if tag == SPACE:
            parts.append(" " * _count(child, "text:c", _MAX_SPACES))
        elif tag == TAB:
            parts.append("\t")
        elif tag == BREAK:
            parts.append("\n")
        elif tag == NOTE:
            inside.extend(child.iter(NOTE_BODY))
        elif tag == FRAME:
            inside.extend(child.iter(TEXT_BOX))
        elif tag not in _SKIP and isinstance(tag, str):
            _inline(child, parts, inside)
        if child.tail:
            parts.append(_WHITESPACE.sub(" ", child.tail))


def _table_rows(table: _Element) -> list[list[str]]:
    rows: list[list[str]] = []
    for row in _rows(table):
        cells: list[str] = []
        for cell in row:
            if cell.tag not in (CELL, COVERED):
                continue
            repeat = _count(cell, "table:number-columns-repeated", _MAX_REPEAT)
            text = one_line(" ".join(_cell_paragraphs(cell))) if cell.tag == CELL else ""
            cells.extend([text] * min(repeat, _MAX_REPEAT - len(cells)))
            if len(cells) >= _MAX_REPEAT:
                break
        while cells and not cells[-1]:
            cells.pop()
        rows.append(cells)  # a row repeated many times is one row of text: its facts once
    return rows


def _rows(table: _Element) -> list[_Element]:
    rows = []
    for child in table:
        if child.tag == ROW:
            rows.append(child)
        elif child.tag in _ROW_GROUPS:
            rows.extend(_rows(child))
    return rows


def _cell_paragraphs(cell: _Element) -> list[str]:
    texts = []
    for p in cell.iter(P, H):
        parts: list[str] = []
        _inline(p, parts, [])
        texts.append("".join(parts))
    return texts


def _count(element: _Element, attribute: str, cap: int) -> int:
    try:
        return max(1, min(int(element.get(_q(attribute), "1")), cap))
    except ValueError:
        return 1
