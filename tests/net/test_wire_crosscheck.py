"""Independent dissectors agree with threatlab.net.wire: scapy both ways, and tshark on a pcap of
every kind of frame (fragments and options included) finds no malformation, no bad checksum, and
the same fields."""

from __future__ import annotations

import shutil
import struct
import subprocess
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threatlab.net.wire import (
    ARP,
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST_MAC,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    ICMP_DEST_UNREACH,
    ICMP_ECHO_REQUEST,
    IPPROTO_ICMP,
    IPPROTO_UDP,
    UDP,
    UNREACH_FRAG_NEEDED,
    UNREACH_PORT,
    Ethernet,
    ICMPv4,
    IPv4,
    IPv4Option,
    IPv6,
    Reassembler,
    fragment,
    mac_bytes,
    mac_str,
    pad_frame,
)

scapy_l2 = pytest.importorskip("scapy.layers.l2")
scapy_inet = pytest.importorskip("scapy.layers.inet")
scapy_inet6 = pytest.importorskip("scapy.layers.inet6")
S_Ether, S_ARP = scapy_l2.Ether, scapy_l2.ARP
S_IP, S_UDP, S_ICMP = scapy_inet.IP, scapy_inet.UDP, scapy_inet.ICMP
S_IPv6 = scapy_inet6.IPv6
from scapy.packet import Raw  # noqa: E402

SLOW_ENOUGH = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

H1 = mac_bytes("02:00:00:00:00:01")
H2 = mac_bytes("02:00:00:00:00:02")
RA = IPv4Option(0x94, b"\x00\x00")  # Router Alert, copied
RR = IPv4Option(7, b"\x04" + bytes(8))  # Record Route, not copied

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
ports = st.integers(1024, 4000)  # clear of scapy's and tshark's port-bound dissectors
ipv4_addr = st.integers(1, 2**32 - 2).map(IPv4Address)
ipv6_addr = st.integers(1, 2**128 - 1).map(IPv6Address)
mac = st.binary(min_size=6, max_size=6)
# Options scapy and tshark both know: NOP, Router Alert, Record Route with empty slots.
known_options = st.lists(st.sampled_from([IPv4Option(1), RA, RR]), max_size=3).map(tuple)


def _scapy_options(p) -> list[bytes]:
    return [bytes(o) for o in p.options if bytes(o) != b"\x00"]


# --- scapy dissects our encodings ------------------------------------------------------------------


@SLOW_ENOUGH
@given(mac, mac, ipv4_addr, ipv4_addr, ports, ports, st.binary(max_size=200), u8, u8, u16, st.booleans(),
       known_options)
def test_scapy_dissects_our_udp_frames_to_the_same_fields_and_checksums(
    dst_mac, src_mac, src, dst, sport, dport, data, ttl, tos, ident, df, options
):
    udp = UDP(sport, dport, data).encode(src, dst)
    ip = IPv4(src, dst, IPPROTO_UDP, udp, ttl, tos, ident, df, options=options)
    frame = Ethernet(dst_mac, src_mac, ETH_P_IP, ip.encode()).encode()
    p = S_Ether(frame)
    assert (p.dst, p.src, p.type) == (mac_str(dst_mac), mac_str(src_mac), ETH_P_IP)
    sip, sudp = p[S_IP], p[S_UDP]
    assert (sip.version, sip.ihl * 4, sip.tos, sip.len, sip.id, sip.ttl, sip.proto) == (
        4, ip.header_length, tos, len(ip.encode()), ident, ttl, IPPROTO_UDP,
    )
    assert (sip.src, sip.dst, int(sip.flags), sip.frag) == (str(src), str(dst), 2 if df else 0, 0)
    assert _scapy_options(sip) == [o.encode() for o in options]
    assert (sudp.sport, sudp.dport, sudp.len, bytes(sudp.payload)) == (sport, dport, 8 + len(data), data)
    # show2's view: scapy recomputes both checksums from the fields and gets ours
    again = p.copy()
    del again[S_IP].chksum
    del again[S_UDP].chksum
    assert bytes(again) == frame
    assert S_Ether(bytes(again))[S_IP].chksum == sip.chksum


@SLOW_ENOUGH
@given(u16, u16, st.binary(max_size=100))
def test_scapy_dissects_our_icmp_echo_with_the_same_checksum(ident, seq, data):
    src, dst = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")
    raw = IPv4(src, dst, IPPROTO_ICMP, ICMPv4.echo_request(ident, seq, data).encode()).encode()
    p = S_IP(raw)
    icmp = p[S_ICMP]
    assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (ICMP_ECHO_REQUEST, 0, ident, seq)
    assert bytes(icmp.payload) == data
    again = p.copy()
    del again[S_ICMP].chksum
    assert bytes(again) == raw


def test_scapy_dissects_our_port_unreachable_and_its_quoted_datagram():
    src, dst = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    udp = UDP(3000, 3001, bytes(100)).encode(src, dst)
    original = IPv4(src, dst, IPPROTO_UDP, udp, identification=77).encode()
    raw = IPv4(dst, src, IPPROTO_ICMP, ICMPv4.dest_unreachable(UNREACH_PORT, original).encode()).encode()
    p = S_IP(raw)
    assert (p[S_ICMP].type, p[S_ICMP].code) == (ICMP_DEST_UNREACH, UNREACH_PORT)
    quoted = p[S_ICMP].payload  # scapy's IPerror
    assert (quoted.id, quoted.src, quoted.dst, quoted.payload.dport) == (77, "10.0.0.1", "10.0.0.2", 3001)


@SLOW_ENOUGH
@given(st.sampled_from([ARP_REQUEST, ARP_REPLY]), mac, ipv4_addr, mac, ipv4_addr)
def test_scapy_dissects_our_arp_to_the_same_fields(op, sha, spa, tha, tpa):
    frame = pad_frame(Ethernet(BROADCAST_MAC, sha, ETH_P_ARP, ARP(op, sha, spa, tha, tpa).encode()).encode())
    a = S_Ether(frame)[S_ARP]
    assert (a.hwtype, a.ptype, a.hwlen, a.plen, a.op) == (1, ETH_P_IP, 6, 4, op)
    assert (a.hwsrc, a.psrc, a.hwdst, a.pdst) == (mac_str(sha), str(spa), mac_str(tha), str(tpa))


@SLOW_ENOUGH
@given(ipv6_addr, ipv6_addr, ports, ports, st.binary(max_size=200), u8, st.integers(0, 0xFFFFF), u8)
def test_scapy_dissects_our_ipv6_udp_with_the_same_checksum(src, dst, sport, dport, data, tc, fl, hlim):
    raw = IPv6(src, dst, IPPROTO_UDP, UDP(sport, dport, data).encode(src, dst), hlim, tc, fl).encode()
    p = S_IPv6(raw)
    assert (IPv6Address(p.src), IPv6Address(p.dst), p.nh, p.hlim, p.tc, p.fl, p.plen) == (
        src, dst, IPPROTO_UDP, hlim, tc, fl, 8 + len(data),
    )
    again = p.copy()
    del again[S_UDP].chksum
    assert bytes(again) == raw


def test_scapy_defragments_our_fragments_to_the_original():
    src, dst = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    udp = UDP(3000, 3001, bytes(range(256)) * 10).encode(src, dst)
    whole = IPv4(src, dst, IPPROTO_UDP, udp, identification=5)
    frags = [S_IP(f.encode()) for f in fragment(whole, 576)]
    (defragmented,) = scapy_inet.defragment(frags)
    assert bytes(defragmented[S_UDP]) == whole.payload


# --- scapy builds, we decode -----------------------------------------------------------------------


@SLOW_ENOUGH
@given(mac, mac, ipv4_addr, ipv4_addr, ports, ports, st.binary(max_size=200), u8, u8, u16, st.booleans())
def test_scapy_built_udp_frames_decode_with_ours(
    dst_mac, src_mac, src, dst, sport, dport, data, ttl, tos, ident, df
):
    frame = bytes(
        S_Ether(dst=mac_str(dst_mac), src=mac_str(src_mac))
        / S_IP(src=str(src), dst=str(dst), ttl=ttl, tos=tos, id=ident, flags="DF" if df else 0)
        / S_UDP(sport=sport, dport=dport)
        / Raw(data)
    )
    eth = Ethernet.decode(frame)
    ip = IPv4.decode(eth.payload)
    udp = UDP.decode(ip.payload, ip.src, ip.dst)
    assert (eth.dst, eth.src, eth.ethertype) == (dst_mac, src_mac, ETH_P_IP)
    assert ip == IPv4(src, dst, IPPROTO_UDP, ip.payload, ttl, tos, ident, df)
    assert udp == UDP(sport, dport, data)
    assert Ethernet(dst_mac, src_mac, ETH_P_IP, ip.encode()).encode() == frame


def test_scapy_built_options_decode_with_ours():
    raw = bytes(
        S_IP(
            src="10.0.0.1",
            dst="10.0.0.2",
            options=[scapy_inet.IPOption_Router_Alert(), scapy_inet.IPOption_NOP()],
        )
        / S_UDP(sport=3000, dport=3001)
        / b"x"
    )
    ip = IPv4.decode(raw)
    assert ip.options == (RA, IPv4Option(1))
    assert ip.encode() == raw


def test_scapy_built_icmp_arp_and_ipv6_decode_with_ours():
    icmp = ICMPv4.decode(bytes(S_ICMP(type=8, id=0x4242, seq=3) / b"payload"))
    assert (icmp.type, icmp.ident, icmp.seq, icmp.payload) == (ICMP_ECHO_REQUEST, 0x4242, 3, b"payload")
    s_arp = S_ARP(op=2, hwsrc=mac_str(H1), psrc="10.0.0.1", hwdst=mac_str(H2), pdst="10.0.0.2")
    arp = ARP.decode(bytes(s_arp))
    assert arp == ARP(ARP_REPLY, H1, IPv4Address("10.0.0.1"), H2, IPv4Address("10.0.0.2"))
    raw6 = bytes(S_IPv6(src="2001:db8::1", dst="2001:db8::2", fl=5) / S_UDP(sport=3000, dport=3001) / b"six")
    ip6 = IPv6.decode(raw6)
    assert UDP.decode(ip6.payload, ip6.src, ip6.dst) == UDP(3000, 3001, b"six") and ip6.flow_label == 5


def test_scapy_fragments_reassemble_with_ours():
    whole = S_IP(src="10.0.0.1", dst="10.0.0.2", id=99) / S_UDP(sport=3000, dport=3001) / (b"0123" * 700)
    frags = scapy_inet.fragment(whole, fragsize=1000)
    r = Reassembler()
    results = [out for f in reversed(frags) if (out := r.add(IPv4.decode(bytes(f)), 0)) is not None]
    assert [x.encode() for x in results] == [bytes(S_IP(bytes(whole)))]


# --- tshark ----------------------------------------------------------------------------------------

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


def write_pcap(path: Path, frames: list[bytes]) -> None:
    """Classic libpcap file (magic a1b2c3d4, v2.4), linktype 1 (Ethernet)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            f.write(struct.pack("<IIII", 1_700_000_000, i * 1000, len(frame), len(frame)) + frame)


def _ipv4_fields(ip: IPv4) -> dict[str, set[str]]:
    raw = ip.encode()
    return {
        "ip.src": {str(ip.src)},
        "ip.dst": {str(ip.dst)},
        "ip.id": {f"0x{ip.identification:04x}"},
        "ip.ttl": {str(ip.ttl)},
        "ip.hdr_len": {str(ip.header_length)},
        "ip.len": {str(len(raw))},
        "ip.flags.df": {str(int(ip.df))},
        "ip.flags.mf": {str(int(ip.mf))},
        "ip.frag_offset": {str(ip.frag_offset), str(ip.frag_offset * 8)},  # units or bytes by version
        "ip.proto": {str(ip.proto)},
        "ip.checksum": {f"0x{raw[10:12].hex()}"},
        "ip.checksum.status": {"1"},  # good
        "ip.opt.type": {",".join(str(o.kind) for o in ip.options)},
    }


def _udp_fields(udp: UDP, raw: bytes) -> dict[str, set[str]]:
    return {
        "udp.srcport": {str(udp.src_port)},
        "udp.dstport": {str(udp.dst_port)},
        "udp.length": {str(len(raw))},
        "udp.checksum": {f"0x{raw[6:8].hex()}"},
        "udp.checksum.status": {"1"},
    }


def _icmp_fields(icmp: ICMPv4) -> dict[str, set[str]]:
    raw = icmp.encode()
    fields = {
        "icmp.type": {str(icmp.type)},
        "icmp.code": {str(icmp.code)},
        "icmp.checksum": {f"0x{raw[2:4].hex()}"},
        "icmp.checksum.status": {"1"},
    }
    if icmp.type in (0, 8):
        fields |= {"icmp.ident": {str(icmp.ident)}, "icmp.seq": {str(icmp.seq)}}
    if icmp.type == ICMP_DEST_UNREACH and icmp.code == UNREACH_FRAG_NEEDED:
        fields["icmp.mtu"] = {str(icmp.next_hop_mtu)}
    return fields


def _capture() -> tuple[list[bytes], list[dict[str, set[str]]]]:
    """Every kind of frame this module makes, each with the fields tshark must show for it."""
    s, d = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    frames: list[bytes] = []
    expected: list[dict[str, set[str]]] = []

    def add(ether_src: bytes, ether_dst: bytes, ethertype: int, payload: bytes, fields: dict) -> None:
        frames.append(pad_frame(Ethernet(ether_dst, ether_src, ethertype, payload).encode()))
        expected.append({"eth.src": {mac_str(ether_src)}, "eth.dst": {mac_str(ether_dst)}, **fields})

    arps = [(ARP(ARP_REQUEST, H1, s, bytes(6), d), BROADCAST_MAC), (ARP(ARP_REPLY, H2, d, H1, s), H1)]
    for arp, dst in arps:
        add(arp.sender_mac, dst, ETH_P_ARP, arp.encode(), {
            "arp.opcode": {str(arp.op)},
            "arp.src.hw_mac": {mac_str(arp.sender_mac)},
            "arp.src.proto_ipv4": {str(arp.sender_ip)},
            "arp.dst.hw_mac": {mac_str(arp.target_mac)},
            "arp.dst.proto_ipv4": {str(arp.target_ip)},
        })

    def add_udp(src, dst, udp: UDP, **ip_fields) -> None:
        raw = udp.encode(src, dst)
        ip = IPv4(src, dst, IPPROTO_UDP, raw, **ip_fields)
        add(H1, H2, ETH_P_IP, ip.encode(), _ipv4_fields(ip) | _udp_fields(udp, raw))

    add_udp(s, d, UDP(3000, 3001, b"hello"), identification=1)
    add_udp(s, d, UDP(3000, 3001, b"odd"), identification=2, tos=0xB8, ttl=1, options=(RA, IPv4Option(1)))
    add_udp(IPv4Address("0.0.0.0"), IPv4Address("255.255.255.255"), UDP(3002, 3003, bytes(300)), df=True)
    # a payload whose checksum computes to zero, sent as 0xffff (RFC 768)
    c0 = int.from_bytes(UDP(3000, 3001, b"\x00\x00zz").encode(s, d)[6:8], "big")
    add_udp(s, d, UDP(3000, 3001, c0.to_bytes(2, "big") + b"zz"), identification=3)

    def add_icmp(src, dst, icmp: ICMPv4, ident: int) -> None:
        ip = IPv4(src, dst, IPPROTO_ICMP, icmp.encode(), identification=ident)
        add(H1, H2, ETH_P_IP, ip.encode(), _ipv4_fields(ip) | _icmp_fields(icmp))

    add_icmp(s, d, ICMPv4.echo_request(7, 1, b"abcdefgh"), 4)
    add_icmp(d, s, ICMPv4.echo_reply(7, 1, b"abcdefgh"), 5)
    quoted = IPv4(s, d, IPPROTO_UDP, UDP(3000, 3004, bytes(100)).encode(s, d), identification=6).encode()
    add_icmp(d, s, ICMPv4.dest_unreachable(UNREACH_PORT, quoted), 7)
    big_udp = UDP(3000, 3004, bytes(2000)).encode(s, d)
    too_big = IPv4(s, d, IPPROTO_UDP, big_udp, identification=8, df=True).encode()
    add_icmp(d, s, ICMPv4.dest_unreachable(UNREACH_FRAG_NEEDED, too_big, next_hop_mtu=1400), 9)
    add_icmp(d, s, ICMPv4.time_exceeded(0, quoted), 10)

    # a datagram in fragments, with a copied and a not-copied option; tshark reassembles it
    udp = UDP(3000, 3005, bytes(range(256)) * 12)
    udp_raw = udp.encode(s, d)
    frags = fragment(IPv4(s, d, IPPROTO_UDP, udp_raw, identification=11, options=(RR, RA)), 1000)
    assert len(frags) == 4 and frags[1].options == (RA,)
    for f in frags:
        fields = _ipv4_fields(f)
        if not f.mf:
            fields |= _udp_fields(udp, udp_raw)  # on the frame that completes the datagram
        add(H1, H2, ETH_P_IP, f.encode(), fields)

    for tc, fl in [(0, 0), (0xB8, 0xABCDE)]:
        s6, d6 = IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2")
        udp6 = UDP(3000, 3001, b"six")
        raw6 = udp6.encode(s6, d6)
        ip6 = IPv6(s6, d6, IPPROTO_UDP, raw6, 64, tc, fl)
        add(H1, H2, ETH_P_IPV6, ip6.encode(), _udp_fields(udp6, raw6) | {
            "ipv6.src": {str(s6)},
            "ipv6.dst": {str(d6)},
            "ipv6.plen": {str(len(raw6))},
            "ipv6.nxt": {"17"},
            "ipv6.hlim": {"64"},
            "ipv6.tclass": {f"0x{tc:08x}"},
            "ipv6.flow": {f"0x{fl:06x}", f"0x{fl:05x}"},
        })
    return frames, expected


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    frames, expected = _capture()
    path = tmp_path_factory.mktemp("pcap") / "wire.pcap"
    write_pcap(path, frames)
    return path, expected


def _tshark(*args: str) -> str:
    assert TSHARK is not None
    done = subprocess.run(
        [TSHARK, "-n", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


CHECKS = ("-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE")


@needs_tshark
def test_tshark_finds_no_malformed_frame_or_warning_in_our_capture(capture):
    path, expected = capture
    assert _tshark("-r", str(path), *CHECKS).count("\n") == len(expected)  # it read every frame
    flagged = _tshark("-r", str(path), *CHECKS, "-Y", '_ws.malformed || _ws.expert.severity >= "warning"')
    assert flagged == ""


@needs_tshark
def test_tshark_flags_a_corrupted_checksum_so_its_silence_means_something(capture, tmp_path):
    path, _ = capture
    data = bytearray(path.read_bytes())
    data[24 + 2 * (16 + 60) + 16 + 14 + 28] ^= 1  # first UDP frame: a payload byte
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(bytes(data))
    flagged = _tshark("-r", str(bad), *CHECKS, "-Y", '_ws.malformed || _ws.expert.severity >= "warning"')
    assert flagged.count("\n") == 1 and "CHECKSUM" in flagged.upper()


@needs_tshark
def test_tshark_reads_the_fields_we_encoded(capture):
    path, expected = capture
    names = sorted({name for fields in expected for name in fields})
    out = _tshark("-r", str(path), *CHECKS, "-T", "fields", "-E", "separator=|", "-e", "frame.number",
                  *[arg for name in names for arg in ("-e", name)])
    rows = [line.split("|") for line in out.splitlines()]
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected):
        got = dict(zip(["frame.number", *names], row))
        for name, allowed in want.items():
            value = got[name]
            if name != "ip.opt.type":
                value = value.split(",")[0]  # an ICMP error shows the quoted header's fields after
            else:
                value = ",".join(v for v in value.split(",") if v != "0")  # tshark lists EOL too
            assert value in allowed, f"frame {got['frame.number']}: {name} = {value!r}, expected {allowed}"
