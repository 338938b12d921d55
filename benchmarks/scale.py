"""Scale benchmark: the vector stores at N passages, and indexing on Ray against the plain path.

    python benchmarks/scale.py [--passages 100000] [--queries 200] [--ray-passages 5000]
                               [--stores faiss-flat,faiss-hnsw,milvus-flat,milvus-hnsw]
                               [--vectors embedded|synthetic] [--write-results]

Stores: each is built through the product's own store API (`add_document` per document, one
`save()`), from the same passages and vectors, in a fresh folder or Milvus Lite file. Measured:
build time (add + save), open time (load and integrity check, as an app server starts), dense
query latency p50/p95 for one question vector (k=10, passages returned with their text), recall@10
against exact search (FAISS flat, brute force), and keyword (BM25) query latency: bm25s in this
process for FAISS, Milvus's own full-text search for Milvus.

Passages: the contexts of shared/data/qa/train/*.json.gz split into passages (topped up with
documents of real sentences drawn at random from them), or generated word salad where that data
is absent; queries are the answerable questions of those files. Vectors are the real embedder's
(`--vectors embedded`, cached by text under ~/.cache/qa-offline/bench, so a second run embeds
nothing) or, with `--vectors synthetic`, unit vectors around a few hundred random centres
(shaped like real embeddings, instant to make; recall figures then describe that shape only).

Ray: a folder of `--ray-passages` worth of .txt files (about three passages each) is indexed
twice from scratch into FAISS, by `sync_corpus` in this process and with `indexer="ray"` on a
local Ray (start-up timed apart), embedding for real; the table gives passages/s and checks that
both give the same passage ids with vectors within a cosine of 0.999.

Prints Markdown tables; `--write-results` puts them in benchmarks/RESULTS.md between the
`<!-- scale:begin -->` and `<!-- scale:end -->` marks. Timings are only meaningful on an
otherwise idle machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from corpora import load_contexts_and_questions
from harness import log, pct, text_key
from report import write_section
from vector_cache import cache_path, load_cache, save_cache

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHE = Path(os.environ.get("QA_BENCH_CACHE", Path.home() / ".cache" / "qa-offline" / "bench"))
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
STORES = ("faiss-flat", "faiss-hnsw", "milvus-flat", "milvus-hnsw")
K = 10


# ------------------------------------------------------------------------------------------ corpus
@dataclass
class Corpus:
    """Documents (path -> text), their passages, and question texts."""

    documents: dict[str, str] = field(default_factory=dict)
    passages: list[Any] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    source: str = ""


def _word_salad(rng: random.Random, words: int) -> str:
    vocabulary = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "su", "ta", "vi", "ro", "pe", "du", "fa", "gi")
                  for b in ("ran", "dol", "mek", "sit", "por", "vun", "lek", "tor")]
    out, left = [], words
    while left > 0:
        n = min(left, rng.randint(8, 18))
        out.append(" ".join(rng.choices(vocabulary, k=n)).capitalize() + ".")
        left -= n
    return " ".join(out)


def make_corpus(passages: int, queries: int, seed: int = 7) -> Corpus:
    """About `passages` passages of real text (or word salad without the data), in documents."""
    from qa.passages import split_passages
    from qa.sentences import split_sentences
    from qa.types import Document

    rng = random.Random(seed)
    contexts, by_context = load_contexts_and_questions()
    questions = [q for asked in by_context.values() for q, _ in asked]
    corpus = Corpus(source="shared/data/qa contexts" if contexts else "generated word salad")
    sentences = [c[s:e] for c in contexts[:20_000] for s, e in split_sentences(c) if 5 <= len(c[s:e].split()) <= 60]

    def next_text(i: int) -> str:
        if i < len(contexts):
            return contexts[i]
        if sentences:
            parts, words = [], 0
            while words < 300:
                parts.append(sentences[rng.randrange(len(sentences))])
                words += len(parts[-1].split())
            return " ".join(parts)
        return _word_salad(rng, 300)

    i = 0
    while len(corpus.passages) < passages:
        path = f"bench/doc{i:07d}.txt"
        text = next_text(i)
        i += 1
        found = split_passages(Document(path, text, ""), 150, 40)
        corpus.documents[path] = text
        corpus.passages.extend(found[: passages - len(corpus.passages)])
    rng.shuffle(questions)
    corpus.questions = questions[:queries] or [_word_salad(rng, 10) for _ in range(queries)]
    return corpus


# ------------------------------------------------------------------------------------------ vectors
def embedded(texts: list[str], embedder: Any) -> np.ndarray:
    """The embedder's vectors for `texts`, from the cache where it has them."""
    path = cache_path(CACHE, embedder.name)
    cache = load_cache(path)
    keys = [text_key(t) for t in texts]
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())
    if missing:
        log(f"embedding {len(missing):,} texts ({len(texts) - len(missing):,} cached)")
        started = time.perf_counter()
        vectors = embedder.encode([t for _, t in missing])
        log(f"embedded in {time.perf_counter() - started:.0f}s")
        cache.update({k: v for (k, _), v in zip(missing, vectors)})
        save_cache(path, cache)
    return np.stack([cache[k] for k in keys]).astype(np.float32)


def synthetic(count: int, dimension: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Unit vectors scattered around random centres, as embeddings cluster by topic."""
    picks = rng.integers(0, len(centres), size=count)
    vectors = centres[picks] + rng.normal(scale=0.6 / np.sqrt(dimension), size=(count, dimension))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


# ------------------------------------------------------------------------------------------ stores
def exact_top_k(passage_vectors: np.ndarray, query_vectors: np.ndarray, k: int) -> list[list[int]]:
    out = []
    for start in range(0, len(query_vectors), 64):
        scores = query_vectors[start : start + 64] @ passage_vectors.T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        out.extend(row[np.argsort(-scores[i, row])].tolist() for i, row in enumerate(top))
    return out


def bench_store(kind: str, corpus: Corpus, vectors: np.ndarray, queries: np.ndarray, truth: list[list[int]],
                profile_name: str, work: Path) -> dict[str, Any]:
    from qa.config import Settings
    from qa.milvus_store import release
    from qa.retrieval import SparseIndex
    from qa.store import DocumentRecord, IndexProfile
    from qa.vector_store import load_vector_store, open_vector_store

    engine, index_type = kind.split("-")
    folder = work / kind
    shutil.rmtree(folder, ignore_errors=True)
    settings = Settings.load(index_dir=str(folder), index_type=index_type,
                             vector_store="milvus" if engine == "milvus" else "faiss",
                             milvus_uri=str(folder / "milvus.db"), milvus_bm25="auto")
    profile = IndexProfile(profile_name, vectors.shape[1], 150, 40, index_type)
    position = {p.id: i for i, p in enumerate(corpus.passages)}
    by_doc: dict[str, list[int]] = {}
    for i, p in enumerate(corpus.passages):
        by_doc.setdefault(p.document, []).append(i)

    log(f"{kind}: building from {len(corpus.passages):,} passages")
    started = time.perf_counter()
    store, _ = open_vector_store(settings, profile)
    for doc, rows in by_doc.items():
        text = corpus.documents[doc]
        store.add_document(doc, DocumentRecord(hashlib.sha256(text.encode()).hexdigest(), len(rows), len(text)),
                           [corpus.passages[i] for i in rows], vectors[rows])
    store.save()
    build_s = time.perf_counter() - started
    if engine == "milvus":
        release(settings.milvus_uri)
    started = time.perf_counter()
    store = load_vector_store(settings, profile)
    open_s = time.perf_counter() - started

    for q in queries[:5]:
        store.search_passages(q[None, :], K)
    dense_ms, hits = [], 0
    for q, expected in zip(queries, truth):
        started = time.perf_counter()
        got = store.search_passages(q[None, :], K)[0]
        dense_ms.append((time.perf_counter() - started) * 1000)
        hits += len({position[p.id] for p, _ in got} & set(expected))

    if store.has_keyword_search:
        keyword, keyword_build_s = store.keyword_search, 0.0
        keyword_kind = "Milvus BM25"
    else:
        started = time.perf_counter()
        sparse = SparseIndex([p.text for p in store.passages])
        keyword_build_s = time.perf_counter() - started
        keyword, keyword_kind = sparse.search, "bm25s (in process)"
    for text in corpus.questions[:5]:
        keyword(text, 50)
    keyword_ms = []
    for text in corpus.questions:
        started = time.perf_counter()
        keyword(text, 50)
        keyword_ms.append((time.perf_counter() - started) * 1000)
    if engine == "milvus":
        release(settings.milvus_uri)
    shutil.rmtree(folder, ignore_errors=True)
    row = {"store": kind, "passages": len(corpus.passages), "build_s": build_s, "open_s": open_s,
           "dense_p50_ms": pct(dense_ms, 0.5), "dense_p95_ms": pct(dense_ms, 0.95),
           "recall_at_10": hits / (K * len(truth)), "keyword": keyword_kind, "keyword_build_s": keyword_build_s,
           "keyword_p50_ms": pct(keyword_ms, 0.5), "keyword_p95_ms": pct(keyword_ms, 0.95)}
    log(f"{kind}: {json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})}")
    return row


# ------------------------------------------------------------------------------------------ Ray
def bench_ray(corpus: Corpus, passages: int, work: Path) -> dict[str, Any]:
    """Index the same folder from scratch in this process and on a local Ray; compare."""
    import ray

    from qa.config import Settings
    from qa.pipeline import Engine
    from qa.ray_indexing import _start_ray

    folder = work / "ray-corpus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    texts = list(corpus.documents.values())
    written = 0
    for i in range(len(texts)):
        if written >= passages:
            break
        text = " ".join(texts[(i * 3 + j) % len(texts)] for j in range(3))  # about three passages each
        (folder / f"doc{i:06d}.txt").write_text(text, encoding="utf-8")
        written += max(1, len(text.split()) // 110)
    files = len(list(folder.iterdir()))

    def settings(name: str, indexer: str) -> Settings:
        shutil.rmtree(work / name, ignore_errors=True)
        return Settings.load(corpus_dir=str(folder), index_dir=str(work / name), indexer=indexer)

    plain_engine = Engine(settings("ray-plain", "local"))
    assert plain_engine.embedder is not None  # load the model first: model loading is not indexing
    log(f"plain: indexing {files} files")
    started = time.perf_counter()
    plain = plain_engine.ensure_index(progress=False)
    plain_s = time.perf_counter() - started

    ray_settings = settings("ray-ray", "ray")
    started = time.perf_counter()
    _start_ray(ray, ray_settings)
    ray_start_s = time.perf_counter() - started
    log(f"Ray: started in {ray_start_s:.1f}s; indexing {files} files")
    try:
        ray_engine = Engine(ray_settings)
        started = time.perf_counter()
        on_ray = ray_engine.ensure_index(progress=False)
        ray_s = time.perf_counter() - started
    finally:
        ray.shutdown()
    a, b = plain_engine.store, ray_engine.store
    same_ids = sorted(p.id for p in a.passages) == sorted(p.id for p in b.passages)
    cosine = float(np.min(np.sum(a.vectors_of(a.passages) * b.vectors_of(a.passages), axis=1))) if same_ids else 0.0
    row = {"files": files, "passages": plain.passages, "plain_s": plain_s, "ray_s": ray_s, "ray_start_s": ray_start_s,
           "plain_rate": plain.passages / plain_s, "ray_rate": on_ray.passages / ray_s,
           "ray_rate_with_start": on_ray.passages / (ray_s + ray_start_s), "same_ids": same_ids, "min_cosine": cosine,
           "cpus": os.cpu_count()}
    log(f"ray: {row}")
    return row


# ------------------------------------------------------------------------------------------ report
def report(rows: list[dict[str, Any]], ray_row: dict[str, Any] | None, args: argparse.Namespace,
           corpus: Corpus, embedder_name: str) -> str:
    import faiss
    import pymilvus

    try:
        from importlib.metadata import version

        lite = version("milvus-lite")
        ray_version = version("ray")
    except Exception:
        lite = ray_version = "?"
    n = rows[0]["passages"] if rows else 0
    lines = [
        f"## Scale: vector stores at {n:,} passages, and indexing on Ray",
        "",
        f"`python benchmarks/scale.py --passages {args.passages} --queries {args.queries} --ray-passages "
        f"{args.ray_passages} --vectors {args.vectors}` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}; faiss {faiss.__version__}, pymilvus "
        f"{pymilvus.__version__}, milvus-lite {lite}, ray {ray_version}. Passages: {corpus.source}; vectors: "
        + ("the embedder's (" + embedder_name + ")" if args.vectors == "embedded" else "synthetic (clustered)")
        + f"; {args.queries} questions from the same data. Each store is built through the product's store API "
          "(`add_document` per document, one `save()`); *open* is loading it with its integrity check, as a server "
          "starts; dense queries are one question vector, k=10, passages returned with their text; recall@10 is "
          "against exact (brute-force) search.",
        "",
        "| store | build (s) | open (s) | dense p50 (ms) | dense p95 (ms) | recall@10 | keyword search | "
        "keyword p50 (ms) | keyword p95 (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        build_note = f" (+{r['keyword_build_s']:.1f} s to build)" if r["keyword_build_s"] else ""
        lines.append(f"| {r['store']} | {r['build_s']:.1f} | {r['open_s']:.2f} | {r['dense_p50_ms']:.2f} | "
                     f"{r['dense_p95_ms']:.2f} | {r['recall_at_10']:.3f} | {r['keyword']}{build_note} | "
                     f"{r['keyword_p50_ms']:.2f} | {r['keyword_p95_ms']:.2f} |")
    if ray_row:
        r = ray_row
        lines += [
            "",
            f"Indexing {r['files']:,} .txt files ({r['passages']:,} passages) from scratch into FAISS, embedding for "
            f"real, on this machine's {r['cpus']} CPUs:",
            "",
            "| path | seconds | passages/s |",
            "|---|---|---|",
            f"| plain (`qa index`, one process) | {r['plain_s']:.1f} | {r['plain_rate']:.1f} |",
            f"| Ray Data, local (`qa index --ray`), excluding Ray start-up | {r['ray_s']:.1f} | {r['ray_rate']:.1f} |",
            f"| Ray Data, local, including start-up ({r['ray_start_s']:.1f} s) | {r['ray_s'] + r['ray_start_s']:.1f} | "
            f"{r['ray_rate_with_start']:.1f} |",
            "",
            f"Same passage ids: {'yes' if r['same_ids'] else 'NO'}; smallest cosine between the two paths' vectors: "
            f"{r['min_cosine']:.5f}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=100_000, help="passages in each store (default 100000)")
    parser.add_argument("--queries", type=int, default=200, help="question vectors timed (default 200)")
    parser.add_argument("--ray-passages", type=int, default=5_000,
                        help="passages indexed by the Ray comparison (0 skips it; default 5000)")
    parser.add_argument("--stores", default=",".join(STORES), help=f"comma-separated, from {', '.join(STORES)}")
    parser.add_argument("--vectors", choices=("embedded", "synthetic"), default="embedded",
                        help="the real embedder's vectors (cached) or synthetic clustered ones")
    parser.add_argument("--work", default="", help="scratch folder (default: a temporary one)")
    parser.add_argument("--write-results", action="store_true", help="put the tables in benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    stores = [s for s in args.stores.split(",") if s]
    unknown = set(stores) - set(STORES)
    if unknown:
        parser.error(f"unknown stores: {', '.join(sorted(unknown))}")

    from qa.logs import configure_logging

    configure_logging("WARNING")
    work = Path(args.work or tempfile.mkdtemp(prefix="qa-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"corpus of {args.passages:,} passages")
    corpus = make_corpus(args.passages, args.queries)
    if args.vectors == "embedded":
        from qa.config import Settings
        from qa.pipeline import Engine

        embedder = Engine(Settings.load()).embedder
        embedder_name = embedder.name
        vectors = embedded([p.text for p in corpus.passages], embedder)
        queries = embedded(corpus.questions, embedder)
    else:
        rng = np.random.default_rng(7)
        centres = rng.normal(size=(max(8, args.passages // 300), 384))
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        vectors, queries = synthetic(len(corpus.passages), 384, rng, centres), synthetic(args.queries, 384, rng, centres)
        embedder_name = "synthetic"
    truth = exact_top_k(vectors, queries, K)
    rows = [bench_store(kind, corpus, vectors, queries, truth, embedder_name, work) for kind in stores]
    ray_row = bench_ray(corpus, args.ray_passages, work) if args.ray_passages else None
    section = report(rows, ray_row, args, corpus, embedder_name)
    print(section)
    if args.write_results:
        write_section(RESULTS, "scale", section)
        log(f"wrote {RESULTS}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
