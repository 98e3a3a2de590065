"""NAT (RFC 3022 NAPT; RFC 4787, 5382, 5508 behaviour): mappings, timeouts, filtering, checksums,
ICMP echo identifiers and ICMP errors."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from threatlab.errors import ParamError
from threatlab.net import Link, NatConfig, Simulator, build, natted
from threatlab.net.sim import NS_PER_S
from threatlab.net.wire import IPPROTO_TCP, IPPROTO_UDP, UDP, internet_checksum

OUTSIDE = IPv4Address("203.0.113.1")


def _natted(n=2, config=None, **kw):
    sim = Simulator(seed=3)
    net = build(natted(n, **kw), sim, nat_config=config)
    return sim, net, net.node("nat"), net.node("srv"), [net.node(f"h{i}") for i in range(1, n + 1)]


def _echo_server(srv, port=7):
    seen = []
    sock = srv.udp_socket(port)

    def on(data, addr, dst):
        seen.append(addr)
        sock.sendto(data, addr)

    sock.on_datagram = on
    return seen, sock


def _client(host, port):
    got = []
    sock = host.udp_socket(port)
    sock.on_datagram = lambda data, addr, dst: got.append((data, addr, dst))
    return got, sock


def test_udp_source_is_rewritten_to_the_outside_address_and_the_reply_comes_back():
    sim, net, nat, srv, (h1, _) = _natted()
    seen, _ = _echo_server(srv)
    got, sock = _client(h1, 5000)
    sock.sendto(b"hello", (srv.ip, 7))
    sim.run()
    assert seen == [(OUTSIDE, 5000)]  # the inside port is kept when free (port preservation)
    assert got == [(b"hello", (srv.ip, 7), h1.ip)]
    (m,) = nat.mappings()
    assert (m.proto, m.inside_ip, m.inside_port, m.outside_port) == (IPPROTO_UDP, h1.ip, 5000, 5000)


def test_two_inside_hosts_on_the_same_port_get_distinct_outside_ports():
    sim, net, nat, srv, (h1, h2) = _natted()
    seen, _ = _echo_server(srv)
    got1, s1 = _client(h1, 5000)
    got2, s2 = _client(h2, 5000)
    s1.sendto(b"one", (srv.ip, 7))
    s2.sendto(b"two", (srv.ip, 7))
    sim.run()
    assert len(set(seen)) == 2 and all(ip == OUTSIDE for ip, _ in seen)
    assert [g[0] for g in got1] == [b"one"] and [g[0] for g in got2] == [b"two"]


def test_translated_udp_checksum_verifies_at_the_server():
    sim, net, nat, srv, (h1, _) = _natted()
    raw = []
    srv.register_protocol(IPPROTO_UDP, lambda packet, nic: raw.append(packet))
    h1.udp_socket(5000).sendto(b"checksummed", (srv.ip, 7))
    sim.run()
    (p,) = raw
    assert UDP.decode(p.payload, p.src, p.dst) == UDP(5000, 7, b"checksummed")  # verify=True


def test_tcp_ports_and_checksum_are_rewritten():
    sim, net, nat, srv, (h1, _) = _natted()
    raw = []
    srv.register_protocol(IPPROTO_TCP, lambda packet, nic: raw.append(packet))

    def tcp(src, dst, sport, dport):  # a bare SYN; the TCP codec lives in threatlab.tcp
        hdr = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, 0x02, 65535, 0, 0)
        c = internet_checksum(hdr, int(src) + int(dst) + IPPROTO_TCP + len(hdr))
        return hdr[:16] + c.to_bytes(2, "big") + hdr[18:]

    h1.send_ip(srv.ip, IPPROTO_TCP, tcp(h1.ip, srv.ip, 33000, 80))
    sim.run()
    (p,) = raw
    assert p.src == OUTSIDE and p.payload[:2] == (33000).to_bytes(2, "big")
    assert internet_checksum(p.payload, int(p.src) + int(p.dst) + IPPROTO_TCP + len(p.payload)) == 0


def test_unsolicited_inbound_udp_is_dropped_without_a_mapping():
    sim, net, nat, srv, (h1, _) = _natted()
    srv.udp_socket(7).sendto(b"hi", (OUTSIDE, 5000))
    sim.run()
    assert nat.drops["nat-no-mapping"] == 1
    assert srv.stats.get("icmp-in:3/3", 0) == 0  # silently: no port unreachable from the NAT


def test_udp_mapping_expires_after_the_idle_timeout_and_inbound_is_then_dropped():
    sim, net, nat, srv, (h1, _) = _natted(config=NatConfig(udp_timeout_ns=30 * NS_PER_S))
    got, sock = _client(h1, 5000)
    server = srv.udp_socket(7)
    sock.sendto(b"open", (srv.ip, 7))
    sim.run()
    server.sendto(b"in time", (OUTSIDE, 5000))  # the remote learned the mapping
    sim.run(until=sim.now + 30 * NS_PER_S)  # refreshed by the inbound packet (Linux-like)
    server.sendto(b"just in time", (OUTSIDE, 5000))
    sim.run(until=sim.now + 30 * NS_PER_S + 1)
    server.sendto(b"too late", (OUTSIDE, 5000))
    sim.run()
    assert [g[0] for g in got] == [b"in time", b"just in time"]
    assert nat.drops["nat-mapping-expired"] == 1 and nat.mappings() == []


def test_default_udp_mapping_timeout_is_300_seconds_without_inbound_refresh():
    assert NatConfig().udp_timeout_ns == 300 * NS_PER_S
    sim, net, nat, srv, (h1, _) = _natted(config=NatConfig(inbound_refresh=False))
    got, sock = _client(h1, 5000)
    server = srv.udp_socket(7)
    sock.sendto(b"open", (srv.ip, 7))
    sim.run()
    sim.run(until=sim.now + 200 * NS_PER_S)
    server.sendto(b"at 200 s", (OUTSIDE, 5000))
    sim.run(until=sim.now + 101 * NS_PER_S)
    server.sendto(b"at 301 s", (OUTSIDE, 5000))
    sim.run()
    assert [g[0] for g in got] == [b"at 200 s"]
    assert nat.drops["nat-mapping-expired"] == 1


@pytest.mark.parametrize(
    "filtering, other_port, other_host",
    [
        ("address-and-port-dependent", False, False),
        ("address-dependent", True, False),
        ("endpoint-independent", True, True),
    ],
)
def test_filtering_decides_who_may_use_a_mapping(filtering, other_port, other_host):
    sim = Simulator()
    net = build(natted(1), sim, nat_config=NatConfig(filtering=filtering))
    nat, srv, h1 = net.node("nat"), net.node("srv"), net.node("h1")
    got, sock = _client(h1, 5000)
    sock.sendto(b"open", (srv.ip, 7))
    sim.run()
    srv.udp_socket(8).sendto(b"other port", (OUTSIDE, 5000))
    sim.run()
    # a second outside host: give srv a second address by a raw datagram from 203.0.113.20
    srv.send_udp(7, OUTSIDE, 5000, b"other host", src=IPv4Address("203.0.113.20"))
    sim.run()
    assert [g[0] for g in got] == [b"other port"] * other_port + [b"other host"] * other_host
    assert nat.drops["nat-filtered"] == (not other_port) + (not other_host)


def test_icmp_echo_identifiers_are_mapped_per_inside_host():
    sim, net, nat, srv, (h1, h2) = _natted()
    idents = []
    srv.icmp_listeners.append(lambda icmp, packet, nic: idents.append(icmp.ident))
    h1.ping(srv.ip, seq=1, ident=77)
    h2.ping(srv.ip, seq=2, ident=77)
    sim.run()
    assert len(set(idents)) == 2
    assert [(r.ident, r.seq) for r in h1.echo_replies] == [(77, 1)]
    assert [(r.ident, r.seq) for r in h2.echo_replies] == [(77, 2)]


def test_icmp_error_about_an_outbound_flow_is_translated_back_to_the_inside_host():
    sim, net, nat, srv, (h1, _) = _natted()
    log = []
    h1.icmp_listeners.append(lambda icmp, packet, nic: log.append(icmp))
    h1.udp_socket(5000).sendto(b"closed?", (srv.ip, 9))
    sim.run()
    (icmp,) = log
    assert (icmp.type, icmp.code) == (3, 3)
    quoted = icmp.payload
    assert IPv4Address(quoted[12:16]) == h1.ip and quoted[20:22] == (5000).to_bytes(2, "big")
    assert internet_checksum(quoted[:20]) == 0  # inner header checksum fixed up


def test_frag_needed_from_the_nat_reaches_the_inside_host():
    sim, net, nat, srv, (h1, _) = _natted(outside_link=Link(mtu=1000))
    log = []
    h1.icmp_listeners.append(lambda icmp, packet, nic: log.append((icmp, packet.src)))
    sock = h1.udp_socket(5000)
    sock.df = True
    sock.sendto(bytes(1200), (srv.ip, 7))
    sim.run()
    ((icmp, src),) = log
    assert (icmp.type, icmp.code, icmp.next_hop_mtu, src) == (3, 4, 1000, IPv4Address("192.168.1.1"))


def test_fragmented_datagram_is_reassembled_translated_and_refragmented():
    sim, net, nat, srv, (h1, _) = _natted(outside_link=Link(mtu=700))
    seen, _ = _echo_server(srv)
    got, sock = _client(h1, 5000)
    data = bytes(i % 253 for i in range(4000))
    sock.sendto(data, (srv.ip, 7))
    sim.run()
    assert seen == [(OUTSIDE, 5000)]
    assert got == [(data, (srv.ip, 7), h1.ip)]


def test_protocols_the_nat_cannot_map_are_dropped_and_counted():
    sim, net, nat, srv, (h1, _) = _natted()
    h1.send_ip(srv.ip, 132, b"sctp")
    sim.run()
    assert nat.drops["nat-unsupported-protocol"] == 1


def test_nat_config_rejects_bad_values_naming_them():
    with pytest.raises(ParamError, match="udp_timeout_ns"):
        NatConfig(udp_timeout_ns=0)
    with pytest.raises(ParamError, match="filtering"):
        NatConfig(filtering="cone")
    with pytest.raises(ParamError, match="port_range"):
        NatConfig(port_range=(2000, 1000))


def test_sequential_allocation_uses_the_port_range():
    sim, net, nat, srv, (h1, h2) = _natted(
        config=NatConfig(port_allocation="sequential", port_range=(20000, 20001))
    )
    seen, _ = _echo_server(srv)
    for host, port in ((h1, 1), (h2, 2), (h1, 3)):
        host.udp_socket(port).sendto(b"x", (srv.ip, 7))
    sim.run()
    assert seen == [(OUTSIDE, 20000), (OUTSIDE, 20001)]
    assert nat.drops["nat-ports-exhausted"] == 1
