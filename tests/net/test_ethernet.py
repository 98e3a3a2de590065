"""Links, hubs and learning switches: timing, loss, flooding, learning, padding, counters."""

from __future__ import annotations

import math

import pytest

from threatlab.net import Link, SegmentKind, Simulator, build, lan, serialization_ns
from threatlab.net.ethernet import FDB_AGEING_NS
from threatlab.net.sim import NS_PER_S
from threatlab.net.wire import BROADCAST_MAC, Ethernet


def _frame(dst: bytes, src: bytes, size: int = 60) -> bytes:
    return Ethernet(dst, src, 0x88B5, bytes(size - 14)).encode()  # 0x88b5: IEEE local experimental


def _arrivals(net, host: str) -> list[tuple[int, bytes]]:
    seen: list[tuple[int, bytes]] = []
    net.node(host).add_sniffer(lambda frame, ifname, now: seen.append((now, frame)))
    return seen


def test_serialization_delay_is_bytes_times_8_over_rate_on_each_hop():
    sim = Simulator()
    net = build(lan(2, SegmentKind.HUB, link=Link(delay_ns=500, rate_bps=1_000_000)), sim)
    h1, h2 = net.node("h1"), net.node("h2")
    seen = _arrivals(net, "h2")
    h1.raw_send("eth0", _frame(h2.mac, h1.mac, 1000))
    sim.run()
    per_hop = 1000 * 8 * NS_PER_S // 1_000_000  # 8 ms at 1 Mb/s
    assert serialization_ns(1000, 1_000_000) == per_hop == 8_000_000
    assert [t for t, _ in seen] == [2 * (per_hop + 500)]  # NIC -> hub, hub -> NIC


def test_frames_sent_together_serialize_back_to_back():
    sim = Simulator()
    net = build(lan(2, SegmentKind.SWITCH, link=Link(delay_ns=1000, rate_bps=10_000_000)), sim)
    h1, h2 = net.node("h1"), net.node("h2")
    seen = _arrivals(net, "h2")
    for _ in range(4):
        h1.raw_send("eth0", _frame(h2.mac, h1.mac, 500))
    sim.run()
    s = serialization_ns(500, 10_000_000)
    assert [t for t, _ in seen] == [(k + 2) * s + 2000 for k in range(4)]


def test_nic_pads_short_frames_to_60_bytes():
    sim = Simulator()
    net = build(lan(2), sim)
    h1, h2 = net.node("h1"), net.node("h2")
    seen = _arrivals(net, "h2")
    h1.raw_send("eth0", Ethernet(h2.mac, h1.mac, 0x88B5, b"hi").encode())
    sim.run()
    assert len(seen) == 1
    assert len(seen[0][1]) == 60 and seen[0][1].endswith(bytes(60 - 16))


def test_frame_larger_than_mtu_is_refused_by_the_nic():
    sim = Simulator()
    net = build(lan(2, link=Link(mtu=576)), sim)
    h1, h2 = net.node("h1"), net.node("h2")
    assert h1.raw_send("eth0", _frame(h2.mac, h1.mac, 576 + 14))
    assert not h1.raw_send("eth0", _frame(h2.mac, h1.mac, 576 + 15))
    assert h1.interfaces["eth0"].drops["oversize"] == 1


@pytest.mark.parametrize("loss", [0.1, 0.3, 0.5])
def test_loss_rate_matches_the_link_probability(loss):
    # n = 20000 Bernoulli trials: the delivered fraction has sd sqrt(p(1-p)/n) <= 0.0036;
    # the tolerance is 5 sd, so a correct link fails this about once in 3 million runs.
    n = 20_000
    sim = Simulator(seed=42)
    net = build(lan(2, link=Link(loss=loss)), sim)
    h1, h2 = net.node("h1"), net.node("h2")
    for _ in range(n):
        h1.raw_send("eth0", _frame(BROADCAST_MAC, h1.mac))
    sim.run()
    delivered = h2.interfaces["eth0"].frames_in
    p = (1 - loss) ** 2  # lost on h1's cable up, or on h2's cable down
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(delivered / n - p) < 5 * sd
    lost = h1.interfaces["eth0"].drops["link-loss"] + net.segment("lan").drops["link-loss"]
    assert delivered + lost == n


def test_lossless_and_total_loss_links_are_exact():
    for loss, expect in ((0.0, 100), (1.0, 0)):
        sim = Simulator()
        net = build(lan(2, link=Link(loss=loss)), sim)
        h1, h2 = net.node("h1"), net.node("h2")
        for _ in range(100):
            h1.raw_send("eth0", _frame(h2.mac, h1.mac))
        sim.run()
        assert h2.interfaces["eth0"].frames_in == expect


def test_hub_repeats_every_frame_to_every_other_port():
    sim = Simulator()
    net = build(lan(3, SegmentKind.HUB), sim)
    h1, h2, h3 = (net.node(f"h{i}") for i in (1, 2, 3))
    h2.raw_send("eth0", _frame(h1.mac, h2.mac))  # h2 speaks first: a switch would learn it
    h1.raw_send("eth0", _frame(h2.mac, h1.mac))
    sim.run()
    assert h3.interfaces["eth0"].frames_in == 2  # both unicasts reached the bystander
    assert h3.interfaces["eth0"].drops["not-for-us"] == 2  # and its NIC filtered them
    assert h1.interfaces["eth0"].frames_in == 1  # never its own frame back


def test_switch_floods_unknown_unicast_then_forwards_to_the_learned_port_only():
    sim = Simulator()
    net = build(lan(3, SegmentKind.SWITCH), sim)
    h1, h2, h3 = (net.node(f"h{i}") for i in (1, 2, 3))
    bystander = h3.interfaces["eth0"]
    h1.raw_send("eth0", _frame(h2.mac, h1.mac))  # h2 unknown: flooded
    sim.run()
    assert bystander.frames_in == 1
    h2.raw_send("eth0", _frame(h1.mac, h2.mac))  # h1 was learned: not flooded; h2 learned now
    h1.raw_send("eth0", _frame(h2.mac, h1.mac))
    sim.run()
    assert bystander.frames_in == 1
    assert h2.interfaces["eth0"].frames_in == 2 and h1.interfaces["eth0"].frames_in == 1
    assert set(net.segment("lan").fdb) == {h1.mac, h2.mac}


def test_switch_floods_broadcast_to_every_other_port():
    sim = Simulator()
    net = build(lan(4), sim)
    net.node("h1").raw_send("eth0", _frame(BROADCAST_MAC, net.node("h1").mac))
    sim.run()
    assert [net.node(f"h{i}").interfaces["eth0"].frames_in for i in (1, 2, 3, 4)] == [0, 1, 1, 1]


def test_switch_forgets_a_mac_after_the_ageing_time():
    sim = Simulator()
    net = build(lan(3), sim)
    h1, h2, h3 = (net.node(f"h{i}") for i in (1, 2, 3))
    h2.raw_send("eth0", _frame(h1.mac, h2.mac))
    sim.run()
    sim.run(until=sim.now + FDB_AGEING_NS + 1)
    h1.raw_send("eth0", _frame(h2.mac, h1.mac))
    sim.run()
    assert h3.interfaces["eth0"].frames_in == 2  # h2 forgotten: the unicast to it was flooded again


def test_tap_sees_every_frame_crossing_the_segment_once():
    sim = Simulator()
    net = build(lan(3), sim)
    seen = []
    net.tap("lan", lambda frame, now: seen.append(frame))
    h1, h2 = net.node("h1"), net.node("h2")
    h1.ping(h2.ip)
    sim.run()
    assert len(seen) == 4  # ARP request, ARP reply, echo request, echo reply
    seg = net.segment("lan")
    assert seg.frames_in == 4
    assert seg.frames_out == 2 + 1 + 1 + 1  # the ARP request flooded to two ports


def test_interface_down_neither_sends_nor_receives():
    sim = Simulator()
    net = build(lan(2), sim)
    h1, h2 = net.node("h1"), net.node("h2")
    h2.interfaces["eth0"].up = False
    h1.raw_send("eth0", _frame(BROADCAST_MAC, h1.mac))
    assert not h2.raw_send("eth0", _frame(BROADCAST_MAC, h2.mac))
    sim.run()
    assert h2.interfaces["eth0"].drops["link-down"] == 2


def _same_instant_traffic(drive) -> tuple[list, int]:
    """Three hosts on a switch with instantaneous links; at the same virtual times several frames
    reach the switch together, interleaved with other events. Returns what happened, in order,
    and the simulator's event count, with the simulator driven by `drive(sim)`."""
    sim = Simulator()
    net = build(lan(3), sim)
    h1, h2, h3 = (net.node(f"h{i}") for i in (1, 2, 3))
    log: list = []
    for h in (h1, h2, h3):
        h.add_sniffer(lambda frame, ifname, now, name=h.name: log.append((now, name, frame[6:12], frame[14])))
    net.tap("lan", lambda frame, now: log.append((now, "switch", frame[6:12], frame[14])))
    for t in (100, 200):
        for i, (src, dst) in enumerate(((h1, h3), (h2, h3), (h3, h1), (h1, h2))):
            sim.at(t, src.raw_send, "eth0", _frame(dst.mac, src.mac)[:14] + bytes([i]) + bytes(45))
            sim.at(t, log.append, (t, "other", i))
    # a host that answers at once: its reply reaches the switch at the same instant
    h2.add_sniffer(lambda frame, ifname, now: frame[14] == 3 and h2.raw_send("eth0", _frame(h1.mac, h2.mac)))
    drive(sim)
    return log, sim.events_run, next(sim._seq)  # the last: heap entries made, plus one


def test_switch_delivery_at_the_same_instant_keeps_the_event_order():
    # run() may hand a frame from the switch straight to the NIC when that arrival would be the
    # next event anyway; step() never does. Both must see the same calls in the same order.
    def by_steps(sim):
        while sim.step():
            pass

    (log_s, events_s, pushed_s), (log_r, events_r, pushed_r) = (
        _same_instant_traffic(by_steps), _same_instant_traffic(lambda sim: sim.run()))
    assert (log_r, events_r) == (log_s, events_s)
    assert len([e for e in log_r if e[1] == "switch"]) == 10  # 4 frames and a reply, twice
    # ... and the shortcut was taken: the reply, alone at its instant, skipped the heap
    assert pushed_r < pushed_s
