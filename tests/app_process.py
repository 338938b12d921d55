"""The seed corpus and the real web app as a subprocess, shared by the fixtures and the
robustness tests. Not a test module (no `test_` prefix); tests import it by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_FILE = "000_b6ab0304c308f14d.txt"
#: Hang guard for a start: model loading plus the first index build (about 30 s on two busy cores).
SERVER_START_TIMEOUT_S = float(os.environ.get("QA_TEST_SERVER_TIMEOUT", "300"))
#: The test picks where the app listens and what it reads; other QA_* settings pass through.
_OVERRIDDEN = {"QA_AUTH", "QA_HOST", "QA_PORT", "QA_CORPUS_DIR", "QA_INDEX_DIR", "QA_UPLOAD_DIR"}


#: Set to 1 on a machine without a browser to skip the browser tests; unset (as in CI), a missing
#: chromium fails them, so CI cannot go green without browser coverage.
SKIP_BROWSER_VARIABLE = "QA_SKIP_BROWSER_TESTS"


#: How every headless Chromium here is started: no sandbox (root in CI), no GPU, nothing fetched.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_executable() -> Path:
    """The system Chromium the browser tests drive (Debian's `chromium`, which `scripts/setup
    --test` installs); fails the calling test if there is none, or skips it loudly with
    QA_SKIP_BROWSER_TESTS=1."""
    import pytest

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return Path(found)
    message = ("chromium not found: the browser tests need it (`apt-get install -y chromium`, which "
               f"`scripts/setup --test` runs as root); set {SKIP_BROWSER_VARIABLE}=1 to skip them")
    if os.environ.get(SKIP_BROWSER_VARIABLE) == "1":
        pytest.skip(f"!!! BROWSER TESTS SKIPPED: {message} !!!")
    pytest.fail(message, pytrace=False)


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without its QA_* settings (QA_THREADS aside), plus `extra`:
    a `qa` process then reads only the settings its test gives it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_") or k == "QA_THREADS"}
    return {**env, **(extra or {})}


def cli_command(*args: str) -> list[str]:
    """The command line of `qa ARGS...` run by this Python."""
    return [sys.executable, "-m", "qa.cli", *args]


def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `qa ARGS...` from the repo root with `cli_env(env)`; its output is captured as text and
    its exit status is the caller's to check."""
    return subprocess.run(cli_command(*args), cwd=ROOT, env=cli_env(env), capture_output=True, text=True,
                          timeout=timeout)


def seeds_dir() -> Path:
    """The seed corpus: $QA_TEST_SEEDS, the repo's seeds/, or shared/seeds beside the checkout."""
    for candidate in (os.environ.get("QA_TEST_SEEDS"), ROOT / "seeds", ROOT.parent / "shared" / "seeds"):
        if candidate and (Path(candidate) / SEED_FILE).is_file():
            return Path(candidate)
    raise FileNotFoundError(f"seed corpus with {SEED_FILE} not found (set QA_TEST_SEEDS)")


def accepted_answers(question: str) -> tuple[str, ...]:
    """Every answer `eval/seed_questions.jsonl` accepts for one of its questions."""
    with (ROOT / "eval" / "seed_questions.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            item = json.loads(line)
            if item["question"] == question:
                return tuple(item["answers"])
    raise KeyError(f"{question!r} is not in eval/seed_questions.jsonl")


def copy_writable(src: Path, dst: Path) -> Path:
    """Copy a folder and make it writable (the app saves uploads inside its corpus)."""
    shutil.copytree(src, dst)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unexpected_tracebacks(log: str) -> list[str]:
    """The first line after each traceback header in an app log.

    Expected user errors (an empty question, a refused upload) are logged as one line, never
    with a traceback, so every traceback is unexpected; counting headers, not parsing the
    lines after them, keeps the check right when other threads' lines land inside one.
    """
    marker = "Traceback (most recent call last):"
    return [block.strip().splitlines()[0] if block.strip() else marker for block in log.split(marker)[1:]]


@dataclass(frozen=True)
class WebServer:
    """A running app: its address, its corpus copy (for reading documents back) and its log."""

    url: str
    port: int
    corpus_dir: Path
    index_dir: Path
    log_path: Path
    process: subprocess.Popen
    seed_file: str = SEED_FILE

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def wait_for_log(self, *texts: str, timeout: float = SERVER_START_TIMEOUT_S, poll: float = 0.02) -> str:
        """The log once it holds every one of `texts`; RuntimeError if the app exits or times out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log_text()
            if all(text in log for text in texts):
                return log
            if self.process.poll() is not None:
                status = self.process.returncode
                raise RuntimeError(f"app.py exited with {status} before logging {texts}:\n{log[-4000:]}")
            time.sleep(poll)
        raise RuntimeError(f"app.py did not log {texts} within {timeout:.0f}s:\n{self.log_tail()}")


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        time.sleep(1)
    raise RuntimeError(f"app.py did not answer on {url} within {SERVER_START_TIMEOUT_S:.0f}s")


def start_app(corpus: Path, index: Path, log_path: Path, **env_extra: str) -> WebServer:
    """`python app.py` on a free port over `corpus`/`index`, its output in `log_path`; returns at
    once (see `wait_until_up`, `WebServer.wait_for_log`).

    $QA_TEST_APP replaces app.py (e.g. a harness with a stub engine, to debug the UI alone).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in _OVERRIDDEN}
    env.update(PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost", **env_extra)
    app = os.environ.get("QA_TEST_APP", str(ROOT / "app.py"))
    command = [sys.executable, app, "--port", str(port), "--corpus-dir", str(corpus), "--index-dir", str(index)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    return WebServer(f"http://127.0.0.1:{port}", port, corpus, index, log_path, process)


@contextlib.contextmanager
def run_app(corpus: Path, index: Path, log_path: Path, **env_extra: str) -> Iterator[WebServer]:
    """`start_app`, waited for until it answers, and stopped on exit."""
    server = start_app(corpus, index, log_path, **env_extra)
    process = server.process
    try:
        wait_until_up(server.url + "/", process, log_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
