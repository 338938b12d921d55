"""Sentence embeddings for passages and questions (normalised, batched)."""

from __future__ import annotations

import logging

import numpy as np

from qa import accel, models

logger = logging.getLogger(__name__)


class Embedder:
    """A sentence-transformers model on the CPU that returns unit-length float32 vectors.

    `backend`/`quantize` select a faster path (see `qa.accel`); an int8 embedder gives slightly
    different vectors, so its `name` (which the index profile records) says so.
    """

    def __init__(self, name: str = "", batch_size: int = 32, backend: str = "torch", quantize: str = "none",
                 cache_dir: str = "") -> None:
        accel.check(backend, quantize)
        from sentence_transformers import SentenceTransformer

        self.name = name or "sentence-transformers/all-MiniLM-L6-v2"
        if quantize != "none":
            self.name += f"+{quantize}"
        path = models.resolve_local_model(name, "embedding model", "QA_EMBEDDING_MODEL") if name else (
            models.default_embedding_model_path()
        )
        self.model = SentenceTransformer(path, device="cpu", local_files_only=True)
        self.batch_size = batch_size
        self.dimension = int(self.model.get_embedding_dimension()) if hasattr(
            self.model, "get_embedding_dimension") else int(self.model.get_sentence_embedding_dimension())
        self._onnx = None
        if backend == "onnx":
            self._onnx = _OnnxSentenceEncoder(self.model, quantize, cache_dir)
        elif quantize == "int8":
            accel.quantize_torch(self.model[0].auto_model)

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self._onnx is not None:
            return self._onnx.encode(texts, self.batch_size)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress and len(texts) > self.batch_size * 4,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class _OnnxSentenceEncoder:
    """Transformer -> mean pooling -> L2 normalisation, as the sentence-transformers model does, on ONNX Runtime."""

    def __init__(self, model, quantize: str, cache_dir: str) -> None:
        modules = list(model)
        pooling = modules[1].get_config_dict() if len(modules) > 1 and hasattr(modules[1], "get_config_dict") else {}
        if len(modules) > 3 or pooling.get("pooling_mode", "mean") != "mean" or not hasattr(modules[0], "auto_model"):
            raise ValueError("QA_BACKEND=onnx supports sentence-transformers models made of a transformer, mean "
                             "pooling and normalisation; use QA_BACKEND=torch for this embedding model")
        self.tokenizer = model.tokenizer
        self.max_length = int(model.max_seq_length)
        self.session = accel.OnnxModel(modules[0].auto_model, "embedder", quantize, cache_dir)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        chunks = []
        for i in range(0, len(texts), batch_size):
            batch = [texts[j].strip() for j in order[i : i + batch_size]]
            enc = self.tokenizer(batch, padding=True, truncation="longest_first", max_length=self.max_length,
                                 return_tensors="np")
            hidden = self.session(dict(enc))[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            chunks.append(pooled / np.clip(norms, 1e-12, None))
        out = np.empty((len(texts), chunks[0].shape[1]), dtype=np.float32)
        out[order] = np.concatenate(chunks)
        return out
