"""Hostile uploads (issue 40): what each costs the server, and what reading under a budget costs a
normal file.

Builds every file itself (tests/hostile_files.py) and prints, per case, seconds and outcome:

* reading overhead: the seed file read in this process against through a warm worker process
  (`qa.parsing.DocumentReader`), and the start of a worker;
* a normal 300-page PDF (~1 M characters): read in this process, and under the budget;
* each hostile file read under the default budget (the 200- and 1-page content-stream bombs, the
  cyclic page tree, the nested arrays, the scan, the polyglot, the SVG page, a 20 MB text file);
* the 200-page PDF beside a note, with `qa index` and `qa ask` in fresh processes: the first index
  (model loading included), the sync alone, indexing again with nothing changed, the note's answer;
* the same with a 20 MB text file instead of the PDF;
* SIGTERM to `python app.py` while it reads the PDF: seconds until it exits, and its status.

The process-level cases also run against another checkout (`--code DIR`, e.g. the commit before
this change: `git archive HEAD | tar -x -C /tmp/before`), with `--timeout` capping each command, to
give the figures before. Only meaningful on an otherwise idle machine; numbers go to the closing
note, not to assertions.

    python benchmarks/hostile_uploads.py                       # this checkout, everything
    python benchmarks/hostile_uploads.py --code /tmp/before --timeout 240 --only processes
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import hostile_files as hostile  # noqa: E402 - shared with the tests
from app_process import free_port  # noqa: E402

MB = 2**20
NOTE = "The Quillfeather archive keeps 7,412 maps of the northern coast. Its curator is Odile Marchetti.\n"
QUESTION = "Who is the curator of the Quillfeather archive?"
SEED = ROOT / "seeds" / "000_b6ab0304c308f14d.txt"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - the outcome is part of the figure
        result = f"{type(exc).__name__}: {exc}"
    return time.perf_counter() - started, result


# ----------------------------------------------------------------------------- in this process


def reading_overhead(repeats: int) -> list[dict]:
    from qa.documents import load_document
    from qa.parsing import DocumentReader

    rows = []
    with DocumentReader() as reader:
        start, _ = timed(lambda: reader.read(SEED, SEED.parent))
        rows.append({"case": "worker start (first read, seed file)", "seconds": round(start, 3)})
        inline = min(timed(lambda: [load_document(SEED, SEED.parent) for _ in range(repeats)])[0] for _ in range(3))
        worker = min(timed(lambda: [reader.read(SEED, SEED.parent) for _ in range(repeats)])[0] for _ in range(3))
    rows.append({"case": "seed file, in this process", "ms_per_file": round(1000 * inline / repeats, 3)})
    rows.append({"case": "seed file, warm worker", "ms_per_file": round(1000 * worker / repeats, 3),
                 "overhead_ms": round(1000 * (worker - inline) / repeats, 3)})
    return rows


def normal_pdf(folder: Path, pages: int) -> list[dict]:
    from qa.config import Settings
    from qa.documents import load_document
    from qa.parsing import DocumentReader
    from qa.passages import split_passages

    path = folder / "report.pdf"
    path.write_bytes(hostile.normal_pdf(pages))
    inline, document = timed(lambda: load_document(path, folder))
    with DocumentReader() as reader:
        reader.read(SEED, SEED.parent)  # a warm worker, as in a running server
        bounded, again = timed(lambda: reader.read(path, folder))
    settings = Settings()
    passages = len(split_passages(document, settings.passage_words, settings.passage_overlap_words))
    allowed = settings.parse_seconds + pages * settings.parse_page_seconds
    return [{"case": f"normal {pages}-page PDF ({path.stat().st_size // 1024} KB), in this process",
             "seconds": round(inline, 2), "chars": len(document.text), "passages": passages},
            {"case": f"normal {pages}-page PDF, under the budget", "seconds": round(bounded, 2),
             "same_text": again == document, "budget_s": min(allowed, settings.parse_max_seconds)}]


def hostile_reads(folder: Path) -> list[dict]:
    from qa.parsing import DocumentReader

    files = {
        "bomb-200.pdf": hostile.content_bomb_pdf(200), "bomb-1.pdf": hostile.content_bomb_pdf(1),
        "cyclic.pdf": hostile.cyclic_pages_pdf(), "nested.pdf": hostile.nested_arrays_pdf(),
        "scan.pdf": hostile.no_text_pdf(), "polyglot.pdf": hostile.polyglot_pdf(),
        "drawing.html": hostile.svg_in_html(), "twenty.txt": hostile.big_text(20 * MB),
    }
    rows = []
    with DocumentReader() as reader:
        reader.read(SEED, SEED.parent)
        for name, data in files.items():
            (folder / name).write_bytes(data)
            seconds, result = timed(lambda: reader.read(folder / name, folder))
            outcome = "read" if not isinstance(result, str) else result.removeprefix("DocumentError: ")
            rows.append({"case": f"read {name} ({len(data) // 1024} KB)", "seconds": round(seconds, 2),
                         "outcome": outcome})
    return rows


# ----------------------------------------------------------------------------- fresh processes


def _env(code: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_") or k == "QA_THREADS"}
    env["PYTHONPATH"] = str(code)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _qa(code: Path, timeout: float, *args: str) -> tuple[float, str, str]:
    """`qa ARGS` from checkout `code`: wall seconds, stdout, and stderr (or a timeout note)."""
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "qa.cli", *args], cwd=code, env=_env(code),
                              capture_output=True, text=True, timeout=timeout)
        return time.perf_counter() - started, done.stdout, done.stderr
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, "", f"killed after {timeout:.0f} s"


def _sync_seconds(stdout: str) -> float | None:
    """The sync's own time from `qa index`'s summary ("... in 11.5s")."""
    import re

    match = re.search(r" in (\d+\.\d)s", stdout)
    return float(match.group(1)) if match else None


def folder_cases(code: Path, work: Path, timeout: float) -> list[dict]:
    rows = []
    cases = {"200-page PDF + note": ("bomb.pdf", hostile.content_bomb_pdf(200)),
             "1-page PDF + note": ("bomb1.pdf", hostile.content_bomb_pdf(1)),
             "20 MB text + note": ("twenty.txt", hostile.big_text(20 * MB))}
    for label, (name, data) in cases.items():
        folder = work / label.split()[0].replace("-", "") / "docs"
        folder.mkdir(parents=True)
        (folder / "note.txt").write_text(NOTE, encoding="utf-8")
        (folder / name).write_bytes(data)
        index = folder.parent / "index"
        for run in ("index", "index again (nothing changed)"):
            log(f"{label}: qa {run}")
            wall, out, err = _qa(code, timeout, "index", str(folder), "--index-dir", str(index))
            skipped = [line for line in err.splitlines() if line.startswith("skipped ")]
            rows.append({"case": f"{label}: qa {run}", "seconds": round(wall, 1), "sync_s": _sync_seconds(out),
                         "outcome": skipped[0] if skipped else (out.strip().splitlines() or [err[-200:]])[-1]})
            if err.startswith("killed after"):  # the rest would only be killed too
                break
        if rows[-1]["outcome"].startswith("killed after"):
            continue
        log(f"{label}: qa ask")
        wall, out, err = _qa(code, timeout, "ask", QUESTION, "--corpus-dir", str(folder), "--index-dir", str(index))
        rows.append({"case": f"{label}: qa ask (the note's question)", "seconds": round(wall, 1),
                     "outcome": out.strip().splitlines()[0] if out.strip() else err[-200:]})
    return rows


def restart_case(code: Path, work: Path, timeout: float) -> list[dict]:
    """`python app.py` over the 200-page PDF's folder and the index `qa index` left: the seconds
    from its "Indexing" line to "index ready" (the sync at start-up), and from launch."""
    import re

    folder = work / "200page" / "docs"
    log_path = work / "200page" / "app.log"
    command = [sys.executable, str(code / "app.py"), "--port", str(free_port()), "--corpus-dir", str(folder),
               "--index-dir", str(folder.parent / "index")]
    started = time.perf_counter()
    with log_path.open("wb") as out:
        app = subprocess.Popen(command, cwd=code, env=_env(code), stdout=out, stderr=subprocess.STDOUT)
    try:
        while "index ready" not in log_path.read_text(errors="replace") and time.perf_counter() - started < timeout:
            if app.poll() is not None:
                break
            time.sleep(0.05)
        launch = time.perf_counter() - started
    finally:
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(timeout=120)
        except subprocess.TimeoutExpired:
            app.kill()
    text = log_path.read_text(errors="replace")
    stamps = {}
    for line in text.splitlines():
        for key in ("Indexing ", "index ready"):
            match = re.match(r"(\d+-\d+-\d+ \d+:\d+:\d+,\d+) ", line)
            if key in line and match and key not in stamps:
                stamps[key] = time.mktime(time.strptime(match.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + int(
                    match.group(1)[20:]) / 1000
    if "index ready" not in stamps:
        return [{"case": "app.py restarted over the 200-page PDF's folder", "seconds": round(launch, 1),
                 "outcome": f"not ready after {timeout:.0f} s"}]
    ready = next(line.split("index ready: ", 1)[1] for line in text.splitlines() if "index ready" in line)
    return [{"case": "app.py restarted over the 200-page PDF's folder: sync at start-up", "seconds":
             round(stamps["index ready"] - stamps["Indexing "], 2), "launch_to_ready_s": round(launch, 1),
             "outcome": ready}]


def sigterm_case(code: Path, work: Path, timeout: float, delay: float) -> list[dict]:
    """SIGTERM to app.py `delay` seconds after it starts reading the 200-page PDF."""
    folder = work / "sigterm" / "docs"
    (folder / "uploads").mkdir(parents=True)
    (folder / "note.txt").write_text(NOTE, encoding="utf-8")
    (folder / "uploads" / "bomb.pdf").write_bytes(hostile.content_bomb_pdf(200))
    log_path = work / "sigterm" / "app.log"
    command = [sys.executable, str(code / "app.py"), "--port", str(free_port()), "--corpus-dir", str(folder),
               "--index-dir", str(work / "sigterm" / "index")]
    with log_path.open("wb") as out:
        app = subprocess.Popen(command, cwd=code, env=_env(code), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while "Indexing " not in log_path.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)  # the note takes milliseconds: the PDF is being read
    sent = time.perf_counter()
    app.send_signal(signal.SIGTERM)
    try:
        status = app.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        app.kill()
        status = "killed"
    seconds = time.perf_counter() - sent
    text = log_path.read_text(errors="replace")
    said = [line.split(": ", 1)[-1] for line in text.splitlines() if "did not stop" in line or "stopped on" in line]
    return [{"case": f"SIGTERM {delay:g} s into reading the 200-page PDF (app.py)", "seconds": round(seconds, 2),
             "status": status, "outcome": said}]


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose qa and app.py the processes run")
    parser.add_argument("--timeout", type=float, default=600, help="cap on each command (seconds)")
    parser.add_argument("--only", choices=("reading", "processes"), help="run one half only")
    parser.add_argument("--pages", type=int, default=300, help="pages of the normal PDF")
    parser.add_argument("--repeats", type=int, default=200, help="reads of the seed file for the overhead")
    parser.add_argument("--sigterm-after", type=float, default=3.0, help="seconds into the PDF to send SIGTERM")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    code = args.code.resolve()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qa-hostile-") as temp:
        work = Path(temp)
        if args.only in (None, "reading"):
            log("reading overhead")
            rows += reading_overhead(args.repeats)
            log(f"normal {args.pages}-page PDF")
            rows += normal_pdf(work, args.pages)
            log("hostile files, one by one")
            rows += hostile_reads(work)
        if args.only in (None, "processes"):
            rows += folder_cases(code, work, args.timeout)
            log("restart over the 200-page PDF's folder")
            rows += restart_case(code, work, args.timeout)
            log("SIGTERM while reading")
            rows += sigterm_case(code, work, args.timeout, args.sigterm_after)
    print(f"code: {code} · {os.cpu_count()} CPUs · load {os.getloadavg()[0]:.1f}")
    for row in rows:
        rest = ", ".join(f"{k} {v}" for k, v in row.items() if k != "case")
        print(f"- {row['case']}: {rest}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
