"""The timings the tests used to assert, measured here instead (tests check behaviour; speed
lives in benchmarks/): each with the bound the test once held it to.

- a start-up error (a busy port) reported by app.py: the old bound 15 s (measured: about 1 s);
- the web app's exit after SIGTERM, once indexed: 30 s (about 2 s);
- loading a 50 MB text file: 30 s;
- two writers saving a small FAISS index while a reader reloads it: 20 saves and 20 loads
  within 4 s.

    python benchmarks/timings.py [--json]

Prints one line per timing, with the old bound and whether it holds. Only meaningful on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from app_process import cli_env, copy_writable, seeds_dir, start_app  # noqa: E402 - shared with the tests


def start_up_error_s(work: Path) -> float:
    """app.py on a port another server holds: seconds until it exits with its one-line error."""
    corpus = copy_writable(seeds_dir(), work / "busy-seeds")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "app.py", "--port", str(port), "--corpus-dir", str(corpus),
                               "--index-dir", str(work / "busy-index")], cwd=ROOT, env=cli_env(),
                              capture_output=True, text=True, timeout=300)
        seconds = time.perf_counter() - started
    assert done.returncode == 2, done.stderr[-2000:]
    return seconds


def stop_after_sigterm_s(work: Path) -> float:
    """The indexed web app signalled with SIGTERM: seconds until it has exited."""
    corpus = copy_writable(seeds_dir(), work / "stop-seeds")
    server = start_app(corpus, work / "stop-index", work / "stop.log")
    try:
        server.wait_for_log("index ready")
        sent = time.perf_counter()
        server.process.send_signal(signal.SIGTERM)
        status = server.process.wait(timeout=300)
        seconds = time.perf_counter() - sent
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert status == 0, server.log_tail()
    return seconds


def load_fifty_megabytes_s(work: Path) -> float:
    """load_document on a 50 MB text file with CRLF line endings."""
    from qa.documents import load_document

    line = "The quick brown fox jumps over the lazy dog, and café prices rise.\r\n"
    corpus = work / "big"
    corpus.mkdir()
    (corpus / "big.txt").write_bytes((line * (50 * 2**20 // len(line.encode()) + 1)).encode())
    started = time.perf_counter()
    load_document(corpus / "big.txt", corpus)
    return time.perf_counter() - started


def saves_and_loads_s(work: Path, rounds: int = 20) -> float:
    """Two writers replacing a 30-70 document index while this thread reloads it: seconds until
    both have saved `rounds` times and the reader has loaded it `rounds` times."""
    import test_concurrency as race  # the race test's toy store

    from qa.store import IndexProfile, IndexStore, write_lock

    profile = IndexProfile("toy", 8, 150, 40)
    race._toy_store(work / "race", 50, 0).save()
    stop, saves = threading.Event(), [0]

    def writer(offset: int) -> None:
        seed = offset
        while not stop.is_set():
            seed += 2
            store = race._toy_store(work / "race", 30 + seed % 40, seed)
            store.generation = 1
            with write_lock(work / "race"):
                store.save()
            saves[0] += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in (0, 1)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    loads = 0
    try:
        while saves[0] < rounds or loads < rounds:
            IndexStore.load(work / "race", profile)
            loads += 1
        return time.perf_counter() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join()


#: name, what it measures, the bound a test once asserted (seconds).
TIMINGS: list[tuple[str, Callable[[Path], float], float]] = [
    ("start-up error (busy port), app.py", start_up_error_s, 15.0),
    ("exit after SIGTERM, indexed app.py", stop_after_sigterm_s, 30.0),
    ("load a 50 MB text file", load_fifty_megabytes_s, 30.0),
    ("20 saves by two writers and 20 loads", saves_and_loads_s, 4.0),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="qa-timings-") as temp:
        for name, measure, bound in TIMINGS:
            work = Path(temp) / str(len(results))
            work.mkdir()
            seconds = measure(work)
            results[name] = {"seconds": round(seconds, 2), "old_test_bound_s": bound, "within": seconds < bound}
            if not args.json:
                print(f"{name}: {seconds:.2f} s (old test bound {bound:.0f} s: {'held' if seconds < bound else 'missed'})")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
