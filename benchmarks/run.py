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

Where the code is: `harness` (configurations, child processes), `corpora` and `vector_cache`
(the data), one module per measurement (`index_build`, `latency` with `baselines`, `cold_start`,
`ann_recall`, `accuracy`, and `machine` for the host and its matrix-multiply yardstick), and
`report` (RESULTS.md). This file is the command line and the order of the run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from accuracy import answer_agreement, worker_accuracy
from ann_recall import worker_ann
from cold_start import cold_start
from corpora import prepare_corpora
from harness import CONFIGS, RESULT_MARK, ROOT, SEED_QUESTIONS, SEEDS, log, run_worker
from index_build import worker_assemble, worker_build
from latency import worker_serve
from machine import machine_description, worker_matmul
from report import kept_sections, render

#: The measurements a child process runs: `run.py --worker KIND JSON` prints WORKERS[KIND](JSON).
WORKERS = {"build": worker_build, "assemble": worker_assemble, "serve": worker_serve, "ann": worker_ann,
           "accuracy": worker_accuracy, "matmul": worker_matmul}


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
