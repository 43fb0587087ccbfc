"""Text from PostgreSQL databases created with ``ENCODING 'SQL_ASCII'``.

Such a database stores whatever bytes a client sent, and psycopg2 decodes
its text as ASCII: one accented username, or one byte that is not UTF-8,
and a whole load fails.  Read as UTF-8 instead, with each undecodable byte
kept as a lone surrogate (``surrogateescape``): valid text reads as it was
written, and a field holding anything else reaches the row validator, which
skips that row ("is not valid UTF-8").  Writing encodes the same way, so
what is read can be written back unchanged.
"""

from __future__ import annotations

import codecs

import psycopg2.extensions

CODEC = "uacregistrant-sql-ascii"


def _decode(data: bytes, errors: str = "strict") -> tuple[str, int]:
    return codecs.utf_8_decode(data, "surrogateescape", True)


def _encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
    return codecs.utf_8_encode(text, "surrogateescape")


def _search(name: str) -> codecs.CodecInfo | None:
    # codecs normalises the name it is asked for: hyphens become underscores.
    if name.replace("_", "-") != CODEC:
        return None
    return codecs.CodecInfo(_encode, _decode, name=CODEC)


def install() -> None:
    """Make psycopg2 use the codec for SQL_ASCII connections (idempotent)."""
    try:
        codecs.lookup(CODEC)
    except LookupError:
        codecs.register(_search)
    for name in ("SQL_ASCII", "SQLASCII"):
        psycopg2.extensions.encodings[name] = CODEC
