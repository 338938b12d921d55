"""Stopping a long-running process cleanly: SIGTERM and SIGINT become a request that the main
thread acts on, and work that must not be cut off mid-way checks for it at safe points.

A signal's default action (or Python's KeyboardInterrupt) ends the process wherever it is, and an
interpreter that exits while another thread is inside torch or FAISS can abort ("terminate
called without an active exception"). So the handlers only record the request; the main thread
then closes the server and waits for the indexing thread before it exits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType, TracebackType

#: Exit status after a clean stop: 0 for SIGTERM (a service manager's stop), 130 for Ctrl-C,
#: as shells report an interrupted command.
EXIT_STATUS = {signal.SIGTERM: 0, signal.SIGINT: 130}


class Stopped(Exception):
    """Work given up because the process is stopping; nothing half-done was saved."""


def raise_if_stopped(stop: threading.Event | None, what: str) -> None:
    """A safe point: raise Stopped when `stop` is set, so `what` is abandoned before it commits."""
    if stop is not None and stop.is_set():
        raise Stopped(f"{what} stopped: the process is shutting down")


class StopSignals:
    """While entered, SIGTERM and SIGINT are recorded in `received` instead of ending the process.

    A second signal means the person will not wait: the process exits at once with os._exit,
    which, unlike a normal exit, cannot abort on threads still in native code; an index save
    cut short that way is safe (the crash-safety guarantees cover a kill at any point).
    """

    #: How often wait() looks at `received` (seconds).
    POLL_S = 0.1

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> StopSignals:
        for signum in EXIT_STATUS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """Record the first signal, and nothing more: the handler runs in the main thread between
        two of its bytecodes, possibly inside a lock it holds (a log call, an Event's wait)."""
        if self.received is not None:
            os._exit(self.status)
        self.received = signal.Signals(signum)

    def wait(self) -> None:
        """Block until a signal has been received."""
        while self.received is None:
            time.sleep(self.POLL_S)

    @property
    def name(self) -> str:
        return self.received.name if self.received is not None else "request"

    @property
    def status(self) -> int:
        """The exit status for the signal received (0 when none)."""
        return EXIT_STATUS.get(self.received, 0) if self.received is not None else 0
