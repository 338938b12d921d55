"""Which documents folder an index follows: the one it records, one given explicitly, or seeds/.

Every sync records the absolute path of its folder with the index (FAISS: manifest.json; Milvus:
the index folder's store.json, since index folders of other documents folders may share one
collection). Asked with no folder, from any working directory, an index keeps following the
folder it records, and `DEFAULT_CORPUS_DIR` applies only to an index that records none: a new
one, or one built before indexes recorded theirs. A folder given explicitly (`corpus_dir=`,
`--corpus-dir`, `QA_CORPUS_DIR`, `qa index FOLDER`) that is not the recorded one becomes the
index's folder: the sync says how many documents of the old one leave it, and the engine carries
the chat's uploads over first, so they stay. While the recorded folder is missing, the index is
answered from as it is, unless a folder lies where it lay relative to the index folder (the whole
project was moved): then the index follows it there.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from qa.config import DEFAULT_CORPUS_DIR, Settings
from qa.documents import DEFAULT_MAX_BYTES, SUPPORTED_SUFFIXES
from qa.vector_store import VectorStore

logger = logging.getLogger(__name__)

#: How a sync's folder was chosen: given explicitly, recorded by the index, the default for an
#: index that records none, assumed for an index from before records (it holds documents of the
#: default folder), or none at all (such an index holds documents of another folder).
GIVEN, RECORDED, DEFAULT, ASSUMED, NONE = "given", "recorded", "default", "assumed", "none"
#: The recorded folder is gone, but one lies where it lay relative to the index folder: the
#: project (index and documents together) was moved, and the index follows it there.
MOVED = "moved"
#: The chat's uploads live in this subfolder of the documents folder (unless QA_UPLOAD_DIR).
UPLOADS = "uploads"


@dataclass(frozen=True)
class CorpusFolder:
    """The documents folder an index is synced with, and how it was chosen."""

    #: Absolute; None when the index follows no folder (`NONE`) and is served as it is.
    path: Path | None
    how: str
    #: The folder the index recorded before this sync (None: it records none).
    recorded: Path | None = None

    @property
    def switching(self) -> bool:
        """A folder was given that is not the one the index followed: the index follows it now."""
        return self.path is not None and self.recorded is not None and not same_folder(self.path, self.recorded)

    @property
    def own(self) -> bool:
        """The index's own folder (recorded, or assumed for an old index): while it is missing or
        unreadable the index is answered from as it is, instead of being refused or emptied."""
        return self.path is not None and (self.how in (RECORDED, ASSUMED, MOVED)
                                          or (self.how == GIVEN and self.recorded is not None and not self.switching))


def choose_folder(settings: Settings, store: VectorStore) -> CorpusFolder:
    """The folder to sync `store` with: the one given, else the one it records, else the default
    (for an index from before records, only if it holds documents of the default folder: one
    built from another folder is better served as it is than emptied)."""
    recorded = Path(store.corpus_dir) if store.corpus_dir else None
    if settings.corpus_dir:
        return CorpusFolder(absolute(settings.corpus_dir), GIVEN, recorded)
    if recorded is not None:
        moved = moved_with_index(settings.index_dir, recorded)
        return CorpusFolder(moved, MOVED, recorded) if moved else CorpusFolder(recorded, RECORDED, recorded)
    default = absolute(DEFAULT_CORPUS_DIR)
    if not len(store):
        return CorpusFolder(default, DEFAULT)
    if any(path.startswith(default.name + "/") for path in store.documents):
        return CorpusFolder(default, ASSUMED)
    return CorpusFolder(None, NONE)


def moved_with_index(index_dir: str | Path, recorded: Path) -> Path | None:
    """When the recorded folder does not exist, the folder at the same place relative to the
    index folder as when it was recorded (a moved project), if there is one; else None."""
    if folder_problem(recorded) != "does not exist":
        return None
    for name in ("store.json", "manifest.json"):  # a Milvus index folder's note (FAISS saves delete it), or
        try:                                        # the FAISS manifest
            relative = json.loads((Path(index_dir) / name).read_text(encoding="utf-8")).get("corpus_dir_from_index")
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(relative, str) or not relative or os.path.isabs(relative):
            return None
        candidate = absolute(os.path.normpath(os.path.join(absolute(index_dir), relative)))
        return candidate if candidate != recorded and not folder_problem(candidate) else None
    return None


def absolute(folder: str | Path) -> Path:
    """`folder` as an absolute path (~ expanded, symbolic links kept as given)."""
    return Path(os.path.abspath(os.path.expanduser(folder)))


def same_folder(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def folder_problem(folder: Path) -> str:
    """Why `folder` cannot be listed ("does not exist", "is not a folder", "cannot be read (...)"),
    or "" when it can."""
    try:
        with os.scandir(folder):
            return ""
    except FileNotFoundError:
        return "does not exist"
    except NotADirectoryError:
        return "is not a folder"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"


def document_prefix(folder: Path) -> str:
    """How the paths of a folder's documents start: "seeds/" for a folder named seeds."""
    return folder.name + "/"


def carry_uploads(previous: Path, current: Path) -> list[Path]:
    """Copy the chat's uploads from the folder an index followed into the one it follows now, so
    they stay in the index; a file with the same bytes already there is not copied twice.
    Returns where they are now; what cannot be copied is logged with the reason."""
    from qa.uploads import save_upload

    source, target = previous / UPLOADS, current / UPLOADS
    if folder_problem(current) or same_folder(source, target):
        return []  # never create a folder that is not there (a typo, a disk not mounted)
    try:
        files = sorted(p for p in source.iterdir() if not p.name.startswith(".")
                       and p.suffix.lower() in SUPPORTED_SUFFIXES and p.is_file())
    except OSError:
        return []  # no uploads there, or the old folder is gone: the sync says what leaves the index
    carried, failed = [], []
    for path in files:
        try:
            if path.stat().st_size > DEFAULT_MAX_BYTES:  # the indexer skips it anyway: never read it whole
                raise ValueError("too large to index")
            data = path.read_bytes()
            carried.append(save_upload(data, path.name, target, max_bytes=len(data)))
        except (OSError, ValueError) as exc:  # UploadError is a ValueError
            failed.append(f"{path.name} ({exc})")
    if carried:
        logger.info("carried %d upload(s) from %s into %s, so they stay in the index", len(carried), source, target)
    if failed:
        logger.warning("could not carry %d upload(s) from %s into %s, so they leave the index: %s",
                       len(failed), source, target, "; ".join(failed[:5]))
    return carried


__all__ = ["CorpusFolder", "absolute", "carry_uploads", "choose_folder", "folder_problem", "moved_with_index",
           "same_folder"]
