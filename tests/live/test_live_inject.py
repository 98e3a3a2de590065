"""The injector: frames leave only towards this run's addresses, within budgets, with right checksums."""

from __future__ import annotations

import subprocess
import time

import pytest
from live_helpers import lan

from threatlab.errors import LiveSafetyError
from threatlab.live import BudgetExhausted, Capture, Injector, LiveNetwork, build_tcp_frame
from threatlab.net.topology import Interface, Link, Node, Position, Segment, Topology, mac_for

pytestmark = pytest.mark.live

EVE, ALICE = mac_for(3), mac_for(1)


def tcp_to(dst_ip: str, dst_mac: str = ALICE, src_ip: str = "10.0.0.3", **kw) -> bytes:
    return build_tcp_frame(EVE, dst_mac, src_ip, dst_ip, 40000, 80, **kw)


def arp_request(target_ip: str) -> bytes:
    import ipaddress

    body = bytes.fromhex("0001080006040001") + bytes.fromhex(EVE.replace(":", ""))
    body += ipaddress.ip_address("10.0.0.3").packed + b"\x00" * 6 + ipaddress.ip_address(target_ip).packed
    return b"\xff" * 6 + bytes.fromhex(EVE.replace(":", "")) + b"\x08\x06" + body


def count_frames(tshark: str, path, display_filter: str = "") -> int:
    argv = [tshark, "-r", str(path), "-T", "fields", "-e", "frame.number"]
    if display_filter:
        argv += ["-Y", display_filter]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return len(out.split())


def test_frame_to_loopback_is_refused_and_nothing_is_sent(live, tshark, tmp_path):
    with LiveNetwork(lan()) as net:
        seg, at_eve = Capture(net, "lan", tmp_path / "seg.pcap"), Capture(net, "eve", tmp_path / "eve.pcap")
        with seg, at_eve, Injector(net, "eve", "eth0", budget_packets=10, budget_seconds=5) as inj:
            with pytest.raises(LiveSafetyError, match="127.0.0.2"):
                inj.send(tcp_to("127.0.0.2"))
            with pytest.raises(LiveSafetyError):
                inj.send_many([tcp_to("10.0.0.1"), tcp_to("127.0.0.2")])  # checked before the first
            with pytest.raises(LiveSafetyError):
                inj.inject_tcp_sweep(tcp_to("127.0.0.2"), 0, 1, 5)
            assert inj.sent == 0
    assert seg.captured == at_eve.captured == 0
    assert count_frames(tshark, tmp_path / "seg.pcap") == 0
    assert count_frames(tshark, tmp_path / "eve.pcap") == 0


@pytest.mark.parametrize(
    "frame",
    [
        tcp_to("192.0.2.1"),
        tcp_to("8.8.8.8"),
        tcp_to("0.0.0.0"),
        build_tcp_frame(EVE, ALICE, "fd00::3", "2001:db8::1", 1, 2),
        build_tcp_frame(EVE, ALICE, "fd00::3", "::1", 1, 2),
        arp_request("192.0.2.1"),
        b"\xff" * 6 + bytes(6) + b"\x88\xcc" + bytes(46),  # LLDP: nothing to check, refused by default
        b"\x00" * 10,
    ],
    ids=[
        "outside-v4",
        "public-v4",
        "unspecified",
        "outside-v6",
        "loopback-v6",
        "arp-outside",
        "lldp",
        "runt",
    ],
)
def test_outside_destinations_are_refused(live, frame):
    with LiveNetwork(lan()) as net, Injector(net, "eve", "eth0", 10, 5) as inj:
        with pytest.raises(LiveSafetyError, match="refused"):
            inj.send(frame)
        assert inj.sent == 0


def test_own_host_broadcast_and_registered_addresses_are_accepted(live, tshark, tmp_path):
    with LiveNetwork(lan(v6=True)) as net:
        cap, inj = Capture(net, "alice", tmp_path / "alice.pcap"), Injector(net, "eve", "eth0", 10, 5)
        with cap, inj:
            inj.send(tcp_to("10.0.0.1", flags="S"))
            inj.send(build_tcp_frame(EVE, ALICE, "fd00::3", "fd00::1", 40000, 80, flags="S"))
            inj.send(arp_request("10.0.0.1"))
            inj.send(tcp_to("10.0.0.255", dst_mac="ff:ff:ff:ff:ff:ff"))  # directed broadcast
            with pytest.raises(LiveSafetyError):
                inj.send(tcp_to("10.0.0.77"))
            net.allow("10.0.0.77")  # e.g. a lease a server handed out during the run
            inj.send(tcp_to("10.0.0.77"))
            assert inj.sent == 5
    # eve's own kernel answers alice too (RST for her SYN-ACKs, ARP replies): count only what was injected
    injected = "eth.src == 02:00:00:00:00:03 && (tcp.flags.syn == 1 || arp.opcode == 1)"
    assert count_frames(tshark, tmp_path / "alice.pcap", injected) == 5


def test_packet_budget_refuses_before_sending(live):
    with LiveNetwork(lan()) as net, Injector(net, "eve", "eth0", budget_packets=5, budget_seconds=5) as inj:
        frame = tcp_to("10.0.0.1")
        for _ in range(3):
            inj.send(frame)
        with pytest.raises(LiveSafetyError, match="packet budget"):
            inj.inject_tcp_sweep(frame, 0, 1, 3)  # 3 > the 2 left: nothing is sent
        assert inj.sent == 3
        inj.inject_tcp_sweep(frame, 0, 1, 2)
        with pytest.raises(LiveSafetyError, match="packet budget"):
            inj.send(frame)
        assert inj.sent == 5 and inj.remaining_packets == 0


def test_time_budget_stops_a_sweep(live):
    with LiveNetwork(lan()) as net, Injector(net, "eve", "eth0", 10**9, budget_seconds=0.3) as inj:
        with pytest.raises(BudgetExhausted) as info:
            inj.inject_tcp_sweep(tcp_to("10.0.0.1", flags="R"), 0, 1, 10**9)
        assert 0 < info.value.sent == inj.sent < 10**9
        assert inj.elapsed < 1.5
        with pytest.raises(LiveSafetyError, match="time budget"):
            inj.send(tcp_to("10.0.0.1"))


@pytest.mark.parametrize("method", ["ring", "sendmmsg", "send"])
def test_sweep_sends_every_sequence_number_with_valid_checksums(live, tshark, tmp_path, method):
    count, seq0, step = 3000, 0xFFFFF000, 977  # wraps around 2**32
    pcap = tmp_path / "sweep.pcap"
    with LiveNetwork(lan()) as net:
        cap, inj = Capture(net, "alice", pcap, filter="tcp port 80"), Injector(net, "eve", "eth0", count, 10)
        with cap, inj:
            template = tcp_to("10.0.0.1", flags="R", ip_id=65000)
            result = inj.inject_tcp_sweep(template, seq0, step, count, method=method)
        assert result.sent == count and cap.captured == count
    out = subprocess.run(
        [tshark, "-r", str(pcap), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
        + ["-T", "fields", "-e", "tcp.seq_raw", "-e", "ip.id"]
        + ["-e", "tcp.checksum.status", "-e", "ip.checksum.status"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    rows = [line.split("\t") for line in out if line]
    assert [int(r[0]) for r in rows] == [(seq0 + k * step) % 2**32 for k in range(count)]
    assert [int(r[1], 16) for r in rows] == [(65000 + k) % 2**16 for k in range(count)]
    assert {r[2] for r in rows} == {"1"} and {r[3] for r in rows} == {"1"}  # 1: good
    assert result.last_seq == (seq0 + (count - 1) * step) % 2**32


def test_a_shaped_adversary_link_drops_what_its_queue_cannot_take(live):
    slow = Link(rate_bps=1_000_000)
    topo = Topology(
        segments=(Segment("lan"),),
        nodes=(
            Node("alice", (Interface("eth0", "lan", ALICE, "10.0.0.1/24"),)),
            Node(
                "eve", (Interface("eth0", "lan", EVE, "10.0.0.3/24", link=slow),), adversary=Position.SAME_LAN
            ),
        ),
    )
    with LiveNetwork(topo) as net, Injector(net, "eve", "eth0", 3000, 5) as inj:
        rx0 = int(net.exec("alice", ["cat", "/sys/class/net/eth0/statistics/rx_packets"]).stdout)
        result = inj.inject_tcp_sweep(tcp_to("10.0.0.1", flags="R"), 0, 1, 3000)
        assert result.method == "sendmmsg"  # the ring would bypass the link's qdisc
        assert result.sent == 3000 and result.dropped_by_link > 2000
        time.sleep(0.3)  # what the token bucket queued drains at 1 Mbit/s
        rx = int(net.exec("alice", ["cat", "/sys/class/net/eth0/statistics/rx_packets"]).stdout) - rx0
        assert 0 < rx <= 3000 - result.dropped_by_link
