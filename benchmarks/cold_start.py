"""Cold start: a new interpreter running `from qa import answer; answer(...)` to its first answer."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from harness import ROOT, config_environment


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
