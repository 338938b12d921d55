"""Fit the reader's score calibration and abstention threshold on held-out questions.

The reader's raw evidence is a margin (best span logit minus no-answer logit). Platt scaling
maps it to the probability that the answer is right (token F1 >= 0.5 against a gold answer;
any answer to an unanswerable question is wrong). The threshold then maximises mean F1 over
a held-out mix of answerable and unanswerable questions, where abstaining scores 1 on an
unanswerable question and 0 on an answerable one.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qa.config import SHIPPED_READER_DIR
from qa.metrics import best_over_golds, exact_match, f1_score
from qa.training.data import QAExample, load_squad

logger = logging.getLogger(__name__)

CORRECT_F1 = 0.5


@dataclass
class ReaderPrediction:
    """The reader's best span for one example (always answering), with its gold answers."""

    text: str
    margin: float
    golds: list[str]
    f1: float
    em: float

    @property
    def correct(self) -> bool:
        return bool(self.golds) and self.f1 >= CORRECT_F1


def predict(reader, examples: list[QAExample], progress: bool = True) -> tuple[list[ReaderPrediction], float]:
    """Run the reader on each example's own context; returns predictions and seconds per window."""
    predictions = []
    windows = 0
    started = time.perf_counter()
    for ex in tqdm(examples, desc="reading", disable=not progress, mininterval=10):
        spans = reader.read(ex.question, [ex.context])
        text = ex.context[spans[0].start : spans[0].end] if spans else ""
        margin = spans[0].margin if spans else -1e3
        golds = [a for a, _ in ex.answers]
        windows += reader.count_windows(ex.question, ex.context)
        predictions.append(ReaderPrediction(
            text, margin, golds,
            best_over_golds(f1_score, text, golds) if golds else 0.0,
            best_over_golds(exact_match, text, golds) if golds else 0.0,
        ))
    return predictions, (time.perf_counter() - started) / max(windows, 1)


def fit_platt(margins: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Logistic regression of labels on margins: Newton's method with step halving.

    Margins are standardised first and every step must lower the negative log-likelihood;
    a plain Newton step from a poor start can overshoot into saturation and diverge.
    """
    mean, scale = float(margins.mean()), float(margins.std()) or 1.0
    x = np.stack([(margins - mean) / scale, np.ones_like(margins)], axis=1)

    def loss(w: np.ndarray) -> float:
        z = x @ w
        return float(np.sum(np.logaddexp(0, z) - labels * z))

    w = np.zeros(2)
    current = loss(w)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -50, 50)))
        gradient = x.T @ (p - labels)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-6 and loss(w - size * step) > current:
            size /= 2
        w = w - size * step
        previous, current = current, loss(w)
        if previous - current < 1e-10 * max(1.0, abs(current)):
            break
    slope = w[0] / scale
    return float(slope), float(w[1] - slope * mean)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(probabilities[members].mean() - labels[members].mean())
    return float(error)


def choose_threshold(probabilities: np.ndarray, predictions: list[ReaderPrediction]) -> dict[str, float]:
    """The threshold maximising mean F1 of answer-or-abstain, with its precision and coverage."""
    best: dict[str, float] = {}
    for t in np.round(np.arange(0.02, 0.96, 0.01), 2):
        answered = probabilities >= t
        scores = [p.f1 if a else float(not p.golds) for p, a in zip(predictions, answered)]
        f1 = float(np.mean(scores))
        if not best or f1 > best["mean_f1"]:
            correct = np.array([p.correct for p in predictions])
            unanswerable = np.array([not p.golds for p in predictions])
            best = {
                "threshold": float(t),
                "mean_f1": f1,
                "precision": float(correct[answered].mean()) if answered.any() else 1.0,
                "answered_share": float(answered.mean()),
                "abstention_precision": float(unanswerable[~answered].mean()) if (~answered).any() else 1.0,
                "abstention_recall": float((~answered)[unanswerable].mean()) if unanswerable.any() else 1.0,
            }
    return best


def load_holdout(path: Path) -> list[QAExample]:
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [QAExample(r["id"], r["question"], r["context"], tuple(tuple(a) for a in r["answers"]), r["source"]) for r in rows]


def calibrate(reader, holdout: list[QAExample], dev: list[QAExample], out: Path) -> dict:
    """Fit, evaluate and write `calibration.json`; returns the full report for the model card."""
    predictions, _ = predict(reader, holdout)
    margins = np.array([p.margin for p in predictions])
    labels = np.array([p.correct for p in predictions], dtype=float)
    slope, intercept = fit_platt(margins, labels)
    probabilities = 1 / (1 + np.exp(-(slope * margins + intercept)))
    choice = choose_threshold(probabilities, predictions)
    dev_predictions, seconds_per_window = predict(reader, dev)
    report = {
        "slope": slope,
        "intercept": intercept,
        "threshold": choice["threshold"],
        "holdout": {
            "questions": len(holdout),
            "unanswerable": int(sum(not p.golds for p in predictions)),
            "ece": expected_calibration_error(probabilities, labels),
            **choice,
        },
        "dev": {
            "file": "dev/nq_qed_dev",
            "questions": len(dev),
            "em": 100 * float(np.mean([p.em for p in dev_predictions])),
            "f1": 100 * float(np.mean([p.f1 for p in dev_predictions])),
            "ms_per_window": 1000 * seconds_per_window,
        },
        "correct_means": f"token F1 >= {CORRECT_F1} against a gold answer",
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    from qa.reader import Reader

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--holdout", type=Path, required=True, help="holdout.jsonl written by training")
    parser.add_argument("--data", type=Path, required=True, help="folder with dev/nq_qed_dev.json.gz")
    parser.add_argument("--reader", default="", help="reader to calibrate (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=SHIPPED_READER_DIR)
    parser.add_argument("--dev-limit", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    reader = Reader(args.reader)
    dev = load_squad(args.data / "dev" / "nq_qed_dev.json.gz")
    if args.dev_limit:
        dev = dev[: args.dev_limit]
    report = calibrate(reader, load_holdout(args.holdout), dev, args.out)
    logger.info("calibration: %s", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
