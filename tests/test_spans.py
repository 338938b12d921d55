"""Answer spans end on the noun a "what X" / "which X" question asks for, and never cut a word in two."""

from __future__ import annotations

import pytest

from qa.spans import complete_noun_phrase, question_nouns, whole_words


@pytest.mark.parametrize(
    ("question", "nouns"),
    [
        ("What phase of the war does Zelenskyy want to stop?", {"phase"}),
        ("Which borders must the alliance recognize?", {"border"}),
        ("What security shield does Kyiv want?", {"security", "shield"}),
        ("whose house was it?", {"house"}),
        # a verb, an auxiliary or a generic word after "what": nothing to complete
        ("What caused the fire?", set()),
        ("What is the capital of Peru?", set()),
        ("What kind of partnership is needed?", set()),
        ("Who won the election?", set()),
    ],
)
def test_question_nouns(question: str, nouns: set[str]) -> None:
    assert question_nouns(question) == nouns


def _complete(question: str, text: str, span: str) -> str:
    start = text.index(span)
    return text[start : complete_noun_phrase(question_nouns(question), text, start, start + len(span))]


def test_the_span_takes_in_the_noun_the_question_names() -> None:
    text = "He wants to stop the hot phase of the war quickly."
    assert _complete("What phase of the war does he want to stop?", text, "hot") == "hot phase"


def test_plural_possessive_and_curly_apostrophes_match() -> None:
    text = "NATO must recognise Ukraine’s internationally accepted borders."
    assert _complete("Which border must NATO recognise?", text, "Ukraine’s internationally accepted") == (
        "Ukraine’s internationally accepted borders")


def test_a_two_word_noun_is_taken_in_whole() -> None:
    text = "Kyiv wants a NATO security shield over the land it holds."
    assert _complete("What security shield does Kyiv want?", text, "a NATO") == "a NATO security shield"


@pytest.mark.parametrize(
    ("question", "text", "span"),
    [
        # the noun is already inside the span
        ("What phase of the war does he want to stop?", "He wants to stop the hot phase now.", "hot phase"),
        # the next word is not the question's noun
        ("What phase of the war does he want to stop?", "He wants to stop the hot war now.", "hot"),
        # the noun is on the next line: a heading or list item, not the same phrase
        ("What landscape is he navigating?", "the diplomatic\nlandscape", "diplomatic"),
        # no "what X" noun at all
        ("What caused the fire?", "The short circuit caused the fire.", "The short circuit"),
    ],
)
def test_other_spans_are_left_alone(question: str, text: str, span: str) -> None:
    assert _complete(question, text, span) == span


def _widen(text: str, span: str) -> str:
    start = text.index(span)
    start, end = whole_words(text, start, start + len(span))
    return text[start:end]


@pytest.mark.parametrize(
    ("text", "span", "whole"),
    [
        ("Send invoices to billing@northwind.example by the 25th.", "billing@northwind", "billing@northwind.example"),
        ("Send invoices to billing@northwind.example by the 25th.", "northwind.example", "billing@northwind.example"),
        ("The notes are on wiki.example.org/team/notes today.", "example.org", "wiki.example.org/team/notes"),
        ("The meeting starts at 10:30 sharp.", "10", "10:30"),
        ("It costs 3.50 euros.", "3", "3.50"),
        ("The router is a Harbour5G model.", "Harbour", "Harbour5G"),
    ],
)
def test_a_span_that_cuts_a_word_takes_in_the_whole_word(text: str, span: str, whole: str) -> None:
    assert _widen(text, span) == whole


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("The bakery opens at seven.", "seven"),  # a full stop ends the sentence, not a word
        ("Ask the U.S. embassy.", "U.S"),
        ("He leads a pro-Putin party.", "Putin"),  # hyphens and apostrophes do not join
        ("Areas under Kyiv's control.", "Kyiv"),
        ('Putin will not "return" to seize land.', "return"),
        ("Call 0161 496 0723 now.", "0161 496 0723"),
        # text run together without spaces (as some PDFs extract) is not one word to take in
        ("TheboilerinthecellarwaslastservicedonthetwelfthofMarch2026byJenkins"
         "HeatingofMillLaneandthenextannualserviceisdueinMarch2027.", "Jenkins"),
    ],
)
def test_spans_on_word_boundaries_are_left_alone(text: str, span: str) -> None:
    assert _widen(text, span) == span
