"""The discrete-event loop: integer nanoseconds of virtual time and a heap of pending calls.

As in simpy's `core.py`, the heap holds (time, sequence, callable, args): the sequence number breaks
ties in insertion order, so two runs with the same seed make the same calls in the same order.
Nothing here reads the wall clock or a global RNG; every random draw comes from `Simulator.rng` or
from a named stream of `Simulator.child_rng`.
"""

from __future__ import annotations

import hashlib
import random
from heapq import heappop, heappush
from itertools import count
from typing import Any, Callable

from threatlab.errors import ParamError

__all__ = ["Simulator", "Timer", "NS_PER_US", "NS_PER_MS", "NS_PER_S"]

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


class Timer:
    """A scheduled call that can be cancelled before it runs.

    Cancelling is lazy: the heap entry stays and does nothing when its time comes.
    """

    __slots__ = ("time", "_callback", "_args", "cancelled", "fired")

    def __init__(self, time: int, callback: Callable[..., Any], args: tuple) -> None:
        self.time = time
        self._callback = callback
        self._args = args
        self.cancelled = False
        self.fired = False

    @property
    def active(self) -> bool:
        """True while the call is still to come."""
        return not (self.cancelled or self.fired)

    def cancel(self) -> None:
        """Forget the call; cancelling a fired or cancelled timer does nothing."""
        if not self.fired:
            self.cancelled = True
            self._callback = None
            self._args = ()

    def __call__(self) -> None:
        if not self.cancelled:
            self.fired = True
            self._callback(*self._args)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "fired" if self.fired else "pending"
        return f"<Timer at {self.time} ns {state}>"


class Simulator:
    """A deterministic event loop.

    `now` is the virtual time in integer nanoseconds. `schedule` and `at` return a `Timer`;
    `post` is the cheaper, non-cancellable form the network's data path uses.
    """

    __slots__ = ("now", "seed", "rng", "_heap", "_seq", "events_run", "_running")

    def __init__(self, seed: int = 0) -> None:
        if not isinstance(seed, int):
            raise ParamError(f"seed must be an int, got {seed!r}")
        self.now = 0
        self.seed = seed
        self.rng = random.Random(seed)
        self._heap: list[tuple[int, int, Callable[..., Any], tuple]] = []
        self._seq = count()
        self.events_run = 0
        # True while run() pops events: a component may then run an event that would be the very
        # next one popped at once, without the heap round trip (see `Segment._arrive`)
        self._running = False

    # -- randomness -------------------------------------------------------------------------

    def child_rng(self, name: str) -> random.Random:
        """An independent stream for `name`, a function of (seed, name) only.

        Uses SHA-256, not Python's `hash()`, so it does not change with PYTHONHASHSEED, and a new
        consumer of randomness elsewhere does not shift this stream.
        """
        digest = hashlib.sha256(f"threatlab:{self.seed}:{name}".encode()).digest()
        return random.Random(int.from_bytes(digest[:16], "big"))

    # -- scheduling -------------------------------------------------------------------------

    def schedule(self, delay_ns: int, callback: Callable[..., Any], *args: Any) -> Timer:
        """Call `callback(*args)` after `delay_ns` nanoseconds of virtual time."""
        if delay_ns < 0:
            raise ParamError(f"delay_ns must be >= 0, got {delay_ns}")
        return self.at(self.now + delay_ns, callback, *args)

    def at(self, time_ns: int, callback: Callable[..., Any], *args: Any) -> Timer:
        """Call `callback(*args)` at absolute virtual time `time_ns` (not in the past)."""
        if time_ns < self.now:
            raise ParamError(f"time_ns must be >= now ({self.now}), got {time_ns}")
        timer = Timer(time_ns, callback, args)
        heappush(self._heap, (time_ns, next(self._seq), timer, ()))
        return timer

    def post(self, delay_ns: int, callback: Callable[..., Any], *args: Any) -> None:
        """Like `schedule` without a Timer: cannot be cancelled, costs one tuple."""
        heappush(self._heap, (self.now + delay_ns, next(self._seq), callback, args))

    def post_at(self, time_ns: int, callback: Callable[..., Any], args: tuple) -> None:
        """Like `at` without a Timer; `args` is passed as a tuple. The caller ensures time_ns >= now."""
        heappush(self._heap, (time_ns, next(self._seq), callback, args))

    # -- running ----------------------------------------------------------------------------

    def peek(self) -> int | None:
        """The time of the next live event, or None if there is none."""
        heap = self._heap
        while heap:
            fn = heap[0][2]
            if type(fn) is Timer and fn.cancelled:
                heappop(heap)
                continue
            return heap[0][0]
        return None

    def step(self) -> bool:
        """Run the next live event; False if there was none."""
        heap = self._heap
        while heap:
            time, _, fn, args = heappop(heap)
            if type(fn) is Timer and fn.cancelled:
                continue
            self.now = time
            self.events_run += 1
            fn(*args)
            return True
        return False

    def run(self, until: int | None = None) -> None:
        """Run events in (time, insertion) order.

        With `until`, run every event whose time is <= until, then set `now = until`;
        without, run until no event is left.
        """
        heap = self._heap
        n = 0
        outer = self._running
        self._running = True
        try:
            if until is None:
                while heap:
                    time, _, fn, args = heappop(heap)
                    self.now = time
                    n += 1
                    fn(*args)
            else:
                if until < self.now:
                    raise ParamError(f"until must be >= now ({self.now}), got {until}")
                while heap and heap[0][0] <= until:
                    time, _, fn, args = heappop(heap)
                    self.now = time
                    n += 1
                    fn(*args)
                self.now = until
        finally:
            self._running = outer
            self.events_run += n

    def run_for(self, duration_ns: int) -> None:
        """Run for `duration_ns` of virtual time from now."""
        self.run(self.now + duration_ns)

    def __len__(self) -> int:
        """Entries in the heap, cancelled timers included."""
        return len(self._heap)
