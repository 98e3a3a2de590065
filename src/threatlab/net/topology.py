"""A topology description: what a network is, independent of how it is run.

`threatlab.net` builds it as a simulated network; `threatlab.live` builds the same description as
Linux network namespaces joined by veth pairs and bridges. It holds only plain values, so it can be
pickled to a worker process and compared in tests.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field

from threatlab.errors import TopologyError

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,9}$")


class Position(enum.Enum):
    """Where an adversary stands, and so what it can see and do."""

    OFF_PATH = "off-path"  # spoofs any source, sees only what is sent to it
    SAME_LAN = "same-lan"  # sees broadcasts on its segment; on a hub, every frame
    ON_PATH = "on-path"  # sees, drops, modifies and delays what crosses it


class SegmentKind(enum.Enum):
    HUB = "hub"  # every frame to every port
    SWITCH = "switch"  # learning switch: unicast to the learned port, flood unknown and broadcast


class NodeKind(enum.Enum):
    HOST = "host"  # ends traffic; never forwards
    ROUTER = "router"  # forwards IPv4 between its interfaces by its routing table
    NAT = "nat"  # a router that rewrites inside sources to its outside address (NAPT)
    BRIDGE = "bridge"  # a transparent two-port bump in the wire; no addresses of its own


@dataclass(frozen=True, slots=True)
class Link:
    """The attachment of an interface to its segment."""

    delay_ns: int = 0  # one-way propagation delay
    rate_bps: int | None = None  # serialization rate; None: frames take no time to send
    loss: float = 0.0  # probability that a frame is lost, each direction
    mtu: int = 1500  # largest IP packet, bytes (the Ethernet payload)

    def __post_init__(self) -> None:
        if self.delay_ns < 0:
            raise TopologyError(f"link delay_ns must be >= 0, got {self.delay_ns}")
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise TopologyError(f"link rate_bps must be > 0 or None, got {self.rate_bps}")
        if not 0.0 <= self.loss <= 1.0:
            raise TopologyError(f"link loss must be in [0, 1], got {self.loss}")
        if not 68 <= self.mtu <= 65535:
            raise TopologyError(f"link mtu must be in [68, 65535], got {self.mtu}")


@dataclass(frozen=True, slots=True)
class Interface:
    name: str  # e.g. "eth0"
    segment: str  # the Segment it is attached to
    mac: str  # "02:00:00:00:00:01", lower case
    ipv4: str | None = None  # "10.0.0.1/24"
    ipv6: str | None = None  # "fd00::1/64"
    link: Link = Link()

    @property
    def ipv4_interface(self) -> ipaddress.IPv4Interface | None:
        return ipaddress.IPv4Interface(self.ipv4) if self.ipv4 else None

    @property
    def ipv6_interface(self) -> ipaddress.IPv6Interface | None:
        return ipaddress.IPv6Interface(self.ipv6) if self.ipv6 else None


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str  # "0.0.0.0/0"
    interface: str  # outgoing interface name
    via: str | None = None  # next hop; None: on link


@dataclass(frozen=True, slots=True)
class Node:
    name: str  # short: it becomes part of a namespace name in live mode
    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...] = ()
    kind: NodeKind = NodeKind.HOST
    adversary: Position | None = None  # set for the attacker's node
    nat_outside: str | None = None  # NAT only: the name of the outside interface

    def interface(self, name: str) -> Interface:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        raise TopologyError(f"node {self.name!r} has no interface {name!r}")


@dataclass(frozen=True, slots=True)
class Segment:
    name: str
    kind: SegmentKind = SegmentKind.SWITCH


@dataclass(frozen=True, slots=True)
class Topology:
    segments: tuple[Segment, ...]
    nodes: tuple[Node, ...]
    name: str = "topology"
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        self.validate()

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise TopologyError(f"no node named {name!r}")

    def segment(self, name: str) -> Segment:
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise TopologyError(f"no segment named {name!r}")

    def adversaries(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.adversary is not None)

    def validate(self) -> None:
        seg_names = [s.name for s in self.segments]
        node_names = [n.name for n in self.nodes]
        for kind, names in (("segment", seg_names), ("node", node_names)):
            for name in names:
                if not _NAME_RE.match(name):
                    raise TopologyError(
                        f"{kind} name {name!r} must be 1-10 characters of a-z, 0-9 and '-', "
                        "starting with a letter"
                    )
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise TopologyError(f"duplicate {kind} name(s): {', '.join(sorted(dup))}")
        macs: set[str] = set()
        for node in self.nodes:
            if_names = [i.name for i in node.interfaces]
            if len(set(if_names)) != len(if_names):
                raise TopologyError(f"node {node.name!r} has duplicate interface names")
            for iface in node.interfaces:
                where = f"{node.name}.{iface.name}"
                if not _NAME_RE.match(iface.name):
                    raise TopologyError(f"interface name {where!r} must be 1-10 of a-z, 0-9, '-'")
                if iface.segment not in seg_names:
                    raise TopologyError(f"{where}: unknown segment {iface.segment!r}")
                if not _MAC_RE.match(iface.mac):
                    raise TopologyError(f"{where}: bad MAC {iface.mac!r} (want aa:bb:cc:dd:ee:ff)")
                if iface.mac in macs:
                    raise TopologyError(f"{where}: MAC {iface.mac} used twice")
                macs.add(iface.mac)
                try:
                    iface.ipv4_interface
                    iface.ipv6_interface
                except ValueError as exc:
                    raise TopologyError(f"{where}: bad address: {exc}") from None
                if node.kind is NodeKind.BRIDGE and (iface.ipv4 or iface.ipv6):
                    raise TopologyError(f"{where}: a bridge has no addresses")
            for route in node.routes:
                try:
                    ipaddress.ip_network(route.prefix)
                    if route.via:
                        ipaddress.ip_address(route.via)
                except ValueError as exc:
                    raise TopologyError(f"{node.name}: bad route {route.prefix}: {exc}") from None
                if route.interface not in if_names:
                    raise TopologyError(
                        f"{node.name}: route {route.prefix} uses unknown interface {route.interface!r}"
                    )
            if node.kind is NodeKind.BRIDGE and len(node.interfaces) != 2:
                raise TopologyError(f"bridge {node.name!r} needs exactly two interfaces")
            if node.kind is NodeKind.NAT:
                if node.nat_outside not in if_names:
                    raise TopologyError(f"NAT {node.name!r}: nat_outside must name one of its interfaces")


def mac_for(index: int, prefix: int = 0x02) -> str:
    """A locally administered unicast MAC, distinct per index (0 <= index < 2**32)."""
    if not 0 <= index < 2**32:
        raise TopologyError(f"mac index must be in [0, 2**32), got {index}")
    octets = [prefix, 0] + list(index.to_bytes(4, "big"))
    return ":".join(f"{o:02x}" for o in octets)
