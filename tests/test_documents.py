"""Loading files into Documents: encodings, binary detection, HTML, PDF and folder walking."""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import os
import pickle
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from qa.documents import (
    DocumentError,
    format_size,
    iter_documents,
    list_corpus_files,
    load_corpus,
    load_document,
    relative_document_path,
)
from qa.sentences import split_sentences

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"


def make_pdf(pages: list[str | None], password: str | None = None) -> bytes:
    """A real PDF with one Helvetica text line per page (None: a page without text)."""
    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for text in pages:
        page = writer.add_blank_page(612, 792)
        if text is None:
            continue
        stream = DecodedStreamObject()
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    if password is not None:
        writer.encrypt(user_password=password, owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    return root


def write(root: Path, name: str, data: bytes | str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8", newline="")
    else:
        path.write_bytes(data)
    return path


def load(root: Path, name: str, data: bytes | str) -> str:
    return load_document(write(root, name, data), root).text


def load_error(root: Path, name: str, data: bytes | str) -> str:
    with pytest.raises(DocumentError) as info:
        load_document(write(root, name, data), root)
    assert info.value.path == f"corpus/{name}"
    return info.value.reason


# --------------------------------------------------------------------------- encodings


def test_utf8_with_bom_is_stripped_and_newlines_normalised(corpus: Path) -> None:
    data = codecs.BOM_UTF8 + "Grüße\r\nzweite Zeile\rdritte\n".encode()
    assert load(corpus, "bom.txt", data) == "Grüße\nzweite Zeile\ndritte\n"


def test_utf16_le_with_bom(corpus: Path) -> None:
    data = codecs.BOM_UTF16_LE + "Ünïcode wörks\r\n".encode("utf-16-le")
    assert load(corpus, "u16.txt", data) == "Ünïcode wörks\n"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom_is_detected_from_nul_pattern(corpus: Path, codec: str) -> None:
    text = "Plain English text with one café.\n"
    assert load(corpus, "nobom.md", text.encode(codec)) == text


def test_latin1_text_decodes_right(corpus: Path) -> None:
    text = "Un café crème à la carte, s'il vous plaît. Voilà: naïveté!\n"
    assert load(corpus, "fr.txt", text.encode("latin-1")) == text


def test_windows_1252_smart_quotes(corpus: Path) -> None:
    text = "\u201cQuoted\u201d \u2013 it\u2019s 5 \u20ac.\n"
    assert load(corpus, "quotes.txt", text.encode("cp1252")) == text


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        ("Съешь же ещё этих мягких французских булок, да выпей же чаю.\n", "cp1251"),
        ("Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig.\n", "cp1250"),
    ],
)
def test_non_western_legacy_encodings_are_not_read_as_1252(
    corpus: Path, text: str, codec: str
) -> None:
    assert load(corpus, "legacy.txt", text.encode(codec)) == text


def test_invalid_utf8_bytes_in_utf8_text_are_replaced(corpus: Path) -> None:
    data = "The café is open ".encode() + b"\xff" + b" today.\n"
    assert load(corpus, "bad.txt", data) == "The café is open \ufffd today.\n"


def test_text_is_kept_verbatim(corpus: Path) -> None:
    text = "  Indented\ttab\n\n\nTrailing spaces   \n\x1b[1mbold\x1b[0m\n"
    assert load(corpus, "verbatim.md", text) == text


def test_content_hash_is_sha256_of_raw_bytes_and_path_is_relative(corpus: Path) -> None:
    data = b"Hello\r\nworld\n"
    document = load_document(write(corpus, "sub/dir/a.txt", data), corpus)
    assert document.path == "corpus/sub/dir/a.txt"
    assert document.content_hash == hashlib.sha256(data).hexdigest()
    assert document.page_starts == ()
    assert document.page_at(3) is None


def test_relative_document_path_for_relative_and_absolute_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert relative_document_path(Path("seeds/a.txt"), Path("seeds")) == "seeds/a.txt"
    assert relative_document_path(tmp_path / "seeds/sub/b.md", tmp_path / "seeds") == "seeds/sub/b.md"
    assert relative_document_path(Path("elsewhere/c.txt"), Path("seeds")) == "elsewhere/c.txt"
    assert relative_document_path(Path("/other/d.txt"), Path("seeds")) == "d.txt"


def test_list_corpus_files_is_sorted_and_filtered(corpus: Path) -> None:
    for name in ["b.txt", "a/z.md", "a/y.PDF", "c.htm", "d.docx", ".e.txt", ".f/g.txt", "h~"]:
        write(corpus, name, "x")
    skipped: list = []
    names = [p.relative_to(corpus).as_posix() for p in list_corpus_files(corpus, skipped)]
    assert names == ["a/y.PDF", "a/z.md", "b.txt", "c.htm", "d.docx"]
    assert skipped == [("corpus/h~", "has an unsupported type: no suffix such as .txt or .docx")]


# --------------------------------------------------------------------------- bad files


def test_zero_bytes_and_whitespace_only_are_empty(corpus: Path) -> None:
    assert load_error(corpus, "zero.txt", b"") == "is empty"
    assert load_error(corpus, "blank.md", b" \r\n\t\n") == "is empty"


def test_png_renamed_txt_is_binary(corpus: Path) -> None:
    reason = load_error(corpus, "photo.txt", PNG_BYTES)
    assert reason == "looks like a binary file (PNG image), not text"


def test_unknown_binary_with_nul_bytes(corpus: Path) -> None:
    reason = load_error(corpus, "blob.md", bytes(range(256)) * 8)
    assert reason == "looks like a binary file (NUL bytes), not text"


def test_binary_without_nul_bytes_is_rejected_by_control_characters(corpus: Path) -> None:
    data = bytes(range(1, 32)) * 40
    assert "looks like a binary file" in load_error(corpus, "ctrl.txt", data)


def test_too_large_file(corpus: Path) -> None:
    path = write(corpus, "big.txt", b"a" * 1536)
    with pytest.raises(DocumentError, match=r"corpus/big\.txt is 1\.5 KB; the limit is 1 KB"):
        load_document(path, corpus, max_bytes=1024)


def test_fifo_is_not_read(corpus: Path) -> None:
    fifo = corpus / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(DocumentError, match="is not a regular file"):
        load_document(fifo, corpus)


def test_missing_file_raises_file_not_found(corpus: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_document(corpus / "nope.txt", corpus)


_LOAD_WITHOUT_CAPABILITIES = """
import sys
from pathlib import Path
from qa.documents import DocumentError, load_document
corpus = Path(sys.argv[1])
for name in sys.argv[2:]:
    try:
        print(repr(load_document(corpus / name, corpus).text))
    except DocumentError as error:
        print(error)
"""


def test_unreadable_file(corpus: Path) -> None:
    """A file this user may not read. Root reads any file (its capabilities override file modes),
    so as root (CI) the loads run in a process without capabilities (setpriv); the readable file
    beside the unreadable one shows that process can read what it is allowed to."""
    write(corpus, "open.txt", "visible")
    write(corpus, "secret.txt", "hidden").chmod(0)
    if os.geteuid() != 0:
        assert load_document(corpus / "open.txt", corpus).text == "visible"
        with pytest.raises(DocumentError, match="could not be read"):
            load_document(corpus / "secret.txt", corpus)
        return
    import shutil
    import subprocess
    import sys

    command = [shutil.which("setpriv") or "setpriv", "--bounding-set=-all", "--inh-caps=-all",
               sys.executable, "-c", _LOAD_WITHOUT_CAPABILITIES, str(corpus), "open.txt", "secret.txt"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == ["'visible'", "corpus/secret.txt could not be read (Permission denied)"], (
        done.stdout, done.stderr[-2000:])


def test_document_error_pickles_and_names_the_file() -> None:
    error = pickle.loads(pickle.dumps(DocumentError("seeds/a.pdf", "is encrypted")))
    assert str(error) == "seeds/a.pdf is encrypted"
    assert (error.path, error.reason) == ("seeds/a.pdf", "is encrypted")


def test_format_size() -> None:
    assert format_size(20 * 2**20) == "20 MB"
    assert format_size(int(31.2 * 2**20)) == "31.2 MB"
    assert format_size(20 * 2**20 + 1) == "20.1 MB"  # never shown as equal to the limit
    assert format_size(512) == "512 bytes"


# --------------------------------------------------------------------------- HTML


def test_html_keeps_visible_text_only(corpus: Path) -> None:
    html = """<!DOCTYPE html><html><head><title>My  Page</title>
    <meta charset="utf-8"><style>body { color: red }</style>
    <script>var secret = "SCRIPT TEXT";</script></head>
    <body><h1>Heading</h1><p>First   paragraph
    spans lines.</p><!-- a comment --><div>Block<br>after break</div>
    <noscript>Enable JS</noscript><p hidden>Hidden text</p>
    <p style="display: none">Invisible</p><ul><li>one</li><li>two</li></ul>
    <table><tr><td>a</td><td>b</td></tr></table><p>Caf&eacute; &amp; <b>bold</b>word</p>
    </body></html>"""
    text = load(corpus, "page.html", html)
    assert text.split("\n") == [
        "My Page",
        "Heading",
        "First paragraph spans lines.",
        "Block",
        "after break",
        "one",
        "two",
        "a b",
        "Café & boldword",
    ]


def test_mostly_script_html_still_yields_its_visible_text(corpus: Path) -> None:
    script = "<script>" + "var x = 'noise';\n" * 5000 + "</script>"
    html = f"<html><head>{script}</head><body>{script}<p>The only sentence.</p>{script}</body></html>"
    assert load(corpus, "app.htm", html) == "The only sentence."


def test_html_without_visible_text(corpus: Path) -> None:
    html = "<html><head><title>T</title><script>alert(1)</script></head><body> </body></html>"
    assert load_error(corpus, "empty.html", html) == "has no visible text"


def test_html_meta_charset_is_honoured(corpus: Path) -> None:
    html = '<html><head><meta charset="windows-1251"></head><body><p>Привет, мир</p></body></html>'
    assert load(corpus, "ru.html", html.encode("cp1251")) == "Привет, мир"


def test_html_declared_latin1_but_saved_as_utf8(corpus: Path) -> None:
    html = '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"><p>Crème brûlée</p>'
    assert load(corpus, "mislabelled.html", html.encode("utf-8")) == "Crème brûlée"


# --------------------------------------------------------------------------- PDF


def test_pdf_pages_and_page_starts(corpus: Path) -> None:
    document = load_document(
        write(corpus, "two.pdf", make_pdf(["Page one says hello.", "Page two says goodbye."])),
        corpus,
    )
    assert document.text == "Page one says hello.\n\nPage two says goodbye."
    assert document.page_starts == (0, 22)
    assert document.page_at(0) == 1
    assert document.page_at(document.text.index("hello")) == 1
    assert document.page_at(document.text.index("goodbye")) == 2


def test_pdf_with_a_blank_page_keeps_page_numbers(corpus: Path) -> None:
    document = load_document(write(corpus, "gap.pdf", make_pdf(["First.", None, "Third."])), corpus)
    assert document.text == "First.\n\n\n\nThird."
    assert document.page_starts == (0, 8, 10)
    assert document.page_at(document.text.index("Third")) == 3


def test_pdf_without_text_layer(corpus: Path) -> None:
    reason = load_error(corpus, "scan.pdf", make_pdf([None, None]))
    assert reason == "has no text layer (scanned?); OCR it first"


def test_encrypted_pdf_with_password(corpus: Path) -> None:
    reason = load_error(corpus, "locked.pdf", make_pdf(["Secret."], password="hunter2"))
    assert reason.startswith("is encrypted")


def test_encrypted_pdf_with_empty_user_password_opens(corpus: Path) -> None:
    assert load(corpus, "owner-only.pdf", make_pdf(["Readable."], password="")) == "Readable."


def test_damaged_pdf(corpus: Path) -> None:
    assert load_error(corpus, "broken.pdf", b"%PDF-1.4\nthis is not a pdf").startswith(
        "is not a readable PDF"
    )


# --------------------------------------------------------------------------- size


def test_twenty_thousand_one_word_lines(corpus: Path) -> None:
    text = "".join(f"word{i}\n" for i in range(20_000))
    document = load_document(write(corpus, "lines.txt", text), corpus)
    assert document.text == text
    assert document.text.split() == [f"word{i}" for i in range(20_000)]


def test_fifty_megabyte_text_file_loads_whole(corpus: Path) -> None:
    """Every character of a 50 MB file, line endings normalised (its speed: benchmarks/timings.py)."""
    line = "The quick brown fox jumps over the lazy dog, and café prices rise.\r\n"
    data = (line * (50 * 2**20 // len(line.encode()) + 1)).encode()
    path = write(corpus, "big.txt", data)
    document = load_document(path, corpus)
    assert len(data) > 50 * 2**20
    assert document.text == data.decode().replace("\r\n", "\n")


# --------------------------------------------------------------------------- folders


def test_load_corpus_loads_good_files_and_skips_bad_ones(corpus: Path) -> None:
    write(corpus, "a.txt", "Alpha.")
    write(corpus, "b/page.html", "<p>Beta.</p>")
    write(corpus, "b/doc.pdf", make_pdf(["Gamma."]))
    write(corpus, "b/notes.MD", "Delta.")
    write(corpus, "bad/photo.txt", PNG_BYTES)
    write(corpus, "bad/empty.md", b"")
    write(corpus, "bad/scan.pdf", make_pdf([None]))
    write(corpus, "bad/locked.pdf", make_pdf(["x"], password="pw"))
    write(corpus, "ignored/image.png", PNG_BYTES)
    write(corpus, "ignored/.hidden.txt", "Hidden.")
    write(corpus, ".git/config.txt", "Hidden folder.")

    documents, skipped = load_corpus(corpus)

    assert [d.path for d in documents] == [
        "corpus/a.txt",
        "corpus/b/doc.pdf",
        "corpus/b/notes.MD",
        "corpus/b/page.html",
    ]
    assert [d.text for d in documents] == ["Alpha.", "Gamma.", "Delta.", "Beta."]
    reasons = dict(skipped)
    assert sorted(reasons) == [
        "corpus/bad/empty.md",
        "corpus/bad/locked.pdf",
        "corpus/bad/photo.txt",
        "corpus/bad/scan.pdf",
        "corpus/ignored/image.png",
    ]
    assert reasons["corpus/ignored/image.png"] == "has an unsupported type (.png)"
    assert "binary" in reasons["corpus/bad/photo.txt"]
    assert reasons["corpus/bad/empty.md"] == "is empty"
    assert "no text layer" in reasons["corpus/bad/scan.pdf"]
    assert "encrypted" in reasons["corpus/bad/locked.pdf"]


def test_skipped_files_are_logged_as_warnings(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(corpus, "photo.txt", PNG_BYTES)
    with caplog.at_level(logging.WARNING, logger="qa.documents"):
        load_corpus(corpus)
    assert caplog.messages == [
        "skipped corpus/photo.txt: looks like a binary file (PNG image), not text"
    ]


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="nowhere does not exist"):
        load_corpus(tmp_path / "nowhere")


def test_root_may_be_a_single_file(corpus: Path) -> None:
    path = write(corpus, "one.txt", "Just one.")
    documents, skipped = load_corpus(path)
    assert [(d.path, d.text) for d in documents] == [("one.txt", "Just one.")]
    assert skipped == []


def test_symlink_loops_are_not_followed_forever(corpus: Path) -> None:
    write(corpus, "top.txt", "Top.")
    write(corpus, "sub/inner.txt", "Inner.")
    os.symlink(corpus / "sub", corpus / "sub" / "loop")  # a folder linked to its parent
    os.symlink(corpus, corpus / "sub" / "root")
    os.symlink(corpus / "top.txt", corpus / "zz-alias.txt")
    os.symlink(corpus / "gone.txt", corpus / "zz-broken.txt")

    documents, skipped = load_corpus(corpus)

    assert [d.path for d in documents] == ["corpus/sub/inner.txt", "corpus/top.txt"]
    assert skipped == [("corpus/zz-broken.txt", "is a broken symbolic link")]


def test_links_out_of_the_corpus_are_skipped_with_a_reason(tmp_path: Path, corpus: Path) -> None:
    """A file link (passwd.txt -> a file outside) and a folder link (etc -> a folder outside) are
    not followed: each is one skip with its reason, and nothing of theirs is loaded."""
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere, "far.txt", "Far away.")
    secret = write(tmp_path, "secret.txt", "root:x:0:0")
    write(corpus, "inside.txt", "Inside.")
    os.symlink(elsewhere, corpus / "linked")
    os.symlink(secret, corpus / "passwd.txt")
    os.symlink(corpus / "inside.txt", corpus / "zz-alias.txt")  # a link that stays inside: the same file, once

    documents, skipped = load_corpus(corpus)

    assert [(d.path, d.text) for d in documents] == [("corpus/inside.txt", "Inside.")]
    assert skipped == [
        ("corpus/linked", "is a link to a folder outside the corpus folder (QA_FOLLOW_LINKS=1 follows it)"),
        ("corpus/passwd.txt", "is a link to a file outside the corpus folder (QA_FOLLOW_LINKS=1 follows it)"),
    ]


def test_follow_links_follows_links_out_of_the_corpus(tmp_path: Path, corpus: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere, "far.txt", "Far away.")
    os.symlink(elsewhere, corpus / "linked")
    os.symlink(elsewhere / "far.txt", corpus / "far-alias.txt")
    skipped: list = []
    files = list_corpus_files(corpus, skipped, follow_links=True)
    assert [p.relative_to(corpus).as_posix() for p in files] == ["far-alias.txt"]  # the same file once
    assert skipped == []
    os.unlink(corpus / "far-alias.txt")
    assert [p.relative_to(corpus).as_posix() for p in list_corpus_files(corpus, follow_links=True)] == [
        "linked/far.txt"]


def test_file_deleted_during_iteration_is_skipped(corpus: Path) -> None:
    write(corpus, "a.txt", "First.")
    doomed = write(corpus, "b.txt", "Second.")
    write(corpus, "c.txt", "Third.")
    skipped: list = []
    documents = iter_documents(corpus, skipped=skipped)

    first = next(documents)  # the folder has been listed by now
    doomed.unlink()
    rest = list(documents)

    assert [d.path for d in [first, *rest]] == ["corpus/a.txt", "corpus/c.txt"]
    assert skipped == [("corpus/b.txt", "disappeared while indexing")]


def test_max_bytes_applies_to_the_walk(corpus: Path) -> None:
    write(corpus, "small.txt", "tiny")
    write(corpus, "large.txt", "x" * 5000)
    documents, skipped = load_corpus(corpus, max_bytes=1000)
    assert [d.path for d in documents] == ["corpus/small.txt"]
    assert skipped == [("corpus/large.txt", "is 4.9 KB; the limit is 1000 bytes")]


def test_unexpected_loader_failure_skips_only_that_file(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(corpus, "a.html", "<p>Fine.</p>")
    write(corpus, "b.html", "<p>Boom.</p>")

    import qa.documents as documents_module

    real = documents_module.html_to_text

    def flaky(markup: str, name: str = "") -> str:
        if "Boom" in markup:
            raise RecursionError("maximum recursion depth exceeded")
        return real(markup, name)

    monkeypatch.setattr(documents_module, "html_to_text", flaky)
    documents, skipped = load_corpus(corpus)
    assert [d.text for d in documents] == ["Fine."]
    assert skipped == [
        ("corpus/b.html", "could not be loaded (RecursionError: maximum recursion depth exceeded)")
    ]


# --------------------------------------------------------------------------- sentences


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


def test_split_sentences_keeps_abbreviations_together() -> None:
    text = (
        "Officials met on Monday. U.S. President-elect Donald Trump said "
        '"We will win." Then he left! Dr. Smith and J. K. Rowling arrived at 5 p.m. on Jan. 5. '
        "It cost 3.5 million, e.g. more than expected."
    )
    assert sentences(text) == [
        "Officials met on Monday.",
        'U.S. President-elect Donald Trump said "We will win."',
        "Then he left!",
        "Dr. Smith and J. K. Rowling arrived at 5 p.m. on Jan. 5.",
        "It cost 3.5 million, e.g. more than expected.",
    ]


def test_split_sentences_quotes_and_question_marks() -> None:
    text = '"Where are you?" she asked. "Here!" He waved. Was it 1999? 2000 was next.'
    assert sentences(text) == [
        '"Where are you?" she asked.',
        '"Here!"',
        "He waved.",
        "Was it 1999?",
        "2000 was next.",
    ]


def test_split_sentences_newlines() -> None:
    text = "Title\nFirst line ends here.\nA hard-wrapped sentence that\ncontinues here.\n\n  Indented paragraph\n\n\n"
    assert sentences(text) == [
        "Title",
        "First line ends here.",
        "A hard-wrapped sentence that\ncontinues here.",
        "Indented paragraph",
    ]
    assert split_sentences(text)[-1] == (text.index("Indented"), text.index("Indented") + 18)


def test_split_sentences_of_blank_text() -> None:
    assert split_sentences("") == []
    assert split_sentences(" \n\t ") == []


@given(st.text(alphabet=st.sampled_from(list("ab A.!?\"'\n\r\t U.S")), max_size=200))
def test_split_sentences_spans_cover_all_text_exactly(text: str) -> None:
    spans = split_sentences(text)
    covered = "".join(text[start:end] for start, end in spans)
    assert "".join(covered.split()) == "".join(text.split())  # every non-space char, in order
    for (start, end), (next_start, _) in zip(spans, spans[1:]):
        assert end <= next_start
    for start, end in spans:
        assert start < end
        assert text[start:end] == text[start:end].strip()
