"""An email written straight to bytes: RFC 5322 headers (RFC 2047 encoded words for text that is not ASCII)
and a MIME body (text, or text and HTML as multipart/alternative), UTF-8, CRLF line ends.

Why not email.message.EmailMessage: with the default policy every header set is parsed back into objects
(email.headerregistry, email._header_value_parser), which cost this service about a sixth of its CPU for
seven headers whose shape is known here. What a reader parses out of these bytes (python's email package in
the SMTP sink and the tests included) is the same: tests/unit/test_mime.py checks it, non-ASCII included.
"""

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parseaddr
from functools import lru_cache

CRLF = "\r\n"
# An encoded word is at most 75 characters (RFC 2047 2); "=?utf-8?b?" + base64 of 42 bytes (56) + "?=" is 68, so
# that "Subject: " and a first word fit in a line of 78.
_WORD_BYTES = 42
# A line should stay within 78 characters (RFC 5322 2.1.1); it must within 998.
_FOLD_AT = 78
_MAX_LINE = 998
# A display name with any of these is written as a quoted string (RFC 5322 3.2.3 specials, as email.utils does).
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')
_ESCAPES = re.compile(r'[\\"]')

Header = tuple[str, str | datetime | tuple[str, str]]  # text, a date, or an address (display name, address)


@dataclass(frozen=True)
class OutgoingMail:
    """What an SMTP transaction needs: the envelope's sender and recipients, and the message as sent."""

    sender: str
    recipients: list[str]
    data: bytes

    @property
    def ascii_addresses(self) -> bool:
        return self.sender.isascii() and all(r.isascii() for r in self.recipients)


@lru_cache(maxsize=16)  # the sender's address (a setting) is parsed once, not for every mail
def address(text: str) -> tuple[str, str]:
    """("Platform", "n@example.test") from "Platform <n@example.test>" (a bare address has no name)."""
    name, addr = parseaddr(text)
    if not addr:
        raise ValueError(f"not an address: {text!r}")
    return name, addr


def mail_bytes(headers: list[Header], text: str, html: str | None, boundary: str) -> bytes:
    """The whole message. `boundary` (e.g. the notification id) makes the multipart separator; a part that
    contains it is written quoted-printable, where it cannot appear."""
    lines = [_header(name, value) for name, value in headers]
    lines.append("MIME-Version: 1.0")
    if html is None:
        lines += _part("plain", text, None)
        return _encode(lines)
    separator = f"=_{boundary}"
    lines += ["Content-Type: multipart/alternative;", f' boundary="{separator}"', "", f"--{separator}"]
    lines += _part("plain", text, separator)
    lines.append(f"--{separator}")
    lines += _part("html", html, separator)
    lines += [f"--{separator}--", ""]
    return _encode(lines)


def _encode(lines: list[str]) -> bytes:
    # Only an SMTPUTF8 address may carry bytes that are not ASCII into a header; the bodies are ASCII already.
    return CRLF.join(lines).encode("utf-8")


def _header(name: str, value: str | datetime | tuple[str, str]) -> str:
    if isinstance(value, datetime):
        return f"{name}: {format_datetime(value)}"
    if isinstance(value, tuple):
        return _fold(f"{name}:", _mailbox(*value))
    _one_line(value)
    return _fold(f"{name}:", _encoded_words(value) if _needs_encoding(value) else value.split(" "))


def _mailbox(name: str, addr: str) -> list[str]:
    """The words of `name <addr>`: the name as encoded words when it is not ASCII, else quoted when it must be."""
    _one_line(name)
    _one_line(addr)
    if any(c in addr for c in " <>\"(),;:\\[]") or addr.count("@") != 1:
        raise ValueError(f"not an address: {addr!r}")
    if not name:
        return [addr]
    if _needs_encoding(name):
        return [*_encoded_words(name), f"<{addr}>"]
    if _SPECIALS.search(name):
        name = '"' + _ESCAPES.sub(r"\\\g<0>", name) + '"'
    return [*name.split(" "), f"<{addr}>"]


def _needs_encoding(value: str) -> bool:
    # "=?" would read as the start of an encoded word: such text is encoded too, so it reads back as written.
    return not value.isascii() or "=?" in value


def _one_line(value: str) -> None:
    if "\r" in value or "\n" in value:
        raise ValueError(f"a header value may not contain a line break: {value!r}")


def _encoded_words(value: str) -> list[str]:
    """RFC 2047 'B' encoded words of UTF-8, each within 75 characters, never splitting a character."""
    words, chunk = [], b""
    for char in value:
        encoded = char.encode("utf-8")
        if len(chunk) + len(encoded) > _WORD_BYTES:
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return [f"=?utf-8?b?{base64.b64encode(word).decode('ascii')}?=" for word in words]


def _fold(start: str, words: list[str]) -> str:
    """`start` and the words joined by spaces, a line break before a word that would pass 78 characters.
    Unfolding (removing each CRLF) gives the words joined by single spaces back; adjacent encoded words
    decode to their text without the space between them (RFC 2047 6.2)."""
    lines, line = [], start
    for word in words:
        if word and line != start and len(line) + 1 + len(word) > _FOLD_AT:  # a line is never blank
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    if any(len(one) > _MAX_LINE for one in lines):
        raise ValueError(f"{start} has a word longer than a line may be")
    return CRLF.join(lines)


def _part(subtype: str, body: str, separator: str | None) -> list[str]:
    """A text part's headers, the blank line and its body: 7bit when it is short-lined ASCII (and does not
    contain the multipart separator), else quoted-printable. The body ends with a line break, and one more line
    follows it: the line break before a separator (or at the very end) belongs to the separator (RFC 2046 5.1.1),
    so the body reads back with its own last line break."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    if body.isascii() and (separator is None or separator not in body) \
            and max(map(len, body.split("\n"))) <= _MAX_LINE:
        encoding, encoded = "7bit", body
    else:
        encoding, encoded = "quoted-printable", binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii")
    return [f'Content-Type: text/{subtype}; charset="utf-8"', f"Content-Transfer-Encoding: {encoding}", "",
            *encoded.split("\n")]
