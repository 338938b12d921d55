"""`qa index --ray`: a real local Ray (two CPUs here) reads, splits and embeds; the result is the
index the plain path builds: the same documents, skips, passage ids and offsets, and vectors
within a cosine of 0.999, and `qa ask` answers from it. On Milvus, and on the default FAISS store,
where a second run indexes only what changed."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from app_process import copy_writable, run_cli, seeds_dir

pytest.importorskip("ray")
pytest.importorskip("pymilvus")

from qa.config import Settings
from qa.indexing import profile_for
from qa.milvus_store import release
from qa.pipeline import Engine
from qa.vector_store import load_vector_store

pytestmark = pytest.mark.slow  # starts Ray and loads the models

_WORDS = ["harbour", "lantern", "copper", "meadow", "signal", "orchard", "granite", "ferry", "willow", "beacon"]


def _corpus(root: Path) -> Path:
    """The seed article, twelve generated files of two to four passages, and two unusable files."""
    copy_writable(seeds_dir(), root)
    rng = random.Random(11)
    for i in range(12):
        sentences = [f"{' '.join(rng.choices(_WORDS, k=rng.randint(6, 14))).capitalize()}." for _ in range(40 + 10 * (i % 3))]
        sentences.insert(7, f"The keeper of lighthouse number {i} is called Keeper{i}.")
        (root / f"doc{i:02d}.md").write_text(" ".join(sentences), encoding="utf-8")
    (root / "photo.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (root / "blank.txt").write_text("   \n", encoding="utf-8")
    return root


def test_ray_builds_the_index_the_plain_path_builds(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "seeds")
    uri = str(tmp_path / "milvus.db")
    env = {"QA_VECTOR_STORE": "milvus", "QA_MILVUS_URI": uri}
    out = run_cli("index", str(corpus), "--index-dir", str(tmp_path / "Y"), "--ray", env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "starting a local Ray on" in out.stderr
    assert "13 documents" in out.stdout
    assert "(13 added, 0 changed, 0 removed, 0 unchanged, 2 skipped)" in out.stdout
    assert out.stdout.rstrip().endswith(f", from {corpus}")
    assert "skipped seeds/photo.txt: looks like a binary file (PNG image), not text" in out.stderr
    assert "skipped seeds/blank.txt: is empty" in out.stderr

    plain_settings = Settings.load(corpus_dir=str(corpus), index_dir=str(tmp_path / "plain"))
    plain_engine = Engine(plain_settings)
    plain_report = plain_engine.ensure_index(progress=False)
    plain = plain_engine.store
    ray_settings = Settings.load(corpus_dir=str(corpus), index_dir=str(tmp_path / "Y"), vector_store="milvus",
                                 milvus_uri=uri)
    try:
        built = load_vector_store(ray_settings, profile_for(ray_settings, plain_engine.embedder))
        built.verify()
        assert built.documents == plain.documents
        assert sorted(plain_report.skipped) == sorted(
            (line.split(": ", 1)[0][len("skipped "):], line.split(": ", 1)[1])
            for line in out.stderr.splitlines() if line.startswith("skipped "))
        by_id = {p.id: p for p in built.passages}
        assert sorted(by_id) == sorted(p.id for p in plain.passages) and len(by_id) == len(plain) > 30
        assert all(by_id[p.id] == p for p in plain.passages), "same ids, documents, offsets, pages and text"
        cosines = np.sum(built.vectors_of(plain.passages) * plain.vectors_of(plain.passages), axis=1)
        assert cosines.min() >= 0.999, f"vectors differ: min cosine {cosines.min():.5f}"
    finally:
        release(uri)  # the `qa ask` below opens the Milvus Lite file in its own process

    out = run_cli("ask", "Who interviewed Zelensky?", "--corpus-dir", str(corpus), "--index-dir",
                  str(tmp_path / "Y"), "--json", env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    answer = json.loads(out.stdout)
    assert "Stuart Ramsay" in answer["text"] and answer["source"] == "seeds/000_b6ab0304c308f14d.txt"


def test_ray_updates_a_faiss_index_with_only_what_changed(tmp_path: Path) -> None:
    """A FAISS index (the default store) built the plain way, then one file changed, one removed
    and one added: `qa index --ray` reads and embeds only those three on Ray, and the index is
    the one the plain path builds of the folder as it is now."""
    corpus = _corpus(tmp_path / "seeds")
    index = tmp_path / "index"
    out = run_cli("index", str(corpus), "--index-dir", str(index), timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert (index / "manifest.json").is_file() and not (index / "store.json").exists(), "FAISS files, not Milvus"

    (corpus / "doc00.md").write_text("The keeper of lighthouse number 0 retired; Orla Quist keeps it now.",
                                     encoding="utf-8")
    (corpus / "doc01.md").unlink()
    (corpus / "doc12.md").write_text("The keeper of lighthouse number 12 is called Keeper12.", encoding="utf-8")
    out = run_cli("index", str(corpus), "--index-dir", str(index), "--ray", timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "starting a local Ray on" in out.stderr
    assert "(1 added, 1 changed, 1 removed, 11 unchanged" in out.stdout

    plain_engine = Engine(Settings.load(corpus_dir=str(corpus), index_dir=str(tmp_path / "plain")))
    plain_engine.ensure_index(progress=False)
    plain = plain_engine.store
    ray_settings = Settings.load(corpus_dir=str(corpus), index_dir=str(index))
    built = load_vector_store(ray_settings, profile_for(ray_settings, plain_engine.embedder))
    built.verify()
    assert built.documents == plain.documents and "seeds/doc01.md" not in built.documents
    assert sorted(p.id for p in built.passages) == sorted(p.id for p in plain.passages)
    cosines = np.sum(built.vectors_of(plain.passages) * plain.vectors_of(plain.passages), axis=1)
    assert cosines.min() >= 0.999, f"vectors differ: min cosine {cosines.min():.5f}"

    out = run_cli("ask", "Who keeps lighthouse number 0 now?", "--corpus-dir", str(corpus), "--index-dir",
                  str(index), "--json", timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    answer = json.loads(out.stdout)
    assert answer["text"] == "Orla Quist" and answer["source"] == "seeds/doc00.md", answer
