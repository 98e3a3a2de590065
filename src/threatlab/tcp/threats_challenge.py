"""Catalogue entries for the challenge-ACK, corner-case and middlebox threats of tcpsecure (sections
2.2, 3.2, 5.2, 5.3, 6.1, 6.2) and the challenge-ACK side channel (CVE-2016-5696).

Each run function plays one trial: it builds a simulated network, puts `TcpStack`s on its hosts,
opens real connections through it, lets the adversary (or the path, or the middlebox) act on the
frames, and reads the measurements off the endpoints' counters, the hosts' sniffers and the
adversary's own log. No formula stands in for a run; the `expected` functions give what the draft
(or a short derivation in their docstrings) predicts, for the tests and the report to compare.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from functools import cache
from typing import Any

from threatlab.lab.catalogue import SUCCESS_RATE, Defense, Metric, Param, Source, Threat
from threatlab.net.build import Network, build, lan
from threatlab.net.sim import NS_PER_MS, NS_PER_S, Simulator
from threatlab.net.topology import Link, Position
from threatlab.tcp._state import State
from threatlab.tcp.challenge_attacks import (
    CounterSideChannel,
    ForcedIsnRandom,
    PathFaults,
    ResettingMiddlebox,
    SideChannelResult,
    SpoofedFlood,
    bump,
    parse_tcp_frame,
    static_arp,
    triangle,
)
from threatlab.tcp.config import TcpConfig
from threatlab.tcp.events import ConnectionEstablished, ConnectionReset, ConnectionTimedOut, Event
from threatlab.tcp.stack import Connection, TcpStack
from threatlab.tcp.wire import TcpFlags, TcpSegment

__all__ = ["CHALLENGE_THREATS"]

DRAFT = "draft-ietf-tcpm-tcpsecure-01"
SEED_FILE = "001_8fae148b6f71f2f2.txt"
_M = 0xFFFFFFFF
_SERVER_PORT = 80
_GBIT = 1_000_000_000


def _source(section: str) -> Source:
    return Source(seed_file=SEED_FILE, section=section, draft=DRAFT)


# --- shared pieces -----------------------------------------------------------------------------------

_D_RST_EXACT = Defense("rst-exact", "tcpsecure 2.2: reset only on SEG.SEQ == RCV.NXT; other in-window RSTs "
                                    "get a challenge ACK")
_D_SYN_CHALLENGE = Defense("syn-challenge", "tcpsecure 3.2: a SYN in a synchronized state gets a challenge "
                                            "ACK, never a reset")


def _d_limit(where: str) -> Defense:
    return Defense("challenge-ack-limit", f"tcpsecure 2.2: at most limit_count challenge ACKs per limit_interval "
                                          f"seconds (the draft suggests 10 per 5 s) {where}")


def _limit_params() -> tuple[Param, ...]:
    return (
        Param("limit_count", "ACKs", 10, "challenge-ack-limit: challenge ACKs allowed per interval", min=0, max=100000),
        Param("limit_interval", "s", 5.0, "challenge-ack-limit: the interval", min=0.001, max=3600),
    )


def _limit(params: Mapping[str, Any], defenses: frozenset[str]) -> tuple[int, float] | None:
    if "challenge-ack-limit" not in defenses:
        return None
    return (int(params["limit_count"]), float(params["limit_interval"]))


def _new_sim(rng: random.Random) -> Simulator:
    return Simulator(rng.getrandbits(63))


def _open(net: Network, pcap: str | None) -> None:
    if pcap is not None:
        net.capture(pcap)


def _aggregate(trials: list[Mapping[str, Any]]) -> dict[str, float]:
    """success_rate, and NAME_mean of every numeric measurement over the trials that have it (a
    measurement a trial could not take, such as a time to an event that never came, is None)."""
    n = len(trials)
    out: dict[str, float] = {"success_rate": sum(1 for t in trials if t["success"]) / n if n else 0.0}
    keys: list[str] = []
    for t in trials:
        keys.extend(k for k in t if k != "success" and k not in keys)
    for key in keys:
        vals = [t[key] for t in trials if isinstance(t.get(key), (int, float)) and not isinstance(t.get(key), bool)]
        if vals:
            out[f"{key}_mean"] = sum(vals) / len(vals)
    return out


def _rtt_ns(params: Mapping[str, Any]) -> int:
    return round(float(params["rtt"]) * NS_PER_MS)


# === tcp.challenge-ack-reflection (5.2) ===============================================================


def _reflection_count(params: Mapping[str, Any]) -> int:
    return max(1, round(float(params["attack_rate"]) * float(params["duration"])))


def reflection_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                     pcap: str | None = None) -> dict[str, Any]:
    """A high-bandwidth off-path attacker spoofs in-window RSTs (or SYNs) as the peer P towards the
    victim V, which answers each with an ACK to P, over P's slow link. Then, on a second connection,
    out-of-window ACKs, which RFC 793 answers with an ACK whatever the defenses (the draft's 5.2
    point). Reflected packets are counted where they arrive: on P's NIC."""
    sim = _new_sim(rng)
    rtt = _rtt_ns(params)
    peer_bps = int(params["peer_rate"])
    net = build(triangle(rtt, victim_bps=_GBIT, peer_bps=peer_bps, attacker_bps=_GBIT), sim)
    static_arp(net)
    _open(net, pcap)
    v, p, adv = net.node("v"), net.node("p"), net.adversary
    cfg = TcpConfig(rst_exact="rst-exact" in defenses, syn_challenge="syn-challenge" in defenses,
                    challenge_ack_limit=_limit(params, defenses))
    victim = TcpStack(v, cfg)
    peer = TcpStack(p, TcpConfig())
    peer.listen(_SERVER_PORT)
    c1 = victim.connect((p.ip, _SERVER_PORT))  # the connection the attacker floods
    c2 = victim.connect((p.ip, _SERVER_PORT))  # the one it sends out-of-window segments on
    sim.run(until=sim.now + 4 * rtt + 10 * NS_PER_MS)
    if c1.state is not State.ESTABLISHED or c2.state is not State.ESTABLISHED:
        raise RuntimeError("reflection: the victim's connections did not establish")

    # what reaches the peer from the victim, by the victim's port
    reflected: dict[int, list[int]] = {c1.endpoint.local_port: [0, 0], c2.endpoint.local_port: [0, 0]}
    def sniff(frame: bytes, ifname: str, now: int) -> None:
        tf = parse_tcp_frame(frame)
        if tf is not None and tf.ip.src == v.ip and tf.seg.src_port in reflected:
            r = reflected[tf.seg.src_port]
            r[0] += 1
            r[1] += len(frame)

    p.add_sniffer(sniff)
    count = _reflection_count(params)
    rate = float(params["attack_rate"])
    probe = params["probe"]
    e1, e2 = c1.endpoint, c2.endpoint
    wnd1 = e1.rcv_wnd
    rcv1 = e1.rcv_nxt  # the attacker knows the window it aims into (5.2: "within the window")

    def in_window(i: int) -> TcpSegment:
        seq = (rcv1 + 1 + rng.randrange(wnd1 - 1)) & _M  # in the window, never exact
        if probe == "rst":
            return TcpSegment(_SERVER_PORT, e1.local_port, seq, 0, TcpFlags.RST, 0)
        return TcpSegment(_SERVER_PORT, e1.local_port, seq, 0, TcpFlags.SYN, 29200)

    rcv2, wnd2 = e2.rcv_nxt, e2.rcv_wnd

    def out_of_window(i: int) -> TcpSegment:
        seq = (rcv2 + wnd2 + rng.randrange(0x7FFF0000 - wnd2)) & _M
        return TcpSegment(_SERVER_PORT, e2.local_port, seq, rng.getrandbits(32), TcpFlags.ACK, 29200)

    flood = SpoofedFlood(adv, sim, p.ip, v.ip, in_window, count, rate)
    flood.start()
    attack_ns = round(count / rate * NS_PER_S)
    # what the peer's link needs to drain the reflections, and a margin
    drain_ns = count * 60 * 8 * NS_PER_S // peer_bps + 4 * rtt + 100 * NS_PER_MS
    sim.run(until=sim.now + attack_ns + drain_ns)
    oow = SpoofedFlood(adv, sim, p.ip, v.ip, out_of_window, count, rate)
    oow.start()
    sim.run(until=sim.now + attack_ns + drain_ns)
    net.close()

    n1, b1 = reflected[e1.local_port]
    n2, _ = reflected[e2.local_port]
    factor = n1 / flood.frames_sent
    duration = float(params["duration"])
    return {
        "success": factor >= float(params["threshold"]),
        "reflection_factor": factor,
        "byte_factor": b1 / flood.bytes_sent,
        "attack_packets": flood.frames_sent,
        "reflected_packets": n1,
        "peer_link_share": b1 * 8 / (peer_bps * duration),
        "oow_reflection_factor": n2 / oow.frames_sent,
        "challenge_acks_sent": e1.counters.challenge_acks_sent,
        "challenge_acks_suppressed": e1.counters.challenge_acks_suppressed,
        "victim_reset": 1.0 if e1.state is State.CLOSED else 0.0,
    }


def _allowed(n: int, rate: float, limit: tuple[int, float] | None) -> int:
    """Challenge ACKs a limiter lets out of `n` triggers arriving evenly at `rate` per second. A
    window of `interval` opens at the first trigger after the previous window ended, so it holds
    the triggers at t, t + gap, ... before t + interval: ceil(interval / gap) of them."""
    if limit is None:
        return n
    count, interval = limit
    gap = max(1, round(NS_PER_S / rate))
    per_window = -(-round(interval * NS_PER_S) // gap)
    full, rest = divmod(n, per_window)
    return full * min(count, per_window) + min(count, rest)


def reflection_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """rst probes: RFC 793 resets on the first in-window RST and then has no connection, whose RSTs
    go unanswered: 0. With rst-exact, one challenge ACK per RST, as many as the limiter allows.
    syn probes: RFC 793 answers the first in-window SYN with RST and closes, then answers each
    further SYN for no connection with RST: 1 per probe; syn-challenge: one challenge ACK each, as
    allowed. Out-of-window ACKs: RFC 793 acknowledges each, throttled by nothing: 1."""
    n = _reflection_count(params)
    rate = float(params["attack_rate"])
    guarded = "rst-exact" in defenses if params["probe"] == "rst" else "syn-challenge" in defenses
    if guarded:
        reflected = _allowed(n, rate, _limit(params, defenses))
    else:
        reflected = 0 if params["probe"] == "rst" else n
    factor = reflected / n
    return {
        "success_rate": 1.0 if factor >= float(params["threshold"]) else 0.0,
        "reflection_factor_mean": factor,
        "byte_factor_mean": factor,  # every probe and every reflection is a minimal 60-byte frame
        "oow_reflection_factor_mean": 1.0,
    }


REFLECTION = Threat(
    id="tcp.challenge-ack-reflection",
    title="Challenge ACKs as a reflector towards a low-bandwidth peer",
    source=_source("5.2"),
    position=Position.OFF_PATH,
    knowledge="the connection's four-tuple and its receive window (it aims its RSTs and SYNs inside it)",
    params=(
        Param("probe", "", "rst", "what the attacker spoofs as the peer: in-window RSTs or SYNs",
              choices=("rst", "syn")),
        Param("attack_rate", "packets/s", 2000.0, "spoofed segments per second", min=1, max=1e6),
        Param("duration", "s", 1.0, "length of each flood (challenge probes, then out-of-window ACKs)",
              min=0.001, max=60),
        Param("peer_rate", "bit/s", 1_000_000, "the peer's access link (the victim and attacker have 1 Gbit/s)",
              min=9600, max=10**11),
        Param("rtt", "ms", 20.0, "round-trip time between any two hosts", min=0, max=2000),
        Param("threshold", "reflected/sent", 0.5, "success: reflection factor at least this", min=0, max=100),
        *_limit_params(),
    ),
    defenses=(_D_RST_EXACT, _D_SYN_CHALLENGE, _d_limit("at the victim, per connection")),
    metrics=(
        SUCCESS_RATE,
        Metric("reflection_factor_mean", "packets/packet", "packets the peer received from the victim per "
               "spoofed in-window probe"),
        Metric("byte_factor_mean", "bytes/byte", "bytes on the wire towards the peer per attacker byte"),
        Metric("peer_link_share_mean", "share", "reflected bits over the peer link's capacity for the flood's "
               "duration (above 1: the link queues)"),
        Metric("oow_reflection_factor_mean", "packets/packet", "the same for out-of-window ACKs on a second "
               "connection, which RFC 793 acknowledges whatever the defenses"),
        Metric("attack_packets_mean", "packets", "spoofed probes sent per flood"),
        Metric("reflected_packets_mean", "packets", "packets the peer received for those probes"),
        Metric("challenge_acks_sent_mean", "ACKs", "challenge ACKs the victim sent"),
        Metric("challenge_acks_suppressed_mean", "ACKs", "challenge ACKs the limit held back"),
        Metric("victim_reset_mean", "share of trials", "the flood tore the victim's connection down"),
    ),
    run=reflection_trial,
    expected=reflection_expected,
    aggregate=_aggregate,
    default_trials=5,
    summary="A spoofed in-window RST or SYN costs the attacker one packet and the peer one ACK: a 1:1 "
            "reflector, no amplifier. Out-of-window segments reflect 1:1 under plain RFC 793 too; only "
            "challenge-ack-limit cuts the challenge ACKs.",
    tags=("reflection", "challenge-ack", "dos"),
)


# === tcp.restart-extra-rtt (5.3) ======================================================================


def restart_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                  pcap: str | None = None) -> dict[str, Any]:
    """B sends data (the last `in_flight` segments of which the path delays or loses), then loses
    its TCB, resetting the connection with RST <SEQ=SND.NXT>: ahead of A's RCV.NXT, so in A's
    window but not exact. Measured: the time from B's RST until A's connection is gone, in RTTs."""
    sim = _new_sim(rng)
    rtt = _rtt_ns(params)
    net = build(bump(rtt, left="a", right="b", bridge="path"), sim)
    _open(net, pcap)
    faults = PathFaults()
    net.adversary.intercept = faults
    a, b = net.node("a"), net.node("b")
    stack_a = TcpStack(a, TcpConfig(rst_exact="rst-exact" in defenses))
    stack_b = TcpStack(b, TcpConfig())
    accepted: list[Connection] = []
    stack_b.listen(_SERVER_PORT, on_accept=accepted.append)
    torn: list[int] = []

    def on_a(conn: Connection, ev: Event) -> None:
        if isinstance(ev, ConnectionReset):
            torn.append(sim.now)

    conn_a = stack_a.connect((b.ip, _SERVER_PORT), on_event=on_a)
    sim.run(until=sim.now + 3 * rtt + NS_PER_MS)
    conn_b = accepted[0]
    conn_b.send(b"1.a" * 100)  # figure 1.a: arrives and is acknowledged
    sim.run(until=sim.now + 3 * rtt + NS_PER_MS)

    n = int(params["in_flight"])
    max_delay = float(params["max_delay"])
    late_rtt = rng.uniform(0.0, max_delay) if params["fate"] == "delayed" else None
    faults.arm("out", n, None if late_rtt is None else round(late_rtt * rtt))
    for _ in range(n):
        conn_b.send(b"1.b" * 100)  # figure 1.b: delayed (or lost) on its way to A
    t0 = sim.now
    conn_b.abort()  # figure 1.c: B closes; the RST carries B's SND.NXT, beyond A's RCV.NXT
    sim.run(until=t0 + round((max_delay + 6) * rtt) + NS_PER_MS)
    net.close()

    ea = conn_a.endpoint
    teardown = (torn[0] - t0) / rtt if torn else None
    out: dict[str, Any] = {
        "success": teardown is not None and teardown <= 1.0,
        "teardown_rtt": teardown,
        "extra_rtt": None if teardown is None else teardown - 0.5,
        "torn_down": 1.0 if torn else 0.0,
        "challenge_acks_sent": ea.counters.challenge_acks_sent,
        "rsts_dropped_out_of_window": ea.counters.segments_dropped.get("out of window", 0),
        "rsts_from_b": stack_b.counters["resets sent"] + 1,  # the abort's RST, then RFC 793's answers
    }
    if late_rtt is not None:
        out["late_by_rtt"] = late_rtt
    return out


def restart_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Let h = RTT/2 and t = 0 when B sends its RST. RFC 793 resets A when the RST arrives: 0.5 RTT.
    With rst-exact A challenges at h; B, with no TCB, answers the ACK with RST <SEQ=SEG.ACK>, at A
    by 3h: 1.5 RTT if no data was in flight past A's RCV.NXT... except that with nothing in flight
    the RST is exact (0.5). If the in-flight data is lost: 1.5 RTT. If it arrives late by d: for
    d >= 1 RTT the answer to the challenge is still exact at 3h (1.5 RTT); for d < 1 RTT the data
    moves RCV.NXT first, the answer arrives out of window and is dropped (the figure's step 5), and
    only B's RST to A's ACK of the data, at 3h + d, is exact: 1.5 + d RTT. With d uniform on
    [0, D]: E = 1.5 + min(1, D)^2 / (2D)."""
    if "rst-exact" not in defenses or int(params["in_flight"]) == 0:
        t = 0.5
    elif params["fate"] == "lost":
        t = 1.5
    else:
        dmax = float(params["max_delay"])
        t = 0.5 if dmax == 0 else 1.5 + min(1.0, dmax) ** 2 / (2 * dmax)
    return {"teardown_rtt_mean": t, "extra_rtt_mean": t - 0.5, "success_rate": 1.0 if t <= 1.0 else 0.0}


RESTART = Threat(
    id="tcp.restart-extra-rtt",
    title="A legitimate reset that is not exact costs extra round trips",
    source=_source("5.3"),
    position=Position.ON_PATH,
    knowledge="no attacker: the path (a bridge between A and B) delays or loses B's last data segments, "
              "so B's RST is ahead of A's RCV.NXT; success here means the defense cost nothing",
    params=(
        Param("rtt", "ms", 50.0, "round-trip time between A and B", min=0.01, max=5000),
        Param("in_flight", "segments", 1, "B's data segments still in flight (late or lost) when it resets; "
              "0 makes the RST exact", min=0, max=20),
        Param("fate", "", "delayed", "what happens to them", choices=("delayed", "lost")),
        Param("max_delay", "RTT", 2.0, "delayed segments arrive late by uniform(0, max_delay) RTTs", min=0, max=20),
    ),
    defenses=(_D_RST_EXACT,),
    metrics=(
        Metric("success_rate", "share of trials", "the stale connection at A was torn down within 1 RTT of "
               "B's RST (the figure of 5.3 shows when it is not)"),
        Metric("teardown_rtt_mean", "RTT", "time from B's RST until A's connection is gone"),
        Metric("extra_rtt_mean", "RTT", "that time beyond the half round trip RFC 793 needs"),
        Metric("torn_down_mean", "share of trials", "A's connection was torn down at all"),
        Metric("challenge_acks_sent_mean", "ACKs", "challenge ACKs A sent"),
        Metric("rsts_dropped_out_of_window_mean", "segments", "segments A dropped as out of window (the figure's "
               "step 5: B's answer to the challenge, overtaken by the late data)"),
        Metric("rsts_from_b_mean", "RSTs", "RSTs B sent: its own, and its answers for no connection"),
        Metric("late_by_rtt_mean", "RTT", "how late the delayed segments were"),
    ),
    run=restart_trial,
    expected=restart_expected,
    aggregate=_aggregate,
    default_trials=200,
    summary="RFC 793 tears the connection down when B's RST arrives (0.5 RTT); with rst-exact it takes the "
            "challenge round trip (1.5 RTT) and, when late data overtakes the answer, up to 2.5 RTT.",
    tags=("rst-exact", "cost", "restart"),
)


# === tcp.syn-isn-corner-case (3.2 note) ==============================================================

_CLIENT_PORT = 40000


def syn_isn_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                  pcap: str | None = None) -> dict[str, Any]:
    """A and B have a connection; A crashes (its TCB is gone, nothing is sent) and reconnects from
    the same port. B still holds the stale connection and answers A's SYN with an ACK (a challenge
    ACK with syn-challenge; RFC 793's own for an out-of-window SYN). If A's ISN is B's RCV.NXT - 1,
    that ACK acknowledges A's SYN exactly: A takes it and waits; every retransmitted SYN meets the
    same fate until A gives up. Any other ISN makes the ACK unacceptable, A answers with a RST at
    SEG.ACK (exact at B), and its next SYN gets through."""
    sim = _new_sim(rng)
    rtt = _rtt_ns(params)
    net = build(lan(2, link=Link(rtt // 4)), sim)
    _open(net, pcap)
    ha, hb = net.node("h1"), net.node("h2")
    cfg = TcpConfig(rst_exact="rst-exact" in defenses, syn_challenge="syn-challenge" in defenses)
    stack_b = TcpStack(hb, cfg)
    accepted: list[Connection] = []
    stack_b.listen(_SERVER_PORT, on_accept=accepted.append)
    old_a = TcpStack(ha, cfg, rng=random.Random(rng.getrandbits(64)))
    conn = old_a.connect((hb.ip, _SERVER_PORT), local_port=_CLIENT_PORT)
    sim.run(until=sim.now + 3 * rtt + NS_PER_MS)
    conn.send(b"before the crash" * 10)
    sim.run(until=sim.now + 3 * rtt + NS_PER_MS)
    stale = accepted[0]
    stale_b = stale.endpoint

    # the crash: a fresh stack replaces A's (TcpStack registers itself for protocol 6 on the host)
    isn_rng = ForcedIsnRandom(rng.getrandbits(64))
    if params["isn"] == "corner":
        isn_rng.force((stale_b.rcv_nxt - 1) & _M)
    new_a = TcpStack(ha, cfg, rng=isn_rng)
    syns = [0]

    def count_syns(frame: bytes, ifname: str, now: int) -> None:
        tf = parse_tcp_frame(frame)
        if tf is not None and tf.ip.src == ha.ip and int(tf.seg.flags) & int(TcpFlags.SYN):
            syns[0] += 1

    hb.add_sniffer(count_syns)
    attempts = int(params["attempts"])
    t0 = sim.now
    state = {"attempt": 0, "first_failed": None, "established_at": None}

    def attempt() -> None:
        state["attempt"] += 1
        new_a.connect((hb.ip, _SERVER_PORT), local_port=_CLIENT_PORT, on_event=on_event)

    def on_event(c: Connection, ev: Event) -> None:
        if isinstance(ev, ConnectionEstablished):
            state["established_at"] = sim.now
            if state["first_failed"] is None:
                state["first_failed"] = False
        elif isinstance(ev, (ConnectionTimedOut, ConnectionReset)) and c.state is State.CLOSED:
            if state["first_failed"] is None:
                state["first_failed"] = True
            if state["attempt"] < attempts:
                sim.post(0, attempt)  # the application tries again; a new ISN comes with it

    attempt()
    cfg_rto = cfg.rto_initial_ns
    # the longest a failing attempt can take: every SYN retransmission, backed off
    per_attempt = cfg_rto * (2 ** (cfg.max_syn_retransmissions + 1) - 1)
    sim.run(until=t0 + attempts * (per_attempt + 4 * rtt) + NS_PER_S)
    net.close()

    est = state["established_at"]
    return {
        "success": bool(state["first_failed"]),
        "established": 1.0 if est is not None else 0.0,
        "time_to_establish_s": None if est is None else (est - t0) / NS_PER_S,
        "attempts": state["attempt"],
        "syns_sent": syns[0],
        "stale_acks": stale_b.counters.challenge_acks_sent + stale_b.counters.segments_dropped.get(
            "out of window", 0),
        "stale_torn_down": 1.0 if stale_b.state is State.CLOSED else 0.0,
    }


def syn_isn_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """First-attempt failure: certain with the corner ISN. With a random ISN: 2^-32 for the corner
    value, plus, without syn-challenge, RCV.WND/2^32 for a SYN inside B's window, which RFC 793
    answers with a reset that refuses A's attempt. Time to establish: a random ISN costs one SYN
    retransmission (the first SYN is spent on the ACK/RST exchange that clears B): RTO + RTT. The
    corner ISN costs the whole SYN back-off, sum of min(RTO * 2^i, RTO.max) over the 7 SYNs of
    Linux's 6 retries: 1+2+4+8+16+32+60 = 123 s under RFC 6298's 60 s ceiling (Linux, whose ceiling
    is 120 s, takes 127 s), before a second attempt with a new ISN fares as a random one: + RTO + RTT."""
    cfg = TcpConfig()
    rtt_s = float(params["rtt"]) / 1000
    rto_s = cfg.rto_initial_ns / NS_PER_S
    backoff_s = sum(min(cfg.rto_initial_ns << i, cfg.rto_max_ns) for i in range(cfg.max_syn_retransmissions + 1))
    backoff_s /= NS_PER_S
    if params["isn"] == "corner":
        fail = 1.0
        t = backoff_s + rto_s + rtt_s if int(params["attempts"]) >= 2 else math.inf
    else:
        wnd = 0 if "syn-challenge" in defenses else cfg.rcv_buf
        fail = (1 + wnd) / 2**32
        t = rto_s + rtt_s
    out = {"success_rate": fail, "established_mean": 1.0 if math.isfinite(t) else 0.0}
    if math.isfinite(t):
        out["time_to_establish_s_mean"] = t
    return out


SYN_ISN = Threat(
    id="tcp.syn-isn-corner-case",
    title="A restarting host whose ISN is the stale peer's RCV.NXT - 1 cannot connect",
    source=_source("3.2"),
    position=Position.OFF_PATH,
    knowledge="no attacker: the restarting host's own ISN choice; isn=corner forces the unlucky value",
    params=(
        Param("isn", "", "corner", "the restarting host's first ISN: the corner value RCV.NXT - 1 of the "
              "stale peer, or random", choices=("corner", "random")),
        Param("rtt", "ms", 50.0, "round-trip time between the hosts", min=0.01, max=5000),
        Param("attempts", "connects", 2, "connection attempts the application makes (each with a new ISN)",
              min=1, max=5),
    ),
    defenses=(_D_SYN_CHALLENGE, _D_RST_EXACT),
    metrics=(
        Metric("success_rate", "share of trials", "the restarting host's first connection attempt failed "
               "(analytic: 1 with the corner ISN, 2^-32 with a random one under syn-challenge)"),
        Metric("established_mean", "share of trials", "a connection was established within the attempts"),
        Metric("time_to_establish_s_mean", "s", "from the first SYN until established"),
        Metric("attempts_mean", "connects", "connection attempts made"),
        Metric("syns_sent_mean", "SYNs", "SYNs the restarting host sent, retransmissions included"),
        Metric("stale_acks_mean", "ACKs", "ACKs the stale connection sent in answer to SYNs"),
        Metric("stale_torn_down_mean", "share of trials", "the stale connection was cleared"),
    ),
    run=syn_isn_trial,
    expected=syn_isn_expected,
    aggregate=_aggregate,
    default_trials=20,
    summary="With ISN = RCV.NXT - 1 the stale peer's ACK is acceptable in SYN-SENT, so no RST clears it: "
            "the attempt times out after the full SYN back-off (123 s). syn-challenge neither causes nor fixes "
            "it; without syn-challenge a random ISN can also land in the stale window and be refused.",
    tags=("syn-challenge", "restart", "corner-case"),
)


# === tcp.middlebox-rst-cache (6.1) and tcp.middlebox-advancing-seq (6.2) ============================


def _middlebox_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                     pcap: str | None, mode: str) -> dict[str, Any]:
    """A (inside, with the defenses) - middlebox - C. C's last data segment is lost upstream of the
    box, then C resets: its RST is in A's window but not exact. The box, which checks RSTs as RFC 793
    does, clears the connection and passes the RST; A challenges it; the box answers every ACK of A
    with a RST (its cached one, or one at ACK + window) for `hold` seconds."""
    sim = _new_sim(rng)
    rtt = _rtt_ns(params)
    hold_ns = round(float(params["hold"]) * NS_PER_S)
    net = build(bump(rtt, left="a", right="c", bridge="mbox"), sim)
    _open(net, pcap)
    faults = PathFaults()
    box = ResettingMiddlebox(net.adversary, sim, mode=mode, edge_offset=int(params.get("edge_offset", -1)),
                             hold_ns=hold_ns, inside="in", faults=faults)
    a, c = net.node("a"), net.node("c")
    stack_a = TcpStack(a, TcpConfig(rst_exact="rst-exact" in defenses, challenge_ack_limit=_limit(params, defenses)))
    stack_c = TcpStack(c, TcpConfig())
    accepted: list[Connection] = []
    stack_c.listen(_SERVER_PORT, on_accept=accepted.append)
    torn: list[int] = []

    def on_a(conn: Connection, ev: Event) -> None:
        if isinstance(ev, ConnectionReset):
            torn.append(sim.now)

    conn_a = stack_a.connect((c.ip, _SERVER_PORT), on_event=on_a)
    sim.run(until=sim.now + 3 * rtt + NS_PER_MS)
    conn_c = accepted[0]
    conn_c.send(b"x" * 500)
    sim.run(until=sim.now + 3 * rtt + NS_PER_MS)
    faults.arm("out", 1, None)  # "data lost in the network" (6.2): C's RST is then ahead of A's RCV.NXT
    conn_c.send(b"y" * 500)
    t0 = sim.now
    conn_c.abort()
    sim.run(until=t0 + hold_ns + 4 * rtt + NS_PER_S)
    net.close()

    ea = conn_a.endpoint
    war = box.war
    dur = war.duration_ns / NS_PER_S
    return {
        "success": dur > float(params["war_threshold"]),
        "war_packets": war.packets,
        "war_duration_s": dur,
        "war_pps": war.packets / dur if dur > 0 else 0.0,
        "challenge_acks_sent": ea.counters.challenge_acks_sent,
        "challenge_acks_suppressed": ea.counters.challenge_acks_suppressed,
        "a_torn_down": 1.0 if torn else 0.0,
        "a_teardown_s": (torn[0] - t0) / NS_PER_S if torn else None,
    }


def rst_cache_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                    pcap: str | None = None) -> dict[str, Any]:
    return _middlebox_trial(params, defenses, rng, pcap, "cache")


def advancing_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                    pcap: str | None = None) -> dict[str, Any]:
    return _middlebox_trial(params, defenses, rng, pcap, "advance")


def _war_expected(params: Mapping[str, Any], defenses: frozenset[str], verdict: str) -> dict[str, float]:
    """The box sits half way: its round trip to A is r = RTT/2, one war cycle (RST to A, challenge ACK
    back). It accepts C's RST at t1 and answers the ACKs reaching it at t1 + k r while k r < hold:
    K = ceil(hold / r) - 1 of them; A's next ACK passes to C, which has no TCB and answers with an
    exact RST. A limit of c per interval (when the war fits in one interval, c r < interval) lets
    A send c challenge ACKs: K = min(K, c), and with c <= K the last RST goes unanswered and A keeps
    a stale connection. War packets 2K, duration (K - 1) r, rate 2/r. `verdict` is what A does with
    the box's RST: "challenge" (acceptable, inexact), "drop" (out of window: one answer, then
    silence and a stale A) or "reset" (exact). Without rst-exact A takes C's RST: no war."""
    if "rst-exact" not in defenses:
        return {"success_rate": 0.0, "war_packets_mean": 0.0, "war_duration_s_mean": 0.0, "a_torn_down_mean": 1.0}
    r = _rtt_ns(params) / 2
    hold_ns = float(params["hold"]) * NS_PER_S
    k_hold = max(0, math.ceil(hold_ns / r) - 1)
    lim = _limit(params, defenses)
    if lim is not None and lim[0] * r >= lim[1] * NS_PER_S:
        return {}  # the war outlives one interval of the limiter: no closed form here
    allowed = math.inf if lim is None else lim[0]
    if verdict == "challenge":
        k = min(k_hold, allowed)
        torn = allowed >= k_hold + 1
    elif verdict == "drop":
        k = min(k_hold, 1, allowed)
        torn = k_hold == 0 and allowed >= 1
    else:
        k = min(k_hold, 1, allowed)
        torn = allowed >= 1
    dur = max(0, k - 1) * r / NS_PER_S
    out = {
        "success_rate": 1.0 if dur > float(params["war_threshold"]) else 0.0,
        "war_packets_mean": 2.0 * k,
        "war_duration_s_mean": dur,
        "a_torn_down_mean": 1.0 if torn else 0.0,
    }
    if k > 1:
        out["war_pps_mean"] = 2 * k / dur
    return out


def rst_cache_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    return _war_expected(params, defenses, "challenge")


def advancing_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    # the box's RST is at RCV.NXT + RCV.WND + edge_offset: acceptable and inexact iff -WND < offset < 0
    off = int(params["edge_offset"])
    wnd = TcpConfig().rcv_buf
    return _war_expected(params, defenses, "challenge" if -wnd < off < 0 else "reset" if off == -wnd else "drop")


def _war_params(extra: tuple[Param, ...] = ()) -> tuple[Param, ...]:
    return (
        Param("rtt", "ms", 20.0, "round-trip time between A and C; the middlebox sits half way", min=0.01,
              max=5000),
        Param("hold", "s", 10.0, "how long the middlebox keeps the cleared connection (and its RST)", min=0,
              max=600),
        Param("war_threshold", "s", 1.0, "success: the RST/ACK war lasted longer than this", min=0, max=3600),
        *extra,
        *_limit_params(),
    )


_WAR_METRICS = (
    Metric("success_rate", "share of trials", "a RST/ACK war ensued and lasted longer than war_threshold"),
    Metric("war_packets_mean", "packets", "ACKs of A the middlebox answered plus the RSTs it answered with"),
    Metric("war_duration_s_mean", "s", "from the first answered ACK to the last"),
    Metric("war_pps_mean", "packets/s", "war packets per second while it lasted"),
    Metric("challenge_acks_sent_mean", "ACKs", "challenge ACKs A sent"),
    Metric("challenge_acks_suppressed_mean", "ACKs", "challenge ACKs the limit held back"),
    Metric("a_torn_down_mean", "share of trials", "A's connection was torn down by the end (hold + 1 s); "
           "a throttled war leaves it stale until A sends again"),
    Metric("a_teardown_s_mean", "s", "from C's RST to A's teardown, when it happened"),
)

RST_CACHE = Threat(
    id="tcp.middlebox-rst-cache",
    title="A middlebox that caches RSTs fights a RST/ACK war with a challenging host",
    source=_source("6.1"),
    position=Position.ON_PATH,
    knowledge="no attacker: a connection-tracking middlebox without the fix, which replays the RST it "
              "cleared the connection with to every ACK it sees on it",
    params=_war_params(),
    defenses=(_D_RST_EXACT, _d_limit("at A, per connection")),
    metrics=_WAR_METRICS,
    run=rst_cache_trial,
    expected=rst_cache_expected,
    aggregate=_aggregate,
    default_trials=10,
    summary="With rst-exact and no throttling the cached RST and the challenge ACK chase each other once per "
            "A-middlebox round trip for as long as the box keeps the RST; challenge-ack-limit ends it after "
            "limit_count rounds.",
    tags=("middlebox", "rst-exact", "challenge-ack"),
)

ADVANCING = Threat(
    id="tcp.middlebox-advancing-seq",
    title="A middlebox that answers challenge ACKs with RSTs at the window's upper end",
    source=_source("6.2"),
    position=Position.ON_PATH,
    knowledge="no attacker: a connection-tracking middlebox without the fix, which answers every ACK on a "
              "cleared connection with a RST at SEG.ACK + SEG.WND + edge_offset",
    params=_war_params((
        Param("edge_offset", "sequence numbers", -1, "added to ACK + window: -1 is the last acceptable number "
              "(a war); 0 the draft's literal sum, one past RFC 793's half-open window (dropped)",
              min=-65535, max=65535),
    )),
    defenses=(_D_RST_EXACT, _d_limit("at A, per connection")),
    metrics=_WAR_METRICS,
    run=advancing_trial,
    expected=advancing_expected,
    aggregate=_aggregate,
    default_trials=10,
    summary="The same war as 6.1 with computed RSTs; throttling bounds it. The draft's literal ACK + window "
            "lies just outside RFC 793's window, so such a box gets no war, but leaves A's connection stale.",
    tags=("middlebox", "rst-exact", "challenge-ack"),
)


# === tcp.challenge-ack-side-channel (CVE-2016-5696) ==================================================

_PORT_LO = 32768


def side_channel_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                       pcap: str | None = None) -> dict[str, Any]:
    """The server runs RFC 5961 (rst-exact, syn-challenge, ack-check) with Linux 3.6-4.6's host-global
    limit of `limit` challenge ACKs per second. A client connects from a random port among `ports`
    candidates; the off-path attacker, with its own connection to the server, finds the port (and
    with infer_seq a sequence number in the server's window) by counting its own challenge ACKs."""
    sim = _new_sim(rng)
    rtt = _rtt_ns(params)
    attacker_bps = int(params["attacker_rate"])
    net = build(triangle(rtt, victim="srv", peer="cli", victim_bps=_GBIT, peer_bps=_GBIT,
                         attacker_bps=attacker_bps), sim)
    static_arp(net)
    _open(net, pcap)
    srv, cli, adv = net.node("srv"), net.node("cli"), net.adversary
    limit = int(params["limit"])
    window = int(params["server_window"])
    wscale = _wscale(window)
    scope = "connection" if "challenge-ack-per-connection" in defenses else "host"
    budget = "random" if "challenge-ack-random-budget" in defenses else "fixed"
    server_cfg = TcpConfig(rst_exact=True, syn_challenge=True, ack_check=True, challenge_ack_limit=(limit, 1.0),
                           challenge_ack_scope=scope, challenge_ack_budget=budget, rcv_buf=window,
                           window_scale=wscale)
    server = TcpStack(srv, server_cfg)
    server.listen(_SERVER_PORT)
    n_ports = int(params["ports"])
    client_port = _PORT_LO + rng.randrange(n_ports)
    client = TcpStack(cli, TcpConfig(window_scale=wscale))
    conn_c = client.connect((srv.ip, _SERVER_PORT), local_port=client_port)
    own_stack = TcpStack(adv.host, TcpConfig(window_scale=wscale))
    own = own_stack.connect((srv.ip, _SERVER_PORT), local_port=_PORT_LO - 1)
    sim.run(until=sim.now + 4 * rtt + NS_PER_MS)
    conn_c.send(b"GET / HTTP/1.1\r\n\r\n")
    sim.run(until=sim.now + 4 * rtt + NS_PER_MS)
    if conn_c.state is not State.ESTABLISHED or own.state is not State.ESTABLISHED:
        raise RuntimeError("side channel: connections did not establish")

    done: list[SideChannelResult] = []
    attack = CounterSideChannel(adv, sim, own, client_ip=cli.ip, server_ip=srv.ip, server_port=_SERVER_PORT,
                                ports=range(_PORT_LO, _PORT_LO + n_ports), limit=limit, interval_ns=NS_PER_S,
                                attacker_bps=attacker_bps, infer_seq=bool(params["infer_seq"]),
                                rng=random.Random(rng.getrandbits(64)), on_done=done.append)
    t0 = sim.now
    attack.start()
    max_rounds = 2 + math.ceil(math.log2(n_ports)) + (34 if params["infer_seq"] else 0)
    sim.run(until=t0 + max_rounds * 3 * NS_PER_S)
    net.close()
    if not done:
        raise RuntimeError("side channel: the attack did not finish")
    res = done[0]
    port_ok = res.port == client_port
    server_conn = server.connections.get((_SERVER_PORT, int(cli.ip), client_port))
    out: dict[str, Any] = {
        "port_found": 1.0 if port_ok else 0.0,
        "presence_detected": 1.0 if res.presence_detected else 0.0,
        "probes_sent": res.spoofed_sent + res.own_rsts_sent,
        "spoofed_sent": res.spoofed_sent,
        "rounds": res.rounds,
        "virtual_time_s": ((res.done_ns or sim.now) - t0) / NS_PER_S,
    }
    success = port_ok
    if params["infer_seq"]:
        seq_ok = False
        if port_ok and res.seq is not None and server_conn is not None:
            ep = server_conn.endpoint
            seq_ok = (res.seq - ep.rcv_nxt) & _M < ep.rcv_wnd
        out["seq_found"] = 1.0 if seq_ok else 0.0
        success = seq_ok
    out["success"] = success
    return out


def _wscale(window: int) -> int | None:
    if window <= 0xFFFF:
        return None
    shift = 0
    while (0xFFFF << shift) < window:
        shift += 1
    return shift


@cache
def _search(n: int, p_hit: float, p_miss: float) -> tuple[float, float, float]:
    """Binary search over n candidates, testing the lower half each round, with the true one uniform:
    (P(all judgements right), E[rounds], E[spoofed probes]) after the first, full round. A round is
    judged right with p_hit when the true one is in the tested half, p_miss when it is not."""
    if n <= 1:
        return (1.0, 0.0, 0.0)
    h = n // 2
    ph, rh, sh = _search(h, p_hit, p_miss)
    pl, rl, sl = _search(n - h, p_hit, p_miss)
    wh, wl = h / n, (n - h) / n
    return (wh * p_hit * ph + wl * p_miss * pl, 1 + wh * rh + wl * rl, h + wh * sh + wl * sl)


def side_channel_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Host-global fixed limit: every judgement is right; the first round tests all n ports, then a
    binary search. Per-connection limit: the attacker's own connection always gets `limit`, so the
    first round sees nothing and it gives up. Randomized budget B = ceil(L/2) + U{0..L-1}: the
    attacker sees fewer than L when B - used < L, so it judges a round "hit" with probability
    (L - ceil(L/2) + 1)/L when a probe used one, (L - ceil(L/2))/L when none did: a coin flip.
    Both: the probes never touch the attacker's own (randomized) limiter, so every round is judged
    "hit" with probability (L - ceil(L/2))/L whatever the truth, and the search is a random walk."""
    n = int(params["ports"])
    limit = int(params["limit"])
    per_connection = "challenge-ack-per-connection" in defenses
    if "challenge-ack-random-budget" in defenses:
        half = (limit + 1) >> 1
        p0 = (limit - half) / limit  # judged hit when no probe used one of the attacker's budget
        p1 = p0 if per_connection else (limit - half + 1) / limit  # ... and when one did
    elif per_connection:
        return {"success_rate": 0.0, "port_found_mean": 0.0, "presence_detected_mean": 0.0,
                "rounds_mean": 1.0}
    else:
        p1, p0 = 1.0, 0.0
    p_search, rounds, spoofed = _search(n, p1, 1 - p0)
    port = p1 * p_search
    out = {"port_found_mean": port, "presence_detected_mean": p1, "success_rate": port}
    if p1 == 1.0 and p0 == 0.0:
        out["rounds_mean"] = 1 + rounds
        out["spoofed_sent_mean"] = n + spoofed
        out["probes_sent_mean"] = n + spoofed + limit * (1 + rounds)
        if params["infer_seq"]:
            wnd = min(int(params["server_window"]), 0xFFFF << (_wscale(int(params["server_window"])) or 0))
            m = -(-(1 << 32) // wnd)
            _, r2, s2 = _search(m, 1.0, 1.0)
            out["rounds_mean"] += 1 + r2
            out["spoofed_sent_mean"] += m + s2
            out["probes_sent_mean"] += m + s2 + limit * (1 + r2)
            out["seq_found_mean"] = 1.0
    return out


SIDE_CHANNEL = Threat(
    id="tcp.challenge-ack-side-channel",
    title="Off-path connection inference through a host-global challenge ACK counter (CVE-2016-5696)",
    # beyond the draft: the 2.2 throttle, kept host-global, as a side channel
    source=Source(seed_file=SEED_FILE, section="2.2",
                  draft="Cao et al., Off-Path TCP Exploits: Global Rate Limit Considered Dangerous, "
                        "USENIX Security 2016 (CVE-2016-5696)"),
    position=Position.OFF_PATH,
    knowledge="the client's and server's addresses, the server port, the range the client port lies in, "
              "the server's limit; it has a connection of its own to the server",
    params=(
        Param("ports", "ports", 1024, "candidate client ports (Linux's range is 28232)", min=2, max=28232),
        Param("limit", "ACKs/s", 100, "the server's challenge ACK limit (Linux 3.6-4.6: 100 per second)",
              min=1, max=100000),
        Param("attacker_rate", "bit/s", 100_000_000, "the attacker's link", min=100_000, max=10**11),
        Param("rtt", "ms", 20.0, "round-trip time between any two hosts", min=0.01, max=500),
        Param("infer_seq", "", False, "go on to find a sequence number in the server's window (sends about "
              "2 * 2^32/window spoofed RSTs)"),
        Param("server_window", "bytes", 65535, "the server's receive window (window scaling above 65535)",
              min=1024, max=2**30 - 1),
    ),
    defenses=(
        Defense("challenge-ack-per-connection", "challenge_ack_scope='connection': each connection has its own "
                "limiter, so the attacker's count says nothing about other connections (RFC 5961 7 allows "
                "either; the shared counter is what leaks)"),
        Defense("challenge-ack-random-budget", "challenge_ack_budget='random', Linux 4.7's fix: the budget "
                "is drawn anew each interval as ceil(limit/2) + uniform(0..limit-1), by the host-global "
                "limiter or, with challenge-ack-per-connection too, by each connection's own"),
    ),
    metrics=(
        Metric("success_rate", "share of trials", "the attacker named the client's port (and, with infer_seq, "
               "a sequence number in the server's window)"),
        Metric("port_found_mean", "share of trials", "the inferred client port was right"),
        Metric("presence_detected_mean", "share of trials", "the first round said one of the candidate ports "
               "is in use (it always is)"),
        Metric("seq_found_mean", "share of trials", "with infer_seq: the sequence number was in the window"),
        Metric("probes_sent_mean", "packets", "spoofed probes plus RSTs on the attacker's own connection"),
        Metric("spoofed_sent_mean", "packets", "spoofed probes alone"),
        Metric("rounds_mean", "rounds", "probing rounds, one per limiter interval"),
        Metric("virtual_time_s_mean", "s", "virtual time the inference took"),
    ),
    run=side_channel_trial,
    expected=side_channel_expected,
    aggregate=_aggregate,
    default_trials=10,
    summary="A shared, fixed budget of challenge ACKs is a counter every connection of the host can read: "
            "the attacker finds the client's port in 1 + log2(ports) one-second rounds. A per-connection "
            "limit or a randomized budget reduces it to guessing.",
    tags=("side-channel", "challenge-ack", "cve-2016-5696", "beyond-the-draft"),
)


CHALLENGE_THREATS: tuple[Threat, ...] = (REFLECTION, RESTART, SYN_ISN, RST_CACHE, ADVANCING, SIDE_CHANNEL)
