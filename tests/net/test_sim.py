"""The event loop: virtual time, reproducible ordering, cancellation, run(until)."""

from __future__ import annotations

import pytest

from threatlab.errors import ParamError
from threatlab.net.sim import Simulator


def test_events_run_in_time_order_and_advance_now():
    sim = Simulator()
    seen = []
    sim.schedule(30, lambda: seen.append(("c", sim.now)))
    sim.schedule(10, lambda: seen.append(("a", sim.now)))
    sim.schedule(20, lambda: seen.append(("b", sim.now)))
    sim.run()
    assert seen == [("a", 10), ("b", 20), ("c", 30)]
    assert sim.now == 30


def test_ties_break_in_insertion_order():
    sim = Simulator()
    seen = []
    for i in range(50):
        sim.at(7, seen.append, i)
    sim.post(7, seen.append, "posted")
    sim.run()
    assert seen == list(range(50)) + ["posted"]


def test_events_scheduled_at_now_from_a_callback_run_after_those_already_queued():
    sim = Simulator()
    seen = []

    def first():
        seen.append("first")
        sim.schedule(0, seen.append, "nested")

    sim.schedule(5, first)
    sim.schedule(5, seen.append, "second")
    sim.run()
    assert seen == ["first", "second", "nested"]


def test_cancelled_timer_never_fires_and_peek_skips_it():
    sim = Simulator()
    seen = []
    t1 = sim.schedule(10, seen.append, 1)
    sim.schedule(20, seen.append, 2)
    t1.cancel()
    assert not t1.active
    assert sim.peek() == 20
    sim.run()
    assert seen == [2]


def test_cancel_after_fire_is_harmless():
    sim = Simulator()
    t = sim.schedule(1, lambda: None)
    sim.run()
    assert t.fired
    t.cancel()
    assert not t.cancelled


def test_run_until_runs_events_at_until_and_stops_the_clock_there():
    sim = Simulator()
    seen = []
    for t in (5, 10, 15):
        sim.at(t, seen.append, t)
    sim.run(until=10)
    assert seen == [5, 10]
    assert sim.now == 10
    assert sim.peek() == 15
    sim.run(until=100)
    assert seen == [5, 10, 15]
    assert sim.now == 100


def test_run_until_with_no_events_moves_the_clock():
    sim = Simulator()
    sim.run(until=1234)
    assert sim.now == 1234
    assert sim.peek() is None


def test_step_runs_one_event_and_reports_emptiness():
    sim = Simulator()
    seen = []
    sim.schedule(3, seen.append, "x")
    cancelled = sim.schedule(1, seen.append, "never")
    cancelled.cancel()
    assert sim.step() is True
    assert seen == ["x"] and sim.now == 3
    assert sim.step() is False


def test_scheduling_into_the_past_is_refused():
    sim = Simulator()
    sim.run(until=100)
    with pytest.raises(ParamError):
        sim.at(50, lambda: None)
    with pytest.raises(ParamError):
        sim.schedule(-1, lambda: None)
    with pytest.raises(ParamError):
        sim.run(until=10)


def test_child_rng_streams_are_deterministic_and_independent():
    a = Simulator(seed=7)
    b = Simulator(seed=7)
    assert [a.child_rng("x").random() for _ in range(3)] == [b.child_rng("x").random() for _ in range(3)]
    assert a.child_rng("x").random() != a.child_rng("y").random()
    assert Simulator(seed=8).child_rng("x").random() != a.child_rng("x").random()
    assert a.rng.random() == b.rng.random()


def test_child_rng_does_not_depend_on_pythonhashseed():
    import subprocess
    import sys

    code = "from threatlab.net.sim import Simulator; print(Simulator(3).child_rng('loss').random())"
    outs = {
        subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": s}, capture_output=True,
                       text=True, check=True).stdout
        for s in ("1", "2")
    }
    assert len(outs) == 1
