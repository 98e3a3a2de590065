"""Live against Linux: tcpsecure's acceptance rules probed on the kernel's own TCP, and the same
probes through threatlab's `TcpEndpoint`, as a differential table.

Topology: `lan(2, switch, adversary=same-lan)`. h1 (10.0.0.1) is the client, h2 (10.0.0.2) the
server, each a real TCP socket of the kernel in its own namespace; adv (10.0.0.200) sends the probes
through `threatlab.live.Injector` (interlocked, budgeted), spoofed from the client to the server.

Harness privilege, said plainly in every result: the adversary is *told* the connection's current
sequence numbers, read from a sniffer on the segment's bridge. The probes test the kernel's
acceptance rules (what it does with an in-window RST, an exact RST, ...), not blind guessing; how
long guessing takes is what the simulated threats measure.

Per probe class a fresh connection is made (so a probe that kills or desynchronises one cannot
touch the next, and each class starts with the kernel's per-socket challenge-ACK rate limit
unused): the client sends CLIENT_BYTES, the server SERVER_BYTES, the harness waits until both sides
have acknowledged everything, reads RCV.NXT / SND.UNA / SND.NXT of the server off the wire, sends
the probe, and watches for `observe` seconds: RSTs and pure ACKs the server sends, ECONNRESET or
bytes at the server socket, and the kernel's own counters (TcpExt TCPChallengeACK,
TCPACKSkippedChallenge in the server's namespace). Then the client sends a few bytes: the
connection survives if the server application reads exactly them.

The kernel negotiates timestamps, SACK and window scaling on these connections; the probes carry no
options, and Linux judges them anyway (PAWS only checks segments that carry a timestamp).

Entry points for the catalogue (`Threat.peers["linux"]`): `live_blind_rst`, `live_blind_syn`,
`live_blind_data_injection`, and `live_tcpsecure` (every class). Each returns a mapping the CLI
prints: summary fields and `rows`, a list of dicts that prints as a text table.
"""

from __future__ import annotations

import errno
import os
import platform
import socket
import struct
import textwrap
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from threatlab.errors import DecodeError, LiveError, LiveSafetyError, ParamError
from threatlab.tcp.config import TcpConfig
from threatlab.tcp.probes import (
    ALIVE,
    CLIENT_BYTES,
    PROBES,
    RFC793,
    RFC5961,
    SERVER_BYTES,
    Outcome,
    ProbeSpec,
    probe,
    replay,
)
from threatlab.tcp.wire import TcpFlags, TcpSegment, WindowScale

__all__ = [
    "HARNESS_NOTE",
    "LEGEND",
    "Details",
    "ProbeTable",
    "live_blind_data_injection",
    "live_blind_rst",
    "live_blind_syn",
    "live_tcpsecure",
    "run_probes",
]

HARNESS_NOTE = (
    "harness privilege: the adversary reads the connection's sequence numbers off the switch (a "
    "sniffer on the bridge); the probes test the kernel's acceptance rules, not blind guessing"
)
SERVER_PORT = 5001
MD5_KEY = b"threatlab-live-md5"
_M = 0xFFFFFFFF
_HALF = 0x80000000

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
ETH_P_ALL = 0x0003
TCP_MD5SIG = 14

# Kernel counters (TcpExt in /proc/net/netstat) read before and after every probe.
_COUNTERS = ("TCPChallengeACK", "TCPSYNChallenge", "TCPACKSkippedChallenge", "TCPMD5NotFound")

THREAT_PROBES: dict[str, tuple[str, ...]] = {
    "tcp.blind-rst": ("rst-in-window", "rst-exact", "rst-out-of-window", "rst-burst"),
    "tcp.blind-syn": ("syn-in-window", "syn-out-of-window"),
    "tcp.blind-data-injection": ("data-ack-ok", "data-ack-old", "data-ack-future"),
    "tcp.tcpsecure": tuple(p.name for p in PROBES),
}


def _gt(a: int, b: int) -> bool:
    return ((b - a) & _M) >= _HALF


# --------------------------------------------------------------------------------------------- sniffer


@dataclass(frozen=True, slots=True)
class _Seen:
    t: float  # time.monotonic()
    t_ns: int  # wall clock, for the pcap
    src_mac: bytes
    src_ip: bytes
    seg: TcpSegment


class _Sniffer:
    """Every IPv4/TCP frame crossing the segment's bridge, with its arrival time (harness only).

    An AF_PACKET socket in the fabric namespace on the bridge, which in promiscuous mode hands a
    copy of every frame it forwards to its own device.
    """

    def __init__(self, net: Any, segment: str) -> None:
        from threatlab.live import FABRIC

        bridge = net.bridge_of(segment)

        def open_socket() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            try:
                s.bind((bridge, 0))
                mreq = struct.pack("iHH8s", socket.if_nametoindex(bridge), PACKET_MR_PROMISC, 0, b"")
                s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
                s.settimeout(0.02)
            except OSError:
                s.close()
                raise
            return s

        try:
            self._sock = net.call_in(FABRIC, open_socket)
        except OSError as exc:
            raise LiveError(f"cannot sniff on bridge {bridge}: {exc.strerror}") from None
        net.on_close(self.stop)
        self.seen: list[_Seen] = []
        self.frames: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tcp-live-sniffer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        recv = self._sock.recv
        while not self._stop.is_set():
            try:
                frame = recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            t, t_ns = time.monotonic(), time.time_ns()
            if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
                continue
            ihl = (frame[14] & 0x0F) * 4
            total = int.from_bytes(frame[16:18], "big")
            try:
                seg = TcpSegment.decode(frame[14 + ihl : 14 + total], verify=False)
            except DecodeError:  # a frame we cannot read is not one of the connection's
                continue
            with self._lock:
                self.frames.append((t_ns, frame))
                self.seen.append(_Seen(t, t_ns, frame[6:12], frame[26:30], seg))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        self._sock.close()

    def flow(
        self, src_ip: bytes, sport: int, dport: int, since: float = 0.0, exclude_mac: bytes | None = None
    ) -> list[_Seen]:
        """Segments from `src_ip`:`sport` to port `dport`, seen at or after `since`."""
        with self._lock:
            seen = list(self.seen)
        return [
            s
            for s in seen
            if s.t >= since
            and s.src_ip == src_ip
            and s.seg.src_port == sport
            and s.seg.dst_port == dport
            and s.src_mac != exclude_mac
        ]


@dataclass(frozen=True, slots=True)
class _Tcb:
    """The server's TCB as the wire shows it once the connection is quiet."""

    rcv_nxt: int
    snd_una: int
    snd_nxt: int
    client_window: int  # raw window field of the client's last segment
    server_window: int  # bytes, the server's last advertised window, scaled


# --------------------------------------------------------------------------------------------- live run


@dataclass
class _LiveRun:
    net: Any
    injector: Any
    sniffer: _Sniffer
    listener: socket.socket
    md5: bool
    observe_s: float
    survive_s: float
    client_ip: str = "10.0.0.1"
    server_ip: str = "10.0.0.2"
    client_node: str = "h1"
    server_node: str = "h2"
    adv_node: str = "adv"
    ip_id: int = 0
    last_send_s: float = 0.0  # when the last probe frame left, seconds after the first
    stopped: str = ""  # why probing stopped early (a budget), "" while it goes on
    timeline: dict[str, list[float]] = field(default_factory=dict)
    tcbs: dict[str, _Tcb] = field(default_factory=dict)

    @property
    def client_ip_b(self) -> bytes:
        return socket.inet_aton(self.client_ip)

    @property
    def server_ip_b(self) -> bytes:
        return socket.inet_aton(self.server_ip)

    def counters(self) -> dict[str, int]:
        def read() -> dict[str, int]:
            # thread-self: this thread has joined the server's namespace, the process has not
            lines = Path("/proc/thread-self/net/netstat").read_text().splitlines()
            out: dict[str, int] = {}
            for head, vals in zip(lines[::2], lines[1::2]):
                if head.startswith("TcpExt:"):
                    out.update(zip(head.split()[1:], map(int, vals.split()[1:])))
            return out

        got = self.net.call_in(self.server_node, read)
        return {k: got.get(k, 0) for k in _COUNTERS}

    def connect(self) -> tuple[socket.socket, socket.socket, int]:
        """A fresh connection: (client socket, server socket, client port)."""
        client = self.net.socket(self.client_node, socket.AF_INET, socket.SOCK_STREAM)
        if self.md5:
            _set_md5(client, self.server_ip)
        client.settimeout(3.0)
        try:
            client.connect((self.server_ip, SERVER_PORT))
            server, _ = self.listener.accept()
        except OSError as exc:
            client.close()
            raise LiveError(f"the kernel TCP connection h1 -> h2 did not come up: {exc}") from None
        self.net.on_close(server.close)
        server.settimeout(3.0)
        return client, server, client.getsockname()[1]

    def exchange(self, client: socket.socket, server: socket.socket) -> None:
        client.sendall(b"c" * CLIENT_BYTES)
        _recv_exactly(server, CLIENT_BYTES)
        server.sendall(b"s" * SERVER_BYTES)
        _recv_exactly(client, SERVER_BYTES)

    def quiet_tcb(self, cport: int, timeout: float = 2.0) -> _Tcb:
        """Wait until the sniffer has seen the warm-up exchange and each side has acknowledged all
        the other sent; the server's TCB then."""
        deadline = time.monotonic() + timeout
        adv_mac = _mac(self.net.mac_of(self.adv_node, "eth0"))
        while True:
            c2s = [
                s.seg for s in self.sniffer.flow(self.client_ip_b, cport, SERVER_PORT, exclude_mac=adv_mac)
            ]
            s2c = [s.seg for s in self.sniffer.flow(self.server_ip_b, SERVER_PORT, cport)]
            if (
                sum(len(s.payload) for s in c2s) >= CLIENT_BYTES
                and sum(len(s.payload) for s in s2c) >= SERVER_BYTES
            ):
                c_nxt, s_nxt = _nxt(c2s), _nxt(s2c)
                s_ack = s2c[-1].ack
                c_ack = c2s[-1].ack
                if s_ack == c_nxt and c_ack == s_nxt and s2c[-1].flags & TcpFlags.ACK:
                    return _Tcb(c_nxt, c_ack, s_nxt, c2s[-1].window, s2c[-1].window << _wscale(c2s, s2c))
            if time.monotonic() > deadline:
                raise LiveError("the kernel connection did not go quiet: cannot read its sequence numbers")
            time.sleep(0.005)

    def run(self, spec: ProbeSpec) -> Outcome:
        if self.stopped:
            return Outcome(0, note=self.stopped)
        inj = self.injector
        if inj.remaining_packets < 1:
            self.stopped = "packet budget spent"
            return Outcome(0, note=self.stopped)
        if inj.elapsed + (spec.count - 1) * spec.interval_s >= inj.budget_seconds:
            self.stopped = "time budget spent"
            return Outcome(0, note=self.stopped)
        client, server, cport = self.connect()
        try:
            return self._probe(spec, client, server, cport)
        finally:
            for s in (client, server):
                s.close()

    def _probe(self, spec: ProbeSpec, client: socket.socket, server: socket.socket, cport: int) -> Outcome:
        from threatlab.live import build_tcp_frame

        self.exchange(client, server)
        tcb = self.quiet_tcb(cport)
        self.tcbs[spec.name] = tcb
        before = self.counters()
        adv_mac, srv_mac = self.net.mac_of(self.adv_node, "eth0"), self.net.mac_of(self.server_node, "eth0")
        count = min(spec.count, self.injector.remaining_packets)
        note = ""
        if count < spec.count:
            self.stopped = "packet budget spent"
            note = f"cut to {count} of {spec.count} by the packet budget"
        times: list[float] = []
        t_first = None
        for k in range(count):
            seq, ack = spec.numbers(k, tcb.rcv_nxt, tcb.snd_una, tcb.snd_nxt)
            self.ip_id = (self.ip_id + 1) & 0xFFFF
            frame = build_tcp_frame(
                adv_mac,
                srv_mac,
                self.client_ip,
                self.server_ip,
                cport,
                SERVER_PORT,
                seq,
                ack,
                spec.flags,
                tcb.client_window,
                spec.payload,
                ip_id=self.ip_id,
            )
            if t_first is not None:
                delay = t_first + k * spec.interval_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            now = time.monotonic()  # before the send: the kernel may answer before send() returns
            try:
                self.injector.send(frame)
            except LiveSafetyError as exc:  # BudgetExhausted included: the time budget ran out
                self.stopped = "time budget spent" if "time budget" in str(exc) else "packet budget spent"
                note = f"{self.stopped} after {k} of {spec.count}"
                break
            if t_first is None:
                t_first = now
            times.append(now - t_first)
            self.last_send_s = self.injector.elapsed
        if not times:
            return Outcome(0, note=note or self.stopped)
        self.timeline[spec.name] = times
        time.sleep(self.observe_s)
        assert t_first is not None
        reset, data = _drain(server)
        after = self.counters()
        delta = {k: after[k] - before[k] for k in _COUNTERS}
        replies = [s.seg for s in self.sniffer.flow(self.server_ip_b, SERVER_PORT, cport, since=t_first)]
        acks = sum(1 for s in replies if _pure_ack(s))
        rsts = sum(1 for s in replies if s.flags & TcpFlags.RST)
        survives: bool | None = None
        if not reset:
            survives = _alive(client, server, self.survive_s)
        notes = [note] if note else []
        if delta["TCPSYNChallenge"]:
            notes.append(f"TCPSYNChallenge +{delta['TCPSYNChallenge']}")
        if delta["TCPMD5NotFound"]:
            notes.append(f"TCPMD5NotFound +{delta['TCPMD5NotFound']}")
        return Outcome(
            sent=len(times),
            reset=reset,
            acks=acks,
            rsts=rsts,
            bytes_accepted=len(data),
            survives=survives,
            challenge_acks=delta["TCPChallengeACK"],
            suppressed=delta["TCPACKSkippedChallenge"],
            note="; ".join(notes),
        )


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _nxt(segs: list[TcpSegment]) -> int:
    best = None
    for s in segs:
        end = (s.seq + s.seg_len) & _M
        if best is None or _gt(end, best):
            best = end
    assert best is not None
    return best


def _wscale(c2s: list[TcpSegment], s2c: list[TcpSegment]) -> int:
    """The shift the server applies to the windows it advertises (RFC 7323: both SYNs must offer it)."""
    c_syn = next((s for s in c2s if s.flags & TcpFlags.SYN), None)
    s_syn = next((s for s in s2c if s.flags & TcpFlags.SYN), None)
    if c_syn is None or s_syn is None:
        return 0
    c_ws, s_ws = c_syn.option(WindowScale), s_syn.option(WindowScale)
    return s_ws.shift if c_ws is not None and s_ws is not None else 0


def _pure_ack(seg: TcpSegment) -> bool:
    return int(seg.flags) & 0x17 == 0x10 and not seg.payload  # ACK without SYN, RST, FIN or data


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise LiveError("the kernel connection closed during the warm-up exchange")
        buf += chunk
    return buf


def _drain(sock: socket.socket) -> tuple[bool, bytes]:
    """(reset, bytes waiting) at the server socket, without blocking."""
    data = b""
    timeout = sock.gettimeout()
    sock.setblocking(False)  # MSG_DONTWAIT alone still waits out a socket's timeout in Python
    try:
        while True:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                return False, data
            except OSError as exc:
                if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                    return True, data
                raise
            if not chunk:
                return False, data
            data += chunk
    finally:
        sock.settimeout(timeout)


def _alive(client: socket.socket, server: socket.socket, timeout: float) -> bool:
    """Does data from the client still reach the server application intact?"""
    try:
        client.send(ALIVE)
    except OSError:
        return False
    got = b""
    server.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while len(got) < len(ALIVE):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        server.settimeout(left)
        try:
            chunk = server.recv(65536)
        except TimeoutError:
            break
        except OSError:
            return False
        if not chunk:
            break
        got += chunk
    return got == ALIVE


def _set_md5(sock: socket.socket, peer_ip: str) -> None:
    """RFC 2385 on a kernel socket: sign to and require signatures from `peer_ip` (struct tcp_md5sig)."""
    addr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + socket.inet_aton(peer_ip)
    addr = addr.ljust(128, b"\x00")  # struct sockaddr_storage
    opt = addr + struct.pack("=BBHI", 0, 0, len(MD5_KEY), 0) + MD5_KEY.ljust(80, b"\x00")
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, opt)
    except OSError as exc:
        raise LiveError(f"this kernel refuses TCP_MD5SIG (RFC 2385): {exc.strerror}") from None


def _sysctl(net: Any, node: str, name: str) -> str:
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        return net.call_in(node, lambda: Path(path).read_text().strip())
    except OSError:
        return "?"


# --------------------------------------------------------------------------------------------- table


LEGEND = (
    "challenge ACK / ACK xN: the segment was dropped and N ACKs went back (challenge ACKs as the stack "
    "itself counted them; N held: challenge ACKs its throttle held back); desynced: the client's next "
    "bytes no longer reached the server application"
)
TABLE_WIDTH = 124  # `threatlab live` prints it below its summary table; fits a 160-column pipe with room


class ProbeTable(list):
    """The differential rows (dicts); JSON sees a list, `str()` a fixed-width text table with the
    reasons for each difference as numbered notes below it."""

    columns: tuple[tuple[str, str], ...] = ()  # (row key, title) in order
    optional: tuple[str, ...] = ()  # row keys left out of the text, in this order, until it fits
    footer: tuple[str, ...] = ()  # lines printed after the notes

    def __str__(self) -> str:
        # Every line starts and ends with a border character and all have one length, so the table
        # stays aligned even where it is printed right-justified (the CLI's value column).
        cols = list(self.columns or ((k, k) for k in (self[0] if self else {}) if k != "reason"))
        dropped = []
        for key in self.optional:
            if _grid_width(self, cols) <= TABLE_WIDTH:
                break
            dropped += [title for k, title in cols if k == key]
            cols = [c for c in cols if c[0] != key]
        cells = [[title for _, title in cols]] + [[str(r.get(k, "")) for k, _ in cols] for r in self]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
        lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        width = max(80, *(len(line) for line in lines))
        notes = [r["reason"] for r in self if r.get("reason")]
        extra = list(self.footer)
        if dropped:
            extra.append(f"not shown here (see --json): {', '.join(dropped)}")
        for i, note in enumerate(notes + [LEGEND] + extra):
            tag = f"[{i + 1}] " if i < len(notes) else ""
            lines += textwrap.wrap(tag + note, width, subsequent_indent=" " * len(tag))
        rule = "+-" + "-" * width + "-+"
        body = [f"| {line.ljust(width)} |" for line in lines]
        return "\n".join([rule, *body[:2], *body[2 : 2 + len(self)], rule, *body[2 + len(self) :], rule])


def _grid_width(rows: list[dict], cols: list[tuple[str, str]]) -> int:
    widths = [max([len(title)] + [len(str(r.get(k, ""))) for r in rows]) for k, title in cols]
    return sum(widths) + 3 * (len(widths) - 1)


class Details(dict):
    """Per-probe measurements (JSON: a dict); `str()` is a pointer to them, not a wall of numbers."""

    def __str__(self) -> str:
        return f"per-probe counters, send times and sequence numbers of {len(self)} probe classes: --json"


_REASONS = {
    "rst-burst": (
        "Linux throttles challenge ACKs per socket: one per net.ipv4.tcp_invalid_ratelimit ({ratelimit} ms; "
        "the host-wide net.ipv4.tcp_challenge_ack_limit is {limit}), so {n} RSTs over {span:.2f} s drew "
        "{linux} (the kernel held back {held}); the draft suggests at most 10 per 5 s, threatlab's "
        "challenge_ack_limit=(10, 5.0), which drew {ours}. With (1, {ratelimit_s:g}) threatlab draws {like}."
    ),
    "data-ack-future": (
        "this kernel discarded the ACK of unsent data without answering (RFC 793 3.9 only says "
        "discard); tcpsecure 4.2 / RFC 5961 5.2 send a challenge ACK for any SEG.ACK outside "
        "SND.UNA-MAX.SND.WND..SND.NXT."
    ),
}


def _reason(spec: ProbeSpec, linux: Outcome, ours: Outcome, ctx: Mapping[str, Any]) -> str:
    if linux.agrees_with(ours):
        return ""
    if linux.kind == "not run" or ours.kind == "not run":
        return ""  # the linux column says why
    template = _REASONS.get(spec.name)
    if spec.name == "rst-burst" and linux.kind == ours.kind == "ack":
        return template.format(**ctx, linux=linux.acks, ours=ours.acks, held=linux.suppressed)
    if spec.name == "data-ack-future" and linux.kind == "dropped" and ours.kind == "ack":
        return template
    return (
        f"{spec.name}: Linux {linux.label}; threatlab RFC 5961 {ours.label} (unexplained: see the counters)"
    )


# --------------------------------------------------------------------------------------------- entry points


def _param(params: Mapping[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = params.get(name, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ParamError(f"parameter {name}={value!r}: must be a number in [{lo:g}, {hi:g}]") from None
    if not lo <= value <= hi:
        raise ParamError(f"parameter {name}={value!r}: out of range [{lo:g}, {hi:g}]")
    return value


def _config_for(defenses: Iterable[str]) -> TcpConfig:
    d = set(defenses)
    return TcpConfig(
        rst_exact="rst-exact" in d,
        syn_challenge="syn-challenge" in d,
        ack_check="ack-check" in d,
        challenge_ack_limit=(10, 5.0) if "challenge-ack-limit" in d else None,
        port_randomization="port-randomization" in d,
        tcp_md5_key=MD5_KEY if "tcp-md5" in d else None,
    )


def run_probes(
    names: Iterable[str],
    params: Mapping[str, Any] | None = None,
    defenses: Iterable[str] = (),
    *,
    budget_packets: int,
    budget_seconds: float,
    threat: str = "tcp.tcpsecure",
    pcap: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run the named probe classes against Linux and against threatlab (RFC 5961 and RFC 793).

    `params` may hold `live_burst` (RSTs in the burst, default 20), `live_burst_interval_ms`
    (default 60), `live_observe_ms` (how long each probe is watched, default 200). `defenses`:
    "tcp-md5" signs the kernel connection with RFC 2385 (TCP_MD5SIG); any defenses add a column
    "threatlab +defenses" (a TcpConfig with exactly those) compared with Linux too. Every probe frame
    goes through an Injector with these budgets; probing stops cleanly when one is spent.
    """
    from threatlab.live import Injector, LiveNetwork
    from threatlab.net.build import lan
    from threatlab.net.topology import Position, SegmentKind

    params = dict(params or {})
    defenses = frozenset(defenses)
    burst = int(_param(params, "live_burst", 20, 1, 10_000))
    interval = _param(params, "live_burst_interval_ms", 60, 0, 10_000) / 1000
    observe = _param(params, "live_observe_ms", 200, 10, 10_000) / 1000
    specs = []
    for name in names:
        try:
            spec = probe(name)
        except KeyError:
            known = ", ".join(p.name for p in PROBES)
            raise ParamError(f"unknown probe class {name!r} (known: {known})") from None
        if spec.count > 1:
            spec = probe(name, count=burst, interval_s=interval)
            spec = replace(
                spec, title=f"{burst} RSTs, SEG.SEQ = RCV.NXT+{spec.seq_off}+k, {interval * 1000:g} ms apart"
            )
        specs.append(spec)
    md5 = "tcp-md5" in defenses

    started = time.monotonic()
    outcomes: dict[str, Outcome] = {}
    topo = lan(2, SegmentKind.SWITCH, adversary=Position.SAME_LAN)
    with LiveNetwork(topo) as net:
        ratelimit = _sysctl(net, "h2", "net.ipv4.tcp_invalid_ratelimit")
        ack_limit = _sysctl(net, "h2", "net.ipv4.tcp_challenge_ack_limit")
        sniffer = _Sniffer(net, "lan")
        listener = net.socket("h2", socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if md5:
            _set_md5(listener, "10.0.0.1")
        listener.bind(("10.0.0.2", SERVER_PORT))
        listener.listen(8)
        listener.settimeout(3.0)
        injector = Injector(net, "adv", "eth0", budget_packets=budget_packets, budget_seconds=budget_seconds)
        with injector as inj:
            run = _LiveRun(net, inj, sniffer, listener, md5, observe, 0.3)
            for spec in specs:
                outcomes[spec.name] = run.run(spec)
            injected = inj.sent
        sniffer.stop()
        if pcap is not None:
            from threatlab.net.pcap import PcapWriter

            with PcapWriter(pcap) as writer:
                for t_ns, frame in sniffer.frames:
                    writer.write(frame, t_ns)
        namespaces = [net.fabric_namespace] + [net.namespace(n.name) for n in topo.nodes]
        run_id = net.run_id
    live_seconds = time.monotonic() - started

    # The same probes in memory, at the same relative times.
    columns = [("rfc5961", RFC5961), ("rfc793", RFC793)]
    if defenses:
        columns.append(("defended", _config_for(defenses)))
    if md5:  # the kernel connection is signed: so are threatlab's
        columns = [(k, replace(c, tcp_md5_key=MD5_KEY)) for k, c in columns]
    rl_ms = int(ratelimit) if ratelimit.isdigit() else 500
    rows = ProbeTable()
    agree = differ = 0
    details = Details()
    for spec in specs:
        linux = outcomes[spec.name]
        times = run.timeline.get(spec.name)
        ours = {k: replay(spec, cfg, times_s=times, observe_s=observe) for k, cfg in columns}
        ctx = {
            "ratelimit": rl_ms,
            "ratelimit_s": rl_ms / 1000,
            "limit": "INT_MAX (off)" if ack_limit == "2147483647" else ack_limit,
            "n": linux.sent,
            "span": (times[-1] if times else 0.0),
            "like": replay(
                spec,
                replace(columns[0][1], challenge_ack_limit=(1, rl_ms / 1000)),
                times_s=times,
                observe_s=observe,
            ).acks
            if spec.count > 1
            else "",
        }
        ok = linux.agrees_with(ours["rfc5961"])
        if linux.kind != "not run":
            agree, differ = agree + ok, differ + (not ok)
        row = {
            "probe": spec.name,
            "segment": spec.title + (f" (sent {linux.sent})" if 0 < linux.sent < spec.count else ""),
            "linux": linux.label,
            "threatlab_rfc5961": ours["rfc5961"].label,
            "threatlab_rfc793": ours["rfc793"].label,
            "linux_vs_rfc5961": ("agree" if ok else "differ") if linux.kind != "not run" else "-",
            "reason": _reason(spec, linux, ours["rfc5961"], ctx),
        }
        if "defended" in ours:
            row["threatlab_defended"] = ours["defended"].label
            row["linux_vs_defended"] = "agree" if linux.agrees_with(ours["defended"]) else "differ"
        rows.append(row)
        details[spec.name] = {
            "linux": linux.as_dict(),
            **{f"threatlab_{k}": o.as_dict() for k, o in ours.items()},
            "send_times_s": [round(t, 4) for t in (times or [])],
            "tcb": _tcb_dict(run.tcbs.get(spec.name)),
        }
    signed = " +tcp-md5" if md5 else ""
    cols = [
        ("probe", "probe"),
        ("linux", "linux" + signed),
        ("threatlab_rfc5961", "threatlab RFC 5961" + signed),
        ("threatlab_rfc793", "threatlab RFC 793" + signed),
    ]
    if defenses:
        cols.append(("threatlab_defended", "threatlab +defenses"))
        rows.footer = (f"+defenses: threatlab's TcpConfig with exactly {', '.join(sorted(defenses))}",)
    cols.append(("linux_vs_rfc5961", "vs 5961" if defenses else "linux vs 5961"))
    if defenses:
        cols.append(("linux_vs_defended", "vs +def"))
    rows.columns = tuple(cols)
    rows.optional = ("threatlab_rfc793",)
    n_note = 0
    for row in rows:
        if row["reason"]:
            n_note += 1
            row["linux_vs_rfc5961"] += f" [{n_note}]"

    return {
        "threat": threat,
        "note": HARNESS_NOTE,
        "kernel": f"Linux {platform.release()}",
        "sysctls": f"tcp_invalid_ratelimit={ratelimit} ms, tcp_challenge_ack_limit={ack_limit}",
        "rfc5961_config": "rst_exact, syn_challenge, ack_check, challenge_ack_limit=(10, 5.0)",
        "verdict": _verdict(outcomes),
        "probes_run": sum(1 for o in outcomes.values() if o.sent),
        "agree": agree,
        "differ": differ,
        "frames_injected": injected,
        "budget": f"{injected} of {budget_packets} frames; the last {run.last_send_s:.2f} s after the first, "
        f"of {budget_seconds:g} s" + (f"; stopped: {run.stopped}" if run.stopped else ""),
        "seconds": round(live_seconds, 2),
        "run_id": run_id,
        "namespaces_removed": not any(os.path.exists(f"/run/netns/{n}") for n in namespaces),
        "rows": rows,
        "details": details,
    }


def _tcb_dict(tcb: _Tcb | None) -> dict[str, int] | None:
    if tcb is None:
        return None
    return {k: getattr(tcb, k) for k in ("rcv_nxt", "snd_una", "snd_nxt", "client_window", "server_window")}


def _verdict(out: Mapping[str, Outcome]) -> str:
    """One line on what the kernel's rules leave a blind attacker, from the probes that ran."""

    def kind(name: str) -> str:
        o = out.get(name)
        return o.kind if o is not None else "not run"

    parts = []
    if kind("rst-in-window") != "not run":
        text = "in-window RST " + ("RESETS" if kind("rst-in-window") == "reset" else "does not reset")
        if kind("rst-exact") == "reset":
            text += "; only SEG.SEQ == RCV.NXT does"
        parts.append(text)
    if kind("syn-in-window") != "not run":
        parts.append("in-window SYN " + ("RESETS" if kind("syn-in-window") == "reset" else "does not reset"))
    if kind("data-ack-old") != "not run":
        parts.append(
            "data with an old ACK IS ACCEPTED"
            if kind("data-ack-old") == "accepted"
            else "data needs SEG.ACK in SND.UNA-MAX.SND.WND..SND.NXT"
        )
    if kind("data-ack-ok") == "accepted":
        parts.append("data with the right SEQ and ACK is accepted")
    return "Linux: " + "; ".join(parts) if parts else "-"


def _run_threat(
    threat: str,
    params: Mapping[str, Any],
    defenses: Iterable[str],
    budget_packets: int,
    budget_seconds: float,
    pcap: str | None,
) -> dict[str, Any]:
    return run_probes(
        THREAT_PROBES[threat],
        params,
        defenses,
        budget_packets=budget_packets,
        budget_seconds=budget_seconds,
        threat=threat,
        pcap=pcap,
    )


def live_blind_rst(
    params: Mapping[str, Any],
    defenses: Iterable[str],
    *,
    budget_packets: int,
    budget_seconds: float,
    pcap: str | None = None,
) -> dict[str, Any]:
    """tcp.blind-rst against Linux: RST in window, exact, out of window, and a burst (throttling)."""
    return _run_threat("tcp.blind-rst", params, defenses, budget_packets, budget_seconds, pcap)


def live_blind_syn(
    params: Mapping[str, Any],
    defenses: Iterable[str],
    *,
    budget_packets: int,
    budget_seconds: float,
    pcap: str | None = None,
) -> dict[str, Any]:
    """tcp.blind-syn against Linux: SYN in and out of the window."""
    return _run_threat("tcp.blind-syn", params, defenses, budget_packets, budget_seconds, pcap)


def live_blind_data_injection(
    params: Mapping[str, Any],
    defenses: Iterable[str],
    *,
    budget_packets: int,
    budget_seconds: float,
    pcap: str | None = None,
) -> dict[str, Any]:
    """tcp.blind-data-injection against Linux: data with an acceptable, an old and a future ACK."""
    return _run_threat("tcp.blind-data-injection", params, defenses, budget_packets, budget_seconds, pcap)


def live_tcpsecure(
    params: Mapping[str, Any],
    defenses: Iterable[str],
    *,
    budget_packets: int,
    budget_seconds: float,
    pcap: str | None = None,
) -> dict[str, Any]:
    """Every probe class of the three threats in one run (about 4 s)."""
    return _run_threat("tcp.tcpsecure", params, defenses, budget_packets, budget_seconds, pcap)
