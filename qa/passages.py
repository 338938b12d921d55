"""Split documents into overlapping, sentence-aligned passages that keep their offsets."""

from __future__ import annotations

import hashlib
import re

from qa.sentences import split_sentences
from qa.types import Document, Passage

_WORD = re.compile(r"\S+")


def passage_id(document_path: str, start: int, end: int, text: str) -> str:
    """Deterministic id: the same text at the same place always gets the same id (incremental indexing)."""
    digest = hashlib.sha1(f"{document_path}\x00{start}\x00{end}\x00{text}".encode("utf-8")).hexdigest()
    return digest[:16]


def _units(text: str, max_words: int) -> list[tuple[int, int, int]]:
    """Sentence spans with their word counts; sentences longer than `max_words` are cut at word boundaries."""
    units = []
    for start, end in split_sentences(text):
        words = list(_WORD.finditer(text, start, end))
        for i in range(0, len(words), max_words):
            chunk = words[i : i + max_words]
            units.append((chunk[0].start(), chunk[-1].end(), len(chunk)))
    return units


def split_passages(document: Document, target_words: int = 150, overlap_words: int = 40) -> list[Passage]:
    """Group whole sentences into passages of about `target_words`, each starting with roughly
    `overlap_words` of the previous one, so an answer near a boundary is whole in some passage.

    A passage never runs over a page boundary (a PDF page, a slide, a sheet, a chapter), so the
    page it names is where all of its text is.
    """
    units = _units(document.text, max_words=target_words)
    passages: list[Passage] = []
    for page_units in _by_page(document, units):
        passages.extend(_group(document, page_units, target_words, overlap_words))
    return passages


def _by_page(document: Document, units: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
    """The sentence units of each page in turn (pages are separated by blank lines, so no
    sentence spans two); one group for a document without pages."""
    if not document.page_starts:
        return [units]
    groups: list[list[tuple[int, int, int]]] = []
    page = None
    for unit in units:
        unit_page = document.page_at(unit[0])
        if unit_page != page:
            groups.append([])
            page = unit_page
        groups[-1].append(unit)
    return groups


def _group(
    document: Document, units: list[tuple[int, int, int]], target_words: int, overlap_words: int
) -> list[Passage]:
    passages: list[Passage] = []
    first = 0
    while first < len(units):
        last, words = first, units[first][2]
        while last + 1 < len(units) and words + units[last + 1][2] <= target_words:
            last += 1
            words += units[last][2]
        start, end = units[first][0], units[last][1]
        text = document.text[start:end]
        passages.append(
            Passage(
                id=passage_id(document.path, start, end, text),
                document=document.path,
                start=start,
                end=end,
                text=text,
                page=document.page_at(start),
            )
        )
        if last + 1 >= len(units):
            break
        # Step back over trailing sentences until they hold about `overlap_words` (at least
        # one sentence, so neighbours always share context).
        nxt, back = last + 1, 0
        while nxt - 1 > first and (back == 0 or back + units[nxt - 1][2] <= overlap_words) and overlap_words > 0:
            nxt -= 1
            back += units[nxt][2]
        first = nxt
    return passages
