"""Node-IDs, Resource-IDs and ring arithmetic of the Chord overlay (RFC 6940 section 10).

Node-IDs and Resource-IDs are 128-bit unsigned integers on a ring modulo 2^128 (RELOAD's Chord
topology plugin: NodeIdLength 16, SHA-1 truncated to 128 bits as the overlay hash). On the wire
both are 16 bytes, big-endian.

Intervals follow Chord's notation: `between(x, a, b)` is x in (a, b) going clockwise from a, and
`between_right(x, a, b)` is x in (a, b]. A peer is responsible for the keys in (predecessor, self].
"""

from __future__ import annotations

import hashlib
import random

__all__ = [
    "ID_BITS",
    "ID_BYTES",
    "RING",
    "MASK",
    "between",
    "between_right",
    "distance",
    "finger_target",
    "floor_log2",
    "from_bytes",
    "overlay_hash",
    "random_id",
    "resource_id",
    "to_bytes",
    "short",
]

ID_BITS = 128
ID_BYTES = 16
RING = 1 << ID_BITS
MASK = RING - 1


def distance(a: int, b: int) -> int:
    """Clockwise distance from a to b on the ring."""
    return (b - a) & MASK


def between(x: int, a: int, b: int) -> bool:
    """x in the open interval (a, b) clockwise; (a, a) is the whole ring but a."""
    if a == b:
        return x != a
    return 0 < ((x - a) & MASK) < ((b - a) & MASK)


def between_right(x: int, a: int, b: int) -> bool:
    """x in the half-open interval (a, b] clockwise; (a, a] is the whole ring."""
    if a == b:
        return True
    return 0 < ((x - a) & MASK) <= ((b - a) & MASK)


def finger_target(node_id: int, level: int) -> int:
    """The point finger `level` of `node_id` aims at: node_id + 2^level (Chord)."""
    return (node_id + (1 << level)) & MASK


def floor_log2(x: int) -> int:
    """floor(log2 x) for x > 0."""
    return x.bit_length() - 1


def resource_id(name: str | bytes) -> int:
    """The Resource-ID of a resource name: SHA-1 truncated to 128 bits (RFC 6940 10.2)."""
    if isinstance(name, str):
        name = name.encode("utf-8")
    return int.from_bytes(hashlib.sha1(name).digest()[:ID_BYTES], "big")


def overlay_hash(overlay_name: str) -> int:
    """The forwarding header's `overlay` field: the low 32 bits of SHA-1 of the overlay name
    (RFC 6940 6.3.2)."""
    return int.from_bytes(hashlib.sha1(overlay_name.encode("utf-8")).digest()[-4:], "big")


def random_id(rng: random.Random) -> int:
    return rng.getrandbits(ID_BITS)


def to_bytes(node_id: int) -> bytes:
    return node_id.to_bytes(ID_BYTES, "big")


def from_bytes(data: bytes) -> int:
    return int.from_bytes(data, "big")


def short(node_id: int) -> str:
    """The first 8 hex digits, for logs and reprs."""
    return f"{node_id >> (ID_BITS - 32):08x}"
