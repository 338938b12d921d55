"""The visible text of an HTML page (web pages, e-book chapters, HTML mail), one line per block.

A module of its own, below `qa.documents` and `qa.formats`, which both read HTML with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from bs4 import BeautifulSoup, NavigableString, Tag
from bs4.element import PageElement, RubyTextString

from qa.errors import DocumentError

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
