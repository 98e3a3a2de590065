"""Hosts: ARP, ICMP, UDP sockets, protocol handlers, fragmentation, IPv6, raw access, bad input."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threatlab.errors import ParamError
from threatlab.net import Link, Position, SegmentKind, Simulator, build, lan
from threatlab.net.sim import NS_PER_S, NS_PER_US
from threatlab.net.wire import (
    ARP,
    ARP_REPLY,
    BROADCAST_MAC,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    IPPROTO_UDP,
    UDP,
    Ethernet,
    IPv4,
    IPv6,
)


def _lan(n=2, **kw):
    sim = Simulator(seed=1)
    net = build(lan(n, **kw), sim)
    return sim, net, [net.node(f"h{i}") for i in range(1, n + 1)]


def _icmp_log(host):
    log = []
    host.icmp_listeners.append(lambda icmp, packet, nic: log.append((icmp, packet)))
    return log


def _ethertypes(net, segment="lan"):
    seen = []
    net.tap(segment, lambda frame, now: seen.append((frame[12] << 8) | frame[13]))
    return seen


# -- ARP --------------------------------------------------------------------------------------


def test_arp_resolves_the_next_hop_once_then_uses_the_cache():
    sim, net, (h1, h2) = _lan()
    types = _ethertypes(net)
    h1.ping(h2.ip, seq=1)
    sim.run()
    h1.ping(h2.ip, seq=2)
    sim.run()
    assert types == [ETH_P_ARP, ETH_P_ARP, ETH_P_IP, ETH_P_IP, ETH_P_IP, ETH_P_IP]
    assert [r.seq for r in h1.echo_replies] == [1, 2]
    assert h1.neighbor(h2.ip) == h2.mac
    assert h2.neighbor(h1.ip) == h1.mac  # learned from the request (RFC 826: target adds sender)


def test_arp_cache_entry_expires_and_is_resolved_again():
    sim, net, (h1, h2) = _lan()
    h1.ping(h2.ip)
    sim.run()
    sim.run(until=sim.now + h1.arp_timeout_ns + 1)
    assert h1.neighbor(h2.ip) is None
    types = _ethertypes(net)
    h1.ping(h2.ip, seq=1)
    sim.run()
    assert types[0] == ETH_P_ARP and len(h1.echo_replies) == 2


def test_unanswered_arp_retries_then_drops_the_queued_packets():
    sim, net, (h1, _) = _lan()
    types = _ethertypes(net)
    for seq in range(3):
        h1.ping("10.0.0.99", seq=seq)
    sim.run()
    assert types == [ETH_P_ARP] * h1.arp_retries
    assert h1.drops["arp-unresolved"] == 3
    assert sim.now == h1.arp_retries * h1.arp_retry_ns


def test_address_removed_while_arp_is_pending_drops_the_queued_packets_without_crashing():
    sim, net, (h1, _) = _lan()
    h1.ping("10.0.0.99", seq=0)
    h1.configure_ipv4("eth0", None)  # a DHCP lease ends while the first request waits for a reply
    sim.run()
    assert h1.drops["arp-no-source-address"] == 1
    assert "arp-unresolved" not in h1.drops


def test_unsolicited_arp_reply_overwrites_a_dynamic_entry_but_not_a_static_one():
    sim = Simulator()
    net = build(lan(3, adversary=Position.SAME_LAN), sim)
    h1, h2, h3 = (net.node(f"h{i}") for i in (1, 2, 3))
    adv = net.adversary
    h1.ping(h2.ip)
    h1.add_neighbor(h3.ip, h3.mac)
    sim.run()
    mine = adv.node.mac
    for victim_ip in (h2.ip, h3.ip):  # RFC 826 merge: any ARP packet updates an existing entry
        spoof = ARP(ARP_REPLY, mine, victim_ip, h1.mac, h1.ip)
        adv.send_frame(Ethernet(h1.mac, mine, ETH_P_ARP, spoof.encode()).encode())
    sim.run()
    assert h1.neighbor(h2.ip) == mine  # poisoned
    assert h1.neighbor(h3.ip) == h3.mac  # static: kept
    assert h1.drops["arp-static-conflict"] == 1


# -- ICMP -------------------------------------------------------------------------------------


def test_echo_reply_round_trip_time_is_four_link_delays():
    sim, net, (h1, h2) = _lan(link=Link(delay_ns=25 * NS_PER_US))
    h1.add_neighbor(h2.ip, h2.mac)
    h2.add_neighbor(h1.ip, h1.mac)
    h1.ping(h2.ip, seq=7, data=b"abc")
    sim.run()
    (reply,) = h1.echo_replies
    assert (reply.src, reply.seq, reply.data, reply.rtt_ns) == (h2.ip, 7, b"abc", 4 * 25 * NS_PER_US)


def test_udp_to_a_closed_port_gets_port_unreachable_quoting_the_datagram():
    sim, net, (h1, h2) = _lan()
    log = _icmp_log(h1)
    sock = h1.udp_socket(5000)
    sock.sendto(b"knock", (h2.ip, 9))
    sim.run()
    (icmp, packet), = log
    assert (icmp.type, icmp.code, packet.src) == (3, 3, h2.ip)
    quoted = icmp.payload
    assert IPv4Address(quoted[12:16]) == h1.ip and quoted[20:22] == (5000).to_bytes(2, "big")
    assert len(quoted) == 28  # header and first 8 bytes (RFC 792)
    assert h2.drops["udp-port-unreachable"] == 1


def test_unknown_protocol_gets_protocol_unreachable():
    sim, net, (h1, h2) = _lan()
    log = _icmp_log(h1)
    h1.send_ip(h2.ip, 253, b"experimental")
    sim.run()
    assert [(i.type, i.code) for i, _ in log] == [(3, 2)]
    assert h2.drops["protocol-unreachable"] == 1


def test_no_port_unreachable_for_a_broadcast_datagram():
    sim, net, (h1, h2) = _lan()
    log = _icmp_log(h1)
    h1.udp_socket().sendto(b"anyone?", ("10.0.0.255", 9))
    sim.run()
    assert h2.drops["udp-port-unreachable"] == 1
    assert log == []


def test_broadcast_echo_request_is_ignored_by_default():
    sim, net, (h1, h2) = _lan()
    h1.ping("10.0.0.255")
    sim.run()
    assert h1.echo_replies == [] and h2.drops["icmp-echo-broadcast"] == 1


# -- UDP --------------------------------------------------------------------------------------


def test_udp_datagram_reaches_the_callback_with_source_and_destination():
    sim, net, (h1, h2) = _lan()
    got = []
    server = h2.udp_socket(53)
    server.on_datagram = lambda data, addr, dst: got.append((data, addr, dst))
    client = h1.udp_socket(40000)
    assert client.sendto(b"query", ("10.0.0.2", 53))
    sim.run()
    assert got == [(b"query", (h1.ip, 40000), h2.ip)]


def test_udp_datagrams_queue_without_a_callback_up_to_rcvbuf():
    sim, net, (h1, h2) = _lan()
    server = h2.udp_socket(53)
    server.rcvbuf = 2
    client = h1.udp_socket()
    for i in range(3):
        client.sendto(bytes([i]), (h2.ip, 53))
    sim.run()
    assert server.recvfrom() == (b"\x00", (h1.ip, client.port), h2.ip)
    assert server.recvfrom()[0] == b"\x01"
    assert server.recvfrom() is None
    assert server.drops["rcvbuf-full"] == 1


def test_udp_port_in_use_and_out_of_range_are_refused():
    _, _, (h1, _) = _lan()
    h1.udp_socket(53)
    with pytest.raises(ParamError):
        h1.udp_socket(53)
    with pytest.raises(ParamError):
        h1.udp_socket(70000)


def test_ephemeral_ports_are_random_in_the_dynamic_range_and_reproducible():
    ports = []
    for _ in range(2):
        _, _, (h1, _) = _lan()
        ports.append([h1.udp_socket().port for _ in range(20)])
    assert ports[0] == ports[1]
    assert all(49152 <= p <= 65535 for p in ports[0]) and len(set(ports[0])) == 20
    assert ports[0] != sorted(ports[0])


def test_closed_socket_frees_its_port_and_sends_nothing():
    sim, net, (h1, h2) = _lan()
    sock = h1.udp_socket(4000)
    sock.close()
    assert not sock.sendto(b"x", (h2.ip, 9))
    h1.udp_socket(4000)


def test_host_without_an_address_broadcasts_from_0_0_0_0_and_can_be_configured():
    """What a DHCP client needs: send from 0.0.0.0 to 255.255.255.255, receive broadcasts,
    then take an address."""
    sim, net, (h1, h2) = _lan()
    h1.configure_ipv4("eth0", None)
    got = []
    server = h2.udp_socket(67)
    server.on_datagram = lambda data, addr, dst: got.append((addr, dst))
    client = h1.udp_socket(68)
    client.sendto(b"discover", ("255.255.255.255", 67), ifname="eth0")
    answers = []
    client.on_datagram = lambda data, addr, dst: answers.append(data)
    server.sendto(b"offer", ("255.255.255.255", 68), ifname="eth0")
    sim.run()
    assert got == [((IPv4Address("0.0.0.0"), 68), IPv4Address("255.255.255.255"))]
    assert answers == [b"offer"]
    h1.configure_ipv4("eth0", "10.0.0.77/24")
    h1.ping(h2.ip)
    sim.run()
    assert h1.ip == IPv4Address("10.0.0.77") and len(h1.echo_replies) == 1


def test_packet_to_own_address_is_delivered_locally():
    sim, _, (h1, _) = _lan()
    got = []
    s = h1.udp_socket(7)
    s.on_datagram = lambda data, addr, dst: got.append(data)
    h1.udp_socket().sendto(b"self", (h1.ip, 7))
    sim.run()
    assert got == [b"self"]


# -- protocol handlers ------------------------------------------------------------------------


def test_registered_protocol_handler_gets_reassembled_packets_and_interface():
    sim, net, (h1, h2) = _lan(link=Link(mtu=576))
    got = []
    h2.register_protocol(132, lambda packet, nic: got.append((packet.src, len(packet.payload), nic.name)))
    h1.send_ip(h2.ip, 132, bytes(2000))
    sim.run()
    assert got == [(h1.ip, 2000, "eth0")]


def _plain_and_other_packets(h1, h2, proto):
    """Packets of `proto` from h1 to h2, as frames: plain ones (no options, not fragments; DF or
    not; short ones padded by the NIC) and ones the fast dispatch must leave to the full path."""
    from threatlab.net.wire import IPv4Option

    plain = [IPv4(h1.ip, h2.ip, proto, b"F" + bytes(n)) for n in (0, 5, 100)]
    plain.append(IPv4(h1.ip, h2.ip, proto, b"F-df", df=True, identification=77, ttl=3, tos=0x10))
    declined = IPv4(h1.ip, h2.ip, proto, b"S declined by the fast handler")
    with_options = IPv4(h1.ip, h2.ip, proto, b"F options", options=(IPv4Option(0x94, b"\0\0"),))
    first = IPv4(h1.ip, h2.ip, proto, b"F" + bytes(15), identification=9, mf=True)
    last = IPv4(h1.ip, h2.ip, proto, b"F" + bytes(7), identification=9, frag_offset=2)
    bad = bytearray(IPv4(h1.ip, h2.ip, proto, b"F bad header checksum").encode())
    bad[10] ^= 0xFF
    frames = [p.encode() for p in (*plain, declined, with_options, first, last)] + [bytes(bad)]
    return [Ethernet(h2.mac, h1.mac, ETH_P_IP, f).encode() for f in frames], plain


def test_fast_protocol_handler_gets_exactly_the_plain_packets_and_may_decline():
    sim, net, (h1, h2) = _lan()
    fast_got, full_got = [], []

    def fast(src, dst, payload, nic):
        fast_got.append((src, dst, payload, nic.name))
        return payload.startswith(b"F")

    h2.register_protocol(200, lambda packet, nic: full_got.append(packet), fast=fast)
    frames, plain = _plain_and_other_packets(h1, h2, 200)
    for frame in frames:
        h1.raw_send("eth0", frame)
    sim.run()
    declined = (h1.ip, h2.ip, b"S declined by the fast handler", "eth0")
    assert fast_got == [(p.src, p.dst, p.payload, "eth0") for p in plain] + [declined]
    assert all(type(a) is IPv4Address for a, _, _, _ in fast_got)
    # the full handler: the declined packet, the one with options, the reassembled fragments
    assert [p.payload for p in full_got] == [b"S declined by the fast handler", b"F options",
                                             b"F" + bytes(15) + b"F" + bytes(7)]
    assert h2.drops["malformed-ipv4"] == 1  # the bad header checksum, on either path


def test_fast_and_full_dispatch_deliver_the_same_packets():
    # random headers with valid checksums: what a fast handler (taking every packet it is offered)
    # and the full handler get together is what the full handler alone gets, in the same order
    import random

    def deliveries(with_fast: bool) -> list:
        rng = random.Random(5)
        sim, net, (h1, h2) = _lan()
        got = []
        taken = []

        def fast(src, dst, payload, nic):
            taken.append(1)
            got.append((src, dst, payload))
            return True

        fast = fast if with_fast else None
        for proto in (6, 200):
            h2.register_protocol(proto, lambda p, nic: got.append((p.src, p.dst, p.payload)), fast=fast)
        for _ in range(2000):
            proto = rng.choice([6, 200])
            p = IPv4(h1.ip, rng.choice([h2.ip, IPv4Address("10.9.9.9"), IPv4Address("255.255.255.255")]),
                     proto, rng.randbytes(rng.randrange(0, 40)), ttl=rng.randrange(256),
                     df=rng.random() < 0.5,
                     mf=rng.random() < 0.2, frag_offset=rng.choice([0, 0, 0, rng.randrange(8)]),
                     identification=rng.randrange(4))
            raw = bytearray(p.encode())
            if rng.random() < 0.1:
                raw[rng.randrange(20)] ^= 1 << rng.randrange(8)  # a broken header
            h1.raw_send("eth0", Ethernet(h2.mac, h1.mac, ETH_P_IP, bytes(raw)).encode())
        sim.run(until=sim.now + 60 * NS_PER_S)
        return [got, dict(h2.drops), dict(h2.stats), sim.now], len(taken)

    (fast, taken), (full, none) = deliveries(True), deliveries(False)
    assert fast == full and taken > 500 and none == 0


def test_registering_again_without_fast_or_unregistering_removes_the_fast_handler():
    sim, net, (h1, h2) = _lan()
    fast_got, full_got = [], []
    h2.register_protocol(200, lambda p, nic: full_got.append(p.payload),
                         fast=lambda s, d, payload, nic: fast_got.append(payload) or True)
    h1.send_ip(h2.ip, 200, b"one")
    sim.run()
    h2.register_protocol(200, lambda p, nic: full_got.append(p.payload))
    h1.send_ip(h2.ip, 200, b"two")
    sim.run()
    h2.register_protocol(200, lambda p, nic: full_got.append(p.payload),
                         fast=lambda s, d, payload, nic: fast_got.append(payload) or True)
    h2.unregister_protocol(200)
    h1.send_ip(h2.ip, 200, b"three")
    sim.run()
    assert (fast_got, full_got) == ([b"one"], [b"two"])
    assert h2.drops["protocol-unreachable"] == 1


def test_a_nat_sees_every_ipv4_packet_itself_even_with_a_fast_handler():
    from threatlab.net import natted

    sim = Simulator(seed=3)
    net = build(natted(1), sim)
    nat, h1, srv = net.node("nat"), net.node("h1"), net.node("srv")
    fast_got, full_got = [], []
    nat.register_protocol(200, lambda p, nic: full_got.append((p.payload, nic.name)),
                          fast=lambda s, d, payload, nic: fast_got.append(payload) or True)
    h1.send_ip(nat.interfaces["in"].ip, 200, b"inside")
    srv.send_ip(nat.interfaces["out"].ip, 200, b"outside")
    sim.run()
    assert (fast_got, full_got) == ([], [(b"inside", "in"), (b"outside", "out")])


# -- fragmentation ----------------------------------------------------------------------------


def test_datagram_larger_than_the_mtu_is_fragmented_and_reassembled():
    sim, net, (h1, h2) = _lan(link=Link(mtu=576))
    sizes = []
    net.tap("lan", lambda frame, now: sizes.append(len(frame)))
    got = []
    s = h2.udp_socket(9)
    s.on_datagram = lambda data, addr, dst: got.append(data)
    data = bytes(range(256)) * 12
    h1.udp_socket().sendto(data, (h2.ip, 9))
    sim.run()
    assert got == [data]
    ip_frames = sizes[2:]
    assert len(ip_frames) == 6 and max(ip_frames) <= 576 + 14
    assert h1.stats["fragments-out"] == 6 and h2.stats["reassembled"] == 1


def test_own_df_packet_larger_than_the_mtu_is_dropped_and_reported_locally():
    sim, net, (h1, h2) = _lan(link=Link(mtu=1000))
    log = _icmp_log(h1)
    assert not h1.send_ip(h2.ip, IPPROTO_UDP, bytes(1200), df=True)
    assert h1.drops["frag-needed"] == 1
    (icmp, _), = log
    assert (icmp.type, icmp.code, icmp.next_hop_mtu) == (3, 4, 1000)
    sim.run()
    assert h2.interfaces["eth0"].frames_in == 0


def test_overlapping_fragments_are_dropped_by_reassembly():
    sim, net, (h1, h2) = _lan()
    got = []
    h2.register_protocol(200, lambda packet, nic: got.append(packet))
    a = IPv4(h1.ip, h2.ip, 200, bytes(16), identification=9, mf=True)
    b = IPv4(h1.ip, h2.ip, 200, bytes(16), identification=9, frag_offset=1)  # overlaps a
    for p in (a, b):
        h1.raw_send("eth0", Ethernet(h2.mac, h1.mac, ETH_P_IP, p.encode()).encode())
    sim.run()
    assert got == [] and h2.reassembler.drops == {"overlap": 1}


# -- IPv6 -------------------------------------------------------------------------------------


def test_ipv6_goes_to_the_registered_handler_by_static_neighbours():
    sim, net, (h1, h2) = _lan()
    got = []
    h2.register_ipv6(lambda packet, nic: got.append((packet.src, packet.next_header, packet.payload)))
    assert h1.send_ipv6(h2.ip6, 253, b"v6")
    sim.run()
    assert got == [(IPv6Address("fd00::1"), 253, b"v6")]


def test_ipv6_without_a_handler_is_dropped_and_counted():
    sim, net, (h1, h2) = _lan()
    h1.send_ipv6("fd00::2", 253, b"v6")
    h1.send_ipv6("fd00::99", 253, b"nobody")  # no static neighbour: not sent
    sim.run()
    assert h2.drops["ipv6-no-handler"] == 1
    assert h1.drops["ipv6-no-neighbor"] == 1


# -- raw access -------------------------------------------------------------------------------


def test_sniffer_sees_what_the_nic_accepts_and_raw_send_goes_out_as_given():
    sim, net, (h1, h2, h3) = _lan(3, kind=SegmentKind.HUB)
    seen = []
    h2.add_sniffer(lambda frame, ifname, now: seen.append((ifname, frame[:6])))
    h1.raw_send("eth0", Ethernet(h2.mac, b"\x02\xaa\xaa\xaa\xaa\xaa", 0x88B5, b"raw").encode())
    h1.raw_send("eth0", Ethernet(h3.mac, h1.mac, 0x88B5, b"not for h2").encode())
    h1.raw_send("eth0", Ethernet(BROADCAST_MAC, h1.mac, 0x88B5, b"all").encode())
    sim.run()
    assert seen == [("eth0", h2.mac), ("eth0", BROADCAST_MAC)]
    assert h2.drops["unknown-ethertype"] == 2


# -- bad input --------------------------------------------------------------------------------


def _bad_frames(h1, h2):
    good_ip = IPv4(h1.ip, h2.ip, IPPROTO_UDP, UDP(1, 9, b"data").encode(h1.ip, h2.ip)).encode()
    bad_csum = bytearray(good_ip)
    bad_csum[10] ^= 0xFF
    bad_udp = bytearray(good_ip)
    bad_udp[-1] ^= 0xFF
    eth = lambda et, payload: Ethernet(h2.mac, h1.mac, et, bytes(payload)).encode()  # noqa: E731
    return {
        "malformed-ipv4": [
            eth(ETH_P_IP, good_ip[:10]), eth(ETH_P_IP, bad_csum), eth(ETH_P_IP, b"\x60" + good_ip[1:]),
        ],
        "malformed-udp": [eth(ETH_P_IP, bad_udp)],
        "malformed-arp": [eth(ETH_P_ARP, b"\x00\x01\x08\x00\x06")],
        "malformed-ipv6": [eth(ETH_P_IPV6, b"\x50" + bytes(45))],  # version 5
        "malformed-ethernet": [h2.mac + h1.mac + b"\x81\x00" + bytes(46)],  # VLAN tag: unsupported
        "malformed-icmp": [eth(ETH_P_IP, IPv4(h1.ip, h2.ip, 1, b"\x08\x00" + bytes(5) + b"\x01").encode())],
    }


def test_malformed_frames_are_dropped_and_counted_by_reason():
    sim, net, (h1, h2) = _lan()
    cases = _bad_frames(h1, h2)
    for frames in cases.values():
        for frame in frames:
            h1.raw_send("eth0", frame)
    sim.run()
    assert {reason: h2.drops[reason] for reason in cases} == {r: len(f) for r, f in cases.items()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=120), st.sampled_from([ETH_P_IP, ETH_P_ARP, ETH_P_IPV6, 0x0800]))
def test_random_payloads_never_crash_a_host_or_router(payload, ethertype):
    sim = Simulator()
    from threatlab.net import offpath

    net = build(offpath(1), sim)
    adv, r1 = net.node("adv"), net.node("r1")
    frame = Ethernet(r1.interfaces["eth1"].mac, adv.mac, ethertype, payload).encode()
    adv.raw_send("eth0", frame)
    adv.raw_send("eth0", BROADCAST_MAC + adv.mac + (ethertype).to_bytes(2, "big") + payload)
    sim.run()


def test_random_ipv4_headers_with_valid_checksums_never_crash_the_stack():
    import random

    rng = random.Random(5)
    sim, net, (h1, h2) = _lan()
    for _ in range(2000):
        proto = rng.choice([1, 6, 17, 132, rng.randrange(256)])
        payload = rng.randbytes(rng.randrange(0, 40))
        p = IPv4(h1.ip, h2.ip, proto, payload, ttl=rng.randrange(256), mf=rng.random() < 0.2,
                 frag_offset=rng.choice([0, 0, rng.randrange(8192)]), identification=rng.randrange(4))
        h1.raw_send("eth0", Ethernet(h2.mac, h1.mac, ETH_P_IP, p.encode()).encode())
    sim.run(until=sim.now + 60 * NS_PER_S)
    assert sum(h2.drops.values()) > 0


def test_ipv6_packet_decodes_as_sent():
    sim, net, (h1, h2) = _lan()
    got = []
    h2.register_ipv6(lambda packet, nic: got.append(packet))
    h1.send_ipv6(h2.ip6, 17, b"payload", hop_limit=9)
    sim.run()
    assert got == [IPv6(h1.ip6, h2.ip6, 17, b"payload", hop_limit=9)]
