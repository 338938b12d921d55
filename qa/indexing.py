"""Keep an index in step with a corpus folder: embed only added or changed files, drop removed ones."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from qa.config import Settings
from qa.documents import DocumentError, list_corpus_files, load_document, relative_document_path
from qa.embedding import Embedder
from qa.passages import split_passages
from qa.store import (
    CorruptIndexError,
    DocumentRecord,
    IncompatibleIndexError,
    IndexProfile,
    IndexStore,
    write_lock,
)

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


def profile_for(settings: Settings, embedder: Embedder) -> IndexProfile:
    return IndexProfile(
        embedding_model=embedder.name,
        dimension=embedder.dimension,
        passage_words=settings.passage_words,
        passage_overlap_words=settings.passage_overlap_words,
        index_type=settings.index_type,
    )


def open_store(settings: Settings, profile: IndexProfile) -> tuple[IndexStore, str]:
    """Load the index, or start an empty one; a corrupt or incompatible index is replaced, with a warning."""
    directory = Path(settings.index_dir)
    try:
        return IndexStore.load(directory, profile), ""
    except FileNotFoundError:
        return IndexStore(directory, profile), ""
    except (CorruptIndexError, IncompatibleIndexError) as exc:
        logger.warning("rebuilding the index: %s", exc)
        return IndexStore(directory, profile), str(exc)


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
    store: IndexStore,
    corpus_dir: Path,
    embedder: Embedder,
    settings: Settings,
    progress: bool = True,
    rebuilt_reason: str = "",
) -> IndexReport:
    """Bring `store` in line with every supported file under `corpus_dir` and save it atomically."""
    started = time.perf_counter()
    report = IndexReport(rebuilt_reason=rebuilt_reason)
    if not corpus_dir.is_dir():
        raise EmptyCorpusError(f"the corpus folder {corpus_dir} does not exist; create it and add documents")
    with write_lock(store.directory):
        seen: set[str] = set()
        pending: list[tuple[str, Path, str]] = []
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
                pending.append((doc_path, path, digest))
        report.removed = sorted(set(store.documents) - seen)
        store.remove_documents(set(report.removed))
        for doc_path, path, digest in tqdm(pending, desc="indexing", unit="file", disable=not progress or len(pending) < 2):
            known = doc_path in store.documents
            if _index_file(store, path, corpus_dir, digest, embedder, settings, report, progress):
                (report.changed if known else report.added).append(doc_path)
            elif known:
                store.remove_documents({doc_path})
                report.removed.append(doc_path)
        if not store.passages:
            reasons = "; ".join(f"{p}: {r}" for p, r in report.skipped[:5])
            raise EmptyCorpusError(
                f"no readable documents in {corpus_dir} (supported: .txt, .md, .html, .htm, .pdf)"
                + (f"; skipped {reasons}" if reasons else "")
            )
        if report.modified or not (store.directory / "manifest.json").exists():
            store.save()
        else:  # a writer killed after switching the manifest leaves the previous files behind
            store.remove_stale_files()
    report.passages, report.documents = len(store.passages), len(store.documents)
    report.seconds = time.perf_counter() - started
    logger.info(
        "index %s: %d documents, %d passages (%d added, %d changed, %d removed, %d skipped) in %.1fs",
        store.directory, report.documents, report.passages, len(report.added), len(report.changed),
        len(report.removed), len(report.skipped), report.seconds,
    )
    return report


def _index_file(
    store: IndexStore,
    path: Path,
    corpus_dir: Path,
    digest: str,
    embedder: Embedder,
    settings: Settings,
    report: IndexReport,
    progress: bool,
) -> bool:
    doc_path = relative_document_path(path, corpus_dir)
    try:
        document = load_document(path, corpus_dir)
    except DocumentError as exc:
        return _skip(report, doc_path, exc.reason)
    except FileNotFoundError:
        return _skip(report, doc_path, _missing_reason(path))
    except OSError as exc:
        return _skip(report, doc_path, f"could not be read ({exc.strerror or exc})")
    except Exception as exc:  # a parser bug on one odd file must not stop the whole build
        logger.debug("failed to load %s", path, exc_info=True)
        return _skip(report, doc_path, f"could not be loaded ({type(exc).__name__}: {exc})")
    passages = split_passages(document, settings.passage_words, settings.passage_overlap_words)
    if not passages:
        return _skip(report, doc_path, "has no text to index")
    vectors = embedder.encode([p.text for p in passages], progress=progress)
    store.add_document(doc_path, DocumentRecord(digest, len(passages), len(document.text)), passages, vectors)
    return True


def _skip(report: IndexReport, doc_path: str, reason: str) -> bool:
    report.skipped.append((doc_path, reason))
    logger.warning("skipped %s: %s", doc_path, reason)
    return False
