"""Build a simulated network from a `Topology`, and ready-made topologies for common threats.

    sim = Simulator(seed=1)
    net = build(lan(2, SegmentKind.SWITCH, adversary=Position.SAME_LAN), sim)
    net.capture("run.pcap")
    net.node("h1").ping(net.node("h2").ip)
    sim.run()
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

from threatlab.errors import ParamError, TopologyError
from threatlab.net.adversary import Adversary
from threatlab.net.bridge import Bridge
from threatlab.net.ethernet import Segment
from threatlab.net.host import Host
from threatlab.net.pcap import PcapWriter
from threatlab.net.router import Nat, NatConfig, Router
from threatlab.net.sim import Simulator
from threatlab.net.topology import (
    Interface,
    Link,
    Node,
    NodeKind,
    Position,
    Route,
    SegmentKind,
    Topology,
    mac_for,
)
from threatlab.net.topology import Segment as SegmentSpec
from threatlab.net.wire import mac_bytes

__all__ = ["Network", "build", "lan", "offpath", "natted", "chain"]

NetNode = Host | Bridge


class Network:
    """A built network: nodes and segments by name, taps, captures, the adversary."""

    def __init__(self, topology: Topology, sim: Simulator) -> None:
        self.topology = topology
        self.sim = sim
        self.nodes: dict[str, NetNode] = {}
        self.segments: dict[str, Segment] = {}
        self.adversaries: dict[str, Adversary] = {}
        self._writers: list[PcapWriter] = []

    def node(self, name: str) -> Any:
        try:
            return self.nodes[name]
        except KeyError:
            raise TopologyError(f"no node named {name!r}") from None

    def segment(self, name: str) -> Segment:
        try:
            return self.segments[name]
        except KeyError:
            raise TopologyError(f"no segment named {name!r}") from None

    @property
    def adversary(self) -> Adversary:
        """The one adversary of the topology."""
        if len(self.adversaries) != 1:
            n = len(self.adversaries)
            raise TopologyError(f"topology {self.topology.name!r} has {n} adversaries, not one")
        return next(iter(self.adversaries.values()))

    def hosts(self) -> Iterator[Host]:
        return (n for n in self.nodes.values() if isinstance(n, Host))

    def tap(self, segment: str, callback: Callable[[bytes, int], Any]) -> None:
        """callback(frame, now) for every frame that reaches `segment`."""
        self.segment(segment).add_tap(callback)

    def capture(self, path: str | os.PathLike[str], segment: str | None = None) -> PcapWriter:
        """Record frames to a pcap: those crossing `segment`, or with None every frame once, when
        its NIC transmits it (a bridge passing a frame on unchanged does not record it again).
        The writer is closed by `close()`."""
        writer = PcapWriter(path)
        self._writers.append(writer)
        if segment is not None:
            self.tap(segment, writer.write)
        else:
            for node in self.nodes.values():
                for nic in node.interfaces.values():
                    nic.tx_hooks.append(writer.write)
        return writer

    def close(self) -> None:
        for w in self._writers:
            w.close()
        self._writers.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drops(self) -> dict[str, dict[str, int]]:
        """Every non-empty drop counter, by node, interface and segment name."""
        out: dict[str, dict[str, int]] = {}
        for node in self.nodes.values():
            if node.drops:
                out[node.name] = dict(node.drops)
            for nic in node.interfaces.values():
                if nic.drops:
                    out[f"{node.name}.{nic.name}"] = dict(nic.drops)
        for seg in self.segments.values():
            if seg.drops:
                out[f"segment:{seg.name}"] = dict(seg.drops)
        return out


def build(topology: Topology, sim: Simulator, *, nat_config: NatConfig | None = None) -> Network:
    """The simulated network of `topology`, driven by `sim`."""
    net = Network(topology, sim)
    for spec in topology.segments:
        net.segments[spec.name] = Segment(spec.name, spec.kind, sim)
    for spec in topology.nodes:
        node: NetNode
        if spec.kind is NodeKind.HOST:
            node = Host(spec.name, sim)
        elif spec.kind is NodeKind.ROUTER:
            node = Router(spec.name, sim)
        elif spec.kind is NodeKind.NAT:
            node = Nat(spec.name, sim, outside=spec.nat_outside, config=nat_config)
        else:
            node = Bridge(spec.name, sim)
        for iface in spec.interfaces:
            nic = node.add_interface(
                iface.name, mac_bytes(iface.mac), ipv4=iface.ipv4_interface, ipv6=iface.ipv6_interface
            )
            net.segments[iface.segment].attach(nic, iface.link)
        for route in spec.routes:
            node.add_route(route.prefix, route.interface, route.via)
        net.nodes[spec.name] = node
        if spec.adversary is not None:
            try:
                net.adversaries[spec.name] = Adversary(node, spec.adversary)
            except ParamError as exc:
                raise TopologyError(f"adversary {spec.name}: {exc}") from None
    _static_ipv6_neighbours(net)
    return net


def _static_ipv6_neighbours(net: Network) -> None:
    """IPv6 has no NDP here: every host knows the MAC of every IPv6 address on its segments,
    looking through bridges, which are transparent."""
    by_segment: dict[str, list] = {}
    for node in net.nodes.values():
        for nic in node.interfaces.values():
            by_segment.setdefault(nic.port.segment.name, []).append(nic)
    # segments joined by a bridge form one broadcast domain
    domain = {name: name for name in by_segment}

    def find(x: str) -> str:
        while domain[x] != x:
            x = domain[x]
        return x

    for node in net.nodes.values():
        if isinstance(node, Bridge) and len(node.interfaces) == 2:
            a, b = (n.port.segment.name for n in node.interfaces.values())
            domain[find(a)] = find(b)
    nics_by_domain: dict[str, list] = {}
    for seg, nics in by_segment.items():
        nics_by_domain.setdefault(find(seg), []).extend(nics)
    for nics in nics_by_domain.values():
        v6 = [n for n in nics if n.ipv6 is not None]
        for nic in v6:
            owner = net.nodes[nic.node_name]
            for other in v6:
                if other is not nic:
                    owner.add_neighbor(other.ipv6.ip, other.mac)


# -- ready-made topologies ------------------------------------------------------------------


def lan(
    n_hosts: int = 2,
    kind: SegmentKind = SegmentKind.SWITCH,
    adversary: Position | None = None,
    link: Link = Link(),
) -> Topology:
    """`n_hosts` hosts h1..hN on segment "lan" (10.0.0.i/24, fd00::i/64).

    The adversary "adv": SAME_LAN, a host 10.0.0.200 on "lan"; ON_PATH, a bridge between h1 and
    "lan" (h1 sits on segment "h1-wire"; the bridge's ports are "host" towards h1 and "net"
    towards the LAN); OFF_PATH, a host on segment "wan" behind router "r1", as in `offpath`.
    """
    if adversary is Position.OFF_PATH:
        return offpath(n_hosts, kind, link=link)
    if not 1 <= n_hosts <= 100:
        raise TopologyError(f"n_hosts must be in [1, 100], got {n_hosts}")
    segments = [SegmentSpec("lan", kind)]
    nodes = []
    for i in range(1, n_hosts + 1):
        seg = "lan"
        if adversary is Position.ON_PATH and i == 1:
            seg = "h1-wire"
            segments.append(SegmentSpec("h1-wire", SegmentKind.HUB))
        nodes.append(_host(f"h{i}", i, seg, f"10.0.0.{i}/24", f"fd00::{i}/64", link))
    if adversary is Position.SAME_LAN:
        nodes.append(
            Node("adv", (Interface("eth0", "lan", mac_for(200), "10.0.0.200/24", "fd00::c8/64", link),),
                 adversary=Position.SAME_LAN)
        )
    elif adversary is Position.ON_PATH:
        nodes.append(
            Node("adv", (Interface("host", "h1-wire", mac_for(200), link=link),
                         Interface("net", "lan", mac_for(201), link=link)),
                 kind=NodeKind.BRIDGE, adversary=Position.ON_PATH)
        )
    return Topology(tuple(segments), tuple(nodes), name=f"lan-{kind.value}-{n_hosts}")


def offpath(n_hosts: int = 2, kind: SegmentKind = SegmentKind.SWITCH, link: Link = Link()) -> Topology:
    """Hosts h1..hN on "lan" (10.0.0.i/24) behind router "r1" (10.0.0.254; 192.0.2.1 on "wan"),
    and the off-path adversary "adv" (192.0.2.66) alone on "wan", a segment of its own."""
    if not 1 <= n_hosts <= 100:
        raise TopologyError(f"n_hosts must be in [1, 100], got {n_hosts}")
    nodes = [
        _host(f"h{i}", i, "lan", f"10.0.0.{i}/24", f"fd00::{i}/64", link, gateway="10.0.0.254")
        for i in range(1, n_hosts + 1)
    ]
    nodes.append(
        Node("r1", (Interface("eth0", "lan", mac_for(254), "10.0.0.254/24", "fd00::fe/64", link),
                    Interface("eth1", "wan", mac_for(255), "192.0.2.1/24", "fd01::1/64", link)),
             kind=NodeKind.ROUTER)
    )
    nodes.append(
        Node("adv", (Interface("eth0", "wan", mac_for(200), "192.0.2.66/24", "fd01::42/64", link),),
             routes=(Route("0.0.0.0/0", "eth0", "192.0.2.1"),), adversary=Position.OFF_PATH)
    )
    return Topology((SegmentSpec("lan", kind), SegmentSpec("wan", SegmentKind.SWITCH)), tuple(nodes),
                    name=f"offpath-{n_hosts}")


def natted(n_inside: int = 1, link: Link = Link(), outside_link: Link | None = None) -> Topology:
    """Hosts h1..hN on "home" (192.168.1.i/24) behind NAT "nat" (192.168.1.1; 203.0.113.1 on "wan"),
    and a server "srv" (203.0.113.10) on "wan"."""
    if not 1 <= n_inside <= 100:
        raise TopologyError(f"n_inside must be in [1, 100], got {n_inside}")
    wan_link = outside_link or link
    nodes = [
        _host(f"h{i}", i + 1, "home", f"192.168.1.{i + 1}/24", None, link, gateway="192.168.1.1")
        for i in range(1, n_inside + 1)
    ]
    nodes.append(
        Node("nat", (Interface("in", "home", mac_for(254), "192.168.1.1/24", link=link),
                     Interface("out", "wan", mac_for(255), "203.0.113.1/24", link=wan_link)),
             kind=NodeKind.NAT, nat_outside="out")
    )
    nodes.append(_host("srv", 1000, "wan", "203.0.113.10/24", None, wan_link))
    return Topology((SegmentSpec("home", SegmentKind.SWITCH), SegmentSpec("wan", SegmentKind.SWITCH)),
                    tuple(nodes), name=f"natted-{n_inside}")


def chain(n_routers: int = 1, link: Link = Link(), mtus: tuple[int, ...] | None = None) -> Topology:
    """h1 - r1 - ... - rN - h2 in a line of switched segments net0..netN.

    Segment i is 10.0.i.0/24: its left node has .1, its right node .2. `mtus` gives each
    segment's MTU (default: the link's), so one narrow segment makes routers fragment or send
    "fragmentation needed".
    """
    if not 1 <= n_routers <= 20:
        raise TopologyError(f"n_routers must be in [1, 20], got {n_routers}")
    n_seg = n_routers + 1
    if mtus is None:
        mtus = (link.mtu,) * n_seg
    if len(mtus) != n_seg:
        raise TopologyError(f"mtus needs one MTU per segment ({n_seg}), got {len(mtus)}")
    links = [Link(link.delay_ns, link.rate_bps, link.loss, m) for m in mtus]
    segs = tuple(SegmentSpec(f"net{i}", SegmentKind.SWITCH) for i in range(n_seg))
    nodes = [
        Node("h1", (Interface("eth0", "net0", mac_for(1), "10.0.0.1/24", link=links[0]),),
             routes=(Route("0.0.0.0/0", "eth0", "10.0.0.2"),)),
        Node("h2", (Interface("eth0", f"net{n_routers}", mac_for(2), f"10.0.{n_routers}.2/24",
                              link=links[n_routers]),),
             routes=(Route("0.0.0.0/0", "eth0", f"10.0.{n_routers}.1"),)),
    ]
    for k in range(1, n_routers + 1):
        left, right = k - 1, k
        routes = [Route(f"10.0.{j}.0/24", "eth0", f"10.0.{left}.1") for j in range(left)]
        routes += [Route(f"10.0.{j}.0/24", "eth1", f"10.0.{right}.2") for j in range(right + 1, n_seg)]
        nodes.append(
            Node(f"r{k}", (Interface("eth0", f"net{left}", mac_for(100 + 2 * k), f"10.0.{left}.2/24",
                                     link=links[left]),
                           Interface("eth1", f"net{right}", mac_for(101 + 2 * k), f"10.0.{right}.1/24",
                                     link=links[right])),
                 routes=tuple(routes), kind=NodeKind.ROUTER)
        )
    return Topology(segs, tuple(nodes), name=f"chain-{n_routers}")


def _host(name: str, index: int, segment: str, ipv4: str, ipv6: str | None, link: Link,
          gateway: str | None = None) -> Node:
    routes = (Route("0.0.0.0/0", "eth0", gateway),) if gateway else ()
    return Node(name, (Interface("eth0", segment, mac_for(index), ipv4, ipv6, link),), routes=routes)
