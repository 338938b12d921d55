"""The error every reader raises for a file it cannot use, and the sizes its messages quote.

Kept apart from `qa.documents` so that the readers below it (`qa.text_decoding`, `qa.html_text`,
`qa.formats`) can raise it without importing the module that dispatches to them.
"""

from __future__ import annotations

import math


class DocumentError(Exception):
    """A file that cannot be turned into text; `str()` names the file and says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)  # both in args, so the error survives pickling
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path} {self.reason}"


class TooMuchTextError(DocumentError):
    """A file whose text passed the character limit: refused as soon as it did, not at the end
    (the reading budget words its own reason for it)."""


def format_size(num_bytes: int) -> str:
    """'31.2 MB', '20 MB', '512 KB', '17 bytes', rounded up so an oversize file never reads as
    the limit itself."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if num_bytes >= scale:
            value = math.ceil(num_bytes / scale * 10 - 1e-9) / 10
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
    return f"{num_bytes} bytes"
