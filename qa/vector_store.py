"""The one interface every vector store implements, and the choice between them.

`IndexStore` (FAISS files in a folder; embedded, the default) and `MilvusStore` (a Milvus Lite
file or a Milvus server that several app servers share) hold the same things: passages with
their vectors, and a manifest of the indexed documents (content hashes, passage counts) plus the
profile the index was built with. Indexing, retrieval and the engine only use this interface.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from qa.store import STORE_FILE, DocumentRecord, IndexProfile, StoreUnavailableError
from qa.types import Passage

if TYPE_CHECKING:
    from qa.config import Settings

VECTOR_STORES = ("faiss", "milvus")
#: In an index folder whose index lives in Milvus: where (`resolve_store` reads it).
DEFAULT_COLLECTION = "qa_passages"


@runtime_checkable
class VectorStore(Protocol):
    """Passages, their vectors and the manifest; updates are staged until `save()`."""

    profile: IndexProfile
    #: The manifest: every indexed document with its content hash and passage count.
    documents: dict[str, DocumentRecord]
    #: Several processes or machines may read it at once (the engine re-reads the manifest when
    #: another writer saved, and a missing corpus folder means "serve the index as it is").
    shared: bool
    #: The engine ranks passages by BM25 itself (`keyword_search`); else the retriever runs
    #: bm25s over `passages` in this process.
    has_keyword_search: bool
    #: The documents folder the index follows (absolute; "" when it records none): saved with
    #: the index, so a later sync needs no folder (`qa.folders`).
    corpus_dir: str

    @property
    def location(self) -> str:
        """Where the index lives, for messages: a folder, or a Milvus collection and URI."""
        ...

    def __len__(self) -> int:
        """Passages held (staged updates included)."""
        ...

    @property
    def passages(self) -> list[Passage]:
        """Every passage (a remote store fetches them on first use: only for small indexes,
        the in-process BM25 fallback and evaluation)."""
        ...

    def search_passages(self, vectors: np.ndarray, k: int) -> list[list[tuple[Passage, float]]]:
        """For each query vector, the `k` passages with the largest inner product, best first."""
        ...

    def keyword_search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        """The engine's BM25 ranking, best first (only where `has_keyword_search`)."""
        ...

    def passages_of(self, document: str) -> list[Passage]: ...

    def vectors_of(self, passages: list[Passage]) -> np.ndarray: ...

    def add_document(self, path: str, record: DocumentRecord, passages: list[Passage], vectors: np.ndarray) -> None:
        """Add or replace a document (staged until `save()`)."""
        ...

    def remove_documents(self, paths: set[str]) -> None: ...

    @property
    def persisted(self) -> bool:
        """Whether a manifest has ever been saved (an empty new store has none)."""
        ...

    def save(self) -> None:
        """Persist staged updates so that a crash at any moment loses nothing already saved."""
        ...

    def tidy(self) -> None:
        """Remove leftovers of a writer that died (call with the write lock held)."""
        ...

    def verify(self) -> None:
        """Raise CorruptIndexError unless passages and manifest agree."""
        ...

    def write_lock(self) -> AbstractContextManager[Any]:
        """One writer at a time (across processes on this machine)."""
        ...

    def disk_version(self) -> Any:
        """A cheap token that changes whenever any writer saves; None when nothing is saved."""
        ...


def check_settings(settings: Settings) -> None:
    """ValueError naming the variable when the vector-store settings make no sense."""
    if settings.vector_store not in ("", *VECTOR_STORES):
        raise ValueError(f"QA_VECTOR_STORE={settings.vector_store!r} is not a vector store: use faiss or milvus")
    if settings.milvus_collection == "":
        raise ValueError("QA_MILVUS_COLLECTION is empty: name a collection (default qa_passages)")
    if settings.milvus_bm25 not in ("auto", "engine", "local"):
        raise ValueError(f"QA_MILVUS_BM25={settings.milvus_bm25!r}: use auto, engine or local")
    if settings.indexer not in ("local", "ray"):
        raise ValueError(f"QA_INDEXER={settings.indexer!r}: use local or ray")


def resolve_store(settings: Settings) -> Settings:
    """`settings` with the vector store spelled out. With QA_VECTOR_STORE unset, an index folder
    built on Milvus names its Milvus in store.json, so `qa ask --index-dir X` answers from the
    index `QA_VECTOR_STORE=milvus qa index --index-dir X` made without repeating the settings
    (explicit QA_MILVUS_URI / QA_MILVUS_COLLECTION still win); any other folder means FAISS."""
    if settings.vector_store:
        return settings
    try:
        recorded = json.loads((Path(settings.index_dir) / STORE_FILE).read_text(encoding="utf-8"))
        if recorded.get("vector_store") != "milvus":
            raise ValueError("not a Milvus index")
    except (OSError, ValueError, AttributeError):
        return settings.replace(vector_store="faiss")
    collection = recorded.get("milvus_collection") if settings.milvus_collection == DEFAULT_COLLECTION else None
    return settings.replace(vector_store="milvus", milvus_uri=settings.milvus_uri or recorded.get("milvus_uri"),
                            milvus_collection=collection)


def open_vector_store(settings: Settings, profile: IndexProfile) -> tuple[VectorStore, str]:
    """The configured store, loaded (or new and empty), and why it is being rebuilt or repaired
    ("" when it is sound). A FAISS index that is corrupt or was built with other settings is
    replaced; a Milvus collection is repaired in place, and one built with other settings is an
    error (it may be shared, so it is never dropped behind its owners' backs)."""
    check_settings(settings)
    settings = resolve_store(settings)
    if settings.vector_store == "milvus":
        from qa.milvus_store import MilvusStore

        return MilvusStore.open(settings, profile)
    from qa.store import open_faiss_store

    return open_faiss_store(settings, profile)


def load_vector_store(settings: Settings, profile: IndexProfile) -> VectorStore:
    """The configured store as saved, to serve it (no repairs); IndexError_ or
    StoreUnavailableError when it cannot be used."""
    check_settings(settings)
    settings = resolve_store(settings)
    if settings.vector_store == "milvus":
        from qa.milvus_store import MilvusStore

        return MilvusStore.open(settings, profile, repair=False)[0]
    from qa.store import IndexStore

    return IndexStore.load(settings.index_dir, profile)


__all__ = [
    "StoreUnavailableError",
    "VectorStore",
    "check_settings",
    "load_vector_store",
    "open_vector_store",
    "resolve_store",
]
