"""Turn a trained reader into the small files shipped inside the package.

Only what fine-tuning changed is stored, in fp16: for full fine-tuning every tensor but the
frozen word embeddings ("qa-reader-delta-v1"); for a LoRA run the low-rank factors of each
adapted layer plus the tensors trained whole, the LayerNorms and the span head
("qa-reader-lora-v1"). The rest comes from the base encoder's package at load time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import torch

from qa.config import reader_dir_for_base
from qa.logs import configure_logging
from qa.reader import DELTA_FILE, LORA_DELTA_FORMAT
from qa.training.train import PEFT_PREFIX

logger = logging.getLogger(__name__)

#: Largest delta we ship inside the package.
MAX_DELTA_MIB = 25


def run_settings(source: Path) -> dict:
    """The base and adapter settings a training run recorded (run.json beside its checkpoint);
    runs from before bases were named trained MiniLM in full."""
    for folder in (source, source.parent):
        if (folder / "run.json").exists():
            return json.loads((folder / "run.json").read_text(encoding="utf-8"))
    return {"base": "minilm", "lora_rank": 0, "lora_alpha": 0}


def load_trained(source: Path):
    """A saved model folder, or a training folder holding `checkpoint.pt` (its latest checkpoint,
    rebuilt with the run's base and adapters, so a LoRA run exports as adapters)."""
    from transformers import AutoModelForQuestionAnswering

    from qa.training.train import base_model_path, build_model

    if (source / "config.json").exists():
        return AutoModelForQuestionAnswering.from_pretrained(source)
    run = run_settings(source)
    model = build_model(base_model_path(run["base"]), "base", 0.0, run.get("lora_rank", 0), run.get("lora_alpha", 0))
    state = torch.load(source / "checkpoint.pt", weights_only=False)
    model.load_state_dict(state["model"])
    logger.info("loaded checkpoint at step %d", state["step"])
    return model


def lora_tensors(model) -> tuple[dict[str, torch.Tensor], float]:
    """Per adapted layer its factors `<layer>.lora_A` and `<layer>.lora_B`, plus every other
    trained tensor, named as in the plain model; and the adapters' common scale."""
    from peft.tuners.lora import LoraLayer

    tensors: dict[str, torch.Tensor] = {}
    scales = set()
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            layer = name.removeprefix(PEFT_PREFIX)
            tensors[f"{layer}.lora_A"] = module.lora_A["default"].weight
            tensors[f"{layer}.lora_B"] = module.lora_B["default"].weight
            scales.add(float(module.scaling["default"]))
    if len(scales) != 1:
        raise ValueError(f"expected one LoRA scale for all layers, found {sorted(scales)}")
    for name, param in model.named_parameters():
        if param.requires_grad and ".lora_" not in name:
            tensors[name.removeprefix(PEFT_PREFIX)] = param
    return tensors, scales.pop()


def export_reader(model, out: Path | None = None, base: str = "minilm") -> dict[str, int]:
    """Write config, fp16 delta weights and checksums into `out` (default: the shipped reader of
    `base`); returns file sizes in bytes."""
    from safetensors.torch import save_file

    if hasattr(model, "peft_config"):
        tensors, scaling = lora_tensors(model)
        metadata = {"format": LORA_DELTA_FORMAT, "base": base, "lora_scaling": repr(scaling)}
        plain = model.get_base_model()
    else:
        frozen = model.get_input_embeddings().weight.data_ptr()  # rebuilt from the base package
        tensors = {name: tensor for name, tensor in model.state_dict().items()
                   if tensor.data_ptr() != frozen and "position_ids" not in name}
        metadata = {"format": "qa-reader-delta-v1", "base": base}
        plain = model
    out = out or reader_dir_for_base(base)
    out.mkdir(parents=True, exist_ok=True)
    delta = {name: tensor.detach().to(torch.float16).contiguous() for name, tensor in tensors.items()}
    save_file(delta, str(out / DELTA_FILE), metadata=metadata)
    plain.config.architectures = [type(plain).__name__]
    plain.config.save_pretrained(out)
    return write_checksums(out)


def write_checksums(out: Path) -> dict[str, int]:
    """Record the SHA-256 of a reader folder's delta and config (checked at load); returns their sizes."""
    checksums = {
        name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in (DELTA_FILE, "config.json")
    }
    (out / "checksums.json").write_text(json.dumps(checksums, indent=1) + "\n")
    sizes = {name: (out / name).stat().st_size for name in checksums}
    if sizes[DELTA_FILE] > MAX_DELTA_MIB * 2**20:
        logger.warning("the delta is %.1f MiB, over the %d MiB the package ships: train LoRA adapters (--lora-rank)",
                       sizes[DELTA_FILE] / 2**20, MAX_DELTA_MIB)
    return sizes


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("source", type=Path, help="trained model folder or training folder with checkpoint.pt")
    parser.add_argument("--out", type=Path, default=None,
                        help="reader folder to write (default: the shipped reader of the run's base)")
    args = parser.parse_args(argv)
    configure_logging("INFO", timestamps=True)
    base = run_settings(args.source)["base"]
    out = args.out or reader_dir_for_base(base)
    sizes = export_reader(load_trained(args.source), out, base)
    logger.info("wrote %s: %s", out, sizes)


if __name__ == "__main__":
    main()
