"""Keep an index in step with a corpus folder: embed only added or changed files, drop removed ones.

A sync lists the folder and hashes every file, then reads and splits the added and changed
ones, embeds all their passages in one batched pass, and hands them to the configured vector
store, which persists them with one `save()`. The caller may hand over another way to prepare
documents (the pipeline passes the Ray one for `indexer="ray"`), so this module depends on
neither the pipeline nor Ray.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qa.config import Settings
from qa.documents import (
    SUPPORTED_SUFFIXES,
    DocumentError,
    is_outside_link,
    list_corpus_files,
    relative_document_path,
)
from qa.embedding import Embedder
from qa.folders import absolute, document_prefix, folder_problem
from qa.parsing import DocumentReader, ReadBudget, read_document
from qa.passages import split_passages
from qa.skipped import SkipRecord, load_skips, save_skips
from qa.stopping import Stopped, raise_if_stopped
from qa.store import DocumentRecord, IndexProfile
from qa.types import Passage
from qa.vector_store import VectorStore, check_settings

logger = logging.getLogger(__name__)


class EmptyCorpusError(ValueError):
    """The corpus folder holds no document that could be indexed."""


@dataclass
class IndexReport:
    """What one synchronisation did; `skipped` pairs a file with the reason it was left out."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    passages: int = 0
    documents: int = 0
    seconds: float = 0.0
    rebuilt_reason: str = ""
    #: The documents folder the index follows (absolute; "" when it follows none).
    folder: str = ""
    #: Why the index was answered from as it is instead of synced ("" when it was synced).
    kept_as_is: str = ""

    @property
    def modified(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.rebuilt_reason)

    @property
    def counts(self) -> str:
        """What the index holds: "1 document, 4 passages"."""
        return f"{_plural(self.documents, 'document')}, {_plural(self.passages, 'passage')}"

    def summary(self) -> str:
        """The report as a person reads it: "1 document, 4 passages (1 added) in 0.4 s"."""
        counts = self.counts
        if self.kept_as_is:
            return f"{counts}, kept as it is: {self.kept_as_is}"
        changes = [f"{len(paths)} {what}" for what, paths in (
            ("added", self.added), ("changed", self.changed), ("removed", self.removed), ("skipped", self.skipped),
        ) if paths]
        return f"{counts} ({', '.join(changes) or 'no changes'}) in {self.seconds:.1f} s"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@dataclass(frozen=True)
class PendingFile:
    """A file that is new or changed since the index last saw it."""

    doc_path: str
    path: Path
    digest: str


@dataclass
class SplitDocument:
    """A pending file read and split into passages, or the reason it cannot be indexed."""

    doc_path: str
    digest: str
    passages: list[Passage] = field(default_factory=list)
    chars: int = 0
    skip_reason: str = ""

    @property
    def record(self) -> DocumentRecord:
        return DocumentRecord(self.digest, len(self.passages), self.chars)


@dataclass
class PreparedDocument:
    """A split document with one vector per passage, ready for the store."""

    record: DocumentRecord
    passages: list[Passage]
    vectors: np.ndarray


#: Reads, splits and embeds the pending files of a corpus folder: each file's prepared document,
#: or the reason it is skipped. `prepare_locally` by default; the pipeline passes the Ray one.
Prepare = Callable[[list[PendingFile], Path], dict[str, PreparedDocument | str]]


def profile_for(settings: Settings, embedder: Embedder) -> IndexProfile:
    return IndexProfile(
        embedding_model=embedder.name,
        dimension=embedder.dimension,
        passage_words=settings.passage_words,
        passage_overlap_words=settings.passage_overlap_words,
        index_type=settings.index_type,
    )


def file_hash(path: Path) -> str:
    """SHA-256 of a regular file's bytes; DocumentError for a FIFO, device or folder.

    Opened non-blocking and checked before reading: a FIFO named `notes.txt` would otherwise
    block the whole build forever.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DocumentError(str(path), "is not a regular file")
        digest = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _missing_reason(path: Path) -> str:
    return "is a broken symbolic link" if os.path.islink(path) else "disappeared while indexing"


def sync_corpus(
    store: VectorStore,
    corpus_dir: Path,
    embedder: Embedder,
    settings: Settings,
    progress: bool = True,
    rebuilt_reason: str = "",
    *,
    prepare: Prepare | None = None,
    stop: threading.Event | None = None,
    previous_dir: Path | None = None,
    own_folder: bool = False,
    reader: DocumentReader | None = None,
) -> IndexReport:
    """Bring `store` in line with every supported file under `corpus_dir`, record that folder
    with it, and save it once.

    `previous_dir` is the folder the index followed until now, when that is another one: its
    documents leave the index (in a shared store too), with a warning saying how many. With
    `own_folder` (the index's own folder), a folder that is missing, unreadable or holds no
    documents any more (a moved project, a disk not mounted) leaves the index as it is, with one
    warning, instead of an error or an emptied index; a shared store (Milvus) with no corpus
    folder here is served as it is too: app servers behind a load balancer read the index that
    one `qa index` keeps up to date. `prepare` reads, splits and embeds the pending files
    (default: here, with `embedder`). Once `stop` is set, a sync still reading or embedding
    raises Stopped at its next safe point (between files and batches here, before and after a
    Ray run) and writes nothing, so the index stays as last saved; one already writing its
    prepared documents finishes, which takes moments.

    Files are read under the budget `settings` sets, by `reader` (default: one for this sync);
    a file skipped for its content is remembered beside the index (`qa.skipped`) and not read
    again while it and the budget stay the same: it is reported as skipped again, without a read.
    """
    started = time.perf_counter()
    check_settings(settings)
    corpus_dir = absolute(corpus_dir)
    report = IndexReport(rebuilt_reason=rebuilt_reason, folder=str(corpus_dir))
    problem = folder_problem(corpus_dir)
    if problem:
        if len(store) and (own_folder or store.shared):
            return serve_as_is(store, report, f"the documents folder {corpus_dir} {problem}", warn=own_folder)
        fix = "; create it and add documents" if problem == "does not exist" else ""
        raise EmptyCorpusError(f"the corpus folder {corpus_dir} {problem}{fix}")
    if prepare is None:
        prepare = functools.partial(prepare_locally, embedder=embedder, settings=settings, progress=progress,
                                    stop=stop, reader=reader)
    with store.write_lock():
        listing_skips: list = []
        files = list_corpus_files(corpus_dir, listing_skips, settings.follow_links)
        if not files and not listing_skips and own_folder and len(store):
            return serve_as_is(store, report, f"the documents folder {corpus_dir} holds no documents now "
                                              "(a disk not mounted?)")
        report.skipped.extend((item.path, item.reason) for item in listing_skips)
        pending = _pending_files(store, corpus_dir, files, listing_skips, report, previous_dir)
        remembered, budget = load_skips(settings.index_dir), ReadBudget.from_settings(settings).key
        pending, still_skipped = _recall_skips(pending, remembered, budget, report)
        gone = list(report.removed)
        raise_if_stopped(stop, "indexing")
        prepared = prepare(pending, corpus_dir) if pending else {}
        raise_if_stopped(stop, "indexing")  # the last point at which nothing has been written
        store.remove_documents(set(report.removed))
        for item in pending:
            known = item.doc_path in store.documents
            result = prepared[item.doc_path]
            if isinstance(result, PreparedDocument):
                store.add_document(item.doc_path, result.record, result.passages, result.vectors)
                (report.changed if known else report.added).append(item.doc_path)
                continue
            _skip(report, item.doc_path, result)
            still_skipped[item.doc_path] = SkipRecord(item.digest, result, budget)
            if known:
                store.remove_documents({item.doc_path})
                report.removed.append(item.doc_path)
        if still_skipped != remembered:
            save_skips(settings.index_dir, still_skipped)
        if not len(store):
            reasons = "; ".join(f"{p}: {r}" for p, r in report.skipped[:5])
            raise EmptyCorpusError(
                f"no readable documents in {corpus_dir} (supported: {' '.join(sorted(SUPPORTED_SUFFIXES))})"
                + (f"; skipped {reasons}" if reasons else "")
            )
        recorded = store.corpus_dir == str(corpus_dir)
        store.corpus_dir = str(corpus_dir)
        if report.modified or not store.persisted or not recorded:
            store.save()
        else:  # a writer killed after committing leaves its leftovers behind
            store.tidy()
    _say_what_left(store, corpus_dir, previous_dir, gone)
    report.passages, report.documents = len(store), len(store.documents)
    report.seconds = time.perf_counter() - started
    logger.info("index %s: %s", store.location, report.summary())
    return report


def serve_as_is(store: VectorStore, report: IndexReport, why: str, warn: bool = True) -> IndexReport:
    """Leave the index as it is (nothing read, nothing written) and say so in one log line."""
    report.kept_as_is = why
    report.passages, report.documents = len(store), len(store.documents)
    report.unchanged = sorted(store.documents)
    (logger.warning if warn else logger.info)(
        "%s: answering from %s as it is (%s, %s)", why, store.location,
        _plural(report.documents, "document"), _plural(report.passages, "passage"))
    return report


def _say_what_left(store: VectorStore, corpus_dir: Path, previous_dir: Path | None, gone: list[str]) -> None:
    """One line for the documents a sync took out of the index because their files are not in
    its folder: how many, and why (a warning when they belong to a folder it no longer follows)."""
    if not gone:
        return
    own = document_prefix(corpus_dir)
    foreign = gone if previous_dir is not None else [p for p in gone if not p.startswith(own)]
    deleted = [p for p in gone if p not in set(foreign)]
    if foreign:
        before = f" instead of {previous_dir}" if previous_dir is not None else ""
        logger.warning("%s left %s, which follows %s now%s: they are not in that folder (%s)",
                       _plural(len(foreign), "document"), store.location, corpus_dir, before, _examples(foreign))
    if deleted:
        logger.info("%s left %s: their files are gone from %s (%s)", _plural(len(deleted), "document"),
                    store.location, corpus_dir, _examples(deleted))


def _examples(paths: list[str], shown: int = 3) -> str:
    more = f", and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


def _pending_files(store: VectorStore, corpus_dir: Path, files: list[Path], listing_skips: list,
                   report: IndexReport, previous_dir: Path | None) -> list[PendingFile]:
    """Hash every listed file: unchanged ones go to the report, the rest are returned;
    `report.removed` gets the indexed documents whose files are gone.

    Documents under a subfolder that could not be listed stay as they are (unreadable is not
    deleted). A shared store may be fed from several folders (machines, sources): a sync only
    removes the documents of its own folder ("seeds/..." for a folder named seeds) and of the one
    it followed before, so an app server that indexes an upload in its own folder never drops
    what another indexer added.
    """
    seen: set[str] = set()
    pending: list[PendingFile] = []
    for path in files:
        doc_path = relative_document_path(path, corpus_dir)
        try:
            digest = file_hash(path)
        except FileNotFoundError:
            _skip(report, doc_path, _missing_reason(path))
            continue
        except DocumentError as exc:
            _skip(report, doc_path, exc.reason)
            continue
        except OSError as exc:
            _skip(report, doc_path, f"could not be read ({exc.strerror or exc})")
            continue
        seen.add(doc_path)
        known = store.documents.get(doc_path)
        if known is not None and known.content_hash == digest:
            report.unchanged.append(doc_path)
        else:
            pending.append(PendingFile(doc_path, path, digest))
    gone = set(store.documents) - seen
    unlisted = tuple(item.path.rstrip("/") + "/" for item in listing_skips if not is_outside_link(item.reason))
    kept = {path for path in gone if path.startswith(unlisted)} if unlisted else set()
    report.unchanged.extend(sorted(kept))
    gone -= kept
    if store.shared:
        owned = tuple(document_prefix(folder) for folder in (corpus_dir, previous_dir) if folder is not None)
        gone = {path for path in gone if path.startswith(owned)}
    report.removed = sorted(gone)
    return pending


def _recall_skips(pending: list[PendingFile], remembered: dict[str, SkipRecord], budget: str,
                  report: IndexReport) -> tuple[list[PendingFile], dict[str, SkipRecord]]:
    """Take out of `pending` the files skipped before with the same bytes and reading budget:
    they are reported as skipped again without being read. Returns the files still to read, and
    the skip records that still hold."""
    still: dict[str, SkipRecord] = {}
    to_read = []
    for item in pending:
        record = remembered.get(item.doc_path)
        if record is not None and record.content_hash == item.digest and record.budget == budget:
            still[item.doc_path] = record
            report.skipped.append((item.doc_path, record.reason))
            logger.debug("still skipped %s (unchanged): %s", item.doc_path, record.reason)
        else:
            to_read.append(item)
    return to_read, still


def split_file(item: PendingFile, corpus_dir: Path, settings: Settings, reader: DocumentReader | None = None,
               stop: threading.Event | None = None) -> SplitDocument:
    """Read (under the budget, in a worker process) and split one pending file; a file that
    cannot be used gets a skip reason instead (a parser bug on one odd file must not stop the
    whole build). Raises Stopped once `stop` is set. Without `reader`, one is started for this file."""
    out = SplitDocument(item.doc_path, item.digest)
    try:
        if reader is None:
            document = read_document(item.path, corpus_dir, settings, stop)
        else:
            document = reader.read(item.path, corpus_dir, stop)
    except Stopped:
        raise
    except DocumentError as exc:
        out.skip_reason = exc.reason
    except FileNotFoundError:
        out.skip_reason = _missing_reason(item.path)
    except OSError as exc:
        out.skip_reason = f"could not be read ({exc.strerror or exc})"
    except Exception as exc:
        logger.debug("failed to load %s", item.path, exc_info=True)
        out.skip_reason = f"could not be loaded ({type(exc).__name__}: {exc})"
    else:
        out.passages = split_passages(document, settings.passage_words, settings.passage_overlap_words)
        out.chars = len(document.text)
        if not out.passages:
            out.skip_reason = "has no text to index"
    return out


def prepare_locally(
    pending: list[PendingFile], corpus_dir: Path, embedder: Embedder, settings: Settings, progress: bool,
    stop: threading.Event | None = None, reader: DocumentReader | None = None,
) -> dict[str, PreparedDocument | str]:
    """Read and split every pending file, then embed all their passages in one call (the
    embedder batches them by length), so many small files cost no more than one large one.
    Returns each file's prepared document, or the reason it was skipped; raises Stopped once
    `stop` is set (a file being read is given up at once, embedding between batches). Files are
    read by `reader` (default: one started for these files and closed after)."""
    if reader is None:
        with DocumentReader.from_settings(settings) as own:
            return prepare_locally(pending, corpus_dir, embedder, settings, progress, stop, own)
    splits = []
    for item in tqdm(pending, desc="indexing", unit="file", disable=not progress or len(pending) < 2):
        raise_if_stopped(stop, "indexing")
        splits.append(split_file(item, corpus_dir, settings, reader, stop))
    usable = [s for s in splits if not s.skip_reason]
    vectors = embedder.encode([p.text for s in usable for p in s.passages], progress=progress, stop=stop)
    out: dict[str, PreparedDocument | str] = {s.doc_path: s.skip_reason for s in splits if s.skip_reason}
    row = 0
    for s in usable:
        out[s.doc_path] = PreparedDocument(s.record, s.passages, vectors[row : row + len(s.passages)])
        row += len(s.passages)
    return out


def _skip(report: IndexReport, doc_path: str, reason: str) -> None:
    report.skipped.append((doc_path, reason))
    logger.warning("skipped %s: %s", doc_path, reason)
