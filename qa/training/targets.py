"""Teacher targets on disk: top-k start/end logits per training window, in shards.

Written by `qa teacher-targets` (qa.training.teacher), read by `qa train-reader --teacher`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class TeacherTargets:
    """Top-k start/end positions (student token positions) and teacher logits, per window."""

    start_positions: np.ndarray  # (n, k) int16
    start_logits: np.ndarray  # (n, k) float16
    end_positions: np.ndarray
    end_logits: np.ndarray


def shard_path(folder: Path, shard: int) -> Path:
    return folder / f"shard-{shard:05d}.npz"


def load_targets(folder: str | Path, n_windows: int, top: int) -> TeacherTargets | None:
    """All finished shards as arrays over every window (rows without a target have position -1)."""
    folder = Path(folder).expanduser()
    shards = sorted(folder.glob("shard-*[0-9].npz"))
    if not shards:
        return None
    targets = TeacherTargets(np.full((n_windows, top), -1, np.int16), np.full((n_windows, top), -np.inf, np.float16),
                             np.full((n_windows, top), -1, np.int16), np.full((n_windows, top), -np.inf, np.float16))
    for path in shards:
        with np.load(path) as shard:
            idx = shard["indices"]
            for name in ("start_positions", "start_logits", "end_positions", "end_logits"):
                getattr(targets, name)[idx] = shard[name][:, :top]
    return targets
