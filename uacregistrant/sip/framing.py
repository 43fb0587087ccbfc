"""Message framing on TCP/TLS byte streams (RFC 3261 §18.3, RFC 5626 §3.5.1)."""

from __future__ import annotations

import re

from uacregistrant.sip.errors import ParseError

__all__ = ["StreamFramer"]

_CRLF = b"\r\n"
_PING = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I)


class StreamFramer:
    """Cut a byte stream into whole SIP messages by their Content-Length.

    CRLF keep-alives between messages are skipped and counted in ``keepalives``:
    a double-CRLF ping or a single-CRLF pong counts once (a ping split across two
    reads counts twice). After a ParseError the stream is beyond repair and the
    caller closes the connection.
    """

    def __init__(self, max_header_size: int = 65536, max_body_size: int = 1 << 20) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.keepalives = 0
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the messages they complete, in order."""
        buffer = self._buffer
        buffer += data
        messages = []
        while buffer:
            if buffer.startswith(_CRLF):
                if buffer.startswith(_PING):
                    del buffer[:4]
                else:
                    del buffer[:2]
                self.keepalives += 1
                continue
            end = buffer.find(_PING)
            if end < 0:
                if len(buffer) > self.max_header_size:
                    raise ParseError("header section too large")
                break
            if end > self.max_header_size:
                raise ParseError("header section too large")
            body_length = self._content_length(bytes(buffer[: end + 2]))
            total = end + 4 + body_length
            if len(buffer) < total:
                break
            messages.append(bytes(buffer[:total]))
            del buffer[:total]
        return messages

    def _content_length(self, head: bytes) -> int:
        values = {match.group(1).strip(b" \t") for match in _CONTENT_LENGTH.finditer(head)}
        if not values:
            raise ParseError("missing Content-Length on a stream")
        if len(values) > 1:
            raise ParseError("conflicting Content-Length values")
        value = values.pop()
        if not value.isdigit():
            raise ParseError("malformed Content-Length")
        if len(value) > 10:
            # Also keeps int() below its limit on the number of digits.
            raise ParseError("body too large")
        length = int(value)
        if length > self.max_body_size:
            raise ParseError("body too large")
        return length
