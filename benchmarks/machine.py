"""The machine a run was on: what it is (CPU, memory, library versions) and how fast it multiplies
matrices that day (the yardstick that puts runs of different days on one scale)."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path


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
