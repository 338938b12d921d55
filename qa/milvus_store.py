"""The index in Milvus: passages, vectors and the manifest, shared by every app server.

Two collections: `<name>` holds one row per passage (id, document, content hash, offsets, page,
text, vector, and BM25's sparse vector where the engine computes it) and `<name>_manifest` one
row per indexed document (content hash, passage count, length) plus one `profile` row (the
embedding model, dimension and passage sizes, and a generation that every save bumps).

Crash safety without transactions: a document's rows are written before its manifest row, and
a removed document's manifest row is deleted before its rows. On open, rows are counted per
document and content hash against the manifest, so whatever a killed writer left half done
shows up as a document to re-embed or rows to delete, and the next sync repairs it. A document
whose manifest row survives is always complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.store import (
    STORE_FILE,
    CorruptIndexError,
    DocumentRecord,
    IndexProfile,
    StoreUnavailableError,
    atomic_path,
    passage_from_row,
    recorded_folder,
    write_lock,
)
from qa.types import Passage

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from qa.config import Settings

logger = logging.getLogger(__name__)

PROFILE_KEY = "profile"
DOC_PREFIX = "doc:"
#: Milvus VARCHAR limits are in bytes; a passage longer than this (a 64 KB "word") is left out.
TEXT_MAX_BYTES = 65_535
PATH_MAX_BYTES = 4_096
#: Rows per insert/upsert call, and ids per delete/get filter.
WRITE_BATCH = 256
#: Staged passages written before `save()`, so a huge build holds a bounded number of vectors.
FLUSH_PASSAGES = 4_096
ITERATOR_BATCH = 4_096
#: App servers look for a newer generation at most this often.
VERSION_CHECK_S = 1.0
PASSAGE_FIELDS = ["id", "document", "content_hash", "start", "end", "page", "text"]
_COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")


def milvus_uri(settings: Settings) -> str:
    """QA_MILVUS_URI, or a Milvus Lite file inside the index folder."""
    return settings.milvus_uri or str(Path(settings.index_dir) / "milvus.db")


def is_lite(uri: str) -> bool:
    """A local file path (Milvus Lite, embedded) rather than a server address."""
    return not re.match(r"^[a-z][a-z0-9+.-]*://", uri) and not uri.startswith("unix:")


class _Connections:
    """One client per URI and token in this process (a Milvus Lite file is served by one
    in-process server, which only one process at a time may open)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], MilvusClient] = {}

    def get(self, uri: str, token: str) -> MilvusClient:
        with self._lock:
            client = self._clients.get((uri, token))
            if client is None:
                client = self._clients[(uri, token)] = _connect(uri, token)
            return client

    def release(self, uri: str | None = None) -> None:
        """Close the clients of `uri` (all when None) and stop their Milvus Lite servers, so that
        another process may open those files."""
        with self._lock:
            doomed = [key for key in self._clients if uri is None or key[0] == uri]
            clients = [self._clients.pop(key) for key in doomed]
        for (key_uri, _), client in zip(doomed, clients):
            with contextlib.suppress(Exception):
                client.close()
            if is_lite(key_uri):
                with contextlib.suppress(ImportError):
                    from milvus_lite.server_manager import server_manager_instance

                    server_manager_instance.release_server(key_uri)


CONNECTIONS = _Connections()


def release(uri: str | None = None) -> None:
    """Let go of Milvus (all of it when `uri` is None): tests and tools call this before another
    process opens the same Milvus Lite file."""
    CONNECTIONS.release(uri)


def _connect(uri: str, token: str) -> MilvusClient:
    # gRPC's C core otherwise prints a line whenever this process forks (Ray workers) while
    # a Milvus Lite server thread is using it.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        from pymilvus import MilvusClient, MilvusException
    except ImportError:
        raise StoreUnavailableError(
            "QA_VECTOR_STORE=milvus needs pymilvus and milvus-lite: pip install 'qa-offline[scale]'"
        ) from None
    if is_lite(uri):
        if not uri.endswith(".db"):
            raise StoreUnavailableError(
                f"QA_MILVUS_URI={uri!r} is neither a server address (http://host:19530) nor a Milvus Lite "
                "file (a path ending in .db)"
            )
        try:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create the folder of QA_MILVUS_URI={uri}: {exc}") from exc
        _quiet_pymilvus()
    try:
        return MilvusClient(uri=uri, token=token, timeout=10)
    except MilvusException as exc:
        if is_lite(uri) and _lite_locked(uri):
            raise StoreUnavailableError(
                f"the Milvus Lite file QA_MILVUS_URI={uri} is open in another process (Milvus Lite serves "
                "one process at a time): stop that process (a `qa serve`?), or run a Milvus server and "
                "point QA_MILVUS_URI at it (http://host:19530)"
            ) from None
        raise StoreUnavailableError(
            f"cannot reach Milvus at QA_MILVUS_URI={uri} ({_message(exc)}): start it, or set QA_MILVUS_URI "
            "to a reachable server (http://host:19530) or a local file ending in .db (Milvus Lite)"
        ) from None


def _lite_locked(uri: str) -> bool:
    """Whether another process holds the Milvus Lite lock of `uri`."""
    import fcntl

    lock = Path(uri) / "LOCK"
    if not lock.exists():
        return False
    try:
        with open(lock, "rb+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return True
    return False


def _message(exc: Exception) -> str:
    return str(getattr(exc, "message", "") or exc)


class _DropLiteTimestampNoise(logging.Filter):
    """Milvus Lite has no timestamp service: on every query iterator its in-process gRPC server
    logs a traceback for the call, and pymilvus a warning that it uses its own clock instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "mvccTs" not in message and "Method not implemented" not in message


def _quiet_pymilvus() -> None:
    for name in ("pymilvus.client.iterator.query_iterator", "grpc._server"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropLiteTimestampNoise) for f in log.filters):
            log.addFilter(_DropLiteTimestampNoise())


#: A document waiting to be written: its manifest record, passages and vectors.
_Staged = tuple[DocumentRecord, list[Passage], np.ndarray]


def _literal(text: str) -> str:
    """A string literal for a Milvus filter expression."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class MilvusStore:
    """The Milvus implementation of `qa.vector_store.VectorStore`.

    `documents` is the manifest as this process knows it; updates are staged in memory and
    written by `save()` (or earlier, `FLUSH_PASSAGES` at a time, in a large build).
    """

    shared = True

    def __init__(self, settings: Settings, profile: IndexProfile, client: MilvusClient) -> None:
        """An empty view of the collections; `open()` fills it from Milvus."""
        self.settings = settings
        self.profile = profile
        self.client = client
        self.uri = milvus_uri(settings)
        self.collection = settings.milvus_collection
        self.manifest_collection = f"{self.collection}_manifest"
        self.documents: dict[str, DocumentRecord] = {}
        self.generation = 0
        self.has_bm25_function = False
        self.has_keyword_search = False
        #: Documents that have rows in the engine, and row content hashes the manifest does not name.
        self._row_documents: set[str] = set()
        self._stale_rows: dict[str, set[str]] = {}
        self._persisted = False
        self._staged: dict[str, _Staged] = {}
        self._staged_removals: set[str] = set()
        self._staged_passages = 0
        self._passages: list[Passage] | None = None
        self._count: int | None = None  # passages the manifest names; len() runs on every question
        self._version: tuple[float, Any] = (0.0, None)
        #: The documents folder this index folder follows, recorded in its store.json (not in the
        #: collection: several index folders, each syncing its own folder, may share one).
        self.corpus_dir = recorded_folder(_read_json(Path(settings.index_dir) / STORE_FILE))

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings, profile: IndexProfile, repair: bool = True) -> tuple[MilvusStore, str]:
        """Connect, create the collections if need be, check them against the manifest.

        Returns the store and, when some documents must be re-embedded or rows deleted, why
        (the next save repairs them). StoreUnavailableError when Milvus cannot be reached or
        the collection was built with another embedding model or passage sizes.
        """
        if not _COLLECTION_NAME.match(settings.milvus_collection):
            raise StoreUnavailableError(
                f"QA_MILVUS_COLLECTION={settings.milvus_collection!r} is not a Milvus collection name: use "
                "letters, digits and underscores, starting with a letter"
            )
        uri = milvus_uri(settings)
        client = CONNECTIONS.get(uri, settings.milvus_token)
        store = cls(settings, profile, client)
        with store._engine_errors():
            reason = store._load()
        if store.has_keyword_search:
            logger.debug("keyword search: Milvus BM25 full-text search in %s", store.location)
        else:
            why = ("QA_MILVUS_BM25=local" if settings.milvus_bm25 == "local" else
                   "the collection has no BM25 function: the Milvus that made it has no full-text search")
            logger.info("keyword search: bm25s in this process over the %d passages of %s (%s)",
                        len(store), store.location, why)
        if reason:
            (logger.warning if repair else logger.info)(
                "%s: %s%s", store.location, reason, "; repairing" if repair else "; `qa index` repairs it")
        return store, reason if repair else ""

    @classmethod
    def saved(cls, settings: Settings) -> tuple[dict[str, Any], dict[str, DocumentRecord]]:
        """The profile and the manifest as saved, unchecked and without loading a model (for
        `qa index --status`); ({}, {}) when the collection holds no index."""
        if not _COLLECTION_NAME.match(settings.milvus_collection):
            raise StoreUnavailableError(f"QA_MILVUS_COLLECTION={settings.milvus_collection!r} is not a Milvus "
                                        "collection name")
        store = cls(settings, None, CONNECTIONS.get(milvus_uri(settings), settings.milvus_token))  # type: ignore[arg-type]
        with store._engine_errors():
            if not store.client.has_collection(store.manifest_collection):
                return {}, {}
            store.client.load_collection(store.manifest_collection)
            row = store._profile_row()
            if row is None:
                return {}, {}
            profile = row.get("profile")
            return (profile if isinstance(profile, dict) else {}), store._manifest_documents()

    def _load(self) -> str:
        client = self.client
        has_manifest = client.has_collection(self.manifest_collection)
        has_passages = client.has_collection(self.collection)
        if not has_manifest:
            self._create_manifest_collection()
        client.load_collection(self.manifest_collection)
        profile_row = self._profile_row()
        if profile_row is not None:
            self._check_profile(profile_row)
            self.generation = int(profile_row.get("generation", 0))
            self._persisted = True
        if has_passages:
            self._check_passage_collection()
        else:
            self._create_passage_collection()
        client.load_collection(self.collection)
        description = client.describe_collection(self.collection)
        self.has_bm25_function = any(_function_type(f) == "BM25" for f in description.get("functions") or [])
        self.has_keyword_search = self.has_bm25_function and self.settings.milvus_bm25 != "local"
        if self.settings.milvus_bm25 == "engine" and not self.has_bm25_function:
            raise StoreUnavailableError(
                f"QA_MILVUS_BM25=engine, but the collection {self.collection!r} at QA_MILVUS_URI={self.uri} has no "
                "BM25 function (this Milvus does not support full-text search, or it was created without): "
                "use QA_MILVUS_BM25=auto, or another QA_MILVUS_COLLECTION"
            )
        self.documents = self._manifest_documents() if self._persisted else {}
        try:
            return self._check_rows()
        finally:
            self._manifest_changed()

    def _profile_row(self) -> dict[str, Any] | None:
        rows = self.client.get(self.manifest_collection, ids=[PROFILE_KEY], output_fields=["data"])
        if not rows:
            return None
        try:
            row = json.loads(rows[0]["data"])
            if not isinstance(row, dict):
                raise TypeError("not a JSON object")
            return row
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailableError(
                f"the profile row of {self.manifest_collection!r} at QA_MILVUS_URI={self.uri} is unreadable ({exc}): "
                f"drop the collections {self.collection!r} and {self.manifest_collection!r} to rebuild, or set "
                "QA_MILVUS_COLLECTION to another name"
            ) from exc

    def _check_profile(self, row: dict[str, Any]) -> None:
        stored = row.get("profile") or {}
        expected = asdict(self.profile)
        changed = [k for k, v in expected.items() if stored.get(k) != v]
        if changed:
            built = ", ".join(f"{k}={stored.get(k)!r}" for k in changed)
            wanted = ", ".join(f"{k}={expected[k]!r}" for k in changed)
            raise StoreUnavailableError(
                f"the Milvus collection {self.collection!r} at QA_MILVUS_URI={self.uri} was built with {built}, "
                f"but this configuration uses {wanted}: use the same embedding model and passage settings, "
                "or set QA_MILVUS_COLLECTION (or QA_MILVUS_URI) to another collection to build a new index there"
            )

    def _check_passage_collection(self) -> None:
        fields = {f["name"]: f for f in self.client.describe_collection(self.collection)["fields"]}
        dim = int((fields.get("vector", {}).get("params") or {}).get("dim", -1))
        if dim != self.profile.dimension or not set(PASSAGE_FIELDS) <= set(fields):
            raise StoreUnavailableError(
                f"the Milvus collection {self.collection!r} at QA_MILVUS_URI={self.uri} was not made by this "
                f"product for this embedding model (vector dimension {dim}, expected {self.profile.dimension}): "
                "set QA_MILVUS_COLLECTION to another name"
            )

    def _manifest_documents(self) -> dict[str, DocumentRecord]:
        documents = {}
        for row in self._iterate(self.manifest_collection, f'key like "{DOC_PREFIX}%"',
                                 ["key", "content_hash", "passages", "chars"]):
            documents[row["key"][len(DOC_PREFIX):]] = DocumentRecord(row["content_hash"], int(row["passages"]),
                                                                     int(row["chars"]))
        return documents

    def _check_rows(self) -> str:
        """Count rows per (document, content hash) against the manifest: documents whose rows
        are incomplete are dropped from `documents` (the next sync re-embeds them); rows the
        manifest does not name are remembered for deletion. Returns what needs repair."""
        counts = self._row_counts()
        self._row_documents = {doc for doc, _ in counts}
        damaged, self._stale_rows = _diagnose(self.documents, counts)
        for path in damaged:
            del self.documents[path]
        problems = []
        if damaged:
            problems.append(f"{len(damaged)} document(s) with missing or extra rows ({', '.join(damaged[:3])})")
        if self._stale_rows:
            problems.append(f"rows of {len(self._stale_rows)} document(s) that the manifest does not name")
        return "; ".join(problems)

    def _row_counts(self) -> Counter[tuple[str, str]]:
        counts: Counter[tuple[str, str]] = Counter()
        for row in self._iterate(self.collection, "", ["document", "content_hash"]):
            counts[(row["document"], row["content_hash"])] += 1
        return counts

    # -- creating ------------------------------------------------------------------------------
    def _create_manifest_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description="qa-offline manifest: indexed documents and the profile")
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=PATH_MAX_BYTES + 64)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("passages", DataType.INT64)
        schema.add_field("chars", DataType.INT64)
        schema.add_field("data", DataType.VARCHAR, max_length=65_535)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one; unused
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="L2")
        self.client.create_collection(self.manifest_collection, schema=schema, index_params=index,
                                      consistency_level="Strong")

    def _create_passage_collection(self) -> None:
        from pymilvus import MilvusException

        want_bm25 = self.settings.milvus_bm25 != "local"
        if want_bm25:
            try:
                self._create_passages(bm25=True)
                return
            except MilvusException as exc:
                if self.settings.milvus_bm25 == "engine":
                    raise StoreUnavailableError(
                        f"QA_MILVUS_BM25=engine, but Milvus at QA_MILVUS_URI={self.uri} cannot create a BM25 "
                        f"full-text index ({_message(exc)}): use QA_MILVUS_BM25=auto"
                    ) from None
                logger.warning("Milvus at %s does not support BM25 full-text search (%s): keyword search "
                               "will run in this process (bm25s)", self.uri, _message(exc))
                with contextlib.suppress(MilvusException):
                    self.client.drop_collection(self.collection)
        self._create_passages(bm25=False)

    def _create_passages(self, bm25: bool) -> None:
        from bm25s.stopwords import STOPWORDS_EN
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                            description="qa-offline passages")
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("document", DataType.VARCHAR, max_length=PATH_MAX_BYTES)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("start", DataType.INT64)
        schema.add_field("end", DataType.INT64)
        schema.add_field("page", DataType.INT64)  # 0: a document without pages
        analyzer = {"tokenizer": "standard",
                    "filter": ["lowercase", {"type": "stop", "stop_words": sorted(STOPWORDS_EN)}]}
        text_options = {"enable_analyzer": True, "analyzer_params": analyzer} if bm25 else {}
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_BYTES, **text_options)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.profile.dimension)
        index = self.client.prepare_index_params()
        if self.profile.index_type == "hnsw":
            index.add_index("vector", index_type="HNSW", metric_type="IP", params={"M": 32, "efConstruction": 80})
        else:
            index.add_index("vector", index_type="FLAT", metric_type="IP")
        if bm25:
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                         input_field_names=["text"], output_field_names=["sparse"]))
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        self.client.create_collection(self.collection, schema=schema, index_params=index)

    # -- queries -------------------------------------------------------------------------------
    @property
    def location(self) -> str:
        return f"Milvus collection {self.collection!r} at {self.uri}"

    @property
    def persisted(self) -> bool:
        return self._persisted

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(rec.passages for rec in self.documents.values())
        return self._count

    def _manifest_changed(self) -> None:
        self._passages = None
        self._count = None

    @property
    def passages(self) -> list[Passage]:
        """Every passage the manifest names, fetched on first use (by document, then offset)."""
        if self._passages is None:
            with self._engine_errors():
                rows = self._iterate(self.collection, "", PASSAGE_FIELDS)
                found = [passage_from_row(r) for r in rows
                         if (rec := self.documents.get(r["document"])) and rec.content_hash == r["content_hash"]]
            staged = [p for _, passages, _ in self._staged.values() for p in passages]
            staged_docs = set(self._staged)
            found = [p for p in found if p.document not in staged_docs] + staged
            self._passages = sorted(found, key=lambda p: (p.document, p.start, p.id))
        return self._passages

    def search_passages(self, vectors: np.ndarray, k: int) -> list[list[tuple[Passage, float]]]:
        params = {"metric_type": "IP", "params": {"ef": max(128, k)} if self.profile.index_type == "hnsw" else {}}
        with self._engine_errors():
            results = self.client.search(self.collection, data=np.asarray(vectors, dtype=np.float32).tolist(),
                                         anns_field="vector", limit=min(k, 16_384), output_fields=PASSAGE_FIELDS,
                                         search_params=params)
        return [[(passage_from_row(hit["entity"]), float(hit["distance"])) for hit in row] for row in results]

    def keyword_search(self, query: str, k: int) -> list[tuple[Passage, float]]:
        """Milvus's BM25 ranking (Milvus Lite reports scores negated: we give them as BM25 has them)."""
        if not len(self) or not query.strip():
            return []
        with self._engine_errors():
            results = self.client.search(self.collection, data=[query], anns_field="sparse", limit=min(k, 16_384),
                                         output_fields=PASSAGE_FIELDS, search_params={"metric_type": "BM25"})
        return [(passage_from_row(hit["entity"]), abs(float(hit["distance"]))) for hit in results[0]]

    def passages_of(self, document: str) -> list[Passage]:
        with self._engine_errors():
            rows = self._iterate(self.collection, f"document == {_literal(document)}", PASSAGE_FIELDS)
            return sorted((passage_from_row(r) for r in rows), key=lambda p: (p.start, p.id))

    def vectors_of(self, passages: list[Passage]) -> np.ndarray:
        if not passages:
            return np.zeros((0, self.profile.dimension), dtype=np.float32)
        found: dict[str, list[float]] = {}
        with self._engine_errors():
            for ids in _chunks([p.id for p in passages], WRITE_BATCH):
                for row in self.client.get(self.collection, ids=ids, output_fields=["id", "vector"]):
                    found[row["id"]] = row["vector"]
        missing = [p.id for p in passages if p.id not in found]
        if missing:
            raise CorruptIndexError(f"{len(missing)} passage(s) have no row in {self.location}: {missing[:3]}")
        return np.asarray([found[p.id] for p in passages], dtype=np.float32)

    def verify(self) -> None:
        """The manifest in the engine is this store's, and every document's rows are complete,
        with none left over (staged updates aside)."""
        with self._engine_errors():
            saved = self._manifest_documents() if self._persisted else {}
            damaged, stale = _diagnose(saved, self._row_counts())
        mine = {p: r for p, r in self.documents.items() if p not in self._staged}
        if damaged or stale or saved != mine:
            what = (f"documents with missing or extra rows: {damaged[:3]}" if damaged else
                    f"rows the manifest does not name: {sorted(stale)[:3]}" if stale else
                    "the manifest in Milvus differs from the one loaded")
            raise CorruptIndexError(f"{self.location}: {what}")

    def disk_version(self) -> int | None:
        """The generation the manifest names (read at most once a second)."""
        checked_at, version = self._version
        if time.monotonic() - checked_at < VERSION_CHECK_S:
            return version
        with self._engine_errors():
            row = self._profile_row()
        version = int(row.get("generation", 0)) if row else None
        self._version = (time.monotonic(), version)
        return version

    # -- updates -------------------------------------------------------------------------------
    def add_document(self, path: str, record: DocumentRecord, passages: list[Passage], vectors: np.ndarray) -> None:
        keep = [i for i, p in enumerate(passages) if len(p.text.encode("utf-8", "surrogatepass")) <= TEXT_MAX_BYTES]
        if len(keep) < len(passages):
            logger.warning("%s: %d passage(s) longer than %d bytes are not indexed in Milvus", path,
                           len(passages) - len(keep), TEXT_MAX_BYTES)
            passages, vectors = [passages[i] for i in keep], vectors[keep]
            record = DocumentRecord(record.content_hash, len(passages), record.chars)
        self._staged_removals.discard(path)
        replaced = self._staged.get(path)
        self._staged_passages += len(passages) - (len(replaced[1]) if replaced else 0)
        self._staged[path] = (record, passages, np.asarray(vectors, dtype=np.float32))
        self.documents[path] = record
        self._manifest_changed()
        if self._staged_passages >= FLUSH_PASSAGES:
            with self._engine_errors():
                self._flush()

    def remove_documents(self, paths: set[str]) -> None:
        for path in paths:
            dropped = self._staged.pop(path, None)
            self._staged_passages -= len(dropped[1]) if dropped else 0
            self.documents.pop(path, None)
        self._staged_removals |= set(paths)
        self._manifest_changed()

    def save(self) -> None:
        """Write staged updates, delete leftovers of earlier crashes, then bump the generation."""
        with self._engine_errors():
            self._flush()
            self._delete_leftovers()
            self.generation = max(self.generation, self._stored_generation()) + 1
            self._write_profile()
        self._persisted = True
        self._version = (0.0, None)
        self._manifest_changed()
        self._record_location()

    def _record_location(self) -> None:
        """Leave store.json in the index folder: where this index lives (never the token), and
        the documents folder it follows."""

        folder = Path(self.settings.index_dir)
        uri = os.path.abspath(self.uri) if is_lite(self.uri) else self.uri
        data = {"vector_store": "milvus", "milvus_uri": uri, "milvus_collection": self.collection}
        if self.corpus_dir:
            data.update(corpus_dir=self.corpus_dir,
                        corpus_dir_from_index=os.path.relpath(self.corpus_dir, os.path.abspath(folder)))
        target = folder / STORE_FILE
        try:
            if json.loads(target.read_text(encoding="utf-8")) == data:
                return
        except (OSError, ValueError):
            pass
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")

    def tidy(self) -> None:
        with self._engine_errors():
            self._delete_leftovers()

    def write_lock(self) -> contextlib.AbstractContextManager[None]:
        """Writers on this machine take the index folder's lock; writers on several machines must
        not sync one collection at the same time (run one `qa index`)."""
        return write_lock(Path(self.settings.index_dir))

    # -- writing -------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Removals (manifest row, then rows), then staged documents (rows, stale rows, manifest row)."""
        if not self._persisted:
            self._write_profile()  # before any row, so rows never outlive an unknown profile
        removals = sorted(self._staged_removals)
        if removals:
            self._write("delete manifest rows", self.client.delete, self.manifest_collection,
                        ids=[DOC_PREFIX + p for p in removals])
            for chunk in _chunks(removals, 64):
                self._write("delete passage rows", self.client.delete, self.collection,
                            filter=f"document in [{', '.join(map(_literal, chunk))}]")
            self._row_documents -= set(removals)
            self._staged_removals.clear()
        if not self._staged:
            return
        staged = list(self._staged.items())
        fresh = [(path, item) for path, item in staged if path not in self._row_documents]
        known = [(path, item) for path, item in staged if path in self._row_documents]
        self._write_rows(self.client.insert, fresh)
        self._write_rows(self.client.upsert, known)
        for path, (_, passages, _) in known:  # rows of the old version that the new one does not have
            ids = ", ".join(_literal(p.id) for p in passages)
            self._write("delete stale rows", self.client.delete, self.collection,
                        filter=f"document == {_literal(path)} and id not in [{ids}]")
            self._stale_rows.pop(path, None)
        records = [{"key": DOC_PREFIX + path, "content_hash": rec.content_hash, "passages": rec.passages,
                    "chars": rec.chars, "data": "", "vector": [0.0, 0.0]} for path, (rec, _, _) in staged]
        for chunk in _chunks(records, WRITE_BATCH):
            self._write("write manifest rows", self.client.upsert, self.manifest_collection, chunk)
        self._row_documents |= {path for path, _ in staged}
        self._staged.clear()
        self._staged_passages = 0

    def _write_rows(self, method: Any, items: list[tuple[str, _Staged]]) -> None:
        rows = (
            {"id": p.id, "document": p.document, "content_hash": rec.content_hash, "start": p.start, "end": p.end,
             "page": p.page or 0, "text": p.text, "vector": vectors[i]}
            for _, (rec, passages, vectors) in items for i, p in enumerate(passages)
        )
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == WRITE_BATCH:
                self._write("write passage rows", method, self.collection, batch)
                batch = []
        if batch:
            self._write("write passage rows", method, self.collection, batch)

    def _delete_leftovers(self) -> None:
        """Rows of documents the manifest does not hold, and rows of superseded content."""
        orphans = sorted(self._row_documents - set(self.documents) - set(self._staged))
        for chunk in _chunks(orphans, 64):
            self._write("delete orphan rows", self.client.delete, self.collection,
                        filter=f"document in [{', '.join(map(_literal, chunk))}]")
        self._row_documents -= set(orphans)
        for path, hashes in sorted(self._stale_rows.items()):
            if path in self.documents:
                self._write("delete stale rows", self.client.delete, self.collection,
                            filter=f"document == {_literal(path)} and content_hash in "
                                   f"[{', '.join(map(_literal, sorted(hashes)))}]")
        self._stale_rows.clear()

    def _stored_generation(self) -> int:
        row = self._profile_row()
        return int(row.get("generation", 0)) if row else 0

    def _write_profile(self) -> None:
        data = json.dumps({"profile": asdict(self.profile), "generation": self.generation,
                           "format": "qa-offline milvus 1"})
        self._write("write profile", self.client.upsert, self.manifest_collection,
                    [{"key": PROFILE_KEY, "content_hash": "", "passages": 0, "chars": 0, "data": data,
                      "vector": [0.0, 0.0]}])
        self._persisted = True

    def _write(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Every change to the engine goes through here (the crash tests kill the writer here)."""
        logger.debug("%s: %s", self.location, what)
        return method(*args, **kwargs)

    def _iterate(self, collection: str, expr: str, fields: list[str]) -> Iterable[dict[str, Any]]:
        iterator = self.client.query_iterator(collection, batch_size=ITERATOR_BATCH, filter=expr,
                                              output_fields=fields)
        try:
            while batch := iterator.next():
                yield from batch
        finally:
            iterator.close()

    @contextlib.contextmanager
    def _engine_errors(self) -> Iterator[None]:
        """Milvus failures as StoreUnavailableError naming QA_MILVUS_URI."""
        from pymilvus import MilvusException

        try:
            yield
        except MilvusException as exc:
            raise StoreUnavailableError(
                f"Milvus at QA_MILVUS_URI={self.uri} failed ({_message(exc)}); check that it is running and "
                f"reachable, and that the collection {self.collection!r} (QA_MILVUS_COLLECTION) is healthy"
            ) from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _diagnose(documents: dict[str, DocumentRecord],
              counts: Counter[tuple[str, str]]) -> tuple[list[str], dict[str, set[str]]]:
    """Documents whose rows do not match their manifest record (count of rows with its content
    hash), and per other document the content hashes of rows the manifest does not name."""
    damaged = sorted(path for path, rec in documents.items()
                     if rec.passages and counts.get((path, rec.content_hash), 0) != rec.passages)
    stale: dict[str, set[str]] = {}
    for doc, digest in counts:
        record = documents.get(doc)
        if doc not in damaged and (record is None or record.content_hash != digest):
            stale.setdefault(doc, set()).add(digest)
    return damaged, stale


def _function_type(function: Any) -> str:
    kind = function.get("type") if isinstance(function, dict) else getattr(function, "type", None)
    return getattr(kind, "name", str(kind)).upper()


__all__ = ["MilvusStore", "is_lite", "milvus_uri", "release"]
