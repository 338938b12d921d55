"""Where the time of one answer() goes: per-stage breakdown and a cProfile of the hot functions.

    python benchmarks/profile_answer.py --corpus DIR --index DIR [--questions FILE.jsonl] [--n 30]

Uses the configuration from the environment (QA_BACKEND, QA_QUANTIZE, ...). Stages are timed
by wrapping the functions answer() calls, so their sum is close to Answer.timings["total"].
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import functools
import io
import json
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", default=str(ROOT / "seeds"))
    parser.add_argument("--index", required=True)
    parser.add_argument("--questions", default=str(ROOT / "eval" / "seed_questions.jsonl"))
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()

    from qa import reader as reader_mod
    from qa import retrieval
    from qa.config import Settings
    from qa.pipeline import Engine

    engine = Engine(Settings.load(corpus_dir=args.corpus, index_dir=args.index))
    engine.ensure_index(progress=False)
    questions = [json.loads(line)["question"] for line in Path(args.questions).read_text().splitlines() if line.strip()]
    questions = (questions * (args.n // max(len(questions), 1) + 1))[: args.n]
    spent: dict[str, float] = collections.defaultdict(float)
    timed = functools.partial(_timed, spent)

    r, retriever = engine.reader, engine._retriever
    emb = engine.embedder
    emb.encode = timed("retrieve: embed query", emb.encode)
    retriever.store.search = timed("retrieve: dense search (FAISS)", retriever.store.search)
    retriever.sparse.search = timed("retrieve: BM25", retriever.sparse.search)
    retrieval.fuse = timed("retrieve: fusion", retrieval.fuse)
    r.tokenizer = _TimedTokenizer(r.tokenizer, timed("read: tokenise", r.tokenizer))
    r._logits = timed("read: model forward", r._logits)
    reader_mod.best_span = timed("read: span decoding", reader_mod.best_span)
    for q in questions[:3]:
        engine.answer(q)
    spent.clear()
    totals = collections.defaultdict(float)
    profiler = cProfile.Profile()
    profiler.enable()
    for q in questions:
        a = engine.answer(q)
        for k, v in a.timings.items():
            totals[k] += v
    profiler.disable()
    n = len(questions)
    print(f"{n} questions, {len(engine.store.passages)} passages; mean ms per answer()")
    for k in ("retrieve", "read", "total"):
        print(f"  {k:34s} {1000 * totals[k] / n:8.1f}")
    for k, v in sorted(spent.items()):
        print(f"  {k:34s} {1000 * v / n:8.1f}")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    print(out.getvalue())


def _timed(spent: dict[str, float], name: str, fn):
    """`fn`, adding the seconds each call takes to spent[name]."""
    @functools.wraps(fn)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[name] += time.perf_counter() - t
    return wrapper


class _TimedTokenizer:
    """The tokenizer with its calls timed; every other attribute passes through."""

    def __init__(self, inner, timed_call) -> None:
        self._inner, self._timed_call = inner, timed_call

    def __call__(self, *a, **k):
        return self._timed_call(*a, **k)

    def __getattr__(self, name):
        return getattr(self._inner, name)


if __name__ == "__main__":
    main()
