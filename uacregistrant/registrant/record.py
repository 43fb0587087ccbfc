"""A registrant record as loaded from the table: what to register, where and how."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RecordKey:
    """The identity of a record everywhere: MI commands, the table, runtime state."""

    aor: str
    binding_uri: str
    registrar: str


@dataclass(frozen=True, slots=True)
class RecordConfig:
    """One validated row of the ``registrant`` table (OpenSIPS schema, version 3).

    Strings are kept exactly as stored.  The credentials are excluded from
    ``repr`` so that no log line or traceback can show them.
    """

    registrar: str
    aor: str
    binding_uri: str
    expiry: int
    id: int | None = None
    proxy: str | None = None
    third_party_registrant: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    binding_params: str | None = None
    forced_socket: str | None = None
    cluster_shtag: str | None = None
    enabled: bool = True
    # Made once with the record: the loader, the engine, the scheduler and
    # the runtime writer all key by it.  Made on every read, each of 100,000
    # records left three short-lived keys behind as holes in the heap.
    key: RecordKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", RecordKey(self.aor, self.binding_uri, self.registrar))

    @property
    def unique_binding(self) -> bool:
        """RFC 5626 binding: ``reg-id`` and ``+sip.instance`` both present."""
        params = self.binding_params or ""
        names = [p.split("=", 1)[0].strip() for p in params.split(";")]
        return any(n.startswith("reg-id") for n in names) and any(
            n.startswith("+sip.instance") for n in names
        )

    @property
    def shtag(self) -> tuple[str, int] | None:
        if not self.cluster_shtag:
            return None
        name, _, cluster_id = self.cluster_shtag.rpartition("/")
        return name.strip(), int(cluster_id)
