"""The vectorized Chord engine against naive references: fingers, successor search, greedy routing."""

from __future__ import annotations

from bisect import bisect_left

import numpy as np
import pytest

from threatlab.errors import ParamError
from threatlab.overlay.vector import (
    ID_BITS,
    ExactFingers,
    Ring,
    finger_table,
    floor_log2,
    make_ring,
    naive_fingers,
    random_ids,
    route,
)


def reference_route(ids: list[int], bits: int, r: int, q: int, key: int, fingers: dict) -> tuple[int, int]:
    """One lookup by RELOAD's Chord rule, one Python step at a time: (root index, hops).

    If the key's responsible node is in the successor list, go there; else go to the routing-table entry
    (fingers successor(n + 2^i) for every i, and r successors) with the largest ID preceding the key.
    """
    n, space = len(ids), 1 << bits
    root = bisect_left(ids, key) % n
    cur, hops = q, 0
    while cur != root:
        if (root - cur) % n <= r:
            cur = root
        else:
            if cur not in fingers:
                fingers[cur] = [bisect_left(ids, (ids[cur] + (1 << i)) % space) % n for i in range(bits)]
            entries = fingers[cur] + [(cur + s) % n for s in range(1, r + 1)]
            dk = (key - ids[cur]) % space
            ahead = [e for e in entries if 0 < (ids[e] - ids[cur]) % space < dk]
            cur = max(ahead, key=lambda e: (ids[e] - ids[cur]) % space)
        hops += 1
    return root, hops


def test_finger_table_matches_naive_scan_on_every_level():
    ring = make_ring(150, 0.0, rng=7)
    table = finger_table(ring, lo=0)
    naive = np.array(naive_fingers([int(x) for x in ring.ids], range(ID_BITS)))
    assert table.table.shape == (ID_BITS, 150)
    assert np.array_equal(table.table.T, naive)
    # the on-demand fingers are the same function
    nodes = np.repeat(np.arange(150), ID_BITS)
    levels = np.tile(np.arange(ID_BITS), 150)
    assert np.array_equal(ExactFingers(ring).entry(nodes, levels), naive.ravel())


def test_default_finger_levels_cover_log2_n_plus_a_few():
    ring = make_ring(10_000, 0.0, rng=1)
    table = finger_table(ring)
    assert table.table.shape[0] == int(np.ceil(np.log2(10_000))) + 4  # 18 levels, not 128
    nodes = np.arange(ring.n)
    for level in (table.lo, table.lo + 5, ID_BITS - 1):
        levels = np.full(ring.n, level)
        assert np.array_equal(table.entry(nodes, levels), ExactFingers(ring).entry(nodes, levels))


def test_successor_search_matches_searchsorted_including_edges():
    rng = np.random.default_rng(3)
    ring = make_ring(5_000, 0.0, rng)
    keys = np.concatenate(
        [
            random_ids(rng, 20_000),
            ring.ids[:100],
            ring.ids[:100] + np.uint64(1),
            np.array([0, 2**64 - 1], dtype=np.uint64),
        ]
    )
    expected = np.searchsorted(ring.ids, keys, side="left") % ring.n
    assert np.array_equal(ring.successor(keys), expected)


def test_floor_log2_is_exact_near_powers_of_two():
    x = np.array([1, 2, 3, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1], dtype=np.uint64)
    assert floor_log2(x).tolist() == [0, 1, 1, 52, 53, 53, 62, 63, 63]


@pytest.mark.parametrize("successors", [1, 3, 8])
def test_routing_follows_reloads_rule_hop_for_hop(successors):
    rng = np.random.default_rng(11)
    ring = make_ring(400, 0.0, rng)
    q = rng.integers(ring.n, size=600)
    keys = random_ids(rng, 600)
    res = route(ring, ExactFingers(ring), q, keys, successors=successors)
    ids = [int(x) for x in ring.ids]
    cache: dict = {}
    ref = [reference_route(ids, ID_BITS, successors, int(a), int(k), cache) for a, k in zip(q, keys)]
    assert res.root.tolist() == [r for r, _ in ref]
    assert res.hops.tolist() == [h for _, h in ref]


def test_top_64_bits_of_128_bit_ids_route_exactly_like_the_full_ids():
    rng = np.random.default_rng(5)
    n = 300
    ids128 = sorted({int(a) << 64 | int(b) for a, b in zip(random_ids(rng, n), random_ids(rng, n))})
    keys128 = [int(a) << 64 | int(b) for a, b in zip(random_ids(rng, 400), random_ids(rng, 400))]
    q = rng.integers(n, size=400)
    ring = Ring(np.array([x >> 64 for x in ids128], dtype=np.uint64), np.zeros(n, dtype=bool))
    keys64 = np.array([k >> 64 for k in keys128], dtype=np.uint64)
    res = route(ring, ExactFingers(ring), q, keys64, successors=3)
    cache: dict = {}
    ref = [reference_route(ids128, 128, 3, int(a), k, cache) for a, k in zip(q, keys128)]
    assert res.root.tolist() == [r for r, _ in ref]
    assert res.hops.tolist() == [h for _, h in ref]


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_routing_without_attackers_always_reaches_the_true_successor(n):
    rng = np.random.default_rng(n)
    ring = make_ring(n, 0.0, rng)
    keys = random_ids(rng, 50_000)
    res = route(ring, ExactFingers(ring), rng.integers(n, size=keys.size), keys, successors=8)
    assert np.array_equal(res.root, np.searchsorted(ring.ids, keys) % n)
    assert not res.bad.any() and not res.detected.any()


@pytest.mark.parametrize("n", [1_000, 10_000, 100_000])
def test_path_length_is_half_log2_n(n):
    # Stoica et al. 2001: a lookup passes about (1/2) log2 N nodes before the responsible one, with
    # fingers and the successor pointer alone (successor list of length 1)
    rng = np.random.default_rng(2)
    ring = make_ring(n, 0.0, rng)
    res = route(ring, ExactFingers(ring), rng.integers(n, size=40_000), random_ids(rng, 40_000), successors=1)
    intermediates = (res.hops - 1)[res.hops > 0]
    assert abs(intermediates.mean() - 0.5 * np.log2(n)) < 0.3


def test_materialized_table_routes_exactly_like_on_demand_fingers():
    rng = np.random.default_rng(4)
    ring = make_ring(20_000, 0.2, rng)
    q = np.flatnonzero(~ring.malicious)[:30_000 % ring.n]
    keys = random_ids(rng, q.size)
    a = route(ring, ExactFingers(ring), q, keys, successors=8, stop_on_bad=False)
    b = route(ring, finger_table(ring), q, keys, successors=8, stop_on_bad=False)
    assert np.array_equal(a.hops, b.hops) and np.array_equal(a.bad, b.bad)
    assert np.array_equal(a.bad_node, b.bad_node)


def test_relaxed_entries_stay_in_their_interval_and_poisoning_fills_them_with_colluders():
    rng = np.random.default_rng(9)
    ring = make_ring(5_000, 0.2, rng)
    lo = 40
    relaxed = finger_table(ring, lo=lo, relaxed=True, rng=1)
    poisoned = finger_table(ring, lo=lo, relaxed=True, poisoned=True, rng=1)
    ids = ring.ids
    for level in range(lo, ID_BITS - 1):
        start = ring.successor(ids + np.uint64(1 << level))
        end = ring.successor(ids + np.uint64(1 << (level + 1)))
        width = (end - start) % ring.n
        for tab in (relaxed.table, poisoned.table):
            e = tab[level - lo].astype(np.int64)
            inside = (e - start) % ring.n < width
            assert np.all(np.where(width > 0, inside, e == start))
        has_bad = (width > 0) & ((ring.next_malicious(start) - start) % ring.n < width) & ~ring.malicious
        assert np.all(ring.malicious[poisoned.table[level - lo][has_bad]])
    with pytest.raises(ParamError):
        finger_table(ring, poisoned=True)


def test_make_ring_has_exactly_round_f_n_malicious_nodes_and_unique_ids():
    ring = make_ring(100_001, 0.22, rng=8)
    assert ring.n_malicious == round(0.22 * 100_001)
    assert np.all(ring.ids[1:] > ring.ids[:-1])
    chosen = np.array([5, 5, 6, 2**64 - 1], dtype=np.uint64)
    ring = make_ring(1_000, 0.1, rng=8, chosen_ids=chosen)
    assert ring.malicious[np.searchsorted(ring.ids, np.array([5, 6, 2**64 - 1], dtype=np.uint64))].all()
    assert ring.n_malicious == 100
