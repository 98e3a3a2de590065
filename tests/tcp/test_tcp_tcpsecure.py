"""The claims of draft-ietf-tcpm-tcpsecure-01 (RFC 5961), baseline RFC 793 against each defense.

A is the victim (the active opener, ESTABLISHED with B); an off-path attacker who knows the
four-tuple injects spoofed segments with `p.inject("a", ...)`.
"""

from __future__ import annotations

import pytest
from tcp_harness import A_IP, A_PORT, B_IP, B_PORT, MS, Pair, S, spoof

from threatlab.errors import ParamError
from threatlab.tcp import (
    ChallengeAckLimiter,
    ChallengeAckSent,
    ConnectionReset,
    DataReceived,
    SegmentDropped,
    State,
    TcpConfig,
    TcpEndpoint,
    TcpFlags,
)
from threatlab.tcp.challenge import RandomizedChallengeAckLimiter

F = TcpFlags
M = 0xFFFFFFFF
RFC793 = TcpConfig()
RST_EXACT = TcpConfig(rst_exact=True)
SYN_CHALLENGE = TcpConfig(syn_challenge=True)
ACK_CHECK = TcpConfig(ack_check=True)


def established(a_cfg: TcpConfig = RFC793, b_cfg: TcpConfig | None = None, **kw) -> Pair:
    p = Pair(a_cfg, b_cfg, **kw)
    p.establish()
    # some traffic, so SND.UNA and RCV.NXT have moved on from the ISNs
    p.a.send(bytes(3000), p.now)
    p.b.send(bytes(2000), p.now)
    p.run()
    p.take("a")
    p.take("b")
    return p


def replies(p: Pair, since: int):
    return [s for s in p.sent("a>b", since)]


# --- 2. blind reset attack using the RST bit -------------------------------------------------------


def test_rfc793_in_window_rst_resets_the_connection():
    p = established(RFC793)
    p.inject("a", spoof(p.a, F.RST, p.a.rcv_nxt + 1000))  # in the window, not the exact RCV.NXT
    assert p.take("a") == [ConnectionReset("rst received")]
    assert p.a.state is State.CLOSED and p.a.counters.resets_accepted == 1


def test_in_window_rst_gets_challenge_ack_not_reset():
    p = established(RST_EXACT)
    n = len(p.log)
    p.inject("a", spoof(p.a, F.RST, p.a.rcv_nxt + 1000))
    assert p.take("a") == [ChallengeAckSent("rst-exact"), SegmentDropped("rst-exact: challenge ACK sent")]
    assert p.a.state is State.ESTABLISHED
    [ack] = replies(p, n)  # tcpsecure 2.2 C): <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
    assert (ack.flags, ack.seq, ack.ack, ack.payload) == (F.ACK, p.a.snd_nxt, p.a.rcv_nxt, b"")
    assert p.a.counters.challenge_acks_sent == 1
    assert p.a.counters.segments_dropped == {"rst-exact: challenge ACK sent": 1}
    # the real peer receives the challenge ACK as a harmless duplicate ACK
    p.run()
    assert p.b.state is State.ESTABLISHED and p.take("b") == []


@pytest.mark.parametrize("cfg", [RFC793, RST_EXACT], ids=["rfc793", "rst-exact"])
def test_exact_rst_resets_in_both(cfg):
    p = established(cfg)
    p.inject("a", spoof(p.a, F.RST, p.a.rcv_nxt))
    assert p.take("a") == [ConnectionReset("rst received")]


@pytest.mark.parametrize("cfg", [RFC793, RST_EXACT], ids=["rfc793", "rst-exact"])
@pytest.mark.parametrize("offset", [65535, 100_000, -1, -70_000, 2**31])
def test_out_of_window_rst_is_dropped_silently(cfg, offset):
    p = established(cfg)
    n = len(p.log)
    p.inject("a", spoof(p.a, F.RST, p.a.rcv_nxt + offset))
    assert p.take("a") == [SegmentDropped("out of window")]
    assert replies(p, n) == [] and p.a.state is State.ESTABLISHED


def test_rfc793_window_is_half_open_at_the_right_edge():
    p = established(RFC793)
    p.inject("a", spoof(p.a, F.RST, p.a.rcv_nxt + p.a.rcv_wnd))  # RCV.NXT + RCV.WND: outside
    assert p.take("a") == [SegmentDropped("out of window")]
    p.inject("a", spoof(p.a, F.RST, p.a.rcv_nxt + p.a.rcv_wnd - 1))  # the last acceptable number
    assert p.take("a") == [ConnectionReset("rst received")]


def test_rst_with_payload_or_options_takes_the_same_decision():
    p = established(RST_EXACT)
    p.inject("a", spoof(p.a, F.RST | F.ACK, p.a.rcv_nxt + 10, p.a.snd_nxt, payload=b"x"))
    assert p.take("a") == [ChallengeAckSent("rst-exact"), SegmentDropped("rst-exact: challenge ACK sent")]


def test_legitimate_reset_after_peer_restart_needs_one_more_round_trip():
    # tcpsecure 2.2: "In cases of a legitimate reset without the exact sequence number, the
    # consequences of this new challenge/response will be that the peer requires an extra round
    # trip time before the connection can be reset." B restarts (loses its TCB) and sends an
    # inexact RST; A challenges; B, with no connection, answers the ACK with RST <SEQ=SEG.ACK>,
    # which is exact.
    p = established(RST_EXACT)
    p.b = TcpEndpoint(TcpConfig(), p.b.rng, (B_IP, B_PORT))  # rebooted: CLOSED, no TCB
    p.inject("a", spoof(p.a, F.RST, p.a.rcv_nxt + 5))
    p.run()
    assert p.take("a") == [
        ChallengeAckSent("rst-exact"),
        SegmentDropped("rst-exact: challenge ACK sent"),
        ConnectionReset("rst received"),
    ]
    assert p.take("b") == [SegmentDropped("connection closed")]


def test_fast_path_and_decoded_segments_agree():
    # bare RSTs as bytes take a fast path; TcpSegment objects the full one: same decisions
    for cfg in (RFC793, RST_EXACT):
        for off in (0, 1, 60000, 70000):
            results = []
            for as_object in (False, True):
                p = established(cfg)
                seg = spoof(p.a, F.RST, p.a.rcv_nxt + off)
                if as_object:
                    p.a.receive(seg, p.now, B_IP)
                else:
                    p.a.receive(seg.encode(B_IP, A_IP), p.now, B_IP)
                results.append(
                    (p.a.events(), p.a.state, [o.segment.flags for o in p.a.segments_to_send(p.now)])
                )
            assert results[0] == results[1], (cfg, off)


# --- 3. blind reset attack using the SYN bit -------------------------------------------------------


def test_rfc793_in_window_syn_resets_the_connection():
    p = established(RFC793)
    n = len(p.log)
    p.inject("a", spoof(p.a, F.SYN, p.a.rcv_nxt + 500))
    assert p.take("a") == [ConnectionReset("syn in window")]
    [rst] = replies(p, n)  # RFC 793: "send a reset"
    assert rst.flags == F.RST | F.ACK and rst.ack == (p.a.rcv_nxt + 501) & M
    assert p.a.state is State.CLOSED and p.a.counters.syn_resets == 1


def test_rfc793_out_of_window_syn_gets_an_ack():
    # tcpsecure 3.1 1): "If the SYN bit is set and the sequence number is outside the expected
    # window, send an ACK back to the sender." Not a challenge ACK: RFC 793's own.
    p = established(RFC793)
    n = len(p.log)
    p.inject("a", spoof(p.a, F.SYN, p.a.rcv_nxt + 100_000))
    assert p.take("a") == [SegmentDropped("out of window")]
    [ack] = replies(p, n)
    assert (ack.flags, ack.seq, ack.ack) == (F.ACK, p.a.snd_nxt, p.a.rcv_nxt)
    assert p.a.counters.challenge_acks_sent == 0


@pytest.mark.parametrize("offset", [0, 500, 100_000, 2**31 + 5], ids=["exact", "in-window", "beyond", "far"])
def test_syn_gets_challenge_ack_not_reset(offset):
    p = established(SYN_CHALLENGE)
    n = len(p.log)
    p.inject("a", spoof(p.a, F.SYN, p.a.rcv_nxt + offset))
    assert p.take("a") == [
        ChallengeAckSent("syn-challenge"),
        SegmentDropped("syn-challenge: challenge ACK sent"),
    ]
    [ack] = replies(p, n)
    assert (ack.flags, ack.seq, ack.ack) == (F.ACK, p.a.snd_nxt, p.a.rcv_nxt)
    assert p.a.state is State.ESTABLISHED


def test_restarted_peer_resets_a_syn_challenged_connection_via_the_ack():
    # tcpsecure 3.2: "A legitimate peer, after restart, would not have a TCB in the synchronized
    # state. Thus when the ACK arrives the peer should send a RST segment with the sequence number
    # derived from the ACK field that caused the RST."
    p = established(SYN_CHALLENGE)
    p.b = TcpEndpoint(TcpConfig(), p.b.rng, (B_IP, B_PORT), (A_IP, A_PORT))
    p.b.connect(p.now)  # a new SYN on the same four-tuple
    p.run(until=p.now + 50 * MS)
    assert p.take("a") == [
        ChallengeAckSent("syn-challenge"),
        SegmentDropped("syn-challenge: challenge ACK sent"),
        ConnectionReset("rst received"),
    ]
    assert p.take("b") == [SegmentDropped("syn-sent: unacceptable ACK")]


# --- 4. blind data injection -----------------------------------------------------------------------


def test_rfc793_accepts_injected_data_whose_ack_is_old():
    # tcpsecure 4.1: RFC 793 ignores an old ACK ("SEG.ACK < SND.UNA") and still takes the data.
    p = established(RFC793)
    p.inject("a", spoof(p.a, F.ACK | F.PSH, p.a.rcv_nxt, p.a.snd_una - 2**30, b"INJECTED"))
    assert p.take("a") == [DataReceived(b"INJECTED")]


def test_rfc793_drops_injected_data_whose_ack_is_ahead_of_snd_nxt():
    p = established(RFC793)
    n = len(p.log)
    p.inject("a", spoof(p.a, F.ACK | F.PSH, p.a.rcv_nxt, p.a.snd_nxt + 10, b"INJECTED"))
    assert p.take("a") == [SegmentDropped("ack of unsent data")]
    assert [s.flags for s in replies(p, n)] == [F.ACK]


def test_data_without_ack_bit_is_dropped():
    p = established(RFC793)
    p.inject("a", spoof(p.a, F.PSH, p.a.rcv_nxt, 0, b"INJECTED"))
    assert p.take("a") == [SegmentDropped("no ACK bit")]


def test_rfc793_accepts_half_of_all_ack_values_so_two_guesses_suffice():
    # tcpsecure 4.1: acceptable ACKs are (SND.UNA - (2^31 - 1)) <= SEG.ACK <= SND.NXT, so the odds
    # per in-window sequence guess are 1 in 2: 1 in ((2^32 / RCV.WND) * 2) overall.
    accepted = {RFC793: 0, ACK_CHECK: 0}
    for cfg in accepted:
        p = established(cfg)
        for k in range(64):
            ack = (p.a.snd_nxt - 12345 + k * 2**26) & M
            before = p.a.counters.bytes_delivered
            p.inject("a", spoof(p.a, F.ACK, p.a.rcv_nxt, ack, b"x"))
            accepted[cfg] += p.a.counters.bytes_delivered - before
    assert accepted[RFC793] == 32
    assert accepted[ACK_CHECK] == 1  # only the one ACK guess that falls within MAX.SND.WND


def test_data_with_bad_ack_gets_challenge_ack():
    p = established(ACK_CHECK)
    n = len(p.log)
    p.inject("a", spoof(p.a, F.ACK | F.PSH, p.a.rcv_nxt, p.a.snd_una - 2**30, b"INJECTED"))
    assert p.take("a") == [ChallengeAckSent("ack-check"), SegmentDropped("ack-check: challenge ACK sent")]
    [ack] = replies(p, n)
    assert (ack.flags, ack.seq, ack.ack) == (F.ACK, p.a.snd_nxt, p.a.rcv_nxt)
    assert p.a.counters.bytes_delivered == 2000  # only B's real data
    p.inject("a", spoof(p.a, F.ACK | F.PSH, p.a.rcv_nxt, p.a.snd_nxt + 1, b"INJECTED"))
    assert p.take("a") == [ChallengeAckSent("ack-check"), SegmentDropped("ack-check: challenge ACK sent")]


def test_ack_check_accepts_old_acks_within_max_snd_wnd():
    # 4.2: (SND.UNA - MAX.SND.WND) <= SEG.ACK <= SND.NXT; MAX.SND.WND is the largest window the peer
    # advertised (RFC 5961's reading of the draft's wording)
    p = established(ACK_CHECK)
    assert p.a.max_snd_wnd == 65535
    p.inject("a", spoof(p.a, F.ACK | F.PSH, p.a.rcv_nxt, p.a.snd_una - 65535, b"ok"))
    assert p.take("a") == [DataReceived(b"ok")]
    p.inject("a", spoof(p.a, F.ACK | F.PSH, p.a.rcv_nxt, p.a.snd_una - 65536, b"no"))
    assert p.take("a") == [ChallengeAckSent("ack-check"), SegmentDropped("ack-check: challenge ACK sent")]


def test_injected_data_waits_in_reassembly_queue_until_the_gap_is_bridged():
    # tcpsecure 4.1: "the data will sit in the receiver's re-assembly queue until the peer sends
    # enough data to bridge the gap between the RCV.NXT value and the injected data. [...] the
    # injected data will be made readable to the upper layer"
    p = established(RFC793)
    p.inject("a", spoof(p.a, F.ACK, p.a.rcv_nxt + 100, p.a.snd_una, b"EVIL"))
    assert p.take("a") == [] and p.a.reassembly_bytes == 4
    real = bytes(range(200))
    t0 = p.now
    p.b.send(real[:100], p.now)  # the peer bridges the gap
    p.run(until=t0 + 1 * S)
    assert [e for e in p.take("a") if isinstance(e, DataReceived)] == [DataReceived(real[:100] + b"EVIL")]
    # a) "An ACK war will ensue": A acknowledges 4 bytes B never sent; B answers that ACK with its
    # own (RFC 793: ACK of unsent data), which A finds out of window and answers again: one
    # exchange per round trip (20 ms here) while B has nothing more to send
    assert p.b.counters.segments_dropped["ack of unsent data"] == 50
    assert p.a.counters.segments_dropped["out of window"] == 49
    # b) "The sender will send enough data to the peer which will move RCV.NXT even further along
    # past the injected data": B's bytes 100..103 are old duplicates at A, and the war is over
    p.b.send(real[100:], p.now)
    p.run()
    assert [e for e in p.take("a") if isinstance(e, DataReceived)] == [DataReceived(real[104:])]
    assert p.a.rcv_nxt == p.b.snd_nxt


def test_a_real_segment_covering_held_bytes_wins_over_them():
    # A segment at RCV.NXT is taken whole and the held bytes it covers are discarded (as Linux's
    # tcp_ofo_queue does), so an injection survives only where the peer's segments end before it.
    p = established(RFC793)
    p.inject("a", spoof(p.a, F.ACK, p.a.rcv_nxt + 100, p.a.snd_una, b"EVIL"))
    real = bytes(range(200))
    p.b.send(real, p.now)
    p.run()
    assert p.take("a") == [DataReceived(real)] and p.a.reassembly_bytes == 0


# --- throttling (tcpsecure 2.2) ----------------------------------------------------------------------


def test_challenge_acks_are_limited_to_10_per_5_seconds_then_suppressed():
    p = established(TcpConfig(rst_exact=True, challenge_ack_limit=(10, 5.0)))
    n = len(p.log)
    for i in range(15):
        p.inject("a", spoof(p.a, F.RST, p.a.rcv_nxt + 1 + i))
    events = p.take("a")
    assert events.count(ChallengeAckSent("rst-exact")) == 10
    assert events.count(SegmentDropped("rst-exact: challenge ACK suppressed")) == 5
    assert len(replies(p, n)) == 10
    c = p.a.counters
    assert (c.challenge_acks_sent, c.challenge_acks_suppressed) == (10, 5)
    p.advance(5 * S - 1)
    p.inject("a", spoof(p.a, F.RST, p.a.rcv_nxt + 7))
    assert p.take("a") == [SegmentDropped("rst-exact: challenge ACK suppressed")]
    p.advance(1)  # the 5-second window is over: the budget is refilled
    for i in range(11):
        p.inject("a", spoof(p.a, F.RST, p.a.rcv_nxt + 7))
    assert p.take("a").count(ChallengeAckSent("rst-exact")) == 10
    assert p.a.state is State.ESTABLISHED


def test_throttling_covers_syn_and_ack_challenges_too():
    cfg = TcpConfig(syn_challenge=True, ack_check=True, challenge_ack_limit=(2, 5.0))
    p = established(cfg)
    p.inject("a", spoof(p.a, F.SYN, p.a.rcv_nxt))
    p.inject("a", spoof(p.a, F.ACK, p.a.rcv_nxt, p.a.snd_nxt + 5, b"x"))
    p.inject("a", spoof(p.a, F.SYN, p.a.rcv_nxt))
    assert p.take("a") == [
        ChallengeAckSent("syn-challenge"),
        SegmentDropped("syn-challenge: challenge ACK sent"),
        ChallengeAckSent("ack-check"),
        SegmentDropped("ack-check: challenge ACK sent"),
        SegmentDropped("syn-challenge: challenge ACK suppressed"),
    ]


def test_host_global_limiter_is_shared_across_connections():
    cfg = TcpConfig(rst_exact=True, challenge_ack_limit=(10, 5.0), challenge_ack_scope="host")
    limiter = ChallengeAckLimiter(10, 5.0)
    pairs = [established(RFC793, cfg, a_port=40000 + i, challenge_ack_limiter=limiter) for i in range(2)]
    for p in pairs:
        for i in range(6):
            p.inject("b", spoof(p.b, F.RST, p.b.rcv_nxt + 1 + i))
    sent = [p.b.counters.challenge_acks_sent for p in pairs]
    suppressed = [p.b.counters.challenge_acks_suppressed for p in pairs]
    assert sent == [6, 4] and suppressed == [0, 2]
    assert (limiter.sent, limiter.suppressed) == (10, 2)


def test_per_connection_limiters_are_independent():
    cfg = TcpConfig(rst_exact=True, challenge_ack_limit=(10, 5.0))
    pairs = [established(RFC793, cfg, a_port=40000 + i) for i in range(2)]
    for p in pairs:
        for i in range(6):
            p.inject("b", spoof(p.b, F.RST, p.b.rcv_nxt + 1 + i))
    assert [p.b.counters.challenge_acks_sent for p in pairs] == [6, 6]


def _challenge_acks_per_interval(p: Pair, intervals: int, limit: int) -> list[int]:
    """Challenge ACKs B lets out in each of `intervals` 1-second windows, each asked for 2 * limit."""
    counts = []
    for _ in range(intervals):
        before = p.b.counters.challenge_acks_sent
        for i in range(2 * limit):
            p.inject("b", spoof(p.b, F.RST, p.b.rcv_nxt + 1 + i))
        counts.append(p.b.counters.challenge_acks_sent - before)
        p.advance(S)  # the next RST opens a fresh window
    return counts


def test_random_budget_lets_out_ceil_l_over_2_plus_uniform_0_to_l_minus_1_per_interval():
    # Linux 4.7 (CVE-2016-5696): each interval's budget is ceil(L/2) + U{0..L-1}
    limit = 7
    cfg = TcpConfig(rst_exact=True, challenge_ack_limit=(limit, 1.0), challenge_ack_budget="random")
    p = established(RFC793, cfg)
    lim = p.b.challenge_ack_limiter
    assert isinstance(lim, RandomizedChallengeAckLimiter) and lim.rng is p.b.rng
    counts = _challenge_acks_per_interval(p, 60, limit)
    half = -(-limit // 2)
    assert all(half <= c <= half + limit - 1 for c in counts)
    assert counts == lim.budgets  # every draw, used up in full
    # 60 draws of U{0..6}: every value shows up (P(one missing) < 7 * (6/7)^60 = 6e-4 for a fair draw;
    # the seed is fixed, so this is deterministic)
    assert set(counts) == set(range(half, half + limit))
    assert p.b.state is State.ESTABLISHED
    # the same seed, the same budgets: they come from the endpoint's rng
    q = established(RFC793, cfg)
    assert _challenge_acks_per_interval(q, 60, limit) == counts
    fixed = established(RFC793, TcpConfig(rst_exact=True, challenge_ack_limit=(limit, 1.0)))
    assert _challenge_acks_per_interval(fixed, 5, limit) == [limit] * 5


def test_per_connection_random_budgets_are_drawn_per_connection():
    # both defenses act: each connection has its own limiter, and each limiter's budget is random
    limit = 20
    cfg = TcpConfig(rst_exact=True, challenge_ack_limit=(limit, 1.0), challenge_ack_budget="random")
    pairs = [established(RFC793, cfg, a_port=40000 + i, seed=1 + 2 * i) for i in range(2)]
    limiters = [p.b.challenge_ack_limiter for p in pairs]
    assert limiters[0] is not limiters[1]
    assert all(isinstance(lim, RandomizedChallengeAckLimiter) for lim in limiters)
    counts = [_challenge_acks_per_interval(p, 20, limit) for p in pairs]
    assert all(10 <= c <= 29 for cs in counts for c in cs)
    assert counts[0] != counts[1] and len(set(counts[0])) > 1
    # one connection's challenge ACKs use nothing of the other's budget
    assert [lim.sent for lim in limiters] == [sum(cs) for cs in counts]
    assert [lim.budgets for lim in limiters] == counts


def test_config_names_the_random_budget_and_rejects_bad_values():
    cfg = TcpConfig(challenge_ack_limit=(10, 5.0), challenge_ack_budget="random")
    assert cfg.defenses == {"challenge-ack-limit", "challenge-ack-random-budget"}
    assert TcpConfig(challenge_ack_limit=(10, 5.0)).challenge_ack_budget == "fixed"
    with pytest.raises(ParamError, match="challenge_ack_budget"):
        TcpConfig(challenge_ack_budget="lottery")  # type: ignore[arg-type]
    with pytest.raises(ParamError, match="count >= 1"):
        TcpConfig(challenge_ack_limit=(0, 5.0), challenge_ack_budget="random")


def test_host_scope_needs_a_shared_limiter():
    cfg = TcpConfig(challenge_ack_limit=(10, 5.0), challenge_ack_scope="host")
    with pytest.raises(ParamError, match="ChallengeAckLimiter"):
        TcpEndpoint(cfg, __import__("random").Random(1), (A_IP, 1), (B_IP, 2))


# --- RFC 2385 (tcpsecure 4.2: "For those applications that wish to close this attack completely") -----

MD5 = TcpConfig(tcp_md5_key=b"bgp secret")


def test_md5_signed_handshake_and_data_work():
    p = established(MD5, MD5)
    assert all(
        seg.option(__import__("threatlab.tcp", fromlist=["Md5Signature"]).Md5Signature)
        for _, _, seg, _ in p.log
    )
    p.a.send(b"UPDATE", p.now)
    p.run()
    assert p.take("b") == [DataReceived(b"UPDATE")]
    assert p.a.counters.segments_dropped == {} and p.b.counters.segments_dropped == {}


@pytest.mark.parametrize("key", [None, b"wrong key"], ids=["unsigned", "wrong-key"])
def test_md5_drops_forged_rst_even_with_the_exact_sequence_number(key):
    from threatlab.tcp.wire import sign_md5

    p = established(MD5, MD5)
    seg = spoof(p.a, F.RST, p.a.rcv_nxt)
    if key is not None:
        seg = sign_md5(seg, B_IP, A_IP, key)
    p.inject("a", seg)
    assert p.take("a") == [SegmentDropped("tcp-md5: bad or missing signature")]
    assert p.a.state is State.ESTABLISHED


def test_md5_drops_forged_syn_and_data():
    p = established(MD5, MD5)
    p.inject("a", spoof(p.a, F.SYN, p.a.rcv_nxt))
    p.inject("a", spoof(p.a, F.ACK, p.a.rcv_nxt, p.a.snd_una, b"INJECTED"))
    assert p.take("a") == [SegmentDropped("tcp-md5: bad or missing signature")] * 2
    assert p.a.state is State.ESTABLISHED


def test_md5_on_one_side_only_never_connects():
    p = Pair(RFC793, MD5)
    p.b.listen()
    p.a.connect(0)
    p.run(until=10 * S)
    assert p.b.state is State.LISTEN
    assert set(p.take("b")) == {SegmentDropped("tcp-md5: bad or missing signature")}
