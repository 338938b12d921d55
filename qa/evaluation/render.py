"""Show an EvalReport: rich tables for the terminal and a Markdown document for report.md."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qa.evaluation.metrics import Summary
from qa.evaluation.report import EvalReport

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console


def fmt(value: float | int | None, digits: int = 3) -> str:
    """A metric for display; undefined values show as a dash."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def fmt_seconds(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


def overall_rows(summary: Summary) -> list[tuple[str, str]]:
    """(label, value) pairs shared by the terminal table and the Markdown report."""
    rows = [
        ("questions", f"{summary.n} ({summary.answerable} answerable, {summary.unanswerable} unanswerable)"),
        ("exact match", fmt(summary.em)),
        ("F1", fmt(summary.f1)),
        ("EM / F1 on answerable", f"{fmt(summary.has_answer_em)} / {fmt(summary.has_answer_f1)}"),
        ("share answered", fmt(summary.answered_share)),
        ("precision of given answers (EM)", fmt(summary.answer_precision)),
        ("abstention precision / recall", f"{fmt(summary.abstention_precision)} / {fmt(summary.abstention_recall)}"),
    ]
    if summary.recall_at_k:
        rows.append(("retrieval recall@k", ", ".join(f"@{k} {fmt(v)}" for k, v in summary.recall_at_k.items())))
        rows.append(("retrieval MRR", fmt(summary.mrr)))
    rows += [
        ("expected calibration error", fmt(summary.ece)),
        ("latency p50 / p95", f"{fmt_seconds(summary.latency_p50)} / {fmt_seconds(summary.latency_p95)}"),
        ("questions per second", fmt(summary.questions_per_second, 2)),
    ]
    return rows


KIND_COLUMNS = ("kind", "n", "EM", "F1", "answered", "abst. P", "abst. R", "recall@5", "MRR")


def kind_row(kind: str, s: Summary) -> list[str]:
    return [
        kind, str(s.n), fmt(s.em), fmt(s.f1), fmt(s.answered_share),
        fmt(s.abstention_precision), fmt(s.abstention_recall), fmt(s.recall_at_k.get(5)), fmt(s.mrr),
    ]


def threshold_lines(report: EvalReport) -> list[str]:
    lines = []
    if report.current is not None:
        c = report.current
        lines.append(
            f"Threshold in use {c.threshold:.3f}: answers {c.coverage:.0%} of questions "
            f"with precision {fmt(c.precision)} (F1 {c.f1:.3f})."
        )
    if report.tuned is not None:
        t = report.tuned
        goal = f"precision >= {t.target_precision}" if t.target_precision is not None else "best F1"
        note = "" if t.reached else " (target not reachable; highest precision shown)"
        lines.append(
            f"Tuned for {goal}: threshold {t.threshold:.3f} -> F1 {t.f1:.3f}, EM {t.em:.3f}, "
            f"precision {fmt(t.precision)}, answers {t.coverage:.0%}{note}. "
            "Tuned on this same set, so optimistic."
        )
    return lines


def console_report(report: EvalReport, console: Console | None = None, max_misses: int = 40) -> None:
    """Overall metrics, a per-kind breakdown and the misses with their category."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    overall = Table(title=f"Evaluation of {report.dataset} ({report.mode.replace('_', ' ')})", show_header=False)
    overall.add_column("metric", style="bold")
    overall.add_column("value")
    for label, value in overall_rows(report.summary):
        overall.add_row(label, value)
    console.print(overall)

    kinds = Table(title="By kind")
    for column in KIND_COLUMNS:
        if column == "kind":
            kinds.add_column(column, no_wrap=True)
        else:
            kinds.add_column(column, justify="right")
    for kind, summary in report.by_kind.items():
        kinds.add_row(*kind_row(kind, summary))
    console.print(kinds)

    counts = {k: v for k, v in report.categories.items() if v}
    if counts:
        console.print("Misses by category: " + ", ".join(f"[bold]{k}[/] {v}" for k, v in counts.items()))
    if report.diagnoses:
        misses = Table(title=f"Misses ({len(report.diagnoses)})")
        misses.add_column("id", no_wrap=True)
        misses.add_column("category", no_wrap=True, style="bold")
        for column in ("question", "gold", "detail"):
            misses.add_column(column, overflow="fold", ratio=1)
        for d in report.diagnoses[:max_misses]:
            misses.add_row(d.id, d.category, d.question, " | ".join(d.golds) or "(abstain)", d.detail)
        console.print(misses)
        if len(report.diagnoses) > max_misses:
            console.print(f"… and {len(report.diagnoses) - max_misses} more in report.md")
    for line in threshold_lines(report):
        console.print(line)
    if report.out_dir:
        console.print(f"Report written to [bold]{report.out_dir}[/]")


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def markdown_report(report: EvalReport) -> str:
    """The whole report as Markdown: metrics, breakdown, thresholds, figures and every miss."""
    s = report.settings
    lines = [
        f"# Evaluation: {report.dataset}",
        "",
        f"{report.created} · mode {report.mode.replace('_', ' ')} · top_k {s.get('top_k', '–')} · "
        f"threshold {fmt(report.threshold)} · {report.wall_seconds:.1f} s",
        "",
        "## Overall",
        "",
        *_md_table(["metric", "value"], [list(r) for r in overall_rows(report.summary)]),
        "",
        "## By kind",
        "",
        *_md_table(KIND_COLUMNS, [kind_row(k, v) for k, v in report.by_kind.items()]),
        "",
        "## Thresholds",
        "",
        *(threshold_lines(report) or ["No threshold information."]),
        "",
        "![precision vs share answered](precision_coverage.png)",
        "",
        "## Calibration",
        "",
        "Each question contributes its best span's score and whether that span exactly matches a gold "
        "answer (always wrong on unanswerable questions), answered or not.",
        "",
        "![reliability diagram](reliability.png)",
        "",
        "## Misses",
        "",
        *_md_table(["category", "count"], [[k, str(v)] for k, v in report.categories.items()]),
        "",
    ]
    if report.diagnoses:
        lines += _md_table(
            ["id", "kind", "category", "question", "gold", "detail"],
            [[d.id, d.kind, d.category, d.question, " / ".join(d.golds) or "(abstain)", d.detail] for d in report.diagnoses],
        )
    else:
        lines.append("No misses.")
    lines.append("")
    return "\n".join(lines)
