"""A topology built as namespaces behaves as the description says, and always goes away again."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from live_helpers import lan, routed, run_namespaces, tl_namespaces

from threatlab.errors import LiveError, NotRootError
from threatlab.live import FABRIC, Injector, LiveNetwork, cleanup_stale, ping
from threatlab.live import namespaces as ns_mod
from threatlab.net.topology import (
    Interface,
    Link,
    Node,
    NodeKind,
    Route,
    Segment,
    SegmentKind,
    Topology,
    mac_for,
)

pytestmark = pytest.mark.live


def test_two_hosts_on_a_switch_ping_each_other(live):
    with LiveNetwork(lan(v6=True)) as net:
        assert ping(net, "alice", "10.0.0.2") == 1
        assert ping(net, "bob", "10.0.0.1") == 1
        assert ping(net, "alice", "fd00::2") == 1
        assert ping(net, "bob", "fd00::1", count=2) == 2


def test_hub_floods_and_switch_learns(live):
    for kind, ageing in ((SegmentKind.HUB, "ageing_time 0 "), (SegmentKind.SWITCH, "ageing_time 30000 ")):
        with LiveNetwork(lan(kind)) as net:
            details = net.exec(FABRIC, ["ip", "-d", "link", "show", "s-lan"], check=True).stdout
            assert ageing in details
            assert ping(net, "alice", "10.0.0.2") == 1


def test_router_forwards_between_subnets_and_hosts_do_not(live):
    with LiveNetwork(routed()) as net:
        assert ping(net, "h1", "10.2.0.2") == 1
        assert ping(net, "h2", "10.1.0.2") == 1
        assert ping(net, "h1", "fd02::2") == 1

        def forwarding(node: str) -> str:
            return net.exec(node, ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip()

        assert forwarding("r") == "1"
        assert forwarding("h1") == forwarding("h2") == "0"


def test_a_process_runs_inside_its_namespace(live):
    with LiveNetwork(lan(v6=True)) as net:
        out = net.exec("alice", ["ip", "addr", "show"], check=True).stdout
        assert "10.0.0.1/24" in out and "fd00::1/64" in out and "02:00:00:00:00:01" in out
        assert "10.0.0.2" not in out
        assert "state UP" in net.exec("alice", ["ip", "link", "show", "lo"]).stdout or "LOOPBACK,UP" in out
        proc = net.run("bob", ["ip", "-br", "addr"], stdout=subprocess.PIPE, text=True)
        assert "10.0.0.2/24" in proc.communicate(timeout=10)[0]
        host = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True, check=True).stdout
        assert "10.0.0.1/24" not in host  # nothing landed in the host's namespace
        assert net.address_of("alice", "eth0") == "10.0.0.1"
        assert net.address_of("alice", "eth0", family=6) == "fd00::1"


def test_names_state_file_and_mtu(live):
    topo = Topology(
        segments=(Segment("lan"),),
        nodes=(
            Node("a", (Interface("eth0", "lan", mac_for(1), "10.0.0.1/24", link=Link(mtu=1280)),)),
            Node("b", (Interface("eth0", "lan", mac_for(2), "10.0.0.2/24", link=Link(mtu=1280)),)),
        ),
    )
    rid = secrets.token_hex(4)  # an eight-digit run id: the longest allowed
    with LiveNetwork(topo, run_id=rid) as net:
        assert set(tl_namespaces()) >= {f"tl-{rid}", f"tl-{rid}-a", f"tl-{rid}-b"}
        state = json.loads(net.state_file.read_text())
        assert state["pid"] == os.getpid()
        assert "mtu 1280" in net.exec("a", ["ip", "link", "show", "eth0"]).stdout
    assert not net.state_file.exists()
    assert not run_namespaces(rid)


def test_bridge_node_joins_its_two_segments(live):
    topo = Topology(
        segments=(Segment("west"), Segment("east")),
        nodes=(
            Node("a", (Interface("eth0", "west", mac_for(1), "10.0.0.1/24"),)),
            Node(
                "tap",
                (Interface("p0", "west", mac_for(2)), Interface("p1", "east", mac_for(3))),
                kind=NodeKind.BRIDGE,
            ),
            Node("b", (Interface("eth0", "east", mac_for(4), "10.0.0.2/24"),)),
        ),
    )
    with LiveNetwork(topo) as net:
        assert ping(net, "a", "10.0.0.2") == 1


def test_direct_pair_segment_has_no_bridge(live):
    topo = Topology(
        segments=(Segment("wire"),),
        nodes=(
            Node("a", (Interface("eth0", "wire", mac_for(1), "10.0.0.1/24"),)),
            Node("b", (Interface("eth0", "wire", mac_for(2), "10.0.0.2/24"),)),
        ),
    )
    with LiveNetwork(topo, direct_pairs=True) as net:
        assert net.is_direct("wire")
        assert "s-wire" not in net.exec(FABRIC, ["ip", "link"]).stdout
        assert ping(net, "a", "10.0.0.2") == 1


def test_nat_masquerades_inside_sources(live):
    topo = Topology(
        segments=(Segment("inside"), Segment("outside")),
        nodes=(
            Node(
                "client",
                (Interface("eth0", "inside", mac_for(1), "192.168.1.2/24"),),
                routes=(Route("0.0.0.0/0", "eth0", "192.168.1.1"),),
            ),
            Node(
                "nat",
                (
                    Interface("in0", "inside", mac_for(2), "192.168.1.1/24"),
                    Interface("out0", "outside", mac_for(3), "10.9.0.1/24"),
                ),
                kind=NodeKind.NAT,
                nat_outside="out0",
            ),
            Node("server", (Interface("eth0", "outside", mac_for(4), "10.9.0.2/24"),)),  # no route back
        ),
    )
    if not (ns_mod._tool("nft") or ns_mod._tool("iptables")):
        with pytest.raises(LiveError, match="nft"):
            LiveNetwork(topo).open()
        return
    with LiveNetwork(topo) as net:
        assert ping(net, "client", "10.9.0.2") == 1  # only answerable if the source was rewritten


def test_link_rate_uses_tbf_and_delay_needs_netem(live):
    def pair(link: Link) -> Topology:
        return Topology(
            segments=(Segment("lan"),),
            nodes=(
                Node("a", (Interface("eth0", "lan", mac_for(1), "10.0.0.1/24", link=link),)),
                Node("b", (Interface("eth0", "lan", mac_for(2), "10.0.0.2/24"),)),
            ),
        )

    with LiveNetwork(pair(Link(rate_bps=10_000_000))) as net:
        assert "tbf" in net.exec("a", ["tc", "qdisc", "show", "dev", "eth0"]).stdout
        assert "tbf" in net.exec(FABRIC, ["tc", "qdisc", "show", "dev", "a-0"]).stdout
        assert ping(net, "a", "10.0.0.2") == 1
    delayed = LiveNetwork(pair(Link(delay_ns=2_000_000)))
    try:
        with delayed as net:
            assert "netem" in net.exec("a", ["tc", "qdisc", "show", "dev", "eth0"]).stdout
    except LiveError as exc:  # this kernel has no sch_netem: say so, and leave nothing behind
        assert "netem" in str(exc)
    assert not run_namespaces(delayed.run_id)


def test_teardown_when_the_body_raises(live):
    with pytest.raises(RuntimeError, match="boom"), LiveNetwork(lan()) as net:
        proc = net.run("alice", ["sleep", "30"])
        inj = Injector(net, "eve", "eth0", 10, 5)  # its socket would keep eve's namespace alive
        raise RuntimeError("boom")
    assert proc.poll() is not None
    assert inj._sock.fileno() == -1
    assert not run_namespaces(net.run_id)


_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {helpers!r})
    from live_helpers import lan
    from threatlab.live import LiveNetwork
    with LiveNetwork(lan()) as net:
        sleeper = net.run("alice", ["sleep", "60"])
        print(net.run_id, sleeper.pid, flush=True)
        time.sleep(60)
    """
)


def _start_child() -> tuple[subprocess.Popen, str, int]:
    code = _CHILD.format(helpers=os.path.dirname(__file__))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    line = child.stdout.readline().split()
    assert line, "the child did not build its network"
    return child, line[0], int(line[1])


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_teardown_on_sigterm_and_sigint(live, sig):
    child, run_id, sleeper = _start_child()
    assert run_namespaces(run_id)
    child.send_signal(sig)
    code = child.wait(timeout=20)
    assert code == -sig  # SIGINT: KeyboardInterrupt, which Python turns into death by SIGINT
    assert not run_namespaces(run_id)
    assert not (ns_mod.STATE_DIR / f"{run_id}.json").exists()
    deadline = time.monotonic() + 5
    while not _gone(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(sleeper)


def test_sigkill_leftovers_are_removed_by_the_next_cleanup(live):
    child, run_id, sleeper = _start_child()
    child.kill()
    child.wait(timeout=10)
    mine = run_namespaces(run_id)
    assert len(mine) == 4  # fabric and three nodes survive a SIGKILL...
    removed = cleanup_stale()  # ...until the next run cleans up (LiveNetwork calls this first)
    assert set(mine) <= set(removed)
    assert not run_namespaces(run_id)
    deadline = time.monotonic() + 5
    while not _gone(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(sleeper)  # the process left running inside was killed too


def test_cleanup_keeps_namespaces_of_live_runs(live):
    with LiveNetwork(lan()) as net:
        assert not set(net.namespaces) & set(cleanup_stale())
        assert set(net.namespaces) <= set(tl_namespaces())


def test_not_root_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError) as info:
        LiveNetwork(lan()).open()
    assert "root" in str(info.value) and "\n" not in str(info.value)


def test_missing_ip_is_a_live_error(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(ns_mod, "_IP_CANDIDATES", ())
    monkeypatch.setattr(ns_mod.shutil, "which", lambda name: None)
    with pytest.raises(LiveError, match="`ip`"):
        LiveNetwork(lan()).open()
