"""The documents people keep besides text and PDF: Word, PowerPoint, spreadsheets, OpenDocument,
e-books and mail, each read by a library chosen for it (see the README's formats table).

`qa.documents.extract_text` hands these suffixes to `extract()`, which returns the text and,
for formats with pages, where each page starts: a slide, a sheet, a chapter or a mail's
attachment is a "page" as a PDF page is, and `page_label()` names it ("slide 3"). Every reader
works under `Limits`, so a hostile file costs bounded work and is refused with a reason.

Nothing here imports `qa.documents` (which imports this package): the readers share its pieces
through `qa.errors`, `qa.text_decoding` and `qa.html_text`, and a mail's attachments in the
types `qa.documents` reads (text, HTML, PDF) are read with the `InnerFiles` it passes in.

This module imports nothing heavy: each format's module (and its library) loads on first use.
"""

from __future__ import annotations

import importlib
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from qa.errors import DocumentError
from qa.formats.limits import DEFAULT_LIMITS, Limits

__all__ = ["DEFAULT_LIMITS", "FORMATS", "FORMAT_SUFFIXES", "Format", "InnerFiles", "Limits", "extract", "page_label",
           "page_unit"]


@dataclass(frozen=True)
class Format:
    """A file type: what it is called, which module reads it and what its "pages" are."""

    suffix: str
    kind: str
    module: str
    function: str
    #: What a page is called ("slide"), or "" for formats without pages.
    unit: str = ""
    #: Whether the file holds other files (a mail's attachments); its reader then also takes the
    #: `InnerFiles` that reads them.
    holds_files: bool = False


FORMATS: dict[str, Format] = {f.suffix: f for f in (
    Format(".docx", "Word document", "qa.formats.word", "docx_text"),
    Format(".pptx", "PowerPoint presentation", "qa.formats.slides", "pptx_text", "slide"),
    Format(".xlsx", "Excel workbook", "qa.formats.sheets", "xlsx_text", "sheet"),
    Format(".csv", "CSV file", "qa.formats.sheets", "csv_text"),
    Format(".odt", "OpenDocument text", "qa.formats.opendocument", "odt_text"),
    Format(".epub", "EPUB e-book", "qa.formats.ebook", "epub_text", "chapter"),
    Format(".eml", "e-mail message", "qa.formats.mail", "eml_text", "attachment", holds_files=True),
)}
FORMAT_SUFFIXES = frozenset(FORMATS)

Extractor = Callable[[bytes, str, Limits], tuple[str, tuple[int, ...]]]
#: (bytes, suffix, name, limits) -> (text, page starts); raises DocumentError.
FileReader = Callable[[bytes, str, str, Limits], tuple[str, tuple[int, ...]]]


@dataclass(frozen=True)
class InnerFiles:
    """How a file's inner files (a mail's attachments) are read: the suffixes that are read at all
    (others are named but never decoded) and the reader for them."""

    suffixes: frozenset[str]
    read: FileReader


def extract(
    data: bytes, suffix: str, name: str, limits: Limits = DEFAULT_LIMITS, *, inner: InnerFiles | None = None
) -> tuple[str, tuple[int, ...]]:
    """The text of a file in one of FORMATS, and where each of its pages starts (empty when the
    format has none). Raises DocumentError naming the file and the reason it cannot be read.

    `inner` reads the files a mail holds; by default only those in FORMATS (`qa.documents` passes
    a reader for every type it supports).
    """
    fmt = FORMATS[suffix]
    reader: Callable[..., tuple[str, tuple[int, ...]]] = getattr(importlib.import_module(fmt.module), fmt.function)
    try:
        if fmt.holds_files:
            return reader(data, name, limits, inner or InnerFiles(FORMAT_SUFFIXES, extract))
        return reader(data, name, limits)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a member that does not unpack as it claims
        raise DocumentError(name, f"is not a readable {fmt.kind} (damaged zip file: {exc})") from exc


def page_unit(source: str | None) -> str:
    """What a page of this document is called: "slide" for a .pptx, "page" for a PDF."""
    suffix = PurePosixPath(source or "").suffix.lower()
    fmt = FORMATS.get(suffix)
    return fmt.unit if fmt and fmt.unit else "page"


def page_label(source: str | None, page: int | None) -> str:
    """"slide 3", "sheet 2", "chapter 4", "page 7"; for mail, "message" or "attachment 1"
    (page 1 is the message itself); "" without a page."""
    if not page:
        return ""
    unit = page_unit(source)
    if unit == "attachment":
        return "message" if page == 1 else f"attachment {page - 1}"
    return f"{unit} {page}"
