"""Ethernet segments, the links that attach interfaces to them, and network interface cards.

A frame is `bytes`, exactly as on a real wire (no preamble or FCS), padded to 60 bytes by the NIC
that sends it. An interface reaches its segment through a `Port`: a cable with a delay, a rate, a
loss probability and, per direction, a transmit queue. The queue is kept as the time its transmitter
is next free, so frames serialize back to back and keep their order without a queue object:

    start = max(now, free_at); free_at = start + len(frame) * 8 / rate; arrival = free_at + delay

A hub repeats every frame to every other port; a switch learns source MACs and sends a unicast frame
to the learned port only, flooding broadcast, multicast and unknown unicast.
"""

from __future__ import annotations

from collections import Counter
from heapq import heappush
from typing import TYPE_CHECKING, Any, Callable

from threatlab.net.sim import NS_PER_S, Simulator
from threatlab.net.topology import Link, SegmentKind

if TYPE_CHECKING:
    from ipaddress import IPv4Interface, IPv6Interface

__all__ = ["Nic", "Port", "Segment", "serialization_ns", "ETH_HEADER_LEN", "FDB_AGEING_NS"]

ETH_HEADER_LEN = 14
ETH_MIN_FRAME = 60  # without FCS; the NIC pads shorter frames with zeros
FDB_AGEING_NS = 300 * NS_PER_S  # IEEE 802.1D default ageing time
_PAD = bytes(ETH_MIN_FRAME)

FrameCallback = Callable[[bytes, str, int], Any]  # (frame, interface name, now)


def serialization_ns(nbytes: int, rate_bps: int | None) -> int:
    """Time to clock `nbytes` onto a link of `rate_bps`, in whole nanoseconds (rounded down)."""
    if rate_bps is None:
        return 0
    return nbytes * 8 * NS_PER_S // rate_bps


class Port:
    """One interface's attachment to a segment: a full-duplex cable with a transmitter each way.

    "up" is NIC -> segment, "down" is segment -> NIC. Each direction has its own queue and its own
    loss stream, named after the interface, so adding traffic elsewhere never shifts its draws.
    """

    __slots__ = (
        "nic", "segment", "link", "sim", "delay", "rate", "loss",
        "up_free", "down_free", "_up_rng", "_down_rng", "_seg_arrive", "_nic_arrive", "_heap", "_seq",
    )

    def __init__(self, nic: Nic, segment: Segment, link: Link, sim: Simulator) -> None:
        self.nic = nic
        self.segment = segment
        self.link = link
        self.sim = sim
        self.delay = link.delay_ns
        self.rate = link.rate_bps
        self.loss = link.loss
        self.up_free = 0
        self.down_free = 0
        where = f"{nic.node_name}.{nic.name}"
        self._up_rng = sim.child_rng(f"link-loss:{where}:up") if link.loss else None
        self._down_rng = sim.child_rng(f"link-loss:{where}:down") if link.loss else None
        self._seg_arrive = segment._arrive
        self._nic_arrive = nic._arrive
        self._heap = sim._heap  # the data path pushes its own events: one call less per frame
        self._seq = sim._seq

    def send_up(self, frame: bytes) -> bool:
        """NIC -> segment. Returns False if the frame was lost on the cable."""
        sim = self.sim
        t = sim.now
        rate = self.rate
        if rate is not None:
            if self.up_free > t:
                t = self.up_free
            t += len(frame) * 8_000_000_000 // rate
            self.up_free = t
        if self.loss and self._up_rng.random() < self.loss:
            return False
        heappush(self._heap, (t + self.delay, next(self._seq), self._seg_arrive, (frame, self)))
        return True

    def send_down(self, frame: bytes) -> bool:
        """Segment -> NIC. Returns False if the frame was lost on the cable."""
        sim = self.sim
        t = sim.now
        rate = self.rate
        if rate is not None:
            if self.down_free > t:
                t = self.down_free
            t += len(frame) * 8_000_000_000 // rate
            self.down_free = t
        if self.loss and self._down_rng.random() < self.loss:
            return False
        heappush(self._heap, (t + self.delay, next(self._seq), self._nic_arrive, (frame,)))
        return True

    def __repr__(self) -> str:
        return f"<Port {self.nic.node_name}.{self.nic.name} on {self.segment.name}>"


class Segment:
    """A broadcast domain: a hub or a learning switch, with counters and taps.

    `taps` are called as tap(frame, now) for every frame that reaches the segment, once per crossing.
    """

    __slots__ = (
        "name", "kind", "sim", "ports", "fdb", "taps", "ageing_ns",
        "frames_in", "frames_out", "drops", "_is_switch",
    )

    def __init__(self, name: str, kind: SegmentKind, sim: Simulator, ageing_ns: int = FDB_AGEING_NS) -> None:
        self.name = name
        self.kind = kind
        self.sim = sim
        self.ports: list[Port] = []
        self.fdb: dict[bytes, tuple[Port, int]] = {}  # switch: MAC -> (port, time last seen)
        self.taps: list[Callable[[bytes, int], Any]] = []
        self.ageing_ns = ageing_ns
        self.frames_in = 0  # frames that reached the segment
        self.frames_out = 0  # frame copies sent towards a port
        self.drops: Counter[str] = Counter()
        self._is_switch = kind is SegmentKind.SWITCH

    def attach(self, nic: Nic, link: Link) -> Port:
        port = Port(nic, self, link, self.sim)
        self.ports.append(port)
        nic.port = port
        nic.mtu = link.mtu
        return port

    def add_tap(self, callback: Callable[[bytes, int], Any]) -> None:
        self.taps.append(callback)

    def _arrive(self, frame: bytes, ingress: Port) -> None:
        self.frames_in += 1
        if self.taps:
            now = self.sim.now
            for tap in self.taps:
                tap(frame, now)
        if len(frame) < ETH_HEADER_LEN:
            self.drops["runt"] += 1
            return
        if self._is_switch:
            sim = self.sim
            now = sim.now
            fdb = self.fdb
            if not frame[6] & 1:  # learn unicast sources only
                fdb[frame[6:12]] = (ingress, now)
            if not frame[0] & 1:
                dst = frame[:6]
                entry = fdb.get(dst)
                if entry is not None:
                    port, seen = entry
                    if now - seen <= self.ageing_ns:
                        if port is ingress:
                            self.drops["filtered-same-port"] += 1
                            return
                        self.frames_out += 1
                        if port.rate is None and not port.loss:  # Port.send_down, inlined
                            heap = port._heap
                            if not port.delay and sim._running and (not heap or heap[0][0] > now):
                                # The NIC's arrival, due now, would be the very next event run()
                                # pops: nothing else is due at or before now (an event due now
                                # would hold a smaller sequence number and go first; none is due
                                # earlier). So run it here: the same calls in the same order at the
                                # same virtual time, without a heap round trip. This is our last act.
                                sim.events_run += 1
                                port._nic_arrive(frame)
                            else:
                                heappush(heap, (now + port.delay, next(port._seq), port._nic_arrive,
                                                (frame,)))
                        elif not port.send_down(frame):
                            self.drops["link-loss"] += 1
                        return
                    del fdb[dst]
        # hub, or a switch flooding broadcast, multicast and unknown unicast
        for port in self.ports:
            if port is not ingress:
                self.frames_out += 1
                if not port.send_down(frame):
                    self.drops["link-loss"] += 1

    def __repr__(self) -> str:
        return f"<Segment {self.name} {self.kind.value} ports={len(self.ports)}>"


class Nic:
    """A network interface: a MAC, optional IPv4/IPv6 addresses, a port on a segment, counters.

    A NIC accepts frames to its MAC, broadcast and multicast, or every frame when `promiscuous`.
    Accepted frames go to the sniffers, then to `handler(nic, frame)` (the node's input).
    `tx_hooks` are called as hook(frame, now) for every frame the NIC puts on its cable.
    """

    __slots__ = (
        "node_name", "name", "mac", "mac_str", "ipv4", "ip", "ipv6", "mtu", "port", "sim", "up",
        "promiscuous", "frames_in", "frames_out", "bytes_in", "bytes_out", "drops",
        "sniffers", "tx_hooks", "handler",
    )

    def __init__(
        self,
        node_name: str,
        name: str,
        mac: bytes,
        sim: Simulator,
        *,
        ipv4: IPv4Interface | None = None,
        ipv6: IPv6Interface | None = None,
    ) -> None:
        self.node_name = node_name
        self.name = name
        self.mac = mac
        self.mac_str = ":".join(f"{b:02x}" for b in mac)
        self.ipv4 = ipv4
        self.ip = ipv4.ip if ipv4 is not None else None  # IPv4Interface.ip builds a new object per call
        self.ipv6 = ipv6
        self.mtu = 1500  # largest IP packet; set from the Link when attached
        self.port: Port | None = None
        self.sim = sim
        self.up = True
        self.promiscuous = False
        self.frames_in = 0
        self.frames_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.drops: Counter[str] = Counter()
        self.sniffers: list[FrameCallback] = []
        self.tx_hooks: list[Callable[[bytes, int], Any]] = []
        self.handler: Callable[[Nic, bytes], Any] | None = None

    def transmit(self, frame: bytes, record: bool = True) -> bool:
        """Put `frame` on the cable, padded to 60 bytes. False if it was refused or lost.

        `record=False` keeps the frame out of `tx_hooks` (a bridge passing a frame on unchanged,
        so an all-segment capture holds it once).
        """
        n = len(frame)
        if n < ETH_MIN_FRAME:
            frame = frame + _PAD[n:]
            n = ETH_MIN_FRAME
        elif n > self.mtu + ETH_HEADER_LEN:
            self.drops["oversize"] += 1
            return False
        port = self.port
        if port is None or not self.up:
            self.drops["link-down"] += 1
            return False
        self.frames_out += 1
        self.bytes_out += n
        if record and self.tx_hooks:
            now = self.sim.now
            for hook in self.tx_hooks:
                hook(frame, now)
        if not port.loss:  # Port.send_up, inlined for the common case
            t = self.sim.now
            rate = port.rate
            if rate is not None:
                free = port.up_free
                if free > t:
                    t = free
                t += n * 8_000_000_000 // rate
                port.up_free = t
            heappush(port._heap, (t + port.delay, next(port._seq), port._seg_arrive, (frame, port)))
            return True
        if port.send_up(frame):
            return True
        self.drops["link-loss"] += 1
        return False

    def _arrive(self, frame: bytes) -> None:
        self.frames_in += 1
        self.bytes_in += len(frame)
        if not self.up:
            self.drops["link-down"] += 1
            return
        # (to us first: the common case, decided by the first test)
        if not (frame.startswith(self.mac) or self.promiscuous or frame[0] & 1):
            self.drops["not-for-us"] += 1
            return
        if self.sniffers:
            now = self.sim.now
            name = self.name
            for sniffer in self.sniffers:
                sniffer(frame, name, now)
        handler = self.handler
        if handler is not None:
            handler(self, frame)

    def __repr__(self) -> str:
        addr = f" {self.ipv4}" if self.ipv4 else ""
        return f"<Nic {self.node_name}.{self.name} {self.mac_str}{addr}>"
