"""One evaluation run's findings (`EvalReport`) and how they follow from the per-question records.

Pure, like `metrics` and `diagnosis`: no models, no files. The runner (which asks the questions
and writes the files) and `render` (which shows a report) both import it, and neither the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from qa.config import Settings
from qa.evaluation.diagnosis import Diagnosis, category_counts, diagnose_all
from qa.evaluation.metrics import (
    DEFAULT_KS,
    SweepPoint,
    Summary,
    ThresholdChoice,
    summarize,
    summarize_by_kind,
    sweep_point,
    threshold_sweep,
    tune_threshold,
)
from qa.evaluation.records import QuestionRecord


@dataclass
class EvalReport:
    """Everything one evaluation run found; `to_dict()` is what report.json holds."""

    dataset: str
    mode: str
    created: str
    settings: dict[str, Any]
    threshold: float | None
    wall_seconds: float
    summary: Summary
    by_kind: dict[str, Summary]
    categories: dict[str, int]
    diagnoses: list[Diagnosis]
    sweep: list[SweepPoint]
    current: SweepPoint | None
    tuned: ThresholdChoice | None
    records: list[QuestionRecord]
    out_dir: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "records"}
        data = {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in data.items()}
        data["by_kind"] = {k: asdict(v) for k, v in self.by_kind.items()}
        data["diagnoses"] = [asdict(d) for d in self.diagnoses]
        data["sweep"] = [asdict(p) for p in self.sweep]
        data["records"] = [r.to_dict() for r in self.records]
        return data


def build_report(
    records: list[QuestionRecord],
    dataset: str,
    mode: str,
    settings: Settings | dict[str, Any],
    wall_seconds: float,
    ks: Sequence[int] = DEFAULT_KS,
    tune: bool = False,
    target_precision: float | None = None,
) -> EvalReport:
    """Derive every metric, diagnosis and sweep from the records (no models involved)."""
    threshold = next((r.threshold for r in records if r.threshold is not None), None)
    asked_seconds = sum(r.timings.get("wall", r.latency) for r in records)
    diagnoses = diagnose_all(records)
    return EvalReport(
        dataset=dataset,
        mode=mode,
        created=datetime.now().isoformat(timespec="seconds"),
        settings=_public_settings(settings),
        threshold=threshold,
        wall_seconds=wall_seconds,
        summary=summarize(records, ks, wall_seconds=asked_seconds),
        by_kind=summarize_by_kind(records, ks),
        categories=category_counts(diagnoses),
        diagnoses=diagnoses,
        sweep=threshold_sweep(records),
        current=sweep_point(records, threshold) if threshold is not None else None,
        tuned=tune_threshold(records, target_precision) if tune else None,
        records=records,
    )


def _public_settings(settings: Settings | dict[str, Any]) -> dict[str, Any]:
    """Settings for the report, without secrets: the web login and the Milvus token (reports get shared)."""
    data = asdict(settings) if isinstance(settings, Settings) else dict(settings)
    for secret in ("auth", "milvus_token"):
        if data.get(secret):
            data[secret] = "(set)"
    return data
