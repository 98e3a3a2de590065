"""Catalogue entries for tcpsecure's blind attacks (draft-ietf-tcpm-tcpsecure-01 sections 1 to 4):
`tcp.blind-rst`, `tcp.blind-syn`, `tcp.blind-data-injection` and `tcp.port-guessing`; the
challenge-ACK, corner-case and middlebox entries come from `threats_challenge`.

Every trial builds a simulated network, opens a real connection between two `TcpStack`s, and lets
a `BlindSweep` adversary put spoofed frames on its own link at its own bit rate; each frame goes
through the switch, the server's IP input and `TcpStack` to the modeled `TcpEndpoint`. Nothing is
computed in place of the run. The trial's oracle (never the attacker) watches the attacked
connection, stops the sweep when it has done its harm, and reads the measurements off the
endpoint's counters and the simulator's clock. The `expected` functions are the draft's analysis,
made exact for the simulated sweep (derivations in `sweep_hits`).

Topology (`blind_topology`): the client, the server and the attacker on one learning switch. The
attacker is off the client-server path: the switch never forwards their unicast frames to its
port and its NIC is not promiscuous, so all it could see is broadcast (ARP), which tells it no
sequence number; it is as blind as an attacker across the Internet. Only its own link has a rate
(`rate`); the client's link carries the connection's RTT.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from threatlab.errors import ParamError
from threatlab.lab.catalogue import SUCCESS_RATE, Defense, Metric, Param, Source, Threat
from threatlab.net.build import Network, build
from threatlab.net.ethernet import serialization_ns
from threatlab.net.sim import NS_PER_MS, NS_PER_S, Simulator
from threatlab.net.topology import Interface, Link, Node, Position, Segment, SegmentKind, Topology, mac_for
from threatlab.tcp.attacks import BlindSweep, SegmentTemplate, port_candidates
from threatlab.tcp.config import TcpConfig
from threatlab.tcp.events import ConnectionReset, Event
from threatlab.tcp.stack import Connection, TcpStack
from threatlab.tcp.threats_challenge import CHALLENGE_THREATS
from threatlab.tcp.wire import TcpFlags

__all__ = [
    "BLIND_THREATS",
    "THREATS",
    "blind_topology",
    "sweep_hits",
    "sweep_length",
    "throttled_acks",
]

DRAFT = "draft-ietf-tcpm-tcpsecure-01"
SEED_FILE = "001_8fae148b6f71f2f2.txt"
SEQ_SPACE = 1 << 32
SERVER_PORT = 80
OTHER_PORT = 443  # where the client's other connections go
CLIENT_IP = IPv4Address("10.0.0.1")
SERVER_IP = IPv4Address("10.0.0.2")
ATTACKER_IP = IPv4Address("10.0.0.66")
MD5_KEY = b"tcpsecure shared key"  # RFC 2385: configured on both ends, unknown to the attacker
DEFAULT_EPHEMERAL = (49152, 65535)  # TcpConfig's default range (RFC 6335 dynamic ports)
RST_FRAME = 60  # 14 + 20 + 20 bytes, padded to the Ethernet minimum by the NIC
_BATCH = 64  # frames the attacker queues on its link at a time


def _source(section: str) -> Source:
    return Source(seed_file=SEED_FILE, section=section, draft=DRAFT)


# --- the draft's arithmetic, exact for the simulated sweep -------------------------------------------


def sweep_length(step: int, space: int = SEQ_SPACE) -> int:
    """Guesses stepping by `step` that cover the sequence space: ceil(2^32 / step) (tcpsecure 2.1's
    2^32/RCV.WND; 65,538 for RCV.WND = 65,535)."""
    return -(-space // step)


def sweep_hits(step: int, target: int, guesses: int, space: int = SEQ_SPACE) -> tuple[int, int]:
    """(C, S) for a sweep of `guesses` guesses 0, step, 2*step, ... against a target of `target`
    consecutive acceptable numbers placed uniformly at random on the circle of `space` numbers:
    C is how many of the `space` placements are hit within the guesses, S is the sum over those of
    the 1-based index of the first hit. So P(success) = C / space and E[guesses | success] = S / C.

    The guesses are distinct points p_i = i*step (at most ceil(space/step) of them). The target
    [d, d+target) contains p_i exactly when d lies in the arc A_i of `target` numbers ending at p_i,
    so the first hit is p_i for the part of A_i no earlier arc covers. A_0 wraps round zero and
    takes the top target-1 numbers Z = [space-target+1, space-1] as well as 0; for i >= 1 the new
    part of A_i is [max(p_i-target+1, p_(i-1)+1), p_i] (min(step, target) numbers) less Z, which
    only the last ceil(target/step) guesses can reach.
    """
    if step < 1 or target < 1 or target > space:
        raise ParamError(f"sweep of step {step} against a target of {target} numbers: both must be >= 1")
    b = min(guesses, sweep_length(step, space))
    if b <= 0:
        return 0, 0
    count = target  # first hit at index 0: 1 guess
    total = target
    m = min(step, target)
    i_z = -(-(space - target + 1) // step)  # the first guess inside Z
    plain = max(0, min(b, i_z) - 1)  # guesses 1..plain: m new placements each
    count += m * plain
    total += m * (plain * (plain + 1) // 2 + plain)
    for i in range(max(1, i_z), b):
        p = i * step
        lo = max(p - target + 1, p - step + 1)
        c = max(0, min(p, space - target) - lo + 1)
        count += c
        total += c * (i + 1)
    return count, total


def throttled_acks(arrivals: int, spacing_ns: int, count: int, interval_ns: int) -> int:
    """Challenge ACKs a `ChallengeAckLimiter(count, interval)` lets out for `arrivals` triggers
    `spacing_ns` apart: each window takes the ceil(interval/spacing) triggers that fall in it and
    answers the first `count` of them (tcpsecure 2.2's 10 per 5 s)."""
    if arrivals <= 0:
        return 0
    per_window = -(-interval_ns // spacing_ns) if spacing_ns > 0 else arrivals
    full, rest = divmod(arrivals, per_window)
    return full * min(count, per_window) + min(count, rest)


# --- parameters --------------------------------------------------------------------------------------


def _window_params() -> tuple[Param, ...]:
    return (
        Param("window", "bytes", 65535, "the server's receive window RCV.WND, which the attacker steps by "
              "(the draft: 32 KiB to 64 KiB; above 65,535 with window scaling)", min=1024, max=65535 << 14),
        Param("window_scale", "shift", -1, "RFC 7323 shift both ends offer; -1: the smallest that fits the "
              "window, none (RFC 793, no option) up to 65,535 bytes", min=-1, max=14),
    )


def _attacker_params(budget_doc: str) -> tuple[Param, ...]:
    return (
        Param("rate", "bit/s", 1_000_000, "the attacker's link; seconds_to_success is the virtual time "
              "its frames take on it", min=1000, max=10**11),
        Param("rtt", "ms", 20.0, "round-trip time of the client-server path the attacker is not on", min=0,
              max=5000),
        Param("budget", "segments", 0, budget_doc, min=0, max=1 << 26),
    )


def _port_params() -> tuple[Param, ...]:
    return (
        Param("ports_known", "", True, "the attacker knows the client's ephemeral port; false: it knows the "
              "range and a port the client used shortly before, and tries ports upwards from it, a full "
              "sweep each"),
        Param("connections_between", "connections", 2, "with ports_known false: the client opens "
              "uniform(0, 2N) other connections between the attacker's sighting and the attacked one",
              min=0, max=1000),
    )


def _limit_params() -> tuple[Param, ...]:
    return (
        Param("limit_count", "ACKs", 10, "challenge-ack-limit: challenge ACKs allowed per interval", min=0,
              max=100000),
        Param("limit_interval", "s", 5.0, "challenge-ack-limit: the interval", min=0.001, max=3600),
    )


def window_and_scale(params: Mapping[str, Any]) -> tuple[int, int | None]:
    """(RCV.WND, the window scale option both ends offer or None)."""
    window = int(params["window"])
    ws = int(params["window_scale"])
    if ws < 0:
        shift = 0
        while 0xFFFF << shift < window:
            shift += 1
        return window, (shift or None)
    if window > 0xFFFF << ws:
        need = next(s for s in range(15) if 0xFFFF << s >= window)
        raise ParamError(f"parameter window={window}: needs window_scale >= {need} (window_scale={ws})")
    return window, ws


def _limit(params: Mapping[str, Any], defenses: frozenset[str]) -> tuple[int, float] | None:
    if "challenge-ack-limit" not in defenses:
        return None
    return int(params["limit_count"]), float(params["limit_interval"])


# --- defenses and metrics ---------------------------------------------------------------------------

D_RST_EXACT = Defense(
    "rst-exact", "tcpsecure 2.2: reset only on SEG.SEQ == RCV.NXT; any other in-window RST gets a "
    "challenge ACK")
D_SYN_CHALLENGE = Defense(
    "syn-challenge", "tcpsecure 3.2: any SYN in a synchronized state gets a challenge ACK, never a reset")
D_ACK_CHECK = Defense(
    "ack-check", "tcpsecure 4.2: accept SEG.ACK only in SND.UNA - MAX.SND.WND .. SND.NXT, else a "
    "challenge ACK")
D_LIMIT = Defense(
    "challenge-ack-limit", "tcpsecure 2.2: at most limit_count challenge ACKs per limit_interval seconds "
    "on the connection (the draft suggests 10 per 5 s)")
D_PORTS = Defense(
    "port-randomization", "tcpsecure 1 / RFC 6056 3.3.1: the client picks its ephemeral port at random "
    "(default: the port after the last one, RFC 6056 2.2); matters when the attacker does not know the port")
D_MD5 = Defense("tcp-md5", "RFC 2385 on both ends with a shared key: unsigned segments are dropped unread")

M_PACKETS = Metric("packets_to_success_mean", "segments",
                   "spoofed segments up to and including the one that succeeded, over the successful trials")
M_SECONDS = Metric("seconds_to_success_mean", "s", "virtual time from the attacker's first frame to the "
                   "victim acting on the successful one: packets x frame bits / rate")
M_SENT = Metric("packets_sent_mean", "segments",
                "segments the attack took: up to success, or the whole budget")
M_CHALLENGE = Metric("challenge_acks_sent_mean", "ACKs", "challenge ACKs the attacked endpoint sent")
M_VICTIM = Metric("victim_segments_sent_mean", "segments", "segments the attacked endpoint sent on the "
                  "connection during the attack (RFC 793's ACKs and RSTs, challenge ACKs)")


# --- the scenario ------------------------------------------------------------------------------------


def blind_topology(rate_bps: int, rtt_ns: int) -> Topology:
    """client (10.0.0.1), server (10.0.0.2) and the off-path attacker adv (10.0.0.66) on one
    learning switch "lan". The client's link carries the whole RTT one way and back (rtt/2 each
    way); the attacker's link has `rate_bps` and no delay, so a frame reaches the server the moment
    the attacker's link has serialized it."""
    half = rtt_ns // 2
    return Topology(
        (Segment("lan", SegmentKind.SWITCH),),
        (
            Node("client", (Interface("eth0", "lan", mac_for(1), f"{CLIENT_IP}/24",
                                      link=Link(delay_ns=half)),)),
            Node("server", (Interface("eth0", "lan", mac_for(2), f"{SERVER_IP}/24"),)),
            Node("adv", (Interface("eth0", "lan", mac_for(66), f"{ATTACKER_IP}/24",
                                   link=Link(rate_bps=rate_bps)),),
                 adversary=Position.OFF_PATH),
        ),
        name="tcp-blind",
    )


@dataclass
class Scene:
    """A trial's network with the attacked connection open."""

    sim: Simulator
    net: Network
    client: TcpStack
    server: TcpStack
    victim: Connection  # the server's end: the endpoint the attacker spoofs the client to
    client_conn: Connection
    server_mac: bytes  # what the attacker's ARP learned
    observed_port: int | None  # the client port the attacker saw before the attacked connection
    candidates: list[int]  # the ports the attacker tries, in order
    started: int = 0  # virtual time the attack starts


def open_scene(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None, *,
               ports_known: bool, between: int = 0, ephemeral: tuple[int, int] = DEFAULT_EPHEMERAL) -> Scene:
    """Build the network, let the client connect to the server's port 80 and the attacker resolve
    the server's MAC. Without `ports_known`, first the client visits the attacker's own server
    (which is how the attacker sees one of its ports) and then `between` other servers."""
    sim = Simulator(rng.getrandbits(63))
    rtt = round(float(params["rtt"]) * NS_PER_MS)
    net = build(blind_topology(int(params["rate"]), rtt), sim)
    if pcap is not None:
        net.capture(pcap)
    window, ws = window_and_scale(params)
    key = MD5_KEY if "tcp-md5" in defenses else None
    client_cfg = TcpConfig(port_randomization="port-randomization" in defenses, ephemeral_ports=ephemeral,
                           rcv_buf=window, window_scale=ws, tcp_md5_key=key)
    server_cfg = TcpConfig(
        rst_exact="rst-exact" in defenses, syn_challenge="syn-challenge" in defenses,
        ack_check="ack-check" in defenses, challenge_ack_limit=_limit(params, defenses),
        rcv_buf=window, window_scale=ws, tcp_md5_key=key,
    )
    ch, sh, adv = net.node("client"), net.node("server"), net.adversary
    client = TcpStack(ch, client_cfg, rng=sim.child_rng("tcp:client"))
    server = TcpStack(sh, server_cfg, rng=sim.child_rng("tcp:server"))
    accepted: list[Connection] = []
    server.listen(SERVER_PORT, on_accept=accepted.append)
    server.listen(OTHER_PORT)
    adv.host.ping(SERVER_IP)  # ARP: the attacker learns the server's MAC
    observed = None
    lure: list[Connection] = []
    if not ports_known:
        # the client visits the attacker's web server: its SYN shows the attacker a client port
        own = TcpStack(adv.host, TcpConfig(), rng=sim.child_rng("tcp:adv"))
        own.listen(SERVER_PORT, on_accept=lure.append)
        client.connect((ATTACKER_IP, SERVER_PORT))
        for _ in range(between):
            client.connect((SERVER_IP, OTHER_PORT))
    client_conn = client.connect((SERVER_IP, SERVER_PORT))
    sim.run(until=sim.now + 2 * rtt + 10 * NS_PER_MS)
    victim = next((c for c in accepted if c.key[2] == client_conn.key[0]), None)
    if victim is None or victim.state.name != "ESTABLISHED" or client_conn.state.name != "ESTABLISHED":
        raise RuntimeError("the attacked connection did not establish")
    mac = adv.host.neighbor(SERVER_IP)
    if mac is None:
        raise RuntimeError("the attacker could not resolve the server's MAC")
    if ports_known:
        candidates = [client_conn.key[0]]
    else:
        if not lure:
            raise RuntimeError("the client's visit to the attacker did not arrive")
        observed = lure[0].key[2]
        lo, hi = ephemeral
        candidates = port_candidates(observed, lo, hi)
    return Scene(sim, net, client, server, victim, client_conn, mac, observed, candidates, sim.now)


def template_maker(scene: Scene, flags: TcpFlags, payload: bytes = b"", window: int = 0):
    """The attacker's frame for a client port: from the client's address and port to the server's
    port 80, to the server's MAC its ARP learned."""
    src_mac = scene.net.adversary.host.interfaces["eth0"].mac
    first = SegmentTemplate(src_mac, scene.server_mac, CLIENT_IP, SERVER_IP, scene.candidates[0],
                            SERVER_PORT, flags, window=window, payload=payload)
    return first.with_src_port


class Oracle:
    """What the experiment (not the attacker) sees of the attacked endpoint."""

    def __init__(self, scene: Scene, sweep: BlindSweep, per_port: int) -> None:
        self.scene = scene
        self.sweep = sweep
        ep = scene.victim.endpoint
        self.ep = ep
        c = ep.counters
        self.rx0 = c.segments_received
        self.tx0 = c.segments_sent
        self.ch0 = c.challenge_acks_sent
        self.drop0 = c.dropped_total
        self.delivered0 = c.bytes_delivered
        port = scene.client_conn.key[0]
        # how many frames the attacker spent on the wrong ports before the right one
        self.offset = scene.candidates.index(port) * per_port if port in scene.candidates else None
        self.success_at: int | None = None  # virtual time
        self.packets: int | None = None
        self.queued: bool | None = None

    def succeed(self, queued: bool | None = None) -> None:
        if self.success_at is None:
            c = self.ep.counters
            self.success_at = self.scene.sim.now
            self.packets = (self.offset or 0) + c.segments_received - self.rx0
            self.queued = queued
            # what the victim had sent by then (frames still on the attacker's link arrive after)
            self.tx_at_success = c.segments_sent - self.tx0
            self.ch_at_success = c.challenge_acks_sent - self.ch0
            self.sweep.stop()

    def on_event(self, conn: Connection, ev: Event) -> None:
        # set on the attacked connection only; called for every segment it drops, so kept short
        if type(ev) is ConnectionReset:
            self.succeed()

    def watch_data(self) -> None:
        """Injected bytes leave no event when they go to the reassembly queue, only an ACK: check
        the endpoint's counters after each segment. An attacker segment is either dropped (counted
        by reason) or accepted; the first accepted one is the success."""
        ep = self.ep
        receive = ep.receive
        counters = ep.counters

        def watched(segment: Any, now: int, src_ip: Any = None) -> None:
            receive(segment, now, src_ip)
            if self.success_at is None:
                accepted = (counters.segments_received - self.rx0) - (counters.dropped_total - self.drop0)
                if accepted > 0:
                    self.succeed(queued=counters.bytes_delivered == self.delivered0)

        ep.receive = watched  # type: ignore[method-assign]

    def run(self) -> None:
        """Run the attack to its end: success, or the budget spent."""
        sim = self.scene.sim
        sweep = self.sweep
        rate = sweep.nic.port.rate
        # run in slices of a few batches' link time, to stop soon after a success
        chunk = max(1, 4 * _BATCH * serialization_ns(sweep.frame_length, rate))
        sweep.start()
        while not sweep.finished and self.success_at is None:
            sim.run(until=sim.now + chunk)

    def result(self, budget: int) -> dict[str, Any]:
        c = self.ep.counters
        ok = self.success_at is not None
        return {
            "success": ok,
            "packets_to_success": self.packets if ok else None,
            "seconds_to_success": (self.success_at - self.scene.started) / NS_PER_S if ok else None,
            "packets_sent": self.packets if ok else budget,
            "challenge_acks_sent": self.ch_at_success if ok else c.challenge_acks_sent - self.ch0,
            "victim_segments_sent": self.tx_at_success if ok else c.segments_sent - self.tx0,
        }


def _close(scene: Scene) -> None:
    scene.net.close()


def _auto_budget(params: Mapping[str, Any], per_port: int) -> int:
    """Budget 0: one full sweep for each port the attacker means to try: the known port, or the
    2N+1 ports after the one it saw (all the sequential allocator can have handed out since)."""
    budget = int(params["budget"])
    if budget:
        return budget
    if bool(params.get("ports_known", True)):
        return per_port
    return per_port * (2 * int(params["connections_between"]) + 1)


def _sweep_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None,
                 flags: TcpFlags, *, data: bool = False) -> dict[str, Any]:
    window, _ = window_and_scale(params)
    known = bool(params["ports_known"])
    between = rng.randint(0, 2 * int(params["connections_between"])) if not known else 0
    scene = open_scene(params, defenses, rng, pcap, ports_known=known, between=between)
    try:
        n = sweep_length(window)
        per_port = 2 * n if data else n
        budget = _auto_budget(params, per_port)
        payload = _payload(params) if data else b""
        ports = scene.candidates[: -(-budget // per_port)]
        make = template_maker(scene, flags, payload=payload, window=0 if flags == TcpFlags.RST else 65535)
        sweep = BlindSweep(scene.net.adversary, ports, make, step=window, per_port=per_port, budget=budget,
                           rng=rng, ack_pairs=data, batch=_BATCH)
        oracle = Oracle(scene, sweep, per_port)
        scene.victim.on_event = oracle.on_event
        if data:
            oracle.watch_data()
        oracle.run()
        out = oracle.result(budget)
        if data:
            out["queued"] = (1.0 if oracle.queued else 0.0) if oracle.queued is not None else None
        return out
    finally:
        _close(scene)


def _payload(params: Mapping[str, Any]) -> bytes:
    n = int(params["payload"])
    return (b"INJECTED" * (n // 8 + 1))[:n]


# --- expectations -----------------------------------------------------------------------------------


def _port_positions(params: Mapping[str, Any], defenses: frozenset[str],
                    n_ports: int) -> list[tuple[int, float]]:
    """(position of the client's port in the attacker's candidate list, probability)."""
    if bool(params.get("ports_known", True)):
        return [(0, 1.0)]
    if "port-randomization" in defenses:
        # RFC 6056 3.3.1: any port but the one seen, wherever it sits in the attacker's order
        return [(j, 1.0 / (n_ports - 1)) for j in range(n_ports - 1)]
    k = 2 * int(params["connections_between"]) + 1
    return [(j, 1.0 / k) for j in range(k)]  # sequential: right after the other connections


def _expect_sweep(params: Mapping[str, Any], defenses: frozenset[str], *, step: int, target: int,
                  per_port_guesses: int, frames_per_guess: int, budget: int,
                  frame_len: int) -> dict[str, float]:
    """P(success), E[packets | success] and the time they take, for a sweep port after port. With two
    frames per guess (tcpsecure 4.1's ACK pair) exactly one of them carries an acceptable ACK."""
    n_ports = DEFAULT_EPHEMERAL[1] - DEFAULT_EPHEMERAL[0] + 1
    per_port = per_port_guesses * frames_per_guess
    p_total = 0.0
    pk_total = 0.0
    for j, pj in _port_positions(params, defenses, n_ports):
        left = budget - j * per_port
        if left <= 0:
            continue
        guesses = min(per_port_guesses, left // frames_per_guess)
        c, s = sweep_hits(step, target, guesses)
        if frames_per_guess == 2:
            # first hit at guess i (1-based): frame 2i-1 or 2i with the acceptable ACK, 1/2 each
            mean_frames_sum = 2 * s - 0.5 * c
            if left % 2 and guesses < per_port_guesses:  # an odd budget: one frame of one more guess
                c1, s1 = sweep_hits(step, target, guesses + 1)
                extra = (c1 - c) / 2
                c += extra
                mean_frames_sum += extra * (2 * guesses + 1)
        else:
            mean_frames_sum = s
        p = c / SEQ_SPACE
        p_total += pj * p
        pk_total += pj * (p * j * per_port + mean_frames_sum / SEQ_SPACE)
    ser = serialization_ns(frame_len, int(params["rate"]))
    packets = pk_total / p_total if p_total else math.nan
    out = {"success_rate": p_total, "packets_to_success_mean": packets}
    out["seconds_to_success_mean"] = out["packets_to_success_mean"] * ser / NS_PER_S
    p = out["success_rate"]
    out["packets_sent_mean"] = p * out["packets_to_success_mean"] + (1 - p) * budget
    return out


# === tcp.blind-rst (section 2) ========================================================================


def blind_rst_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                    pcap: str | None = None) -> dict[str, Any]:
    """RSTs spoofed as the client, SEG.SEQ stepping by the server's window from a random start; success
    when the server's connection is reset."""
    return _sweep_trial(params, defenses, rng, pcap, TcpFlags.RST)


def blind_rst_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """tcpsecure 2.1: a reset within 2^32/RCV.WND guesses, 2^32/(2 RCV.WND) on average (exactly:
    `sweep_hits`). 2.2: with rst-exact only SEG.SEQ == RCV.NXT resets, 1 number of 2^32, and each
    guess that lands elsewhere in the window (RCV.WND - 1 of 2^32) draws a challenge ACK."""
    window, _ = window_and_scale(params)
    n = sweep_length(window)
    budget = _auto_budget(params, n)
    exact = "rst-exact" in defenses
    out = _expect_sweep(params, defenses, step=window, target=1 if exact else window, per_port_guesses=n,
                        frames_per_guess=1, budget=budget, frame_len=RST_FRAME)
    challenged = 0.0
    if exact:
        # guesses at the right port that land in the window but not on RCV.NXT
        at_port = sum(pj * max(0, min(n, budget - j * n)) for j, pj in
                      _port_positions(params, defenses, DEFAULT_EPHEMERAL[1] - DEFAULT_EPHEMERAL[0] + 1))
        challenged = at_port * (window - 1) / SEQ_SPACE
    out["challenge_acks_sent_mean"] = challenged
    out["victim_segments_sent_mean"] = challenged
    return out


# === tcp.blind-syn (section 3) ========================================================================


def blind_syn_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                    pcap: str | None = None) -> dict[str, Any]:
    """SYNs spoofed as the client, SEG.SEQ stepping by the window; success when the server resets the
    connection (RFC 793: an in-window SYN is an error, RST and close)."""
    return _sweep_trial(params, defenses, rng, pcap, TcpFlags.SYN)


def blind_syn_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """tcpsecure 3.1: the same sweep as for RSTs; RFC 793 answers each out-of-window SYN with an ACK
    and the in-window one with a RST. 3.2: with syn-challenge every SYN gets a challenge ACK (as
    many as the limit lets out) and none resets: "complete protection"."""
    window, _ = window_and_scale(params)
    n = sweep_length(window)
    budget = _auto_budget(params, n)
    ser = serialization_ns(RST_FRAME, int(params["rate"]))
    if "syn-challenge" in defenses:
        at_port = sum(pj * max(0, min(n, budget - j * n)) for j, pj in
                      _port_positions(params, defenses, DEFAULT_EPHEMERAL[1] - DEFAULT_EPHEMERAL[0] + 1))
        acks = float(at_port)
        lim = _limit(params, defenses)
        if lim is not None and bool(params["ports_known"]):
            acks = float(throttled_acks(int(at_port), ser, lim[0], round(lim[1] * NS_PER_S)))
        return {"success_rate": 0.0, "packets_sent_mean": float(budget), "challenge_acks_sent_mean": acks,
                "victim_segments_sent_mean": acks}
    out = _expect_sweep(params, defenses, step=window, target=window, per_port_guesses=n, frames_per_guess=1,
                        budget=budget, frame_len=RST_FRAME)
    out["challenge_acks_sent_mean"] = 0.0
    if bool(params["ports_known"]):
        # an ACK for every SYN before the hit, a RST for the hit
        out["victim_segments_sent_mean"] = out["packets_sent_mean"]
    return out


# === tcp.blind-data-injection (section 4) =============================================================


def blind_data_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                     pcap: str | None = None) -> dict[str, Any]:
    """Data segments spoofed as the client: SEG.SEQ stepping by the window, each sent with two ACK
    guesses 2^31 apart; success when the server accepts injected bytes, into its receive stream
    (in order, at RCV.NXT) or its reassembly queue (beyond RCV.NXT, the usual case): `queued` says
    which."""
    return _sweep_trial(params, defenses, rng, pcap, TcpFlags.ACK | TcpFlags.PSH, data=True)


def blind_data_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """tcpsecure 4.1: "1 in ((2^32 / RCV.WND) * 2)" per segment, so within 2 * 2^32/RCV.WND segments
    and 2^32/RCV.WND on average. A payload of L bytes is acceptable from L-1 numbers below RCV.NXT
    too (RFC 793's test looks at its last byte), so the target is RCV.WND + L - 1 numbers; the draft
    counts L = 1. 4.2: ack-check accepts only MAX.SND.WND + 1 of the 2^32 ACK values (nothing is
    outstanding), so of a pair of guesses 2^31 apart one is acceptable with probability
    2 (MAX.SND.WND + 1) / 2^32; RFC 2385 stops everything."""
    window, _ = window_and_scale(params)
    n = sweep_length(window)
    per_port = 2 * n
    budget = _auto_budget(params, per_port)
    length = int(params["payload"])
    frame = max(RST_FRAME, 54 + length)
    if "tcp-md5" in defenses:
        return {"success_rate": 0.0, "packets_sent_mean": float(budget), "challenge_acks_sent_mean": 0.0,
                "victim_segments_sent_mean": 0.0}
    target = window + length - 1
    if "ack-check" in defenses:
        max_snd_wnd = window  # the client advertises the same window
        odds = 2 * (max_snd_wnd + 1) / SEQ_SPACE
        at_port = sum(pj * max(0, min(per_port, budget - j * per_port)) for j, pj in
                      _port_positions(params, defenses, DEFAULT_EPHEMERAL[1] - DEFAULT_EPHEMERAL[0] + 1))
        hits = at_port / 2 * target / SEQ_SPACE  # guesses landing in the window
        p = min(1.0, hits * odds)
        ser = serialization_ns(frame, int(params["rate"]))
        packets = (budget + 1) / 2
        return {"success_rate": p, "packets_to_success_mean": packets,
                "seconds_to_success_mean": packets * ser / NS_PER_S,
                "packets_sent_mean": p * packets + (1 - p) * budget,
                "challenge_acks_sent_mean": 2 * hits * (1 - odds),
                "victim_segments_sent_mean": float(at_port)}
    out = _expect_sweep(params, defenses, step=window, target=target, per_port_guesses=n, frames_per_guess=2,
                        budget=budget, frame_len=frame)
    out["challenge_acks_sent_mean"] = 0.0
    if bool(params["ports_known"]):
        out["victim_segments_sent_mean"] = out["packets_sent_mean"]  # an ACK for every segment
    return out


# === tcp.port-guessing (section 1) ====================================================================


def _port_range(params: Mapping[str, Any]) -> tuple[int, int]:
    size = int(params["port_range"])
    return 65536 - size, 65535


def port_guessing_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                        pcap: str | None = None) -> dict[str, Any]:
    """The port factor alone: the attacker saw one earlier client port and is given an in-window
    sequence number; it sends one RST per candidate port, upwards from the port it saw. Success
    when the attacked connection is reset; packets_to_success is the number of port guesses."""
    lo, hi = _port_range(params)
    between = rng.randint(0, 2 * int(params["connections_between"]))
    p = dict(params)
    p.setdefault("window", 65535)
    p.setdefault("window_scale", -1)
    scene = open_scene(p, defenses, rng, pcap, ports_known=False, between=between, ephemeral=(lo, hi))
    try:
        budget = int(params["budget"]) or len(scene.candidates)
        ports = scene.candidates[:budget]
        # the one thing handed to the attacker: a sequence number inside the server's window
        seq = (scene.victim.endpoint.rcv_nxt + rng.randrange(scene.victim.endpoint.rcv_wnd)) & 0xFFFFFFFF
        sweep = BlindSweep(scene.net.adversary, ports, template_maker(scene, TcpFlags.RST), step=1,
                           per_port=1, budget=budget, rng=rng, start=seq, batch=_BATCH)
        oracle = Oracle(scene, sweep, 1)
        scene.victim.on_event = oracle.on_event
        oracle.run()
        out = oracle.result(budget)
        del out["challenge_acks_sent"], out["victim_segments_sent"]
        return out
    finally:
        _close(scene)


def port_guessing_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Sequential ports (RFC 6056 2.2): the attacked connection has the port right after the
    client's other connections, k + 1 guesses for k ~ uniform(0, 2N), N + 1 on average. Random
    ports (RFC 6056 3.3.1): any position of the range but the seen port's, (range size)/2 on
    average: the factor by which port randomization multiplies tcp.blind-rst's sweep."""
    lo, hi = _port_range(params)
    n = hi - lo + 1
    budget = int(params["budget"]) or n
    if "port-randomization" in defenses:
        positions = [(j + 1, 1.0 / (n - 1)) for j in range(n - 1)]
    else:
        k = 2 * int(params["connections_between"]) + 1
        positions = [(j + 1, 1.0 / k) for j in range(k)]
    p = sum(pj for g, pj in positions if g <= budget)
    mean = sum(g * pj for g, pj in positions if g <= budget) / p if p else math.nan
    ser = serialization_ns(RST_FRAME, int(params["rate"]))
    return {"success_rate": p, "packets_to_success_mean": mean,
            "seconds_to_success_mean": mean * ser / NS_PER_S,
            "packets_sent_mean": p * mean + (1 - p) * budget}


# === live peers =======================================================================================
# `threatlab live ID --peer linux` (threatlab.tcp.live): the same probe classes against the kernel's
# TCP. Imported when called, so the catalogue loads without the live machinery; module-level
# functions, so the entries stay picklable for sweeps in worker processes.


def live_linux_blind_rst(params: Mapping[str, Any], defenses: frozenset[str], **kw: Any) -> Mapping[str, Any]:
    from threatlab.tcp.live import live_blind_rst

    return live_blind_rst(params, defenses, **kw)


def live_linux_blind_syn(params: Mapping[str, Any], defenses: frozenset[str], **kw: Any) -> Mapping[str, Any]:
    from threatlab.tcp.live import live_blind_syn

    return live_blind_syn(params, defenses, **kw)


def live_linux_blind_data(params: Mapping[str, Any], defenses: frozenset[str],
                          **kw: Any) -> Mapping[str, Any]:
    from threatlab.tcp.live import live_blind_data_injection

    return live_blind_data_injection(params, defenses, **kw)


# === the entries ======================================================================================

_SEQ_KNOWLEDGE = ("the client's and server's addresses and the server's port; the client's port unless "
                  "ports_known is false; the server's receive window (it steps by it); nothing of the "
                  "sequence state: it starts at a random number and never sees a reply")

BLIND_RST = Threat(
    id="tcp.blind-rst",
    title="Blind reset with in-window RSTs",
    source=_source("2"),
    position=Position.OFF_PATH,
    knowledge=_SEQ_KNOWLEDGE,
    params=_window_params() + _attacker_params(
        "spoofed RSTs the attacker may send; 0: one full sweep, ceil(2^32/window), per port it tries "
        "(with ports_known false: the 2N+1 ports after the one it saw)") + _port_params() + _limit_params(),
    defenses=(D_RST_EXACT, D_LIMIT, D_PORTS),
    metrics=(SUCCESS_RATE, M_PACKETS, M_SECONDS, M_SENT, M_CHALLENGE, M_VICTIM),
    run=blind_rst_trial,
    expected=blind_rst_expected,
    default_trials=20,
    summary=("An off-path attacker spoofing the client sends RSTs whose sequence numbers step by RCV.WND "
             "across the 2^32 space (65,538 for RCV.WND = 65,535, each through the simulated switch and "
             "the server's TCP) until the connection resets or the budget is spent. RFC 793 resets on "
             "any RST in the window; rst-exact (tcpsecure 2.2) only on SEG.SEQ == RCV.NXT. Default "
             "trials: 20, so that `threatlab run tcp.blind-rst` (two rows, about 2 million segments) "
             "takes about 13 s of CPU."),
    tags=("tcpsecure", "blind", "reset"),
    peers={"linux": live_linux_blind_rst},
)

BLIND_SYN = Threat(
    id="tcp.blind-syn",
    title="Blind reset with in-window SYNs",
    source=_source("3"),
    position=Position.OFF_PATH,
    knowledge=_SEQ_KNOWLEDGE,
    params=_window_params() + _attacker_params(
        "spoofed SYNs the attacker may send; 0: one full sweep per port it tries") + _port_params()
    + _limit_params(),
    defenses=(D_SYN_CHALLENGE, D_LIMIT, D_PORTS),
    metrics=(SUCCESS_RATE, M_PACKETS, M_SECONDS, M_SENT, M_CHALLENGE, M_VICTIM),
    run=blind_syn_trial,
    expected=blind_syn_expected,
    default_trials=8,
    summary=("SYNs spoofed as the client, sequence numbers stepping by RCV.WND. RFC 793 answers an "
             "out-of-window SYN with an ACK and an in-window one with a RST and the end of the "
             "connection; syn-challenge (tcpsecure 3.2) answers every SYN with a challenge ACK, which "
             "challenge-ack-limit throttles. Default trials: 8, so that `threatlab run tcp.blind-syn` takes "
             "about 14 s of CPU (RFC 793's ACK for each SYN crosses the network too)."),
    tags=("tcpsecure", "blind", "reset"),
    peers={"linux": live_linux_blind_syn},
)

BLIND_DATA = Threat(
    id="tcp.blind-data-injection",
    title="Blind data injection with guessed SEQ and two ACK guesses",
    source=_source("4"),
    position=Position.OFF_PATH,
    knowledge=_SEQ_KNOWLEDGE + "; that RFC 793 accepts any SEG.ACK in the half of the space below SND.NXT",
    params=_window_params() + _attacker_params(
        "spoofed data segments the attacker may send (two per sequence guess); 0: one full sweep, "
        "2 ceil(2^32/window), per port it tries") + _port_params() + _limit_params() + (
        Param("payload", "bytes", 1, "bytes injected per segment (the draft's odds are exact for 1)", min=1,
              max=1400),),
    defenses=(D_ACK_CHECK, D_LIMIT, D_MD5, D_PORTS),
    metrics=(SUCCESS_RATE, M_PACKETS, M_SECONDS, M_SENT, M_CHALLENGE, M_VICTIM,
             Metric("queued_mean", "share of successes", "injected bytes that went to the reassembly queue "
                    "(beyond RCV.NXT) rather than straight to the application")),
    run=blind_data_trial,
    expected=blind_data_expected,
    default_trials=5,
    summary=("Data segments spoofed as the client: SEG.SEQ stepping by RCV.WND, two SEG.ACK guesses 2^31 "
             "apart per sequence guess, so under RFC 793 each segment lands with odds 1 in "
             "((2^32/RCV.WND) * 2). Success: the server accepts the bytes, into its reassembly queue or "
             "its receive stream. ack-check (tcpsecure 4.2) narrows the acceptable ACKs to MAX.SND.WND; "
             "tcp-md5 (RFC 2385) drops every unsigned segment. Default trials: 5, so that `threatlab run "
             "tcp.blind-data-injection` (about 1 million segments, half of them answered by an ACK) takes "
             "about 15 s of CPU."),
    tags=("tcpsecure", "blind", "injection"),
    peers={"linux": live_linux_blind_data},
)

PORT_GUESSING = Threat(
    id="tcp.port-guessing",
    title="Guessing the client's ephemeral port",
    source=_source("1"),
    position=Position.OFF_PATH,
    knowledge=("the ephemeral port range; one port the client used shortly before (it visited the "
               "attacker's own server); and, to measure the port factor alone, a sequence number in the "
               "server's window"),
    params=(
        Param("port_range", "ports", 16384, "size of the client's ephemeral range, which ends at 65535 "
              "(RFC 6335: 49152-65535)", min=16, max=64512),
        Param("connections_between", "connections", 2, "the client opens uniform(0, 2N) other connections "
              "between the attacker's sighting and the attacked one", min=0, max=1000),
        Param("rate", "bit/s", 1_000_000, "the attacker's link", min=1000, max=10**11),
        Param("rtt", "ms", 20.0, "round-trip time of the client-server path", min=0, max=5000),
        Param("budget", "segments", 0, "port guesses (one RST each); 0: the whole range", min=0, max=64512),
    ),
    defenses=(D_PORTS,),
    metrics=(SUCCESS_RATE,
             Metric("packets_to_success_mean", "ports", "port guesses up to the right one: the factor by "
                    "which not knowing the port multiplies a blind sweep"), M_SECONDS, M_SENT),
    run=port_guessing_trial,
    expected=port_guessing_expected,
    default_trials=110,
    summary=("How much the client's ephemeral port adds to a blind attacker's search (tcpsecure 1, "
             "RFC 6056). "
             "The attacker saw one earlier port and tries ports upwards from it, one in-window RST each. "
             "Sequential allocation gives the port away within a few guesses; port-randomization makes it "
             "about range/2. Default trials: 110, so that `threatlab run tcp.port-guessing` takes about "
             "12 s of CPU."),
    tags=("tcpsecure", "blind", "ports"),
)

BLIND_THREATS: tuple[Threat, ...] = (BLIND_RST, BLIND_SYN, BLIND_DATA, PORT_GUESSING)
THREATS: tuple[Threat, ...] = BLIND_THREATS + CHALLENGE_THREATS
