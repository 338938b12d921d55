"""The web chat in a real browser: ask, follow up, upload, remove, with screenshots.

Runs the real app (tests/conftest.py `web_server`) and drives the system Chromium (Debian's
`chromium`, which `scripts/setup --test` installs) with Playwright. Without it these tests fail,
so CI cannot go green with no browser coverage; QA_SKIP_BROWSER_TESTS=1 skips them instead, for
a developer's machine without a browser. Screenshots go to the test's tmp dir and, when
$QA_TEST_ARTIFACTS is set, there too.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from app_process import CHROMIUM_ARGS, chromium_executable
from playwright.sync_api import Locator, Page, expect, sync_playwright

from qa.config import DEFAULT_READER, SHIPPED_READERS

pytestmark = [pytest.mark.slow, pytest.mark.browser]

#: Hang guard for an answer; the first waits for model loading and the index build on a busy CPU.
ANSWER_TIMEOUT_MS = int(os.environ.get("QA_TEST_ANSWER_TIMEOUT_MS", "300000"))
REPLIES = '#qa-chat [data-testid="bot"] .qa-reply'
XSS_MARKER = "__qa_pwned"


class Shots:
    """Numbered full-page screenshots; the last one is also copied to $QA_TEST_ARTIFACTS."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page, self.folder, self.count, self.last = page, folder, 0, None

    def take(self, name: str) -> Path:
        self.count += 1
        self.last = self.folder / f"{self.count:02d}_{name}.png"
        self.page.screenshot(path=str(self.last), full_page=True)
        artifacts = os.environ.get("QA_TEST_ARTIFACTS")
        if artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(self.last, Path(artifacts) / self.last.name)
        return self.last


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Looked for before the app starts: without it the tests fail at once (see the docstring)."""
    return chromium_executable()


@pytest.fixture()
def page(chromium: Path, web_server) -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(web_server.url, wait_until="load")
            page.wait_for_selector("#qa-question textarea", timeout=120_000)
            yield page
        finally:
            browser.close()


def ask(page: Page, question: str | None = None, example: str | None = None) -> Locator:
    """Type (or click an example of) a question and return the new reply once it is rendered."""
    before = page.locator(REPLIES).count()
    if example:
        page.get_by_role("button", name=example, exact=True).click()
    else:
        box = page.locator("#qa-question textarea")
        box.fill(question or "")
        box.press("Enter")
    reply = page.locator(REPLIES).nth(before)
    expect(reply).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    return reply


def open_evidence(reply: Locator) -> Locator:
    """Expand a reply's Evidence section and scroll the reply to the top for the screenshot."""
    details = reply.locator("details")
    details.locator("summary").click()
    expect(details).to_have_attribute("open", "")
    reply.evaluate("el => el.scrollIntoView({block: 'start'})")
    return details


class ContentChecks:
    """Checks that depend on the reader's quality, collected so the UI mechanics run to the end."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def answer_contains(self, reply: Locator, expected: str) -> None:
        got = reply.locator(".qa-answer").inner_text()
        if expected not in got:
            self.failures.append(f"expected {expected!r} in the answer, got {got!r}")

    def reply_contains(self, reply: Locator, expected: str) -> None:
        got = reply.inner_text()
        if expected not in got:
            self.failures.append(f"expected {expected!r} in the reply, got {got[:300]!r}")

    def marked(self, reply: Locator, expected: str) -> None:
        marks = reply.locator("blockquote mark").all_inner_texts()
        if marks != [expected]:
            self.failures.append(f"expected {expected!r} highlighted in the sentence, got {marks!r}")


def test_chat_answers_follows_up_and_learns_uploads(
    page: Page, web_server, start_web_server, tmp_path: Path
) -> None:
    shots = Shots(page, tmp_path)
    content = ContentChecks()
    expect(page.get_by_text("Answers are quoted from them, never made up.")).to_be_visible()
    expect(page.locator("#qa-status")).to_contain_text("Ready", timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#qa-docs")).to_contain_text(web_server.seed_file)
    shots.take("start")

    # 1. A first question: answer, quoted sentence with the answer marked, source, evidence.
    reply = ask(page, "Who interviewed Zelensky?")
    evidence = open_evidence(reply)
    expect(evidence).to_contain_text("BM25")
    expect(evidence).to_contain_text("fused rank #1")
    shots.take("first_answer")
    content.answer_contains(reply, "Stuart Ramsay")  # alone, or as "Sky News chief correspondent Stuart Ramsay"
    if "couldn't find" not in reply.inner_text():
        content.marked(reply, reply.locator(".qa-answer").inner_text().strip())
        expect(reply.locator(".qa-meta").first).to_contain_text(web_server.seed_file)
        expect(reply).to_contain_text("confidence, ")

    # 2. A follow-up that only makes sense after the first question (via the example button):
    # the page sends the session's history, so "he" is read as the interviewer.
    reply = ask(page, example="Which channel does he work for?")
    shots.take("follow_up")
    expect(reply.locator(".qa-error")).to_have_count(0)
    content.answer_contains(reply, "Sky News")
    content.reply_contains(reply, "read as “Which channel does Stuart Ramsay work for?”")

    # 3. Upload a new document (and one full of markup) and ask about it.
    festival = tmp_path / "zorblatt.txt"
    festival.write_text("The Zorblatt festival takes place every June in Kettering.\n", encoding="utf-8")
    markup = tmp_path / "markup_notes.txt"
    markup.write_text(
        f"Zorblatt markup notes: <script>window.{XSS_MARKER} = 1</script> "
        f'<img src="x" onerror="window.{XSS_MARKER} = 2"> must show as plain text.\n',
        encoding="utf-8",
    )
    page.locator("#qa-upload input[type=file]").set_input_files([str(festival), str(markup)])
    status = page.locator("#qa-upload-status")
    expect(status).to_contain_text("Added zorblatt.txt", timeout=ANSWER_TIMEOUT_MS)
    expect(status).to_contain_text("Added markup_notes.txt")
    expect(page.locator("#qa-docs")).to_contain_text("zorblatt.txt")
    assert (web_server.corpus_dir / "uploads" / "zorblatt.txt").is_file()
    shots.take("uploaded")

    reply = ask(page, "Where does the Zorblatt festival take place?")
    evidence = open_evidence(reply)
    shots.take("upload_answer")
    # Document markup is shown as text and never runs (both uploads mention Zorblatt, so both are read).
    expect(evidence).to_contain_text("markup_notes.txt")
    expect(evidence).to_contain_text(f"<script>window.{XSS_MARKER} = 1</script>")
    assert page.evaluate(f"window.{XSS_MARKER}") is None
    assert reply.locator("script, img").count() == 0
    content.answer_contains(reply, "Kettering")

    # 4. Remove an uploaded document; the list updates and the file is gone.
    page.locator("#qa-remove input").click()
    page.get_by_role("option", name="markup_notes.txt").click()
    page.locator("#qa-remove-button").click()
    expect(status).to_contain_text("Removed", timeout=120_000)
    expect(page.locator("#qa-docs")).not_to_contain_text("markup_notes.txt")
    assert not (web_server.corpus_dir / "uploads" / "markup_notes.txt").exists()
    shots.take("removed")

    # 5. Uploads persist: a server started afresh on the same folders lists the upload.
    with start_web_server(web_server.corpus_dir, web_server.index_dir, tmp_path / "restart.log") as again:
        page.goto(again.url, wait_until="load")
        docs = page.locator("#qa-docs")
        expect(docs).to_contain_text("uploads/zorblatt.txt", timeout=ANSWER_TIMEOUT_MS)
        expect(docs).not_to_contain_text("markup_notes.txt")
        shots.take("after_restart")
    assert not content.failures, "reader-quality checks failed:\n" + "\n".join(content.failures)


def test_bad_questions_get_a_friendly_message(page: Page, tmp_path: Path) -> None:
    reply = ask(page, "x" * 1200)
    expect(reply.locator(".qa-error")).to_contain_text("limit")
    # The session carries on: the next question is answered normally.
    reply = ask(page, "Who interviewed Zelensky?")
    expect(reply.locator(".qa-error")).to_have_count(0)
    Shots(page, tmp_path).take("after_error")


def test_the_reader_can_be_switched_in_the_settings(page: Page, tmp_path: Path) -> None:
    """Settings offer both shipped readers; switching moves the threshold slider to that reader's
    own calibrated threshold and the next answer comes from it."""
    shots = Shots(page, tmp_path)
    expect(page.locator("#qa-status")).to_contain_text("Ready", timeout=ANSWER_TIMEOUT_MS)
    page.locator("#qa-settings").get_by_text("Settings", exact=True).click()
    choice = page.locator("#qa-reader")
    expect(choice).to_be_visible()
    other = next(name for name in SHIPPED_READERS if name != DEFAULT_READER)
    expect(choice.get_by_label(DEFAULT_READER)).to_be_checked()
    threshold = page.get_by_label("Confidence threshold").first
    before = threshold.input_value()
    choice.get_by_label(other).check()
    expect(threshold).not_to_have_value(before, timeout=ANSWER_TIMEOUT_MS)
    shots.take(f"{other}_reader")
    reply = ask(page, "Who interviewed Zelensky?")
    expect(reply.locator(".qa-answer")).to_contain_text("Stuart Ramsay")
    choice.get_by_label(DEFAULT_READER).check()
    expect(threshold).to_have_value(before, timeout=ANSWER_TIMEOUT_MS)
