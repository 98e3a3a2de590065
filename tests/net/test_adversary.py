"""Adversary positions see exactly what their place in the network lets them see, and an on-path
adversary can pass, drop, modify and delay."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from threatlab.errors import TopologyError
from threatlab.net import Link, Position, SegmentKind, Simulator, build, lan, offpath
from threatlab.net.sim import NS_PER_US
from threatlab.net.topology import Interface, Node, NodeKind, Segment, Topology, mac_for
from threatlab.net.wire import BROADCAST_MAC, ETH_P_IP, IPPROTO_UDP, UDP, Ethernet, IPv4


def _net(topology, seed=1):
    sim = Simulator(seed)
    net = build(topology, sim)
    seen = []
    net.adversary.on_frame = lambda frame, ifname, now: seen.append(frame)
    return sim, net, net.adversary, seen


def _udp_exchange(sim, net):
    """h1 and h2 resolve each other with ARP, then exchange one datagram each way."""
    h1, h2 = net.node("h1"), net.node("h2")
    s2 = h2.udp_socket(7)
    s2.on_datagram = lambda data, addr, dst: s2.sendto(b"pong", addr)
    got = []
    s1 = h1.udp_socket(5000)
    s1.on_datagram = lambda data, addr, dst: got.append(data)
    s1.sendto(b"ping", (h2.ip, 7))
    sim.run()
    assert got == [b"pong"]
    return h1, h2


def _kinds(frames):
    out = []
    for f in frames:
        if f[:6] == BROADCAST_MAC:
            out.append("broadcast")
        elif f[12:14] == b"\x08\x00":
            out.append("ip")
        else:
            out.append("arp-unicast")
    return out


def test_off_path_sees_none_of_the_victims_traffic_only_what_is_sent_to_it():
    sim, net, adv, seen = _net(offpath(2))
    _udp_exchange(sim, net)
    assert seen == []
    adv.host.ping(net.node("h1").ip)
    sim.run()
    mine = adv.node.mac
    assert seen and all(f[:6] in (mine, BROADCAST_MAC) for f in seen)
    assert len(adv.host.echo_replies) == 1


def test_off_path_sees_broadcasts_of_its_own_segment_only():
    sim, net, adv, seen = _net(offpath(2))
    r1 = net.node("r1")
    r1.ping("192.0.2.99")  # the router ARPs on the adversary's segment
    net.node("h1").ping("10.0.0.99")  # and h1 on the victims' LAN
    sim.run()
    assert _kinds(seen) == ["broadcast"] * r1.arp_retries


def test_same_lan_on_a_hub_sees_every_frame():
    sim, net, adv, seen = _net(lan(2, SegmentKind.HUB, adversary=Position.SAME_LAN))
    _udp_exchange(sim, net)
    assert _kinds(seen) == ["broadcast", "arp-unicast", "ip", "ip"]
    assert adv.host.drops.get("ip-not-for-us", 0) == 0  # its own stack ignored other hosts' frames


def test_same_lan_on_a_switch_sees_broadcasts_and_flooded_unknown_unicast_only():
    sim, net, adv, seen = _net(lan(2, SegmentKind.SWITCH, adversary=Position.SAME_LAN))
    h1, h2 = _udp_exchange(sim, net)
    # ARP request (broadcast) reaches it; the reply and the datagrams go to learned ports
    assert _kinds(seen) == ["broadcast"]
    # a frame to a MAC the switch has not learned is flooded, so the adversary sees it
    h1.raw_send("eth0", Ethernet(b"\x02\x99\x99\x99\x99\x99", h1.mac, 0x88B5, b"lost").encode())
    sim.run()
    assert len(seen) == 2 and seen[1][:6] == b"\x02\x99\x99\x99\x99\x99"


def test_on_path_sees_every_frame_to_and_from_its_victim_in_both_directions():
    sim, net, adv, seen = _net(lan(2, adversary=Position.ON_PATH))
    directions = []
    adv.intercept = lambda frame, direction: (directions.append(direction), frame)[1]
    _udp_exchange(sim, net)
    assert _kinds(seen) == ["broadcast", "arp-unicast", "ip", "ip"]
    assert directions == ["host", "net", "host", "net"]
    assert adv.neighbors[net.node("h1").ip] == (net.node("h1").mac, "host")


def test_on_path_sees_other_hosts_traffic_only_while_the_switch_floods_it():
    sim, net, adv, seen = _net(lan(3, adversary=Position.ON_PATH))
    h2, h3 = net.node("h2"), net.node("h3")
    h2.add_neighbor(h3.ip, h3.mac)
    h3.add_neighbor(h2.ip, h2.mac)
    h2.ping(h3.ip)
    sim.run()
    assert len(h2.echo_replies) == 1
    assert len(seen) == 1 and seen[0][:6] == h3.mac  # the request, flooded: h3 was not yet learned
    h2.ping(h3.ip, seq=1)
    sim.run()
    assert len(seen) == 1


def test_on_path_drop_stops_the_victims_traffic():
    sim, net, adv, seen = _net(lan(2, adversary=Position.ON_PATH))
    adv.intercept = lambda frame, direction: None if frame[12:14] == b"\x08\x00" else frame
    h1, h2 = net.node("h1"), net.node("h2")
    h1.ping(h2.ip)
    sim.run()
    assert h1.echo_replies == [] and adv.node.drops["intercepted"] == 1


def test_on_path_modify_rewrites_what_the_victim_receives():
    sim, net, adv, _ = _net(lan(2, adversary=Position.ON_PATH))

    def tamper(frame, direction):
        eth = Ethernet.decode(frame)
        if direction != "net" or eth.ethertype != ETH_P_IP:
            return frame
        ip = IPv4.decode(eth.payload)
        udp = UDP.decode(ip.payload)
        forged = UDP(udp.src_port, udp.dst_port, b"PWNED").encode(ip.src, ip.dst)
        new_ip = IPv4(ip.src, ip.dst, ip.proto, forged, ip.ttl, identification=ip.identification)
        return Ethernet(eth.dst, eth.src, eth.ethertype, new_ip.encode()).encode()

    adv.intercept = tamper
    h1, h2 = net.node("h1"), net.node("h2")
    s2 = h2.udp_socket(7)
    s2.on_datagram = lambda data, addr, dst: s2.sendto(b"pong", addr)
    got = []
    s1 = h1.udp_socket(5000)
    s1.on_datagram = lambda data, addr, dst: got.append(data)
    s1.sendto(b"ping", (h2.ip, 7))
    sim.run()
    assert got == [b"PWNED"]
    assert adv.node.stats["modified"] == 1


def test_on_path_delay_adds_to_the_round_trip_time():
    link = Link(delay_ns=10 * NS_PER_US)
    rtts = []
    for delay in (0, 300 * NS_PER_US):
        sim, net, adv, _ = _net(lan(2, adversary=Position.ON_PATH, link=link))
        adv.intercept = lambda frame, direction, d=delay: (frame, d) if frame[12:14] == b"\x08\x00" else frame
        h1, h2 = net.node("h1"), net.node("h2")
        h1.add_neighbor(h2.ip, h2.mac)
        h2.add_neighbor(h1.ip, h1.mac)
        h1.ping(h2.ip)
        sim.run()
        rtts.append(h1.echo_replies[0].rtt_ns)
    assert rtts[1] - rtts[0] == 2 * 300 * NS_PER_US  # request and reply each held


def test_spoofed_ip_from_off_path_arrives_with_the_forged_source():
    sim, net, adv, _ = _net(offpath(2))
    h1, h2 = net.node("h1"), net.node("h2")
    got = []
    s = h1.udp_socket(9)
    s.on_datagram = lambda data, addr, dst: got.append(addr)
    forged = IPv4(h2.ip, h1.ip, IPPROTO_UDP, UDP(53, 9, b"forged").encode(h2.ip, h1.ip))
    assert adv.send_ip(forged)
    sim.run()
    assert got == [(h2.ip, 53)]


def test_same_lan_frame_with_a_spoofed_source_mac_poisons_the_switch():
    sim, net, adv, seen = _net(lan(2, adversary=Position.SAME_LAN))
    h1, h2 = net.node("h1"), net.node("h2")
    adv.send_frame(Ethernet(BROADCAST_MAC, h2.mac, 0x88B5, b"i am h2").encode())
    sim.run()
    assert net.segment("lan").fdb[h2.mac][0].nic is adv.node.interfaces["eth0"]
    h1.add_neighbor(h2.ip, h2.mac)
    h1.ping(h2.ip)
    sim.run()
    assert h1.echo_replies == [] and any(f[12:14] == b"\x08\x00" for f in seen)


def test_on_path_adversary_injects_towards_a_learned_host():
    sim, net, adv, _ = _net(lan(2, adversary=Position.ON_PATH))
    h1, h2 = _udp_exchange(sim, net)
    got = []
    s = h1.udp_socket(9)
    s.on_datagram = lambda data, addr, dst: got.append((data, addr))
    forged = IPv4(h2.ip, h1.ip, IPPROTO_UDP, UDP(7, 9, b"injected").encode(h2.ip, h1.ip))
    assert adv.send_ip(forged, src_mac=h2.mac)
    sim.run()
    assert got == [(b"injected", (h2.ip, 7))]


def test_adversary_position_must_fit_the_node_kind():
    bad = Topology(
        (Segment("lan"),),
        (Node("adv", (Interface("eth0", "lan", mac_for(1), "10.0.0.1/24"),), adversary=Position.ON_PATH),),
    )
    with pytest.raises(TopologyError, match="bridge"):
        build(bad, Simulator())
    bad2 = Topology(
        (Segment("a"), Segment("b")),
        (Node("adv", (Interface("p", "a", mac_for(1)), Interface("q", "b", mac_for(2))),
              kind=NodeKind.BRIDGE, adversary=Position.SAME_LAN),),
    )
    with pytest.raises(TopologyError, match="host"):
        build(bad2, Simulator())


def test_lan_builder_places_each_position():
    assert lan(2, adversary=Position.SAME_LAN).node("adv").interfaces[0].segment == "lan"
    on = lan(2, adversary=Position.ON_PATH)
    assert on.node("adv").kind is NodeKind.BRIDGE and on.node("h1").interfaces[0].segment == "h1-wire"
    off = lan(2, adversary=Position.OFF_PATH)
    assert off.node("adv").interfaces[0].segment == "wan"
    assert {n.name for n in off.nodes} == {"h1", "h2", "r1", "adv"}
    assert IPv4Address("10.0.0.1") == build(off, Simulator()).node("h1").ip
