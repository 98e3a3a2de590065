"""Properties of the threatlab.net.wire codecs, over generated fields and bytes."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv6Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threatlab.errors import DecodeError
from threatlab.net.checksum import internet_checksum
from threatlab.net.wire import (
    ARP,
    UDP,
    Ethernet,
    ICMPv4,
    IPv4,
    IPv4Option,
    IPv6,
    Reassembler,
    fragment,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
mac = st.binary(min_size=6, max_size=6)
ipv4_addr = st.integers(0, 2**32 - 1).map(IPv4Address)
ipv6_addr = st.integers(0, 2**128 - 1).map(IPv6Address)
ethertype = st.integers(0x0600, 0xFFFF).filter(lambda t: t not in (0x8100, 0x88A8, 0x9100))

option = st.one_of(
    st.just(IPv4Option(1)),
    st.builds(IPv4Option, st.integers(2, 255), st.binary(max_size=10)),
)


def _options_fit(opts: list[IPv4Option]) -> bool:
    n = sum(1 if o.kind == 1 else 2 + len(o.data) for o in opts)
    return (n + 3) // 4 * 4 <= 40


options = st.lists(option, max_size=6).filter(_options_fit).map(tuple)

ipv4 = st.builds(
    IPv4,
    src=ipv4_addr,
    dst=ipv4_addr,
    proto=u8,
    payload=st.binary(max_size=300),
    ttl=u8,
    tos=u8,
    identification=u16,
    df=st.booleans(),
    mf=st.booleans(),
    frag_offset=st.integers(0, 0x1FFF),
    options=options,
)
ipv6 = st.builds(
    IPv6,
    src=ipv6_addr,
    dst=ipv6_addr,
    next_header=u8,
    payload=st.binary(max_size=300),
    hop_limit=u8,
    traffic_class=u8,
    flow_label=st.integers(0, 0xFFFFF),
)
ethernet = st.builds(Ethernet, dst=mac, src=mac, ethertype=ethertype, payload=st.binary(max_size=100))
arp = st.builds(ARP, op=u16, sender_mac=mac, sender_ip=ipv4_addr, target_mac=mac, target_ip=ipv4_addr)
icmp = st.builds(
    ICMPv4, type=u8, code=u8, rest=st.binary(min_size=4, max_size=4), payload=st.binary(max_size=100)
)
udp = st.builds(UDP, src_port=u16, dst_port=u16, payload=st.binary(max_size=300))
address_pair = st.one_of(st.tuples(ipv4_addr, ipv4_addr), st.tuples(ipv6_addr, ipv6_addr))


# --- round trips -----------------------------------------------------------------------------------


@FAST
@given(ethernet)
def test_ethernet_round_trips(frame):
    assert Ethernet.decode(frame.encode()) == frame


@FAST
@given(arp, st.binary(max_size=18))
def test_arp_round_trips_with_any_link_padding(a, padding):
    assert ARP.decode(a.encode() + padding) == a


@FAST
@given(ipv4, st.binary(max_size=20))
def test_ipv4_round_trips_with_any_link_padding(pkt, padding):
    assert IPv4.decode(pkt.encode() + padding) == pkt


@FAST
@given(ipv6, st.binary(max_size=20))
def test_ipv6_round_trips_with_any_link_padding(pkt, padding):
    assert IPv6.decode(pkt.encode() + padding) == pkt


@FAST
@given(icmp)
def test_icmpv4_round_trips(msg):
    assert ICMPv4.decode(msg.encode()) == msg


@FAST
@given(udp, address_pair)
def test_udp_round_trips_with_verified_checksum(d, addrs):
    raw = d.encode(*addrs)
    assert raw[6:8] != b"\x00\x00"
    assert UDP.decode(raw, *addrs) == d


# --- arbitrary bytes decode or raise DecodeError, nothing else -------------------------------------

_V4 = (IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"))
_V6 = (IPv6Address("::1"), IPv6Address("::2"))
DECODERS = [
    Ethernet.decode,
    ARP.decode,
    IPv4.decode,
    lambda b: IPv4.decode(b, verify=False),
    IPv6.decode,
    ICMPv4.decode,
    lambda b: ICMPv4.decode(b, verify=False),
    UDP.decode,
    lambda b: UDP.decode(b, *_V4),
    lambda b: UDP.decode(b, *_V6),
]


def _decodes_or_raises_decode_error(data: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(data)
        except DecodeError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_decode_or_raise_decode_error(data):
    _decodes_or_raises_decode_error(data)


@st.composite
def mutated_encodings(draw):
    """Valid encodings with a few bytes changed and maybe cut: reach past the first checks."""
    kind = draw(st.sampled_from(["eth", "arp", "ipv4", "ipv6", "icmp", "udp"]))
    if kind == "eth":
        raw = draw(ethernet).encode()
    elif kind == "arp":
        raw = draw(arp).encode()
    elif kind == "ipv4":
        raw = draw(ipv4).encode()
    elif kind == "ipv6":
        raw = draw(ipv6).encode()
    elif kind == "icmp":
        raw = draw(icmp).encode()
    else:
        raw = draw(udp).encode(*_V4)
    buf = bytearray(raw)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(buf) - 1))
        buf[i] = draw(u8)
    cut = draw(st.integers(0, len(buf)))
    return bytes(buf[:cut])


@settings(max_examples=300, deadline=None)
@given(mutated_encodings())
def test_mutated_encodings_decode_or_raise_decode_error(data):
    _decodes_or_raises_decode_error(data)


@FAST
@given(ipv4, st.integers(0, 19), u8)
def test_any_ipv4_header_byte_changed_fails_the_checksum_or_decodes_the_same(pkt, i, value):
    raw = bytearray(pkt.encode())
    raw[i] = value
    try:
        assert IPv4.decode(bytes(raw)) == pkt
    except DecodeError:
        pass


# --- fragmentation and reassembly ------------------------------------------------------------------

def datagrams(min_payload: int = 0):
    """Whole (unfragmented) datagrams, DF clear."""
    return st.builds(
        IPv4,
        src=ipv4_addr,
        dst=ipv4_addr,
        proto=u8,
        payload=st.binary(min_size=min_payload, max_size=4000),
        ttl=u8,
        tos=u8,
        identification=u16,
        options=options,
    )


whole_datagram = datagrams()


@FAST
@given(whole_datagram, st.integers(68, 1500), st.randoms(use_true_random=False))
def test_fragments_reassembled_in_any_order_with_duplicates_equal_the_original(pkt, mtu, rnd):
    frags = fragment(pkt, mtu)
    assert all(len(f.encode()) <= mtu for f in frags) or frags == [pkt]
    assert all(IPv4.decode(f.encode()) == f for f in frags)
    order = frags + rnd.sample(frags, k=min(len(frags), rnd.randint(0, 3)))
    rnd.shuffle(order)
    r = Reassembler()
    results = [out for i, f in enumerate(order) if (out := r.add(f, i)) is not None]
    if len(frags) == 1:
        assert all(out == pkt for out in results)
    else:
        assert results == [pkt] and r.completed == 1 and r.dropped == 0 and r.pending == 0


@FAST
@given(datagrams(201), st.integers(68, 200), st.randoms(use_true_random=False))
def test_refragmented_fragments_reassemble_to_the_original(pkt, mtu, rnd):
    first_hop = fragment(pkt, mtu + 200)
    second_hop = [g for f in first_hop for g in fragment(f, mtu)]
    rnd.shuffle(second_hop)
    r = Reassembler()
    results = [out for f in second_hop if (out := r.add(f, 0)) is not None]
    assert results == [pkt]


@FAST
@given(datagrams(201), st.integers(68, 200), st.randoms(use_true_random=False))
def test_a_fragment_overlapping_another_partly_drops_the_datagram(pkt, mtu, rnd):
    frags = fragment(pkt, mtu)
    victim = rnd.choice(frags[:-1])
    # same offset as a real fragment, 8 bytes longer: neither a duplicate nor disjoint
    evil = dataclasses.replace(victim, payload=victim.payload + b"\xee" * 8)
    order = frags[:]
    rnd.shuffle(order)
    order.insert(rnd.randint(0, len(order) - 1), evil)  # before the last real fragment
    r = Reassembler()
    results = [out for f in order if (out := r.add(f, 0)) is not None]
    assert results == [] and r.completed == 0 and r.dropped >= 1


# --- the checksum ----------------------------------------------------------------------------------


def naive_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 as written: add 16-bit words with end-around carry, complement."""
    if len(data) % 2:
        data += b"\x00"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(st.sampled_from([b"\x00", b"\xff"]), max_size=64).map(b"".join),  # +0 / -0 corner cases
    ),
    st.integers(0, 2**20),
)
def test_internet_checksum_equals_the_naive_reference(data, initial):
    assert internet_checksum(data, initial) == naive_checksum(data, initial)


@FAST
@given(st.binary(max_size=300).map(lambda b: b if len(b) % 2 == 0 else b + b"\x00"))
def test_data_followed_by_its_checksum_sums_to_zero(data):
    assert internet_checksum(data + internet_checksum(data).to_bytes(2, "big")) == 0
