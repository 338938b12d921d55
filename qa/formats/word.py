"""Word documents (.docx) through python-docx: paragraphs, headings, lists and tables in the order
they appear, including content controls, tracked insertions and text boxes.

python-docx gives the document model (parts, styles, tables); a paragraph's text is gathered
from all of its runs, because `Paragraph.text` leaves out runs inside content controls, tracked
insertions and smart tags, where templates and reviewed documents keep much of their text.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from qa.errors import DocumentError
from qa.formats.common import TextBuilder, check_zip, one_line, table_lines
from qa.formats.limits import Limits

if TYPE_CHECKING:
    from lxml.etree import _Element

KIND = "Word document"
#: Text boxes inside text boxes...: deeper ones are not read.
_MAX_NESTING = 8


def docx_text(data: bytes, name: str, limits: Limits) -> tuple[str, tuple[int, ...]]:
    """The document body's text, one line per paragraph and one sentence per table row."""
    check_zip(data, name, KIND, limits)
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (ValueError, KeyError, PackageNotFoundError, SyntaxError) as exc:  # lxml's XMLSyntaxError too
        raise DocumentError(name, f"is not a readable {KIND} ({exc})") from exc
    reader = _Reader(document, TextBuilder(name, limits.max_chars))
    reader.blocks(document.element.body, depth=0)
    if reader.out.empty:
        raise DocumentError(name, "has no text (only images or empty pages?)")
    return reader.out.build(paged=False)


class _Reader:
    """Walks a document's XML in order, writing each paragraph and table row to `out`."""

    def __init__(self, document: Any, out: TextBuilder) -> None:
        from docx.oxml.ns import qn

        self.out = out
        self.tags = {tag: qn(tag) for tag in (
            "w:p", "w:tbl", "w:sdt", "w:sdtContent", "w:r", "w:pPr", "w:numPr", "w:pStyle", "w:val",
            "w:txbxContent", "w:tr", "w:tc", "w:tcPr", "w:vMerge", "w:gridSpan", "w:customXml",
        )}
        self.fallback = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
        self.list_styles = {s.style_id for s in document.styles
                            if s.name and s.name.lower().startswith(("list", "bullet"))}

    def blocks(self, parent: _Element, depth: int) -> None:
        """Paragraphs and tables of a body or text box, in document order."""
        for child in self._block_children(parent):
            if child.tag == self.tags["w:p"]:
                self.paragraph(child, depth)
            else:
                for line in table_lines(self.table_rows(child)):
                    self.out.line(line, gap=True)

    def _block_children(self, parent: _Element) -> Iterator[_Element]:
        """w:p and w:tbl children, looking through block-level content controls and custom XML."""
        for child in parent:
            if child.tag in (self.tags["w:p"], self.tags["w:tbl"]):
                yield child
            elif child.tag in (self.tags["w:sdt"], self.tags["w:customXml"]):
                content = child.find(self.tags["w:sdtContent"])
                yield from self._block_children(content if content is not None else child)

    def paragraph(self, p: _Element, depth: int) -> None:
        text = self.paragraph_text(p).strip()
        if text:
            self.out.line(f"- {text}" if self._is_list_item(p) else text)
        for box in self._own(p, self.tags["w:txbxContent"]):
            if depth < _MAX_NESTING:
                self.blocks(box, depth + 1)

    def paragraph_text(self, p: _Element) -> str:
        return "".join(r.text for r in self._own(p, self.tags["w:r"]))

    def _own(self, p: _Element, tag: str) -> Iterator[Any]:
        """Descendants `tag` of paragraph `p` that belong to it: not to a paragraph nested in it
        (a text box's), and not to the fallback copy Word keeps of drawings for old readers."""
        for element in p.iter(tag):
            owner = element.getparent()
            while owner is not None and owner is not p:
                if owner.tag == self.tags["w:p"] or owner.tag == self.fallback:
                    break
                owner = owner.getparent()
            if owner is p:
                yield element

    def _is_list_item(self, p: _Element) -> bool:
        ppr = p.find(self.tags["w:pPr"])
        if ppr is None:
            return False
        if ppr.find(self.tags["w:numPr"]) is not None:
            return True
        style = ppr.find(self.tags["w:pStyle"])
        return style is not None and style.get(self.tags["w:val"]) in self.list_styles

    def table_rows(self, table: _Element) -> list[list[str]]:
        """Each row's cells as text (a table inside a cell is part of that cell's text). A cell
        spanning columns counts once; a cell continuing a vertical merge repeats the text above
        it, so every row names its value."""
        rows: list[list[str]] = []
        above: dict[int, str] = {}
        for tr in table.iter(self.tags["w:tr"]):
            if _nearest(tr.getparent(), self.tags["w:tbl"]) is not table:
                continue  # a row of a table nested in a cell
            cells, column = [], 0
            for tc in tr.iter(self.tags["w:tc"]):
                if _nearest(tc.getparent(), self.tags["w:tr"]) is not tr:
                    continue
                text = above.get(column, "") if self._continues_merge(tc) else one_line(self.text_of(tc))
                above[column] = text
                cells.append(text)
                column += self._grid_span(tc)
            rows.append(cells)
        return rows

    def text_of(self, cell: _Element) -> str:
        """All the text in a cell: its paragraphs, those of tables and text boxes inside it."""
        texts = (self.paragraph_text(p).strip() for p in cell.iter(self.tags["w:p"])
                 if not self._in_fallback(p, cell))
        return " ".join(t for t in texts if t)

    def _in_fallback(self, element: _Element, top: _Element) -> bool:
        while element is not None and element is not top:
            if element.tag == self.fallback:
                return True
            element = element.getparent()
        return False

    def _grid_span(self, tc: _Element) -> int:
        props = tc.find(self.tags["w:tcPr"])
        span = props.find(self.tags["w:gridSpan"]) if props is not None else None
        try:
            return max(1, int(span.get(self.tags["w:val"]))) if span is not None else 1
        except (TypeError, ValueError):
            return 1

    def _continues_merge(self, tc: _Element) -> bool:
        props = tc.find(self.tags["w:tcPr"])
        merge = props.find(self.tags["w:vMerge"]) if props is not None else None
        return merge is not None and merge.get(self.tags["w:val"], "continue") == "continue"


def _nearest(element: _Element | None, tag: str) -> _Element | None:
    """The closest ancestor-or-self of `element` with `tag`."""
    while element is not None and element.tag != tag:
        element = element.getparent()
    return element
