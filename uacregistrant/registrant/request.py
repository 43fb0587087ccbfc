"""The REGISTER and unREGISTER requests of a record."""

from __future__ import annotations

from ..sip.message import Request
from .record import RecordConfig


def register_request(
    record: RecordConfig,
    *,
    call_id: str,
    from_tag: str,
    cseq: int,
    expires: int,
    user_agent: str,
    authorization: tuple[str, str] | None = None,
    remove_all: bool = False,
) -> Request:
    """A REGISTER without its Via; the transaction layer adds the top Via.

    ``expires=0`` makes it an unREGISTER of our binding; ``remove_all`` the
    ``Contact: *`` form that removes every binding of the AOR (RFC 3261 §10.2.2).
    """
    if remove_all:
        contact = ("Contact", "*")
    else:
        contact = (
            "Contact",
            f"<{record.binding_uri}>{record.binding_params or ''};expires={expires}",
        )
    headers = [
        ("Max-Forwards", "70"),
        ("To", f"<{record.aor}>"),
        ("From", f"<{record.third_party_registrant or record.aor}>;tag={from_tag}"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} REGISTER"),
        contact,
    ]
    if remove_all:
        headers.append(("Expires", "0"))
    # RFC 3327 Path; RFC 5626 outbound for a binding with reg-id and +sip.instance.
    headers.append(("Supported", "outbound, path" if record.unique_binding else "path"))
    if user_agent:
        headers.append(("User-Agent", user_agent))
    if authorization is not None:
        headers.append(authorization)
    return Request("REGISTER", record.registrar, headers)
