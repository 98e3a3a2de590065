"""The blind adversaries of draft-ietf-tcpm-tcpsecure-01 (sections 1 to 4).

A blind (off-path) attacker never sees the connection it attacks. It knows, or guesses, the
four-tuple, and it knows nothing of the sequence state, so it sweeps: spoofed segments whose
sequence numbers step by the receive window it assumes, from a random start, as fast as its link
lets them out, until its packet budget is spent (tcpsecure 2.1: "2^^32/RCV.WND" segments cover the
whole sequence space). It never reads the victim's state; the experiment that stops it once the
connection is gone is the trial's oracle, not the attacker.

- `SegmentTemplate`: one spoofed Ethernet/IPv4/TCP frame built once with the codecs; each further
  frame patches SEG.SEQ and SEG.ACK and updates the TCP checksum incrementally (RFC 1624, eqn. 3)
  rather than encoding anything again.
- `BlindSweep`: the sweep itself, through the adversary's raw interface, paced by its link: it
  fills its transmit queue `batch` frames at a time and refills when the link has drained them, so
  the virtual time of a run is the serialization time of its frames at the attacker's bit rate.
- `port_candidates`: the order in which an attacker who saw one earlier ephemeral port of the
  client tries ports (tcpsecure 1, RFC 6056): upwards from the port it saw.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address

from threatlab.errors import ParamError
from threatlab.net.adversary import Adversary
from threatlab.net.wire import ETH_P_IP, IPPROTO_TCP, Ethernet, IPv4, pad_frame
from threatlab.tcp.wire import TcpFlags, TcpSegment

__all__ = ["BlindSweep", "SegmentTemplate", "port_candidates", "ACK_HALF"]

_M = 0xFFFFFFFF
# tcpsecure 4.1: RFC 793 accepts SEG.ACK anywhere in SND.UNA-(2^31-1) .. SND.NXT, half of the ACK
# space, so of two guesses 2^31 apart exactly one is acceptable.
ACK_HALF = 0x80000000

_ETH_LEN = 14
_IP_LEN = 20  # the templates carry no IP options
_TCP_OFF = _ETH_LEN + _IP_LEN
_SEQ_OFF = _TCP_OFF + 4  # SEG.SEQ, then SEG.ACK
_CSUM_OFF = _TCP_OFF + 16
# SEG.SEQ, SEG.ACK, data offset + flags, window, checksum: everything between the ports and the
# urgent pointer, packed in one call
_PATCH = struct.Struct("!IIHHH")


def _frame_struct(head: bytes, tail: bytes) -> struct.Struct:
    """The whole frame as one struct: head, the `_PATCH` fields, tail. One `pack` builds a frame
    (one allocation instead of three for `head + _PATCH.pack(...) + tail`)."""
    return struct.Struct(f"!{len(head)}s{_PATCH.format[1:]}{len(tail)}s")


class SegmentTemplate:
    """A spoofed TCP segment in its Ethernet frame, ready to be stamped with sequence numbers.

    Built once through `TcpSegment.encode`, `IPv4.encode` and `Ethernet.encode` (and padded to the
    60-byte minimum as a NIC would), with SEG.SEQ = SEG.ACK = 0. `frame(seq, ack)` returns the same
    frame with those two fields replaced and the checksum updated by RFC 1624 eqn. 3,
    HC' = ~(~HC + ~m + m'): the old words m of the template are zero, so ~HC + ~m is one constant
    and each frame costs four additions, two folds and one `struct.pack`.
    """

    __slots__ = ("head", "tail", "offflags", "window", "hc", "base", "length", "src_ip", "dst_ip",
                 "src_port", "dst_port", "flags", "payload", "packer")

    def __init__(self, src_mac: bytes, dst_mac: bytes, src_ip: IPv4Address, dst_ip: IPv4Address,
                 src_port: int, dst_port: int, flags: TcpFlags, *, window: int = 0, payload: bytes = b"",
                 ttl: int = 64, ident: int = 0) -> None:
        self.src_ip, self.dst_ip = src_ip, dst_ip
        self.src_port, self.dst_port = src_port, dst_port
        self.flags = flags
        self.payload = payload
        tcp = TcpSegment(src_port, dst_port, 0, 0, flags, window, 0, (), payload).encode(src_ip, dst_ip)
        ip = IPv4(src_ip, dst_ip, IPPROTO_TCP, tcp, ttl, 0, ident, True).encode()
        frame = pad_frame(Ethernet(dst_mac, src_mac, ETH_P_IP, ip).encode())
        self.head = frame[:_SEQ_OFF]  # Ethernet, IPv4, the two ports
        self.tail = frame[_CSUM_OFF + 2:]  # urgent pointer, payload, link padding
        self.offflags, self.window, hc = struct.unpack_from("!HHH", frame, _SEQ_OFF + 8)
        self._set_checksum(hc)
        self.length = len(frame)
        self.packer = _frame_struct(self.head, self.tail)  # the same for every source port

    def _set_checksum(self, hc: int) -> None:
        self.hc = hc  # the template's own checksum (SEG.SEQ = SEG.ACK = 0)
        # ~HC + ~m over the four 16-bit words of SEG.SEQ and SEG.ACK (all zero in the template)
        self.base = (hc ^ 0xFFFF) + 4 * 0xFFFF

    def with_src_port(self, port: int) -> SegmentTemplate:
        """The same template from another client port: the port field patched and the checksum
        updated by RFC 1624 eqn. 3 (a port-guessing attacker's next guess, without encoding)."""
        if not 0 <= port <= 0xFFFF:
            raise ParamError(f"port {port} is not 0..65535")
        t = object.__new__(SegmentTemplate)
        for name in self.__slots__:
            setattr(t, name, getattr(self, name))
        t.src_port = port
        t.head = self.head[:_TCP_OFF] + port.to_bytes(2, "big") + self.head[_TCP_OFF + 2:]
        s = (self.hc ^ 0xFFFF) + (self.src_port ^ 0xFFFF) + port
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        t._set_checksum(s ^ 0xFFFF)
        return t

    def checksum(self, seq: int, ack: int) -> int:
        """The TCP checksum of the segment with these numbers (RFC 1624 eqn. 3)."""
        s = self.base + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        return s ^ 0xFFFF

    def frame(self, seq: int, ack: int = 0) -> bytes:
        return self.packer.pack(self.head, seq, ack, self.offflags, self.window, self.checksum(seq, ack),
                                self.tail)

    def segment(self, seq: int, ack: int = 0) -> TcpSegment:
        """The segment `frame(seq, ack)` carries, as the codec sees it (for tests and reports)."""
        return TcpSegment(self.src_port, self.dst_port, seq, ack, self.flags,
                          self.window, 0, (), self.payload)


def port_candidates(observed: int, low: int, high: int) -> list[int]:
    """Every port of the ephemeral range low..high in the order a port-guessing attacker tries
    them: upwards from the port after `observed`, wrapping round, `observed` itself last.

    Against the traditional sequential allocator (RFC 6056 2.2) the client's next connections get
    exactly these ports in this order, so the guess is right within a few tries; against random
    allocation (RFC 6056 3.3.1) every position is as likely as any other.
    """
    if not 1 <= low <= high <= 65535:
        raise ParamError(f"ephemeral port range {low}..{high} must satisfy 1 <= low <= high <= 65535")
    n = high - low + 1
    first = (observed - low + 1) % n if low <= observed <= high else 0
    return [low + (first + i) % n for i in range(n)]


class BlindSweep:
    """Spoofed segments stepping through the sequence space, port by candidate port.

    For each client port in `ports` (in the order the attacker tries them) it sends `per_port`
    frames made from `template_for(port)`, whose SEG.SEQ runs start, start + step,
    start + 2 step, ... (mod 2^32) from a random start, then moves on to the next port, until
    `budget` frames are out or `stop()` is called. With `ack_pairs` each sequence guess goes out
    twice, with a random SEG.ACK and that value + 2^31 (tcpsecure 4.1's two ACK guesses per
    sequence guess), so `per_port` counts frames, two per guess; otherwise SEG.ACK is `ack`.

    Frames leave through the adversary's raw interface (`Nic.transmit`, what
    `Adversary.send_frame` calls) `batch` at a time; the next batch is queued when the link has
    serialized the previous one, so at most `batch` frames are ever in flight, and at most
    `batch - 1` arrive after a `stop()`.
    """

    def __init__(self, adversary: Adversary, ports: Sequence[int],
                 template_for: Callable[[int], SegmentTemplate], *, step: int, per_port: int, budget: int,
                 rng: random.Random, ack_pairs: bool = False, ack: int = 0, start: int | None = None,
                 ifname: str = "eth0", batch: int = 64) -> None:
        if not ports:
            raise ParamError("a sweep needs at least one client port to try")
        if not 1 <= step <= _M:
            raise ParamError(f"sequence step {step} must be in 1..2^32-1")
        if per_port < 1 or budget < 0 or batch < 1:
            raise ParamError("per_port and batch must be >= 1 and budget >= 0")
        if ack_pairs and per_port % 2:
            raise ParamError("with ACK pairs, per_port counts frames and must be even")
        node = adversary.node
        self.sim = node.sim
        self.nic = node.interfaces[ifname]
        self.ports = list(ports)
        self.template_for = template_for
        self._template = template_for(self.ports[0])
        self.step = step
        self.per_port = per_port
        self.budget = budget
        self.rng = rng
        self.ack_pairs = ack_pairs
        self.ack = ack & _M
        # the attacker is blind: it starts each port's sweep at a random number (unless told one)
        self.start_seq = start
        self.starts: list[int] = []  # the first SEG.SEQ of each port's sweep, as drawn
        self.batch = batch
        self.sent = 0  # frames handed to the link
        self.stopped = False
        self.finished = False  # budget spent, or stopped
        self._port = 0  # index into `ports`
        self._i = 0  # frames sent to that port
        self._start = 0
        self._pair_ack = 0

    @property
    def frame_length(self) -> int:
        """Bytes per frame on the wire (padded to the Ethernet minimum)."""
        return self._template.length

    def start(self, delay_ns: int = 0) -> None:
        self.sim.post(delay_ns, self._pump)

    def stop(self) -> None:
        """No further batches (frames already on the link still arrive)."""
        self.stopped = True

    def _pump(self) -> None:
        sim = self.sim
        left = self.budget - self.sent
        nports = len(self.ports)
        if self.stopped or left <= 0 or self._port >= nports:
            self.finished = True
            return
        n = min(self.batch, left)
        sent = 0
        tx = self.nic.transmit
        step = self.step
        per = self.per_port
        while sent < n and self._port < nports:
            i = self._i
            if i == 0:
                if self._port:  # the first port's template was made up front
                    self._template = self.template_for(self.ports[self._port])
                self._start = self.rng.getrandbits(32) if self.start_seq is None else self.start_seq
                self.starts.append(self._start)
            t = self._template
            head, tail, base, offflags, window = t.head, t.tail, t.base, t.offflags, t.window
            pack = t.packer.pack
            start = self._start
            k = min(n - sent, per - i)
            if self.ack_pairs:
                rand = self.rng.getrandbits
                ack = self._pair_ack  # a pair may straddle two batches
                for j in range(i, i + k):
                    if j & 1:
                        ack ^= ACK_HALF  # the second guess: the other half of the ACK space
                    else:
                        ack = rand(32)
                    seq = (start + (j >> 1) * step) & _M
                    s = base + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
                    s = (s & 0xFFFF) + (s >> 16)
                    s = (s & 0xFFFF) + (s >> 16)
                    tx(pack(head, seq, ack, offflags, window, s ^ 0xFFFF, tail))
                self._pair_ack = ack
            else:
                ack = self.ack
                # SegmentTemplate.checksum with its two folds done by one modulo: the word sum
                # base + the halves of ACK and SEQ is congruent (mod 0xffff) to c + seq, where
                # c = base + the halves of ACK; it is positive (base >= 4 * 0xffff) and below
                # 2^20, where the two end-around-carry folds give (sum - 1) % 0xffff + 1, so the
                # checksum is 0xffff minus that
                c = base + (ack >> 16) + (ack & 0xFFFF) - 1
                seq = (start + i * step) & _M
                for _ in range(k):
                    tx(pack(head, seq, ack, offflags, window, 0xFFFE - (c + seq) % 0xFFFF, tail))
                    seq = (seq + step) & _M
            sent += k
            i += k
            if i >= per:
                self._port += 1
                i = 0
            self._i = i
        self.sent += sent
        # refill when the link has serialized this batch (at once if it has no rate)
        port = self.nic.port
        free = port.up_free if port is not None and port.rate is not None else sim.now
        sim.post_at(max(free, sim.now), self._pump, ())
