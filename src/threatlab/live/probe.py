"""Small reachability probes run from inside a live run's namespaces (no ping binary needed)."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import time

from threatlab.live.inject import checksum16
from threatlab.live.namespaces import LiveNetwork

__all__ = ["ping"]


def ping(net: LiveNetwork, node: str, address: str, *, count: int = 1, timeout: float = 1.0) -> int:
    """Send `count` ICMP (or ICMPv6) echo requests from `node` to `address`; return how many were
    answered, waiting at most `timeout` seconds for each.

    Only addresses of this run are allowed, as for the injector.
    """
    from threatlab.errors import LiveSafetyError

    addr = ipaddress.ip_address(address)
    if addr not in net.assigned_addresses():
        raise LiveSafetyError(f"refused: {addr} is not an address of live run {net.run_id}")
    v6 = addr.version == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    request, reply = (128, 129) if v6 else (8, 0)
    ident = os.getpid() & 0xFFFF
    answered = 0
    with net.socket(node, family, socket.SOCK_RAW, proto) as sock:
        for seq in range(count):
            body = struct.pack("!HH", ident, seq) + b"threatlab"
            msg = struct.pack("!BBH", request, 0, 0) + body
            if not v6:  # the kernel fills in the ICMPv6 checksum, not ICMPv4's
                msg = msg[:2] + checksum16(msg).to_bytes(2, "big") + msg[4:]
            sock.sendto(msg, (str(addr), 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, src = sock.recvfrom(2048)
                except TimeoutError:
                    break
                if not v6:
                    data = data[(data[0] & 0x0F) * 4 :]  # raw IPv4 sockets see the IP header
                if (
                    ipaddress.ip_address(src[0].split("%")[0]) == addr
                    and len(data) >= 8
                    and data[0] == reply
                    and data[4:8] == body[:4]
                ):
                    answered += 1
                    break
    return answered
