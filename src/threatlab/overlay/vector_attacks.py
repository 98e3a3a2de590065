"""Routing attacks and defenses on the vectorized Chord ring, and `run_lookups`, the catalogue's entry.

draft-song-p2psip-security-eval-00 section 4.2 and figure 6 list the routing-level threats of an
untrusted P2PSIP overlay: intermediate peers that discard messages or forward them to a wrong next hop,
that fabricate "I am responsible" answers, that poison routing tables through UPDATE responses, and
chosen-ID attacks that make all of this worse. Its open issues (section 6) ask whether the source should
verify that the responder is responsible, and whether routing tables learned from others should be
checked. The attackers and defenses below are those mechanisms, with RELOAD (RFC 6940) as reference.

Model of a lookup. An honest querier looks up a uniform random key (chosen-id: one of the attacker's
target keys). The key's responsible node is its successor on the ring. Every path of a lookup is the
path honest greedy routing takes; where it reaches a malicious node other than the responsible node, the
attacker decides what happens next (`ATTACKS`). A lookup *succeeds* when the querier ends up with the
true responsible node (Castro et al. 2002 and Halo measure exactly this). Colluders share one view of
the ring. Node-IDs are certified (an enrollment server signs them, RFC 6940 section 11), so nobody can
claim an ID it does not hold; without `enrollment` only the chosen-id attacker exploits that by picking
its IDs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

import numpy as np

from threatlab.errors import ParamError
from threatlab.overlay.vector import (
    ID_BITS,
    ExactFingers,
    floor_log2,
    Ring,
    RngLike,
    as_generator,
    finger_table,
    make_ring,
    pow2,
    random_ids,
    route,
    useful_levels,
)

# what a malicious node on a lookup's path does, and what the attacker counts as its success
ATTACKS: dict[str, str] = {
    "drop": "discard the lookup (4.2 'discard the messages when forwarding'); the querier sees a timeout",
    "misroute": (
        "forward to a colluder, which answers as the responsible node: the first malicious node after the "
        "key, so the claimed Node-ID follows the key and looks plausible (4.2 'forward ... to a wrong "
        "next hop')"
    ),
    "false-answer": (
        "answer at once 'I am responsible' with a fabricated object (figure 6 'fabricated response from the "
        "intermediate peer'); its Node-ID precedes the key"
    ),
    "poison": (
        "answer routing-table updates with colluders only (4.2 'fake routing table to UPDATE requests'), so "
        "relaxed tables fill with malicious entries; on a path, misroute"
    ),
    "chosen-id": (
        "choose Node-IDs (figure 6 'Chosen-ID attack'): for each target key, one node at the key (the "
        "responsible node), `successors` after it (the replicas) and `successors` before it (every path's "
        "last hops); on a path, misroute. Its success is a lookup that fails or lands on its node"
    ),
}

DEFENSES: dict[str, str] = {
    "redundant": (
        "redundant routing (Castro et al. 2002): `redundancy` copies leave through different first hops "
        "(the querier's k-th best routing entry); without `verify` the querier takes the answer most "
        "copies agree on"
    ),
    "verify": (
        "iterative routing with checks at the querier: a hop that drops times out and a hop that claims "
        "responsibility for a key its Node-ID precedes is rejected, and the querier asks the previous hop "
        "for its next-best entry (`retries` per path); the claimed responsible node is rejected if a node "
        "the querier learned from honest hops' tables lies between the key and it (RELOAD's Node-ID "
        "check), and then that node's predecessor list is asked; among answers the closest node after "
        "the key wins"
    ),
    "constrained": (
        "constrained routing tables (Castro et al. 2002): finger i must be successor(n + 2^i), which anyone "
        "can check, so poisoned updates cannot place colluders; without it, tables are proximity-style "
        "(any node in [n + 2^i, n + 2^(i+1)))"
    ),
    "enrollment": (
        "an enrollment server assigns random certified Node-IDs (RFC 6940 section 11): no chosen IDs"
    ),
    "halo": (
        "Halo (Kapadia and Triandopoulos, NDSS 2008): search for the key's knuckles, the predecessors of "
        "key - 2^i whose finger i points at the key, by independent lookups for the top `halo_knuckles` "
        "levels, ask each for finger i, and keep the candidate closest after the key; `halo_depth` 2 finds "
        "each knuckle with Halo itself (recursive Halo); `halo_spread` sends each search out through a "
        "random finger of the querier instead of its closest one. Supersedes `redundant`"
    ),
}

# attacks whose misbehaviour the querier sees at the hop, given iterative routing with checks
_DETECTABLE_AT_HOP = frozenset({"drop", "false-answer"})
_MISROUTING = frozenset({"misroute", "poison", "chosen-id"})

MAX_WALKERS = 1 << 20  # paths routed per numpy batch; bounds memory for Halo's L x l x l paths


@dataclass(frozen=True, slots=True)
class LookupConfig:
    """Protocol parameters of a vectorized lookup run; every field can be overridden in `run_lookups`."""

    successors: int = 8  # successor list length r (RELOAD Chord keeps at least 3 each side)
    redundancy: int = 8  # copies for `redundant`
    retries: int = 8  # backtracks per path for `verify`
    halo_knuckles: int = 16  # Halo's l: knuckle levels searched
    halo_depth: int = 2  # 1: Halo; 2: recursive Halo (each knuckle found by Halo)
    halo_spread: bool = False  # each knuckle search leaves through a random preceding finger of the querier
    targets: int = 16  # chosen-id: target keys the attacker wants
    materialize: bool = False  # route on a stored finger table even when constrained (same result)

    def check(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("bool", bool):
                continue
            least = 0 if f.name == "retries" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ParamError(f"parameter {f.name}={v!r}: allowed: int >= {least}")
        if self.halo_depth > 3:
            raise ParamError(f"parameter halo_depth={self.halo_depth}: allowed: 1, 2 or 3")
        if self.halo_knuckles > ID_BITS:
            raise ParamError(f"parameter halo_knuckles={self.halo_knuckles}: allowed: int in [1, {ID_BITS}]")


def castro_path_success(f: float, hops: int | np.ndarray) -> np.ndarray:
    """Castro et al. 2002: a route of h hops between correct nodes succeeds with probability (1-f)^(h-1)."""
    h = np.asarray(hops)
    return (1.0 - f) ** np.maximum(h - 1, 0)


def expected_lookup_failure(
    n_nodes: int, malicious_fraction: float, successors: int = 8, rng: RngLike = 0, samples: int = 20_000
) -> float:
    """Castro et al.'s expectation for plain lookups: 1 - E[(1-f)^(h-1)] over the hop counts h of
    `samples` lookups on an attacker-free ring of the same size (the analytic check for `run_lookups`
    without defenses)."""
    rng = as_generator(rng)
    ring = make_ring(int(n_nodes), 0.0, rng)
    start = rng.integers(ring.n, size=samples)
    res = route(ring, ExactFingers(ring), start, random_ids(rng, samples), successors=successors)
    f_seen = round(malicious_fraction * ring.n) / max(ring.n - 1, 1)
    return float(1.0 - castro_path_success(f_seen, res.hops).mean())


def run_lookups(
    n_nodes: int,
    n_lookups: int,
    malicious_fraction: float,
    attack: str = "misroute",
    defenses: Iterable[str] = frozenset(),
    rng: RngLike = None,
    config: LookupConfig | None = None,
    **overrides,
) -> dict:
    """Build a ring of `n_nodes`, run `n_lookups` lookups under `attack`, return metrics.

    Metrics (shares are of all lookups):
      success_rate          share the attacker made fail (chosen-id: fail or land on its node)
      lookup_failure_rate   querier did not end up with the key's true responsible node
      detected_failure_rate failed, and the querier knows (timeout, every answer rejected)
      wrong_answer_rate     failed silently: the querier accepted a wrong node
      root_malicious_rate   the key's responsible node is malicious (it can withhold; RELOAD data is
                            signed by its writer, so it cannot forge)
      answer_failure_rate   failed, or the responsible node is malicious
      mean_hops             hops of the first path of succeeded lookups (the route length)
      messages_per_lookup   messages over all paths and retries (the cost of a defense)
    """
    known = {f.name for f in fields(LookupConfig)}
    if overrides.keys() - known:
        raise ParamError(f"unknown parameter(s) {sorted(overrides.keys() - known)}; allowed: {sorted(known)}")
    cfg = replace(config or LookupConfig(), **overrides)
    cfg.check()
    defenses = frozenset(defenses)
    unknown = defenses - DEFENSES.keys()
    if unknown:
        raise ParamError(f"unknown defense(s) {sorted(unknown)}; allowed: {', '.join(sorted(DEFENSES))}")
    if attack not in ATTACKS:
        raise ParamError(f"unknown attack {attack!r}; allowed: {', '.join(sorted(ATTACKS))}")
    if not _is_int(n_nodes) or not 2 <= n_nodes < 2**31:
        raise ParamError(f"parameter n_nodes={n_nodes!r}: allowed: int in [2, 2^31)")
    if not _is_int(n_lookups) or n_lookups < 1:
        raise ParamError(f"parameter n_lookups={n_lookups!r}: allowed: int >= 1")
    n_nodes, n_lookups = int(n_nodes), int(n_lookups)
    if not isinstance(malicious_fraction, (int, float)) or not 0.0 <= malicious_fraction < 1.0:
        raise ParamError(f"parameter malicious_fraction={malicious_fraction!r}: allowed: float in [0, 1)")
    rng = as_generator(rng)

    ring, keys_pool, covered = _build_ring(n_nodes, malicious_fraction, attack, defenses, cfg, rng)
    fingers = _fingers(ring, attack, defenses, cfg, rng)
    honest = np.flatnonzero(~ring.malicious)
    queriers = honest[rng.integers(honest.size, size=n_lookups)]
    if keys_pool is None:
        keys = random_ids(rng, n_lookups)
    else:
        keys = keys_pool[rng.integers(keys_pool.size, size=n_lookups)]

    per = _walkers_per_lookup(defenses, cfg)
    chunk = max(1, MAX_WALKERS // per)
    parts = [
        _lookup_batch(ring, fingers, queriers[s : s + chunk], keys[s : s + chunk], attack, defenses, cfg, rng)
        for s in range(0, n_lookups, chunk)
    ]
    out = {name: np.concatenate([p[name] for p in parts]) for name in parts[0] if name != "messages"}
    messages = sum(p["messages"] for p in parts)

    routed = out["routed"]
    root_bad = ring.malicious[ring.successor(keys)]
    failed = ~routed
    answer_failed = failed | root_bad
    success = answer_failed if attack == "chosen-id" else failed
    hops_ok = out["hops"][routed & out["clean0"]]
    return {
        "n_nodes": ring.n,
        "n_lookups": int(n_lookups),
        "malicious_fraction": ring.n_malicious / ring.n,
        "attack": attack,
        "defenses": sorted(defenses),
        "table": fingers.kind,
        "success_rate": float(success.mean()),
        "lookup_failure_rate": float(failed.mean()),
        "detected_failure_rate": float((failed & out["detected"]).mean()),
        "wrong_answer_rate": float((failed & ~out["detected"]).mean()),
        "root_malicious_rate": float(root_bad.mean()),
        "answer_failure_rate": float(answer_failed.mean()),
        "mean_hops": float(hops_ok.mean()) if hops_ok.size else float("nan"),
        "messages_per_lookup": float(messages / n_lookups),
        "targets_covered": covered,
    }


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# -- set-up ---------------------------------------------------------------------------------------


def _build_ring(n, f, attack, defenses, cfg, rng) -> tuple[Ring, np.ndarray | None, int]:
    if attack != "chosen-id":
        return make_ring(n, f, rng), None, 0
    targets = random_ids(rng, cfg.targets)
    if "enrollment" in defenses:  # IDs are the server's random choice: the attacker can only hope
        return make_ring(n, f, rng), targets, 0
    s = cfg.successors
    per_target = 2 * s + 1
    covered = min(cfg.targets, int(round(f * n)) // per_target)
    offsets = np.concatenate([np.arange(s + 1), -1 - np.arange(s)]).astype(np.int64)
    chosen = (targets[:covered, None] + offsets.astype(np.uint64)[None, :]).ravel()  # wraps mod 2^64
    return make_ring(n, f, rng, chosen_ids=chosen), targets, covered


def _fingers(ring, attack, defenses, cfg, rng):
    if attack == "poison" and "constrained" not in defenses:
        return finger_table(ring, relaxed=True, poisoned=ring.n_malicious > 0, rng=rng)
    if cfg.materialize:
        return finger_table(ring)
    return ExactFingers(ring)


def _walkers_per_lookup(defenses, cfg) -> int:
    if "halo" in defenses:
        return (cfg.halo_knuckles + 1) ** cfg.halo_depth
    return cfg.redundancy if "redundant" in defenses else 1


# -- one batch of lookups -------------------------------------------------------------------------


def _route_kw(attack, defenses, cfg) -> dict:
    verify = "verify" in defenses
    return {
        "successors": cfg.successors,
        "detect_bad_hops": verify and attack in _DETECTABLE_AT_HOP,
        "retries": cfg.retries if verify else 0,
    }


def _lookup_batch(ring, fingers, q, keys, attack, defenses, cfg, rng) -> dict:
    if "halo" in defenses:
        return _halo_batch(ring, fingers, q, keys, attack, defenses, cfg, rng)
    return _paths_batch(ring, fingers, q, keys, attack, defenses, cfg)


def _paths_batch(ring, fingers, q, keys, attack, defenses, cfg) -> dict:
    """Single-path or redundant lookups, with or without the querier's checks."""
    n = ring.n
    verify = "verify" in defenses
    copies = cfg.redundancy if "redundant" in defenses else 1
    lk = q.size
    qq = np.repeat(q, copies)
    kk = np.repeat(keys, copies)
    skip = np.tile(np.arange(copies), lk)
    track = verify and attack in _MISROUTING
    res = route(ring, fingers, qq, kk, first_skip=skip, track_known=track, **_route_kw(attack, defenses, cfg))
    clean = ~res.bad
    root = res.root
    # what a compromised path hands the querier
    claim = np.full(qq.size, -1, dtype=np.int64)  # -1: nothing (timeout)
    if attack in _MISROUTING:
        claim = np.where(res.bad, ring.next_malicious((root + 1) % n), -1)
    elif attack == "false-answer":
        claim = np.where(res.bad & ~res.detected, res.bad_node, -1)
    recovered = np.zeros(qq.size, dtype=bool)
    caught = np.zeros(qq.size, dtype=bool)
    if track:
        # RELOAD's check: the claimant is not responsible if the querier knows a node between the key and it
        known = res.known
        has = res.bad & (known >= 0) & (claim >= 0)
        caught = has & ((known - root) % n < (claim - root) % n)
        # then ask the closest known node for its predecessor list
        w = np.maximum(known, 0)
        recovered = caught & ((w == root) | (~ring.malicious[w] & ((w - root) % n <= cfg.successors)))
        claim = np.where(caught, -1, claim)
    if attack == "false-answer" and verify:
        claim = np.where(res.bad, -1, claim)  # its Node-ID precedes the key: rejected
    got = clean | recovered
    if copies == 1:
        routed = got
        detected = ~routed & (claim < 0)
    else:
        got2 = got.reshape(lk, copies)
        claim2 = claim.reshape(lk, copies)
        if verify:  # closest node after the key wins; a routed copy always holds the true root
            routed = got2.any(axis=1)
            detected = ~routed & (claim2 < 0).all(axis=1)
        else:  # the querier cannot judge answers: plurality, a tie is a failure it notices
            votes = np.where(got2, np.repeat(root.reshape(lk, copies)[:, :1], copies, axis=1), claim2)
            same = (votes[:, :, None] == votes[:, None, :]) & (votes[:, None, :] >= 0)
            count = same.sum(axis=2)
            true_votes = got2.sum(axis=1)
            fake_best = np.where(~got2 & (claim2 >= 0), count, 0).max(axis=1)
            routed = true_votes > fake_best
            detected = ~routed & (fake_best <= true_votes)
    return {
        "routed": routed,
        "detected": detected,
        "hops": res.hops.reshape(lk, copies)[:, 0].astype(np.int64),
        "clean0": clean.reshape(lk, copies)[:, 0],
        "messages": int(res.hops.sum()),
    }


def _halo_batch(ring, fingers, q, keys, attack, defenses, cfg, rng) -> dict:
    kw = _route_kw(attack, defenses, cfg)
    clean, messages, first, first_clean = _halo(ring, fingers, q, keys, "succ", cfg.halo_depth, cfg, kw, rng)
    # Halo keeps the candidate closest after the key: fakes lose to any clean chain; fabricated answers
    # from nodes before the key are discarded; only a colluder's claim past the key can be taken
    fake_possible = attack in _MISROUTING
    return {
        "routed": clean,
        "detected": ~clean & (not fake_possible),
        "hops": first,
        "clean0": first_clean,
        "messages": messages,
    }


def halo_levels(k: int) -> np.ndarray:
    """Halo's knuckle levels: the top k finger levels, whose knuckles are spread around the ring."""
    return np.arange(ID_BITS - 1, ID_BITS - 1 - k, -1)


def _halo(ring, fingers, q, t, want, depth, cfg, kw, rng):
    """Does a Halo search of `depth` from q learn the true successor (want='succ') or predecessor
    (want='pred', what a knuckle search needs) of key t?

    Returns (ok, messages, hops, clean) where hops and clean describe the search's first plain route;
    at depth >= 2 that route is a plain lookup of t itself (t - 2^63 - 2^63 = t), the baseline path.

    All searches start at the querier, so they share its fingers and their fingers: greedy routing
    sends every target in the far half of the ring through the querier's top finger. `halo_spread`
    breaks that (Castro et al.'s "route via different neighbours" applied to Halo's searches): each
    search's first hop is a uniform random one of the querier's fingers that precede the target.
    """
    n = ring.n
    if depth == 0:
        skip = _spread_first_hops(ring, q, t, rng) if cfg.halo_spread else None
        res = route(ring, fingers, q, t, first_skip=skip, **kw)
        return ~res.bad, int(res.hops.sum()), res.hops.astype(np.int64), ~res.bad
    levels = halo_levels(cfg.halo_knuckles)
    nl = levels.size
    qq = np.repeat(q, nl)
    tt = np.repeat(t, nl)
    ii = np.tile(levels, q.size)
    y = tt - pow2(ii)  # the knuckle point for level i
    found, messages, hops, first_clean = _halo(ring, fingers, qq, y, "pred", depth - 1, cfg, kw, rng)
    mal = ring.malicious
    knuckle = ring.predecessor(y)  # the last node before key - 2^i: its finger i lands at the key
    ok = found & (~mal[knuckle] | (knuckle == qq))
    cand = fingers.entry(knuckle, ii)  # the knuckle's finger i (a poisoned table may lie here)
    root = ring.successor(tt)
    pred = (root - 1) % n
    hit = cand == (root if want == "succ" else pred)
    need = ok & ~hit
    vouched = ~mal[cand] | (cand == qq)  # cand must answer honestly with its neighbour table
    past = (cand - knuckle) % n > (root - knuckle) % n  # a relaxed entry may overshoot the key
    cont = np.zeros(qq.size, dtype=bool)
    walk = np.flatnonzero(need & vouched & ~past)
    if walk.size:
        res = route(ring, fingers, cand[walk], tt[walk], **kw)
        cont[walk] = ~res.bad
        messages += int(res.hops.sum())
    target = root if want == "succ" else pred
    near = need & vouched & past & ((cand - target) % n <= cfg.successors)
    chain = ok & (hit | cont | near)
    messages += int(found.sum()) + int(need.sum())  # ask each found knuckle for finger i, then cand
    return (
        chain.reshape(q.size, nl).any(axis=1),
        messages,
        hops.reshape(q.size, nl)[:, 0],
        first_clean.reshape(q.size, nl)[:, 0],
    )


def _spread_first_hops(ring: Ring, q: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniform choice among the querier's fingers preceding each target, as a `first_skip`."""
    dp = ring.ids[ring.predecessor(t)] - ring.ids[q]
    top = floor_log2(np.where(dp == 0, np.uint64(1), dp))
    choices = np.maximum(top - useful_levels(ring.n), 0) + 1
    return (rng.random(q.size) * choices).astype(np.int64)
