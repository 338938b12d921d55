"""Ask every question of a set, keep raw per-question records, and write the report files.

JSON Lines sets are asked end to end against the configured corpus and index. SQuAD-format
files are either indexed as documents (each context becomes a .txt in a temporary corpus,
indexed in a temporary folder, then asked end to end) or, with `reader_only=True`, handed
to the reader together with their gold context.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from qa.config import Settings
from qa.evaluation.diagnosis import ContainmentIndex, fill_containment, needs_containment
from qa.evaluation.metrics import DEFAULT_KS, first_gold_rank, reliability_bins, sweep_point
from qa.evaluation.records import EvalItem, QuestionRecord, load_items
from qa.evaluation.render import markdown_report
from qa.evaluation.report import EvalReport, build_report

logger = logging.getLogger(__name__)

END_TO_END = "end_to_end"
READER_ONLY = "reader_only"
DEFAULT_REPORTS_DIR = Path("eval") / "reports"


def run_eval(
    path: str | Path,
    settings: Settings,
    reader_only: bool = False,
    out_dir: str | Path | None = None,
    progress: bool = True,
    *,
    tune: bool = False,
    target_precision: float | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    engine: Any = None,
    write: bool = True,
) -> EvalReport:
    """Evaluate the question set at `path` and write report.json/.md and two figures to `out_dir`.

    `engine` replaces `qa.pipeline.get_engine(settings)` (tests pass a fake one); it is used as
    given, so for SQuAD files indexed as documents it must already hold those contexts.
    `tune`/`target_precision` add a threshold tuned on this same set (an optimistic estimate).
    """
    path = Path(path)
    items = load_items(path)
    if not items:
        raise ValueError(f"{path} holds no questions")
    is_squad = not path.name.endswith(".jsonl")
    if reader_only and any(item.context is None for item in items):
        raise ValueError(f"{path}: reader-only evaluation needs a gold context for every question (SQuAD files have one)")

    started = time.perf_counter()
    with _engine_for(path, items, settings, reader_only, is_squad, engine, progress) as (active, active_settings):
        records = _ask_all(active, items, active_settings, reader_only, ks, progress)
    wall = time.perf_counter() - started

    report = build_report(
        records,
        dataset=str(path),
        mode=READER_ONLY if reader_only else END_TO_END,
        settings=active_settings,
        wall_seconds=wall,
        ks=ks,
        tune=tune or target_precision is not None,
        target_precision=target_precision,
    )
    if write:
        write_report(report, out_dir if out_dir is not None else default_out_dir())
    return report


def default_out_dir() -> Path:
    return DEFAULT_REPORTS_DIR / datetime.now().strftime("%Y%m%d-%H%M%S")


def write_report(report: EvalReport, out_dir: str | Path) -> dict[str, str]:
    """Write report.json, report.md, reliability.png and precision_coverage.png; return their paths."""
    import json

    from qa.evaluation.plots import plot_precision_coverage, plot_reliability

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report.out_dir = str(out)
    tuned_point = sweep_point(report.records, report.tuned.threshold) if report.tuned else None
    files = {
        "reliability": str(plot_reliability(reliability_bins(report.records), out / "reliability.png", report.summary.ece)),
        "precision_coverage": str(
            plot_precision_coverage(report.sweep, out / "precision_coverage.png", report.current, tuned_point)
        ),
        "json": str(out / "report.json"),
        "markdown": str(out / "report.md"),
    }
    report.files = files
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "report.md").write_text(markdown_report(report), encoding="utf-8")
    logger.info("evaluation report written to %s", out)
    return files


# --- asking -----------------------------------------------------------------------------------


@contextmanager
def _engine_for(
    path: Path, items: list[EvalItem], settings: Settings, reader_only: bool, is_squad: bool, engine: Any,
    progress: bool = True,
) -> Iterator[tuple[Any, Settings]]:
    """The engine to ask, plus the settings it runs with; a temporary corpus for SQuAD as documents."""
    if engine is not None:
        yield engine, settings
        return
    from qa.pipeline import get_engine

    if reader_only or not is_squad:
        active = get_engine(settings)
        if not reader_only:
            active.ensure_index(progress=progress)
        yield active, settings
        return
    with tempfile.TemporaryDirectory(prefix="qa-eval-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        contexts = list(dict.fromkeys(item.context for item in items if item.context))
        for number, context in enumerate(contexts):
            (corpus / f"context_{number:05d}.txt").write_text(context, encoding="utf-8")
        logger.info("indexing %d contexts of %s in %s", len(contexts), path.name, tmp)
        temp_settings = settings.replace(corpus_dir=str(corpus), index_dir=str(Path(tmp) / "index"))
        active = get_engine(temp_settings)
        active.ensure_index(progress=progress)
        yield active, temp_settings


def effective_threshold(engine: Any, settings: Settings) -> float | None:
    """The abstention threshold in force: the configured one, else the engine's shipped default."""
    if settings.threshold >= 0:
        return settings.threshold
    for attribute in ("default_threshold", "threshold"):
        value = getattr(engine, attribute, None)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def best_candidate(answer: Any) -> tuple[str, float]:
    """The best span and its probability, also for an abstention (suppressed span in alternatives[0])."""
    if answer.text:
        return answer.text, float(answer.score)
    if answer.alternatives and answer.alternatives[0].text:
        return answer.alternatives[0].text, float(answer.alternatives[0].score)
    return "", float(answer.score)


def _ask_all(
    engine: Any, items: list[EvalItem], settings: Settings, reader_only: bool, ks: Sequence[int], progress: bool
) -> list[QuestionRecord]:
    from tqdm import tqdm

    threshold = effective_threshold(engine, settings)
    depth = max(settings.retrieve_k, settings.top_k, *ks)
    # One untimed question first, so lazy model loading does not land in the latency numbers.
    try:
        _ask(engine, items[0], settings, reader_only)
    except ValueError:
        pass
    records: list[QuestionRecord] = []
    for item in tqdm(items, desc="evaluating", unit="q", disable=not progress):
        try:
            answer, wall = _ask(engine, item, settings, reader_only)
        except ValueError as exc:  # a question the engine refuses (empty, too long) counts as an abstention
            logger.warning("%s: %s", item.id, exc)
            records.append(
                QuestionRecord(item.id, item.question, item.kind, list(item.answers), "", "", 0.0, 0.0,
                               threshold=threshold, error=str(exc))
            )
            continue
        text, score = best_candidate(answer)
        record = QuestionRecord(
            id=item.id,
            question=item.question,
            kind=item.kind,
            golds=list(item.answers),
            prediction=answer.text,
            best_span=text,
            score=score,
            latency=float(answer.timings.get("total", wall)),
            threshold=threshold,
            source=answer.source,
            timings={**{k: float(v) for k, v in answer.timings.items()}, "wall": wall},
        )
        if not reader_only:
            record.retrieval_evaluated = True
            record.reader_k = len(answer.hits)
            record.retrieval_depth = depth
            if item.answers:
                record.hit_gold_rank = first_gold_rank([h.passage.text for h in answer.hits], item.answers)
                ranking = engine.retrieve(item.question, depth)
                record.gold_rank = first_gold_rank([h.passage.text for h in ranking], item.answers)
        records.append(record)
    if not reader_only and any(needs_containment(r) for r in records):
        index = ContainmentIndex.from_texts(
            (p.text for p in engine.store.passages), document_texts(engine.store).values()
        )
        for record in records:
            fill_containment(record, index)
    return records


def _ask(engine: Any, item: EvalItem, settings: Settings, reader_only: bool) -> tuple[Any, float]:
    threshold = settings.threshold if settings.threshold >= 0 else None
    t0 = time.perf_counter()
    if reader_only:
        answer = engine.read(item.question, item.context, threshold=threshold)
    else:
        answer = engine.answer(item.question, top_k=settings.top_k, threshold=threshold)
    return answer, time.perf_counter() - t0


def document_texts(store: Any) -> dict[str, str]:
    """Each indexed document's text: its own `.text` when the store keeps it, else rebuilt from
    its passages (they carry offsets; gaps between sentence-aligned passages are whitespace)."""
    texts: dict[str, str] = {}
    for path, document in getattr(store, "documents", {}).items():
        if isinstance(getattr(document, "text", None), str):
            texts[path] = document.text
    by_document: dict[str, list[Any]] = {}
    for passage in store.passages:
        if passage.document not in texts:
            by_document.setdefault(passage.document, []).append(passage)
    for path, passages in by_document.items():
        size = max(p.end for p in passages)
        chars = [" "] * size
        for p in passages:
            chars[p.start : p.end] = p.text
        texts[path] = "".join(chars)
    return texts
