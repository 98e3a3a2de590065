"""Overlay nodes on the simulated network, at 10^4 peers, and the attackers of draft-song 4.2 / figure 6.

    sim = Simulator(seed=1)
    net = converged_overlay(sim, 10_000, PeerConfig(), attack="misroute", malicious_fraction=0.2)
    stats = measure_lookups(net, 2_000)          # lookup failure rate, hops, as the vector engine reports

Overlay transport. A full `net.Host` per peer (Ethernet, ARP, IPv4, UDP sockets) costs far more than
the overlay itself at 10^4 peers, so `OverlayNet` is a lighter link layer on the same `Simulator`:
every message is still encoded to bytes by `wire`, carried as bytes with a per-link latency
(`latency_ns` plus a fixed per-pair share of `jitter_ns`, so each link is FIFO), optionally lost, and
decoded by the receiving peer. Links are addressed by Node-ID, as RELOAD's connection table is (see
`peer`). `capture(path)` writes every datagram as Ethernet/IPv4/UDP (port 6085, which Wireshark's
RELOAD heuristic dissector reads) to a pcap.

Two ways to build a ring:
- `converged_overlay`: routing tables installed from the sorted ID list (successor and predecessor
  lists, fingers[i] = successor(n + 2^i)) - the state stabilization converges to. Seconds for 10^4.
- `joined_overlay`: every peer joins for real through a bootstrap peer (Attach, Join, Update) and the
  timers stabilize the ring; for small N (hundreds).

Attackers are honest peers that override one method, `choose_next_hop`, as asyncssh's tests build
theirs: `DroppingPeer` (discard what it should forward), `MisroutingPeer` (forward to a colluder that
answers as the responsible node: the first malicious node after the key's true responsible node, as
the vectorized engine's `misroute` does) and `FabricatingPeer` (answer "I am responsible" itself).
"""

from __future__ import annotations

import bisect
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from threatlab.errors import ParamError
from threatlab.net.pcap import PcapWriter
from threatlab.net.sim import NS_PER_MS, NS_PER_S, Simulator, Timer
from threatlab.net.wire import UDP, Ethernet, IPv4
from threatlab.overlay import ids
from threatlab.overlay.enrollment import Credentials, EnrollmentConfig, EnrollmentServer
from threatlab.overlay.ids import MASK
from threatlab.overlay.peer import DROP, LookupDone, OverlayPeer, PeerConfig, State

__all__ = [
    "ATTACKERS",
    "Collusion",
    "DroppingPeer",
    "FabricatingPeer",
    "MisroutingPeer",
    "OverlayNet",
    "converged_overlay",
    "joined_overlay",
    "measure_lookups",
    "ring_errors",
]

RELOAD_UDP_PORT = 6085  # not 6084 (RELOAD over DTLS with framing): plain messages, heuristic dissector


# -- attackers ------------------------------------------------------------------------------------


class Collusion:
    """What colluding attackers share: one view of the ring and of who is malicious."""

    def __init__(self, ring: list[int], malicious: list[int]) -> None:
        self.ring = sorted(ring)
        self.malicious = sorted(malicious)

    def root(self, key: int) -> int:
        i = bisect.bisect_left(self.ring, key)
        return self.ring[i % len(self.ring)]

    def fake_root(self, key: int) -> int:
        """The first malicious node after the key's true responsible node: its Node-ID follows the
        key, so its claim to be responsible looks plausible to a querier that knows little."""
        i = bisect.bisect_right(self.malicious, self.root(key))
        return self.malicious[i % len(self.malicious)]


class DroppingPeer(OverlayPeer):
    """draft-song 4.2: "discard the messages when forwarding"."""

    def choose_next_hop(self, key: int, skip: int) -> int | None:
        return DROP


class MisroutingPeer(OverlayPeer):
    """draft-song 4.2: "forward the message to a wrong next hop", a colluder that answers for the key."""

    collusion: Collusion

    def choose_next_hop(self, key: int, skip: int) -> int | None:
        fake = self.collusion.fake_root(key)
        return None if fake == self.node_id else fake


class FabricatingPeer(OverlayPeer):
    """draft-song figure 6: "fabricated response from the intermediate peer"."""

    def choose_next_hop(self, key: int, skip: int) -> int | None:
        return None


ATTACKERS: dict[str, type[OverlayPeer]] = {
    "drop": DroppingPeer,
    "misroute": MisroutingPeer,
    "false-answer": FabricatingPeer,
}


# -- the transport ----------------------------------------------------------------------------------


@dataclass
class OverlayNet:
    """Overlay nodes by Node-ID on a Simulator, with a byte-carrying link layer."""

    sim: Simulator
    latency_ns: int = 10 * NS_PER_MS
    jitter_ns: int = 40 * NS_PER_MS
    loss: float = 0.0
    nodes: dict[int, OverlayPeer] = field(default_factory=dict)
    events: list[tuple[int, int, object]] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    build: str = ""  # "converged" or "joined": how the ring was made
    build_seconds: float = 0.0
    collusion: Collusion | None = None
    _timers: dict[int, Timer] = field(default_factory=dict)
    _rng: random.Random | None = None
    _pcap: PcapWriter | None = None
    _addr: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ParamError(f"parameter loss={self.loss!r}: allowed: float in [0, 1)")
        self._rng = self.sim.child_rng("overlay-transport")

    # nodes

    def add(self, peer: OverlayPeer) -> OverlayPeer:
        if peer.node_id in self.nodes:
            raise ParamError(f"Node-ID {ids.short(peer.node_id)} is already on the network")
        self.nodes[peer.node_id] = peer
        self._addr.setdefault(peer.node_id, len(self._addr) + 1)
        return peer

    def crash(self, node_id: int) -> None:
        """The node vanishes without a word (churn, or an attacker going dark)."""
        self.nodes.pop(node_id, None)
        t = self._timers.pop(node_id, None)
        if t is not None:
            t.cancel()

    def service(self, peer: OverlayPeer) -> None:
        """Send what `peer` queued, collect its events, keep its timer scheduled: call after any
        user call on a peer (join, lookup, store, ...)."""
        now = self.sim.now
        out = peer.datagrams_to_send(now)
        if out:
            src = peer.node_id
            for dst, data in out:
                self._transmit(src, dst, data)
        evs = peer.events()
        if evs:
            nid = peer.node_id
            self.events.extend((now, nid, e) for e in evs)
        t = peer.next_timer()
        nid = peer.node_id
        cur = self._timers.get(nid)
        if t is None:
            if cur is not None:
                cur.cancel()
                del self._timers[nid]
        elif cur is None or not cur.active or cur.time != max(t, now):
            if cur is not None:
                cur.cancel()
            if nid in self.nodes:
                self._timers[nid] = self.sim.at(max(t, now), self._fire, nid)

    def _fire(self, nid: int) -> None:
        peer = self.nodes.get(nid)
        if peer is None:
            return
        self._timers.pop(nid, None)
        peer.handle_timer(self.sim.now)
        self.service(peer)

    def _transmit(self, src: int, dst: int, data: bytes) -> None:
        self.counters["datagrams"] += 1
        self.counters["bytes"] += len(data)
        if self._pcap is not None:
            self._write_pcap(src, dst, data)
        if self.loss and self._rng.random() < self.loss:
            self.counters["lost"] += 1
            return
        mix = ((src * 0x9E3779B97F4A7C15) ^ dst) & 0xFFFFFFFF
        delay = self.latency_ns + (mix % self.jitter_ns if self.jitter_ns else 0)
        self.sim.post(delay, self._arrive, src, dst, data)

    def _arrive(self, src: int, dst: int, data: bytes) -> None:
        peer = self.nodes.get(dst)
        if peer is None:
            self.counters["to absent node"] += 1
            return
        peer.receive(data, src, self.sim.now)
        self.service(peer)

    # pcap

    def capture(self, path) -> PcapWriter:
        """Write every datagram from now on as Ethernet/IPv4/UDP frames (10.x.y.z per node)."""
        self._pcap = PcapWriter(path)
        return self._pcap

    def close(self) -> None:
        if self._pcap is not None:
            self._pcap.close()
            self._pcap = None

    def _ip(self, nid: int) -> IPv4Address:
        a = self._addr.setdefault(nid, len(self._addr) + 1)
        return IPv4Address((10 << 24) | a)

    def _write_pcap(self, src: int, dst: int, data: bytes) -> None:
        s, d = self._ip(src), self._ip(dst)
        udp = UDP(RELOAD_UDP_PORT, RELOAD_UDP_PORT, data).encode(s, d)
        ip = IPv4(src=s, dst=d, proto=17, payload=udp).encode()
        self._pcap.write(
            Ethernet(b"\x02\x00" + d.packed, b"\x02\x00" + s.packed, 0x0800, ip).encode(), self.sim.now
        )

    # views

    def peers(self) -> list[OverlayPeer]:
        return [p for p in self.nodes.values() if not p.config.client]

    def honest(self) -> list[OverlayPeer]:
        return [p for p in self.peers() if type(p) is OverlayPeer]

    def drops(self) -> Counter:
        c: Counter = Counter()
        for p in self.nodes.values():
            c.update(p.drops)
        return c

    def run_for(self, ns: int) -> None:
        self.sim.run(self.sim.now + ns)


# -- building rings ---------------------------------------------------------------------------------


def _pick_ids(n: int, rng: random.Random) -> list[int]:
    out: set[int] = set()
    while len(out) < n:
        out.add(ids.random_id(rng))
    return list(out)


def _identities(n, config, rng, enrollment: EnrollmentServer | None):
    """Node-IDs (and credentials when a defense needs them): the enrollment server chooses the IDs."""
    if enrollment is None:
        return [(i, None) for i in _pick_ids(n, rng)], None
    out = []
    for k in range(n):
        c = Credentials.create(enrollment, f"user{k}@threatlab.example", rng)
        out.append((c.node_id, c))
    return out, enrollment.ca_certificate


def _make_peer(cls, node_id, config, sim, creds, ca, collusion):
    p = cls(node_id, config, sim.child_rng(f"peer-{node_id:032x}"), creds, ca=ca)
    if collusion is not None:
        p.collusion = collusion
    return p


def _malicious(n: int, fraction: float, rng: random.Random) -> set[int]:
    if not 0.0 <= fraction < 1.0:
        raise ParamError(f"parameter malicious_fraction={fraction!r}: allowed: float in [0, 1)")
    return set(rng.sample(range(n), round(fraction * n)))


def converged_overlay(
    sim: Simulator,
    n: int,
    config: PeerConfig | None = None,
    *,
    attack: str | None = None,
    malicious_fraction: float = 0.0,
    node_ids: list[int] | None = None,
    malicious_ids: set[int] | None = None,
    enrollment: EnrollmentServer | None = None,
    **net_kw,
) -> OverlayNet:
    """N peers with the routing state a stabilized ring has, installed directly (no join messages).

    `node_ids` / `malicious_ids` fix the ring (e.g. to compare with the vector engine on the same
    ring); otherwise IDs are random (or the enrollment server's when a defense needs credentials)
    and round(f N) peers, a uniform random subset, run `ATTACKERS[attack]`."""
    if n < 2:
        raise ParamError(f"parameter n={n!r}: allowed: int >= 2")
    if attack is not None and attack not in ATTACKERS:
        raise ParamError(f"unknown attack {attack!r}; allowed: {', '.join(sorted(ATTACKERS))}")
    config = config or PeerConfig()
    t0 = time.perf_counter()
    rng = sim.child_rng("overlay-build")
    if (config.enrollment or config.signatures) and enrollment is None:
        enrollment = EnrollmentServer(EnrollmentConfig(overlay=config.overlay, issuance_limit=None), rng)
    if node_ids is not None:
        idents, ca = [(i, None) for i in node_ids], None
        if enrollment is not None:
            raise ParamError("fixed node_ids and enrollment exclude each other: the server chooses IDs")
    else:
        idents, ca = _identities(n, config, rng, enrollment)
    ring = sorted(i for i, _ in idents)
    if len(set(ring)) != len(ring) or len(ring) != n:
        raise ParamError("node_ids must be n distinct IDs")
    if malicious_ids is None:
        bad_idx = _malicious(n, malicious_fraction, rng) if attack else set()
        malicious_ids = {ring[k] for k in bad_idx}
    net = OverlayNet(sim, **net_kw)
    net.build = "converged"
    cls_bad = ATTACKERS[attack] if attack else OverlayPeer
    collusion = Collusion(ring, sorted(malicious_ids)) if attack == "misroute" and malicious_ids else None
    net.collusion = collusion
    creds = dict(idents)
    r, p = config.successors, config.predecessors
    now = sim.now
    for k, nid in enumerate(ring):
        succ = [ring[(k + j) % n] for j in range(1, min(r, n - 1) + 1)]
        pred = [ring[(k - j) % n] for j in range(1, min(p, n - 1) + 1)]
        fingers = _fingers(ring, k)
        bad = nid in malicious_ids
        peer = _make_peer(
            cls_bad if bad else OverlayPeer, nid, config, sim, creds[nid], ca, collusion if bad else None
        )
        peer.install_tables(succ, pred, fingers, now)
        net.add(peer)
    for peer in net.nodes.values():
        net.service(peer)
    net.build_seconds = time.perf_counter() - t0
    return net


def _fingers(ring: list[int], k: int) -> list[int]:
    """fingers[i] = successor(ring[k] + 2^i) for i in 0..127."""
    n = len(ring)
    me = ring[k]
    succ0 = ring[(k + 1) % n]
    d1 = (succ0 - me) & MASK
    out = []
    for i in range(ids.ID_BITS):
        if (1 << i) <= d1:
            out.append(succ0)
            continue
        j = bisect.bisect_left(ring, (me + (1 << i)) & MASK)
        out.append(ring[j % n])
    return out


def joined_overlay(
    sim: Simulator,
    n: int,
    config: PeerConfig | None = None,
    *,
    join_gap_ns: int = 2 * NS_PER_S,
    settle_ns: int = 120 * NS_PER_S,
    enrollment: EnrollmentServer | None = None,
    **net_kw,
) -> OverlayNet:
    """N honest peers that join one after another through a random joined peer, then stabilize."""
    config = config or PeerConfig()
    t0 = time.perf_counter()
    rng = sim.child_rng("overlay-build")
    if (config.enrollment or config.signatures) and enrollment is None:
        enrollment = EnrollmentServer(EnrollmentConfig(overlay=config.overlay, issuance_limit=None), rng)
    idents, ca = _identities(n, config, rng, enrollment)
    net = OverlayNet(sim, **net_kw)
    net.build = "joined"
    joined: list[int] = []
    for k, (nid, creds) in enumerate(idents):
        peer = net.add(_make_peer(OverlayPeer, nid, config, sim, creds, ca, None))
        peer.join(nid if k == 0 else rng.choice(joined), sim.now)
        net.service(peer)
        net.run_for(join_gap_ns)
        joined.extend(p.node_id for p in net.peers() if p.state is State.JOINED and p.node_id not in joined)
    net.run_for(settle_ns)
    net.build_seconds = time.perf_counter() - t0
    return net


def ring_errors(net: OverlayNet) -> dict[str, int]:
    """How far the joined peers' tables are from the true ring: wrong first successor, wrong first
    predecessor, successor-list entries that differ, fingers that are not successor(n + 2^i)."""
    live = sorted(p.node_id for p in net.peers() if p.state is State.JOINED)
    n = len(live)
    out = Counter()
    for k, nid in enumerate(live):
        p = net.nodes[nid]
        true_succ = [live[(k + j) % n] for j in range(1, min(p.config.successors, n - 1) + 1)]
        if not p.successors or p.successors[0] != true_succ[0]:
            out["successor"] += 1
        if not p.predecessors or p.predecessors[0] != live[(k - 1) % n]:
            out["predecessor"] += 1
        out["successor list entries"] += sum(a != b for a, b in zip(p.successors, true_succ)) + abs(
            len(p.successors) - len(true_succ)
        )
        truth = _fingers(live, k)
        span = (true_succ[-1] - nid) & MASK
        out["fingers"] += sum(1 for i in range(ids.ID_BITS) if (1 << i) > span and p.fingers[i] != truth[i])
    out["peers"] = n
    return dict(out)


# -- measuring --------------------------------------------------------------------------------------


def measure_lookups(
    net: OverlayNet,
    n_lookups: int,
    *,
    rng: random.Random | None = None,
    keys: list[int] | None = None,
    queriers: list[int] | None = None,
    spacing_ns: int = 1 * NS_PER_MS,
) -> dict:
    """Run lookups from honest peers for uniform random keys and score them against the true ring.

    A lookup fails when the querier does not end up with the key's true responsible node (the
    vectorized engine's `lookup_failure_rate`); `mean_hops` is over succeeded lookups (request path
    length); `messages_per_lookup` counts every datagram sent meanwhile, maintenance included."""
    rng = rng or net.sim.child_rng("overlay-lookups")
    honest = sorted(p.node_id for p in net.honest() if p.state is State.JOINED)
    if not honest:
        raise ParamError("no honest joined peer to look up from")
    ring = sorted(p.node_id for p in net.peers() if p.state is State.JOINED)
    if keys is None:
        keys = [ids.random_id(rng) for _ in range(n_lookups)]
    if queriers is None:
        queriers = [rng.choice(honest) for _ in range(n_lookups)]
    start_events = len(net.events)
    start_dgrams = net.counters["datagrams"]
    t0 = time.perf_counter()
    wanted: dict[tuple[int, int], int] = {}
    for k, (q, key) in enumerate(zip(queriers, keys)):
        net.sim.at(net.sim.now + k * spacing_ns, _issue, net, q, key, wanted, k)
    horizon = len(keys) * spacing_ns + 4 * max(p.config.request_timeout_ns for p in net.peers()) + NS_PER_S
    net.run_for(horizon)
    wall = time.perf_counter() - t0
    done: dict[int, LookupDone] = {}
    for _, nid, ev in net.events[start_events:]:
        if type(ev) is LookupDone and (nid, ev.handle) in wanted:
            done[wanted[(nid, ev.handle)]] = ev
    failed = 0
    detected = 0
    hops = []
    per_lookup = []
    for k, key in enumerate(keys):
        ev = done.get(k)
        root = ring[bisect.bisect_left(ring, key) % len(ring)]
        ok = ev is not None and ev.ok and ev.responsible == root
        per_lookup.append((ok, ev.hops if ev is not None else -1, ev.responsible if ev is not None else None))
        if not ok:
            failed += 1
            if ev is None or not ev.ok:
                detected += 1
        else:
            hops.append(ev.hops)
    n = len(keys)
    return {
        "n_nodes": len(ring),
        "n_lookups": n,
        "build": net.build,
        "malicious_fraction": 1 - len(honest) / len(ring),
        "lookup_failure_rate": failed / n,
        "detected_failure_rate": detected / n,
        "wrong_answer_rate": (failed - detected) / n,
        "mean_hops": sum(hops) / len(hops) if hops else float("nan"),
        "messages_per_lookup": (net.counters["datagrams"] - start_dgrams) / n,
        "unfinished": n - len(done),
        "wall_seconds": wall,
        "per_lookup": per_lookup,
    }


def _issue(net: OverlayNet, q: int, key: int, wanted: dict, k: int) -> None:
    peer = net.nodes.get(q)
    if peer is None:
        return
    h = peer.lookup(key, net.sim.now)
    wanted[(q, h)] = k
    net.service(peer)
