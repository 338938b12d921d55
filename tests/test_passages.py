"""Passages keep exact offsets, overlap, and never cut an answer that sits near a boundary."""

from __future__ import annotations

from pathlib import Path

from qa.documents import load_document
from qa.passages import split_passages
from qa.types import Document

ROOT = Path(__file__).resolve().parents[1]


def _document(text: str, path: str = "corpus/doc.txt") -> Document:
    return Document(path=path, text=text, content_hash="x")


def test_seed_passages_are_exact_slices_with_overlap() -> None:
    doc = load_document(ROOT / "seeds" / "000_b6ab0304c308f14d.txt", ROOT / "seeds")
    passages = split_passages(doc, target_words=150, overlap_words=40)
    assert doc.path == "seeds/000_b6ab0304c308f14d.txt"
    assert len(passages) >= 3
    for p in passages:
        assert p.text == doc.text[p.start : p.end]
        assert p.document == doc.path
    for before, after in zip(passages, passages[1:]):
        # Overlap needs two sentences in the earlier passage; the seed's are all short enough.
        assert after.start < before.end, "consecutive passages must overlap"
        assert after.start > before.start
        assert before.end < after.end
    assert passages[0].start == 0
    assert passages[-1].end == len(doc.text.rstrip())


def test_every_sentence_is_whole_in_some_passage() -> None:
    sentences = [f"Fact number {i} says that the value of item {i} is {i * 7} units." for i in range(40)]
    text = " ".join(sentences)
    passages = split_passages(_document(text), target_words=60, overlap_words=15)
    for sentence in sentences:
        assert any(sentence in p.text for p in passages), sentence
    assert all(len(p.text.split()) <= 60 for p in passages)


def test_ids_are_deterministic_and_depend_on_place() -> None:
    text = "Alpha beta gamma. " * 200
    first = split_passages(_document(text), 50, 10)
    again = split_passages(_document(text), 50, 10)
    elsewhere = split_passages(_document(text, "corpus/other.txt"), 50, 10)
    assert [p.id for p in first] == [p.id for p in again]
    assert not {p.id for p in first} & {p.id for p in elsewhere}
    assert len({p.id for p in first}) == len(first)


def test_a_sentence_longer_than_a_passage_is_cut_at_words() -> None:
    text = " ".join(f"w{i}" for i in range(500))
    passages = split_passages(_document(text), target_words=100, overlap_words=0)
    assert [len(p.text.split()) for p in passages] == [100] * 5
    assert passages[-1].text.endswith("w499")


def test_pdf_pages_are_kept() -> None:
    text = "Page one text here. " * 30 + "\n\n" + "Page two text here. " * 30
    doc = Document("c/a.pdf", text, "x", page_starts=(0, text.index("Page two")))
    passages = split_passages(doc, target_words=40, overlap_words=0)
    assert passages[0].page == 1
    assert passages[-1].page == 2
