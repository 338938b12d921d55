"""The extractive reader: finds the best answer span in a set of texts, or decides there is none.

Every text is cut into overlapping token windows; all windows of one question go through the
model together. A window's evidence for an answer is its best span's logit minus its
"no answer" logit (the margin); margins compare across windows, texts and documents, and a
fitted logistic curve turns the best margin into the probability that the answer is right.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qa import accel, models
from qa.config import DEFAULT_READER, SHIPPED_READERS
from qa.spans import best_span, complete_noun_phrase, question_nouns, whole_words

logger = logging.getLogger(__name__)

#: Questions longer than this many tokens are cut so each window keeps room for context.
MAX_QUESTION_TOKENS = 64


class ReaderFilesError(RuntimeError):
    """The shipped reader's files are missing or damaged."""


@dataclass(frozen=True)
class Calibration:
    """Logistic map from margin to probability, and the abstention threshold on that probability."""

    slope: float = 1.0
    intercept: float = 0.0
    threshold: float = 0.5

    def probability(self, margin: float) -> float:
        z = self.slope * margin + self.intercept
        return 1.0 / (1.0 + math.exp(-z)) if z > -500 else 0.0

    @classmethod
    def from_file(cls, path: Path) -> Calibration:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(float(data["slope"]), float(data["intercept"]), float(data["threshold"]))


@dataclass(frozen=True)
class SpanResult:
    """The best span found in one text: character offsets into that text and its scores."""

    text_index: int
    start: int
    end: int
    margin: float
    probability: float


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_shipped_files(directory: Path) -> bytes:
    """Check every shipped file against checksums.json; returns that file's bytes."""
    checksums_file = directory / "checksums.json"
    if not checksums_file.exists():
        raise ReaderFilesError(f"the shipped reader is missing {checksums_file}; reinstall the qa package")
    listing = checksums_file.read_bytes()
    for name, expected in json.loads(listing).items():
        path = directory / name
        if not path.exists():
            raise ReaderFilesError(f"the shipped reader file {path} is missing; reinstall the qa package")
        if _sha256(path) != expected:
            raise ReaderFilesError(f"the shipped reader file {path} is damaged (checksum mismatch); reinstall the qa package")
    return listing


#: The file a shipped reader keeps its fine-tuned weights in, and the format of a LoRA one.
DELTA_FILE = "delta.safetensors"
LORA_DELTA_FORMAT = "qa-reader-lora-v1"


def delta_metadata(directory: Path) -> dict[str, str]:
    """The shipped delta's metadata (format, base, LoRA scaling), read without its tensors."""
    from safetensors import safe_open

    with safe_open(str(directory / DELTA_FILE), "pt") as handle:
        return handle.metadata() or {}


def delta_base(metadata: dict[str, str]) -> str:
    """The base encoder a delta applies to ("minilm" for deltas written before bases were named)."""
    return metadata.get("base", "minilm")


def _merge_shipped_reader(directory: Path, base: str, metadata: dict[str, str]):
    """Base weights plus our fp16 delta, as one fp32 model.

    A full delta ("qa-reader-delta-v1") replaces every base tensor fine-tuning changed. A LoRA
    delta ("qa-reader-lora-v1") holds, per adapted layer, factors A (rank x in) and B (out x
    rank) merged as W + scaling * B @ A, plus the tensors trained whole (LayerNorms, span head).
    """
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    config = AutoConfig.from_pretrained(directory)
    model = AutoModelForQuestionAnswering.from_config(config)
    prefix = model.base_model_prefix + "."
    state = {k if k.startswith(prefix) else prefix + k: v
             for k, v in load_file(str(Path(base) / "model.safetensors")).items()}
    delta = load_file(str(directory / DELTA_FILE))
    scaling = float(metadata.get("lora_scaling", 0.0))
    for name, tensor in delta.items():
        if name.endswith(".lora_A"):
            continue
        if name.endswith(".lora_B"):
            layer = name.removesuffix(".lora_B")
            update = tensor.to(torch.float32) @ delta[layer + ".lora_A"].to(torch.float32)
            state[layer + ".weight"] = state[layer + ".weight"].to(torch.float32) + scaling * update
        else:
            state[name] = tensor.to(torch.float32)
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing:
        raise ReaderFilesError(f"the shipped reader lacks weights for {missing[:3]}...; reinstall the qa package")
    return model


def _load_merged_cache(folder: Path):
    """The merged reader and tokenizer saved by an earlier start, if the weights still match their checksum."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    try:
        expected = (folder / "model.sha256").read_text().strip()
        if _sha256(folder / "model.safetensors") != expected:
            logger.warning("the merged reader cache %s is damaged; rebuilding it", folder)
            return None
        model = AutoModelForQuestionAnswering.from_pretrained(folder, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError):
        return None
    models.mark_used(folder)
    return model, tokenizer


def _save_merged_cache(model, tokenizer, folder: Path) -> None:
    """Save the merged reader for the next start (atomically; a read-only home just skips it)."""
    import tempfile

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            staging = Path(tmp) / "model"
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / "model.sha256").write_text(_sha256(staging / "model.safetensors") + "\n")
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
    except OSError as exc:
        logger.info("not caching the merged reader in %s: %s", folder, exc)
        return
    models.prune_cache(folder, (p for p in folder.parent.iterdir() if (p / "model.sha256").is_file()))


def _base_identity(base: str) -> str:
    """What the merged model depends on besides the shipped files: the pinned MPNet revision
    (its files are checked against SHA-256 pins whenever a merge reads them), or the MiniLM
    package's weight file as installed."""
    from qa.base_models import MPNET_REVISION, resolve_base

    if base == "mpnet":
        return f"all-mpnet-base-v2@{MPNET_REVISION}"
    weights = Path(resolve_base(base)) / "model.safetensors"
    stat = weights.stat()
    return f"{weights.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def load_shipped_reader(directory: Path = SHIPPED_READERS[DEFAULT_READER], cache_dir: Path | None = None):
    """A shipped reader: its base encoder's weights plus our fp16 delta.

    The delta holds only what fine-tuning changed (every tensor for the fast reader, low-rank
    adapters for the accurate one); the rest comes from the base encoder's package, which keeps
    each shipped delta under 25 MiB. The merged model is cached (keyed by the shipped checksums
    and the base weights, verified by its own checksum on every load), so later starts skip the
    merge and the base is only read, and checked against its pins, when a merge needs it.
    """
    from transformers import AutoTokenizer

    from qa.base_models import resolve_base

    listing = _verify_shipped_files(directory)
    metadata = delta_metadata(directory)
    base_name = delta_base(metadata)
    key = hashlib.sha256(listing + f"|{_base_identity(base_name)}".encode()).hexdigest()
    folder = (cache_dir or models.cache_root() / "reader") / key[:20]
    cached = _load_merged_cache(folder) if folder.exists() else None
    if cached is not None:
        return cached
    base = resolve_base(base_name)
    model = _merge_shipped_reader(directory, base, metadata)
    tokenizer = AutoTokenizer.from_pretrained(base)
    _save_merged_cache(model, tokenizer, folder)
    return model, tokenizer


class Reader:
    """A span-extraction model with windowing, batching and calibrated scores."""

    def __init__(
        self,
        name: str = "",
        window_tokens: int = 256,
        stride: int = 128,
        max_answer_tokens: int = 30,
        batch_size: int = 32,
        backend: str = "torch",
        quantize: str = "none",
        cache_dir: str = "",
        precision: str = "auto",
        shipped: str = DEFAULT_READER,
    ) -> None:
        self.precision = accel.resolve_precision(precision, backend, quantize)
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        if name:
            path = models.resolve_local_model(name, "reader model", "QA_READER_MODEL")
            self.model = AutoModelForQuestionAnswering.from_pretrained(path, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, local_files_only=True)
            calibration_file = Path(path) / "calibration.json"
            self.name = name
        else:
            directory = SHIPPED_READERS.get(shipped)
            if directory is None:
                raise ValueError(f"{shipped!r} is not a shipped reader: use {' or '.join(SHIPPED_READERS)}")
            self.model, self.tokenizer = load_shipped_reader(directory)
            calibration_file = directory / "calibration.json"
            self.name = f"{shipped} reader (shipped)"
        if not getattr(self.tokenizer, "is_fast", False):
            raise models.ModelNotAvailableError(f"reader {name!r} has no fast tokenizer; offsets need one")
        self.calibration = Calibration.from_file(calibration_file) if calibration_file.exists() else Calibration()
        self.model.eval()
        self._torch = torch
        self._onnx = None
        if backend == "onnx":
            self._onnx = accel.OnnxModel(self.model, "reader", quantize, cache_dir)
        elif quantize == "int8":
            self.model = accel.quantize_torch(self.model)
        elif self.precision == "bf16":
            self.model = self.model.to(torch.bfloat16)
        self.window_tokens = min(window_tokens, int(getattr(self.model.config, "max_position_embeddings", 512)))
        self.stride = stride
        self.max_answer_tokens = max_answer_tokens
        self.batch_size = batch_size

    def _clip_question(self, question: str) -> str:
        enc = self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) <= MAX_QUESTION_TOKENS:
            return question
        return question[: enc["offset_mapping"][MAX_QUESTION_TOKENS - 1][1]]

    def read(self, question: str, texts: list[str]) -> list[SpanResult]:
        """Best span per text (texts without any context token are left out), best first.

        A span that stops just before the noun a "what X" question names ("hot" where the text
        says "hot phase") is widened over it (`complete_noun_phrase`), and one that cuts a word,
        address or number ("billing@northwind" of "billing@northwind.example") over the rest of
        it (`whole_words`).
        """
        texts_idx = [i for i, t in enumerate(texts) if t.strip()]
        if not texts_idx:
            return []
        question = self._clip_question(question.strip())
        enc = self.tokenizer(
            [question] * len(texts_idx),
            [texts[i] for i in texts_idx],
            truncation="only_second",
            max_length=self.window_tokens,
            stride=self.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="longest",
            return_tensors="np",
        )
        start_logits, end_logits = self._logits(enc)
        best: dict[int, tuple[int, int, float]] = {}
        for w, sample in enumerate(enc["overflow_to_sample_mapping"].tolist()):
            mask = np.array([s == 1 for s in enc.sequence_ids(w)])
            span = best_span(start_logits[w], end_logits[w], enc["offset_mapping"][w], mask, self.max_answer_tokens)
            if span is None:
                continue
            margin = span.logit - float(start_logits[w][0] + end_logits[w][0])
            if sample not in best or margin > best[sample][2]:
                best[sample] = (span.start_char, span.end_char, margin)
        nouns = question_nouns(question)
        results = []
        for s, (start, end, margin) in best.items():
            text = texts[texts_idx[s]]
            start, end = whole_words(text, start, complete_noun_phrase(nouns, text, start, end))
            results.append(SpanResult(texts_idx[s], start, end, margin, self.calibration.probability(margin)))
        return sorted(results, key=lambda r: -r.margin)

    def count_windows(self, question: str, text: str) -> int:
        """How many token windows `read()` makes of `text` for this question."""
        enc = self.tokenizer(self._clip_question(question.strip()), text, truncation="only_second",
                             max_length=self.window_tokens, stride=self.stride, return_overflowing_tokens=True)
        return len(enc["input_ids"])

    def _logits(self, enc) -> tuple[np.ndarray, np.ndarray]:
        if self._onnx is not None:
            outs = [self._onnx({k: np.asarray(v)[i : i + self.batch_size] for k, v in enc.items()})
                    for i in range(0, len(enc["input_ids"]), self.batch_size)]
            return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])
        torch = self._torch
        arrays = {k: np.asarray(enc[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        lengths = arrays["attention_mask"].sum(axis=1)
        if self.tokenizer.padding_side != "right":
            lengths = np.full_like(lengths, arrays["input_ids"].shape[1])  # trimming assumes padding on the right
        # Padding positions keep a very low logit: they are never context tokens, so never part of a span.
        starts = np.full(arrays["input_ids"].shape, -1e4, dtype=np.float32)
        ends = starts.copy()
        with torch.inference_mode():
            for rows in length_batches(lengths, self.batch_size):
                width = int(lengths[rows].max())
                out = self.model(**{k: torch.from_numpy(v[rows, :width]) for k, v in arrays.items()})
                starts[rows, :width] = out.start_logits.float().numpy()
                ends[rows, :width] = out.end_logits.float().numpy()
        return starts, ends


def length_batches(lengths: np.ndarray, batch_size: int, min_fill: float = 0.9) -> list[np.ndarray]:
    """Window indices in batches of similar length, longest first, each padded only to its longest.

    A question's passages differ in length (say 194, 85 and 207 tokens), and padding them all
    to the longest wastes up to a third of the reader's work. On CPU a batch buys little over
    single windows of 100+ tokens, so a window joins a batch only if it is at least `min_fill`
    of that batch's longest: measured on the seed questions, 2 passages 24.5 -> 21.8 ms and
    4 passages 49 -> 43 ms, same answers.
    """
    order = np.argsort(-lengths, kind="stable")
    batches: list[list[int]] = []
    for index in order.tolist():
        if batches and len(batches[-1]) < batch_size and lengths[index] >= min_fill * lengths[batches[-1][0]]:
            batches[-1].append(index)
        else:
            batches.append([index])
    return [np.array(batch) for batch in batches]
