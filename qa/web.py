"""The web chat: a Gradio app that answers questions and shows the evidence behind every answer.

Split by job: `qa.web_render` turns answers into HTML (pure functions), `qa.web_backend` owns the
engine and the handlers, `qa.web_page` lays out the page and wires it; this module serves it and
is its command line (app.py). The names others import from `qa.web` are re-exported here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from qa import models  # noqa: F401 - sets the offline environment before gradio imports huggingface_hub
from qa.config import DEFAULT_READER, Settings
from qa.web_backend import (  # noqa: F401 - re-exported
    ASK_FIELDS,
    MAX_TOP_K,
    READER_CHOICES,
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Backend,
    Messages,
    NotReady,
    _user_message,
    add_uploads,
    ask_api,
    discard_upload_copy,
    document_rows,
    iter_uploads,
    reply,
    report_summary,
    uploaded_paths,
)
from qa.web_page import (  # noqa: F401 - re-exported
    CSS,
    EXAMPLES,
    PLACEHOLDER,
    TAGLINE,
    TITLE,
    UPLOAD_COPY_MAX_AGE_S,
    UPLOAD_TYPES,
    build_app,
    hand_over_uploads_as_they_are,
    name_missing_inputs,
)
from qa.web_render import (  # noqa: F401 - re-exported
    ABSTAIN_TEXT,
    CLOSEST_SHOWN,
    SNIPPET_CHARS,
    api_payload,
    confidence_words,
    escape,
    highlight,
    render_abstention,
    render_answer,
    render_error,
    render_evidence,
    render_guess,
    render_hit,
    render_reply,
    snippet,
    source_label,
)

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from qa.pipeline import Engine

log = logging.getLogger(__name__)

#: Questions answered at the same time; the engine is shared, so more would only queue in torch.
CONCURRENCY = 2
#: Waiting requests beyond this are turned away with "queue full" instead of piling up.
QUEUE_SIZE = 64


def _auth(settings: Settings) -> tuple[str, str] | None:
    """settings.auth "user:password" -> launch()'s auth pair; empty means no login."""
    if not settings.auth:
        return None
    user, sep, password = settings.auth.partition(":")
    if not sep or not user or not password:
        raise ValueError('QA_AUTH must look like "user:password"')
    return user, password


def serve(settings: Settings, engine: Engine | None = None) -> gr.Blocks:
    """Start the chat on settings.host:port and return it once it accepts connections.

    The server runs in its own thread; `run()` keeps the process up until it is told to stop.
    Raises StartupError (after stopping the indexing it started) when the address cannot be used.
    """
    demo = build_app(settings, engine)
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    try:
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            auth=_auth(settings),
            auth_message="Sign in to ask questions about the documents." if settings.auth else None,
            show_error=True,
            max_file_size=f"{settings.max_upload_mb}mb",
            ssr_mode=False,
            css=CSS,
            footer_links=["api", "settings"],
            prevent_thread_lock=True,
            quiet=True,
        )
    except OSError as exc:  # the port was taken since run() checked it, or cannot be bound at all
        error = _launch_error(settings, exc)
        if not demo.backend.stop():
            _exit_now(_report(error))
        raise error from None
    except BaseException:  # indexing has started: stop it before the error ends the process
        if not demo.backend.stop():
            _exit_now(1)
        raise
    log.info("Serving on http://%s:%s", settings.host, settings.port)
    return demo


def _launch_error(settings: Settings, exc: OSError) -> Exception:
    """A StartupError naming the address for Gradio's failed launch (its own message names a
    GRADIO_ variable this app does not use)."""
    from qa.startup import StartupError, check_address

    try:
        check_address(settings.host, settings.port)
    except StartupError as error:
        return error
    log.debug("launch failed: %s", exc)
    return StartupError(f"cannot listen on {settings.host}:{settings.port}: the port is in use on this machine; "
                        "stop what uses it, or choose another port with QA_PORT or --port")


def _report(error: Exception) -> int:
    from qa.startup import report

    return report(error)


def _exit_now(status: int) -> NoReturn:
    """Exit without the interpreter's teardown, which aborts under a thread still in native code;
    only when indexing did not stop in time (an unfinished save is safe: see Index safety)."""
    log.warning("indexing did not stop within %.0f s; exiting without it (the index is as last saved)",
                STOP_TIMEOUT_S)
    logging.shutdown()
    os._exit(status)


def run(settings: Settings, engine: Engine | None = None) -> int:
    """The web chat's whole life: check what a person can fix before loading anything, serve
    until SIGTERM or SIGINT, then close the server and stop indexing before exiting.

    Returns the exit status: 0 after SIGTERM, 130 after Ctrl-C, 2 when it could not start (one
    line on stderr says why: a busy port, an unusable folder, a bad setting).
    """
    from qa.models import ModelNotAvailableError
    from qa.startup import StartupError, check_startup
    from qa.stopping import StopSignals

    with StopSignals() as stop:
        try:
            check_startup(settings)
            _auth(settings)
        except ValueError as exc:  # StartupError, or a setting's own check
            return _report(exc)
        if stop.received is not None:  # stopped during the checks: nothing was started
            return stop.status
        try:
            demo = serve(settings, engine)
        except (StartupError, ModelNotAvailableError) as exc:
            return _report(exc)
        stop.wait()
        demo.close(verbose=False)
        if not demo.backend.stop():
            _exit_now(stop.status)
        log.info("stopped on %s", stop.name)
        return stop.status


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"{TITLE}: {TAGLINE}")
    parser.add_argument("--host", help="interface to listen on (QA_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (QA_PORT; default 7860)")
    parser.add_argument("--corpus-dir", help="folder of documents (QA_CORPUS_DIR; default: the folder the index "
                                             "records, else seeds)")
    parser.add_argument("--index-dir", help="where the index is kept (QA_INDEX_DIR; default index)")
    parser.add_argument("--reader", choices=READER_CHOICES,
                        help=f"shipped reader: accurate (MPNet) or fast (MiniLM) (QA_READER; default {DEFAULT_READER})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of app.py: settings from QA_* env vars and flags, then run until stopped."""
    from qa.logs import configure_logging

    args = parse_args(argv)
    try:
        settings = Settings.load(
            host=args.host, port=args.port, corpus_dir=args.corpus_dir, index_dir=args.index_dir, reader=args.reader
        )
        configure_logging(settings.log_level, timestamps=True)
    except ValueError as exc:  # a bad QA_* value: one line saying which, not a traceback
        sys.exit(_report(exc))
    sys.exit(run(settings))
