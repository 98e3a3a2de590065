"""The churn-driving attacker of draft-song-p2psip-security-eval-00 4.2 ("some attacks may cause the
overlay under high churn rate. Overlay wastes much more traffic to update the routing table, and
transfer relative resource objects under churn"), on the message-level engine.

    out = run_churn(rng, n_peers=200, churners=20, defenses={"enrollment", "join-rate-limit"})

An honest overlay of `n_peers` `OverlayPeer`s (converged tables, maintenance timers running) where every
user has stored its SIP registration. After a quiet window (the reference), `churners` attacker
machines cycle for `attack_s` seconds of virtual time: join for real through a random honest
bootstrap (Attach, Join, Update; the admitting peer hands over the registrations the newcomer is now
responsible for, which the newcomer replicates onwards), stay `dwell_s`, vanish without a word
(`departure="crash"`) or with Leave (`"leave"`, and their data handed back), wait `gap_s`, and come
back - with a fresh Node-ID whenever they can get one. Without enrollment a node makes its own ID;
with it every ID needs a certificate, and the server issues at most `issuance_limit` per account
(the attacker has `accounts`), so a churner must come back under an ID it used before, which the
`join-rate-limit` admitting peer (the ID's successor, always the same peer for the same ID) refuses
for `rejoin_hold_ns`. Honest peers meanwhile do lookups and fetches; the traffic honest peers send
is classified from the wire (message code): routing maintenance (Attach, Join, Update, Leave and their
answers) and data moved (Store requests: handovers and the replicas they trigger).
"""

from __future__ import annotations

import random
from collections import Counter

from threatlab.net.sim import NS_PER_S, Simulator
from threatlab.overlay import ids
from threatlab.overlay.attacks import contact_for
from threatlab.overlay.enrollment import Credentials, EnrollmentConfig, EnrollmentError, EnrollmentServer
from threatlab.overlay.peer import FetchDone, Joined, LookupDone, OverlayPeer, PeerConfig, State
from threatlab.overlay.simnet import OverlayNet, converged_overlay
from threatlab.overlay.wire import MessageCode, decode_header

__all__ = ["run_churn", "PEER_DEFENSES"]

PEER_DEFENSES = ("enrollment", "join-rate-limit", "iterative")  # defense ids that are PeerConfig switches

_MAINTENANCE = {
    MessageCode.ATTACH_REQ, MessageCode.ATTACH_ANS, MessageCode.JOIN_REQ, MessageCode.JOIN_ANS,
    MessageCode.LEAVE_REQ, MessageCode.LEAVE_ANS, MessageCode.UPDATE_REQ, MessageCode.UPDATE_ANS,
}


class _Meter:
    """Wraps the link layer: per window, what honest peers send, by kind."""

    def __init__(self, net: OverlayNet, honest: set[int]) -> None:
        self.honest = honest
        self.window = "warmup"
        self.c: Counter = Counter()
        self._orig = net._transmit
        net._transmit = self._transmit

    def _transmit(self, src: int, dst: int, data: bytes) -> None:
        if src in self.honest:
            info = decode_header(data)
            code = int.from_bytes(data[info.contents_at: info.contents_at + 2], "big")
            w = self.window
            if code in _MAINTENANCE:
                self.c[w, "maintenance"] += 1
            elif code == MessageCode.STORE_REQ:
                self.c[w, "stores"] += 1
                self.c[w, "store_bytes"] += len(data)
            self.c[w, "all"] += 1
        self._orig(src, dst, data)


def run_churn(
    rng: random.Random,
    *,
    n_peers: int = 200,
    churners: int = 20,
    defenses=frozenset(),
    accounts: int = 5,
    issuance_limit: int = 2,
    dwell_s: float = 20.0,
    gap_s: float = 10.0,
    quiet_s: float = 40.0,
    attack_s: float = 180.0,
    probes_per_s: float = 2.0,
    departure: str = "crash",
    rejoin_hold_s: float = 600.0,
) -> dict:
    defenses = frozenset(defenses)
    sim = Simulator(rng.getrandbits(63))
    config = PeerConfig(rejoin_hold_ns=int(rejoin_hold_s * NS_PER_S)).with_defenses(
        sorted(defenses & set(PEER_DEFENSES)))
    server = None
    if config.enrollment:  # RFC 6940 11.3: the server picks Node-IDs and caps certificates per user
        server = EnrollmentServer(EnrollmentConfig(overlay=config.overlay, issuance_limit=issuance_limit), rng)
    net = converged_overlay(sim, n_peers, config, enrollment=server)
    honest = sorted(p.node_id for p in net.peers())
    honest_set = set(honest)
    aor = {}
    for k, nid in enumerate(honest):
        p = net.nodes[nid]
        user = p.credentials.user if p.credentials else f"u{nid:032x}@threatlab.example"
        aor[nid] = (f"sip:{user}", contact_for(k))
        p.store(aor[nid][0], contact_for(k), sim.now)
        net.service(p)
    net.run_for(5 * NS_PER_S)
    meter = _Meter(net, honest_set)
    alive: dict[int, list[list[float]]] = {}  # churner Node-ID -> [[joined at, gone at], ...]
    c: Counter = Counter()
    prng = random.Random(rng.getrandbits(63))
    pools: dict[int, list[Credentials | None]] = {a: [] for a in range(accounts)}

    def identity(slot: int):
        if server is None:
            return ids.random_id(prng), None
        a = slot % accounts
        try:
            cr = Credentials.create(server, f"churn{a}@threatlab.example", prng, sim.now)
            pools[a].append(cr)
            return cr.node_id, cr
        except EnrollmentError:  # out of certificates: come back under an ID used before
            c["certificates refused"] += 1
            free = [cr for cr in pools[a] if cr.node_id not in net.nodes]
            if not free:
                return None, None
            cr = prng.choice(free)
            return cr.node_id, cr

    end_ns = 0

    def join(slot: int) -> None:
        if sim.now >= end_ns:
            return
        nid, cr = identity(slot)
        if nid is None or nid in net.nodes:
            sim.at(sim.now + int(gap_s * NS_PER_S), join, slot)
            return
        peer = OverlayPeer(nid, config, sim.child_rng(f"churner-{slot}-{c['join attempts']}"), cr,
                           ca=server.ca_certificate if server else None)
        net.add(peer)
        c["join attempts"] += 1
        alive.setdefault(nid, []).append([sim.now, float("inf")])
        peer.join(prng.choice(honest), sim.now)
        net.service(peer)
        sim.at(sim.now + int(dwell_s * NS_PER_S), depart, slot, peer)
        sim.at(sim.now + min(int(dwell_s * NS_PER_S) - 1, 10 * NS_PER_S), refused, slot, peer)

    def refused(slot: int, peer: OverlayPeer) -> None:  # not admitted: the machine gives up this cycle
        if peer.state is not State.JOINED and net.nodes.get(peer.node_id) is peer:
            depart(slot, peer)

    def depart(slot: int, peer: OverlayPeer) -> None:
        if net.nodes.get(peer.node_id) is not peer:
            return
        if departure == "leave":
            peer.leave(sim.now)
            net.service(peer)
        net.crash(peer.node_id)
        alive[peer.node_id][-1][1] = sim.now
        sim.at(sim.now + int(gap_s * NS_PER_S), join, slot)

    # honest workload: lookups of random keys and fetches of random users' registrations
    issued: dict[tuple[int, int], tuple[str, str, str | None]] = {}

    def probe(window: str) -> None:
        q = net.nodes[prng.choice(honest)]
        issued[(q.node_id, q.lookup(ids.random_id(prng), sim.now))] = (window, "lookup", None)
        target = prng.choice(honest)
        issued[(q.node_id, q.fetch(aor[target][0], sim.now))] = (window, "fetch", aor[target][1])
        net.service(q)

    def schedule(window: str, start: int, seconds: float) -> None:
        k = int(seconds * probes_per_s)
        for i in range(k):
            sim.at(start + int(i * NS_PER_S / probes_per_s) + prng.randrange(NS_PER_S // 4), probe, window)

    ev_start = len(net.events)
    t_quiet = sim.now
    schedule("quiet", t_quiet, quiet_s)
    meter.window = "quiet"
    net.run_for(int(quiet_s * NS_PER_S))
    meter.window = "attack"
    t_attack = sim.now
    end_ns = t_attack + int(attack_s * NS_PER_S)
    cycle = dwell_s + gap_s
    for slot in range(churners):
        sim.at(t_attack + prng.randrange(int(cycle * NS_PER_S)), join, slot)
    schedule("attack", t_attack, attack_s)
    net.run_for(int(attack_s * NS_PER_S))
    meter.window = "after"
    net.run_for(int(2 * config.request_timeout_ns * (1 + config.retries)))

    def was_alive(nid: int, t: int) -> bool:
        if nid in honest_set:
            return True
        return any(a <= t < b for a, b in alive.get(nid, ()))

    score: Counter = Counter()
    for t, nid, ev in net.events[ev_start:]:
        if type(ev) is Joined and nid in alive:
            c["joins admitted"] += 1
            continue
        tag = issued.get((nid, getattr(ev, "handle", -1)))
        if tag is None or type(ev) not in (LookupDone, FetchDone):
            continue
        window, kind, want = tag
        score[window, kind, "done"] += 1
        if kind == "lookup" and ev.ok and ev.responsible is not None and was_alive(ev.responsible, t):
            score[window, kind, "ok"] += 1
        if kind == "fetch" and ev.ok and want in [x for _, x in ev.contacts]:
            score[window, kind, "ok"] += 1
    n_win = {"quiet": int(quiet_s * probes_per_s), "attack": int(attack_s * probes_per_s)}

    def rate(window: str, kind: str) -> float:
        return score[window, kind, "ok"] / n_win[window] if n_win[window] else float("nan")

    dur = {"quiet": quiet_s, "attack": attack_s}
    refused = sum(p.drops["join-rate-limit: Node-ID rejoined too soon"] for p in net.nodes.values()
                  if p.node_id in honest_set)

    def maint(window: str) -> float:
        return meter.c[window, "maintenance"] / (len(honest) * dur[window])

    return {
        "lookup_failure_rate": 1 - rate("attack", "lookup"),
        "quiet_lookup_failure_rate": 1 - rate("quiet", "lookup"),
        "fetch_availability": rate("attack", "fetch"),
        "quiet_fetch_availability": rate("quiet", "fetch"),
        "maintenance_msgs_per_peer_s": maint("attack"),
        "quiet_maintenance_msgs_per_peer_s": maint("quiet"),
        "rereplication_stores": meter.c["attack", "stores"],
        "rereplication_kbytes": meter.c["attack", "store_bytes"] / 1000,
        "quiet_rereplication_kbytes": meter.c["quiet", "store_bytes"] / 1000,
        "attacker_join_attempts": c["join attempts"],
        "attacker_joins_admitted": c["joins admitted"],
        "attacker_node_ids": len(alive),
        "joins_refused": refused,
        "certificates_refused": c["certificates refused"],
    }
