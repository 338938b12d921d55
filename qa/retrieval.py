"""Hybrid retrieval: dense (vector store) and BM25 rankings fused by reciprocal rank fusion.

BM25 finds rare names and numbers that a small embedding model blurs; dense search finds
paraphrases that share no words. RRF needs no score calibration between the two.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from qa.types import Hit, Passage

if TYPE_CHECKING:
    from qa.embedding import Embedder
    from qa.vector_store import VectorStore

logger = logging.getLogger(__name__)

RRF_K = 60
_TOKEN = re.compile(r"\w+", re.UNICODE)


def _tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class SparseIndex:
    """BM25 over the store's passages, rebuilt in memory whenever the store changes."""

    def __init__(self, texts: list[str]) -> None:
        import bm25s

        self.size = len(texts)
        self._bm25 = None
        if texts:
            tokens = bm25s.tokenize(texts, stopwords="en", show_progress=False)
            self._bm25 = bm25s.BM25()
            self._bm25.index(tokens, show_progress=False)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        import bm25s

        if self._bm25 is None or not _tokenize(query):
            return []
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab or all(len(ids) == 0 for ids in tokens.ids):
            return []
        k = min(k, self.size)
        docs, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [(int(d), float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]


class HybridRetriever:
    """Ranks the store's passages for a query; fused score is the RRF sum over both rankings.

    The keyword side is the store's own BM25 where it has one (Milvus full-text search), else
    bm25s over the store's passages in this process.
    """

    def __init__(self, store: VectorStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self._passages = [] if store.has_keyword_search else store.passages  # what `sparse` ranks
        self.sparse = None if store.has_keyword_search else SparseIndex([p.text for p in self._passages])

    def retrieve(self, query: str, k: int, candidates: int = 50) -> list[Hit]:
        if not len(self.store):
            return []
        n = max(k, candidates)
        query_vector = self.embedder.encode([query])
        dense = self.store.search_passages(query_vector, n)[0]
        if self.sparse is None:
            sparse = self.store.keyword_search(query, n)
        else:
            sparse = [(self._passages[i], score) for i, score in self.sparse.search(query, n)]
        return fuse(dense, sparse)[:k]


def fuse(dense: list[tuple[Passage, float]], sparse: list[tuple[Passage, float]]) -> list[Hit]:
    """Reciprocal rank fusion of two rankings of passages; ties keep the dense order. Ranks are 1-based."""
    hits: dict[str, Hit] = {}
    for rank, (passage, score) in enumerate(dense, start=1):
        hit = hits.setdefault(passage.id, Hit(passage, 0, 0.0))
        hit.dense_rank, hit.dense_score = rank, score
        hit.score += 1.0 / (RRF_K + rank)
    for rank, (passage, score) in enumerate(sparse, start=1):
        hit = hits.setdefault(passage.id, Hit(passage, 0, 0.0))
        hit.sparse_rank, hit.sparse_score = rank, score
        hit.score += 1.0 / (RRF_K + rank)
    ordered = sorted(hits.values(), key=lambda h: (-h.score, h.dense_rank or 10**9))
    for rank, hit in enumerate(ordered, start=1):
        hit.rank = rank
    return ordered
