"""Ephemeral port selection: the traditional sequential allocator and RFC 6056's randomization.

tcpsecure 1: "TCP implementations SHOULD also introduce ephemeral port randomization": a blind
attacker must then guess the client port too (16 bits at most, fewer with a small range).
"""

from __future__ import annotations

import random
from collections.abc import Container

from threatlab.errors import ParamError
from threatlab.tcp.config import TcpConfig

__all__ = ["choose_ephemeral_port"]


def choose_ephemeral_port(
    rng: random.Random,
    config: TcpConfig,
    in_use: Container[int] = frozenset(),
    previous: int | None = None,
) -> int:
    """An ephemeral port from `config.ephemeral_ports` that is not `in_use`.

    With `config.port_randomization`: RFC 6056 3.3.1, Algorithm 1 (simple port randomization):
    start at a random offset in the range, probe upwards with wraparound.
    Without: the traditional BSD allocator of RFC 6056 2.2: the port after `previous` (the last one
    this host handed out; the bottom of the range at first), so ports are predictable.

    ParamError when every port of the range is in use.
    """
    lo, hi = config.ephemeral_ports
    num = hi - lo + 1
    if config.port_randomization:
        offset = rng.randrange(num)
    else:
        offset = 0 if previous is None or not lo <= previous <= hi else previous - lo + 1
    for i in range(num):
        port = lo + (offset + i) % num
        if port not in in_use:
            return port
    raise ParamError(f"no free ephemeral port in {lo}..{hi}")
