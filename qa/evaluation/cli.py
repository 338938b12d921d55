"""Command line for evaluation: `python -m qa.evaluation [FILE] ...`, also behind `qa eval`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from qa.config import DEFAULT_READER, SHIPPED_READERS

logger = logging.getLogger(__name__)

DEFAULT_SET = Path("eval") / "seed_questions.jsonl"
PROG = "python -m qa.evaluation"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Evaluate answers, abstentions, retrieval, calibration and speed on a question set.",
    )
    parser.add_argument("file", nargs="?", default=str(DEFAULT_SET),
                        help="JSON Lines question set or SQuAD-format .json/.json.gz (default: %(default)s)")
    parser.add_argument("--index-dir", help="index folder (default: settings / QA_INDEX_DIR)")
    parser.add_argument("--corpus-dir", help="corpus folder for JSON Lines sets (default: QA_CORPUS_DIR, else the "
                                             "folder the index records, else seeds)")
    parser.add_argument("--out", help="report folder (default: eval/reports/<timestamp>)")
    parser.add_argument("--reader-only", action="store_true", help="SQuAD files: give the reader the gold context")
    parser.add_argument("--tune-threshold", action="store_true", help="report the threshold that maximises F1 on this set")
    parser.add_argument("--target-precision", type=float, metavar="P",
                        help="tune for the lowest threshold whose answer precision is at least P")
    parser.add_argument("--save-threshold", action="store_true",
                        help="save the tuned threshold beside the index (INDEX_DIR/threshold.json), where it becomes "
                             "the default for that index (implies --tune-threshold)")
    parser.add_argument("--threshold-file", default="", help=argparse.SUPPRESS)
    parser.add_argument("--threshold", type=float, help="abstention threshold to evaluate at (default: the shipped one)")
    parser.add_argument("--top-k", type=int, metavar="K", help="passages handed to the reader")
    parser.add_argument("--reader", choices=tuple(SHIPPED_READERS),
                        help=f"shipped reader to evaluate (default: settings / QA_READER, {DEFAULT_READER})")
    parser.add_argument("--fail-under-f1", type=float, metavar="X", help="exit with status 1 when overall F1 < X")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def eval_command(
    file: str = str(DEFAULT_SET),
    index_dir: str | None = None,
    out: str | None = None,
    reader_only: bool = False,
    tune_threshold: bool = False,
    target_precision: float | None = None,
    save_threshold: bool = False,
    top_k: int | None = None,
    fail_under_f1: float | None = None,
    corpus_dir: str | None = None,
    threshold: float | None = None,
    threshold_file: str = "",
    progress: bool = True,
    reader: str | None = None,
) -> int:
    """Run an evaluation, print it, optionally save a tuned threshold; returns the exit status."""
    from qa.config import Settings
    from qa.evaluation.render import console_report
    from qa.evaluation.runner import run_eval
    from qa.evaluation.threshold_file import write_threshold

    if not Path(file).exists():
        logger.error("%s does not exist", file)
        return 2
    if target_precision is not None and not 0.0 <= target_precision <= 1.0:
        logger.error("--target-precision must be between 0 and 1, got %s", target_precision)
        return 2
    try:
        settings = Settings.load(index_dir=index_dir, corpus_dir=corpus_dir, top_k=top_k, threshold=threshold,
                                 reader=reader)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    tune = tune_threshold or save_threshold or target_precision is not None
    try:
        report = run_eval(file, settings, reader_only=reader_only, out_dir=out, progress=progress,
                          tune=tune, target_precision=target_precision)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    console_report(report)
    if save_threshold and report.tuned is not None:
        from rich.console import Console

        saved = write_threshold(report.tuned, report.dataset, threshold_file or settings.threshold_path,
                                settings.reader_name)
        Console().print(f"Saved threshold {report.tuned.threshold:.4f} to {saved}; "
                        f"use it now with: [bold]export QA_THRESHOLD={report.tuned.threshold:.4f}[/]")
    if fail_under_f1 is not None and (report.summary.f1 or 0.0) < fail_under_f1:
        logger.error("F1 %.3f is below --fail-under-f1 %.3f", report.summary.f1 or 0.0, fail_under_f1)
        return 1
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Parse `argv` (default: sys.argv[1:]) and run; returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    if not logging.getLogger().handlers:
        from qa.config import Settings
        from qa.logs import configure_logging

        configure_logging(Settings.load().log_level)
    return eval_command(
        file=args.file,
        index_dir=args.index_dir,
        out=args.out,
        reader_only=args.reader_only,
        tune_threshold=args.tune_threshold,
        target_precision=args.target_precision,
        save_threshold=args.save_threshold,
        top_k=args.top_k,
        fail_under_f1=args.fail_under_f1,
        corpus_dir=args.corpus_dir,
        threshold=args.threshold,
        threshold_file=args.threshold_file,
        progress=not args.no_progress,
        reader=args.reader,
    )
