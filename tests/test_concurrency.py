"""Many users at once: 20 gradio_client clients ask while documents are uploaded and removed.

The web app's API exposes only `/ask` (upload and remove are private UI events), so the
uploader is driven as the UI drives it:
- test_app_process_serves_while_another_process_writes: the real `app.py` in a subprocess; the
  uploader is an Engine in this test process on the same folders (save_upload + add_file,
  remove_file), so the app must pick up another process's index while it answers.
- test_shared_engine_serves_while_uploading: the app built in-process around one Engine; the
  uploader calls the app's own upload handler (`web.add_uploads`) and `engine.remove_file`, the
  code the Upload and Remove buttons run.
Every one of the 60 answers is checked against what the seed article says (the bridge fact is
uploaded for good only after the clients are done, so its questions abstain while they ask).
Throughput and p95 latency are printed and recorded, never asserted (benchmarks/concurrency.py
measures them).

The two fast tests pin down the races behind them without models: a reader loading the index
while a writer replaces it, and a server whose index on disk turns unreadable.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from app_process import (
    SEED_FILE,
    accepted_answers,
    copy_writable,
    free_port,
    run_app,
    seeds_dir,
    unexpected_tracebacks,
)
from robust_support import (
    HashEmbedder,
    assert_payload_well_formed,
    assert_store_consistent,
    file_hashes,
    record,
)

CLIENTS = int(os.environ.get("QA_CONCURRENT_CLIENTS", "20"))
QUESTIONS_PER_CLIENT = int(os.environ.get("QA_QUESTIONS_PER_CLIENT", "3"))
QUESTIONS = [
    "Who interviewed Zelensky?",
    "What does Zelensky want to place under NATO's umbrella?",
    "How long is the Ozymandrel bridge?",
    "Which river does the Ozymandrel bridge cross?",
    "   ",  # refused as empty: the client must get the message, not a crash
    "<script>alert(1)</script> what?",
]
UPLOAD_FACT = "The Ozymandrel bridge is 417 metres long and crosses the river Tessaline."
#: What each question must get while the clients ask: the accepted answers ("" is an abstention;
#: the bridge fact is not in the index then), or REFUSED for the empty question's message.
REFUSED = "<refused as empty>"
EXPECTED = {
    "Who interviewed Zelensky?": set(accepted_answers("Who interviewed Zelensky?")),
    "What does Zelensky want to place under NATO's umbrella?": {"territory of Ukraine"},
    "How long is the Ozymandrel bridge?": {""},
    "Which river does the Ozymandrel bridge cross?": {""},
    "   ": {REFUSED},
    "<script>alert(1)</script> what?": {""},
}
#: Saves and loads the race test waits for, and its hang guard (not a speed target).
RACE_ROUNDS = 20
RACE_HANG_GUARD_S = 300


# ----------------------------------------------------------------------------- fast: the races


def _toy_store(directory: Path, size: int, seed: int) -> Any:
    """An in-memory store of `size` one-passage documents with random unit vectors (dimension 8)."""
    from qa.passages import passage_id
    from qa.store import DocumentRecord, IndexProfile, IndexStore
    from qa.types import Passage

    rng = np.random.default_rng(seed)
    store = IndexStore(directory, IndexProfile("toy", 8, 150, 40))
    for i in range(size):
        text = f"document {i} version {seed}"
        passage = Passage(passage_id(f"d{i}", 0, len(text), text), f"d{i}", 0, len(text), text)
        vector = rng.normal(size=(1, 8)).astype(np.float32)
        store.add_document(f"d{i}", DocumentRecord(str(seed), 1, len(text)), [passage],
                           vector / np.linalg.norm(vector))
    return store


def test_loading_while_another_writer_saves_never_fails(tmp_path: Path) -> None:
    """Readers reload while writers save and delete the previous generation, from stale views."""
    from qa.store import IndexProfile, IndexStore, write_lock

    profile = IndexProfile("toy", 8, 150, 40)
    _toy_store(tmp_path, 50, 0).save()
    stop = threading.Event()
    saves = [0]

    def writer(offset: int) -> None:
        seed = offset
        while not stop.is_set():
            seed += 2
            store = _toy_store(tmp_path, 30 + seed % 40, seed)  # built outside the lock, like Engine
            store.generation = 1  # a stale view: another writer has saved since
            with write_lock(tmp_path):
                store.save()
            saves[0] += 1

    threads = [threading.Thread(target=writer, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    loads, failures = 0, []
    deadline = time.monotonic() + RACE_HANG_GUARD_S  # a hang guard: the rounds, not a time, end the race
    try:
        while (saves[0] < RACE_ROUNDS or loads < RACE_ROUNDS) and not failures and time.monotonic() < deadline:
            try:
                store = IndexStore.load(tmp_path, profile)
                assert_store_consistent(store)
                assert len({rec.content_hash for rec in store.documents.values()}) == 1, "two saves mixed"
                loads += 1
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                failures.append(repr(exc))
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"{loads} loads during {saves[0]} saves, {len(failures)} failures")
    assert saves[0] >= RACE_ROUNDS and loads >= RACE_ROUNDS, f"hung: {saves[0]} saves, {loads} loads"
    assert failures == []


def _engine_over_seeds(embedder: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An Engine over a copy of the seeds with `embedder` in place of the model, index built."""
    import qa.pipeline
    from qa.config import Settings

    monkeypatch.setattr(qa.pipeline, "_embedder", lambda *args, **kwargs: embedder)
    corpus = copy_writable(seeds_dir(), tmp_path / "seeds")
    engine = qa.pipeline.Engine(Settings.load(corpus_dir=str(corpus), index_dir=str(tmp_path / "index")))
    engine.ensure_index(progress=False)
    return engine


@pytest.fixture()
def stub_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An Engine over a copy of the seeds with the hashing embedder (no model loading)."""
    return _engine_over_seeds(HashEmbedder(), tmp_path, monkeypatch)


@pytest.mark.parametrize("damage", ["garbage manifest", "other settings", "missing data file"])
def test_server_keeps_its_index_when_the_one_on_disk_is_unusable(stub_engine: Any, damage: str) -> None:
    """Another process leaves an unusable index: answers keep coming from the loaded one."""
    index = Path(stub_engine.settings.index_dir)
    before = [h.passage.id for h in stub_engine.retrieve("Who interviewed Zelensky?", 3)]
    manifest = json.loads((index / "manifest.json").read_text())
    if damage == "garbage manifest":
        text = "{not json"
    elif damage == "other settings":
        manifest["profile"]["passage_words"] += 1
        text = json.dumps(manifest)
    else:
        (index / manifest["files"]["vectors"]).unlink()
        text = json.dumps(manifest)
    time.sleep(0.01)
    (index / "manifest.json").write_text(text)
    after = [h.passage.id for h in stub_engine.retrieve("Who interviewed Zelensky?", 3)]
    assert after == before and len(after) == 3


class _GatedEmbedder(HashEmbedder):
    """Blocks while embedding a text containing SLOWDOC until released, like a big upload."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding_slow_doc = threading.Event()
        self.release = threading.Event()

    def encode(self, texts: list[str], progress: bool = False, stop=None) -> np.ndarray:
        if any("SLOWDOC" in t for t in texts):
            self.embedding_slow_doc.set()
            self.release.wait(60)
        return super().encode(texts, progress, stop)


def test_questions_do_not_wait_for_an_upload_being_indexed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While an upload is embedded (minutes for a big PDF), questions are answered from the index
    as it was: retrieve() returns while add_file() is still running."""
    gated = _GatedEmbedder()
    engine = _engine_over_seeds(gated, tmp_path, monkeypatch)
    corpus = Path(engine.settings.corpus_dir)
    (corpus / "uploads").mkdir()
    (corpus / "uploads" / "big.txt").write_text("SLOWDOC. The Ozymandrel bridge is 417 metres long.")
    upload = threading.Thread(target=engine.add_file, args=(corpus / "uploads" / "big.txt",))
    upload.start()
    try:
        assert gated.embedding_slow_doc.wait(30), "the upload never started embedding"
        answered: list[list] = []
        asker = threading.Thread(target=lambda: answered.append(engine.retrieve("Who interviewed Zelensky?", 3)))
        asker.start()
        asker.join(10)
        still_indexing = upload.is_alive()
    finally:
        gated.release.set()
        upload.join(30)
    assert still_indexing and answered, "the question waited for the upload's indexing to finish"
    assert [h.passage.document for h in answered[0]][0] == f"seeds/{SEED_FILE}"
    assert engine.retrieve("How long is the Ozymandrel bridge?", 1)[0].passage.document == "seeds/uploads/big.txt"


# ----------------------------------------------------------------------------- slow: 20 clients


@dataclass
class Load:
    """What the clients saw."""

    latencies: list[float] = field(default_factory=list)
    #: question -> how often each answer came back ("" abstained, REFUSED the empty question's message)
    outcomes: dict[str, Counter] = field(default_factory=dict)
    answered: int = 0
    abstained: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        p95 = ordered[max(0, int(0.95 * len(ordered)) - 1)] if ordered else 0.0
        return {"clients": CLIENTS, "requests": len(self.latencies), "answered": self.answered,
                "abstained": self.abstained, "refused_as_expected": self.refused,
                "failures": len(self.failures), "seconds": round(self.seconds, 1),
                "throughput_per_s": round(len(self.latencies) / self.seconds, 2) if self.seconds else 0,
                "p50_s": round(statistics.median(ordered), 2) if ordered else 0, "p95_s": round(p95, 2)}


def hammer(url: str, load: Load, lock: threading.Lock, client_no: int) -> None:
    """One client: its own gradio_client, several questions, every outcome checked."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    for k in range(QUESTIONS_PER_CLIENT):
        question = QUESTIONS[(client_no + k) % len(QUESTIONS)]
        started = time.perf_counter()
        try:
            payload, error = client.predict(question, 5, -1, api_name="/ask"), None
        except Exception as exc:  # noqa: BLE001 - classified below
            payload, error = None, exc
        elapsed = time.perf_counter() - started
        with lock:
            load.latencies.append(elapsed)
            if not question.strip():
                if error is not None and "the question is empty" in str(error):
                    load.refused += 1
                    load.outcomes.setdefault(question, Counter())[REFUSED] += 1
                else:
                    load.failures.append(f"{question!r}: expected the empty-question message, got {error!r}")
                continue
            try:
                assert error is None, repr(error)
                assert_payload_well_formed(payload)
            except AssertionError as exc:
                load.failures.append(f"{question!r}: {exc}")
                continue
            load.abstained += payload["abstained"]
            load.answered += not payload["abstained"]
            load.outcomes.setdefault(question, Counter())[payload["text"]] += 1


@dataclass
class Churn:
    """Uploads and removals done while the clients ask."""

    uploads: int = 0
    removals: int = 0
    failures: list[str] = field(default_factory=list)


def churn(upload: Callable[[int], str], remove: Callable[[str], None], stop: threading.Event, done: Churn) -> None:
    """Upload a document, remove it, repeat until stopped; finally upload the bridge fact for good."""
    n = 0
    while not stop.is_set():
        n += 1
        try:
            doc = upload(n)
            done.uploads += 1
            remove(doc)
            done.removals += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            done.failures.append(repr(exc))
    try:
        upload(0)
        done.uploads += 1
    except Exception as exc:  # noqa: BLE001
        done.failures.append(repr(exc))


def upload_text(n: int) -> tuple[str, bytes]:
    """(name, bytes) of upload number n; number 0 is the bridge fact."""
    if n == 0:
        return "bridge.txt", UPLOAD_FACT.encode()
    return f"note-{n}.txt", f"Churn note {n}. The temporary code for round {n} is K{n * 7}.".encode()


def run_load(url: str, upload: Callable[[int], str], remove: Callable[[str], None]) -> tuple[Load, Churn]:
    """CLIENTS clients asking QUESTIONS_PER_CLIENT questions each, while the churn runs."""
    load, lock, stop, done = Load(), threading.Lock(), threading.Event(), Churn()
    uploader = threading.Thread(target=churn, args=(upload, remove, stop, done))
    started = time.perf_counter()
    uploader.start()
    try:
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            futures = [pool.submit(hammer, url, load, lock, c) for c in range(CLIENTS)]
            for future in futures:
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001 - e.g. a client that could not connect
                    load.failures.append(repr(exc))
    finally:
        load.seconds = time.perf_counter() - started
        stop.set()
        uploader.join()
    return load, done


def assert_answers_are_right(load: Load) -> None:
    """Every client got its question's right answer, abstention or refusal: as many as were asked."""
    asked = Counter(QUESTIONS[(c + k) % len(QUESTIONS)] for c in range(CLIENTS) for k in range(QUESTIONS_PER_CLIENT))
    wrong = {q: dict(got) for q, got in load.outcomes.items() if not set(got) <= EXPECTED[q]}
    assert wrong == {}, f"answers that are not the article's: {wrong}"
    assert {q: sum(got.values()) for q, got in load.outcomes.items()} == dict(asked)
    answering = ("Who interviewed Zelensky?", "What does Zelensky want to place under NATO's umbrella?")
    assert load.answered == sum(asked[q] for q in answering)
    assert load.refused == asked["   "] and load.abstained == sum(asked.values()) - load.answered - load.refused


def assert_index_matches_corpus(corpus: Path, index_dir: Path, embedder: Any) -> None:
    from qa.config import Settings
    from qa.indexing import profile_for
    from qa.store import IndexStore

    store = IndexStore.load(index_dir, profile_for(Settings.load(), embedder))
    assert_store_consistent(store, embedder)
    assert {p: r.content_hash for p, r in store.documents.items()} == file_hashes(corpus)


def ask_bridge(url: str) -> dict:
    from gradio_client import Client

    return Client(url, verbose=False).predict("How long is the Ozymandrel bridge?", 5, 0.0, api_name="/ask")


def report(name: str, load: Load, done: Churn, tmp_path: Path) -> None:
    numbers = {**load.summary(), "uploads": done.uploads, "removals": done.removals,
               "churn_failures": len(done.failures)}
    print(f"\n{name}: {json.dumps(numbers)}")
    (tmp_path / f"{name}.json").write_text(json.dumps(numbers, indent=1))
    record("concurrency", test=name, **numbers, failure_samples=(load.failures + done.failures)[:5])


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    return copy_writable(seeds_dir(), tmp_path / "seeds"), tmp_path / "index"


@pytest.mark.slow
def test_app_process_serves_while_another_process_writes(folders: tuple[Path, Path], tmp_path: Path) -> None:
    from qa.config import Settings
    from qa.pipeline import Engine
    from qa.uploads import save_upload

    corpus, index_dir = folders
    with run_app(corpus, index_dir, tmp_path / "server.log") as app:
        assert_payload_well_formed(ask_bridge(app.url))  # waits for the app's first index build
        writer = Engine(Settings.load(corpus_dir=str(corpus), index_dir=str(index_dir)))
        uploads = writer.upload_folder()

        def upload(n: int) -> str:
            name, data = upload_text(n)
            saved = save_upload(data, name, uploads, 1 << 20)
            writer.add_file(saved)
            return f"{corpus.name}/uploads/{saved.name}"

        load, done = run_load(app.url, upload, writer.remove_file)
        bridge = ask_bridge(app.url)
        log = app.log_text()
    report("app-process", load, done, tmp_path)
    assert load.failures == [] and done.failures == []
    assert done.uploads >= 2 and done.removals >= 1
    assert len(load.latencies) == CLIENTS * QUESTIONS_PER_CLIENT
    assert_answers_are_right(load)
    assert "417 metres" in bridge["text"], bridge
    assert bridge["hits"][0]["source"] == f"{corpus.name}/uploads/bridge.txt", bridge["hits"][:2]
    assert unexpected_tracebacks(log) == [], log[-3000:]  # every failure the app logs comes with one
    assert_index_matches_corpus(corpus, index_dir, writer.embedder)


@pytest.mark.slow
def test_shared_engine_serves_while_uploading(folders: tuple[Path, Path], tmp_path: Path) -> None:
    from qa import web
    from qa.config import Settings
    from qa.pipeline import Engine

    corpus, index_dir = folders
    settings = Settings.load(corpus_dir=str(corpus), index_dir=str(index_dir), port=free_port())
    engine = Engine(settings)
    demo = web.build_app(settings, engine)
    demo.queue(default_concurrency_limit=web.CONCURRENCY, max_size=web.QUEUE_SIZE)
    demo.launch(server_name="127.0.0.1", server_port=settings.port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{settings.port}"
    staging = tmp_path / "browser"
    staging.mkdir()

    def upload(n: int) -> str:
        name, data = upload_text(n)
        (staging / name).write_bytes(data)
        notes = web.add_uploads(demo.backend, [str(staging / name)])
        assert notes == [f"Added {name}: you can ask about it now."], notes
        return f"{corpus.name}/uploads/{name}"

    try:
        assert_payload_well_formed(ask_bridge(url))
        load, done = run_load(url, upload, engine.remove_file)
        bridge = ask_bridge(url)
    finally:
        demo.close()
    report("shared-engine", load, done, tmp_path)
    assert load.failures == [] and done.failures == []
    assert done.uploads >= 2 and done.removals >= 1
    assert_answers_are_right(load)
    assert "417 metres" in bridge["text"], bridge
    assert bridge["hits"][0]["source"] == f"{corpus.name}/uploads/bridge.txt", bridge["hits"][:2]
    assert [d.path for d in engine.documents() if d.uploaded] == [f"{corpus.name}/uploads/bridge.txt"]
    assert_index_matches_corpus(corpus, index_dir, engine.embedder)
