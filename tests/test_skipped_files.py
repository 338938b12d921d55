"""Skipped files are remembered (qa.skipped): a file the index left out is not read again while its
bytes and the reading budget stay the same, is listed with its reason, and, when uploaded, can be
removed; links out of the corpus folder are left out and take what they brought in with them.

Real files, real pypdf in real worker processes, the real embedder and FAISS.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import hostile_files as hostile
import psutil
import pytest
from app_process import run_cli

from qa.config import Settings
from qa.indexing import EmptyCorpusError
from qa.pipeline import Engine
from qa.skipped import SKIPPED_FILE

pytestmark = pytest.mark.slow  # loads the embedding model

NOTE = "The Quillfeather archive keeps 7,412 maps of the northern coast. Its curator is Odile Marchetti.\n"
#: The bomb's reason under a 2-second budget (the tests' budget: the default is 10 s).
BOMB_REASON = ("took over 2 s to read 0 of its 200 pages (limit 2 s plus 0.5 s a page read: QA_PARSE_SECONDS, "
               "QA_PARSE_PAGE_SECONDS)")
SCAN_REASON = "has no text layer (scanned?); OCR it first"


def _engine(corpus: Path, index: Path, **overrides) -> Engine:
    return Engine(Settings.load(corpus_dir=str(corpus), index_dir=str(index), parse_seconds=2, **overrides))


def _workers() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "qa.parsing" in " ".join(p.cmdline())]


def _saved_skips(index: Path) -> dict[str, str]:
    path = index / SKIPPED_FILE
    if not path.exists():
        return {}
    return {doc: rec["reason"] for doc, rec in json.loads(path.read_text(encoding="utf-8"))["files"].items()}


def _fresh_skips(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Files read and skipped by the syncs logged so far (a remembered skip is not read)."""
    return [r.getMessage().split(":", 1)[0].removeprefix("skipped ") for r in caplog.records
            if r.name == "qa.indexing" and r.getMessage().startswith("skipped ")]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "uploads").mkdir(parents=True)
    (root / "note.txt").write_text(NOTE, encoding="utf-8")
    (root / "uploads" / "bomb.pdf").write_bytes(hostile.content_bomb_pdf(200))
    (root / "scan.pdf").write_bytes(hostile.no_text_pdf())
    return root


def test_a_skipped_file_is_not_read_again_until_it_changes(corpus: Path, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    index = tmp_path / "index"
    caplog.set_level(logging.DEBUG, logger="qa")
    first = _engine(corpus, index).ensure_index(progress=False)
    assert first.added == ["docs/note.txt"]
    assert sorted(first.skipped) == [("docs/scan.pdf", SCAN_REASON), ("docs/uploads/bomb.pdf", BOMB_REASON)]
    assert _saved_skips(index) == {"docs/scan.pdf": SCAN_REASON, "docs/uploads/bomb.pdf": BOMB_REASON}
    assert sorted(_fresh_skips(caplog)) == ["docs/scan.pdf", "docs/uploads/bomb.pdf"]

    # A restart: a new engine on the same folders reads nothing (no worker is even started) and
    # still reports both files as skipped, with their reasons.
    caplog.clear()
    workers_before = {p.pid for p in _workers()}
    restarted = _engine(corpus, index)
    again = restarted.ensure_index(progress=False)
    assert sorted(again.skipped) == sorted(first.skipped)
    assert again.added == [] and again.unchanged == ["docs/note.txt"]
    assert _fresh_skips(caplog) == [] and {p.pid for p in _workers()} <= workers_before
    assert "still skipped docs/uploads/bomb.pdf (unchanged): " + BOMB_REASON in caplog.messages
    assert restarted.answer("Who is the curator of the Quillfeather archive?").text == "Odile Marchetti"

    # Changed bytes are read again; so is everything under another budget.
    caplog.clear()
    (corpus / "scan.pdf").write_bytes(hostile.no_text_pdf(pages=3))
    assert sorted(restarted.ensure_index(progress=False).skipped) == sorted(first.skipped)
    assert _fresh_skips(caplog) == ["docs/scan.pdf"]
    caplog.clear()
    _engine(corpus, index, parse_page_seconds=0.25).ensure_index(progress=False)
    assert sorted(_fresh_skips(caplog)) == ["docs/scan.pdf", "docs/uploads/bomb.pdf"]

    # A skipped file that is fixed is indexed, and forgotten as a skip.
    (corpus / "scan.pdf").unlink()
    (corpus / "scan.txt").write_text("The scan was transcribed.", encoding="utf-8")
    fixed = _engine(corpus, index, parse_page_seconds=0.25).ensure_index(progress=False)
    assert fixed.added == ["docs/scan.txt"]
    assert list(_saved_skips(index)) == ["docs/uploads/bomb.pdf"]


def test_a_skipped_upload_is_listed_with_its_reason_and_can_be_removed(corpus: Path, tmp_path: Path) -> None:
    engine = _engine(corpus, tmp_path / "index")
    engine.ensure_index(progress=False)
    listed = {d.path: (d.uploaded, d.skipped, d.passages) for d in engine.skipped_documents()}
    assert listed == {"docs/scan.pdf": (False, SCAN_REASON, 0), "docs/uploads/bomb.pdf": (True, BOMB_REASON, 0)}
    assert [d.path for d in engine.documents()] == ["docs/note.txt"]

    report = engine.remove_file("docs/uploads/bomb.pdf")
    assert not (corpus / "uploads" / "bomb.pdf").exists()
    assert report.skipped == [("docs/scan.pdf", SCAN_REASON)]
    assert [d.path for d in engine.skipped_documents()] == ["docs/scan.pdf"]
    assert list(_saved_skips(tmp_path / "index")) == ["docs/scan.pdf"]
    with pytest.raises(ValueError, match="only uploads can be removed here"):
        engine.remove_file("docs/scan.pdf")  # a corpus file stays the folder owner's to delete


def test_a_folder_of_skipped_files_alone_says_why_and_remembers(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "bomb.pdf").write_bytes(hostile.content_bomb_pdf(200))
    for attempt in (1, 2):
        caplog.clear()
        with pytest.raises(EmptyCorpusError, match=f"no readable documents in .*; skipped docs/bomb.pdf: "
                                                   f"{BOMB_REASON.replace('(', '.').replace(')', '.')}"):
            _engine(corpus, tmp_path / "index").ensure_index(progress=False)
        assert _fresh_skips(caplog) == (["docs/bomb.pdf"] if attempt == 1 else [])


def test_links_out_of_the_folder_are_skipped_and_what_they_brought_in_leaves(tmp_path: Path) -> None:
    """An index built while links were followed (QA_FOLLOW_LINKS=1) loses the linked files at the
    next sync without it: the link is skipped with its reason, and its documents leave the index."""
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "note.txt").write_text(NOTE, encoding="utf-8")
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "hosts.txt").write_text("The Zanzibar relay host is called marmoset-17.", encoding="utf-8")
    (tmp_path / "passwd.txt").write_text("The root password of the Wexley vault is tangerine-88.", encoding="utf-8")
    os.symlink(outside, corpus / "etc")
    os.symlink(tmp_path / "passwd.txt", corpus / "passwd.txt")
    index = tmp_path / "index"

    followed = _engine(corpus, index, follow_links=True).ensure_index(progress=False)
    assert sorted(followed.added) == ["docs/etc/hosts.txt", "docs/note.txt", "docs/passwd.txt"]

    engine = _engine(corpus, index)
    report = engine.ensure_index(progress=False)
    assert sorted(report.removed) == ["docs/etc/hosts.txt", "docs/passwd.txt"]
    assert sorted(report.skipped) == [
        ("docs/etc", "is a link to a folder outside the corpus folder (QA_FOLLOW_LINKS=1 follows it)"),
        ("docs/passwd.txt", "is a link to a file outside the corpus folder (QA_FOLLOW_LINKS=1 follows it)"),
    ]
    assert [d.path for d in engine.documents()] == ["docs/note.txt"]
    hits = engine.retrieve("What is the root password of the Wexley vault?", 5)
    assert {h.passage.document for h in hits} == {"docs/note.txt"}


def test_qa_index_prints_skipped_files_every_time_and_loads_no_model_when_nothing_changed(
        corpus: Path, tmp_path: Path) -> None:
    env = {"QA_PARSE_SECONDS": "2"}
    for run, changes in ((1, "1 added, 0 changed, 0 removed, 0 unchanged, 2 skipped"),
                         (2, "0 added, 0 changed, 0 removed, 1 unchanged, 2 skipped")):
        done = run_cli("index", str(corpus), "--index-dir", str(tmp_path / "index"), env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"skipped docs/uploads/bomb.pdf: {BOMB_REASON}" in done.stderr.splitlines(), (run, done.stderr[-3000:])
        assert f"skipped docs/scan.pdf: {SCAN_REASON}" in done.stderr.splitlines()
        assert f"1 document, 1 passage ({changes})" in done.stdout, done.stdout
        # Checking an unchanged folder needs neither the embedder nor torch: it takes a second, not eight.
        assert ("qa.embedding: loading the embedder" in done.stderr) == (run == 1), done.stderr[-3000:]
