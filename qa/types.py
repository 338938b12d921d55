"""The records that flow through the pipeline: Document -> Passage -> Hit -> Answer."""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """A loaded file. `path` is relative to the corpus folder's parent, e.g. "seeds/article.txt".

    `page_starts` holds the character offset where each page begins: a PDF's pages, a deck's
    slides, a workbook's sheets, an e-book's chapters, a mail's message and attachments (empty
    for formats without pages; `qa.formats.page_label` names them).
    """

    path: str
    text: str
    content_hash: str
    page_starts: tuple[int, ...] = ()

    def page_at(self, offset: int) -> int | None:
        """1-based page number of a character offset, or None for documents without pages."""
        if not self.page_starts:
            return None
        return bisect.bisect_right(self.page_starts, offset)


@dataclass(frozen=True)
class Passage:
    """A span of a document's text; `text == document.text[start:end]` always holds."""

    id: str
    document: str
    start: int
    end: int
    text: str
    page: int | None = None


@dataclass
class Hit:
    """A retrieved passage with its fused rank/score and the per-retriever ranks (None: not found by it)."""

    passage: Passage
    rank: int
    score: float
    dense_rank: int | None = None
    dense_score: float | None = None
    sparse_rank: int | None = None
    sparse_score: float | None = None


@dataclass
class Answer:
    """An extractive answer, or an abstention when `text` is empty.

    `start`/`end` index the source document's text (or the text given to `read()`); `context` is
    the sentence holding the answer and `context_start` its offset in that same text, so the
    answer sits at `context[start - context_start : end - context_start]`.
    """

    text: str
    score: float
    source: str | None = None
    start: int | None = None
    end: int | None = None
    context: str = ""
    context_start: int | None = None
    page: int | None = None
    passage_id: str | None = None
    question: str = ""
    #: The question the reader was given, when a follow-up's pronoun was resolved ("" otherwise).
    read_as: str = ""
    alternatives: list[Answer] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    #: Which of `hits` (indices, in reading order) the reader read: adaptive reading reads the
    #: passage a screening reader picks (or the best-ranked) and the others only when unsure.
    passages_read: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def abstained(self) -> bool:
        return not self.text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form used by the CLI, the web API and evaluation reports."""
        data = asdict(self)
        data["abstained"] = self.abstained
        return data


@dataclass(frozen=True)
class Turn:
    """An earlier question of a conversation and the answer it got ("" when it abstained)."""

    question: str
    answer: str = ""

    @classmethod
    def of(cls, item: str | Turn | Answer) -> Turn:
        """A turn from a bare question, a turn, or an earlier `Answer`."""
        if isinstance(item, Turn):
            return item
        if isinstance(item, Answer):
            return cls(item.question, item.text)
        return cls(str(item))
