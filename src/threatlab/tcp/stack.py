"""TCP on a simulated host: the glue between sans-IO `TcpEndpoint`s and `threatlab.net.Host`.

A `TcpStack` registers for IP protocol 6 on one host, demultiplexes arriving segments by
(local port, remote address, remote port) to connections and listeners, answers segments for no
connection as RFC 793 says (RST), sends what the endpoints queue, and runs their timers on the
simulator. The endpoints stay sans-IO: the same objects run in the tests' in-memory harness.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from threatlab.net.host import Host
from threatlab.net.wire import IPPROTO_TCP, IPv4
from threatlab.tcp._state import State
from threatlab.tcp.challenge import ChallengeAckLimiter, RandomizedChallengeAckLimiter
from threatlab.tcp.config import TcpConfig
from threatlab.tcp.endpoint import TcpEndpoint
from threatlab.tcp.events import Event
from threatlab.tcp.ports import choose_ephemeral_port
from threatlab.tcp.wire import TcpFlags, TcpSegment

__all__ = ["TcpStack", "Connection"]

_PORTS = struct.Struct("!HH")
_SEQ_ACK_OFF_FLAGS = struct.Struct("!IIBB")
_RST = int(TcpFlags.RST)
_ACK = int(TcpFlags.ACK)
_SYN = int(TcpFlags.SYN)
_FIN = int(TcpFlags.FIN)
_CLOSED = State.CLOSED

Key = tuple[int, int, int]  # (local port, remote address as int, remote port)
EventCallback = Callable[["Connection", Event], Any]


class Connection:
    """A TcpEndpoint living on a simulated host, with the events it has produced."""

    __slots__ = ("stack", "key", "endpoint", "events", "_timer", "_deadline", "on_event")

    def __init__(self, stack: TcpStack, key: Key, endpoint: TcpEndpoint, on_event: EventCallback | None) -> None:
        self.stack = stack
        self.key = key
        self.endpoint = endpoint
        self.events: list[Event] = []
        self.on_event = on_event
        self._timer = None
        self._deadline: int | None = None

    @property
    def state(self) -> State:
        return self.endpoint.state

    def send(self, data: bytes) -> None:
        self.endpoint.send(data, self.stack.sim.now)
        self.stack._service(self)

    def close(self) -> None:
        self.endpoint.close(self.stack.sim.now)
        self.stack._service(self)

    def abort(self) -> None:
        self.endpoint.abort(self.stack.sim.now)
        self.stack._service(self)

    def __repr__(self) -> str:
        ep = self.endpoint
        return f"<Connection {ep.local} -> {ep.remote} {ep.state.name}>"


class TcpStack:
    """Every TCP connection of one simulated host."""

    def __init__(self, host: Host, config: TcpConfig | None = None, rng: random.Random | None = None,
                 limiter: ChallengeAckLimiter | None = None) -> None:
        self.host = host
        self.sim = host.sim
        self.config = config or TcpConfig()
        self.rng = rng or self.sim.child_rng(f"tcp:{host.name}")
        # tcpsecure 2.2 throttling: one limiter shared by every connection when its scope is the host
        # (randomized per Linux 4.7 with challenge_ack_budget="random", drawing from the stack's rng)
        if limiter is None and self.config.challenge_ack_limit is not None and self.config.challenge_ack_scope == "host":
            count, interval = self.config.challenge_ack_limit
            if self.config.challenge_ack_budget == "random":
                limiter = RandomizedChallengeAckLimiter(count, interval, self.rng)
            else:
                limiter = ChallengeAckLimiter(count, interval)
        self.limiter = limiter
        self.connections: dict[Key, Connection] = {}
        self.listeners: dict[int, tuple[TcpConfig, EventCallback | None, Callable[[Connection], Any] | None]] = {}
        self.counters: Counter[str] = Counter()
        self._last_port: int | None = None
        host.register_protocol(IPPROTO_TCP, self._on_packet, fast=self._on_segment)

    # --- user calls -------------------------------------------------------------------------------

    def listen(self, port: int, *, config: TcpConfig | None = None, on_event: EventCallback | None = None,
               on_accept: Callable[[Connection], Any] | None = None) -> None:
        """Passive OPEN on `port`: every SYN for it makes a new connection."""
        self.listeners[port] = (config or self.config, on_event, on_accept)

    def connect(self, remote: tuple[IPv4Address | str, int], *, local_port: int | None = None,
                config: TcpConfig | None = None, on_event: EventCallback | None = None) -> Connection:
        """Active OPEN to `remote` from an ephemeral port (RFC 6056 when port randomization is on)."""
        cfg = config or self.config
        rip = IPv4Address(remote[0])
        route = self.host.route(rip)
        if route is None:
            raise ValueError(f"tcp: no route from {self.host.name} to {rip}")
        lip = route[0].ip
        if local_port is None:
            in_use = {k[0] for k in self.connections}
            local_port = choose_ephemeral_port(self.rng, cfg, in_use, self._last_port)
            self._last_port = local_port
        ep = TcpEndpoint(cfg, self.rng, (lip, local_port), (rip, remote[1]), **self._limiter_kw(cfg))
        conn = Connection(self, (local_port, int(rip), remote[1]), ep, on_event)
        self.connections[conn.key] = conn
        ep.connect(self.sim.now)
        self._service(conn)
        return conn

    def _limiter_kw(self, cfg: TcpConfig) -> dict[str, Any]:
        if self.limiter is not None and cfg.challenge_ack_scope == "host":
            return {"challenge_ack_limiter": self.limiter}
        return {}

    # --- segment arrival --------------------------------------------------------------------------

    def _on_segment(self, src: IPv4Address, dst: IPv4Address, raw: bytes, nic: Any) -> bool:
        """A segment for one of our connections, from the host's fast dispatch (no `IPv4` built);
        False for anything else, which then comes to `_on_packet`."""
        if len(raw) < 20:
            return False
        sport, dport = _PORTS.unpack_from(raw)
        # src._ip is int(src) without the Python-level __int__ call: this runs once per segment
        conn = self.connections.get((dport, src._ip, sport))
        if conn is None:
            return False
        ep = conn.endpoint
        now = self.sim.now
        ep.receive(raw, now, src)
        # ep._out and ep._events are what segments_to_send() and events() would hand over; read
        # here, they save two calls per segment on the path of a flood. Likewise the timer: with
        # neither of the endpoint's deadlines set, next_timer() is None.
        if ep._out or ep.state is _CLOSED or (
            ep.next_timer() != conn._deadline
            if ep._rtx_deadline is not None or ep._tw_deadline is not None
            else conn._deadline is not None
        ):
            self._after(conn, ep.segments_to_send(now), ep.events())
        else:
            # the common case of a flood: a segment dropped with nothing sent and no timer moved
            events = ep._events
            if events:
                ep._events = []
                conn.events.extend(events)
                cb = conn.on_event
                if cb is not None:
                    for ev in events:
                        cb(conn, ev)
        return True

    def _on_packet(self, packet: IPv4, nic: Any) -> None:
        raw = packet.payload
        if len(raw) < 20:
            self.counters["dropped: malformed"] += 1
            return
        src = packet.src
        if self._on_segment(src, packet.dst, raw, nic):
            return
        sport, dport = _PORTS.unpack_from(raw)
        listener = self.listeners.get(dport)
        if listener is None or raw[13] & (_RST | _ACK) or not raw[13] & _SYN:
            self._no_connection(packet, raw)
            return
        cfg, on_event, on_accept = listener
        ep = TcpEndpoint(cfg, self.rng, (packet.dst, dport), None, **self._limiter_kw(cfg))
        ep.listen()
        conn = Connection(self, (dport, int(src), sport), ep, on_event)
        self.connections[conn.key] = conn
        self.counters["accepted"] += 1
        if on_accept is not None:
            on_accept(conn)
        conn.endpoint.receive(raw, self.sim.now, src)
        self._service(conn)

    def _no_connection(self, packet: IPv4, raw: bytes) -> None:
        """RFC 793 3.4 / RFC 9293 3.10.7.1: CLOSED. A RST is dropped; anything else gets a RST."""
        self.counters["segments for no connection"] += 1
        try:
            seg = TcpSegment.decode(raw, packet.src, packet.dst)
        except Exception:
            self.counters["dropped: malformed"] += 1
            return
        flags = int(seg.flags)
        if flags & _RST:
            return
        if flags & _ACK:
            rst = TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, TcpFlags.RST, 0, 0, (), b"")
        else:
            seg_len = len(seg.payload) + (1 if flags & _SYN else 0) + (1 if flags & _FIN else 0)
            rst = TcpSegment(seg.dst_port, seg.src_port, 0, (seg.seq + seg_len) & 0xFFFFFFFF,
                             TcpFlags.RST | TcpFlags.ACK, 0, 0, (), b"")
        self.counters["resets sent"] += 1
        self.host.send_ip(packet.src, IPPROTO_TCP, rst.encode(packet.dst, packet.src), src=packet.dst)

    # --- output, events and timers ----------------------------------------------------------------

    def _service(self, conn: Connection) -> None:
        ep = conn.endpoint
        now = self.sim.now
        self._after(conn, ep.segments_to_send(now), ep.events())

    def _after(self, conn: Connection, out: list, events: list[Event]) -> None:
        """Send what the endpoint queued, hand its events to the user, follow its timer, and forget
        it once it is closed for good."""
        ep = conn.endpoint
        now = self.sim.now
        if out:
            send_ip = self.host.send_ip
            for seg in out:
                send_ip(seg.dst_ip, IPPROTO_TCP, seg.encode(), src=seg.src_ip)
        if events:
            conn.events.extend(events)
            cb = conn.on_event
            if cb is not None:
                for ev in events:
                    cb(conn, ev)
        deadline = ep.next_timer()
        if deadline != conn._deadline:
            if conn._timer is not None:
                conn._timer.cancel()
                conn._timer = None
            conn._deadline = deadline
            if deadline is not None:
                conn._timer = self.sim.at(max(deadline, now), self._fire, conn)
        if ep.state is _CLOSED and deadline is None:
            self._forget(conn)

    def _fire(self, conn: Connection) -> None:
        conn._timer = None
        conn._deadline = None
        conn.endpoint.handle_timer(self.sim.now)
        self._service(conn)

    def _forget(self, conn: Connection) -> None:
        if self.connections.get(conn.key) is conn:
            del self.connections[conn.key]
