"""The public entry points: `answer()`, `read()`, `build_index()`, over one cached `Engine`.

An Engine owns the loaded models and index for one configuration. It is thread-safe: many
web sessions share one, reads run concurrently and index updates take a lock.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qa import accel, models
from qa.config import DEFAULT_CORPUS_DIR, SHIPPED_READERS, Settings
from qa.folders import ASSUMED, MOVED, UPLOADS, CorpusFolder, absolute, carry_uploads, choose_folder, folder_problem
from qa.index_status import IndexStatus, status_of, upload_prefix
from qa.indexing import IndexReport, Prepare, profile_for, serve_as_is, sync_corpus
from qa.sentences import split_sentences
from qa.store import IndexError_, StoreUnavailableError
from qa.followups import resolve_followup
from qa.types import Answer, Hit, Turn
from qa.vector_store import load_vector_store, open_vector_store

if TYPE_CHECKING:
    from qa.reader import SpanResult

logger = logging.getLogger(__name__)

#: Lone UTF-16 surrogates (a JSON "\ud800" escape, bad decoding) cannot be encoded to UTF-8,
#: so the tokenizer would fail on them with a TypeError.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Characters a question is cleaned of: controls, format marks, line/paragraph separators, surrogates.
_NOT_TEXT = ("Cc", "Cf", "Zl", "Zp", "Cs")


@dataclass(frozen=True)
class DocumentInfo:
    """An indexed document as listed to a person."""

    path: str
    passages: int
    chars: int
    uploaded: bool
    #: Why the file is not in the index ("" for an indexed document): the chat lists it with this.
    skipped: str = ""


@functools.lru_cache(maxsize=4)
def _embedder(name: str, batch_size: int, backend: str = "torch", quantize: str = "none", cache_dir: str = "",
              precision: str = "auto"):
    from qa.embedding import Embedder

    return Embedder(name, batch_size=batch_size, backend=backend, quantize=quantize, cache_dir=cache_dir,
                    precision=precision)


@functools.lru_cache(maxsize=4)
def _reader(name: str, window_tokens: int, stride: int, max_answer_tokens: int, batch_size: int,
            backend: str = "torch", quantize: str = "none", cache_dir: str = "", precision: str = "auto",
            shipped: str = ""):
    from qa.reader import Reader

    return Reader(name, window_tokens, stride, max_answer_tokens, batch_size, backend, quantize, cache_dir, precision,
                  shipped)


def validate_question(question: str, max_chars: int) -> str:
    """Return the question cleaned of control characters, or raise ValueError saying what to fix."""
    if not isinstance(question, str):
        raise ValueError(f"the question must be text, not {type(question).__name__}")
    cleaned = "".join(" " if unicodedata.category(ch) in _NOT_TEXT else ch for ch in question)
    cleaned = " ".join(cleaned.split())
    if not cleaned:
        raise ValueError("the question is empty: type a question about your documents")
    if len(question) > max_chars:
        raise ValueError(f"the question is {len(question):,} characters long; the limit is {max_chars:,}: shorten it")
    return cleaned


def sentence_around(text: str, start: int, end: int) -> tuple[int, int]:
    """Span of the sentence(s) of `text` that contain [start, end)."""
    spans = split_sentences(text)
    first = next((s for s in spans if s[0] <= start < s[1]), None)
    last = next((s for s in spans if s[0] < end <= s[1]), None)
    if first is None or last is None:
        return start, end
    return first[0], max(last[1], end)


class Engine:
    """Models plus one index, loaded lazily once and shared by every caller."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        if self.settings.threads > 0:
            import torch

            torch.set_num_threads(self.settings.threads)
        self._lock = threading.RLock()
        self._store = None
        self._retriever = None
        self._synced = False
        #: The documents folder the index follows, chosen when it is opened (`qa.folders`).
        self._folder: CorpusFolder | None = None
        #: Set by stop(): the process is shutting down, so indexing gives up at its next safe point.
        self._stopping = threading.Event()
        #: Reads files for this engine's syncs in worker processes, under the reading budget.
        self._document_reader = None
        #: The files the last sync left out, with the reasons (`IndexReport.skipped`).
        self._skipped: list[tuple[str, str]] = []
        #: Why the last sync left the index as it is (its folder missing or empty), or "".
        self._kept_as_is = ""

    # -- models ------------------------------------------------------------------------------
    @property
    def embedder(self):
        s = self.settings
        with models.MODEL_LOADING:
            return _embedder(s.embedding_model, s.batch_size, s.backend, s.quantize, s.model_cache_dir,
                             accel.resolve_precision(s.precision, s.backend, s.quantize))

    @property
    def reader(self):
        s = self.settings
        with models.MODEL_LOADING:
            return _reader(s.reader_model, s.window_tokens, s.window_stride, s.max_answer_tokens, s.batch_size,
                           s.backend, s.quantize, s.model_cache_dir,
                           accel.resolve_precision(s.precision, s.backend, s.quantize),
                           "" if s.reader_model else s.reader)

    def reader_for(self, shipped: str | None = None):
        """The configured reader, or the shipped reader `shipped` names ("accurate" or "fast"):
        the chat lets people switch per question, over the same index."""
        s = self.settings
        if shipped is None or (shipped == s.reader and not s.reader_model):
            return self.reader
        if shipped not in SHIPPED_READERS:
            raise ValueError(f"{shipped!r} is not a shipped reader: use {' or '.join(SHIPPED_READERS)}")
        with models.MODEL_LOADING:
            return _reader("", s.window_tokens, s.window_stride, s.max_answer_tokens, s.batch_size, s.backend,
                           s.quantize, s.model_cache_dir, accel.resolve_precision(s.precision, s.backend, s.quantize),
                           shipped)

    def screener_for(self, shipped: str | None = None, passages: int = 2):
        """The reader that skims `passages` passages for the answering one (`reader_for(shipped)`),
        or None when `screen_with` is "none", names that same reader, or there is no choice to make
        (one passage or none)."""
        s = self.settings
        answering = shipped or ("" if s.reader_model else s.reader)
        if s.screen_with == "none" or s.screen_with == answering or passages < 2:
            return None
        return self.reader_for(s.screen_with)

    def load_models(self) -> None:
        """Load the embedder, then the reader and its screener: the one order every entry point uses
        at start-up (the readers are skipped when the process is stopping: they only delay the exit)."""
        self.embedder.load()
        if not self._stopping.is_set():
            self.reader
            self.screener_for()

    @property
    def default_threshold(self) -> float:
        return self.threshold_for()

    def threshold_for(self, shipped: str | None = None) -> float:
        """QA_THRESHOLD, else the threshold tuned beside the index (for the configured reader),
        else the reader's own calibrated one."""
        if self.settings.threshold >= 0:
            return self.settings.threshold
        reader = self.reader_for(shipped)
        saved = self.settings.saved_threshold() if reader is self.reader else None
        return saved if saved is not None else reader.calibration.threshold

    # -- index -------------------------------------------------------------------------------
    @property
    def store(self):
        """The index being served; built or updated on first use. Only that first use takes the
        lock: an update (an upload being embedded) must not make every question wait for it."""
        if not self._synced:
            with self._lock:
                if not self._synced:
                    self.ensure_index(progress=False)
        return self._store

    def ensure_index(self, progress: bool = True) -> IndexReport:
        """Build the index from its documents folder, or update it for added, changed and removed
        files: the folder given, else the one the index records, else seeds/ (`qa.folders`)."""
        with self._lock:
            store, reason = open_vector_store(self.settings, profile_for(self.settings, self.embedder))
            folder = choose_folder(self.settings, store)
            if folder.path is None:
                report = serve_as_is(store, IndexReport(), (
                    f"the index in {self.settings.index_dir} records no documents folder (it was built before "
                    f"indexes recorded theirs) and holds none of {absolute(DEFAULT_CORPUS_DIR)}; `qa index FOLDER "
                    f"--index-dir {self.settings.index_dir}` makes it follow FOLDER"))
            else:
                if folder.how == ASSUMED and self._folder is None:
                    logger.info("the index in %s records no documents folder (it was built before indexes recorded "
                                "theirs): assuming %s, which it holds documents of", self.settings.index_dir,
                                folder.path)
                if folder.how == MOVED:
                    logger.warning("the documents folder %s is gone; the index in %s follows %s, which lies where it "
                                   "did beside the index (a moved project)", folder.recorded, self.settings.index_dir,
                                   folder.path)
                if folder.switching and not self.settings.upload_dir:
                    carry_uploads(folder.recorded, folder.path)
                report = sync_corpus(store, folder.path, self.embedder, self.settings, progress, reason,
                                     prepare=self._preparer(), stop=self._stopping,
                                     previous_dir=folder.recorded if folder.switching else None, own_folder=folder.own,
                                     reader=self._reader_of_files())
            self._folder = folder
            self._install(store)
            self._synced = True
            self._skipped = list(report.skipped)
            self._kept_as_is = report.kept_as_is
            return report

    @property
    def corpus_folder(self) -> Path | None:
        """The documents folder the index follows (absolute), or None when it follows none."""
        if self.settings.corpus_dir:  # given: the index follows it once opened
            return absolute(self.settings.corpus_dir)
        self.store  # noqa: B018 - else the folder is chosen when the index is first opened
        return self._folder.path if self._folder is not None else None

    def _reader_of_files(self):
        """The engine's `DocumentReader` (one warm worker process, reused by every sync)."""
        if self._document_reader is None:
            from qa.parsing import DocumentReader

            self._document_reader = DocumentReader.from_settings(self.settings)
        return self._document_reader

    def _preparer(self) -> Prepare | None:
        """How a sync reads, splits and embeds documents: on Ray for QA_INDEXER=ray, else in this
        process (None: sync_corpus's own way, with this engine's embedder)."""
        if self.settings.indexer != "ray":
            return None
        from qa.ray_indexing import prepare_with_ray

        return functools.partial(prepare_with_ray, settings=self.settings)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop indexing for good, because the process is shutting down: a sync still reading or
        embedding gives up (the index stays as last saved), one writing finishes. Returns True
        once no sync is running, False if one still runs after `timeout` seconds."""
        self._stopping.set()
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            if self._document_reader is not None:
                self._document_reader.close()
        finally:
            self._lock.release()
        return True

    def _install(self, store, version=None) -> None:
        """Serve `store`; `version` is that of the saved index it was read from (default: as saved now)."""
        from qa.retrieval import HybridRetriever

        self._retriever = HybridRetriever(store, self.embedder)
        self._store = store
        self._store_version = store.disk_version() if version is None else version

    def _refresh_if_changed(self) -> None:
        """Pick up an index another process (`qa index`, another server) saved since we loaded ours.

        If the new index cannot be read (or was built with other settings), keep answering from
        the one we have: an empty store would silently answer nothing until the next change.
        """
        try:
            version = self._store.disk_version()
        except StoreUnavailableError as exc:
            logger.warning("keeping the loaded index; cannot check for a newer one: %s", exc)
            return
        if version is not None and version != self._store_version:
            with self._lock:
                if version != self._store_version:
                    logger.info("index changed on disk; reloading")
                    try:
                        store = load_vector_store(self.settings, profile_for(self.settings, self.embedder))
                    except (IndexError_, StoreUnavailableError, OSError) as exc:
                        logger.warning("keeping the loaded index; the one on disk cannot be used: %s", exc)
                        self._store_version = version  # do not retry on every question
                        return
                    if not self.settings.corpus_dir and store.corpus_dir:  # another writer moved it to a folder
                        self._folder = choose_folder(self.settings, store)
                    self._install(store, version)

    def add_file(self, path: str | Path) -> IndexReport:
        """Index (or re-index) the corpus after a file was saved into it."""
        return self.ensure_index(progress=False)

    def remove_file(self, doc_path: str) -> IndexReport:
        """Delete an uploaded document from disk and from the index."""
        with self._lock:
            uploads = self.upload_folder().resolve()
            folder = self.corpus_folder
            path = (folder.parent if folder is not None else uploads.parent) / doc_path
            if uploads not in path.resolve().parents:
                raise ValueError(f"{doc_path} is not an uploaded document; only uploads can be removed here")
            path.unlink(missing_ok=True)
            return self.ensure_index(progress=False)

    def upload_folder(self) -> Path:
        """Where the chat saves uploads: QA_UPLOAD_DIR, else uploads/ in the index's documents
        folder. UploadError while that folder is missing or unreadable: creating it anew would
        leave the index following a folder of uploads alone."""
        from qa.uploads import UploadError

        if self.settings.upload_dir:
            return Path(self.settings.upload_dir)
        folder = self.corpus_folder
        if folder is None:
            raise UploadError(f"the index in {self.settings.index_dir} follows no documents folder, so uploads have "
                              f"nowhere to go: index a folder into it first (qa index FOLDER --index-dir "
                              f"{self.settings.index_dir})")
        problem = folder_problem(folder)
        if not problem and self._kept_as_is:  # an empty mount point: an upload alone would replace the rest
            problem = self.ensure_index(progress=False).kept_as_is  # unless the documents are back
        if problem:
            why = problem if problem.startswith("the documents folder") else f"the documents folder {folder} {problem}"
            raise UploadError(f"{why}, and uploads are saved in it: try again once it is back")
        return folder / UPLOADS

    def documents(self) -> list[DocumentInfo]:
        store = self.store
        prefix = upload_prefix(self.settings, self.corpus_folder)
        return [DocumentInfo(path, rec.passages, rec.chars, bool(prefix) and path.startswith(prefix))
                for path, rec in sorted(store.documents.items())]

    def skipped_documents(self) -> list[DocumentInfo]:
        """The files the last sync left out, each with the reason (uploads among them can be removed)."""
        self.store  # noqa: B018 - the first sync decides what is skipped
        prefix = upload_prefix(self.settings, self.corpus_folder)
        return [DocumentInfo(path, 0, 0, bool(prefix) and path.startswith(prefix), reason)
                for path, reason in sorted(self._skipped)]

    def status(self) -> IndexStatus:
        """The index served, in the one line `qa index --status` prints: folder, documents and
        passages, embedder, store and reader."""
        store = self.store
        return status_of(self.settings, self.corpus_folder, store.documents, len(store),
                         store.profile.embedding_model, store.profile.index_type)

    # -- questions ---------------------------------------------------------------------------
    def retrieve(self, query: str, k: int) -> list[Hit]:
        store = self.store
        self._refresh_if_changed()
        retriever = self._retriever
        return retriever.retrieve(query, k, max(k, self.settings.retrieve_k)) if len(store) else []

    def answer(
        self,
        question: str,
        top_k: int | None = None,
        threshold: float | None = None,
        history: list[str | Turn | Answer] | None = None,
        reader: str | None = None,
    ) -> Answer:
        """Retrieve passages, read them, answer or abstain.

        `history` holds the conversation so far (earlier questions, or turns / answers with what
        they answered): retrieval sees the last two questions too, and the reader gets the
        question with a follow-up's pronoun resolved ("he" -> the person answered before).
        `reader` picks a shipped reader ("accurate" or "fast") for this question only.
        """
        started = time.perf_counter()
        question = validate_question(question, self.settings.max_question_chars)
        top_k = top_k or self.settings.top_k
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        turns = [Turn(validate_question(t.question, self.settings.max_question_chars), t.answer)
                 for t in map(Turn.of, history or []) if t.question.strip()]
        read_as = resolve_followup(question, turns)
        query = " ".join([t.question for t in turns[-2:]] + [read_as])
        hits = self.retrieve(query, top_k)
        retrieved = time.perf_counter()
        # once: the default may be read from the index folder
        threshold = self.threshold_for(reader) if threshold is None or threshold < 0 else threshold
        spans, passages_read = self._read_adaptively(self.reader_for(reader), self.screener_for(reader, len(hits)),
                                                     read_as, [h.passage.text for h in hits], threshold)
        read_done = time.perf_counter()
        candidates: list[Answer] = []
        seen: set[tuple[str, int, int]] = set()
        for span in spans:
            passage = hits[span.text_index].passage
            key = (passage.document, passage.start + span.start, passage.start + span.end)
            if key in seen:
                continue
            seen.add(key)
            s_start, s_end = sentence_around(passage.text, span.start, span.end)
            candidates.append(
                Answer(
                    text=passage.text[span.start : span.end],
                    score=span.probability,
                    source=passage.document,
                    start=key[1],
                    end=key[2],
                    context=passage.text[s_start:s_end],
                    context_start=passage.start + s_start,
                    page=passage.page,
                    passage_id=passage.id,
                    question=question,
                )
            )
        result = self._decide(question, candidates, threshold)
        result.read_as = read_as if read_as != question else ""
        result.hits = hits
        result.passages_read = passages_read
        result.timings = {
            "retrieve": retrieved - started,
            "read": read_done - retrieved,
            "total": time.perf_counter() - started,
        }
        return result

    def _read_adaptively(self, reader, screener, question: str, texts: list[str],
                         threshold: float) -> tuple[list[SpanResult], list[int]]:
        """Best spans of the passages, reading the most promising first and the rest only when unsure.

        With a screener, it skims every passage and the reader reads the one it likes best, plus
        retrieval's first when the answer there is unsure. Without one, the reader reads the
        best-ranked `read_first` (the right passage is usually first or second). Unsure means
        below `read_more_below` or the threshold. Either way it abstains only after reading every
        passage: on 900 held-out `answer()`-like questions, reading the rest before abstaining
        turned 15 answers better and 2 worse (mean F1 +0.007, paired standard error 0.003).
        Returns the spans, best first, and the indices of the passages the reader read, in order.
        """
        bar = max(self.settings.read_more_below, threshold)
        everything = list(range(len(texts)))
        if screener is not None:
            skimmed = screener.read(question, texts)
            pick = skimmed[0].text_index if skimmed else 0
            stages = [([pick], bar), ([0], threshold), (everything, math.inf)]
        else:
            first = self.settings.read_first if self.settings.read_first > 0 else len(texts)
            stages = [(everything[:first], bar), (everything, math.inf)]
        spans: list[SpanResult] = []
        read: list[int] = []
        for indices, enough in stages:
            unread = [i for i in indices if i not in read]
            if unread:
                more = reader.read(question, [texts[i] for i in unread])
                spans = sorted(spans + [dataclasses.replace(s, text_index=unread[s.text_index]) for s in more],
                               key=lambda s: -s.margin)
                read += unread
            if spans and spans[0].probability >= enough:
                break
        return spans, read

    def read(self, question: str, context: str, threshold: float | None = None, reader: str | None = None) -> Answer:
        """The reader alone on one text of any length; offsets index `context`. `reader` as in `answer`."""
        question = validate_question(question, self.settings.max_question_chars)
        if not isinstance(context, str):
            raise ValueError("the context must be text")
        context = _SURROGATE.sub("\ufffd", context)  # one character for one: offsets still hold
        started = time.perf_counter()
        threshold = self.threshold_for(reader) if threshold is None or threshold < 0 else threshold
        candidates = []
        for span in self.reader_for(reader).read(question, [context]):
            s_start, s_end = sentence_around(context, span.start, span.end)
            candidates.append(Answer(context[span.start : span.end], span.probability, None, span.start, span.end,
                                     context[s_start:s_end], s_start, question=question))
        result = self._decide(question, candidates, threshold)
        result.timings = {"read": time.perf_counter() - started, "total": time.perf_counter() - started}
        return result

    def _threshold(self, threshold: float | None) -> float:
        """The threshold asked for, or the default when none (or a negative one) is given."""
        return self.default_threshold if threshold is None or threshold < 0 else threshold

    def _decide(self, question: str, candidates: list[Answer], threshold: float | None) -> Answer:
        threshold = self._threshold(threshold)
        if candidates and candidates[0].score >= threshold:
            best = candidates[0]
            best.alternatives = candidates[1:4]
            return best
        # Abstain, but keep the suppressed best span so people and evaluations can see it.
        score = candidates[0].score if candidates else 0.0
        return Answer(text="", score=score, question=question, alternatives=candidates[:4])


@functools.lru_cache(maxsize=8)
def get_engine(settings: Settings | None = None) -> Engine:
    """One engine per configuration per process, so models and index load once."""
    return Engine(settings or Settings.load())


def _absolute_or_none(folder: str | Path | None) -> str | None:
    """A folder argument as an absolute path: relative ones mean the working directory of the call,
    and the engine cache must not hand a later call in another directory this one's engine."""
    return str(absolute(folder)) if folder is not None else None


def answer(
    question: str,
    *,
    index_dir: str | Path | None = None,
    corpus_dir: str | Path | None = None,
    top_k: int | None = None,
    threshold: float | None = None,
    history: list[str | Turn | Answer] | None = None,
    reader: str | None = None,
) -> Answer:
    """Answer from the indexed documents (building or updating the index on first use), or abstain.
    `reader` ("accurate" or "fast") overrides QA_READER for this question."""
    settings = Settings.load(
        index_dir=_absolute_or_none(index_dir),
        corpus_dir=_absolute_or_none(corpus_dir),
    )
    return get_engine(settings).answer(question, top_k=top_k, threshold=threshold, history=history, reader=reader)


def read(question: str, context: str, *, threshold: float | None = None, reader: str | None = None) -> Answer:
    """Run the reader alone on `context` (any length); offsets in the result index `context`."""
    return get_engine(Settings.load()).read(question, context, threshold=threshold, reader=reader)


def build_index(
    corpus_dir: str | Path | None = None,
    index_dir: str | Path | None = None,
    *,
    progress: bool = True,
    **overrides,
) -> IndexReport:
    """Index (or update) every supported file under `corpus_dir` into `index_dir`."""
    settings = Settings.load(
        corpus_dir=_absolute_or_none(corpus_dir),
        index_dir=_absolute_or_none(index_dir),
        **overrides,
    )
    return get_engine(settings).ensure_index(progress=progress)
