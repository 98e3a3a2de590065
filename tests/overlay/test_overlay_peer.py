"""The sans-IO overlay peer: Chord routing, maintenance, storage and replication, clients, attackers,
and the routing defenses (draft-song-p2psip-security-eval 4.2, figure 6; RFC 6940 section 10)."""

from __future__ import annotations

import random

import pytest

from threatlab.errors import ParamError
from threatlab.net.sim import NS_PER_S, Simulator
from threatlab.overlay import ids
from threatlab.overlay.peer import (
    DROP,
    Drop,
    FetchDone,
    Joined,
    Left,
    LookupDone,
    OverlayPeer,
    PeerConfig,
    State,
    StoreDone,
)
from threatlab.overlay.simnet import (
    Collusion,
    DroppingPeer,
    FabricatingPeer,
    MisroutingPeer,
    converged_overlay,
    joined_overlay,
    measure_lookups,
    ring_errors,
)
from threatlab.overlay.wire import ForwardingHeader, Message, NodeDest, PingReq, ProbeReq, ResourceDest

FAST = PeerConfig(
    stabilize_interval_ns=2 * NS_PER_S,
    check_predecessor_interval_ns=2 * NS_PER_S,
    fix_fingers_interval_ns=NS_PER_S // 2,
)


class Wire:
    """Peers wired together in memory: every datagram arrives 1 ms later; timers fire in order."""

    def __init__(self) -> None:
        self.peers: dict[int, OverlayPeer] = {}
        self.now = 0
        self.queue: list[tuple[int, int, int, bytes]] = []
        self.events: list[tuple[int, object]] = []

    def add(self, p: OverlayPeer) -> OverlayPeer:
        self.peers[p.node_id] = p
        return p

    def flush(self) -> None:
        for p in self.peers.values():
            for dst, data in p.datagrams_to_send(self.now):
                self.queue.append((self.now + 1_000_000, p.node_id, dst, data))
            self.events.extend((p.node_id, e) for e in p.events())

    def run(self, until: int) -> None:
        self.flush()
        while True:
            nxt = min(
                [q[0] for q in self.queue]
                + [t for p in self.peers.values() if (t := p.next_timer()) is not None],
                default=None,
            )
            if nxt is None or nxt > until:
                break
            self.now = nxt
            due = [q for q in self.queue if q[0] <= nxt]
            self.queue = [q for q in self.queue if q[0] > nxt]
            for _, src, dst, data in due:
                if dst in self.peers:
                    self.peers[dst].receive(data, src, self.now)
            for p in list(self.peers.values()):
                t = p.next_timer()
                if t is not None and t <= self.now:
                    p.handle_timer(self.now)
            self.flush()
        self.now = until


def _peer(node_id: int, config: PeerConfig = FAST, cls=OverlayPeer) -> OverlayPeer:
    return cls(node_id, config, random.Random(node_id))


def test_a_second_peer_joins_through_the_first_and_they_become_each_others_neighbours():
    w = Wire()
    a = w.add(_peer(10 << 120))
    b = w.add(_peer(200 << 120))
    a.join(a.node_id, 0)
    b.join(a.node_id, 0)
    w.run(5 * NS_PER_S)
    assert (a.node_id, Joined(a.node_id, a.node_id)) in w.events
    assert (b.node_id, Joined(b.node_id, a.node_id)) in w.events
    assert a.successors == [b.node_id] and a.predecessors == [b.node_id]
    assert b.successors == [a.node_id] and b.predecessors == [a.node_id]


def test_five_peers_joining_one_by_one_form_a_correct_ring():
    w = Wire()
    nodes = [w.add(_peer(x << 120)) for x in (50, 7, 200, 120, 90)]
    nodes[0].join(nodes[0].node_id, 0)
    for k, p in enumerate(nodes[1:], start=1):
        p.join(nodes[k - 1].node_id, w.now)
        w.run(w.now + 3 * NS_PER_S)
    w.run(w.now + 10 * NS_PER_S)
    ring = sorted(w.peers)
    for k, nid in enumerate(ring):
        p = w.peers[nid]
        assert p.state is State.JOINED
        assert p.successors[0] == ring[(k + 1) % 5]
        assert p.predecessors[0] == ring[(k - 1) % 5]
        assert len(p.successors) == 4  # every other peer, in ring order
    assert all(not p.drops for p in w.peers.values())


def test_chord_next_hop_goes_straight_to_a_root_in_the_successor_list_else_to_the_closest_preceding_finger():
    sim = Simulator(seed=1)
    net = converged_overlay(sim, 500, PeerConfig(maintenance=False))
    ring = sorted(net.nodes)
    p = net.nodes[ring[0]]
    # the key just before successor 5: its root is that successor
    key = ring[5] - 1
    assert p.route_next(key) == ring[5]
    # a key half a ring away: the finger at level 127 (successor(n + 2^127)), which precedes it
    far = (ring[0] + (1 << 127) + (1 << 120)) & ids.MASK
    f127 = p.fingers[127]
    assert ids.between(f127, ring[0], far) and p.route_next(far) == f127
    # the skip-th alternative is a lower finger, never the shortcut to the root
    assert p.route_next(key, skip=1) == ring[3]
    assert p.route_next(far, skip=1) == p.fingers[126]


def test_every_lookup_in_a_converged_ring_finds_the_responsible_peer_in_about_half_log2_n_hops():
    sim = Simulator(seed=2)
    net = converged_overlay(sim, 2_000, PeerConfig(maintenance=False))
    m = measure_lookups(net, 400)
    assert m["lookup_failure_rate"] == 0.0 and m["unfinished"] == 0
    assert 3.5 < m["mean_hops"] < 6.5  # Chord: about (1/2) log2 N = 5.5, fewer with 8 successors


@pytest.mark.slow
def test_peers_that_really_join_build_the_same_tables_a_converged_ring_has():
    sim = Simulator(seed=3)
    net = joined_overlay(sim, 60, FAST, join_gap_ns=NS_PER_S, settle_ns=60 * NS_PER_S)
    assert net.build == "joined"
    assert ring_errors(net) == {"peers": 60, "successor list entries": 0, "fingers": 0}
    assert measure_lookups(net, 200)["lookup_failure_rate"] == 0.0


def test_registration_is_stored_at_the_responsible_peer_and_replicated_on_its_successors():
    sim = Simulator(seed=4)
    net = converged_overlay(sim, 100, PeerConfig(maintenance=False))
    peers = net.peers()
    alice, bob = peers[10], peers[60]
    alice.store("sip:alice@example.com", "sip:alice@192.0.2.7", sim.now)
    net.service(alice)
    net.run_for(2 * NS_PER_S)
    rid = ids.resource_id("alice@example.com")
    ring = sorted(net.nodes)
    k = next(i for i, n in enumerate(ring) if n >= rid) % len(ring)
    holders = [ring[(k + j) % len(ring)] for j in range(3)]
    done = [e for n, e in ((n, e) for _, n, e in net.events) if n == alice.node_id and type(e) is StoreDone]
    assert done == [StoreDone(1, "sip:alice@example.com", True, holders[0], tuple(holders[1:]))]
    assert [len(net.nodes[h].storage) for h in holders] == [1, 1, 1]
    bob.fetch("sip:alice@example.com", sim.now)
    net.service(bob)
    net.run_for(2 * NS_PER_S)
    fetched = [e for _, n, e in net.events if n == bob.node_id and type(e) is FetchDone]
    assert fetched == [
        FetchDone(1, "sip:alice@example.com", True, ((alice.node_id, "sip:alice@192.0.2.7"),), holders[0])
    ]


def test_a_client_attaches_to_a_peer_and_uses_the_overlay_through_it_without_routing():
    sim = Simulator(seed=5)
    net = converged_overlay(sim, 50, PeerConfig(maintenance=False))
    peer = net.peers()[0]
    c = net.add(OverlayPeer(12345, PeerConfig(client=True, maintenance=False), random.Random(1)))
    c.attach(peer.node_id, sim.now)
    net.service(c)
    net.run_for(NS_PER_S)
    assert c.state is State.ATTACHED and c.node_id in peer.clients
    c.store("sip:carol@example.com", "sip:carol@198.51.100.1", sim.now)
    net.service(c)
    net.run_for(NS_PER_S)
    c.lookup(ids.resource_id("x"), sim.now)
    net.service(c)
    net.run_for(NS_PER_S)
    evs = [e for _, n, e in net.events if n == c.node_id]
    assert type(evs[1]) is StoreDone and evs[1].ok
    assert type(evs[2]) is LookupDone and evs[2].ok
    # nobody routes through the client: it is in no routing table
    assert all(c.node_id not in p.successors and c.node_id not in p._finger_set for p in net.peers())
    # a client drops what is not addressed to it
    h = ForwardingHeader(peer._overlay, 1, (ResourceDest(5),))
    c.receive(Message(h, ProbeReq()).encode(), peer.node_id, sim.now)
    assert c.drops[Drop.CLIENT] == 1


def test_graceful_leave_hands_data_to_the_successor_and_the_ring_closes_over_the_gap():
    sim = Simulator(seed=6)
    net = converged_overlay(sim, 40, FAST)
    peers = sorted(net.peers(), key=lambda p: p.node_id)
    writer = peers[0]
    writer.store("sip:dave@example.com", "sip:dave@203.0.113.5", sim.now)
    net.service(writer)
    net.run_for(NS_PER_S)
    rid = ids.resource_id("dave@example.com")
    holder = next(p for p in peers if p._responsible(rid))
    succ = holder.successors[0]
    holder.leave(sim.now)
    net.service(holder)
    net.run_for(NS_PER_S)
    net.crash(holder.node_id)
    assert (sim.now > 0) and any(type(e) is Left for _, _, e in net.events)
    net.run_for(30 * NS_PER_S)  # a stale entry k places back goes after k stabilization rounds
    assert holder.node_id not in net.nodes[succ].predecessors
    assert ring_errors(net)["successor list entries"] == 0
    reader = peers[20]
    reader.fetch("sip:dave@example.com", sim.now)
    net.service(reader)
    net.run_for(2 * NS_PER_S)
    fetched = [e for _, n, e in net.events if n == reader.node_id and type(e) is FetchDone]
    assert fetched[-1].responder == succ and fetched[-1].contacts == (
        (writer.node_id, "sip:dave@203.0.113.5"),
    )


def test_a_crashed_peer_is_detected_by_stabilization_and_routed_around():
    sim = Simulator(seed=7)
    net = converged_overlay(sim, 60, FAST)
    victim = sorted(net.nodes)[30]
    net.crash(victim)
    net.run_for(20 * NS_PER_S)
    errs = ring_errors(net)
    assert errs["successor list entries"] == 0 and errs["peers"] == 59
    assert measure_lookups(net, 200)["lookup_failure_rate"] == 0.0


def test_malformed_and_foreign_messages_are_dropped_with_a_reason_and_never_raise():
    p = _peer(1 << 100)
    p.join(p.node_id, 0)
    p.receive(b"\x00" * 10, 5, 0)
    p.receive(b"\xd2ELO" + bytes(60), 5, 0)
    other = ForwardingHeader(ids.overlay_hash("another.example"), 1, (NodeDest(p.node_id),))
    p.receive(Message(other, PingReq()).encode(), 5, 0)
    assert p.drops == {Drop.MALFORMED: 2, Drop.OTHER_OVERLAY: 1}
    assert p.datagrams_to_send(0) == []


def test_a_request_whose_ttl_runs_out_is_answered_with_an_error():
    sim = Simulator(seed=8)
    net = converged_overlay(sim, 20, PeerConfig(maintenance=False))
    a, b = net.peers()[0], net.peers()[10]
    h = ForwardingHeader(a._overlay, 99, (ResourceDest((b.node_id + 1) & ids.MASK),), ttl=0)
    a.receive(Message(h, ProbeReq()).encode(), 7, sim.now)
    assert a.drops[Drop.TTL] == 1
    [(dst, data)] = a.datagrams_to_send(sim.now)
    assert dst == 7 and Message.decode(data).body.error_code == 10  # Error_TTL_Exceeded


def test_config_rejects_bad_values_and_unknown_defenses():
    with pytest.raises(ParamError, match="successors"):
        PeerConfig(successors=0).check()
    with pytest.raises(ParamError, match="unknown defense"):
        PeerConfig().with_defenses(["tinfoil"])
    assert PeerConfig().with_defenses(["iterative", "publication-limit"]).defenses() == [
        "iterative",
        "publication-limit",
    ]
    with pytest.raises(ParamError, match="credentials"):
        OverlayPeer(1, PeerConfig(signatures=True), random.Random(1))


# -- attackers (draft-song 4.2 and figure 6) --------------------------------------------------------


def _attacked(attack: str, config: PeerConfig, f: float = 0.2, n: int = 1_000, seed: int = 9):
    sim = Simulator(seed=seed)
    net = converged_overlay(sim, n, config, attack=attack, malicious_fraction=f)
    return net, measure_lookups(net, 600)


def test_attackers_override_one_method():
    for cls in (DroppingPeer, MisroutingPeer, FabricatingPeer):
        own = {k for k in vars(cls) if not k.startswith("__")} - {"collusion"}
        assert own == {"choose_next_hop"}
    c = Collusion([10, 20, 30, 40], [30, 40])
    assert c.root(15) == 20 and c.fake_root(15) == 30 and c.fake_root(35) == 30


def test_droppers_make_lookups_time_out_and_the_querier_knows():
    net, m = _attacked("drop", PeerConfig(maintenance=False))
    assert m["lookup_failure_rate"] > 0.3 and m["detected_failure_rate"] == m["lookup_failure_rate"]
    assert net.drops()[Drop.ATTACK] > 0


def test_misrouted_lookups_end_at_a_colluder_the_querier_believes():
    net, m = _attacked("misroute", PeerConfig(maintenance=False))
    assert m["lookup_failure_rate"] > 0.3 and m["wrong_answer_rate"] == m["lookup_failure_rate"]
    wrong = {r for ok, _, r in m["per_lookup"] if not ok}
    assert wrong <= set(net.collusion.malicious)


def test_iterative_routing_routes_around_droppers():
    _, plain = _attacked("drop", PeerConfig(maintenance=False))
    _, it = _attacked("drop", PeerConfig(maintenance=False, iterative=True, retries=8))
    assert it["lookup_failure_rate"] < plain["lookup_failure_rate"] / 3
    assert it["messages_per_lookup"] > plain["messages_per_lookup"]


def test_verifying_the_responder_stops_fabricated_answers():
    _, plain = _attacked("false-answer", PeerConfig(maintenance=False))
    _, checked = _attacked("false-answer", PeerConfig(maintenance=False, verify_responsible=True))
    assert plain["wrong_answer_rate"] > 0.3
    assert checked["wrong_answer_rate"] == 0.0  # a fabricated "I am responsible" never gets through
    _, both = _attacked(
        "false-answer", PeerConfig(maintenance=False, verify_responsible=True, iterative=True, retries=8)
    )
    assert both["lookup_failure_rate"] < checked["lookup_failure_rate"] / 3


def test_redundant_routing_survives_droppers_more_often():
    _, plain = _attacked("drop", PeerConfig(maintenance=False))
    _, red = _attacked("drop", PeerConfig(maintenance=False, redundant=True, redundancy=4))
    assert red["lookup_failure_rate"] < plain["lookup_failure_rate"] * 0.8


def test_replayed_requests_are_dropped_with_replay_protection():
    p = _peer(1 << 100, PeerConfig(replay_protection=True))
    p.join(p.node_id, 0)
    raw = Message(ForwardingHeader(p._overlay, 42, (NodeDest(p.node_id),)), PingReq()).encode()
    p.receive(raw, 5, 0)
    p.receive(raw, 5, NS_PER_S)
    assert len(p.datagrams_to_send(NS_PER_S)) == 1 and p.drops[Drop.REPLAY] == 1
    q = _peer(1 << 101, PeerConfig())
    q.join(q.node_id, 0)
    q.receive(raw, 5, 0)
    q.receive(raw, 5, NS_PER_S)
    assert len(q.datagrams_to_send(NS_PER_S)) == 2  # the baseline answers a replay again


def test_drop_sentinel_is_not_a_node_id():
    assert DROP < 0


def test_same_seed_same_bytes_on_the_wire(tmp_path):
    def run(path):
        sim = Simulator(seed=42)
        net = converged_overlay(sim, 100, FAST, attack="misroute", malicious_fraction=0.1)
        net.capture(path)
        measure_lookups(net, 50)
        net.close()
        return path.read_bytes()

    a, b = run(tmp_path / "a.pcap"), run(tmp_path / "b.pcap")
    assert a == b and len(a) > 10_000


@pytest.mark.slow
def test_misrouters_poison_fingers_through_fix_fingers_unless_tables_are_constrained():
    """draft-song 4.2: "responding with fake routing table to UPDATE requests". Here it needs no
    special attacker: a fix-fingers lookup that meets a misrouter returns a colluder, and a relaxed
    table takes it; a constrained table only takes a node closer to the finger point."""
    out = {}
    for constrained in (False, True):
        sim = Simulator(seed=12)
        cfg = PeerConfig(
            fix_fingers_interval_ns=NS_PER_S,
            stabilize_interval_ns=60 * NS_PER_S,
            check_predecessor_interval_ns=60 * NS_PER_S,
            constrained_tables=constrained,
        )
        net = converged_overlay(sim, 300, cfg, attack="misroute", malicious_fraction=0.2)
        static = measure_lookups(net, 300)["lookup_failure_rate"]
        net.run_for(20 * NS_PER_S)
        out[constrained] = (
            ring_errors(net)["fingers"],
            measure_lookups(net, 300)["lookup_failure_rate"],
            static,
        )
    (bad_fingers, after, before), (bad_c, after_c, before_c) = out[False], out[True]
    assert bad_fingers > 300 and after > before + 0.15
    assert bad_c == 0 and abs(after_c - before_c) < 0.08


# -- any input ------------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_overlay_wire import message  # noqa: E402


@pytest.fixture(scope="module")
def small_ring():
    sim = Simulator(seed=30)
    return converged_overlay(sim, 12, PeerConfig(maintenance=False))


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    m=message,
    pick=st.integers(0, 11),
    src=st.integers(0, 2**128 - 1),
    addressed=st.booleans(),
    junk=st.binary(max_size=8),
)
def test_any_message_from_any_sender_never_makes_a_peer_raise(small_ring, m, pick, src, addressed, junk):
    net = small_ring
    peer = sorted(net.nodes.values(), key=lambda p: p.node_id)[pick]
    header = m.header
    from dataclasses import replace as _replace

    header = _replace(header, overlay=peer._overlay)
    if addressed:
        header = _replace(header, destination_list=(NodeDest(peer.node_id),) + header.destination_list)
    raw = Message(header, m.body, m.extensions, m.security).encode()
    for data in (raw, raw + junk, raw[: len(raw) // 2]):
        peer.receive(data, src, net.sim.now)
        peer.handle_timer(net.sim.now + 10 * NS_PER_S)
        for _, out in peer.datagrams_to_send(net.sim.now):
            Message.decode(out)  # whatever a peer sends is well-formed
        peer.events()
