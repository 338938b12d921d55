"""ANN: recall@10 of an HNSW index against exact flat search on the same vectors, and both
search latencies."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from harness import peak_rss_mb


def worker_ann(args: dict) -> dict:
    """HNSW vs exact flat search on the vectors of an existing flat index."""
    import numpy as np

    from qa.config import Settings
    from qa.indexing import profile_for
    from qa.pipeline import Engine
    from qa.store import IndexStore

    settings = Settings.load(corpus_dir=args["corpus"], index_dir=args["index"])
    engine = Engine(settings)
    flat = IndexStore.load(settings.index_dir, profile_for(settings, engine.embedder))
    hnsw_settings = settings.replace(index_type="hnsw", index_dir=args["hnsw_index"])
    vectors = flat.vectors_of(flat.passages)
    hnsw = IndexStore(Path(hnsw_settings.index_dir), profile_for(hnsw_settings, engine.embedder))
    t = time.perf_counter()
    by_doc: dict[str, list[int]] = {}
    for i, p in enumerate(flat.passages):
        by_doc.setdefault(p.document, []).append(i)
    for doc, idx in by_doc.items():
        hnsw._add([flat.passages[i] for i in idx], vectors[idx])
        hnsw.documents[doc] = flat.documents[doc]
    build_s = time.perf_counter() - t
    hnsw.save()
    qv = engine.embedder.encode(args["questions"])
    recalls, ft, ht = [], [], []
    for v in qv:
        t = time.perf_counter()
        exact = flat.search(v[None, :], 10)[0]
        ft.append(time.perf_counter() - t)
        t = time.perf_counter()
        approx = hnsw.search(v[None, :], 10)[0]
        ht.append(time.perf_counter() - t)
        e = {flat.passages[p].id for p, _ in exact}
        recalls.append(len(e & {hnsw.passages[p].id for p, _ in approx}) / 10)
    for v in qv[:5]:  # k=50, what retrieval asks for
        hnsw.search(v[None, :], 50)
    t = time.perf_counter()
    for v in qv:
        hnsw.search(v[None, :], 50)
    h50 = (time.perf_counter() - t) / len(qv)
    t = time.perf_counter()
    for v in qv:
        flat.search(v[None, :], 50)
    f50 = (time.perf_counter() - t) / len(qv)
    return {
        "passages": len(flat.passages),
        "queries": len(qv),
        "recall_at_10": float(np.mean(recalls)),
        "hnsw_build_s": build_s,
        "flat_ms_k10": statistics.median(ft) * 1000,
        "hnsw_ms_k10": statistics.median(ht) * 1000,
        "flat_ms_k50": f50 * 1000,
        "hnsw_ms_k50": h50 * 1000,
        "peak_rss_mb": peak_rss_mb(),
    }
