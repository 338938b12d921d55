"""PowerPoint presentations (.pptx) through python-pptx: slide by slide, the title first, then the
text boxes, tables and groups from top to bottom and left to right, then the speaker notes.

Each slide is a page, so an answer's source reads "deck.pptx, slide 3". A slide without text
keeps its number, as a blank PDF page does.
"""

from __future__ import annotations

import io
from typing import Any

from qa.errors import DocumentError
from qa.formats.common import TextBuilder, check_zip, one_line, table_lines
from qa.formats.limits import Limits

KIND = "PowerPoint presentation"
#: Groups inside groups...: deeper ones are not read.
_MAX_GROUP_DEPTH = 16
NOTES_HEADING = "Speaker notes:"


def pptx_text(data: bytes, name: str, limits: Limits) -> tuple[str, tuple[int, ...]]:
    """Every slide's text and notes, one page per slide."""
    check_zip(data, name, KIND, limits)
    from pptx import Presentation
    from pptx.exc import PackageNotFoundError

    try:
        presentation = Presentation(io.BytesIO(data))
        slides = list(presentation.slides)
    except (ValueError, KeyError, PackageNotFoundError, SyntaxError) as exc:  # lxml's XMLSyntaxError too
        raise DocumentError(name, f"is not a readable {KIND} ({exc})") from exc
    if not slides:
        raise DocumentError(name, "has no slides")
    out = TextBuilder(name, limits.max_chars)
    for slide in slides:
        out.page()
        title = slide.shapes.title
        if title is not None and title.has_text_frame:
            out.line(one_line(title.text_frame.text))
        for shape in _reading_order(slide.shapes):
            if title is None or shape.shape_id != title.shape_id:
                _shape_text(shape, out, 0)
        _notes(slide, out)
    if out.empty:
        raise DocumentError(name, "has no text on its slides or in their notes (only pictures?)")
    return out.build()


def _reading_order(shapes: Any) -> list[Any]:
    """Top to bottom, then left to right; shapes without a position (placeholders that inherit
    it) keep their order after the placed ones."""
    placed = [s for s in shapes if s.top is not None and s.left is not None]
    unplaced = [s for s in shapes if s.top is None or s.left is None]
    return sorted(placed, key=lambda s: (s.top, s.left)) + unplaced


def _shape_text(shape: Any, out: TextBuilder, depth: int) -> None:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
        if depth < _MAX_GROUP_DEPTH:
            for inner in _reading_order(shape.shapes):
                _shape_text(inner, out, depth + 1)
        return
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = [[one_line(cell.text) for cell in _own_cells(row)] for row in shape.table.rows]
        for line in table_lines(rows):
            out.line(line, gap=True)
        return
    if shape.has_text_frame:
        for paragraph in shape.text_frame.paragraphs:
            out.line(paragraph.text)


def _own_cells(row: Any) -> list[Any]:
    """A row's cells, leaving out those a merged cell spreads over (they repeat nothing)."""
    return [cell for cell in row.cells if not cell.is_spanned]


def _notes(slide: Any, out: TextBuilder) -> None:
    if not slide.has_notes_slide:  # asking for notes_slide would create an empty one
        return
    frame = slide.notes_slide.notes_text_frame
    text = frame.text if frame is not None else ""
    if text.strip():
        out.line(NOTES_HEADING, gap=True)
        out.line(text)
