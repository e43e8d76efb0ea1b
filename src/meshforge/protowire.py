"""Protobuf's wire format, for bytes built once and reused: a length-delimited field is its tag, its length and
its bytes, and a message is its fields in any order. The compiler concatenates cached virtual hosts into route
configurations with it (tests/test_protowire.py checks the framing against protobuf's own serialisation)."""

from __future__ import annotations


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number: int, data: bytes) -> bytes:
    """A length-delimited field (a string, bytes or an embedded message)."""
    return varint(number << 3 | 2) + varint(len(data)) + data
