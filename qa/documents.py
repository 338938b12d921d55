"""Load a corpus folder into `Document`s: plain text, Markdown, HTML and PDF files.

A bad file never stops indexing: it is skipped with a logged reason, so one broken PDF in a
folder of thousands costs only that file. Text files keep their text verbatim (apart from
newlines), because answer offsets point into `Document.text`.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PageElement, RubyTextString

from qa.types import Document

if TYPE_CHECKING:
    from pypdf import PageObject, PdfReader

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = frozenset({".txt", ".md", ".html", ".htm", ".pdf"})
TEXT_SUFFIXES = frozenset({".txt", ".md"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
DEFAULT_MAX_BYTES = 100 * 1024 * 1024

_NON_SPACE = re.compile(r"\S")
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


class DocumentError(Exception):
    """A file that cannot be turned into text; `str()` names the file and says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)  # both in args, so the error survives pickling
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path} {self.reason}"


class Skipped(NamedTuple):
    """A file left out of the corpus: its display path and a reason people can act on."""

    path: str
    reason: str


# --------------------------------------------------------------------------- loading files


def load_document(path: Path, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Document:
    """Read one file under corpus folder `root` into a `Document`.

    Raises DocumentError when the file cannot be used (binary, empty, encrypted, too large,
    unreadable) and FileNotFoundError when it does not exist.
    """
    path = Path(path)
    name = relative_document_path(path, Path(root))
    data = _read_bytes(path, name, max_bytes)
    text, page_starts = extract_text(data, path.suffix.lower(), name)
    digest = hashlib.sha256(data).hexdigest()
    return Document(path=name, text=text, content_hash=digest, page_starts=page_starts)


def relative_document_path(path: Path, root: Path) -> str:
    """`path` relative to `root`'s parent with forward slashes: "seeds/a.txt" for root "seeds"."""
    base = os.path.dirname(os.path.abspath(root))
    try:
        return Path(os.path.abspath(path)).relative_to(base).as_posix()
    except ValueError:
        return Path(path).name


def _read_bytes(path: Path, name: str, max_bytes: int) -> bytes:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read forever
            raise DocumentError(name, "is not a regular file")
        if info.st_size > max_bytes:
            raise DocumentError(name, _too_large(info.st_size, max_bytes))
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DocumentError(name, f"could not be read ({e.strerror or e})") from e
    if len(data) > max_bytes:  # it grew after the stat
        raise DocumentError(name, _too_large(len(data), max_bytes))
    return data


def _too_large(size: int, limit: int) -> str:
    return f"is {format_size(size)}; the limit is {format_size(limit)}"


def format_size(num_bytes: int) -> str:
    """'31.2 MB', '20 MB', '512 KB', '17 bytes', rounded up so an oversize file never reads as
    the limit itself."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if num_bytes >= scale:
            value = math.ceil(num_bytes / scale * 10 - 1e-9) / 10
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
    return f"{num_bytes} bytes"


def extract_text(data: bytes, suffix: str, name: str) -> tuple[str, tuple[int, ...]]:
    """The text of a file's bytes and, for PDFs, the offset where each page starts."""
    if not data:
        raise DocumentError(name, "is empty")
    page_starts: tuple[int, ...] = ()
    if suffix == ".pdf":
        text, page_starts = _pdf_text(data, name)
    elif suffix in HTML_SUFFIXES:
        text = html_to_text(decode_text(data, name, html=True), name)
    elif suffix in TEXT_SUFFIXES:
        text = decode_text(data, name)
    else:
        raise DocumentError(name, f"has an unsupported type {suffix or '(no suffix)'!r}")
    if not _NON_SPACE.search(text):
        raise DocumentError(name, "is empty")
    return text, page_starts


# --------------------------------------------------------------------------- decoding text


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


# --------------------------------------------------------------------------- HTML


_DROP_TAGS = frozenset({"script", "style", "noscript", "template", "title", "meta", "link",
                        "base", "iframe", "object", "embed", "canvas", "svg"})
_BLOCK_TAGS = frozenset({"address", "article", "aside", "blockquote", "body", "caption", "dd",
                         "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption",
                         "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
                         "header", "hgroup", "hr", "html", "legend", "li", "main", "menu", "nav",
                         "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot",
                         "thead", "tr", "ul", "center"})
_CELL_TAGS = frozenset({"td", "th"})
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_SPACES = re.compile(r"\s+")
_TEXT_NODES = (NavigableString, RubyTextString)  # not comments, doctypes, CDATA


def html_to_text(markup: str, name: str = "<html>") -> str:
    """The visible text of an HTML page: title first, then one line per block element."""
    soup = BeautifulSoup(markup, "html.parser")
    title = _html_title(soup)
    lines = [line for line in (_SPACES.sub(" ", ln).strip() for ln in _visible_text(soup)) if line]
    if not lines:
        raise DocumentError(name, "has no visible text")
    if title and lines[0] != title:
        lines.insert(0, title)
    return "\n".join(lines)


def _html_title(soup: BeautifulSoup) -> str:
    for tag in soup.find_all("title"):
        if tag.find_parent("svg") is None:
            return _SPACES.sub(" ", tag.get_text()).strip()
    return ""


def _visible_text(soup: BeautifulSoup) -> list[str]:
    """The page's visible text split into lines, from one pass over the tree.

    An explicit stack instead of recursion (deeply nested pages) and instead of inserting
    marker nodes (bs4 inserts are linear in the number of siblings, so quadratic overall).
    """
    parts: list[str] = []
    stack: list[tuple[Iterator[PageElement], Tag | None]] = [(iter(soup.contents), None)]
    in_pre = 0
    while stack:
        node = next(stack[-1][0], None)
        if node is None:
            _, tag = stack.pop()
            if tag is not None:
                parts.append(_separator(tag.name))
                in_pre -= tag.name == "pre"
        elif isinstance(node, Tag):
            if node.name == "br":
                parts.append("\n")
            elif _is_visible(node):
                parts.append(_separator(node.name))
                in_pre += node.name == "pre"
                stack.append((iter(node.contents), node))
        elif type(node) in _TEXT_NODES:
            parts.append(str(node) if in_pre else _SPACES.sub(" ", str(node)))
    return "".join(parts).split("\n")


def _is_visible(tag: Tag) -> bool:
    if tag.name in _DROP_TAGS or tag.has_attr("hidden"):
        return False
    style = tag.get("style")
    return not (isinstance(style, str) and _HIDDEN_STYLE.search(style))


def _separator(name: str) -> str:
    """What goes before and after an element: blocks are lines, table cells are words."""
    if name in _BLOCK_TAGS:
        return "\n"
    return " " if name in _CELL_TAGS else ""


# --------------------------------------------------------------------------- PDF


def _pdf_text(data: bytes, name: str) -> tuple[str, tuple[int, ...]]:
    """Pages joined by blank lines, and the offset where each page's text begins."""
    from pypdf import PdfReader  # imported here: it is slow to import and only PDFs need it

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            _decrypt(reader, name)
        pages = list(reader.pages)
    except DocumentError:
        raise
    except Exception as e:  # pypdf raises many exception types for damaged files
        raise DocumentError(name, f"is not a readable PDF ({e})") from e
    if not pages:
        raise DocumentError(name, "has no pages")
    texts = [_page_text(page, name, number) for number, page in enumerate(pages, 1)]
    if not any(_NON_SPACE.search(t) for t in texts):
        raise DocumentError(name, "has no text layer (scanned?); OCR it first")
    starts, offset = [], 0
    for text in texts:
        starts.append(offset)
        offset += len(text) + 2
    return "\n\n".join(texts), tuple(starts)


def _decrypt(reader: PdfReader, name: str) -> None:
    try:
        opened = reader.decrypt("")
    except Exception as e:  # e.g. AES without the `cryptography` package
        raise DocumentError(name, f"is encrypted and could not be opened ({e})") from e
    if not opened:
        raise DocumentError(name, "is encrypted with a password; save an unprotected copy")


def _page_text(page: PageObject, name: str, number: int) -> str:
    """One page's text; a damaged page costs that page, not the whole document."""
    try:
        text = page.extract_text() or ""
    except Exception as e:  # pypdf raises many exception types for damaged pages
        logger.warning("%s: page %d has unreadable text: %s", name, number, e)
        return ""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


# --------------------------------------------------------------------------- folders


def iter_documents(
    root: Path, max_bytes: int = DEFAULT_MAX_BYTES, skipped: list[Skipped] | None = None
) -> Iterator[Document]:
    """Documents of every supported file under `root` (a folder or one file), in path order.

    Hidden files and other suffixes are ignored; files that cannot be loaded are logged and,
    when `skipped` is given, appended to it. Raises DocumentError at once if `root` is missing.
    """
    root = Path(root)
    if not root.exists():
        raise DocumentError(str(root), "does not exist; point corpus_dir at your documents folder")
    sink: list[Skipped] = skipped if skipped is not None else []
    paths = [root] if root.is_file() else list_corpus_files(root, sink)
    return _load_all(paths, root, max_bytes, sink)


def load_corpus(
    root: Path, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Document], list[Skipped]]:
    """All loadable documents under `root`, and the `(path, reason)` of every skipped file."""
    skipped: list[Skipped] = []
    documents = list(iter_documents(root, max_bytes, skipped))
    return documents, skipped


def _load_all(
    paths: list[Path], root: Path, max_bytes: int, skipped: list[Skipped]
) -> Iterator[Document]:
    for path in paths:
        try:
            document = load_document(path, root, max_bytes)
        except FileNotFoundError:
            broken = os.path.islink(path)
            gone = "is a broken symbolic link" if broken else "disappeared while indexing"
            _skip(relative_document_path(path, root), gone, skipped)
        except DocumentError as e:
            _skip(e.path, e.reason, skipped)
        except Exception as e:  # one odd file (a parser bug, deep recursion) must not stop indexing
            logger.debug("failed to load %s", path, exc_info=True)
            reason = f"could not be loaded ({type(e).__name__}: {e})"
            _skip(relative_document_path(path, root), reason, skipped)
        else:
            yield document


def _skip(path: str, reason: str, skipped: list[Skipped]) -> None:
    logger.warning("skipped %s: %s", path, reason)
    skipped.append(Skipped(path, reason))


def list_corpus_files(root: Path, skipped: list[Skipped] | None = None) -> list[Path]:
    """Supported, non-hidden files under folder `root`, sorted; each real file and folder once.

    Folders that cannot be read are logged and, when `skipped` is given, appended to it.

    Symlinked folders are followed (a corpus may link in ~/Documents) but each real folder is
    entered once, which also stops symlink loops.
    """
    root = Path(root)
    skipped = skipped if skipped is not None else []
    seen_dirs: set[str] = set()
    seen_files: set[str] = set()
    found: list[Path] = []

    def on_error(error: OSError) -> None:
        where = relative_document_path(Path(error.filename or root), root)
        _skip(where, f"could not be read ({error.strerror or error})", skipped)

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=True):
        real_dir = os.path.realpath(dirpath)
        if real_dir in seen_dirs:
            logger.debug("not entering %s again (symbolic link)", dirpath)
            dirnames[:] = []
            continue
        seen_dirs.add(real_dir)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            path = Path(dirpath, filename)
            if _wanted(path) and _first_visit(path, seen_files):
                found.append(path)
    return sorted(found, key=lambda p: p.parts)


def _wanted(path: Path) -> bool:
    if path.name.startswith("."):
        return False
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        logger.debug("ignoring %s: unsupported type", path)
        return False
    return True


def _first_visit(path: Path, seen: set[str]) -> bool:
    real = os.path.realpath(path)
    if real in seen:
        logger.debug("ignoring %s: same file as one already listed", path)
        return False
    seen.add(real)
    return True
