"""Follow-up questions: the reader gets the pronoun resolved to what the last turn was about."""

from __future__ import annotations

import pytest

from qa.followups import resolve_followup
from qa.types import Answer, Turn

RAMSAY = Turn("Who interviewed Zelensky?", "Sky News chief correspondent Stuart Ramsay")


@pytest.mark.parametrize(
    ("question", "history", "expected"),
    [
        # The pinned follow-up: "he" is the person answered before, not the one asked about.
        ("Which channel does he work for?", [RAMSAY], "Which channel does Stuart Ramsay work for?"),
        ("What is his role?", [RAMSAY], "What is Stuart Ramsay's role?"),
        ("What did she announce?", [Turn("Who leads the central bank?", "Maria Lopez")],
         "What did Maria Lopez announce?"),
        ("What is her salary?", [Turn("Who leads the central bank?", "Maria Lopez")], "What is Maria Lopez's salary?"),
        ("Who interviewed her?", [Turn("Who leads the central bank?", "Maria Lopez")], "Who interviewed Maria Lopez?"),
        ("When was it founded?", [Turn("Which company makes the Model T?", "Ford Motor Company")],
         "When was Ford Motor Company founded?"),
        # An abstained turn: the name the previous question was about.
        ("What does he want NATO to do?", [Turn("What did Zelenskyy say in the interview?")],
         "What does Zelenskyy want NATO to do?"),
        # An earlier Answer works as a turn.
        ("Where does he work?", [Answer("Stuart Ramsay", 0.9, question="Who interviewed Zelensky?")],
         "Where does Stuart Ramsay work?"),
    ],
)
def test_pronouns_are_resolved_to_the_last_turn(question: str, history: list, expected: str) -> None:
    assert resolve_followup(question, history) == expected


@pytest.mark.parametrize(
    ("question", "history"),
    [
        ("Where does he live?", []),  # nothing to refer to
        ("Who is the president of Ukraine?", [RAMSAY]),  # no pronoun
        ("What does he want?", [Turn("Who won?", "")]),  # no name anywhere
        ("When was it founded?", [Turn("Who founded Ford?", "Henry Ford")]),  # "it" is not a person
        ("Did Stuart Ramsay say he was in Kyiv?", [RAMSAY]),  # the name is already there
        ("Which channel does he work for?", ["Who interviewed Zelensky?"]),  # "he" is the unknown answer
    ],
)
def test_questions_without_a_resolvable_pronoun_are_left_alone(question: str, history: list) -> None:
    assert resolve_followup(question, history) == question
