"""The most work one file may cost (kept apart from the readers, so `qa.formats` imports light)."""

from __future__ import annotations

from dataclasses import dataclass

MB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """The most work one file may cost. A file past a limit is refused with the reason, except a
    run of empty spreadsheet rows, where the sheet is read up to the run (logged)."""

    #: Characters of extracted text in one file (about 5,000 printed pages).
    max_chars: int = 10_000_000
    #: Members of one zip file (a .docx has about 15, a large .epub a few hundred).
    max_zip_members: int = 10_000
    #: Unpacked size of one member that a library parses whole (document.xml, a chapter).
    max_member_bytes: int = 32 * MB
    #: Unpacked size of all members together; also the cap for members read as a stream
    #: (spreadsheet sheets).
    max_unpacked_bytes: int = 256 * MB
    #: Unpacked/packed ratio above which a member larger than `ratio_floor_bytes` is a zip bomb.
    max_ratio: float = 100.0
    ratio_floor_bytes: int = 4 * MB
    #: Spreadsheet cells visited in one file, empty ones included.
    max_cells: int = 5_000_000
    #: Empty rows in a row after which the rest of a sheet is not read.
    max_empty_rows: int = 10_000
    #: Attachments of one e-mail that are read, and mail attached to mail attached to mail.
    max_attachments: int = 100
    max_mail_depth: int = 3


DEFAULT_LIMITS = Limits()
