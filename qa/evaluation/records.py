"""What an evaluation set holds (EvalItem) and what asking one question produced (QuestionRecord).

Records keep raw outputs only (best span, its score, ranks); every metric is derived from
them by pure functions, so thresholds can be swept and numbers recomputed after the fact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.metrics import best_over_golds, exact_match, f1_score

#: Kind given to questions of SQuAD-format files, and to JSON Lines rows without a "kind".
DEFAULT_KIND = "squad"
UNANSWERABLE_KIND = "unanswerable"


@dataclass(frozen=True)
class EvalItem:
    """One question with every acceptable answer; no answers means the reader should abstain.

    `context` is set for SQuAD-format sets (the gold paragraph), used by reader-only runs.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    kind: str = DEFAULT_KIND
    context: str | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


@dataclass
class QuestionRecord:
    """The outcome of one question.

    `prediction` is what the system said ("" = abstained); `best_span`/`score` are its best
    candidate and calibrated probability even when it abstained. `gold_rank` is the 1-based
    rank of the first passage holding a gold answer in the full retrieval ranking (None: not
    found in its top `retrieval_depth`); `hit_gold_rank` the same among the `reader_k` passages
    handed to the reader.
    `gold_in_passages`/`gold_in_documents` are filled only where a diagnosis needs them.
    """

    id: str
    question: str
    kind: str
    golds: list[str]
    prediction: str
    best_span: str
    score: float
    latency: float
    threshold: float | None = None
    retrieval_evaluated: bool = False
    gold_rank: int | None = None
    hit_gold_rank: int | None = None
    reader_k: int = 0
    retrieval_depth: int = 0
    gold_in_passages: bool | None = None
    gold_in_documents: bool | None = None
    source: str | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def answerable(self) -> bool:
        return bool(self.golds)

    @property
    def abstained(self) -> bool:
        return not self.prediction.strip()

    @property
    def em(self) -> float:
        """SQuAD v2 exact match: a correct abstention on an unanswerable question scores 1."""
        return best_over_golds(exact_match, self.prediction, self.golds)

    @property
    def f1(self) -> float:
        return best_over_golds(f1_score, self.prediction, self.golds)

    @property
    def best_correct(self) -> bool:
        """Whether the best span (answered or suppressed) exactly matches a gold answer."""
        return bool(self.golds) and best_over_golds(exact_match, self.best_span, self.golds) == 1.0

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        data = asdict(self)
        data.update(abstained=self.abstained, em=self.em, f1=self.f1, best_correct=self.best_correct)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuestionRecord:
        """Inverse of `to_dict` (derived fields are dropped), so saved reports can be re-analysed."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


def load_report_records(report_json: str | Path) -> list[QuestionRecord]:
    """The records of a saved report.json, to re-sweep thresholds or recompute metrics offline."""
    data = json.loads(Path(report_json).read_text(encoding="utf-8"))
    return [QuestionRecord.from_dict(row) for row in data["records"]]


def load_items(path: str | Path) -> list[EvalItem]:
    """Read a JSON Lines question set or a SQuAD-format JSON(.gz) file."""
    path = Path(path)
    if path.name.endswith(".jsonl"):
        return _load_jsonl(path)
    if path.name.endswith((".json", ".json.gz")):
        return _load_squad(path)
    raise ValueError(f"{path}: expected a .jsonl question set or a SQuAD .json/.json.gz file")


def _load_jsonl(path: Path) -> list[EvalItem]:
    items = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                question = row["question"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a question object ({exc})") from None
            answers = row.get("answers") or []
            if isinstance(answers, str):
                answers = [answers]
            kind = row.get("kind") or (DEFAULT_KIND if answers else UNANSWERABLE_KIND)
            items.append(
                EvalItem(
                    id=str(row.get("id", f"{path.stem}-{number}")),
                    question=question,
                    answers=tuple(answers),
                    kind=kind,
                    context=row.get("context"),
                )
            )
    return items


def _load_squad(path: Path) -> list[EvalItem]:
    from qa.training.data import load_squad

    items = []
    for ex in load_squad(path):
        golds = tuple(dict.fromkeys(text for text, _ in ex.answers))  # unique, order kept
        kind = DEFAULT_KIND if golds else UNANSWERABLE_KIND
        items.append(EvalItem(ex.id, ex.question, golds, kind, ex.context))
    return items
