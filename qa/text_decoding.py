"""Bytes to text for files that carry no reliable encoding: plain text, Markdown, HTML, CSV,
mail bodies. Also tells a binary file from text by its magic bytes, so a PNG renamed .txt is
refused with what it really is.

A module of its own, below `qa.documents` and `qa.formats`, which both read text with it.
"""

from __future__ import annotations

import codecs
import re
from collections import Counter

from qa.errors import DocumentError

#: C0 controls that never occur in real text (tab, newlines, form feed and ESC are allowed).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_MAX_CONTROL_SHARE = 0.02
_SNIFF_CHARS = 1 << 16

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"II*\x00", "TIFF image"),
    (b"MM\x00*", "TIFF image"),
    (b"%PDF-", "PDF document"),
    (b"PK\x03\x04", "ZIP archive or Office document"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x7fELF", "executable"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "old Microsoft Office document"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"OggS\x00", "Ogg audio"),
    (b"fLaC", "FLAC audio"),
)
_RIFF_KINDS = {b"WEBP": "WebP image", b"WAVE": "WAV audio", b"AVI ": "AVI video"}

_ASCII = bytes(range(128))
_ASCII_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Non-letter characters common in Western European text saved as Windows-1252.
_WESTERN_SYMBOLS = frozenset(
    "\u00a0\u00a1\u00a2\u00a3\u00a5\u00a7\u00a9\u00ab\u00ad\u00ae\u00b0\u00b1\u00b4\u00b5\u00b6"
    "\u00b7\u00bb\u00bc\u00bd\u00be\u00bf\u00d7\u00f7\u20ac\u201a\u201e\u2026\u2020\u2021\u2030"
    "\u2039\u203a\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u2122"
)
_MAX_ACCENTED_SHARE = 0.3
_WESTERN_SAMPLE = 1 << 22
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
#: WHATWG: pages labelled Latin-1 or ASCII are really Windows-1252.
_CHARSET_ALIASES = {"iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252",
                    "latin-1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252"}


def decode_text(data: bytes, name: str = "<data>", *, html: bool = False) -> str:
    """Decode the bytes of a text file, or raise DocumentError when they are not text.

    Order: byte-order mark, UTF-16 without BOM (NUL pattern), the HTML <meta charset>, UTF-8,
    Windows-1252 when it reads as Western European text, charset-normalizer's guess, Latin-1.
    Newlines become "\\n"; nothing else changes, so offsets stay meaningful.
    """
    text = _decode(data, name, _declared_charset(data) if html else None)
    if text.startswith("\ufeff"):
        text = text[1:]
    sample = text[:_SNIFF_CHARS]
    if len(_CONTROL.findall(sample)) > _MAX_CONTROL_SHARE * len(sample):
        raise DocumentError(name, "looks like a binary file (unprintable characters), not text")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def binary_kind(data: bytes) -> str | None:
    """What a binary file is, from its magic bytes ("PNG image"), or None when unknown."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    if data.startswith(b"RIFF") and data[8:12] in _RIFF_KINDS:
        return _RIFF_KINDS[data[8:12]]
    return None


def _decode(data: bytes, name: str, declared: str | None) -> str:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(codec, errors="replace")
    kind = binary_kind(data)
    if kind:
        raise DocumentError(name, f"looks like a binary file ({kind}), not text")
    utf16 = _utf16_without_bom(data)
    if utf16:
        return data.decode(utf16, errors="replace")
    if b"\x00" in data:
        raise DocumentError(name, "looks like a binary file (NUL bytes), not text")
    return _decode_8bit(data, declared)


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le'/'-be' when every other byte is NUL, as in UTF-16 text of Latin script."""
    sample = data[:4096]
    pairs = len(sample) // 2
    if pairs == 0:
        return None
    even_nuls = sample[0 : pairs * 2 : 2].count(0)
    odd_nuls = sample[1 : pairs * 2 : 2].count(0)
    if odd_nuls >= 0.3 * pairs and even_nuls <= 0.05 * pairs:
        return "utf-16-le"
    if even_nuls >= 0.3 * pairs and odd_nuls <= 0.05 * pairs:
        return "utf-16-be"
    return None


def _decode_8bit(data: bytes, declared: str | None) -> str:
    if declared:
        return _decode_declared(data, declared)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for attempt in (_mostly_utf8, _western_1252, _charset_normalizer_guess):
        text = attempt(data)
        if text is not None:
            return text
    return data.decode("latin-1")  # never fails; decode_text still rejects control characters


def _decode_declared(data: bytes, declared: str) -> str:
    """Honour an HTML page's declared charset, unless the bytes are plainly UTF-8 instead."""
    try:
        return data.decode("utf-8")  # valid non-ASCII UTF-8 is almost never another charset
    except UnicodeDecodeError:
        pass
    if codecs.lookup(declared).name == "utf-8":
        return _mostly_utf8(data) or data.decode("utf-8", errors="replace")
    return data.decode(declared, errors="replace")


def _declared_charset(data: bytes) -> str | None:
    match = _META_CHARSET.search(data[:4096])
    if not match:
        return None
    label = match.group(1).decode("ascii").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        codec = codecs.lookup(label).name
    except LookupError:
        return None
    return None if codec.startswith(("utf-16", "utf-32")) else codec


def _mostly_utf8(data: bytes) -> str | None:
    """UTF-8 with a few bad bytes (say, two files glued together) stays UTF-8."""
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    ascii_count = len(data) - len(data.translate(None, _ASCII))
    good = len(text) - ascii_count - bad
    return text if good > 0 and bad <= good else None


def _western_1252(data: bytes) -> str | None:
    """Windows-1252, when that reading looks like Western European text.

    charset-normalizer cannot tell the Latin code pages apart on short files and reads
    "crème" as "crčme" (cp1250); 1252 is by far the most common legacy encoding.
    """
    try:
        full = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    text, sample = full[:_WESTERN_SAMPLE], data[:_WESTERN_SAMPLE]  # one byte per character
    counts = Counter(_NON_ASCII.findall(text))
    if any(not ch.isalpha() and ch not in _WESTERN_SYMBOLS for ch in counts):
        return None
    if re.search(r"[^\W\d_][\u00bf\u00a1]", text):  # "mo¿e" is Polish ż, not Spanish ¿
        return None
    accented = sum(n for ch, n in counts.items() if ch.isalpha())
    plain = len(sample) - len(sample.translate(None, _ASCII_LETTERS))
    if accented > _MAX_ACCENTED_SHARE * (accented + plain):  # Cyrillic or Greek bytes
        return None
    return full


def _charset_normalizer_guess(data: bytes) -> str | None:
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    return str(best) if best is not None else None
