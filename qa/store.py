"""The on-disk index: FAISS vectors, the passage records and a manifest, swapped atomically.

Each save writes a new *generation* of data files (temp file, fsync, rename) and only then
replaces `manifest.json`, which names the generation to read. A crash at any moment leaves
either the previous manifest with its complete files or the new one with its complete files.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from qa.types import Passage

if TYPE_CHECKING:
    from qa.config import Settings

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Which vector store (and where) an index folder belongs to; written by non-FAISS stores.
STORE_FILE = "store.json"
#: Reads of an index that a concurrent writer keeps replacing, before giving up.
_LOAD_ATTEMPTS = 5


class IndexError_(RuntimeError):
    """Base class for index problems that a rebuild fixes."""


class CorruptIndexError(IndexError_):
    """Files are missing, unreadable, or disagree with each other."""


class IncompatibleIndexError(IndexError_):
    """The index was built with other settings (embedding model, passage sizes, format)."""


class StoreUnavailableError(ValueError):
    """The configured vector store cannot be used as it is (unreachable, locked, built with
    another embedding model); the message names the setting to change. No rebuild fixes it."""


@dataclass
class DocumentRecord:
    """What the manifest remembers of an indexed file, to detect changes without re-reading it."""

    content_hash: str
    passages: int
    chars: int


@dataclass
class IndexProfile:
    """Settings an index depends on; a mismatch means its vectors or passages are stale."""

    embedding_model: str
    dimension: int
    passage_words: int
    passage_overlap_words: int
    index_type: str = "flat"
    format_version: int = FORMAT_VERSION


@dataclass
class IndexStore:
    """Passages and their vectors, searchable by inner product; `passages[i]` has FAISS id `ids[i]`.

    The FAISS implementation of `qa.vector_store.VectorStore`: everything in memory, saved as
    files in `directory`.
    """

    shared = False  # one folder: only processes on this machine read it
    has_keyword_search = False  # the retriever runs bm25s over `passages`

    directory: Path
    profile: IndexProfile
    passages: list[Passage] = field(default_factory=list)
    documents: dict[str, DocumentRecord] = field(default_factory=dict)
    generation: int = 0
    faiss_index: Any = None
    #: The documents folder this index follows (absolute), recorded in the manifest; "" for none.
    corpus_dir: str = ""

    def __post_init__(self) -> None:
        if self.faiss_index is None:
            self.faiss_index = _new_faiss_index(self.profile)
        self._position = {faiss_id(p.id): i for i, p in enumerate(self.passages)}

    # -- queries ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.passages)

    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """For each query vector, (passage position, inner product) best first."""
        if not self.passages:
            return [[] for _ in range(len(vectors))]
        scores, ids = self.faiss_index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(self)))
        return [
            [(self._position[int(i)], float(s)) for s, i in zip(row_s, row_i) if i != -1]
            for row_s, row_i in zip(scores, ids)
        ]

    def search_passages(self, vectors: np.ndarray, k: int) -> list[list[tuple[Passage, float]]]:
        """For each query vector, (passage, inner product) best first."""
        return [[(self.passages[pos], score) for pos, score in row] for row in self.search(vectors, k)]

    def keyword_search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        raise NotImplementedError("FAISS has no keyword search: the retriever runs bm25s over `passages`")

    @property
    def location(self) -> str:
        return str(self.directory)

    def passages_of(self, document: str) -> list[Passage]:
        return [p for p in self.passages if p.document == document]

    # -- updates (in memory; call save() to persist) ------------------------------------------
    def remove_documents(self, paths: set[str]) -> None:
        if not paths:
            return
        doomed = [faiss_id(p.id) for p in self.passages if p.document in paths]
        if self.profile.index_type == "flat":
            self.faiss_index.remove_ids(np.array(doomed, dtype=np.int64))
            self.passages = [p for p in self.passages if p.document not in paths]
        else:  # HNSW graphs cannot delete: rebuild from the stored vectors (no re-embedding).
            keep = [p for p in self.passages if p.document not in paths]
            vectors = self.vectors_of(keep)
            self.faiss_index = _new_faiss_index(self.profile)
            self.passages = []
            self._position = {}
            self._add(keep, vectors)
        for path in paths:
            self.documents.pop(path, None)
        self._position = {faiss_id(p.id): i for i, p in enumerate(self.passages)}

    def add_document(self, path: str, record: DocumentRecord, passages: list[Passage], vectors: np.ndarray) -> None:
        if path in self.documents:
            self.remove_documents({path})
        self._add(passages, vectors)
        self.documents[path] = record

    def _add(self, passages: list[Passage], vectors: np.ndarray) -> None:
        if not passages:
            return
        ids = np.array([faiss_id(p.id) for p in passages], dtype=np.int64)
        self.faiss_index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)
        offset = len(self.passages)
        self.passages.extend(passages)
        for i, p in enumerate(passages):
            self._position[int(ids[i])] = offset + i

    def vectors_of(self, passages: list[Passage]) -> np.ndarray:
        if not passages:
            return np.zeros((0, self.profile.dimension), dtype=np.float32)
        return np.vstack([self.faiss_index.reconstruct(faiss_id(p.id)) for p in passages]).astype(np.float32)

    # -- persistence -------------------------------------------------------------------------
    @property
    def persisted(self) -> bool:
        return (self.directory / MANIFEST).exists()

    def write_lock(self) -> contextlib.AbstractContextManager[None]:
        return write_lock(self.directory)

    def tidy(self) -> None:
        self.remove_stale_files()

    def disk_version(self) -> int | None:
        """The manifest's mtime: every save replaces the manifest."""
        try:
            return (self.directory / MANIFEST).stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def save(self) -> None:
        """Write a new generation atomically, switch the manifest to it, then drop older files."""
        import faiss

        self.directory.mkdir(parents=True, exist_ok=True)
        # Past whatever is on disk: another writer may have saved since this store was loaded,
        # and reusing its number would overwrite files a reader may be opening under that name.
        generation = max(self.generation, _disk_generation(self.directory)) + 1
        vectors_name, passages_name = f"vectors-{generation}.faiss", f"passages-{generation}.json"
        with atomic_path(self.directory / vectors_name) as tmp:
            faiss.write_index(self.faiss_index, str(tmp))
        with atomic_path(self.directory / passages_name) as tmp:
            tmp.write_text(json.dumps([_passage_to_json(p) for p in self.passages], ensure_ascii=False),
                           encoding="utf-8")
        manifest = {
            "format_version": FORMAT_VERSION,
            "profile": asdict(self.profile),
            "generation": generation,
            "files": {"vectors": vectors_name, "passages": passages_name},
            "counts": {"documents": len(self.documents), "passages": len(self.passages)},
            "documents": {path: asdict(rec) for path, rec in sorted(self.documents.items())},
        }
        if self.corpus_dir:
            manifest.update(corpus_dir=self.corpus_dir, corpus_dir_from_index=os.path.relpath(
                self.corpus_dir, os.path.abspath(self.directory)))
        with atomic_path(self.directory / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
        _fsync_dir(self.directory)
        self.generation = generation
        milvus_note = self.directory / STORE_FILE  # left by a Milvus index: this folder's is FAISS now
        if milvus_note.exists():  # no file-system step for the usual case (crash tests count the steps)
            milvus_note.unlink(missing_ok=True)
        self.remove_stale_files()

    def remove_stale_files(self) -> None:
        """Delete data files the manifest on disk does not name: older generations, or those of a
        save that crashed midway. Call with the write lock held; the manifest on disk, not this
        store's generation, decides, since another writer may have saved since this was loaded."""
        try:
            keep = set(json.loads((self.directory / MANIFEST).read_text(encoding="utf-8"))["files"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # nothing trustworthy to compare with: delete nothing
        for stale in self.directory.iterdir():
            if stale.name.startswith(("vectors-", "passages-")) and stale.name not in keep:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()

    @classmethod
    def load(cls, directory: str | Path, expected: IndexProfile) -> IndexStore:
        """Read and cross-check an index; raise a subclass of IndexError_ when it cannot be trusted.

        A writer in another process may replace the manifest and delete the files it named
        while we read them; then the new manifest is read instead (a few times at most).
        """
        directory = Path(directory)
        for attempt in range(_LOAD_ATTEMPTS):
            try:
                raw = (directory / MANIFEST).read_bytes()
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise CorruptIndexError(f"unreadable manifest in {directory}: {exc}") from exc
            try:
                return cls._load_manifest(directory, expected, raw)
            except CorruptIndexError:
                if attempt + 1 == _LOAD_ATTEMPTS or _read_or_none(directory / MANIFEST) == raw:
                    raise
                logger.info("index in %s changed while it was read; reading it again", directory)
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def _load_manifest(cls, directory: Path, expected: IndexProfile, raw: bytes) -> IndexStore:
        import faiss

        try:
            manifest = json.loads(raw.decode("utf-8"))
            profile = IndexProfile(**manifest["profile"])
            files = manifest["files"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptIndexError(f"unreadable manifest in {directory}: {exc}") from exc
        if profile != expected:
            changed = [k for k, v in asdict(expected).items() if asdict(profile).get(k) != v]
            raise IncompatibleIndexError(f"index in {directory} was built with other settings ({', '.join(changed)})")
        try:
            index = faiss.read_index(str(directory / files["vectors"]))
            raw = json.loads((directory / files["passages"]).read_text(encoding="utf-8"))
            passages = [passage_from_row(item) for item in raw]
            documents = {path: DocumentRecord(**rec) for path, rec in manifest["documents"].items()}
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CorruptIndexError(f"unreadable index files in {directory}: {exc}") from exc
        store = cls(directory, profile, passages, documents, int(manifest["generation"]), index,
                    recorded_folder(manifest))
        store.verify()
        return store

    def verify(self) -> None:
        """FAISS ids, passage records and per-document counts must all agree."""
        import faiss

        if self.faiss_index.ntotal != len(self.passages) or self.faiss_index.d != self.profile.dimension:
            raise CorruptIndexError(
                f"index holds {self.faiss_index.ntotal} vectors of dimension {self.faiss_index.d} "
                f"but {len(self.passages)} passages of dimension {self.profile.dimension}"
            )
        stored_ids = set(faiss.vector_to_array(self.faiss_index.id_map).tolist())
        if stored_ids != set(self._position):
            raise CorruptIndexError("FAISS ids and passage store disagree")
        counts: dict[str, int] = {}
        for p in self.passages:
            counts[p.document] = counts.get(p.document, 0) + 1
        expected = {path: rec.passages for path, rec in self.documents.items() if rec.passages}
        if counts != expected:
            raise CorruptIndexError("passage counts per document disagree with the manifest")


def open_faiss_store(settings: Settings, profile: IndexProfile) -> tuple[IndexStore, str]:
    """Load the index, or start an empty one; a corrupt or incompatible index is replaced, with a warning."""
    directory = Path(settings.index_dir)
    try:
        return IndexStore.load(directory, profile), ""
    except FileNotFoundError:
        return IndexStore(directory, profile), ""
    except (CorruptIndexError, IncompatibleIndexError) as exc:
        # The folder it follows outlives a rebuild: the documents come back from there.
        old = _manifest_or_empty(directory)
        counts = old.get("counts") if isinstance(old.get("counts"), dict) else {}
        held = f" (it held {counts['documents']} documents)" if isinstance(counts.get("documents"), int) else ""
        logger.warning("rebuilding the index%s: %s", held, exc)
        return IndexStore(directory, profile, corpus_dir=recorded_folder(old)), str(exc)


def recorded_folder(saved: Any) -> str:
    """The absolute documents folder a manifest or store.json records, or "" (none, or unreadable)."""
    folder = saved.get("corpus_dir") if isinstance(saved, dict) else None
    return folder if isinstance(folder, str) and os.path.isabs(folder) else ""


def _manifest_or_empty(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def faiss_id(passage_id: str) -> int:
    """FAISS needs int64 ids: the first 63 bits of the passage's hex id."""
    return int(passage_id[:16], 16) & 0x7FFF_FFFF_FFFF_FFFF


def _new_faiss_index(profile: IndexProfile) -> Any:
    import faiss

    if profile.index_type == "flat":
        base = faiss.IndexFlatIP(profile.dimension)
    elif profile.index_type == "hnsw":
        base = faiss.IndexHNSWFlat(profile.dimension, 32, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = 80
        base.hnsw.efSearch = 128
    else:
        raise ValueError(f"unknown index type {profile.index_type!r}: use 'flat' or 'hnsw'")
    return faiss.IndexIDMap2(base)


def _passage_to_json(p: Passage) -> dict[str, Any]:
    return {"id": p.id, "document": p.document, "start": p.start, "end": p.end, "page": p.page, "text": p.text}


def passage_from_row(row: dict[str, Any]) -> Passage:
    """A passage from its stored fields (JSON manifest, Milvus row, Ray row); page 0 or none = no page."""
    page = row.get("page")
    return Passage(str(row["id"]), str(row["document"]), int(row["start"]), int(row["end"]), str(row["text"]),
                   int(page) if page else None)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temp path beside `target`; on success fsync it and rename it over `target`."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _disk_generation(directory: Path) -> int:
    """The generation the manifest on disk names, or 0 when there is none or it is unreadable."""
    try:
        value = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))["generation"]
        return int(value) if isinstance(value, int) and value > 0 else 0
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def write_lock(directory: Path) -> Iterator[None]:
    """One writer at a time across processes (CLI and web server may share an index)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            # Temp files present while we hold the lock were left by a writer that crashed.
            for stray in directory.glob(".*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    stray.unlink()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
