"""Faster CPU inference for the embedder and the reader: bf16, int8 quantisation, ONNX Runtime.

Three settings choose the path (`Settings.precision`, `Settings.backend`, `Settings.quantize`):

* `precision="auto"` (the default) runs the PyTorch models in bfloat16 where the CPU has native
  bf16 matrix instructions (AVX-512 BF16 or AMX on x86, BF16 on Arm), else in float32.
  bf16 halves the bytes per weight and doubles the multiply rate; the answers stay the same
  (tests/test_fast_path.py holds it to that). `"fp32"` and `"bf16"` force one or the other.

* `backend="torch"` runs the PyTorch model; `quantize="int8"` swaps its `nn.Linear` layers for
  dynamically quantised int8 ones (`torch.ao.quantization.quantize_dynamic`).
* `backend="onnx"` exports the same weights once to an ONNX graph, fuses it for BERT
  (attention, LayerNorm, GELU) and, with `quantize="int8"`, quantises its matrix products
  dynamically; the result is cached under `Settings.model_cache_dir` (default
  `~/.cache/qa-offline/onnx`), keyed by a hash of the weights, and run with ONNX Runtime.
  Needs the optional packages `onnxruntime` and `onnx` (`pip install 'qa-offline[bench]'`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from qa import models

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
QUANTIZATIONS = ("none", "int8")
PRECISIONS = ("auto", "fp32", "bf16")
#: CPU feature flags (/proc/cpuinfo) that mean bf16 matrix products run natively, not emulated.
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}
#: Bump when the export recipe changes, so cached graphs are rebuilt.
EXPORT_VERSION = 2


def check(backend: str, quantize: str, precision: str = "auto") -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)} (QA_BACKEND)")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantisation {quantize!r}: use one of {', '.join(QUANTIZATIONS)} (QA_QUANTIZE)")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)} (QA_PRECISION)")


@functools.lru_cache(maxsize=1)
def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (read once from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return bool(_BF16_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


@functools.lru_cache(maxsize=16)
def resolve_precision(precision: str, backend: str, quantize: str) -> str:
    """"bf16" or "fp32": what the torch models run in for these settings on this CPU.

    ONNX Runtime and int8 paths keep their own arithmetic, so they resolve to "fp32" here.
    Cached: engines key their loaded models on it on every question, and it logs its choice once.
    """
    check(backend, quantize, precision)
    if backend != "torch" or quantize != "none":
        return "fp32"
    if precision == "auto":
        chosen = "bf16" if native_bf16() else "fp32"
        if chosen == "fp32":
            logger.info("this CPU has no native bf16 instructions: models run in float32 (QA_PRECISION)")
        return chosen
    if precision == "bf16" and not native_bf16():
        logger.warning("QA_PRECISION=bf16 on a CPU without native bf16 instructions: emulated, likely slower than fp32")
    return precision


def quantize_torch(model: Any) -> Any:
    """Replace the model's Linear layers, in place, by dynamically quantised int8 ones (CPU only)."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig},
                                                      dtype=torch.qint8, inplace=True)


def default_cache_dir() -> Path:
    return models.cache_root() / "onnx"


def _weights_digest(model: Any) -> str:
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


class OnnxModel:
    """An ONNX Runtime session over a BERT-style encoder exported from a torch model."""

    def __init__(self, model: Any, kind: str, quantize: str = "none", cache_dir: str | Path = "") -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeError(
                "QA_BACKEND=onnx needs ONNX Runtime: pip install onnxruntime onnx (or unset QA_BACKEND)"
            ) from exc
        import torch

        self.kind = kind
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        key = hashlib.sha1(
            f"{_weights_digest(model)}|{kind}|{quantize}|{EXPORT_VERSION}|{ort.__version__}|{torch.__version__}".encode()
        ).hexdigest()[:20]
        self.path = cache / f"{kind}-{quantize}-{key}.onnx"
        if self.path.exists():
            models.mark_used(self.path)
        else:
            logger.info("converting the %s to ONNX (%s), once: %s", kind, quantize, self.path)
            _convert(model, kind, quantize, self.path)
            models.prune_cache(self.path, cache.glob(f"{kind}-{quantize}-*.onnx"))
        options = ort.SessionOptions()
        threads = torch.get_num_threads()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads busy-wait by default; on a small CPU that steals the cores the
        # other model, FAISS or the tokeniser needs next (measured: 10-25% slower answers), so they sleep.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        # The graph keeps only the inputs the model uses: MPNet has no token-type ids.
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        ids = inputs["input_ids"]
        feed = {k: np.ascontiguousarray(inputs[k] if k in inputs else np.zeros_like(ids), dtype=np.int64)
                for k in self.input_names}
        return self.session.run(None, feed)


def _convert(model: Any, kind: str, quantize: str, target: Path) -> None:
    """Export, fuse for BERT, optionally quantise; write atomically to `target`."""
    import copy

    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        raw, fused, final = Path(tmp) / "raw.onnx", Path(tmp) / "fused.onnx", Path(tmp) / "final.onnx"
        module = copy.deepcopy(model).eval()
        # The eager attention exports to the MatMul/Softmax pattern that ONNX Runtime fuses.
        with contextlib.suppress(Exception):
            module.set_attn_implementation("eager")

        class Wrapped(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001
                out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
                if kind == "reader":
                    return out.start_logits, out.end_logits
                return out.last_hidden_state

        outputs = ["start_logits", "end_logits"] if kind == "reader" else ["last_hidden_state"]
        example = torch.ones((2, 16), dtype=torch.long)
        axes = {name: {0: "batch", 1: "sequence"} for name in ["input_ids", "attention_mask", "token_type_ids", *outputs]}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Wrapped(module), (example, example, torch.zeros_like(example)), str(raw), dynamo=False,
                              input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=outputs,
                              dynamic_axes=axes, opset_version=17)
        from onnxruntime.transformers import optimizer

        config = model.config
        optimized = optimizer.optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                                             hidden_size=config.hidden_size)
        optimized.save_model_to_file(str(fused))
        if quantize == "int8":
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # Per-channel int8 weights for the plain matrix products (the feed-forward layers,
            # the attention output projection, the heads); the fused attention stays fp32:
            # quantising it too cost the session-1 reader 1.4 F1 on 300 NQ dev questions, this 0.1.
            quantize_dynamic(str(fused), str(final), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        else:
            final = fused
        os.replace(final, target)
