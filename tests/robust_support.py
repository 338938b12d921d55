"""Helpers shared by the robustness tests: index fingerprints, answer checks, a stub embedder,
a raw /ask client and the stats log behind the robustness report ($QA_ROBUSTNESS_STATS).

Not a test module (no `test_` prefix); the robustness tests import it by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Hypothesis examples per property; lower it (e.g. 5) while developing on a busy machine.
EXAMPLES = int(os.environ.get("QA_ROBUST_EXAMPLES", "60"))


# ----------------------------------------------------------------------------- corpora


def file_hashes(corpus: Path) -> dict[str, str]:
    """Document path as the index names it ("corpus/x.txt") -> sha256 of its bytes."""
    base = corpus.resolve().parent
    return {
        p.resolve().relative_to(base).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(corpus.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


# ----------------------------------------------------------------------------- the index on disk


def index_fingerprint(index_dir: Path) -> dict[str, str]:
    """sha256 of the manifest and every data file it names: equal fingerprints, same index."""
    manifest = index_dir / "manifest.json"
    prints = {"manifest.json": hashlib.sha256(manifest.read_bytes()).hexdigest()}
    for name in json.loads(manifest.read_text(encoding="utf-8"))["files"].values():
        prints[name] = hashlib.sha256((index_dir / name).read_bytes()).hexdigest()
    return prints


def assert_store_consistent(store: Any, embedder: Any = None, sample: int = 6, verify: bool = True) -> None:
    """verify() passes (unless `verify=False`), passage ids are unique and as many as the store
    holds, positions map ids to passages (a FAISS store), and (with `embedder`) a sample of stored
    vectors are the embeddings of their passages' text, so ids, passages and vectors agree."""
    from qa.store import faiss_id

    if verify:
        store.verify()
    passages = store.passages
    assert len({p.id for p in passages}) == len(passages) == len(store), "duplicate or missing passages"
    if hasattr(store, "_position"):
        for position, passage in enumerate(passages):
            assert store._position[faiss_id(passage.id)] == position
    if embedder is not None and passages:
        step = max(1, len(passages) // sample)
        chosen = passages[::step][:sample]
        stored = store.vectors_of(chosen)
        fresh = embedder.encode([p.text for p in chosen])
        cosines = np.sum(stored * fresh, axis=1)
        assert np.all(cosines > 0.99), f"stored vectors do not match their passages: {cosines}"


# ----------------------------------------------------------------------------- answers


def assert_answer_well_formed(answer: Any, documents_root: Path | None = None, from_index: bool = True) -> None:
    """An Answer either quotes its source exactly or is an abstention without a source.

    `from_index=False` for `read()`: its answers quote the given text, which has no source.
    """
    from qa.types import Answer

    assert isinstance(answer, Answer), type(answer)
    assert isinstance(answer.text, str)
    assert 0.0 <= answer.score <= 1.0, answer.score
    if answer.abstained:
        assert answer.source is None and answer.start is None, answer
        return
    assert answer.start is not None and answer.end is not None, answer
    assert bool(answer.source) == from_index, answer
    assert answer.end - answer.start == len(answer.text)
    if documents_root is not None:
        from qa.documents import load_document

        path = documents_root / answer.source
        text = load_document(path, documents_root / answer.source.split("/")[0]).text
        assert text[answer.start : answer.end] == answer.text


PAYLOAD_KEYS = ("text", "score", "source", "start", "end", "context", "context_start", "abstained", "hits")


def assert_payload_well_formed(payload: Any) -> None:
    """The /ask JSON: the Answer fields, abstained consistent with text, slim hits."""
    assert isinstance(payload, dict), payload
    missing = [k for k in PAYLOAD_KEYS if k not in payload]
    assert not missing, f"missing {missing} in {payload}"
    assert isinstance(payload["text"], str) and isinstance(payload["hits"], list)
    assert 0.0 <= payload["score"] <= 1.0
    assert payload["abstained"] == (payload["text"] == "")
    if not payload["abstained"]:
        assert payload["source"] and payload["end"] - payload["start"] == len(payload["text"])
    for hit in payload["hits"]:
        assert {"source", "start", "end", "rank", "score"} <= set(hit), hit


_NOT_TEXT = ("Cc", "Cf", "Zl", "Zp", "Cs")


def expected_question_error(question: str, max_chars: int = 1000) -> str | None:
    """What validate_question must say about `question`: "empty", "shorten", or None (valid)."""
    import unicodedata

    if all(ch.isspace() or unicodedata.category(ch) in _NOT_TEXT for ch in question):
        return "empty"
    if len(question) > max_chars:
        return "shorten"
    return None


ERROR_MESSAGES = {
    "empty": "the question is empty: type a question about your documents",
    "shorten": r"the question is [\d,]+ characters long; the limit is 1,000: shorten it",
}


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, BaseException | None, float]:
    """(result, exception, seconds) of one call; the seconds are recorded for the report, never
    asserted (a hang fails the test at the per-test timeout instead)."""
    started = time.perf_counter()
    try:
        return fn(*args, **kwargs), None, time.perf_counter() - started
    except BaseException as exc:  # noqa: BLE001 - the caller classifies it
        return None, exc, time.perf_counter() - started


# ----------------------------------------------------------------------------- a fast embedder


class HashEmbedder:
    """Bag of hashed words, unit length: deterministic, model-free and fast enough for 100k
    passages. Lexical, so a question sharing rare words with a passage finds it."""

    name = "test-hash-embedder"

    def __init__(self, dimension: int = 384) -> None:
        self.dimension = dimension

    def encode(self, texts: list[str], progress: bool = False, stop=None) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32(word.encode()) % self.dimension] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)


# ----------------------------------------------------------------------------- the app as a process


class WebError(Exception):
    """The app answered a request with an error event; the message is the app's."""


def ask_raw(url: str, question: str, top_k: int = 5, threshold: float = -1.0, timeout: float = 300,
            reader: str = "") -> dict:
    """Call /ask over Gradio's REST API with plain JSON, as a browser or curl would (every input
    given: the REST API, unlike gradio_client, does not fill in defaults).

    Unlike gradio_client, this can send strings that UTF-8 cannot encode (lone surrogates),
    escaped as JSON "\\ud800" is.
    """
    return call_ask(url, [question, top_k, threshold, reader], timeout)


def call_ask(url: str, data: list[Any], timeout: float = 300) -> dict:
    """POST any `data` list to /ask (too few inputs, NaN: JSON's NaN literal) and return the answer,
    or raise WebError with the app's message."""
    endpoint = f"{url}/gradio_api/call/ask"
    body = json.dumps({"data": data}).encode("ascii")
    request = urllib.request.Request(endpoint, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{endpoint}/{event_id}", timeout=timeout) as response:
        stream = response.read().decode("utf-8")
    event, data = "", ""
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data = line.split(":", 1)[1].strip()
        if event in ("complete", "error") and data:
            break
    if event == "complete":
        return json.loads(data)[0]
    message = json.loads(data).get("error") if data.startswith("{") else data
    raise WebError(str(message))


# ----------------------------------------------------------------------------- stats for the report


def record(kind: str, **numbers: Any) -> None:
    """Append one JSON line to $QA_ROBUSTNESS_STATS (if set): the raw numbers of the report."""
    target = os.environ.get("QA_ROBUSTNESS_STATS")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"kind": kind, **numbers}, ensure_ascii=False, default=str) + "\n")


def run_with_limit(fn: Callable[[], Any], limit: float, what: str = "the call") -> Any:
    """fn() in a thread; fail (instead of hanging the suite) if it runs past `limit` seconds."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"{what} did not end within {limit:.0f} s (hung?)"
    if "error" in box:
        raise box["error"]
    return box["result"]
