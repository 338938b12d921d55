"""answer() latency after warm-up (retrieval and reading apart), peak memory while serving, and
reader throughput (windows/s) inside answer() and at a full batch."""

from __future__ import annotations

import time

from baselines import compare_with_baselines
from harness import current_rss_mb, pct, peak_rss_mb


def worker_serve(args: dict) -> dict:
    """Load an existing index, then time answer() and the baselines."""
    import numpy as np

    from qa.config import Settings
    from qa.pipeline import Engine

    t0 = time.perf_counter()
    engine = Engine(Settings.load(corpus_dir=args["corpus"], index_dir=args["index"],
                                  index_type=args.get("index_type")))
    engine.reader  # noqa: B018
    engine.embedder.load()
    models_s = time.perf_counter() - t0
    report = engine.ensure_index(progress=False)
    load_s = time.perf_counter() - t0
    if report.added or report.changed:
        raise RuntimeError(f"serve: the index was not up to date ({len(report.added)} added)")
    rss_loaded = current_rss_mb()
    questions = args["questions"]
    for q in questions[: args.get("warmup", 3)]:
        engine.answer(q)
    rows = []
    windows = skimmed = 0
    for q in questions:
        a = engine.answer(q)
        windows += sum(engine.reader.count_windows(q, a.hits[i].passage.text) for i in a.passages_read)
        screener = engine.screener_for(passages=len(a.hits))
        if screener is not None:
            skimmed += sum(screener.count_windows(q, h.passage.text) for h in a.hits)
        rows.append({
            "q": q, "text": a.text, "source": a.source, "start": a.start, "score": a.score,
            "best": (a.alternatives[0].text if not a.text and a.alternatives else a.text),
            "hits": [h.passage.id for h in a.hits], "passages_read": a.passages_read,
            **{k: a.timings[k] for k in ("retrieve", "read", "total")},
        })
    out = {
        "n": len(rows),
        "passages": len(engine.store.passages),
        "models_load_s": models_s,
        "load_s": load_s,
        "rss_loaded_mb": rss_loaded,
        "answers": rows,
        "windows_per_s_answer": windows / sum(r["read"] for r in rows),
        "windows_per_question": windows / len(rows),
        "skimmed_windows_per_question": skimmed / len(rows),
    }
    for part in ("retrieve", "read", "total"):
        values = [r[part] * 1000 for r in rows]
        out[f"{part}_p50"], out[f"{part}_p95"] = pct(values, 0.5), pct(values, 0.95)

    out["peak_rss_answer_mb"] = peak_rss_mb()
    # Reader throughput at a full batch of full windows: one question against 32 texts of three
    # passages each, so that (nearly) every window holds 256 tokens, as the per-window limits assume.
    store = engine.store
    picked = store.passages[:: max(1, len(store.passages) // 96)][:96]
    texts = [" ".join(p.text for p in picked[i : i + 3]) for i in range(0, len(picked), 3)][:32]
    engine.reader.read(questions[0], texts)
    n_windows = sum(engine.reader.count_windows(questions[0], t) for t in texts)
    t = time.perf_counter()
    reps = 2
    for _ in range(reps):
        engine.reader.read(questions[0], texts)
    out["windows_per_s_batch"] = reps * n_windows / (time.perf_counter() - t)

    if args.get("baselines"):
        out.update(compare_with_baselines(engine, rows[: args.get("baseline_n", 20)], np))
    out["peak_rss_mb"] = peak_rss_mb()
    return out
