"""Per-core rates of the SIP codec: parse a 200 OK to REGISTER, build a REGISTER.

Run with ``python bench/bench_sip.py`` from the repository root. Each figure is the
best of a few rounds on one core (the codec is pure Python and single-threaded).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from uacregistrant.sip.message import build_request, parse_message  # noqa: E402

PARSE_TARGET = 200_000
BUILD_TARGET = 1_000_000
ROUNDS = 5

# A typical registrar reply: two bindings, a Date, a Server, about 600 bytes.
OK_TO_REGISTER = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;received=192.0.2.10;rport=5060;branch=z9hG4bK.4f1c2b3a9e7d6c5b\r\n"
    b"From: <sip:alice@registrar.example.com>;tag=8e7f6a5b4c3d\r\n"
    b"To: <sip:alice@registrar.example.com>;tag=as1b2c3d4e\r\n"
    b"Call-ID: 3f9a1c7e2b8d4f6a0c5e9b1d7a3f8c2e@192.0.2.10\r\n"
    b"CSeq: 42 REGISTER\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600;q=1.0,"
    b" <sip:alice@198.51.100.7:5070;transport=tcp>;expires=1800\r\n"
    b"Date: Tue, 14 May 2024 09:26:53 GMT\r\n"
    b"Expires: 3600\r\n"
    b"Supported: path, outbound, gruu\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n"
    b"Server: registrar.example.com SIP server\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

REGISTER_HEADERS = [
    ("Via", "SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK.4f1c2b3a9e7d6c5b"),
    ("Max-Forwards", "70"),
    ("From", "<sip:alice@registrar.example.com>;tag=8e7f6a5b4c3d"),
    ("To", "<sip:alice@registrar.example.com>"),
    ("Call-ID", "3f9a1c7e2b8d4f6a0c5e9b1d7a3f8c2e@192.0.2.10"),
    ("CSeq", "42 REGISTER"),
    ("Contact", "<sip:alice@192.0.2.10:5060;transport=udp>"),
    ("Expires", "3600"),
    ("User-Agent", "uac-registrant"),
    ("Allow", "INVITE, ACK, CANCEL, OPTIONS, BYE"),
]


def parse_and_read() -> None:
    reply = parse_message(OK_TO_REGISTER)
    reply.via.branch
    reply.cseq
    reply.call_id
    for contact in reply.contacts:
        contact.expires
    reply.expires


def parse_as_registrant() -> None:
    """What the registrant reads of a 200 to its REGISTER (transport layer, reply classifier, executor)."""
    reply = parse_message(OK_TO_REGISTER)
    reply.status
    reply.reason
    reply.via.branch
    reply.cseq.method
    for contact in reply.contacts:
        contact.is_star
        contact.uri
        contact.expires
    reply.header_values("Service-Route")
    reply.header_values("P-Associated-URI")
    reply.flow_timer


def parse_only() -> None:
    parse_message(OK_TO_REGISTER)


def build() -> None:
    build_request("REGISTER", "sip:registrar.example.com", REGISTER_HEADERS)


def rate(work: Callable[[], None], batch: int = 20_000) -> float:
    """Operations per CPU second, best of ROUNDS batches (CPU time, so other load on the machine matters less)."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(batch):
            work()
        best = min(best, time.process_time() - started)
    return batch / best


def digest_work() -> Callable[[], None] | None:
    try:
        from uacregistrant.sip.digest import authorization, parse_challenge
    except ImportError:
        return None
    challenge = parse_challenge(
        'Digest realm="registrar.example.com", nonce="5f1c2b3a9e7d6c5b4a39", qop="auth", algorithm=MD5'
    )

    def work() -> None:
        authorization(
            challenge,
            username="alice",
            password="secret",
            method="REGISTER",
            uri="sip:registrar.example.com",
            cnonce="0a4f113b",
            nc=1,
        )

    return work


def report(label: str, per_second: float, target: int | None) -> None:
    verdict = "" if target is None else ("  ok" if per_second >= target else f"  BELOW {target:,}/s")
    print(f"{label:<58} {per_second:>12,.0f}/s{verdict}")


def main() -> None:
    from uacregistrant import compiled

    print(f"Python {sys.version.split()[0]}, one core, {compiled.variant()} hot modules; {len(OK_TO_REGISTER)}-byte 200 OK")
    report("parse 200 OK + via.branch/cseq/call_id/contacts/expires", rate(parse_and_read), PARSE_TARGET)
    report("parse 200 OK + what the registrant reads of it", rate(parse_as_registrant), PARSE_TARGET)
    report("parse 200 OK only (framing, no header value read)", rate(parse_only), None)
    report(f"build_request REGISTER ({len(REGISTER_HEADERS)} headers)", rate(build), BUILD_TARGET)
    digest = digest_work()
    if digest is None:
        print("digest authorization: uacregistrant.sip.digest not available, skipped")
    else:
        report("digest authorization (MD5, qop=auth)", rate(digest), None)


if __name__ == "__main__":
    main()
