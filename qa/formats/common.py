"""What every format shares: the bounds on hostile input, the zip checks, and building the text.

Office documents, spreadsheets and e-books are zip files, and a zip file can claim gigabytes
from a few kilobytes. Every member's size is checked from the central directory before a
library opens the file; Python's `zipfile`, which all of these libraries use, never unpacks a
member past its declared size, so the check bounds the work for real.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable

from qa.errors import DocumentError, TooMuchTextError, format_size
from qa.formats.limits import Limits
from qa.text_decoding import binary_kind

#: C0 controls that never belong in text (tab and newline are kept; vertical tab and form feed,
#: which Word and PowerPoint use as soft line breaks, become newlines).
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_SOFT_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\u2028\u2029]")
_BLANK_RUNS = re.compile(r"\n[^\S\n]*\n(?:[^\S\n]*\n)+")
_SPACES = re.compile(r"[^\S\n]+")


def clean_text(text: str) -> str:
    """Newlines for the soft breaks office formats use, and no control characters."""
    return _CONTROLS.sub("", _SOFT_BREAKS.sub("\n", text))


def one_line(text: str) -> str:
    """A cell's or title's text on one line with single spaces."""
    return _SPACES.sub(" ", clean_text(text).replace("\n", " ")).strip()


class TextBuilder:
    """Lines grouped into pages (slides, sheets, chapters), joined the way PDF pages are: by a
    blank line, with the offset where each page starts. Refuses the file as soon as its text
    passes `max_chars`, so a huge file costs no more than the budget.
    """

    def __init__(self, name: str, max_chars: int) -> None:
        self.name = name
        self.max_chars = max_chars
        self._pages: list[list[str]] = []
        self._length = 0

    def page(self) -> None:
        """Start the next page; lines added before the first call go to page 1."""
        self._pages.append([])

    def line(self, text: str, *, gap: bool = False) -> None:
        """Add one line (or several) to the current page; `gap` puts a blank line before it, so
        it is a sentence of its own even when it starts in lower case (a table row)."""
        text = _BLANK_RUNS.sub("\n\n", clean_text(text)).strip()
        if not text:
            return
        if not self._pages:
            self.page()
        lines = self._pages[-1]
        if lines:
            text = ("\n\n" if gap else "\n") + text
        self._length += len(text) + 2
        if self._length > self.max_chars:
            raise TooMuchTextError(self.name, f"has more than {self.max_chars:,} characters of text, the limit for "
                                              "one file; split it into smaller files")
        lines.append(text)

    @property
    def empty(self) -> bool:
        return not any(self._pages)

    def text(self) -> str:
        return "\n\n".join("".join(lines) for lines in self._pages)

    def build(self, paged: bool = True) -> tuple[str, tuple[int, ...]]:
        """The text and, when `paged`, the offset where each page starts (empty pages keep their
        number, as a PDF's blank page does)."""
        texts = ["".join(lines) for lines in self._pages]
        if not paged:
            return "\n\n".join(t for t in texts if t), ()
        starts, offset = [], 0
        for text in texts:
            starts.append(offset)
            offset += len(text) + 2
        return "\n\n".join(texts), tuple(starts)


def open_zip(
    data: bytes, name: str, kind: str, limits: Limits, streamed: Callable[[str], bool] | None = None
) -> zipfile.ZipFile:
    """The zip file behind an office document or e-book, after checking every member's declared
    size: each at most `max_member_bytes` (members `streamed` reads piece by piece may reach
    `max_unpacked_bytes`), all together at most `max_unpacked_bytes`, and none unpacking more
    than `max_ratio` times its packed size. Raises DocumentError naming the file and the reason.
    """
    if not data.startswith(b"PK"):
        found = binary_kind(data)
        if found == "old Microsoft Office document":
            raise DocumentError(name, f"is not a {kind}: it is in the old binary Office format, or encrypted with "
                                      "a password; save it again as an unprotected file in the new format")
        looks = f"it looks like a {found}" if found else "it is not a zip file"
        raise DocumentError(name, f"is not a {kind} ({looks})")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        raise DocumentError(name, f"is not a readable {kind} (damaged zip file: {exc})") from exc
    if len(members) > limits.max_zip_members:
        raise DocumentError(name, f"holds {len(members):,} files inside; the limit is {limits.max_zip_members:,}")
    total = 0
    for member in members:
        if member.flag_bits & 0x1:
            raise DocumentError(name, f"is encrypted ({member.filename}); save an unprotected copy")
        size = member.file_size
        total += size
        cap = limits.max_unpacked_bytes if streamed and streamed(member.filename) else limits.max_member_bytes
        if size > limits.ratio_floor_bytes and size > limits.max_ratio * max(member.compress_size, 1):
            ratio = size / max(member.compress_size, 1)
            raise DocumentError(name, f"looks like a zip bomb: {member.filename} would unpack {ratio:,.0f} times "
                                      f"over, to {format_size(size)} from {format_size(member.compress_size)}")
        if size > cap:
            raise DocumentError(name, f"is too large inside: {member.filename} would unpack to {format_size(size)}; "
                                      f"the limit is {format_size(cap)}")
        if total > limits.max_unpacked_bytes:
            raise DocumentError(name, f"would unpack to more than {format_size(limits.max_unpacked_bytes)}, "
                                      "the limit")
    return archive


def check_zip(
    data: bytes, name: str, kind: str, limits: Limits, streamed: Callable[[str], bool] | None = None
) -> None:
    """`open_zip`'s checks, for formats whose library opens the bytes itself."""
    open_zip(data, name, kind, limits, streamed).close()


# --------------------------------------------------------------------------- tables


def is_label(cell: str) -> bool:
    """A header cell: a short name, mostly letters ("population", "2024 budget"), not a number,
    an amount or a date."""
    letters = sum(ch.isalpha() for ch in cell)
    return 0 < len(cell) <= 60 and letters > sum(ch.isdigit() for ch in cell)


def row_sentence(header: list[str], row: list[str]) -> str:
    """'city: Lviv — population: 717273; oblast: Lviv Oblast.': each filled cell with its column's
    name, the first cell (what the row is about) set apart by a dash.

    The dash and the full stop matter to the reader: with plain "city: Lviv; population: 717273"
    rows one after another, it often answers from the row before the one asked about (7 of 12
    questions over three tables right, against 10 of 12 this way; see tests/test_formats.py).
    """
    pairs = [f"{header[i]}: {value}" if i < len(header) and header[i] else value
             for i, value in enumerate(row) if value]
    if not pairs:
        return ""
    first = pairs[0] if row and row[0] else ""
    rest = "; ".join(pairs[1:] if first else pairs)
    sentence = f"{first} — {rest}" if first and rest else first or rest
    return sentence if sentence.endswith((".", "!", "?")) else sentence + "."


def table_lines(rows: list[list[str]]) -> list[str]:
    """A document's table as sentences, one per row.

    Three or more columns under a header row of labels: each row names its cells with the
    header ("Plan: Basic; Price: 10 EUR; Users: 3"). Two columns: "key: value" per row (such
    tables usually list facts). Otherwise the cells joined with " | ".
    """
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    width = max(len(row) for row in rows)
    if width == 1:
        return [row[0] for row in rows]
    if width == 2:
        return [": ".join(cell for cell in row if cell) for row in rows]
    header = rows[0]
    if len(rows) > 1 and len(header) == width and all(is_label(cell) for cell in header):
        return [row_sentence(header, row) for row in rows[1:]]
    return [" | ".join(cell for cell in row if cell) for row in rows]
