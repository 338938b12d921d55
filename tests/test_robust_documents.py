"""A hostile corpus indexes to completion: every bad file is indexed or skipped with a reason,
and the good files' facts stay answerable.

Two builds of the same corpus (module-scoped, each once), both reading every file under the
reading budget in worker processes (qa.parsing), with the hostile files of issue 40 among them:
- "stub": a hashing embedder, and the text budget raised, so the 50 MB text file (97,000+
  passages) can be embedded in a test; everything else (loading, skipping, passages, FAISS,
  save, BM25) is the real code.
- "real": the real embedder and reader under the default budget, without the 50 MB file
  (embedding it with MiniLM on a 2-core CPU takes hours) but with a 20 MB one, which the budget
  skips; adds the reader's answers and the rendered `<script>` check.
tests/test_documents.py covers each loader alone, tests/test_parsing.py the budget; this is the
whole build.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import hostile_files as hostile
from robust_support import HashEmbedder, assert_store_consistent, file_hashes, record, run_with_limit
from test_documents import PNG_BYTES, make_pdf

INDEXED = "indexed"
BUILD_LIMIT_S = float(os.environ.get("QA_ROBUST_BUILD_LIMIT_S", "600"))  # hang guard; the stub build takes ~40 s
MB = 2**20

#: Good and bad-but-readable files carry facts: (file, question, passage words, accepted answers).
FACTS = [
    ("good/lighthouse.txt", "Who painted the Quorvath lighthouse teal?", "Quorvath lighthouse",
     ("Ingrid Falkenrath",)),
    ("good/trains.md", "How often do marzipan trains leave Velloria station?", "Velloria station",
     ("every 17 minutes", "17 minutes", "17 minutes on weekdays", "every 17 minutes on weekdays")),
    ("bad/utf16-nobom.txt", "How many maps does the Brightwater archive hold?", "Brightwater archive holds",
     ("4312",)),
    ("bad/scripty.html", "What time does the Pellucid museum open?", "Pellucid museum opens",
     ("nine o'clock", "at nine o'clock")),
]

GOOD_TEXT = {
    "good/lighthouse.txt": (
        "Coastal history of the northern isles.\n\n"
        "The Quorvath lighthouse was painted teal by Ingrid Falkenrath in 1911. Before that it was "
        "plain white stone. Sailors called it the green lamp for decades afterwards.\n"
    ),
    "good/trains.md": (
        "# Velloria timetable\n\n"
        "Marzipan trains leave Velloria station every 17 minutes on weekdays. The first departure is "
        "at dawn and the last one at midnight.\n\n"
        'Staff notes pasted from the old site: <script>alert("doc")</script> please ignore.\n'
    ),
}


# ----------------------------------------------------------------------------- the corpus


def _write(root: Path, name: str, data: bytes | str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _fifty_megabytes() -> bytes:
    """Over 50 MiB of sentence-like pseudo-words (no fact words), one megabyte repeated."""
    rng = random.Random(7)
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "vi", "ro", "pe", "du", "fa", "gi"]
    vocab = ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(3000)]
    sentences = []
    while sum(map(len, sentences)) < MB:
        words = rng.choices(vocab, k=rng.randint(6, 18))
        sentences.append(" ".join(words).capitalize() + (".\n" if rng.random() < 0.2 else ". "))
    chunk = "".join(sentences).encode()
    return chunk * (50 * MB // len(chunk) + 1)


def _scripty_html() -> str:
    script = "var SCRIPTMARKER = 1;\n" + "function f(a){return a*2;}\n" * 20_000
    return (f"<html><head><title>Pellucid</title><script>{script}</script></head><body>"
            f"<p>The Pellucid museum opens at nine o'clock.</p><script>{script}</script>"
            "<noscript>Enable JavaScript NOSCRIPTMARKER</noscript></body></html>")


def build_hostile_corpus(root: Path, *, big: bool) -> dict[str, str]:
    """Write the corpus; return each file's expected outcome: INDEXED or its skip reason.

    `bad/vanishing*.txt` only misbehave under `hostile_build()`. `big` adds the 50 MB file (to be
    indexed under a raised text budget), else a 20 MB one that the default budget skips.
    """
    for name, text in GOOD_TEXT.items():
        _write(root, name, text)
    expected = dict.fromkeys(GOOD_TEXT, INDEXED)

    def bad(name: str, data: bytes | str, outcome: str) -> None:
        _write(root, name, data)
        expected[name] = outcome

    bad("bad/empty.txt", b"", "is empty")
    bad("bad/photo.txt", PNG_BYTES + bytes(range(256)) * 4, "looks like a binary file (PNG image), not text")
    bad("bad/invalid-utf8.txt", "Caf\u00e9 notes about pastry and bread. ".encode() * 40 + b"\xff\xfe\x80\xc3(" * 5
        + "More notes about the bakery.".encode(), INDEXED)
    bad("bad/utf16-nobom.txt", "Archive facts. The Brightwater archive holds 4312 maps and 80 globes.\n"
        .encode("utf-16-le"), INDEXED)
    bad("bad/scan.pdf", make_pdf([None, None]), "has no text layer (scanned?); OCR it first")
    bad("bad/locked.pdf", make_pdf(["The vault code is 1234."], password="hunter2"),
        "is encrypted with a password; save an unprotected copy")
    bad("bad/scripty.html", _scripty_html(), INDEXED)
    bad("bad/lines.txt", "".join(f"word{i}\n" for i in range(20_000)), INDEXED)
    bad("bad/vanishing.txt", "This file is deleted after the folder is listed.", "disappeared while indexing")
    bad("bad/vanishing-late.txt", "This file is deleted after it is hashed.", "disappeared while indexing")
    # Issue 40's uploads: each is read by real pypdf / BeautifulSoup in a worker, under the budget.
    bad("bad/bomb.pdf", hostile.content_bomb_pdf(200),
        "took over 2 s to read 0 of its 200 pages (limit 2 s plus 0.5 s a page read: QA_PARSE_SECONDS, "
        "QA_PARSE_PAGE_SECONDS)")
    bad("bad/cyclic.pdf", hostile.cyclic_pages_pdf(), "is not a readable PDF (Detected cyclic page references.)")
    bad("bad/nested.pdf", hostile.nested_arrays_pdf(), "is not a readable PDF (Error reading PDF file.)")
    bad("bad/polyglot.pdf", hostile.polyglot_pdf(), "is not a readable PDF (Stream has ended unexpectedly)")
    bad("bad/drawing.html", hostile.svg_in_html(), "has no visible text")
    if big:
        bad("bad/huge.txt", _fifty_megabytes(), INDEXED)
    else:
        bad("bad/twenty.txt", hostile.big_text(20 * MB),
            "has over 2,000,000 characters of text (limit QA_MAX_DOCUMENT_CHARS=2000000)")
    os.symlink("self.txt", root / "bad" / "self.txt")  # a link to itself
    expected["bad/self.txt"] = "could not be read (Too many levels of symbolic links)"
    os.symlink("..", root / "bad" / "loop")  # folder loops: back to the corpus, and to itself
    os.symlink(".", root / "bad" / "here")
    os.symlink("missing.txt", root / "bad" / "broken.txt")
    expected["bad/broken.txt"] = "is a broken symbolic link"
    os.mkfifo(root / "bad" / "pipe.txt")  # reading it would block forever
    expected["bad/pipe.txt"] = "is not a regular file"
    return {f"{root.name}/{name}": outcome for name, outcome in expected.items()}


# ----------------------------------------------------------------------------- the build


@dataclass
class Build:
    kind: str
    engine: Any
    corpus: Path
    index_dir: Path
    report: Any
    expected: dict[str, str]
    embedder: Any


def _vanish_before(real: Callable, names: set[str]) -> Callable:
    """Wrap a per-file function so that files named in `names` are deleted just before it runs."""

    def wrapper(path: Path, *args: Any, **kwargs: Any) -> Any:
        if Path(path).name in names:
            Path(path).unlink(missing_ok=True)
        return real(path, *args, **kwargs)

    return wrapper


@pytest.fixture(scope="module", params=[pytest.param("stub", marks=pytest.mark.slow),
                                        pytest.param("real", marks=pytest.mark.slow)])
def build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    import qa.indexing
    import qa.parsing
    import qa.pipeline
    from qa.config import Settings
    from qa.pipeline import Engine

    kind = request.param
    work = tmp_path_factory.mktemp(f"hostile-{kind}")
    corpus = work / "corpus"
    expected = build_hostile_corpus(corpus, big=kind == "stub")
    with pytest.MonkeyPatch.context() as patch:
        if kind == "stub":
            stub = HashEmbedder()
            patch.setattr(qa.pipeline, "_embedder", lambda *args, **kwargs: stub)
        patch.setattr(qa.indexing, "file_hash", _vanish_before(qa.indexing.file_hash, {"vanishing.txt"}))
        read = qa.parsing.DocumentReader.read
        patch.setattr(qa.parsing.DocumentReader, "read",
                      lambda self, path, *args: _vanish_before(functools.partial(read, self), {"vanishing-late.txt"})(
                          path, *args))
        # 2 s a file: the bomb's first page takes longer on any machine, so its reason is exact.
        # The stub build raises the text budget so that the 50 MB file is indexed whole.
        budget = {"max_document_chars": 60_000_000} if kind == "stub" else {}
        engine = Engine(Settings.load(corpus_dir=str(corpus), index_dir=str(work / "index"), parse_seconds=2,
                                      **budget))
        report = run_with_limit(lambda: engine.ensure_index(progress=False), BUILD_LIMIT_S, "the index build")
        yield Build(kind, engine, corpus, work / "index", report, expected, engine.embedder)
    bad = [p for p in expected if not p.startswith(f"{corpus.name}/good/")]
    record("documents", build=kind, tried=len(bad) + 2, bad=len(bad), folder_loops=2,
           indexed=sum(expected[p] == INDEXED for p in bad), skipped=len(report.skipped),
           seconds=round(report.seconds, 1), passages=report.passages)


def test_every_file_is_indexed_or_skipped_with_its_reason(build: Build) -> None:
    report = build.report
    indexed = sorted(p for p, outcome in build.expected.items() if outcome == INDEXED)
    skipped = {p: outcome for p, outcome in build.expected.items() if outcome != INDEXED}
    assert sorted(report.added) == indexed
    assert dict(report.skipped) == skipped
    assert len(report.skipped) == len(skipped), "a file was skipped twice"
    assert report.documents == len(indexed)
    assert not any(f"/{loop}/" in p for p in [*report.added, *dict(report.skipped)] for loop in ("loop", "here"))


def test_index_on_disk_is_consistent(build: Build) -> None:
    from qa.indexing import profile_for
    from qa.store import IndexStore

    store = IndexStore.load(build.index_dir, profile_for(build.engine.settings, build.embedder))
    assert_store_consistent(store, build.embedder)
    on_disk = {p: h for p, h in file_hashes(build.corpus).items() if build.expected.get(p) == INDEXED}
    assert {p: rec.content_hash for p, rec in store.documents.items()} == on_disk
    assert not list(build.index_dir.glob("*.tmp")) and not list(build.index_dir.glob(".*.tmp"))


@pytest.mark.parametrize(("document", "question", "words", "answers"), FACTS)
def test_good_facts_are_retrieved_from_their_file(build: Build, document: str, question: str,
                                                  words: str, answers: tuple[str, ...]) -> None:
    hits = build.engine.retrieve(question, 5)
    assert hits[0].passage.document == f"corpus/{document}", [h.passage.document for h in hits]
    assert words in hits[0].passage.text and answers[0] in hits[0].passage.text


def test_hostile_content_is_indexed_sanely(build: Build) -> None:
    store = build.engine.store
    by_doc: dict[str, list[str]] = {}
    for p in store.passages:
        by_doc.setdefault(p.document, []).append(p.text)
    html = " ".join(by_doc["corpus/bad/scripty.html"])
    assert "SCRIPTMARKER" not in html and "NOSCRIPTMARKER" not in html
    assert "The Pellucid museum opens at nine o'clock." in html
    words = set(" ".join(by_doc["corpus/bad/lines.txt"]).split())
    assert words == {f"word{i}" for i in range(20_000)}
    assert "\ufffd" in "".join(by_doc["corpus/bad/invalid-utf8.txt"])
    assert "The Brightwater archive holds 4312 maps and 80 globes." in by_doc["corpus/bad/utf16-nobom.txt"][0]
    if build.kind == "stub":  # the 50 MB file is covered from its first word to its last
        huge = [p for p in store.passages if p.document == "corpus/bad/huge.txt"]
        text = (build.corpus / "bad" / "huge.txt").read_text(encoding="utf-8")
        assert len(huge) > 50_000
        assert min(p.start for p in huge) == 0 and max(p.end for p in huge) == len(text.rstrip())


#: The reader reads real-embedder hits only in the "real" build: these tests run on it alone.
REAL_BUILD_ONLY = pytest.mark.parametrize("build", ["real"], indirect=True)


@pytest.mark.slow
@REAL_BUILD_ONLY
@pytest.mark.parametrize(("document", "question", "words", "answers"), FACTS)
def test_reader_answers_the_good_facts(build: Build, document: str, question: str, words: str,
                                       answers: tuple[str, ...]) -> None:
    """Needs the trained reader: the default threshold lets the right span through."""
    result = build.engine.answer(question)
    assert result.source == f"corpus/{document}" and result.text in answers, (result.text, result.alternatives[:1])


@pytest.mark.slow
@REAL_BUILD_ONLY
def test_document_script_renders_escaped(build: Build) -> None:
    """The passage with `<script>` from trains.md, read as evidence, shows as text in the chat."""
    from qa import web

    result = build.engine.answer("How often do marzipan trains leave Velloria station?", threshold=0.0)
    html = web.render_reply(result)
    assert any("<script>" in h.passage.text for h in result.hits)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&quot;doc&quot;)&lt;/script&gt;" in html
