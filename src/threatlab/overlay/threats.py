"""Catalogue entries for draft-song-p2psip-security-eval-00: the trusted overlay base (figure 4), the
untrusted overlay base (figure 6) and the churn-driving attacks of 4.2.

Two engines. Data-level threats (unauthorized data operations, ID hijack, man in the middle, pollution,
contact flooding, spam, replay, modification when forwarding) run on the message-level engine: a
converged overlay of a few hundred `OverlayPeer`s on the simulator, real Store/Fetch messages, the
peers' own signature, access-control, replay and limit checks (`attacks`). Routing-level threats
(chosen-ID, Sybil, fabricated responses, dropping and misrouting, routing-table poisoning) run on the
vectorized Chord engine at N = 10^5 (`vector_attacks.run_lookups`); there one trial is a batch of
lookups, so success_rate is the mean share of lookups the attacker made fail.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from threatlab.lab.catalogue import SUCCESS_RATE, Defense, Metric, Param, Source, Threat
from threatlab.net.sim import NS_PER_S
from threatlab.net.topology import Position
from threatlab.overlay.attacks import (
    DataWorld,
    Tamperer,
    contact_for,
    evil_contact,
    hijack_node_id,
    is_evil,
    registration,
    store_and_wait,
)
from threatlab.overlay.churn import run_churn
from threatlab.overlay.kademlia_peer import live_kademlia_chosen_id, live_kademlia_pollution
from threatlab.overlay.live import live_drop, live_pollution
from threatlab.overlay.peer import OverlayPeer, PeerConfig, State
from threatlab.overlay.simnet import converged_overlay, measure_lookups
from threatlab.overlay.storage import storage_time_ms
from threatlab.overlay.vector import ID_BITS, finger_table, make_ring, useful_levels
from threatlab.overlay.vector_attacks import expected_lookup_failure, run_lookups

__all__ = ["THREATS"]

DRAFT = "draft-song-p2psip-security-eval-00"
SEED_FILE = "004_4e06618dac3b8aab.txt"


def _source(section: str) -> Source:
    return Source(seed_file=SEED_FILE, section=section, draft=DRAFT)


D = {
    "enrollment": Defense("enrollment", "an enrollment server issues certificates binding random, server-chosen "
                                        "Node-IDs to users (figure 6 'Enrollment Server'; RFC 6940 11)"),
    "signatures": Defense("signatures", "every message and stored value is signed; receivers and fetchers "
                                        "verify and enforce USER-NODE-MATCH (figure 4 'Certificate Mechanism')"),
    "replay-protection": Defense("replay-protection", "repeated transaction ids dropped; a stored value must be "
                                                      "within the replay window and newer than the one it "
                                                      "replaces (figure 6 'Timestamp')"),
    "publication-limit": Defense("publication-limit", "at most `publication_limit` values per writer per peer "
                                                      "(figure 4 'Limit one's publication number')"),
    "blacklist": Defense("blacklist", "peers refuse values naming a contact the operator lists (the victim asked "
                                      "to be listed) (figure 4 'Black List')"),
    "verify-responsible": Defense("verify-responsible", "iterative routing with checks at the querier: a "
                                                        "responder whose Node-ID cannot be responsible is "
                                                        "rejected and the previous hop asked for its next-best "
                                                        "entry (6 open issue 2; vector engine 'verify')"),
    "redundant": Defense("redundant", "redundant routing: `redundancy` copies through different first hops, "
                                      "majority answer (Castro et al. 2002)"),
    "iterative": Defense("iterative", "iterative routing: the querier asks each hop itself and routes around "
                                      "a hop that times out (vector engine 'verify' against droppers)"),
    "constrained-tables": Defense("constrained-tables", "finger i must be successor(n + 2^i): anyone can check "
                                                        "an update, so poisoned entries are refused"),
    "halo": Defense("halo", "Halo (NDSS 2008): redundant searches through the key's knuckles, closest "
                            "answer after the key wins"),
}

# catalogue defense id -> the vectorized engine's defense
_VECTOR = {
    "enrollment": "enrollment",
    "verify-responsible": "verify",
    "iterative": "verify",
    "redundant": "redundant",
    "constrained-tables": "constrained",
    "halo": "halo",
}


# === routing-level threats on the vectorized engine ======================================================


def _vector_params(f: float, lookups: int = 2000) -> tuple[Param, ...]:
    return (
        Param("n_nodes", "nodes", 100_000, "overlay size", min=16, max=10**7),
        Param("malicious_fraction", "share of nodes", f, "f: share of malicious nodes", min=0, max=0.95),
        Param("lookups", "lookups", lookups, "lookups per trial", min=1, max=10**6),
        Param("redundancy", "copies", 8, "redundant: copies per lookup", min=1, max=64),
    )


_LOOKUP_METRICS = (
    Metric("lookup_failure_rate_mean", "share of lookups", "the querier did not end up with the key's true "
                                                           "responsible node"),
    Metric("wrong_answer_rate_mean", "share of lookups", "failed silently: a wrong node accepted"),
    Metric("detected_failure_rate_mean", "share of lookups", "failed, and the querier knows"),
    Metric("messages_per_lookup_mean", "messages", "messages over all paths and retries: the defense's cost"),
    Metric("mean_hops_mean", "hops", "route length of succeeded lookups"),
)


def _vector_trial(attack: str, params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                  f: float | None = None) -> dict[str, Any]:
    vd = {_VECTOR[d] for d in defenses if d in _VECTOR}
    extra = {}
    if "halo" in vd:  # Halo supersedes redundant copies; recursive Halo with spread first hops
        vd = {"halo"}
        extra = {"halo_spread": True}
    r = run_lookups(int(params["n_nodes"]), int(params["lookups"]),
                    float(params["malicious_fraction"]) if f is None else f, attack, vd,
                    rng=rng.getrandbits(63), redundancy=int(params["redundancy"]), **extra)
    return {
        "success": r["success_rate"] > 0.5 * r["lookup_failure_rate"] and r["success_rate"] > 0.01,
        "attacked_share": r["success_rate"],
        "lookup_failure_rate": r["lookup_failure_rate"],
        "wrong_answer_rate": r["wrong_answer_rate"],
        "detected_failure_rate": r["detected_failure_rate"],
        "root_malicious_rate": r["root_malicious_rate"],
        "messages_per_lookup": r["messages_per_lookup"],
        "mean_hops": r["mean_hops"],
    }


def _castro(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    if defenses:
        return {}
    return {"lookup_failure_rate_mean": expected_lookup_failure(int(params["n_nodes"]),
                                                                float(params["malicious_fraction"]),
                                                                samples=5000)}


def _attacked_metric(what: str) -> Metric:
    return Metric("attacked_share_mean", "share of lookups", what)


_VECTOR_SUCCESS = Metric("success_rate", "share of trials", "trials in which at least 1% of lookups went the "
                                                            "attacker's way")


def _forward_drop(params, defenses, rng, pcap=None):
    return _vector_trial("drop", params, defenses, rng)


def _forward_misroute(params, defenses, rng, pcap=None):
    return _vector_trial("misroute", params, defenses, rng)


def _fabricated(params, defenses, rng, pcap=None):
    return _vector_trial("false-answer", params, defenses, rng)


def _chosen_id(params, defenses, rng, pcap=None):
    return _vector_trial("chosen-id", params, defenses, rng)


def _sybil(params, defenses, rng, pcap=None):
    """The attacker holds `accounts` user accounts and wants `sybils` Node-IDs. Without enrollment a node
    makes as many IDs as it likes; with it each account gets `issuance_limit` certificates."""
    n = int(params["n_nodes"])
    want = int(params["sybils"])
    have = want if "enrollment" not in defenses else min(want, int(params["accounts"]) * int(params["issuance_limit"]))
    f = have / (n + have)
    out = _vector_trial("misroute", params, defenses - {"enrollment"}, rng, f=min(f, 0.95))
    out["sybil_ids"] = have
    out["malicious_fraction"] = f
    return out


def _sybil_expected(params, defenses):
    n = int(params["n_nodes"])
    want = int(params["sybils"])
    have = want if "enrollment" not in defenses else min(want, int(params["accounts"]) * int(params["issuance_limit"]))
    out = {"sybil_ids_mean": float(have), "malicious_fraction_mean": have / (n + have)}
    if not defenses - {"enrollment"}:
        out["lookup_failure_rate_mean"] = expected_lookup_failure(n, have / (n + have), samples=5000)
    return out


def _poison(params, defenses, rng, pcap=None):
    out = _vector_trial("poison", params, defenses, rng)
    # share of poisoned routing entries: fingers of honest nodes that point at a colluder, in the levels
    # routing uses, after the tables took UPDATE answers (relaxed) or checked them (constrained)
    g = np.random.default_rng(rng.getrandbits(63))
    n = int(params["n_nodes"])
    f = float(params["malicious_fraction"])
    ring = make_ring(n, f, g)
    relaxed = "constrained-tables" not in defenses
    ft = finger_table(ring, relaxed=relaxed, poisoned=relaxed, rng=g)
    honest = np.flatnonzero(~ring.malicious)
    nodes = honest[g.integers(honest.size, size=4000)]
    lo = useful_levels(n)
    levels = g.integers(lo, ID_BITS, size=nodes.size)
    entries = ft.entry(nodes, levels)
    out["poisoned_entry_share"] = float(ring.malicious[entries].mean())
    return out


def _poison_expected(params, defenses):
    if "constrained-tables" in defenses:
        return {"poisoned_entry_share_mean": float(params["malicious_fraction"])}
    return {}


FORWARD_DROP = Threat(
    id="overlay.forward-drop",
    title="Forwarding attack: intermediate peers discard the messages they should forward",
    source=_source("4.2, figure 6"),
    position=Position.ON_PATH,
    knowledge="a share f of the peers; each sees only what is routed through it",
    params=_vector_params(0.2),
    defenses=(D["iterative"], D["redundant"]),
    metrics=(_VECTOR_SUCCESS, _attacked_metric("lookups that failed"), *_LOOKUP_METRICS),
    run=_forward_drop,
    expected=_castro,
    default_trials=3,
    summary="Vector engine, N = 10^5. Baseline matches Castro's 1-(1-f)^(h-1); iterative routing around "
            "timed-out hops (and redundant copies) bring failures down at a cost in messages.",
    peers={"threatlab": live_drop},
    tags=("untrusted-base", "vector"),
)

FORWARD_MISROUTE = Threat(
    id="overlay.forward-misroute",
    title="Forwarding attack: intermediate peers forward to a wrong next hop that answers for the key",
    source=_source("4.2, figure 6"),
    position=Position.ON_PATH,
    knowledge="a share f of colluding peers sharing one view of the ring",
    params=_vector_params(0.22),
    defenses=(D["redundant"], D["verify-responsible"], D["halo"]),
    metrics=(_VECTOR_SUCCESS, _attacked_metric("lookups that ended at a colluder"), *_LOOKUP_METRICS),
    run=_forward_misroute,
    expected=_castro,
    default_trials=2,
    summary="Vector engine, N = 10^5, f = 0.22 (Halo's setting). Plain Chord fails about 70% of lookups; "
            "redundant routing with the responder check helps, Halo brings failures to about 1%.",
    tags=("untrusted-base", "vector"),
)

FABRICATED = Threat(
    id="overlay.fabricated-response",
    title="Fabricated response from an intermediate peer ('I am responsible', or 'no such object')",
    source=_source("4.2, figure 6"),
    position=Position.ON_PATH,
    knowledge="a share f of the peers; each answers the lookups that reach it",
    params=_vector_params(0.2),
    defenses=(D["verify-responsible"],),
    metrics=(_VECTOR_SUCCESS, _attacked_metric("lookups that accepted a fabricated answer or failed"),
             *_LOOKUP_METRICS),
    run=_fabricated,
    expected=_castro,
    default_trials=3,
    summary="Vector engine, N = 10^5. The responder's Node-ID precedes the key, so the querier's check "
            "(open issue 2) rejects every fabricated answer and iterative backtracking recovers the lookup.",
    tags=("untrusted-base", "vector"),
)

CHOSEN_ID = Threat(
    id="overlay.chosen-id",
    title="Chosen-ID attack: the attacker places its nodes at and around target keys",
    source=_source("4.2, figure 6"),
    position=Position.ON_PATH,
    knowledge="the target keys (e.g. the Resource-IDs of chosen AORs); picks its own Node-IDs",
    params=_vector_params(0.01),
    defenses=(D["enrollment"],),
    metrics=(_VECTOR_SUCCESS,
             _attacked_metric("lookups of the target keys that failed or landed on the attacker's node"),
             Metric("root_malicious_rate_mean", "share of lookups", "the target key's responsible node is the "
                                                                    "attacker's"),
             *_LOOKUP_METRICS),
    run=_chosen_id,
    default_trials=3,
    summary="Vector engine, N = 10^5, 1% malicious. With self-chosen IDs the attacker owns every target key; "
            "with random certified IDs it holds a target's root with probability about f.",
    peers={"kademlia": live_kademlia_chosen_id},
    tags=("untrusted-base", "vector"),
)

SYBIL = Threat(
    id="overlay.sybil",
    title="Sybil attack: one attacker, many identities, misrouting",
    source=_source("figure 6"),
    position=Position.ON_PATH,
    knowledge="can run many nodes; holds `accounts` user accounts at the enrollment server",
    params=(
        Param("n_nodes", "nodes", 100_000, "honest overlay size", min=16, max=10**7),
        Param("sybils", "identities", 25_000, "Node-IDs the attacker wants", min=0, max=10**7),
        Param("accounts", "users", 100, "user accounts the attacker has", min=1, max=10**7),
        Param("issuance_limit", "certificates/user", 5, "enrollment: certificates per user", min=1, max=10**6),
        Param("lookups", "lookups", 2000, "lookups per trial", min=1, max=10**6),
        Param("redundancy", "copies", 8, "redundant: copies per lookup", min=1, max=64),
        Param("malicious_fraction", "share of nodes", 0.0, "unused (derived from sybils)", min=0, max=0.95),
    ),
    defenses=(D["enrollment"], D["redundant"], D["verify-responsible"]),
    metrics=(_VECTOR_SUCCESS, _attacked_metric("lookups that ended at a Sybil"),
             Metric("sybil_ids_mean", "identities", "Node-IDs the attacker got"),
             Metric("malicious_fraction_mean", "share of nodes", "f the Sybils make"),
             *_LOOKUP_METRICS),
    run=_sybil,
    expected=_sybil_expected,
    default_trials=3,
    summary="Vector engine, N = 10^5. 25,000 self-made IDs are f = 0.2; an issuance limit of 5 per account "
            "with 100 accounts caps it at 500 IDs (f = 0.005).",
    tags=("untrusted-base", "vector"),
)

POISON = Threat(
    id="overlay.routing-poison",
    title="Routing-table attack: malicious answers to routing-table UPDATE requests",
    source=_source("4.2, figure 6"),
    position=Position.OFF_PATH,
    knowledge="a share f of colluding peers; they answer updates with colluders only",
    params=_vector_params(0.2),
    defenses=(D["constrained-tables"],),
    metrics=(_VECTOR_SUCCESS, _attacked_metric("lookups that ended at a colluder"),
             Metric("poisoned_entry_share_mean", "share of routing entries",
                    "honest nodes' fingers (levels routing uses) that point at a colluder"),
             *_LOOKUP_METRICS),
    run=_poison,
    expected=_poison_expected,
    default_trials=2,
    summary="Vector engine, N = 10^5. Relaxed tables that accept any node in the finger interval fill with "
            "colluders; constrained tables keep the poisoned share at f and lookups at the misroute baseline.",
    tags=("untrusted-base", "vector"),
)


# === data-level threats on the message-level engine ====================================================


def _data_params(n: int = 200, victims: int = 20) -> tuple[Param, ...]:
    return (
        Param("n_peers", "peers", n, "overlay size (message-level engine)", min=8, max=5000),
        Param("victims", "AORs", victims, "registrations attacked", min=1, max=1000),
    )


def _world(params, defenses, rng, **kw) -> DataWorld:
    w = DataWorld.build(rng, int(params["n_peers"]), defenses, **kw)
    w.register_all()
    return w


def _pick_victims(w: DataWorld, rng: random.Random, k: int, exclude=()) -> list[OverlayPeer]:
    pool = [p for p in w.peers if p.node_id not in exclude]
    return rng.sample(pool, min(k, len(pool)))


def _caller(w: DataWorld, rng: random.Random, exclude) -> OverlayPeer:
    while True:
        p = rng.choice(w.peers)
        if p.node_id not in exclude and type(p) is OverlayPeer:
            return p


def _unauthorized(params, defenses, rng, pcap=None):
    w = _world(params, defenses, rng)
    attacker = rng.choice(w.peers)
    victims = _pick_victims(w, rng, int(params["victims"]), exclude={attacker.node_id})
    op = params["operation"]
    now = w.sim.now
    accepted = 0
    for v in victims:
        k = w.index[v.node_id]
        val = registration(w.aor[v.node_id], v.node_id, evil_contact(k), storage_time_ms(now) + 1000,
                           attacker.credentials, exists=(op == "modify"))
        done = store_and_wait(w, attacker, w.aor[v.node_id], [val])
        accepted += bool(done and done.ok)
    results = w.fetch_many([(_caller(w, rng, {attacker.node_id, v.node_id}), w.aor[v.node_id]) for v in victims])
    damaged = 0
    for v, res in zip(victims, results):
        good = contact_for(w.index[v.node_id])
        contacts = [c for _, c in res.contacts] if res and res.ok else []
        damaged += good not in contacts
    return {"success": damaged > 0, "stores_accepted": accepted / len(victims),
            "objects_damaged": damaged / len(victims)}


UNAUTHORIZED = Threat(
    id="overlay.unauthorized-data-op",
    title="Unauthorized data operation: an enrolled peer overwrites or removes others' registrations",
    source=_source("4.3, figure 4"),
    position=Position.ON_PATH,
    knowledge="an ordinary peer of the overlay; the victims' AORs and Node-IDs (public)",
    params=(*_data_params(), Param("operation", "", "modify", "what the attacker does to each registration",
                                   choices=("modify", "remove"))),
    defenses=(D["signatures"],),
    metrics=(SUCCESS_RATE,
             Metric("stores_accepted_mean", "share of victims", "forged Stores the responsible peer accepted"),
             Metric("objects_damaged_mean", "share of victims", "an honest caller's fetch no longer returns the "
                                                                "victim's own contact")),
    run=_unauthorized,
    default_trials=2,
    summary="Message-level engine, 200 peers. Without signatures the storing peer takes any write to any "
            "slot; USER-NODE-MATCH refuses every one.",
    tags=("trusted-base", "message-level"),
)


def _pollution(params, defenses, rng, pcap=None):
    w = _world(params, defenses, rng)
    attacker = rng.choice(w.peers)
    victims = _pick_victims(w, rng, int(params["victims"]), exclude={attacker.node_id})
    accepted = 0
    for v in victims:
        k = w.index[v.node_id]
        # a fake object next to the real one: the attacker's own dictionary key, a fake contact
        val = registration(w.aor[v.node_id], attacker.node_id, evil_contact(k), storage_time_ms(w.sim.now),
                           attacker.credentials)
        done = store_and_wait(w, attacker, w.aor[v.node_id], [val])
        accepted += bool(done and done.ok)
    results = w.fetch_many([(_caller(w, rng, {attacker.node_id}), w.aor[v.node_id]) for v in victims])
    polluted = sum(1 for r in results if r and r.ok and any(is_evil(c) for _, c in r.contacts))
    return {"success": polluted > 0, "stores_accepted": accepted / len(victims),
            "objects_polluted": polluted / len(victims)}


POLLUTION = Threat(
    id="overlay.data-pollution",
    title="Data pollution: fake resource objects published next to the real ones",
    source=_source("4.3, figure 4"),
    position=Position.ON_PATH,
    knowledge="an ordinary peer; the victims' AORs",
    params=_data_params(),
    defenses=(D["signatures"],),
    metrics=(SUCCESS_RATE,
             Metric("stores_accepted_mean", "share of victims", "fake objects the storing peers accepted"),
             Metric("objects_polluted_mean", "share of victims", "fetches of a victim's AOR that return a fake "
                                                                 "contact")),
    run=_pollution,
    default_trials=2,
    summary="Message-level engine, 200 peers. The 'check mechanism' of figure 4 is USER-NODE-MATCH: only "
            "the AOR's user may write it.",
    peers={"threatlab": live_pollution, "kademlia": live_kademlia_pollution},
    tags=("trusted-base", "message-level"),
)


def _flood(params, defenses, rng, pcap=None):
    """The attacker registers `victims` popular AORs with the third party's contact; callers fetch a
    popular AOR and call every contact it returns. Calls are counted where they land."""
    w = _world(params, defenses, rng)
    attacker = rng.choice(w.peers)
    third = rng.choice([p for p in w.peers if p is not attacker])
    third_contact = contact_for(w.index[third.node_id])
    if "blacklist" in defenses:  # the third party asked the operator to list its contact
        for p in w.peers:
            p.storage.blacklisted_contacts.add(third_contact)
    popular = _pick_victims(w, rng, int(params["victims"]), exclude={attacker.node_id, third.node_id})
    targets = [w.aor[p.node_id] for p in popular] + [w.aor[attacker.node_id]]
    for aor in targets:
        val = registration(aor, attacker.node_id, third_contact, storage_time_ms(w.sim.now), attacker.credentials)
        store_and_wait(w, attacker, aor, [val])
    calls = int(params["calls"])
    queries = [(_caller(w, rng, {attacker.node_id, third.node_id}), rng.choice(targets[:-1] or targets))
               for _ in range(calls)]
    results = w.fetch_many(queries)
    on_victim = sum(1 for r in results if r and r.ok and any(c == third_contact for _, c in r.contacts))
    return {"success": on_victim > 0, "victim_calls": on_victim, "victim_call_share": on_victim / calls}


CONTACT_FLOOD = Threat(
    id="overlay.contact-flood",
    title="Malicious contact information: popular records point at a third party, whose link floods",
    source=_source("4.3, figure 4"),
    position=Position.ON_PATH,
    knowledge="an ordinary peer; which AORs are popular; the victim's contact address",
    params=(*_data_params(victims=10), Param("calls", "calls", 100, "calls made to the popular AORs", min=1,
                                             max=100000)),
    defenses=(D["signatures"], D["blacklist"]),
    metrics=(SUCCESS_RATE,
             Metric("victim_calls_mean", "calls", "calls that land on the third party"),
             Metric("victim_call_share_mean", "share of calls", "of all calls to popular AORs")),
    run=_flood,
    default_trials=2,
    summary="Message-level engine, 200 peers. Signatures keep the attacker to its own AOR (not popular); a "
            "blacklisted contact is refused everywhere.",
    tags=("trusted-base", "message-level"),
)


def _spam(params, defenses, rng, pcap=None):
    """The attacker stores `spam_values` junk registrations at one AOR: all land on one peer."""
    w = _world(params, defenses, rng, publication_limit=int(params["publication_limit"]))
    attacker = rng.choice(w.peers)
    aor = w.aor[attacker.node_id]
    root = w.responsible(__import__("threatlab.overlay.storage", fromlist=["x"]).aor_resource_id(aor))
    before = len(root.storage)
    n = int(params["spam_values"])
    accepted = 0
    batch = []
    for i in range(n):
        key = attacker.node_id if attacker.credentials else (attacker.node_id + i + 1) % (1 << 128)
        batch.append(registration(aor, key, f"sip:spam{i:06d}@198.51.100.7", storage_time_ms(w.sim.now) + i,
                                  attacker.credentials))
    for i in range(0, n, 10):
        done = store_and_wait(w, attacker, aor, batch[i: i + 10])
        accepted += 10 if done and done.ok else 0
    held = len(root.storage) - before
    return {"success": held > int(params["publication_limit"]), "values_accepted": accepted,
            "values_on_target_peer": held}


SPAM = Threat(
    id="overlay.spam",
    title="Spam: one identity publishes many redundant resource objects",
    source=_source("4.3, figure 4"),
    position=Position.ON_PATH,
    knowledge="an ordinary peer",
    params=(Param("n_peers", "peers", 100, "overlay size (message-level engine)", min=8, max=5000),
            Param("spam_values", "values", 200, "junk registrations sent (10 per Store)", min=10, max=100000),
            Param("publication_limit", "values/writer/peer", 10, "publication-limit: the cap", min=1,
                  max=10**6)),
    defenses=(D["publication-limit"],),
    metrics=(SUCCESS_RATE,
             Metric("values_accepted_mean", "values", "junk values the overlay accepted"),
             Metric("values_on_target_peer_mean", "values", "junk held by the peer responsible for the AOR")),
    run=_spam,
    default_trials=2,
    summary="Message-level engine, 100 peers. Without a limit every junk value is held; with it the storing "
            "peer holds at most the limit per writer.",
    tags=("trusted-base", "message-level"),
)


def _replay(params, defenses, rng, pcap=None):
    """The victim registers contact A (the attacker, on its path, keeps the signed Store), moves to B
    `gap` seconds later, and the attacker sends the old value again."""
    w = DataWorld.build(rng, int(params["n_peers"]), defenses)
    attacker = rng.choice(w.peers)
    victims = _pick_victims(w, rng, int(params["victims"]), exclude={attacker.node_id})
    old = {}
    for v in victims:
        k = w.index[v.node_id]
        old[v.node_id] = registration(w.aor[v.node_id], v.node_id, evil_contact(k), storage_time_ms(w.sim.now),
                                      v.credentials)
        v.store(w.aor[v.node_id], evil_contact(k), w.sim.now)  # A: the victim's old contact
        w.net.service(v)
    w.settle()
    w.net.run_for(int(float(params["gap"]) * NS_PER_S))
    for v in victims:
        v.store(w.aor[v.node_id], contact_for(w.index[v.node_id]), w.sim.now)  # B: where it is now
        w.net.service(v)
    w.settle()
    accepted = 0
    for v in victims:
        certs = (v.credentials.generic_certificate,) if v.credentials else ()
        done = store_and_wait(w, attacker, w.aor[v.node_id], [old[v.node_id]], certs)
        accepted += bool(done and done.ok)
    results = w.fetch_many([(_caller(w, rng, {attacker.node_id, v.node_id}), w.aor[v.node_id]) for v in victims])
    stale = sum(1 for v, r in zip(victims, results)
                if r and r.ok and evil_contact(w.index[v.node_id]) in [c for _, c in r.contacts])
    return {"success": stale > 0, "replays_accepted": accepted / len(victims),
            "registrations_rolled_back": stale / len(victims)}


REPLAY = Threat(
    id="overlay.replay",
    title="Replay attack: an old, validly signed registration stored again",
    source=_source("figure 6"),
    position=Position.ON_PATH,
    knowledge="a copy of the victim's earlier Store (it was on the path), victim's certificate",
    params=(*_data_params(victims=10), Param("gap", "s", 90.0, "time between the old and the new registration",
                                             min=0, max=86400)),
    defenses=(D["signatures"], D["replay-protection"]),
    metrics=(SUCCESS_RATE,
             Metric("replays_accepted_mean", "share of victims", "replayed Stores accepted"),
             Metric("registrations_rolled_back_mean", "share of victims", "a caller's fetch returns the old "
                                                                          "contact")),
    run=_replay,
    default_trials=2,
    summary="Message-level engine, 200 peers. A replayed value carries a valid signature, so signatures "
            "alone do not stop it; the storage-time window and 'newer than stored' check do.",
    tags=("untrusted-base", "message-level"),
)


def _hijack(params, defenses, rng, pcap=None):
    w = _world(params, defenses, rng)
    victim = rng.choice(w.peers)
    k = w.index[victim.node_id]
    thief = hijack_node_id(w, victim, rng)
    # the thief re-registers the victim's AOR under the victim's Node-ID with its own contact
    start = len(w.net.events)
    thief.store(w.aor[victim.node_id], evil_contact(k), w.sim.now)
    w.net.service(thief)
    w.settle()
    # callers' traffic for keys the victim's Node-ID is responsible for now reaches the thief
    n_look = int(params["lookups"])
    before = thief.counters["requests handled"]
    res = w.fetch_many([(_caller(w, rng, {victim.node_id}), w.aor[victim.node_id]) for _ in range(n_look)])
    hijacked = sum(1 for r in res if r and r.ok and evil_contact(k) in [c for _, c in r.contacts])
    _ = start
    for _ in range(n_look):  # lookups of the victim's own Node-ID: meant for the victim
        q = _caller(w, rng, {victim.node_id})
        q.lookup(victim.node_id, w.sim.now)
        w.net.service(q)
    w.settle()
    return {"success": hijacked > 0, "fetches_hijacked": hijacked / n_look,
            "requests_to_thief": thief.counters["requests handled"] - before}


ID_HIJACK = Threat(
    id="overlay.id-hijack",
    title="ID hijack: a node presents the victim's Node-ID and takes over its registration",
    source=_source("4.1, figure 4"),
    position=Position.ON_PATH,
    knowledge="the victim's Node-ID and user name (public); the victim is offline",
    params=(Param("n_peers", "peers", 200, "overlay size (message-level engine)", min=8, max=5000),
            Param("lookups", "fetches", 20, "callers' fetches of the victim's AOR afterwards", min=1, max=10000)),
    defenses=(D["enrollment"], D["signatures"]),
    metrics=(SUCCESS_RATE,
             Metric("fetches_hijacked_mean", "share of fetches", "callers that get the thief's contact"),
             Metric("requests_to_thief_mean", "requests", "requests the thief handled (message privacy: "
                                                          "traffic meant for the victim's Node-ID)")),
    run=_hijack,
    default_trials=2,
    summary="Message-level engine, 200 peers. A self-signed certificate names any Node-ID: signatures alone "
            "accept it; an enrollment server's CA does not.",
    tags=("trusted-base", "message-level"),
)


def _tamper(params, defenses, rng, where: str):
    w = _world(params, defenses, rng)
    n_f = int(params["fetches"])
    if where == "client":  # one rewriting box between each caller and the peer it talks through
        callers = [_caller(w, rng, ()) for _ in range(n_f)]
        at = set()
        for c in callers:  # the last hop of every answer comes from the caller's first hop
            at.update(p for p in c.successors[:1] + [f for f in c.fingers if f is not None])
        tamper = Tamperer(w.net, at, len(w.peers), towards={c.node_id for c in callers})
    else:  # a share f of the peers rewrite what they forward
        bad = set(rng.sample([p.node_id for p in w.peers], round(float(params["malicious_fraction"]) * len(w.peers))))
        callers = [_caller(w, rng, bad) for _ in range(n_f)]
        tamper = Tamperer(w.net, bad, len(w.peers))
    queries = [(c, w.aor[rng.choice(w.peers).node_id]) for c in callers]
    res = w.fetch_many(queries)
    fooled = sum(1 for r in res if r and r.ok and any(is_evil(c) for _, c in r.contacts))
    failed = sum(1 for r in res if not (r and r.ok and r.contacts))
    return {"success": fooled > 0, "fetches_modified": fooled / n_f, "fetches_failed": failed / n_f,
            "datagrams_rewritten": tamper.rewritten}


def _mitm(params, defenses, rng, pcap=None):
    return _tamper(params, defenses, rng, "client")


def _modify(params, defenses, rng, pcap=None):
    return _tamper(params, defenses, rng, "forward")


_TAMPER_METRICS = (
    SUCCESS_RATE,
    Metric("fetches_modified_mean", "share of fetches", "the caller accepted a rewritten contact"),
    Metric("fetches_failed_mean", "share of fetches", "no usable answer (a rewritten, signed answer is "
                                                      "dropped: the attack turns into denial)"),
    Metric("datagrams_rewritten_mean", "datagrams", "datagrams the attacker changed"),
)

MITM = Threat(
    id="overlay.mitm-client",
    title="Man in the middle between a caller and the peer it talks through",
    source=_source("4.1, figure 4"),
    position=Position.ON_PATH,
    knowledge="sits on the link into the caller; rewrites contact URIs in the answers it passes",
    params=(Param("n_peers", "peers", 200, "overlay size (message-level engine)", min=8, max=5000),
            Param("fetches", "fetches", 20, "the caller's fetches", min=1, max=10000)),
    defenses=(D["signatures"],),
    metrics=_TAMPER_METRICS,
    run=_mitm,
    default_trials=2,
    summary="Message-level engine, 200 peers. Without authentication every answer is rewritten; with signed "
            "messages and values the caller drops it (the attacker is left with denial of service).",
    tags=("trusted-base", "message-level"),
)

MODIFY = Threat(
    id="overlay.forward-modify",
    title="Forwarding attack: intermediate peers modify the messages they forward",
    source=_source("figure 6"),
    position=Position.ON_PATH,
    knowledge="a share f of the peers; rewrites contact URIs in what it forwards",
    params=(Param("n_peers", "peers", 200, "overlay size (message-level engine)", min=8, max=5000),
            Param("fetches", "fetches", 40, "callers' fetches", min=1, max=10000),
            Param("malicious_fraction", "share of peers", 0.2, "f", min=0, max=0.9)),
    defenses=(D["signatures"],),
    metrics=_TAMPER_METRICS,
    run=_modify,
    default_trials=2,
    summary="Message-level engine, 200 peers, f = 0.2. Figure 6's 'message signature?': a modified answer "
            "fails its signature and is dropped instead of believed.",
    tags=("untrusted-base", "message-level"),
)


# === 4.2: churn driven by the attacker (message-level engine, real joins over virtual time) ===========


D["join-rate-limit"] = Defense("join-rate-limit", "the admitting peer (the joining ID's successor) refuses a "
                                                  "Join from a Node-ID it admitted within `rejoin_hold_s`")


def _churn(params, defenses, rng, pcap=None):
    """`churners` attacker machines join, stay `dwell_s`, crash, wait `gap_s` and come back, fresh IDs
    when they can get them (see `churn`); honest peers look up and fetch meanwhile."""
    out = run_churn(rng, n_peers=int(params["n_peers"]), churners=int(params["churners"]), defenses=defenses,
                    accounts=int(params["accounts"]), issuance_limit=int(params["issuance_limit"]),
                    dwell_s=float(params["dwell_s"]), gap_s=float(params["gap_s"]),
                    attack_s=float(params["attack_s"]), departure=str(params["departure"]),
                    rejoin_hold_s=float(params["rejoin_hold_s"]))
    out["success"] = (out["lookup_failure_rate"] - out["quiet_lookup_failure_rate"] >= 0.05
                      or out["fetch_availability"] <= out["quiet_fetch_availability"] - 0.05)
    return out


CHURN = Threat(
    id="overlay.churn",
    title="Churn attack: malicious peers join and leave over and over to break routing and move data",
    source=_source("4.2"),
    position=Position.ON_PATH,
    knowledge="runs `churners` machines; holds `accounts` user accounts at the enrollment server",
    params=(
        Param("n_peers", "peers", 200, "honest overlay size (message-level engine)", min=8, max=5000),
        Param("churners", "machines", 20, "attacker nodes cycling join / dwell / depart", min=1, max=5000),
        Param("dwell_s", "s", 20.0, "how long a churner stays joined", min=1, max=86400),
        Param("gap_s", "s", 10.0, "how long it stays away before rejoining", min=1, max=86400),
        Param("attack_s", "s", 180.0, "length of the attack window (virtual time)", min=10, max=86400),
        Param("departure", "", "crash", "how a churner goes: vanish, or graceful Leave with handover",
              choices=("crash", "leave")),
        Param("accounts", "users", 5, "enrollment: user accounts the attacker has", min=1, max=10**6),
        Param("issuance_limit", "certificates/user", 2, "enrollment: certificates per user", min=1, max=10**6),
        Param("rejoin_hold_s", "s", 600.0, "join-rate-limit: one Join per Node-ID per this long", min=1,
              max=86400),
    ),
    defenses=(D["enrollment"], D["join-rate-limit"]),
    metrics=(SUCCESS_RATE,
             Metric("lookup_failure_rate_mean", "share of lookups", "during the attack: no answer, or the "
                                                                    "answering node was already gone"),
             Metric("quiet_lookup_failure_rate_mean", "share of lookups", "the same before the attack"),
             Metric("fetch_availability_mean", "share of fetches", "during the attack: a caller's fetch of a "
                                                                    "stored registration returns its contact"),
             Metric("quiet_fetch_availability_mean", "share of fetches", "the same before the attack"),
             Metric("maintenance_msgs_per_peer_s_mean", "messages/peer/s", "Attach, Join, Update, Leave and "
                                                                           "answers sent per honest peer"),
             Metric("quiet_maintenance_msgs_per_peer_s_mean", "messages/peer/s", "the same before the attack"),
             Metric("rereplication_kbytes_mean", "kB", "Store requests honest peers sent (handovers and the "
                                                       "replicas they trigger) during the attack"),
             Metric("rereplication_stores_mean", "messages", "those Store requests"),
             Metric("attacker_node_ids_mean", "identities", "distinct Node-IDs the churners used"),
             Metric("attacker_joins_admitted_mean", "joins", "churner joins that completed"),
             Metric("joins_refused_mean", "joins", "Joins the join-rate-limit refused")),
    run=_churn,
    default_trials=1,
    summary="Message-level engine, 200 honest peers, 20 churners for 180 s of virtual time (real Attach / "
            "Join / Update / Leave, handovers and replicas). Fresh IDs every cycle drive lookup failures "
            "and data movement; enrollment with an issuance limit pins the churners to a few IDs (which "
            "honest peers that saw them fail refuse to re-learn for a while), the join-rate-limit refuses "
            "their rejoins. Fetch availability is not restored by either.",
    tags=("untrusted-base", "message-level"),
)


THREATS = (
    ID_HIJACK,
    UNAUTHORIZED,
    MITM,
    POLLUTION,
    CONTACT_FLOOD,
    SPAM,
    CHOSEN_ID,
    SYBIL,
    FABRICATED,
    FORWARD_DROP,
    FORWARD_MISROUTE,
    MODIFY,
    REPLAY,
    POISON,
    CHURN,
)
