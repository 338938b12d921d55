"""The chat's rendering: escaping, highlighting at the real offsets, confidence words (no models);
the event handlers (reply with history, uploads) over a stub engine that records their calls,
and over the real engine, which must answer what they pass it (slow)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qa import web
from qa.types import Answer, Hit, Passage, Turn

DOC = "seeds/doc.txt"


def _answer(context: str, context_start: int, start: int, end: int, **kw) -> Answer:
    text = kw.pop("text", None)
    if text is None:
        text = context[start - context_start : end - context_start]
    return Answer(
        text=text,
        score=kw.pop("score", 0.92),
        source=kw.pop("source", DOC),
        start=start,
        end=end,
        context=context,
        context_start=context_start,
        **kw,
    )


def _hit(text: str, start: int, rank: int = 1, document: str = DOC, **kw) -> Hit:
    passage = Passage(id=f"{document}#{start}", document=document, start=start, end=start + len(text), text=text)
    return Hit(passage=passage, rank=rank, score=kw.pop("score", 0.0328), **kw)


def _marked(rendered: str) -> list[str]:
    return re.findall(r"<mark>(.*?)</mark>", rendered)


@pytest.mark.parametrize(
    ("score", "words"),
    [
        (0.92, "high confidence, 92%"),
        (0.8, "high confidence, 80%"),
        (0.799, "medium confidence, 79%"),
        (0.5, "medium confidence, 50%"),
        (0.49, "low confidence, 49%"),
        (0.29, "low confidence, 29%"),
        (0.0, "low confidence, 0%"),
        (1.0, "high confidence, 100%"),
    ],
)
def test_confidence_words(score: float, words: str) -> None:
    assert web.confidence_words(score) == words


def test_answer_is_bold_with_source_and_confidence() -> None:
    context = "In an interview with Sky News chief correspondent Stuart Ramsay, the president spoke."
    start = 100 + context.index("Stuart Ramsay")
    ans = _answer(context, 100, start, start + len("Stuart Ramsay"), score=0.93)
    out = web.render_reply(ans)
    assert "<strong>Stuart Ramsay</strong>" in out
    assert _marked(out) == ["Stuart Ramsay"]
    assert "seeds/doc.txt" in out
    assert "high confidence, 93%" in out


def test_highlight_uses_offsets_when_answer_occurs_twice() -> None:
    context = "Kyiv said no, then Kyiv said yes."
    second = context.rindex("Kyiv")
    out = web.highlight(context, 50, 50 + second, 50 + second + 4, "Kyiv")
    assert out == "Kyiv said no, then <mark>Kyiv</mark> said yes."


def test_rendered_answer_marks_the_occurrence_at_the_offsets() -> None:
    context = "Kyiv said no, then Kyiv said yes."
    second = context.rindex("Kyiv")
    ans = _answer(context, 10, 10 + second, 10 + second + 4)
    out = web.render_answer(ans)
    assert "Kyiv said no, then <mark>Kyiv</mark> said yes." in out


def test_highlight_falls_back_to_search_when_offsets_are_outside() -> None:
    assert web.highlight("a b c", 0, 40, 41, "b") == "a <mark>b</mark> c"
    assert web.highlight("a b c", 0, None, None, "zz") == "a b c"


def test_script_in_document_is_shown_as_text() -> None:
    context = "Before <script>alert('x')</script> after <b>bold</b>."
    start = context.index("after")
    ans = _answer(context, 0, start, start + 5, hits=[_hit(context, 0)])
    out = web.render_reply(ans)
    assert "<script" not in out
    assert "<b>bold" not in out
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in out


def test_script_in_answer_and_source_is_escaped() -> None:
    context = "x <img src=x onerror=alert(1)> y"
    ans = _answer(context, 0, 2, 30, source="seeds/<evil>.txt")
    out = web.render_reply(ans)
    assert "<img" not in out
    assert "<evil>" not in out
    assert "&lt;img src=x onerror=alert(1)&gt;" in out


def test_markdown_and_newlines_in_text_are_neutralised() -> None:
    out = web.escape("*not italic* and $x$\n\nnew paragraph | [link](http://x)")
    assert "*" not in out and "$" not in out and "[" not in out and "|" not in out
    assert "\n" not in out
    assert out.count("<br>") == 2


def test_reply_is_a_single_html_block() -> None:
    """A blank line would end the HTML block and let Markdown loose on document text."""
    passage = "First paragraph.\n\nSecond paragraph with Sky News."
    start = passage.index("Sky News")
    ans = _answer("Second paragraph with Sky News.", passage.index("Second"), start, start + 8, hits=[_hit(passage, 0)])
    assert "\n" not in web.render_reply(ans)


def test_evidence_lists_hits_with_ranks_and_marks_answer_passage() -> None:
    passage = "Zelensky spoke to Sky News. Sky News aired it."
    start = 200 + passage.index("Sky News")
    ans = _answer(
        "Zelensky spoke to Sky News.",
        200,
        start,
        start + 8,
        hits=[
            _hit(passage, 200, rank=1, dense_rank=2, sparse_rank=1, score=0.0325),
            _hit("Unrelated text.", 900, rank=2, dense_rank=1, sparse_rank=None, document="seeds/other.txt"),
        ],
    )
    evidence = web.render_evidence(ans)
    assert evidence.startswith("<details><summary>Evidence (2 passages read)</summary>")
    assert "fused rank #1, score 0.0325 · dense #2 · BM25 #1" in evidence
    assert "dense #1 · BM25 —" in evidence
    assert "seeds/other.txt" in evidence
    # The answer is marked once in its passage (first occurrence, at the offsets), not in others.
    assert evidence.count("<mark>") == 1
    assert "Zelensky spoke to <mark>Sky News</mark>. Sky News aired it." in evidence
    assert "not read closely" not in evidence
    # Adaptive reading read the first passage only: the summary and the other passage say so.
    ans.passages_read = [0]
    evidence = web.render_evidence(ans)
    assert evidence.startswith("<details><summary>Evidence (2 passages found, 1 read closely)</summary>")
    assert evidence.count(" · not read closely") == 1
    assert evidence.index("not read closely") > evidence.index("seeds/other.txt")


def test_pdf_page_is_shown() -> None:
    ans = _answer("It happened in 2020.", 0, 15, 19, page=3, source="seeds/report.pdf")
    assert "seeds/report.pdf, page 3" in web.render_answer(ans)


def test_abstention_says_so_and_shows_closest_passages() -> None:
    hits = [_hit(f"Passage number {i} " + "word " * 100, i * 1000, rank=i + 1) for i in range(5)]
    ans = Answer(text="", score=0.1, hits=hits)
    out = web.render_reply(ans)
    assert "I couldn&#x27;t find that in the documents." in out
    closest = out.split("<details>")[0]
    assert closest.count("<li>") == web.CLOSEST_SHOWN
    assert "Passage number 0" in closest and "…" in closest
    assert "<details><summary>Evidence (5 passages read)" in out
    assert "<mark>" not in out


def test_error_is_escaped() -> None:
    assert "&lt;b&gt;" in web.render_error("bad <b>question</b>")


def test_api_payload_has_required_fields_and_slim_hits() -> None:
    ans = _answer("Sky News aired it.", 0, 0, 8, hits=[_hit("Sky News aired it.", 0, dense_rank=1, sparse_rank=1)])
    data = web.api_payload(ans)
    for key in ("text", "score", "source", "start", "end", "context"):
        assert key in data
    assert data["text"] == "Sky News"
    assert data["hits"][0] == {
        "source": DOC, "start": 0, "end": 18, "page": None, "rank": 1, "score": 0.0328,
        "dense_rank": 1, "sparse_rank": 1,
    }


def test_snippet_cuts_at_word_boundary() -> None:
    text = "alpha beta gamma " * 30
    out = web.snippet(text, 50)
    assert out.endswith("…") and len(out) <= 51
    assert not out[:-1].endswith(" ")


def test_auth_parsing() -> None:
    from qa.config import Settings

    assert web._auth(Settings(auth="")) is None
    assert web._auth(Settings(auth="ann:se:cret")) == ("ann", "se:cret")
    with pytest.raises(ValueError):
        web._auth(Settings(auth="nocolon"))


def test_abstention_shows_a_likely_best_guess_right_under_its_first_line() -> None:
    best = _answer("Maybe <Kyiv>.", 0, 6, 12, score=0.12)
    ans = Answer(text="", score=0.12, hits=[_hit("Maybe <Kyiv>.", 0)], alternatives=[best])
    out = web.render_reply(ans)
    first, second = re.findall(r"<p class=\"(qa-answer|qa-guess)\">(.*?)</p>", out)
    assert first[0] == "qa-answer" and "find that in the documents" in first[1]
    assert second == ("qa-guess", "Best guess, below the confidence threshold: <strong>“&lt;Kyiv&gt;”</strong>"
                                  " — <code>seeds/doc.txt</code> (low confidence, 12%)")
    assert "Maybe <mark>&lt;Kyiv&gt;</mark>." in out  # its sentence, marked as for an answer
    assert "Best guess" not in out.split("<details>", 1)[1]  # shown once, not again inside Evidence
    assert web.api_payload(ans)["guess"]["text"] == "<Kyiv>"
    assert web.api_payload(ans)["text"] == ""


def test_abstention_hides_an_unlikely_best_guess() -> None:
    best = _answer("Maybe Kyiv.", 0, 6, 10, score=0.05)
    ans = Answer(text="", score=0.05, hits=[_hit("Maybe Kyiv.", 0)], alternatives=[best])
    out = web.render_reply(ans)
    assert "qa-guess" not in out and "Best guess" not in out
    assert web.api_payload(ans)["guess"] is None


# -- event handlers over a stub engine (no models) --------------------------------------------


class StubEngine:
    """Records calls; answers "Sky News" or raises the engine's ValueError for empty questions."""

    default_threshold = 0.4

    def __init__(self, tmp_path) -> None:
        self.calls: list[dict] = []
        self.added: list = []
        self.tmp_path = tmp_path

    def ensure_index(self):
        return None

    def answer(self, question, top_k=None, threshold=None, history=None, reader=None):
        self.calls.append({"question": question, "top_k": top_k, "threshold": threshold, "history": history,
                           "reader": reader})
        if not question.strip():
            raise ValueError("the question is empty: type a question about your documents")
        if question == "boom":
            raise RuntimeError("internal detail")
        return _answer("Sky News said so.", 0, 0, 8)

    def add_file(self, path):
        self.added.append(path)

    def upload_folder(self):
        return self.tmp_path / "corpus" / "uploads"

    def load_models(self):
        pass


def _backend(tmp_path):
    from qa.config import Settings

    settings = Settings(corpus_dir=str(tmp_path / "corpus"), index_dir=str(tmp_path / "index"))
    backend = web.Backend(settings, StubEngine(tmp_path))
    backend.start_indexing()
    backend.wait_ready(5)
    return backend


def test_reply_passes_earlier_questions_as_history(tmp_path) -> None:
    backend = _backend(tmp_path)
    messages, asked = web.reply(backend, "Who interviewed Zelensky?", [], [], 5, 0.4)
    messages, asked = web.reply(backend, "Which channel does he work for?", messages, asked, 7, 0.2, "fast")
    calls = backend.engine.calls
    assert calls[0]["history"] is None and calls[0]["reader"] is None
    assert calls[1] == {
        "question": "Which channel does he work for?", "top_k": 7, "threshold": 0.2,
        "history": [Turn("Who interviewed Zelensky?", "Sky News")], "reader": "fast",
    }
    assert asked == [["Who interviewed Zelensky?", "Sky News"], ["Which channel does he work for?", "Sky News"]]
    assert [m["role"] for m in messages] == ["assistant", "assistant"]
    assert "<strong>Sky News</strong>" in messages[-1]["content"]


def test_reply_turns_errors_into_messages_and_keeps_the_session(tmp_path) -> None:
    backend = _backend(tmp_path)
    messages, asked = web.reply(backend, " ", [], [["earlier", "an answer"]], 5, 0.4)
    assert "question is empty" in messages[-1]["content"] and "qa-error" in messages[-1]["content"]
    messages, asked = web.reply(backend, "boom", messages, asked, 5, 0.4)
    assert "went wrong" in messages[-1]["content"] and "internal detail" not in messages[-1]["content"]
    assert asked == [["earlier", "an answer"]]  # failed questions do not become history


def test_uploads_are_saved_in_the_upload_folder_and_refusals_explained(tmp_path) -> None:
    backend = _backend(tmp_path)
    good = tmp_path / "festival.txt"
    good.write_text("The Zorblatt festival takes place every June in Kettering.\n", encoding="utf-8")
    bad = tmp_path / "image.pdf"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    notes = web.add_uploads(backend, [str(good), str(bad)])
    assert notes[0] == "Added festival.txt: you can ask about it now."
    assert notes[1].startswith("Not added: image.pdf")
    saved = backend.engine.upload_folder() / "festival.txt"
    assert saved.read_text(encoding="utf-8").startswith("The Zorblatt festival")
    assert [str(p) for p in backend.engine.added] == [str(saved)]


# -- the same handlers over the real engine ---------------------------------------------------


@pytest.fixture(scope="module")
def real_backend(tmp_path_factory):
    """The chat's backend around a real Engine over a copy of the seeds, its first index built."""
    from app_process import copy_writable, seeds_dir

    from qa.config import Settings
    from qa.pipeline import Engine

    work = tmp_path_factory.mktemp("handlers")
    settings = Settings.load(corpus_dir=str(copy_writable(seeds_dir(), work / "seeds")), index_dir=str(work / "index"))
    backend = web.Backend(settings, Engine(settings))
    backend.start_indexing()
    backend.wait_ready(600)
    return backend


@pytest.mark.slow
def test_reply_gives_the_real_engine_the_history_a_follow_up_needs(real_backend) -> None:
    from app_process import accepted_answers

    threshold = real_backend.default_threshold()
    messages, asked = web.reply(real_backend, "Who interviewed Zelensky?", [], [], 5, threshold)
    assert asked[0][1] in accepted_answers("Who interviewed Zelensky?"), messages[-1]["content"]
    messages, asked = web.reply(real_backend, "Which channel does he work for?", messages, asked, 5, threshold)
    assert asked[1] == ["Which channel does he work for?", "Sky News"], messages[-1]["content"]
    assert "<strong>Sky News</strong>" in messages[-1]["content"]
    assert "read as “Which channel does Stuart Ramsay work for?”" in messages[-1]["content"]
    messages, asked = web.reply(real_backend, "   ", messages, asked, 5, threshold)
    assert "question is empty" in messages[-1]["content"] and len(asked) == 2


@pytest.mark.slow
def test_an_upload_is_answered_at_once_and_after_a_restart(real_backend, tmp_path) -> None:
    """The upload handler saves and indexes the file with the real engine; the next question is
    answered from it, and so is the first question of a new process on the same folders."""
    import json

    from app_process import run_cli

    good = tmp_path / "festival.txt"
    good.write_text("The Zorblatt festival takes place every June in Kettering.\n", encoding="utf-8")
    bad = tmp_path / "image.pdf"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    notes = web.add_uploads(real_backend, [str(good), str(bad)])
    assert notes[0] == "Added festival.txt: you can ask about it now." and notes[1].startswith("Not added: image.pdf")
    corpus = Path(real_backend.settings.corpus_dir)
    assert [d.path for d in real_backend.engine.documents() if d.uploaded] == [f"{corpus.name}/uploads/festival.txt"]
    messages, _ = web.reply(real_backend, "Where does the Zorblatt festival take place?", [], [], 5,
                            real_backend.default_threshold())
    assert "Kettering</strong>" in messages[-1]["content"], messages[-1]["content"]

    again = run_cli("ask", "Where does the Zorblatt festival take place?", "--json", "--corpus-dir", str(corpus),
                    "--index-dir", real_backend.settings.index_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    answer = json.loads(again.stdout)
    assert answer["source"] == f"{corpus.name}/uploads/festival.txt" and "Kettering" in answer["text"], answer

