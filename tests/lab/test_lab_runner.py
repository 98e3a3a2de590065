"""The runner: per-trial seeds, determinism, aggregation, expectations, failures."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import subprocess
import sys

import pytest
import toy_threats as toy
from conftest import subprocess_env

from threatlab.errors import ParamError, UsageError
from threatlab.lab.catalogue import SUCCESS_RATE, Defense, Param, Source, Threat, default_aggregate
from threatlab.lab.runner import RunFailed, RunResult, get_code_version, run_threat
from threatlab.lab.seeds import canonical_json, trial_seed
from threatlab.net.topology import Position


def _threat(run, **kw) -> Threat:
    base = dict(id="t.x", title="t", source=Source("s.txt", "1"), position=Position.OFF_PATH, knowledge="-",
                params=(Param("n", "", 3, min=1, max=10),), defenses=(Defense("d", "-"),),
                metrics=(SUCCESS_RATE,), run=run)
    base.update(kw)
    return Threat(**base)


def test_same_seed_gives_the_same_result():
    a = run_threat(toy.BLIND_GUESS, {"window": 2000}, ["rate-limit"], 300, 42)
    b = run_threat(toy.BLIND_GUESS, {"window": "2000"}, ("rate-limit",), 300, 42)
    assert a == b


def test_different_seeds_give_different_measurements():
    results = {json.dumps(run_threat(toy.BLIND_GUESS, None, [], 200, s).metrics) for s in range(5)}
    assert len(results) == 5


def test_trial_seed_is_sha256_of_the_canonical_inputs():
    params = {"window": 8, "guesses": 4}
    material = json.dumps([7, "toy.blind-guess", {"guesses": 4, "window": 8}, ["a", "b"], 3],
                          sort_keys=True, separators=(",", ":"))
    want = int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big")
    assert trial_seed(7, "toy.blind-guess", params, ["b", "a"], 3) == want
    # key order and defense order do not matter; every input does
    assert trial_seed(7, "toy.blind-guess", {"guesses": 4, "window": 8}, ["a", "b"], 3) == want
    others = {trial_seed(8, "toy.blind-guess", params, ["a", "b"], 3),
              trial_seed(7, "toy.other", params, ["a", "b"], 3),
              trial_seed(7, "toy.blind-guess", {**params, "window": 9}, ["a", "b"], 3),
              trial_seed(7, "toy.blind-guess", params, ["a"], 3),
              trial_seed(7, "toy.blind-guess", params, ["a", "b"], 4)}
    assert want not in others and len(others) == 5
    assert 0 <= want < 2**64


def test_trial_seeds_are_independent():
    seeds = [trial_seed(1, "toy.blind-guess", {}, [], i) for i in range(4000)]
    assert len(set(seeds)) == len(seeds)
    first = [random.Random(s).random() for s in seeds]
    # uniform: each quarter holds about a quarter of the first draws (4000 draws, sd ~ 27)
    counts = [sum(1 for x in first if q / 4 <= x < (q + 1) / 4) for q in range(4)]
    assert all(abs(c - 1000) < 150 for c in counts), counts
    # neighbouring trials are uncorrelated (sd of r ~ 0.016)
    mx = sum(first) / len(first)
    cov = sum((a - mx) * (b - mx) for a, b in zip(first, first[1:])) / (len(first) - 1)
    var = sum((a - mx) ** 2 for a in first) / len(first)
    assert abs(cov / var) < 0.08


def test_result_is_the_same_in_another_process_with_another_hash_seed():
    here = run_threat(toy.BLIND_GUESS, {"guesses": 20}, ["exact-match"], 50, 9)
    code = ("import json, toy_threats as t; from threatlab.lab.runner import run_threat; "
            "r = run_threat(t.BLIND_GUESS, {'guesses': 20}, ['exact-match'], 50, 9); "
            "print(json.dumps([r.metrics, r.expected]))")
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(PYTHONHASHSEED=hash_seed),
                             capture_output=True, text=True, check=True, timeout=60).stdout
        assert json.loads(out) == [here.metrics, here.expected]


def test_measured_success_rate_agrees_with_the_analytic_expectation():
    for defenses in ([], ["rate-limit"]):
        r = run_threat(toy.BLIND_GUESS, {"window": 512}, defenses, 3000, 5)
        p = r.expected["success_rate"]
        sd = math.sqrt(p * (1 - p) / r.trials)
        assert abs(r.metrics["success_rate"] - p) < 4 * sd + 1e-9
        assert r.metrics["guesses_mean"] == pytest.approx(r.expected["guesses_mean"], rel=0.1)


def test_defense_lowers_the_success_rate():
    base = run_threat(toy.BLIND_GUESS, None, [], 500, 1)
    defended = run_threat(toy.BLIND_GUESS, None, ["exact-match", "rate-limit"], 500, 1)
    assert base.metrics["success_rate"] > 0.5 > defended.metrics["success_rate"]


def test_default_aggregate_is_success_rate_and_means():
    trials = [{"success": True, "packets": 4, "ok": True, "who": "a"},
              {"success": False, "packets": 8, "ok": False, "who": "b"}]
    assert default_aggregate(trials) == {"success_rate": 0.5, "packets_mean": 6.0}


def test_custom_aggregate_is_used_and_every_result_has_success_rate():
    r = run_threat(toy.COIN, {"p": 0.25, "flips": 5}, [], 400, 3)
    assert set(r.metrics) == {"success_rate", "heads_max"}
    assert r.metrics["heads_max"] <= 5
    assert r.expected == {"success_rate": 0.25}
    assert abs(r.metrics["success_rate"] - 0.25) < 0.1


def test_aggregate_without_success_rate_fails_the_run():
    t = _threat(lambda p, d, rng, pcap=None: {"success": True}, aggregate=lambda trials: {"x": 1.0})
    with pytest.raises(RunFailed, match="success_rate"):
        run_threat(t, None, [], 2, 0)


def test_pcap_goes_to_trial_0_only():
    seen = []

    def run(params, defenses, rng, pcap=None):
        seen.append(pcap)
        return {"success": False}

    run_threat(_threat(run), None, [], 4, 0, pcap="/tmp/x.pcap")
    assert seen == ["/tmp/x.pcap", None, None, None]


def test_an_exception_in_the_run_function_is_a_run_failure_naming_the_trial():
    with pytest.raises(RunFailed, match=r"toy.broken \[no defense\] trial 0: ZeroDivisionError"):
        run_threat(toy.BROKEN, None, [], 3, 0)


def test_a_usage_error_from_the_run_function_stays_a_usage_error():
    def run(params, defenses, rng, pcap=None):
        raise ParamError("n=3 does not fit this topology")

    with pytest.raises(ParamError, match="does not fit"):
        run_threat(_threat(run), None, [], 1, 0)


def test_inputs_are_checked_and_defaults_filled():
    r = run_threat(toy.BLIND_GUESS, {"guesses": 3}, [], 1, 0)
    assert r.params == {"space_bits": 16, "window": 1024, "guesses": 3}
    with pytest.raises(ParamError, match=r"window.*allowed: int in \[1, 4294967296\]"):
        run_threat(toy.BLIND_GUESS, {"window": 0}, [], 1, 0)
    with pytest.raises(ParamError, match="no parameter 'bogus'.*space_bits, window, guesses"):
        run_threat(toy.BLIND_GUESS, {"bogus": 1}, [], 1, 0)
    with pytest.raises(ParamError, match="no defense 'nope'"):
        run_threat(toy.BLIND_GUESS, None, ["nope"], 1, 0)
    with pytest.raises(ParamError, match="trials"):
        run_threat(toy.BLIND_GUESS, None, [], 0, 0)
    with pytest.raises(ParamError, match="seed"):
        run_threat(toy.BLIND_GUESS, None, [], 1, -1)
    with pytest.raises(UsageError):
        run_threat(toy.BLIND_GUESS, None, "exact-match", 1, 0)


def test_result_fields_and_row_shape():
    r = run_threat(toy.BLIND_GUESS, None, ["rate-limit", "exact-match"], 5, 11)
    assert isinstance(r, RunResult)
    assert r.threat == "toy.blind-guess" and r.defenses == ("exact-match", "rate-limit")
    assert (r.seed, r.trials) == (11, 5)
    row = r.to_row()
    assert set(row) == {"defenses", "params", "seed", "trials", "metrics", "expected"}
    assert json.loads(canonical_json(row))["defenses"] == ["exact-match", "rate-limit"]
    with pytest.raises(AttributeError):
        r.seed = 1  # frozen


def test_code_version_is_version_plus_source_hash():
    v = get_code_version()
    assert re.fullmatch(r"0\.1\.0\+[0-9a-f]{12}", v)
    assert get_code_version() is v  # computed once
