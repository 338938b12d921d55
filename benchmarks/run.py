"""Speed benchmark of the `qa` package on this machine; writes benchmarks/RESULTS.md.

    python benchmarks/run.py [--sizes 1000,10000,50000] [--quick] [--configs torch-fp32,fast,accurate]

What it measures, per configuration (a configuration is a backend and a quantisation, set
through QA_BACKEND / QA_QUANTIZE exactly as a user would):

* index build throughput (passages/s, model loading excluded) and peak RSS, each build in a
  fresh process, on the real `build_index()` over a folder of .txt files;
* `answer()` latency p50/p95 after warm-up, split into retrieval and reading, on the seed
  corpus and on corpora of about 1k / 10k / 50k passages (each served by a fresh process,
  whose peak RSS is reported);
* reader throughput (windows/s), inside answer() and with a full batch;
* baselines on the same passages and weights: the transformers question-answering pipeline
  reading the same top-k passages, and brute-force NumPy inner products for dense search;
* cold start: a new `python -c "from qa import answer; answer(...)"` to its first answer;
* ANN: recall@10 of an HNSW index against exact flat search, and its latency;
* accuracy: reader F1 on held-out questions and agreement of dense top-10 with the first
  configuration.

The corpora are the contexts of shared/data/qa/train/*.json.gz, one .txt file each, written to
a work folder outside the repository (default: $TMPDIR/qa-bench); passage vectors are cached
there between sizes and runs. The data holds ~14.5k distinct contexts (about 19k passages);
larger corpora are topped up with documents of real sentences drawn at random from those
contexts ("mixed" documents), which is stated in the results.

Each measurement runs in a child process (`run.py --worker KIND JSON`) so that peak memory and
start-up are per measurement. Timings are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_DIR = Path(os.environ.get("QA_BENCH_DATA", ROOT.parent / "shared" / "data" / "qa"))
if not (DATA_DIR / "train").is_dir():
    DATA_DIR = Path("/work/shared/data/qa")
SEEDS = ROOT / "seeds"
SEED_QUESTIONS = ROOT / "eval" / "seed_questions.jsonl"
RESULT_MARK = "@@RESULT@@ "

#: Each configuration is the environment a user would set. `default` is what an unconfigured
#: install runs (bf16 where the CPU has it, adaptive reading, the default reader); `accurate` and
#: `fast` the same with that reader (`accurate-unscreened`: without the fast reader screening for
#: the accurate one); `torch-fp32` the fast reader's path before bf16 and adaptive reading;
#: `accurate-*-int8` the accurate reader with its linear layers in int8 (adaptive reading kept),
#: as a user who trades some accuracy for speed would set it.
CONFIGS = {
    "default": {},
    "accurate": {"QA_READER": "accurate"},
    "accurate-unscreened": {"QA_READER": "accurate", "QA_SCREEN_WITH": "none"},
    "fast": {"QA_READER": "fast"},
    "torch-fp32": {"QA_READER": "fast", "QA_BACKEND": "torch", "QA_QUANTIZE": "none", "QA_PRECISION": "fp32",
                   "QA_READ_FIRST": "0"},
    "torch-bf16": {"QA_READER": "fast", "QA_BACKEND": "torch", "QA_QUANTIZE": "none", "QA_PRECISION": "bf16",
                   "QA_READ_FIRST": "0"},
    "torch-int8": {"QA_READER": "fast", "QA_BACKEND": "torch", "QA_QUANTIZE": "int8", "QA_READ_FIRST": "0"},
    "onnx-fp32": {"QA_READER": "fast", "QA_BACKEND": "onnx", "QA_QUANTIZE": "none", "QA_READ_FIRST": "0"},
    "onnx-int8": {"QA_READER": "fast", "QA_BACKEND": "onnx", "QA_QUANTIZE": "int8", "QA_READ_FIRST": "0"},
    "accurate-torch-int8": {"QA_READER": "accurate", "QA_BACKEND": "torch", "QA_QUANTIZE": "int8"},
    "accurate-onnx-int8": {"QA_READER": "accurate", "QA_BACKEND": "onnx", "QA_QUANTIZE": "int8"},
}
_QA_ENV = tuple(f"QA_{name}" for name in ("READER", "BACKEND", "QUANTIZE", "PRECISION", "READ_FIRST", "SCREEN_WITH"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------
# corpora
# ------------------------------------------------------------------------------------------
def load_contexts_and_questions() -> tuple[list[str], dict[str, list[tuple[str, list[str]]]]]:
    """Distinct contexts (stable shuffled order) and the answerable questions of each."""
    from qa.training.data import load_squad

    questions: dict[str, list[tuple[str, list[str]]]] = {}
    for path in sorted((DATA_DIR / "train").glob("*.json.gz")):
        for ex in load_squad(path):
            questions.setdefault(ex.context, [])
            if ex.answers:
                questions[ex.context].append((ex.question, [a for a, _ in ex.answers]))
    contexts = sorted(questions, key=text_key)
    return contexts, questions


def mixed_documents(contexts: list[str], count: int, seed: int = 7) -> list[str]:
    """Documents of ~140 words made of real sentences drawn at random from the contexts."""
    from qa.sentences import split_sentences

    rng = random.Random(seed)
    sentences = [c[s:e] for c in contexts for s, e in split_sentences(c) if 5 <= len(c[s:e].split()) <= 60]
    docs = []
    for _ in range(count):
        words, parts = 0, []
        while words < 140:
            s = sentences[rng.randrange(len(sentences))]
            parts.append(s)
            words += len(s.split())
        docs.append(" ".join(parts))
    return docs


def passages_in(text: str) -> int:
    from qa.passages import split_passages
    from qa.types import Document

    return len(split_passages(Document("x.txt", text, ""), 150, 40))


def prepare_corpora(work: Path, sizes: list[int], n_questions: int) -> dict:
    """Write corpus folders work/size-N/corpus (prefixes of one document list); pick questions."""
    meta_file = work / "corpora.json"
    key = {"sizes": sizes, "version": 2}
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if meta.get("key") == key and all((work / f"size-{n}" / "corpus").is_dir() for n in sizes):
            log("corpora: reusing " + ", ".join(f"{n}: {meta['docs'][str(n)]} docs" for n in sizes))
            return meta
    log("corpora: loading contexts")
    contexts, questions = load_contexts_and_questions()
    counts = [passages_in(c) for c in contexts]
    docs: list[tuple[str, str]] = []  # (kind, text)
    total = 0
    cut: dict[int, int] = {}
    biggest = max(sizes)
    i = 0
    while total < biggest and i < len(contexts):
        docs.append(("real", contexts[i]))
        total += counts[i]
        i += 1
        for n in sizes:
            if n not in cut and total >= n:
                cut[n] = len(docs)
    real_passages = total
    if total < biggest:
        extra = mixed_documents(contexts, int((biggest - total) / 1.05) + 50)
        for text in extra:
            docs.append(("mixed", text))
            total += passages_in(text)
            for n in sizes:
                if n not in cut and total >= n:
                    cut[n] = len(docs)
            if total >= biggest:
                break
    for n in sizes:
        cut.setdefault(n, len(docs))
    # Questions: answerable, from documents inside the smallest corpus, so every size holds them.
    smallest = min(cut.values())
    rng = random.Random(11)
    pool = [(q, a) for kind, text in docs[:smallest] if kind == "real" for q, a in questions[text]]
    rng.shuffle(pool)
    chosen = pool[:n_questions]
    for n in sizes:
        folder = work / f"size-{n}" / "corpus"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for j, (_, text) in enumerate(docs[: cut[n]]):
            (folder / f"doc{j:06d}.txt").write_text(text, encoding="utf-8")
    meta = {
        "key": key,
        "docs": {str(n): cut[n] for n in sizes},
        "mixed_docs": {str(n): sum(1 for k, _ in docs[: cut[n]] if k == "mixed") for n in sizes},
        "real_contexts": len(contexts),
        "real_passages": real_passages,
        "questions": chosen,
    }
    meta_file.write_text(json.dumps(meta))
    log("corpora: " + ", ".join(f"{n}: {cut[n]} docs" for n in sizes))
    return meta


# ------------------------------------------------------------------------------------------
# vector cache (text sha1 -> vector), one file per embedder
# ------------------------------------------------------------------------------------------
def _cache_path(work: Path, embedder_name: str) -> Path:
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

    path = _cache_path(work, embedder_name)
    cache = load_cache(path)
    before = len(cache)
    for p in store.passages:
        k = text_key(p.text)
        if k not in cache:
            cache[k] = store.faiss_index.reconstruct(faiss_id(p.id))
    if len(cache) > before:
        save_cache(path, cache)


# ------------------------------------------------------------------------------------------
# workers (run in a child process)
# ------------------------------------------------------------------------------------------
def worker_build(args: dict) -> dict:
    """The real build_index() on a folder; model loading is timed apart."""
    from qa.config import Settings
    from qa.pipeline import Engine

    started = time.perf_counter()
    engine = Engine(Settings.load(corpus_dir=args["corpus"], index_dir=args["index"]))
    engine.embedder  # noqa: B018 - load the model outside the timed build
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
    own_path = _cache_path(work, embedder.name)
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


def worker_serve(args: dict) -> dict:
    """Load an existing index, then time answer() and the baselines."""
    import numpy as np

    from qa.config import Settings
    from qa.pipeline import Engine

    t0 = time.perf_counter()
    engine = Engine(Settings.load(corpus_dir=args["corpus"], index_dir=args["index"],
                                  index_type=args.get("index_type")))
    engine.reader  # noqa: B018
    engine.embedder  # noqa: B018
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
        out.update(_baselines(engine, rows[: args.get("baseline_n", 20)], np))
    out["peak_rss_mb"] = peak_rss_mb()
    return out


class PipelineBaseline:
    """What `transformers.pipeline("question-answering")` did (transformers 4.x; 5.x removed that task).

    Per context: tokenise into windows without padding, one forward pass per window (the
    pipeline's default batch size of 1), softmax-normalise start/end over the context tokens,
    score every span by the outer product (`select_starts_ends`, still shipped in transformers'
    document-QA pipeline), keep the best span. `batch=True` puts all windows in one padded batch.
    The pipeline's own per-item overhead (ChunkPipeline, SquadExample) is left out, which
    flatters the baseline.
    """

    def __init__(self, model, tokenizer, max_seq_len: int, doc_stride: int, max_answer_len: int) -> None:
        import torch
        from transformers.pipelines.document_question_answering import (
            select_starts_ends,
        )

        self.torch, self.select = torch, select_starts_ends
        self.model, self.tokenizer = model, tokenizer
        self.max_seq_len, self.doc_stride, self.max_answer_len = max_seq_len, doc_stride, max_answer_len

    def __call__(self, question: str, contexts: list[str], batch: bool = False) -> tuple[str, float]:
        import numpy as np

        torch = self.torch
        windows = []  # (context index, encoding of one window)
        encs = []
        for ci, context in enumerate(contexts):
            enc = self.tokenizer(question, context, truncation="only_second", max_length=self.max_seq_len,
                                 stride=self.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                                 padding="longest" if batch else "do_not_pad")
            encs.append(enc)
            for w in range(len(enc["input_ids"])):
                windows.append((ci, w))
        logits = []
        with torch.inference_mode():
            if batch:
                big = self.tokenizer([question] * len(contexts), contexts, truncation="only_second",
                                     max_length=self.max_seq_len, stride=self.doc_stride,
                                     return_overflowing_tokens=True, padding="longest", return_tensors="pt")
                out = self.model(**{k: big[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in big})
                logits = [(out.start_logits[i].float().numpy(), out.end_logits[i].float().numpy())
                          for i in range(len(windows))]
            else:
                for ci, w in windows:
                    e = encs[ci]
                    out = self.model(**{k: torch.tensor([e[k][w]]) for k in ("input_ids", "attention_mask", "token_type_ids")
                                        if k in e})
                    logits.append((out.start_logits[0].float().numpy(), out.end_logits[0].float().numpy()))
        best = ("", -1.0)
        for (ci, w), (start, end) in zip(windows, logits):
            e = encs[ci]
            n = len(e["input_ids"][w])
            start, end = start[:n], end[:n]
            p_mask = np.array([0 if s == 1 else 1 for s in e.sequence_ids(w)])
            starts, ends, scores, _ = self.select(start[None], end[None], p_mask[None], np.ones((1, n), dtype=np.int64),
                                                  max_answer_len=self.max_answer_len)
            if len(scores) and float(scores[0]) > best[1]:
                offsets = e["offset_mapping"][w]
                best = (contexts[ci][offsets[starts[0]][0]: offsets[ends[0]][1]], float(scores[0]))
        return best


def _baselines(engine, rows: list[dict], np) -> dict:
    """The transformers QA pipeline vs our reader on the same passages; NumPy vs FAISS dense search."""
    from qa.store import faiss_id

    s = engine.settings
    store = engine.store
    by_id = {p.id: p for p in store.passages}
    pipe = PipelineBaseline(engine.reader.model, engine.reader.tokenizer, s.window_tokens, s.window_stride,
                            s.max_answer_tokens)
    ours, pipe1, pipek, agree = [], [], [], 0
    warm = [by_id[i].text for i in rows[0]["hits"]]
    pipe(rows[0]["q"], warm)
    pipe(rows[0]["q"], warm, batch=True)
    for r in rows:
        contexts = [by_id[i].text for i in r["hits"]]
        t = time.perf_counter()
        spans = engine.reader.read(r["q"], contexts)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        best_pipe, _ = pipe(r["q"], contexts)
        pipe1.append(time.perf_counter() - t)
        t = time.perf_counter()
        pipe(r["q"], contexts, batch=True)
        pipek.append(time.perf_counter() - t)
        best_ours = contexts[spans[0].text_index][spans[0].start : spans[0].end] if spans else ""
        agree += best_pipe.strip() == best_ours.strip()
    # Dense search: FAISS (the store) vs brute force NumPy on the same vectors.
    n = store.faiss_index.ntotal
    ids = faiss_id
    matrix = np.vstack([store.faiss_index.reconstruct(ids(p.id)) for p in store.passages]).astype(np.float32)
    qv = engine.embedder.encode([r["q"] for r in rows])
    k = max(s.retrieve_k, s.top_k)
    faiss_t, numpy_t, same = [], [], 0
    for v in qv:
        t = time.perf_counter()
        got = store.search(v[None, :], k)[0]
        faiss_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        scores = matrix @ v
        top = np.argpartition(-scores, min(k, n - 1))[:k] if n > k else np.arange(n)
        top = top[np.argsort(-scores[top])]
        numpy_t.append(time.perf_counter() - t)
        same += set(p for p, _ in got[:10]) == set(top[:10].tolist())
    med = statistics.median
    return {
        "pipe_bs1_ms": med(pipe1) * 1000,
        "pipe_bsk_ms": med(pipek) * 1000,
        "ours_read_ms": med(ours) * 1000,
        "pipe_agree": agree / len(rows),
        "faiss_ms": med(faiss_t) * 1000,
        "numpy_ms": med(numpy_t) * 1000,
        "dense_top10_same": same / len(rows),
        "baseline_n": len(rows),
    }


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


#: The matrix product timed as the machine's yardstick: one feed-forward layer of a 768-wide
#: encoder (MPNet, the accurate reader's base) over a 256-token window.
MATMUL_SHAPE = (256, 768, 3072)


def worker_matmul(args: dict) -> dict:
    """This machine's matrix-multiply throughput (GFLOP/s) in fp32 and, where native, bf16.

    Readers spend most of their time in such products (about 80% for the accurate one), so
    this figure says how fast a window can be here: it varies between days on a shared host
    by as much as the answer() timings do, and puts runs of different days on one scale.
    """
    import torch

    from qa import accel

    rows, inner, outer = MATMUL_SHAPE
    out = {"threads": torch.get_num_threads()}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if name == "bf16" and not accel.native_bf16():
            continue
        a, b = torch.randn(rows, inner, dtype=dtype), torch.randn(inner, outer, dtype=dtype)
        best = float("inf")
        with torch.inference_mode():
            for _ in range(5):
                torch.mm(a, b)
            for _ in range(5):  # the best of 5 rounds of 20: the machine's speed, not its hiccups
                started = time.perf_counter()
                for _ in range(20):
                    torch.mm(a, b)
                best = min(best, (time.perf_counter() - started) / 20)
        out[f"{name}_gflops"] = 2 * rows * inner * outer / best / 1e9
    return out


WORKERS = {"build": worker_build, "assemble": worker_assemble, "serve": worker_serve, "ann": worker_ann,
           "accuracy": worker_accuracy, "matmul": worker_matmul}


def config_environment(config: str) -> dict[str, str]:
    """This process's environment with the configuration's settings, and no stray ones from the caller."""
    env = {k: v for k, v in os.environ.items() if k not in _QA_ENV}
    return {**env, **CONFIGS[config]}


def run_worker(kind: str, args: dict, config: str, extra_env: dict | None = None, timeout: float = 3600) -> dict:
    env = {**config_environment(config), **(extra_env or {})}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(args)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - started
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {kind} ({config}) failed:\n{proc.stderr[-4000:]}")
    result = json.loads(lines[-1][len(RESULT_MARK):])
    result["wall_s"] = wall
    # ru_maxrss of the children, as the OS saw it (same as the child's own peak).
    return result


def cold_start(config: str, corpus: Path, index: Path, question: str, runs: int, env_extra: dict | None = None,
               warm_os_cache: bool = True) -> list[float]:
    """Seconds from spawning a fresh interpreter to its first answer (index already built)."""
    code = ("import time, sys; from qa import answer; "
            f"a = answer({question!r}, corpus_dir={str(corpus)!r}, index_dir={str(index)!r}); "
            "print('@@T', time.time(), repr(a.text))")
    env = {**config_environment(config), "TOKENIZERS_PARALLELISM": "false", **(env_extra or {})}
    times = []
    for i in range(runs + int(warm_os_cache)):
        started = time.time()
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
        line = next((out for out in proc.stdout.splitlines() if out.startswith("@@T")), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"cold start failed:\n{proc.stderr[-3000:]}")
        if i > 0 or not warm_os_cache:  # the first run only warms the OS file cache
            times.append(float(line.split()[1]) - started)
    return times


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------
def machine_description() -> dict:
    info = {"python": platform.python_version(), "cores": os.cpu_count()}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        info["cpu"] = re.search(r"model name\s*:\s*(.*)", cpu).group(1).strip()
        flags = re.search(r"flags\s*:\s*(.*)", cpu).group(1).split()
        info["simd"] = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16")
                                if f in flags)
    except (OSError, AttributeError):
        info["cpu"] = platform.processor()
    try:
        mem = Path("/proc/meminfo").read_text()
        info["ram_gb"] = round(int(re.search(r"MemTotal:\s*(\d+)", mem).group(1)) / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    from importlib import metadata

    for pkg in ("torch", "faiss-cpu", "transformers", "sentence-transformers", "onnxruntime", "bm25s"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    info["load_before_run"] = os.getloadavg()[0]
    return info


def fmt(x, digits=0) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    return f"{x:,.{digits}f}"


def _skimmed(serve: dict) -> str:
    """' (+ N)': the windows a screening reader skimmed per question, when one did."""
    skimmed = serve.get("skimmed_windows_per_question")
    return f" (+ {skimmed:.1f})" if skimmed else ""


def _machine_speed(m: dict) -> list[str]:
    """The header line on matrix-multiply throughput at the start and end of the run, if measured."""
    start, end = m.get("matmul_start"), m.get("matmul_end")
    if not start:
        return []
    rows, inner, outer = MATMUL_SHAPE

    def figures(r: dict) -> str:
        return " / ".join(f"{r[k]:.0f}" for k in ("fp32_gflops", "bf16_gflops") if k in r)

    kinds = " / ".join(k for k in ("fp32", "bf16") if f"{k}_gflops" in start)
    return [f"**Machine speed:** matrix products ({rows}x{inner} by {inner}x{outer}, {start['threads']} threads), "
            f"{kinds}: {figures(start)} GFLOP/s at the start" + (f", {figures(end)} at the end" if end else "")
            + ". The readers spend most of their time in such products, so timings of runs on different "
            "days compare in proportion to these figures.", ""]


def render(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python benchmarks/run.py {results['argv']}` on {results['date']} "
        f"in {results['runtime_s'] / 60:.1f} min.",
        "",
        f"**Machine:** {m.get('cpu')} — {m['cores']} cores ({m.get('simd', '')}), {m.get('ram_gb')} GB RAM; "
        f"Python {m['python']}, torch {m['torch']}, faiss {m['faiss-cpu']}, transformers {m['transformers']}, "
        f"sentence-transformers {m['sentence-transformers']}, onnxruntime {m['onnxruntime']}, bm25s {m['bm25s']}. "
        f"Load average at start: {m['load_before_run']:.2f}.",
        "",
        *_machine_speed(m),
        "**Configurations** (environment): " + ", ".join(
            f"`{c}` = " + (" ".join(f"{k}={v}" for k, v in CONFIGS[c].items()) or "nothing set (the defaults)")
            for c in results["configs"]) + ".",
        "",
    ]
    corpora = results["corpora"]
    lines += [
        f"**Corpora:** one .txt per distinct context of `shared/data/qa/train/*.json.gz` "
        f"({corpora['real_contexts']:,} contexts, {corpora['real_passages']:,} passages in all); larger corpora are "
        "topped up with *mixed* documents of real sentences drawn at random from those contexts "
        "(" + ", ".join(f"{n}: {corpora['mixed_docs'][str(n)]:,} mixed of {corpora['docs'][str(n)]:,} docs"
                        for n in results["sizes"]) + "). "
        f"{results['n_questions']} questions from the same files (answerable, their context in every corpus); "
        f"seed corpus: the {results['seed_questions']} questions of eval/seed_questions.jsonl. "
        "Passages of ~150 words (40 overlap), top_k=5, retrieve_k=50.",
        "",
        "## answer() latency (ms, after warm-up) and memory",
        "",
        "| config | corpus | passages | retrieve p50 / p95 | read p50 / p95 | **total p50 / p95** | windows/question (+ skimmed) | "
        "peak RSS serving (MB) | answered |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in results["configs"]:
        for label, r in results["serve"][c].items():
            lines.append(
                f"| {c} | {label} | {r['passages']:,} | {fmt(r['retrieve_p50'], 1)} / {fmt(r['retrieve_p95'], 1)} | "
                f"{fmt(r['read_p50'], 1)} / {fmt(r['read_p95'], 1)} | **{fmt(r['total_p50'], 1)} / {fmt(r['total_p95'], 1)}** | "
                f"{r['windows_per_question']:.1f}{_skimmed(r)} | {fmt(r['peak_rss_answer_mb'])} | "
                f"{sum(1 for a in r['answers'] if a['text'])}/{r['n']} |")
    lines += ["", "## Index build (real `build_index()`, fresh process per size, model loading excluded)", "",
              "| config | corpus | passages | seconds | **passages/s** | model load (s) | build peak RSS (MB) |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for c in results["configs"]:
        for label, r in results["build"][c].items():
            lines.append(f"| {c} | {label} | {r['passages']:,} | {r['seconds']:.1f} | **{r['passages_per_s']:.1f}** | "
                         f"{r['model_load_s']:.1f} | {fmt(r['peak_rss_mb'])} |")
    if results.get("assemble"):
        lines += ["", "Indexes not listed above were assembled from cached vectors (no re-embedding): "
                  + "; ".join(f"{c} {label}: {r['passages']:,} passages, vectors {r['vector_sources']['own']:,} own / "
                              f"{r['vector_sources']['other']:,} from another configuration's cache"
                              + (f", {r['embedded']:,} embedded at {r['embed_passages_per_s']:.1f} passages/s"
                                 if r.get("embedded") else "")
                              for c, d in results["assemble"].items() for label, r in d.items())
                  + ". Latency does not depend on the vector values."]
    lines += ["", "## Reader throughput and baselines (same passages, same weights)", "",
              "| config | corpus | windows/s in answer() | windows/s, batch of 32 | our read (ms) | pipeline bs=1 (ms) | "
              "pipeline bs=k (ms) | **speed-up vs pipeline bs=1 / bs=k** | same best span as pipeline | FAISS flat (ms) | NumPy (ms) | NumPy/FAISS |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in results["configs"]:
        for label, r in results["serve"][c].items():
            if "pipe_bs1_ms" not in r:
                continue
            lines.append(
                f"| {c} | {label} | {r['windows_per_s_answer']:.1f} | {r['windows_per_s_batch']:.1f} | {r['ours_read_ms']:.1f} | "
                f"{r['pipe_bs1_ms']:.1f} | {r['pipe_bsk_ms']:.1f} | **{r['pipe_bs1_ms'] / r['ours_read_ms']:.2f}x / "
                f"{r['pipe_bsk_ms'] / r['ours_read_ms']:.2f}x** | {100 * r['pipe_agree']:.0f}% | {r['faiss_ms']:.2f} | "
                f"{r['numpy_ms']:.2f} | {r['numpy_ms'] / r['faiss_ms']:.2f}x |")
    base = results["configs"][0]
    if len(results["configs"]) > 1 and "pipe_bs1_ms" in next(iter(results["serve"][base].values()), {}):
        lines += ["", f"The pipeline baseline runs the torch model of each configuration (for onnx-* the fp32 torch "
                  f"weights the ONNX graph was exported from). Against the plain `{base}` pipeline:"]
        for c in results["configs"][1:]:
            parts = []
            for label, r in results["serve"][c].items():
                b = results["serve"][base].get(label)
                if b and "pipe_bs1_ms" in b and "ours_read_ms" in r:
                    parts.append(f"{label}: {b['pipe_bs1_ms'] / r['ours_read_ms']:.2f}x (bs=1), "
                                 f"{b['pipe_bsk_ms'] / r['ours_read_ms']:.2f}x (bs=k)")
            lines.append(f"- `{c}` reading vs `{base}` pipeline: " + "; ".join(parts))
    cold = results.get("cold")
    if cold:
        lines += ["", "## Cold start (new process: `from qa import answer; answer(...)` on the seed corpus, index built)", "",
                  "| config | runs (s) | median (s) |", "| --- | --- | ---: |"]
        for c, times in cold.items():
            lines.append(f"| {c} | {', '.join(f'{t:.2f}' for t in times)} | **{statistics.median(times):.2f}** |")
        for c, t in results.get("cold_convert", {}).items():
            lines.append(f"\nFirst start of `{c}` with an empty model cache (exports and converts both models "
                         f"to ONNX once, then answers): {t:.1f} s.")
    ann = results.get("ann")
    if ann:
        lines += ["", f"## ANN: HNSW (M=32, efSearch=128) vs exact flat at {ann['passages']:,} passages", "",
                  f"recall@10 = **{ann['recall_at_10']:.3f}** over {ann['queries']} queries; search latency k=10: flat "
                  f"{ann['flat_ms_k10']:.2f} ms, HNSW {ann['hnsw_ms_k10']:.2f} ms; k=50: flat {ann['flat_ms_k50']:.2f} ms, "
                  f"HNSW {ann['hnsw_ms_k50']:.2f} ms; HNSW build from stored vectors {ann['hnsw_build_s']:.1f} s."]
        if ann.get("serve"):
            r = ann["serve"]
            lines.append(f"answer() with `QA_INDEX_TYPE=hnsw`: total p50 {r['total_p50']:.1f} ms / p95 "
                         f"{r['total_p95']:.1f} ms (retrieve p50 {r['retrieve_p50']:.1f} ms), peak RSS {r['peak_rss_mb']:.0f} MB.")
    acc = results.get("accuracy")
    if acc:
        lines += ["", "## Accuracy of each configuration", "",
                  f"Reader: F1/EM on the first {next(iter(acc.values()))['dev_n']} answerable questions of "
                  "`dev/nq_qed_dev.json.gz` (`qa.training.calibrate.predict`, own context). Embedder: mean overlap "
                  f"of dense top-10 with `{base}` on each configuration's own natively built index.", "",
                  "| config | reader F1 | EM | ΔF1 vs base | same span as base | dense top-10 overlap with base | "
                  "same best span as base in answer() (seed / smallest corpus) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for c, a in acc.items():
            b = acc[base]
            same = sum(x == y for x, y in zip(a["dev_texts"], b["dev_texts"])) / len(b["dev_texts"])
            overlap = statistics.mean(len(set(x) & set(y)) / max(len(y), 1) for x, y in zip(a["dense_top10"], b["dense_top10"]))
            eq = results.get("answer_agreement", {}).get(c, {})
            lines.append(f"| {c} | {a['f1']:.2f} | {a['em']:.2f} | {a['f1'] - b['f1']:+.2f} | {100 * same:.1f}% | "
                         f"{100 * overlap:.1f}% | " + " / ".join(f"{100 * v:.0f}%" for v in eq.values()) + " |")
    lines += _targets(results)
    if results.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in results["notes"]]
    return "\n".join(lines) + "\n"


def _targets(results: dict) -> list[str]:
    """The issue's targets beside every configuration's measured figure."""
    configs, sizes = results["configs"], results["sizes"]
    base = configs[0]
    big = f"{sizes[-1]:,}"
    rows = []

    def row(name: str, target: str, values: dict) -> None:
        cells = " | ".join(values.get(c, "n/a") for c in configs)
        rows.append(f"| {name} | {target} | {cells} |")

    serve = results["serve"]
    row("answer() p50, seed corpus", "≤ 200 ms accurate reader, ≤ 60 ms fast",
        {c: f"{serve[c]['seed']['total_p50']:.0f} ms" for c in configs})
    row(f"answer() p50, {big} passages", "≤ 250 ms accurate, ≤ 150 ms fast",
        {c: f"{serve[c][big]['total_p50']:.0f} ms" for c in configs if big in serve[c]})
    row(f"reading in answer() vs `{base}` pipeline bs=1, {big}", "≥ 3x",
        {c: f"{serve[base][big]['pipe_bs1_ms'] / serve[c][big]['read_p50']:.2f}x" for c in configs
         if "pipe_bs1_ms" in serve[base].get(big, {})})
    row(f"reading all top-k passages vs `{base}` pipeline bs=1, {big}", "",
        {c: f"{serve[base][big]['pipe_bs1_ms'] / serve[c][big]['ours_read_ms']:.2f}x" for c in configs
         if "pipe_bs1_ms" in serve[base].get(big, {})})
    row("ms per 256-token window, batch of 32", "limit: 34 fp32, 17 bf16, 9 int8",
        {c: f"{1000 / serve[c][big]['windows_per_s_batch']:.1f} ms" for c in configs if big in serve[c]})
    row("index build", "≥ 100 passages/s",
        {c: ", ".join(f"{r['passages_per_s']:.0f}/s ({label})" for label, r in results["build"][c].items())
         for c in configs})
    if results.get("cold"):
        row("cold start", "≤ 5 s", {c: f"{statistics.median(t):.1f} s" for c, t in results["cold"].items()})
    row(f"RSS serving {big}", "≤ 1.5 GB", {c: f"{serve[c][big]['peak_rss_answer_mb'] / 1024:.2f} GB" for c in configs
                                           if big in serve[c]})
    if results.get("accuracy"):
        acc = results["accuracy"]
        row("reader F1 change", "≥ -1", {c: f"{acc[c]['f1'] - acc[base]['f1']:+.2f}" for c in configs})
    return ["", "## Targets (from the issue)", "", "| what | target | " + " | ".join(configs) + " |",
            "| --- | --- | " + " | ".join("---:" for _ in configs) + " |", *rows]


def write_section(path: Path, name: str, section: str) -> None:
    """Put `section` between the `<!-- name:begin -->` and `<!-- name:end -->` marks of `path`
    (appended when they are not there yet); `run.py` keeps such sections when it rewrites the file."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    block = f"{begin}\n{section}{end}\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) + 1 :]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def kept_sections(path: Path) -> str:
    """Sections other benchmarks (scale.py, concurrency.py) wrote with `write_section`, kept on rewrite."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    return "".join(m.group(0) for m in re.finditer(r"\n<!-- (\w+):begin -->.*?<!-- \1:end -->\n", old, flags=re.S))


def answer_agreement(a: dict, b: dict) -> float:
    """Share of questions whose best span (the answer, or the best suppressed one) is the same text."""
    pairs = list(zip(a["answers"], b["answers"]))
    return sum(x["best"] == y["best"] for x, y in pairs) / len(pairs)


# ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="")
    parser.add_argument("--quick", action="store_true", help="small sizes and few questions (about 3 minutes)")
    parser.add_argument("--configs", default="torch-fp32,fast,accurate",
                        help="comma list from " + ", ".join(CONFIGS) + "; the first is the baseline")
    parser.add_argument("--vectors-from", default="", help="configuration whose embedder fills the vector cache "
                        "for corpora no configuration builds itself (default: the last)")
    parser.add_argument("--questions", type=int, default=0)
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "qa-bench"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        kind, payload = args.worker
        result = WORKERS[kind](json.loads(payload))
        print(RESULT_MARK + json.dumps(result), flush=True)
        return

    started = time.perf_counter()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in CONFIGS:
            parser.error(f"unknown configuration {c!r}")
    if args.quick:
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [300]
        n_questions = args.questions or 8
        n_dev, cold_runs, baseline_n = 60, 1, 5
    else:
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [1000, 10000, 50000]
        n_questions = args.questions or 30
        n_dev, cold_runs, baseline_n = 300, 3, 15
    sizes = sorted(sizes)
    provider = args.vectors_from or configs[-1]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    machine["matmul_start"] = run_worker("matmul", {}, configs[0])
    log(f"machine: {machine}")
    if machine["load_before_run"] > 0.5:
        log(f"WARNING: load average {machine['load_before_run']:.2f}: timings will be disturbed")
    corpora = prepare_corpora(work, sizes, max(n_questions, 200))
    bench_questions = [q for q, _ in corpora["questions"]]
    questions = bench_questions[:n_questions]
    seed_questions = [json.loads(line)["question"] for line in SEED_QUESTIONS.read_text().splitlines() if line.strip()]
    if args.quick:
        seed_questions = seed_questions[:n_questions]

    results: dict = {"machine": machine, "configs": configs, "sizes": sizes, "corpora": corpora,
                     "n_questions": n_questions, "seed_questions": len(seed_questions),
                     "argv": " ".join(sys.argv[1:] if argv is None else argv),
                     "date": time.strftime("%Y-%m-%d %H:%M %Z"), "build": {}, "assemble": {}, "serve": {},
                     "notes": []}
    seed_corpus = work / "seed" / "seeds"
    if not seed_corpus.exists():
        shutil.copytree(SEEDS, seed_corpus)
    index_of = {}
    # Builds: every configuration builds the smallest size (and the seed corpus) itself; the
    # vector provider also builds the next size; the largest are assembled from cached vectors.
    native = {c: [sizes[0]] for c in configs}
    if len(sizes) > 1:
        native[provider].append(sizes[1])
    for c in configs:
        results["build"][c] = {}
        index_of[(c, "seed")] = work / "seed" / f"index-{c}"
        log(f"{c}: seed index")
        run_worker("build", {"corpus": str(seed_corpus), "index": str(index_of[(c, 'seed')])}, c)
    order = [provider] + [c for c in configs if c != provider]
    for c in order:
        for n in sizes:
            corpus = work / f"size-{n}" / "corpus"
            index = work / f"size-{n}" / f"index-{c}"
            index_of[(c, n)] = index
            if n in native[c]:
                if index.exists():
                    shutil.rmtree(index)
                log(f"{c}: building {n} (real build_index)")
                r = run_worker("build", {"corpus": str(corpus), "index": str(index), "work": str(work),
                                         "harvest": c == provider}, c)
                results["build"][c][f"{n:,}"] = r
                log(f"  {r['passages']} passages, {r['passages_per_s']:.1f}/s, peak {r['peak_rss_mb']:.0f} MB")
            else:
                log(f"{c}: assembling {n} from cached vectors")
                r = run_worker("assemble", {"corpus": str(corpus), "index": str(index), "work": str(work),
                                            "reuse": True}, c)
                results["assemble"].setdefault(c, {})[f"{n:,}"] = r
    # Serving.
    for c in configs:
        results["serve"][c] = {}
        targets = [("seed", seed_corpus, index_of[(c, "seed")], seed_questions)] + [
            (f"{n:,}", work / f"size-{n}" / "corpus", index_of[(c, n)], questions) for n in sizes]
        for label, corpus, index, qs in targets:
            log(f"{c}: serving {label}")
            r = run_worker("serve", {"corpus": str(corpus), "index": str(index), "questions": qs,
                                     "baselines": not args.no_baselines, "baseline_n": baseline_n}, c)
            results["serve"][c][label] = r
            log(f"  total p50 {r['total_p50']:.1f} ms p95 {r['total_p95']:.1f} ms (read p50 {r['read_p50']:.1f}), "
                f"peak {r['peak_rss_mb']:.0f} MB")
    # Agreement of answers with the baseline configuration, where both indexes are native.
    base = configs[0]
    results["answer_agreement"] = {
        c: {label: answer_agreement(results["serve"][c][label], results["serve"][base][label])
            for label in ["seed", f"{sizes[0]:,}"]}
        for c in configs
    }
    # Cold start.
    results["cold"] = {}
    for c in configs:
        log(f"{c}: cold start")
        results["cold"][c] = cold_start(c, seed_corpus, index_of[(c, "seed")], seed_questions[0], cold_runs)
        if CONFIGS[c].get("QA_BACKEND") == "onnx" and not args.quick:
            fresh = Path(tempfile.mkdtemp(prefix="onnx-cache-", dir=work))
            results.setdefault("cold_convert", {})[c] = cold_start(
                c, seed_corpus, index_of[(c, "seed")], seed_questions[0], 1, {"QA_MODEL_CACHE_DIR": str(fresh)}, False)[0]
            shutil.rmtree(fresh, ignore_errors=True)
    # ANN at the largest size.
    n = sizes[-1]
    log(f"ANN at {n}")
    results["ann"] = run_worker("ann", {"corpus": str(work / f"size-{n}" / "corpus"), "index": str(index_of[(provider, n)]),
                                        "hnsw_index": str(work / f"size-{n}" / f"index-{provider}-hnsw"),
                                        "questions": bench_questions[:200]}, provider)
    if not args.quick:
        log("serving with HNSW")
        results["ann"]["serve"] = run_worker(
            "serve", {"corpus": str(work / f"size-{n}" / "corpus"), "index": str(work / f"size-{n}" / f"index-{provider}-hnsw"),
                      "questions": questions, "index_type": "hnsw"}, provider)
    # Accuracy.
    results["accuracy"] = {}
    for c in configs:
        log(f"{c}: accuracy")
        results["accuracy"][c] = run_worker("accuracy", {"corpus": str(work / f"size-{sizes[0]}" / "corpus"),
                                                         "index": str(index_of[(c, sizes[0])]), "n_dev": n_dev,
                                                         "questions": bench_questions[:200]}, c)
    machine["matmul_end"] = run_worker("matmul", {}, configs[0])
    results["runtime_s"] = time.perf_counter() - started
    (work / "last-results.json").write_text(json.dumps(results, indent=1, default=str))
    text = render(results)
    Path(args.out).write_text(text + kept_sections(Path(args.out)), encoding="utf-8")
    print(text)
    log(f"wrote {args.out} in {results['runtime_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
