"""Spreadsheets: Excel workbooks (.xlsx) through openpyxl and CSV files through the standard
`csv` module. Each row becomes a sentence that names its cells with the header row's names,
"city: Lviv — population: 717273.", so a question about one row finds and reads that row.

A workbook is read sheet by sheet (a sheet is a page: "data.xlsx, sheet 2"), as a stream
(openpyxl's read-only mode), skipping empty rows; a run of `max_empty_rows` empty rows ends a
sheet (formatting applied to a whole column makes a million of them), and a workbook with more
than `max_cells` cells is refused.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import logging
import threading
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

from qa.errors import DocumentError
from qa.formats.common import TextBuilder, is_label, one_line, open_zip, row_sentence
from qa.formats.limits import Limits
from qa.text_decoding import decode_text

logger = logging.getLogger(__name__)

XLSX = "Excel workbook"
_SNIFF_CHARS = 64 * 1024


# --------------------------------------------------------------------------- Excel


def xlsx_text(data: bytes, name: str, limits: Limits) -> tuple[str, tuple[int, ...]]:
    """Each sheet's name, then its rows as sentences; one page per sheet."""
    open_zip(data, name, XLSX, limits, streamed=lambda member: member.startswith("xl/worksheets/")).close()
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        with warnings.catch_warnings(), _sheets_sized_by_their_rows():
            warnings.simplefilter("ignore")  # "unknown extension", "no default style": not the user's concern
            workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except (InvalidFileException, ValueError, KeyError, TypeError, SyntaxError) as exc:
        raise DocumentError(name, f"is not a readable {XLSX} ({exc})") from exc
    out = TextBuilder(name, limits.max_chars)
    budget = _CellBudget(name, limits.max_cells)
    try:
        for sheet in workbook.worksheets:
            out.page()
            out.line(f"Sheet: {one_line(sheet.title)}")
            if hasattr(sheet, "reset_dimensions"):
                sheet.reset_dimensions()  # size rows by their cells, not by what the sheet claims
            rows = _xlsx_rows(sheet, budget, limits.max_empty_rows, name)
            _write_rows(rows, out)
    except (ValueError, KeyError, TypeError, SyntaxError) as exc:  # a damaged sheet
        raise DocumentError(name, f"is not a readable {XLSX} ({type(exc).__name__}: {exc})") from exc
    finally:
        workbook.close()
    if not budget.filled:
        raise DocumentError(name, "has no filled cells")
    return out.build()


_LOADING = threading.Lock()


@contextlib.contextmanager
def _sheets_sized_by_their_rows() -> Iterator[None]:
    """Load a workbook without openpyxl's sizing pass. To size a sheet that has no <dimension>
    element (openpyxl's own write-only mode leaves it out), openpyxl parses the whole sheet
    before a row is read: five seconds on two cores for a sheet of a million empty rows, which
    the reading below stops after 10,000. The rows are sized by their cells here anyway
    (`reset_dimensions`), so for this load the sheets skip that pass; the lock keeps the swap
    to one load at a time."""
    import openpyxl.reader.excel as excel
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

    class SizedByRows(ReadOnlyWorksheet):
        def _get_size(self) -> None:
            """Nothing to do: rows are sized by their cells."""

    with _LOADING:
        original = excel.ReadOnlyWorksheet
        excel.ReadOnlyWorksheet = SizedByRows
        try:
            yield
        finally:
            excel.ReadOnlyWorksheet = original


class _CellBudget:
    def __init__(self, name: str, limit: int) -> None:
        self.name, self.limit, self.used, self.filled = name, limit, 0, 0

    def spend(self, cells: int) -> None:
        self.used += cells
        if self.used > self.limit:
            raise DocumentError(self.name, f"has more than {self.limit:,} cells, the limit for one file; "
                                           "split it into smaller files")


def _xlsx_rows(sheet: Any, budget: _CellBudget, max_empty: int, name: str) -> Iterator[list[str]]:
    """A sheet's rows as cell texts, empty ones skipped, until a run of `max_empty` empty rows."""
    empty_run = 0
    for number, values in enumerate(sheet.iter_rows(values_only=True), 1):
        budget.spend(len(values) or 1)
        cells = [_cell_text(v) for v in values] if values else []
        if not any(cells):
            empty_run += 1
            if empty_run >= max_empty:
                logger.warning("%s: sheet %r: stopped reading at row %d after %d empty rows in a row; "
                               "anything below is not indexed", name, sheet.title, number, empty_run)
                return
            continue
        empty_run = 0
        budget.filled += 1
        yield cells


def _cell_text(value: Any) -> str:
    """A cell's value as people read it: 2950000 not 2950000.0, dates without midnight."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes" if value.second == 0 else "seconds")
    if isinstance(value, dt.time):
        return value.isoformat(timespec="minutes" if value.second == 0 else "seconds")
    if isinstance(value, (dt.date, dt.timedelta)):
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    return one_line(str(value))


# --------------------------------------------------------------------------- CSV


def csv_text(data: bytes, name: str, limits: Limits) -> tuple[str, tuple[int, ...]]:
    """The rows as sentences named by the header row; the delimiter (, ; tab |) is detected."""
    text = decode_text(data, name)
    dialect = _dialect(text[:_SNIFF_CHARS])
    out = TextBuilder(name, limits.max_chars)
    rows = csv.reader(io.StringIO(text, newline=""), dialect)
    filled = 0

    def cells() -> Iterator[list[str]]:
        nonlocal filled
        try:
            for row in rows:
                values = [one_line(v) if v else "" for v in row] if any(row) else []
                if any(values):
                    filled += 1
                    yield values
        except csv.Error as exc:
            raise DocumentError(name, f"is not a readable CSV file (line {rows.line_num}: {exc})") from exc

    _write_rows(cells(), out)
    if not filled:
        raise DocumentError(name, "has no filled cells")
    return out.build(paged=False)


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:  # one column, or too little to tell
        return csv.excel


# --------------------------------------------------------------------------- both


def _write_rows(rows: Iterable[list[str]], out: TextBuilder) -> None:
    """One sentence per row. The first filled row names the columns when it looks like a
    header (labels, not numbers or amounts); without one, a row is its values joined by "; "."""
    header: list[str] | None = None
    pending_header = False
    for row in rows:
        if header is None:
            header = row if all(is_label(cell) for cell in row if cell) else []
            if header:
                pending_header = True
                continue
        pending_header = False
        out.line(row_sentence(header, row) if header else "; ".join(cell for cell in row if cell), gap=True)
    if pending_header and header:  # a sheet that is only a header row still says what it holds
        out.line("; ".join(cell for cell in header if cell), gap=True)
