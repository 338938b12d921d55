"""What an index holds, in one line: its documents folder, documents and passages, embedder, store
and reader.

`qa index --status` reads it from disk without loading a model; the chat's status bar shows the
same line for the index it serves (`Engine.status()`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from qa.config import Settings
from qa.folders import UPLOADS, absolute, folder_problem, moved_with_index
from qa.store import MANIFEST, STORE_FILE, CorruptIndexError, recorded_folder
from qa.vector_store import resolve_store


@dataclass(frozen=True)
class IndexStatus:
    """An index as a person asks about it."""

    index_dir: str
    #: The documents folder the index follows (absolute); "" when it records none.
    folder: str
    #: Why that folder cannot be read now ("does not exist", ...), or "".
    folder_problem: str
    documents: int
    uploaded: int
    passages: int
    embedder: str
    store: str
    reader: str

    def line(self) -> str:
        """"2 documents, 5 passages from /home/me/docs · embedder … · FAISS flat index in … · reader accurate"."""
        documents = _plural(self.documents, "document") + (f" ({self.uploaded} uploaded)" if self.uploaded else "")
        if not self.folder:
            source = "(no documents folder recorded: answering from the index as it is)"
        elif self.folder_problem:
            source = f"from {self.folder} ({self.folder_problem}: answering from the index as it is)"
        else:
            source = f"from {self.folder}"
        return (f"{documents}, {_plural(self.passages, 'passage')} {source} · embedder {self.embedder} · "
                f"{self.store} · reader {self.reader}")


def status_of(settings: Settings, folder: Path | None, documents: Iterable[str], passages: int, embedder: str,
              index_type: str) -> IndexStatus:
    """The status line's facts for an index that follows `folder` and holds `documents`."""
    documents = list(documents)
    prefix = upload_prefix(settings, folder)
    return IndexStatus(
        index_dir=str(absolute(settings.index_dir)),
        folder=str(folder) if folder else "",
        folder_problem=folder_problem(folder) if folder else "",
        documents=len(documents),
        uploaded=sum(1 for path in documents if prefix and path.startswith(prefix)),
        passages=passages,
        embedder=embedder,
        store=describe_store(settings, index_type),
        reader=describe_reader(settings),
    )


def read_status(settings: Settings) -> IndexStatus | None:
    """The status of the index in `settings.index_dir` as saved (None when there is none), read
    without loading a model; IndexError_ or StoreUnavailableError when it cannot be read."""
    settings = resolve_store(settings)
    if settings.vector_store == "milvus":
        from qa.milvus_store import MilvusStore

        profile, records = MilvusStore.saved(settings)
        if not profile:
            return None
        folder = recorded_folder(_read_json(Path(settings.index_dir) / STORE_FILE))
        documents, passages = list(records), sum(record.passages for record in records.values())
    else:
        path = Path(settings.index_dir) / MANIFEST
        if not path.exists():
            return None
        manifest = _read_json(path)
        try:
            profile, documents = manifest["profile"], list(manifest["documents"])
            passages = int(manifest["counts"]["passages"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptIndexError(f"unreadable manifest in {settings.index_dir} ({exc}): `qa index` rebuilds it") from None
        folder = recorded_folder(manifest)
    folder_path = Path(folder) if folder else None
    if folder_path is not None:  # a moved project: the next sync follows the folder there
        folder_path = moved_with_index(settings.index_dir, folder_path) or folder_path
    return status_of(settings, folder_path, documents, passages,
                     str(profile.get("embedding_model", "?")), str(profile.get("index_type", "flat")))


def upload_prefix(settings: Settings, folder: Path | None) -> str:
    """How the paths of uploaded documents start ("docs/uploads/"), or "" when uploads are not
    documents of the folder (none recorded, or QA_UPLOAD_DIR outside it)."""
    if folder is None:
        return ""
    uploads = absolute(settings.upload_dir) if settings.upload_dir else folder / UPLOADS
    try:
        return uploads.relative_to(folder.parent).as_posix().rstrip("/") + "/"
    except ValueError:
        return ""


def describe_store(settings: Settings, index_type: str) -> str:
    """"FAISS flat index in /abs/index" or "Milvus Lite /abs/milvus.db, collection qa_passages"."""
    settings = resolve_store(settings)
    if settings.vector_store == "milvus":
        from qa.milvus_store import is_lite, milvus_uri

        uri = milvus_uri(settings)
        where = f"Milvus Lite {os.path.abspath(uri)}" if is_lite(uri) else f"Milvus {uri}"
        return f"{where}, collection {settings.milvus_collection}"
    return f"FAISS {index_type} index in {absolute(settings.index_dir)}"


def describe_reader(settings: Settings) -> str:
    """The reader that answers: "accurate (screened by fast)", "fast", or a model's name."""
    if settings.reader_model:
        return settings.reader_model
    screened = settings.screen_with not in ("none", settings.reader)
    return settings.reader + (f" (screened by {settings.screen_with})" if screened else "")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    except ValueError as exc:
        raise CorruptIndexError(f"{path} is not valid JSON ({exc}): `qa index` rebuilds it") from None


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


__all__ = ["IndexStatus", "describe_reader", "describe_store", "read_status", "status_of", "upload_prefix"]
