"""Attacks and defenses of draft-song-p2psip-security-eval 4.2 / figure 6 on the vectorized ring."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from threatlab.errors import ParamError
from threatlab.overlay import ATTACKS, DEFENSES, run_lookups

N = 20_000
L = 4_000


def test_without_malicious_nodes_every_attack_and_defense_finds_the_responsible_node():
    combos = [(), ("verify",), ("redundant",), ("redundant", "verify"), ("halo",), ("constrained",)]
    for attack, d in itertools.product(sorted(ATTACKS), combos):
        m = run_lookups(5_000, 300, 0.0, attack, d, rng=1, halo_depth=1)
        assert m["lookup_failure_rate"] == 0.0 and m["success_rate"] == 0.0, (attack, d)


def test_same_seed_same_metrics():
    a = run_lookups(N, L, 0.2, "misroute", ("redundant", "verify"), rng=42)
    b = run_lookups(N, L, 0.2, "misroute", ("redundant", "verify"), rng=42)
    assert a == b


def test_dropped_lookups_are_noticed_misrouted_ones_are_not():
    drop = run_lookups(N, L, 0.2, "drop", (), rng=1)
    mis = run_lookups(N, L, 0.2, "misroute", (), rng=1)
    # same ring, same lookups: the same paths are compromised
    assert drop["lookup_failure_rate"] == mis["lookup_failure_rate"] > 0.5
    assert drop["detected_failure_rate"] == drop["lookup_failure_rate"]
    assert mis["wrong_answer_rate"] == mis["lookup_failure_rate"]


@pytest.mark.parametrize("attack", ["drop", "false-answer"])
def test_iterative_verification_routes_around_bad_hops_it_can_see(attack):
    plain = run_lookups(N, L, 0.2, attack, (), rng=2)
    checked = run_lookups(N, L, 0.2, attack, ("verify",), rng=2)
    assert checked["lookup_failure_rate"] < plain["lookup_failure_rate"] / 3
    assert checked["wrong_answer_rate"] == 0.0  # a fabricated "I am responsible" never gets through
    assert checked["messages_per_lookup"] > plain["messages_per_lookup"]  # retries cost messages


def test_verification_alone_barely_helps_against_colluding_misrouters():
    plain = run_lookups(N, L, 0.2, "misroute", (), rng=3)
    checked = run_lookups(N, L, 0.2, "misroute", ("verify",), rng=3)
    assert checked["lookup_failure_rate"] <= plain["lookup_failure_rate"]
    assert checked["lookup_failure_rate"] > 0.5  # the fake responsible node's ID follows the key


def test_redundant_paths_need_verification_to_outvote_colluders():
    plain = run_lookups(N, L, 0.2, "misroute", (), rng=4)
    vote = run_lookups(N, L, 0.2, "misroute", ("redundant",), rng=4)
    closest = run_lookups(N, L, 0.2, "misroute", ("redundant", "verify"), rng=4)
    # colluders all name the same fake node, so plurality over converging paths loses more often
    assert vote["lookup_failure_rate"] > plain["lookup_failure_rate"]
    assert closest["lookup_failure_rate"] < plain["lookup_failure_rate"] / 2
    assert closest["messages_per_lookup"] > 5 * plain["messages_per_lookup"]


def test_poisoned_relaxed_tables_break_routing_and_constrained_tables_stop_it():
    poisoned = run_lookups(N, L, 0.2, "poison", (), rng=5)
    constrained = run_lookups(N, L, 0.2, "poison", ("constrained",), rng=5)
    misroute = run_lookups(N, L, 0.2, "misroute", (), rng=5)
    assert poisoned["table"] == "relaxed-poisoned" and constrained["table"] == "constrained"
    assert poisoned["lookup_failure_rate"] > 0.95
    assert abs(constrained["lookup_failure_rate"] - misroute["lookup_failure_rate"]) < 0.03
    # Halo on a poisoned table: the knuckles' fingers are colluders too (Halo assumes correct fingers)
    assert run_lookups(N, 500, 0.2, "poison", ("halo",), rng=5, halo_depth=1)["lookup_failure_rate"] > 0.9


def test_chosen_ids_capture_the_target_keys_and_enrollment_takes_that_away():
    free = run_lookups(N, L, 0.2, "chosen-id", ("halo",), rng=6, targets=100, halo_depth=1)
    assert free["targets_covered"] == 100
    assert free["root_malicious_rate"] == 1.0 and free["success_rate"] == 1.0  # no routing defense helps
    enrolled = run_lookups(N, L, 0.2, "chosen-id", ("enrollment", "halo"), rng=6, targets=100, halo_depth=1)
    assert enrolled["targets_covered"] == 0
    assert enrolled["root_malicious_rate"] < 0.35  # random IDs: a target's owner is malicious with p ~ f
    assert enrolled["success_rate"] < 0.6


def test_halo_beats_plain_chord_and_recursion_beats_halo():
    plain = run_lookups(N, 2_000, 0.2, "misroute", (), rng=7)
    halo1 = run_lookups(N, 2_000, 0.2, "misroute", ("halo",), rng=7, halo_depth=1)
    halo2 = run_lookups(N, 2_000, 0.2, "misroute", ("halo",), rng=7, halo_depth=2)
    assert plain["lookup_failure_rate"] > halo1["lookup_failure_rate"] > halo2["lookup_failure_rate"]
    assert halo2["messages_per_lookup"] > 10 * halo1["messages_per_lookup"]


def test_run_lookups_names_bad_parameters():
    with pytest.raises(ParamError, match="attack"):
        run_lookups(N, 10, 0.1, "teleport")
    with pytest.raises(ParamError, match="defense"):
        run_lookups(N, 10, 0.1, "drop", ("firewall",))
    with pytest.raises(ParamError, match="malicious_fraction"):
        run_lookups(N, 10, 1.0, "drop")
    with pytest.raises(ParamError, match="successors"):
        run_lookups(N, 10, 0.1, "drop", successors=0)
    with pytest.raises(ParamError, match="unknown parameter"):
        run_lookups(N, 10, 0.1, "drop", fingers=3)


def test_metrics_are_the_catalogue_contract():
    m = run_lookups(N, 100, 0.1, "misroute", frozenset({"verify"}), rng=np.random.default_rng(1))
    for key in ("success_rate", "lookup_failure_rate", "mean_hops", "messages_per_lookup"):
        assert isinstance(m[key], float)
    assert set(ATTACKS) == {"drop", "misroute", "false-answer", "poison", "chosen-id"}
    assert set(DEFENSES) == {"redundant", "verify", "constrained", "enrollment", "halo"}
