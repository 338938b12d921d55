"""Milvus as the vector store (a real Milvus Lite file in the test's temp folder, never mocked):
clear errors naming QA_MILVUS_URI, repair of whatever a killed writer left, BM25 in the engine
or in this process, an app server without documents of its own, and the `qa` CLI on Milvus.

The tests shared with the FAISS store (updates, BM25, HNSW, empty corpus) are parametrised in
test_index_store.py; the kill tests in test_crash_safety.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from app_process import copy_writable, free_port, run_cli, seeds_dir
from small_corpus import FACTS, write_facts

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from qa.config import Settings
from qa.indexing import profile_for
from qa.milvus_store import MilvusStore, release
from qa.pipeline import Engine
from qa.store import CorruptIndexError, StoreUnavailableError

pytestmark = pytest.mark.slow  # loads the embedding model

@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return write_facts(tmp_path / "docs")


def _settings(corpus: Path, tmp_path: Path, milvus_uri: str, **overrides) -> Settings:
    values = {"corpus_dir": str(corpus), "index_dir": str(tmp_path / "index"), "vector_store": "milvus",
              "milvus_uri": milvus_uri, **overrides}
    return Settings.load(**values)


def _engine(corpus: Path, tmp_path: Path, milvus_uri: str, **overrides) -> Engine:
    return Engine(_settings(corpus, tmp_path, milvus_uri, **overrides))


# ----------------------------------------------------------------------------- clear errors


def test_an_unreachable_milvus_is_a_clear_error_naming_the_variable(corpus: Path, tmp_path: Path) -> None:
    address = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(StoreUnavailableError, match="cannot reach Milvus at QA_MILVUS_URI=http://127.0.0.1:"):
        _engine(corpus, tmp_path, address).ensure_index(progress=False)
    out = run_cli("index", str(corpus), "--index-dir", str(tmp_path / "index"), "--vector-store", "milvus",
                  "--milvus-uri", address)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"error: cannot reach Milvus at QA_MILVUS_URI={address}" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_milvus_lite_file_open_in_another_process_is_a_clear_error(
        corpus: Path, tmp_path: Path, milvus_uri: str) -> None:
    _engine(corpus, tmp_path, milvus_uri).ensure_index(progress=False)  # this process now serves the file
    env = {"QA_VECTOR_STORE": "milvus", "QA_MILVUS_URI": milvus_uri}
    out = run_cli("ask", "Who built the Orinoco lighthouse?", "--corpus-dir", str(corpus), "--index-dir",
                  str(tmp_path / "index"), env=env)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"the Milvus Lite file QA_MILVUS_URI={milvus_uri} is open in another process" in out.stderr
    release(milvus_uri)
    out = run_cli("ask", "Who built the Orinoco lighthouse?", "--corpus-dir", str(corpus), "--index-dir",
                  str(tmp_path / "index"), "--json", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["hits"][0]["document"] == "docs/alpha.txt"


def test_a_collection_built_with_another_embedding_model_is_an_error_not_a_rebuild(
        corpus: Path, tmp_path: Path, milvus_uri: str) -> None:
    from qa.models import default_embedding_model_path

    built = _engine(corpus, tmp_path, milvus_uri)
    built.ensure_index(progress=False)
    # The same weights under another name: to the index, another embedding model.
    other = _engine(corpus, tmp_path, milvus_uri, embedding_model=str(default_embedding_model_path()))
    with pytest.raises(StoreUnavailableError) as caught:
        other.ensure_index(progress=False)
    message = str(caught.value)
    assert (f"'qa_passages' at QA_MILVUS_URI={milvus_uri} was built with "
            "embedding_model='sentence-transformers/") in message
    assert "QA_MILVUS_COLLECTION" in message
    with pytest.raises(StoreUnavailableError, match="was built with passage_words=150"):
        _engine(corpus, tmp_path, milvus_uri, passage_words=60).ensure_index(progress=False)
    # Nothing was dropped: the original configuration still answers from the same index.
    again = _engine(corpus, tmp_path, milvus_uri).ensure_index(progress=False)
    assert not again.modified and again.passages == 3
    # Another collection name builds a second index beside it.
    small = _engine(corpus, tmp_path, milvus_uri, passage_words=60, milvus_collection="qa_small")
    report = small.ensure_index(progress=False)
    assert len(report.added) == 3


def test_a_bad_collection_name_or_setting_names_the_variable(corpus: Path, tmp_path: Path, milvus_uri: str) -> None:
    with pytest.raises(StoreUnavailableError, match="QA_MILVUS_COLLECTION='my-index'"):
        _engine(corpus, tmp_path, milvus_uri, milvus_collection="my-index").ensure_index(progress=False)
    with pytest.raises(ValueError, match="QA_VECTOR_STORE='milvis' is not a vector store"):
        _engine(corpus, tmp_path, milvus_uri, vector_store="milvis").ensure_index(progress=False)
    with pytest.raises(StoreUnavailableError, match="QA_MILVUS_URI='/tmp/index' is neither a server address"):
        _engine(corpus, tmp_path, "/tmp/index").ensure_index(progress=False)


class _RecordingGrpcServer:
    """A gRPC server on 127.0.0.1 that answers nothing (UNIMPLEMENTED) and records each call's
    method and metadata: what a Milvus server would receive from this product."""

    def __init__(self) -> None:
        from concurrent import futures

        import grpc

        self.calls: list[tuple[str, dict[str, str]]] = []
        recorder = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):  # noqa: ANN001, ANN202 - grpc's interface
                recorder.calls.append((details.method, dict(details.invocation_metadata)))
                return None

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((Handler(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)


def test_qa_milvus_token_goes_to_milvus_and_never_into_the_index_folder(
        corpus: Path, tmp_path: Path, milvus_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA_MILVUS_TOKEN is what a Milvus server is sent as its authorization, as is, and no error
    shows it; an index built with it leaves no trace of it in the index folder (store.json names
    only where the index is)."""
    import base64

    token = "qa-user:s3cret-Pa55"
    monkeypatch.setenv("QA_MILVUS_TOKEN", token)
    server = _RecordingGrpcServer()
    try:
        address = f"http://127.0.0.1:{server.port}"
        with pytest.raises(StoreUnavailableError, match="cannot reach Milvus at QA_MILVUS_URI=http://127.0.0.1:") as info:
            _engine(corpus, tmp_path, address).ensure_index(progress=False)
    finally:
        server.stop()
    assert "s3cret" not in str(info.value)
    method, metadata = server.calls[0]
    assert method.startswith("/milvus.proto.milvus.MilvusService/")
    assert base64.b64decode(metadata["authorization"]).decode() == token

    engine = _engine(corpus, tmp_path, milvus_uri)
    assert engine.settings.milvus_token == token
    assert engine.ensure_index(progress=False).passages == 3
    assert json.loads((tmp_path / "index" / "store.json").read_text(encoding="utf-8"))["milvus_uri"] == milvus_uri
    for path in (tmp_path / "index").rglob("*"):
        assert not path.is_file() or b"s3cret" not in path.read_bytes(), f"the token is in {path}"


# ----------------------------------------------------------------------------- keyword search


def test_bm25_runs_in_this_process_where_the_collection_has_no_bm25_function(
        corpus: Path, tmp_path: Path, milvus_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    """A collection made without Milvus's BM25 function (what a Milvus without full-text search
    makes) keeps working: keyword search falls back to bm25s here, and says so."""
    with caplog.at_level(logging.INFO, logger="qa"):
        _engine(corpus, tmp_path, milvus_uri, milvus_bm25="local").ensure_index(progress=False)
    assert "keyword search: bm25s in this process over the 0 passages" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="qa"):
        engine = _engine(corpus, tmp_path, milvus_uri)  # auto: uses the engine's BM25 where the collection has it
        hits = engine.retrieve("Tomasz Brell", 3)
    assert "keyword search: bm25s in this process over the 3 passages" in caplog.text
    assert "the collection has no BM25 function" in caplog.text
    assert not engine.store.has_keyword_search
    assert hits[0].passage.document == "docs/beta.md" and hits[0].sparse_rank == 1
    with pytest.raises(StoreUnavailableError, match="QA_MILVUS_BM25=engine, but the collection 'qa_passages'"):
        _engine(corpus, tmp_path, milvus_uri, milvus_bm25="engine").ensure_index(progress=False)


# ----------------------------------------------------------------------------- repairs


def test_whatever_a_killed_writer_left_is_repaired_by_the_next_sync(
        corpus: Path, tmp_path: Path, milvus_uri: str, caplog: pytest.LogCaptureFixture) -> None:
    """Rows missing under a manifest record, rows without one, and rows of superseded content:
    the states a writer killed between its writes leaves. Loading says what is wrong; the next
    sync re-embeds or deletes exactly that, and the index is whole again."""
    engine = _engine(corpus, tmp_path, milvus_uri)
    engine.ensure_index(progress=False)
    client = engine.store.client
    alpha = engine.store.passages_of("docs/alpha.txt")
    client.delete("qa_passages", ids=[alpha[0].id])  # a document's rows half replaced
    client.delete("qa_passages_manifest", ids=["doc:docs/beta.md"])  # rows written, manifest row not yet
    client.insert("qa_passages", [{"id": "0123456789abcdef", "document": "docs/gamma.txt", "content_hash": "0" * 64,
                                   "start": 0, "end": 5, "page": 0, "text": "Glass", "vector": [0.0] * 384}])
    with pytest.raises(CorruptIndexError, match="missing or extra rows"):
        engine.store.verify()

    with caplog.at_level(logging.WARNING, logger="qa"):
        report = _engine(corpus, tmp_path, milvus_uri).ensure_index(progress=False)
    assert "1 document(s) with missing or extra rows (docs/alpha.txt)" in caplog.text
    assert "rows of 2 document(s) that the manifest does not name; repairing" in caplog.text
    assert sorted(report.added) == ["docs/alpha.txt", "docs/beta.md"]  # re-embedded; gamma kept as it was
    assert report.unchanged == ["docs/gamma.txt"] and report.passages == 3

    fresh = _engine(corpus, tmp_path, milvus_uri)
    fresh.store.verify()
    assert client.query("qa_passages", filter="", output_fields=["count(*)"])[0]["count(*)"] == 3
    assert fresh.retrieve("Who built the Orinoco lighthouse?", 1)[0].passage.document == "docs/alpha.txt"
    assert fresh.retrieve("Tomasz Brell", 1)[0].passage.document == "docs/beta.md"


def test_a_sync_that_fails_at_any_write_loses_nothing(corpus: Path, tmp_path: Path, milvus_uri: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop an update (a file added, one changed, one removed) before each of its writes to
    Milvus in turn: every document is then whole, with its old or its new text (none lost that
    the update did not remove), and the next sync finishes the update."""
    _engine(corpus, tmp_path, milvus_uri).ensure_index(progress=False)
    indexed = {f"docs/{name}": text for name, text in FACTS.items()}
    real_write = MilvusStore._write
    step = 0
    while True:
        step += 1
        wanted = {p: t for p, t in indexed.items() if not p.startswith("docs/delta")}
        for path in set(indexed) - set(wanted):
            (corpus.parent / path).unlink()
        wanted[f"docs/delta{step}.txt"] = f"The Zorblatt festival takes place every June in Kettering, edition {step}."
        wanted["docs/gamma.txt"] = f"Glass frogs live in rainforests, version {step}."
        for path in ("docs/gamma.txt", f"docs/delta{step}.txt"):
            (corpus.parent / path).write_text(wanted[path], encoding="utf-8")
        writes = [0]

        def failing(self, what, method, *args, **kwargs):
            writes[0] += 1
            if writes[0] == step:
                raise StoreUnavailableError(f"injected failure before {what}")
            return real_write(self, what, method, *args, **kwargs)

        monkeypatch.setattr(MilvusStore, "_write", failing)
        try:
            _engine(corpus, tmp_path, milvus_uri).ensure_index(progress=False)
            finished = True
        except StoreUnavailableError as exc:
            assert "injected failure" in str(exc)
            finished = False
        monkeypatch.setattr(MilvusStore, "_write", real_write)

        settings = _settings(corpus, tmp_path, milvus_uri)
        store, _ = MilvusStore.open(settings, profile_for(settings, Engine(settings).embedder), repair=False)
        for path in store.documents:
            texts = [p.text for p in store.passages if p.document == path]
            assert texts in ([indexed.get(path)], [wanted.get(path)]), (step, path, texts)
        assert {"docs/alpha.txt", "docs/beta.md"} <= set(store.documents), "a document the update left alone was lost"

        engine = _engine(corpus, tmp_path, milvus_uri)
        engine.ensure_index(progress=False)
        engine.store.verify()
        assert {p.document: p.text for p in engine.store.passages} == wanted
        assert engine.retrieve("Where is the Zorblatt festival?", 1)[0].passage.document == f"docs/delta{step}.txt"
        indexed = wanted
        if finished:
            break
    assert step >= 8, f"an update with a removal makes 7 writes, not {step - 1}"


def test_a_large_sync_is_written_in_parts(corpus: Path, tmp_path: Path, milvus_uri: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A build bigger than FLUSH_PASSAGES writes its documents as it goes (bounded memory), and
    the result is the same index."""
    import qa.milvus_store

    monkeypatch.setattr(qa.milvus_store, "FLUSH_PASSAGES", 1)
    for i in range(4):
        (corpus / f"extra{i}.txt").write_text(f"Extra fact number {i}: the Vellmoor tower has {10 + i} floors.")
    engine = _engine(corpus, tmp_path, milvus_uri)
    report = engine.ensure_index(progress=False)
    assert report.passages == 7 and len(report.added) == 7
    (corpus / "extra2.txt").write_text("Extra fact number 2: the Vellmoor tower was demolished in 1990.")
    (corpus / "extra3.txt").unlink()
    report = _engine(corpus, tmp_path, milvus_uri).ensure_index(progress=False)
    assert report.changed == ["docs/extra2.txt"] and report.removed == ["docs/extra3.txt"]
    fresh = _engine(corpus, tmp_path, milvus_uri)
    fresh.store.verify()
    assert fresh.store.generation == 2 and len(fresh.store) == 6
    assert fresh.retrieve("When was the Vellmoor tower demolished?", 1)[0].passage.document == "docs/extra2.txt"


# ----------------------------------------------------------------------------- sharing


def test_an_app_server_without_documents_serves_the_shared_index(tmp_path: Path, milvus_uri: str) -> None:
    """One `qa index` keeps the index up to date; app servers with no corpus folder answer from
    it and pick up what the indexer adds."""
    corpus = copy_writable(seeds_dir(), tmp_path / "seeds")
    _engine(corpus, tmp_path, milvus_uri).ensure_index(progress=False)
    server = Engine(Settings.load(corpus_dir=str(tmp_path / "nothing-here"), index_dir=str(tmp_path / "app"),
                                  vector_store="milvus", milvus_uri=milvus_uri))
    result = server.answer("Who interviewed Zelensky?")
    assert "Stuart Ramsay" in result.text and result.source == "seeds/000_b6ab0304c308f14d.txt"

    (corpus / "bridge.txt").write_text("The Ozymandrel bridge is 417 metres long and crosses the river Tessaline.")
    _engine(corpus, tmp_path, milvus_uri).ensure_index(progress=False)
    server.store._version = (0.0, None)  # skip the once-a-second wait for a new generation
    assert server.retrieve("How long is the Ozymandrel bridge?", 1)[0].passage.document == "seeds/bridge.txt"


def test_several_folders_feed_one_shared_index(corpus: Path, tmp_path: Path, milvus_uri: str) -> None:
    """Each sync manages the documents of its own folder: indexing a second folder (another
    machine's, or an app server's uploads, each from an index folder of its own) adds to the
    collection instead of replacing it."""
    other = tmp_path / "reports"
    other.mkdir()
    (other / "bridge.txt").write_text("The Ozymandrel bridge is 417 metres long and crosses the river Tessaline.")
    _engine(corpus, tmp_path, milvus_uri).ensure_index(progress=False)
    report = _engine(other, tmp_path, milvus_uri, index_dir=str(tmp_path / "reports-index")).ensure_index(progress=False)
    assert report.added == ["reports/bridge.txt"] and report.removed == [] and report.passages == 4
    (corpus / "beta.md").unlink()
    engine = _engine(corpus, tmp_path, milvus_uri)
    report = engine.ensure_index(progress=False)
    assert report.removed == ["docs/beta.md"] and report.passages == 3
    assert engine.retrieve("How long is the Ozymandrel bridge?", 1)[0].passage.document == "reports/bridge.txt"


def test_the_cli_indexes_into_milvus_and_answers_from_it(tmp_path: Path, milvus_uri: str) -> None:
    """The issue's check: QA_VECTOR_STORE=milvus QA_MILVUS_URI=... qa index, then qa ask --json."""
    corpus = copy_writable(seeds_dir(), tmp_path / "seeds")
    env = {"QA_VECTOR_STORE": "milvus", "QA_MILVUS_URI": milvus_uri}
    out = run_cli("index", str(corpus), "--index-dir", str(tmp_path / "X"), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 document, 4 passages (1 added" in out.stdout
    # The index folder remembers where its index lives: no need to repeat the Milvus settings.
    out = run_cli("ask", "Who interviewed Zelensky?", "--corpus-dir", str(corpus), "--index-dir",
                  str(tmp_path / "X"), "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    answer = json.loads(out.stdout)
    assert "Stuart Ramsay" in answer["text"] and answer["source"] == "seeds/000_b6ab0304c308f14d.txt"
    assert "Milvus collection 'qa_passages'" in out.stderr
    assert not (tmp_path / "X" / "manifest.json").exists(), "the index lives in Milvus, not in FAISS files"
