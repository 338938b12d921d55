"""Accuracy of each configuration: reader F1/EM on held-out questions, the dense top-10 it
retrieves, and how often its answers agree with the baseline configuration's."""

from __future__ import annotations

from harness import DATA_DIR


def worker_accuracy(args: dict) -> dict:
    """Reader F1 on held-out questions; dense top-10 of this configuration on a native index."""
    from qa.config import Settings
    from qa.indexing import profile_for
    from qa.pipeline import Engine
    from qa.store import IndexStore
    from qa.training.calibrate import predict
    from qa.training.data import load_squad

    engine = Engine(Settings.load(corpus_dir=args["corpus"], index_dir=args["index"]))
    examples = load_squad(DATA_DIR / "dev" / "nq_qed_dev.json.gz")
    examples = [e for e in examples if e.answers][: args["n_dev"]]
    preds, seconds_per_window = predict(engine.reader, examples, progress=False)
    out = {
        "dev_n": len(preds),
        "f1": 100 * sum(p.f1 for p in preds) / len(preds),
        "em": 100 * sum(p.em for p in preds) / len(preds),
        "dev_texts": [p.text for p in preds],
        "windows_per_s_dev": 1 / seconds_per_window,
    }
    s = engine.settings
    store = IndexStore.load(s.index_dir, profile_for(s, engine.embedder))
    qv = engine.embedder.encode(args["questions"])
    out["dense_top10"] = [[store.passages[p].id for p, _ in row] for row in store.search(qv, 10)]
    return out


def answer_agreement(a: dict, b: dict) -> float:
    """Share of questions whose best span (the answer, or the best suppressed one) is the same text."""
    pairs = list(zip(a["answers"], b["answers"]))
    return sum(x["best"] == y["best"] for x, y in pairs) / len(pairs)
