"""Acceptance-rule probes of draft-ietf-tcpm-tcpsecure-01 (RFC 5961), and their replay in memory.

A probe is one spoofed segment (or a burst of them) that claims to come from the client of an
established connection and is aimed at the server, its sequence and acknowledgment numbers placed
*relative* to the server's current RCV.NXT, SND.UNA and SND.NXT: an in-window RST, the exact RST, a
SYN, data with an acceptable, an old or a future ACK. The same probes run against the Linux kernel
(`threatlab.tcp.live`) and here against threatlab's own `TcpEndpoint` in virtual time, so the two
can be set side by side as a differential table.

What each stack did is an `Outcome`, classified the same way for both: the connection was reset,
data was accepted (bytes the server application read), an ACK went back and the segment was
dropped (a challenge ACK under RFC 5961), or the segment was dropped without a word.

Nothing here does I/O: `replay()` drives two endpoints through an in-memory wire.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from threatlab.tcp._state import State
from threatlab.tcp.config import TcpConfig
from threatlab.tcp.endpoint import TcpEndpoint
from threatlab.tcp.events import ConnectionReset, DataReceived
from threatlab.tcp.wire import TcpFlags, TcpSegment

__all__ = [
    "CLIENT_BYTES",
    "PROBES",
    "RFC793",
    "RFC5961",
    "SERVER_BYTES",
    "Outcome",
    "ProbeSpec",
    "probe",
    "probe_segment",
    "replay",
]

_M = 0xFFFFFFFF
NS = 1_000_000_000

# What the client and the server exchange before a probe, so that RCV.NXT and SND.UNA have moved on
# from the initial sequence numbers; the same amounts live and in memory.
CLIENT_BYTES = 120
SERVER_BYTES = 240
PROBE_PAYLOAD = b"INJECTED-by-adv!"  # 16 bytes a successful injection hands to the server app
ALIVE = b"alive?"  # the client's check, after a probe, that the connection still carries data

IN_WINDOW = 1000  # bytes beyond RCV.NXT: inside any window Linux or threatlab advertises here
FAR = 1 << 30  # far outside any window, and still within 2**31 (so "after", not "before")
FUTURE = 1 << 20  # an ACK this far beyond SND.NXT acknowledges data never sent

# The two threatlab configurations compared with Linux.
RFC5961 = TcpConfig(rst_exact=True, syn_challenge=True, ack_check=True, challenge_ack_limit=(10, 5.0))
RFC793 = TcpConfig()


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One class of probe: flags, and where its numbers lie relative to the victim's TCB."""

    name: str
    title: str
    threat: str  # the catalogue id whose acceptance rule it tests
    section: str  # tcpsecure section
    flags: str  # letters of FSRPAUEC, as `build_tcp_frame` takes them
    seq_off: int  # SEG.SEQ = RCV.NXT + seq_off
    ack_base: str | None = None  # "snd_una" or "snd_nxt": SEG.ACK = that + ack_off; None: no ACK
    ack_off: int = 0
    payload: bytes = b""
    count: int = 1  # > 1: a burst, the k-th segment at SEG.SEQ + k
    interval_s: float = 0.0  # between the segments of a burst

    @property
    def tcp_flags(self) -> TcpFlags:
        bits = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}
        return TcpFlags(sum(bits[c] for c in set(self.flags)))

    def numbers(self, k: int, rcv_nxt: int, snd_una: int, snd_nxt: int) -> tuple[int, int]:
        """(SEG.SEQ, SEG.ACK) of the k-th segment against a TCB with these variables."""
        seq = (rcv_nxt + self.seq_off + k) & _M
        if self.ack_base is None:
            return seq, 0
        base = snd_una if self.ack_base == "snd_una" else snd_nxt
        return seq, (base + self.ack_off) & _M


def probe(name: str, count: int | None = None, interval_s: float | None = None) -> ProbeSpec:
    """The probe class `name`; a burst's count and spacing can be changed."""
    for p in PROBES:
        if p.name == name:
            if count is None and interval_s is None:
                return p
            return ProbeSpec(
                p.name,
                p.title,
                p.threat,
                p.section,
                p.flags,
                p.seq_off,
                p.ack_base,
                p.ack_off,
                p.payload,
                p.count if count is None else count,
                p.interval_s if interval_s is None else interval_s,
            )
    raise KeyError(name)


PROBES: tuple[ProbeSpec, ...] = (
    ProbeSpec("rst-in-window", f"RST, SEG.SEQ = RCV.NXT+{IN_WINDOW}", "tcp.blind-rst", "2.2", "R", IN_WINDOW),
    ProbeSpec("rst-exact", "RST, SEG.SEQ = RCV.NXT", "tcp.blind-rst", "2.2", "R", 0),
    ProbeSpec("rst-out-of-window", "RST, SEG.SEQ = RCV.NXT+2^30", "tcp.blind-rst", "2.2", "R", FAR),
    ProbeSpec("syn-in-window", f"SYN, SEG.SEQ = RCV.NXT+{IN_WINDOW}", "tcp.blind-syn", "3.2", "S", IN_WINDOW),
    ProbeSpec("syn-out-of-window", "SYN, SEG.SEQ = RCV.NXT+2^30", "tcp.blind-syn", "3.2", "S", FAR),
    ProbeSpec(
        "data-ack-ok",
        "16 B at RCV.NXT, SEG.ACK = SND.UNA",
        "tcp.blind-data-injection",
        "4.2",
        "PA",
        0,
        "snd_una",
        0,
        PROBE_PAYLOAD,
    ),
    ProbeSpec(
        "data-ack-old",
        "16 B at RCV.NXT, SEG.ACK = SND.UNA-2^30",
        "tcp.blind-data-injection",
        "4.2",
        "PA",
        0,
        "snd_una",
        -FAR,
        PROBE_PAYLOAD,
    ),
    ProbeSpec(
        "data-ack-future",
        "16 B at RCV.NXT, SEG.ACK = SND.NXT+2^20",
        "tcp.blind-data-injection",
        "4.2",
        "PA",
        0,
        "snd_nxt",
        FUTURE,
        PROBE_PAYLOAD,
    ),
    # 60 ms apart: no RST lands within 20 ms of a multiple of Linux's 500 ms rate-limit interval
    ProbeSpec(
        "rst-burst",
        f"20 RSTs, SEG.SEQ = RCV.NXT+{IN_WINDOW}+k, 60 ms apart",
        "tcp.blind-rst",
        "2.2",
        "R",
        IN_WINDOW,
        count=20,
        interval_s=0.06,
    ),
)


def probe_segment(
    spec: ProbeSpec, k: int, sport: int, dport: int, rcv_nxt: int, snd_una: int, snd_nxt: int, window: int
) -> TcpSegment:
    """The k-th segment of `spec` from `sport` (the client) to `dport` (the server)."""
    seq, ack = spec.numbers(k, rcv_nxt, snd_una, snd_nxt)
    return TcpSegment(sport, dport, seq, ack, spec.tcp_flags, window, payload=spec.payload)


# --------------------------------------------------------------------------------------------- outcome


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one stack did with one probe class, seen from the wire and the server application."""

    sent: int  # probe segments that went out (0: not run)
    reset: bool = False  # the server's connection was torn down (ECONNRESET / ConnectionReset)
    acks: int = 0  # pure ACKs the server sent to the client while the probe was observed
    rsts: int = 0  # RSTs the server sent
    bytes_accepted: int = 0  # probe bytes the server application read
    survives: bool | None = None  # afterwards, the client's data still reached the server intact
    challenge_acks: int | None = None  # challenge ACKs as the stack itself counted them
    suppressed: int | None = None  # challenge ACKs the stack's throttle held back
    note: str = ""  # why it was not run, or what else the stack reported

    @property
    def kind(self) -> str:
        """ "not run", "reset", "accepted", "ack" (an ACK went back, the segment was dropped) or
        "dropped" (nothing went back)."""
        if self.sent == 0:
            return "not run"
        if self.reset:
            return "reset"
        if self.bytes_accepted:
            return "accepted"
        if self.acks:
            return "ack"
        return "dropped"

    @property
    def label(self) -> str:
        kind = self.kind
        if kind == "not run":
            return "not run" + (f" ({self.note})" if self.note else "")
        if kind == "reset":
            return "reset" + (", RST sent" if self.rsts else "")
        if kind == "accepted":
            return f"accepted {self.bytes_accepted} B" + (", desynced" if self.survives is False else "")
        if kind == "ack":
            what = "challenge ACK" if self.challenge_acks else "ACK"
            text = f"{what} x{self.acks}"  # the segment itself was dropped
            if self.suppressed:
                text += f" ({self.suppressed} held)"  # held back by the stack's throttle
            return text + ("" if self.survives is not False else ", conn. broken")
        return "dropped silently" + ("" if self.survives is not False else ", conn. broken")

    def agrees_with(self, other: Outcome) -> bool:
        """Same kind of reaction (and, for ACKs, as many of them); both must have run."""
        if self.kind == "not run" or other.kind == "not run" or self.kind != other.kind:
            return False
        return self.kind != "ack" or self.acks == other.acks

    def as_dict(self) -> dict[str, object]:
        return {
            "outcome": self.kind,
            "label": self.label,
            "sent": self.sent,
            "reset": self.reset,
            "acks": self.acks,
            "rsts": self.rsts,
            "bytes_accepted": self.bytes_accepted,
            "survives": self.survives,
            "challenge_acks": self.challenge_acks,
            "suppressed": self.suppressed,
            "note": self.note,
        }


# --------------------------------------------------------------------------------------------- replay

CLIENT = (IPv4Address("10.0.0.1"), 40000)
SERVER = (IPv4Address("10.0.0.2"), 5001)


@dataclass(slots=True)
class _Wire:
    """Client and server endpoints joined by an in-memory wire with a fixed one-way delay."""

    client: TcpEndpoint
    server: TcpEndpoint
    delay_ns: int
    now: int = 0
    heap: list[tuple[int, int, str, bytes]] = field(default_factory=list)
    n: int = 0
    server_out: list[tuple[int, TcpSegment]] = field(default_factory=list)
    server_events: list[tuple[int, object]] = field(default_factory=list)

    def collect(self) -> None:
        for name, ep in (("c", self.client), ("s", self.server)):
            for out in ep.segments_to_send(self.now):
                if name == "s":
                    self.server_out.append((self.now, out.segment))
                heapq.heappush(
                    self.heap, (self.now + self.delay_ns, self.n, "s" if name == "c" else "c", out.encode())
                )
                self.n += 1
        self.server_events += [(self.now, ev) for ev in self.server.events()]
        self.client.events()

    def run(self, until: int) -> None:
        """Deliver segments and fire timers up to virtual time `until` (an ACK war stops there)."""
        while True:
            self.collect()
            times = [t for t in (self.client.next_timer(), self.server.next_timer()) if t is not None]
            if self.heap:
                times.append(self.heap[0][0])
            t = min(times, default=None)
            if t is None or t > until:
                self.now = max(self.now, until)
                return
            self.now = max(self.now, t)
            while self.heap and self.heap[0][0] <= self.now:
                _, _, dst, raw = heapq.heappop(self.heap)
                if dst == "s":
                    self.server.receive(raw, self.now, CLIENT[0])
                else:
                    self.client.receive(raw, self.now, SERVER[0])
                self.collect()
            for ep in (self.client, self.server):
                nt = ep.next_timer()
                if nt is not None and nt <= self.now:
                    ep.handle_timer(self.now)

    def inject(self, seg: TcpSegment) -> None:
        self.server.receive(seg.encode(CLIENT[0], SERVER[0]), self.now, CLIENT[0])
        self.collect()

    def delivered(self, since: int) -> bytes:
        events = self.server_events
        return b"".join(ev.data for t, ev in events if t >= since and isinstance(ev, DataReceived))


def replay(
    spec: ProbeSpec,
    config: TcpConfig,
    *,
    times_s: Sequence[float] | None = None,
    observe_s: float = 0.2,
    survive_s: float = 0.3,
    seed: int = 1,
    delay_ns: int = 50_000,
) -> Outcome:
    """Run `spec` against a `TcpEndpoint` server with `config` (its client has the same config).

    As live: the client connects, sends CLIENT_BYTES, the server SERVER_BYTES; then the probe
    segments arrive at the server at `times_s` (seconds after the first; default: the spec's
    spacing) with numbers relative to its TCB at that moment; after `observe_s` more, the client
    sends ALIVE and the connection survives if the server delivers exactly that within `survive_s`.
    """
    rng = random.Random(seed)
    client = TcpEndpoint(config, random.Random(rng.getrandbits(32)), CLIENT, SERVER)
    server = TcpEndpoint(config, random.Random(rng.getrandbits(32)), SERVER)
    w = _Wire(client, server, delay_ns)
    server.listen()
    client.connect(0)
    w.run(NS // 10)
    if server.state is not State.ESTABLISHED:
        raise RuntimeError("replay: the in-memory handshake did not complete")
    client.send(b"c" * CLIENT_BYTES, w.now)
    w.run(w.now + NS // 10)
    server.send(b"s" * SERVER_BYTES, w.now)
    w.run(w.now + NS // 10)

    if times_s is None:
        times_s = [k * spec.interval_s for k in range(spec.count)]
    rcv_nxt, snd_una, snd_nxt = server.rcv_nxt, server.snd_una, server.snd_nxt
    window = min(client.rcv_wnd >> client.rcv_wscale, 0xFFFF)
    t0 = w.now
    out_before = len(w.server_out)
    ca0, sup0 = server.counters.challenge_acks_sent, server.counters.challenge_acks_suppressed
    for k, ts in enumerate(times_s):
        w.run(t0 + round(ts * NS))
        w.inject(probe_segment(spec, k, CLIENT[1], SERVER[1], rcv_nxt, snd_una, snd_nxt, window))
    w.run(w.now + round(observe_s * NS))
    replies = [seg for _, seg in w.server_out[out_before:]]
    acks = sum(1 for s in replies if s.flags == TcpFlags.ACK and not s.payload)
    rsts = sum(1 for s in replies if s.flags & TcpFlags.RST)
    reset = any(isinstance(ev, ConnectionReset) for t, ev in w.server_events if t >= t0)
    data = w.delivered(t0)
    survives: bool | None = None
    if not reset and client.state is State.ESTABLISHED:
        t1 = w.now
        client.send(ALIVE, w.now)
        w.run(w.now + round(survive_s * NS))
        survives = w.delivered(t1) == ALIVE and server.state is State.ESTABLISHED
    elif not reset:
        survives = False
    return Outcome(
        sent=len(times_s),
        reset=reset,
        acks=acks,
        rsts=rsts,
        bytes_accepted=len(data),
        survives=survives,
        challenge_acks=server.counters.challenge_acks_sent - ca0,
        suppressed=server.counters.challenge_acks_suppressed - sup0,
    )
