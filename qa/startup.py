"""Checks a person can fix, run before the web chat loads any model or indexes anything.

A busy port, a corpus folder that cannot be read or an index folder that cannot be written would
otherwise surface minutes later as a traceback from Gradio or from the indexing thread. Each check
raises StartupError with one sentence naming the setting to change; `report()` prints it as the
one line a person sees, and the process exits with status 2 (as the `qa` commands do).
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

from qa.config import Settings

#: Exit status for a start-up error the user can fix (the CLI's status for bad usage).
EXIT_USAGE = 2


class StartupError(ValueError):
    """The process cannot start as configured; the message says what to change."""


def report(error: Exception) -> int:
    """Print `error` as one line on stderr and return the exit status for it."""
    print(f"error: {error}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def check_startup(settings: Settings) -> None:
    """Every check, cheapest first: the address, the folders, the model settings."""
    check_address(settings.host, settings.port)
    check_corpus_folder(settings)
    check_index_folder(settings)
    check_models(settings)


def check_address(host: str, port: int) -> None:
    """StartupError unless this process could listen on host:port now, as the server will.

    SO_REUSEADDR, as the server sets it: a port left in TIME_WAIT by a server that just stopped is
    free, one another process listens on is not.
    """
    if not 0 < port < 65536:
        raise StartupError(f"QA_PORT={port} is not a port: choose one from 1 to 65535 with QA_PORT or --port")
    for family, address in _listen_addresses(host, port):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise StartupError(bind_error_message(host, port, exc)) from None


def _listen_addresses(host: str, port: int) -> list[tuple[int, tuple]]:
    """The (family, socket address) pairs a server asked to listen on host:port binds."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {host!r} is not an address of this machine "
                           f"({exc.strerror}); set QA_HOST or --host (127.0.0.1 for this machine only, "
                           "0.0.0.0 for every interface)") from None
    return list(dict.fromkeys((family, address) for family, _, _, _, address in infos))


def bind_error_message(host: str, port: int, exc: OSError) -> str:
    """One sentence for a failed bind that names the address and how to choose another."""
    if exc.errno == errno.EADDRINUSE:
        return (f"{host}:{port} is already in use (is the chat already running?): stop that server, "
                f"or choose another port with QA_PORT or --port (e.g. --port {port + 1 if port < 65535 else 7860})")
    if exc.errno == errno.EACCES:
        return (f"not allowed to listen on {host}:{port} (ports below 1024 need privileges): "
                "choose another port with QA_PORT or --port")
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {host}:{port}: {host} is not an address of this machine; set QA_HOST or "
                "--host (127.0.0.1 for this machine only, 0.0.0.0 for every interface)")
    return f"cannot listen on {host}:{port} ({exc.strerror or exc}): set QA_HOST / --host or QA_PORT / --port"


def check_corpus_folder(settings: Settings) -> None:
    """The corpus folder is a readable folder; a missing one only serves a shared (Milvus) index.

    Without a folder given, an index that exists follows the folder it records (or is answered
    from as it is while that folder is gone, with a warning): only a new index needs seeds/."""
    from qa.config import DEFAULT_CORPUS_DIR
    from qa.store import MANIFEST, STORE_FILE
    from qa.vector_store import resolve_store

    if not settings.corpus_dir and any((Path(settings.index_dir) / name).exists() for name in (MANIFEST, STORE_FILE)):
        return
    path = Path(settings.corpus_dir or DEFAULT_CORPUS_DIR)
    fix = "point QA_CORPUS_DIR or --corpus-dir at a folder of documents"
    if path.exists():
        if not path.is_dir():
            raise StartupError(f"the corpus folder {path} is not a folder: {fix}")
        if not os.access(path, os.R_OK | os.X_OK):
            raise StartupError(f"the corpus folder {path} cannot be read (permission denied): "
                               f"give this user read access, or {fix}")
        return
    if resolve_store(settings).vector_store != "milvus":
        raise StartupError(f"the corpus folder {path} does not exist: create it and add documents, or {fix}")


def check_index_folder(settings: Settings) -> None:
    """The index folder is, or can be created as, a folder this user can write to."""
    path = Path(settings.index_dir)
    fix = "choose another with QA_INDEX_DIR or --index-dir"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is not a folder" if existing == path else f"cannot be created: {existing} is a file"
        raise StartupError(f"the index folder {path} {where}: {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created ({existing} is not writable)"
        raise StartupError(f"the index folder {path} {what}: give this user write access, or {fix}")


def check_models(settings: Settings) -> None:
    """The vector-store and model settings name things that exist here (nothing is loaded)."""
    from qa import accel, models
    from qa.vector_store import check_settings

    check_settings(settings)
    accel.check(settings.backend, settings.quantize, settings.precision)
    for name, what, variable in ((settings.embedding_model, "embedding model", "QA_EMBEDDING_MODEL"),
                                 (settings.reader_model, "reader model", "QA_READER_MODEL")):
        if name:
            try:
                models.resolve_local_model(name, what, variable)
            except models.ModelNotAvailableError as exc:
                raise StartupError(str(exc)) from None
