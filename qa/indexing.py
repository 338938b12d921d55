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
from qa.documents import DocumentError, list_corpus_files, load_document, relative_document_path
from qa.embedding import Embedder
from qa.passages import split_passages
from qa.stopping import raise_if_stopped
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

    @property
    def modified(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.rebuilt_reason)

    def summary(self) -> str:
        """The report as a person reads it: "1 document, 4 passages (1 added) in 0.4 s"."""
        changes = [f"{len(paths)} {what}" for what, paths in (
            ("added", self.added), ("changed", self.changed), ("removed", self.removed), ("skipped", self.skipped),
        ) if paths]
        return (f"{_plural(self.documents, 'document')}, {_plural(self.passages, 'passage')} "
                f"({', '.join(changes) or 'no changes'}) in {self.seconds:.1f} s")


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
) -> IndexReport:
    """Bring `store` in line with every supported file under `corpus_dir` and save it once.

    A shared store (Milvus) with no corpus folder here is served as it is: app servers behind a
    load balancer read the index that one `qa index` keeps up to date. `prepare` reads, splits
    and embeds the pending files (default: here, with `embedder`). Once `stop` is set, a sync
    still reading or embedding raises Stopped at its next safe point (between files and batches
    here, before and after a Ray run) and writes nothing, so the index stays as last saved; one
    already writing its prepared documents finishes, which takes moments.
    """
    started = time.perf_counter()
    check_settings(settings)
    report = IndexReport(rebuilt_reason=rebuilt_reason)
    if not corpus_dir.is_dir():
        if store.shared and len(store) and not rebuilt_reason:
            logger.info("no corpus folder %s here: serving %s as it is", corpus_dir, store.location)
            report.passages, report.documents = len(store), len(store.documents)
            report.unchanged = sorted(store.documents)
            return report
        raise EmptyCorpusError(f"the corpus folder {corpus_dir} does not exist; create it and add documents")
    if prepare is None:
        prepare = functools.partial(prepare_locally, embedder=embedder, settings=settings, progress=progress,
                                    stop=stop)
    with store.write_lock():
        pending = _pending_files(store, corpus_dir, report)
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
            if known:
                store.remove_documents({item.doc_path})
                report.removed.append(item.doc_path)
        if not len(store):
            reasons = "; ".join(f"{p}: {r}" for p, r in report.skipped[:5])
            raise EmptyCorpusError(
                f"no readable documents in {corpus_dir} (supported: .txt, .md, .html, .htm, .pdf)"
                + (f"; skipped {reasons}" if reasons else "")
            )
        if report.modified or not store.persisted:
            store.save()
        else:  # a writer killed after committing leaves its leftovers behind
            store.tidy()
    report.passages, report.documents = len(store), len(store.documents)
    report.seconds = time.perf_counter() - started
    logger.info(
        "index %s: %d documents, %d passages (%d added, %d changed, %d removed, %d skipped) in %.1fs",
        store.location, report.documents, report.passages, len(report.added), len(report.changed),
        len(report.removed), len(report.skipped), report.seconds,
    )
    return report


def _pending_files(store: VectorStore, corpus_dir: Path, report: IndexReport) -> list[PendingFile]:
    """Hash every supported file: unchanged ones go to the report, the rest are returned;
    `report.removed` gets the indexed documents whose files are gone.

    A shared store may be fed from several folders (machines, sources): a sync only removes the
    documents of its own folder ("seeds/..." for a folder named seeds), so an app server that
    indexes an upload in its own folder never drops what another indexer added.
    """
    seen: set[str] = set()
    pending: list[PendingFile] = []
    listing_skips: list = []
    files = list_corpus_files(corpus_dir, listing_skips)
    report.skipped.extend((item.path, item.reason) for item in listing_skips)
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
    if store.shared:
        own = Path(os.path.abspath(corpus_dir)).name + "/"
        gone = {path for path in gone if path.startswith(own)}
    report.removed = sorted(gone)
    return pending


def split_file(item: PendingFile, corpus_dir: Path, settings: Settings) -> SplitDocument:
    """Read and split one pending file; a file that cannot be used gets a skip reason instead
    (a parser bug on one odd file must not stop the whole build)."""
    out = SplitDocument(item.doc_path, item.digest)
    try:
        document = load_document(item.path, corpus_dir)
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
    stop: threading.Event | None = None,
) -> dict[str, PreparedDocument | str]:
    """Read and split every pending file, then embed all their passages in one call (the
    embedder batches them by length), so many small files cost no more than one large one.
    Returns each file's prepared document, or the reason it was skipped; raises Stopped between
    files or batches once `stop` is set."""
    splits = []
    for item in tqdm(pending, desc="indexing", unit="file", disable=not progress or len(pending) < 2):
        raise_if_stopped(stop, "indexing")
        splits.append(split_file(item, corpus_dir, settings))
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
