"""Security checks not covered elsewhere: where the server listens, that QA_AUTH really locks the
app, that no uploaded name lands outside the upload folder or removes a corpus file, and that
no text of any shape becomes markup in a rendered reply.

tests/test_web_render.py already checks `_auth` parsing and specific `<script>` cases;
tests/test_uploads.py checks specific hostile names. These add the live server and properties.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from app_process import SEED_FILE, copy_writable, free_port, seeds_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from robust_support import record

MB = 2**20


# ----------------------------------------------------------------------------- a server without models


class StubEngine:
    """Just enough engine for the web app: answers every valid question the same way."""

    default_threshold = 0.5

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def load_models(self) -> None:
        pass

    def ensure_index(self, progress: bool = True) -> str:
        return "stub index"

    def documents(self) -> list:
        return []

    def answer(self, question: str, top_k: int | None = None, threshold: float | None = None,
               history: list[str] | None = None, reader: str | None = None) -> Any:
        from qa.pipeline import validate_question
        from qa.types import Answer

        validate_question(question, 1000)
        return Answer("stub answer", 0.9, "seeds/stub.txt", 0, 11, "stub answer.", 0)


def _listening_addresses(port: int) -> set[str]:
    """Addresses with a listening TCP socket on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                raw = bytes.fromhex(address)
                if width == 8:
                    found.add(".".join(str(b) for b in reversed(raw)))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(":".join(words[i : i + 2].hex() for i in range(0, 16, 2)))
    return found


@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """Run web.serve() as the app does, with launch() made non-blocking; yields launch's kwargs."""
    import gradio as gr

    from qa import web
    from qa.config import Settings

    captured: dict[str, Any] = {}
    real_launch = gr.Blocks.launch

    def launch(self: gr.Blocks, *args: Any, **kwargs: Any) -> Any:
        captured.update(kwargs, demo=self)
        return real_launch(self, *args, **{**kwargs, "prevent_thread_lock": True, "quiet": True})

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    for name in ("QA_HOST", "QA_AUTH", "QA_PORT"):
        monkeypatch.delenv(name, raising=False)

    def start(**env: str) -> dict:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings_ = Settings.load(port=free_port())
        web.serve(settings_, StubEngine(settings_))
        captured["url"] = f"http://127.0.0.1:{settings_.port}"
        captured["port"] = settings_.port
        return captured

    yield start
    if "demo" in captured:
        captured["demo"].close()


def test_default_host_is_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from qa import web
    from qa.config import Settings

    monkeypatch.delenv("QA_HOST", raising=False)
    assert Settings().host == "127.0.0.1"
    assert Settings.load().host == "127.0.0.1"
    assert web.parse_args([]).host is None  # app.py then falls back to Settings' default


@pytest.mark.slow
def test_the_app_listens_on_loopback_only_by_default(served: Any) -> None:
    launched = served()
    assert launched["server_name"] == "127.0.0.1"
    assert _listening_addresses(launched["port"]) == {"127.0.0.1"}


def _post_ask(url: str, question: str) -> int:
    """HTTP status of a bare /ask call without any session or login cookie."""
    body = json.dumps({"data": [question, 5, -1]}).encode()
    request = urllib.request.Request(f"{url}/gradio_api/call/ask", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_qa_auth_locks_the_app_and_its_api(served: Any) -> None:
    from gradio_client import Client

    launched = served(QA_AUTH="ann:s3cret:with:colons")
    url = launched["url"]
    assert launched["auth"] == ("ann", "s3cret:with:colons")
    assert _post_ask(url, "Who?") in (401, 403)
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a plain ValueError here
        Client(url, verbose=False)
    with pytest.raises(Exception):  # noqa: B017
        Client(url, auth=("ann", "wrong"), verbose=False)
    payload = Client(url, auth=("ann", "s3cret:with:colons"), verbose=False).predict("Who?", 5, -1, api_name="/ask")
    assert payload["text"] == "stub answer"
    record("security", case="auth", unauthenticated_status=_post_ask(url, "Who?"))


@pytest.mark.slow
def test_without_qa_auth_the_api_is_open(served: Any) -> None:
    """The control for the test above: the same call succeeds when no login is configured."""
    launched = served()
    assert launched["auth"] is None
    assert _post_ask(launched["url"], "Who?") == 200


# ----------------------------------------------------------------------------- uploads


_TRAVERSAL = ["..", ".", "", "etc", "~", "C:", "\\..\\..", "%2e%2e", "\x00", "uploads", "...", "/", "\u2215",
              "\uff0e\uff0e", "..\u2024", "\u202e"]
HOSTILE_NAMES = st.one_of(
    st.text(max_size=300),
    st.builds(lambda parts, suffix: "/".join(parts) + suffix,
              st.lists(st.sampled_from(_TRAVERSAL) | st.text(max_size=8), max_size=8),
              st.sampled_from([".txt", ".md", ".pdf", ".html", "", ".exe", ".txt\x00.exe", ".TXT", ". txt"])),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=HOSTILE_NAMES)
def test_no_upload_name_escapes_the_upload_folder(name: str) -> None:
    from qa.uploads import UploadError, save_upload

    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        uploads = root / "corpus" / "uploads"
        (root / "corpus").mkdir()
        outside = root / "outside.txt"
        outside.write_bytes(b"keep")
        try:
            saved = save_upload(b"%PDF-1.4\nPlain text.", name, uploads, MB)
        except UploadError:
            saved = None
        files = {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}
        assert files <= {outside, *([saved] if saved else [])}, files
        assert outside.read_bytes() == b"keep"
        if saved is not None:
            assert saved.parent == uploads and saved.resolve().parent == uploads.resolve()
            assert not saved.name.startswith(".") and "/" not in saved.name and "\x00" not in saved.name


def test_an_upload_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    from qa.uploads import save_upload

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    target = tmp_path / "precious.txt"
    target.write_text("original")
    (uploads / "notes.txt").symlink_to(target)
    saved = save_upload(b"Replacement text.", "notes.txt", uploads, MB)
    assert saved == uploads / "notes (2).txt"
    assert target.read_text() == "original"
    assert saved.read_bytes() == b"Replacement text."


@pytest.mark.parametrize("doc_path", [
    f"seeds/{SEED_FILE}",
    f"seeds/uploads/../{SEED_FILE}",
    "seeds/uploads/../../outside.txt",
    "../outside.txt",
    "OUTSIDE_ABSOLUTE",
    "seeds/uploads",
    "seeds/uploads/link.txt",
])
def test_remove_refuses_anything_but_an_upload(tmp_path: Path, doc_path: str) -> None:
    """Removal is for uploads only: corpus files, paths out of the folder and links out of it stay."""
    from qa.config import Settings
    from qa.pipeline import Engine

    corpus = copy_writable(seeds_dir(), tmp_path / "seeds")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (corpus / "uploads").mkdir()
    (corpus / "uploads" / "link.txt").symlink_to(outside)
    engine = Engine(Settings(corpus_dir=str(corpus), index_dir=str(tmp_path / "index")))
    doc_path = str(outside) if doc_path == "OUTSIDE_ABSOLUTE" else doc_path
    with pytest.raises(ValueError, match="is not an uploaded document; only uploads can be removed here"):
        engine.remove_file(doc_path)
    assert (corpus / SEED_FILE).exists() and outside.read_text() == "keep"
    assert (corpus / "uploads" / "link.txt").is_symlink()


# ----------------------------------------------------------------------------- rendering


class _Tags(HTMLParser):
    """Every start tag with its attributes, and whether any comment or declaration appeared."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.other: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_comment(self, data: str) -> None:
        self.other.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.other.append(f"decl {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.other.append(f"pi {data!r}")


ALLOWED_TAGS = {"div", "p", "strong", "blockquote", "mark", "code", "details", "summary", "ol", "li", "br"}
MARKUPISH = st.text(alphabet=st.sampled_from(list("<>/\"'=&;!-?[]{}()*_`$|#~\\ \nascriptimgonerror:")) | st.characters(),
                    max_size=80)


@settings(max_examples=300, deadline=None)
@given(answer_text=MARKUPISH, context=MARKUPISH, source=MARKUPISH, passage=MARKUPISH,
       start=st.integers(-5, 90), length=st.integers(0, 30), abstain=st.booleans())
def test_no_text_becomes_markup_in_a_reply(answer_text: str, context: str, source: str, passage: str,
                                           start: int, length: int, abstain: bool) -> None:
    from qa import web
    from qa.types import Answer, Hit, Passage

    hit = Hit(Passage("p1", source, 0, len(passage), passage), 1, 0.03, 1, 0.5, None, None)
    best = Answer(answer_text, 0.4, source, start, start + length, context, 0, hits=[hit])
    if abstain:
        answer = Answer("", 0.4, alternatives=[best], hits=[hit])
    else:
        answer = Answer(answer_text or "x", 0.9, source, start, start + length, context, 0, hits=[hit])
    html = web.render_reply(answer) + web.render_error(answer_text) + web._user_message(context)["content"]
    parser = _Tags()
    parser.feed(html)
    parser.close()
    assert {tag for tag, _ in parser.tags} <= ALLOWED_TAGS, parser.tags
    assert all(name == "class" for _, attrs in parser.tags for name, _ in attrs), parser.tags
    assert parser.other == []
