"""Topologies and helpers shared by the live tests (imported as a plain module)."""

from __future__ import annotations

import subprocess

from threatlab.net.topology import (
    Interface,
    Node,
    NodeKind,
    Position,
    Route,
    Segment,
    SegmentKind,
    Topology,
    mac_for,
)


def run_namespaces(run_id: str) -> list[str]:
    """The namespaces of one run that exist now."""
    return [n for n in tl_namespaces() if n == f"tl-{run_id}" or n.startswith(f"tl-{run_id}-")]


def tl_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("tl-")]


def lan(kind: SegmentKind = SegmentKind.SWITCH, v6: bool = False) -> Topology:
    """alice and bob on one segment, and eve, an adversary on the same LAN."""

    def host(name: str, i: int, adversary: Position | None = None) -> Node:
        iface = Interface("eth0", "lan", mac_for(i), f"10.0.0.{i}/24", f"fd00::{i}/64" if v6 else None)
        return Node(name, (iface,), adversary=adversary)

    return Topology(
        segments=(Segment("lan", kind),),
        nodes=(host("alice", 1), host("bob", 2), host("eve", 3, Position.SAME_LAN)),
        name="lan",
    )


def routed() -> Topology:
    """h1 (10.1.0.0/24, fd01::/64) -- r -- h2 (10.2.0.0/24, fd02::/64)."""
    return Topology(
        segments=(Segment("left"), Segment("right")),
        nodes=(
            Node(
                "h1",
                (Interface("eth0", "left", mac_for(1), "10.1.0.2/24", "fd01::2/64"),),
                routes=(Route("0.0.0.0/0", "eth0", "10.1.0.1"), Route("::/0", "eth0", "fd01::1")),
            ),
            Node(
                "r",
                (
                    Interface("eth0", "left", mac_for(2), "10.1.0.1/24", "fd01::1/64"),
                    Interface("eth1", "right", mac_for(3), "10.2.0.1/24", "fd02::1/64"),
                ),
                kind=NodeKind.ROUTER,
            ),
            Node(
                "h2",
                (Interface("eth0", "right", mac_for(4), "10.2.0.2/24", "fd02::2/64"),),
                routes=(Route("0.0.0.0/0", "eth0", "10.2.0.1"), Route("::/0", "eth0", "fd02::1")),
            ),
        ),
        name="routed",
    )
