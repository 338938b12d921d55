"""The index: incremental updates, atomic saves, and recovery from damage.

Tests that hold for any vector store run on both: FAISS files in a folder, and Milvus (a real
Milvus Lite file in the test's temp folder). Milvus-only behaviour is in test_milvus_store.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import faiss
import pytest
from small_corpus import write_facts

from qa.config import Settings
from qa.indexing import EmptyCorpusError
from qa.pipeline import Engine
from qa.store import CorruptIndexError, IndexStore
from qa.vector_store import load_vector_store

pytestmark = pytest.mark.slow  # loads the embedding model

@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return write_facts(tmp_path / "docs")


@pytest.fixture(params=["faiss", "milvus"])
def store(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings that select the vector store under test (Milvus: the `milvus_uri` fixture's file)."""
    if request.param == "faiss":
        return {"vector_store": "faiss"}
    return {"vector_store": "milvus", "milvus_uri": request.getfixturevalue("milvus_uri")}


def _engine(corpus: Path, index: Path, **overrides) -> Engine:
    return Engine(Settings.load(corpus_dir=str(corpus), index_dir=str(index), **overrides))


def _saved(engine: Engine):
    """The index as saved, read afresh (what another process would load)."""
    from qa.indexing import profile_for

    return load_vector_store(engine.settings, profile_for(engine.settings, engine.embedder))


def _top_document(engine: Engine, query: str) -> str:
    return engine.retrieve(query, 1)[0].passage.document


def test_build_then_update_only_what_changed(corpus: Path, tmp_path: Path, store: dict[str, str]) -> None:
    index = tmp_path / "index"
    first = _engine(corpus, index, **store).ensure_index(progress=False)
    assert sorted(first.added) == ["docs/alpha.txt", "docs/beta.md", "docs/gamma.txt"]
    assert first.passages == 3

    (corpus / "gamma.txt").write_text("Glass frogs live in Central American rainforests.", encoding="utf-8")
    (corpus / "beta.md").unlink()
    (corpus / "delta.txt").write_text("The Zorblatt festival takes place every June in Kettering.", encoding="utf-8")
    engine = _engine(corpus, index, **store)
    second = engine.ensure_index(progress=False)
    assert second.added == ["docs/delta.txt"]
    assert second.changed == ["docs/gamma.txt"]
    assert second.removed == ["docs/beta.md"]
    assert second.unchanged == ["docs/alpha.txt"]

    saved = _saved(engine)
    saved.verify()
    assert sorted(saved.documents) == ["docs/alpha.txt", "docs/delta.txt", "docs/gamma.txt"]
    assert len(saved) == len(saved.passages) == 3
    assert [p.text for p in saved.passages_of("docs/gamma.txt")] == ["Glass frogs live in Central American rainforests."]
    assert _top_document(engine, "Where is the Zorblatt festival?") == "docs/delta.txt"
    assert _top_document(engine, "Quillport copper mayor") != "docs/beta.md"

    third = _engine(corpus, index, **store).ensure_index(progress=False)
    assert not third.modified and len(third.unchanged) == 3
    assert _saved(engine).generation == 2, "an unchanged corpus must not rewrite the index"


def test_one_embedding_pass_for_all_pending_documents(corpus: Path, tmp_path: Path, store: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Passages of every added or changed file are embedded together, not one call per file."""
    engine = _engine(corpus, tmp_path / "index", **store)
    embedder, calls = engine.embedder, []
    real = embedder.encode

    def counting(texts, *args, **kwargs):
        calls.append(len(texts))
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(embedder, "encode", counting)  # the embedder is cached and shared: undone after the test
    report = engine.ensure_index(progress=False)
    assert len(report.added) == 3 and calls == [3]


@pytest.mark.parametrize(("store", "bm25"), [("faiss", "local"), ("milvus", "engine"), ("milvus", "local")],
                         indirect=["store"])  # FAISS has no keyword search of its own
def test_bm25_finds_rare_names_and_numbers(corpus: Path, tmp_path: Path, store: dict[str, str], bm25: str) -> None:
    engine = _engine(corpus, tmp_path / "index", milvus_bm25=bm25, **store)
    hits = engine.retrieve("1871", 3)
    assert hits[0].passage.document == "docs/alpha.txt"
    assert hits[0].sparse_rank == 1 and hits[0].sparse_score > 0
    assert _top_document(engine, "Tomasz Brell") == "docs/beta.md"
    assert engine.store.has_keyword_search == (bm25 == "engine")


@pytest.mark.parametrize("damage", ["manifest", "vectors", "passages", "mismatch"])
def test_a_damaged_index_is_rebuilt_with_a_warning(corpus: Path, tmp_path: Path, damage: str, caplog) -> None:
    index = tmp_path / "index"
    _engine(corpus, index).ensure_index(progress=False)
    manifest = json.loads((index / "manifest.json").read_text())
    if damage == "manifest":
        (index / "manifest.json").write_text("{ not json")
    elif damage == "vectors":
        (index / manifest["files"]["vectors"]).write_bytes(b"\x00" * 100)
    elif damage == "passages":
        (index / manifest["files"]["passages"]).write_text("[]")
    else:
        manifest["documents"]["docs/alpha.txt"]["passages"] = 5
        (index / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptIndexError):
        IndexStore.load(index, _profile(corpus, index))
    with caplog.at_level(logging.WARNING):
        report = _engine(corpus, index).ensure_index(progress=False)
    assert "rebuilding the index" in caplog.text
    assert report.rebuilt_reason
    assert sorted(report.added) == ["docs/alpha.txt", "docs/beta.md", "docs/gamma.txt"]
    assert _top_document(_engine(corpus, index), "lighthouse engineer") == "docs/alpha.txt"


def _profile(corpus: Path, index: Path):
    from qa.indexing import profile_for

    engine = _engine(corpus, index)
    return profile_for(engine.settings, engine.embedder)


def test_an_index_built_with_other_settings_is_rebuilt(corpus: Path, tmp_path: Path, caplog) -> None:
    index = tmp_path / "index"
    _engine(corpus, index).ensure_index(progress=False)
    with caplog.at_level(logging.WARNING):
        report = _engine(corpus, index, passage_words=60).ensure_index(progress=False)
    assert "passage_words" in report.rebuilt_reason
    assert len(report.added) == 3


def test_a_crash_while_saving_keeps_the_previous_index(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    index = tmp_path / "index"
    _engine(corpus, index).ensure_index(progress=False)
    before = sorted(p.name for p in index.iterdir())
    (corpus / "delta.txt").write_text("The Zorblatt festival takes place every June in Kettering.")

    def crash(*args, **kwargs):
        Path(args[1]).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", crash)
    with pytest.raises(OSError, match="disk full"):
        _engine(corpus, index).ensure_index(progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in index.iterdir()) == before, "no temp or half-written file may remain"
    store = IndexStore.load(index, _profile(corpus, index))
    assert "docs/delta.txt" not in store.documents and len(store.documents) == 3


def test_an_empty_corpus_is_a_clear_error(tmp_path: Path, store: dict[str, str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(EmptyCorpusError, match="no readable documents in"):
        _engine(empty, tmp_path / "index", **store).ensure_index(progress=False)
    with pytest.raises(EmptyCorpusError, match="does not exist"):
        _engine(tmp_path / "missing", tmp_path / "index", **store).ensure_index(progress=False)


def test_hnsw_index_updates_without_reembedding(corpus: Path, tmp_path: Path, store: dict[str, str]) -> None:
    index = tmp_path / "index"
    _engine(corpus, index, index_type="hnsw", **store).ensure_index(progress=False)
    (corpus / "beta.md").unlink()
    report = _engine(corpus, index, index_type="hnsw", **store).ensure_index(progress=False)
    assert report.removed == ["docs/beta.md"] and report.passages == 2
    assert _top_document(_engine(corpus, index, index_type="hnsw", **store), "lighthouse") == "docs/alpha.txt"
