"""Which suppressed best span is worth showing when the reader abstains.

An abstention keeps the reader's candidates (`Answer.alternatives`, best first). Showing the best
one as a *guess* helps when it is likely right ("Who leads Ukraine?" -> Zelenskyy, 0.076 against
a 0.22 threshold) and misleads when it is not. Measured on the seed sets (accurate reader,
`Engine.answer()`, default settings; `python scripts/guess_rates.py` redoes it), a plain score
floor cannot do both: the held-out set's wrong guesses score 0.086, 0.094 (twice) and 0.174 and
its one right guess 0.184, so a floor low enough for Zelenskyy (0.076) shows five guesses there
with one right. What separates them is agreement: the reader naming the same thing in another
passage.

The rule: show the best candidate if its score is at least `GUESS_FLOOR`, or at least
`AGREED_FLOOR` when another candidate from a different place (another document, or another
offset) names the same thing (`same_thing`). With it, held-out questions show 2 guesses, 1 right
(1 of the 10 out-of-scope ones shows one: "What did the Kremlin say about the interview?", 0.174);
the seed set 4, 3 right (none of its 16 out-of-scope); "Who is the president of Ukraine?" (0.139)
and "Who leads Ukraine?" (0.076, with "Zelensky" at 0.054 in another passage) both show Zelenskyy.

Pure functions of an `Answer`: the web chat, the `/ask` JSON and `qa ask` share them.
"""

from __future__ import annotations

import re
from collections import Counter

from qa.types import Answer

#: A lone best span at or above this is shown (held-out: the right guess 0.184, wrong 0.174, 0.094, 0.086).
GUESS_FLOOR = 0.10
#: A best span at or above this is shown when another passage's candidate names the same thing
#: ("Who leads Ukraine?": Zelenskyy 0.076, Zelensky 0.054 elsewhere).
AGREED_FLOOR = 0.06
#: Two candidates name the same thing when the token F1 of their words is at least this...
AGREE_F1 = 0.5
#: ...or when a word of one starts with another word of the other, both of at least this many
#: letters (spellings of one name: "Zelensky"/"Zelenskyy"). A word shared as it is counts only
#: through the F1: "U.S. administration" and "Trump Administration" (F1 0.4) are not the same, and
#: the held-out guess they would have shown (0.086) is wrong.
STEM_CHARS = 5

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The lowercased words (runs of letters or digits) of `text`."""
    return _WORD.findall(text.lower())


def token_f1(a: list[str], b: list[str]) -> float:
    """SQuAD-style overlap of two word lists: 1.0 for the same words, 0.0 for none in common."""
    overlap = sum((Counter(a) & Counter(b)).values())
    if not overlap:
        return 0.0
    precision, recall = overlap / len(a), overlap / len(b)
    return 2 * precision * recall / (precision + recall)


def same_thing(a: str, b: str) -> bool:
    """Whether two spans name the same thing: their words mostly overlap, or a long word of one is
    another spelling of a long word of the other (one starts with the other)."""
    wa, wb = words(a), words(b)
    if not wa or not wb:
        return False
    if token_f1(wa, wb) >= AGREE_F1:
        return True
    long_a = [w for w in wa if len(w) >= STEM_CHARS]
    long_b = [w for w in wb if len(w) >= STEM_CHARS]
    return any(x != y and (x.startswith(y) or y.startswith(x)) for x in long_a for y in long_b)


def shown_guess(answer: Answer) -> Answer | None:
    """The candidate to show under an abstention, or None (an answer given, or no guess likely
    enough to be worth reading)."""
    if not answer.abstained or not answer.alternatives:
        return None
    best, others = answer.alternatives[0], answer.alternatives[1:]
    if not best.text.strip():
        return None
    if best.score >= GUESS_FLOOR:
        return best
    if best.score < AGREED_FLOOR:
        return None
    elsewhere = (o for o in others if (o.source, o.start) != (best.source, best.start))
    return best if any(same_thing(best.text, o.text) for o in elsewhere) else None
