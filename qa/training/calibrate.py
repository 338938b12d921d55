"""Fit the reader's score calibration and abstention threshold where answers are asked.

The reader's raw evidence is a margin (best span logit minus no-answer logit). Platt scaling
maps it to the probability that the answer is right (token F1 >= 0.5 against a gold answer;
any answer to an unanswerable question is wrong). The threshold then maximises mean F1 over
held-out questions, where abstaining scores 1 on an unanswerable question and 0 on an
answerable one.

Both are fitted on what `answer()` shows the reader, not on gold paragraphs: the held-out
paragraphs become a corpus of documents (one per article), half of the articles are indexed
with the product's own indexing, and every held-out question is answered from the top-k
passages the product's hybrid retrieval returns. Questions about the other half are out of
scope (the documents do not hold the answer). Gold-paragraph reading (`read()`) is reported
beside it, at the same threshold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from qa.config import DEFAULT_READER, SHIPPED_READERS
from qa.logs import configure_logging
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

    @classmethod
    def scored(cls, text: str, margin: float, golds: list[str]) -> ReaderPrediction:
        """A prediction with its F1 and EM against the gold answers (0 when there are none)."""
        return cls(text, margin, golds,
                   best_over_golds(f1_score, text, golds) if golds else 0.0,
                   best_over_golds(exact_match, text, golds) if golds else 0.0)


def predict(reader, examples: list[QAExample], progress: bool = True) -> tuple[list[ReaderPrediction], float]:
    """Run the reader on each example's own context; returns predictions and seconds per window."""
    predictions = []
    windows = 0
    started = time.perf_counter()
    for ex in tqdm(examples, desc="reading", disable=not progress, mininterval=10):
        spans = reader.read(ex.question, [ex.context])
        text = ex.context[spans[0].start : spans[0].end] if spans else ""
        margin = spans[0].margin if spans else -1e3
        windows += reader.count_windows(ex.question, ex.context)
        predictions.append(ReaderPrediction.scored(text, margin, [a for a, _ in ex.answers]))
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


def choose_threshold(probabilities: np.ndarray, predictions: list[ReaderPrediction]) -> float:
    """The threshold maximising mean F1 of answer-or-abstain (abstaining is right only when unanswerable)."""

    def mean_f1(threshold: float) -> float:
        return float(np.mean([p.f1 if answered else float(not p.golds)
                              for p, answered in zip(predictions, probabilities >= threshold)]))

    return max((float(t) for t in np.round(np.arange(0.02, 0.96, 0.01), 2)), key=mean_f1)


#: Files whose questions name their subject, so a question about an article left out of the
#: corpus is truly out of scope (a generic "how is the battery?" of a review is not).
SPECIFIC_SOURCES = ("nq_qed_train", "squadshifts_wiki", "squad2_dev_part", "covid_qa", "tweetqa",
                    "adversarial_squad_addsent")


def _stable_share(key: str) -> float:
    return hashlib.sha1(key.encode("utf-8")).digest()[1] / 256


def write_corpus(holdout: list[QAExample], folder: Path) -> tuple[list[QAExample], int]:
    """Write half of the held-out articles as documents; return the questions to ask and the
    number of documents. Questions about articles left out have their answers removed."""
    articles: dict[tuple[str, str], list[QAExample]] = {}
    for ex in holdout:
        if ex.id.endswith("-neg"):
            continue  # a training-style negative; its own paragraph is in the corpus
        articles.setdefault((ex.source, ex.title or ex.context[:80]), []).append(ex)
    indexed = {key for key in articles if _stable_share("|".join(key)) < 0.5}
    corpus_text = []
    for n, key in enumerate(sorted(indexed)):
        paragraphs = list(dict.fromkeys(ex.context for ex in articles[key]))
        path = folder / key[0] / f"{n:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "\n\n".join(paragraphs) + "\n"
        path.write_text(text, encoding="utf-8")
        corpus_text.append(text.lower())
    everything = "\n".join(corpus_text)
    questions = []
    for key, examples in sorted(articles.items()):
        for ex in examples:
            if key in indexed:
                questions.append(ex)
            elif ex.source in SPECIFIC_SOURCES and ex.answers and not any(
                    text.lower() in everything for text, _ in ex.answers):
                questions.append(QAExample(ex.id + "-out", ex.question, "", (), ex.source, ex.title))
    return questions, len(indexed)


def predict_in_corpus(engine, examples: list[QAExample], progress: bool = True) -> list[ReaderPrediction]:
    """Answer each question as `answer()` does (hybrid retrieval, top-k passages, always answering)."""
    predictions = []
    for ex in tqdm(examples, desc="answering", disable=not progress, mininterval=10):
        hits = engine.retrieve(ex.question, engine.settings.top_k)
        spans = engine.reader.read(ex.question, [h.passage.text for h in hits])
        text = hits[spans[0].text_index].passage.text[spans[0].start : spans[0].end] if spans else ""
        margin = spans[0].margin if spans else -1e3
        predictions.append(ReaderPrediction.scored(text, margin, [a for a, _ in ex.answers]))
    return predictions


def summarise(predictions: list[ReaderPrediction], probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """How answering at `threshold` goes on one set: mean F1, precision, coverage, suppressed right answers."""
    answered = probabilities >= threshold
    correct = np.array([p.correct for p in predictions])
    unanswerable = np.array([not p.golds for p in predictions])
    answerable = ~unanswerable
    return {
        "questions": len(predictions),
        "unanswerable": int(unanswerable.sum()),
        "mean_f1": float(np.mean([p.f1 if a else float(not p.golds) for p, a in zip(predictions, answered)])),
        "answerable_f1": float(np.mean([p.f1 if a else 0.0 for p, a in zip(predictions, answered) if p.golds]))
        if answerable.any() else 0.0,
        "answerable_f1_forced": float(np.mean([p.f1 for p in predictions if p.golds])) if answerable.any() else 0.0,
        "precision": float(correct[answered].mean()) if answered.any() else 1.0,
        "answered_share": float(answered.mean()),
        "right_answers": int(correct.sum()),
        "right_answers_suppressed": int((correct & ~answered).sum()),
        "abstention_precision": float(unanswerable[~answered].mean()) if (~answered).any() else 1.0,
        "abstention_recall": float((~answered)[unanswerable].mean()) if unanswerable.any() else 1.0,
        "ece": expected_calibration_error(probabilities, correct.astype(float)),
    }


def calibrate(reader_name: str, holdout: list[QAExample], dev: list[QAExample], out: Path, work: Path,
              max_questions: int = 1500, seed: int = 13, shipped: str = DEFAULT_READER) -> dict:
    """Fit on answer()-like conditions, report them and gold-paragraph reading; write `calibration.json`."""
    from qa.config import Settings
    from qa.pipeline import Engine

    started = time.perf_counter()
    questions, documents = write_corpus(holdout, work / "corpus")
    questions = random.Random(seed).sample(questions, min(max_questions, len(questions)))
    engine = Engine(Settings.load(corpus_dir=str(work / "corpus"), index_dir=str(work / "index"),
                                  reader_model=reader_name, reader=shipped, threshold=-1.0))
    index_report = engine.ensure_index(progress=True)
    in_corpus = predict_in_corpus(engine, questions)
    margins = np.array([p.margin for p in in_corpus])
    labels = np.array([p.correct for p in in_corpus], dtype=float)
    slope, intercept = fit_platt(margins, labels)

    def probability(predictions: list[ReaderPrediction]) -> np.ndarray:
        return 1 / (1 + np.exp(-(slope * np.array([p.margin for p in predictions]) + intercept)))

    threshold = choose_threshold(probability(in_corpus), in_corpus)
    gold = random.Random(seed).sample(holdout, min(max_questions, len(holdout)))
    gold_predictions, _ = predict(engine.reader, gold)
    dev_predictions, seconds_per_window = predict(engine.reader, dev)
    report = {
        "slope": slope,
        "intercept": intercept,
        "threshold": threshold,
        "fitted_on": "answer()-like: top-k hybrid retrieval over held-out articles, half of them indexed",
        "answer_like": {"documents": documents, "passages": index_report.passages,
                        **summarise(in_corpus, probability(in_corpus), threshold)},
        "gold_paragraph": summarise(gold_predictions, probability(gold_predictions), threshold),
        "dev": {
            "file": "dev/nq_qed_dev",
            "questions": len(dev),
            "em": 100 * float(np.mean([p.em for p in dev_predictions])),
            "f1": 100 * float(np.mean([p.f1 for p in dev_predictions])),
            "f1_at_threshold": 100 * summarise(dev_predictions, probability(dev_predictions),
                                               threshold)["answerable_f1"],
            "ms_per_window": 1000 * seconds_per_window,
            "precision": engine.reader.precision,
        },
        "correct_means": f"token F1 >= {CORRECT_F1} against a gold answer",
        "minutes": (time.perf_counter() - started) / 60,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    import tempfile

    from qa.training.train import load_holdout

    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--holdout", type=Path, required=True, help="holdout.jsonl written by training")
    parser.add_argument("--data", type=Path, required=True, help="folder with dev/nq_qed_dev.json.gz")
    parser.add_argument("--reader", default="", help="reader model folder to calibrate (default: a shipped one)")
    parser.add_argument("--shipped", choices=tuple(SHIPPED_READERS), default=DEFAULT_READER,
                        help="the shipped reader to calibrate when --reader is not given")
    parser.add_argument("--out", type=Path, default=None, help="where calibration.json goes (default: that reader's folder)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the calibration corpus and index")
    parser.add_argument("--questions", type=int, default=1500, help="held-out questions asked")
    parser.add_argument("--dev-limit", type=int, default=0)
    args = parser.parse_args(argv)
    configure_logging("INFO", timestamps=True)
    dev = load_squad(args.data / "dev" / "nq_qed_dev.json.gz")
    if args.dev_limit:
        dev = dev[: args.dev_limit]
    with tempfile.TemporaryDirectory() as tmp:
        report = calibrate(args.reader, load_holdout(args.holdout), dev, args.out or SHIPPED_READERS[args.shipped],
                           args.work or Path(tmp), args.questions, shipped=args.shipped)
    logger.info("calibration: %s", json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
