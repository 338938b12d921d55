"""The web chat's backend: one engine per process, indexed in the background so the page opens
at once, and the event handlers (questions, `/ask`, uploads) as plain functions of it, so they can
be exercised without a browser.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa import models  # noqa: F401 - sets the offline environment before gradio imports huggingface_hub
from qa.config import SHIPPED_READERS, Settings
from qa.types import Turn
from qa.web_render import api_payload, escape, render_error, render_reply

if TYPE_CHECKING:  # pragma: no cover
    from qa.pipeline import Engine

#: One logger for the whole chat: operators (and tests) read its lines as "qa.web: ...".
log = logging.getLogger("qa.web")

READER_CHOICES = tuple(SHIPPED_READERS)
#: Longest wait (seconds) for the first index build before a question gives up.
READY_TIMEOUT_S = 1800.0
#: Longest wait (seconds) at shutdown for indexing to give up and its thread to end.
STOP_TIMEOUT_S = 60.0


def report_summary(report: Any) -> str:
    """An index report as the sentence a person reads ("1 document, 4 passages (1 added) in 0.4 s")."""
    summary = getattr(report, "summary", None)
    return summary() if callable(summary) else str(report)


def _count(value: Any) -> int:
    """IndexReport fields may be counts or lists of paths; both read as a number."""
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return len(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class NotReady(RuntimeError):
    """The index is still being built, or its build failed; the message is for the user."""


class Backend:
    """Owns the engine and the first index build, and tells the page how far along it is."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.ready = threading.Event()
        self.error: str | None = None
        self.report: Any = None
        self._thread: threading.Thread | None = None

    def start_indexing(self) -> None:
        """Build/update the index in a thread; tqdm progress goes to the terminal."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._index, name="qa-index", daemon=True)
            self._thread.start()

    def _index(self) -> None:
        from qa.stopping import Stopped

        try:
            log.info("Loading models…")
            self.engine.load_models()
            log.info("Indexing %s (index in %s)…", self.settings.corpus_dir or "its documents folder",
                     self.settings.index_dir)
            self.report = self.engine.ensure_index()
            log.info("index ready: %s", report_summary(self.report))
        except Stopped:
            log.info("indexing stopped before it finished: the index is as last saved, the next start carries on")
            self.error = "the server is stopping"
        except Exception as exc:  # noqa: BLE001 - shown on the page, details in the log
            log.exception("Indexing failed")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Make indexing give up and wait for it (the first build and any upload being indexed):
        an interpreter that exits while a thread is inside torch or FAISS aborts. True once they
        have ended, False if one still runs after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        if not self.engine.stop(timeout):
            return False
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            return not self._thread.is_alive()
        return True

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until the first index build ends; raise a user-facing error if it failed."""
        if not self.ready.wait(timeout):
            raise NotReady("The documents are still being indexed; please try again shortly.")
        if self.error:
            raise NotReady(f"Indexing failed ({self.error}); see the server log.")

    def documents(self) -> list[Any]:
        """The indexed documents and the files left out (each with its reason), by path."""
        if not self.ready.is_set() or self.error:
            return []
        skipped = getattr(self.engine, "skipped_documents", list)()
        return sorted([*self.engine.documents(), *skipped], key=lambda d: d.path)

    def status(self) -> str:
        """The one-line status shown under the title."""
        if not self.ready.is_set():
            return (
                "**Indexing the documents…** The first start reads and embeds every file "
                "(progress in the terminal). Questions asked now are answered when it finishes."
            )
        if self.error:
            return f"**Indexing failed:** {escape(self.error)}. See the server log."
        return f"**Ready.** Searching {escape(self.engine.status().line())}."

    def default_threshold(self) -> float:
        value = getattr(self.engine, "default_threshold", None)
        if value is None:
            value = self.settings.threshold if self.settings.threshold >= 0 else 0.5
        return float(value)


# -- event handlers: questions, the /ask endpoint, uploads -----------------------------------

Messages = list[dict[str, Any]]


def _user_message(question: str) -> dict[str, Any]:
    return {"role": "user", "content": escape(question)}


def _bot_message(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def reply(
    backend: Backend,
    question: str,
    messages: Messages,
    turns: list[list[str]],
    top_k: float,
    threshold: float,
    reader: str | None = None,
) -> tuple[Messages, list[list[str]]]:
    """Answer `question` (already shown as the user's message) and append the reply.

    The session's earlier turns ([question, answer] pairs) go to the engine as `history`, which
    is what lets "Which channel does he work for?" find and read about Stuart Ramsay. `reader`
    is the shipped reader chosen in the page's settings (None: the configured one).
    """
    messages = list(messages or [])
    turns = [list(t) if isinstance(t, (list, tuple)) else [str(t), ""] for t in (turns or [])]
    try:
        backend.wait_ready()
        answer = backend.engine.answer(
            question, top_k=int(top_k), threshold=float(threshold),
            history=[Turn(q, a) for q, a in turns] or None, reader=reader,
        )
    except (ValueError, NotReady) as exc:
        log.info("Question %r refused: %s", question, exc)
        messages.append(_bot_message(render_error(str(exc))))
        return messages, turns
    except Exception:  # noqa: BLE001 - never break the session over one question
        log.exception("Answering %r failed", question)
        messages.append(_bot_message(render_error("Something went wrong answering that; details are in the server log.")))
        return messages, turns
    log.info("Q %r -> %r (%.2f, %s)", question, answer.text, answer.score, answer.source)
    messages.append(_bot_message(render_reply(answer)))
    return messages, [*turns, [question, answer.text]]


#: The `/ask` endpoint's inputs, in order.
ASK_FIELDS = ("question", "top_k", "threshold", "reader")
#: The most passages `/ask` searches (a larger top_k is read as this).
MAX_TOP_K = 50


def ask_api(backend: Backend, question: str, top_k: int, threshold: float, reader: str = "") -> dict[str, Any]:
    """The `/ask` endpoint's body: one question, no history, JSON answer; `reader` "" is the configured one.

    Every input comes from a client that may send anything: a threshold that is not a finite
    number (JSON's NaN, the string "Infinity") would silently abstain on every question, so each
    field is checked and a bad one refused with one line naming it.
    """
    import gradio as gr

    try:
        top_k, threshold, reader = _api_top_k(top_k), _api_threshold(threshold), _api_reader(reader)
        backend.wait_ready()
        answer = backend.engine.answer(question, top_k=top_k, threshold=threshold, reader=reader)
    except (ValueError, NotReady) as exc:
        # The user's mistake (or a wait), not the server's: a message for them, one log line.
        log.info("/ask refused %r: %s", question, exc)
        raise gr.Error(str(exc), print_exception=False) from None
    return api_payload(answer)


def _api_top_k(value: Any) -> int:
    """top_k as a whole number of passages, 1 to MAX_TOP_K (larger is read as MAX_TOP_K)."""
    number = _api_number(value)
    if number is None or number != int(number) or number < 1:
        raise ValueError(f"top_k must be a whole number of passages from 1 to {MAX_TOP_K}, not {value!r}")
    return min(MAX_TOP_K, int(number))


def _api_threshold(value: Any) -> float | None:
    """threshold as a confidence from 0 to 1; a negative number means the reader's own (None)."""
    number = _api_number(value)
    if number is None or number > 1:
        raise ValueError(f"threshold must be a number from 0 to 1 (or -1 for the reader's own), not {value!r}")
    return None if number < 0 else number


def _api_reader(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"reader must be {' or '.join(map(repr, READER_CHOICES))} (or \"\" for the configured one), "
                         f"not {value!r}")
    return value


def _api_number(value: Any) -> float | None:
    """A finite number from JSON (a number or a numeric string), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def document_rows(docs: Sequence[Any]) -> list[list[Any]]:
    """One row per document: path, passages, where it came from, and whether it is indexed or
    was skipped (with the reason)."""
    return [[d.path, _count(d.passages), "uploaded" if d.uploaded else "corpus",
             f"skipped: {d.skipped}" if getattr(d, "skipped", "") else "indexed"] for d in docs]


def uploaded_paths(docs: Sequence[Any]) -> list[str]:
    return [d.path for d in docs if d.uploaded]


def add_uploads(backend: Backend, files: Sequence[str] | str | None) -> list[str]:
    """Save each uploaded file into the upload folder and index it; one message per file."""
    return list(iter_uploads(backend, files))


def iter_uploads(backend: Backend, files: Sequence[str] | str | None) -> Iterator[str]:
    """`add_uploads` one file at a time: each file's message as soon as it is indexed (or
    refused), so a large upload does not hold back the others' messages.

    A file the index skips (over the reading budget, no text layer...) is said to be not added,
    with the reason; it stays listed as skipped, where it can be removed. Gradio's own copy of
    each upload (in its temp folder) is deleted once read, whatever became of the upload.
    """
    from qa.uploads import UploadError, save_upload

    if not files:
        return
    if isinstance(files, str):
        files = [files]
    try:
        backend.wait_ready()
    except NotReady:
        for file in files:
            discard_upload_copy(file)
        raise
    max_bytes = backend.settings.max_upload_mb * 1024 * 1024
    for file in files:
        name = Path(file).name
        try:
            try:
                data = Path(file).read_bytes()
            finally:
                discard_upload_copy(file)
            saved = save_upload(data, name, backend.engine.upload_folder(), max_bytes)
            report = backend.engine.add_file(saved)
        except UploadError as exc:
            log.info("Upload %s refused: %s", name, exc)
            yield f"Not added: {name}: {exc}"
            continue
        except Exception as exc:  # noqa: BLE001 - unreadable PDFs etc. must not break the page
            log.exception("Adding %s failed", name)
            yield f"Not added: {name} could not be indexed ({type(exc).__name__}: {exc})."
            continue
        log.info("Uploaded %s -> %s: index %s", name, saved, report_summary(report))
        reason = _skip_reason(backend.engine, report, saved)
        if reason:
            yield f"Not added: {saved.name} {reason}. It is listed under Documents as skipped; remove it there."
        else:
            yield f"Added {saved.name}: you can ask about it now."


def _skip_reason(engine: Any, report: Any, saved: Path) -> str:
    """Why the sync after an upload left the uploaded file out, or "" when it is indexed."""
    from qa.documents import relative_document_path

    skipped = dict(getattr(report, "skipped", None) or [])
    folder = getattr(engine, "corpus_folder", None)
    if not skipped or folder is None:
        return ""
    return skipped.get(relative_document_path(saved, folder), "")


def discard_upload_copy(file: str | Path) -> None:
    """Delete the copy of an upload that Gradio keeps in its temp folder (one per upload, refused
    ones included), and its folder when empty; files anywhere else are left alone."""
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()).resolve()
    path = Path(file).resolve()
    if folder not in path.parents:
        return
    try:
        path.unlink(missing_ok=True)
        if path.parent != folder:
            path.parent.rmdir()
    except OSError as exc:  # a folder Gradio still uses for another file of the same upload
        log.debug("kept %s: %s", path.parent, exc)

