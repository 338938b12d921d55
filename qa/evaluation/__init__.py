"""Evaluation you can trust: question sets -> per-question records -> metrics, diagnoses, reports.

`metrics`, `diagnosis`, `records` and `report` are pure and load no models; `runner` drives the
engine; `render` shows a report.
"""

from __future__ import annotations

from qa.evaluation.records import EvalItem, QuestionRecord, load_items

__all__ = ["EvalItem", "QuestionRecord", "load_items"]
