"""Remember the files an index left out, so an unchanged one is not read again on every update.

A file skipped for what it holds (a PDF over the reading budget, a scan without text, a binary
named .txt) would cost its whole budget again at every sync, and a server restarted after a
hostile upload would read it again before it is ready. `skipped.json` beside the index keeps each
such file's content hash, the reason and the reading budget it was read under; a sync reads the
file again only when one of them changes, or when the file leaves the folder. Skips found while
listing the folder (a link out of it, a FIFO, a folder that cannot be read) cost nothing to find
again and are not kept. The file is advisory: losing it costs one more read of each skipped file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from qa.store import atomic_path

logger = logging.getLogger(__name__)

SKIPPED_FILE = "skipped.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SkipRecord:
    """Why a file with these bytes was left out, under which reading budget (`ReadBudget.key`)."""

    content_hash: str
    reason: str
    budget: str


def load_skips(index_dir: str | Path) -> dict[str, SkipRecord]:
    """The skip records saved beside the index in `index_dir` (none when missing or unreadable)."""
    path = Path(index_dir) / SKIPPED_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        files = saved["files"] if saved.get("format_version") == FORMAT_VERSION else {}
        return {str(doc): SkipRecord(str(rec["content_hash"]), str(rec["reason"]), str(rec["budget"]))
                for doc, rec in files.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("ignoring %s (skipped files will be read again): %s", path, exc)
        return {}


def save_skips(index_dir: str | Path, records: dict[str, SkipRecord]) -> None:
    """Replace the saved skip records atomically (call with the index's write lock held)."""
    path = Path(index_dir) / SKIPPED_FILE
    if not records:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format_version": FORMAT_VERSION,
            "files": {doc: asdict(rec) for doc, rec in sorted(records.items())}}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
