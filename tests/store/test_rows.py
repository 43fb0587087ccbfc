"""Row validation at load time, as OpenSIPS loads rows, and the column names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uacregistrant.registrant.record import RecordConfig
from uacregistrant.store.rows import (
    LOGICAL_COLUMNS,
    Columns,
    RowError,
    record_from_row,
    row_from_record,
)

USERNAME = "alice-login-name"
PASSWORD = "s3cr3t-Pa55"
SOCKETS = ("udp:127.0.0.1:5060", "tcp:[::1]:5061")


def good_row(**changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": 7,
        "registrar": "sip:registrar.example.com:5080",
        "proxy": None,
        "aor": "sip:alice@example.com",
        "third_party_registrant": None,
        "username": USERNAME,
        "password": PASSWORD,
        "binding_uri": "sip:alice@127.0.0.1:5062",
        "binding_params": None,
        "expiry": 3600,
        "forced_socket": None,
        "cluster_shtag": None,
        "state": 0,
    }
    row.update(changes)
    return row


def load(row: dict[str, object]) -> RecordConfig:
    return record_from_row(row, timer_interval=100, default_expires=1800, sockets=SOCKETS)


def test_good_row_becomes_record() -> None:
    record = load(good_row())
    assert record == RecordConfig(
        registrar="sip:registrar.example.com:5080",
        aor="sip:alice@example.com",
        binding_uri="sip:alice@127.0.0.1:5062",
        expiry=3600,
        id=7,
        username=USERNAME,
        password=PASSWORD,
    )
    assert record.enabled


def test_every_optional_column_set() -> None:
    record = load(
        good_row(
            proxy="sip:proxy.example.com;transport=tcp",
            third_party_registrant="sip:bob@example.com",
            binding_params=";reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\"",
            forced_socket="udp:127.0.0.1:5060",
            cluster_shtag="vip/1",
            state=1,
        )
    )
    assert record.proxy == "sip:proxy.example.com;transport=tcp"
    assert record.third_party_registrant == "sip:bob@example.com"
    assert record.unique_binding
    assert record.forced_socket == "udp:127.0.0.1:5060"
    assert record.shtag == ("vip", 1)
    assert not record.enabled


@pytest.mark.parametrize(
    "column", ["proxy", "third_party_registrant", "username", "password", "binding_params",
               "forced_socket", "cluster_shtag"]
)
@pytest.mark.parametrize("empty", [None, ""])
def test_empty_optional_column_is_absent(column: str, empty: object) -> None:
    assert getattr(load(good_row(**{column: empty})), column) is None


def test_null_expiry_takes_default_expires() -> None:
    assert load(good_row(expiry=None)).expiry == 1800


@pytest.mark.parametrize(("state", "enabled"), [(0, True), (None, True), (1, False), (2, False)])
def test_state_zero_is_enabled(state: object, enabled: bool) -> None:
    assert load(good_row(state=state)).enabled is enabled


def test_forced_socket_proto_compared_case_insensitively() -> None:
    assert load(good_row(forced_socket="TCP:[::1]:5061")).forced_socket == "tcp:[::1]:5061"


def test_cluster_shtag_name_may_contain_slash_and_spaces() -> None:
    assert load(good_row(cluster_shtag="a/b / 12 ")).cluster_shtag == "a/b / 12 "


BAD_ROWS = [
    ({"registrar": None}, "registrar is empty"),
    ({"registrar": ""}, "registrar is empty"),
    ({"aor": None}, "aor is empty"),
    ({"aor": ""}, "aor is empty"),
    ({"binding_uri": None}, "binding_uri is empty"),
    ({"binding_uri": ""}, "binding_uri is empty"),
    ({"registrar": "registrar.example.com"}, "registrar is not a valid SIP URI"),
    ({"registrar": "sip:"}, "registrar is not a valid SIP URI"),
    ({"registrar": "sip:alice@registrar.example.com"}, "registrar must not have a user part"),
    ({"proxy": "sip:"}, "proxy is not a valid SIP URI"),
    ({"proxy": "sip:bob@proxy.example.com"}, "proxy must not have a user part"),
    ({"aor": "alice at example"}, "aor is not a valid SIP URI"),
    ({"third_party_registrant": "sip:"}, "third_party_registrant is not a valid SIP URI"),
    ({"binding_uri": "not a uri"}, "binding_uri is not a valid SIP URI"),
    ({"binding_params": "reg-id=1"}, "binding_params must start with ';'"),
    ({"binding_params": ";=1"}, "binding_params are not ;name[=value] parameters"),
    ({"binding_params": ';q="open'}, "binding_params are not ;name[=value] parameters"),
    ({"binding_params": ";x=a b"}, "binding_params are not ;name[=value] parameters"),
    ({"binding_params": ";x=<sip:a>"}, "binding_params are not ;name[=value] parameters"),
    ({"binding_params": ";x=1;"}, "binding_params are not ;name[=value] parameters"),
    ({"binding_params": ";x=a,b"}, "binding_params are not ;name[=value] parameters"),
    ({"binding_params": ';x="a\\"'}, "binding_params are not ;name[=value] parameters"),
    ({"binding_params": ';x="a\r\nb"'}, "binding_params has a control or non-printable character"),
    ({"binding_params": ";x=1\r\nX-Evil: 1"},
     "binding_params has a control or non-printable character"),
    ({"aor": "sip:alice@example.com?X-Evil=1"}, "aor must not have ?headers"),
    ({"binding_uri": "sip:alice@127.0.0.1?Route=%3Csip:evil%3E"}, "binding_uri must not have ?headers"),
    ({"third_party_registrant": "sip:bob@example.com?X=1"},
     "third_party_registrant must not have ?headers"),
    ({"registrar": "sip:registrar.example.com?X=1"}, "registrar must not have ?headers"),
    ({"proxy": "sip:proxy.example.com?X=1"}, "proxy must not have ?headers"),
    ({"aor": "sip:alice:pw@example.com"}, "aor must not have a password in its user part"),
    ({"binding_uri": "sip:alice:pw@127.0.0.1"}, "binding_uri must not have a password in its user part"),
    ({"third_party_registrant": "sip:bob:pw@example.com"},
     "third_party_registrant must not have a password in its user part"),
    ({"username": "ali\x01ce"}, "username has a control or non-printable character"),
    ({"username": "alice\r\nX-Evil: 1"}, "username has a control or non-printable character"),
    ({"password": "pw\x00"}, "password has a control or non-printable character"),
    ({"password": "pw\ud800"}, "password has a control or non-printable character"),
    ({"password": "pw\udcff"}, "password is not valid UTF-8"),
    ({"aor": "sip:alice@example.com\n"}, "aor has a control or non-printable character"),
    ({"cluster_shtag": "vip\t/1"}, "cluster_shtag has a control or non-printable character"),
    ({"forced_socket": "udp:127.0.0.1:5060\x7f"}, "forced_socket has a control or non-printable character"),
    ({"password": b"\xffsecret"}, "password is not valid UTF-8"),
    ({"username": b"al\xc3ice"}, "username is not valid UTF-8"),
    ({"registrar": b"sip:\xfe.example.com"}, "registrar is not valid UTF-8"),
    ({"password": 12345}, "password is not text"),
    ({"password": "p" * 1025}, "password is longer than 1024 bytes"),
    ({"username": "\u00e9" * 513}, "username is longer than 1024 bytes"),
    ({"binding_params": ";x=" + "a" * 1022}, "binding_params is longer than 1024 bytes"),
    ({"expiry": 2**31}, "expiry is above 2147483647"),
    ({"expiry": 9223372036854775807}, "expiry is above 2147483647"),
    ({"expiry": True}, "expiry is not an integer"),
    ({"expiry": 100}, "expiry 100 not above timer_interval 100"),
    ({"expiry": 30}, "expiry 30 not above timer_interval 100"),
    ({"expiry": -1}, "expiry -1 not above timer_interval 100"),
    ({"expiry": "3600s"}, "expiry is not an integer"),
    ({"expiry": 3600.5}, "expiry is not an integer"),
    ({"forced_socket": "udp:10.0.0.1:5060"}, "forced_socket is not a listening socket"),
    ({"forced_socket": "tcp:127.0.0.1:5060"}, "forced_socket is not a listening socket"),
    ({"cluster_shtag": "vip"}, "cluster_shtag is not name/cluster_id"),
    ({"cluster_shtag": "/1"}, "cluster_shtag is not name/cluster_id"),
    ({"cluster_shtag": "vip/one"}, "cluster_shtag cluster_id is not an integer"),
    ({"cluster_shtag": "vip/"}, "cluster_shtag cluster_id is not an integer"),
    ({"cluster_shtag": "vip/-1"}, "cluster_shtag cluster_id is not an integer"),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_ROWS)
def test_bad_row_is_refused_with_reason(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(RowError) as caught:
        load(good_row(**changes))
    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_no_forced_socket_allowed_without_sockets() -> None:
    with pytest.raises(RowError):
        record_from_row(
            good_row(forced_socket="udp:127.0.0.1:5060"), timer_interval=100, default_expires=3600
        )


def test_expiry_just_above_timer_interval_is_kept() -> None:
    assert load(good_row(expiry=101)).expiry == 101


def test_largest_expiry_is_kept() -> None:
    assert load(good_row(expiry=2**31 - 1)).expiry == 2**31 - 1


@pytest.mark.parametrize(
    "params",
    [
        ";transport=udp",
        ";reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\"",
        ";flag",
        ";received=[2001:db8::1]",
        ";host=192.0.2.1;q=0.5",
        ';note="quoted \\" pair"',
        ';x=""',
    ],
)
def test_generic_params_are_kept(params: str) -> None:
    assert load(good_row(binding_params=params)).binding_params == params


def test_utf8_bytes_are_decoded() -> None:
    # A BLOB column, or a driver reading text as bytes: valid UTF-8 is text.
    record = load(good_row(username="jos\u00e9".encode(), password=b"pw"))
    assert (record.username, record.password) == ("jos\u00e9", "pw")


def test_printable_non_ascii_credentials_are_kept() -> None:
    record = load(good_row(username="jos\u00e9", password="\u00fcber-\u5bc6\u7801"))
    assert record.password == "\u00fcber-\u5bc6\u7801"


def test_field_of_exactly_one_kib_is_kept() -> None:
    assert load(good_row(password="p" * 1024)).password == "p" * 1024


@pytest.mark.parametrize(("changes", "reason"), BAD_ROWS)
def test_no_reason_shows_credentials(changes: dict[str, object], reason: str) -> None:
    # Credentials planted everywhere a reason could echo them, URI userinfo included.
    planted = {
        key: value.replace("alice", f"{USERNAME}:{PASSWORD}")
        if isinstance(value, str)
        else value
        for key, value in changes.items()
    }
    with pytest.raises(RowError) as caught:
        load(good_row(**planted))
    assert PASSWORD not in str(caught.value)
    assert USERNAME not in str(caught.value)


def test_row_from_record_round_trips() -> None:
    record = load(
        good_row(
            proxy="sip:proxy.example.com",
            binding_params=";transport=udp",
            cluster_shtag="vip/2",
            state=1,
        )
    )
    row = row_from_record(record)
    assert set(row) == set(LOGICAL_COLUMNS) - {"id"}
    assert row["state"] == 1
    assert load({**row, "id": 7}) == record


def test_columns_defaults_are_opensips() -> None:
    columns = Columns()
    assert columns.table == "registrant"
    assert columns.binding_uri == "binding_URI"
    assert [columns.physical(c) for c in LOGICAL_COLUMNS] == [
        "id", "registrar", "proxy", "aor", "third_party_registrant", "username", "password",
        "binding_URI", "binding_params", "expiry", "forced_socket", "cluster_shtag", "state",
    ]


# Arbitrary rows: whatever a table or an MI call holds, the validator answers
# with a record or a RowError, and never repeats a credential.

_SECRET_USER = "U5ER-s3cret"
_SECRET_PASS = "PA55-s3cret"

_field = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.sampled_from(
        [
            "sip:alice@example.com",
            "sip:registrar.example.com",
            f"sip:{_SECRET_USER}:{_SECRET_PASS}@example.com",
            f"sip:a@h?X={_SECRET_PASS}",
            ';x="a\r\nb"',
            ";reg-id=1",
            "udp:127.0.0.1:5060",
            "vip/1",
            "\x00",
        ]
    ),
)


def _with_secrets(value: object) -> object:
    # Plant the credentials inside any text, so that a reason echoing a field shows them.
    if isinstance(value, str):
        return f"{_SECRET_USER}{value}{_SECRET_PASS}"
    if isinstance(value, bytes):
        return _SECRET_USER.encode() + value + _SECRET_PASS.encode()
    return value


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries({name: _field for name in LOGICAL_COLUMNS if name != "id"}),
    st.booleans(),
)
def test_arbitrary_row_is_a_record_or_a_row_error(row: dict[str, object], plant: bool) -> None:
    row = {"id": 1, **row}
    if plant:
        row["username"] = _with_secrets(row["username"])
        row["password"] = _with_secrets(row["password"])
    try:
        record = load(row)
    except RowError as e:
        assert _SECRET_USER not in e.reason and _SECRET_PASS not in e.reason
        assert e.reason.isprintable()
        return
    # What loads is what the wire and the log can carry.
    for text in (record.registrar, record.aor, record.binding_uri, record.username, record.password,
                 record.binding_params, record.proxy, record.third_party_registrant):
        assert text is None or (text.isprintable() and len(text.encode()) <= 1024)
    assert 1 <= record.expiry <= 2**31 - 1
    assert "?" not in record.registrar


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_binding_params_never_reach_the_wire_unchecked(params: str) -> None:
    try:
        record = load(good_row(binding_params=";" + params))
    except RowError:
        return
    assert record.binding_params is not None
    assert record.binding_params.isprintable()
