"""Reading under a budget (qa.parsing): each hostile file of issue 40, built here and read by real
pypdf in a real worker process, is skipped with its reason at the limit; a normal file reads as it
does in-process; a stop or a dead worker costs that read only. Hang guards, no timing assertions.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hostile_files as hostile
import psutil
import pytest
from robust_support import run_with_limit

from qa.documents import DocumentError, load_document
from qa.parsing import DocumentReader, ReadBudget
from qa.stopping import Stopped

MB = 2**20
#: A budget small enough that the bomb is cut quickly: 2 s per file, 0.5 s more a PDF page.
QUICK = ReadBudget(seconds=2.0)
#: The longest any one read below may take before the test counts it as hung.
HANG_S = 120.0


def guarded(fn: Callable[[], Any], limit: float = HANG_S) -> Any:
    return run_with_limit(fn, limit, "the read")


def _workers(besides: set[int] = frozenset()) -> list[psutil.Process]:
    """This process's document reader workers still alive, but for those in `besides` (other
    tests' engines in the same session keep theirs)."""
    return [p for p in psutil.Process().children(recursive=True)
            if p.pid not in besides and p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            and "qa.parsing" in " ".join(p.cmdline())]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    return root


def _skip_reason(reader: DocumentReader, path: Path, root: Path, stop: threading.Event | None = None) -> str:
    with pytest.raises(DocumentError) as info:
        guarded(lambda: reader.read(path, root, stop))
    assert info.value.path == f"{root.name}/{path.name}"
    return info.value.reason


@pytest.mark.parametrize(("name", "build", "reason"), [
    ("bomb.pdf", lambda: hostile.content_bomb_pdf(200),
     "took over 2 s to read 0 of its 200 pages (limit 2 s plus 0.5 s a page read: QA_PARSE_SECONDS, "
     "QA_PARSE_PAGE_SECONDS)"),
    ("cyclic.pdf", hostile.cyclic_pages_pdf, "is not a readable PDF (Detected cyclic page references.)"),
    ("nested.pdf", hostile.nested_arrays_pdf, "is not a readable PDF (Error reading PDF file.)"),
    ("scan.pdf", hostile.no_text_pdf, "has no text layer (scanned?); OCR it first"),
    ("polyglot.pdf", hostile.polyglot_pdf, "is not a readable PDF (Stream has ended unexpectedly)"),
    ("drawing.html", hostile.svg_in_html, "has no visible text"),
    ("huge.txt", lambda: hostile.big_text(20 * MB),
     "has over 2,000,000 characters of text (limit QA_MAX_DOCUMENT_CHARS=2000000)"),
])
def test_each_hostile_file_is_skipped_with_its_reason(corpus: Path, name: str, build: Callable[[], bytes],
                                                      reason: str) -> None:
    path = corpus / name
    path.write_bytes(build())
    with DocumentReader(QUICK) as reader:
        assert _skip_reason(reader, path, corpus) == reason
        # The worker is fine (or replaced) afterwards: the next file reads normally.
        (corpus / "note.txt").write_text("The note survives.", encoding="utf-8")
        assert guarded(lambda: reader.read(corpus / "note.txt", corpus)).text == "The note survives."


def test_a_normal_pdf_reads_as_it_does_in_process(corpus: Path) -> None:
    path = corpus / "report.pdf"
    path.write_bytes(hostile.normal_pdf(pages=40))
    with DocumentReader() as reader:
        document = guarded(lambda: reader.read(path, corpus))
    assert document == load_document(path, corpus)
    assert len(document.page_starts) == 40 and document.text.rstrip().endswith("Page 40")


def test_a_pdf_over_the_text_budget_stops_at_the_page_that_crosses_it(corpus: Path) -> None:
    path = corpus / "report.pdf"
    path.write_bytes(hostile.normal_pdf(pages=40))
    pages = len(load_document(path, corpus).page_starts)
    chars = len(load_document(path, corpus).text)
    with DocumentReader(ReadBudget(max_chars=chars // 4)) as reader:
        reason = _skip_reason(reader, path, corpus)
    assert reason.startswith(f"has over {chars // 4:,} characters of text in its first ")
    stopped_at = int(reason.split("in its first ")[1].split(" of ")[0])
    assert 1 <= stopped_at < pages // 2, reason  # it did not read the whole PDF first
    assert reason.endswith(f" of {pages} pages (limit QA_MAX_DOCUMENT_CHARS={chars // 4})")


def test_a_text_file_under_the_text_budget_is_read_whole(corpus: Path) -> None:
    path = corpus / "long.txt"
    path.write_bytes(hostile.big_text(3 * MB))
    with DocumentReader(ReadBudget(max_chars=3 * MB)) as reader:
        assert len(guarded(lambda: reader.read(path, corpus)).text) == 3 * MB


def test_a_stop_ends_a_read_in_progress_and_its_worker(corpus: Path) -> None:
    """SIGTERM during the bomb: the server's stop flag ends the read at once (not at the budget)."""
    path = corpus / "bomb.pdf"
    path.write_bytes(hostile.content_bomb_pdf(200))
    stop = threading.Event()
    others = {p.pid for p in _workers()}
    with DocumentReader(ReadBudget(seconds=600)) as reader:
        threading.Timer(1.0, stop.set).start()
        with pytest.raises(Stopped):
            guarded(lambda: reader.read(path, corpus, stop), limit=60)
        assert _workers(others) == []


def test_closing_the_reader_ends_a_read_in_progress(corpus: Path) -> None:
    path = corpus / "bomb.pdf"
    path.write_bytes(hostile.content_bomb_pdf(200))
    others = {p.pid for p in _workers()}
    reader = DocumentReader(ReadBudget(seconds=600))
    threading.Timer(1.0, reader.close).start()
    with pytest.raises(Stopped):
        guarded(lambda: reader.read(path, corpus), limit=60)
    assert _workers(others) == []


def test_a_worker_killed_from_outside_costs_that_file_only(corpus: Path) -> None:
    """The out-of-memory killer (or a crash in a parser's C code) takes the worker down mid-file."""
    path = corpus / "bomb.pdf"
    path.write_bytes(hostile.content_bomb_pdf(200))
    (corpus / "note.txt").write_text("Still readable.", encoding="utf-8")

    def kill_worker() -> None:
        deadline = time.monotonic() + 60
        while not _workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        for worker in _workers():
            os.kill(worker.pid, signal.SIGKILL)

    with DocumentReader(ReadBudget(seconds=600)) as reader:
        threading.Thread(target=kill_worker, daemon=True).start()
        assert _skip_reason(reader, path, corpus) == "could not be read: the reading process was killed (SIGKILL)"
        assert guarded(lambda: reader.read(corpus / "note.txt", corpus)).text == "Still readable."


def test_one_worker_reads_file_after_file(corpus: Path) -> None:
    for i in range(5):
        (corpus / f"n{i}.txt").write_text(f"Note {i}.", encoding="utf-8")
    with DocumentReader() as reader:
        pids = set()
        for i in range(5):
            assert reader.read(corpus / f"n{i}.txt", corpus).text == f"Note {i}."
            pids |= {p.pid for p in _workers()}
    assert len(pids) == 1
    assert _workers() == []  # closed with the reader


def test_a_file_needing_more_memory_than_allowed_is_skipped(corpus: Path) -> None:
    path = corpus / "wide.txt"
    path.write_bytes(hostile.big_text(90 * MB))
    with DocumentReader(ReadBudget(max_chars=200 * MB, memory_mb=250)) as reader:
        assert _skip_reason(reader, path, corpus) == "needs more memory to read than QA_PARSE_MEMORY_MB allows"


def test_a_link_planted_after_listing_is_not_read(tmp_path: Path, corpus: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0", encoding="utf-8")
    (corpus / "passwd.txt").symlink_to(secret)
    with DocumentReader() as reader:
        reason = _skip_reason(reader, corpus / "passwd.txt", corpus)
    assert reason == "is a link to a file outside the corpus folder (QA_FOLLOW_LINKS=1 follows it)"
    with DocumentReader(follow_links=True) as reader:
        assert reader.read(corpus / "passwd.txt", corpus).text == "root:x:0:0"


def test_the_worker_log_reaches_this_process(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = corpus / "polyglot.pdf"
    path.write_bytes(hostile.polyglot_pdf())
    with caplog.at_level("WARNING"), DocumentReader() as reader:
        _skip_reason(reader, path, corpus)
    assert ("pypdf._reader", "EOF marker not found") in [(r.name, r.getMessage()) for r in caplog.records]


def test_a_worker_that_died_while_idle_is_replaced_without_a_skip(corpus: Path) -> None:
    (corpus / "a.txt").write_text("First.", encoding="utf-8")
    (corpus / "b.txt").write_text("Second.", encoding="utf-8")
    with DocumentReader() as reader:
        assert reader.read(corpus / "a.txt", corpus).text == "First."
        (idle,) = _workers()
        idle.kill()
        idle.wait(10)
        assert guarded(lambda: reader.read(corpus / "b.txt", corpus)).text == "Second."
        assert [p.pid for p in _workers()] != [idle.pid]


def test_a_long_pdf_earns_time_for_each_page_it_reads(corpus: Path) -> None:
    """Pages that keep coming buy time: 150 pages (seconds to read) read under 0.3 s plus 0.5 s a
    page; without the time per page the same file is stopped partway."""
    path = corpus / "report.pdf"
    path.write_bytes(hostile.normal_pdf(pages=150))
    warm = corpus / "warm.pdf"  # the worker imports pypdf on its first PDF: not this test's point
    warm.write_bytes(hostile.normal_pdf(pages=1))
    with DocumentReader(ReadBudget(seconds=0.3, page_seconds=0.5)) as reader:
        reader.read(warm, corpus)
        assert len(guarded(lambda: reader.read(path, corpus)).page_starts) == 150
    with DocumentReader(ReadBudget(seconds=0.3, page_seconds=0.0)) as reader:
        reader.read(warm, corpus)
        reason = _skip_reason(reader, path, corpus)
    assert reason.startswith("took over 0.3 s to read ") and reason.endswith(
        " of its 150 pages (limit 0.3 s plus 0 s a page read: QA_PARSE_SECONDS, QA_PARSE_PAGE_SECONDS)"), reason
