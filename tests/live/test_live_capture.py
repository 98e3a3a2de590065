"""Captures: pcaps of a node's interface or a whole segment that tshark reads without complaint."""

from __future__ import annotations

import subprocess

import pytest
from live_helpers import lan

from threatlab.errors import TopologyError
from threatlab.live import Capture, LiveNetwork, ping
from threatlab.net.topology import SegmentKind

pytestmark = pytest.mark.live


def tshark_fields(tshark: str, path, *fields: str, display_filter: str = "") -> list[list[str]]:
    argv = [tshark, "-r", str(path), "-T", "fields"] + [a for f in fields for a in ("-e", f)]
    if display_filter:
        argv += ["-Y", display_filter]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def assert_clean(tshark: str, path) -> None:
    proc = subprocess.run(
        [tshark, "-r", str(path), "-Y", '_ws.malformed || _ws.expert.severity >= "warning"'],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("kind", [SegmentKind.SWITCH, SegmentKind.HUB])
def test_segment_capture_sees_unicast_between_other_hosts(live, tshark, tmp_path, kind):
    pcap = tmp_path / "lan.pcap"
    with LiveNetwork(lan(kind, v6=True)) as net:
        with Capture(net, "lan", pcap) as cap:
            assert ping(net, "alice", "10.0.0.2", count=2) == 2
            assert ping(net, "alice", "fd00::2") == 1
        assert cap.captured and cap.dropped == 0
    assert_clean(tshark, pcap)
    rows = tshark_fields(tshark, pcap, "frame.protocols", "ip.src", "ip.dst", display_filter="icmp")
    assert all(r[0].startswith("eth:ethertype:ip:icmp") for r in rows)
    assert [(r[1], r[2]) for r in rows] == [("10.0.0.1", "10.0.0.2"), ("10.0.0.2", "10.0.0.1")] * 2
    assert len(tshark_fields(tshark, pcap, "frame.number", display_filter="icmpv6.type == 129")) == 1


def test_node_capture_with_filter(live, tshark, tmp_path):
    pcap = tmp_path / "bob.pcap"
    with LiveNetwork(lan()) as net, Capture(net, "bob", pcap, filter="icmp", ifname="eth0") as cap:
        assert ping(net, "alice", "10.0.0.2") == 1
    assert cap.captured == 2  # the request and the reply; the ARP exchange is filtered out
    assert_clean(tshark, pcap)
    assert len(tshark_fields(tshark, pcap, "frame.number", display_filter="arp")) == 0


def test_a_switch_keeps_unicast_from_a_third_port_and_a_hub_does_not(live, tshark, tmp_path):
    seen = {}
    for kind in (SegmentKind.SWITCH, SegmentKind.HUB):
        pcap = tmp_path / f"eve-{kind.value}.pcap"
        with LiveNetwork(lan(kind)) as net:
            assert ping(net, "alice", "10.0.0.2") == 1  # both MACs learned
            with Capture(net, "eve", pcap, filter="icmp"):
                assert ping(net, "alice", "10.0.0.2", count=3) == 3
        seen[kind] = len(tshark_fields(tshark, pcap, "frame.number"))
    assert seen == {SegmentKind.SWITCH: 0, SegmentKind.HUB: 6}


def test_capture_of_unknown_name_is_a_topology_error(live, tmp_path):
    with LiveNetwork(lan()) as net:
        with pytest.raises(TopologyError):
            Capture(net, "nobody", tmp_path / "x.pcap")
        with pytest.raises(TopologyError):
            Capture(net, "alice", tmp_path / "x.pcap", ifname="eth9")
