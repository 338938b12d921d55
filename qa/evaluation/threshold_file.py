"""Save a tuned abstention threshold beside an index, and read it back.

The file is the hand-over point between evaluation and configuration: the engine uses it
(`Settings.saved_threshold`) when neither QA_THRESHOLD nor a flag sets the threshold.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from qa.evaluation.metrics import ThresholdChoice

logger = logging.getLogger(__name__)



def write_threshold(choice: ThresholdChoice, dataset: str, path: str | Path, reader: str) -> Path:
    """Write the choice with its provenance (reader, set, objective, what it achieved there)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "threshold": round(choice.threshold, 6),
        "reader": reader,
        "objective": choice.objective,
        "target_precision": choice.target_precision,
        "reached": choice.reached,
        "f1": choice.f1,
        "em": choice.em,
        "precision": choice.precision,
        "coverage": choice.coverage,
        "dataset": dataset,
        "created": datetime.now().isoformat(timespec="seconds"),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    logger.info("saved threshold %.4f to %s; to use it now: export QA_THRESHOLD=%.4f", choice.threshold, path, choice.threshold)
    return path


def read_threshold(path: str | Path) -> float | None:
    """The saved threshold, or None when there is no (valid) file."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))["threshold"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None
