"""The chat's HTML: pure functions from an `Answer` to the reply shown in the chat (no models).

Every piece of document text or user text goes through `escape()` before it is put in markup, so
a document containing `<script>` shows as text.
"""

from __future__ import annotations

from typing import Any

from qa.guesses import shown_guess
from qa.types import Answer, Hit

ABSTAIN_TEXT = "I couldn't find that in the documents."
SNIPPET_CHARS = 220
CLOSEST_SHOWN = 3

# HTML specials, plus the characters Markdown would act on, encoded as entities in one pass so
# text shows literally even where the chat's Markdown renderer runs.
_ENTITIES = {c: f"&#{ord(c)};" for c in "\\`*_[]{}#|~$"} | {
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;",
}


def escape(text: str) -> str:
    """HTML-escape text and neutralise Markdown, keeping line breaks visible.

    Output never contains a raw newline, so the reply stays one HTML block that the chat's
    Markdown renderer leaves alone.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    out = "".join(_ENTITIES.get(c, c) for c in text)
    return out.replace("\n", "<br>")


def confidence_words(score: float) -> str:
    """'high confidence, 92%': words first because a bare probability means little to most users."""
    level = "high" if score >= 0.8 else "medium" if score >= 0.5 else "low"
    # Floor (with a hair for float error), so 0.799 never reads "medium confidence, 80%".
    percent = int(max(0.0, min(1.0, score)) * 100 + 1e-9)
    return f"{level} confidence, {percent}%"


def highlight(text: str, text_start: int, start: int | None, end: int | None, answer: str = "") -> str:
    """Escaped `text` with the span [start, end) (document offsets) wrapped in <mark>.

    `text_start` is the offset of `text` in the document. Offsets win over string search so
    that the right occurrence is marked when the answer appears twice; if they fall outside
    `text`, the first occurrence of `answer` is marked instead, or nothing.
    """
    lo = hi = -1
    if start is not None and end is not None:
        lo, hi = start - text_start, end - text_start
    if not (0 <= lo < hi <= len(text)):
        lo = text.find(answer) if answer else -1
        hi = lo + len(answer)
    if lo < 0:
        return escape(text)
    return f"{escape(text[:lo])}<mark>{escape(text[lo:hi])}</mark>{escape(text[hi:])}"


def source_label(source: str | None, page: int | None = None) -> str:
    """Escaped 'seeds/x.pdf, page 3', 'deck.pptx, slide 2', 'data.xlsx, sheet 1' (the page only
    for paged documents)."""
    from qa.formats import page_label

    label = escape(source or "unknown document")
    where = page_label(source, page)
    return f"{label}, {where}" if where else label


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of a passage on one line, cut at a word boundary."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat.rfind(" ", 0, limit)
    return flat[: cut if cut > limit // 2 else limit].rstrip(" ,.;:") + "…"


def _rank(rank: int | None) -> str:
    return f"#{rank}" if rank is not None else "—"


def _hit_holds_answer(hit: Hit, answer: Answer) -> bool:
    p = hit.passage
    return (
        bool(answer.text)
        and p.document == answer.source
        and answer.start is not None
        and answer.end is not None
        and p.start <= answer.start
        and answer.end <= p.end
    )


def render_hit(hit: Hit, answer: Answer, read: bool = True) -> str:
    """One evidence entry: where the passage is from, how each retriever ranked it, its text."""
    p = hit.passage
    marker = " · <strong>answer</strong>" if _hit_holds_answer(hit, answer) else ("" if read else " · not read closely")
    head = (
        f"{source_label(p.document, p.page)} · fused rank #{hit.rank}, score {hit.score:.4f}"
        f" · dense {_rank(hit.dense_rank)} · BM25 {_rank(hit.sparse_rank)}{marker}"
    )
    if _hit_holds_answer(hit, answer):
        body = highlight(p.text, p.start, answer.start, answer.end, answer.text)
    else:
        body = escape(p.text)
    return f'<li><div class="qa-hit-head">{head}</div><div class="qa-hit-text">{body}</div></li>'


def render_guess(answer: Answer) -> str:
    """For an abstention: the reader's best span as a visible guess, when `shown_guess` finds it
    likely enough to be worth reading, with the sentence it comes from; "" otherwise."""
    guess = shown_guess(answer)
    if guess is None:
        return ""
    sentence = ""
    if guess.context:
        start_of_context = guess.context_start if guess.context_start is not None else 0
        marked = highlight(guess.context, start_of_context, guess.start, guess.end, guess.text)
        sentence = f"<blockquote>{marked}</blockquote>"
    return (
        f'<p class="qa-guess">Best guess, below the confidence threshold: '
        f"<strong>“{escape(guess.text)}”</strong> — <code>{source_label(guess.source, guess.page)}</code>"
        f" ({confidence_words(guess.score)})</p>{sentence}"
    )


def render_evidence(answer: Answer) -> str:
    """The collapsible list of every passage retrieved, saying which ones the reader read: adaptive
    reading leaves out those a screening reader or the first passages' sure answer made needless."""
    if not answer.hits:
        return ""
    read = set(answer.passages_read or range(len(answer.hits)))
    items = "".join(render_hit(h, answer, i in read) for i, h in enumerate(answer.hits))
    timing = ""
    if answer.timings:
        parts = " · ".join(f"{escape(k)} {v:.2f}s" for k, v in answer.timings.items())
        timing = f'<p class="qa-meta">Timings: {parts}</p>'
    count = len(answer.hits)
    noun = "passage" if count == 1 else "passages"
    how_many = f"{count} {noun} read" if len(read) >= count else f"{count} {noun} found, {len(read)} read closely"
    return (
        f"<details><summary>Evidence ({how_many})</summary>"
        f'<p class="qa-meta">Ranks come from fusing dense (embedding) and BM25 (keyword) '
        f"search; — means that search did not return the passage.</p>"
        f"<ol>{items}</ol>{timing}</details>"
    )


def render_answer(answer: Answer) -> str:
    """A found answer: bold answer, the sentence with it marked, source and confidence, evidence."""
    sentence = ""
    if answer.context:
        start_of_context = answer.context_start if answer.context_start is not None else 0
        marked = highlight(answer.context, start_of_context, answer.start, answer.end, answer.text)
        sentence = f"<blockquote>{marked}</blockquote>"
    read_as = f" · read as “{escape(answer.read_as)}”" if answer.read_as else ""
    meta = (
        f'<p class="qa-meta">Source: <code>{source_label(answer.source, answer.page)}</code>'
        f" · {confidence_words(answer.score)}{read_as}</p>"
    )
    return (
        f'<div class="qa-reply"><p class="qa-answer"><strong>{escape(answer.text)}</strong></p>'
        f"{sentence}{meta}{render_evidence(answer)}</div>"
    )


def render_abstention(answer: Answer) -> str:
    """No confident answer: say so plainly, then the best guess when one is worth showing (right
    under the first line, where it is read), then the closest passages so the user can judge."""
    closest = "".join(
        f"<li><code>{source_label(h.passage.document, h.passage.page)}</code>: "
        f"{escape(snippet(h.passage.text))}</li>"
        for h in answer.hits[:CLOSEST_SHOWN]
    )
    listing = f'<p class="qa-meta">Closest passages read:</p><ol>{closest}</ol>' if closest else ""
    return (
        f'<div class="qa-reply"><p class="qa-answer"><strong>{escape(ABSTAIN_TEXT)}</strong></p>'
        f"{render_guess(answer)}{listing}{render_evidence(answer)}</div>"
    )


def render_reply(answer: Answer) -> str:
    """The chat message for an engine answer (found or abstained)."""
    return render_abstention(answer) if answer.abstained else render_answer(answer)


def render_error(message: str) -> str:
    """A friendly, escaped error bubble; the session carries on."""
    return f'<div class="qa-reply"><p class="qa-error"><strong>Sorry:</strong> {escape(message)}</p></div>'


def api_payload(answer: Answer) -> dict[str, Any]:
    """`Answer.to_dict()` with hits slimmed to positions and ranks (passage text is bulky), and
    `guess`: on an abstention, the best span when it is worth showing (`qa.guesses.shown_guess`),
    else null. `text` stays "" on an abstention, so a client that reads only it is not misled."""
    data = answer.to_dict()
    data["hits"] = [
        {
            "source": h.passage.document,
            "start": h.passage.start,
            "end": h.passage.end,
            "page": h.passage.page,
            "rank": h.rank,
            "score": h.score,
            "dense_rank": h.dense_rank,
            "sparse_rank": h.sparse_rank,
        }
        for h in answer.hits
    ]
    for alt in data.get("alternatives", []):
        alt.pop("hits", None)
        alt.pop("alternatives", None)
    guess = shown_guess(answer)
    data["guess"] = None if guess is None else {
        key: getattr(guess, key) for key in ("text", "score", "source", "start", "end", "context", "page")
    }
    return data

