"""Two TcpEndpoints wired together in memory, in virtual time.

Every segment crosses the "wire" as bytes (encoded with its checksum, decoded by the receiver), after
a fixed one-way delay; a `lose` predicate drops chosen segments. An off-path attacker is simply a
call to `inject()`, which hands spoofed bytes to an endpoint as if they came from its peer.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from ipaddress import IPv4Address

from threatlab.tcp import TcpConfig, TcpEndpoint, TcpSegment
from threatlab.tcp.events import Event
from threatlab.tcp.wire import IPAddress

A_IP = IPv4Address("192.0.2.1")
B_IP = IPv4Address("192.0.2.2")
A_PORT = 40000
B_PORT = 80
MS = 1_000_000
S = 1_000_000_000


class Pair:
    """A (active opener, 192.0.2.1:40000) and B (listener, 192.0.2.2:80)."""

    def __init__(
        self,
        a_cfg: TcpConfig | None = None,
        b_cfg: TcpConfig | None = None,
        seed: int = 1,
        delay_ns: int = 10 * MS,
        lose: Callable[[str, TcpSegment], bool] | None = None,
        b_remote: bool = False,
        a_port: int = A_PORT,
        b_port: int = B_PORT,
        a_ip: IPAddress = A_IP,
        b_ip: IPAddress = B_IP,
        **endpoint_kw,
    ) -> None:
        self.a = TcpEndpoint(a_cfg or TcpConfig(), random.Random(seed), (a_ip, a_port), (b_ip, b_port))
        self.b = TcpEndpoint(
            b_cfg or TcpConfig(),
            random.Random(seed + 1),
            (b_ip, b_port),
            (a_ip, a_port) if b_remote else None,
            **endpoint_kw,
        )
        self.now = 0
        self.delay_ns = delay_ns
        self.lose = lose
        self._heap: list[tuple[int, int, str, bytes, IPAddress]] = []
        self._n = 0
        self.log: list[tuple[int, str, TcpSegment, bool]] = []  # (time, "a>b"/"b>a", segment, lost)
        self.frames: list[tuple[int, IPAddress, IPAddress, bytes]] = []  # every segment sent
        self._events: dict[str, list[Event]] = {"a": [], "b": []}

    def endpoint(self, name: str) -> TcpEndpoint:
        return self.a if name == "a" else self.b

    def _collect(self) -> None:
        for name, ep in (("a", self.a), ("b", self.b)):
            for out in ep.segments_to_send(self.now):
                raw = out.encode()
                direction = "a>b" if name == "a" else "b>a"
                lost = bool(self.lose and self.lose(direction, out.segment))
                self.log.append((self.now, direction, out.segment, lost))
                self.frames.append((self.now, out.src_ip, out.dst_ip, raw))
                if not lost:
                    dst = "b" if out.dst_ip == self.b.local_ip else "a"
                    heapq.heappush(self._heap, (self.now + self.delay_ns, self._n, dst, raw, out.src_ip))
                    self._n += 1
            self._events[name].extend(ep.events())

    def run(self, until: int | None = None, max_steps: int = 100_000) -> None:
        """Deliver segments and fire timers until nothing is pending (or virtual time `until`)."""
        for _ in range(max_steps):
            self._collect()
            times = [t for t in (self.a.next_timer(), self.b.next_timer()) if t is not None]
            if self._heap:
                times.append(self._heap[0][0])
            if not times:
                if until is not None:
                    self.now = max(self.now, until)
                return
            t = min(times)
            if until is not None and t > until:
                self.now = until
                return
            self.now = max(self.now, t)
            while self._heap and self._heap[0][0] <= self.now:
                _, _, dst, raw, src_ip = heapq.heappop(self._heap)
                self.endpoint(dst).receive(raw, self.now, src_ip)
                self._collect()
            for ep in (self.a, self.b):
                nt = ep.next_timer()
                if nt is not None and nt <= self.now:
                    ep.handle_timer(self.now)
        raise AssertionError("run() did not settle")

    def advance(self, dt: int) -> None:
        self.run(until=self.now + dt)

    def take(self, name: str) -> list[Event]:
        """Events of endpoint `name` since the last take."""
        self._collect()
        ev = self._events[name]
        self._events[name] = []
        return ev

    def inject(self, name: str, segment: TcpSegment, src_ip: IPAddress | None = None) -> None:
        """An off-path attacker's spoofed segment, arriving at endpoint `name` now."""
        ep = self.endpoint(name)
        src = src_ip or (self.a.local_ip if name == "b" else self.b.local_ip)
        ep.receive(segment.encode(src, ep.local_ip), self.now, src)
        self._collect()

    def sent(self, direction: str, since: int = 0) -> list[TcpSegment]:
        return [seg for t, d, seg, _ in self.log[since:] if d == direction]

    def establish(self) -> None:
        self.b.listen()
        self.a.connect(self.now)
        self.run()
        assert self.a.state.name == "ESTABLISHED" and self.b.state.name == "ESTABLISHED"
        self.take("a")
        self.take("b")


def spoof(
    victim: TcpEndpoint, flags, seq: int, ack: int = 0, payload: bytes = b"", window: int = 0
) -> TcpSegment:
    """A segment claiming to come from `victim`'s peer (the attacker knows the four-tuple)."""
    return TcpSegment(
        victim.remote_port,
        victim.local_port,
        seq & 0xFFFFFFFF,
        ack & 0xFFFFFFFF,
        flags,
        window,
        payload=payload,
    )
