"""The visible best guess under an abstention (qa.guesses.shown_guess): the rule on constructed
answers (fast), and the chat's reply from the real engine over the seeds (slow)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from qa.guesses import same_thing, shown_guess
from qa.types import Answer

A = "seeds/a.txt"
B = "seeds/b.txt"


def _span(text: str, score: float, source: str = A, start: int = 0) -> Answer:
    return Answer(text=text, score=score, source=source, start=start, end=start + len(text))


def _abstained(*alternatives: Answer) -> Answer:
    return Answer(text="", score=alternatives[0].score if alternatives else 0.0, alternatives=list(alternatives))


def test_a_best_span_at_the_floor_is_shown_alone() -> None:
    """"Who is the president of Ukraine?": Zelenskyy at 0.139 needs no support."""
    best = _span("Zelenskyy", 0.139)
    assert shown_guess(_abstained(best)) is best
    assert shown_guess(_abstained(_span("Zelenskyy", 0.10))) is not None
    # The held-out set's wrong guesses: 0.094 and 0.086 alone are hidden.
    assert shown_guess(_abstained(_span("Kyiv ceding Russian-occupied territories", 0.094))) is None


def test_a_weaker_span_is_shown_when_another_passage_names_the_same_thing() -> None:
    """"Who leads Ukraine?": Zelenskyy 0.076 with "Zelensky" 0.054 elsewhere."""
    best = _span("Zelenskyy", 0.076, A, 120)
    assert shown_guess(_abstained(best, _span("Zelensky", 0.054, B, 40))) is best
    assert shown_guess(_abstained(best, _span("Volodymyr Zelenskyy", 0.01, A, 900))) is best  # same doc, elsewhere
    # The same spot read twice is no second opinion; nor is another name; nor a score under 0.06.
    assert shown_guess(_abstained(best, _span("Zelenskyy", 0.05, A, 120))) is None
    assert shown_guess(_abstained(best, _span("Stuart Ramsay", 0.05, B, 40))) is None
    assert shown_guess(_abstained(_span("Zelenskyy", 0.059), _span("Zelensky", 0.054, B, 40))) is None


def test_same_thing() -> None:
    assert same_thing("Zelensky", "Ukraine’s Zelenskyy")  # another spelling, 5+ letters
    assert same_thing("through diplomatic means", "diplomatic means")  # F1 0.8
    assert same_thing("the U.S.", "U.S")  # normalised words: ["the", "u", "s"] vs ["u", "s"]
    assert not same_thing("U.S. administration", "Trump Administration")  # F1 0.4, one word shared
    assert not same_thing("Kyiv", "Kyivan")  # words under 5 letters are not stems
    assert not same_thing("", "Zelenskyy")


def test_an_answer_or_an_empty_best_span_shows_no_guess() -> None:
    answered = _span("Zelenskyy", 0.9)
    answered.alternatives = [_span("Zelensky", 0.5, B)]
    assert shown_guess(answered) is None
    assert shown_guess(_abstained()) is None
    assert shown_guess(_abstained(_span("  ", 0.5))) is None


# -- the real chat reply -----------------------------------------------------------------------


class _Lines(HTMLParser):
    """The reply's top-level lines: (class, text) of each <p> and <blockquote> outside <details>."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []
        self._depth = 0
        self._open: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "details":
            self._depth += 1
        elif tag in ("p", "blockquote") and not self._depth and self._open is None:
            self._open = [dict(attrs).get("class") or tag]

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self._depth -= 1
        elif tag in ("p", "blockquote") and self._open is not None:
            self.lines.append((self._open[0], "".join(self._open[1:])))
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open.append(data)


def _reply_lines(html: str) -> list[tuple[str, str]]:
    parser = _Lines()
    parser.feed(html)
    return parser.lines


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A real engine (accurate reader, default settings) over a real index of the seeds."""
    from app_process import seeds_dir

    from qa.config import Settings
    from qa.pipeline import Engine

    settings = Settings.load(corpus_dir=str(seeds_dir()), index_dir=str(tmp_path_factory.mktemp("guess") / "index"))
    engine = Engine(settings)
    engine.ensure_index()
    return engine


@pytest.mark.slow
def test_the_reply_to_who_leads_ukraine_names_zelenskyy_in_its_first_two_lines(engine) -> None:
    from qa.web_render import render_reply

    answer = engine.answer("Who leads Ukraine?")
    assert answer.abstained and answer.text == ""  # below the threshold: evaluation still counts an abstention
    (first_class, first), (second_class, second), *_ = _reply_lines(render_reply(answer))
    assert (first_class, first) == ("qa-answer", "I couldn't find that in the documents.")
    assert second_class == "qa-guess"
    assert second.startswith("Best guess, below the confidence threshold: “Zelenskyy” — seeds/")
    assert second.endswith("(low confidence, 7%)")


@pytest.mark.slow
def test_an_out_of_scope_question_shows_no_guess(engine) -> None:
    from qa.web_render import api_payload, render_reply

    answer = engine.answer("What is the boiling point of water?")
    assert answer.abstained and answer.alternatives  # the reader did pick a span; it is not shown
    lines = _reply_lines(render_reply(answer))
    assert lines[0] == ("qa-answer", "I couldn't find that in the documents.")
    assert [c for c, _ in lines if c == "qa-guess"] == []
    assert api_payload(answer)["guess"] is None
