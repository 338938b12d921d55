"""Shared fixtures. `web_server` starts the real web app once per test session (slow: loads models)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
SEED_FILE = "000_b6ab0304c308f14d.txt"
#: Model loading plus the first index build on a busy CPU can take minutes.
SERVER_START_TIMEOUT_S = float(os.environ.get("QA_TEST_SERVER_TIMEOUT", "900"))
_OVERRIDDEN = {"QA_AUTH", "QA_HOST", "QA_PORT", "QA_CORPUS_DIR", "QA_INDEX_DIR", "QA_UPLOAD_DIR"}


def seeds_dir() -> Path | None:
    """The seed corpus: $QA_TEST_SEEDS, the repo's seeds/, or shared/seeds beside the checkout."""
    candidates = [os.environ.get("QA_TEST_SEEDS"), ROOT / "seeds", ROOT.parent / "shared" / "seeds"]
    for candidate in candidates:
        if candidate and (Path(candidate) / SEED_FILE).is_file():
            return Path(candidate)
    return None


@dataclass(frozen=True)
class WebServer:
    """A running app: its address, its corpus copy (for reading documents back) and its log."""

    url: str
    corpus_dir: Path
    index_dir: Path
    log_path: Path
    process: subprocess.Popen
    seed_file: str = SEED_FILE

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_writable(src: Path, dst: Path) -> None:
    """Copy the corpus and make it writable: the app saves uploads inside it."""
    shutil.copytree(src, dst)
    for path in [dst, *dst.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise RuntimeError(f"app.py did not answer on {url} within {SERVER_START_TIMEOUT_S:.0f}s")


@contextlib.contextmanager
def run_app(corpus: Path, index: Path, log_path: Path) -> Iterator[WebServer]:
    """`python app.py` on a free port over `corpus`/`index`, stopped on exit.

    $QA_TEST_APP replaces app.py (e.g. a harness with a stub engine, to debug the UI alone).
    """
    port = _free_port()
    # The test picks where the app listens and what it reads; other QA_* settings pass through.
    env = {k: v for k, v in os.environ.items() if k not in _OVERRIDDEN}
    env.update(PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False", NO_PROXY="127.0.0.1,localhost")
    app = os.environ.get("QA_TEST_APP", str(ROOT / "app.py"))
    command = [sys.executable, app, "--port", str(port), "--corpus-dir", str(corpus), "--index-dir", str(index)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = WebServer(f"http://127.0.0.1:{port}", corpus, index, log_path, process)
    try:
        _wait_until_up(server.url + "/", process, log_path)
        log.info("web app up at %s (log: %s)", server.url, log_path)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """The real web app over a temporary copy of the seeds, started once per session."""
    seeds = seeds_dir()
    if seeds is None:
        pytest.fail(f"seed corpus with {SEED_FILE} not found (set QA_TEST_SEEDS)")
    work = tmp_path_factory.mktemp("web")
    _copy_writable(seeds, work / "seeds")
    with run_app(work / "seeds", work / "index", work / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def start_web_server() -> Callable[[Path, Path, Path], contextlib.AbstractContextManager[WebServer]]:
    """`run_app` for tests that need another server, e.g. on the same folders after a restart."""
    return run_app
