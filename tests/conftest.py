"""Shared fixtures. `web_server` starts the real web app once per test session (slow: loads models);
`milvus_uri` is a Milvus Lite file of the test's own."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from app_process import WebServer, copy_writable, run_app, seeds_dir
from hypothesis import settings

# Property tests draw the same examples on every run, so a green suite here is green in CI;
# HYPOTHESIS_PROFILE=explore draws fresh random examples to hunt for new failures.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """The real web app over a temporary copy of the seeds, started once per session."""
    try:
        seeds = seeds_dir()
    except FileNotFoundError as exc:
        pytest.fail(str(exc))
    work = tmp_path_factory.mktemp("web")
    copy_writable(seeds, work / "seeds")
    with run_app(work / "seeds", work / "index", work / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def start_web_server() -> Callable[[Path, Path, Path], contextlib.AbstractContextManager[WebServer]]:
    """`run_app` for tests that need another server, e.g. on the same folders after a restart."""
    return run_app


@pytest.fixture()
def milvus_uri(tmp_path: Path) -> Iterator[str]:
    """A Milvus Lite file in the test's temp folder (skipped without pymilvus); let go of at the
    end so nothing holds its lock."""
    pytest.importorskip("pymilvus")
    from qa.milvus_store import release

    path = str(tmp_path / "milvus" / "qa.db")
    yield path
    release(path)
