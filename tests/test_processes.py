"""`qa index` and `qa serve` as the processes people run: two writers on one index folder take
turns at its lock, and SIGTERM or Ctrl-C stops either one cleanly (the web app's own stop,
while it indexes 400 files, is tests/test_crash_safety.py's).

- `qa serve` keeps the web chat's promise (README, Starting and stopping): SIGTERM or Ctrl-C
  closes the server and exits 0 (Ctrl-C: 130) with one `stopped on …` line, no traceback.
- `qa index` makes no such promise: SIGTERM ends it by the signal's default action and Ctrl-C
  with status 130; either way the index is the one committed before (a sync saves once, at its
  end), and the next `qa index` adds exactly the files not yet in it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from app_process import (
    ROOT,
    WebServer,
    accepted_answers,
    cli_command,
    cli_env,
    copy_writable,
    free_port,
    run_cli,
    seeds_dir,
    unexpected_tracebacks,
)
from robust_support import ask_raw, assert_store_consistent, file_hashes

pytestmark = pytest.mark.slow  # real `qa` processes, models included

#: Hang guards (not speed targets): a `qa` process to finish or exit once signalled, and a
#: condition polled for (a log line, a blocked lock).
PROCESS_HANG_GUARD_S = 300
POLL_HANG_GUARD_S = 300
_WORDS = ["harbour", "lantern", "copper", "meadow", "signal", "orchard", "granite", "ferry", "willow", "beacon"]


def _write_docs(folder: Path, first: int, count: int) -> None:
    """`count` files of three passages or so each, every one with a fact of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + count):
        rng = random.Random(i)
        sentences = [f"{' '.join(rng.choices(_WORDS, k=rng.randint(8, 14))).capitalize()}." for _ in range(36)]
        sentences.insert(5, f"The keeper of lighthouse number {i} is called Keeper{i}.")
        (folder / f"doc{i:03d}.txt").write_text(" ".join(sentences), encoding="utf-8")


def _wait_for(condition, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + POLL_HANG_GUARD_S  # a hang guard
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited with {process.returncode} before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"hung: no {what} within {POLL_HANG_GUARD_S} s")
        time.sleep(0.05)


def _manifest_documents(index_dir: Path) -> dict[str, str]:
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    return {path: record["content_hash"] for path, record in manifest["documents"].items()}


def _check_index(index_dir: Path, corpus: Path) -> None:
    """The index on disk holds exactly the corpus files, consistently, with no temp files."""
    from qa.config import Settings
    from qa.indexing import profile_for
    from qa.pipeline import Engine
    from qa.store import IndexStore

    settings = Settings.load(corpus_dir=str(corpus), index_dir=str(index_dir))
    embedder = Engine(settings).embedder
    store = IndexStore.load(index_dir, profile_for(settings, embedder))
    assert_store_consistent(store, embedder)
    assert {p: r.content_hash for p, r in store.documents.items()} == file_hashes(corpus)
    assert not list(index_dir.glob(".*.tmp")), "temp files left behind"


def _blocked_on_lock(pid: int, lock_file: Path) -> bool:
    """Whether process `pid` waits for the flock on `lock_file` (a "->" line of /proc/locks)."""
    inode = lock_file.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and fields[fields.index("->") + 4] == str(pid) and fields[-3].endswith(f":{inode}"):
            return True
    return False


# ----------------------------------------------------------------------------- the writers' lock


def test_a_second_qa_index_waits_for_the_writers_lock(tmp_path: Path) -> None:
    """While another writer holds the index folder's lock, `qa index` waits at it and writes
    nothing; once it is free the index is built. Two `qa index` started together on one folder
    then both succeed, one after the other, and leave one consistent index of the folder."""
    from qa.store import write_lock

    corpus, index_dir = tmp_path / "docs", tmp_path / "index"
    _write_docs(corpus, 0, 8)
    with write_lock(index_dir):
        waiting = subprocess.Popen(cli_command("index", str(corpus), "--index-dir", str(index_dir)), cwd=ROOT,
                                   env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: _blocked_on_lock(waiting.pid, index_dir / ".lock"), "wait at the writers' lock",
                      waiting)
            assert sorted(p.name for p in index_dir.iterdir()) == [".lock"], "written without the lock"
        except BaseException:
            waiting.kill()
            raise
    out, err = waiting.communicate(timeout=PROCESS_HANG_GUARD_S)
    assert waiting.returncode == 0, err[-3000:]
    assert ": 8 documents, " in out and "(8 added, 0 changed, 0 removed, 0 unchanged" in out, out
    _check_index(index_dir, corpus)

    _write_docs(corpus, 8, 8)
    (corpus / "doc000.txt").unlink()
    both = [subprocess.Popen(cli_command("index", str(corpus), "--index-dir", str(index_dir)), cwd=ROOT,
                             env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [(p.communicate(timeout=PROCESS_HANG_GUARD_S), p.returncode) for p in both]
    assert [status for _, status in results] == [0, 0], [err[-2000:] for (_, err), _ in results]
    assert all(": 15 documents, " in out for (out, _), _ in results), [out for (out, _), _ in results]
    _check_index(index_dir, corpus)
    assert sorted(_manifest_documents(index_dir)) == sorted(f"docs/doc{i:03d}.txt" for i in range(1, 16))


# ----------------------------------------------------------------------------- qa index and signals


def _index_until_signalled(corpus: Path, index_dir: Path, signum: int) -> tuple[int, str]:
    """`qa index` signalled with `signum` once it has hashed the files and is embedding them:
    its exit status and what it printed on stderr."""
    # As at a terminal: a runner started in the background (`cmd &`) ignores SIGINT, and a child
    # would inherit that and never see Ctrl-C.
    process = subprocess.Popen(cli_command("index", str(corpus), "--index-dir", str(index_dir)), cwd=ROOT,
                               env=cli_env({"PYTHONUNBUFFERED": "1"}), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = bytearray()

    def pump() -> None:
        while chunk := os.read(process.stderr.fileno(), 65536):
            seen.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        _wait_for(lambda: b"indexing" in seen, "indexing", process)  # the files are hashed; embedding follows
        time.sleep(0.5)
        assert process.poll() is None, "qa index finished before the signal: give it more files"
        process.send_signal(signum)
        process.wait(timeout=PROCESS_HANG_GUARD_S)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(10)
    return process.returncode, seen.decode(errors="replace")


def test_qa_index_stopped_by_a_signal_keeps_the_committed_index(tmp_path: Path) -> None:
    """SIGTERM, then Ctrl-C, while `qa index` embeds 40 new files: each time it ends (by the
    signal's default action; 130 after Ctrl-C) without a traceback, and the index is the one
    committed before, byte for byte. The next `qa index` adds exactly the 40 files."""
    corpus, index_dir = tmp_path / "docs", tmp_path / "index"
    _write_docs(corpus, 0, 10)
    built = run_cli("index", str(corpus), "--index-dir", str(index_dir))
    assert built.returncode == 0, built.stderr[-3000:]
    committed = (index_dir / "manifest.json").read_bytes()
    _write_docs(corpus, 10, 40)  # 160 passages: seconds of embedding at the least
    for signum, status in ((signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)):
        got, err = _index_until_signalled(corpus, index_dir, signum)
        assert got == status, (signal.Signals(signum).name, err[-3000:])
        assert unexpected_tracebacks(err) == [], err[-3000:]
        assert (index_dir / "manifest.json").read_bytes() == committed, "a build cut short changed the index"
        assert not list(index_dir.glob(".*.tmp"))

    again = run_cli("index", str(corpus), "--index-dir", str(index_dir))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(40 added, 0 changed, 0 removed, 10 unchanged" in again.stdout, again.stdout
    _check_index(index_dir, corpus)


# ----------------------------------------------------------------------------- qa serve and signals


def _start_serve(corpus: Path, index_dir: Path, log_path: Path) -> WebServer:
    port = free_port()
    env = cli_env({"PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost"})
    command = cli_command("serve", "--port", str(port), "--corpus-dir", str(corpus), "--index-dir", str(index_dir))
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return WebServer(f"http://127.0.0.1:{port}", port, corpus, index_dir, log_path, process)


@pytest.mark.parametrize(("signum", "status", "when"), [(signal.SIGTERM, 0, "after answering"),
                                                       (signal.SIGINT, 130, "while loading and indexing")],
                         ids=["SIGTERM", "SIGINT"])
def test_qa_serve_stops_cleanly_on_a_signal(tmp_path: Path, signum: int, status: int, when: str) -> None:
    """`qa serve` serves the chat and, signalled once it answered (SIGTERM) or as soon as it
    listens (Ctrl-C, while the models load), closes it and exits with one "stopped on" line."""
    name = signal.Signals(signum).name
    corpus = copy_writable(seeds_dir(), tmp_path / "seeds")
    server = _start_serve(corpus, tmp_path / "index", tmp_path / "serve.log")
    try:
        server.wait_for_log("Serving on")
        if when == "after answering":
            answer = ask_raw(server.url, "Who interviewed Zelensky?")
            assert answer["text"] in accepted_answers("Who interviewed Zelensky?"), answer
        server.process.send_signal(signum)
        got = server.process.wait(timeout=PROCESS_HANG_GUARD_S)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    log = server.log_text()
    assert got == status, log[-3000:]
    assert [ln.split("qa.web: ", 1)[1] for ln in log.splitlines() if "qa.web: stopped" in ln] == [
        f"stopped on {name}"], log[-3000:]
    assert "terminate called" not in log and unexpected_tracebacks(log) == [], log[-3000:]
    with pytest.raises(ConnectionRefusedError):  # the server is closed, not merely abandoned
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
