"""Sentence embeddings for passages and questions (normalised, batched)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from qa import accel, models
from qa.stopping import raise_if_stopped

if TYPE_CHECKING:  # pragma: no cover
    from qa.config import Settings

logger = logging.getLogger(__name__)


class Embedder:
    """A sentence-transformers model on the CPU that returns unit-length float32 vectors.

    Models made of a transformer, mean pooling and (optionally) normalisation, such as the
    default all-MiniLM-L6-v2, run without importing sentence-transformers (whose imports cost
    seconds at start-up): tokenise, encode, mean-pool, normalise, in length-sorted batches,
    as `SentenceTransformer.encode` does. Other models go through sentence-transformers.
    `precision`/`backend`/`quantize` select a faster path (see `qa.accel`); an int8 embedder gives
    slightly different vectors, so its `name` (which the index profile records) says so. bf16
    vectors stay within a cosine of 0.999 of fp32 ones, so bf16 and fp32 share an index.
    The weights load on the first text to embed (or `load()`); name and dimension are known before.
    """

    def __init__(self, name: str = "", batch_size: int = 32, backend: str = "torch", quantize: str = "none",
                 cache_dir: str = "", precision: str = "auto") -> None:
        self.precision = accel.resolve_precision(precision, backend, quantize)
        self.name = name or "sentence-transformers/all-MiniLM-L6-v2"
        if quantize != "none":
            self.name += f"+{quantize}"
        self.path = models.resolve_local_model(name, "embedding model", "QA_EMBEDDING_MODEL") if name else (
            models.default_embedding_model_path()
        )
        self.batch_size = batch_size
        self.backend = backend
        self.quantize = quantize
        self.cache_dir = cache_dir
        self.model = None
        self._forward = None
        self.max_length = _mean_pooling_max_length(Path(self.path))
        if self.max_length is None:
            if backend != "torch" or quantize != "none":
                raise ValueError(f"QA_BACKEND={backend} / QA_QUANTIZE={quantize} support embedding models made of a "
                                 "transformer, mean pooling and normalisation only; unset them for this model")
            self.precision = "fp32"  # other module stacks run as sentence-transformers builds them
            self.load()
            return
        dimension = _hidden_size(Path(self.path))
        if dimension is None:
            self.load()
        else:
            self.dimension = dimension

    @property
    def loaded(self) -> bool:
        return self.model is not None or self._forward is not None

    def load(self) -> Embedder:
        """Load the model now (once). Until something must be embedded it is not loaded: checking
        an index against the embedder's name and dimension needs neither torch nor the weights,
        so `qa index` with nothing changed starts in about a second, not eight."""
        with models.MODEL_LOADING:
            if not self.loaded:
                logger.info("loading the embedder %s (%s)", self.name, self.precision)
                if self.max_length is None:
                    self._load_sentence_transformers()
                else:
                    self._load_plain()
        return self

    def _load_sentence_transformers(self) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(self.path, device="cpu", local_files_only=True)
        self.dimension = int(self.model.get_embedding_dimension()) if hasattr(
            self.model, "get_embedding_dimension") else int(self.model.get_sentence_embedding_dimension())

    def _load_plain(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        transformer = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
        self.dimension = int(transformer.config.hidden_size)
        if self.backend == "onnx":
            session = accel.OnnxModel(transformer, "embedder", self.quantize, self.cache_dir)
            self._forward = lambda enc: session(enc)[0]
            return
        import torch

        if self.quantize == "int8":
            accel.quantize_torch(transformer)
        elif self.precision == "bf16":
            transformer.to(torch.bfloat16)
        self.transformer = transformer

        def forward(enc: dict) -> np.ndarray:
            with torch.inference_mode():
                inputs = {k: torch.from_numpy(np.asarray(v)) for k, v in enc.items()
                          if k in ("input_ids", "attention_mask", "token_type_ids")}
                return transformer(**inputs).last_hidden_state.float().numpy()

        self._forward = forward

    def encode(self, texts: list[str], progress: bool = False, stop: threading.Event | None = None) -> np.ndarray:
        """Unit-length vectors for `texts`; raises Stopped between batches once `stop` is set, so
        a process asked to stop is not held up by a long indexing pass."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        raise_if_stopped(stop, "embedding")
        self.load()
        if self._forward is not None:
            return self._encode_plain(texts, stop)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress and len(texts) > self.batch_size * 4,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode_plain(self, texts: list[str], stop: threading.Event | None = None) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i in range(0, len(texts), self.batch_size):
            raise_if_stopped(stop, "embedding")
            rows = order[i : i + self.batch_size]
            enc = self.tokenizer([texts[j].strip() for j in rows], padding=True, truncation="longest_first",
                                 max_length=self.max_length, return_tensors="np")
            hidden = self._forward(dict(enc))
            mask = enc["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            out[rows] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out


def embedder_for(settings: Settings) -> Embedder:
    """The embedder `settings` describe, built from them alone (a Ray worker has no Engine)."""
    return Embedder(settings.embedding_model, batch_size=settings.batch_size, backend=settings.backend,
                    quantize=settings.quantize, cache_dir=settings.model_cache_dir, precision=settings.precision)


def _hidden_size(path: Path) -> int | None:
    """The transformer's output width from its config.json (what mean pooling keeps), else None."""
    try:
        return int(json.loads((path / "config.json").read_text(encoding="utf-8"))["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _mean_pooling_max_length(path: Path) -> int | None:
    """The max sequence length of a Transformer -> mean Pooling [-> Normalize] model, else None."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
        kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) or modules[0]["path"]:
            return None
        pooling = json.loads((path / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
        modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True]
        if modes not in (["pooling_mode_mean_tokens"],) and pooling.get("pooling_mode") != "mean":
            return None
        config = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
        if config.get("do_lower_case"):
            return None
        return int(config["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
