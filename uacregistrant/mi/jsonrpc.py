"""JSON-RPC 2.0 over HTTP, as OpenSIPS ``mi_http`` serves it and opensips-cli calls it.

The resource knows nothing about registrants: it validates the envelope, binds
parameters to a command's declared parameter sets the way the OpenSIPS MI core
does (``mi/mi.c``), runs the handler and encodes the reply.  Every JSON-RPC
error goes out with HTTP 200, because opensips-cli drops the body of any other
status and only prints "Is OpenSIPS running?".
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

log = Logger()

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000

TOO_FEW_OR_TOO_MANY = "Too few or too many parameters"
NAMES_DO_NOT_MATCH = "Named parameters do not match"

# Built in like OpenSIPS' core command: opensips-cli sends it before every call
# and refuses to run a command that is missing from its answer.
WHICH = "which"

# Labels handed to on_call for calls that never reached a command, so that a
# client cannot mint new metric label values by inventing method names.
UNKNOWN_METHOD = "<unknown>"
INVALID_CALL = "<invalid>"

STREAM_CHUNK = 500

Params = dict[str, Any]
Handler = Callable[[Params], Any]


class MIError(Exception):
    """A JSON-RPC error object; raise it from a handler to answer with it."""

    def __init__(self, code: int, message: str, data: object | None = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def parse_error() -> MIError:
    return MIError(PARSE_ERROR, "Parse error")


def invalid_request(data: str | None = None) -> MIError:
    return MIError(INVALID_REQUEST, "Invalid Request", data)


def method_not_found() -> MIError:
    return MIError(METHOD_NOT_FOUND, "Method not found")


def invalid_params(data: str) -> MIError:
    return MIError(INVALID_PARAMS, "Invalid params", data)


def internal_error() -> MIError:
    return MIError(INTERNAL_ERROR, "Internal error")


def server_error(data: str | None = None) -> MIError:
    return MIError(SERVER_ERROR, "Server error", data)


@dataclass(frozen=True, slots=True)
class StreamedList:
    """A handler result ``{key: [item, ...]}`` written to the client in chunks.

    The resource sends ``{"jsonrpc":"2.0","result":{"<key>":[``, then the
    items, ``STREAM_CHUNK`` per reactor turn (``twisted.internet.task.cooperate``)
    so that a 100,000-record ``reg_list`` never stalls SIP traffic, then
    ``]},"id":...}``.  ``items`` is consumed lazily; each item must be
    JSON-serialisable.  Once the first byte is out the status is fixed at 200,
    so an item that fails to encode aborts the connection instead.
    """

    key: str
    items: Iterable[object]


@dataclass(frozen=True, slots=True)
class Command:
    """An MI command: its handler and the parameter sets it accepts.

    ``param_sets`` lists the accepted sets of parameter names in declared
    order, e.g. ``((), ("aor", "contact", "registrar"))``.  A name ending in
    ``?`` is optional.  The handler gets ``{name: value}`` with values exactly
    as sent and returns a JSON value, a ``StreamedList`` or a Deferred of one.
    """

    name: str
    handler: Handler
    param_sets: tuple[tuple[str, ...], ...] = ((),)
    aliases: tuple[str, ...] = ()


class CommandTable:
    """Commands by name and alias."""

    def __init__(self) -> None:
        self._by_name: dict[str, Command] = {}

    def add(self, command: Command) -> None:
        for name in (command.name, *command.aliases):
            if name in self._by_name or name == WHICH:
                raise ValueError(f"MI command name {name!r} is already taken")
        for name in (command.name, *command.aliases):
            self._by_name[name] = command

    def replace(self, command: Command) -> None:
        """Add ``command``, in place of any command of the same names (a test's stand-in)."""
        for name in (command.name, *command.aliases):
            self._by_name.pop(name, None)
        self.add(command)

    def names(self) -> list[str]:
        return list(self._by_name)

    def resolve(self, name: str) -> Command | None:
        return self._by_name.get(name)


@dataclass(frozen=True, slots=True)
class _ParamSet:
    required: tuple[str, ...]
    optional: tuple[str, ...]

    @classmethod
    def parse(cls, names: tuple[str, ...]) -> _ParamSet:
        return cls(
            required=tuple(n for n in names if not n.endswith("?")),
            optional=tuple(n[:-1] for n in names if n.endswith("?")),
        )

    @property
    def declared(self) -> tuple[str, ...]:
        return self.required + self.optional

    def fits_count(self, count: int) -> bool:
        return len(self.required) <= count <= len(self.declared)


def bind_params(command: Command, params: object) -> Params:
    """Map JSON-RPC ``params`` onto one of the command's parameter sets.

    Same rules as the OpenSIPS MI core: no params, ``{}`` or ``[]`` is the
    empty set; a list binds by position to the first set of that length
    (sets without optional names first); an object must name a set exactly.
    """
    sets = [_ParamSet.parse(names) for names in command.param_sets]
    if params is None or params == [] or params == {}:
        params = []
    if isinstance(params, list):
        count = len(params)
        fixed = [s for s in sets if not s.optional and len(s.required) == count]
        flexible = [s for s in sets if s.optional and s.fits_count(count)]
        for param_set in fixed + flexible:
            return dict(zip(param_set.declared, params))
        raise invalid_params(TOO_FEW_OR_TOO_MANY)
    if isinstance(params, dict):
        keys = set(params)
        for param_set in sets:
            if set(param_set.required) <= keys <= set(param_set.declared):
                return dict(params)
        if any(s.fits_count(len(keys)) for s in sets):
            raise invalid_params(NAMES_DO_NOT_MATCH)
        raise invalid_params(TOO_FEW_OR_TOO_MANY)
    raise invalid_request("params must be an array or an object")


def _dumps(value: object) -> bytes:
    # UTF-8 as OpenSIPS writes it, not \u escapes.  A lone surrogate (text that
    # was not UTF-8 to begin with) stays a \u escape, still valid JSON.
    # allow_nan=False: NaN and Infinity are not JSON; a value holding one
    # fails here and becomes an error reply instead of a body no client parses.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8", "backslashreplace"
    )


def _envelope(body: dict[str, object], request_id: object) -> bytes:
    # OpenSIPS puts the id last; keep that order for byte-level lookalikes.
    return _dumps({"jsonrpc": "2.0", **body, "id": request_id})


def error_body(error: MIError, request_id: object = None) -> bytes:
    """A JSON-RPC error reply, encoded."""
    return _envelope({"error": error.to_json()}, request_id)


def _encode_result(result: object, request_id: object) -> bytes | StreamedList:
    # Encoded before anything is written, so an unserialisable result becomes
    # an error reply.  opensips-cli takes a null result for a failure: send "OK".
    if isinstance(result, StreamedList):
        return result
    return _envelope({"result": "OK" if result is None else result}, request_id)


@dataclass(frozen=True, slots=True)
class Call:
    """One JSON-RPC request, its envelope checked."""

    method: str
    params: object
    request_id: object
    notification: bool


def bearer_ok(authorization: bytes | None, token: bytes | None) -> bool:
    """Whether an Authorization header value carries ``Bearer <token>``;
    anything goes when no token is configured."""
    if token is None:
        return True
    scheme, _, credentials = (authorization or b"").partition(b" ")
    # Compare in constant time so the token cannot be guessed byte by byte.
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token)


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if number in (math.inf, -math.inf):
        # 1e999 overflows: it could only be echoed back as Infinity.
        raise ValueError("number out of range")
    return number


def _loads(body: bytes) -> object:
    """RFC 8259 JSON only: no NaN or Infinity, no number that overflows a
    double, nesting as deep as the parser's recursion allows."""
    try:
        return json.loads(body, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: thousands of nested brackets, within the body limit.
        raise parse_error() from None


def parse_call(body: bytes) -> Call:
    """The request in ``body``, or the MIError (parse error, invalid request) to answer."""
    message = _loads(body)
    if not isinstance(message, dict):
        raise invalid_request("batch requests are not supported" if isinstance(message, list) else None)
    if message.get("jsonrpc") != "2.0":
        raise invalid_request("jsonrpc must be \"2.0\"")
    method = message.get("method")
    if not isinstance(method, str):
        raise invalid_request("method must be a string")
    request_id = message.get("id")
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, (str, int, float))
    ):
        raise invalid_request("id must be a string, a number or null")
    params = message.get("params")
    if params is not None and not isinstance(params, (list, dict)):
        raise invalid_request("params must be an array or an object")
    return Call(method, params, request_id, notification="id" not in message)


class ProducerForTask:
    """Lets a transport (HTTP, a reply FIFO) pause a cooperative task when its buffer fills."""

    def __init__(self, cooperative_task: task.CooperativeTask) -> None:
        self._task = cooperative_task
        self._paused = False

    def pauseProducing(self) -> None:
        if not self._paused:
            self._paused = True
            self._task.pause()

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self._task.resume()

    def stopProducing(self) -> None:
        try:
            self._task.stop()
        except (task.TaskDone, task.TaskStopped, task.TaskFailed):
            pass


class MIResource(Resource):
    """``POST /mi``: the JSON-RPC 2.0 endpoint.

    ``on_call(method, result)`` is told about every call, ``result`` being
    ``"ok"`` or ``"error"``; ``method`` is the command's canonical name (an
    alias counts as its command), ``"which"``, ``UNKNOWN_METHOD`` or
    ``INVALID_CALL``.  With ``token`` set, ``Authorization: Bearer <token>``
    is required.
    """

    isLeaf = True

    def __init__(
        self,
        commands: CommandTable,
        *,
        token: str | None = None,
        max_body: int = 1 << 20,
        on_call: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__()
        self._commands = commands
        self._token = token.encode("utf-8") if token is not None else None
        self._max_body = max_body
        self._on_call = on_call

    def render(self, request: Request) -> bytes | int:
        if request.method != b"POST":
            request.setResponseCode(405)
            request.setHeader(b"Allow", b"POST")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Method Not Allowed: use POST\n"
        return self.render_POST(request)

    def render_POST(self, request: Request) -> bytes | int:
        request.setHeader(b"Content-Type", b"application/json")
        if not self._authorized(request):
            request.setResponseCode(401)
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="mi"')
            self._count(INVALID_CALL, "error")
            return error_body(MIError(401, "Unauthorized"))
        body = self._read_body(request)
        if body == b"":
            # As mi_http: an empty request is an HTTP error, not a JSON-RPC one.
            request.setResponseCode(400)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            self._count(INVALID_CALL, "error")
            return b""
        if body is None:
            request.setResponseCode(413)
            self._count(INVALID_CALL, "error")
            return error_body(invalid_request(f"body larger than {self._max_body} bytes"))
        try:
            call = parse_call(body)
        except MIError as error:
            self._count(INVALID_CALL, "error")
            return error_body(error)
        self._dispatch(request, call)
        return NOT_DONE_YET

    def _authorized(self, request: Request) -> bool:
        return bearer_ok(request.getHeader(b"Authorization"), self._token)

    def _read_body(self, request: Request) -> bytes | None:
        length = request.getHeader(b"Content-Length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            return None
        request.content.seek(0)
        body = request.content.read(self._max_body + 1)
        return None if len(body) > self._max_body else body

    def _count(self, method: str, result: str) -> None:
        if self._on_call is not None:
            self._on_call(method, result)

    def _dispatch(self, request: Request, call: Call) -> None:
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)
        label, outcome = run_call(self._commands, call)

        def reply(encoded: bytes | StreamedList) -> None:
            self._count(label, "ok")
            # A client that hung up gets nothing; the command still ran.
            if gone:
                return
            if call.notification:
                request.setResponseCode(202)
            elif isinstance(encoded, StreamedList):
                self._stream(request, encoded, call.request_id)
                return
            else:
                request.write(encoded)
            request.finish()

        def fail(failure: Failure) -> None:
            self._count(label, "error")
            if not gone:
                request.write(error_body(error_of(failure, label), call.request_id))
                request.finish()

        outcome.addCallbacks(reply, fail)

    def _stream(self, request: Request, result: StreamedList, request_id: object) -> None:
        gone: list[Failure] = []
        streaming = task.cooperate(write_each(request, stream_pieces(result, request_id)))
        producer = ProducerForTask(streaming)
        request.registerProducer(producer, True)

        def hung_up(failure: Failure) -> None:
            gone.append(failure)
            producer.stopProducing()

        request.notifyFinish().addErrback(hung_up)

        def done(_: object) -> None:
            request.unregisterProducer()
            if not gone:
                request.finish()

        def broken(failure: Failure) -> None:
            if failure.check(task.TaskStopped):
                return
            log.failure("Streaming an MI result failed", failure, level=LogLevel.error)
            request.unregisterProducer()
            # The status line is out already: only a cut connection says "failed".
            request.channel.transport.abortConnection()

        streaming.whenDone().addCallbacks(done, broken)



# -- what every transport shares ---------------------------------------------------------


def _run(command: Command | None, params: object) -> Any:
    if command is None:
        raise method_not_found()
    return command.handler(bind_params(command, params))


def run_call(commands: CommandTable, call: Call) -> tuple[str, defer.Deferred]:
    """Run a call: its metric label, and a Deferred of the encoded reply.

    The Deferred fires with bytes or a ``StreamedList`` (see ``stream_pieces``),
    or fails; ``error_of`` turns the failure into the error to answer.
    """
    if call.method == WHICH:
        label, outcome = WHICH, defer.succeed(commands.names() + [WHICH])
    else:
        command = commands.resolve(call.method)
        label = command.name if command is not None else UNKNOWN_METHOD
        outcome = defer.maybeDeferred(_run, command, call.params)
    return label, outcome.addCallback(_encode_result, call.request_id)


def error_of(failure: Failure, label: str) -> MIError:
    """The JSON-RPC error for a failed call; anything but an MIError is logged."""
    if failure.check(MIError):
        return failure.value
    # The exception text may carry secrets: it goes to the log only.
    log.failure("MI command {method} failed", failure, level=LogLevel.error, method=label)
    return internal_error()


def stream_pieces(result: StreamedList, request_id: object) -> Iterator[bytes]:
    """The reply to a call that returned ``result``, ``STREAM_CHUNK`` items a piece."""
    yield b'{"jsonrpc":"2.0","result":{' + _dumps(result.key) + b":["
    iterator = iter(result.items)
    separator = b""
    while chunk := list(islice(iterator, STREAM_CHUNK)):
        yield separator + b",".join(_dumps(item) for item in chunk)
        separator = b","
    yield b']},"id":' + _dumps(request_id) + b"}"


def write_each(consumer: Any, pieces: Iterable[bytes]) -> Iterator[None]:
    """For ``task.cooperate``: one piece written per turn of the reactor."""
    for piece in pieces:
        consumer.write(piece)
        yield None

