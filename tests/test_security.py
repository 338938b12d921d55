"""Security checks not covered elsewhere: where the server listens, that QA_AUTH really locks the
app, that no uploaded name lands outside the upload folder or removes a corpus file, and that
no text of any shape becomes markup in a rendered reply.

tests/test_web_render.py already checks `_auth` parsing and specific `<script>` cases;
tests/test_uploads.py checks specific hostile names. These add the live server and properties.
Where the server listens, the login and the upload limit are checked on the real app (app.py,
real engine) started with QA_AUTH and QA_MAX_UPLOAD_MB, as a person would start it.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from app_process import SEED_FILE, WebServer, accepted_answers, copy_writable, free_port, run_app, seeds_dir
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

    def status(self) -> Any:
        from qa.index_status import status_of

        return status_of(self.settings, None, [], 0, "stub embedder", "flat")

    def upload_folder(self) -> Path:
        return Path(self.settings.upload_dir or Path(self.settings.corpus_dir) / "uploads")

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


LOGIN = ("ann", "s3cret:with:colons")


@pytest.fixture(scope="module")
def locked_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    """`python app.py` over a copy of the seeds with a login and a 1 MB upload limit set in its
    environment, and no QA_HOST: the real engine behind the real server."""
    work = tmp_path_factory.mktemp("locked")
    corpus = copy_writable(seeds_dir(), work / "seeds")
    with run_app(corpus, work / "index", work / "app.log", QA_AUTH=":".join(LOGIN), QA_MAX_UPLOAD_MB="1") as app:
        yield app


@pytest.mark.slow
def test_the_app_listens_on_loopback_only_by_default(locked_app: WebServer) -> None:
    assert _listening_addresses(locked_app.port) == {"127.0.0.1"}
    assert f"Serving on http://127.0.0.1:{locked_app.port}" in locked_app.log_text()


def _post_ask(url: str, question: str) -> int:
    """HTTP status of a bare /ask call without any session or login cookie."""
    body = json.dumps({"data": [question, 5, -1, ""]}).encode()
    request = urllib.request.Request(f"{url}/gradio_api/call/ask", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_qa_auth_locks_the_app_and_its_api(locked_app: WebServer) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AuthenticationError

    url = locked_app.url
    assert _post_ask(url, "Who interviewed Zelensky?") in (401, 403)
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        Client(url, verbose=False)
    with pytest.raises(ValueError, match="Could not login"):  # gradio's 400 "Incorrect credentials."
        Client(url, auth=(LOGIN[0], "wrong"), verbose=False)
    payload = Client(url, auth=LOGIN, verbose=False).predict("Who interviewed Zelensky?", 5, -1, api_name="/ask")
    assert payload["text"] in accepted_answers("Who interviewed Zelensky?"), payload
    record("security", case="auth", unauthenticated_status=_post_ask(url, "Who interviewed Zelensky?"))


@pytest.mark.slow
def test_qa_max_upload_mb_reaches_the_web_app(locked_app: WebServer) -> None:
    """QA_MAX_UPLOAD_MB=1 in the app's environment: the page says so, and the server refuses a
    bigger file before it reaches the upload handler (which holds the same limit)."""
    import httpx

    with httpx.Client(base_url=locked_app.url, timeout=60) as http:
        assert http.post("/login", data={"username": LOGIN[0], "password": LOGIN[1]}).status_code == 200
        config = http.get("/config")
        assert config.status_code == 200 and re.search(r'"Add documents \([^"]*; up to 1 MB\)"', config.text)
        big = http.post("/gradio_api/upload", files={"files": ("big.txt", b"word " * (MB // 4), "text/plain")})
        assert big.status_code == 413 and "maximum allowed size" in big.text, (big.status_code, big.text)
        small = http.post("/gradio_api/upload", files={"files": ("small.txt", b"word " * (MB // 8), "text/plain")})
        assert small.status_code == 200, (small.status_code, small.text)


@pytest.mark.slow
def test_ask_refuses_inputs_that_are_not_what_it_takes_in_one_line_naming_them(served: Any) -> None:
    """A threshold of NaN or Infinity used to abstain on every question without a word, and too few
    inputs answered with Gradio's own message, memory addresses included."""
    from robust_support import WebError, call_ask

    url = served()["url"]
    threshold = "threshold must be a number from 0 to 1 (or -1 for the reader's own), not {}"
    refused = {
        ("Who?", 5, "NaN", ""): threshold.format("'NaN'"),
        ("Who?", 5, float("nan"), ""): threshold.format("nan"),  # JSON's NaN literal
        ("Who?", 5, "Infinity", ""): threshold.format("'Infinity'"),
        ("Who?", 5, float("-inf"), ""): threshold.format("-inf"),
        ("Who?", 5, 1.5, ""): threshold.format("1.5"),
        ("Who?", 5, None, ""): threshold.format("None"),
        ("Who?", "five", -1, ""): "top_k must be a whole number of passages from 1 to 50, not 'five'",
        ("Who?", 2.5, -1, ""): "top_k must be a whole number of passages from 1 to 50, not 2.5",
        ("Who?", 5, -1, 7): "reader must be 'accurate' or 'fast' (or \"\" for the configured one), not 7",
        (): 'missing input: question, top_k, threshold, reader (/ask takes question, top_k, threshold, reader, '
            'e.g. ["Who interviewed Zelensky?", 5, -1, ""])',
        ("Who?",): 'missing input: top_k, threshold, reader (/ask takes question, top_k, threshold, reader, '
                   'e.g. ["Who interviewed Zelensky?", 5, -1, ""])',
        ("Who?", 5, 0.5): 'missing input: reader (/ask takes question, top_k, threshold, reader, '
                          'e.g. ["Who interviewed Zelensky?", 5, -1, ""])',
    }
    for data, message in refused.items():
        with pytest.raises(WebError) as info:
            call_ask(url, list(data))
        assert str(info.value) == message, data
    for threshold_ok in (0, 1, 0.35, "0.35", -1):  # -1: the reader's own threshold, as documented
        assert call_ask(url, ["Who?", 5, threshold_ok, ""])["text"] == "stub answer", threshold_ok
    assert call_ask(url, ["Who?", 500, -1, ""])["text"] == "stub answer"  # top_k is capped, not refused


@pytest.mark.slow
def test_without_qa_auth_the_api_is_open(web_server: WebServer) -> None:
    """The control for the test above: the same call succeeds when no login is configured."""
    from robust_support import ask_raw

    assert _post_ask(web_server.url, "Who interviewed Zelensky?") == 200
    answer = ask_raw(web_server.url, "Who interviewed Zelensky?")
    assert answer["text"] in accepted_answers("Who interviewed Zelensky?"), answer


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
