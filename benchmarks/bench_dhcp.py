"""Sustained DHCP four-message exchanges per second: `threatlab serve dhcp` against dnsmasq and Kea.

    python -m benchmarks.bench_dhcp [--seconds 10] [--max-exchanges 50000] [--window 64] [--quiet]
                                    [--servers threatlab,threatlab-normal,dnsmasq,dnsmasq-tmpfs,kea] [--unicast]

Two namespaces joined by one veth pair (a `LiveNetwork` with direct_pairs=True): `srv` (10.77.0.1/16)
runs each server in turn, `gen` runs the load generator, in this process: one packet socket, many
distinct clients (chaddr 02:<tag>:<4-byte index>, one per exchange, also the frame's source MAC),
pipelined with a window of outstanding transactions. A transaction is DISCOVER -> OFFER -> REQUEST
(server id and requested address from the OFFER) -> ACK; one that sees no reply for --timeout s is
counted lost and replaced by a new client (never retransmitted). Each run is bounded by
--max-exchanges and --seconds; the pool (10.77.0.10-10.77.255.250, 65521 addresses) holds every
client of a run. Clients set the broadcast bit, so every server broadcasts its replies. Without it
(--unicast) a reply goes unicast to the client's chaddr, as RFC 2131 4.1 says for a client without
an address: threatlab and Kea send a raw frame, but dnsmasq puts each chaddr into the kernel's ARP
cache and sends through its UDP socket; that cache is one table for all namespaces, capped by the
host's gc_thresh3 (1024 by default, settable only in the host's own namespace), and once full it
refuses new entries while the old ones are fresh: dnsmasq logs "ARP-cache injection failed: No
buffer space available" and stalls after about a thousand new clients.

Every server persists its leases and logs each DHCP event to a file (none with --quiet), and is
stopped with SIGTERM after its run; the leases found on disk afterwards are counted. Columns:
exch/s over the run; 2nd half/s, the rate over its second half (it falls where leases get dearer
as they accumulate); lost and nak; p50/p99 ms from DISCOVER sent to ACK received; cpu s, the
server's CPU seconds during the run, and gen cpu, the load generator's (on a machine of few cores
shared with other work, CPU per exchange is steadier than the rate); on disk, bound leases in the
server's lease file after SIGTERM, without the readiness probe's. Options that make them comparable:
- threatlab: `serve dhcp --sync full` (SQLite WAL, fsync per commit; the messages that arrived while
  the last commit ran are handled in one transaction, and replies leave only after their commit),
  and `--sync normal` (no fsync: survives a crash of the process, not of the machine). Offers are
  persisted as well as bound leases (2 writes per exchange).
- dnsmasq 2.90: `no-ping` (by default it pings an address before offering it, for seconds, rate
  limited, which no other server here does), `dhcp-lease-max` above the pool (default 1000),
  `dhcp-authoritative`, `port=0` (no DNS); its lease file is rewritten whole and fsync'ed on every
  change (so the cost of a lease grows with the number of leases); offers are not persisted, so
  clients that DISCOVER at the same time may be offered one address, and all but the first to
  REQUEST it get a NAK ("address in use"): the `nak` column. `dnsmasq-tmpfs` is the same with its
  lease file on tmpfs (/dev/shm), where fsync costs nothing.
- Kea 2.2: raw sockets, memfile with `persist: true` and `lfc-interval: 0` (no lease file cleanup
  during the run), single-threaded (Kea 2.2's default); its CSV is appended without fsync
  (survives a crash of the process, not of the machine); offers are not persisted.
Needs root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from threatlab.dhcp import peers
from threatlab.dhcp.wire import (
    BOOTREQUEST,
    BROADCAST_FLAG,
    CLIENT_PORT,
    SERVER_PORT,
    DhcpMessage,
    DhcpMessageType,
    MessageType,
    ParameterRequestList,
    RequestedIpAddress,
    ServerIdentifier,
)
from threatlab.errors import LiveError
from threatlab.live import LiveNetwork
from threatlab.net.topology import Interface, Node, Segment, Topology, mac_for
from threatlab.net.wire import ETH_P_IP, IPPROTO_UDP, UDP, Ethernet, IPv4

SERVER_IP = "10.77.0.1"
PREFIX = 16
POOL_FIRST, POOL_LAST = "10.77.0.10", "10.77.255.250"
POOL_SIZE = int(IPv4Address(POOL_LAST)) - int(IPv4Address(POOL_FIRST)) + 1
LEASE_TIME = 3600
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
_OFFER, _ACK, _NAK = MessageType.OFFER.value, MessageType.ACK.value, MessageType.NAK.value
# frame offsets: Ethernet 14 + IPv4 20 + UDP 8 = 42 bytes before the DHCP message
_DHCP = 42
_XID = slice(_DHCP + 4, _DHCP + 8)
_YIADDR = slice(_DHCP + 16, _DHCP + 20)
_CHADDR = slice(_DHCP + 28, _DHCP + 34)
_SRC_MAC = slice(6, 12)
_UDP_CSUM = slice(40, 42)
_OPTIONS = _DHCP + 240


def topology() -> Topology:
    return Topology(
        segments=(Segment("wire"),),
        nodes=(
            Node("srv", (Interface("eth0", "wire", mac_for(1), f"{SERVER_IP}/{PREFIX}"),)),
            Node("gen", (Interface("eth0", "wire", mac_for(2)),)),
        ),
        name="bench-dhcp",
    )


# --------------------------------------------------------------------------- the load generator


def _frame(payload: bytes, src_mac: bytes) -> bytearray:
    """A client's broadcast from 0.0.0.0:68; the UDP checksum is left 0 (none, allowed over IPv4)
    so that patching the xid, chaddr and requested address needs no checksum."""
    src, dst = IPv4Address(0), IPv4Address("255.255.255.255")
    udp = bytearray(UDP(CLIENT_PORT, SERVER_PORT, payload).encode(src, dst))
    udp[6:8] = b"\0\0"
    ip = IPv4(src, dst, IPPROTO_UDP, bytes(udp)).encode()
    frame = bytearray(Ethernet(b"\xff" * 6, src_mac, ETH_P_IP, ip).encode())
    assert frame[_UDP_CSUM] == b"\0\0"
    return frame


def _message_type(frame: bytes) -> int | None:
    """Option 53 of a DHCP message in a frame (no overload: every server here puts it in options)."""
    i, n = _OPTIONS, len(frame)
    while i < n:
        code = frame[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= n:
            return None
        if code == 53:
            return frame[i + 2]
        i += 2 + frame[i + 1]
    return None


@dataclass
class LoadResult:
    completed: int = 0
    started: int = 0
    lost: int = 0
    naks: int = 0
    seconds: float = 0.0
    second_half_rate: float = 0.0
    latencies: list[float] | None = None
    server_cpu: float = 0.0  # CPU seconds the server used during the run
    generator_cpu: float = 0.0  # CPU seconds this load generator used

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def latency(self, q: float) -> float:
        lat = sorted(self.latencies or [0.0])
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000


class LoadGenerator:
    """Clients on a packet socket in `gen`: pipelined DISCOVER/OFFER/REQUEST/ACK exchanges."""

    def __init__(self, net: LiveNetwork, broadcast_flag: bool) -> None:
        sock = net.socket("gen", socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # not our own frames (Linux >= 4.20)
        except OSError:
            pass
        sock.bind(("eth0", ETH_P_IP))
        self.sock = sock
        flags = BROADCAST_FLAG if broadcast_flag else 0
        prl = ParameterRequestList((1, 3, 6, 51, 54))
        chaddr = bytes(16)
        discover = DhcpMessage(op=BOOTREQUEST, xid=0, flags=flags, chaddr=chaddr,
                               options=(DhcpMessageType(MessageType.DISCOVER), prl)).encode()
        request = DhcpMessage(op=BOOTREQUEST, xid=0, flags=flags, chaddr=chaddr, options=(
            DhcpMessageType(MessageType.REQUEST), ServerIdentifier(IPv4Address(SERVER_IP)),
            RequestedIpAddress(IPv4Address("0.0.0.0")), prl)).encode()
        self.discover = _frame(discover, bytes(6))
        self.request = _frame(request, bytes(6))
        at = bytes(self.request).find(bytes((50, 4, 0, 0, 0, 0)), _OPTIONS)
        assert at > 0
        self._requested = slice(at + 2, at + 6)

    def _send(self, template: bytearray, xid: int, mac: bytes, requested: bytes | None = None) -> None:
        f = template[:]
        f[_SRC_MAC] = mac
        f[_XID] = xid.to_bytes(4, "big")
        f[_CHADDR] = mac
        if requested is not None:
            f[self._requested] = requested
        self.sock.send(f)

    def drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(4096)
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)

    def run(self, tag: int, max_exchanges: int, seconds: float, window: int, timeout: float,
            cpu: Callable[[], float] = lambda: 0.0) -> LoadResult:
        """Exchanges of clients 02:<tag>:<i> until `max_exchanges` completed or `seconds` passed."""
        sock, res = self.sock, LoadResult(latencies=[])
        sock.settimeout(0.02)
        pending: dict[int, list] = {}  # xid -> [mac, started at, offered?]
        base = (tag & 0xFF) << 24
        recv, now = sock.recv, time.perf_counter
        half_at: float | None = None
        half_count = 0
        cpu0, gen0 = cpu(), time.process_time()
        t0 = now()
        deadline = t0 + seconds
        last_sweep = t0
        i = 0
        while True:
            t = now()
            if res.completed >= max_exchanges or t >= deadline:
                break  # what is still pending at the deadline is neither counted nor lost
            while len(pending) < window and res.completed + len(pending) < max_exchanges:
                i += 1
                xid = base | i
                mac = bytes((0x02, tag & 0xFF)) + i.to_bytes(4, "big")
                pending[xid] = [mac, t, False]
                self._send(self.discover, xid, mac)
                res.started += 1
            try:
                frame = recv(2048)
            except TimeoutError:
                frame = None
            t = now()
            if frame is not None and len(frame) > _OPTIONS and frame[23] == IPPROTO_UDP \
                    and frame[36:38] == b"\x00\x44" and frame[_DHCP] == 2:
                xid = int.from_bytes(frame[_XID], "big")
                tr = pending.get(xid)
                if tr is not None:
                    mtype = _message_type(frame)
                    if mtype == _OFFER and not tr[2]:
                        tr[2] = True
                        self._send(self.request, xid, tr[0], frame[_YIADDR])
                    elif mtype == _ACK and tr[2]:
                        del pending[xid]
                        res.completed += 1
                        res.latencies.append(t - tr[1])
                        if half_at is None and t >= t0 + seconds / 2:
                            half_at, half_count = t, res.completed
                    elif mtype == _NAK:
                        del pending[xid]
                        res.naks += 1
            if t - last_sweep > 0.1:
                last_sweep = t
                for xid in [x for x, tr in pending.items() if t - tr[1] > timeout]:
                    del pending[xid]
                    res.lost += 1
        end = min(now(), deadline)
        res.server_cpu = cpu() - cpu0
        res.generator_cpu = time.process_time() - gen0
        res.seconds = end - t0
        if half_at is not None and end > half_at:
            res.second_half_rate = (res.completed - half_count) / (end - half_at)
        return res

    def probe(self, tag: int, timeout: float) -> bool:
        """One exchange, tried until the server answers or `timeout` passes (is it up yet?)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run(tag, 1, 1.0, 1, 1.0).completed == 1:
                return True
        return False


# --------------------------------------------------------------------------- the servers


def _cpu_of(pid: int) -> Callable[[], float]:
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    return cpu


@dataclass
class Contender:
    name: str
    binary: str | None  # None: always available
    start: Callable[[LiveNetwork, Path, bool], subprocess.Popen]  # (net, its directory, quiet)
    leases_on_disk: Callable[[Path], int]
    guarantee: str
    tmpfs: bool = False  # its directory (lease file, log) on tmpfs: fsync costs nothing there


def _threatlab(sync: str) -> Callable[[LiveNetwork, Path, bool], subprocess.Popen]:
    def start(net: LiveNetwork, d: Path, quiet: bool) -> subprocess.Popen:
        return peers.start_threatlab(net, "srv", d, iface="eth0", first=POOL_FIRST, last=POOL_LAST,
                                     lease_time=LEASE_TIME, sync=sync, quiet=quiet)
    return start


def _threatlab_leases(d: Path) -> int:
    return len(peers.threatlab_leases(d / "leases.sqlite"))


def _dnsmasq(net: LiveNetwork, d: Path, quiet: bool) -> subprocess.Popen:
    return peers.start_dnsmasq(net, "srv", d, iface="eth0", first=POOL_FIRST, last=POOL_LAST,
                               netmask="255.255.0.0", lease_time=LEASE_TIME, lease_max=POOL_SIZE + 10,
                               ping=False, quiet=quiet)


def _dnsmasq_leases(d: Path) -> int:
    return len(peers.dnsmasq_leases(d))


def _kea(net: LiveNetwork, d: Path, quiet: bool) -> subprocess.Popen:
    return peers.start_kea(net, "srv", d, iface="eth0", subnet=f"10.77.0.0/{PREFIX}", first=POOL_FIRST,
                           last=POOL_LAST, lease_time=LEASE_TIME, quiet=quiet)


def _kea_leases(d: Path) -> int:
    """Kea's CSV is append-only: the last row of an address wins; count those valid."""
    return len(peers.kea_leases(d))


CONTENDERS = {
    "threatlab": Contender("threatlab (sync full)", None, _threatlab("full"), _threatlab_leases,
                           "fsync before the reply"),
    "threatlab-normal": Contender("threatlab (sync normal)", None, _threatlab("normal"), _threatlab_leases,
                                  "write before the reply, no fsync"),
    "dnsmasq": Contender("dnsmasq 2.90", "dnsmasq", _dnsmasq, _dnsmasq_leases,
                         "whole file rewritten + fsync per change"),
    "dnsmasq-tmpfs": Contender("dnsmasq 2.90 (tmpfs)", "dnsmasq", _dnsmasq, _dnsmasq_leases,
                               "as dnsmasq, but on tmpfs: no disk", tmpfs=True),
    "kea": Contender("Kea 2.2 (memfile)", "kea-dhcp4", _kea, _kea_leases, "CSV append, no fsync"),
}


@dataclass
class Row:
    contender: Contender
    result: LoadResult | None
    leases: int = 0
    note: str = ""


def run_one(net: LiveNetwork, gen: LoadGenerator, c: Contender, tag: int, d: Path, args) -> Row:
    d.mkdir(parents=True, exist_ok=True)
    proc = c.start(net, d, args.quiet)
    try:
        if not gen.probe(tag=0xFF - tag, timeout=20):
            return Row(c, None, note=f"did not answer within 20 s (exit {proc.poll()})")
        gen.drain()
        res = gen.run(tag, args.max_exchanges, args.seconds, args.window, args.timeout, cpu=_cpu_of(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    leases = c.leases_on_disk(d)
    note = "" if code == 0 else f"exit {code} on SIGTERM"
    return Row(c, res, leases - 1, note)  # the probe's lease is not the run's


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_dhcp", description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="load window per server (default 10)")
    ap.add_argument("--max-exchanges", type=int, default=50_000, help="exchange bound per server (default 50000)")
    ap.add_argument("--window", type=int, default=64, help="outstanding transactions (default 64)")
    ap.add_argument("--timeout", type=float, default=2.0, help="s without a reply before a transaction is lost")
    ap.add_argument("--servers", default=",".join(CONTENDERS), help=f"some of {', '.join(CONTENDERS)}")
    ap.add_argument("--unicast", action="store_true",
                    help="clients leave the broadcast bit clear, so replies go unicast to chaddr (dnsmasq "
                         "then stalls once the kernel's ARP cache is full: see above)")
    ap.add_argument("--quiet", action="store_true",
                    help="servers log no lease events (threatlab --quiet, dnsmasq quiet-dhcp, Kea WARN)")
    ap.add_argument("--keep", metavar="DIR", help="keep each server's lease file and log under DIR")
    args = ap.parse_args(argv)
    if not (0 < args.seconds <= 120 and 0 < args.max_exchanges < POOL_SIZE and 1 <= args.window <= 4096
            and 0 < args.timeout <= 30):
        print(f"bench_dhcp: need 0 < --seconds <= 120, 0 < --max-exchanges < {POOL_SIZE} (the pool), "
              "1 <= --window <= 4096, 0 < --timeout <= 30", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        print(f"bench_dhcp: unknown server(s) {', '.join(unknown)}; known: {', '.join(CONTENDERS)}",
              file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench_dhcp: needs root (network namespaces, raw sockets, port 67)", file=sys.stderr)
        return 2
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-dhcp-") as tmp:
        top = Path(args.keep) if args.keep else Path(tmp)
        try:
            with LiveNetwork(topology(), direct_pairs=True) as net:
                gen = LoadGenerator(net, broadcast_flag=not args.unicast)
                for tag, name in enumerate(names, start=1):
                    c = CONTENDERS[name]
                    if c.binary is not None and shutil.which(c.binary) is None:
                        rows.append(Row(c, None, note=f"{c.binary} not installed"))
                        continue
                    if c.tmpfs:
                        with tempfile.TemporaryDirectory(prefix="bench-dhcp-", dir="/dev/shm") as shm:
                            rows.append(run_one(net, gen, c, tag, Path(shm) / name, args))
                    else:
                        rows.append(run_one(net, gen, c, tag, top / name, args))
                    print(f"  {c.name}: done", file=sys.stderr, flush=True)
        except LiveError as exc:
            print(f"bench_dhcp: {exc}", file=sys.stderr)
            return 1
    bcast = "no broadcast bit: replies unicast to chaddr" if args.unicast else "broadcast bit set"
    print(f"DHCPv4 DISCOVER/OFFER/REQUEST/ACK exchanges, one veth pair, {os.cpu_count()} CPUs; per server: "
          f"<= {args.seconds:g} s, <= {args.max_exchanges} exchanges, window {args.window}, {bcast}")
    print("options: dnsmasq no-ping, dhcp-lease-max above the pool; Kea raw socket, memfile persist, "
          "lfc-interval 0, single-threaded; " + ("servers log no lease events (threatlab --quiet, dnsmasq "
          "quiet-dhcp, Kea severity WARN)" if args.quiet else "every server logs each lease event to a file"))
    head = (f"{'server':<24} {'exch/s':>8} {'2nd half/s':>10} {'done':>7} {'lost':>5} {'nak':>4} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'cpu s':>6} {'gen cpu':>7} {'on disk':>7}  durability")
    print(head)
    for r in rows:
        if r.result is None:
            print(f"{r.contender.name:<24} {'-':>8}  {r.note}")
            continue
        x = r.result
        print(f"{r.contender.name:<24} {x.rate:>8,.0f} {x.second_half_rate:>10,.0f} {x.completed:>7} "
              f"{x.lost:>5} {x.naks:>4} {x.latency(0.5):>7.2f} {x.latency(0.99):>7.2f} {x.server_cpu:>6.2f} "
              f"{x.generator_cpu:>7.2f} {r.leases:>7}  {r.contender.guarantee}" + (f"; {r.note}" if r.note else ""))
    base = next((r for r in rows if r.contender.binary == "dnsmasq" and r.result), None)
    if base is not None and base.result.rate:
        for r in rows:
            if r.result is not None and r is not base:
                print(f"{r.contender.name} / dnsmasq: {r.result.rate / base.result.rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
