"""TCP endpoints on simulated hosts: handshake, data and teardown through the simulated network."""

from __future__ import annotations

from threatlab.net import Simulator, build, lan
from threatlab.net.sim import NS_PER_S
from threatlab.net.wire import IPPROTO_TCP
from threatlab.tcp import ConnectionEstablished, ConnectionReset, DataReceived, State, TcpConfig, TcpFlags, TcpSegment
from threatlab.tcp.challenge import RandomizedChallengeAckLimiter
from threatlab.tcp.stack import TcpStack


def _pair(seed: int = 1, config: TcpConfig | None = None):
    sim = Simulator(seed)
    net = build(lan(2), sim)
    h1, h2 = net.node("h1"), net.node("h2")
    return sim, net, TcpStack(h1, config), TcpStack(h2, config)


def test_connection_carries_data_both_ways_across_the_simulated_lan():
    sim, net, client, server = _pair()
    accepted = []
    server.listen(80, on_accept=accepted.append)
    conn = client.connect((net.node("h2").ip, 80))
    sim.run(until=NS_PER_S)
    assert conn.state is State.ESTABLISHED
    assert len(accepted) == 1 and accepted[0].state is State.ESTABLISHED
    conn.send(b"hello")
    accepted[0].send(b"world")
    sim.run(until=2 * NS_PER_S)
    got_server = b"".join(e.data for e in accepted[0].events if isinstance(e, DataReceived))
    got_client = b"".join(e.data for e in conn.events if isinstance(e, DataReceived))
    assert (got_server, got_client) == (b"hello", b"world")
    assert any(isinstance(e, ConnectionEstablished) for e in conn.events)


def test_close_from_both_sides_ends_in_closed_and_time_wait_expires():
    sim, net, client, server = _pair(config=TcpConfig(msl_ns=NS_PER_S))
    accepted = []
    server.listen(80, on_accept=accepted.append)
    conn = client.connect((net.node("h2").ip, 80))
    sim.run(until=NS_PER_S)
    conn.close()
    sim.run(until=2 * NS_PER_S)
    accepted[0].close()
    sim.run(until=10 * NS_PER_S)
    assert conn.state is State.CLOSED and accepted[0].state is State.CLOSED
    assert client.connections == {} and server.connections == {}


def test_segment_for_no_connection_gets_a_reset_as_rfc_793_says():
    sim, net, client, server = _pair()
    h1, h2 = net.node("h1"), net.node("h2")
    client_rx = []
    h1.register_protocol(IPPROTO_TCP, lambda pkt, nic: client_rx.append(pkt))
    syn = TcpSegment(40000, 81, 1000, 0, TcpFlags.SYN, 1024, 0, (), b"")
    h1.send_ip(h2.ip, IPPROTO_TCP, syn.encode(h1.ip, h2.ip))
    sim.run(until=NS_PER_S)
    assert len(client_rx) == 1
    rst = TcpSegment.decode(client_rx[0].payload, h2.ip, h1.ip)
    assert rst.flags == TcpFlags.RST | TcpFlags.ACK and rst.ack == 1001 and rst.seq == 0
    assert server.counters["resets sent"] == 1


def test_abort_resets_the_peer():
    sim, net, client, server = _pair()
    accepted = []
    server.listen(80, on_accept=accepted.append)
    conn = client.connect((net.node("h2").ip, 80))
    sim.run(until=NS_PER_S)
    conn.abort()
    sim.run(until=2 * NS_PER_S)
    assert any(isinstance(e, ConnectionReset) for e in accepted[0].events)
    assert accepted[0].state is State.CLOSED


def test_host_scope_random_budget_is_one_randomized_limiter_drawn_from_the_stack_rng():
    cfg = TcpConfig(rst_exact=True, challenge_ack_limit=(10, 1.0), challenge_ack_scope="host",
                    challenge_ack_budget="random")
    sim, net, client, server = _pair(config=cfg)
    assert isinstance(server.limiter, RandomizedChallengeAckLimiter) and server.limiter.rng is server.rng
    accepted = []
    server.listen(80, on_accept=accepted.append)
    conns = [client.connect((net.node("h2").ip, 80)) for _ in range(2)]
    sim.run(until=NS_PER_S)
    assert all(c.state is State.ESTABLISHED for c in conns) and len(accepted) == 2
    assert all(a.endpoint.challenge_ack_limiter is server.limiter for a in accepted)
    cfg = TcpConfig(challenge_ack_limit=(10, 1.0), challenge_ack_budget="random")
    _, _, per_connection, _ = _pair(config=cfg)
    assert per_connection.limiter is None  # per connection: each endpoint builds its own


def test_per_connection_random_budget_limiters_draw_from_the_stack_rng():
    cfg = TcpConfig(rst_exact=True, challenge_ack_limit=(10, 1.0), challenge_ack_budget="random")
    sim, net, client, server = _pair(config=cfg)
    accepted = []
    server.listen(80, on_accept=accepted.append)
    for _ in range(2):
        client.connect((net.node("h2").ip, 80))
    sim.run(until=NS_PER_S)
    limiters = [a.endpoint.challenge_ack_limiter for a in accepted]
    assert len(limiters) == 2 and limiters[0] is not limiters[1]
    assert all(isinstance(lim, RandomizedChallengeAckLimiter) and lim.rng is server.rng for lim in limiters)
