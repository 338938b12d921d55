"""Sentence embeddings for passages and questions (normalised, batched)."""

from __future__ import annotations

import logging

import numpy as np

from qa import models

logger = logging.getLogger(__name__)


class Embedder:
    """A sentence-transformers model on the CPU that returns unit-length float32 vectors."""

    def __init__(self, name: str = "", batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        self.name = name or "sentence-transformers/all-MiniLM-L6-v2"
        path = models.resolve_local_model(name, "embedding model", "QA_EMBEDDING_MODEL") if name else (
            models.default_embedding_model_path()
        )
        self.model = SentenceTransformer(path, device="cpu", local_files_only=True)
        self.batch_size = batch_size
        self.dimension = int(self.model.get_embedding_dimension()) if hasattr(
            self.model, "get_embedding_dimension") else int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress and len(texts) > self.batch_size * 4,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
