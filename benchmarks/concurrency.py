"""Many chat clients at once: throughput and latency through the real web app.

Starts `app.py` over a copy of the seed corpus and asks the 60 questions of
eval/seed_questions.jsonl through the app's `/ask` API with gradio_client: first one client
asking them one after another (single stream), then N clients at once, each with its own
connection, asking in a different order. Reports questions per second, the concurrent
throughput as a multiple of single-stream, latency percentiles and any failed request.

The bar (issue 10): serving 20 clients at once must not lose throughput against one stream
(measured 1.8x before the fast path). `--write-results` puts the table in
benchmarks/RESULTS.md between the `<!-- concurrency:begin -->` and `<!-- concurrency:end -->`
marks. Timings are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

from run import log, pct, write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from app_process import copy_writable, run_app, seeds_dir  # shared with the tests

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
QUESTIONS = [json.loads(line)["question"] for line in (ROOT / "eval" / "seed_questions.jsonl").open(encoding="utf-8")]


def ask_all(url: str, questions: list[str], latencies: list[float], failures: list[str], lock: threading.Lock) -> None:
    """One client: its own gradio_client connection, asking `questions` one after another."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    for question in questions:
        started = time.perf_counter()
        try:
            reply = client.predict(question, 5, -1, api_name="/ask")
            error = None if isinstance(reply, dict) and "text" in reply else f"unexpected reply {reply!r:.200}"
        except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
            error = f"{type(exc).__name__}: {exc}"
        with lock:
            latencies.append(time.perf_counter() - started)
            if error:
                failures.append(f"{question!r}: {error}")


def serve_load(url: str, clients: int, per_client: int) -> dict:
    """`clients` clients at once, each asking `per_client` seed questions from its own offset."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=ask_all, args=(url, [QUESTIONS[(c * 7 + k) % len(QUESTIONS)] for k in range(per_client)],
                                               latencies, failures, lock))
        for c in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"clients": clients, "questions": len(latencies), "wall_s": wall, "qps": len(latencies) / wall,
            "p50_ms": 1000 * pct(latencies, 0.5), "p95_ms": 1000 * pct(latencies, 0.95), "failures": failures}


def render(rows: list[dict], env: dict[str, str]) -> str:
    single = rows[0]["qps"]
    setting = " ".join(f"{k}={v}" for k, v in sorted(env.items())) or "the defaults"
    lines = [
        "## Many chat clients at once (the real web app)",
        "",
        (f"`python benchmarks/concurrency.py --write-results` on {platform.machine()}, {os.cpu_count()} CPUs, "
         f"{time.strftime('%Y-%m-%d')}; {setting}. `app.py` over the seed corpus; every client has its own "
         "gradio_client connection and asks the 60 seed questions through the `/ask` API (top 5 passages, "
         "the default threshold), each client in a different order."),
        "",
        "| clients at once | questions | questions/s | vs one stream | latency p50 (ms) | p95 (ms) | failed |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['questions']} | {r['qps']:.1f} | {r['qps'] / single:.2f}x | "
                     f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {len(r['failures'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="clients asking at once (default 20)")
    parser.add_argument("--per-client", type=int, default=15, help="questions each concurrent client asks")
    parser.add_argument("--write-results", action="store_true", help="put the table in benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k.startswith("QA_")}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = copy_writable(seeds_dir(), work / "corpus")
        with run_app(corpus, work / "index", work / "app.log") as server:
            log(f"app up at {server.url}")
            serve_load(server.url, 1, 10)  # warm-up: models loaded, index built, first reads done
            rows = [serve_load(server.url, 1, len(QUESTIONS))]
            log(f"1 client: {rows[0]['qps']:.1f} questions/s, p50 {rows[0]['p50_ms']:.0f} ms")
            rows.append(serve_load(server.url, args.clients, args.per_client))
            log(f"{args.clients} clients: {rows[1]['qps']:.1f} questions/s, p50 {rows[1]['p50_ms']:.0f} ms")
    section = render(rows, env)
    print(section)
    for r in rows:
        for failure in r["failures"][:5]:
            log(f"failed ({r['clients']} clients): {failure}")
    if args.write_results:
        write_section(RESULTS, "concurrency", section)
        log(f"wrote {RESULTS}")
    return 1 if any(r["failures"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
