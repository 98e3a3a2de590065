"""The adversary's handle on the network: inject any frame or packet, see what its position allows.

- OFF_PATH: a host on a segment of its own; its NIC accepts frames to its MAC and broadcasts, so
  it sees what is sent to it and nothing of the victims' traffic. It can spoof any source.
- SAME_LAN: a host on the victims' segment with a promiscuous NIC: on a hub it sees every frame,
  on a switch the broadcasts, multicasts and unknown unicast the switch floods.
- ON_PATH: a bridge between a host and its segment. It sees every frame crossing it in both
  directions and decides about each through `intercept(frame, direction)` (see `bridge.Bridge`).

`on_frame(frame, ifname, now)` is called for each frame the position sees. An adversary on a host
also has that host's own stack (`adversary.host`): sockets, ARP, ping.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any, Callable

from threatlab.errors import DecodeError, ParamError
from threatlab.net.bridge import Bridge, Verdict
from threatlab.net.host import Host
from threatlab.net.topology import Position
from threatlab.net.wire import ARP, ETH_P_ARP, ETH_P_IP, Ethernet, IPv4

__all__ = ["Adversary"]


class Adversary:
    def __init__(self, node: Host | Bridge, position: Position) -> None:
        if position is Position.ON_PATH and not isinstance(node, Bridge):
            raise ParamError(f"{node.name}: an on-path adversary must be a bridge node")
        if position is not Position.ON_PATH and not isinstance(node, Host):
            raise ParamError(f"{node.name}: an {position.value} adversary must be a host node")
        self.node = node
        self.position = position
        self.on_frame: Callable[[bytes, str, int], Any] | None = None
        self.intercept: Callable[[bytes, str], Verdict] | None = None
        self.frames_seen = 0
        self.frames_sent = 0
        self.neighbors: dict[IPv4Address, tuple[bytes, str]] = {}  # on-path: learned IP -> (MAC, side)
        if position is Position.SAME_LAN:
            for nic in node.interfaces.values():
                nic.promiscuous = True
        if position is Position.ON_PATH:
            node.intercept = self._intercept
        node.add_sniffer(self._sniff)

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def host(self) -> Host | None:
        """The adversary's own IP stack (None on path: a bridge has none)."""
        return self.node if isinstance(self.node, Host) else None

    @property
    def interfaces(self) -> list[str]:
        return list(self.node.interfaces)

    def _sniff(self, frame: bytes, ifname: str, now: int) -> None:
        self.frames_seen += 1
        if self.position is Position.ON_PATH:
            self._learn(frame, ifname)
        cb = self.on_frame
        if cb is not None:
            cb(frame, ifname, now)

    def _learn(self, frame: bytes, ifname: str) -> None:
        try:
            eth = Ethernet.decode(frame)
            if eth.ethertype == ETH_P_IP:
                ip = IPv4.decode(eth.payload, verify=False).src
            elif eth.ethertype == ETH_P_ARP:
                ip = ARP.decode(eth.payload).sender_ip
            else:
                return
        except DecodeError:
            return
        if not eth.src[0] & 1:
            self.neighbors[ip] = (eth.src, ifname)

    def _intercept(self, frame: bytes, direction: str) -> Verdict:
        hook = self.intercept
        return frame if hook is None else hook(frame, direction)

    def _ifname(self, ifname: str | None) -> str:
        if ifname is None:
            return next(iter(self.node.interfaces))
        if ifname not in self.node.interfaces:
            raise ParamError(f"{self.node.name} has no interface {ifname!r}")
        return ifname

    def send_frame(self, frame: bytes, ifname: str | None = None) -> bool:
        """Put any frame on the wire (padded to 60 bytes by the NIC)."""
        self.frames_sent += 1
        return self.node.raw_send(self._ifname(ifname), bytes(frame))

    def send_ip(
        self,
        packet: IPv4,
        *,
        src_mac: bytes | None = None,
        dst_mac: bytes | None = None,
        ifname: str | None = None,
    ) -> bool:
        """Send an IPv4 packet as given (any source, no fragmentation).

        The destination MAC is `dst_mac` if given; else a host resolves the next hop with its
        routing table and ARP, and a bridge uses the MAC it last saw `packet.dst` send from.
        """
        data = packet.encode()
        node = self.node
        if dst_mac is None and isinstance(node, Host):
            if ifname is None:
                r = node.route(packet.dst)
                if r is None:
                    node.drops["no-route"] += 1
                    return False
                nic, nexthop = r
            else:
                nic = node.interfaces[self._ifname(ifname)]
                nexthop = packet.dst
            self.frames_sent += 1
            node._send_l3(nic, nexthop, data, src_mac or nic.mac)
            return True
        if dst_mac is None:
            learned = self.neighbors.get(packet.dst)
            if learned is None:
                raise ParamError(f"{node.name}: no MAC seen for {packet.dst}; pass dst_mac and ifname")
            dst_mac, side = learned
            ifname = ifname or side
        nic = node.interfaces[self._ifname(ifname)]
        self.frames_sent += 1
        return nic.transmit(Ethernet(dst_mac, src_mac or nic.mac, ETH_P_IP, data).encode())

    def __repr__(self) -> str:
        return f"<Adversary {self.node.name} {self.position.value}>"
