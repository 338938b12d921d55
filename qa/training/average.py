"""Average the weights of trained readers ("model soup", Wortsman et al. 2022).

Two runs of the same recipe that share a starting point (a reader and its warm-started
continuation) land in one basin of the loss, and the element-wise mean of their weights reads
better than either alone at no cost at inference: shipped v2 and its continuation v3 scored dev
F1 65.3 and 65.7, their average 65.7-65.9 (fp32 / as shipped), with seed-set F1 0.662 -> 0.689.

Shipped LoRA readers (a `delta.safetensors` of low-rank factors) average too: the mean of the
weight updates B @ A is itself low-rank, of at most the summed ranks, so it is taken back to the
readers' rank by a truncated SVD and written as a delta of the same size. The accurate reader's
runs 5 and 6 lost under 1.2% of the update that way, and their average read dev F1 75.25 on all
1,263 questions against 74.53 and 75.15.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from qa.logs import configure_logging

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"


def average_weights(states: list[dict], weights: list[float] | None = None) -> dict:
    """Element-wise weighted mean of state dicts that hold the same tensors (computed in fp32)."""
    import torch

    if len(states) < 2:
        raise ValueError("averaging needs at least two readers")
    weights = weights or [1.0 / len(states)] * len(states)
    if len(weights) != len(states) or abs(sum(weights) - 1.0) > 1e-6 or min(weights) < 0:
        raise ValueError(f"weights must be one per reader, non-negative and sum to 1 (got {weights})")
    names = set(states[0])
    for n, state in enumerate(states[1:], start=2):
        if set(state) != names:
            differ = sorted(names.symmetric_difference(state))[:3]
            raise ValueError(f"reader {n} holds different tensors than reader 1 (e.g. {differ}); "
                             "only readers of the same architecture can be averaged")
        for name in names:
            if state[name].shape != states[0][name].shape:
                raise ValueError(f"reader {n}'s {name} has shape {tuple(state[name].shape)}, "
                                 f"reader 1's {tuple(states[0][name].shape)}")
    return {
        name: sum(w * state[name].to(torch.float32) for w, state in zip(weights, states)).to(states[0][name].dtype)
        for name in states[0]
    }


def average_readers(folders: list[Path], out: Path, weights: list[float] | None = None) -> Path:
    """Write the average of full readers to `out`, with the first one's config and tokenizer.

    A reader is a saved folder (a run's final/) or an exported full-delta reader such as
    `qa/models/fast`, merged on its base as the package loads it, so a new run can be averaged
    with the reader it started from without a copy of that reader's training folder."""
    from safetensors.torch import load_file, save_file

    from qa.reader import DELTA_FILE, load_shipped_reader

    for folder in folders:
        if not (folder / WEIGHTS_FILE).exists() and not (folder / DELTA_FILE).exists():
            raise FileNotFoundError(f"{folder} holds no {WEIGHTS_FILE} or {DELTA_FILE}; give saved reader folders "
                                    "(a run's final/) or exported readers (qa export-reader)")
    states, first_files = [], None  # the first reader's config and tokenizer, when it is an exported one
    for folder in folders:
        if (folder / WEIGHTS_FILE).exists():
            states.append(load_file(str(folder / WEIGHTS_FILE)))
        else:
            model, tokenizer = load_shipped_reader(folder)
            states.append({name: tensor.contiguous() for name, tensor in model.state_dict().items()})
            if folder == folders[0]:
                first_files = (model.config, tokenizer)
    averaged = average_weights(states, weights)
    out.mkdir(parents=True, exist_ok=True)
    if first_files is None:
        for item in folders[0].iterdir():
            if item.is_file() and item.name != WEIGHTS_FILE:
                shutil.copy2(item, out / item.name)
    else:
        for part in first_files:
            part.save_pretrained(out)
    save_file(averaged, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    logger.info("wrote the average of %d readers (%d tensors) to %s", len(folders), len(averaged), out)
    return out


def average_lora_deltas(deltas: list[dict], scalings: list[float], weights: list[float] | None = None,
                        rank: int | None = None) -> tuple[dict, float]:
    """The weighted mean of LoRA deltas, as one LoRA delta of `rank` (default: the largest input rank).

    Per adapted layer the mean update sum_i w_i s_i B_i A_i is formed in factored form, reduced
    exactly by two QR decompositions and cut to `rank` by an SVD of the small core, the best
    approximation of that rank. Tensors trained whole are averaged as they are. The result uses
    the first delta's scaling. Also returns the largest relative (Frobenius) error the cut left.
    """
    import torch

    layers = sorted(name.removesuffix(".lora_A") for name in deltas[0] if name.endswith(".lora_A"))
    if not layers:
        raise ValueError("the first reader holds no LoRA factors; average merged readers (model.safetensors) instead")
    for n, delta in enumerate(deltas[1:], start=2):
        if sorted(name.removesuffix(".lora_A") for name in delta if name.endswith(".lora_A")) != layers:
            raise ValueError(f"reader {n} adapts other layers than reader 1; "
                             "only readers of one recipe can be averaged")
    averaged = average_weights([{n: t for n, t in d.items() if ".lora_" not in n} for d in deltas], weights)
    weights = weights or [1.0 / len(deltas)] * len(deltas)
    rank = rank or max(d[layers[0] + ".lora_A"].shape[0] for d in deltas)
    scaling = scalings[0]
    worst = 0.0
    for layer in layers:
        b = torch.cat([d[layer + ".lora_B"].double() for d in deltas], dim=1)
        a = torch.cat([w * s / scaling * d[layer + ".lora_A"].double()
                       for w, s, d in zip(weights, scalings, deltas)], dim=0)
        q_b, r_b = torch.linalg.qr(b)
        q_a, r_a = torch.linalg.qr(a.T)
        u, sigma, vh = torch.linalg.svd(r_b @ r_a.T)
        root = sigma[:rank].sqrt()
        dtype = deltas[0][layer + ".lora_A"].dtype
        averaged[layer + ".lora_B"] = (q_b @ (u[:, :rank] * root)).to(dtype).contiguous()
        averaged[layer + ".lora_A"] = ((root[:, None] * vh[:rank]) @ q_a.T).to(dtype).contiguous()
        total = float(sigma.square().sum())
        worst = max(worst, (float(sigma[rank:].square().sum()) / total) ** 0.5 if total else 0.0)
    return averaged, worst


def average_lora_readers(folders: list[Path], out: Path, weights: list[float] | None = None) -> Path:
    """Write the average of shipped LoRA reader folders (delta, config) to `out` as one of the same rank.

    An average reads differently from its parts, so calibrate it before shipping: put its files
    over the shipped reader's and run `qa calibrate-reader --shipped accurate ...`.
    """
    from safetensors.torch import load_file, save_file

    from qa.reader import DELTA_FILE, LORA_DELTA_FORMAT, delta_metadata
    from qa.training.export import write_checksums

    deltas, scalings, metadata = [], [], {}
    for folder in folders:
        if not (folder / DELTA_FILE).exists():
            raise FileNotFoundError(f"{folder} holds no {DELTA_FILE}; give exported reader folders (qa export-reader)")
        found = delta_metadata(folder)
        metadata = metadata or found
        if found.get("format") != LORA_DELTA_FORMAT or found.get("base") != metadata.get("base"):
            raise ValueError(f"{folder} is not a LoRA reader on base {metadata.get('base')!r} "
                             f"(format {found.get('format')!r}, base {found.get('base')!r})")
        deltas.append(load_file(str(folder / DELTA_FILE)))
        scalings.append(float(found["lora_scaling"]))
    averaged, error = average_lora_deltas(deltas, scalings, weights)
    out.mkdir(parents=True, exist_ok=True)
    save_file(averaged, str(out / DELTA_FILE), metadata=metadata)
    shutil.copy2(folders[0] / "config.json", out / "config.json")
    sizes = write_checksums(out)
    logger.info("wrote the average of %d LoRA readers to %s (%.1f MiB; the rank cut left at most %.2f%% of an "
                "update); calibrate it before use", len(folders), out, sizes[DELTA_FILE] / 2**20, 100 * error)
    return out


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("readers", type=Path, nargs="+",
                        help="saved reader folders (e.g. ~/.cache/qa-reader-v3/final) or exported full readers "
                             "(e.g. qa/models/fast), or exported LoRA readers (e.g. qa/models/accurate)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the averaged reader")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="one weight per reader, summing to 1 (default: equal)")
    args = parser.parse_args(argv)
    configure_logging("INFO", timestamps=True)
    from qa.reader import DELTA_FILE, LORA_DELTA_FORMAT, delta_metadata

    try:
        first = args.readers[0]
        if (first / DELTA_FILE).exists() and delta_metadata(first).get("format") == LORA_DELTA_FORMAT:
            average_lora_readers(args.readers, args.out, args.weights)
        else:
            average_readers(args.readers, args.out, args.weights)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
