"""The challenge-ACK, corner-case and middlebox threats of tcpsecure (5.2, 5.3, 3.2, 6.1, 6.2) and the
challenge-ACK side channel (CVE-2016-5696), run through the lab's runner as the CLI runs them.

Each test states the draft's claim, runs the threat with and without the defense, and compares the
simulated numbers with the analytic expectation. Tolerances: exact (1e-9) where the scenario has no
randomness that changes the outcome (the timing of a deterministic exchange, a limiter's count);
statistical ones are given next to the assertion, as multiples of the standard error.
"""

from __future__ import annotations

import math
import random
from ipaddress import IPv4Address

import pytest

from threatlab.lab.catalogue import Threat
from threatlab.lab.runner import run_threat
from threatlab.net.pcap import read_pcap
from threatlab.net.wire import ETH_P_IP, Ethernet, IPv4
from threatlab.tcp.challenge import RandomizedChallengeAckLimiter
from threatlab.tcp.challenge_attacks import (
    ForcedIsnRandom,
    PathFaults,
    parse_tcp_frame,
)
from threatlab.tcp.threats_challenge import (
    ADVANCING,
    CHALLENGE_THREATS,
    REFLECTION,
    RESTART,
    RST_CACHE,
    SIDE_CHANNEL,
    SYN_ISN,
    restart_trial,
)
from threatlab.tcp.wire import TcpFlags, TcpSegment

EXACT = 1e-9


def run(threat: Threat, defenses=(), trials: int = 1, seed: int = 1, **params):
    return run_threat(threat, params, defenses, trials, seed)


def close(result, metric: str, tol: float = EXACT) -> None:
    got, want = result.metrics[metric], result.expected[metric]
    assert got == pytest.approx(want, abs=tol), (metric, got, want)


# --- the catalogue entries ------------------------------------------------------------------------


def test_catalogue_entries_name_the_draft_and_carry_units():
    ids = [t.id for t in CHALLENGE_THREATS]
    assert ids == [
        "tcp.challenge-ack-reflection",
        "tcp.restart-extra-rtt",
        "tcp.syn-isn-corner-case",
        "tcp.middlebox-rst-cache",
        "tcp.middlebox-advancing-seq",
        "tcp.challenge-ack-side-channel",
    ]
    sections = {t.id: t.source.section for t in CHALLENGE_THREATS}
    assert sections["tcp.challenge-ack-reflection"] == "5.2" and sections["tcp.restart-extra-rtt"] == "5.3"
    assert sections["tcp.middlebox-rst-cache"] == "6.1" and sections["tcp.middlebox-advancing-seq"] == "6.2"
    for t in CHALLENGE_THREATS:
        assert t.source.seed_file == "001_8fae148b6f71f2f2.txt"
        assert t.expected is not None
        assert t.metrics[0].name == "success_rate"
        for p in t.params:
            assert p.unit or p.choices or p.kind is bool, p.name
        names = {m.name for m in t.metrics}
        # every analytic value is one of the threat's metrics, for the default parameters
        for d in ((), t.defense_ids()):
            exp = t.expected(t.resolve_params(), frozenset(d))
            assert set(exp) <= names, (t.id, set(exp) - names)
    for t in CHALLENGE_THREATS[:-1]:
        assert t.source.draft == "draft-ietf-tcpm-tcpsecure-01"
    assert "CVE-2016-5696" in SIDE_CHANNEL.source.draft


# --- 5.2: reflection ------------------------------------------------------------------------------

SMALL_FLOOD = {"attack_rate": 400.0, "duration": 0.25}  # 100 probes per flood


def test_rfc793_in_window_rst_resets_at_once_so_nothing_is_reflected():
    r = run(REFLECTION, **SMALL_FLOOD)
    assert r.metrics["reflection_factor_mean"] == 0.0 and r.metrics["victim_reset_mean"] == 1.0
    close(r, "reflection_factor_mean")
    close(r, "success_rate")


def test_rst_exact_reflects_one_challenge_ack_per_spoofed_rst():
    # 5.2: "spoof SYN or RST packets within the window and cause ACK flooding to a remote peer"
    r = run(REFLECTION, ["rst-exact"], **SMALL_FLOOD)
    assert r.metrics["reflected_packets_mean"] == 100 and r.metrics["attack_packets_mean"] == 100
    close(r, "reflection_factor_mean")
    close(r, "byte_factor_mean")  # minimal frames both ways: a reflector, not an amplifier
    assert r.metrics["victim_reset_mean"] == 0.0


@pytest.mark.parametrize("defenses", [(), ("rst-exact",), ("rst-exact", "challenge-ack-limit")])
def test_out_of_window_segments_are_acknowledged_one_for_one_whatever_the_defenses(defenses):
    # 5.2: "it is trivial to cause a victim to generate an ACK ... packets with sequence numbers that
    # are outside the acceptable window"
    r = run(REFLECTION, defenses, **SMALL_FLOOD)
    assert r.metrics["oow_reflection_factor_mean"] == 1.0
    close(r, "oow_reflection_factor_mean")


def test_challenge_ack_limit_caps_reflection_at_10_per_5_seconds():
    # 2.2: "no more than 10 challenge ACKs in a 5 second window". 600 RSTs at 100/s over 6 s open
    # two windows: 20 challenge ACKs leave, 580 are suppressed.
    r = run(REFLECTION, ["rst-exact", "challenge-ack-limit"], attack_rate=100.0, duration=6.0)
    assert r.metrics["reflected_packets_mean"] == 20
    assert r.metrics["challenge_acks_suppressed_mean"] == 580
    close(r, "reflection_factor_mean")
    unthrottled = run(REFLECTION, ["rst-exact"], attack_rate=100.0, duration=6.0)
    assert unthrottled.metrics["reflection_factor_mean"] / r.metrics["reflection_factor_mean"] == 30


def test_syn_probes_reflect_under_rfc793_too_and_only_the_limit_cuts_them():
    base = run(REFLECTION, probe="syn", **SMALL_FLOOD)
    # RFC 793: the first in-window SYN resets (and sends RST), the rest meet no connection: RST each
    assert base.metrics["reflection_factor_mean"] == 1.0 and base.metrics["victim_reset_mean"] == 1.0
    challenged = run(REFLECTION, ["syn-challenge"], probe="syn", **SMALL_FLOOD)
    assert challenged.metrics["reflection_factor_mean"] == 1.0 and challenged.metrics["victim_reset_mean"] == 0.0
    limited = run(REFLECTION, ["syn-challenge", "challenge-ack-limit"], probe="syn", **SMALL_FLOOD)
    assert limited.metrics["reflected_packets_mean"] == 10
    for r in (base, challenged, limited):
        close(r, "reflection_factor_mean")


def test_reflections_saturate_a_slow_peer_link_at_the_attackers_rate():
    # 2000 reflected 60-byte frames per second fill 96% of a 1 Mbit/s link
    r = run(REFLECTION, ["rst-exact"], attack_rate=2000.0, duration=0.5)
    assert r.metrics["peer_link_share_mean"] == pytest.approx(2000 * 60 * 8 / 1e6, rel=1e-9)


# --- 5.3: the extra round trips -------------------------------------------------------------------


def test_rfc793_tears_a_stale_connection_down_when_the_rst_arrives():
    r = run(RESTART, trials=20)
    assert r.metrics["teardown_rtt_mean"] == pytest.approx(0.5, abs=EXACT)
    close(r, "success_rate")


def test_rst_exact_costs_the_challenge_round_trip_and_more_when_late_data_overtakes_it():
    # 2.2: "the peer requires an extra round trip time before the connection can be reset"; 5.3: the
    # figure, where the late data makes the answer to the challenge arrive out of window.
    r = run(RESTART, ["rst-exact"], trials=200)
    assert r.metrics["success_rate"] == 0.0
    # teardown is 1.5 + d for d < 1 RTT, else 1.5, with d ~ U(0, 2): sd 0.32, so 4 standard errors
    # of a 200-trial mean are 0.09
    close(r, "teardown_rtt_mean", tol=0.09)
    close(r, "extra_rtt_mean", tol=0.09)


@pytest.mark.parametrize("seed", range(12))
def test_each_restart_trial_follows_the_figure_exactly(seed):
    params = RESTART.resolve_params()
    out = restart_trial(params, frozenset({"rst-exact"}), random.Random(seed))
    d = out["late_by_rtt"]
    if d < 1:
        # steps 4-7: the data moves RCV.NXT, the answer to the challenge is dropped (step 5), and the
        # RST answering A's ACK of the data tears the connection down at 3h + d
        assert out["teardown_rtt"] == pytest.approx(1.5 + d, abs=1e-6)
        assert out["rsts_dropped_out_of_window"] == 1
    else:
        assert out["teardown_rtt"] == pytest.approx(1.5, abs=1e-6)
        assert out["rsts_dropped_out_of_window"] == 0
    assert out["challenge_acks_sent"] == 1


def test_lost_data_costs_exactly_one_extra_round_trip_and_an_exact_rst_none():
    lost = run(RESTART, ["rst-exact"], trials=5, fate="lost")
    assert lost.metrics["teardown_rtt_mean"] == pytest.approx(1.5, abs=EXACT)
    close(lost, "teardown_rtt_mean")
    exact = run(RESTART, ["rst-exact"], trials=5, in_flight=0)
    assert exact.metrics["teardown_rtt_mean"] == pytest.approx(0.5, abs=EXACT)
    assert exact.metrics["challenge_acks_sent_mean"] == 0


# --- 3.2 note: the ISN corner case ----------------------------------------------------------------


@pytest.mark.parametrize("defenses", [(), ("syn-challenge", "rst-exact")])
def test_isn_of_rcv_nxt_minus_one_makes_the_stale_ack_acceptable_and_setup_fail(defenses):
    # 3.2: "This ACK will have an ack value of RCV.NXT and will be acceptable to the restarting host
    # which will accept the ACK and do nothing. The SYN will then be retransmitted and the behavior
    # will repeat." Not caused by syn-challenge: RFC 793 sends the same ACK for that SYN.
    r = run(SYN_ISN, defenses, trials=3)
    assert r.metrics["success_rate"] == 1.0
    close(r, "success_rate")
    close(r, "time_to_establish_s_mean", tol=1e-6)  # 123 s of SYN back-off, then RTO + RTT
    assert r.metrics["syns_sent_mean"] == 7 + 2  # the 7 SYNs of the failed attempt, 2 of the next
    assert r.metrics["stale_torn_down_mean"] == 1.0  # the second attempt's RST cleared it


def test_random_isn_clears_the_stale_connection_and_connects_after_one_rto():
    r = run(SYN_ISN, ["syn-challenge", "rst-exact"], trials=10, isn="random")
    assert r.metrics["success_rate"] == 0.0
    assert r.expected["success_rate"] == pytest.approx(2**-32)
    close(r, "time_to_establish_s_mean", tol=1e-6)
    base = run(SYN_ISN, trials=10, isn="random")
    assert base.metrics["success_rate"] == 0.0
    assert base.expected["success_rate"] == pytest.approx((1 + 65535) / 2**32)


def test_with_one_attempt_the_corner_case_never_connects():
    r = run(SYN_ISN, ["syn-challenge"], attempts=1)
    assert r.metrics["established_mean"] == 0.0 and "time_to_establish_s_mean" not in r.metrics
    close(r, "established_mean")


# --- 6.1 and 6.2: middlebox wars ------------------------------------------------------------------


@pytest.mark.parametrize("threat", [RST_CACHE, ADVANCING], ids=["6.1", "6.2"])
def test_without_rst_exact_the_first_rst_resets_and_there_is_no_war(threat):
    r = run(threat)
    assert r.metrics["war_packets_mean"] == 0 and r.metrics["a_torn_down_mean"] == 1.0
    close(r, "war_packets_mean")


@pytest.mark.parametrize("threat", [RST_CACHE, ADVANCING], ids=["6.1", "6.2"])
def test_rst_exact_without_throttling_fights_a_war_as_long_as_the_box_holds_state(threat):
    # 6.1: "This will cause a RST/ACK war to happen"; one RST and one ACK per A-box round trip
    r = run(threat, ["rst-exact"], hold=5.0)
    assert r.metrics["success_rate"] == 1.0
    for m in ("war_packets_mean", "war_duration_s_mean", "war_pps_mean", "a_torn_down_mean"):
        close(r, m, tol=1e-6)
    assert r.metrics["war_pps_mean"] == pytest.approx(2 / 0.010, rel=0.01)  # RTT 20 ms: box at 10 ms


@pytest.mark.parametrize("threat", [RST_CACHE, ADVANCING], ids=["6.1", "6.2"])
def test_challenge_ack_limit_bounds_the_war_whatever_the_box_holds(threat):
    # 6.2: "it could be mitigated by implementing the RST throttling mechanism"
    for hold in (5.0, 60.0):
        r = run(threat, ["rst-exact", "challenge-ack-limit"], hold=hold)
        assert r.metrics["war_packets_mean"] == 20  # 10 challenge ACKs, 10 RSTs answering them
        assert r.metrics["success_rate"] == 0.0
        # the cost: the war ends with A's last challenge unanswered and its connection stale
        assert r.metrics["a_torn_down_mean"] == 0.0
        for m in ("war_packets_mean", "war_duration_s_mean", "a_torn_down_mean"):
            close(r, m, tol=1e-6)


def test_the_drafts_literal_ack_plus_window_is_out_of_window_so_no_war_but_a_stale_connection():
    # RFC 793's window is RCV.NXT <= SEG.SEQ < RCV.NXT + RCV.WND: ACK + WND is one past it
    r = run(ADVANCING, ["rst-exact"], edge_offset=0)
    assert r.metrics["war_packets_mean"] == 2 and r.metrics["a_torn_down_mean"] == 0.0
    close(r, "war_packets_mean")
    exact = run(ADVANCING, ["rst-exact"], edge_offset=-65535)  # ACK + WND - WND = RCV.NXT: exact
    assert exact.metrics["war_packets_mean"] == 2 and exact.metrics["a_torn_down_mean"] == 1.0
    close(exact, "a_torn_down_mean")


# --- CVE-2016-5696: the side channel --------------------------------------------------------------


def test_host_global_limit_lets_an_off_path_attacker_find_the_clients_port():
    r = run(SIDE_CHANNEL, trials=3, ports=256)
    assert r.metrics["success_rate"] == 1.0 and r.metrics["presence_detected_mean"] == 1.0
    for m in ("rounds_mean", "spoofed_sent_mean", "probes_sent_mean"):
        close(r, m)
    assert r.metrics["rounds_mean"] == 1 + 8  # one round to see the port exists, then log2(256)


def test_binary_search_cost_matches_the_analysis_for_a_range_that_is_not_a_power_of_two():
    r = run(SIDE_CHANNEL, trials=6, ports=300)
    assert r.metrics["success_rate"] == 1.0
    # rounds are 9 or 10 by where the port lies: the mean of 6 trials is within 0.5 of E = 9.29
    close(r, "rounds_mean", tol=0.5)


def test_per_connection_limit_leaves_the_attacker_nothing_to_count():
    r = run(SIDE_CHANNEL, ["challenge-ack-per-connection"], trials=3, ports=256)
    assert r.metrics["success_rate"] == 0.0 and r.metrics["presence_detected_mean"] == 0.0
    close(r, "success_rate")


def test_randomized_budget_turns_each_round_into_a_coin_flip():
    r = run(SIDE_CHANNEL, ["challenge-ack-random-budget"], trials=40, ports=64)
    # expected success 0.51 * ~0.5^6 = 0.008: at most 3 of 40 (P(more) < 0.5%)
    assert r.metrics["success_rate"] <= 3 / 40
    assert r.expected["success_rate"] < 0.01
    # presence judged right with p = 0.51; 40 trials: sd 0.079, 3 sd = 0.24
    close(r, "presence_detected_mean", tol=0.24)
    both = run(SIDE_CHANNEL, ["challenge-ack-per-connection", "challenge-ack-random-budget"], trials=2, ports=64)
    assert both.metrics["success_rate"] == 0.0


def test_per_connection_and_random_budget_both_act():
    # per connection alone, the attacker's own count is always `limit`: it never judges a hit
    fixed = run(SIDE_CHANNEL, ["challenge-ack-per-connection"], trials=3, ports=64)
    assert fixed.metrics["presence_detected_mean"] == 0.0 and fixed.metrics["rounds_mean"] == 1.0
    # with the random budget too, its own connection's budget is drawn anew each round, so it judges
    # "hit" with p = (L - ceil(L/2))/L = 0.5 whatever the probes did, and the search is a random walk
    both = ["challenge-ack-per-connection", "challenge-ack-random-budget"]
    r = run(SIDE_CHANNEL, both, trials=40, ports=64)
    assert r.expected["presence_detected_mean"] == 0.5 and r.expected["success_rate"] < 0.01
    # 40 trials: sd 0.079, 3 sd = 0.24; and more than one round on average (it went on searching)
    close(r, "presence_detected_mean", tol=0.24)
    assert r.metrics["presence_detected_mean"] > 0.0 and r.metrics["rounds_mean"] > 1.0
    # expected success 0.5 * 0.5^6 = 0.008: at most 3 of 40 (P(more) < 0.5%)
    assert r.metrics["success_rate"] <= 3 / 40


def test_the_attacker_goes_on_to_a_sequence_number_in_the_window():
    r = run(SIDE_CHANNEL, trials=1, ports=64, infer_seq=True, server_window=1 << 22)
    assert r.metrics["seq_found_mean"] == 1.0 and r.metrics["success_rate"] == 1.0
    for m in ("rounds_mean", "spoofed_sent_mean"):
        close(r, m)
    blocked = run(SIDE_CHANNEL, ["challenge-ack-per-connection"], trials=1, ports=64, infer_seq=True,
                  server_window=1 << 22)
    assert blocked.metrics["success_rate"] == 0.0


def test_randomized_limiter_draws_linux_budgets_per_interval():
    lim = RandomizedChallengeAckLimiter(100, 1.0, random.Random(7))
    for second in range(400):
        now = second * 1_000_000_000
        while lim.allow(now):
            now += 1
    assert all(50 <= b <= 149 for b in lim.budgets) and len(lim.budgets) == 400
    # uniform on 50..149: mean 99.5, sd 28.9; 400 draws: 4 standard errors = 5.8
    assert sum(lim.budgets) / 400 == pytest.approx(99.5, abs=5.8)
    assert lim.sent == sum(lim.budgets)


# --- the building blocks --------------------------------------------------------------------------


def test_forced_isn_random_forces_only_the_next_32_bit_draw():
    r = ForcedIsnRandom(3)
    r.force(0x12345678)
    assert r.getrandbits(32) == 0x12345678
    assert r.getrandbits(32) == ForcedIsnRandom(3).getrandbits(32)


def test_path_faults_touch_only_armed_data_segments():
    f = PathFaults()
    f.arm("out", 1, None)
    a, b = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")

    def frame(payload: bytes) -> bytes:
        seg = TcpSegment(1, 2, 100, 5, TcpFlags.ACK, 100, 0, (), payload)
        ip = IPv4(a, b, 6, seg.encode(a, b))
        return Ethernet(b"\x02" * 6, b"\x04" * 6, ETH_P_IP, ip.encode()).encode()

    pure_ack, data = frame(b""), frame(b"hello")
    assert f(pure_ack, "out") is pure_ack
    assert f(data, "in") is data
    assert f(data, "out") is None and f.lost == 1
    assert f(data, "out") is data
    assert parse_tcp_frame(data).seg.payload == b"hello"


def test_a_trial_writes_a_pcap_with_the_challenge_exchange(tmp_path):
    path = tmp_path / "restart.pcap"
    restart_trial(RESTART.resolve_params({"fate": "lost"}), frozenset({"rst-exact"}), random.Random(1),
                  pcap=str(path))
    frames = [parse_tcp_frame(f) for _, f in read_pcap(path)]
    flags = [int(f.seg.flags) for f in frames if f is not None]
    rst, ack = int(TcpFlags.RST), int(TcpFlags.ACK)
    # B's inexact RST, A's challenge ACK, B's exact RST for no connection
    assert flags.count(rst) + flags.count(rst | ack) >= 2
    assert any(f == ack for f in flags)


def test_runs_are_reproducible_from_the_seed():
    a = run(SIDE_CHANNEL, ["challenge-ack-random-budget"], trials=2, seed=5, ports=64)
    b = run(SIDE_CHANNEL, ["challenge-ack-random-budget"], trials=2, seed=5, ports=64)
    assert a.metrics == b.metrics
    assert math.isfinite(a.metrics["virtual_time_s_mean"])
