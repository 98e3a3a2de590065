"""Vectorized Chord for routing-level questions at 10^5 to 10^7 nodes.

The packet-level overlay (wire, peers, simulated network) answers "what does this message do"; this
module answers "what share of lookups survives f malicious nodes" at sizes where one Python object per
node is out of the question. Everything is a numpy array over the sorted ring, and a batch of lookups
advances one hop per numpy step.

Node-IDs. RELOAD (RFC 6940) Node-IDs are 128 bits. Routing here uses the top 64 bits of a random
128-bit ID (a uint64). Routing decisions compare node IDs with keys and with finger points n + 2^i in
ring order. For i >= 64 the top 64 bits of n + 2^i are exactly top(n) + 2^(i-64) (the low bits do not
carry), so truncation preserves every comparison except between a node and a point that agree in all
64 top bits. With node spacing 2^64 / N >= 2^40 at N <= 10^7, that needs one of ~30 N points to fall
in the same one of 2^64 buckets as one of N nodes: about 30 N^2 / 2^64 ~ 2e-4 for a whole 10^7-node
run (1e-11 per lookup), and a tie only swaps two adjacent nodes. Fingers i < 64 of the 128-bit ring
(2^i below the spacing of about 2^105) are all the immediate successor, so 128-bit finger i is 64-bit
finger i - 64: nothing is lost. Node-IDs are drawn until unique (a collision has probability N^2 / 2^65).

Fingers. Finger i of node n is successor(n + 2^i) (Chord; Castro et al. call this the constrained
table). Only levels with 2^i above about the node spacing differ from the successor list, so about
log2 N + a few levels matter. Constrained fingers are not stored: `ExactFingers` computes
successor(n + 2^i) on demand through a bucket index over the sorted IDs (an O(1) successor search:
IDs are uniform, so bucket k of the top ceil(log2 N) bits holds about one node), which costs less than
building a 10^7 x 28 table. `FingerTable` materializes levels lo..63 as int32 (levels x N) when entries
are per-node choices (proximity-style relaxed tables, poisoned tables) and for checking.

Routing. Greedy Chord routing as RELOAD's Chord topology plugin does it (RFC 6940, section 10): if the
key's responsible node is in the current node's successor list, forward to it; otherwise forward to the
entry of the routing table (fingers and successor list) with the largest ID that precedes the key. The
closest preceding finger needs no scan: fingers grow with i, so it is finger floor(log2 d) where d is
the clockwise distance from the node to the key's predecessor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from threatlab.errors import ParamError

ID_BITS = 64  # routing precision: the top 64 bits of a 128-bit Node-ID
_ONE = np.uint64(1)
_MAX_STEPS = 4 * ID_BITS  # a greedy route never needs more than ~log2 N hops; this is a safety net

RngLike = np.random.Generator | int | None


def as_generator(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def random_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniform 64-bit IDs: the top 64 bits of uniform 128-bit Node-IDs."""
    return rng.bit_generator.random_raw(n).astype(np.uint64, copy=False)


def floor_log2(x: np.ndarray) -> np.ndarray:
    """floor(log2 x) for uint64 x > 0, exactly (float64 rounding near 2^k is corrected)."""
    j = np.minimum(np.frexp(x.astype(np.float64))[1].astype(np.int64) - 1, ID_BITS - 1)
    j -= (np.left_shift(_ONE, j.astype(np.uint64)) > x).astype(np.int64)
    return j


def pow2(levels: np.ndarray) -> np.ndarray:
    return np.left_shift(_ONE, np.asarray(levels).astype(np.uint64))


class Ring:
    """A Chord ring: sorted unique uint64 IDs, who is malicious, and an O(1) successor index."""

    __slots__ = ("ids", "malicious", "n", "_shift", "_bucket", "_mal_index")

    def __init__(self, ids: np.ndarray, malicious: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.uint64)
        malicious = np.asarray(malicious, dtype=bool)
        if ids.ndim != 1 or ids.size < 2 or malicious.shape != ids.shape:
            raise ParamError("a ring needs at least two nodes and one malicious flag per node")
        if not np.all(ids[1:] > ids[:-1]):
            order = np.argsort(ids, kind="stable")
            ids, malicious = ids[order], malicious[order]
            if np.any(ids[1:] == ids[:-1]):
                raise ParamError("node IDs must be unique")
        self.ids = ids
        self.malicious = malicious
        self.n = int(ids.size)
        # bucket index: bucket b holds the IDs whose top `bits` bits equal b
        bits = max(1, min(32, int(np.ceil(np.log2(self.n)))))
        self._shift = np.uint64(ID_BITS - bits)
        counts = np.bincount((ids >> self._shift).astype(np.int64), minlength=1 << bits)
        bucket = np.zeros((1 << bits) + 1, dtype=np.int64)
        np.cumsum(counts, out=bucket[1:])
        self._bucket = bucket
        self._mal_index = np.flatnonzero(self.malicious)

    @property
    def n_malicious(self) -> int:
        return int(self._mal_index.size)

    def successor(self, keys: np.ndarray) -> np.ndarray:
        """Index of the node responsible for each key: the first node whose ID is >= key (cyclic)."""
        keys = np.asarray(keys, dtype=np.uint64)
        b = (keys >> self._shift).astype(np.int64)
        idx = self._bucket[b]
        end = self._bucket[b + 1]
        act = np.flatnonzero(idx < end)
        ids = self.ids
        while act.size:  # about one node per bucket: a few passes over a shrinking set
            act = act[ids[idx[act]] < keys[act]]
            idx[act] += 1
            act = act[idx[act] < end[act]]
        idx[idx == self.n] = 0
        return idx

    def predecessor(self, keys: np.ndarray) -> np.ndarray:
        """Index of the last node whose ID is < key (cyclic): the node whose successor owns the key."""
        return (self.successor(keys) - 1) % self.n

    def next_malicious(self, idx: np.ndarray) -> np.ndarray:
        """First malicious node index at or after idx (cyclic); -1 when there is none."""
        m = self._mal_index
        if m.size == 0:
            return np.full(np.shape(idx), -1, dtype=np.int64)
        pos = np.searchsorted(m, idx, side="left")
        return m[pos % m.size]

    def offset(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Clockwise distance in nodes from index a to index b."""
        return (b - a) % self.n


def make_ring(
    n: int,
    malicious_fraction: float,
    rng: RngLike = None,
    *,
    chosen_ids: np.ndarray | None = None,
) -> Ring:
    """N nodes with uniform random IDs, round(f N) of them malicious (a uniform random subset).

    `chosen_ids`, if given, are IDs the attacker picked for (some of) its nodes (a chosen-ID attack:
    possible only without an enrollment server); its remaining malicious nodes get random IDs.
    """
    rng = as_generator(rng)
    if n < 2:
        raise ParamError("a ring needs at least two nodes")
    if not 0.0 <= malicious_fraction < 1.0:
        raise ParamError("malicious_fraction must be in [0, 1)")
    n_mal = int(round(malicious_fraction * n))
    chosen = np.sort(np.asarray(chosen_ids if chosen_ids is not None else [], dtype=np.uint64))
    chosen = chosen[np.concatenate([[True], chosen[1:] != chosen[:-1]])][:n_mal] if chosen.size else chosen
    ids = np.concatenate([chosen, random_ids(rng, n - chosen.size)])
    while True:  # sort, drop repeats (a chosen ID survives a colliding random one), redraw
        ids.sort()
        repeat = np.flatnonzero(ids[1:] == ids[:-1]) + 1
        if not repeat.size:
            break
        ids = np.concatenate([np.delete(ids, repeat), random_ids(rng, repeat.size)])
    malicious = np.zeros(n, dtype=bool)
    if chosen.size:
        malicious[np.searchsorted(ids, chosen)] = True
    rest = n_mal - int(chosen.size)
    if rest:
        honest = np.flatnonzero(~malicious)
        malicious[honest[rng.permutation(honest.size)[:rest]]] = True
    return Ring(ids, malicious)


# -- finger tables --------------------------------------------------------------------------------


def useful_levels(n: int, slack: int = 4) -> int:
    """Lowest finger level worth storing: below it fingers sit inside the successor list w.h.p."""
    spacing_bits = ID_BITS - int(np.ceil(np.log2(max(n, 2))))
    return max(0, spacing_bits - slack)


class ExactFingers:
    """Constrained Chord fingers computed on demand: finger i of node k = successor(id_k + 2^i)."""

    __slots__ = ("ring",)
    kind = "constrained"

    def __init__(self, ring: Ring) -> None:
        self.ring = ring

    def entry(self, nodes: np.ndarray, levels: np.ndarray) -> np.ndarray:
        ring = self.ring
        return ring.successor(ring.ids[nodes] + pow2(levels))


class FingerTable:
    """Materialized finger levels lo..63, int32, shape (levels, N); lower levels fall back to exact."""

    __slots__ = ("ring", "lo", "table", "kind")

    def __init__(self, ring: Ring, lo: int, table: np.ndarray, kind: str) -> None:
        self.ring, self.lo, self.table, self.kind = ring, lo, table, kind

    @property
    def nbytes(self) -> int:
        return int(self.table.nbytes)

    def entry(self, nodes: np.ndarray, levels: np.ndarray) -> np.ndarray:
        levels = np.asarray(levels, dtype=np.int64)
        nodes = np.asarray(nodes, dtype=np.int64)
        out = np.empty(nodes.shape, dtype=np.int64)
        stored = levels >= self.lo
        out[stored] = self.table[levels[stored] - self.lo, nodes[stored]]
        low = ~stored
        if low.any():
            out[low] = self.ring.successor(self.ring.ids[nodes[low]] + pow2(levels[low]))
        return out


def finger_table(
    ring: Ring,
    *,
    lo: int | None = None,
    relaxed: bool = False,
    poisoned: bool = False,
    rng: RngLike = None,
) -> FingerTable:
    """Finger table for every node, one vectorized successor search per level.

    constrained (default): entry i = successor(n + 2^i), the only correct choice (Chord, Castro's
    constrained table). relaxed: entry i = any node in [n + 2^i, n + 2^(i+1)) (proximity neighbour
    selection), here a uniform one, since latency is independent of ID. poisoned (relaxed only): an
    honest node's entry is a malicious node whenever one lies in the interval, as when colluders answer
    routing-table updates with each other (draft-song-p2psip-security-eval 4.2: "responding with fake
    routing table to UPDATE requests"); malicious nodes' own tables do not matter, they misbehave anyway.
    """
    if poisoned and not relaxed:
        raise ParamError("a constrained table cannot be poisoned: its entries are checkable")
    n = ring.n
    lo = useful_levels(n) if lo is None else lo
    rng = as_generator(rng)
    index_dtype = np.int32 if n < 2**31 else np.int64
    table = np.empty((ID_BITS - lo, n), dtype=index_dtype)
    ids = ring.ids
    for level in range(lo, ID_BITS):
        start = ring.successor(ids + pow2(level))
        if not relaxed:
            table[level - lo] = start
            continue
        stop = ring.successor(ids + pow2(level + 1)) if level + 1 < ID_BITS else np.arange(n)
        width = (stop - start) % n  # nodes in [n + 2^i, n + 2^(i+1)); the top one ends at n itself
        pick = (start + (rng.random(n) * width).astype(np.int64)) % n
        pick = np.where(width > 0, pick, start)
        if poisoned and ring.n_malicious:
            bad = ring.next_malicious(start)
            inside = (width > 0) & ((bad - start) % n < width) & ~ring.malicious
            pick = np.where(inside, bad, pick)
        table[level - lo] = pick
    kind = "relaxed-poisoned" if poisoned else ("relaxed" if relaxed else "constrained")
    return FingerTable(ring, lo, table, kind)


# -- greedy routing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Routes:
    """Outcome of one batch of routes (one path per element).

    root: index of the key's responsible node (its true successor).
    pred: index of the key's predecessor (the node whose successor list answers for the key).
    hops: messages sent on the path (to the root if it got there; wasted messages to detected bad hops
        count too).
    bad: the path accepted a malicious intermediate (it is in the attacker's hands from there on).
    bad_node: the first malicious intermediate accepted (-1 if none).
    detected: the querier saw a bad hop it could not route around (timeout or a rejected claim).
    known: for `track_known`, the closest node at or after the key that honest hops revealed (-1: none).
    """

    root: np.ndarray
    pred: np.ndarray
    hops: np.ndarray
    bad: np.ndarray
    bad_node: np.ndarray
    detected: np.ndarray
    known: np.ndarray | None


def _next_hop(ring: Ring, fingers, cur, pred, root, skip, r) -> tuple[np.ndarray, np.ndarray]:
    """(next hop, finger level used or -1) for walkers at `cur`; `skip` asks for the skip-th best entry.

    The best entry is the key's root if it is within the successor list, else the farther of the
    closest preceding finger and the last successor. skip > 0 (an alternative after a bad hop, or the
    k-th first hop of a redundant lookup) takes the next lower finger, or a nearer successor.
    """
    n = ring.n
    ids = ring.ids
    d_root = (root - cur) % n
    direct = (d_root <= r) & (skip == 0)
    dp = ids[pred] - ids[cur]  # uint64, clockwise distance to the key's predecessor
    dp = np.where(dp == 0, _ONE, dp)  # cur == pred: handled by `direct`; avoid log2(0)
    level = floor_log2(dp) - skip
    out = np.empty(cur.shape, dtype=np.int64)
    lvl_used = np.full(cur.shape, -1, dtype=np.int64)
    todo = np.flatnonzero(~direct & (level >= 0))
    cand = np.full(cur.shape, -1, dtype=np.int64)
    while todo.size:
        c = fingers.entry(cur[todo], level[todo])
        off = ids[c] - ids[cur[todo]]
        ok = (off > 0) & (off <= dp[todo])  # relaxed entries may overshoot the key: go one level down
        cand[todo[ok]] = c[ok]
        lvl_used[todo[ok]] = level[todo[ok]]
        todo = todo[~ok]
        level[todo] -= 1
        todo = todo[level[todo] >= 0]
    succ_off = np.maximum(np.minimum(r, d_root - 1) - skip, 1)
    succ_node = (cur + succ_off) % n
    use_finger = (cand >= 0) & ((cand - cur) % n > succ_off)
    out[:] = np.where(use_finger, cand, succ_node)
    lvl_used[~use_finger] = -1
    out[direct] = root[direct]
    return out, lvl_used


def route(
    ring: Ring,
    fingers,
    start: np.ndarray,
    keys: np.ndarray,
    *,
    successors: int,
    first_skip: np.ndarray | None = None,
    detect_bad_hops: bool = False,
    retries: int = 0,
    track_known: bool = False,
    stop_on_bad: bool = True,
) -> Routes:
    """Route one message per (start, key) greedily, all paths one hop per numpy step.

    The path is what honest forwarding produces; where it reaches a malicious node (other than the
    key's root) the path is marked bad at that node: from there the attacker decides what the querier
    sees. With `detect_bad_hops` (iterative routing against an attacker whose misbehaviour shows at the
    hop: a drop times out, a fabricated "I am responsible" fails the ID check) the querier backs off to
    the previous hop and asks for its next-best entry, up to `retries` times per path. With
    `stop_on_bad=False` paths continue through malicious nodes as if they were honest, to measure route
    length and where the first malicious node sits (Castro et al.'s analysis). The start node is the
    querier (or a node the caller vouches for); it never counts as bad.
    """
    n = ring.n
    if successors < 1:
        raise ParamError("successors must be >= 1 (the successor pointer)")
    start = np.asarray(start, dtype=np.int64)
    keys = np.asarray(keys, dtype=np.uint64)
    m = start.size
    root = ring.successor(keys)
    pred = (root - 1) % n
    cur = start.copy()
    hops = np.zeros(m, dtype=np.int32)
    bad = np.zeros(m, dtype=bool)
    bad_node = np.full(m, -1, dtype=np.int64)
    detected = np.zeros(m, dtype=bool)
    skip = np.zeros(m, dtype=np.int64)
    if first_skip is not None:
        skip[:] = first_skip
    retries_left = np.full(m, retries, dtype=np.int64)
    known = np.full(m, -1, dtype=np.int64) if track_known else None
    known_d = np.full(m, np.iinfo(np.uint64).max, dtype=np.uint64) if track_known else None
    mal = ring.malicious
    ids = ring.ids
    active = np.flatnonzero(cur != root)
    for _ in range(_MAX_STEPS + retries + int(skip.max(initial=0))):
        if not active.size:
            break
        c, p, rt, sk = cur[active], pred[active], root[active], skip[active]
        nxt, lvl = _next_hop(ring, fingers, c, p, rt, sk, successors)
        if track_known:
            # an honest hop also reveals its first finger past the key (iterative routing: the querier
            # sees every hop's table); used to catch a fake "responsible node" beyond it
            honest_hop = ~mal[c] | (c == start[active])
            sel = np.flatnonzero(honest_hop & (lvl >= 0) & (lvl + 1 < ID_BITS))
            if sel.size:
                a = active[sel]
                beyond = fingers.entry(c[sel], lvl[sel] + 1)
                d = ids[beyond] - keys[a]
                after = (ids[beyond] - ids[c[sel]]) > (keys[a] - ids[c[sel]])  # past the key, not wrapped
                better = after & (d < known_d[a])
                known_d[a[better]] = d[better]
                known[a[better]] = beyond[better]
        hops[active] += 1
        at_root = nxt == rt
        hit_bad = mal[nxt] & ~at_root
        if detect_bad_hops:
            retry = hit_bad & (retries_left[active] > 0)
            ra = active[retry]
            retries_left[ra] -= 1
            skip[ra] += 1
            fail = hit_bad & ~retry
            fa = active[fail]
            bad[fa] = True
            detected[fa] = True
            bad_node[fa] = nxt[fail]
            move = ~hit_bad
            stopped = fail
        else:
            first = hit_bad & ~bad[active]
            bad_node[active[first]] = nxt[first]
            bad[active[hit_bad]] = True
            move = ~hit_bad | (not stop_on_bad)
            stopped = hit_bad & stop_on_bad
        mv = active[move]
        cur[mv] = nxt[move]
        skip[mv] = 0
        active = active[~(at_root | stopped)]
    else:
        if active.size:
            raise RuntimeError("greedy routing did not converge")  # a bug, never an input problem
    return Routes(root, pred, hops, bad, bad_node, detected, known)


# -- naive reference, for tests at small N --------------------------------------------------------


def naive_fingers(ids: list[int], levels: range) -> list[list[int]]:
    """finger[k][i] = index of successor(ids[k] + 2^i), by a linear scan (O(N) per entry)."""
    n = len(ids)
    space = 1 << ID_BITS
    out = []
    for k in range(n):
        row = []
        for i in levels:
            target = (ids[k] + (1 << i)) % space
            best, best_d = None, None
            for j in range(n):
                d = (ids[j] - target) % space
                if best_d is None or d < best_d:
                    best, best_d = j, d
            row.append(best)
        out.append(row)
    return out
