"""HTTP/1.1 server-side message parsing and framing for the lean front end (pure functions, no I/O).

Strict on purpose: whatever is ambiguous (both `Content-Length` and `Transfer-Encoding`, differing
lengths, an unknown transfer coding, obsolete line folding, bare CR or LF) is refused with a 400,
which closes the connection, so no request can be smuggled past the router.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from multidict import CIMultiDict

MAX_HEAD = 16 * 1024
"""Largest request head (request line and headers); above it the client gets 431."""
_MAX_CHUNK_LINE = 1024
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_HEADER_LINES = re.compile(r"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n]*\r\n)*")
_COMMON_METHODS = frozenset(("GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"))
_FRAMING = frozenset(("content-length", "transfer-encoding", "connection", "expect"))
_DATE = frozenset(("Date", "date", "DATE"))
_REASONS = {status.value: status.phrase for status in HTTPStatus}


class HeadError(ValueError):
    """A malformed request: answered with `status` and the connection closed."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class RequestHead:
    """A parsed request line and headers, with what framing and keep-alive need."""

    method: str
    target: str
    headers: CIMultiDict[str]
    http11: bool
    content_length: int | None
    chunked: bool
    keep_alive: bool
    expect_continue: bool


def parse_head(raw: bytes) -> RequestHead:
    """Parse a request head (without its final blank line); `HeadError` when malformed."""
    text = raw.decode("latin-1")
    line_end = text.find("\r\n")
    request_line, header_text = (text, "") if line_end < 0 else (text[:line_end], text[line_end + 2:] + "\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise HeadError("The request line is not `METHOD TARGET HTTP/1.1`.")
    method, target, version = parts
    if version == "HTTP/1.1":
        http11 = True
    elif version == "HTTP/1.0":
        http11 = False
    else:
        raise HeadError(f"Unsupported protocol version {version[:16]!r}.", 505 if version.startswith("HTTP/") else 400)
    if method not in _COMMON_METHODS and not _TOKEN.fullmatch(method):
        raise HeadError("The request method is not a token.")
    if target[:1] != "/" and not (target == "*" and method == "OPTIONS"):
        raise HeadError("The request target must be a path (origin form).")
    # One match checks every header line (token name, colon, no bare CR/LF, no folding).
    if header_text and not _HEADER_LINES.fullmatch(header_text):
        raise HeadError("A header line is malformed.")
    pairs: list[tuple[str, str]] = []
    length: int | None = None
    transfer = connection = expect = ""
    for line in header_text.split("\r\n")[:-1]:
        name, _, value = line.partition(":")
        value = value.strip(" \t")
        pairs.append((name, value))
        lower = name.lower()
        if lower not in _FRAMING:
            continue
        if lower == "content-length":
            if not value.isdigit() or not value.isascii() or (length is not None and int(value) != length):
                raise HeadError("The Content-Length header is not valid.")
            length = int(value)
        elif lower == "transfer-encoding":
            transfer = f"{transfer},{value}" if transfer else value
        elif lower == "connection":
            connection = f"{connection},{value.lower()}" if connection else value.lower()
        else:
            expect = value.lower()
    chunked = False
    if transfer:
        if length is not None:
            raise HeadError("A request may not carry both Content-Length and Transfer-Encoding.")
        if transfer.strip().lower() != "chunked":
            raise HeadError(f"Transfer-Encoding {transfer[:32]!r} is not supported (only chunked).", 501)
        chunked = True
    if connection:
        tokens = {t.strip() for t in connection.split(",")}
        keep_alive = "close" not in tokens if http11 else "keep-alive" in tokens
    else:
        keep_alive = http11
    return RequestHead(method, target, CIMultiDict(pairs), http11, length, chunked, keep_alive,
                       expect == "100-continue")


def looks_like_http(buffer: bytes | bytearray) -> bool:
    """False when the start of a request head cannot be HTTP (a TLS hello, binary noise)."""
    first = buffer[:1]
    return not first or first.isalpha()


class BodyTooLarge(Exception):
    """A chunked body grew past the limit."""


class ChunkedBody:
    """Decodes a chunked request body as its bytes arrive (extensions and trailers are ignored)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self._state = "size"
        self._remaining = 0

    def feed(self, buffer: bytearray) -> bool:
        """Consume what `buffer` holds of the body; True once the body is complete.

        Raises `HeadError` when the framing is malformed and `BodyTooLarge` past the limit."""
        while buffer:
            if self._state == "data":
                take = min(self._remaining, len(buffer))
                self.parts.append(bytes(buffer[:take]))
                del buffer[:take]
                self._remaining -= take
                if not self._remaining:
                    self._state = "crlf"
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > _MAX_CHUNK_LINE:
                    raise HeadError("A chunk-size line is too long.")
                return False
            line = bytes(buffer[:end])
            del buffer[:end + 2]
            if self._state == "crlf":
                if line:
                    raise HeadError("A chunk does not end with CRLF.")
                self._state = "size"
            elif self._state == "size":
                digits = line.split(b";", 1)[0].strip()
                if not _HEX.fullmatch(digits):
                    raise HeadError("A chunk size is not hexadecimal.")
                size = int(digits, 16)
                self.size += size
                if self.size > self.limit:
                    raise BodyTooLarge()
                self._remaining = size
                self._state = "data" if size else "trailer"
            elif not line:  # the blank line after the trailers ends the body
                return True
        return False

    def body(self) -> bytes:
        """The decoded body."""
        return b"".join(self.parts)


_date = ("", 0)


def http_date() -> str:
    """The `Date` header value, formatted once per second."""
    global _date
    now = int(time.time())
    if _date[1] != now:
        _date = (formatdate(now, usegmt=True), now)
    return _date[0]


def response_head(status: int, reason: str, headers: list[tuple[str, str]] | tuple[()], framing: str,
                  close: bool) -> bytes:
    """A response head; `framing` is the `Content-Length`/`Transfer-Encoding` line ('' for none)."""
    parts = [f"HTTP/1.1 {status} {reason or _REASONS.get(status, 'Unknown')}\r\n"]
    dated = False
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n")
        if name in _DATE:
            dated = True
    if not dated:
        parts.append(f"Date: {http_date()}\r\n")
    parts.append(framing)
    parts.append("Connection: close\r\n\r\n" if close else "\r\n")
    return "".join(parts).encode("latin-1", "replace")
