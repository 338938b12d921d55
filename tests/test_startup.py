"""First start: models load one at a time whatever thread asks, and every start serves; a start
that cannot work (a busy port, an unusable folder, a bad setting) says why in one line, at once.

A fresh interpreter matters here: transformers' lazy imports only race the first time they
run in a process, so these tests start new processes rather than reuse the test's models.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from app_process import ROOT, accepted_answers, cli_env, copy_writable, run_app, seeds_dir, unexpected_tracebacks

pytestmark = pytest.mark.slow

#: Loads the embedder (on the first question's encoding, where it loads lazily) and the reader
#: from two threads at once in a new process. Each model's loading first sleeps, which widens the
#: window in which a second load could start: with loads serialised the two spans cannot overlap;
#: without, they always do.
TWO_THREADS = r"""
import json, threading, time
import qa.embedding, qa.reader
from qa.config import Settings
from qa.pipeline import Engine

spans = []

def widened(cls, method):
    original = getattr(cls, method)
    def loading(self, *args, **kwargs):
        start = time.monotonic()
        time.sleep(0.4)
        try:
            return original(self, *args, **kwargs)
        finally:
            spans.append((cls.__name__, start, time.monotonic()))
    setattr(cls, method, loading)

widened(qa.embedding.Embedder, "_load_plain")
widened(qa.reader.Reader, "__init__")
engine = Engine(Settings.load())
errors = []

def load(how):
    try:
        how()
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=load, args=(how,)) for how in (
    lambda: engine.embedder.encode(["Who leads Ukraine?"]), lambda: engine.reader)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"errors": errors, "spans": sorted(spans, key=lambda s: s[1]),
                  "reader_threshold": engine.reader.calibration.threshold}))
"""


@pytest.mark.parametrize("attempt", range(3))
def test_embedder_and_reader_asked_from_two_threads_load_one_at_a_time(attempt: int, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", TWO_THREADS], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    assert sorted(name for name, _, _ in result["spans"]) == ["Embedder", "Reader"]
    (_, _, first_end), (_, second_start, _) = result["spans"]
    assert second_start >= first_end, f"the two models loaded at the same time: {result['spans']}"
    assert 0 < result["reader_threshold"] < 1


def test_app_starts_on_an_empty_index_and_answers_every_time(tmp_path: Path) -> None:
    """Five first starts in a row: each builds its index, answers /ask, and logs no traceback."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    corpus = copy_writable(seeds_dir(), tmp_path / "seeds")
    question = "Who interviewed Zelensky?"
    for start in range(5):
        with run_app(corpus, tmp_path / f"index-{start}", tmp_path / f"app-{start}.log") as app:
            client = Client(app.url, verbose=False)
            payload = client.predict(question, 5, -1, api_name="/ask")
            with pytest.raises(AppError, match="the question is empty"):
                client.predict("   ", 5, -1, api_name="/ask")
            log = app.log_text()
        assert payload["text"] in accepted_answers(question), payload
        assert payload["source"].endswith("000_b6ab0304c308f14d.txt")
        assert unexpected_tracebacks(log) == [], log[-3000:]
        # The refused question is one line in the log, not a traceback.
        assert sum("the question is empty" in line for line in log.splitlines()) == 1, log[-3000:]
        assert "bm25s" not in log and "Loading weights" not in log, log[-3000:]


def test_merged_reader_is_cached_and_checked_on_every_load(tmp_path: Path) -> None:
    """The second start loads the merged reader from the cache; a damaged cache is rebuilt."""
    from qa.reader import load_shipped_reader

    merged, _ = load_shipped_reader(cache_dir=tmp_path)
    [folder] = list(tmp_path.iterdir())
    weights = folder / "model.safetensors"
    assert (folder / "model.sha256").read_text().strip()
    first_mtime = weights.stat().st_mtime_ns
    cached, _ = load_shipped_reader(cache_dir=tmp_path)
    assert weights.stat().st_mtime_ns == first_mtime  # read, not rewritten
    expected = merged.state_dict()
    assert all(bool((cached.state_dict()[name] == tensor).all()) for name, tensor in expected.items())

    damaged = bytearray(weights.read_bytes())
    damaged[-64] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    rebuilt, _ = load_shipped_reader(cache_dir=tmp_path)
    assert all(bool((rebuilt.state_dict()[name] == tensor).all()) for name, tensor in expected.items())
    assert weights.read_bytes() != bytes(damaged)


def test_a_new_merge_keeps_only_the_most_recently_used_merged_readers(tmp_path: Path) -> None:
    """Each reader release (or install) merges once; old ~90 MB copies must not pile up."""
    import os

    from qa.models import CACHE_ENTRIES_KEPT
    from qa.reader import load_shipped_reader

    stale = []
    for age in range(4):  # merged readers of other releases, last used 0..3 days before the newest
        folder = tmp_path / f"{age:020d}"
        folder.mkdir()
        (folder / "model.sha256").write_text("0" * 64 + "\n")
        (folder / "model.safetensors").write_bytes(b"old")
        when = 1_700_000_000 - age * 86_400
        os.utime(folder, (when, when))
        stale.append(folder)
    (tmp_path / "notes").mkdir()  # not a merged reader: left alone
    load_shipped_reader(cache_dir=tmp_path)
    left = sorted(p for p in tmp_path.iterdir() if (p / "model.sha256").exists())
    new = [p for p in left if p not in stale]
    assert len(new) == 1 and (new[0] / "model.safetensors").stat().st_size > 10_000_000
    assert left == sorted(new + stale[: CACHE_ENTRIES_KEPT - 1])  # the most recently used others stay
    assert (tmp_path / "notes").exists()


def test_model_cache_keeps_the_new_file_and_the_most_recently_used_of_its_kind(tmp_path: Path) -> None:
    """The same rule for ONNX graphs (files): a used graph counts as recent, whatever its age."""
    import os

    from qa.models import CACHE_ENTRIES_KEPT, mark_used, prune_cache

    graphs = []
    for age in range(5):
        graph = tmp_path / f"reader-none-{age:020d}.onnx"
        graph.write_bytes(b"graph")
        when = 1_700_000_000 - age * 86_400
        os.utime(graph, (when, when))
        graphs.append(graph)
    other_kind = tmp_path / "embedder-none-old.onnx"
    other_kind.write_bytes(b"graph")
    os.utime(other_kind, (1, 1))
    mark_used(graphs[4])  # the oldest file was just loaded by another process
    new = tmp_path / "reader-none-new.onnx"
    new.write_bytes(b"graph")
    prune_cache(new, tmp_path.glob("reader-none-*.onnx"))
    assert sorted(tmp_path.iterdir()) == sorted([new, graphs[4], graphs[0], other_kind])
    assert CACHE_ENTRIES_KEPT == 3


# ----------------------------------------------------------------------------- start-up errors

#: Hang guard for one start: a start-up error comes in about a second, the failed launch below
#: after models began loading and indexing was stopped.
START_HANG_GUARD_S = 120


def _start(command: list[str], tmp_path: Path, *args: str, env: dict[str, str] | None = None,
           corpus: Path | None = None, index: Path | None = None) -> subprocess.CompletedProcess:
    """Run an entry point over the seed corpus (unless told otherwise) until it exits.

    "Before any model loads" is checked by what it prints: the web app logs "Loading models…"
    before the first load, so a start-up error must be its only line."""
    corpus = corpus or copy_writable(seeds_dir(), tmp_path / "seeds")
    index = index or tmp_path / "index"
    return subprocess.run([*command, "--corpus-dir", str(corpus), "--index-dir", str(index), *args], cwd=ROOT,
                          env=cli_env(env), capture_output=True, text=True, timeout=START_HANG_GUARD_S)


@pytest.mark.parametrize("command", [["app.py"], ["-m", "qa.cli", "serve"]], ids=["app.py", "qa serve"])
def test_a_busy_port_is_one_line_and_status_2_before_any_model_loads(command: list[str], tmp_path: Path) -> None:
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        port = other_server.getsockname()[1]
        done = _start([sys.executable, *command], tmp_path, "--port", str(port))
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines() == [
        f"error: 127.0.0.1:{port} is already in use (is the chat already running?): stop that server, "
        f"or choose another port with QA_PORT or --port (e.g. --port {port + 1})"
    ]
    assert done.stdout == ""  # the one line above is all: no "Loading models…"
    assert not (tmp_path / "index").exists()  # nothing was indexed


#: (what is wrong, environment, arguments, where the corpus and index are, the one line expected)
USER_ERRORS = {
    "bad value": ({"QA_TOP_K": "five"}, [], "seeds", "index", "error: QA_TOP_K='five' is not a valid int"),
    "bad log level": ({"QA_LOG_LEVEL": "loud"}, [], "seeds", "index",
                      "error: QA_LOG_LEVEL='loud' is not a log level: use DEBUG, INFO, WARNING or ERROR"),
    "bad port": ({}, ["--port", "70000"], "seeds", "index",
                 "error: QA_PORT=70000 is not a port: choose one from 1 to 65535 with QA_PORT or --port"),
    "bad login": ({"QA_AUTH": "nopassword"}, [], "seeds", "index", 'error: QA_AUTH must look like "user:password"'),
    "corpus missing": ({}, [], "nowhere", "index",
                       "error: the corpus folder {tmp}/nowhere does not exist: create it and add documents, "
                       "or point QA_CORPUS_DIR or --corpus-dir at a folder of documents"),
    "corpus is a file": ({}, [], "notes.txt", "index",
                         "error: the corpus folder {tmp}/notes.txt is not a folder: "
                         "point QA_CORPUS_DIR or --corpus-dir at a folder of documents"),
    "index cannot be created": ({}, [], "seeds", "notes.txt/index",
                                "error: the index folder {tmp}/notes.txt/index cannot be created: {tmp}/notes.txt "
                                "is a file: choose another with QA_INDEX_DIR or --index-dir"),
}


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_a_start_up_error_a_user_can_fix_is_one_line_and_status_2(case: str, tmp_path: Path) -> None:
    env, args, corpus, index, expected = USER_ERRORS[case]
    copy_writable(seeds_dir(), tmp_path / "seeds")
    (tmp_path / "notes.txt").write_text("not a folder", encoding="utf-8")
    done = _start([sys.executable, "app.py"], tmp_path, *args, env=env, corpus=tmp_path / corpus,
                  index=tmp_path / index)
    assert (done.returncode, done.stderr.splitlines()) == (2, [expected.format(tmp=tmp_path)]), done.stderr[-3000:]
    assert done.stdout == ""


def test_a_failed_launch_after_indexing_began_exits_2_without_an_abort(tmp_path: Path) -> None:
    """The error path after models started loading: the address passes the check (127.0.0.2 is
    free) but Gradio also probes 127.0.0.1, where the port is taken, and refuses to launch. The
    indexing thread must be stopped before the exit, or the interpreter aborts ("terminate
    called without an active exception", status 134)."""
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        port = other_server.getsockname()[1]
        done = _start([sys.executable, "app.py"], tmp_path, "--host", "127.0.0.2", "--port", str(port),
                      env={"PYTHONUNBUFFERED": "1"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == (
        f"error: cannot listen on 127.0.0.2:{port}: the port is in use on this machine; "
        "stop what uses it, or choose another port with QA_PORT or --port")
    assert "Loading models" in done.stderr  # the failure came after indexing had started
    assert "terminate called" not in done.stderr and unexpected_tracebacks(done.stderr) == [], done.stderr[-3000:]
