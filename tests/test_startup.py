"""First start: models load one at a time whatever thread asks, and every start serves.

A fresh interpreter matters here: transformers' lazy imports only race the first time they
run in a process, so these tests start new processes rather than reuse the test's models.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from app_process import ROOT, accepted_answers, copy_writable, run_app, seeds_dir, unexpected_tracebacks

pytestmark = pytest.mark.slow

#: Loads the embedder and the reader from two threads at once in a new process. Each model's
#: constructor first sleeps, which widens the window in which a second load could start: with
#: loads serialised the two spans cannot overlap; without, they always do.
TWO_THREADS = r"""
import json, threading, time
import qa.embedding, qa.reader
from qa.config import Settings
from qa.pipeline import Engine

spans = []

def widened(cls):
    original = cls.__init__
    def init(self, *args, **kwargs):
        start = time.monotonic()
        time.sleep(0.4)
        try:
            original(self, *args, **kwargs)
        finally:
            spans.append((cls.__name__, start, time.monotonic()))
    cls.__init__ = init

widened(qa.embedding.Embedder)
widened(qa.reader.Reader)
engine = Engine(Settings.load())
errors = []

def load(attribute):
    try:
        getattr(engine, attribute)
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=load, args=(name,)) for name in ("embedder", "reader")]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"errors": errors, "spans": sorted(spans, key=lambda s: s[1]),
                  "reader_threshold": engine.reader.calibration.threshold}))
"""


@pytest.mark.parametrize("attempt", range(3))
def test_embedder_and_reader_asked_from_two_threads_load_one_at_a_time(attempt: int, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", TWO_THREADS], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    assert sorted(name for name, _, _ in result["spans"]) == ["Embedder", "Reader"]
    (_, _, first_end), (_, second_start, _) = result["spans"]
    assert second_start >= first_end, f"the two models loaded at the same time: {result['spans']}"
    assert 0 < result["reader_threshold"] < 1


def test_app_starts_on_an_empty_index_and_answers_every_time(tmp_path: Path) -> None:
    """Five first starts in a row: each builds its index, answers /ask, and logs no traceback."""
    from gradio_client import Client

    corpus = copy_writable(seeds_dir(), tmp_path / "seeds")
    question = "Who interviewed Zelensky?"
    for start in range(5):
        with run_app(corpus, tmp_path / f"index-{start}", tmp_path / f"app-{start}.log") as app:
            client = Client(app.url, verbose=False)
            payload = client.predict(question, 5, -1, api_name="/ask")
            with pytest.raises(Exception, match="the question is empty"):
                client.predict("   ", 5, -1, api_name="/ask")
            log = app.log_text()
        assert payload["text"] in accepted_answers(question), payload
        assert payload["source"].endswith("000_b6ab0304c308f14d.txt")
        assert unexpected_tracebacks(log) == [], log[-3000:]
        # The refused question is one line in the log, not a traceback.
        assert sum("the question is empty" in line for line in log.splitlines()) == 1, log[-3000:]
        assert "bm25s" not in log and "Loading weights" not in log, log[-3000:]


def test_merged_reader_is_cached_and_checked_on_every_load(tmp_path: Path) -> None:
    """The second start loads the merged reader from the cache; a damaged cache is rebuilt."""
    from qa.reader import load_shipped_reader

    merged, _ = load_shipped_reader(cache_dir=tmp_path)
    [folder] = list(tmp_path.iterdir())
    weights = folder / "model.safetensors"
    assert (folder / "model.sha256").read_text().strip()
    first_mtime = weights.stat().st_mtime_ns
    cached, _ = load_shipped_reader(cache_dir=tmp_path)
    assert weights.stat().st_mtime_ns == first_mtime  # read, not rewritten
    expected = merged.state_dict()
    assert all(bool((cached.state_dict()[name] == tensor).all()) for name, tensor in expected.items())

    damaged = bytearray(weights.read_bytes())
    damaged[-64] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    rebuilt, _ = load_shipped_reader(cache_dir=tmp_path)
    assert all(bool((rebuilt.state_dict()[name] == tensor).all()) for name, tensor in expected.items())
    assert weights.read_bytes() != bytes(damaged)


def test_a_new_merge_keeps_only_the_most_recently_used_merged_readers(tmp_path: Path) -> None:
    """Each reader release (or install) merges once; old ~90 MB copies must not pile up."""
    import os

    from qa.models import CACHE_ENTRIES_KEPT
    from qa.reader import load_shipped_reader

    stale = []
    for age in range(4):  # merged readers of other releases, last used 0..3 days before the newest
        folder = tmp_path / f"{age:020d}"
        folder.mkdir()
        (folder / "model.sha256").write_text("0" * 64 + "\n")
        (folder / "model.safetensors").write_bytes(b"old")
        when = 1_700_000_000 - age * 86_400
        os.utime(folder, (when, when))
        stale.append(folder)
    (tmp_path / "notes").mkdir()  # not a merged reader: left alone
    load_shipped_reader(cache_dir=tmp_path)
    left = sorted(p for p in tmp_path.iterdir() if (p / "model.sha256").exists())
    new = [p for p in left if p not in stale]
    assert len(new) == 1 and (new[0] / "model.safetensors").stat().st_size > 10_000_000
    assert left == sorted(new + stale[: CACHE_ENTRIES_KEPT - 1])  # the most recently used others stay
    assert (tmp_path / "notes").exists()


def test_model_cache_keeps_the_new_file_and_the_most_recently_used_of_its_kind(tmp_path: Path) -> None:
    """The same rule for ONNX graphs (files): a used graph counts as recent, whatever its age."""
    import os

    from qa.models import CACHE_ENTRIES_KEPT, mark_used, prune_cache

    graphs = []
    for age in range(5):
        graph = tmp_path / f"reader-none-{age:020d}.onnx"
        graph.write_bytes(b"graph")
        when = 1_700_000_000 - age * 86_400
        os.utime(graph, (when, when))
        graphs.append(graph)
    other_kind = tmp_path / "embedder-none-old.onnx"
    other_kind.write_bytes(b"graph")
    os.utime(other_kind, (1, 1))
    mark_used(graphs[4])  # the oldest file was just loaded by another process
    new = tmp_path / "reader-none-new.onnx"
    new.write_bytes(b"graph")
    prune_cache(new, tmp_path.glob("reader-none-*.onnx"))
    assert sorted(tmp_path.iterdir()) == sorted([new, graphs[4], graphs[0], other_kind])
    assert CACHE_ENTRIES_KEPT == 3
