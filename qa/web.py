"""The web chat: a Gradio app that answers questions and shows the evidence behind every answer.

Rendering (pure functions, no models) comes first so it can be unit-tested; the app wiring
follows. Every piece of document text or user text goes through `escape()` before it is put in
markup, so a document containing `<script>` shows as text.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from qa import models  # noqa: F401 - sets the offline environment before gradio imports huggingface_hub
from qa.config import DEFAULT_READER, SHIPPED_READERS, Settings
from qa.types import Answer, Hit, Turn

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from qa.pipeline import Engine

log = logging.getLogger(__name__)

TITLE = "Document Q&A"
TAGLINE = "Ask questions about your documents. Answers are quoted from them, never made up."
ABSTAIN_TEXT = "I couldn't find that in the documents."
EXAMPLES = (
    "Who interviewed Zelensky?",
    "Which channel does he work for?",
    "What does Zelensky want to place under NATO's umbrella?",
    "How could occupied territories be returned?",
)
PLACEHOLDER = (
    "**Ask about your documents**\n\nType a question below or click an example. Each answer "
    "quotes the sentence it comes from; open *Evidence* under an answer to see every passage read."
)
UPLOAD_TYPES = (".txt", ".md", ".html", ".htm", ".pdf")
READER_CHOICES = tuple(SHIPPED_READERS)
#: Questions answered at the same time; the engine is shared, so more would only queue in torch.
CONCURRENCY = 2
#: Waiting requests beyond this are turned away with "queue full" instead of piling up.
QUEUE_SIZE = 64
SNIPPET_CHARS = 220
CLOSEST_SHOWN = 3
#: Longest wait (seconds) for the first index build before a question gives up.
READY_TIMEOUT_S = 1800.0
#: Longest wait (seconds) at shutdown for indexing to give up and its thread to end.
STOP_TIMEOUT_S = 60.0

# HTML specials, plus the characters Markdown would act on, encoded as entities in one pass so
# text shows literally even where the chat's Markdown renderer runs.
_ENTITIES = {c: f"&#{ord(c)};" for c in "\\`*_[]{}#|~$"} | {
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;",
}

CSS = """
.qa-reply { line-height: 1.5; }
.qa-reply .qa-answer { font-size: 1.1em; margin: 0 0 .4em 0; }
.qa-reply blockquote { margin: .3em 0 .5em 0; padding: .2em .8em; border-left: 3px solid #d4a72c; }
.qa-reply mark { background: #ffe58a; color: inherit; padding: 0 .1em; border-radius: 2px; }
.qa-reply .qa-meta { font-size: .88em; opacity: .8; margin: .2em 0; }
.qa-reply details { margin-top: .5em; font-size: .9em; }
.qa-reply summary { cursor: pointer; font-weight: 600; }
.qa-reply ol { padding-left: 1.4em; margin: .3em 0; }
.qa-reply li { margin: .4em 0; }
.qa-reply .qa-hit-head { font-size: .88em; opacity: .85; }
.qa-reply .qa-hit-text { max-height: 12em; overflow-y: auto; }
.qa-reply .qa-error { color: #b42318; }
#qa-status p { margin: 0; }
#qa-chat .placeholder { max-width: 34em; margin: 0 auto; text-align: center; opacity: .75; }
#qa-chat .message-content { overflow-wrap: anywhere; }
#qa-remove-row { align-items: flex-end; }
"""


# --------------------------------------------------------------------------------------------
# Rendering: pure functions from Answer to the HTML shown in the chat.
# --------------------------------------------------------------------------------------------


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
    """Escaped 'seeds/x.pdf, page 3' (page only for paginated documents)."""
    label = escape(source or "unknown document")
    return f"{label}, page {page}" if page else label


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


def render_best_guess(answer: Answer) -> str:
    """For an abstention: the span the reader liked best, so a person can judge the refusal."""
    best = next((a for a in answer.alternatives if a.text), None)
    if best is None:
        return ""
    return (
        f'<p class="qa-meta">Best candidate, below the confidence threshold: '
        f"“{escape(best.text)}” in <code>{source_label(best.source, best.page)}</code>"
        f" ({confidence_words(best.score)}).</p>"
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
        f"{render_best_guess(answer) if answer.abstained else ''}"
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
    """No confident answer: say so plainly and show the closest passages so the user can judge."""
    closest = "".join(
        f"<li><code>{source_label(h.passage.document, h.passage.page)}</code>: "
        f"{escape(snippet(h.passage.text))}</li>"
        for h in answer.hits[:CLOSEST_SHOWN]
    )
    listing = f'<p class="qa-meta">Closest passages read:</p><ol>{closest}</ol>' if closest else ""
    return (
        f'<div class="qa-reply"><p class="qa-answer"><strong>{escape(ABSTAIN_TEXT)}</strong></p>'
        f"{listing}{render_evidence(answer)}</div>"
    )


def render_reply(answer: Answer) -> str:
    """The chat message for an engine answer (found or abstained)."""
    return render_abstention(answer) if answer.abstained else render_answer(answer)


def render_error(message: str) -> str:
    """A friendly, escaped error bubble; the session carries on."""
    return f'<div class="qa-reply"><p class="qa-error"><strong>Sorry:</strong> {escape(message)}</p></div>'


def api_payload(answer: Answer) -> dict[str, Any]:
    """`Answer.to_dict()` with hits slimmed to positions and ranks (passage text is bulky)."""
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
    return data


def report_summary(report: Any) -> str:
    """An index report as the sentence a person reads ("1 document, 4 passages (1 added) in 0.4 s")."""
    summary = getattr(report, "summary", None)
    return summary() if callable(summary) else str(report)


def _count(value: Any) -> int:
    """IndexReport fields may be counts or lists of paths; both read as a number."""
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return len(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def documents_summary(docs: Sequence[Any]) -> str:
    """'3 documents (1 uploaded), 14 passages' for the status line."""
    uploaded = sum(1 for d in docs if getattr(d, "uploaded", False))
    passages = sum(_count(getattr(d, "passages", 0)) for d in docs)
    noun = "document" if len(docs) == 1 else "documents"
    extra = f" ({uploaded} uploaded)" if uploaded else ""
    return f"{len(docs)} {noun}{extra}, {passages} passages"


# --------------------------------------------------------------------------------------------
# Backend: one engine per process, indexed in the background so the page opens at once.
# --------------------------------------------------------------------------------------------


class NotReady(RuntimeError):
    """The index is still being built, or its build failed; the message is for the user."""


class Backend:
    """Owns the engine and the first index build, and tells the page how far along it is."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.ready = threading.Event()
        self.error: str | None = None
        self.report: Any = None
        self._thread: threading.Thread | None = None

    def start_indexing(self) -> None:
        """Build/update the index in a thread; tqdm progress goes to the terminal."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._index, name="qa-index", daemon=True)
            self._thread.start()

    def _index(self) -> None:
        from qa.stopping import Stopped

        try:
            log.info("Loading models…")
            self.engine.load_models()
            log.info("Indexing %s (index in %s)…", self.settings.corpus_dir, self.settings.index_dir)
            self.report = self.engine.ensure_index()
            log.info("index ready: %s", report_summary(self.report))
        except Stopped:
            log.info("indexing stopped before it finished: the index is as last saved, the next start carries on")
            self.error = "the server is stopping"
        except Exception as exc:  # noqa: BLE001 - shown on the page, details in the log
            log.exception("Indexing failed")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Make indexing give up and wait for it (the first build and any upload being indexed):
        an interpreter that exits while a thread is inside torch or FAISS aborts. True once they
        have ended, False if one still runs after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        if not self.engine.stop(timeout):
            return False
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            return not self._thread.is_alive()
        return True

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until the first index build ends; raise a user-facing error if it failed."""
        if not self.ready.wait(timeout):
            raise NotReady("The documents are still being indexed; please try again shortly.")
        if self.error:
            raise NotReady(f"Indexing failed ({self.error}); see the server log.")

    def documents(self) -> list[Any]:
        return list(self.engine.documents()) if self.ready.is_set() and not self.error else []

    def status(self) -> str:
        """The one-line status shown under the title."""
        if not self.ready.is_set():
            return (
                "**Indexing the documents…** The first start reads and embeds every file "
                "(progress in the terminal). Questions asked now are answered when it finishes."
            )
        if self.error:
            return f"**Indexing failed:** {escape(self.error)}. See the server log."
        return f"**Ready.** Searching {documents_summary(self.documents())}."

    def default_threshold(self) -> float:
        value = getattr(self.engine, "default_threshold", None)
        if value is None:
            value = self.settings.threshold if self.settings.threshold >= 0 else 0.5
        return float(value)


# --------------------------------------------------------------------------------------------
# Event handlers (plain functions of the backend, so they can be exercised without a browser).
# --------------------------------------------------------------------------------------------

Messages = list[dict[str, Any]]


def _user_message(question: str) -> dict[str, Any]:
    return {"role": "user", "content": escape(question)}


def _bot_message(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def reply(
    backend: Backend,
    question: str,
    messages: Messages,
    turns: list[list[str]],
    top_k: float,
    threshold: float,
    reader: str | None = None,
) -> tuple[Messages, list[list[str]]]:
    """Answer `question` (already shown as the user's message) and append the reply.

    The session's earlier turns ([question, answer] pairs) go to the engine as `history`, which
    is what lets "Which channel does he work for?" find and read about Stuart Ramsay. `reader`
    is the shipped reader chosen in the page's settings (None: the configured one).
    """
    messages = list(messages or [])
    turns = [list(t) if isinstance(t, (list, tuple)) else [str(t), ""] for t in (turns or [])]
    try:
        backend.wait_ready()
        answer = backend.engine.answer(
            question, top_k=int(top_k), threshold=float(threshold),
            history=[Turn(q, a) for q, a in turns] or None, reader=reader,
        )
    except (ValueError, NotReady) as exc:
        log.info("Question %r refused: %s", question, exc)
        messages.append(_bot_message(render_error(str(exc))))
        return messages, turns
    except Exception:  # noqa: BLE001 - never break the session over one question
        log.exception("Answering %r failed", question)
        messages.append(_bot_message(render_error("Something went wrong answering that; details are in the server log.")))
        return messages, turns
    log.info("Q %r -> %r (%.2f, %s)", question, answer.text, answer.score, answer.source)
    messages.append(_bot_message(render_reply(answer)))
    return messages, [*turns, [question, answer.text]]


def ask_api(backend: Backend, question: str, top_k: int, threshold: float, reader: str = "") -> dict[str, Any]:
    """The `/ask` endpoint's body: one question, no history, JSON answer; `reader` "" is the configured one."""
    import gradio as gr

    try:
        backend.wait_ready()
        answer = backend.engine.answer(
            question,
            top_k=max(1, min(50, int(top_k))),
            threshold=None if threshold is None or float(threshold) < 0 else float(threshold),
            reader=reader or None,
        )
    except (ValueError, NotReady) as exc:
        # The user's mistake (or a wait), not the server's: a message for them, one log line.
        log.info("/ask refused %r: %s", question, exc)
        raise gr.Error(str(exc), print_exception=False) from None
    return api_payload(answer)


def document_rows(docs: Sequence[Any]) -> list[list[Any]]:
    return [[d.path, _count(d.passages), "uploaded" if d.uploaded else "corpus"] for d in docs]


def uploaded_paths(docs: Sequence[Any]) -> list[str]:
    return [d.path for d in docs if d.uploaded]


def add_uploads(backend: Backend, files: Sequence[str] | str | None) -> list[str]:
    """Save each uploaded file into the upload folder and index it; one message per file."""
    from qa.uploads import UploadError, save_upload

    if not files:
        return []
    if isinstance(files, str):
        files = [files]
    backend.wait_ready()
    settings = backend.settings
    max_bytes = settings.max_upload_mb * 1024 * 1024
    notes = []
    for file in files:
        name = Path(file).name
        try:
            saved = save_upload(Path(file).read_bytes(), name, settings.uploads_path, max_bytes)
            report = backend.engine.add_file(saved)
        except UploadError as exc:
            log.info("Upload %s refused: %s", name, exc)
            notes.append(f"Not added: {name}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - unreadable PDFs etc. must not break the page
            log.exception("Adding %s failed", name)
            notes.append(f"Not added: {name} could not be indexed ({type(exc).__name__}: {exc}).")
            continue
        log.info("Uploaded %s -> %s: index %s", name, saved, report_summary(report))
        notes.append(f"Added {saved.name}: you can ask about it now.")
    return notes


# --------------------------------------------------------------------------------------------
# The app.
# --------------------------------------------------------------------------------------------


def build_app(settings: Settings, engine: Engine | None = None) -> gr.Blocks:
    """The Blocks app; starts indexing in the background so the page is usable at once.

    `engine` is for tests; by default the process-wide engine for `settings` is used.
    """
    import gradio as gr

    if engine is None:
        from qa.pipeline import get_engine

        engine = get_engine(settings)
    backend = Backend(settings, engine)
    private: dict[str, Any] = {"api_visibility": "private"}

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {TITLE}\n{TAGLINE}")
        status = gr.Markdown(backend.status(), elem_id="qa-status")
        turns = gr.State([])  # [question, answer] pairs of this session
        pending = gr.State("")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="Conversation",
                    show_label=False,
                    elem_id="qa-chat",
                    height=560,
                    placeholder=PLACEHOLDER,
                    latex_delimiters=[],
                    allow_tags=False,
                    feedback_options=None,
                    buttons=["copy"],
                )
                with gr.Row(equal_height=True):
                    question = gr.Textbox(
                        show_label=False,
                        container=False,
                        placeholder="Ask a question about the documents…",
                        elem_id="qa-question",
                        scale=6,
                        max_lines=4,
                        autofocus=True,
                    )
                    ask = gr.Button("Ask", variant="primary", elem_id="qa-ask", scale=1, min_width=80)
                gr.Markdown("**Try an example** (the second is a follow-up to the first):")
                with gr.Row():
                    example_buttons = [gr.Button(q, size="sm", variant="secondary") for q in EXAMPLES]
                with gr.Row():
                    clear = gr.Button("New conversation", size="sm", variant="secondary", scale=0)
            with gr.Column(scale=2):
                with gr.Accordion("Documents", open=True):
                    docs_table = gr.Dataframe(
                        headers=["Document", "Passages", "Added"],
                        datatype=["str", "number", "str"],
                        value=[],
                        interactive=False,
                        elem_id="qa-docs",
                        max_height=260,
                        show_label=False,
                    )
                    upload = gr.File(
                        label=f"Add documents ({', '.join(UPLOAD_TYPES)}; up to {settings.max_upload_mb} MB)",
                        file_count="multiple",
                        file_types=list(UPLOAD_TYPES),
                        elem_id="qa-upload",
                    )
                    upload_status = gr.Markdown(elem_id="qa-upload-status")
                    with gr.Row(elem_id="qa-remove-row"):
                        to_remove = gr.Dropdown(
                            label="Remove an uploaded document", choices=[], value=None, scale=3,
                            elem_id="qa-remove",
                            info="Documents from the corpus folder stay; uploads can be removed.",
                        )
                        remove = gr.Button(
                            "Remove", variant="stop", size="sm", scale=1, min_width=80, elem_id="qa-remove-button"
                        )
                with gr.Accordion("Settings", open=False, elem_id="qa-settings"):
                    top_k = gr.Slider(
                        1, 20, value=settings.top_k, step=1, label="Passages searched per question",
                        info="More passages: better recall; the reader reads closely only those it needs.",
                    )
                    threshold = gr.Slider(
                        0, 1, value=round(backend.default_threshold(), 3), step=0.01,
                        label="Confidence threshold",
                        info="Below this confidence the chat says it couldn't find the answer.",
                    )
                    reader_choice = gr.Radio(
                        list(READER_CHOICES), value=settings.reader, label="Reader", elem_id="qa-reader",
                        info=("accurate: MPNet, the better answers. fast: MiniLM, about a fifth of the reading "
                              "time. Switching loads the other reader once."),
                        visible=not settings.reader_model,
                    )
        timer = gr.Timer(1.5)

        def refresh() -> tuple[Any, ...]:
            docs = backend.documents()
            return (
                backend.status(),
                document_rows(docs),
                gr.Dropdown(choices=uploaded_paths(docs), value=None),
                gr.Timer(active=not backend.ready.is_set()),
            )

        refresh_outputs = [status, docs_table, to_remove, timer]
        demo.load(refresh, None, refresh_outputs, queue=False, **private)
        timer.tick(refresh, None, refresh_outputs, queue=False, **private)

        def show_question(text: str, messages: Messages) -> tuple[str, Messages, str]:
            text = (text or "").strip()
            if not text:
                gr.Warning("Type a question first.")
                return "", messages, ""
            return "", [*(messages or []), _user_message(text)], text

        def answer_pending(text: str, messages: Messages, asked: list[Any], k: float, t: float, r: str):
            if not text:
                return messages, asked
            return reply(backend, text, messages, asked, k, t, None if settings.reader_model else r)

        def wire(event: Any) -> None:
            event.then(
                answer_pending, [pending, chatbot, turns, top_k, threshold, reader_choice],
                [chatbot, turns], **private,
            )

        def on_reader(choice: str) -> Any:
            """Each reader has its own calibrated threshold: move the slider to it."""
            try:
                backend.wait_ready()
                return gr.Slider(value=round(backend.engine.threshold_for(choice), 3))
            except NotReady:
                return gr.Slider()

        reader_choice.change(on_reader, [reader_choice], [threshold], **private)

        show = ([question, chatbot], [question, chatbot, pending])
        wire(question.submit(show_question, *show, queue=False, **private))
        wire(ask.click(show_question, *show, queue=False, **private))
        for button in example_buttons:
            wire(button.click(
                lambda m, q=button.value: show_question(q, m), [chatbot], [question, chatbot, pending],
                queue=False, **private,
            ))
        clear.click(lambda: ([], [], ""), None, [chatbot, turns, question], queue=False, **private)
        chatbot.clear(lambda: [], None, [turns], queue=False, **private)

        def on_upload(files: list[str] | None) -> tuple[Any, ...]:
            try:
                notes = add_uploads(backend, files)
            except NotReady as exc:
                notes = [f"Not added: {exc}"]
            for note in notes:
                (gr.Info if note.startswith("Added") else gr.Warning)(note)
            return ("\n\n".join(escape(n) for n in notes), None, *refresh()[1:3])

        upload.upload(on_upload, [upload], [upload_status, upload, docs_table, to_remove], **private)

        def on_remove(path: str | None) -> tuple[Any, ...]:
            if not path:
                gr.Warning("Choose an uploaded document to remove.")
                return ("", *refresh()[1:3])
            try:
                backend.engine.remove_file(path)
                note = f"Removed {path}."
                gr.Info(note)
            except (ValueError, FileNotFoundError, KeyError) as exc:
                note = f"Could not remove {path}: {exc}"
                gr.Warning(note)
            return (escape(note), *refresh()[1:3])

        remove.click(on_remove, [to_remove], [upload_status, docs_table, to_remove], **private)
        # Keep the status line's counts in step with uploads/removals.
        docs_table.change(lambda: backend.status(), None, [status], queue=False, **private)

        def ask_endpoint(question: str, top_k: int = settings.top_k, threshold: float = -1.0, reader: str = "") -> dict:
            """Answer one question from the documents. threshold < 0 uses the reader's tuned default;
            reader "accurate" or "fast" picks a shipped reader ("" the configured one)."""
            return ask_api(backend, question, top_k, threshold, reader)

        gr.api(ask_endpoint, api_name="ask")
    demo.backend = backend  # type: ignore[attr-defined] - for tests and serve()
    # Last: an error building the page (a reader that cannot load) then leaves no indexing thread
    # running, which would abort the exit.
    backend.start_indexing()
    return demo


def _auth(settings: Settings) -> tuple[str, str] | None:
    """settings.auth "user:password" -> launch()'s auth pair; empty means no login."""
    if not settings.auth:
        return None
    user, sep, password = settings.auth.partition(":")
    if not sep or not user or not password:
        raise ValueError('QA_AUTH must look like "user:password"')
    return user, password


def serve(settings: Settings, engine: Engine | None = None) -> gr.Blocks:
    """Start the chat on settings.host:port and return it once it accepts connections.

    The server runs in its own thread; `run()` keeps the process up until it is told to stop.
    Raises StartupError (after stopping the indexing it started) when the address cannot be used.
    """
    demo = build_app(settings, engine)
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    try:
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            auth=_auth(settings),
            auth_message="Sign in to ask questions about the documents." if settings.auth else None,
            show_error=True,
            max_file_size=f"{settings.max_upload_mb}mb",
            ssr_mode=False,
            css=CSS,
            footer_links=["api", "settings"],
            prevent_thread_lock=True,
            quiet=True,
        )
    except OSError as exc:  # the port was taken since run() checked it, or cannot be bound at all
        error = _launch_error(settings, exc)
        if not demo.backend.stop():
            _exit_now(_report(error))
        raise error from None
    except BaseException:  # indexing has started: stop it before the error ends the process
        if not demo.backend.stop():
            _exit_now(1)
        raise
    log.info("Serving on http://%s:%s", settings.host, settings.port)
    return demo


def _launch_error(settings: Settings, exc: OSError) -> Exception:
    """A StartupError naming the address for Gradio's failed launch (its own message names a
    GRADIO_ variable this app does not use)."""
    from qa.startup import StartupError, check_address

    try:
        check_address(settings.host, settings.port)
    except StartupError as error:
        return error
    log.debug("launch failed: %s", exc)
    return StartupError(f"cannot listen on {settings.host}:{settings.port}: the port is in use on this machine; "
                        "stop what uses it, or choose another port with QA_PORT or --port")


def _report(error: Exception) -> int:
    from qa.startup import report

    return report(error)


def _exit_now(status: int) -> NoReturn:
    """Exit without the interpreter's teardown, which aborts under a thread still in native code;
    only when indexing did not stop in time (an unfinished save is safe: see Index safety)."""
    log.warning("indexing did not stop within %.0f s; exiting without it (the index is as last saved)",
                STOP_TIMEOUT_S)
    logging.shutdown()
    os._exit(status)


def run(settings: Settings, engine: Engine | None = None) -> int:
    """The web chat's whole life: check what a person can fix before loading anything, serve
    until SIGTERM or SIGINT, then close the server and stop indexing before exiting.

    Returns the exit status: 0 after SIGTERM, 130 after Ctrl-C, 2 when it could not start (one
    line on stderr says why: a busy port, an unusable folder, a bad setting).
    """
    from qa.models import ModelNotAvailableError
    from qa.startup import StartupError, check_startup
    from qa.stopping import StopSignals

    with StopSignals() as stop:
        try:
            check_startup(settings)
            _auth(settings)
        except ValueError as exc:  # StartupError, or a setting's own check
            return _report(exc)
        if stop.received is not None:  # stopped during the checks: nothing was started
            return stop.status
        try:
            demo = serve(settings, engine)
        except (StartupError, ModelNotAvailableError) as exc:
            return _report(exc)
        stop.wait()
        demo.close(verbose=False)
        if not demo.backend.stop():
            _exit_now(stop.status)
        log.info("stopped on %s", stop.name)
        return stop.status


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"{TITLE}: {TAGLINE}")
    parser.add_argument("--host", help="interface to listen on (QA_HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (QA_PORT; default 7860)")
    parser.add_argument("--corpus-dir", help="folder of documents (QA_CORPUS_DIR; default seeds)")
    parser.add_argument("--index-dir", help="where the index is kept (QA_INDEX_DIR; default index)")
    parser.add_argument("--reader", choices=READER_CHOICES,
                        help=f"shipped reader: accurate (MPNet) or fast (MiniLM) (QA_READER; default {DEFAULT_READER})")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of app.py: settings from QA_* env vars and flags, then run until stopped."""
    from qa.logs import configure_logging

    args = parse_args(argv)
    try:
        settings = Settings.load(
            host=args.host, port=args.port, corpus_dir=args.corpus_dir, index_dir=args.index_dir, reader=args.reader
        )
        configure_logging(settings.log_level, timestamps=True)
    except ValueError as exc:  # a bad QA_* value: one line saying which, not a traceback
        sys.exit(_report(exc))
    sys.exit(run(settings))
