"""The registrant's MI commands on top of the JSON-RPC layer."""

from __future__ import annotations

from typing import Callable, Iterator

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from ..registrant.engine import Engine
from ..registrant.machine import Registrant
from ..registrant.record import RecordConfig, RecordKey
from ..registrant.trace import DEFAULT_SECONDS, MAX_SECONDS, TooManyTraced
from ..store.interface import IRegistrantStore, NoSuchRow, StoreError
from ..store.rows import RowError
from ..sip.uri import redact_uri
from .jsonrpc import Command, CommandTable, MIError, StreamedList, server_error
from .listing import Listing

log = Logger()

TRIPLE = ("aor", "contact", "registrar")
UPSERT = TRIPLE + tuple(
    f"{name}?"
    for name in (
        "proxy",
        "third_party_registrant",
        "username",
        "password",
        "binding_params",
        "expiry",
        "forced_socket",
        "cluster_shtag",
        "state",
    )
)
TRACE = TRIPLE + ("trace?", "seconds?")
NOT_FOUND = 404


def _key(params: dict[str, object]) -> RecordKey:
    return RecordKey(str(params["aor"]), str(params["contact"]), str(params["registrar"]))


def _no_such_registrant(message: str = "No such registrant") -> MIError:
    return MIError(NOT_FOUND, message)


class RegistrantCommands:
    """Handlers bound to one engine and one store."""

    def __init__(
        self,
        engine: Engine,
        store: IRegistrantStore,
        validate: Callable[[dict[str, object]], RecordConfig],
        on_row_skipped: Callable[[], None] = lambda: None,
        listing: Listing | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.validate = validate
        self.on_row_skipped = on_row_skipped
        self.listing = listing if listing is not None else Listing(engine)

    def table(self) -> CommandTable:
        table = CommandTable()
        for name, handler, sets in (
            ("list", self.reg_list, ((), TRIPLE)),
            ("reload", self.reg_reload, ((), TRIPLE)),
            ("enable", self.reg_enable, (TRIPLE,)),
            ("disable", self.reg_disable, (TRIPLE,)),
            ("force_register", self.reg_force_register, (TRIPLE,)),
            ("upsert", self.reg_upsert, (UPSERT,)),
            ("delete", self.reg_delete, (TRIPLE,)),
        ):
            table.add(Command(f"reg_{name}", handler, sets, aliases=(f"uac_registrant:{name}",)))
        # Ours, not OpenSIPS's.
        table.add(Command("reg_trace", self.reg_trace, (TRACE,)))
        return table

    def _find(self, params: dict[str, object]) -> Registrant:
        registrant = self.engine.get(_key(params))
        if registrant is None:
            raise _no_such_registrant()
        return registrant

    def reg_list(self, params: dict[str, object]) -> object:
        if params:
            return {"Registrant": self.listing.view(self._find(params))}
        return StreamedList("Records", self._views())

    def _views(self) -> Iterator[dict[str, object]]:
        # A snapshot: records added or dropped while the list streams do not break it.
        for registrant in list(self.engine):
            yield self.listing.view(registrant)

    @inlineCallbacks
    def reg_reload(self, params: dict[str, object]) -> Deferred:
        if params:
            key = _key(params)
            try:
                row = yield self.store.load_row(key)
            except StoreError as e:
                raise server_error(f"database error: {e}")
            if row is None:
                raise _no_such_registrant("No such registrant in database")
            try:
                config = self.validate(row)
            except RowError as e:
                self.on_row_skipped()
                raise MIError(400, "Bad registrant row", e.reason)
            self.listing.reloading([config])
            self.engine.upsert(config)
            return "OK"
        try:
            result = yield self.store.load(self.validate)
        except StoreError as e:
            raise server_error(f"database error: {e}")
        for row_id, reason in result.skipped:
            log.warn("skipped row {id}: {reason}", id=row_id, reason=reason)
            self.on_row_skipped()
        self.listing.forget_gone()
        self.engine.trace.forget_gone(self.engine)
        self.listing.reloading(result.records)
        self.engine.apply(result.records)
        return "OK"

    @inlineCallbacks
    def _set_enabled(self, params: dict[str, object], enabled: bool) -> Deferred:
        registrant = self._find(params)
        if registrant.enabled == enabled:
            # As OpenSIPS: nothing to change, nothing sent; reg_force_register forces.
            return "OK"
        try:
            yield self.store.set_state(registrant.config.key, enabled)
        except NoSuchRow:
            raise _no_such_registrant("No such registrant in database")
        except StoreError as e:
            raise server_error(f"database error: {e}")
        # Looked up again: a reload may have replaced the record meanwhile.
        key = registrant.config.key
        if self.engine.get(key) is None:
            raise _no_such_registrant()
        (self.engine.enable if enabled else self.engine.disable)(key)
        return "OK"

    def reg_enable(self, params: dict[str, object]) -> Deferred:
        return self._set_enabled(params, True)

    def reg_disable(self, params: dict[str, object]) -> Deferred:
        return self._set_enabled(params, False)

    def reg_force_register(self, params: dict[str, object]) -> str:
        registrant = self._find(params)
        self.engine.force_register(registrant.config.key)
        return "OK"

    @inlineCallbacks
    def reg_upsert(self, params: dict[str, object]) -> Deferred:
        row: dict[str, object] = {
            name: (None if value is None else str(value)) for name, value in params.items()
        }
        row["binding_uri"] = row.pop("contact")
        for name in ("expiry", "state"):
            if row.get(name) not in (None, ""):
                row[name] = _integer(name, row[name])
        try:
            config = self.validate(row)
        except RowError as e:
            raise MIError(-32602, "Invalid params", e.reason)
        try:
            yield self.store.upsert(config)
        except StoreError as e:
            raise server_error(f"database error: {e}")
        registrant = self.engine.upsert(config)
        if registrant.due(self.engine.clock.seconds()):
            self.engine.scheduler.visit_now(registrant)
        return "OK"

    @inlineCallbacks
    def reg_delete(self, params: dict[str, object]) -> Deferred:
        key = _key(params)
        known = self.engine.get(key) is not None
        try:
            yield self.store.delete(key)
        except NoSuchRow:
            if not known:
                raise _no_such_registrant()
        except StoreError as e:
            raise server_error(f"database error: {e}")
        # The unREGISTER goes on after the reply; the record is dropped when it is done.
        self.listing.forget_gone()
        self.engine.trace.forget(key)
        self.engine.remove(key)
        return "OK"


    def reg_trace(self, params: dict[str, object]) -> dict[str, object]:
        """Switch a record's exchange history on (``seconds``, 600 by default) or off,
        or read it (no ``trace``)."""
        registrant = self._find(params)
        key = registrant.key
        trace = self.engine.trace
        switch = params.get("trace")
        if switch == "on":
            seconds = params.get("seconds")
            seconds = DEFAULT_SECONDS if seconds in (None, "") else _integer("seconds", seconds)
            if not 1 <= seconds <= MAX_SECONDS:
                raise MIError(-32602, "Invalid params", f"seconds must be from 1 to {MAX_SECONDS}")
            try:
                trace.on(key, seconds)
            except TooManyTraced as e:
                raise MIError(400, "Too many traced records", str(e))
        elif switch == "off":
            if params.get("seconds") not in (None, ""):
                raise MIError(-32602, "Invalid params", 'seconds goes with "trace": "on"')
            trace.off(key)
        elif switch is not None:
            raise MIError(-32602, "Invalid params", 'trace must be "on" or "off"')
        elif params.get("seconds") not in (None, ""):
            raise MIError(-32602, "Invalid params", 'seconds goes with "trace": "on"')
        reading = trace.read(key)
        config = registrant.config
        return {
            "AOR": redact_uri(config.aor),
            "binding": redact_uri(config.binding_uri),
            "registrar": redact_uri(config.registrar),
            "trace": "on" if reading.tracing else "off",
            "trace_until": reading.until,
            "exchanges": [exchange.as_json() for exchange in reading.exchanges],
        }


def _integer(name: str, value: object) -> int:
    # ASCII digits only: int() would also take "٣٦٠٠", " 36_00 " or 5,000 digits.
    text = str(value)
    digits = text[1:] if text.startswith("-") else text
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 20):
        raise MIError(-32602, "Invalid params", f"{name} must be an integer")
    return int(text)
