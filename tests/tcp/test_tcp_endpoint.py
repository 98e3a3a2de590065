"""The sans-IO TCP endpoint (RFC 9293, RFC 6298, RFC 7323): two endpoints wired together in memory,
in virtual time, with exact expected events."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_harness import A_IP, A_PORT, B_IP, B_PORT, MS, Pair, S, spoof

from threatlab.errors import ParamError
from threatlab.net.wire import internet_checksum
from threatlab.tcp import (
    ConnectionClosed,
    ConnectionEstablished,
    ConnectionReset,
    ConnectionTimedOut,
    DataReceived,
    FinReceived,
    SegmentDropped,
    State,
    TcpConfig,
    TcpEndpoint,
    TcpFlags,
    TcpSegment,
    TcpStateError,
    choose_ephemeral_port,
)
from threatlab.tcp._state import TRANSITIONS, Trigger, transition
from threatlab.tcp.reassembly import ReassemblyQueue
from threatlab.tcp.wire import MSS, Nop, WindowScale, pseudo_sum

F = TcpFlags
ESTABLISHED = [ConnectionEstablished()]


def data_of(events) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, DataReceived))


def not_drops(events):
    return [e for e in events if not isinstance(e, SegmentDropped)]


# --- handshake ----------------------------------------------------------------------------------------


def test_three_way_handshake():
    p = Pair()
    p.b.listen()
    p.a.connect(0)
    assert p.a.state is State.SYN_SENT and p.b.state is State.LISTEN
    p.run()
    a, b = p.a, p.b
    assert [(t, d, s.flags, s.seq, s.ack) for t, d, s, _ in p.log] == [
        (0, "a>b", F.SYN, a.iss, 0),
        (10 * MS, "b>a", F.SYN | F.ACK, b.iss, (a.iss + 1) & 0xFFFFFFFF),
        (20 * MS, "a>b", F.ACK, (a.iss + 1) & 0xFFFFFFFF, (b.iss + 1) & 0xFFFFFFFF),
    ]
    assert p.log[0][2].options == (MSS(1460),)  # RFC 793 baseline: no window scale offered
    assert (a.state, b.state) == (State.ESTABLISHED, State.ESTABLISHED)
    assert p.take("a") == ESTABLISHED and p.take("b") == ESTABLISHED
    assert (a.snd_una, a.snd_nxt, a.rcv_nxt, a.irs) == (a.iss + 1, a.iss + 1, b.iss + 1, b.iss)
    assert (b.snd_una, b.snd_nxt, b.rcv_nxt, b.irs) == (b.iss + 1, b.iss + 1, a.iss + 1, a.iss)
    assert b.remote == (A_IP, A_PORT)
    assert a.srtt == 20 * MS and a.rto == 1 * S  # RFC 6298 2.4: the 1 s floor
    assert a.next_timer() is None and b.next_timer() is None


def test_ipv6_connection_with_md5_and_window_scaling():
    from ipaddress import IPv6Address

    cfg = TcpConfig(window_scale=3, rcv_buf=200_000, tcp_md5_key=b"v6 key")
    p = Pair(cfg, cfg, a_ip=IPv6Address("2001:db8::a"), b_ip=IPv6Address("2001:db8::b"))
    p.establish()
    assert p.b.remote == (IPv6Address("2001:db8::a"), A_PORT)
    p.a.send(bytes(100_000), p.now)
    p.b.send(b"ok", p.now)
    p.run()
    assert data_of(p.take("b")) == bytes(100_000) and p.take("a") == [DataReceived(b"ok")]
    assert p.a.counters.segments_dropped == {} == p.b.counters.segments_dropped


def test_iss_comes_from_the_rng():
    assert Pair(seed=7).a.iss == Pair(seed=7).a.iss
    p1, p2 = Pair(seed=7), Pair(seed=8)
    p1.a.connect(0)
    p2.a.connect(0)
    assert p1.a.iss == random.Random(7).getrandbits(32)
    assert p1.a.iss != p2.a.iss


def test_simultaneous_open():
    # RFC 9293 figure 8: both send SYN; each answers the other's with SYN,ACK; each SYN,ACK fails
    # the acceptability test (its SYN was already counted) and is answered with the ACK that
    # completes the other side.
    p = Pair(b_remote=True)
    p.a.connect(0)
    p.b.connect(0)
    p.run()
    assert [(d, s.flags) for _, d, s, _ in p.log] == [
        ("a>b", F.SYN),
        ("b>a", F.SYN),
        ("b>a", F.SYN | F.ACK),
        ("a>b", F.SYN | F.ACK),
        ("a>b", F.ACK),
        ("b>a", F.ACK),
    ]
    assert (p.a.state, p.b.state) == (State.ESTABLISHED, State.ESTABLISHED)
    assert not_drops(p.take("a")) == ESTABLISHED
    assert not_drops(p.take("b")) == ESTABLISHED
    p.a.send(b"ping", p.now)
    p.b.send(b"pong", p.now)
    p.run()
    assert p.take("a") == [DataReceived(b"pong")] and p.take("b") == [DataReceived(b"ping")]


def test_lost_syn_is_retransmitted_with_backoff_and_rto_is_3s_afterwards():
    lost = []

    def lose(direction, seg):
        if seg.flags == F.SYN and len(lost) < 2:
            lost.append(seg)
            return True
        return False

    p = Pair(lose=lose)
    p.b.listen()
    p.a.connect(0)
    p.run()
    syns = [t for t, d, s, _ in p.log if s.flags == F.SYN]
    assert syns == [0, 1 * S, 3 * S]
    assert p.a.state is State.ESTABLISHED
    assert p.a.counters.retransmissions == 2
    assert p.a.rto == 3 * S  # RFC 6298 5.7, no sample from the retransmitted SYN (Karn)


def test_syn_retransmission_limit_times_out():
    p = Pair(TcpConfig(max_syn_retransmissions=2), lose=lambda d, s: True)
    p.a.connect(0)
    p.run()
    assert [t for t, *_ in p.log] == [0, 1 * S, 3 * S]
    assert p.a.state is State.CLOSED
    assert p.take("a") == [ConnectionTimedOut(2)]


def test_syn_to_a_closed_endpoint_is_refused():
    p = Pair()
    p.a.connect(0)  # B never listens
    p.run(until=100 * MS)
    assert p.take("a") == [ConnectionReset("connection refused")]
    assert p.take("b") == [SegmentDropped("connection closed")]
    rst = p.sent("b>a")[0]
    assert rst.flags == F.RST | F.ACK and rst.seq == 0 and rst.ack == p.a.iss + 1
    assert p.a.state is State.CLOSED and p.a.counters.resets_accepted == 1


def test_listen_answers_a_stray_ack_with_rst():
    p = Pair()
    p.b.listen()
    p.inject("b", TcpSegment(A_PORT, B_PORT, 1000, 5555, F.ACK))
    assert p.take("b") == [SegmentDropped("listen: ack")]
    [rst] = p.sent("b>a")
    assert (rst.flags, rst.seq, rst.dst_port) == (F.RST, 5555, A_PORT)
    assert p.b.state is State.LISTEN


def test_rst_in_syn_received_returns_a_passive_open_to_listen():
    p = Pair()
    p.b.listen()
    p.a.connect(0)
    p.run(until=15 * MS)  # B has answered with SYN,ACK
    assert p.b.state is State.SYN_RECEIVED
    p.inject("b", TcpSegment(A_PORT, B_PORT, p.b.rcv_nxt, 0, F.RST))
    assert p.b.state is State.LISTEN and p.b.remote is None
    assert p.b.next_timer() is None


# --- data transfer ------------------------------------------------------------------------------------


def test_data_transfer_both_ways():
    p = Pair()
    p.establish()
    up = bytes(random.Random(1).randbytes(20000))
    down = bytes(random.Random(2).randbytes(7000))
    p.a.send(up, p.now)
    p.b.send(down, p.now)
    p.run()
    assert data_of(p.take("b")) == up
    assert data_of(p.take("a")) == down
    assert max(len(s.payload) for s in p.sent("a>b")) == 1460
    assert p.a.snd_una == p.a.snd_nxt == (p.a.iss + 1 + len(up)) & 0xFFFFFFFF
    assert p.a.counters.retransmissions == 0 and p.b.counters.bytes_delivered == len(up)


def test_data_queued_before_the_handshake_goes_out_once_established():
    p = Pair()
    p.b.listen()
    p.a.connect(0)
    p.a.send(b"early", 0)
    p.run()
    assert [(d, s.flags, s.payload) for _, d, s, _ in p.log[:4]] == [
        ("a>b", F.SYN, b""),
        ("b>a", F.SYN | F.ACK, b""),
        ("a>b", F.ACK, b""),
        ("a>b", F.ACK | F.PSH, b"early"),
    ]
    assert p.take("b") == [ConnectionEstablished(), DataReceived(b"early")]


def test_mss_is_the_smaller_of_ours_and_the_peers():
    p = Pair(TcpConfig(mss=1000), TcpConfig(mss=500))
    p.establish()
    assert (p.a.snd_mss, p.b.snd_mss) == (500, 500)
    p.a.send(bytes(1200), p.now)
    p.run()
    assert [len(s.payload) for s in p.sent("a>b") if s.payload] == [500, 500, 200]


def test_lost_data_is_retransmitted_with_rto_backoff_and_karn():
    first_seq = []

    def lose(direction, seg):
        if direction == "a>b" and seg.payload:
            if not first_seq:
                first_seq.append(seg.seq)
            if seg.seq == first_seq[0] and len(first_seq) < 3:
                first_seq.append(seg.seq)
                return True
        return False

    p = Pair(lose=lose)
    p.establish()
    t0 = p.now
    srtt = p.a.srtt
    p.a.send(bytes(3000), p.now)
    p.run()
    sends = [
        (t - t0, s.seq - p.a.iss - 1, len(s.payload)) for t, d, s, _ in p.log if d == "a>b" and s.payload
    ]
    # first flight at 0; the first segment again after RTO = 1 s, then after 2 s (RFC 6298 5.5)
    assert sends == [(0, 0, 1460), (0, 1460, 1460), (0, 2920, 80), (1 * S, 0, 1460), (3 * S, 0, 1460)]
    assert data_of(p.take("b")) == bytes(3000)
    assert p.a.counters.retransmissions == 2
    # Karn: the ACK of a retransmitted segment gives no sample; the backed-off RTO stays
    assert p.a.srtt == srtt and p.a.rto == 4 * S
    # the next clean exchange samples again and brings the RTO back to the 1 s floor
    p.a.send(b"x", p.now)
    p.run()
    assert p.a.rto == 1 * S


def test_partial_ack_after_timeout_repairs_the_next_hole_at_once():
    lost = set()

    def lose(direction, seg):
        key = seg.seq
        if direction == "a>b" and seg.payload and key not in lost and len(lost) < 2:
            lost.add(key)
            return True
        return False

    p = Pair(lose=lose)
    p.establish()
    t0 = p.now
    p.a.send(bytes(4000), p.now)
    p.run()
    assert data_of(p.take("b")) == bytes(4000)
    rexmits = [(t - t0, s.seq - p.a.iss - 1) for t, d, s, lost_ in p.log if d == "a>b" and s.payload][3:]
    # the RTO repairs the first hole; the partial ACK that follows one RTT later repairs the second
    assert rexmits == [(1 * S, 0), (1 * S + 20 * MS, 1460)]


def test_out_of_order_segments_are_reassembled():
    def lose(direction, seg):
        return (
            direction == "a>b"
            and seg.payload
            and seg.seq == p.a.iss + 1 + 1460
            and not lose.done.append(1)
            and len(lose.done) == 1
        )

    lose.done = []
    p = Pair(lose=lose)
    p.establish()
    payload = bytes(range(256)) * 20  # 5120 bytes: 4 segments
    p.a.send(payload, p.now)
    p.run(until=p.now + 15 * MS)
    events = p.take("b")
    assert events == [DataReceived(payload[:1460])]
    assert p.b.reassembly_bytes == 5120 - 2 * 1460
    p.run()
    assert p.take("b") == [DataReceived(payload[1460:])]  # the gap filled: the rest in one piece
    assert p.b.reassembly_bytes == 0


def test_reassembly_queue_keeps_the_bytes_that_arrived_first():
    q = ReassemblyQueue()
    assert q.add(10, b"BBBB") == 4
    assert q.add(8, b"aaaaaaaa") == 4  # 8..10 and 14..16 are new, 10..14 kept
    assert q.add(30, b"zz") == 2
    assert q.pop_ready(0) == b""
    assert q.pop_ready(8) == b"aaBBBBaa"
    assert q.bytes_held == 2 and q.first_offset() == 30
    assert q.pop_ready(31) == b"z"
    assert q.bytes_held == 0


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 50)), max_size=20))
def test_reassembly_queue_delivers_exactly_the_covered_prefix(pieces):
    truth = bytes(random.Random(3).randbytes(260))
    q = ReassemblyQueue()
    covered = set()
    for start, n in pieces:
        q.add(start, truth[start : start + n])
        covered.update(range(start, min(start + n, 260)))
    prefix = 0
    while prefix in covered:
        prefix += 1
    assert q.pop_ready(0) == truth[:prefix]


def test_window_scaling_lets_more_than_64k_be_in_flight():
    cfg = TcpConfig(window_scale=7, rcv_buf=1 << 20)
    p = Pair(cfg, cfg)
    p.establish()
    syn, synack, ack = p.log[0][2], p.log[1][2], p.log[2][2]
    assert syn.options == (MSS(1460), Nop(), WindowScale(7)) and synack.option(WindowScale) == WindowScale(7)
    assert syn.window == 65535  # never scaled in a SYN (RFC 7323 2.2)
    assert ack.window == (1 << 20) >> 7
    assert (p.a.snd_wscale, p.a.rcv_wscale) == (7, 7)
    p.a.send(bytes(400_000), p.now)
    p.run(until=p.now + 25 * MS)  # the first ACKs, carrying the scaled window, are back
    assert p.a.snd_wnd == 1 << 20
    p.run(until=p.now + 1)
    assert (p.a.snd_nxt - p.a.snd_una) & 0xFFFFFFFF > 65535
    assert p.a.max_snd_wnd == p.b.max_snd_wnd == 1 << 20
    p.run()
    assert data_of(p.take("b")) == bytes(400_000)


def test_window_scale_is_not_used_unless_both_offer_it():
    p = Pair(TcpConfig(window_scale=7, rcv_buf=1 << 20), TcpConfig())
    p.establish()
    assert p.log[1][2].option(WindowScale) is None  # RFC 7323: not in the SYN,ACK if not in the SYN
    assert (p.a.snd_wscale, p.a.rcv_wscale, p.b.snd_wscale) == (0, 0, 0)
    assert p.a.rcv_wnd == 65535  # without scaling the window field caps the buffer
    assert p.log[2][2].window == 65535


def test_flow_control_zero_window_probe_and_reopen():
    p = Pair(None, TcpConfig(rcv_buf=4000, auto_consume=False))
    p.establish()
    t0 = p.now
    p.a.send(bytes(10_000), p.now)
    p.run(until=t0 + 5 * S)
    assert len(data_of(p.take("b"))) == 4000
    assert p.b.rcv_wnd == 0 and p.a.snd_wnd == 0
    probes = [t - t0 for t, d, s, _ in p.log if d == "a>b" and not s.payload and s.seq == p.a.snd_una - 1]
    assert probes == [1 * S + 20 * MS, 3 * S + 20 * MS]  # persist timer, backed off
    p.b.consume(4000, p.now)
    p.run(until=p.now + 100 * MS)
    assert len(data_of(p.take("b"))) == 4000
    p.b.consume(4000, p.now)
    p.run()
    assert len(data_of(p.take("b"))) == 2000
    assert p.a.snd_una == p.a.snd_nxt


# --- closing in every order ------------------------------------------------------------------------


def _established_pair(**kw) -> Pair:
    p = Pair(**kw)
    p.establish()
    return p


def test_active_close_then_passive_close():
    msl = 10 * S
    p = _established_pair(a_cfg=TcpConfig(msl_ns=msl))
    p.a.close(p.now)
    assert p.a.state is State.FIN_WAIT_1
    p.run(until=p.now + 100 * MS)
    assert (p.a.state, p.b.state) == (State.FIN_WAIT_2, State.CLOSE_WAIT)
    assert p.take("b") == [FinReceived()]
    p.b.close(p.now)
    assert p.b.state is State.LAST_ACK
    entered = p.now + 10 * MS  # when B's FIN reaches A
    p.run(until=p.now + 15 * MS)
    assert p.a.state is State.TIME_WAIT
    assert p.take("a") == [FinReceived()]
    p.run(until=p.now + 10 * MS)
    assert p.b.state is State.CLOSED and p.take("b") == [ConnectionClosed("closed")]
    assert p.a.next_timer() == entered + 2 * msl
    p.run()
    assert p.now == entered + 2 * msl  # TIME-WAIT lasts 2*MSL
    assert p.a.state is State.CLOSED and p.take("a") == [ConnectionClosed("closed")]


def test_passive_side_closes_first():
    p = _established_pair()
    p.b.close(p.now)
    p.run(until=p.now + 100 * MS)
    assert (p.a.state, p.b.state) == (State.CLOSE_WAIT, State.FIN_WAIT_2)
    p.a.send(b"last words", p.now)  # CLOSE-WAIT may still send
    p.a.close(p.now)
    p.run(until=p.now + 100 * MS)
    assert p.take("b") == [DataReceived(b"last words"), FinReceived()]
    assert (p.a.state, p.b.state) == (State.CLOSED, State.TIME_WAIT)


def test_simultaneous_close_goes_through_closing():
    p = _established_pair()
    p.a.close(p.now)
    p.b.close(p.now)
    p.run(until=p.now + 15 * MS)
    assert (p.a.state, p.b.state) == (State.CLOSING, State.CLOSING)
    p.run(until=p.now + 10 * MS)
    assert (p.a.state, p.b.state) == (State.TIME_WAIT, State.TIME_WAIT)
    p.run()
    assert p.take("a") == [FinReceived(), ConnectionClosed("closed")]
    assert p.take("b") == [FinReceived(), ConnectionClosed("closed")]


def test_fin_that_also_acks_our_fin_goes_straight_to_time_wait():
    # B's ACK of A's FIN is lost; B's own FIN acknowledges A's FIN too: FIN-WAIT-1 -> TIME-WAIT
    def lose(direction, seg):
        return direction == "b>a" and seg.flags == F.ACK and p.b.state is State.CLOSE_WAIT

    p = Pair(lose=lose)
    p.establish()
    p.a.close(p.now)
    p.run(until=p.now + 15 * MS)
    assert p.a.state is State.FIN_WAIT_1 and p.b.state is State.CLOSE_WAIT
    p.b.close(p.now)
    p.run(until=p.now + 15 * MS)
    assert p.a.state is State.TIME_WAIT


def test_close_sends_fin_after_the_queued_data():
    p = _established_pair()
    p.a.send(bytes(2000), p.now)
    p.a.close(p.now)
    segs = [o.segment for o in p.a.segments_to_send(p.now)]
    assert [(s.flags, len(s.payload)) for s in segs] == [
        (F.ACK, 1460),
        (F.ACK | F.PSH, 540),
        (F.ACK | F.FIN, 0),
    ]


def test_fin_rides_on_the_last_data_segment_when_data_waited_for_the_window():
    p = _established_pair(b_cfg=TcpConfig(rcv_buf=1000, auto_consume=False))
    p.a.send(bytes(1500), p.now)
    p.a.close(p.now)
    p.run(until=p.now + 100 * MS)
    assert p.b.rcv_wnd == 0
    p.b.consume(1000, p.now)
    p.run(until=p.now + 100 * MS)
    assert [(s.flags, len(s.payload)) for s in p.sent("a>b") if s.payload] == [
        (F.ACK, 1000),
        (F.ACK | F.PSH | F.FIN, 500),
    ]
    assert p.take("b") == [DataReceived(bytes(1000)), DataReceived(bytes(500)), FinReceived()]


def test_lost_fin_is_retransmitted():
    dropped = []

    def lose(direction, seg):
        if seg.flags & F.FIN and not dropped:
            dropped.append(seg)
            return True
        return False

    p = Pair(lose=lose)
    p.establish()
    p.a.close(p.now)
    p.run(until=p.now + 2 * S)
    assert p.b.state is State.CLOSE_WAIT and p.a.state is State.FIN_WAIT_2


def test_time_wait_acks_a_retransmitted_fin_and_restarts_2msl():
    msl = 1 * S
    p = _established_pair(a_cfg=TcpConfig(msl_ns=msl))
    p.a.close(p.now)
    p.run(until=p.now + 100 * MS)
    p.b.close(p.now)
    p.run(until=p.now + 100 * MS)
    assert p.a.state is State.TIME_WAIT
    p.run(until=p.now + 1 * S)
    fin_again = TcpSegment(B_PORT, A_PORT, (p.a.rcv_nxt - 1) & 0xFFFFFFFF, p.a.snd_nxt, F.FIN | F.ACK)
    n = len(p.log)
    p.inject("a", fin_again)
    [ack] = p.sent("a>b", since=n)
    assert ack.flags == F.ACK and ack.ack == p.a.rcv_nxt
    assert p.a.next_timer() == p.now + 2 * msl


def test_close_before_established():
    p = Pair()
    p.b.listen()
    p.b.close(0)
    assert p.b.state is State.CLOSED and p.take("b") == [ConnectionClosed("closed before established")]
    p.a.connect(0)
    p.a.close(0)
    assert p.a.state is State.CLOSED and p.a.next_timer() is None


def test_close_in_syn_received_waits_for_the_handshake():
    p = Pair()
    p.b.listen()
    p.a.connect(0)
    p.run(until=15 * MS)
    p.b.close(p.now)
    assert p.b.state is State.SYN_RECEIVED
    p.run(until=p.now + 20 * MS)  # A's ACK arrives at 30 ms
    assert p.b.state is State.FIN_WAIT_1
    p.run(until=p.now + 100 * MS)
    assert p.a.state is State.CLOSE_WAIT


def test_abort_sends_rst_and_the_peer_resets():
    p = _established_pair()
    p.a.abort(p.now)
    assert p.a.state is State.CLOSED and p.take("a") == [ConnectionClosed("aborted")]
    p.run()
    assert p.take("b") == [ConnectionReset("rst received")]
    assert p.b.state is State.CLOSED


def test_retransmission_limit_times_out():
    p = Pair(TcpConfig(max_retransmissions=3), lose=lambda d, s: bool(s.payload))
    p.establish()
    t0 = p.now
    p.a.send(b"lost forever", p.now)
    p.run()
    assert p.take("a") == [ConnectionTimedOut(3)]
    assert p.now - t0 == (1 + 2 + 4 + 8) * S
    assert p.a.state is State.CLOSED


def test_user_calls_in_the_wrong_state_raise():
    ep = TcpEndpoint(TcpConfig(), random.Random(1), (A_IP, 1))
    with pytest.raises(TcpStateError):
        ep.send(b"x", 0)
    with pytest.raises(TcpStateError):
        ep.close(0)
    with pytest.raises(TcpStateError):
        ep.connect(0)  # no remote address
    p = _established_pair()
    p.a.close(p.now)
    with pytest.raises(TcpStateError, match="closing"):
        p.a.send(b"x", p.now)
    p.a.close(p.now)  # a second close is fine and sends no second FIN
    assert sum(1 for o in p.a.segments_to_send(p.now) if o.segment.flags & F.FIN) == 1


def test_state_machine_is_data_and_illegal_transitions_raise():
    assert set(TRANSITIONS) == set(State)
    assert transition(State.LISTEN, Trigger.RCV_SYN) is State.SYN_RECEIVED
    assert transition(State.SYN_SENT, Trigger.RCV_SYN) is State.SYN_RECEIVED
    assert transition(State.FIN_WAIT_2, Trigger.RCV_FIN) is State.TIME_WAIT
    with pytest.raises(TcpStateError):
        transition(State.CLOSED, Trigger.RCV_FIN)
    with pytest.raises(TcpStateError):
        transition(State.TIME_WAIT, Trigger.ACTIVE_OPEN)


# --- bad input -------------------------------------------------------------------------------------


def test_malformed_bytes_are_dropped_and_counted_never_raised():
    p = _established_pair()
    p.b.receive(b"\x00\x01", p.now)
    bad_option = bytearray(bytes.fromhex("00509c40000000050000000060100000000000000206ffff"))
    bad_option[16:18] = internet_checksum(bytes(bad_option), pseudo_sum(A_IP, B_IP) + 24).to_bytes(2, "big")
    p.b.receive(bytes(bad_option), p.now)
    good = TcpSegment(A_PORT, B_PORT, p.b.rcv_nxt, p.b.snd_nxt, F.ACK, payload=b"x").encode(A_IP, B_IP)
    p.b.receive(good[:16] + bytes([good[16] ^ 0xFF]) + good[17:], p.now)
    assert p.take("b") == [
        SegmentDropped("malformed"),
        SegmentDropped("malformed"),
        SegmentDropped("bad checksum"),
    ]
    assert p.b.counters.segments_dropped == {"malformed": 2, "bad checksum": 1}
    assert p.b.state is State.ESTABLISHED


@settings(max_examples=300)
@given(st.binary(max_size=60))
def test_arbitrary_bytes_never_make_an_endpoint_raise(data):
    for cfg in (
        TcpConfig(),
        TcpConfig(rst_exact=True, syn_challenge=True, ack_check=True, verify_checksum=False),
        TcpConfig(tcp_md5_key=b"k"),
    ):
        ep = TcpEndpoint(cfg, random.Random(1), (B_IP, B_PORT))
        ep.listen()
        ep.receive(data, 0, A_IP)
        ep.receive(data, 1, A_IP)
        ep.segments_to_send(1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 255),
            st.integers(-70000, 70000),
            st.integers(-70000, 70000),
            st.binary(max_size=20),
        ),
        max_size=8,
    ),
    st.sampled_from(
        [
            TcpConfig(),
            TcpConfig(rst_exact=True, syn_challenge=True, ack_check=True, challenge_ack_limit=(3, 1.0)),
        ]
    ),
)
def test_spoofed_segments_of_any_kind_leave_an_endpoint_consistent(spoofs, cfg):
    p = Pair(cfg)
    p.establish()
    for flags, dseq, dack, payload in spoofs:
        p.inject("a", spoof(p.a, TcpFlags(flags), p.a.rcv_nxt + dseq, p.a.snd_una + dack, payload, 1000))
        p.advance(1 * MS)
    p.run(until=p.now + 200 * S)
    assert p.a.state in (State.ESTABLISHED, State.CLOSED, State.CLOSE_WAIT, State.LAST_ACK)


@pytest.mark.parametrize("verify", [True, False])
def test_a_listener_drops_segments_from_the_other_ip_version(verify):
    from ipaddress import IPv6Address

    for key in (None, b"k"):
        ep = TcpEndpoint(TcpConfig(verify_checksum=verify, tcp_md5_key=key), random.Random(1), (B_IP, B_PORT))
        ep.listen()
        src = IPv6Address("2001:db8::1")
        ep.receive(TcpSegment(A_PORT, B_PORT, 1, 0, F.SYN).encode(src, IPv6Address("2001:db8::2")), 0, src)
        assert ep.events() == [SegmentDropped("address mismatch")] and ep.state is State.LISTEN
    with pytest.raises(ParamError):
        TcpEndpoint(TcpConfig(), random.Random(1), (B_IP, B_PORT), (IPv6Address("2001:db8::1"), 1))


def test_segments_for_other_ports_or_addresses_are_dropped():
    p = _established_pair()
    p.inject("a", TcpSegment(B_PORT + 1, A_PORT, p.a.rcv_nxt, 0, F.RST))
    p.inject("a", TcpSegment(B_PORT, A_PORT, p.a.rcv_nxt, 0, F.RST), src_ip=A_IP)
    assert p.take("a") == [SegmentDropped("port mismatch"), SegmentDropped("address mismatch")]
    assert p.a.state is State.ESTABLISHED


# --- ephemeral ports (tcpsecure 1, RFC 6056) -----------------------------------------------------------


def test_ephemeral_ports_are_sequential_without_randomization():
    cfg = TcpConfig(ephemeral_ports=(50000, 50003))
    rng = random.Random(1)
    ports, prev = [], None
    for _ in range(5):
        prev = choose_ephemeral_port(rng, cfg, previous=prev)
        ports.append(prev)
    assert ports == [50000, 50001, 50002, 50003, 50000]
    assert choose_ephemeral_port(rng, cfg, in_use={50001, 50002}, previous=50000) == 50003


def test_ephemeral_ports_are_random_with_rfc6056_algorithm_1():
    cfg = TcpConfig(port_randomization=True)
    rng = random.Random(1)
    ports = [choose_ephemeral_port(rng, cfg) for _ in range(200)]
    assert all(49152 <= p <= 65535 for p in ports)
    assert len(set(ports)) > 190
    assert choose_ephemeral_port(random.Random(1), cfg) == ports[0]  # reproducible from the rng
    small = TcpConfig(port_randomization=True, ephemeral_ports=(1000, 1002))
    assert choose_ephemeral_port(rng, small, in_use={1000, 1001}) == 1002
    with pytest.raises(ParamError):
        choose_ephemeral_port(rng, small, in_use={1000, 1001, 1002})


def test_config_rejects_bad_values_by_name():
    with pytest.raises(ParamError, match="window_scale"):
        TcpConfig(window_scale=15)
    with pytest.raises(ParamError, match="rcv_buf"):
        TcpConfig(rcv_buf=100_000)
    with pytest.raises(ParamError, match="challenge_ack_limit"):
        TcpConfig(challenge_ack_limit=(10, 0.0))
    with pytest.raises(ParamError, match="challenge_ack_scope"):
        TcpConfig(challenge_ack_scope="planet")  # type: ignore[arg-type]
    assert TcpConfig().defenses == frozenset()
    assert TcpConfig(rst_exact=True, tcp_md5_key=b"k").defenses == {"rst-exact", "tcp-md5"}
