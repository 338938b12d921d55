"""Passage vectors kept between sizes and runs (text sha1 -> vector), one file per embedder, so
that the large corpora are assembled rather than embedded again.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness import text_key


def cache_path(work: Path, embedder_name: str) -> Path:
    return work / "vectors" / (re.sub(r"[^A-Za-z0-9_.+-]", "_", embedder_name) + ".npz")


def load_cache(path: Path) -> dict:
    import numpy as np

    if not path.exists():
        return {}
    data = np.load(path, allow_pickle=False)
    return dict(zip(data["keys"].tolist(), data["vectors"]))


def save_cache(path: Path, cache: dict) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    keys = list(cache)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, keys=np.array(keys), vectors=np.stack([cache[k] for k in keys]).astype(np.float32))
    os.replace(tmp, path)


def harvest(store, work: Path, embedder_name: str) -> None:
    """Add the vectors of a built store to the embedder's cache."""
    from qa.store import faiss_id

    path = cache_path(work, embedder_name)
    cache = load_cache(path)
    before = len(cache)
    for p in store.passages:
        k = text_key(p.text)
        if k not in cache:
            cache[k] = store.faiss_index.reconstruct(faiss_id(p.id))
    if len(cache) > before:
        save_cache(path, cache)
