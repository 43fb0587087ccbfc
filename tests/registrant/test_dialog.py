"""A record's Call-ID and From tag: kept compactly, rendered exactly as they were made or saved."""

from __future__ import annotations

import random

import pytest

from uacregistrant.registrant.machine import Registrant

from .fakes import record


def test_a_new_dialog_renders_the_random_bytes_as_lower_case_hex_in_order():
    chunks = [bytes(range(1, 17)), b"\x00\xff\x10\x20\x0a"]
    registrant = Registrant(record())
    registrant.cseq = 7
    registrant.renew_dialog(lambda n: chunks.pop(0))
    assert registrant.call_id == "0102030405060708090a0b0c0d0e0f10"
    assert registrant.from_tag == "00ff10200a"
    assert registrant.cseq == 0 and not registrant.new_dialog


@pytest.mark.parametrize("seed", range(50))
def test_any_random_dialog_comes_back_as_the_hex_of_its_bytes(seed):
    rng = random.Random(seed)
    drawn: list[bytes] = []

    def random_bytes(n: int) -> bytes:
        drawn.append(rng.randbytes(n))
        return drawn[-1]

    registrant = Registrant(record())
    registrant.renew_dialog(random_bytes)
    assert (registrant.call_id, registrant.from_tag) == (drawn[0].hex(), drawn[1].hex())


def test_extreme_values_keep_their_leading_and_trailing_digits():
    registrant = Registrant(record())
    for call_id, tag in (("0" * 32, "0" * 10), ("f" * 32, "f" * 10), ("0" * 31 + "1", "1" + "0" * 9)):
        registrant.set_dialog(call_id, tag)
        assert (registrant.call_id, registrant.from_tag) == (call_id, tag)


def test_no_dialog_reads_as_empty_texts():
    registrant = Registrant(record())
    assert (registrant.call_id, registrant.from_tag) == ("", "")


@pytest.mark.parametrize(
    "call_id, tag",
    [
        ("0102030405060708090A0B0C0D0E0F10", "00ff10200a"),  # upper case: not ours, kept as it is
        ("a84b4c76e66710@pc33.example.com", "1928301774"),  # RFC 3261 examples
        ("0102030405060708090a0b0c0d0e0f1", "00ff10200a"),  # one digit short
        ("0102030405060708090a0b0c0d0e0f10", "00ff10200a0"),  # tag one digit long
        ("0102030405060708090a0b0c0d0e0f1g", "00ff10200a"),
        ("", ""),
        ("٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦٧٨٩٠١", "٠١٢٣٤٥٦٧٨٩"),  # digits int() would take
    ],
)
def test_a_saved_dialog_in_any_other_form_is_kept_exactly(call_id, tag):
    registrant = Registrant(record())
    registrant.set_dialog(call_id, tag)
    assert (registrant.call_id, registrant.from_tag) == (call_id, tag)
    # A new dialog afterwards is ours again.
    registrant.renew_dialog(lambda n: b"\x01" * n)
    assert (registrant.call_id, registrant.from_tag) == ("01" * 16, "01" * 5)
