"""Building networks from topology descriptions, and the ready-made topologies."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from threatlab.errors import TopologyError
from threatlab.net import (
    Bridge,
    Host,
    Link,
    Nat,
    Position,
    Router,
    SegmentKind,
    Simulator,
    build,
    chain,
    lan,
    natted,
    offpath,
)
from threatlab.net.topology import Interface, Node, Route, Segment, Topology, mac_for


def test_build_makes_each_node_kind_and_attaches_interfaces_with_their_links():
    net = build(natted(1, link=Link(delay_ns=7, mtu=1400)), Simulator())
    assert isinstance(net.node("h1"), Host) and not isinstance(net.node("h1"), Router)
    assert isinstance(net.node("nat"), Nat) and net.node("nat").outside == "out"
    nic = net.node("h1").interfaces["eth0"]
    assert (nic.mtu, nic.port.delay, nic.port.segment.name) == (1400, 7, "home")
    assert net.segment("home").kind is SegmentKind.SWITCH
    assert net.node("h1").routes.lookup(IPv4Address("8.8.8.8")).via == IPv4Address("192.168.1.1")


def test_unknown_names_raise_topology_errors():
    net = build(lan(2), Simulator())
    with pytest.raises(TopologyError):
        net.node("nope")
    with pytest.raises(TopologyError):
        net.segment("nope")
    with pytest.raises(TopologyError):
        net.adversary  # noqa: B018


@pytest.mark.parametrize("builder", [
    lambda: lan(100),
    lambda: lan(100, SegmentKind.HUB, adversary=Position.SAME_LAN),
    lambda: lan(100, adversary=Position.ON_PATH),
    lambda: offpath(100),
    lambda: natted(100),
    lambda: chain(20),
])
def test_builders_make_valid_topologies_at_their_largest(builder):
    topo = builder()
    net = build(topo, Simulator())
    assert len(net.nodes) == len(topo.nodes)


@pytest.mark.parametrize("bad", [lambda: lan(0), lambda: offpath(101), lambda: natted(0), lambda: chain(0),
                                 lambda: chain(2, mtus=(1500,))])
def test_builders_reject_out_of_range_sizes(bad):
    with pytest.raises(TopologyError):
        bad()


def test_every_host_reaches_every_other_in_each_builder():
    for topo in (lan(3), offpath(2), chain(3), natted(2)):
        sim = Simulator()
        net = build(topo, sim)
        hosts = [n for n in net.hosts() if type(n) is Host]
        targets = [h for h in hosts if not (topo.name.startswith("natted") and h.name != "srv")]
        for src in hosts:
            for dst in targets:
                if src is not dst:
                    src.ping(dst.ip, seq=len(src.echo_replies))
                    sim.run()
        for src in hosts:
            expected = len([t for t in targets if t is not src])
            assert len(src.echo_replies) == expected, (topo.name, src.name)


def test_ipv6_static_neighbours_span_a_bridge():
    sim = Simulator()
    net = build(lan(2, adversary=Position.ON_PATH), sim)
    h1, h2 = net.node("h1"), net.node("h2")
    assert isinstance(net.node("adv"), Bridge)
    got = []
    h1.register_ipv6(lambda packet, nic: got.append(packet.payload))
    h2.send_ipv6(h1.ip6, 253, b"across the bridge")
    sim.run()
    assert got == [b"across the bridge"]


def test_topology_routes_are_installed():
    topo = Topology(
        (Segment("a"),),
        (Node("h1", (Interface("eth0", "a", mac_for(1), "10.1.0.1/16"),),
              routes=(Route("192.0.2.0/24", "eth0", "10.1.0.9"), Route("0.0.0.0/0", "eth0", "10.1.0.1"))),),
    )
    h1 = build(topo, Simulator()).node("h1")
    assert h1.routes.lookup(IPv4Address("192.0.2.5")).via == IPv4Address("10.1.0.9")  # longest prefix
    assert h1.routes.lookup(IPv4Address("10.1.3.3")).connected
    assert h1.routes.lookup(IPv4Address("8.8.8.8")).via == IPv4Address("10.1.0.1")


def test_network_drops_collects_every_counter_by_name():
    sim = Simulator()
    net = build(lan(2, link=Link(mtu=600)), sim)
    net.node("h1").raw_send("eth0", bytes(700))
    net.node("h1").udp_socket().sendto(b"x", (net.node("h2").ip, 9))
    sim.run()
    assert net.drops() == {"h1.eth0": {"oversize": 1}, "h2": {"udp-port-unreachable": 1}}
