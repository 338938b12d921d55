"""Store files uploaded through the web chat safely inside the upload folder.

The name and the bytes come from a browser, so neither is trusted: the name is reduced to a
plain basename, the content is sniffed, and the file appears atomically (a half-written
upload is never indexed) without replacing a different file of the same name.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import unicodedata
from pathlib import Path

from qa.documents import (
    SUPPORTED_SUFFIXES,
    DocumentError,
    binary_kind,
    decode_text,
    format_size,
)
from qa.formats import DEFAULT_LIMITS

logger = logging.getLogger(__name__)

MAX_NAME_CHARS = 120
#: PDF readers accept the %PDF header anywhere in the first 1024 bytes, so we do too.
_PDF_HEADER_WINDOW = 1024
#: Formats that are zip files inside.
ZIP_SUFFIXES = frozenset({".docx", ".pptx", ".xlsx", ".odt", ".epub"})
_MAX_SUFFIX_CHARS = 16
_MAX_DUPLICATES = 1000
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._ -]")
_UNDERSCORES = re.compile(r"_{2,}")
_ALNUM = re.compile(r"[A-Za-z0-9]")
#: Temporary files start with a dot, so the indexer (which skips hidden files) never sees them.
_TEMP_PREFIX = ".upload-"


class UploadError(ValueError):
    """An upload that was refused; the message is shown to the user as is."""


def safe_filename(name: str) -> str:
    """A harmless basename for an uploaded file: "../../x.txt" -> "x.txt".

    Keeps only [A-Za-z0-9._ -] (accents are folded: "café" -> "cafe"), no leading dots, at
    most 120 characters with the suffix kept; a name with no Latin letters or digits becomes
    "upload" plus its suffix. Raises UploadError when nothing usable is left.
    """
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch) not in ("Cc", "Cf"))
    base = unicodedata.normalize("NFKD", base)
    base = "".join(ch for ch in base if not unicodedata.combining(ch))
    base = _UNDERSCORES.sub("_", _UNSAFE_CHARS.sub("_", base))
    base = base.lstrip(". ").rstrip(". ")
    stem, suffix = os.path.splitext(base)
    if not _ALNUM.search(stem):
        if not _ALNUM.search(suffix):
            raise UploadError(f"the file name {name!r} has no usable characters")
        base = "upload" + suffix  # e.g. a name in a non-Latin script
    return _shorten(base)


def _shorten(name: str) -> str:
    if len(name) <= MAX_NAME_CHARS:
        return name
    stem, suffix = os.path.splitext(name)
    if len(suffix) > _MAX_SUFFIX_CHARS:
        stem, suffix = name, ""
    return stem[: MAX_NAME_CHARS - len(suffix)].rstrip(". ") + suffix


def save_upload(data: bytes, filename: str, upload_dir: Path, max_bytes: int) -> Path:
    """Check an upload and write it into `upload_dir`; returns where it was stored.

    A different file with the same name is kept and the upload gets " (2)", " (3)"...;
    uploading the very same bytes again returns the existing file instead of a copy.
    """
    name = safe_filename(filename)
    check_upload(data, name, max_bytes)
    upload_dir = Path(upload_dir)
    upload_dir.mkdir(parents=True, exist_ok=True)
    target = _store(data, name, upload_dir)
    if not target.resolve().is_relative_to(upload_dir.resolve()):  # defence in depth
        raise UploadError(f"{name} would be stored outside the upload folder")
    logger.info("stored upload %s (%s)", target, format_size(len(data)))
    return target


def check_upload(data: bytes, name: str, max_bytes: int) -> None:
    """Refuse uploads that are too large, of an unsupported type, or not what they claim."""
    if len(data) > max_bytes:
        size, limit = format_size(len(data)), format_size(max_bytes)
        raise UploadError(f"file is {size}; the limit is {limit}")
    if not data:
        raise UploadError(f"{name} is empty")
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        kind = suffix or "files without a suffix"
        raise UploadError(f"{name}: {kind} not supported; use {supported}")
    if suffix == ".pdf":
        _check_pdf(data, name)
    elif suffix in ZIP_SUFFIXES:
        _check_zip(data, name, suffix)
    else:  # text, HTML, CSV and mail are text files
        _check_text(data, name, html=suffix in (".html", ".htm"))


def _check_pdf(data: bytes, name: str) -> None:
    if b"%PDF-" not in data[:_PDF_HEADER_WINDOW]:
        kind = binary_kind(data)
        looks = f"it looks like a {kind}" if kind else "it has no %PDF header"
        raise UploadError(f"{name} is not a PDF ({looks})")


def _check_zip(data: bytes, name: str, suffix: str) -> None:
    """Office documents and e-books are zip files: refuse one that is not, or a zip bomb, now
    rather than after it is stored (the member sizes are read from the zip's directory)."""
    from qa.formats import FORMATS
    from qa.formats.common import check_zip

    try:
        check_zip(data, name, FORMATS[suffix].kind, DEFAULT_LIMITS)
    except DocumentError as e:
        raise UploadError(str(e)) from None


def _check_text(data: bytes, name: str, html: bool) -> None:
    try:
        text = decode_text(data, name, html=html)
    except DocumentError as e:
        raise UploadError(str(e)) from None
    if not text.strip():
        raise UploadError(f"{name} is empty")


def _store(data: bytes, name: str, upload_dir: Path) -> Path:
    """Write to a temporary file, then link it under the first free name (atomic, no clobber)."""
    fd, temp = tempfile.mkstemp(dir=upload_dir, prefix=_TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for candidate in _candidates(upload_dir, name):
            if _same_content(candidate, data):
                return candidate
            if _claim(temp, candidate):
                return candidate
        raise UploadError(f"too many files named {name} in the upload folder")
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _candidates(upload_dir: Path, name: str) -> list[Path]:
    stem, suffix = os.path.splitext(name)
    names = [name] + [f"{stem} ({n}){suffix}" for n in range(2, _MAX_DUPLICATES + 1)]
    return [upload_dir / n for n in names]


def _same_content(path: Path, data: bytes) -> bool:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def _claim(temp: str, target: Path) -> bool:
    """Give the temporary file the name `target` unless something already has it."""
    try:
        os.link(temp, target)  # fails if target exists, unlike os.replace
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(target):
            return False
        os.replace(temp, target)
        return True
