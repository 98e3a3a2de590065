"""Routers (RFC 1812): forwarding, TTL, ICMP errors, fragmentation, reverse-path filtering."""

from __future__ import annotations

from ipaddress import IPv4Address

from threatlab.net import Simulator, build, chain, offpath
from threatlab.net.wire import IPPROTO_UDP, UDP, ICMPv4, IPv4


def _chain(n=1, mtus=None, seed=1):
    sim = Simulator(seed)
    net = build(chain(n, mtus=mtus), sim)
    return sim, net, net.node("h1"), net.node("h2")


def _icmp_log(host):
    log = []
    host.icmp_listeners.append(lambda icmp, packet, nic: log.append((icmp, packet)))
    return log


def test_ping_crosses_a_router_and_ttl_drops_by_one_per_hop():
    sim, net, h1, h2 = _chain(3)
    ttls = []
    h2.add_sniffer(lambda frame, ifname, now: frame[12:14] == b"\x08\x00" and ttls.append(frame[22]))
    h1.ping(h2.ip)
    sim.run()
    assert len(h1.echo_replies) == 1
    assert ttls == [64 - 3]
    assert all(net.node(f"r{k}").stats["forwarded"] == 2 for k in (1, 2, 3))


def test_off_path_adversary_reaches_the_lan_through_the_router():
    sim = Simulator()
    net = build(offpath(2), sim)
    adv, h1 = net.node("adv"), net.node("h1")
    adv.ping(h1.ip)
    sim.run()
    assert [r.src for r in adv.echo_replies] == [h1.ip]


def test_expired_ttl_gets_time_exceeded_from_each_router_in_turn():
    sim, net, h1, h2 = _chain(3)
    log = _icmp_log(h1)
    for ttl in (1, 2, 3):
        h1.ping(h2.ip, seq=ttl, ttl=ttl)
    sim.run()
    assert [(i.type, i.code, p.src) for i, p in log] == [
        (11, 0, IPv4Address("10.0.0.2")),
        (11, 0, IPv4Address("10.0.1.2")),
        (11, 0, IPv4Address("10.0.2.2")),
    ]
    quoted = log[0][0].payload
    assert IPv4Address(quoted[16:20]) == h2.ip and quoted[8] == 1  # the datagram as it arrived
    assert h1.echo_replies == []


def test_router_sends_no_icmp_error_about_an_icmp_error():
    sim, net, h1, h2 = _chain(1)
    err = ICMPv4.dest_unreachable(3, IPv4(h2.ip, h1.ip, IPPROTO_UDP, bytes(8)).encode())
    h1.send_ip(h2.ip, 1, err.encode(), ttl=1)
    sim.run()
    r1 = net.node("r1")
    assert r1.drops["ttl-exceeded"] == 1 and r1.drops["icmp-error-suppressed"] == 1
    assert h1.stats.get("icmp-in:11/0", 0) == 0


def test_df_packet_over_the_next_hop_mtu_gets_frag_needed_with_that_mtu():
    sim, net, h1, h2 = _chain(1, mtus=(1500, 576))
    log = _icmp_log(h1)
    sock = h1.udp_socket(4000)
    sock.df = True
    sock.sendto(bytes(1000), (h2.ip, 9))
    sim.run()
    (icmp, packet), = log
    assert (icmp.type, icmp.code, icmp.next_hop_mtu, packet.src) == (3, 4, 576, IPv4Address("10.0.0.2"))
    quoted = icmp.payload
    assert quoted[20:22] == (4000).to_bytes(2, "big") and quoted[8] == 64  # TTL as received
    assert net.node("r1").drops["frag-needed"] == 1
    assert h2.interfaces["eth0"].frames_in == 0


def test_router_fragments_a_non_df_packet_for_a_small_mtu_link_and_the_host_reassembles():
    sim, net, h1, h2 = _chain(2, mtus=(1500, 576, 1500))
    sizes = []
    net.tap("net1", lambda frame, now: sizes.append(len(frame)) if frame[12:14] == b"\x08\x00" else None)
    got = []
    s = h2.udp_socket(9)
    s.on_datagram = lambda data, addr, dst: got.append((data, addr))
    data = bytes(i % 251 for i in range(3000))
    h1.udp_socket(1234).sendto(data, (h2.ip, 9))
    sim.run()
    assert got == [(data, (h1.ip, 1234))]
    # h1 sends 1500 + 1500 + 68 bytes; r1 cuts each full fragment in three and passes the last
    assert len(sizes) == 7 and max(sizes) <= 576 + 14
    assert net.node("r1").stats["fragments-out"] == 6


def test_destination_without_a_route_gets_net_unreachable():
    sim, net, h1, _ = _chain(1)
    log = _icmp_log(h1)
    h1.ping("198.51.100.1")
    sim.run()
    assert [(i.type, i.code) for i, _ in log] == [(3, 0)]
    assert net.node("r1").drops["no-route"] == 1


def test_rp_filter_drops_spoofed_sources_that_the_router_would_route_elsewhere():
    sim = Simulator()
    net = build(offpath(2), sim)
    adv, h1, h2, r1 = (net.node(n) for n in ("adv", "h1", "h2", "r1"))
    got = []
    s = h1.udp_socket(9)
    s.on_datagram = lambda data, addr, dst: got.append(addr[0])

    def spoof():  # "from h2", arriving on the router's wan side
        adv.send_ip(h1.ip, IPPROTO_UDP, UDP(1, 9, b"x").encode(h2.ip, h1.ip), src=h2.ip)

    spoof()
    sim.run()
    assert got == [h2.ip]  # no BCP 38 by default: the spoof is delivered
    r1.rp_filter = True
    spoof()
    sim.run()
    assert got == [h2.ip] and r1.drops["rp-filter"] == 1
