"""The web chat's page: the Blocks layout (chat, examples, documents, settings) and its wiring to
the backend's handlers. `build_app` is the one entry point; `qa.web.serve` launches it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa import models  # noqa: F401 - sets the offline environment before gradio imports huggingface_hub
from qa.config import Settings
from qa.formats import FORMATS
from qa.web_backend import (
    ASK_FIELDS,
    READER_CHOICES,
    Backend,
    Messages,
    NotReady,
    _user_message,
    ask_api,
    document_rows,
    iter_uploads,
    reply,
    uploaded_paths,
)
from qa.web_render import escape

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from qa.pipeline import Engine

TITLE = "Document Q&A"
TAGLINE = "Ask questions about your documents. Answers are quoted from them, never made up."
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
#: Every type the indexer reads, text first: (".txt", ".md", ".html", ".htm", ".pdf", ".docx", ...).
UPLOAD_TYPES = (".txt", ".md", ".html", ".htm", ".pdf", *FORMATS)
#: Gradio's temp copies of uploads that reached no handler are deleted after this (seconds).
UPLOAD_COPY_MAX_AGE_S = 3600

CSS = """
.qa-reply { line-height: 1.5; }
.qa-reply .qa-answer { font-size: 1.1em; margin: 0 0 .4em 0; }
.qa-reply blockquote { margin: .3em 0 .5em 0; padding: .2em .8em; border-left: 3px solid #d4a72c; }
.qa-reply mark { background: #ffe58a; color: inherit; padding: 0 .1em; border-radius: 2px; }
.qa-reply .qa-meta { font-size: .88em; opacity: .8; margin: .2em 0; }
.qa-reply .qa-guess { margin: 0 0 .3em 0; }
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


def name_missing_inputs(demo: gr.Blocks) -> None:
    """Refuse an `/ask` call with too few inputs in one line naming them, instead of Gradio's
    message (which lists its components with their memory addresses)."""
    import gradio as gr

    check = demo.validate_inputs

    def validate_inputs(block_fn: Any, inputs: list[Any]) -> None:
        if getattr(block_fn, "api_name", None) == "ask" and len(inputs) < len(ASK_FIELDS):
            missing = ", ".join(ASK_FIELDS[len(inputs):])
            raise gr.Error(f"missing input: {missing} (/ask takes {', '.join(ASK_FIELDS)}, e.g. "
                           f'["Who interviewed Zelensky?", 5, -1, ""])', print_exception=False)
        check(block_fn, inputs)

    demo.validate_inputs = validate_inputs  # type: ignore[method-assign]


def hand_over_uploads_as_they_are(upload: gr.File) -> None:
    """Give the upload handler each uploaded file's path, and nothing else.

    Gradio 6's `File` makes an empty `NamedTemporaryFile(delete=False)` in its temp folder for
    every file of every upload and never deletes it (the pattern gradio-app/gradio#4256 removed
    from other components), and refuses a file of another type before any handler sees it, so
    its copy stays behind. The handler checks types itself, with a better message, and deletes
    Gradio's copy of every upload (`discard_upload_copy`).
    """

    def path_only(file: Any) -> str:
        return str(file.path)

    upload._process_single_file = path_only  # type: ignore[method-assign]



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

    # delete_cache: uploads sent straight to Gradio's upload route, which no handler sees (and so
    # cannot delete, as it does every upload it handles), leave its temp folder within the hour.
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(UPLOAD_COPY_MAX_AGE_S,) * 2) as demo:
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
                        headers=["Document", "Passages", "Added", "Status"],
                        datatype=["str", "number", "str", "str"],
                        value=[],
                        interactive=False,
                        elem_id="qa-docs",
                        max_height=260,
                        show_label=False,
                        wrap=True,
                        column_widths=["32%", "14%", "18%", "36%"],  # room for a skipped file's reason
                    )
                    upload = gr.File(
                        label=f"Add documents ({', '.join(UPLOAD_TYPES)}; up to {settings.max_upload_mb} MB)",
                        file_count="multiple",
                        file_types=list(UPLOAD_TYPES),
                        elem_id="qa-upload",
                    )
                    hand_over_uploads_as_they_are(upload)
                    upload_status = gr.Markdown(elem_id="qa-upload-status")
                    with gr.Row(elem_id="qa-remove-row"):
                        to_remove = gr.Dropdown(
                            label="Remove an uploaded document", choices=[], value=None, scale=3,
                            elem_id="qa-remove",
                            info="Uploads, indexed or skipped, can be removed; documents from the corpus folder stay.",
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

        def on_upload(files: list[str] | str | None) -> Iterator[tuple[Any, ...]]:
            """Each file's message as soon as it is indexed, the files still waiting named below."""
            files = [files] if isinstance(files, str) else list(files or [])
            notes: list[str] = []

            def shown(waiting: list[str]) -> str:
                lines = [*notes, f"Indexing {', '.join(Path(f).name for f in waiting)}…"] if waiting else notes
                return "\n\n".join(escape(line) for line in lines)

            yield (shown(files), None, gr.skip(), gr.skip())
            try:
                for done, note in enumerate(iter_uploads(backend, files), 1):
                    notes.append(note)
                    (gr.Info if note.startswith("Added") else gr.Warning)(note)
                    yield (shown(files[done:]), None, *refresh()[1:3])
            except NotReady as exc:
                notes.append(f"Not added: {exc}")
                gr.Warning(notes[-1])
                yield (shown([]), None, *refresh()[1:3])

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
    name_missing_inputs(demo)
    demo.backend = backend  # type: ignore[attr-defined] - for tests and serve()
    # Last: an error building the page (a reader that cannot load) then leaves no indexing thread
    # running, which would abort the exit.
    backend.start_indexing()
    return demo

