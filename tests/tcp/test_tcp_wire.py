"""The TCP codec: known answers, round trips, bad input, and scapy as an independent dissector."""

from __future__ import annotations

import hashlib
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threatlab.errors import DecodeError
from threatlab.tcp.wire import (
    MSS,
    Md5Signature,
    Nop,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpSegment,
    Timestamps,
    UnknownOption,
    WindowScale,
    encode_options,
    md5_signature,
    new_segment,
    sign_md5,
    verify_md5,
)

A4 = IPv4Address("192.0.2.1")
B4 = IPv4Address("192.0.2.2")
A6 = IPv6Address("2001:db8::1")
B6 = IPv6Address("2001:db8::2")
F = TcpFlags

# Known answers: the hex was produced by scapy 2.8 (raw(IP()/TCP(...)) minus the IP header), an
# independent encoder, for the same fields.
KNOWN = [
    (
        "SYN,ACK with MSS, SACK-permitted, timestamps, NOP, window scale",
        A4,
        B4,
        TcpSegment(
            40000,
            80,
            0x01020304,
            0x0A0B0C0D,
            F.SYN | F.ACK,
            29200,
            0,
            (MSS(1460), SackPermitted(), Timestamps(123456, 654321), Nop(), WindowScale(7)),
        ),
        "9c400050010203040a0b0c0da0127210bcf00000020405b40402080a0001e2400009fbf101030307",
    ),
    (
        "PSH,ACK with two SACK blocks and a payload",
        A4,
        B4,
        TcpSegment(
            1, 2, 5, 6, F.PSH | F.ACK, 512, 0, (Nop(), Nop(), Sack(((100, 200), (300, 400)))), b"payload!"
        ),
        "000100020000000500000006a0180200125300000101051200000064000000c80000012c000001907061796c6f616421",
    ),
    (
        "bare RST",
        A4,
        B4,
        TcpSegment(1, 2, 5, 0, F.RST, 0),
        "000100020000000500000000500400002bd50000",
    ),
    (
        "FIN,ACK over IPv6 with a sequence number near wraparound",
        A6,
        B6,
        TcpSegment(443, 50000, 0xFFFFFFF0, 17, F.FIN | F.ACK, 1000, 0, (MSS(1220),), b"abc"),
        "01bbc350fffffff000000011601103e8b0370000020404c4616263",
    ),
]


@pytest.mark.parametrize("name,src,dst,segment,hexstr", KNOWN, ids=[k[0] for k in KNOWN])
def test_known_answers(name, src, dst, segment, hexstr):
    raw = bytes.fromhex(hexstr)
    assert segment.encode(src, dst) == raw
    assert TcpSegment.decode(raw, src, dst) == segment


# (hex, field, description): each must raise DecodeError naming `field`.
MALFORMED = [
    ("0001000200000005000000", "header", "shorter than 20 bytes"),
    ("000100020000000500000000400400000000ffff", "data_offset", "data offset 4 < 5"),
    ("000100020000000500000000600400000000ffff", "data_offset", "data offset 6 beyond a 20-byte buffer"),
    ("00010002000000050000000060040000000000000204", "data_offset", "header runs past the data"),
    ("0001000200000005000000006004000000000000020405", "data_offset", "23 bytes with data offset 6"),
    ("00010002000000050000000060040000000000000206ffff", "options", "option length overruns the header"),
    ("00010002000000050000000060040000000000000201ffff", "options", "option length < 2"),
    ("0001000200000005000000006004000000000000010101fe", "options", "option kind without length byte"),
    ("00010002000000050000000060040000000000000203ff00", "mss", "MSS option of length 3"),
    ("0001000200000005000000007004000000000000020605b40000000000", "mss", "MSS option of length 6"),
    ("00010002000000050000000060040000000000000304ff00", "window_scale", "window scale of length 4"),
    ("0001000200000005000000006004000000000000080400000000", "timestamps", "timestamps of length 4"),
    ("0001000200000005000000006004000000000000130401000000", "md5_signature", "MD5 of length 4"),
    ("0001000200000005000000006004000000000000050400000000", "sack", "SACK of length 4"),
    ("0001000200000005000000006004000000000000040301000000", "sack_permitted", "SACK-permitted of length 3"),
]


@pytest.mark.parametrize("hexstr,field,why", MALFORMED, ids=[m[2] for m in MALFORMED])
def test_malformed_segments_raise_decode_error(hexstr, field, why):
    with pytest.raises(DecodeError) as info:
        TcpSegment.decode(bytes.fromhex(hexstr), verify=False)
    assert info.value.protocol == "tcp"
    assert info.value.field == field


def test_bad_checksum_is_a_decode_error_only_when_addresses_are_given():
    raw = bytearray(bytes.fromhex(KNOWN[2][4]))
    raw[16] ^= 0xFF
    with pytest.raises(DecodeError) as info:
        TcpSegment.decode(bytes(raw), A4, B4)
    assert (info.value.field, info.value.offset) == ("checksum", 16)
    assert TcpSegment.decode(bytes(raw)) == KNOWN[2][3]  # no addresses: no checksum to verify
    assert TcpSegment.decode(bytes(raw), A4, B4, verify=False) == KNOWN[2][3]


def test_checksum_covers_the_pseudo_header():
    raw = KNOWN[2][3].encode(A4, B4)
    with pytest.raises(DecodeError):
        TcpSegment.decode(raw, A4, IPv4Address("192.0.2.3"))


def test_encode_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError):
        TcpSegment(70000, 1, 0, 0, F.ACK).encode(A4, B4)
    with pytest.raises(ValueError):
        TcpSegment(1, 1, 2**32, 0, F.ACK).encode(A4, B4)
    with pytest.raises(ValueError):  # 11 timestamps options: 110 bytes
        TcpSegment(1, 1, 0, 0, F.ACK, options=(Timestamps(1, 2),) * 5).encode(A4, B4)
    with pytest.raises(ValueError):  # would decode as an MSS, breaking the round trip
        TcpSegment(1, 1, 0, 0, F.ACK, options=(UnknownOption(2, b"\x05\xb4"),)).encode(A4, B4)
    with pytest.raises(ValueError):
        TcpSegment(1, 1, 0, 0, F.ACK, options=(Md5Signature(b"short"),)).encode(A4, B4)
    with pytest.raises(ValueError):
        TcpSegment(1, 1, 0, 0, F.ACK).encode(A4, B6)


def test_seg_len_counts_syn_and_fin():
    assert TcpSegment(1, 2, 0, 0, F.SYN).seg_len == 1
    assert TcpSegment(1, 2, 0, 0, F.FIN | F.ACK, payload=b"abc").seg_len == 4
    assert TcpSegment(1, 2, 0, 0, F.RST).seg_len == 0
    assert TcpSegment(1, 2, 0, 0, F.ACK)  # a bare ACK is still truthy


def test_new_segment_builds_an_equal_frozen_segment():
    a = new_segment(1, 2, 3, 4, F.ACK, 5, 0, (), b"x")
    assert a == TcpSegment(1, 2, 3, 4, F.ACK, 5, 0, (), b"x")
    assert hash(a) == hash(TcpSegment(1, 2, 3, 4, F.ACK, 5, 0, (), b"x"))
    with pytest.raises(AttributeError):
        a.seq = 9  # type: ignore[misc]


def test_reserved_bits_are_ignored_on_receive():
    raw = bytearray(bytes.fromhex(KNOWN[2][4]))
    raw[12] |= 0x0F
    assert TcpSegment.decode(bytes(raw)) == KNOWN[2][3]


# --- properties -------------------------------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
UNKNOWN_KINDS = [k for k in range(6, 256) if k not in (8, 19)]
option = st.one_of(
    st.builds(MSS, u16),
    st.builds(WindowScale, st.integers(0, 255)),
    st.just(SackPermitted()),
    st.builds(Sack, st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(tuple)),
    st.builds(Timestamps, u32, u32),
    st.builds(Md5Signature, st.binary(min_size=16, max_size=16)),
    st.just(Nop()),
    st.builds(UnknownOption, st.sampled_from(UNKNOWN_KINDS), st.binary(max_size=12)),
)


def _fits(opts: tuple) -> bool:
    try:
        encode_options(opts)
    except ValueError:
        return False
    return True


options = st.lists(option, max_size=6).map(tuple).filter(_fits)
segments = st.builds(
    TcpSegment,
    u16,
    u16,
    u32,
    u32,
    st.integers(0, 255).map(TcpFlags),
    u16,
    u16,
    options,
    st.binary(max_size=64),
)
addresses = st.sampled_from([(A4, B4), (B4, A4), (A6, B6)])


@settings(max_examples=300)
@given(segments, addresses)
def test_round_trip(segment, addrs):
    raw = segment.encode(*addrs)
    assert TcpSegment.decode(raw, *addrs) == segment


@settings(max_examples=500)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_give_a_segment_or_decode_error(data):
    for addrs in ((None, None), (A4, B4), (A6, B6)):
        try:
            TcpSegment.decode(data, *addrs)
        except DecodeError:
            pass


@settings(max_examples=500)
@given(st.binary(min_size=12, max_size=12), st.integers(0, 15), st.integers(0, 255), st.binary(max_size=60))
def test_headers_with_arbitrary_offsets_and_options_only_raise_decode_error(head, offset, flags, rest):
    data = head + bytes((offset << 4, flags)) + rest
    try:
        seg = TcpSegment.decode(data)
    except DecodeError:
        return
    assert seg.flags == flags


# --- RFC 2385 ---------------------------------------------------------------------------------------


def _rfc2385_by_hand(src, dst, seg_bytes: bytes, key: bytes) -> bytes:
    """RFC 2385 2.0 written out independently: pseudo-header, 20-byte header with zero checksum,
    data, key."""
    hl = (seg_bytes[12] >> 4) * 4
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 6, len(seg_bytes))
    header = seg_bytes[:16] + b"\0\0" + seg_bytes[18:20]
    return hashlib.md5(pseudo + header + seg_bytes[hl:] + key).digest()


def test_md5_signature_matches_rfc2385_section_2():
    key = b"bgp-peering-secret"
    seg = TcpSegment(179, 50123, 1000, 2000, F.PSH | F.ACK, 16384, 0, (Timestamps(1, 2),), b"OPEN message")
    signed = sign_md5(seg, A4, B4, key)
    assert signed.options[:3] == (Nop(), Nop(), signed.option(Md5Signature))
    raw = signed.encode(A4, B4)
    assert signed.option(Md5Signature).digest == _rfc2385_by_hand(A4, B4, raw, key)
    assert md5_signature(A4, B4, raw, key) == md5_signature(A4, B4, signed, key)
    assert verify_md5(signed, A4, B4, key)
    assert verify_md5(TcpSegment.decode(raw, A4, B4), A4, B4, key, raw=raw)


def test_md5_signature_fails_for_wrong_key_tampering_or_absence():
    key = b"k1"
    seg = sign_md5(TcpSegment(179, 1, 5, 6, F.ACK, payload=b"data"), A4, B4, key)
    assert not verify_md5(seg, A4, B4, b"k2")
    tampered = TcpSegment(
        seg.src_port, seg.dst_port, seg.seq + 1, seg.ack, seg.flags, seg.window, 0, seg.options, seg.payload
    )
    assert not verify_md5(tampered, A4, B4, key)
    assert not verify_md5(seg, A4, IPv4Address("192.0.2.9"), key)  # the pseudo-header is covered
    assert not verify_md5(TcpSegment(179, 1, 5, 6, F.ACK), A4, B4, key)


def test_sign_md5_replaces_an_existing_signature_in_place():
    seg = TcpSegment(1, 2, 3, 4, F.ACK, options=(MSS(1000), Md5Signature(bytes(16))))
    signed = sign_md5(seg, A6, B6, b"key")
    assert signed.options[0] == MSS(1000)
    assert verify_md5(signed, A6, B6, b"key")


# --- scapy as an independent dissector ------------------------------------------------------------

scapy_all = pytest.importorskip("scapy.all")
SCAPY_UNKNOWN = [k for k in UNKNOWN_KINDS if k not in (14, 15, 25, 28, 29, 34)]  # kinds scapy parses


def _scapy_options(opts) -> list:
    out = []
    for o in opts:
        t = type(o)
        if t is Nop:
            out.append(("NOP", None))
        elif t is MSS:
            out.append(("MSS", o.value))
        elif t is WindowScale:
            out.append(("WScale", o.shift))
        elif t is SackPermitted:
            out.append(("SAckOK", b""))
        elif t is Sack:
            out.append(("SAck", tuple(x for blk in o.blocks for x in blk)))
        elif t is Timestamps:
            out.append(("Timestamp", (o.tsval, o.tsecr)))
        elif t is Md5Signature:
            out.append(("MD5", o.digest))
        else:
            out.append((o.kind, o.data))
    return out


scapy_option = st.one_of(
    st.builds(MSS, u16),
    st.builds(WindowScale, st.integers(0, 255)),
    st.just(SackPermitted()),
    st.builds(Sack, st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(tuple)),
    st.builds(Timestamps, u32, u32),
    st.builds(Md5Signature, st.binary(min_size=16, max_size=16)),
    st.just(Nop()),
    st.builds(UnknownOption, st.sampled_from(SCAPY_UNKNOWN), st.binary(max_size=8)),
)
scapy_segments = st.builds(
    TcpSegment,
    u16,
    u16,
    u32,
    u32,
    st.integers(0, 255).map(TcpFlags),
    u16,
    u16,
    st.lists(scapy_option, max_size=5).map(tuple).filter(_fits),
    st.binary(max_size=40),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(scapy_segments)
def test_scapy_dissects_our_segments(segment):
    IP, TCP, raw_of = scapy_all.IP, scapy_all.TCP, scapy_all.raw
    ours = segment.encode(A4, B4)
    pkt = IP(src=str(A4), dst=str(B4), proto=6) / TCP(ours)
    tcp = IP(raw_of(pkt))[TCP]
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack) == (
        segment.src_port,
        segment.dst_port,
        segment.seq,
        segment.ack,
    )
    assert (int(tcp.flags), tcp.window, tcp.urgptr) == (int(segment.flags), segment.window, segment.urgent)
    assert [o for o in tcp.options if o[0] != "EOL"] == _scapy_options(segment.options)
    assert bytes(tcp.payload) == segment.payload
    # scapy's own checksum for the same bytes
    again = IP(raw_of(pkt))
    del again[TCP].chksum
    assert IP(raw_of(again))[TCP].chksum == tcp.chksum


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(scapy_segments, st.booleans())
def test_segments_scapy_builds_decode_with_ours(segment, v6):
    TCP, raw_of = scapy_all.TCP, scapy_all.raw
    if v6:
        ip, src, dst, hl = scapy_all.IPv6(src=str(A6), dst=str(B6)), A6, B6, 40
    else:
        ip, src, dst, hl = scapy_all.IP(src=str(A4), dst=str(B4)), A4, B4, 20
    pkt = (
        ip
        / TCP(
            sport=segment.src_port,
            dport=segment.dst_port,
            seq=segment.seq,
            ack=segment.ack,
            flags=int(segment.flags),
            window=segment.window,
            urgptr=segment.urgent,
            options=_scapy_options(segment.options),
        )
        / segment.payload
    )
    decoded = TcpSegment.decode(raw_of(pkt)[hl:], src, dst)  # checksum verified
    assert decoded == segment
