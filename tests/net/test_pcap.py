"""pcap traces: format, what a capture holds, byte-identical reruns, and a clean bill from tshark."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from threatlab.net import Link, Position, SegmentKind, Simulator, build, lan, natted
from threatlab.net.pcap import PCAP_NS_MAGIC, PcapWriter, read_pcap
from threatlab.net.sim import NS_PER_MS, NS_PER_S


def test_writer_emits_a_nanosecond_ethernet_pcap(tmp_path):
    path = tmp_path / "t.pcap"
    with PcapWriter(path) as w:
        w.write(b"\xff" * 60, 3 * NS_PER_S + 7)
    data = path.read_bytes()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, linktype) == (PCAP_NS_MAGIC, 2, 4, 1)
    assert struct.unpack_from("<IIII", data, 24) == (3, 7, 60, 60)
    assert read_pcap(path) == [(3 * NS_PER_S + 7, b"\xff" * 60)]


def test_capture_of_one_segment_holds_the_frames_crossing_it(tmp_path):
    sim = Simulator()
    net = build(lan(3), sim)
    w = net.capture(tmp_path / "lan.pcap", segment="lan")
    net.node("h1").ping(net.node("h2").ip)
    sim.run()
    net.close()
    assert w.closed and len(read_pcap(tmp_path / "lan.pcap")) == 4


def test_capture_of_all_segments_records_each_frame_once_even_through_a_bridge(tmp_path):
    sim = Simulator()
    net = build(lan(2, adversary=Position.ON_PATH, link=Link(delay_ns=1000)), sim)
    net.capture(tmp_path / "all.pcap")
    net.node("h1").ping(net.node("h2").ip)
    sim.run()
    net.close()
    frames = read_pcap(tmp_path / "all.pcap")
    assert len(frames) == 4 and len({f for _, f in frames}) == 4
    assert [t for t, _ in frames] == sorted(t for t, _ in frames)


def _mixed_run(path, seed, loss=0.0):
    """ARP, ping, a UDP exchange, fragments, ICMP errors and NAT traffic, in one trace."""
    sim = Simulator(seed)
    topo = natted(2, link=Link(delay_ns=2000, loss=loss), outside_link=Link(delay_ns=5000, mtu=1000))
    net = build(topo, sim)
    net.capture(path)
    h1, h2, srv = net.node("h1"), net.node("h2"), net.node("srv")
    echo = srv.udp_socket(7)
    echo.on_datagram = lambda data, addr, dst: echo.sendto(data, addr)
    client = h1.udp_socket()  # a random ephemeral port: the seed shows in the bytes
    at = sim.schedule
    at(0, h1.ping, srv.ip, 1)
    at(1 * NS_PER_MS, client.sendto, b"hello", (srv.ip, 7))
    at(2 * NS_PER_MS, client.sendto, bytes(range(256)) * 12, (srv.ip, 7))  # fragmented both ways
    at(3 * NS_PER_MS, client.sendto, b"closed", (srv.ip, 9))  # port unreachable through the NAT
    at(4 * NS_PER_MS, h2.send_udp, 5555, srv.ip, 7, b"ttl 1", None, 1)  # time exceeded from the NAT
    at(5 * NS_PER_MS, h2.send_udp, 5556, srv.ip, 7, bytes(1200), None, 64, True)  # DF: frag needed
    at(6 * NS_PER_MS, h2.ping, srv.ip, 2)
    at(7 * NS_PER_MS, h1.send_ip, "203.0.113.99", 17, b"")  # ARP that nobody answers
    for i in range(20):
        at(8 * NS_PER_MS + i * NS_PER_MS, client.sendto, bytes([i]) * 40, (srv.ip, 7))
    sim.run()
    net.close()
    return net


def test_same_seed_gives_a_byte_identical_pcap(tmp_path):
    a, b, c = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap"
    _mixed_run(a, seed=11, loss=0.1)
    _mixed_run(b, seed=11, loss=0.1)
    _mixed_run(c, seed=12, loss=0.1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_same_seed_same_counters():
    runs = [_mixed_run(__import__("io").BytesIO(), seed=5, loss=0.2) for _ in range(2)]
    assert runs[0].drops() == runs[1].drops()
    assert dict(runs[0].node("nat").stats) == dict(runs[1].node("nat").stats)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_finds_nothing_malformed_or_worth_a_warning(tmp_path):
    path = tmp_path / "mixed.pcap"
    net = _mixed_run(path, seed=1)
    assert net.node("nat").stats["nat-inbound"] > 0 and net.node("srv").stats["reassembled"] > 0
    base = ["tshark", "-n", "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"]
    listing = subprocess.run(base, capture_output=True, text=True, check=True).stdout
    for expected in ("ARP", "Echo (ping) reply", "Fragmented IP protocol", "Port unreachable",
                     "Time to live exceeded", "Fragmentation needed", "203.0.113.1 "):
        assert expected in listing, expected
    flagged = subprocess.run(
        base + ["-Y", '_ws.malformed || _ws.expert.severity >= "warning"'],
        capture_output=True, text=True, check=True,
    ).stdout
    assert flagged == ""


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_virtual_nanosecond_timestamps(tmp_path):
    path = tmp_path / "t.pcap"
    sim = Simulator()
    net = build(lan(2, SegmentKind.HUB, link=Link(delay_ns=1234)), sim)
    net.capture(path)
    net.node("h1").ping(net.node("h2").ip)
    sim.run()
    net.close()
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0.000000000", "0.000002468", "0.000004936", "0.000007404"]


def test_scapy_recomputes_the_same_ip_udp_and_icmp_checksums(tmp_path):
    scapy = pytest.importorskip("scapy.all")
    path = tmp_path / "mixed.pcap"
    _mixed_run(path, seed=2)
    packets = scapy.rdpcap(str(path))
    checked = 0
    for pkt in packets:
        if not pkt.haslayer(scapy.IP):
            assert pkt.haslayer(scapy.ARP)
            continue
        raw = bytes(pkt[scapy.IP])[: pkt[scapy.IP].len]
        rebuilt = scapy.IP(raw)
        del rebuilt.chksum
        whole = rebuilt.flags.MF == 0 and rebuilt.frag == 0
        if whole and rebuilt.haslayer(scapy.UDP) and not rebuilt.haslayer(scapy.UDPerror):
            del rebuilt[scapy.UDP].chksum
        if whole and rebuilt.haslayer(scapy.ICMP):
            del rebuilt[scapy.ICMP].chksum
        assert bytes(rebuilt) == raw, pkt.summary()
        checked += 1
    assert checked > 40
