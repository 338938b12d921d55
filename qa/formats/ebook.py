"""EPUB e-books through `zipfile`, lxml for the package file, and the HTML extraction every web
page gets: chapter by chapter in the book's reading order (its spine), each chapter a page
("book.epub, chapter 3").

Not ebooklib: it unpacks every item of the book, pictures and fonts included, and again for each
time the manifest names it, which a hostile book can make thousands of times; here only the
spine's chapters are unpacked, each once, after the zip checks every format gets.
"""

from __future__ import annotations

import logging
import posixpath
from typing import TYPE_CHECKING
from urllib.parse import unquote

from qa.errors import DocumentError
from qa.formats.common import TextBuilder, open_zip
from qa.formats.limits import Limits
from qa.html_text import html_to_text
from qa.text_decoding import decode_text

if TYPE_CHECKING:
    import zipfile

    from lxml.etree import _Element

logger = logging.getLogger(__name__)

KIND = "EPUB e-book"
_CONTAINER = "META-INF/container.xml"
_CONTAINER_NS = "urn:oasis:names:tc:opendocument:xmlns:container"
_OPF_NS = "http://www.idpf.org/2007/opf"
_CHAPTER_TYPES = frozenset({"application/xhtml+xml", "text/html", "application/x-dtbook+xml"})


def epub_text(data: bytes, name: str, limits: Limits) -> tuple[str, tuple[int, ...]]:
    """Each chapter's visible text (its title first), one page per chapter that has text."""
    out = TextBuilder(name, limits.max_chars)
    with open_zip(data, name, KIND, limits) as archive:
        for path in _spine(archive, name):
            try:
                markup = decode_text(archive.read(path), f"{name}: {path}", html=True)
                text = html_to_text(markup, f"{name}: {path}")
            except KeyError:
                logger.warning("%s: chapter %s is missing from the book; skipped", name, path)
                continue
            except DocumentError as exc:
                logger.info("%s: %s %s; skipped", name, path, exc.reason)  # a cover picture's page
                continue
            out.page()
            out.line(text)
    if out.empty:
        raise DocumentError(name, "has no chapters with text (only pictures?)")
    return out.build()


def _spine(archive: zipfile.ZipFile, name: str) -> list[str]:
    """The chapters' paths inside the zip, in reading order, each once."""
    opf_path = _package_path(archive, name)
    package = _xml(archive, opf_path, name)
    base = posixpath.dirname(opf_path)
    manifest: dict[str, tuple[str, str]] = {}
    for item in package.iter(f"{{{_OPF_NS}}}item"):
        href = item.get("href")
        if "nav" in item.get("properties", "").split():
            continue  # the table of contents: it repeats the chapters' titles
        if item.get("id") and href:
            path = posixpath.normpath(posixpath.join(base, unquote(href.split("#", 1)[0])))
            manifest[item.get("id")] = (path, item.get("media-type", ""))
    paths: list[str] = []
    for ref in package.iter(f"{{{_OPF_NS}}}itemref"):
        path, media_type = manifest.get(ref.get("idref", ""), ("", ""))
        if path and media_type in _CHAPTER_TYPES and path not in paths:
            paths.append(path)
    if not paths:
        raise DocumentError(name, f"is not a readable {KIND} (its reading order lists no chapters)")
    return paths


def _package_path(archive: zipfile.ZipFile, name: str) -> str:
    try:
        container = _xml(archive, _CONTAINER, name)
    except DocumentError:
        # Some books lack the container file; a single package file is unambiguous.
        candidates = [n for n in archive.namelist() if n.lower().endswith(".opf")]
        if len(candidates) == 1:
            return candidates[0]
        raise
    rootfile = container.find(f".//{{{_CONTAINER_NS}}}rootfile")
    if rootfile is None or not rootfile.get("full-path"):
        raise DocumentError(name, f"is not a readable {KIND} ({_CONTAINER} names no package file)")
    return rootfile.get("full-path")


def _xml(archive: zipfile.ZipFile, path: str, name: str) -> _Element:
    from lxml import etree

    try:
        data = archive.read(path)
    except KeyError:
        raise DocumentError(name, f"is not a readable {KIND} ({path} is missing)") from None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise DocumentError(name, f"is not a readable {KIND} ({path}: {exc})") from exc
