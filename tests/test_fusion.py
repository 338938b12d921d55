"""Reciprocal rank fusion (qa.retrieval.fuse): the fused order, ranks and scores, worked out by
hand for small rankings. No models."""

from __future__ import annotations

import pytest

from qa.retrieval import RRF_K, fuse
from qa.types import Passage


def _passage(name: str) -> Passage:
    return Passage(name, f"docs/{name}.txt", 0, len(name), name)


A, B, C, D, E = map(_passage, "ABCDE")


def _rrf(*ranks: int) -> float:
    return sum(1.0 / (RRF_K + rank) for rank in ranks)


def test_fused_ranks_and_scores_of_two_rankings() -> None:
    """dense A B C, BM25 C A D: A (1st and 2nd) beats C (3rd and 1st), then the ones found once."""
    hits = fuse([(A, 0.9), (B, 0.8), (C, 0.7)], [(C, 12.0), (A, 7.5), (D, 3.1)])
    assert [(h.passage.id, h.rank, h.dense_rank, h.sparse_rank) for h in hits] == [
        ("A", 1, 1, 2), ("C", 2, 3, 1), ("B", 3, 2, None), ("D", 4, None, 3)]
    assert [h.score for h in hits] == pytest.approx([_rrf(1, 2), _rrf(3, 1), _rrf(2), _rrf(3)])
    assert [(h.dense_score, h.sparse_score) for h in hits] == [(0.9, 7.5), (0.7, 12.0), (0.8, None), (None, 3.1)]


def test_a_passage_both_searches_find_beats_one_found_first_by_one() -> None:
    """Dense E B C D A, BM25 D C B A: even A (5th and 4th, 1/65 + 1/64) outranks E, first by dense
    alone (1/61); D (4th and 1st) beats B and C (2nd and 3rd each, tied, so dense order)."""
    dense = [(E, 0.99), (B, 0.5), (C, 0.4), (D, 0.3), (A, 0.2)]
    sparse = [(D, 9.0), (C, 8.0), (B, 7.0), (A, 6.0)]
    hits = fuse(dense, sparse)
    assert [(h.passage.id, h.rank) for h in hits] == [("D", 1), ("B", 2), ("C", 3), ("A", 4), ("E", 5)]
    assert [h.score for h in hits] == pytest.approx([_rrf(4, 1), _rrf(2, 3), _rrf(3, 2), _rrf(5, 4), _rrf(1)])


def test_ties_keep_the_dense_order() -> None:
    """A and B swap places between the searches (equal sums); a dense-only and a BM25-only first
    place tie too: the dense ranking decides both."""
    hits = fuse([(A, 0.9), (B, 0.8)], [(B, 5.0), (A, 4.0)])
    assert [h.passage.id for h in hits] == ["A", "B"] and hits[0].score == hits[1].score
    hits = fuse([(C, 0.9)], [(D, 5.0)])
    assert [(h.passage.id, h.rank) for h in hits] == [("C", 1), ("D", 2)]


def test_one_search_alone_keeps_its_order() -> None:
    assert [h.passage.id for h in fuse([], [(C, 3.0), (A, 2.0)])] == ["C", "A"]
    assert [h.passage.id for h in fuse([(B, 0.5), (A, 0.4)], [])] == ["B", "A"]
    assert fuse([], []) == []
