"""Hostile questions never crash, hang or touch the index: `Engine.answer()`, `Engine.read()`
and the web app's `/ask` each answer, abstain, or raise ValueError saying what to fix.

The oracle is exact: a question that is empty once control/format characters and whitespace
are removed must be refused as empty; one over 1,000 characters must be refused as too long;
every other question must come back as a well-formed Answer (quoting its source exactly, or
abstaining); afterwards the plain question is still answered right. A hang fails the test at
the per-test timeout; the slowest call is recorded, not asserted. Run with QA_ROBUST_EXAMPLES=5
while developing on a busy machine.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from app_process import accepted_answers, copy_writable, seeds_dir
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from robust_support import (
    ERROR_MESSAGES,
    EXAMPLES,
    ask_raw,
    assert_answer_well_formed,
    assert_payload_well_formed,
    expected_question_error,
    index_fingerprint,
    record,
    timed,
)

PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

REAL_QUESTION = "Who interviewed Zelensky?"
WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000"
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u202e\u202d\u2066\u2069\u061c"
SCRIPT_WORDS = ["Zelensky", "Зеленский", "Ζελένσκι", "泽连斯基", "ゼレンスキー", "젤렌스키", "ज़ेलेंस्की",
                "ზელენსკი", "זלנסקי", "زيلينسكي", "NATO", "НАТО", "ناتو", "ceasefire", "перемирие"]
RIGHT_TO_LEFT = [
    "من أجرى المقابلة مع زيلينسكي؟",
    "מי ראיין את זלנסקי?",
    "\u202eWho interviewed Zelensky?\u202c",
    "\u202bمن\u202c Who \u2067interviewed\u2069 זלנסקי?",
    "کی با زلنسکی مصاحبه کرد؟",
]
EMOJI = ["🙂", "👩‍👩‍👧‍👦", "🇺🇦", "🏳️‍🌈", "👍🏽", "🧪", "\U0001FAE0", "©️", "#️⃣"]
MARKUP = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(document.cookie)>",
    "</textarea><svg/onload=alert(1)>",
    "<!-- comment --><b>Who</b> interviewed <i>Zelensky</i>?",
    "{{7*7}} ${7*7} <%= 7*7 %>",
    "[link](javascript:alert(1)) **bold** $x^2$",
    "<iframe src='file:///etc/passwd'></iframe>",
]
SQL = [
    "' OR '1'='1",
    "Robert'); DROP TABLE passages;--",
    "\" UNION SELECT text FROM passages --",
    "1; DELETE FROM documents WHERE 1=1",
    "admin'--",
    "%' AND 1=0 UNION ALL SELECT NULL--",
]
PUNCTUATION = string.punctuation + "¿¡…—–«»“”‘’·•§¶†‡※‽⁂〜、。！？"


def _long(n: int) -> st.SearchStrategy[str]:
    """Strings of exactly `n` characters, from a repeated random seed text."""
    seeds = st.text(min_size=1, max_size=30) | st.just(REAL_QUESTION + " ")
    return seeds.map(lambda s: (s * (n // len(s) + 1))[:n])


FRAGMENTS: dict[str, st.SearchStrategy[str]] = {
    "empty": st.just(""),
    "whitespace": st.text(alphabet=WHITESPACE, min_size=1, max_size=40),
    "control": st.text(alphabet=st.characters(categories=("Cc",)), min_size=1, max_size=40),
    "invisible": st.text(alphabet=INVISIBLE, min_size=1, max_size=20),
    "surrogates": st.text(alphabet=st.characters(categories=("Cs",)), min_size=1, max_size=4),
    "mixed scripts": st.lists(st.sampled_from(SCRIPT_WORDS), min_size=2, max_size=8).map(" ".join),
    "right-to-left": st.sampled_from(RIGHT_TO_LEFT),
    "emoji": st.lists(st.sampled_from(EMOJI) | st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),
                      min_size=1, max_size=20).map("".join),
    "combining marks": st.text(alphabet=st.characters(categories=("Mn",)), min_size=1, max_size=60),
    "10,000 characters": _long(10_000),
    "at the 1,000 limit": st.sampled_from([999, 1000, 1001]).flatmap(_long),
    "html and script": st.sampled_from(MARKUP),
    "sql-like": st.sampled_from(SQL),
    "punctuation only": st.text(alphabet=PUNCTUATION, min_size=1, max_size=60),
    "any unicode": st.text(max_size=200),
}


@st.composite
def hostile_questions(draw: st.DrawFn) -> tuple[str, str]:
    """(category, question): one hostile fragment, sometimes mixed with others or a real question."""
    label = draw(st.sampled_from(sorted(FRAGMENTS)))
    parts = [draw(FRAGMENTS[label])]
    extras = [st.just(REAL_QUESTION), st.just(" "), *FRAGMENTS.values()]
    for _ in range(draw(st.integers(0, 2))):
        parts.append(draw(draw(st.sampled_from(extras))))
    draw(st.randoms()).shuffle(parts)
    return label, "".join(parts)


@dataclass
class Tally:
    """Per-target counts for the report: calls, outcomes, failures."""

    calls: int = 0
    outcomes: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)
    crashes: int = 0
    slowest_s: float = 0.0
    corruptions: int = 0


TALLIES: dict[str, Tally] = {}


def tally(target: str) -> Tally:
    return TALLIES.setdefault(target, Tally())


def _outcome(error: BaseException | None, answer_text: str | None) -> str:
    if error is not None:
        return f"refused:{type(error).__name__}"
    return "abstained" if not answer_text else "answered"


def _check_refusal(question: str, error: BaseException | None, expected: str) -> None:
    assert error is not None, f"{question!r} should be refused as {expected}"
    assert re.search(ERROR_MESSAGES[expected], str(error)), f"{question!r}: {error!r}"


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """A real engine over a temp copy of the seeds, its index built; and that index's fingerprint."""
    from qa.config import Settings
    from qa.pipeline import Engine

    work = tmp_path_factory.mktemp("questions")
    corpus = copy_writable(seeds_dir(), work / "seeds")
    engine = Engine(Settings.load(corpus_dir=str(corpus), index_dir=str(work / "index")))
    engine.ensure_index(progress=False)
    yield engine, work, index_fingerprint(work / "index")
    for target, t in TALLIES.items():
        record("questions", target=target, calls=t.calls, crashes=t.crashes, slowest_s=round(t.slowest_s, 2),
               corruptions=t.corruptions, outcomes=dict(t.outcomes), categories=dict(t.categories))


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(case=hostile_questions())
def test_answer_answers_abstains_or_says_what_to_fix(engine_env, case: tuple[str, str]) -> None:
    engine, work, fingerprint = engine_env
    label, question = case
    event(label)
    result, error, seconds = timed(engine.answer, question)
    t = tally("Engine.answer")
    t.calls += 1
    t.categories[label] += 1
    t.outcomes[_outcome(error, result.text if result else None)] += 1
    t.slowest_s = max(t.slowest_s, seconds)
    expected = expected_question_error(question)
    if expected:
        t.crashes += not isinstance(error, ValueError)
        assert isinstance(error, ValueError), repr(error)
        _check_refusal(question, error, expected)
    else:
        t.crashes += error is not None
        assert error is None, f"answer({question!r}) raised {error!r}"
        assert_answer_well_formed(result, work)
        assert result.hits, "the seed index has passages, so retrieval returns some"
    unchanged = index_fingerprint(work / "index") == fingerprint
    t.corruptions += not unchanged
    assert unchanged, "asking a question changed the index files"


CONTEXTS = st.one_of(
    st.just(""),
    st.text(alphabet=WHITESPACE, max_size=30),
    st.sampled_from(MARKUP + SQL + RIGHT_TO_LEFT),
    st.text(max_size=500),
    st.text(alphabet=st.characters(categories=("Cs", "Cc", "Co")), min_size=1, max_size=50),
    _long(10_000),
    st.just("Stuart Ramsay, Sky News chief correspondent, interviewed Zelensky in Kyiv."),
)
_SURROGATE = re.compile("[\ud800-\udfff]")


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(case=hostile_questions(), context=CONTEXTS)
def test_read_answers_abstains_or_says_what_to_fix(engine_env, case: tuple[str, str], context: str) -> None:
    engine, work, fingerprint = engine_env
    label, question = case
    result, error, seconds = timed(engine.read, question, context)
    t = tally("Engine.read")
    t.calls += 1
    t.categories[label] += 1
    t.outcomes[_outcome(error, result.text if result else None)] += 1
    t.slowest_s = max(t.slowest_s, seconds)
    expected = expected_question_error(question)
    if expected:
        t.crashes += not isinstance(error, ValueError)
        _check_refusal(question, error, expected)
        return
    t.crashes += error is not None
    assert error is None, f"read({question!r}, {context[:80]!r}) raised {error!r}"
    assert_answer_well_formed(result, from_index=False)
    if not result.abstained:  # offsets index the context (a lone surrogate reads as U+FFFD)
        assert _SURROGATE.sub("\ufffd", context)[result.start : result.end] == result.text


# ----------------------------------------------------------------------------- the web API


@pytest.fixture(scope="module")
def web(web_server):
    """A gradio client on the session's app, the app's index folder and its fingerprint once ready."""
    gradio_client = pytest.importorskip("gradio_client")
    client = gradio_client.Client(web_server.url, verbose=False)
    assert_payload_well_formed(client.predict(REAL_QUESTION, 5, -1, api_name="/ask"))  # waits for the index
    index_dir = Path(web_server.corpus_dir).parent / "index"
    return client, web_server.url, index_dir, index_fingerprint(index_dir)


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(case=hostile_questions())
def test_web_ask_answers_abstains_or_says_what_to_fix(web, case: tuple[str, str]) -> None:
    client, url, index_dir, fingerprint = web
    label, question = case
    if _SURROGATE.search(question):  # gradio_client cannot encode these; a browser can send them
        payload, error, seconds = timed(ask_raw, url, question, 5, -1)
    else:
        payload, error, seconds = timed(client.predict, question, 5, -1, api_name="/ask")
    t = tally("web /ask")
    t.calls += 1
    t.categories[label] += 1
    t.outcomes[_outcome(error, payload.get("text") if isinstance(payload, dict) else None)] += 1
    t.slowest_s = max(t.slowest_s, seconds)
    # What the server receives: JSON joins an escaped surrogate pair into one character
    # ("\\ud800\\udc00" arrives as U+10000), so judge the question as decoded.
    expected = expected_question_error(json.loads(json.dumps(question)))
    if expected:
        # gr.Error reaches the client as an exception carrying the engine's message.
        _check_refusal(question, error, expected)
    else:
        t.crashes += error is not None
        assert error is None, f"/ask {question!r} failed: {error!r}"
        assert_payload_well_formed(payload)
    unchanged = index_fingerprint(index_dir) == fingerprint
    t.corruptions += not unchanged
    assert unchanged, "asking a question changed the index files"


@pytest.mark.slow
def test_after_the_hostile_questions_the_plain_one_is_still_answered(engine_env, web) -> None:
    """None of the hostile questions above left the engine or the app answering worse."""
    engine, work, fingerprint = engine_env
    client, _, index_dir, web_fingerprint = web
    accepted = accepted_answers(REAL_QUESTION)
    assert engine.answer(REAL_QUESTION).text in accepted
    assert engine.read(REAL_QUESTION, "Stuart Ramsay, Sky News chief correspondent, interviewed Zelensky in Kyiv.",
                       ).text in ("Stuart Ramsay", "Stuart Ramsay, Sky News chief correspondent")
    assert client.predict(REAL_QUESTION, 5, -1, api_name="/ask")["text"] in accepted
    assert index_fingerprint(work / "index") == fingerprint and index_fingerprint(index_dir) == web_fingerprint


def test_the_oracle_itself() -> None:
    """The expected-outcome rule agrees with validate_question on hand-picked cases."""
    from qa.pipeline import validate_question

    cases = {"": "empty", " \t\u2028\u200b\ufeff\x00": "empty", "\ud800": "empty", "a" * 1001: "shorten",
             " " * 5000: "empty", "a" * 1000: None, "🙂": None, "?": None, "\u0300": None}
    for question, expected in cases.items():
        assert expected_question_error(question) == expected, question
        if expected is None:
            assert validate_question(question, 1000)
        else:
            with pytest.raises(ValueError, match=ERROR_MESSAGES[expected]):
                validate_question(question, 1000)
