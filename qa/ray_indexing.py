"""Bulk indexing on Ray: read and split documents in Ray tasks, embed in an actor pool.

`qa index CORPUS --ray` plans the sync as usual (hashes, unchanged files, removals) and hands the
added and changed files to a Ray Data pipeline: `flat_map` reads and splits each file into
passage rows (the same `split_file` as the plain path, so the same passage ids), and
`map_batches` embeds them in actors that each load the embedder once. The driver collects the
vectors and writes them to the configured store, which saves once, as in the plain path.

With no `ray_address` a local Ray is started on this machine's cores (no dashboard, a small
object store) and stopped afterwards; with one, the cluster's nodes need this package and the
embedding model installed (`pip install 'qa-offline[scale]'`).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from qa.config import Settings
from qa.indexing import PendingFile, PreparedDocument, split_file
from qa.parsing import DocumentReader, ReadBudget
from qa.store import DocumentRecord, passage_from_row

logger = logging.getLogger(__name__)

#: Passages per embedding call in an actor (the embedder sorts each by length).
EMBED_BATCH = 256
#: Object store of a local Ray: passages and vectors stream through it, so it can stay small.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024 * 1024


def prepare_with_ray(
    pending: list[PendingFile], corpus_dir: Path, settings: Settings
) -> dict[str, PreparedDocument | str]:
    """Each pending file's passages and vectors, computed on Ray, or the reason it was skipped.

    Ray Data shows its own progress bars on a terminal (and logs progress at INFO, which is
    hidden unless QA_LOG_LEVEL=DEBUG).
    """
    try:
        import ray
    except ImportError:
        raise ValueError("QA_INDEXER=ray (qa index --ray) needs Ray: pip install 'qa-offline[scale]'") from None
    started_here = _start_ray(ray, settings)
    try:
        rows = _run_pipeline(ray, pending, corpus_dir, settings)
    finally:
        if started_here:
            ray.shutdown()
    return _collect(pending, rows)


def _start_ray(ray: Any, settings: Settings) -> bool:
    """Connect to `settings.ray_address`, or start a local Ray; True when we started it."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: Ray must not report usage anywhere
    # Ray waits 30 s for its GCS server to bind a port; a fresh install (compiling Ray's modules)
    # on a busy two-core machine needs longer. Ray's documented override, unless the operator set it.
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
    quiet = logging.getLogger("qa").getEffectiveLevel() > logging.DEBUG
    common = {"include_dashboard": False, "log_to_driver": not quiet, "configure_logging": False}
    if settings.ray_address:
        logger.info("indexing on the Ray cluster at %s", settings.ray_address)
        ray.init(address=settings.ray_address, **common)
    else:
        cpus = os.cpu_count() or 1
        logger.info("starting a local Ray on %d CPU(s) to index", cpus)
        for attempt in (1, 2):
            try:
                ray.init(num_cpus=cpus, object_store_memory=LOCAL_OBJECT_STORE_BYTES, **common)
                break
            except Exception as exc:
                # Ray gives its node a fixed time to start; a machine busy with other work can miss it.
                if attempt == 2 or "timed out" not in str(exc).lower():
                    raise
                logger.warning("the local Ray did not start in time (%s); trying once more", exc)
                ray.shutdown()
    return True


def _run_pipeline(ray: Any, pending: list[PendingFile], corpus_dir: Path, settings: Settings) -> list[dict[str, Any]]:
    """Read, split and embed on Ray; every passage row of every file, with its vector."""
    import ray.data

    if logging.getLogger("qa").getEffectiveLevel() > logging.DEBUG:  # Ray Data logs every step at INFO
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    per_actor = min(2, cpus)  # torch threads per embedder: Ray sets them to the actor's CPUs
    items = [{"doc_path": p.doc_path, "path": str(p.path), "digest": p.digest} for p in pending]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), cpus * 4)))
    # Reading and splitting is light next to embedding: its tasks take no CPU slot, so they run
    # beside the embedders instead of waiting for one.
    dataset = dataset.flat_map(_split_rows, fn_kwargs={"corpus_dir": str(corpus_dir), "settings": settings},
                               num_cpus=0)
    dataset = dataset.map_batches(_EmbedPassages, fn_constructor_kwargs={"settings": settings},
                                  batch_size=EMBED_BATCH, batch_format="numpy",
                                  compute=ray.data.ActorPoolStrategy(size=max(1, cpus // per_actor)),
                                  num_cpus=per_actor)
    return dataset.take_all()


@functools.lru_cache(maxsize=1)
def _document_reader(budget: ReadBudget, follow_links: bool) -> DocumentReader:
    """One reader per Ray worker process, kept like a loaded model: its warm worker reads every
    file this process splits (a worker started per file would cost 0.2-0.4 s each)."""
    return DocumentReader(budget, follow_links)


def _split_rows(item: dict[str, Any], corpus_dir: str, settings: Settings) -> list[dict[str, Any]]:
    """One pending file to its passage rows, or to one row with the reason it is skipped."""
    reader = _document_reader(ReadBudget.from_settings(settings), settings.follow_links)
    split = split_file(PendingFile(item["doc_path"], Path(item["path"]), item["digest"]), Path(corpus_dir), settings,
                       reader)
    base = {"doc_path": split.doc_path, "digest": split.digest, "chars": split.chars,
            "skip": split.skip_reason, "count": len(split.passages)}
    if split.skip_reason:
        return [{**base, "id": "", "document": split.doc_path, "start": 0, "end": 0, "page": 0, "text": ""}]
    return [{**base, "id": p.id, "document": p.document, "start": p.start, "end": p.end, "page": p.page or 0,
             "text": p.text} for p in split.passages]


class _EmbedPassages:
    """Ray Data batch mapper: holds the embedder (loaded once per actor) and adds a `vector`."""

    def __init__(self, settings: Settings) -> None:
        from qa.embedding import embedder_for
        from qa.logs import configure_logging

        configure_logging(settings.log_level)
        if settings.threads > 0:  # QA_THREADS wins over Ray's per-actor setting, as in an Engine
            import torch

            torch.set_num_threads(settings.threads)
        self.embedder = embedder_for(settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        usable = [i for i, skip in enumerate(batch["skip"]) if not skip]
        vectors = np.zeros((len(texts), self.embedder.dimension), dtype=np.float32)
        if usable:
            vectors[usable] = self.embedder.encode([texts[i] for i in usable])
        batch["vector"] = vectors
        return batch


def _collect(pending: list[PendingFile], rows: list[dict[str, Any]]) -> dict[str, PreparedDocument | str]:
    """Group the pipeline's rows back into documents, passages in document order."""
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_doc.setdefault(row["doc_path"], []).append(row)
    out: dict[str, PreparedDocument | str] = {}
    for item in pending:
        got = by_doc.get(item.doc_path)
        if not got:
            out[item.doc_path] = "was not returned by the Ray pipeline"
            continue
        if got[0]["skip"]:
            out[item.doc_path] = str(got[0]["skip"])
            continue
        got.sort(key=lambda r: (int(r["start"]), int(r["end"])))
        if len(got) != int(got[0]["count"]):
            out[item.doc_path] = f"lost passages in the Ray pipeline ({len(got)} of {int(got[0]['count'])})"
            continue
        passages = [passage_from_row(r) for r in got]
        vectors = np.vstack([np.asarray(r["vector"], dtype=np.float32) for r in got])
        record = DocumentRecord(str(got[0]["digest"]), len(passages), int(got[0]["chars"]))
        out[item.doc_path] = PreparedDocument(record, passages, vectors)
    return out
