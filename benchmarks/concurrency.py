"""Many chat clients at once: throughput and latency through the real web app.

Starts `app.py` over a copy of the seed corpus and asks the 60 questions of
eval/seed_questions.jsonl through the app's `/ask` API with gradio_client: first one client
asking them one after another (single stream), then N clients at once, each with its own
connection, asking in a different order. Reports questions per second, the concurrent
throughput as a multiple of single-stream, latency percentiles and any failed request. It
does so for the app as configured and for the slow path (fp32, every passage read) beside it.

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

from harness import log, pct
from report import write_section

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
    started, cpu_started = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"clients": clients, "questions": len(latencies), "wall_s": wall, "qps": len(latencies) / wall,
            "client_cores": (time.process_time() - cpu_started) / wall,
            "p50_ms": 1000 * pct(latencies, 0.5), "p95_ms": 1000 * pct(latencies, 0.95), "failures": failures}


#: The app as configured (the environment's QA_* settings), and the slow path the issue measured
#: (fp32, every passage read).
CONFIGS = {"as configured": {}, "fp32 read-all": {"QA_PRECISION": "fp32", "QA_READ_FIRST": "0"}}


def render(rows: list[dict], env: dict[str, str]) -> str:
    setting = " ".join(f"{k}={v}" for k, v in sorted(env.items())) or "the defaults"
    lines = [
        "## Many chat clients at once (the real web app)",
        "",
        (f"`python benchmarks/concurrency.py --write-results` on {platform.machine()}, {os.cpu_count()} CPUs, "
         f"{time.strftime('%Y-%m-%d')}; as configured: {setting}. `app.py` over the seed corpus; every client has "
         "its own gradio_client connection and asks the 60 seed questions through the `/ask` API (top 5 "
         "passages, the default threshold), each client in a different order. The clients run on the same "
         "cores as the server, so the CPU they use (last column) is taken from it."),
        "",
        ("| app | clients at once | questions | questions/s | vs one stream | latency p50 (ms) | p95 (ms) | failed | "
         "CPU cores the clients used |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    single = {r["config"]: r["qps"] for r in rows if r["clients"] == 1}
    for r in rows:
        lines.append(f"| {r['config']} | {r['clients']} | {r['questions']} | {r['qps']:.1f} | "
                     f"{r['qps'] / single[r['config']]:.2f}x | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
                     f"{len(r['failures'])} | {r['client_cores']:.2f} |")
    return "\n".join(lines) + "\n"


def measure(config: str, clients: int, per_client: int, work: Path) -> list[dict]:
    """One app process with `config`'s settings: one client, then `clients` at once."""
    corpus = copy_writable(seeds_dir(), work / "corpus")
    with run_app(corpus, work / "index", work / "app.log", **CONFIGS[config]) as server:
        log(f"{config}: app up at {server.url}")
        serve_load(server.url, 1, 10)  # warm-up: models loaded, index built, first reads done
        rows = [serve_load(server.url, 1, len(QUESTIONS)), serve_load(server.url, clients, per_client)]
    for r in rows:
        r["config"] = config
        log(f"{config}, {r['clients']} clients: {r['qps']:.1f} questions/s, p50 {r['p50_ms']:.0f} ms")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="clients asking at once (default 20)")
    parser.add_argument("--per-client", type=int, default=15, help="questions each concurrent client asks")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}")
    parser.add_argument("--write-results", action="store_true", help="put the table in benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if unknown := set(configs) - set(CONFIGS):
        parser.error(f"unknown configuration(s) {sorted(unknown)}; choose from {list(CONFIGS)}")
    rows = []
    for config in configs:
        with tempfile.TemporaryDirectory() as tmp:
            rows += measure(config, args.clients, args.per_client, Path(tmp))
    section = render(rows, {k: v for k, v in os.environ.items() if k.startswith("QA_")})
    print(section)
    for r in rows:
        for failure in r["failures"][:5]:
            log(f"failed ({r['config']}, {r['clients']} clients): {failure}")
    if args.write_results:
        write_section(RESULTS, "concurrency", section)
        log(f"wrote {RESULTS}")
    return 1 if any(r["failures"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
