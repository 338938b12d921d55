"""Teacher targets for distillation: a reader's start/end logits over every student window.

The student (the fast reader, MiniLM) learns from the accurate reader's full start/end
distributions, not only the gold span. The teacher reads the same stretch of context as each
student window (its characters, re-tokenised with the teacher's tokenizer), and its logits are
moved onto the student's token positions through character offsets, so any teacher and student
tokenizers pair up (MPNet and MiniLM share an uncased WordPiece vocabulary, so the map is nearly
one to one). Several teacher tokens landing on one student token are merged by log-sum-exp (their
probabilities add up).

Per window the top-k positions and logits are kept in fp16, in shards of a few thousand windows
under `~/.cache/`: resumable (a finished shard is never recomputed), never in the repository.
Windows are taken in the order the student's first pass schedules them, so the first shards are
what a short comparison run trains on.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from qa.logs import configure_logging
from qa.training.data import QAExample, TrainWindow, source_weight, source_weights
from qa.training.targets import TeacherTargets, shard_path

logger = logging.getLogger("qa.training.teacher")

WINDOWS_FILE = "windows.pt"
ORDER_FILE = "order.json"
#: Teacher logits at or below this are left out of the top-k (padding and question tokens).
FLOOR = -1e3


def example_windows(example: QAExample, tokenizer, max_length: int, stride: int
                    ) -> dict[tuple[int, ...], list[tuple[int, int]]]:
    """Every window of `example` (its token ids) with the context character span of each token
    ((-1, -1) for question and special tokens): the example tokenised again as training did."""
    enc = tokenizer(example.question.strip(), example.context, truncation="only_second", max_length=max_length,
                    stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    return {tuple(ids): [tuple(o) if s == 1 else (-1, -1) for o, s in zip(enc["offset_mapping"][i], enc.sequence_ids(i))]
            for i, ids in enumerate(enc["input_ids"])}


def project(teacher_logits: np.ndarray, teacher_chars: list[tuple[int, int]], student_chars: list[tuple[int, int]],
            end: bool) -> np.ndarray:
    """Teacher logits moved onto student positions: position 0 (no answer) to 0, a context token to
    the student token holding its first (for starts) or last (for ends) character."""
    out = np.full(len(student_chars), -np.inf, dtype=np.float64)
    out[0] = teacher_logits[0]
    bounds = [(s, e) for s, e in student_chars]
    ctx = [k for k, (s, e) in enumerate(bounds) if s >= 0 and e > s]
    if not ctx:
        return out
    keys = np.array([bounds[k][1] if end else bounds[k][0] for k in ctx])
    for j, (a, b) in enumerate(teacher_chars):
        if a < 0 or b <= a or teacher_logits[j] <= FLOOR:
            continue
        # starts: the last student token starting at or before a; ends: the first ending at or after b
        pos = (np.searchsorted(keys, b, side="left") if end else np.searchsorted(keys, a, side="right") - 1)
        if pos < 0 or pos >= len(ctx):
            continue
        k = ctx[int(pos)]
        out[k] = np.logaddexp(out[k], teacher_logits[j])
    return out


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    finite = np.where(np.isfinite(logits))[0]
    order = finite[np.argsort(-logits[finite], kind="stable")][:k]
    positions = np.full(k, -1, dtype=np.int16)
    values = np.full(k, -np.inf, dtype=np.float16)
    positions[: len(order)] = order
    values[: len(order)] = logits[order]
    return positions, values


def schedule_order(windows: list[TrainWindow], examples: list[QAExample], batch_size: int, seed: int,
                   weights: dict[str, float]) -> list[int]:
    """Every window once: those of the student's first pass in its order, then the rest."""
    from qa.training.train import pass_schedule

    order = list(dict.fromkeys(k for batch in pass_schedule(windows, examples, 1, batch_size, seed, weights)
                               for k in batch))
    seen = set(order)
    return order + [k for k in range(len(windows)) if k not in seen]


def teacher_windows(args: argparse.Namespace) -> tuple[list[TrainWindow], list[QAExample]]:
    """The student's training windows, built once into the teacher folder (a student run copies them)."""
    from transformers import AutoTokenizer

    from qa.training.train import base_model_path, load_windows

    student_tokenizer = AutoTokenizer.from_pretrained(base_model_path(args.student_base))
    # `teacher` here names the teacher model, not a folder of targets to take windows from.
    return load_windows(argparse.Namespace(**{**vars(args), "teacher": ""}), student_tokenizer, Path(args.out))


def load_teacher(name: str):
    """A shipped reader by name (accurate, fast), an exported reader folder, or a saved model folder."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from qa.training.train import shipped_folder

    folder = shipped_folder(name)
    if folder is not None:
        from qa.reader import load_shipped_reader

        return load_shipped_reader(folder)
    return (AutoModelForQuestionAnswering.from_pretrained(name, local_files_only=True),
            AutoTokenizer.from_pretrained(name, local_files_only=True))


@torch.inference_mode()
def run(args: argparse.Namespace) -> Path:
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out)
    torch.set_num_threads(args.threads)
    from transformers import AutoTokenizer

    from qa.training.train import base_model_path

    windows, examples = teacher_windows(args)
    order_file = out / ORDER_FILE
    if order_file.exists():
        order = json.loads(order_file.read_text())["order"]
    else:
        order = schedule_order(windows, examples, args.batch_size_student, args.seed, source_weights(args.weight))
        tmp = order_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"teacher": args.teacher, "top_k": args.top_k, "shard_size": args.shard_size,
                                   "weights": dict(args.weight), "order": order}))
        os.replace(tmp, order_file)
    student_tokenizer = AutoTokenizer.from_pretrained(base_model_path(args.student_base))
    model, tokenizer = load_teacher(args.teacher)
    model.eval()
    if args.bf16:
        model = model.to(torch.bfloat16)
    shards = (len(order) + args.shard_size - 1) // args.shard_size
    done = sum(shard_path(out, s).exists() for s in range(shards))
    logger.info("teacher %s: %d windows in %d shards of %d, %d done", args.teacher, len(order), shards,
                args.shard_size, done)
    started, read = time.time(), 0
    last = min(shards, args.max_shards + done) if args.max_shards else shards
    for shard in range(shards):
        if shard >= last:
            break
        path = shard_path(out, shard)
        if path.exists():
            continue
        indices = order[shard * args.shard_size : (shard + 1) * args.shard_size]
        targets = targets_for(indices, windows, examples, model, tokenizer, student_tokenizer, args)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, indices=np.array(indices, dtype=np.int32), start_positions=targets.start_positions,
                 start_logits=targets.start_logits, end_positions=targets.end_positions, end_logits=targets.end_logits)
        os.replace(tmp, path)
        read += len(indices)
        rate = read / (time.time() - started)
        remaining = sum(not shard_path(out, s).exists() for s in range(shards)) * args.shard_size
        logger.info("shard %d/%d: %.2f windows/s, about %.0f min left", shard + 1, shards, rate, remaining / rate / 60)
    return out


def targets_for(indices: list[int], windows: list[TrainWindow], examples: list[QAExample], model, tokenizer,
                student_tokenizer, args: argparse.Namespace) -> TeacherTargets:
    """Teacher top-k logits on student positions for these windows, read in length-sorted batches."""
    k = args.top_k
    n = len(indices)
    result = TeacherTargets(np.full((n, k), -1, np.int16), np.full((n, k), -np.inf, np.float16),
                            np.full((n, k), -1, np.int16), np.full((n, k), -np.inf, np.float16))
    spans, texts = [], []
    tokenised: dict[int, dict[tuple[int, ...], list[tuple[int, int]]]] = {}  # an example's windows, once
    for index in indices:
        window, example = windows[index], examples[windows[index].example]
        if window.example not in tokenised:
            tokenised[window.example] = example_windows(example, student_tokenizer, args.max_length, args.stride)
        chars = tokenised[window.example].get(tuple(window.input_ids))
        if chars is None:
            raise SystemExit(f"window {index} does not match its example: the windows were built with another "
                             "--max-length/--stride or tokenizer; start a new --out")
        context = [c for c in chars if c[0] >= 0]
        lo, hi = (context[0][0], context[-1][1]) if context else (0, 0)
        spans.append((chars, lo))
        texts.append((example.question.strip(), example.context[lo:hi]))
    by_length = sorted(range(n), key=lambda i: len(texts[i][0]) + len(texts[i][1]))
    for b in range(0, n, args.batch_size):
        rows = by_length[b : b + args.batch_size]
        enc = tokenizer([texts[i][0] for i in rows], [texts[i][1] for i in rows], truncation="only_second",
                        max_length=args.teacher_max_length, return_offsets_mapping=True, padding="longest",
                        return_tensors="pt")
        inputs = {name: enc[name] for name in tokenizer.model_input_names if name in enc}
        logits = model(**inputs)
        starts, ends = logits.start_logits.float().numpy(), logits.end_logits.float().numpy()
        for r, i in enumerate(rows):
            chars, lo = spans[i]
            seq = enc.sequence_ids(r)
            teacher_chars = [(int(a) + lo, int(e) + lo) if s == 1 else (-1, -1)
                             for (a, e), s in zip(enc["offset_mapping"][r].tolist(), seq)]
            mask = np.array([s == 1 or j == 0 for j, s in enumerate(seq)])
            s_logits = np.where(mask, starts[r], FLOOR * 2)
            e_logits = np.where(mask, ends[r], FLOOR * 2)
            result.start_positions[i], result.start_logits[i] = top_k(project(s_logits, teacher_chars, chars, False), k)
            result.end_positions[i], result.end_logits[i] = top_k(project(e_logits, teacher_chars, chars, True), k)
    return result


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--data", required=True, help="folder with train/ and dev/ SQuAD-v2 files")
    parser.add_argument("--out", default="~/.cache/qa-teacher",
                        help="folder for the student's windows and the teacher's shards (resumable)")
    parser.add_argument("--teacher", default="accurate",
                        help="a shipped reader (accurate, fast), an exported reader folder, or a model folder")
    parser.add_argument("--student-base", default="minilm", help="the student's base encoder, whose windows are read")
    parser.add_argument("--max-length", type=int, default=256, help="student window length (as in training)")
    parser.add_argument("--stride", type=int, default=128, help="student window stride (as in training)")
    parser.add_argument("--teacher-max-length", type=int, default=384,
                        help="the teacher reads each student window's text whole up to this many tokens")
    parser.add_argument("--top-k", type=int, default=16, help="start and end positions kept per window")
    parser.add_argument("--shard-size", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=16, help="teacher batch")
    parser.add_argument("--batch-size-student", type=int, default=32, help="the student's batch (for the order)")
    parser.add_argument("--seed", type=int, default=13, help="the student run's seed (mix, negatives, order)")
    parser.add_argument("--weight", action="append", default=[], type=source_weight, metavar="SOURCE=WEIGHT",
                        help="as for train-reader: the first pass's mix, which sets the order")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N training examples")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--max-shards", type=int, default=0, help="stop after this many new shards (0: all)")
    return parser


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    args = build_parser(prog).parse_args(argv)
    configure_logging("INFO", timestamps=True)
    run(args)


if __name__ == "__main__":
    main()
