"""Read documents under a budget that is really enforced: in a worker process, killed at the limit.

What a parser costs is chosen by the file: a 250 KB PDF whose 200 pages share one content stream
that unpacks to 70 MB keeps pypdf busy about ten seconds a page. A flag checked between pages
cannot stop a page that never ends, and a thread cannot be killed, so each file is read in a child
process while the caller waits on a pipe with a deadline; past the deadline, or once the process
is stopping, the child is killed (and a fresh one started for the next file). A worker reads one
file after another, so a folder of small files costs a millisecond or two each on top of reading.

The budget (`ReadBudget`, from `Settings`): `parse_seconds` for any file; a PDF also earns
`parse_page_seconds` for each page it has read (a long PDF may take longer while its pages keep
coming), up to `parse_max_seconds`; `max_document_chars` characters of text; `parse_memory_mb`
of address space for the worker. Whatever `qa.documents.extract_text` dispatches to runs inside.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from qa.documents import DocumentError, outside_link_reason, relative_document_path
from qa.errors import TooMuchTextError
from qa.stopping import Stopped

if TYPE_CHECKING:
    from qa.config import Settings
    from qa.types import Document

logger = logging.getLogger(__name__)

#: How often a caller waiting on a worker looks at its stop flag (seconds); data wakes it at once.
POLL_S = 0.05
#: The longest a new worker may take to start (Python and the parsers imported) on a busy machine.
START_TIMEOUT_S = 120.0
#: Log lines one file may pass on from its worker: a damaged PDF can warn about every object.
MAX_LOG_RECORDS = 20
#: Workers kept waiting for the next file once a read is over.
IDLE_WORKERS = 1
#: The command a worker runs; its arguments: the pipe's descriptor, the memory limit in MB, the log
#: level and the parent's process id.
_WORKER_CODE = "import sys; from qa.parsing import serve_worker; serve_worker(*map(int, sys.argv[1:]))"


@dataclass(frozen=True)
class ReadBudget:
    """What reading one file may cost; a file over it is skipped with the reason."""

    seconds: float = 10.0
    page_seconds: float = 0.5
    max_seconds: float = 300.0
    max_chars: int = 2_000_000
    memory_mb: int = 2048

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadBudget:
        return cls(settings.parse_seconds, settings.parse_page_seconds, settings.parse_max_seconds,
                   settings.max_document_chars, settings.parse_memory_mb)

    def seconds_allowed(self, pages_read: int) -> float:
        """The time a file may have taken once it has read `pages_read` pages (0 for non-PDFs)."""
        return min(self.max_seconds, self.seconds + pages_read * self.page_seconds)

    @property
    def key(self) -> str:
        """The budget in a few characters: a file skipped under another budget is read again."""
        return (f"{self.seconds:g}s+{self.page_seconds:g}s/page<{self.max_seconds:g}s,"
                f"{self.max_chars}ch,{self.memory_mb}MB")


class DocumentReader:
    """Reads documents in worker processes under one `ReadBudget`; thread-safe.

    Each read takes an idle worker (or starts one) and gives it back afterwards; a worker that ran
    over the budget, died, or was reading when the caller stopped is killed instead. `close()`
    kills them all. Links out of the corpus folder are refused here too, unless `follow_links`,
    in case one was planted after the folder was listed.
    """

    def __init__(self, budget: ReadBudget | None = None, follow_links: bool = False) -> None:
        self.budget = budget or ReadBudget()
        self.follow_links = follow_links
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DocumentReader:
        return cls(ReadBudget.from_settings(settings), settings.follow_links)

    def read(self, path: Path, root: Path, stop: threading.Event | None = None) -> Document:
        """The document of file `path` under corpus folder `root`.

        Raises DocumentError when it is over budget or cannot be used, FileNotFoundError when it is
        gone, OSError when it cannot be opened, and Stopped once `stop` is set (or the reader closed).
        """
        name = relative_document_path(Path(path), Path(root))
        request = ("read", os.fspath(path), os.fspath(root), self.budget.max_chars, not self.follow_links)
        for attempt in (1, 2):
            worker = self._checkout(stop)
            healthy = False
            try:
                outcome = worker.ask(request, name, self.budget, stop, lambda: self._closed)
                healthy = outcome[0] != "died"
                break
            except _WorkerGone:  # it died while idle: not this file's doing, so another one reads it
                if attempt == 2:
                    raise OSError("the document reader process ended before it could read the file") from None
            finally:
                self._checkin(worker, healthy)
        return _result(outcome, name)

    def close(self) -> None:
        """Kill every worker, idle or reading (a read in progress raises Stopped)."""
        with self._lock:
            self._closed = True
            workers = [*self._idle, *self._busy]
            self._idle.clear()
        for worker in workers:
            worker.kill()

    def __enter__(self) -> DocumentReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _checkout(self, stop: threading.Event | None) -> _Worker:
        with self._lock:
            if self._closed:
                raise Stopped("reading stopped: the document reader is closed")
            while self._idle:
                worker = self._idle.pop()
                if worker.alive:
                    self._busy.add(worker)
                    return worker
                worker.kill()
        worker = _Worker.start(self.budget.memory_mb, stop)
        with self._lock:
            if self._closed:
                worker.kill()
                raise Stopped("reading stopped: the document reader is closed")
            self._busy.add(worker)
        return worker

    def _checkin(self, worker: _Worker, healthy: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            if healthy and not self._closed and len(self._idle) < IDLE_WORKERS:
                self._idle.append(worker)
                return
        worker.kill()


def read_document(path: Path, root: Path, settings: Settings, stop: threading.Event | None = None) -> Document:
    """Read one file under the budget of `settings` with a worker of its own (started and
    stopped for this file: for one-off reads; `DocumentReader` keeps one for many files)."""
    with DocumentReader.from_settings(settings) as reader:
        return reader.read(path, root, stop)


# --------------------------------------------------------------------------- the parent's side


class _OverBudget(Exception):
    """A worker killed for taking too long; the message is the skip reason."""


class _WorkerGone(Exception):
    """A worker that could not be sent a request: it ended while it waited for one."""


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, process: subprocess.Popen, conn: Connection) -> None:
        self.process = process
        self.conn = conn

    @classmethod
    def start(cls, memory_mb: int, stop: threading.Event | None) -> _Worker:
        """Start a worker and wait until it has imported the parsers (that time is not a file's)."""
        ours, theirs = Pipe(duplex=True)
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        level = logging.getLogger().getEffectiveLevel()
        command = [sys.executable, "-c", _WORKER_CODE, str(theirs.fileno()), str(memory_mb), str(level),
                   str(os.getpid())]
        try:
            # A session of its own: Ctrl-C in a terminal, or a signal to the process group, is for
            # the parent to act on; the worker is killed by its parent or ends when the parent does.
            process = subprocess.Popen(command, pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        finally:
            theirs.close()
        worker = cls(process, ours)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while not ours.poll(POLL_S):
                if stop is not None and stop.is_set():
                    raise Stopped("reading stopped: the process is shutting down")
                if process.poll() is not None or time.monotonic() > deadline:
                    raise OSError(f"the document reader process did not start (exit status {process.poll()})")
            ready = ours.recv()
            if ready != ("ready",):
                raise OSError(f"the document reader process did not start ({ready!r:.200})")
        except BaseException:
            worker.kill()
            raise
        return worker

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def ask(self, request: tuple, name: str, budget: ReadBudget, stop: threading.Event | None,
            closed: Any) -> tuple:
        """Send one read request and wait for its outcome under `budget`; kill the worker on any
        other ending (over budget, stop, reader closed) and raise."""
        started = time.monotonic()
        pages = total = 0
        try:
            try:
                self.conn.send(request)
            except OSError:
                raise _WorkerGone() from None
            while True:
                elapsed = time.monotonic() - started
                allowed = budget.seconds_allowed(pages)
                if elapsed >= allowed:
                    raise _OverBudget(_too_slow(allowed, pages, total, budget))
                if (stop is not None and stop.is_set()) or closed():
                    raise Stopped("reading stopped: the process is shutting down")
                try:
                    if not self.conn.poll(min(POLL_S, allowed - elapsed)):
                        continue
                    message = self.conn.recv()
                except (EOFError, OSError):  # it died, or close() killed it meanwhile
                    if closed():
                        raise Stopped("reading stopped: the document reader is closed") from None
                    return ("died", _death(self.process))
                if message[0] == "page":
                    pages, total = message[1], message[2]
                elif message[0] == "log":
                    _relog(*message[1:])
                else:
                    return message
        except _OverBudget as over:
            self.kill()
            logger.debug("%s: reader killed after %.1f s", name, time.monotonic() - started)
            raise DocumentError(name, str(over)) from None
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """End the worker now (SIGKILL: it may be deep in a parser) and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill is not ignored
            logger.warning("the document reader process %d did not exit after SIGKILL", self.process.pid)
        self.conn.close()


def _result(outcome: tuple, name: str) -> Document:
    kind = outcome[0]
    if kind == "done":
        return outcome[1]
    if kind == "skip":
        raise DocumentError(outcome[1], outcome[2])
    if kind == "missing":
        raise FileNotFoundError(outcome[1])
    if kind == "oserror":
        raise OSError(outcome[1])
    if kind == "died":
        raise DocumentError(name, f"could not be read: the reading process {outcome[1]}")
    raise DocumentError(name, f"could not be loaded ({outcome[1]})")


def _too_slow(allowed: float, pages: int, total: int, budget: ReadBudget) -> str:
    """The skip reason of a file killed at `allowed` seconds, `pages` of its `total` read (PDFs)."""
    if allowed >= budget.max_seconds:
        return f"took over {allowed:g} s to read (limit QA_PARSE_MAX_SECONDS={budget.max_seconds:g})"
    if total:
        of = f"{pages} of its {total} pages" if total > 1 else f"{pages} of its 1 page"
        return (f"took over {allowed:g} s to read {of} (limit {budget.seconds:g} s plus "
                f"{budget.page_seconds:g} s a page read: QA_PARSE_SECONDS, QA_PARSE_PAGE_SECONDS)")
    return f"took over {allowed:g} s to read (limit QA_PARSE_SECONDS={budget.seconds:g})"


def _death(process: subprocess.Popen) -> str:
    import signal

    try:
        status = process.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - it closed its pipe, so it is ending
        return "stopped answering"
    if status < 0:
        try:
            return f"was killed ({signal.Signals(-status).name})"
        except ValueError:
            return f"was killed (signal {-status})"
    return f"exited with status {status}"


def _relog(level: int, name: str, message: str) -> None:
    """A worker's log record, logged here as if it came from this process."""
    record = logging.LogRecord(name, level, "(document reader)", 0, message, None, None)
    logging.getLogger(name).handle(record)


# --------------------------------------------------------------------------- the worker's side


def serve_worker(fd: int, memory_mb: int, log_level: int, parent_pid: int) -> None:
    """A worker's life: read the files the parent asks for, one at a time, until it hangs up."""
    import signal

    from qa.documents import load_document  # noqa: F401 - the parsers, imported before "ready"

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to act on
    conn = Connection(fd)
    _limit_memory(memory_mb)
    _exit_with(parent_pid)
    forward = _ForwardLogs(conn)
    root = logging.getLogger()
    root.handlers[:] = [forward]
    root.setLevel(log_level)
    conn.send(("ready",))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        forward.sent = forward.dropped = 0
        outcome = _read_in_worker(conn, *request[1:])
        if forward.dropped:
            conn.send(("log", logging.INFO, __name__, f"{forward.dropped} more log lines from that file left out"))
        conn.send(outcome)


def _read_in_worker(conn: Connection, path: str, root: str, max_chars: int, confine: bool) -> tuple:
    """Read one file; every ending is a message for the parent (nothing is raised out of here)."""
    from qa.documents import load_document

    name = relative_document_path(Path(path), Path(root))

    def on_page(done: int, total: int, chars: int) -> None:
        conn.send(("page", done, total))
        if chars > max_chars:  # stop at once rather than read the remaining pages
            raise DocumentError(name, _too_much_text(max_chars, f" in its first {done} of {total} pages"))

    try:
        if confine:
            _check_inside(Path(path), Path(root), name)
        document = load_document(Path(path), Path(root), on_page=on_page, max_chars=max_chars)
        if len(document.text) > max_chars:
            raise DocumentError(name, _too_much_text(max_chars))
    except TooMuchTextError as exc:  # an office reader stopped as its text passed the budget
        return ("skip", exc.path, _too_much_text(max_chars))
    except DocumentError as exc:
        return ("skip", exc.path, exc.reason)
    except FileNotFoundError:
        return ("missing", path)
    except MemoryError:
        return ("skip", name, "needs more memory to read than QA_PARSE_MEMORY_MB allows")
    except OSError as exc:
        return ("oserror", exc.strerror or str(exc))
    except Exception as exc:  # noqa: BLE001 - a parser bug on one odd file: that file is skipped
        return ("failed", f"{type(exc).__name__}: {exc}")
    return ("done", document)


def _too_much_text(limit: int, where: str = "") -> str:
    return f"has over {limit:,} characters of text{where} (limit QA_MAX_DOCUMENT_CHARS={limit})"


def _check_inside(path: Path, root: Path, name: str) -> None:
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise DocumentError(name, outside_link_reason("file"))


def _limit_memory(memory_mb: int) -> None:
    """Cap the worker's address space, so a file that needs gigabytes fails with MemoryError."""
    if memory_mb <= 0:
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_mb * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _exit_with(parent_pid: int) -> None:
    """End this worker when its parent is gone, even in the middle of a file (a killed server
    must not leave a worker reading a hostile PDF for half an hour)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="qa-parent-watch", daemon=True).start()


class _ForwardLogs(logging.Handler):
    """Sends a worker's log records to the parent, at most MAX_LOG_RECORDS a file."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn
        self.sent = 0
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.sent >= MAX_LOG_RECORDS:
            self.dropped += 1
            return
        self.sent += 1
        try:
            self.conn.send(("log", record.levelno, record.name, record.getMessage()))
        except Exception:  # noqa: BLE001 - a log line must never end a read
            self.handleError(record)
