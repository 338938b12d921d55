"""The web app's `/ask` API, called with gradio_client against the real running app."""

from __future__ import annotations

import pytest
from app_process import accepted_answers

pytestmark = pytest.mark.slow

gradio_client = pytest.importorskip("gradio_client")
from gradio_client.exceptions import AppError  # noqa: E402 - the app's gr.Error, message and all


@pytest.fixture(scope="module")
def client(web_server):
    return gradio_client.Client(web_server.url, verbose=False)


def _document_text(server, source: str) -> str:
    """The text a source path ("seeds/x.txt") names in the server's corpus copy."""
    return (server.corpus_dir.parent / source).read_text(encoding="utf-8")


def test_api_page_lists_only_ask(client) -> None:
    """Internal UI events are private, so the API page documents just one endpoint."""
    info = client.view_api(return_format="dict", print_info=False)
    assert list(info["named_endpoints"]) == ["/ask"]
    assert not info["unnamed_endpoints"]


def test_ask_offsets_quote_the_source(client, web_server) -> None:
    """Threshold 0 forces an answer; its offsets must index the document to give its text exactly.

    Independent of reader quality: any span the reader picks must be quoted faithfully.
    """
    result = client.predict("Who interviewed Zelensky?", 5, 0.0, api_name="/ask")
    for key in ("text", "score", "source", "start", "end", "context", "context_start", "hits"):
        assert key in result, key
    assert result["text"], f"threshold 0 should never abstain: {result}"
    text = _document_text(web_server, result["source"])
    assert text[result["start"] : result["end"]] == result["text"]
    context_start = result["context_start"]
    assert text[context_start : context_start + len(result["context"])] == result["context"]
    assert result["context"][result["start"] - context_start : result["end"] - context_start] == result["text"]
    assert 0.0 <= result["score"] <= 1.0
    assert 1 <= len(result["hits"]) <= 5


def test_ask_finds_the_interviewer(client, web_server) -> None:
    """Needs the trained reader: the default threshold must let the right answer through."""
    result = client.predict("Who interviewed Zelensky?", 5, -1, api_name="/ask")
    assert result["text"] in accepted_answers("Who interviewed Zelensky?"), result
    assert result["source"] == f"seeds/{web_server.seed_file}"
    assert _document_text(web_server, result["source"])[result["start"] : result["end"]] == result["text"]


def test_ask_rejects_an_empty_question_with_a_message(client) -> None:
    with pytest.raises(AppError, match="empty"):
        client.predict("   ", 5, -1, api_name="/ask")


def test_ask_takes_either_shipped_reader_and_refuses_others(client, web_server) -> None:
    """`reader` picks the shipped reader per call; both find the interviewer in the seed article."""
    for reader in ("fast", "accurate"):
        result = client.predict("Who interviewed Zelensky?", 5, -1, reader, api_name="/ask")
        assert result["text"] in accepted_answers("Who interviewed Zelensky?"), (reader, result)
    with pytest.raises(AppError, match="not a shipped reader"):
        client.predict("Who interviewed Zelensky?", 5, -1, "huge", api_name="/ask")
