"""Split text into sentence spans, for passage splitting and for showing an answer's sentence.

Regex rules rather than a model: it must be instant, offline and exact about offsets, since
`text[start:end]` is what the reader and the chat show. The rules favour not splitting when in
doubt ("U.S. President", "Dr. Smith", "J. K. Rowling"): a sentence that is too long still holds
the answer, a sentence cut in half may not.
"""

from __future__ import annotations

import re

#: Words that end with a period but rarely end a sentence (matched case-sensitively).
ABBREVIATIONS = frozenset(
    """
    Mr Mrs Ms Mx Dr Prof Rev Hon Fr Sr Jr St Mt Ft Gen Col Lt Sgt Capt Cmdr Adm Gov Sen Rep Pres
    Supt Insp Messrs Mme Mlle Msgr No Nos Fig Figs Vol Vols Ch Sec Art Dept Est Inc Ltd Co Corp
    Bros Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec vs cf al approx ca ed eds pp Ph.D M.Sc
    B.Sc M.A B.A
    """.split()
)

#: Terminal punctuation, then any closing quotes/brackets, then horizontal space and one char.
_TERMINAL = re.compile(r"([.!?\u2026]+)[\"'\u201d\u2019\u00bb)\]]*(?=[^\S\r\n]+(\S))")
#: CJK full stops end a sentence without any following space.
_CJK_TERMINAL = re.compile(r"[\u3002\uff01\uff1f]+[\u300d\u300f\uff09]*")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_OPENERS = "\"'\u201c\u2018\u00ab([\u00bf\u00a1"
#: A line ending in one of these continues on the next line.
_CONTINUATION = ",;-\u2013\u2014(&/"
_HSPACE = " \t\f\v\u00a0"
_DOTTED_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans `(start, end)` of the sentences in `text`, in order.

    Every non-whitespace character lies in exactly one span and `text[start:end]` has no
    leading or trailing whitespace. Sentences end after . ! ? (plus closing quotes) when the
    next word starts a sentence, at blank lines, and at line breaks unless the next line
    clearly continues (starts in lower case, or the line ends with a comma or hyphen).
    """
    cuts = sorted(set(_punctuation_cuts(text)) | set(_line_cuts(text)))
    spans = []
    start = 0
    for cut in [*cuts, len(text)]:
        span = _strip(text, start, cut)
        if span is not None:
            spans.append(span)
        start = cut
    return spans


def _punctuation_cuts(text: str) -> list[int]:
    cuts = [m.end() for m in _TERMINAL.finditer(text) if _ends_sentence(text, m)]
    cuts.extend(m.end() for m in _CJK_TERMINAL.finditer(text))
    return cuts


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    nxt = match.group(2)
    starts_sentence = nxt.isdigit() or nxt in _OPENERS or (nxt.isalpha() and not nxt.islower())
    if not starts_sentence:
        return False
    return match.group(1) != "." or not _is_abbreviation(text, match.start(1))


def _is_abbreviation(text: str, period: int) -> bool:
    """Whether the word right before the period at `period` is an abbreviation or an initial."""
    word_start = period
    while word_start > 0 and word_start > period - 20 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:period].lstrip(_OPENERS)
    if not word:
        return False
    if word in ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isupper():  # an initial, as in "George W. Bush"
        return True
    return _DOTTED_ACRONYM.fullmatch(word) is not None  # "U.S", "e.g", "a.m"


def _line_cuts(text: str) -> list[int]:
    return [m.start() for m in _LINE_BREAK.finditer(text) if _line_break_ends_sentence(text, m)]


def _line_break_ends_sentence(text: str, match: re.Match[str]) -> bool:
    before = match.start()
    while before > 0 and text[before - 1] in _HSPACE:
        before -= 1
    after = match.end()
    while after < len(text) and text[after] in _HSPACE:
        after += 1
    if before == 0 or after == len(text) or text[before - 1] in "\r\n" or text[after] in "\r\n":
        return True  # a blank line (or the text's edge): always a boundary
    if text[after].islower() or text[before - 1] in _CONTINUATION:
        return False  # a hard-wrapped sentence
    return not (text[before - 1] == "." and _is_abbreviation(text, before - 1))


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None
