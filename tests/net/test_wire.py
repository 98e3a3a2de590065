"""Known answers and RFC claims for the link/network/transport codecs of threatlab.net.wire."""

from __future__ import annotations

import dataclasses
import pickle
from ipaddress import IPv4Address, IPv6Address

import pytest

from threatlab.errors import DecodeError, ThreatlabError
from threatlab.net.checksum import checksum_of_sum, sum_ok, word_sum
from threatlab.net.wire import (
    ARP,
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST_MAC,
    ETH_MIN_FRAME,
    ETH_P_ARP,
    ETH_P_IP,
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    ICMP_TIME_EXCEEDED,
    IPPROTO_ICMP,
    IPPROTO_UDP,
    UDP,
    UNREACH_FRAG_NEEDED,
    UNREACH_PORT,
    Ethernet,
    FragmentationNeeded,
    ICMPv4,
    IPv4,
    IPv4Option,
    IPv6,
    Reassembler,
    fragment,
    internet_checksum,
    mac_bytes,
    mac_str,
    pad_frame,
    pseudo_header_v4,
    pseudo_header_v6,
)

A = IPv4Address
B = IPv6Address
H1 = mac_bytes("02:00:00:00:00:01")
H2 = mac_bytes("02:00:00:00:00:02")
RA = IPv4Option(0x94, b"\x00\x00")  # Router Alert (RFC 2113): copied flag set
RR = IPv4Option(7, b"\x04" + bytes(8))  # Record Route, pointer 4, two empty slots: not copied
PC = mac_bytes("00:1a:2b:3c:4d:5e")
WHO_HAS = ARP(ARP_REQUEST, PC, A("192.168.1.100"), bytes(6), A("192.168.1.1"))
V6A, V6B = B("2001:db8::1"), B("2001:db8::2")


def udp_packet(src="10.0.0.1", dst="10.0.0.2", sport=1234, dport=53, data=b"hello", **ip) -> IPv4:
    s, d = A(src), A(dst)
    return IPv4(s, d, IPPROTO_UDP, UDP(sport, dport, data).encode(s, d), **ip)


# --- known answers ---------------------------------------------------------------------------------
# Hex from scapy 2.8 built with the same fields (checksums hand-checked against the RFC 1071 sum
# below); the ARP request is the classic who-has broadcast as captured on a LAN.

KNOWN_ANSWERS = [
    (
        "ethernet-ipv4-udp",
        lambda: Ethernet(H2, H1, ETH_P_IP, udp_packet(identification=1).encode()).encode(),
        "020000000002 020000000001 0800 "
        "4500 0021 0001 0000 4011 66c9 0a000001 0a000002 "
        "04d2 0035 000d a2f8 68656c6c6f",
    ),
    (
        "ipv4-icmp-echo-request",
        lambda: IPv4(
            A("192.0.2.1"),
            A("198.51.100.7"),
            IPPROTO_ICMP,
            ICMPv4.echo_request(0x1234, 1, b"abcdefgh").encode(),
            identification=0x1C46,
            df=True,
        ).encode(),
        "450000241c4640004001 3257 c0000201c6336407 0800 5435 12340001 6162636465666768",
    ),
    (
        "ethernet-arp-request",
        lambda: Ethernet(BROADCAST_MAC, PC, ETH_P_ARP, WHO_HAS.encode()).encode(),
        "ffffffffffff001a2b3c4d5e0806 0001080006040001 001a2b3c4d5ec0a80164 000000000000c0a80101",
    ),
    (
        "ipv6-udp",
        lambda: IPv6(V6A, V6B, IPPROTO_UDP, UDP(5000, 6000, b"hi!").encode(V6A, V6B)).encode(),
        "60000000000b1140 20010db8000000000000000000000001 20010db8000000000000000000000002 "
        "13881770000b f001 686921",
    ),
    (
        "ipv4-router-alert-option-udp",
        lambda: udp_packet(sport=1, dport=2, data=b"x", identification=7, options=(RA,)).encode(),
        "46000021000700004011 d1be 0a0000010a000002 94040000 00010002000973d678",
    ),
]


@pytest.mark.parametrize("name,build,hexstr", KNOWN_ANSWERS, ids=[k[0] for k in KNOWN_ANSWERS])
def test_known_answer_encodings_match_reference_bytes(name, build, hexstr):
    assert build().hex() == bytes.fromhex(hexstr.replace(" ", "")).hex()


def test_known_answer_ethernet_ipv4_udp_decodes_to_its_fields():
    frame = bytes.fromhex(KNOWN_ANSWERS[0][2].replace(" ", ""))
    eth = Ethernet.decode(frame)
    ip = IPv4.decode(eth.payload)
    udp = UDP.decode(ip.payload, ip.src, ip.dst)
    assert (mac_str(eth.dst), mac_str(eth.src)) == ("02:00:00:00:00:02", "02:00:00:00:00:01")
    assert eth.ethertype == ETH_P_IP
    assert (ip.src, ip.dst, ip.ttl, ip.identification, ip.proto) == (A("10.0.0.1"), A("10.0.0.2"), 64, 1, 17)
    assert udp == UDP(1234, 53, b"hello")


def test_known_answer_arp_request_decodes_with_link_padding():
    frame = pad_frame(bytes.fromhex(KNOWN_ANSWERS[2][2].replace(" ", "")))
    assert len(frame) == ETH_MIN_FRAME
    eth = Ethernet.decode(frame)
    assert len(eth.payload) == 46  # 28 bytes of ARP, 18 of padding
    arp = ARP.decode(eth.payload)
    assert arp == WHO_HAS


def test_known_answer_icmp_echo_decodes_ident_and_seq():
    ip = IPv4.decode(bytes.fromhex(KNOWN_ANSWERS[1][2].replace(" ", "")))
    icmp = ICMPv4.decode(ip.payload)
    assert (icmp.type, icmp.code, icmp.ident, icmp.seq) == (ICMP_ECHO_REQUEST, 0, 0x1234, 1)
    assert icmp.payload == b"abcdefgh"
    assert ip.df and not ip.mf


# --- the Internet checksum (RFC 1071) --------------------------------------------------------------


def test_rfc1071_numerical_example_sums_to_ddf2():
    # RFC 1071 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2; the checksum is its complement.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0xFFFF - 0xDDF2


def test_wikipedia_ipv4_header_checksum_is_b861():
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861
    assert internet_checksum(header[:10] + b"\xb8\x61" + header[12:]) == 0


def test_checksum_pads_an_odd_trailing_byte_with_zero():
    assert internet_checksum(b"\x12\x34\x56") == internet_checksum(b"\x12\x34\x56\x00")


def test_checksum_of_all_zero_data_is_ffff_and_of_ffff_words_is_zero():
    assert internet_checksum(bytes(20)) == 0xFFFF
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\xff\xff\xff\xff") == 0  # -0 folds to 0xffff, complement 0


def test_checksum_initial_adds_a_pseudo_header_sum():
    ph = pseudo_header_v4(A("10.0.0.1"), A("10.0.0.2"), IPPROTO_UDP, 13)
    assert internet_checksum(b"abcde", initial=word_sum(ph)) == internet_checksum(ph + b"abcde")
    assert checksum_of_sum(word_sum(ph + b"abc")) == internet_checksum(ph + b"abc")
    assert sum_ok(word_sum(b"\x12\x34" + internet_checksum(b"\x12\x34").to_bytes(2, "big")))


def test_pseudo_headers_have_rfc_layouts():
    v4 = pseudo_header_v4(A("1.2.3.4"), A("5.6.7.8"), 17, 0x1234)
    assert v4 == bytes.fromhex("01020304" "05060708" "00" "11" "1234")
    v6 = pseudo_header_v6(B("::1"), B("::2"), 58, 0x10000)
    assert len(v6) == 40 and v6[32:] == bytes.fromhex("00010000" "0000003a")


# --- MAC addresses and Ethernet --------------------------------------------------------------------


def test_mac_text_and_bytes_round_trip():
    assert mac_bytes("02:00:00:00:00:01") == b"\x02\x00\x00\x00\x00\x01"
    assert mac_str(b"\x02\xab\x00\x00\x00\x01") == "02:ab:00:00:00:01"
    assert mac_bytes(mac_str(BROADCAST_MAC)) == BROADCAST_MAC


@pytest.mark.parametrize("bad", ["02:00:00:00:00", "02:00:00:00:00:0g", "0200.0000.0001", "2:0:0:0:0:1", ""])
def test_mac_bytes_rejects_malformed_text_with_value_error(bad):
    with pytest.raises(ValueError):
        mac_bytes(bad)


def test_ethernet_encode_does_not_pad_and_pad_frame_pads_to_60():
    frame = Ethernet(H2, H1, ETH_P_IP, b"x").encode()
    assert len(frame) == 15
    padded = pad_frame(frame)
    assert len(padded) == ETH_MIN_FRAME and padded[15:] == bytes(45)
    big = bytes(100)
    assert pad_frame(big) is big


def test_ethernet_decode_keeps_link_padding_in_payload():
    frame = pad_frame(Ethernet(H2, H1, ETH_P_IP, b"x").encode())
    assert Ethernet.decode(frame).payload == b"x" + bytes(45)


@pytest.mark.parametrize("tpid", [0x8100, 0x88A8, 0x9100])
def test_ethernet_vlan_tag_raises_decode_error_at_ethertype(tpid):
    frame = H2 + H1 + tpid.to_bytes(2, "big") + b"\x00\x05\x08\x00" + bytes(46)
    with pytest.raises(DecodeError) as e:
        Ethernet.decode(frame)
    assert (e.value.protocol, e.value.field, e.value.offset) == ("ethernet", "ethertype", 12)


def test_ethernet_8023_length_field_raises_decode_error():
    with pytest.raises(DecodeError) as e:
        Ethernet.decode(H2 + H1 + b"\x00\x2e" + bytes(46))
    assert e.value.field == "ethertype"


def test_ethernet_truncated_header_raises_decode_error():
    with pytest.raises(DecodeError) as e:
        Ethernet.decode(bytes(13))
    assert (e.value.protocol, e.value.field, e.value.offset) == ("ethernet", "header", 0)


def test_ethernet_encode_rejects_short_mac_and_vlan_type():
    with pytest.raises(ValueError):
        Ethernet(b"\x01", H1, ETH_P_IP, b"").encode()
    with pytest.raises(ValueError):
        Ethernet(H2, H1, 0x8100, b"").encode()


# --- ARP -------------------------------------------------------------------------------------------


def test_arp_reply_round_trips():
    arp = ARP(ARP_REPLY, H1, A("10.0.0.1"), H2, A("10.0.0.2"))
    raw = arp.encode()
    assert len(raw) == 28 and ARP.decode(raw) == arp


@pytest.mark.parametrize(
    "offset,value,field",
    [(1, 6, "htype"), (2, 0x86, "ptype"), (4, 8, "hlen"), (5, 16, "plen")],
)
def test_arp_other_than_ethernet_ipv4_raises_decode_error(offset, value, field):
    raw = bytearray(ARP(ARP_REQUEST, H1, A("10.0.0.1"), bytes(6), A("10.0.0.2")).encode())
    raw[offset] = value
    with pytest.raises(DecodeError) as e:
        ARP.decode(bytes(raw))
    assert (e.value.protocol, e.value.field) == ("arp", field)


def test_arp_truncated_raises_decode_error():
    with pytest.raises(DecodeError) as e:
        ARP.decode(ARP(ARP_REQUEST, H1, A("10.0.0.1"), bytes(6), A("10.0.0.2")).encode()[:27])
    assert (e.value.protocol, e.value.field) == ("arp", "header")


# --- IPv4 ------------------------------------------------------------------------------------------


def test_ipv4_header_checksum_mismatch_raises_decode_error():
    raw = bytearray(udp_packet().encode())
    raw[8] -= 1  # TTL changed in transit without updating the checksum
    with pytest.raises(DecodeError) as e:
        IPv4.decode(bytes(raw))
    assert (e.value.protocol, e.value.field, e.value.offset) == ("ipv4", "checksum", 10)
    assert IPv4.decode(bytes(raw), verify=False).ttl == 63


def test_ipv4_bytes_beyond_total_length_are_padding_and_ignored():
    pkt = udp_packet(data=b"")
    raw = pkt.encode()
    assert len(raw) == 28
    assert IPv4.decode(raw + bytes(18)) == pkt  # 28-byte datagram in a 46-byte Ethernet payload


def test_ipv4_total_length_beyond_data_raises_decode_error():
    with pytest.raises(DecodeError) as e:
        IPv4.decode(udp_packet().encode()[:-1])
    assert (e.value.field, e.value.offset) == ("total_length", 2)


@pytest.mark.parametrize(
    "mutate,field,offset",
    [
        (lambda r: r.__setitem__(0, 0x65), "version", 0),
        (lambda r: r.__setitem__(0, 0x44), "ihl", 0),
        (lambda r: r.__setitem__(3, 19), "total_length", 2),
        (lambda r: r.__setitem__(6, r[6] | 0x80), "flags", 6),
    ],
    ids=["version-6", "ihl-4", "total-length-below-header", "reserved-flag"],
)
def test_ipv4_malformed_header_fields_raise_decode_error_naming_the_field(mutate, field, offset):
    raw = bytearray(udp_packet().encode())
    mutate(raw)
    with pytest.raises(DecodeError) as e:
        IPv4.decode(bytes(raw), verify=False)
    assert (e.value.protocol, e.value.field, e.value.offset) == ("ipv4", field, offset)


def test_ipv4_options_round_trip_with_nop_and_eol_padding():
    pkt = udp_packet(options=(IPv4Option(1), RR, IPv4Option(1)))
    raw = pkt.encode()
    # 1 + 11 + 1 = 13 option bytes, padded with EOL to 16: IHL 9
    assert raw[0] == 0x49 and pkt.header_length == 36 and raw[20 + 13 : 36] == bytes(3)
    assert IPv4.decode(raw) == pkt


def test_ipv4_options_stop_at_eol():
    pkt = udp_packet(options=(RA,))
    raw = bytearray(pkt.encode())
    raw[0] = 0x47  # 12 option bytes: RA, then EOL, then bytes after EOL that are not options
    raw[2:4] = (len(raw) + 4).to_bytes(2, "big")
    raw[24:24] = b"\x00\x99\x99\x99"
    assert IPv4.decode(bytes(raw), verify=False).options == (RA,)


@pytest.mark.parametrize(
    "options,offset",
    [(b"\x01\x01\x01\x07", 23), (b"\x07\x01\x00\x00", 21), (b"\x07\x08\x04\x00", 21)],
    ids=["no-length-byte", "length-below-2", "length-past-header"],
)
def test_ipv4_option_tlv_errors_raise_decode_error(options, offset):
    header = bytearray(udp_packet().encode()[:20])
    header[0] = 0x46
    opts = options + bytes(4 - len(options))
    raw = bytes(header) + opts
    raw = raw[:2] + len(raw).to_bytes(2, "big") + raw[4:]
    with pytest.raises(DecodeError) as e:
        IPv4.decode(raw, verify=False)
    assert (e.value.protocol, e.value.field, e.value.offset) == ("ipv4", "options", offset)


def test_ipv4_more_than_40_bytes_of_options_raise_value_error():
    with pytest.raises(ValueError):
        udp_packet(options=(IPv4Option(7, bytes(38)), IPv4Option(1))).encode()
    udp_packet(options=(IPv4Option(7, bytes(38)),)).encode()  # exactly 40 fit


@pytest.mark.parametrize("opt", [IPv4Option(0), IPv4Option(1, b"x"), IPv4Option(256)])
def test_ipv4_unencodable_options_raise_value_error(opt):
    with pytest.raises(ValueError):
        udp_packet(options=(opt,)).encode()


@pytest.mark.parametrize(
    "fields", [{"ttl": 256}, {"identification": 65536}, {"frag_offset": 8192}, {"ttl": -1}, {"tos": 300}]
)
def test_ipv4_out_of_range_fields_raise_value_error(fields):
    with pytest.raises(ValueError):
        udp_packet(**fields).encode()


def test_ipv4_flags_and_fragment_offset_round_trip():
    pkt = udp_packet(mf=True, frag_offset=185, identification=0xBEEF, tos=0xB8, ttl=1)
    raw = pkt.encode()
    assert raw[6:8] == (0x2000 | 185).to_bytes(2, "big")
    assert IPv4.decode(raw) == pkt and pkt.is_fragment


# --- fragmentation (RFC 791 3.2) -------------------------------------------------------------------


def big_packet(n=3000, **ip) -> IPv4:
    data = bytes(i % 251 for i in range(n))
    return IPv4(A("10.0.0.1"), A("10.0.0.2"), IPPROTO_UDP, data, identification=42, **ip)


def test_fragment_returns_the_packet_when_it_fits():
    pkt = big_packet(1480)
    assert fragment(pkt, 1500) == [pkt]


def test_fragment_with_df_set_raises_fragmentation_needed_with_mtu():
    with pytest.raises(FragmentationNeeded) as e:
        fragment(big_packet(df=True), 1500)
    assert e.value.mtu == 1500 and isinstance(e.value, ThreatlabError)
    assert pickle.loads(pickle.dumps(e.value)).mtu == 1500


def test_fragments_fit_the_mtu_and_carry_multiples_of_8_bytes():
    frags = fragment(big_packet(3000), 1500)
    assert [len(f.encode()) for f in frags] == [1500, 1500, 60]
    assert [f.frag_offset for f in frags] == [0, 185, 370]
    assert [f.mf for f in frags] == [True, True, False]
    assert all(len(f.payload) % 8 == 0 for f in frags[:-1])
    assert all(f.identification == 42 for f in frags)


def test_fragments_after_the_first_keep_only_copied_options():
    frags = fragment(big_packet(1000, options=(RR, RA)), 300)
    assert frags[0].options == (RR, RA)
    assert all(f.options == (RA,) for f in frags[1:])
    assert all(len(f.encode()) <= 300 for f in frags)
    r = Reassembler()
    assert [r.add(f, 0) for f in frags][-1] == big_packet(1000, options=(RR, RA))


def test_fragmenting_a_fragment_keeps_offsets_and_more_fragments():
    first, second = fragment(big_packet(2000), 1500)[:2]
    pieces = fragment(first, 576)
    assert all(p.mf for p in pieces)
    assert pieces[0].frag_offset == 0 and sum(len(p.payload) for p in pieces) == len(first.payload)
    tail = fragment(second, 576)
    assert tail[0].frag_offset == second.frag_offset and not tail[-1].mf


def test_fragment_mtu_below_68_raises_value_error():
    with pytest.raises(ValueError):
        fragment(big_packet(100), 60)


# --- reassembly ------------------------------------------------------------------------------------


def test_reassembly_in_order_gives_back_the_datagram():
    pkt = big_packet(3000, options=(RR, RA))
    r = Reassembler()
    frags = fragment(pkt, 576)
    results = [r.add(f, 0) for f in frags]
    assert results[:-1] == [None] * (len(frags) - 1) and results[-1] == pkt
    assert (r.completed, r.dropped, r.pending) == (1, 0, 0)


def test_reassembly_handles_reverse_order_and_duplicates():
    pkt = big_packet(3000)
    frags = fragment(pkt, 1000)
    assert len(frags) == 4
    r = Reassembler()
    out = [r.add(f, i) for i, f in enumerate([frags[3], frags[3], frags[2], frags[1], frags[2]])]
    assert out == [None] * 5
    assert r.add(frags[0], 10) == pkt
    assert (r.completed, r.dropped) == (1, 0)


def test_unfragmented_datagram_passes_reassembly_untouched():
    pkt = big_packet(100)
    r = Reassembler()
    assert r.add(pkt, 0) is pkt and r.completed == 0


def test_overlapping_fragment_drops_the_whole_datagram():
    pkt = big_packet(3000)
    f0, f1, f2 = fragment(pkt, 1500)
    r = Reassembler()
    assert r.add(f0, 0) is None
    # a fragment rewriting bytes 1472.. with other data: the overlap attack of RFC 5722 / RFC 1858
    evil = IPv4(f1.src, f1.dst, f1.proto, b"\xee" * 16, identification=42, mf=True, frag_offset=183)
    assert r.add(evil, 1) is None
    assert (r.dropped, r.drops, r.pending) == (1, {"overlap": 1}, 0)
    assert r.add(f1, 2) is None and r.add(f2, 3) is None  # the rest cannot complete a datagram
    assert r.completed == 0


def test_partial_datagram_expires_after_timeout():
    f0, f1, _ = fragment(big_packet(3000), 1500)
    r = Reassembler(timeout_ns=1_000)
    r.add(f0, 0)
    other = fragment(dataclasses.replace(big_packet(3000), identification=43), 1500)
    r.add(other[0], 500)
    assert r.expire(999) == 0
    assert r.expire(1_000) == 1 and r.pending == 1
    assert r.add(f1, 1_001) is None  # a late fragment starts a new partial datagram
    assert r.expire(1_500) == 1 and r.dropped == 2 and r.drops == {"timeout": 2}


def test_late_fragment_of_a_timed_out_datagram_does_not_complete_it():
    f0, f1 = fragment(big_packet(2000), 1500)
    r = Reassembler(timeout_ns=100)
    r.add(f0, 0)
    assert r.add(f1, 100) is None
    assert r.dropped == 1 and r.completed == 0


@pytest.mark.parametrize(
    "bad,reason",
    [
        (dict(payload=bytes(12), mf=True, frag_offset=10), "bad-length"),  # non-last not a multiple of 8
        (dict(payload=bytes(1000), mf=False, frag_offset=8100), "oversize"),  # ping of death
    ],
)
def test_malformed_fragments_drop_the_datagram_with_a_reason(bad, reason):
    r = Reassembler()
    frag = IPv4(A("10.0.0.1"), A("10.0.0.2"), IPPROTO_UDP, identification=9, **bad)
    assert r.add(frag, 0) is None
    assert r.drops == {reason: 1} and r.pending == 0


def test_fragment_beyond_the_last_fragment_drops_the_datagram():
    f0, f1, f2 = fragment(big_packet(3000), 1500)
    r = Reassembler()
    r.add(f2, 0)
    beyond = dataclasses.replace(f2, payload=bytes(16), mf=True, frag_offset=f2.frag_offset + 10)
    assert r.add(beyond, 1) is None and r.drops == {"beyond-end": 1}


# --- IPv6 ------------------------------------------------------------------------------------------


def test_ipv6_round_trips_traffic_class_and_flow_label():
    pkt = IPv6(B("fe80::1"), B("ff02::1"), 58, b"abc", hop_limit=255, traffic_class=0xB8, flow_label=0xABCDE)
    raw = pkt.encode()
    assert raw[:4] == bytes.fromhex("6b8abcde")
    assert IPv6.decode(raw) == pkt


def test_ipv6_bytes_beyond_payload_length_are_padding():
    pkt = IPv6(B("::1"), B("::2"), 17, b"ab")
    assert IPv6.decode(pkt.encode() + bytes(4)) == pkt


@pytest.mark.parametrize(
    "raw,field,offset",
    [
        (bytes(39), "header", 0),
        (b"\x40" + bytes(39), "version", 0),
        (b"\x60\x00\x00\x00\x00\x01" + bytes(34), "payload_length", 4),
    ],
)
def test_ipv6_malformed_raises_decode_error(raw, field, offset):
    with pytest.raises(DecodeError) as e:
        IPv6.decode(raw)
    assert (e.value.protocol, e.value.field, e.value.offset) == ("ipv6", field, offset)


def test_ipv6_jumbo_payload_raises_value_error_on_encode():
    with pytest.raises(ValueError):
        IPv6(B("::1"), B("::2"), 17, bytes(65536)).encode()


# --- ICMPv4 ----------------------------------------------------------------------------------------


def test_icmp_echo_reply_mirrors_request_fields():
    req = ICMPv4.echo_request(7, 9, b"ping")
    rep = ICMPv4.echo_reply(req.ident, req.seq, req.payload)
    assert (rep.type, rep.ident, rep.seq, rep.payload) == (ICMP_ECHO_REPLY, 7, 9, b"ping")
    assert ICMPv4.decode(rep.encode()) == rep


def test_icmp_port_unreachable_quotes_header_and_first_8_bytes():
    original = udp_packet(data=b"0123456789abcdef", options=(RA,)).encode()
    msg = ICMPv4.dest_unreachable(UNREACH_PORT, original)
    assert msg.type == ICMP_DEST_UNREACH and msg.code == UNREACH_PORT
    assert msg.payload == original[: 24 + 8] and msg.rest == bytes(4)
    assert ICMPv4.decode(msg.encode()) == msg


def test_icmp_frag_needed_carries_next_hop_mtu_rfc1191():
    msg = ICMPv4.dest_unreachable(UNREACH_FRAG_NEEDED, big_packet(2000, df=True).encode(), next_hop_mtu=1400)
    assert msg.next_hop_mtu == 1400 and msg.rest == b"\x00\x00\x05\x78"
    assert len(msg.payload) == 28


def test_icmp_time_exceeded_quotes_the_original():
    msg = ICMPv4.time_exceeded(0, udp_packet().encode())
    assert msg.type == ICMP_TIME_EXCEEDED and len(msg.payload) == 28


def test_icmp_checksum_mismatch_raises_decode_error():
    raw = bytearray(ICMPv4.echo_request(1, 2, b"abc").encode())  # odd length: padded sum
    raw[-1] ^= 1
    with pytest.raises(DecodeError) as e:
        ICMPv4.decode(bytes(raw))
    assert (e.value.protocol, e.value.field, e.value.offset) == ("icmpv4", "checksum", 2)
    assert ICMPv4.decode(bytes(raw), verify=False).payload == b"abb"


def test_icmp_truncated_raises_decode_error_and_bad_rest_raises_value_error():
    with pytest.raises(DecodeError):
        ICMPv4.decode(bytes(7))
    with pytest.raises(ValueError):
        ICMPv4(8, 0, b"\x00", b"").encode()


# --- UDP -------------------------------------------------------------------------------------------


def test_udp_checksum_covers_the_ipv4_pseudo_header():
    s, d = A("10.0.0.1"), A("10.0.0.2")
    raw = UDP(1, 2, b"abc").encode(s, d)
    assert internet_checksum(pseudo_header_v4(s, d, IPPROTO_UDP, len(raw)) + raw) == 0
    with pytest.raises(DecodeError) as e:
        UDP.decode(raw, s, A("10.0.0.3"))  # delivered to the wrong address
    assert (e.value.protocol, e.value.field, e.value.offset) == ("udp", "checksum", 6)


def test_udp_checksum_covers_the_ipv6_pseudo_header():
    s, d = B("2001:db8::1"), B("2001:db8::2")
    raw = UDP(1, 2, b"abcd").encode(s, d)
    assert internet_checksum(pseudo_header_v6(s, d, IPPROTO_UDP, len(raw)) + raw) == 0
    assert UDP.decode(raw, s, d) == UDP(1, 2, b"abcd")


def test_udp_computed_zero_checksum_is_sent_as_ffff():
    s, d = A("10.0.0.1"), A("10.0.0.2")
    # choose the first payload word so that the whole sum is 0xffff: the checksum computes to 0
    c0 = int.from_bytes(UDP(1, 2, b"\x00\x00zz").encode(s, d)[6:8], "big")
    udp = UDP(1, 2, c0.to_bytes(2, "big") + b"zz")
    raw = udp.encode(s, d)
    assert raw[6:8] == b"\xff\xff"
    assert UDP.decode(raw, s, d) == udp


def test_udp_zero_checksum_means_none_over_ipv4_but_is_an_error_over_ipv6():
    raw = b"\x00\x01\x00\x02\x00\x0b\x00\x00abc"
    assert UDP.decode(raw, A("10.0.0.1"), A("10.0.0.2")) == UDP(1, 2, b"abc")
    with pytest.raises(DecodeError) as e:
        UDP.decode(raw, B("::1"), B("::2"))
    assert (e.value.field, e.value.offset) == ("checksum", 6)


def test_udp_decode_without_addresses_does_not_verify():
    raw = b"\x00\x01\x00\x02\x00\x0b\x12\x34abc"
    assert UDP.decode(raw) == UDP(1, 2, b"abc")
    assert UDP.decode(raw, A("10.0.0.1"), A("10.0.0.2"), verify=False) == UDP(1, 2, b"abc")


@pytest.mark.parametrize("length", [0, 7, 12])
def test_udp_length_below_8_or_beyond_data_raises_decode_error(length):
    raw = b"\x00\x01\x00\x02" + length.to_bytes(2, "big") + b"\x00\x00abc"
    with pytest.raises(DecodeError) as e:
        UDP.decode(raw)
    assert (e.value.protocol, e.value.field, e.value.offset) == ("udp", "length", 4)


def test_udp_bytes_after_length_are_ignored():
    s, d = A("10.0.0.1"), A("10.0.0.2")
    assert UDP.decode(UDP(1, 2, b"abc").encode(s, d) + b"pad", s, d) == UDP(1, 2, b"abc")


def test_udp_mixed_address_families_raise_value_error():
    with pytest.raises(ValueError):
        UDP(1, 2, b"").encode(A("10.0.0.1"), B("::1"))


def test_udp_port_out_of_range_raises_value_error():
    with pytest.raises(ValueError):
        UDP(65536, 2, b"").encode(A("10.0.0.1"), A("10.0.0.2"))


# --- the dataclasses -------------------------------------------------------------------------------


def test_codec_units_are_frozen_and_slotted():
    pkt = udp_packet()
    with pytest.raises(AttributeError):
        pkt.ttl = 1  # type: ignore[misc]
    assert not hasattr(pkt, "__dict__")
    assert hash(pkt) == hash(udp_packet())


def test_decode_error_is_picklable_for_worker_processes():
    try:
        IPv4.decode(b"")
    except DecodeError as e:
        again = pickle.loads(pickle.dumps(e))
        assert (again.protocol, again.field, again.offset) == ("ipv4", "header", 0)
