"""The behaviour every IRegistrantStore owes the service.

Run against each database of ``conftest.BACKENDS`` through the ``backend``
fixture; test_store_contract.py collects it.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from uacregistrant.registrant.record import RecordConfig, RecordKey
from uacregistrant.store.interface import (
    RUNTIME_TABLE,
    IRegistrantStore,
    NoSuchRow,
    RuntimeState,
    StoreError,
    StoreUnavailable,
)
from uacregistrant.store.rows import Columns, record_from_row

validate = partial(record_from_row, timer_interval=100, default_expires=3600)

CUSTOM = Columns(
    table="my_registrant",
    registrar="c_registrar",
    proxy="c_proxy",
    aor="c_aor",
    third_party_registrant="c_third_party",
    username="c_username",
    password="c_password",
    binding_uri="order",  # an SQL keyword: every identifier must be quoted
    binding_params="c_binding_params",
    expiry="c_expiry",
    forced_socket="c_forced_socket",
    cluster_shtag="c_cluster_shtag",
    state="c_state",
)


def record(n: int = 1, **changes: Any) -> RecordConfig:
    values: dict[str, Any] = {
        "registrar": "sip:registrar.example.com",
        "aor": f"sip:user{n}@example.com",
        "binding_uri": f"sip:user{n}@127.0.0.1:5062",
        "expiry": 3600,
        "username": f"user{n}",
        "password": "secret",
    }
    values.update(changes)
    return RecordConfig(**values)


def runtime(key: RecordKey, cseq: int = 1, **changes: Any) -> RuntimeState:
    values: dict[str, Any] = {
        "key": key,
        "call_id": f"call-{key.aor}",
        "from_tag": "tag1",
        "cseq": cseq,
        "state": 3,
        "expires": 1800,
        "expires_at": 1700000000.25,
        "updated_at": 1699998200.5,
        "last_code": 200,
        "last_reason": "OK",
        # Every field away from its default, so that a round trip shows each one.
        "min_expires": 1200,
        "enabled_s": 86400.5,
        "bound_s": 86000.25,
        "flaps": 3,
        "outage_start": 1699990000.125,
        "outage_end": 1699990400.75,
        "outage_cause": "503 Service Unavailable",
    }
    values.update(changes)
    return RuntimeState(**values)


async def open_store(backend: Any, columns: Columns = Columns()) -> Any:
    store = backend.make_store(columns)
    await store.open()
    return store


def stripped(row: dict[str, object] | None) -> dict[str, object]:
    """A row without its database-chosen id."""
    assert row is not None
    return {k: v for k, v in row.items() if k != "id"}


class StoreContract:
    @pytest_twisted.ensureDeferred
    async def test_provides_interface(self, backend: Any) -> None:
        store = backend.make_store(Columns())
        assert verifyObject(IRegistrantStore, store)
        assert store.columns == Columns()

    @pytest_twisted.ensureDeferred
    async def test_open_creates_schema(self, backend: Any) -> None:
        store = await open_store(backend)
        try:
            # Case-blind: PostgreSQL folds OpenSIPS's unquoted binding_URI to binding_uri.
            assert [name.lower() for name in backend.column_names("registrant")] == [
                "id", "registrar", "proxy", "aor", "third_party_registrant", "username",
                "password", "binding_uri", "binding_params", "expiry", "forced_socket",
                "cluster_shtag", "state",
            ]
            assert ("registrant", 3) in backend.version_rows()
            assert backend.table_exists(RUNTIME_TABLE)
            assert await store.load_rows() == []
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_reopen_keeps_schema_and_rows(self, backend: Any) -> None:
        store = await open_store(backend)
        await store.upsert(record())
        await store.close()
        snapshot = backend.schema_snapshot("registrant")
        store = await open_store(backend)
        try:
            assert [stripped(r) for r in await store.load_rows()] == [
                stripped(await store.load_row(record().key))
            ]
            assert backend.schema_snapshot("registrant") == snapshot
            assert backend.version_rows().count(("registrant", 3)) == 1
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_opensips_table_used_unchanged(self, backend: Any) -> None:
        backend.create_opensips_table(version=3)
        row_id = backend.insert_row(
            Columns(),
            {"registrar": "sip:registrar.example.com", "aor": "sip:a@example.com",
             "binding_uri": "sip:a@127.0.0.1", "expiry": 600},
        )
        snapshot = backend.schema_snapshot("registrant")
        versions = backend.version_rows()
        store = await open_store(backend)
        try:
            rows = await store.load_rows()
            assert rows == [{
                "id": row_id, "registrar": "sip:registrar.example.com", "proxy": None,
                "aor": "sip:a@example.com", "third_party_registrant": None, "username": None,
                "password": None, "binding_uri": "sip:a@127.0.0.1", "binding_params": None,
                "expiry": 600, "forced_socket": None, "cluster_shtag": None, "state": 0,
            }]
            await store.set_state(RecordKey("sip:a@example.com", "sip:a@127.0.0.1",
                                            "sip:registrar.example.com"), False)
            assert backend.schema_snapshot("registrant") == snapshot
            assert backend.version_rows() == versions
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_other_table_version_refused(self, backend: Any) -> None:
        backend.create_opensips_table(version=2)
        snapshot = backend.schema_snapshot("registrant")
        store = backend.make_store(Columns())
        with pytest.raises(StoreError, match="registrant has version 2, expected 3"):
            await store.open()
        assert backend.schema_snapshot("registrant") == snapshot
        with pytest.raises(StoreUnavailable):
            await store.load_rows()

    @pytest_twisted.ensureDeferred
    async def test_table_without_version_row_refused(self, backend: Any) -> None:
        backend.create_opensips_table(version=3)
        backend.execute("DELETE FROM version")
        with pytest.raises(StoreError, match="registrant has version None, expected 3"):
            await open_store(backend)

    @pytest_twisted.ensureDeferred
    async def test_missing_column_refused(self, backend: Any) -> None:
        backend.create_opensips_table(version=3)
        with pytest.raises(StoreError, match="no column c_state"):
            await open_store(backend, Columns(state="c_state"))

    @pytest_twisted.ensureDeferred
    async def test_unreachable_database(self, backend: Any) -> None:
        store = backend.unreachable_store(Columns())
        with pytest.raises(StoreUnavailable):
            await store.open()

    @pytest_twisted.ensureDeferred
    async def test_custom_names_honoured(self, backend: Any) -> None:
        store = await open_store(backend, CUSTOM)
        try:
            assert "order" in backend.column_names("my_registrant")
            assert not backend.table_exists("registrant")
            assert ("my_registrant", 3) in backend.version_rows()
            full = record(proxy="sip:proxy.example.com", third_party_registrant="sip:x@example.com",
                          binding_params=";transport=udp", cluster_shtag="vip/1", enabled=False)
            await store.upsert(full)
            [row] = await store.load_rows()
            assert validate(row) == RecordConfig(**{**_fields(full), "id": row["id"]})
            await store.set_state(full.key, True)
            assert (await store.load_row(full.key))["state"] == 0
            await store.delete(full.key)
            assert await store.load_rows() == []
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_load_skips_bad_rows_with_reasons(self, backend: Any) -> None:
        store = await open_store(backend)
        try:
            good = backend.insert_row(Columns(), {
                "registrar": "sip:registrar.example.com", "aor": "sip:a@example.com",
                "binding_uri": "sip:a@127.0.0.1", "expiry": None, "password": "pw-1"})
            empty = backend.insert_row(Columns(), {
                "aor": "sip:b@example.com", "binding_uri": "sip:b@127.0.0.1", "expiry": 600})
            short = backend.insert_row(Columns(), {
                "registrar": "sip:registrar.example.com", "aor": "sip:c@example.com",
                "binding_uri": "sip:c@127.0.0.1", "expiry": 60})
            shtag = backend.insert_row(Columns(), {
                "registrar": "sip:registrar.example.com", "aor": "sip:d@example.com",
                "binding_uri": "sip:d@127.0.0.1", "cluster_shtag": "vip/x", "state": 1})
            assert len(await store.load_rows()) == 4
            result = await store.load(validate)
            assert [(r.id, r.aor, r.expiry, r.password) for r in result.records] == [
                (good, "sip:a@example.com", 3600, "pw-1")
            ]
            assert sorted(result.skipped) == sorted([
                (empty, "registrar is empty"),
                (short, "expiry 60 not above timer_interval 100"),
                (shtag, "cluster_shtag cluster_id is not an integer"),
            ])
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_load_row(self, backend: Any) -> None:
        store = await open_store(backend)
        try:
            await store.upsert(record(1))
            await store.upsert(record(2))
            row = await store.load_row(record(2).key)
            assert validate(row) == RecordConfig(**{**_fields(record(2)), "id": row["id"]})
            assert await store.load_row(record(3).key) is None
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_set_state(self, backend: Any) -> None:
        store = await open_store(backend)
        try:
            await store.upsert(record())
            await store.set_state(record().key, False)
            assert (await store.load_row(record().key))["state"] == 1
            await store.set_state(record().key, True)
            assert (await store.load_row(record().key))["state"] == 0
            with pytest.raises(NoSuchRow):
                await store.set_state(record(2).key, False)
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_upsert_inserts_then_updates(self, backend: Any) -> None:
        store = await open_store(backend)
        try:
            await store.upsert(record(1))
            [before] = await store.load_rows()
            changed = record(1, expiry=7200, proxy="sip:proxy.example.com", password=None,
                             enabled=False)
            await store.upsert(changed)
            [after] = await store.load_rows()
            assert after["id"] == before["id"]
            assert validate(after) == RecordConfig(**{**_fields(changed), "id": before["id"]})
            await store.upsert(record(1, binding_uri="sip:other@127.0.0.1"))
            assert len(await store.load_rows()) == 2
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_delete(self, backend: Any) -> None:
        store = await open_store(backend)
        try:
            await store.upsert(record(1))
            await store.upsert(record(2))
            await store.delete(record(1).key)
            assert [r["aor"] for r in await store.load_rows()] == [record(2).aor]
            with pytest.raises(NoSuchRow):
                await store.delete(record(1).key)
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_runtime_round_trip(self, backend: Any) -> None:
        store = await open_store(backend)
        try:
            assert await store.load_runtime() == {}
            states = [runtime(record(n).key) for n in range(1, 4)]
            # Every field that has a default, at its default.
            states[2] = RuntimeState(key=record(3).key, call_id="call-3", from_tag="tag3", cseq=1,
                                     state=0, expires=0, expires_at=0.0, updated_at=1.5)
            await store.save_runtime(states)
            assert await store.load_runtime() == {s.key: s for s in states}
            newer = runtime(record(2).key, cseq=5, call_id="call-new", last_code=408,
                            last_reason="Request Timeout", min_expires=None, enabled_s=90000.0,
                            flaps=4, outage_end=None, outage_cause="timeout")
            await store.save_runtime([newer])
            assert await store.load_runtime() == {
                states[0].key: states[0], newer.key: newer, states[2].key: states[2]
            }
            await store.delete_runtime(newer.key)
            await store.delete_runtime(newer.key)
            assert set(await store.load_runtime()) == {states[0].key, states[2].key}
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_runtime_batch_survives_reopen(self, backend: Any) -> None:
        store = await open_store(backend)
        states = [runtime(record(n).key, cseq=n) for n in range(500)]
        await store.save_runtime(states)
        await store.save_runtime([])
        await store.close()
        store = await open_store(backend)
        try:
            assert await store.load_runtime() == {s.key: s for s in states}
        finally:
            await store.close()

    @pytest_twisted.ensureDeferred
    async def test_closed_store_refuses(self, backend: Any) -> None:
        store = await open_store(backend)
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.load_rows()
        with pytest.raises(StoreUnavailable):
            await store.upsert(record())
        await store.close()


def _fields(r: RecordConfig) -> dict[str, Any]:
    return {f.name: getattr(r, f.name) for f in dataclasses.fields(RecordConfig) if f.init}
