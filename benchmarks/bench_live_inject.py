"""Raw TCP injection rate into a veth pair: threatlab's injector against hping3 --flood, same run.

    python -m benchmarks.bench_live_inject [--seconds 5] [--max-packets 20000000]
                                           [--methods ring,sendmmsg,send]

Two namespaces joined by one veth pair (a `LiveNetwork` with direct_pairs=True). Each contender sends
TCP RST segments (54-byte frames) from `tx` to a closed port of `rx` for the same wall-clock window;
RSTs to a closed port are dropped silently, so nothing comes back. threatlab's sweep changes the
sequence number (and IPv4 id, both checksums updated) with every frame; hping3 sends its own. The rate
is the receiver's rx_packets delta (read from /sys inside its namespace) over the window; the sender's
tx_packets is reported too. Needs root. Every loop is bounded in packets and time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Self

from threatlab.errors import LiveError
from threatlab.live import BudgetExhausted, Injector, LiveNetwork, build_tcp_frame
from threatlab.net.topology import Interface, Node, Segment, Topology, mac_for

TX_MAC, RX_MAC = mac_for(1), mac_for(2)
TX_IP, RX_IP = "10.77.0.1", "10.77.0.2"
DPORT = 9  # discard: nothing listens


def topology() -> Topology:
    return Topology(
        segments=(Segment("wire"),),
        nodes=(
            Node("tx", (Interface("eth0", "wire", TX_MAC, f"{TX_IP}/24"),)),
            Node("rx", (Interface("eth0", "wire", RX_MAC, f"{RX_IP}/24"),)),
        ),
        name="bench-inject",
    )


def counter(net: LiveNetwork, node: str, name: str) -> int:
    out = net.exec(node, ["cat", f"/sys/class/net/eth0/statistics/{name}"], check=True).stdout
    return int(out)


class Window:
    """rx packets at the receiver and tx packets at the sender over one measured window."""

    def __init__(self, net: LiveNetwork) -> None:
        self.net = net

    def __enter__(self) -> Self:
        self.rx0, self.tx0 = counter(self.net, "rx", "rx_packets"), counter(self.net, "tx", "tx_packets")
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.rx = counter(self.net, "rx", "rx_packets") - self.rx0
        self.tx = counter(self.net, "tx", "tx_packets") - self.tx0

    @property
    def rx_pps(self) -> float:
        return self.rx / self.seconds

    @property
    def tx_pps(self) -> float:
        return self.tx / self.seconds


def run_threatlab(net: LiveNetwork, method: str, seconds: float, max_packets: int) -> Window:
    template = build_tcp_frame(TX_MAC, RX_MAC, TX_IP, RX_IP, 40000, DPORT, 0, 0, "R")
    with Injector(net, "tx", "eth0", budget_packets=max_packets, budget_seconds=seconds) as inj:
        with Window(net) as win:
            try:  # the time budget ends the sweep: BudgetExhausted is the expected way out
                inj.inject_tcp_sweep(template, 0x10000000, 65535, max_packets, method=method)
            except BudgetExhausted:
                pass
        win.sent = inj.sent
    return win


def run_hping3(net: LiveNetwork, seconds: float) -> Window:
    hping3 = shutil.which("hping3") or "/usr/sbin/hping3"
    argv = [hping3, "--flood", "-q", "-R", "-p", str(DPORT), "-s", "40000", RX_IP]
    with Window(net) as win:
        proc = net.run("tx", argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    return win


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_live_inject", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--seconds", type=float, default=5.0, help="window per contender (default 5)")
    ap.add_argument("--max-packets", type=int, default=20_000_000, help="packet bound per contender")
    ap.add_argument(
        "--methods", default="ring", help="threatlab send methods, comma separated: ring,sendmmsg,send"
    )
    args = ap.parse_args(argv)
    if not 0 < args.seconds <= 60 or not 0 < args.max_packets <= 10**9:
        print(
            "bench_live_inject: --seconds must be in (0, 60] and --max-packets in (0, 1e9]", file=sys.stderr
        )
        return 2
    if os.geteuid() != 0:
        print("bench_live_inject: needs root (network namespaces and raw sockets)", file=sys.stderr)
        return 2
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows = []
    try:
        with LiveNetwork(topology(), direct_pairs=True) as net:
            for method in methods:
                window = run_threatlab(net, method, args.seconds, args.max_packets)
                rows.append((f"threatlab {method}", window))
            rows.append(("hping3 --flood", run_hping3(net, args.seconds)))
    except LiveError as exc:
        print(f"bench_live_inject: {exc}", file=sys.stderr)
        return 1
    print(f"TCP RST frames (54 B) into a veth pair, {args.seconds:g} s each, {os.cpu_count()} CPUs")
    print(f"{'contender':<20} {'rx packets':>12} {'rx pkt/s':>12} {'tx pkt/s':>12} {'seconds':>8}")
    for name, w in rows:
        print(f"{name:<20} {w.rx:>12,} {w.rx_pps:>12,.0f} {w.tx_pps:>12,.0f} {w.seconds:>8.2f}")
    hping = rows[-1][1].rx_pps
    for name, w in rows[:-1]:
        print(f"{name} / hping3: {w.rx_pps / hping:.2f}x" if hping else f"{name}: hping3 delivered nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
