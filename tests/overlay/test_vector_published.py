"""Published results reproduced with the vectorized engine (sources and discussion:
docs/overlay-published-results.md). Tolerances are stated per test."""

from __future__ import annotations

import numpy as np
import pytest

from threatlab.overlay import castro_path_success, expected_lookup_failure, run_lookups
from threatlab.overlay.vector import ExactFingers, make_ring, random_ids, route

N = 100_000  # the network size of Halo's evaluation


@pytest.mark.parametrize(("f", "successors"), [(0.1, 1), (0.2, 8), (0.3, 8)])
def test_castro_single_path_succeeds_with_one_minus_f_to_the_h_minus_1(f, successors):
    """Castro et al. (OSDI 2002): a route of h hops between correct nodes succeeds with
    probability (1-f)^(h-1). Checked per hop count over 8 independent rings of 10^5 nodes, 50,000 lookups
    each; tolerance per hop count: 4 binomial standard errors plus 0.005 (what one ring's placement of
    malicious nodes on busy routes adds)."""
    hops, clean = [], []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        ring = make_ring(N, f, rng)
        honest = np.flatnonzero(~ring.malicious)
        q = honest[rng.integers(honest.size, size=50_000)]
        keys = random_ids(rng, q.size)
        res = route(ring, ExactFingers(ring), q, keys, successors=successors, stop_on_bad=False)
        hops.append(res.hops)
        clean.append(~res.bad)
    hops, clean = np.concatenate(hops), np.concatenate(clean)
    f_seen = round(f * N) / (N - 1)  # the querier is honest: the others hold all malicious nodes
    checked = 0
    for h in np.unique(hops):
        sel = hops == h
        if sel.sum() < 1_000:
            continue
        expected = float(castro_path_success(f_seen, h))
        tolerance = 4 * np.sqrt(expected * (1 - expected) / sel.sum()) + 0.005
        assert abs(clean[sel].mean() - expected) <= tolerance, (h, clean[sel].mean(), expected)
        checked += 1
    assert checked >= 7


@pytest.mark.parametrize("f", [0.12, 0.22])
def test_plain_lookups_fail_as_castros_formula_averaged_over_hop_counts(f):
    """The catalogue's analytic expectation: 1 - E[(1-f)^(h-1)]; within 0.015 over 20,000 lookups."""
    measured = run_lookups(N, 20_000, f, "misroute", (), rng=21)["lookup_failure_rate"]
    assert abs(measured - expected_lookup_failure(N, f)) < 0.015


@pytest.mark.parametrize("successors", [1, 3, 8, 16])
def test_halo_baseline_plain_chord_fails_over_half_at_12_and_over_70_percent_at_22(successors):
    """Kapadia and Triandopoulos (NDSS 2008): plain Chord of 100,000 nodes fails more than half of its
    lookups with 12% malicious nodes and more than 70% with 22%. 20,000 lookups: standard error 0.0035."""
    low = run_lookups(N, 20_000, 0.12, "misroute", (), rng=1, successors=successors)
    high = run_lookups(N, 20_000, 0.22, "misroute", (), rng=1, successors=successors)
    assert low["lookup_failure_rate"] > 0.50
    assert high["lookup_failure_rate"] > 0.70
    if successors == 16:  # the NDSS abstract's ranges, "50-60%" and "70-80%"
        assert 0.50 <= low["lookup_failure_rate"] <= 0.60
        assert 0.70 <= high["lookup_failure_rate"] <= 0.80
    if successors == 1:  # textbook Chord (successor pointer only): the talk abstract's "more than 60% / 80%"
        assert low["lookup_failure_rate"] > 0.60
        assert high["lookup_failure_rate"] > 0.80


def test_recursive_halo_keeps_failures_under_1_percent_at_12_percent_malicious():
    """Recursive Halo (depth 2, 16 knuckles) at 12%: published 1% for the non-recursive version; ours
    measures about 0.5% with recursion (10,000 lookups: standard error 0.0007)."""
    m = run_lookups(N, 10_000, 0.12, "misroute", ("halo",), rng=2, halo_depth=2)
    assert m["lookup_failure_rate"] <= 0.01


def test_halo_as_published_misses_1_percent_at_22_percent_because_searches_share_the_querier():
    """Not reproduced: with every knuckle search leaving from the querier, recursive Halo fails 3-7% of
    lookups at 22% (published: 1%). The searches share the querier's top fingers; see the docs."""
    m = run_lookups(N, 10_000, 0.22, "misroute", ("halo",), rng=3, halo_depth=2)
    assert 0.03 <= m["lookup_failure_rate"] <= 0.07
    one = run_lookups(N, 10_000, 0.12, "misroute", ("halo",), rng=3, halo_depth=1)
    assert 0.04 <= one["lookup_failure_rate"] <= 0.12  # published 1% for Halo at 12%


def test_halo_with_spread_first_hops_is_under_1_percent_at_22_percent_malicious():
    """The defense that reaches <= 1% at 22% malicious nodes and N = 100,000 against colluders that
    misroute: recursive Halo whose knuckle searches leave through random fingers of the querier.
    Measured 0.5-0.7% (10,000 lookups, standard error 0.0007); bound 1%."""
    m = run_lookups(N, 10_000, 0.22, "misroute", ("halo",), rng=4, halo_depth=2, halo_spread=True)
    assert m["lookup_failure_rate"] <= 0.01
    assert m["messages_per_lookup"] < 2_000


@pytest.mark.parametrize("attack", ["drop", "false-answer"])
def test_redundant_routing_with_verification_is_under_1_percent_at_22_percent_malicious(attack):
    """Against misbehaviour the querier can see (drops, fabricated answers), 8 redundant copies with
    iterative verification (8 retries per copy) fail well under 1% (measured 0.05%; 20,000 lookups)."""
    m = run_lookups(N, 20_000, 0.22, attack, ("redundant", "verify"), rng=5)
    assert m["lookup_failure_rate"] <= 0.01
