"""Requests on the MI FIFO, cut from the byte stream: pure code, no I/O.

A request is ``:<reply FIFO name>:`` followed by a JSON-RPC object, as
opensips-cli writes it (with no newline) and as OpenSIPS's ``mi_fifo`` reads
it; an empty name asks for no reply.  Many clients share the FIFO; each one
writes its request in one ``write``, which a pipe keeps whole (up to
PIPE_BUF bytes), so requests follow one another but never interleave.

The end of a request is the end of its JSON object, found by counting
brackets outside strings, so several requests in one read are cut apart and
one split over several reads is put together.  When the last writer closes
the FIFO (``end``), a request left incomplete is a truncated one.  Every
problem is reported as a ``BadRequest`` carrying the reply FIFO name when it
is known, so that the client waiting on it gets an error instead of nothing,
and the framer goes on with the next request.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = ord(":")
# OpenSIPS refuses these in a reply FIFO name: the name must stay inside reply_dir.
FORBIDDEN_IN_NAME = frozenset(b"./\\\x00\r\n")
MAX_NAME = 255  # NAME_MAX of Linux file systems
WHITESPACE = frozenset(b" \t\r\n")


@dataclass(frozen=True, slots=True)
class Request:
    reply_name: str | None  # None: the client wants no reply
    body: bytes


@dataclass(frozen=True, slots=True)
class BadRequest:
    reply_name: str | None  # None: the name itself was unreadable, nobody can be told
    reason: str
    too_large: bool = False  # an invalid request; anything else is a parse error


Frame = Request | BadRequest


class FifoFramer:
    """``feed`` bytes as they are read, ``end`` when the last writer has closed."""

    def __init__(self, max_request: int) -> None:
        self.max_request = max_request
        self._buffer = bytearray()
        self._reset()

    def _reset(self) -> None:
        self._name: str | None = None
        self._in_body = False
        self._started = False  # the body's first byte was checked
        self._scanned = 0  # bytes of the body already scanned (kept in the buffer)
        self._size = 0  # bytes of the body so far, dropped ones included
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._skipping = False  # dropping garbage until the next ':'
        # Why the request in progress will be refused (its name was); its body is
        # still read to its end, so that the next request is found where it starts.
        self._refused: str | None = None

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while True:
            frame = self._next()
            if frame is None:
                return frames
            frames.append(frame)

    def end(self) -> list[Frame]:
        """The writers are gone: what is left is a truncated request (or blanks)."""
        frames = self.feed(b"")
        leftover = bytes(self._buffer).strip()
        if self._in_body or (leftover and not self._skipping):
            frames.append(
                BadRequest(self._name, self._refused or "truncated request: the writer closed the FIFO mid-request")
            )
        self._buffer.clear()
        self._reset()
        return frames

    # -- the steps ---------------------------------------------------------------

    def _next(self) -> Frame | None:
        if self._skipping and not self._skip_garbage():
            return None
        if not self._in_body:
            return self._header()
        return self._body()

    def _skip_garbage(self) -> bool:
        at = self._buffer.find(b":")
        if at < 0:
            self._buffer.clear()
            return False
        del self._buffer[:at]
        self._skipping = False
        return True

    def _skip_blanks(self) -> bool:
        """Drop leading blanks; whether anything is left."""
        buffer = self._buffer
        start = 0
        while start < len(buffer) and buffer[start] in WHITESPACE:
            start += 1
        del buffer[:start]
        return bool(buffer)

    def _header(self) -> Frame | None:
        buffer = self._buffer
        if not self._skip_blanks():
            return None
        if buffer[0] != SEPARATOR:
            self._skipping = True
            return BadRequest(None, "a request starts with ':<reply FIFO name>:'")
        end = buffer.find(b":", 1)
        if end < 0:
            if len(buffer) > MAX_NAME + 1:
                self._skipping = True
                del buffer[:1]
                return BadRequest(None, "the reply FIFO name is not closed by ':'")
            return None
        raw = bytes(buffer[1:end])
        del buffer[: end + 1]
        self._in_body = True
        if len(raw) > MAX_NAME or any(b in FORBIDDEN_IN_NAME for b in raw):
            self._refused = "forbidden reply FIFO name (no '.', '/' or '\\' allowed)"
        else:
            try:
                self._name = raw.decode("utf-8") or None
            except UnicodeDecodeError:
                self._refused = "the reply FIFO name is not UTF-8"
        return self._body()

    def _body(self) -> Frame | None:
        buffer = self._buffer
        if not self._started:
            if not self._skip_blanks():
                return None
            if buffer[0] not in b"{[":
                name, refused = self._name, self._refused
                self._reset()
                self._skipping = True
                return BadRequest(name, refused or "a JSON-RPC request is a JSON object")
            self._started = True
        end = self._scan()
        if end is None:
            if self._size > self.max_request:
                # Too big to keep: scanned on and dropped; answered once it ends.
                del buffer[:]
                self._scanned = 0
            return None
        body = bytes(buffer[:end])
        del buffer[:end]
        name, size, refused = self._name, self._size, self._refused
        self._reset()
        if refused is not None:
            return BadRequest(None, refused)
        if size > self.max_request:
            return BadRequest(name, f"request larger than {self.max_request} bytes", too_large=True)
        return Request(name, body)

    def _scan(self) -> int | None:
        """Where the JSON value ends (one past its last byte), or None if not yet."""
        buffer = self._buffer
        position = start = self._scanned
        depth, in_string, escaped = self._depth, self._in_string, self._escaped
        length = len(buffer)
        while position < length:
            byte = buffer[position]
            position += 1
            if in_string:
                if escaped:
                    escaped = False
                elif byte == 0x5C:  # backslash
                    escaped = True
                elif byte == 0x22:  # quote
                    in_string = False
            elif byte == 0x22:
                in_string = True
            elif byte in b"{[":
                depth += 1
            elif byte in b"}]":
                depth -= 1
                if depth == 0:
                    self._size += position - start
                    return position
        self._depth, self._in_string, self._escaped = depth, in_string, escaped
        self._size += position - start
        self._scanned = position
        return None
