"""Reader training on this CPU: step time and numerical agreement of bf16 autocast with fp32.

    python benchmarks/train_precision.py --run ~/.cache/qa-reader-v2 [--batches 6] [--timing-steps 3]

For the same model and the same batches of real training windows (batch 32, the longest
windows of the run, so the 256-token worst case), it prints:

* the time of one training step (forward, backward, AdamW) for fp32 and bf16 autocast, each
  with the default attention-probability dropout (0.1) and with none;
* how closely a bf16 step follows an fp32 one: relative difference of the loss, and cosine
  similarity of the full gradient (dropout off, so the two see exactly the same network).

Run on an otherwise idle machine; the figures go to the model card and the closing note.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from qa.training.train import base_model_path, build_model, collate


def step_seconds(model, batch: dict, bf16: bool, steps: int) -> float:
    """Median seconds of a full training step (one warm-up step first)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    model.train()
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def loss_and_gradient(model, batch: dict, bf16: bool) -> tuple[float, torch.Tensor]:
    model.eval()  # no dropout: fp32 and bf16 see the same network
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**batch).loss
    loss.backward()
    grad = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return loss.item(), grad.double()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="training folder with windows.pt")
    parser.add_argument("--init", default="shipped")
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--timing-steps", type=int, default=3, help="0 skips the timing")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    windows = torch.load(args.run / "windows.pt", weights_only=False)["windows"]
    longest = sorted(range(len(windows)), key=lambda k: -len(windows[k].input_ids))
    batches = [collate(windows, longest[i * 32 : (i + 1) * 32]) for i in range(args.batches)]
    base = base_model_path()

    results: dict[str, object] = {"tokens_per_window": len(windows[longest[0]].input_ids)}
    for dropout in (0.1, 0.0) if args.timing_steps > 0 else ():
        model = build_model(base, args.init, dropout)
        model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
        for bf16 in (False, True):
            key = f"{'bf16' if bf16 else 'fp32'}, attention dropout {dropout}"
            seconds = step_seconds(model, batches[0], bf16, args.timing_steps)
            results[key] = {"s_per_step": round(seconds, 2), "windows_per_s": round(32 / seconds, 1)}
            print(f"{key}: {seconds:.2f} s per step ({32 / seconds:.1f} windows/s)", flush=True)

    model = build_model(base, args.init, 0.0)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    agreement = []
    for batch in batches:
        loss32, grad32 = loss_and_gradient(model, batch, False)
        loss16, grad16 = loss_and_gradient(model, batch, True)
        cosine = float(torch.nn.functional.cosine_similarity(grad32, grad16, dim=0))
        agreement.append({"loss_fp32": round(loss32, 4), "loss_bf16": round(loss16, 4),
                          "relative_loss_difference": round(abs(loss16 - loss32) / loss32, 4),
                          "gradient_cosine": round(cosine, 4)})
        print(f"loss fp32 {loss32:.4f} bf16 {loss16:.4f}; gradient cosine {cosine:.4f}", flush=True)
    results["agreement"] = agreement
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
