"""Redo docs/chat.png, the README's picture of the chat, after a change to the page.

Starts the real app (app.py) on a free port over a copy of seeds/ with a throwaway index, asks a
question in Debian's Chromium (headless, driven by Playwright) and saves the page once the answer
is shown. Needs `chromium` (`scripts/setup --test` installs it) and the `test` extra (playwright).

    python scripts/screenshot.py [--question "Who interviewed Zelenskyy?"] [--out docs/chat.png]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from app_process import CHROMIUM_ARGS  # noqa: E402 - one way to start Chromium, shared with the browser tests

CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1200, "height": 800}
#: Hang guards: model loading plus the first index build, and one answer, on a busy CPU.
START_TIMEOUT_S = 300
ANSWER_TIMEOUT_MS = 300_000
REPLIES = '#qa-chat [data-testid="bot"] .qa-reply'

log = logging.getLogger("screenshot")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, app: subprocess.Popen, timeout: float) -> None:
    """Return once `url` answers; raise if the app exits or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"the app exited with status {app.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def shoot(url: str, question: str, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url, wait_until="load")
            expect(page.locator("#qa-status")).to_contain_text("Ready", timeout=ANSWER_TIMEOUT_MS)
            box = page.locator("#qa-question textarea")
            box.fill(question)
            box.press("Enter")
            reply = page.locator(REPLIES).first
            expect(reply).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
            page.wait_for_timeout(500)  # let the chat finish scrolling
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            log.info("answer shown: %s", reply.locator(".qa-answer").inner_text().strip())
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--question", default="Who interviewed Zelenskyy?")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "chat.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory() as work:
        corpus = shutil.copytree(ROOT / "seeds", Path(work) / "seeds")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_") or k == "QA_THREADS"}
        env.update(QA_HOST="127.0.0.1", QA_PORT=str(port), QA_CORPUS_DIR=str(corpus),
                   QA_INDEX_DIR=str(Path(work) / "index"))
        app = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_for(url, app, START_TIMEOUT_S)
            shoot(url, args.question, args.out)
        finally:
            app.terminate()
            app.wait(60)
    log.info("saved %s", args.out)


if __name__ == "__main__":
    main()
