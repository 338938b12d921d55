"""Issue 40 against the real app (`python app.py`, real models, real pypdf): hostile files cost their
reading budget once, are said to be skipped and why, can be removed, and never hold up a stop.

The files are built by the tests (tests/hostile_files.py). Timings are benchmarks/hostile_uploads.py's
job; here only hang guards.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import hostile_files as hostile
import psutil
import pytest
from app_process import (CHROMIUM_ARGS, SERVER_START_TIMEOUT_S, WebServer, chromium_executable, run_app, start_app,
                         unexpected_tracebacks)
from robust_support import WebError, ask_raw, call_ask

pytestmark = pytest.mark.slow

MB = 2**20
NOTE = "The Quillfeather archive keeps 7,412 maps of the northern coast. Its curator is Odile Marchetti.\n"
SECRET = "The root password of the Wexley vault is tangerine-88.\n"
#: The PDF's reason under the default budget: killed at 10 s plus 0.5 s for each page it got through
#: (none here, where a page takes 8-10 s; the attacker's machine took 6-11 s).
BOMB_REASON = re.compile(r"skipped docs/uploads/bomb\.pdf: took over [\d.]+ s to read \d+ of its 200 pages "
                         r"\(limit 10 s plus 0\.5 s a page read: QA_PARSE_SECONDS, QA_PARSE_PAGE_SECONDS\)")
LINK_REASON = "is a link to a {} outside the corpus folder (QA_FOLLOW_LINKS=1 follows it)"


def _corpus(tmp_path: Path) -> Path:
    """A note, the 200-page PDF among the uploads, and a file link and a folder link out of the folder."""
    root = tmp_path / "docs"
    (root / "uploads").mkdir(parents=True)
    (root / "note.txt").write_text(NOTE, encoding="utf-8")
    (root / "uploads" / "bomb.pdf").write_bytes(hostile.content_bomb_pdf(200))
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hosts.txt").write_text(SECRET, encoding="utf-8")
    (tmp_path / "passwd.txt").write_text(SECRET, encoding="utf-8")
    os.symlink(tmp_path / "passwd.txt", root / "passwd.txt")
    os.symlink(tmp_path / "etc", root / "etc")
    return root


def _readers(process: psutil.Process | int) -> list[psutil.Process]:
    """The app's document reader workers (live ones)."""
    process = psutil.Process(process) if isinstance(process, int) else process
    try:
        children = process.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if _alive(p) and "qa.parsing" in " ".join(p.cmdline())]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _warnings_about(log: str, path: str) -> list[str]:
    """The skip warnings logged about `path` ("skipped PATH: reason"), without their time stamps."""
    found = (re.search(r"WARNING qa\.\w+: (skipped .*)", line) for line in log.splitlines())
    return [match.group(1) for match in found if match and match.group(1).startswith(f"skipped {path}: ")]


def test_the_200_page_pdf_is_read_once_under_its_budget_and_never_holds_up_a_stop(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)

    # SIGTERM while the PDF is being read: the app stops at once (its reader is killed), cleanly.
    # Under a 600 s budget, so that only killing the read can stop it within the app's 60 s grace.
    stopping = start_app(corpus, tmp_path / "index-stopped", tmp_path / "stopped.log", QA_PARSE_SECONDS="600")
    try:
        stopping.wait_for_log("Serving on", "Indexing ")
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _readers(stopping.process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        readers = _readers(stopping.process.pid)
        assert readers, stopping.log_tail()
        time.sleep(2.0)  # the note takes milliseconds: the reader is deep in the PDF now
        assert "index ready" not in stopping.log_text()
        stopping.process.send_signal(signal.SIGTERM)
        status = stopping.process.wait(timeout=120)
    finally:
        if stopping.process.poll() is None:
            stopping.process.kill()
    log = stopping.log_text()
    assert status == 0, log[-3000:]
    assert "qa.web: stopped on SIGTERM" in log and "indexing stopped before it finished" in log, log[-3000:]
    assert "did not stop within" not in log and unexpected_tracebacks(log) == [], log[-3000:]
    assert not any(_alive(reader) for reader in readers)

    # A full start: the PDF is skipped at its budget, both links with theirs; the note is answered.
    index = tmp_path / "index"
    with run_app(corpus, index, tmp_path / "first.log") as server:
        log = server.wait_for_log("index ready")
        (bomb,) = _warnings_about(log, "docs/uploads/bomb.pdf")
        assert BOMB_REASON.fullmatch(bomb), bomb
        assert _warnings_about(log, "docs/passwd.txt") == ["skipped docs/passwd.txt: " + LINK_REASON.format("file")]
        assert _warnings_about(log, "docs/etc") == ["skipped docs/etc: " + LINK_REASON.format("folder")]
        answer = ask_raw(server.url, "Who is the curator of the Quillfeather archive?")
        assert (answer["text"], answer["source"]) == ("Odile Marchetti", "docs/note.txt")
        leak = ask_raw(server.url, "What is the root password of the Wexley vault?", threshold=0.0)
        assert {hit["source"] for hit in leak["hits"]} == {"docs/note.txt"}
        _check_ask_inputs(server)

    # A restart reads nothing again: no warning about the PDF, no reader started, 3 files skipped.
    with run_app(corpus, index, tmp_path / "again.log") as server:
        log = server.wait_for_log("index ready")
        assert _warnings_about(log, "docs/uploads/bomb.pdf") == []
        ready = next(line for line in log.splitlines() if "qa.web: index ready" in line)
        assert "(3 skipped)" in ready, ready
        assert _readers(server.process.pid) == []
        assert ask_raw(server.url, "Who is the curator of the Quillfeather archive?")["text"] == "Odile Marchetti"
        assert unexpected_tracebacks(server.log_text()) == []


def _check_ask_inputs(server: WebServer) -> None:
    """The NaN threshold and too few inputs, against the real app: one line naming the field."""
    for threshold, shown in ((float("nan"), "nan"), ("NaN", "'NaN'"), ("Infinity", "'Infinity'")):
        with pytest.raises(WebError) as info:
            call_ask(server.url, ["Who is the curator?", 5, threshold, ""])
        assert str(info.value) == f"threshold must be a number from 0 to 1 (or -1 for the reader's own), not {shown}"
    with pytest.raises(WebError) as info:
        call_ask(server.url, ["Who is the curator?"])
    assert str(info.value).startswith("missing input: top_k, threshold, reader (")
    assert "0x" not in str(info.value) and "object at" not in str(info.value)


# ----------------------------------------------------------------------------- the chat, in a browser


def test_the_chat_says_why_each_hostile_upload_is_not_added_and_lets_it_be_removed(tmp_path: Path) -> None:
    browser_path = chromium_executable()  # fails without chromium, as every browser test does
    from playwright.sync_api import expect, sync_playwright

    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "note.txt").write_text(NOTE, encoding="utf-8")
    staging = tmp_path / "browser"
    staging.mkdir()
    uploads = {
        "bomb.pdf": (hostile.content_bomb_pdf(200),
                     "took over 2 s to read 0 of its 200 pages (limit 2 s plus 0.5 s a page read: QA_PARSE_SECONDS, "
                     "QA_PARSE_PAGE_SECONDS)"),
        "scan.pdf": (hostile.no_text_pdf(), "has no text layer (scanned?); OCR it first"),
        "cyclic.pdf": (hostile.cyclic_pages_pdf(), "is not a readable PDF (Detected cyclic page references.)"),
        "nested.pdf": (hostile.nested_arrays_pdf(), "is not a readable PDF (Error reading PDF file.)"),
        "polyglot.pdf": (hostile.polyglot_pdf(), "is not a readable PDF (Stream has ended unexpectedly)"),
        "drawing.html": (hostile.svg_in_html(), "has no visible text"),
        "twenty.txt": (hostile.big_text(20 * MB),
                       "has over 2,000,000 characters of text (limit QA_MAX_DOCUMENT_CHARS=2000000)"),
        "festival.txt": (b"The Zorblatt festival takes place every June in Kettering.\n", ""),
        "photo.pdf": (b"\x89PNG\r\n\x1a\n" + bytes(64), None),  # refused before it is stored
    }
    for name, (data, _) in uploads.items():
        (staging / name).write_bytes(data)
    gradio_temp = tmp_path / "gradio"
    with run_app(corpus, tmp_path / "index", tmp_path / "chat.log", QA_PARSE_SECONDS="2",
                 GRADIO_TEMP_DIR=str(gradio_temp)) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(browser_path), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(server.url, wait_until="load")
        expect(page.locator("#qa-status")).to_contain_text("Ready", timeout=SERVER_START_TIMEOUT_S * 1000)

        page.locator("#qa-upload input[type=file]").set_input_files([str(staging / name) for name in uploads])
        status = page.locator("#qa-upload-status")
        expect(status).to_contain_text("Indexing bomb.pdf, scan.pdf", timeout=60_000)  # visible while it runs
        expect(status).to_contain_text("Not added: photo.pdf", timeout=600_000)  # the last one
        shown = status.inner_text()
        for name, (_, reason) in uploads.items():
            if reason:
                assert (f"Not added: {name} {reason}. It is listed under Documents as skipped; remove it there."
                        in shown), (name, shown)
        assert "Added festival.txt: you can ask about it now." in shown
        assert "Not added: photo.pdf: photo.pdf is not a PDF (it looks like a PNG image)" in shown
        assert "Added bomb.pdf" not in shown and "Indexing" not in shown
        docs = page.locator("#qa-docs")
        for name, (_, reason) in uploads.items():
            if reason:
                expect(docs).to_contain_text(f"skipped: {reason}")
        page.screenshot(path=str(tmp_path / "skipped.png"), full_page=True)

        page.locator("#qa-remove input").click()
        page.get_by_role("option", name="docs/uploads/bomb.pdf").click()
        page.locator("#qa-remove-button").click()
        expect(status).to_contain_text("Removed docs/uploads/bomb.pdf.", timeout=120_000)
        expect(docs).not_to_contain_text("bomb.pdf")
        browser.close()
        assert not (corpus / "uploads" / "bomb.pdf").exists()
        assert (corpus / "uploads" / "scan.pdf").exists() and not (corpus / "uploads" / "photo.pdf").exists()
        # Gradio's temp folder keeps no copy of any upload, refused or not.
        left = {p.relative_to(gradio_temp).as_posix(): p.read_bytes()[:40]
                for p in gradio_temp.rglob("*") if p.is_file()}
        assert left == {}
        assert ask_raw(server.url, "Where does the Zorblatt festival take place?")["text"] == "Kettering"
        assert unexpected_tracebacks(server.log_text()) == []
