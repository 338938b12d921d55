"""Follow-up questions: give the reader the question it needs.

After "Who interviewed Zelensky?" → "Stuart Ramsay", the follow-up "Which channel does he work
for?" reaches an extractive reader that cannot know who "he" is. Retrieval already sees the
earlier questions; the reader gets the follow-up with its pronoun replaced by what it refers
to: the name in the previous answer, else the name the previous question was about.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from qa.types import Turn

#: Pronouns that stand for a person or group, and those that stand for a thing.
_PERSONAL = {"he", "she", "him", "they", "them"}
_PERSONAL_POSSESSIVE = {"his", "their", "hers", "theirs"}
_THING = {"it"}
_THING_POSSESSIVE = {"its"}
_ALL = _PERSONAL | _PERSONAL_POSSESSIVE | _THING | _THING_POSSESSIVE | {"her"}
_PRONOUN = re.compile(r"\b(" + "|".join(sorted(_ALL, key=len, reverse=True)) + r")\b", re.IGNORECASE)
#: A run of capitalised words (a name): "Stuart Ramsay", "NATO", "Volodymyr Zelenskyy".
_NAME = re.compile(r"\b[A-Z][\w'’.-]*(?:\s+(?:[A-Z][\w'’.-]*|of|de|van|von|al|bin))*(?<![\s'’.-])")
#: Words after which "her" is an object ("ask her", "about her"), not a possessive ("her role").
_OBJECT_FOLLOWERS = {"", "and", "or", "about", "to", "for", "with", "from", "in", "on", "at", "by", "as", "when",
                     "after", "before", "say", "said", "do", "does", "did", "is", "was"}
_QUESTION_WORDS = {"Who", "Whom", "Whose", "What", "Which", "When", "Where", "Why", "How", "Did", "Does", "Do",
                   "Is", "Was", "Are", "Were", "Can", "Could", "Would", "Should", "Has", "Have", "Had", "In", "On",
                   "The", "A", "An", "And", "But", "Tell", "Name", "According"}


def last_name(text: str) -> str:
    """The last capitalised run of words in `text` that is not just a question word."""
    names = [m.group(0) for m in _NAME.finditer(text)]
    names = [" ".join(w for w in n.split() if w not in _QUESTION_WORDS) for n in names]
    names = [n for n in names if n]
    return names[-1] if names else ""


def referent(turn: Turn) -> str:
    """What a pronoun in the next question most likely stands for, or "" when unsure."""
    if turn.answer:
        name = last_name(turn.answer)
        if name:
            return name
        return turn.answer if len(turn.answer.split()) <= 6 else ""
    if _asks_who(turn.question):
        return ""  # the pronoun stands for the unknown answer, not for whom the question named
    return last_name(turn.question)


def _asks_who(question: str) -> bool:
    words = question.split()
    return bool(words) and words[0].lower() in {"who", "whom", "whose"}


def resolve_followup(question: str, history: Sequence[str | Turn]) -> str:
    """`question` with its first pronoun replaced by its referent in the last turn; unchanged
    when there is no earlier turn, no pronoun, or nothing sensible to put in its place."""
    if not history:
        return question
    last = Turn.of(history[-1])
    name = referent(last)
    match = _PRONOUN.search(question)
    if not name or not match or name.lower() in question.lower():
        return question
    word = match.group(1).lower()
    if word in _THING | _THING_POSSESSIVE and _asks_who(last.question):
        return question
    possessive = word in _PERSONAL_POSSESSIVE | _THING_POSSESSIVE
    if word == "her":
        following = question[match.end():].split()
        possessive = (following[0].strip("?.!,;:").lower() if following else "") not in _OBJECT_FOLLOWERS
    return question[: match.start()] + (f"{name}'s" if possessive else name) + question[match.end():]
