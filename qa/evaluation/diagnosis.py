"""Why did a question go wrong? Put every miss (exact match 0) in exactly one category.

Categories, checked in this order so each miss lands where the fix would be:
- false_answer: the set says abstain, the system answered.
- suppressed_by_threshold: the best span was right but scored below the threshold
  (a false abstention caused by the threshold).
- not_in_corpus: no indexed document contains a gold answer (a data or set problem).
- cut_by_boundary: a document contains the gold answer but no single passage does
  (chunking split it).
- not_retrieved: passages contain it, but none of those handed to the reader did;
  `gold_rank` says where it sat in the full ranking, if anywhere.
- wrong_span: a passage the reader saw had the answer, and the reader picked another span
  (or abstained with a wrong best span).
Reader-only runs skip the retrieval categories.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from qa.evaluation.metrics import gold_in_text
from qa.evaluation.records import QuestionRecord
from qa.metrics import normalize_answer

FALSE_ANSWER = "false_answer"
SUPPRESSED_BY_THRESHOLD = "suppressed_by_threshold"
NOT_IN_CORPUS = "not_in_corpus"
CUT_BY_BOUNDARY = "cut_by_boundary"
NOT_RETRIEVED = "not_retrieved"
WRONG_SPAN = "wrong_span"

CATEGORIES: tuple[str, ...] = (
    FALSE_ANSWER,
    SUPPRESSED_BY_THRESHOLD,
    NOT_IN_CORPUS,
    CUT_BY_BOUNDARY,
    NOT_RETRIEVED,
    WRONG_SPAN,
)


@dataclass
class Diagnosis:
    """One miss, its category and a one-line human explanation."""

    id: str
    question: str
    kind: str
    category: str
    prediction: str
    best_span: str
    score: float
    golds: list[str]
    gold_rank: int | None
    detail: str


@dataclass
class ContainmentIndex:
    """Normalised passage and document texts, built once so per-question checks stay cheap."""

    passages: list[str] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)

    @classmethod
    def from_texts(cls, passages: Iterable[str], documents: Iterable[str]) -> ContainmentIndex:
        return cls([normalize_answer(t) for t in passages], [normalize_answer(t) for t in documents])

    def in_passages(self, golds: Sequence[str]) -> bool:
        return any(gold_in_text(golds, text, normalized=True) for text in self.passages)

    def in_documents(self, golds: Sequence[str]) -> bool:
        return any(gold_in_text(golds, text, normalized=True) for text in self.documents)


def needs_containment(record: QuestionRecord) -> bool:
    """Whether `diagnose` will look at gold_in_passages/gold_in_documents for this record."""
    return (
        record.retrieval_evaluated
        and record.answerable
        and record.em < 1.0
        and not (record.abstained and record.best_correct)
        and record.hit_gold_rank is None
    )


def fill_containment(record: QuestionRecord, index: ContainmentIndex) -> None:
    """Set the containment flags on a record that needs them (mutates the record)."""
    if needs_containment(record):
        record.gold_in_passages = index.in_passages(record.golds)
        record.gold_in_documents = record.gold_in_passages or index.in_documents(record.golds)


def categorize(record: QuestionRecord) -> str | None:
    """The category of a miss, or None when the record is an exact match."""
    if record.em >= 1.0:
        return None
    if not record.answerable:
        return FALSE_ANSWER
    if record.abstained and record.best_correct:
        return SUPPRESSED_BY_THRESHOLD
    if record.retrieval_evaluated and record.hit_gold_rank is None:
        if record.gold_in_passages is False:
            return CUT_BY_BOUNDARY if record.gold_in_documents else NOT_IN_CORPUS
        return NOT_RETRIEVED
    return WRONG_SPAN


def _detail(record: QuestionRecord, category: str) -> str:
    said = f"answered {record.prediction!r}" if not record.abstained else "abstained"
    if category == FALSE_ANSWER:
        return f"{said} (score {record.score:.2f}) where the set says abstain"
    if category == SUPPRESSED_BY_THRESHOLD:
        limit = f" < threshold {record.threshold:.2f}" if record.threshold is not None else ""
        return f"right span {record.best_span!r} scored {record.score:.2f}{limit}"
    if category == NOT_IN_CORPUS:
        return "no indexed document contains a gold answer"
    if category == CUT_BY_BOUNDARY:
        return "the gold answer is in a document but split across passages"
    if category == NOT_RETRIEVED:
        if record.gold_rank is not None:
            return f"first passage with the answer ranked {record.gold_rank}, reader saw the top {record.reader_k}"
        depth = f"top {record.retrieval_depth}" if record.retrieval_depth else "ranking"
        return f"no passage with the answer in the {depth}"
    where = f" (answer in passage {record.hit_gold_rank})" if record.hit_gold_rank else ""
    return f"{said}; best span {record.best_span!r}{where}"


def diagnose(record: QuestionRecord) -> Diagnosis | None:
    """Diagnosis of one record, or None when it is an exact match."""
    category = categorize(record)
    if category is None:
        return None
    return Diagnosis(
        id=record.id,
        question=record.question,
        kind=record.kind,
        category=category,
        prediction=record.prediction,
        best_span=record.best_span,
        score=record.score,
        golds=list(record.golds),
        gold_rank=record.gold_rank,
        detail=_detail(record, category),
    )


def diagnose_all(records: Iterable[QuestionRecord]) -> list[Diagnosis]:
    return [d for d in map(diagnose, records) if d is not None]


def category_counts(diagnoses: Iterable[Diagnosis]) -> dict[str, int]:
    """Misses per category, every category present (zeros included), in CATEGORIES order."""
    counts = Counter(d.category for d in diagnoses)
    return {c: counts.get(c, 0) for c in CATEGORIES}
