"""What every measurement of `run.py` shares: where the data is, the configurations a run
compares, small helpers (log, memory, percentiles), and the child process each measurement runs
in (`run.py --worker KIND JSON`), so that peak memory and start-up are per measurement.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `qa` from this checkout, installed or not
RUN_SCRIPT = Path(__file__).resolve().with_name("run.py")

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


def config_environment(config: str) -> dict[str, str]:
    """This process's environment with the configuration's settings, and no stray ones from the caller."""
    env = {k: v for k, v in os.environ.items() if k not in _QA_ENV}
    return {**env, **CONFIGS[config]}


def run_worker(kind: str, args: dict, config: str, extra_env: dict | None = None, timeout: float = 3600) -> dict:
    """Run one measurement (`run.py --worker KIND JSON`) in a fresh process under `config`; its result."""
    env = {**config_environment(config), **(extra_env or {})}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = [sys.executable, str(RUN_SCRIPT), "--worker", kind, json.dumps(args)]
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
