"""Uploads from the web chat: hostile names, wrong content, size limits, atomic storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.documents import load_document
from qa.uploads import UploadError, safe_filename, save_upload

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
MB = 2**20


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../x.txt", "x.txt"),
        ("/etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini.txt", "win.ini.txt"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("a\x00b.txt", "ab.txt"),
        ("line\nbreak\r.md", "linebreak.md"),
        ("...hidden.md", "hidden.md"),
        ("café (1).txt", "cafe _1_.txt"),
        ("evil\u202etxt.pdf", "eviltxt.pdf"),
        ("日本語.pdf", "upload.pdf"),
        ("notes.txt", "notes.txt"),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize("name", ["", "..", "/", "dir/", "\x00\x00", "___", ". . ."])
def test_safe_filename_rejects_names_that_end_up_empty(name: str) -> None:
    with pytest.raises(UploadError, match="no usable characters"):
        safe_filename(name)


def test_safe_filename_shortens_long_names_keeping_the_suffix() -> None:
    name = safe_filename("a" * 300 + ".pdf")
    assert name == "a" * 116 + ".pdf"


def test_oversize_upload(tmp_path: Path) -> None:
    with pytest.raises(UploadError) as info:
        save_upload(b"a" * int(31.2 * MB), "big.txt", tmp_path, max_bytes=20 * MB)
    assert str(info.value) == "file is 31.2 MB; the limit is 20 MB"
    assert list(tmp_path.iterdir()) == []


def test_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(UploadError, match=r"setup\.exe: \.exe not supported; use \.csv, \.docx, \.eml, \.epub, \.htm"):
        save_upload(b"MZ", "setup.exe", tmp_path, max_bytes=MB)


def test_png_named_pdf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UploadError) as info:
        save_upload(PNG_BYTES, "paper.pdf", tmp_path / "uploads", max_bytes=MB)
    assert str(info.value) == "paper.pdf is not a PDF (it looks like a PNG image)"
    assert not (tmp_path / "uploads" / "paper.pdf").exists()


def test_text_without_pdf_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UploadError, match=r"paper\.pdf is not a PDF \(it has no %PDF header\)"):
        save_upload(b"just text", "paper.pdf", tmp_path, max_bytes=MB)


def test_png_named_txt_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UploadError) as info:
        save_upload(PNG_BYTES, "notes.txt", tmp_path, max_bytes=MB)
    assert str(info.value) == "notes.txt looks like a binary file (PNG image), not text"


@pytest.mark.parametrize("data", [b"", b"  \n\t"])
def test_empty_upload_is_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(UploadError, match=r"notes\.md is empty"):
        save_upload(data, "notes.md", tmp_path, max_bytes=MB)


def test_upload_is_stored_inside_upload_dir(tmp_path: Path) -> None:
    upload_dir = tmp_path / "corpus" / "uploads"
    path = save_upload(b"Hello there.", "../../../evil.txt", upload_dir, max_bytes=MB)
    assert path == upload_dir / "evil.txt"
    assert path.resolve().is_relative_to(upload_dir.resolve())
    assert path.read_bytes() == b"Hello there."
    assert not (tmp_path / "evil.txt").exists()
    assert sorted(p.name for p in upload_dir.iterdir()) == ["evil.txt"]  # no temp files left


def test_pdf_upload_with_valid_header(tmp_path: Path) -> None:
    data = b"%PDF-1.7\n% some pdf body\n%%EOF\n"
    assert save_upload(data, "paper.PDF", tmp_path, max_bytes=MB).read_bytes() == data


def test_duplicate_names_never_overwrite_a_different_file(tmp_path: Path) -> None:
    first = save_upload(b"Version one.", "notes.txt", tmp_path, max_bytes=MB)
    second = save_upload(b"Version two.", "notes.txt", tmp_path, max_bytes=MB)
    third = save_upload(b"Version three.", "sub/notes.txt", tmp_path, max_bytes=MB)
    assert [first.name, second.name, third.name] == ["notes.txt", "notes (2).txt", "notes (3).txt"]
    assert [p.read_bytes() for p in (first, second, third)] == [
        b"Version one.",
        b"Version two.",
        b"Version three.",
    ]


def test_same_content_again_returns_the_existing_file(tmp_path: Path) -> None:
    first = save_upload(b"Same bytes.", "notes.txt", tmp_path, max_bytes=MB)
    save_upload(b"Other bytes.", "notes.txt", tmp_path, max_bytes=MB)
    again = save_upload(b"Other bytes.", "notes.txt", tmp_path, max_bytes=MB)
    assert again == tmp_path / "notes (2).txt"
    assert first == tmp_path / "notes.txt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes (2).txt", "notes.txt"]


def test_saved_upload_loads_as_a_document(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    path = save_upload("Grüße aus Köln.".encode("utf-16"), "köln.txt", corpus / "uploads", MB)
    document = load_document(path, corpus)
    assert (document.path, document.text) == ("corpus/uploads/koln.txt", "Grüße aus Köln.")
