"""SIGKILL `qa index` at random moments and at every step of a save: the index on disk is always
the previous one or the new one, complete and consistent, and a fresh `qa ask` still works.

Random kills (test_random_kills_leave_the_old_or_the_new_index) cover building from scratch and
updating (files added, changed and removed between trials); kill times are spread across the
start-up and the indexing phase, measured on a calibration run. A save takes milliseconds, so
random kills rarely land inside one; test_kill_before_each_step_of_a_save kills the writer just
before each rename and delete it makes while saving. Trials: QA_CRASH_TRIALS (default 22).

The random kills run on both vector stores. With Milvus (a Milvus Lite file, served by the killed
process itself) a sync commits document by document, so a kill may leave some documents new and
the rest old, but each one whole, none that the update left alone lost, and the next sync
completes it; test_kill_before_each_write_to_milvus kills the writer before each of its writes.
Trials with Milvus: QA_CRASH_TRIALS_MILVUS (default 10).

A graceful stop keeps the same promise without a kill: the web app signalled with SIGTERM or
SIGINT while it indexes exits cleanly with the committed index intact
(test_sigterm_and_sigint_while_indexing_stop_cleanly_and_keep_the_committed_index).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from app_process import ROOT, cli_command, cli_env, run_cli, start_app, unexpected_tracebacks
from robust_support import assert_answer_well_formed, assert_store_consistent, record

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("QA_CRASH_TRIALS", "22"))
TRIALS_MILVUS = int(os.environ.get("QA_CRASH_TRIALS_MILVUS", "10"))
FIRST_DOCS = 40
STABLE_DOC = 0  # never changed or removed: its fact must be answerable after every crash
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
RUN_LIMIT_S = 300  # hang guard for one `qa` process (about 30 s here)

_SYLLABLES = ["ka", "lo", "mi", "ne", "su", "ta", "vi", "ro", "pe", "du", "fa", "gi", "bo", "ze"]
_PEOPLE = ["Ada Brennan", "Tomas Okafor", "Mira Lindqvist", "Jonah Petrakis", "Selma Varga",
           "Owen Castellano", "Ilse Moreau", "Rafael Nakamura", "Greta Holm", "Dario Ferreira"]


# ----------------------------------------------------------------------------- the corpus


def beacon(i: int) -> str:
    """A distinctive capitalised name per document number."""
    rng = random.Random(10_000 + i)
    return "".join(rng.choices(_SYLLABLES, k=3)).capitalize() + "ark"


def keeper(i: int, version: int) -> str:
    return _PEOPLE[(i * 3 + version) % len(_PEOPLE)]


def question_for(i: int) -> str:
    return f"Who is the keeper of the {beacon(i)} beacon?"


def doc_text(i: int, version: int) -> str:
    """About 300 words of filler around one fact, so each file makes two or three passages."""
    rng = random.Random(i * 1000 + version)

    def filler(words: int) -> str:
        out = []
        while words > 0:
            n = min(words, rng.randint(8, 16))
            out.append(" ".join("".join(rng.choices(_SYLLABLES, k=rng.randint(2, 3))) for _ in range(n))
                       .capitalize() + ".")
            words -= n
        return " ".join(out)

    fact = f"The keeper of the {beacon(i)} beacon is {keeper(i, version)}."
    return f"{filler(200)}\n\n{fact} {filler(30)}\n\n{filler(80)}\n"


class Corpus:
    """The corpus folder plus what a correct index of it must hold."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root, self.rng = root, rng
        self.versions: dict[int, int] = {}
        root.mkdir(parents=True)
        (root / "zz-photo.txt").write_bytes(PNG_BYTES)  # always skipped, never in the index
        for i in range(FIRST_DOCS):
            self.write(i, 0)

    def path(self, i: int) -> Path:
        return self.root / f"doc{i:03d}.txt"

    def write(self, i: int, version: int) -> None:
        self.versions[i] = version
        self.path(i).write_text(doc_text(i, version), encoding="utf-8")

    def mutate(self) -> dict[str, list[int]]:
        """Add 1-3 files, change 1-2 and remove 0-2 (never the stable one); at least 2 to embed."""
        others = [i for i in self.versions if i != STABLE_DOC]
        changed = self.rng.sample(others, self.rng.randint(1, 2))
        removed = self.rng.sample([i for i in others if i not in changed], self.rng.randint(0, 2))
        added = [max(self.versions) + 1 + k for k in range(self.rng.randint(1, 3))]
        for i in changed:
            self.write(i, self.versions[i] + 1)
        for i in removed:
            self.path(i).unlink()
            del self.versions[i]
        for i in added:
            self.write(i, 0)
        return {"added": added, "changed": changed, "removed": removed}

    def state(self) -> State:
        texts = {f"{self.root.name}/{self.path(i).name}": doc_text(i, v) for i, v in self.versions.items()}
        return State(texts)


@dataclass
class State:
    """A corpus state as an index must record it: document path -> text (and its sha256)."""

    texts: dict[str, str]
    hashes: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.hashes = {p: hashlib.sha256(t.encode()).hexdigest() for p, t in self.texts.items()}

    def texts_by_hash(self) -> dict[tuple[str, str], str]:
        return {(p, self.hashes[p]): t for p, t in self.texts.items()}


# ----------------------------------------------------------------------------- running `qa index`


@dataclass
class Run:
    """One `qa index` process: when it reached the indexing loop, when (if) it was killed, its end."""

    returncode: int | None = None
    started: float = 0.0
    indexing_at: float | None = None
    killed_at: float | None = None
    alive_at_kill: bool = False
    stderr: bytes = b""


#: Every `qa` process the tests start writes its stderr as it goes (the kill timing reads it).
_UNBUFFERED = {"PYTHONUNBUFFERED": "1"}


@dataclass
class Store:
    """The vector store under test: "faiss" (files in the index folder) or "milvus" (a Milvus
    Lite file beside it, which only one process at a time may open)."""

    kind: str
    index_dir: Path

    @property
    def settings(self) -> dict[str, str]:
        if self.kind == "faiss":
            return {}
        return {"vector_store": "milvus", "milvus_uri": str(self.index_dir.parent / "milvus" / "qa.db")}

    @property
    def env(self) -> dict[str, str]:
        return {f"QA_{k.upper()}": v for k, v in self.settings.items()}

    def release(self) -> None:
        """Let go of the Milvus Lite file, so that a `qa` process can open it."""
        if self.kind == "milvus":
            from qa.milvus_store import release

            release(self.settings["milvus_uri"])

    def reset(self) -> None:
        """Delete the index, to build from scratch."""
        self.release()
        shutil.rmtree(self.index_dir, ignore_errors=True)
        if self.kind == "milvus":
            shutil.rmtree(self.index_dir.parent / "milvus", ignore_errors=True)


def run_index(command: list[str], kill_after: float | None = None, after_marker: bool = False,
              env: dict[str, str] | None = None) -> Run:
    """Run `command`; SIGKILL it `kill_after` seconds after start (or after the indexing marker)."""
    run = Run(started=time.monotonic())
    process = subprocess.Popen(command, cwd=ROOT, env=cli_env({**_UNBUFFERED, **(env or {})}),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = threading.Event()
    chunks: list[bytes] = []

    def pump() -> None:
        while chunk := os.read(process.stderr.fileno(), 65536):
            chunks.append(chunk)
            if not marker.is_set() and b"indexing" in b"".join(chunks[-2:]):
                run.indexing_at = time.monotonic() - run.started
                marker.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    if kill_after is not None:
        if after_marker:
            while not marker.is_set() and process.poll() is None:
                time.sleep(0.005)
            deadline = time.monotonic() + kill_after
        else:
            deadline = run.started + kill_after
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        run.alive_at_kill = process.poll() is None
        if run.alive_at_kill:
            process.send_signal(signal.SIGKILL)
        run.killed_at = time.monotonic() - run.started
    run.returncode = process.wait(RUN_LIMIT_S)
    reader.join(10)
    run.stderr = b"".join(chunks)
    return run


# ----------------------------------------------------------------------------- checking the index


_READING = threading.local()
TMP_OPENS: list[str] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and getattr(_READING, "on", False) and str(args[0]).endswith(".tmp"):
        TMP_OPENS.append(str(args[0]))


sys.addaudithook(_audit)


def check_manifest(index_dir: Path) -> None:
    """If there is a manifest it parses and names complete, final (non-temp) data files."""
    manifest = index_dir / "manifest.json"
    if not manifest.exists():
        return
    data = json.loads(manifest.read_text(encoding="utf-8"))
    for name in data["files"].values():
        assert not name.endswith(".tmp") and (index_dir / name).is_file(), name


def load_state(index_dir: Path, profile: Any, embedder: Any, store: Store | None = None, verify: bool = False
               ) -> tuple[Any, dict[str, str] | None]:
    """The store on disk, checked for consistency, and its documents' hashes (None: no index).

    A FAISS index is always verify()'d: a save is all or nothing. A Milvus store is read as an app
    server would (no repairs): documents whose rows a killed writer left incomplete are not in it,
    and verify() (no leftover rows either) only holds, and is only checked, with `verify=True`."""
    from qa.store import IndexStore

    if store is not None and store.kind == "milvus":
        return _load_milvus_state(store, profile, embedder, verify)
    check_manifest(index_dir)
    _READING.on = True
    try:
        store = IndexStore.load(index_dir, profile)
    except FileNotFoundError:
        return None, None
    finally:
        _READING.on = False
    assert not TMP_OPENS, f"a temp file was read: {TMP_OPENS}"
    assert_store_consistent(store, embedder)
    return store, {p: rec.content_hash for p, rec in store.documents.items()}


def _load_milvus_state(store: Store, profile: Any, embedder: Any, verify: bool) -> tuple[Any, dict[str, str] | None]:
    from qa.config import Settings
    from qa.milvus_store import MilvusStore

    if not Path(store.settings["milvus_uri"]).exists():
        return None, None
    try:
        milvus, _ = MilvusStore.open(Settings.load(index_dir=str(store.index_dir), **store.settings), profile,
                                     repair=False)
        if not milvus.persisted:
            return None, None
        # verify(): no leftovers either, rows and manifest agree exactly (only once a sync has completed)
        assert_store_consistent(milvus, embedder, verify=verify)
        return milvus, {p: rec.content_hash for p, rec in milvus.documents.items()}
    finally:
        store.release()


def classify_documents(found: dict[str, str] | None, old: State | None, new: State) -> str:
    """Milvus commits document by document: each document found is whole and in its old or its
    new version, and none is missing that the update did not add, change or remove."""
    if found is None:
        assert old is None, "an existing index disappeared"
        return "none"
    if found == new.hashes:
        return "new"
    if old is not None and found == old.hashes:
        return "old"
    before = old.hashes if old is not None else {}
    for path, digest in found.items():
        assert digest in (before.get(path), new.hashes.get(path)), f"{path} is in neither version"
    untouched = {p for p, h in before.items() if new.hashes.get(p) == h}
    assert untouched <= set(found), f"documents the update left alone were lost: {sorted(untouched - set(found))}"
    return "mixed"


def assert_matches_either(store: Any, old: State | None, new: State) -> None:
    """Every passage is the text of its document at the version its content hash names."""
    by_hash = {**(old.texts_by_hash() if old else {}), **new.texts_by_hash()}
    for p in store.passages:
        text = by_hash[(p.document, store.documents[p.document].content_hash)]
        assert text[p.start : p.end] == p.text, p


def assert_matches(store: Any, state: State) -> None:
    """Every passage is the text of its document at that state, at its offsets."""
    assert {p: r.content_hash for p, r in store.documents.items()} == state.hashes
    for p in store.passages:
        assert state.texts[p.document][p.start : p.end] == p.text, p


def classify(found: dict[str, str] | None, old: State | None, new: State) -> str:
    if found is None:
        assert old is None, "an existing index disappeared"
        return "none"
    if found == new.hashes:
        return "new"
    assert old is not None and found == old.hashes, "the index holds neither the old nor the new corpus"
    return "old"


# ----------------------------------------------------------------------------- fixtures


@dataclass
class Bench:
    """Models loaded once in the test process, to check indexes and answer questions."""

    embedder: Any
    profile_of: Any


@pytest.fixture(scope="module")
def bench() -> Bench:
    from qa.config import Settings
    from qa.indexing import profile_for
    from qa.pipeline import Engine

    engine = Engine(Settings.load())
    return Bench(engine.embedder, lambda settings: profile_for(settings, engine.embedder))


def ask_fresh(corpus: Corpus, index_dir: Path, i: int, store: Store | None = None) -> Any:
    """What `qa ask` does (a new Engine on these folders), in-process: it syncs, then answers."""
    from qa.config import Settings
    from qa.pipeline import Engine

    engine = Engine(Settings.load(corpus_dir=str(corpus.root), index_dir=str(index_dir),
                                  **(store.settings if store else {})))
    try:
        result = engine.answer(question_for(i))
    finally:
        if store is not None:
            store.release()
    assert_answer_well_formed(result, corpus.root.parent)
    assert result.hits[0].passage.document == f"{corpus.root.name}/{corpus.path(i).name}"
    assert keeper(i, corpus.versions[i]) in result.hits[0].passage.text
    assert result.text == keeper(i, corpus.versions[i]), (result.text, result.score)
    return result


def ask_cli(corpus: Corpus, index_dir: Path, i: int, store: Store | None = None) -> dict:
    """The real `qa ask --json` in a new process."""
    out = run_cli("ask", question_for(i), "--json", "--corpus-dir", str(corpus.root), "--index-dir", str(index_dir),
                  env={**_UNBUFFERED, **(store.env if store else {})}, timeout=RUN_LIMIT_S)
    assert out.returncode == 0, out.stderr[-3000:]
    data = json.loads(out.stdout)
    assert data["hits"][0]["document"] == f"{corpus.root.name}/{corpus.path(i).name}", data["hits"][:2]
    assert data["text"] == keeper(i, corpus.versions[i]) and 0 <= data["score"] <= 1, data["text"]
    return data


# ----------------------------------------------------------------------------- the tests


def _schedule(trials: int, rng: random.Random) -> list[tuple[str, str, float]]:
    """(phase, mode, fraction) per trial: about a third from scratch, the rest updates; in each,
    a few kills during start-up and the rest spread evenly over the indexing phase."""
    scratch = max(3, trials // 3)
    plan = []
    for phase, count in (("scratch", scratch), ("update", trials - scratch)):
        startup = max(1, count // 5)
        for k in range(count):
            if k < startup:
                plan.append((phase, "startup", rng.random()))
            else:
                n = count - startup
                plan.append((phase, "indexing", (k - startup + rng.random()) / n))
    return plan


@pytest.mark.parametrize("kind", ["faiss", "milvus"])
def test_random_kills_leave_the_old_or_the_new_index(tmp_path: Path, bench: Bench, kind: str) -> None:
    from qa.config import Settings

    if kind == "milvus":
        pytest.importorskip("pymilvus")
    rng = random.Random(int(os.environ.get("QA_CRASH_SEED", "20261128")))
    corpus = Corpus(tmp_path / "corpus", rng)
    index_dir = tmp_path / "index"
    store_kind = Store(kind, index_dir)
    trial_count = TRIALS if kind == "faiss" else TRIALS_MILVUS
    profile = bench.profile_of(Settings.load(corpus_dir=str(corpus.root), index_dir=str(index_dir)))
    command = cli_command("index", str(corpus.root), "--index-dir", str(index_dir))

    def index(**kwargs: Any) -> Run:
        return run_index(command, env=store_kind.env, **kwargs)

    def state(verify: bool = False) -> tuple[Any, dict[str, str] | None]:
        return load_state(index_dir, profile, bench.embedder, store_kind, verify)

    calibration = index()  # uncut: how long start-up and indexing take
    assert calibration.returncode == 0, calibration.stderr[-3000:]
    assert calibration.indexing_at is not None
    total = time.monotonic() - calibration.started
    per_file = (total - calibration.indexing_at) / FIRST_DOCS
    _, found = state()
    assert found == corpus.state().hashes

    trials: list[dict] = []
    old: State | None = corpus.state()
    for number, (phase, mode, fraction) in enumerate(_schedule(trial_count, rng)):
        if phase == "scratch":
            store_kind.reset()
            old, change = None, {}
        else:
            change = corpus.mutate()
        new = corpus.state()
        pending = FIRST_DOCS if phase == "scratch" else len(change["added"]) + len(change["changed"])
        if mode == "startup":
            run = index(kill_after=fraction * calibration.indexing_at)
        else:
            run = index(kill_after=fraction * (pending + 3) * per_file * 1.2, after_marker=True)
        assert run.returncode in (0, -signal.SIGKILL), run.stderr[-3000:]
        store, found = state()
        if kind == "faiss":
            outcome = classify(found, old, new)
            if store is not None:
                assert_matches(store, new if outcome == "new" else old)
        else:
            outcome = classify_documents(found, old, new)
            if store is not None:
                assert_matches_either(store, old, new)
        tmp_left = len(list(index_dir.glob(".*.tmp"))) if index_dir.exists() else 0
        # (Milvus: after a kill that left some documents new, the next check needs a clean start.)
        asked = number % 2 == 0 or number == trial_count - 1 or outcome == "mixed"
        if asked:  # a fresh `qa ask` completes the update and finds the stable fact
            if number % 5 == 0:
                ask_cli(corpus, index_dir, STABLE_DOC, store_kind)
            else:
                ask_fresh(corpus, index_dir, STABLE_DOC, store_kind)
            store, found = state(verify=True)
            assert found == new.hashes
            assert_matches(store, new)
            assert not list(index_dir.glob(".*.tmp")), "temp files outlived the next writer"
        trials.append({"trial": number, "phase": phase, "mode": mode, "change": change,
                       "kill_at_s": round(run.killed_at or 0, 3), "indexing_at_s": run.indexing_at and round(run.indexing_at, 3),
                       "alive_at_kill": run.alive_at_kill, "outcome": outcome, "tmp_left": tmp_left,
                       "asked": asked})
        old = new if (asked or outcome == "new") else old

    print(json.dumps(trials, indent=1))
    (tmp_path / "kill_trials.json").write_text(json.dumps(trials, indent=1))
    outcomes = [t["outcome"] for t in trials]
    record("kill-random" if kind == "faiss" else "kill-random-milvus", trials=len(trials),
           killed=sum(t["alive_at_kill"] for t in trials),
           outcomes={o: outcomes.count(o) for o in set(outcomes)}, corruptions=0, lost_documents=0,
           calibration={"indexing_at_s": round(calibration.indexing_at, 2), "total_s": round(total, 2)},
           detail=trials)
    assert len(trials) >= min(trial_count, 20)
    assert sum(t["alive_at_kill"] for t in trials) >= len(trials) // 2, "most kills should hit a live process"


_KILL_AT_STEP = r"""
import os, signal, sys
import qa.store as store

step = int(os.environ["ROBUST_KILL_AT_STEP"])  # 0: never
seen = 0
active = False

def guarded(real):
    def call(*args, **kwargs):
        global seen
        if active and not (real is real_unlink and str(args[0]).endswith(".tmp")):  # no-op cleanup
            seen += 1
            if seen == step:
                sys.stderr.write(f"KILL before {real.__name__}{tuple(map(str, args))}\n")
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return call

real_unlink = os.unlink
os.replace, os.unlink = guarded(os.replace), guarded(os.unlink)
original_save = store.IndexStore.save

def save(self):
    global active
    active = True
    try:
        return original_save(self)
    finally:
        active = False

store.IndexStore.save = save
import atexit
atexit.register(lambda: sys.stderr.write(f"SAVE STEPS {seen}\n"))
from qa.cli import app
app(sys.argv[1:], prog_name="qa")
"""

#: Steps of IndexStore.save that change what is on disk (from an index with no leftovers), and
#: what a kill just before each leaves.
SAVE_STEPS = [
    ("rename the new vectors file into place", "old"),
    ("rename the new passages file into place", "old"),
    ("rename the new manifest over the old one", "old"),
    ("delete the first file of the previous generation", "new"),
    ("delete the second file of the previous generation", "new"),
]


def sync_clean(corpus: Corpus, index_dir: Path) -> State:
    """Bring the index fully up to date in-process; only the current generation is left."""
    from qa.config import Settings
    from qa.pipeline import Engine

    Engine(Settings.load(corpus_dir=str(corpus.root), index_dir=str(index_dir))).ensure_index(progress=False)
    names = sorted(p.name for p in index_dir.iterdir() if p.name not in (".lock", "skipped.json"))
    assert len(names) == 3 and names[0] == "manifest.json", names
    assert (index_dir / "skipped.json").is_file()  # the photo, remembered as skipped: not read again
    return corpus.state()


def test_kill_before_each_step_of_a_save(tmp_path: Path, bench: Bench) -> None:
    from qa.config import Settings

    corpus = Corpus(tmp_path / "corpus", random.Random(7))
    index_dir = tmp_path / "index"
    profile = bench.profile_of(Settings.load(corpus_dir=str(corpus.root), index_dir=str(index_dir)))
    command = [sys.executable, "-c", _KILL_AT_STEP, "index", str(corpus.root), "--index-dir", str(index_dir)]
    results = []
    for step, (what, expected) in enumerate([*SAVE_STEPS, ("nothing: the save completes", "new")], start=1):
        old = sync_clean(corpus, index_dir)
        corpus.mutate()
        new = corpus.state()
        killed = step <= len(SAVE_STEPS)
        run = run_index(command, env={"ROBUST_KILL_AT_STEP": str(step if killed else 0)})
        assert run.returncode == (-signal.SIGKILL if killed else 0), (step, run.stderr[-2000:])
        if not killed:  # the steps listed are all there are
            assert f"SAVE STEPS {len(SAVE_STEPS)}".encode() in run.stderr, run.stderr[-500:]
        store, found = load_state(index_dir, profile, bench.embedder)
        outcome = classify(found, old, new)
        assert outcome == expected, (step, what)
        assert_matches(store, new if outcome == "new" else old)
        kill_line = next((ln for ln in run.stderr.decode(errors="replace").splitlines() if ln.startswith("KILL")), "")
        results.append({"step": step, "kill_before": what, "outcome": outcome, "killed": kill_line,
                        "files": sorted(p.name for p in index_dir.iterdir())})
    ask_fresh(corpus, index_dir, STABLE_DOC)
    print(json.dumps(results, indent=1))
    record("kill-save-steps", trials=len(SAVE_STEPS), outcomes=[r["outcome"] for r in results[:-1]],
           corruptions=0, lost_documents=0, detail=results)


_KILL_AT_WRITE = r"""
import os, signal, sys
import qa.milvus_store as milvus_store

step = int(os.environ["ROBUST_KILL_AT_STEP"])  # 0: never
seen = 0
real_write = milvus_store.MilvusStore._write

def write(self, what, method, *args, **kwargs):
    global seen
    seen += 1
    if seen == step:
        sys.stderr.write(f"KILL before {what}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_write(self, what, method, *args, **kwargs)

milvus_store.MilvusStore._write = write
import atexit
atexit.register(lambda: sys.stderr.write(f"WRITE STEPS {seen}\n"))
from qa.cli import app
app(sys.argv[1:], prog_name="qa")
"""


def test_kill_before_each_write_to_milvus(tmp_path: Path, bench: Bench) -> None:
    """SIGKILL `qa index` (which serves the Milvus Lite file itself) just before each of its
    writes to Milvus in turn, during an update that adds, changes and removes a file: every
    document found is whole, in its old or new version; none the update left alone is lost; the
    next sync completes the update."""
    from qa.config import Settings
    from qa.pipeline import Engine

    pytest.importorskip("pymilvus")
    corpus = Corpus(tmp_path / "corpus", random.Random(7))
    index_dir = tmp_path / "index"
    store = Store("milvus", index_dir)
    settings = Settings.load(corpus_dir=str(corpus.root), index_dir=str(index_dir), **store.settings)
    profile = bench.profile_of(settings)
    command = [sys.executable, "-c", _KILL_AT_WRITE, "index", str(corpus.root), "--index-dir", str(index_dir)]
    results = []
    for step in range(1, 16):
        Engine(settings).ensure_index(progress=False)
        store.release()
        old = corpus.state()
        others = sorted(i for i in corpus.versions if i != STABLE_DOC)  # the same kind of update each time:
        corpus.write(others[0], corpus.versions[others[0]] + 1)  # one file changed,
        corpus.path(others[1]).unlink()  # one removed,
        del corpus.versions[others[1]]
        corpus.write(max(corpus.versions) + 1, 0)  # one added
        new = corpus.state()
        run = run_index(command, env={**store.env, "ROBUST_KILL_AT_STEP": str(step)})
        killed = run.returncode == -signal.SIGKILL
        assert killed or run.returncode == 0, (step, run.stderr[-2000:])
        milvus, found = load_state(index_dir, profile, bench.embedder, store)
        outcome = classify_documents(found, old, new)
        assert_matches_either(milvus, old, new)
        kill_line = next((ln for ln in run.stderr.decode(errors="replace").splitlines() if ln.startswith("KILL")), "")
        results.append({"step": step, "killed": kill_line, "outcome": outcome})
        if not killed:  # past the last write: the update completed
            steps = int(run.stderr.decode().rsplit("WRITE STEPS ", 1)[1].split()[0])
            assert steps < step and outcome == "new", (steps, outcome)
            break
    else:
        raise AssertionError(f"an update made more than 15 writes: {results}")
    kills = [r["killed"].removeprefix("KILL before ") for r in results if r["killed"]]
    assert kills == ["delete manifest rows", "delete passage rows", "write passage rows", "write passage rows",
                     "delete stale rows", "write manifest rows", "write profile"], kills
    ask_fresh(corpus, index_dir, STABLE_DOC, store)
    _, found = load_state(index_dir, profile, bench.embedder, store, verify=True)
    assert found == corpus.state().hashes
    print(json.dumps(results, indent=1))
    record("kill-milvus-writes", trials=len(results) - 1, outcomes=[r["outcome"] for r in results],
           corruptions=0, lost_documents=0, detail=results)


# ----------------------------------------------------------------------------- stopping the web app


#: Documents added for the app to index: embedding their ~1,200 passages takes tens of seconds
#: here, so a signal sent as indexing starts always lands while it runs.
ADDED_DOCS = 400
#: Hang guard for a signalled app to exit (measured: about 2 s; printed, not asserted).
STOP_HANG_GUARD_S = 120


def _stop_app(server: Any, signum: int) -> tuple[int, float]:
    """Send `signum` to the app; its exit status and the seconds it took to exit (for the record)."""
    sent = time.monotonic()
    server.process.send_signal(signum)
    status = server.process.wait(timeout=STOP_HANG_GUARD_S)
    return status, time.monotonic() - sent


def _assert_clean_stop(log: str, signame: str) -> None:
    """One "stopped" line naming the signal, no traceback, no abort from a native thread."""
    assert [ln.split("qa.web: ", 1)[1] for ln in log.splitlines() if "qa.web: stopped" in ln] == [
        f"stopped on {signame}"], log[-3000:]
    assert "terminate called" not in log and "Aborted" not in log, log[-3000:]
    assert unexpected_tracebacks(log) == [], log[-3000:]


def test_sigterm_and_sigint_while_indexing_stop_cleanly_and_keep_the_committed_index(tmp_path: Path,
                                                                                    bench: Bench) -> None:
    """The web app, signalled while it indexes 400 new files, closes its server and exits 0
    (SIGTERM) or 130 (Ctrl-C), saving nothing half-done: the index on disk is the
    one committed before. The next start indexes exactly the 400 files (none of the committed
    ones again), and a SIGTERM after indexing is as clean."""
    from qa.config import Settings

    corpus = Corpus(tmp_path / "corpus", random.Random(3))
    index_dir = tmp_path / "index"
    profile = bench.profile_of(Settings.load(corpus_dir=str(corpus.root), index_dir=str(index_dir)))
    built = run_cli("index", str(corpus.root), "--index-dir", str(index_dir), env=_UNBUFFERED, timeout=RUN_LIMIT_S)
    assert built.returncode == 0, built.stderr[-3000:]
    committed = corpus.state()
    for i in range(FIRST_DOCS, FIRST_DOCS + ADDED_DOCS):
        corpus.write(i, 0)
    measured = {}
    for signum, status in ((signal.SIGTERM, 0), (signal.SIGINT, 130)):
        name = signal.Signals(signum).name
        server = start_app(corpus.root, index_dir, tmp_path / f"{name}.log")
        try:
            server.wait_for_log("Serving on", "Indexing ")
            # "Serving on" is logged only once the server accepts connections.
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
            got, seconds = _stop_app(server, signum)
        finally:
            if server.process.poll() is None:
                server.process.kill()
        log = server.log_text()
        measured[name] = {"status": got, "seconds": round(seconds, 2)}
        assert got == status, log[-3000:]
        _assert_clean_stop(log, name)
        assert "index ready" not in log and "indexing stopped before it finished" in log, log[-3000:]
        store, found = load_state(index_dir, profile, bench.embedder)
        assert found == committed.hashes  # the committed index, intact: nothing half-saved
        assert_matches(store, committed)

    server = start_app(corpus.root, index_dir, tmp_path / "again.log")
    try:
        log = server.wait_for_log("index ready")
        got, seconds = _stop_app(server, signal.SIGTERM)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    log = server.log_text()
    measured["SIGTERM after indexing"] = {"status": got, "seconds": round(seconds, 2)}
    assert got == 0, log[-3000:]
    _assert_clean_stop(log, "SIGTERM")
    store, found = load_state(index_dir, profile, bench.embedder)
    assert_matches(store, corpus.state())
    ready = next(ln.split("qa.web: ", 1)[1] for ln in log.splitlines() if "qa.web: index ready" in ln)
    expected = (f"index ready: {FIRST_DOCS + ADDED_DOCS} documents, {len(store.passages)} passages "
                f"({ADDED_DOCS} added, 1 skipped) in ")  # the photo is skipped; nothing committed is redone
    assert ready.startswith(expected) and re.fullmatch(r"\d+\.\d s", ready.removeprefix(expected)), ready
    print(json.dumps(measured, indent=1))
