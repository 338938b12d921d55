"""Pick the best answer span from start/end logits of one tokenised window.

Shared by the reader at inference time and by training-time evaluation, so both
score answers the same way. The reader also widens a span over the noun its question
names (`complete_noun_phrase`) and over the rest of a word it cuts (`whole_words`);
training-time scores leave the model's span as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SpanCandidate:
    """A span inside one window: token indices, character offsets and its logit score."""

    start_token: int
    end_token: int
    start_char: int
    end_char: int
    logit: float


def best_span(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: list[tuple[int, int]] | np.ndarray,
    context_mask: np.ndarray,
    max_answer_tokens: int = 30,
) -> SpanCandidate | None:
    """Return the highest scoring span (start <= end, bounded length) inside the context tokens.

    Vectorised over all start/end pairs: a band matrix of allowed (start, end) pairs
    is cheaper than Python loops over the top-k, and exact.
    """
    idx = np.flatnonzero(context_mask)
    if idx.size == 0:
        return None
    s = start_logits[idx].astype(np.float64)
    e = end_logits[idx].astype(np.float64)
    n = idx.size
    scores = s[:, None] + e[None, :]
    rows = np.arange(n)[:, None]
    cols = np.arange(n)[None, :]
    allowed = (cols >= rows) & (cols - rows < max_answer_tokens)
    # Context tokens must be contiguous in the window for the band to be meaningful.
    scores = np.where(allowed, scores, -np.inf)
    flat = int(np.argmax(scores))
    i, j = divmod(flat, n)
    start_token, end_token = int(idx[i]), int(idx[j])
    return SpanCandidate(
        start_token=start_token,
        end_token=end_token,
        start_char=int(offsets[start_token][0]),
        end_char=int(offsets[end_token][1]),
        logit=float(scores[i, j]),
    )


#: Words that end the noun after "what" / "which" in a question ("what phase *of* ...", "which borders *must* ...").
_AUXILIARIES = frozenset(
    "is are was were be been am do does did has have had will would can could should shall may might must "
    "of in on at for to from with by about".split()
)
_GENERIC_NOUNS = frozenset("kind type sort one ones thing things part".split())
_WORD = re.compile(r"[^\W_][\w'’-]*")
_NEXT_WORD = re.compile(r"[ \t]+(" + _WORD.pattern + ")")  # on the same line


def _noun_key(word: str) -> str:
    word = word.lower().replace("’", "'")
    word = word[:-2] if word.endswith("'s") else word
    return word[:-1] if len(word) > 3 and word.endswith("s") else word


def question_nouns(question: str) -> frozenset[str]:
    """The noun a "what X" / "which X" question asks for ("What phase of the war ..." -> phase).

    Only words between the question word and an auxiliary or preposition count, so "What caused
    the fire" (a verb follows "what") gives nothing.
    """
    words = _WORD.findall(question)
    for i, word in enumerate(words):
        if word.lower() not in ("what", "which", "whose"):
            continue
        nouns = []
        for following in words[i + 1 : i + 4]:
            if following.lower() in _AUXILIARIES:
                if nouns and nouns[-1].lower() not in _GENERIC_NOUNS:
                    return frozenset(_noun_key(n) for n in nouns)
                break
            nouns.append(following)
    return frozenset()


def complete_noun_phrase(nouns: frozenset[str], text: str, start: int, end: int) -> int:
    """The end of the span widened over the question's nouns (`question_nouns`) when the text goes on with them.

    Readers trained on SQuAD learn to leave out the noun the question already names ("What phase
    of the war ...?" -> "hot", where the text says "hot phase"); people expect the whole phrase.
    """
    while nouns and start < end:
        following = _NEXT_WORD.match(text, end)
        if following is None or (key := _noun_key(following.group(1))) not in nouns:
            break
        end = following.end()
        nouns = nouns - {key}
    return end


#: Characters that join the parts of one "word" when letters or digits stand on both sides:
#: e-mail addresses, host names, paths, times and decimals.
_JOINERS = frozenset("@._/:")


def _joined(text: str, i: int) -> bool:
    """Whether text[i - 1] and text[i] belong to one word."""
    before, after = text[i - 1], text[i]
    if before.isalnum() and after.isalnum():
        return True
    if after in _JOINERS:
        return before.isalnum() and i + 1 < len(text) and text[i + 1].isalnum()
    return before in _JOINERS and i >= 2 and text[i - 2].isalnum() and after.isalnum()


#: How far `whole_words` widens a span on each side: text extracted without spaces (some PDFs
#: run a whole line together) is not one word to take in.
MAX_WORD_REST = 40


def whole_words(text: str, start: int, end: int) -> tuple[int, int]:
    """The span widened so that it does not cut a word, address or number in two.

    Sub-word tokenisers let a reader stop inside "billing@northwind.example" (after "northwind")
    or "10:30"; a person expects the whole. Hyphens and apostrophes do not join: "pro-Putin" may
    rightly give "Putin", "Kyiv's control" "Kyiv". An edge whose word goes on for more than
    `MAX_WORD_REST` characters stays where it is.
    """
    if start >= end:
        return start, end
    return _word_edge(text, start, -1), _word_edge(text, end, 1)


def _word_edge(text: str, edge: int, step: int) -> int:
    """`edge` moved by `step` while it cuts a word, or left alone if that takes too far."""
    moved = edge
    while 0 < moved < len(text) and _joined(text, moved):
        moved += step
        if abs(moved - edge) > MAX_WORD_REST:
            return edge
    return moved
