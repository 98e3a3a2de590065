"""TCP endpoints on simulated hosts: handshake, data and teardown through the simulated network."""

from __future__ import annotations

from threatlab.net import Simulator, build, lan
from threatlab.net.sim import NS_PER_S
from threatlab.net.wire import IPPROTO_TCP
from threatlab.tcp import ConnectionEstablished, ConnectionReset, DataReceived, State, TcpConfig, TcpFlags, TcpSegment
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
