"""Parameters from the command line: K=V syntax, types, ranges, and the plugin hook."""

from __future__ import annotations

import pytest
import toy_threats as toy

from threatlab.cli import parse_assignments, parse_grid
from threatlab.errors import ParamError, UsageError
from threatlab.lab import catalogue
from threatlab.lab.catalogue import load_catalogue
from threatlab.lab.sweep import default_defense_sets, expand_grid


def test_assignments_parse_and_reject_bad_syntax():
    assert parse_assignments(["window=10", " guesses = 3 ", "mode=a=b"]) == {"window": "10", "guesses": "3",
                                                                              "mode": "a=b"}
    for bad in (["window"], ["=3"], [""]):
        with pytest.raises(UsageError, match="expected NAME=VALUE"):
            parse_assignments(bad)
    with pytest.raises(UsageError, match="given twice"):
        parse_assignments(["a=1", "a=2"])


def test_grid_parses_value_lists():
    assert parse_grid(["window=1,2, 3", "guesses=5"]) == {"window": ["1", "2", "3"], "guesses": ["5"]}
    with pytest.raises(UsageError, match="no empty value"):
        parse_grid(["window=1,,2"])


def test_values_are_typed_and_range_checked():
    t = toy.BLIND_GUESS
    assert t.resolve_params({"window": "1e3", "space_bits": "8"})["window"] == 1000
    with pytest.raises(ParamError, match=r"space_bits='33': out of range; allowed: int in \[1, 32\] bits"):
        t.resolve_params({"space_bits": "33"})
    with pytest.raises(ParamError, match=r"window='1.5': not a valid int"):
        t.resolve_params({"window": "1.5"})
    with pytest.raises(ParamError, match=r"p='nan': must be finite"):
        toy.COIN.resolve_params({"p": "nan"})
    with pytest.raises(ParamError, match="allowed: one of fair, loaded"):
        toy.COIN.resolve_params({"mode": "crooked"})


def test_grid_expands_to_the_cartesian_product_with_defaults():
    points = expand_grid(toy.BLIND_GUESS, {"window": ["1", "2", "2"], "guesses": [4, 8, 16]})
    assert len(points) == 6  # the repeated 2 counts once
    assert points[0] == {"space_bits": 16, "window": 1, "guesses": 4}
    assert {(p["window"], p["guesses"]) for p in points} == {(w, g) for w in (1, 2) for g in (4, 8, 16)}
    with pytest.raises(ParamError, match="out of range"):
        expand_grid(toy.BLIND_GUESS, {"window": ["1", "-5"]})
    with pytest.raises(UsageError, match="no values"):
        expand_grid(toy.BLIND_GUESS, {"window": []})


def test_default_defense_sets_are_baseline_and_all():
    assert default_defense_sets(toy.BLIND_GUESS) == [frozenset(), frozenset({"exact-match", "rate-limit"})]
    assert default_defense_sets(toy.COIN) == [frozenset()]


def test_plugin_modules_join_the_catalogue(monkeypatch):
    monkeypatch.setattr(catalogue, "PROTOCOL_PACKAGES", ())  # only the plugins, whatever protocols exist
    monkeypatch.delenv("THREATLAB_PLUGINS", raising=False)
    assert [t.id for t in load_catalogue()] == []
    assert [t.id for t in load_catalogue("toy_threats")][:2] == ["toy.blind-guess", "toy.coin"]
    monkeypatch.setenv("THREATLAB_PLUGINS", " toy_threats , ")
    assert load_catalogue().get("toy.coin") is toy.COIN


def test_bad_plugins_are_usage_errors():
    with pytest.raises(UsageError, match="cannot import plugin module 'no_such_mod_xyz'"):
        load_catalogue("no_such_mod_xyz")
    with pytest.raises(UsageError, match="'json' has no THREATS"):
        load_catalogue("json")
    with pytest.raises(UsageError, match="duplicate threat id toy.blind-guess"):
        load_catalogue("toy_threats,toy_threats")
