"""MI over a FIFO, as OpenSIPS's ``mi_fifo`` module serves it and opensips-cli calls it.

opensips-cli (``communication_type = fifo``) makes a reply FIFO of its own in
its ``fifo_reply_dir``, writes ``:<reply FIFO name>:<JSON-RPC request>`` into
our FIFO, then opens its reply FIFO and reads the JSON-RPC reply until we
close it.  The name is joined to our ``mi_fifo_reply_dir``; as in OpenSIPS it
may not hold ``.``, ``/`` or ``\\``, and the reply FIFO must be a FIFO with one
link, no symbolic link.

Nothing here blocks the reactor: our FIFO is read without blocking as data
comes (and reopened after each last writer closes it, which is how a
truncated request is told from a slow one); a reply FIFO is opened without
blocking, retried while the client has not opened it yet, and written as it
drains, big ``reg_list`` replies piece by piece.  The commands, the JSON-RPC
envelope and the errors are those of MI over HTTP (``jsonrpc``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import Any

from twisted.internet import abstract, main, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from .fifo_frames import BadRequest, FifoFramer, Frame, Request
from .jsonrpc import (
    INVALID_CALL,
    PARSE_ERROR,
    CommandTable,
    MIError,
    ProducerForTask,
    StreamedList,
    error_body,
    error_of,
    invalid_request,
    parse_call,
    run_call,
    stream_pieces,
    write_each,
)

log = Logger()

READ_SIZE = 65536
READS_PER_TURN = 16  # a flood of requests cannot hold the reactor
# The client opens its reply FIFO right after writing the request; when the
# reply is ready first, try again, for up to REPLY_WAIT seconds in all.
REPLY_RETRY = 0.05
REPLY_WAIT = 5.0
# As OpenSIPS: every 30 s the FIFO file is checked and made again if it is gone.
CHECK_INTERVAL = 30.0


class FifoError(Exception):
    """The FIFO cannot be served; the text says why, naming the path."""


class MIFifo:
    """Serves ``commands`` on the FIFO at ``path`` (created at ``start``, removed at ``stop``)."""

    def __init__(
        self,
        reactor: Any,
        path: str,
        commands: CommandTable,
        *,
        reply_dir: str = "/tmp/",
        mode: int = 0o660,
        max_request: int = 1 << 20,
        on_call: Callable[[str, str], None] | None = None,
    ) -> None:
        self.reactor = reactor
        self.path = path
        self.commands = commands
        self.reply_dir = reply_dir
        self.mode = mode
        self.max_request = max_request
        self._on_call = on_call or (lambda method, result: None)
        self._reader: _FifoReader | None = None
        self._check = task.LoopingCall(self._check_file)
        self._check.clock = reactor

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        if not os.path.isdir(self.reply_dir):
            raise FifoError(f"reply directory {self.reply_dir} is not a directory")
        self._make()
        self._reader = _FifoReader(self.reactor, self.path, FifoFramer(self.max_request), self._frame)
        self._reader.start()
        self._check.start(CHECK_INTERVAL, now=False)

    def stop(self) -> None:
        if self._check.running:
            self._check.stop()
        if self._reader is not None:
            identity = self._reader.identity
            self._reader.stop()
            self._reader = None
            if _identity(self.path) == identity:
                os.unlink(self.path)

    def _make(self) -> None:
        """Create the FIFO; a stale FIFO left by an earlier run is replaced, anything else is not touched."""
        try:
            found = os.lstat(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise FifoError(f"cannot check {self.path}: {e.strerror}") from None
        else:
            if not stat.S_ISFIFO(found.st_mode):
                raise FifoError(f"{self.path} exists and is not a FIFO; it is left alone")
            log.info("removing the stale FIFO {path}", path=self.path)
            os.unlink(self.path)
        try:
            os.mkfifo(self.path, self.mode)
            os.chmod(self.path, self.mode)  # whatever the umask
        except OSError as e:
            raise FifoError(f"cannot create the FIFO {self.path}: {e.strerror}") from None

    def _check_file(self) -> None:
        reader = self._reader
        if reader is None or _identity(self.path) == reader.identity:
            return
        log.warn("the FIFO {path} was removed or replaced: making it again", path=self.path)
        try:
            self._make()
            reader.reopen()
        except (FifoError, OSError) as e:
            log.error("cannot make the FIFO again: {why}", why=str(e))

    # -- requests -----------------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        if isinstance(frame, BadRequest):
            self._on_call(INVALID_CALL, "error")
            log.warn("bad request on the MI FIFO: {reason}", reason=frame.reason)
            if frame.reply_name is not None:
                error = (
                    invalid_request(frame.reason)
                    if frame.too_large
                    else MIError(PARSE_ERROR, "Parse error", frame.reason)
                )
                self._reply(frame.reply_name, error_body(error))
            return
        self._request(frame)

    def _request(self, frame: Request) -> None:
        try:
            call = parse_call(frame.body)
        except MIError as error:
            self._on_call(INVALID_CALL, "error")
            if frame.reply_name is not None:
                self._reply(frame.reply_name, error_body(error))
            return
        label, outcome = run_call(self.commands, call)
        # As OpenSIPS: a notification (no id) is run and gets no reply, but a
        # client that named a reply FIFO is let go with an empty one.
        wanted = frame.reply_name if not call.notification else None

        def done(encoded: bytes | StreamedList) -> None:
            self._on_call(label, "ok")
            if frame.reply_name is not None:
                self._reply(frame.reply_name, encoded if wanted else b"", call.request_id)

        def failed(failure: Failure) -> None:
            self._on_call(label, "error")
            error = error_of(failure, label)
            if frame.reply_name is not None:
                self._reply(frame.reply_name, error_body(error, call.request_id) if wanted else b"")

        outcome.addCallbacks(done, failed)

    def _reply(self, name: str, payload: bytes | StreamedList, request_id: object = None) -> None:
        path = os.path.join(self.reply_dir, name)
        _open_reply(self.reactor, path, REPLY_WAIT).addCallbacks(
            lambda writer: writer.send(payload, request_id),
            lambda failure: log.warn(
                "no reply on the MI FIFO to {path}: {why}", path=path, why=failure.getErrorMessage()
            ),
        )


def _identity(path: str) -> tuple[int, int] | None:
    try:
        found = os.lstat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino) if stat.S_ISFIFO(found.st_mode) else None


@implementer(IReadDescriptor)
class _FifoReader:
    """Reads our FIFO as data comes; after the last writer closes it, opens it again."""

    def __init__(self, reactor: Any, path: str, framer: FifoFramer, on_frame: Callable[[Frame], None]) -> None:
        self.reactor = reactor
        self.path = path
        self.framer = framer
        self.on_frame = on_frame
        self._fd = -1
        self.identity: tuple[int, int] | None = None

    def start(self) -> None:
        self._fd = self._open()
        self.reactor.addReader(self)

    def stop(self) -> None:
        if self._fd >= 0:
            self.reactor.removeReader(self)
            os.close(self._fd)
            self._fd = -1

    def reopen(self) -> None:
        # The new descriptor first: there is a reader all along, so a client
        # opening the FIFO meanwhile neither blocks nor loses what it wrote.
        fd = self._open()
        self.reactor.removeReader(self)
        os.close(self._fd)
        self._fd = fd
        self.reactor.addReader(self)

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        found = os.fstat(fd)
        self.identity = (found.st_dev, found.st_ino)
        return fd

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "MI FIFO"

    def doRead(self) -> None:
        for _ in range(READS_PER_TURN):
            try:
                data = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                return None
            except OSError as e:
                log.error("reading the MI FIFO failed: {why}", why=e.strerror)
                data = b""
            if not data:
                self._writers_gone()
                return None
            for frame in self.framer.feed(data):
                self.on_frame(frame)
        return None

    def connectionLost(self, reason: Failure) -> None:
        # A hang-up with nothing left to read: the reactor has dropped us already.
        if self._fd >= 0:
            self._writers_gone()

    def _writers_gone(self) -> None:
        for frame in self.framer.end():
            self.on_frame(frame)
        self.reopen()


def _open_reply(reactor: Any, path: str, wait: float) -> Deferred:
    """A writer on the client's reply FIFO, once the client has opened it for reading."""
    result: Deferred = Deferred()
    deadline = reactor.seconds() + wait

    def attempt() -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as e:
            if e.errno == errno.ENXIO and reactor.seconds() < deadline:
                reactor.callLater(REPLY_RETRY, attempt)  # no reader yet
            elif e.errno == errno.ENXIO:
                result.errback(Failure(FifoError(f"no client reads {path}")))
            else:
                result.errback(Failure(FifoError(f"cannot open {path}: {e.strerror}")))
            return
        problem = _reply_fifo_problem(fd, path)
        if problem is not None:
            os.close(fd)
            result.errback(Failure(FifoError(problem)))
            return
        result.callback(_ReplyWriter(reactor, fd))

    attempt()
    return result


def _reply_fifo_problem(fd: int, path: str) -> str | None:
    """OpenSIPS's checks: a FIFO, one link, the very file the name leads to."""
    opened = os.fstat(fd)
    if not stat.S_ISFIFO(opened.st_mode):
        return f"{path} is not a FIFO"
    if opened.st_nlink > 1:
        return f"{path} is hard-linked {opened.st_nlink} times"
    try:
        named = os.lstat(path)
    except OSError as e:
        return f"cannot check {path}: {e.strerror}"
    if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
        return f"{path} was replaced while being opened"
    return None


class _ReplyWriter(abstract.FileDescriptor):
    """Writes one reply into a reply FIFO as the client drains it, then closes it."""

    def __init__(self, reactor: Any, fd: int) -> None:
        super().__init__(reactor)
        self._fd = fd
        self.connected = True

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "MI FIFO reply"

    def send(self, payload: bytes | StreamedList, request_id: object) -> None:
        if not isinstance(payload, StreamedList):
            self.write(payload)
            self.loseConnection()
            return
        streaming = task.cooperate(write_each(self, stream_pieces(payload, request_id)))
        self.registerProducer(ProducerForTask(streaming), True)

        def finished(_: object) -> None:
            self.unregisterProducer()
            self.loseConnection()

        def broken(failure: Failure) -> None:
            if not failure.check(task.TaskStopped):
                log.failure("Streaming an MI FIFO reply failed", failure)
            self.unregisterProducer()
            self.loseConnection()

        streaming.whenDone().addCallbacks(finished, broken)

    def writeSomeData(self, data: bytes) -> int | BaseException:
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError:
            return main.CONNECTION_LOST  # the client went away

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        os.close(self._fd)
        self._fd = -1
