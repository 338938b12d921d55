"""Hostile files an attacker uploaded to a running chat (issue 40), built here byte for byte, so the
tests and benchmarks/hostile_uploads.py need nothing from outside. Not a test module.

- `content_bomb_pdf`: a ~250 KB PDF whose pages share one compressed content stream that unpacks
  to ~70 MB of text operators; pypdf works about ten seconds a page on it before giving up.
- `cyclic_pages_pdf`: a page tree whose Pages node lists itself among its kids.
- `nested_arrays_pdf`: a page whose content is an array nested 100,000 deep.
- `no_text_pdf`: pages without a text layer (a scan without OCR).
- `polyglot_pdf`: a PDF header on an HTML page with a script (passes the upload's header check).
- `svg_in_html`: an HTML page whose only text lives in an SVG, with a script.
- `big_text`: a plain-text file of a given size, sentences of pseudo-words.
- `normal_pdf`: an ordinary text PDF, pages of justified lines in kerned TJ arrays, each page its
  own compressed stream: what a 300-page report costs to read.
"""

from __future__ import annotations

import io
import random
import zlib

MB = 2**20
#: One line of text operators, repeated to fill the bomb's shared content stream.
_BOMB_LINE = b"BT /F1 12 Tf 72 720 Td (bomb) Tj ET\n"


def content_bomb_pdf(pages: int = 200, stream_mb: int = 70) -> bytes:
    """`pages` pages sharing one FlateDecode content stream of `stream_mb` MB unpacked."""
    from pypdf import PdfWriter
    from pypdf.generic import NameObject, StreamObject

    writer = PdfWriter()
    font = _helvetica(writer)
    stream = StreamObject()
    stream._data = zlib.compress(_BOMB_LINE * (stream_mb * MB // len(_BOMB_LINE)), 9)
    stream[NameObject("/Filter")] = NameObject("/FlateDecode")
    shared = writer._add_object(stream)
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = shared
        page[NameObject("/Resources")] = _resources(font)
    return _written(writer)


def normal_pdf(pages: int = 300, lines: int = 46, seed: int = 5) -> bytes:
    """An ordinary report: `pages` pages of `lines` lines (~3,000 characters a page) set in kerned
    TJ arrays, as typesetters write them, each page its own compressed stream."""
    from pypdf import PdfWriter
    from pypdf.generic import NameObject, StreamObject

    rng = random.Random(seed)
    words = ["".join(rng.choices("etaoinshrdlucmfwypvbgk", k=rng.randint(2, 9))) for _ in range(4000)]
    writer = PdfWriter()
    font = _helvetica(writer)
    for number in range(1, pages + 1):
        ops = [b"BT /F1 10 Tf 12 TL 72 740 Td"]
        for _ in range(lines):
            parts = []
            for word in rng.choices(words, k=11):
                parts.append(f"({word}) -{rng.randint(200, 333)}")
            ops.append(f"[{' '.join(parts)}] TJ T*".encode("latin-1"))
        ops.append(f"0 -20 Td (Page {number}) Tj ET".encode("latin-1"))
        stream = StreamObject()
        stream._data = zlib.compress(b"\n".join(ops))
        stream[NameObject("/Filter")] = NameObject("/FlateDecode")
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = _resources(font)
    return _written(writer)


def no_text_pdf(pages: int = 2) -> bytes:
    """Blank pages: what a scan without OCR looks like to a text extractor."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    return _written(writer)


def cyclic_pages_pdf() -> bytes:
    """A page tree that loops: the root Pages node names itself as a kid, beside one real page."""
    return _raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        _stream(b"BT /F1 12 Tf 72 720 Td (The loop) Tj ET"),
    ])


def nested_arrays_pdf(depth: int = 100_000) -> bytes:
    """A page whose /Contents is an array nested `depth` deep (a parser that recurses overflows)."""
    return _raw_pdf([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents " + b"[" * depth + b"]" * depth + b" >>",
    ])


def polyglot_pdf() -> bytes:
    """A PDF header, then an HTML page with a script: a browser renders it, a PDF reader cannot."""
    return (b"%PDF-1.7\n%<html><head><title>poly</title></head><body><p>Polyglot text.</p>"
            b"<script>alert(document.cookie)</script></body></html>\n" + bytes(range(256)) * 4)


def svg_in_html() -> bytes:
    """An HTML page whose only text is inside an inline SVG (drawn, not read), with a script."""
    return (b"<!doctype html><html><head><title></title></head><body><svg xmlns='http://www.w3.org/2000/svg' "
            b"width='200' height='50'><text x='0' y='20'>Only drawn text</text><script>alert(1)</script></svg>"
            b"</body></html>")


def big_text(size: int, seed: int = 7) -> bytes:
    """Exactly `size` bytes of sentence-like ASCII text."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "vi", "ro", "pe", "du", "fa", "gi"]
    vocab = ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(3000)]
    sentences, length = [], 0
    while length < MB:
        sentence = " ".join(rng.choices(vocab, k=rng.randint(6, 18))).capitalize() + ". "
        sentences.append(sentence)
        length += len(sentence)
    chunk = "".join(sentences).encode()
    return (chunk * (size // len(chunk) + 1))[:size]


# --------------------------------------------------------------------------- helpers


def _helvetica(writer):
    from pypdf.generic import DictionaryObject, NameObject

    return writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"),
    }))


def _resources(font):
    from pypdf.generic import DictionaryObject, NameObject

    return DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})


def _written(writer) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _raw_pdf(objects: list[bytes]) -> bytes:
    """A PDF file of these objects (numbered from 1) with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
