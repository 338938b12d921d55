"""Index build throughput: the real `build_index()` in a fresh process, or an index assembled
from cached vectors for the sizes no configuration builds itself (latency does not depend on
the vector values)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from harness import current_rss_mb, log, peak_rss_mb, text_key
from vector_cache import cache_path, harvest, load_cache, save_cache


def worker_build(args: dict) -> dict:
    """The real build_index() on a folder; model loading is timed apart."""
    from qa.config import Settings
    from qa.pipeline import Engine

    started = time.perf_counter()
    engine = Engine(Settings.load(corpus_dir=args["corpus"], index_dir=args["index"]))
    engine.embedder.load()  # the model loaded outside the timed build
    loaded = time.perf_counter() - started
    rss_before = current_rss_mb()
    report = engine.ensure_index(progress=False)
    if args.get("harvest"):
        harvest(engine.store, Path(args["work"]), engine.embedder.name)
    return {
        "passages": report.passages,
        "documents": report.documents,
        "seconds": report.seconds,
        "passages_per_s": report.passages / report.seconds,
        "model_load_s": loaded,
        "rss_after_load_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "embedder": engine.embedder.name,
    }


def worker_assemble(args: dict) -> dict:
    """An index built directly from cached vectors (embedding only what no cache holds)."""
    import numpy as np

    from qa.config import Settings
    from qa.documents import list_corpus_files, load_document
    from qa.indexing import file_hash, profile_for
    from qa.passages import split_passages
    from qa.pipeline import Engine
    from qa.store import DocumentRecord, IndexStore

    work = Path(args["work"])
    settings = Settings.load(corpus_dir=args["corpus"], index_dir=args["index"])
    engine = Engine(settings)
    embedder = engine.embedder
    own_path = cache_path(work, embedder.name)
    own = load_cache(own_path)
    others = {}
    if args.get("reuse"):
        for path in sorted((work / "vectors").glob("*.npz")):
            if path != own_path:
                for k, v in load_cache(path).items():
                    others.setdefault(k, v)
    corpus = Path(settings.corpus_dir)
    docs = []
    for path in list_corpus_files(corpus):
        doc = load_document(path, corpus)
        docs.append((doc, split_passages(doc, settings.passage_words, settings.passage_overlap_words), file_hash(path)))
    missing = sorted({p.text for _, ps, _ in docs for p in ps if text_key(p.text) not in own and text_key(p.text) not in others})
    embed_s = 0.0
    if missing:
        log(f"assemble: embedding {len(missing)} passages with {embedder.name}")
        t = time.perf_counter()
        vectors = embedder.encode(missing, progress=False)
        embed_s = time.perf_counter() - t
        for text, v in zip(missing, vectors):
            own[text_key(text)] = v
        save_cache(own_path, own)
    sources = {"own": 0, "other": 0}
    store = IndexStore(Path(settings.index_dir), profile_for(settings, embedder))
    if (Path(settings.index_dir) / "manifest.json").exists():
        shutil.rmtree(settings.index_dir)
    t = time.perf_counter()
    for doc, passages, digest in docs:
        rows = []
        for p in passages:
            k = text_key(p.text)
            if k in own:
                rows.append(own[k])
                sources["own"] += 1
            else:
                rows.append(others[k])
                sources["other"] += 1
        store.add_document(doc.path, DocumentRecord(digest, len(passages), len(doc.text)),
                           passages, np.stack(rows).astype(np.float32))
    store.save()
    return {
        "passages": len(store.passages),
        "embedded": len(missing),
        "embed_s": embed_s,
        "embed_passages_per_s": len(missing) / embed_s if embed_s else None,
        "assemble_s": time.perf_counter() - t,
        "vector_sources": sources,
        "embedder": embedder.name,
        "peak_rss_mb": peak_rss_mb(),
    }
