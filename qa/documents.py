"""Load a corpus folder into `Document`s: plain text, Markdown, HTML and PDF files here, and
office documents, spreadsheets, e-books and mail through `qa.formats`.

A bad file never stops indexing: it is skipped with a logged reason, so one broken PDF in a
folder of thousands costs only that file. Text files keep their text verbatim (apart from
newlines), because answer offsets point into `Document.text`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from qa import formats
from qa.errors import DocumentError, format_size
from qa.formats import FORMAT_SUFFIXES
from qa.html_text import html_to_text
from qa.text_decoding import binary_kind, decode_text
from qa.types import Document

if TYPE_CHECKING:
    from pypdf import PageObject, PdfReader

logger = logging.getLogger(__name__)

#: Re-exported: the readers' shared pieces live in modules of their own, below both this module
#: and `qa.formats`, so that neither imports the other back.
__all__ = [
    "DEFAULT_MAX_BYTES", "HTML_SUFFIXES", "SUPPORTED_SUFFIXES", "TEXT_SUFFIXES", "UNSUPPORTED", "DocumentError",
    "PageProgress", "Skipped", "binary_kind", "decode_text", "extract_text", "format_size", "html_to_text",
    "is_outside_link", "iter_documents", "list_corpus_files", "load_corpus", "load_document",
    "outside_link_reason", "relative_document_path", "unsupported_reason",
]

#: Text, HTML and PDF are read here; office documents, spreadsheets, e-books and mail in `qa.formats`.
SUPPORTED_SUFFIXES = frozenset({".txt", ".md", ".html", ".htm", ".pdf"}) | FORMAT_SUFFIXES
TEXT_SUFFIXES = frozenset({".txt", ".md"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
DEFAULT_MAX_BYTES = 100 * 1024 * 1024

_NON_SPACE = re.compile(r"\S")

#: Told after each PDF page is read: (pages read, pages in all, characters so far). It may raise
#: DocumentError to stop reading; `qa.parsing` uses it to pace a PDF's time budget and cap its text.
PageProgress = Callable[[int, int, int], None]


class Skipped(NamedTuple):
    """A file left out of the corpus: its display path and a reason people can act on."""

    path: str
    reason: str


# --------------------------------------------------------------------------- loading files


def load_document(
    path: Path, root: Path, max_bytes: int = DEFAULT_MAX_BYTES, *, on_page: PageProgress | None = None,
    max_chars: int | None = None,
) -> Document:
    """Read one file under corpus folder `root` into a `Document`, in this process (indexing
    reads through `qa.parsing`, which runs this under a budget in a worker process).
    `max_chars`: see `extract_text`.

    Raises DocumentError when the file cannot be used (binary, empty, encrypted, too large,
    unreadable) and FileNotFoundError when it does not exist.
    """
    path = Path(path)
    name = relative_document_path(path, Path(root))
    data = _read_bytes(path, name, max_bytes)
    text, page_starts = extract_text(data, path.suffix.lower(), name, on_page=on_page, max_chars=max_chars)
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


def extract_text(
    data: bytes, suffix: str, name: str, *, on_page: PageProgress | None = None, max_chars: int | None = None
) -> tuple[str, tuple[int, ...]]:
    """The text of a file's bytes and, for paged formats (PDF pages, slides, sheets, chapters, a
    mail's attachments), the offset where each page starts.

    `max_chars` stops the readers of `qa.formats` as soon as their text passes it (default:
    `qa.formats.Limits.max_chars`); they also bound zip members, cells and attachments.
    """
    limits = formats.DEFAULT_LIMITS if max_chars is None else formats.Limits(max_chars=max_chars)
    return _extract(data, suffix, name, limits, on_page)


def _extract(
    data: bytes, suffix: str, name: str, limits: formats.Limits, on_page: PageProgress | None = None
) -> tuple[str, tuple[int, ...]]:
    """`extract_text` under all of `limits`: a mail's attachment keeps the mail's limits."""
    if not data:
        raise DocumentError(name, "is empty")
    page_starts: tuple[int, ...] = ()
    if suffix in FORMAT_SUFFIXES:
        text, page_starts = formats.extract(data, suffix, name, limits, inner=_INNER_FILES)
    elif suffix == ".pdf":
        text, page_starts = _pdf_text(data, name, on_page)
    elif suffix in HTML_SUFFIXES:
        text = html_to_text(decode_text(data, name, html=True), name)
    elif suffix in TEXT_SUFFIXES:
        text = decode_text(data, name)
    else:
        raise DocumentError(name, unsupported_reason(suffix))
    if not _NON_SPACE.search(text):
        raise DocumentError(name, "is empty")
    return text, page_starts


#: Files inside files (a mail's attachments) are read as files of their own; `qa.formats` is
#: handed this reader rather than importing this module back.
_INNER_FILES = formats.InnerFiles(SUPPORTED_SUFFIXES, _extract)


#: How the reason for skipping a file of a type that is not read begins.
UNSUPPORTED = "has an unsupported type"


def unsupported_reason(suffix: str) -> str:
    """Why a file of this type is not read: "has an unsupported type (.xyz)"."""
    return f"{UNSUPPORTED} ({suffix})" if suffix else f"{UNSUPPORTED}: no suffix such as .txt or .docx"


# --------------------------------------------------------------------------- PDF


def _pdf_text(data: bytes, name: str, on_page: PageProgress | None = None) -> tuple[str, tuple[int, ...]]:
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
    texts: list[str] = []
    chars = 0
    if on_page is not None:
        on_page(0, len(pages), 0)
    for number, page in enumerate(pages, 1):
        texts.append(_page_text(page, name, number))
        chars += len(texts[-1])
        if on_page is not None:
            on_page(number, len(pages), chars)
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

    Hidden files are ignored; files of other types and files that cannot be loaded are logged
    and, when `skipped` is given, appended to it with the reason. Raises DocumentError at once
    if `root` is missing.
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


def list_corpus_files(
    root: Path, skipped: list[Skipped] | None = None, follow_links: bool = False
) -> list[Path]:
    """Supported, non-hidden files under folder `root`, sorted; each real file and folder once.

    Files of other types and folders that cannot be read are logged and, when `skipped` is
    given, appended to it with the reason: no file is passed over without a word.

    Symbolic links that stay inside `root` are followed, each real folder entered once (which
    also stops link loops). A link to a file or folder outside `root` is skipped with a reason:
    anyone who can write into the folder could otherwise link in /etc, and the chat would serve
    it. `follow_links` follows those too (a corpus that links in ~/Documents on purpose).
    """
    root = Path(root)
    skipped = skipped if skipped is not None else []
    real_root = os.path.realpath(root)
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
        dirnames[:] = [d for d in sorted(dirnames) if not d.startswith(".")
                       and (follow_links or _inside(Path(dirpath, d), real_root, root, "folder", skipped))]
        for filename in sorted(filenames):
            path = Path(dirpath, filename)
            if (_wanted(path, root, skipped) and (follow_links or _inside(path, real_root, root, "file", skipped))
                    and _first_visit(path, seen_files)):
                found.append(path)
    return sorted(found, key=lambda p: p.parts)


def _inside(path: Path, real_root: str, root: Path, kind: str, skipped: list[Skipped]) -> bool:
    """Whether `path` really lies inside the corpus folder; a link out of it is skipped."""
    real = os.path.realpath(path)
    if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
        return True
    _skip(relative_document_path(path, root), outside_link_reason(kind), skipped)
    return False


def outside_link_reason(kind: str) -> str:
    """Why a link to a "file" or "folder" outside the corpus folder is skipped."""
    return f"is a link to a {kind} outside the corpus folder (QA_FOLLOW_LINKS=1 follows it)"


def is_outside_link(reason: str) -> bool:
    """Whether a skip reason is that of a link out of the corpus folder (what it links to was
    never the corpus's, unlike a folder that cannot be read for now)."""
    return reason in (outside_link_reason("file"), outside_link_reason("folder"))


def _wanted(path: Path, root: Path, skipped: list[Skipped]) -> bool:
    """A supported, visible file; one of another type is skipped with the reason."""
    if path.name.startswith("."):
        return False
    suffix = path.suffix.lower()
    if path.name.startswith("~$") and suffix in FORMAT_SUFFIXES:
        reason = "is an Office lock file (its document is open in Word or Excel), not a document"
    elif suffix not in SUPPORTED_SUFFIXES:
        reason = unsupported_reason(suffix)
    else:
        return True
    _skip(relative_document_path(path, root), reason, skipped)
    return False


def _first_visit(path: Path, seen: set[str]) -> bool:
    real = os.path.realpath(path)
    if real in seen:
        logger.debug("ignoring %s: same file as one already listed", path)
        return False
    seen.add(real)
    return True
