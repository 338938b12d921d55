"""E-mail messages (.eml) through the standard `email` package: the subject, sender, recipients and
date, the body (plain text, or the HTML part's visible text), then each attachment in a
supported format as a page of its own ("mail.eml, attachment 1"), read by that format's reader
under the same limits. Page 1 is the message itself.

An attachment in another format, or one that cannot be read, is named in the message's
"Attachments:" line with the reason and logged; it is never decoded when its type is not read,
so a 10 MB video attached to a note costs the parse, not the decode.
"""

from __future__ import annotations

import base64
import binascii
import email
import logging
import quopri
import re
from dataclasses import dataclass, replace
from email import policy
from email.message import EmailMessage, Message
from pathlib import PurePosixPath

from typing import TYPE_CHECKING

from qa.errors import DocumentError
from qa.formats.common import TextBuilder, one_line
from qa.formats.limits import Limits
from qa.html_text import html_to_text
from qa.text_decoding import binary_kind, decode_text

if TYPE_CHECKING:
    from qa.formats import InnerFiles

logger = logging.getLogger(__name__)

KIND = "e-mail message"
_HEADERS = ("Subject", "From", "To", "Cc", "Date")
_NAME_CHARS = re.compile(r"[^\w .()\[\]-]+")


@dataclass
class _Attachment:
    filename: str
    text: str = ""
    reason: str = ""


def eml_text(data: bytes, name: str, limits: Limits, inner: InnerFiles) -> tuple[str, tuple[int, ...]]:
    """The message and its attachments of the types `inner` reads; paged only when an attachment
    was read."""
    out = TextBuilder(name, limits.max_chars)
    message = _parse(data, name)
    attachments = _message(message, name, out, limits, inner, depth=0)
    if out.empty:
        raise DocumentError(name, f"is not an {KIND} (no headers or text)")
    read = [a for a in attachments if a.text]
    for number, attachment in enumerate(read, 1):
        out.page()
        out.line(f"Attachment {number}: {attachment.filename}")
        out.line(attachment.text)
    return out.build(paged=bool(read))


def _parse(data: bytes, name: str) -> EmailMessage:
    found = binary_kind(data)
    if found:
        raise DocumentError(name, f"is not an {KIND} (it looks like a {found})")
    message = email.message_from_bytes(data, policy=policy.default)
    if not any(message.get(header) for header in ("From", "Subject", "Date", "To", "Message-ID")):
        raise DocumentError(name, f"is not an {KIND} (no From, To, Subject or Date header)")
    return message  # type: ignore[return-value]  # policy.default makes EmailMessage


def _message(
    message: Message, name: str, out: TextBuilder, limits: Limits, inner: InnerFiles, depth: int
) -> list[_Attachment]:
    """Write the headers and body to `out`; return the attachments, read or with a reason."""
    for header in _HEADERS:
        value = _header(message, header)
        if value:
            out.line(f"{header}: {value}")
    body = _body(message, name)
    attachments = _attachments(message, name, limits, inner, depth, budget=limits.max_chars - len(body))
    if attachments:
        listed = "; ".join(a.filename + (f" (not read: {a.reason})" if a.reason else "") for a in attachments)
        out.line(f"Attachments: {listed}")
    if body.strip():
        out.line(body, gap=True)
    return attachments


def _header(message: Message, header: str) -> str:
    try:
        value = message.get(header)
        return one_line(str(value)) if value is not None else ""
    except Exception as exc:  # noqa: BLE001 - the email package's header parser has many failure modes
        logger.debug("unreadable %s header: %s", header, exc)
        return ""


def _body(message: Message, name: str) -> str:
    """The plain-text body, else the HTML body's visible text, else ""."""
    if not isinstance(message, EmailMessage):
        return ""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = _part_text(part, name)
    if part.get_content_subtype() == "html" and text.strip():
        try:
            return html_to_text(text, name)
        except DocumentError:
            return ""
    return text


def _part_text(part: Message, name: str) -> str:
    try:
        content = part.get_content()
        if isinstance(content, str):
            return content
    except (LookupError, ValueError, AssertionError, KeyError) as exc:  # an unknown charset, bad transfer encoding
        logger.debug("%s: undecodable body part (%s); decoding it by its bytes", name, exc)
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload:
        return ""
    try:
        return decode_text(payload, name)
    except DocumentError:
        return ""


def _attachments(
    message: Message, name: str, limits: Limits, inner: InnerFiles, depth: int, budget: int
) -> list[_Attachment]:
    if not isinstance(message, EmailMessage):
        return []
    found: list[_Attachment] = []
    for part in message.iter_attachments():
        filename = _filename(part, len(found) + 1)
        attachment = _Attachment(filename)
        found.append(attachment)
        suffix = PurePosixPath(filename).suffix.lower()
        if len(found) > limits.max_attachments:
            attachment.reason = f"more than {limits.max_attachments} attachments"
        elif suffix not in inner.suffixes:
            attachment.reason = f"{suffix or 'files without a suffix'} not supported"
        elif suffix == ".eml" and depth + 1 >= limits.max_mail_depth:
            attachment.reason = f"mail nested more than {limits.max_mail_depth} deep"
        else:
            attachment.text, attachment.reason = _read_attachment(part, suffix, f"{name}: {filename}", limits,
                                                                  inner, depth, budget)
            budget -= len(attachment.text)
        if attachment.reason:
            logger.warning("%s: attachment %s not read: %s", name, filename, attachment.reason)
    return found


def _read_attachment(part: Message, suffix: str, label: str, limits: Limits, inner: InnerFiles, depth: int,
                     budget: int) -> tuple[str, str]:
    """(text, "") for an attachment that was read, ("", reason) for one that was not."""
    if budget <= 0:
        return "", "the message's text is at its limit already"
    if part.get_content_type() == "message/rfc822":
        data = _attached_mail(part)
    else:
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
    if not data:
        return "", "it is empty"
    inner_limits = replace(limits, max_chars=budget)
    try:
        if suffix == ".eml":  # read here, to count how deep mail nests
            text, _ = _nested_mail(data, label, inner_limits, inner, depth + 1)
        else:
            text, _ = inner.read(data, suffix, label, inner_limits)
    except DocumentError as exc:
        return "", exc.reason
    except Exception as exc:  # noqa: BLE001 - a parser bug on one attachment must not lose the message
        logger.debug("attachment %s failed", label, exc_info=True)
        return "", f"could not be read ({type(exc).__name__}: {exc})"
    if len(text) > budget:
        return "", (f"has {len(text):,} characters of text, more than the {budget:,} left of the limit of "
                    f"{limits.max_chars:,} for one file")
    return text, ""


def _attached_mail(part: Message) -> bytes:
    """The bytes of a message attached as message/rfc822. It arrives parsed; some mail programs
    also encode it in base64, which the parser does not undo for this type."""
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if not isinstance(inner, Message):
        return b""
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding in ("base64", "quoted-printable"):
        body = inner.get_payload()
        text = body if isinstance(body, str) else ""
        try:
            return base64.b64decode(text) if encoding == "base64" else quopri.decodestring(text.encode())
        except (binascii.Error, ValueError):
            return b""
    return inner.as_bytes(policy=policy.default)


def _nested_mail(
    data: bytes, name: str, limits: Limits, inner: InnerFiles, depth: int
) -> tuple[str, tuple[int, ...]]:
    out = TextBuilder(name, limits.max_chars)
    attachments = _message(_parse(data, name), name, out, limits, inner, depth)
    for attachment in attachments:
        if attachment.text:
            out.line(f"Attachment: {attachment.filename}", gap=True)
            out.line(attachment.text)
    return out.build(paged=False)


def _filename(part: Message, number: int) -> str:
    """The attachment's own name, made printable, or "attachment N" with the suffix its type has."""
    try:
        raw = part.get_filename() or ""
    except (ValueError, TypeError, LookupError):
        raw = ""
    cleaned = _NAME_CHARS.sub("_", one_line(str(raw))).strip(" ._")[:120]
    if cleaned:
        return cleaned
    if part.get_content_type() == "message/rfc822":
        return f"attachment {number}.eml"
    return f"attachment {number}"
