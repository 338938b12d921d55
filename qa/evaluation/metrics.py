"""Pure metrics over per-question records: answer quality, abstention, retrieval, calibration, speed.

Conventions (why they are what they are):
- EM/F1 use the official SQuAD v2 normalisation (`qa.metrics`); an abstention on an
  unanswerable question scores 1, any answer to it scores 0, as in SQuAD v2.
- Abstention is the positive class: precision = correct abstentions / abstentions,
  recall = correct abstentions / questions that should abstain.
- A passage "contains" a gold answer when the normalised answer occurs in the normalised
  passage on word boundaries.
- Calibration asks whether `score` is the probability that the best span is right: every
  question contributes (score of its best span, 1 if that span exactly matches a gold answer
  after normalisation else 0), whether or not it was answered; on unanswerable questions the
  best span is always wrong. This is independent of the threshold, which the sweep handles.
- Undefined ratios (nothing to divide by) are None, never a made-up 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from qa.evaluation.records import QuestionRecord
from qa.metrics import best_over_golds, exact_match, f1_score, normalize_answer

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10, 20)


# --- answer containment and retrieval -------------------------------------------------------


def gold_in_text(golds: Iterable[str], text: str, normalized: bool = False) -> bool:
    """Whether any gold answer occurs in `text` after normalisation, on word boundaries.

    Pass `normalized=True` when `text` is already `normalize_answer`-ed (saves work in loops).
    """
    haystack = f" {text if normalized else normalize_answer(text)} "
    for gold in golds:
        needle = normalize_answer(gold)
        if needle and f" {needle} " in haystack:
            return True
    return False


def first_gold_rank(passage_texts: Sequence[str], golds: Sequence[str]) -> int | None:
    """1-based rank of the first passage holding a gold answer, or None if none does."""
    if not golds:
        return None
    for rank, text in enumerate(passage_texts, 1):
        if gold_in_text(golds, text):
            return rank
    return None


def _retrieval_records(records: Sequence[QuestionRecord]) -> list[QuestionRecord]:
    return [r for r in records if r.retrieval_evaluated and r.answerable]


def recall_at_k(records: Sequence[QuestionRecord], k: int) -> float | None:
    """Share of answerable questions with a gold-holding passage in the top k retrieved."""
    pool = _retrieval_records(records)
    if not pool:
        return None
    return sum(1 for r in pool if r.gold_rank is not None and r.gold_rank <= k) / len(pool)


def mean_reciprocal_rank(records: Sequence[QuestionRecord]) -> float | None:
    """Mean of 1/rank of the first gold-holding passage (0 when it was not retrieved)."""
    pool = _retrieval_records(records)
    if not pool:
        return None
    return sum(1.0 / r.gold_rank if r.gold_rank else 0.0 for r in pool) / len(pool)


# --- answer quality and abstention ----------------------------------------------------------


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def exact_match_rate(records: Sequence[QuestionRecord]) -> float | None:
    return _mean([r.em for r in records])


def f1_rate(records: Sequence[QuestionRecord]) -> float | None:
    return _mean([r.f1 for r in records])


def abstention_precision_recall(records: Sequence[QuestionRecord]) -> tuple[float | None, float | None]:
    """(precision, recall) of abstaining; "correct" means the question has no gold answer."""
    abstained = [r for r in records if r.abstained]
    should = [r for r in records if not r.answerable]
    correct = sum(1 for r in abstained if not r.answerable)
    precision = correct / len(abstained) if abstained else None
    recall = correct / len(should) if should else None
    return precision, recall


def answer_precision(records: Sequence[QuestionRecord]) -> float | None:
    """Share of given answers that exactly match a gold answer (what a user sees as trust)."""
    answered = [r for r in records if not r.abstained]
    return _mean([r.em for r in answered])


# --- calibration ----------------------------------------------------------------------------


@dataclass
class CalibrationBin:
    """Questions whose score fell in [lower, upper); the last bin also holds score == 1."""

    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


def reliability_bins(records: Sequence[QuestionRecord], n_bins: int = 10) -> list[CalibrationBin]:
    """Equal-width score bins with mean score and share of correct best spans in each."""
    buckets: list[list[QuestionRecord]] = [[] for _ in range(n_bins)]
    for r in records:
        score = min(max(r.score, 0.0), 1.0)
        buckets[min(int(score * n_bins), n_bins - 1)].append(r)
    bins = []
    for i, bucket in enumerate(buckets):
        bins.append(
            CalibrationBin(
                lower=i / n_bins,
                upper=(i + 1) / n_bins,
                count=len(bucket),
                confidence=_mean([min(max(r.score, 0.0), 1.0) for r in bucket]),
                accuracy=_mean([float(r.best_correct) for r in bucket]),
            )
        )
    return bins


def expected_calibration_error(records: Sequence[QuestionRecord], n_bins: int = 10) -> float | None:
    """Sum over bins of (bin share) * |accuracy - mean score|; see the module docstring."""
    if not records:
        return None
    total = len(records)
    return sum(
        b.count / total * abs(b.accuracy - b.confidence)  # type: ignore[operator]
        for b in reliability_bins(records, n_bins)
        if b.count
    )


# --- speed ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """q-th percentile with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_percentiles(records: Sequence[QuestionRecord]) -> tuple[float | None, float | None]:
    """(p50, p95) of per-question latency in seconds."""
    latencies = [r.latency for r in records]
    return percentile(latencies, 50), percentile(latencies, 95)


def questions_per_second(records: Sequence[QuestionRecord], wall_seconds: float | None = None) -> float | None:
    """Throughput over the run's wall time, or over the summed latencies when it is not known."""
    seconds = wall_seconds if wall_seconds is not None else sum(r.latency for r in records)
    return len(records) / seconds if records and seconds > 0 else None


# --- thresholds -----------------------------------------------------------------------------


def prediction_at(record: QuestionRecord, threshold: float) -> str:
    """What the system would have said at `threshold`: the best span iff its score >= threshold."""
    return record.best_span if record.best_span.strip() and record.score >= threshold else ""


@dataclass
class SweepPoint:
    """Outcome of answering iff score >= threshold, recomputed from the records."""

    threshold: float
    answered: int
    coverage: float
    precision: float | None
    em: float
    f1: float


def candidate_thresholds(records: Sequence[QuestionRecord]) -> list[float]:
    """0, every distinct best-span score, and one just above the highest (answer nothing)."""
    scores = sorted({r.score for r in records if r.best_span.strip()})
    candidates = {0.0, *scores}
    if scores:
        candidates.add(math.nextafter(scores[-1], math.inf))
    return sorted(candidates)


def sweep_point(records: Sequence[QuestionRecord], threshold: float) -> SweepPoint:
    n = len(records)
    predictions = [prediction_at(r, threshold) for r in records]
    answered = [(r, p) for r, p in zip(records, predictions) if p]
    correct = sum(best_over_golds(exact_match, p, r.golds) for r, p in answered)
    return SweepPoint(
        threshold=threshold,
        answered=len(answered),
        coverage=len(answered) / n if n else 0.0,
        precision=correct / len(answered) if answered else None,
        em=sum(best_over_golds(exact_match, p, r.golds) for r, p in zip(records, predictions)) / n if n else 0.0,
        f1=sum(best_over_golds(f1_score, p, r.golds) for r, p in zip(records, predictions)) / n if n else 0.0,
    )


def threshold_sweep(records: Sequence[QuestionRecord], thresholds: Iterable[float] | None = None) -> list[SweepPoint]:
    """Precision, share answered, EM and F1 at each threshold (ascending)."""
    chosen = sorted(set(thresholds)) if thresholds is not None else candidate_thresholds(records)
    return [sweep_point(records, t) for t in chosen]


@dataclass
class ThresholdChoice:
    """A tuned threshold and what it achieves on the set it was tuned on.

    `reached` is False when `target_precision` was asked for but no threshold attains it;
    the threshold with the highest precision is returned then.
    """

    threshold: float
    f1: float
    em: float
    precision: float | None
    coverage: float
    target_precision: float | None = None
    reached: bool = True
    objective: str = "f1"


def tune_threshold(records: Sequence[QuestionRecord], target_precision: float | None = None) -> ThresholdChoice:
    """Pick the threshold that maximises F1, or the lowest one whose answer precision >= target.

    F1 ties go to the highest threshold (same F1 with fewer answers is the safer choice);
    a precision target takes the lowest qualifying threshold, i.e. the most answers.
    """
    if not records:
        raise ValueError("cannot tune a threshold on an empty set")
    points = threshold_sweep(records)
    if target_precision is None:
        best = max(points, key=lambda p: (p.f1, p.threshold))
        return ThresholdChoice(best.threshold, best.f1, best.em, best.precision, best.coverage)
    qualifying = [p for p in points if p.precision is not None and p.precision >= target_precision]
    if qualifying:
        best = min(qualifying, key=lambda p: p.threshold)
        reached = True
    else:
        scored = [p for p in points if p.precision is not None] or points
        best = max(scored, key=lambda p: (p.precision or 0.0, -p.threshold))
        reached = False
    return ThresholdChoice(
        best.threshold, best.f1, best.em, best.precision, best.coverage,
        target_precision=target_precision, reached=reached, objective="precision",
    )


# --- summaries ------------------------------------------------------------------------------


@dataclass
class Summary:
    """Every headline number for a group of records (None where undefined)."""

    n: int
    answerable: int
    unanswerable: int
    em: float | None
    f1: float | None
    has_answer_em: float | None
    has_answer_f1: float | None
    answered_share: float | None
    answer_precision: float | None
    abstention_precision: float | None
    abstention_recall: float | None
    recall_at_k: dict[int, float | None] = field(default_factory=dict)
    mrr: float | None = None
    ece: float | None = None
    latency_p50: float | None = None
    latency_p95: float | None = None
    questions_per_second: float | None = None


def summarize(
    records: Sequence[QuestionRecord],
    ks: Sequence[int] = DEFAULT_KS,
    wall_seconds: float | None = None,
    n_bins: int = 10,
) -> Summary:
    """All metrics for `records`; `wall_seconds` is the run's duration, for throughput."""
    answerable = [r for r in records if r.answerable]
    abstention_p, abstention_r = abstention_precision_recall(records)
    p50, p95 = latency_percentiles(records)
    retrieval = bool(_retrieval_records(records))
    return Summary(
        n=len(records),
        answerable=len(answerable),
        unanswerable=len(records) - len(answerable),
        em=exact_match_rate(records),
        f1=f1_rate(records),
        has_answer_em=exact_match_rate(answerable),
        has_answer_f1=f1_rate(answerable),
        answered_share=_mean([0.0 if r.abstained else 1.0 for r in records]),
        answer_precision=answer_precision(records),
        abstention_precision=abstention_p,
        abstention_recall=abstention_r,
        recall_at_k={k: recall_at_k(records, k) for k in ks} if retrieval else {},
        mrr=mean_reciprocal_rank(records),
        ece=expected_calibration_error(records, n_bins),
        latency_p50=p50,
        latency_p95=p95,
        questions_per_second=questions_per_second(records, wall_seconds),
    )


def summarize_by_kind(records: Sequence[QuestionRecord], ks: Sequence[int] = DEFAULT_KS) -> dict[str, Summary]:
    """One summary per question kind, in first-seen order."""
    groups: dict[str, list[QuestionRecord]] = {}
    for r in records:
        groups.setdefault(r.kind, []).append(r)
    return {kind: summarize(group, ks) for kind, group in groups.items()}
