"""The `qa` command: index, ask, serve, eval, and the reader's training tools.

Every option mirrors a `Settings` field and its `QA_*` environment variable; flags win.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from qa.config import DEFAULT_READER, Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

CorpusOpt = typer.Option(None, "--corpus-dir", help="documents folder [env QA_CORPUS_DIR; default: the folder the "
                                                     "index records, else seeds]")
IndexOpt = typer.Option(None, "--index-dir", help="index folder [env QA_INDEX_DIR, default index]")
EmbedOpt = typer.Option(None, "--embedding-model", help="sentence-transformers name or path [env QA_EMBEDDING_MODEL]")
ReaderOpt = typer.Option(None, "--reader-model", help="Hugging Face QA model id or path [env QA_READER_MODEL]")
ReaderChoiceOpt = typer.Option(None, "--reader",
                               help=f"shipped reader: accurate (MPNet) or fast (MiniLM) [env QA_READER, default {DEFAULT_READER}]")
TopKOpt = typer.Option(None, "--top-k", min=1, help="passages read per question [env QA_TOP_K, default 5]")
ThresholdOpt = typer.Option(None, "--threshold", min=0.0, max=1.0, help="abstain below this confidence [env QA_THRESHOLD]")
IndexTypeOpt = typer.Option(None, "--index-type", help="flat (exact) or hnsw (approximate) [env QA_INDEX_TYPE]")
PrecisionOpt = typer.Option(None, "--precision", help="auto (bf16 where the CPU has it), fp32 or bf16 [env QA_PRECISION]")
ReadFirstOpt = typer.Option(None, "--read-first", min=0,
                            help="passages read before deciding to read the rest; 0 reads all [env QA_READ_FIRST, default 2]")
ReadMoreBelowOpt = typer.Option(None, "--read-more-below", min=0.0, max=1.0,
                                help="read the rest when the first passages' best answer scores below this "
                                     "[env QA_READ_MORE_BELOW, default 0.5]")
ScreenWithOpt = typer.Option(None, "--screen-with",
                             help="shipped reader that skims every passage so the answering one reads the best "
                                  "(fast or none) [env QA_SCREEN_WITH, default fast]")
VectorStoreOpt = typer.Option(None, "--vector-store", help="faiss (files in the index folder) or milvus [env QA_VECTOR_STORE]")
MilvusUriOpt = typer.Option(None, "--milvus-uri",
                            help="Milvus Lite file (path ending in .db) or server (http://host:19530) [env QA_MILVUS_URI]")
MilvusCollectionOpt = typer.Option(None, "--milvus-collection",
                                   help="Milvus collection name [env QA_MILVUS_COLLECTION, default qa_passages]")
# The reading budget of one file (qa.parsing); a file over it is skipped with the reason.
ParseSecondsOpt = typer.Option(None, "--parse-seconds", min=0.001,
                               help="seconds reading one file may take [env QA_PARSE_SECONDS, default 10]")
ParsePageSecondsOpt = typer.Option(None, "--parse-page-seconds", min=0.0,
                                   help="more seconds a PDF earns for each page read [env QA_PARSE_PAGE_SECONDS, "
                                        "default 0.5]")
ParseMaxSecondsOpt = typer.Option(None, "--parse-max-seconds", min=0.001,
                                  help="the most seconds any file may take [env QA_PARSE_MAX_SECONDS, default 300]")
MaxDocumentCharsOpt = typer.Option(None, "--max-document-chars", min=1,
                                   help="characters of text one file may yield [env QA_MAX_DOCUMENT_CHARS, "
                                        "default 2000000]")
ParseMemoryOpt = typer.Option(None, "--parse-memory-mb", min=0,
                              help="memory (MB) of the process reading a file; 0 no limit [env QA_PARSE_MEMORY_MB, "
                                   "default 2048]")
FollowLinksOpt = typer.Option(None, "--follow-links/--no-follow-links",
                              help="follow links to files and folders outside the documents folder (skipped by "
                                   "default) [env QA_FOLLOW_LINKS]")


def _setup(**overrides) -> Settings:
    from qa.logs import configure_logging
    from qa.vector_store import check_settings

    try:
        settings = Settings.load(**overrides)
        configure_logging(settings.log_level)
        check_settings(settings)
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    return settings


@app.command()
def index(
    corpus: Optional[Path] = typer.Argument(
        None, help="documents folder (default: QA_CORPUS_DIR, else the folder the index records, else seeds); "
                   "another folder than the recorded one becomes the index's folder"),
    index_dir: Optional[str] = IndexOpt,
    embedding_model: Optional[str] = EmbedOpt,
    index_type: Optional[str] = IndexTypeOpt,
    vector_store: Optional[str] = VectorStoreOpt,
    milvus_uri: Optional[str] = MilvusUriOpt,
    milvus_collection: Optional[str] = MilvusCollectionOpt,
    ray: bool = typer.Option(False, "--ray", help="read, split and embed on Ray (local unless --ray-address) [env QA_INDEXER=ray]"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to index on (implies --ray) [env QA_RAY_ADDRESS]"),
    status: bool = typer.Option(False, "--status", help="only say what the index holds: its folder, documents and "
                                                        "passages, embedder, store and reader (changes nothing)"),
    parse_seconds: Optional[float] = ParseSecondsOpt,
    parse_page_seconds: Optional[float] = ParsePageSecondsOpt,
    parse_max_seconds: Optional[float] = ParseMaxSecondsOpt,
    max_document_chars: Optional[int] = MaxDocumentCharsOpt,
    parse_memory_mb: Optional[int] = ParseMemoryOpt,
    follow_links: Optional[bool] = FollowLinksOpt,
) -> None:
    """Build the index for a folder, or update it for added, changed and removed files."""
    from qa.documents import SUPPORTED_SUFFIXES, UNSUPPORTED
    from qa.pipeline import Engine

    settings = _setup(corpus_dir=str(corpus) if corpus else None, index_dir=index_dir,
                      embedding_model=embedding_model, index_type=index_type, vector_store=vector_store,
                      milvus_uri=milvus_uri, milvus_collection=milvus_collection,
                      indexer="ray" if ray or ray_address else None, ray_address=ray_address,
                      parse_seconds=parse_seconds, parse_page_seconds=parse_page_seconds,
                      parse_max_seconds=parse_max_seconds, max_document_chars=max_document_chars,
                      parse_memory_mb=parse_memory_mb, follow_links=follow_links)
    if status:
        raise typer.Exit(_print_status(settings))
    try:
        report = Engine(settings).ensure_index(progress=True)
    except ValueError as exc:  # an empty corpus, an unusable vector store or Ray setting
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    source = f"kept as it is: {report.kept_as_is}" if report.kept_as_is else f"from {report.folder}"
    typer.echo(
        f"{settings.index_dir}: {report.counts} "
        f"({len(report.added)} added, {len(report.changed)} changed, {len(report.removed)} removed, "
        f"{len(report.unchanged)} unchanged, {len(report.skipped)} skipped) in {report.seconds:.1f}s, {source}"
    )
    for path, reason in report.skipped:
        typer.secho(f"skipped {path}: {reason}", fg="yellow", err=True)
    if any(reason.startswith(UNSUPPORTED) for _, reason in report.skipped):
        typer.secho(f"supported types: {' '.join(sorted(SUPPORTED_SUFFIXES))}", fg="yellow", err=True)


def _print_status(settings: Settings) -> int:
    """`qa index --status`: one line, read without loading a model; 1 when there is no index."""
    from qa.folders import absolute, same_folder
    from qa.index_status import read_status
    from qa.store import IndexError_

    try:
        status = read_status(settings)
    except (ValueError, IndexError_) as exc:  # an unreachable Milvus, an unreadable manifest
        typer.secho(f"error: {exc}", fg="red", err=True)
        return 2
    if status is None:
        typer.echo(f"{settings.index_dir}: no index here yet; `qa index FOLDER --index-dir {settings.index_dir}` "
                   "builds one")
        return 1
    typer.echo(f"{settings.index_dir}: {status.line()}")
    if settings.corpus_dir and status.folder and not same_folder(absolute(settings.corpus_dir), Path(status.folder)):
        typer.echo(f"note: indexing {settings.corpus_dir} into it would make it follow {absolute(settings.corpus_dir)} "
                   f"instead: the documents of {status.folder} would leave it")
    return 0


@app.command()
def ask(
    question: str = typer.Argument(..., help="a question in plain English"),
    as_json: bool = typer.Option(False, "--json", help="print the full result as JSON"),
    corpus_dir: Optional[str] = CorpusOpt,
    index_dir: Optional[str] = IndexOpt,
    top_k: Optional[int] = TopKOpt,
    threshold: Optional[float] = ThresholdOpt,
    reader: Optional[str] = ReaderChoiceOpt,
    reader_model: Optional[str] = ReaderOpt,
    embedding_model: Optional[str] = EmbedOpt,
    vector_store: Optional[str] = VectorStoreOpt,
    milvus_uri: Optional[str] = MilvusUriOpt,
    milvus_collection: Optional[str] = MilvusCollectionOpt,
    precision: Optional[str] = PrecisionOpt,
    read_first: Optional[int] = ReadFirstOpt,
    read_more_below: Optional[float] = ReadMoreBelowOpt,
    screen_with: Optional[str] = ScreenWithOpt,
) -> None:
    """Answer a question from the indexed documents (builds the index on first use)."""
    from qa.formats import page_label
    from qa.guesses import shown_guess
    from qa.models import ModelNotAvailableError
    from qa.pipeline import Engine
    from qa.reader import ReaderFilesError

    settings = _setup(corpus_dir=corpus_dir, index_dir=index_dir, reader=reader, reader_model=reader_model,
                      embedding_model=embedding_model, vector_store=vector_store, milvus_uri=milvus_uri,
                      milvus_collection=milvus_collection, precision=precision, read_first=read_first,
                      read_more_below=read_more_below, screen_with=screen_with, log_level=None)
    try:
        result = Engine(settings).answer(question, top_k=top_k, threshold=threshold)
    except (ValueError, ModelNotAvailableError, ReaderFilesError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    if as_json:
        data = result.to_dict()
        data["hits"] = [{"rank": h["rank"], "score": h["score"], "document": h["passage"]["document"],
                         "start": h["passage"]["start"], "end": h["passage"]["end"]} for h in data["hits"]]
        guess = shown_guess(result)
        data["guess"] = None if guess is None else {k: data["alternatives"][0][k] for k in (
            "text", "score", "source", "start", "end", "context", "page")}
        typer.echo(json.dumps(data, ensure_ascii=False, indent=1))
    elif result.abstained:
        typer.echo(f"I couldn't find that in the documents (best guess scored {result.score:.0%}).")
        guess = shown_guess(result)
        if guess is not None:
            where = page_label(guess.source, guess.page)
            typer.echo(f"Best guess: “{guess.text}” — {guess.source}{f', {where}' if where else ''} "
                       f"(below the confidence threshold, {guess.score:.0%})")
    else:
        where = page_label(result.source, result.page)
        page = f", {where}" if where else ""
        typer.echo(f"{result.text}\n  confidence {result.score:.0%} — {result.source}{page} "
                   f"[{result.start}:{result.end}]\n  “{result.context}”")


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="address to bind [env QA_HOST, default 127.0.0.1]"),
    port: Optional[int] = typer.Option(None, help="port [env QA_PORT, default 7860]"),
    corpus_dir: Optional[str] = CorpusOpt,
    index_dir: Optional[str] = IndexOpt,
    vector_store: Optional[str] = VectorStoreOpt,
    milvus_uri: Optional[str] = MilvusUriOpt,
    milvus_collection: Optional[str] = MilvusCollectionOpt,
    precision: Optional[str] = PrecisionOpt,
    read_first: Optional[int] = ReadFirstOpt,
    read_more_below: Optional[float] = ReadMoreBelowOpt,
    screen_with: Optional[str] = ScreenWithOpt,
    reader: Optional[str] = ReaderChoiceOpt,
    parse_seconds: Optional[float] = ParseSecondsOpt,
    parse_page_seconds: Optional[float] = ParsePageSecondsOpt,
    parse_max_seconds: Optional[float] = ParseMaxSecondsOpt,
    max_document_chars: Optional[int] = MaxDocumentCharsOpt,
    parse_memory_mb: Optional[int] = ParseMemoryOpt,
    follow_links: Optional[bool] = FollowLinksOpt,
) -> None:
    """Start the web chat (until SIGTERM or Ctrl-C; a busy port or unusable folder is one error line)."""
    from qa.web import run as run_web

    raise typer.Exit(run_web(_setup(host=host, port=port, corpus_dir=corpus_dir, index_dir=index_dir, reader=reader,
                     vector_store=vector_store,
                     milvus_uri=milvus_uri, milvus_collection=milvus_collection, precision=precision,
                     read_first=read_first, read_more_below=read_more_below, screen_with=screen_with,
                     parse_seconds=parse_seconds, parse_page_seconds=parse_page_seconds,
                     parse_max_seconds=parse_max_seconds, max_document_chars=max_document_chars,
                     parse_memory_mb=parse_memory_mb, follow_links=follow_links)))


def _hand_over(name: str, module: str, summary: str) -> None:
    """Register `qa NAME`, which hands every argument, `--help` included, to `module.main`.

    These tools keep their own argparse parsers (they also run as `python -m ...`), so typer
    must not answer `--help` itself: it would list no options at all.
    """

    def command(ctx: typer.Context) -> None:
        import importlib

        status = importlib.import_module(module).main(list(ctx.args), prog=f"qa {name}")
        raise typer.Exit(status or 0)

    command.__doc__ = summary
    app.command(name=name, add_help_option=False,
                context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(command)


_hand_over("eval", "qa.evaluation.cli", "Run a question set end to end and explain every miss (see `qa eval --help`).")
_hand_over("train-reader", "qa.training.train",
           "Fine-tune the extractive reader (hours on a CPU; see `qa train-reader --help`).")
_hand_over("teacher-targets", "qa.training.teacher",
           "Record a reader's start/end logits over every training window, for distilling the fast reader.")
_hand_over("export-reader", "qa.training.export", "Write a trained reader's delta weights into the package.")
_hand_over("average-readers", "qa.training.average",
           "Average the weights of trained readers of one architecture (a model soup).")
_hand_over("calibrate-reader", "qa.training.calibrate",
           "Fit score calibration and the abstention threshold on held-out questions.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
