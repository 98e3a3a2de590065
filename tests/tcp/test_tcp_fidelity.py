"""The simulated blind attacks agree with tcpsecure's analysis.

The draft's claims, each checked against trials that really send their segments through the
simulated switch, the server's IP input and its modeled TCP endpoint:

- 2.1: an attacker needs at most 2^32/RCV.WND in-window guesses (65,538 at RCV.WND = 65,535) and
  2^32/(2 RCV.WND) on average; and the time is packets x frame bits / the attacker's bit rate;
- 3.1: the same for SYNs under RFC 793;
- 4.1: a data segment with a guessed sequence number and one of two ACK guesses lands with odds
  1 in ((2^32/RCV.WND) * 2);
- 1: sequential ephemeral ports are guessed in a few tries, random ones need about range/2.

Tolerances are four standard errors. A first hit of a sweep of N guesses is (almost exactly)
uniform on 1..N, standard deviation sqrt((N^2 - 1)/12), so a mean over n trials is checked to
within 4 sqrt((N^2 - 1)/12) / sqrt(n) of the exact expectation (`sweep_hits`); a success rate p over
n trials to within 4 sqrt(p (1 - p) / n). With independent trials and the central limit theorem, a
correct model fails one such check with probability about 6e-5; the seeds are fixed, so the tests
are deterministic. Most checks use a 1 MiB window (4,096 guesses per sweep) to stay fast; one
test runs full-size 65,538-segment sweeps.
"""

from __future__ import annotations

import math
import random

import pytest

from threatlab.lab.catalogue import load_catalogue
from threatlab.lab.runner import run_threat
from threatlab.net.ethernet import serialization_ns
from threatlab.tcp.threats import SEQ_SPACE, sweep_hits, sweep_length, throttled_acks

MIB = 1 << 20
SIGMAS = 4


def _threat(tid: str):
    return load_catalogue().get(tid)


def _trials(tid: str, n: int, defenses=(), seed: int = 11, **params) -> list[dict]:
    """Every trial's own measurements (the runner's aggregate hides their spread)."""
    t = _threat(tid)
    values = t.resolve_params({k: str(v) for k, v in params.items()})
    rng = random.Random(seed)
    return [dict(t.run_trial(values, frozenset(defenses), random.Random(rng.getrandbits(64))))
            for _ in range(n)]


def _uniform_sd(n_guesses: int) -> float:
    return math.sqrt((n_guesses**2 - 1) / 12)


def _within(measured: float, expected: float, sd: float, n: int) -> bool:
    return abs(measured - expected) <= SIGMAS * sd / math.sqrt(n)


def test_blind_rst_needs_at_most_2_32_over_rcv_wnd_guesses_and_half_that_on_average():
    n = 60
    guesses = sweep_length(MIB)  # 4096
    trials = _trials("tcp.blind-rst", n, window=MIB)
    packets = [t["packets_to_success"] for t in trials]
    assert all(t["success"] for t in trials)
    assert max(packets) <= guesses == SEQ_SPACE // MIB
    c, s = sweep_hits(MIB, MIB, guesses)
    assert c == SEQ_SPACE and s / c == pytest.approx(SEQ_SPACE / (2 * MIB), abs=1)
    assert _within(sum(packets) / n, s / c, _uniform_sd(guesses), n)


def test_time_to_reset_is_packets_times_frame_bits_over_rate():
    for rate in (56_000, 10**6, 10**10):
        for t in _trials("tcp.blind-rst", 3, window=MIB, rate=rate):
            # every trial, exactly: the virtual clock is the attacker's link serializing 60-byte frames
            assert t["seconds_to_success"] * 1e9 == pytest.approx(t["packets_to_success"] *
                                                                 serialization_ns(60, rate), abs=1e-3)


def test_runner_expectation_matches_the_measured_rates_for_the_blind_rst_sweep():
    res = run_threat(_threat("tcp.blind-rst"), {"window": str(MIB)}, (), 40, seed=3)
    exp = res.expected
    assert res.metrics["success_rate"] == exp["success_rate"] == 1.0
    n, g = 40, sweep_length(MIB)
    assert _within(res.metrics["packets_to_success_mean"], exp["packets_to_success_mean"], _uniform_sd(g), n)
    ser = serialization_ns(60, 1_000_000) / 1e9
    assert _within(res.metrics["seconds_to_success_mean"], exp["seconds_to_success_mean"],
                   _uniform_sd(g) * ser, n)


@pytest.mark.parametrize("seed", range(3))
def test_full_size_sweep_of_65538_rsts_covers_every_window_of_65535(seed):
    """Full size: with rst-exact the victim never resets (unless the one exact number comes up)
    and so takes all 65,538 RSTs, and whatever RCV.NXT is, at least one of them (two where the
    sweep wraps) falls in RCV.NXT .. RCV.NXT + 65,534: the victim's challenge ACK shows it. Under
    RFC 793 that RST would have reset the connection: 2^32/RCV.WND guesses always suffice."""
    (t,) = _trials("tcp.blind-rst", 1, ["rst-exact"], seed=seed)
    assert sweep_length(65535) == 65538
    if t["success"]:  # the exact number: probability 65,538 / 2^32
        return
    assert t["packets_sent"] == 65538
    assert 1 <= t["challenge_acks_sent"] <= 2


def test_full_size_baseline_sweeps_reset_within_65538_rsts():
    n = 12
    trials = _trials("tcp.blind-rst", n, seed=5)
    packets = [t["packets_to_success"] for t in trials]
    assert all(t["success"] for t in trials) and max(packets) <= 65538
    c, s = sweep_hits(65535, 65535, 65538)
    assert _within(sum(packets) / n, s / c, _uniform_sd(65538), n)


def test_blind_syn_needs_the_same_guesses_as_rst_under_rfc793():
    n = 30
    trials = _trials("tcp.blind-syn", n, window=MIB)
    packets = [t["packets_to_success"] for t in trials]
    assert all(t["success"] for t in trials) and max(packets) <= 4096
    c, s = sweep_hits(MIB, MIB, 4096)
    assert _within(sum(packets) / n, s / c, _uniform_sd(4096), n)


def test_syn_challenge_limit_lets_out_exactly_what_the_limiter_allows():
    """tcpsecure 2.2's throttle: 4,096 SYNs at 56 kbit/s take 35 s: seven full 5-second windows of
    584 SYNs, 10 challenge ACKs each, and 8 SYNs left over, all 8 answered."""
    (t,) = _trials("tcp.blind-syn", 1, ["syn-challenge", "challenge-ack-limit"], window=MIB, rate=56_000)
    spacing = serialization_ns(60, 56_000)
    assert t["challenge_acks_sent"] == throttled_acks(4096, spacing, 10, 5 * 10**9) == 78
    assert not t["success"]


def test_data_injection_odds_are_one_in_2_32_over_rcv_wnd_times_2_per_segment():
    """With a budget of B segments, P(success) = B / ((2^32/RCV.WND) * 2) for B up to a sweep."""
    n, budget = 150, 1024
    trials = _trials("tcp.blind-data-injection", n, window=MIB, budget=budget)
    p = budget / ((SEQ_SPACE / MIB) * 2)  # 0.125
    rate = sum(t["success"] for t in trials) / n
    assert abs(rate - p) <= SIGMAS * math.sqrt(p * (1 - p) / n)
    t = _threat("tcp.blind-data-injection")
    exp = t.expected(t.resolve_params({"window": str(MIB), "budget": str(budget)}), frozenset())
    assert exp["success_rate"] == pytest.approx(p, rel=1e-3)


def test_data_injection_lands_within_two_sweeps_of_frames_half_of_them_on_average():
    n = 30
    trials = _trials("tcp.blind-data-injection", n, window=MIB)
    frames = [t["packets_to_success"] for t in trials]
    assert all(t["success"] for t in trials) and max(frames) <= 2 * 4096
    # 2 (guess index) - 1 or - 0: uniform on 1..8192 to within a half
    exp = _threat("tcp.blind-data-injection").expected(
        _threat("tcp.blind-data-injection").resolve_params({"window": str(MIB)}), frozenset())
    assert exp["packets_to_success_mean"] == pytest.approx(SEQ_SPACE / MIB, abs=1)
    assert _within(sum(frames) / n, exp["packets_to_success_mean"], _uniform_sd(2 * 4096), n)
    # and one of the two ACK guesses was the acceptable one: the first about half the time
    odd = sum(f % 2 for f in frames) / n
    assert abs(odd - 0.5) <= SIGMAS * math.sqrt(0.25 / n)


def test_port_guessing_sequential_is_n_plus_one_random_is_range_over_two():
    n = 100
    seq = [t["packets_to_success"]
           for t in _trials("tcp.port-guessing", n, port_range=1024, connections_between=3)]
    # k ~ uniform(0, 6): guesses k + 1, mean 4, sd 2
    assert max(seq) <= 7 and _within(sum(seq) / n, 4, 2.0, n)
    rnd = [t["packets_to_success"]
           for t in _trials("tcp.port-guessing", n, ["port-randomization"], port_range=1024,
                            connections_between=3)]
    # uniform over the 1,023 other ports
    assert _within(sum(rnd) / n, 1024 / 2, _uniform_sd(1023), n)
