"""A sans-IO TCP endpoint after RFC 9293, with the defenses of draft-ietf-tcpm-tcpsecure-01.

Like aioquic's connection: every entry point takes `now` (integer nanoseconds of whatever clock the
driver runs), segments to send are collected with `segments_to_send(now)`, the next deadline is
`next_timer()` and `handle_timer(now)` acts on it, and what the user needs to know comes out of
`events()`. No sockets, no clock, no global RNG: the ISS comes from the `random.Random` passed in.

Segment arrival follows RFC 9293 3.10.7 step by step (sequence number, RST, SYN, ACK, text, FIN);
the defense switches of `TcpConfig` change exactly the steps the draft names:

- `rst_exact` (tcpsecure 2.2): an in-window RST resets only if SEG.SEQ == RCV.NXT, otherwise it
  gets a challenge ACK; RFC 793 resets on any in-window RST.
- `syn_challenge` (tcpsecure 3.2): a SYN in a synchronized state gets a challenge ACK whatever its
  sequence number; RFC 793 resets the connection (and sends RST) if the SYN is in the window.
- `ack_check` (tcpsecure 4.2): SEG.ACK must lie in SND.UNA - MAX.SND.WND .. SND.NXT, otherwise a
  challenge ACK; RFC 793 accepts data whose ACK is anywhere up to 2**31 behind SND.UNA ("old ACKs
  can be ignored"), which is why a blind injector needs only two ACK guesses per sequence guess.
- `challenge_ack_limit` (tcpsecure 2.2): throttles every challenge ACK.
- `tcp_md5_key` (RFC 2385): every segment is signed; unsigned or wrongly signed ones are dropped
  before anything else looks at them.

Every segment that has no effect beyond, at most, an ACK or RST in reply is counted in
`counters.segments_dropped[reason]` and reported as `SegmentDropped(reason)`; the reasons are the
`DROP_*` constants below and f"{defense}: challenge ACK sent|suppressed".

Not implemented (known gaps): congestion control (the sender is limited by the peer's window only;
lost data is repaired by RTO and by one retransmission per partial ACK after it), SACK and
timestamps in the endpoint (the codec has them), delayed ACKs (every data segment is ACKed at once),
the urgent pointer (urgent data is ordinary data), data carried on a SYN (not acknowledged, so the
peer sends it again), IP-layer ICMP feedback.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, NamedTuple

from threatlab.errors import DecodeError, ParamError
from threatlab.net.wire import internet_checksum
from threatlab.tcp._state import SYNCHRONIZED, State, TcpStateError, Trigger, check_send, transition
from threatlab.tcp.challenge import ChallengeAckLimiter, RandomizedChallengeAckLimiter
from threatlab.tcp.config import TcpConfig
from threatlab.tcp.events import (
    ChallengeAckSent,
    ConnectionClosed,
    ConnectionEstablished,
    ConnectionReset,
    ConnectionTimedOut,
    DataReceived,
    Event,
    FinReceived,
    SegmentDropped,
)
from threatlab.tcp.reassembly import ReassemblyQueue
from threatlab.tcp.rto import RtoEstimator
from threatlab.tcp.wire import (
    MSS,
    IPAddress,
    Nop,
    TcpFlags,
    TcpSegment,
    WindowScale,
    new_segment,
    pseudo_sum,
    sign_md5,
    verify_md5,
)

__all__ = [
    "DROP_ACK_UNSENT",
    "DROP_ADDRESS",
    "DROP_BAD_CHECKSUM",
    "DROP_CLOSED",
    "DROP_MALFORMED",
    "DROP_MD5",
    "DROP_NO_ACK",
    "DROP_OUT_OF_WINDOW",
    "DROP_PORT",
    "Address",
    "OutgoingSegment",
    "TcpCounters",
    "TcpEndpoint",
]

Address = tuple[IPAddress, int]

# Drop reasons: the strings tests and catalogue metrics key on.
DROP_OUT_OF_WINDOW = "out of window"  # RFC 793 acceptability test failed (ACK sent unless RST)
DROP_MD5 = "tcp-md5: bad or missing signature"
DROP_MALFORMED = "malformed"
DROP_BAD_CHECKSUM = "bad checksum"
DROP_CLOSED = "connection closed"  # no connection: RST sent unless the segment was a RST
DROP_NO_ACK = "no ACK bit"
DROP_ACK_UNSENT = "ack of unsent data"  # RFC 793: SEG.ACK > SND.NXT: ACK sent, segment dropped
DROP_PORT = "port mismatch"
DROP_ADDRESS = "address mismatch"
DROP_LISTEN_RST = "listen: rst"
DROP_LISTEN_ACK = "listen: ack"  # RST sent
DROP_LISTEN_NO_SYN = "listen: no syn"
DROP_LISTEN_NO_SOURCE = "listen: source address unknown"
DROP_SYN_SENT_BAD_ACK = "syn-sent: unacceptable ACK"  # RST sent unless RST
DROP_SYN_SENT_RST_NO_ACK = "syn-sent: rst without ack"
DROP_SYN_SENT_NO_SYN = "syn-sent: neither syn nor rst"
DROP_SYN_RCVD_BAD_ACK = "syn-received: unacceptable ACK"  # RST sent
DROP_SYN_RCVD_SYN = "syn-received: syn in window, back to listen"
DROP_TEXT_AFTER_FIN = "data after fin"

_M = 0xFFFFFFFF
_HALF = 0x80000000

# Flag tests use plain ints: `IntFlag & IntFlag` runs Python code (about 1 us per test).
_FIN = 0x01
_SYN = 0x02
_RST = 0x04
_ACK = 0x10
_F_ACK = TcpFlags.ACK
_F_ACK_PSH = TcpFlags.ACK | TcpFlags.PSH
_F_ACK_FIN = TcpFlags.ACK | TcpFlags.FIN
_F_ACK_PSH_FIN = TcpFlags.ACK | TcpFlags.PSH | TcpFlags.FIN
_F_SYN_ACK = TcpFlags.SYN | TcpFlags.ACK
_F_RST_ACK = TcpFlags.RST | TcpFlags.ACK

# ports, seq, data offset, flags: enough to judge a bare RST before decoding anything else
_PEEK = struct.Struct("!HHI4xBB")
_from_bytes = int.from_bytes  # bound once: `int.from_bytes(...)` binds the classmethod per call
_IP_TYPES = (IPv4Address, IPv6Address)
_EV_OUT_OF_WINDOW = SegmentDropped(DROP_OUT_OF_WINDOW)  # events are values: one serves every endpoint

_S = State
_CLOSED = State.CLOSED
_DATA_STATES = frozenset({_S.ESTABLISHED, _S.CLOSE_WAIT, _S.FIN_WAIT_1, _S.LAST_ACK})
_TEXT_STATES = frozenset({_S.ESTABLISHED, _S.FIN_WAIT_1, _S.FIN_WAIT_2})
# RFC 5961 3.2 validates RSTs "in all states except SYN-SENT"; tcpsecure 3.2 and 4.2 speak of the
# synchronized states only.
_RST_CHECK_STATES = SYNCHRONIZED | {_S.SYN_RECEIVED}


def _lt(a: int, b: int) -> bool:
    """a < b in sequence-number arithmetic (RFC 9293 3.4)."""
    return ((a - b) & _M) >= _HALF


def _gt(a: int, b: int) -> bool:
    return ((b - a) & _M) >= _HALF


class OutgoingSegment(NamedTuple):
    """A segment to send and its IP addresses."""

    segment: TcpSegment
    src_ip: IPAddress
    dst_ip: IPAddress

    def encode(self) -> bytes:
        return self.segment.encode(self.src_ip, self.dst_ip)


@dataclass(slots=True)
class TcpCounters:
    segments_received: int = 0
    segments_sent: int = 0
    bytes_delivered: int = 0  # in-order payload bytes handed to the application
    retransmissions: int = 0
    challenge_acks_sent: int = 0
    challenge_acks_suppressed: int = 0
    resets_accepted: int = 0  # RSTs that tore the connection down (or sent SYN-RECEIVED back to LISTEN)
    syn_resets: int = 0  # RFC 793: in-window SYNs that made us reset the connection
    segments_dropped: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.segments_dropped.values())


def _as_ip(x: Any) -> IPAddress:
    return x if isinstance(x, (IPv4Address, IPv6Address)) else ip_address(x)


class TcpEndpoint:
    """One end of one TCP connection (a TCB, RFC 9293 3.3.1)."""

    def __init__(
        self,
        config: TcpConfig,
        rng: random.Random,
        local: tuple[Any, int],
        remote: tuple[Any, int] | None = None,
        challenge_ack_limiter: ChallengeAckLimiter | None = None,
    ) -> None:
        self.config = config
        self.rng = rng
        self.local_ip: IPAddress = _as_ip(local[0])
        self.local_port: int = local[1]
        self.remote_ip: IPAddress | None = None
        self.remote_port: int | None = None
        self._listen_remote = remote
        self._set_remote(remote)
        if challenge_ack_limiter is None and config.challenge_ack_limit is not None:
            if config.challenge_ack_scope == "host":
                raise ParamError("challenge_ack_scope 'host' needs a shared ChallengeAckLimiter passed in")
            if config.challenge_ack_budget == "random":
                # Linux 4.7 (CVE-2016-5696), here per connection: drawn from this endpoint's rng
                challenge_ack_limiter = RandomizedChallengeAckLimiter(*config.challenge_ack_limit, rng)
            else:
                challenge_ack_limiter = ChallengeAckLimiter(*config.challenge_ack_limit)
        self.challenge_ack_limiter = challenge_ack_limiter

        self.state = State.CLOSED
        self.passive = False
        # send sequence variables (RFC 9293 3.3.1)
        self.iss = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        # tcpsecure 4.2 calls MAX.SND.WND "the largest window that the local receiver has ever
        # advertised to it's peer"; RFC 5961 5.2 corrected it to the largest window the local sender
        # has ever received from its peer, which is what bounds legitimate old ACKs. We use that.
        self.max_snd_wnd = 0
        self.snd_mss = 536  # set from the peer's SYN
        self.snd_wscale = 0  # shift applied to windows the peer advertises (RFC 7323)
        # receive sequence variables
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_wnd = config.rcv_buf
        self.rcv_wscale = 0  # shift applied to windows we advertise
        self.counters = TcpCounters()

        self._ws_ok = False
        self._snd_buf = bytearray()  # unacknowledged and unsent data, from _snd_buf_seq on
        self._snd_buf_seq = 0
        self._fin_queued = False  # close() was called: FIN goes after the queued data
        self._close_pending = False  # close() in SYN-RECEIVED: acted on once established
        self._fin_seq: int | None = None  # sequence number of our FIN once sent
        self._rcv_queue = ReassemblyQueue()
        self._rcv_off = 0  # RCV.NXT as an unbounded offset from IRS+1 (the queue's numbering)
        self._rcv_fin_off: int | None = None  # the peer's FIN, seen beyond a gap
        self._rcv_unread = 0
        self._rto = RtoEstimator(
            config.rto_initial_ns, config.rto_min_ns, config.rto_max_ns, config.clock_granularity_ns
        )
        self._rtx_deadline: int | None = None
        self._retries = 0
        self._persist = False
        self._rtt_seq: int | None = None
        self._rtt_start = 0
        self._recover: int | None = None
        self._syn_timed_out = False
        self._tw_deadline: int | None = None
        self._out: list[OutgoingSegment] = []
        self._events: list[Event] = []
        self._drop_events: dict[str, SegmentDropped] = {}
        self._md5_key = config.tcp_md5_key

    # --- addresses ----------------------------------------------------------------------------------

    def _set_remote(self, remote: tuple[Any, int] | None) -> None:
        if remote is None:
            self.remote_ip = None
            self.remote_port = None
            self._psum = 0
        else:
            self.remote_ip = _as_ip(remote[0])
            self.remote_port = remote[1]
            if self.remote_ip.version != self.local_ip.version:
                raise ParamError(
                    f"tcp: remote {self.remote_ip} and local {self.local_ip} differ in IP version"
                )
            self._psum = pseudo_sum(self.remote_ip, self.local_ip)

    @property
    def local(self) -> Address:
        return (self.local_ip, self.local_port)

    @property
    def remote(self) -> Address | None:
        if self.remote_ip is None:
            return None
        return (self.remote_ip, self.remote_port)  # type: ignore[return-value]

    @property
    def rto(self) -> int:
        """The current retransmission timeout in ns (RFC 6298)."""
        return self._rto.rto

    @property
    def srtt(self) -> int | None:
        return self._rto.srtt

    @property
    def reassembly_bytes(self) -> int:
        """Out-of-order bytes held for later (injected ones included)."""
        return self._rcv_queue.bytes_held

    # --- user calls (RFC 9293 3.10.1 - 3.10.5) --------------------------------------------------------

    def connect(self, now: int) -> None:
        """Active OPEN: send SYN."""
        if self.remote_ip is None:
            raise TcpStateError("tcp: connect() needs a remote address")
        self.state = transition(self.state, Trigger.ACTIVE_OPEN)
        self.passive = False
        self._choose_iss()
        self._send_syn(now)

    def listen(self) -> None:
        """Passive OPEN: wait for a SYN (from the remote given to the constructor, if any)."""
        self.state = transition(self.state, Trigger.PASSIVE_OPEN)
        self.passive = True

    def send(self, data: bytes, now: int) -> None:
        """Queue `data`; it goes out as the peer's window allows (after the handshake if needed)."""
        check_send(self.state)
        if self._close_pending:
            raise TcpStateError("tcp: error: connection closing")
        self._snd_buf += data
        self._output(now)

    def close(self, now: int) -> None:
        """CLOSE: our direction ends with a FIN after the queued data."""
        st = self.state
        if st is _S.SYN_RECEIVED:
            # RFC 9293 3.10.4: "queue for processing after entering ESTABLISHED state"
            self._close_pending = True
            return
        new = transition(st, Trigger.CLOSE)
        if st is _S.LISTEN or st is _S.SYN_SENT:
            self._enter_closed()
            self._events.append(ConnectionClosed("closed before established"))
            return
        self.state = new
        if st is _S.ESTABLISHED or st is _S.CLOSE_WAIT:
            self._fin_queued = True
            self._output(now)

    def abort(self, now: int) -> None:
        """ABORT: send RST if the peer may hold state, and close at once."""
        st = self.state
        transition(st, Trigger.RESET)
        if st in (_S.SYN_RECEIVED, _S.ESTABLISHED, _S.FIN_WAIT_1, _S.FIN_WAIT_2, _S.CLOSE_WAIT):
            self._emit(self.snd_nxt, TcpFlags.RST, ack=0)
        self._enter_closed()
        self._events.append(ConnectionClosed("aborted"))

    def consume(self, n: int, now: int) -> None:
        """The application has read `n` delivered bytes (only with `auto_consume=False`): the
        window reopens, announced when it grew by min(rcv_buf / 2, MSS) (RFC 9293 3.8.6.2.2)."""
        if self.config.auto_consume:
            return
        n = min(n, self._rcv_unread)
        self._rcv_unread -= n
        free = self._max_rcv_wnd() - self._rcv_unread
        if free - self.rcv_wnd >= min(self.config.rcv_buf // 2, self.config.mss):
            self.rcv_wnd = free
            if self.state in SYNCHRONIZED:
                self._send_ack()

    # --- driver interface -----------------------------------------------------------------------------

    def segments_to_send(self, now: int) -> list[OutgoingSegment]:
        out = self._out
        self._out = []
        return out

    def events(self) -> list[Event]:
        ev = self._events
        self._events = []
        return ev

    def next_timer(self) -> int | None:
        a = self._rtx_deadline
        b = self._tw_deadline
        if a is None:
            return b
        if b is None or a < b:
            return a
        return b

    def handle_timer(self, now: int) -> None:
        if self._tw_deadline is not None and now >= self._tw_deadline:
            self.state = transition(self.state, Trigger.TIMEOUT_2MSL)
            self._enter_closed()
            self._events.append(ConnectionClosed("closed"))
            return
        if self._rtx_deadline is not None and now >= self._rtx_deadline:
            self._on_rtx_timeout(now)

    # --- segment arrival ------------------------------------------------------------------------------

    def receive(self, segment: TcpSegment | bytes, now: int, src_ip: Any = None) -> None:
        """Process one arriving segment: a decoded `TcpSegment`, or the segment's wire bytes (then
        the checksum is verified over the pseudo-header of `src_ip` (default: the remote address)
        -> the local address). `src_ip` is needed in LISTEN unless a remote was given.
        Never raises for bad input: malformed segments are dropped and counted."""
        self.counters.segments_received += 1
        # (the exact-type tests first: they are what a stack passes, and cost less than isinstance)
        if type(src_ip) is not IPv4Address and src_ip is not None and not isinstance(src_ip, _IP_TYPES):
            src_ip = ip_address(src_ip)
        raw = None
        if type(segment) is bytes or not isinstance(segment, TcpSegment):
            raw = segment
            if self._fast_path(raw, now, src_ip):
                return
            try:
                segment = TcpSegment.decode(raw, verify=False)
            except DecodeError:
                self._drop(DROP_MALFORMED)
                return
            ip = src_ip if src_ip is not None else self.remote_ip
            if ip is not None and self.config.verify_checksum:
                # the connection's pseudo-header sum is kept; only strangers' is computed
                if ip is self.remote_ip or ip == self.remote_ip:
                    psum = self._psum
                else:
                    try:
                        psum = pseudo_sum(ip, self.local_ip)
                    except ValueError:
                        self._drop(DROP_ADDRESS)
                        return
                if internet_checksum(raw, psum + len(raw)) != 0:
                    self._drop(DROP_BAD_CHECKSUM)
                    return
        self._process(segment, now, src_ip, raw)

    def _fast_path(self, raw: Any, now: int, src_ip: Any) -> bool:
        """Judge a bare RST (no options, no data, no SYN/FIN) from its header fields alone: the
        flood case of tcpsecure 2.1. Returns True when the segment has been handled."""
        if len(raw) != 20 or self._md5_key is not None:
            return False
        sp, dp, seq, off, fl = _PEEK.unpack_from(raw)
        # no options, RST without SYN/FIN, our ports
        if off != 0x50 or fl & 0x07 != 0x04 or sp != self.remote_port or dp != self.local_port:
            return False
        if src_ip is not None and src_ip is not self.remote_ip and src_ip != self.remote_ip:
            return False
        if self.config.verify_checksum:
            # internet_checksum(raw, psum + 20) == 0, inlined: the sum over the pseudo-header and
            # the 20 bytes folds to 0xffff (threatlab.net.checksum.sum_ok)
            total = _from_bytes(raw, "big") + self._psum + 20
            if total % 0xFFFF or not total:
                return False  # the slow path names the drop
        st = self.state
        if st is _CLOSED:
            self._drop(DROP_CLOSED)  # RFC 9293 3.10.7.1: an incoming RST is discarded
            return True
        if st not in _RST_CHECK_STATES:
            return False
        off = (seq - self.rcv_nxt) & _M
        wnd = self.rcv_wnd
        if (off != 0) if wnd == 0 else (off >= wnd):
            # RFC 793: an out-of-window RST is dropped silently. This is the drop of every
            # segment but one of a blind sweep: self._drop(DROP_OUT_OF_WINDOW), inlined.
            dropped = self.counters.segments_dropped
            dropped[DROP_OUT_OF_WINDOW] = dropped.get(DROP_OUT_OF_WINDOW, 0) + 1
            self._events.append(_EV_OUT_OF_WINDOW)
            return True
        if off != 0 and self.config.rst_exact:
            self._challenge_ack(now, "rst-exact")  # tcpsecure 2.2 C)
            return True
        return False

    def _process(self, seg: TcpSegment, now: int, src_ip: IPAddress | None, raw: Any) -> None:
        st = self.state
        if seg.dst_port != self.local_port:
            self._drop(DROP_PORT)
            return
        if self.remote_port is not None and seg.src_port != self.remote_port:
            self._drop(DROP_PORT)
            return
        if (
            src_ip is not None
            and self.remote_ip is not None
            and src_ip is not self.remote_ip
            and src_ip != self.remote_ip
        ):
            self._drop(DROP_ADDRESS)
            return
        ip = src_ip if src_ip is not None else self.remote_ip
        if ip is not None and self.remote_ip is None and ip.version != self.local_ip.version:
            self._drop(DROP_ADDRESS)  # an IPv6 source for an IPv4 listener, or the reverse
            return
        # RFC 2385 2.0: validated before anything else; a failure "MUST NOT have any effect on TCP
        # state"
        if self._md5_key is not None and (
            ip is None or not verify_md5(seg, ip, self.local_ip, self._md5_key, raw)
        ):
            self._drop(DROP_MD5)
            return
        if st is _S.CLOSED:
            self._reply_reset(seg, ip)
            self._drop(DROP_CLOSED)
        elif st is _S.LISTEN:
            self._on_listen(seg, now, ip)
        elif st is _S.SYN_SENT:
            self._on_syn_sent(seg, now)
        else:
            self._on_segment(seg, now)
        if (self._snd_buf or self._fin_queued) and self.state in _DATA_STATES:
            self._output(now)

    def _on_listen(self, seg: TcpSegment, now: int, ip: IPAddress | None) -> None:
        # RFC 9293 3.10.7.2
        f = int(seg.flags)
        if f & _RST:
            self._drop(DROP_LISTEN_RST)
            return
        if f & _ACK:
            self._reply_reset(seg, ip)
            self._drop(DROP_LISTEN_ACK)
            return
        if not f & _SYN:
            self._drop(DROP_LISTEN_NO_SYN)
            return
        if ip is None:
            self._drop(DROP_LISTEN_NO_SOURCE)
            return
        self._set_remote((ip, seg.src_port))
        self.state = transition(self.state, Trigger.RCV_SYN)
        self._take_syn(seg)
        self._choose_iss()
        self._send_syn(now)

    def _on_syn_sent(self, seg: TcpSegment, now: int) -> None:
        # RFC 9293 3.10.7.3
        f = int(seg.flags)
        ack_ok = False
        if f & _ACK:
            ack = seg.ack
            if not _gt(ack, self.iss) or _gt(ack, self.snd_nxt):
                if not f & _RST:
                    self._reply_reset(seg, self.remote_ip)
                self._drop(DROP_SYN_SENT_BAD_ACK)
                return
            ack_ok = True
        if f & _RST:
            if ack_ok:
                self._reset("connection refused")
            else:
                self._drop(DROP_SYN_SENT_RST_NO_ACK)
            return
        if not f & _SYN:
            self._drop(DROP_SYN_SENT_NO_SYN)
            return
        self._take_syn(seg)
        if ack_ok:
            self.state = transition(self.state, Trigger.RCV_SYN_ACK)
            self._on_new_ack(seg.ack, now)
            self._established(now)
            self._send_ack()
            if seg.payload or f & _FIN:
                self._process_text(seg, now)
        else:
            # simultaneous open (RFC 9293 3.5 figure 8)
            self.state = transition(self.state, Trigger.RCV_SYN)
            self._send_syn(now)

    def _on_segment(self, seg: TcpSegment, now: int) -> None:
        """SYN-RECEIVED and the synchronized states (RFC 9293 3.10.7.4)."""
        cfg = self.config
        st = self.state
        f = int(seg.flags)
        seq = seg.seq
        sync = st in SYNCHRONIZED

        # tcpsecure 3.2: "If the SYN bit is set, irrespective of the sequence number, send an ACK"
        if f & _SYN and sync and cfg.syn_challenge:
            self._challenge_ack(now, "syn-challenge")
            return

        # first: the acceptability test of RFC 793 p. 69
        seg_len = len(seg.payload) + (f & 1) + ((f >> 1) & 1)
        rcv_nxt = self.rcv_nxt
        wnd = self.rcv_wnd
        off = (seq - rcv_nxt) & _M
        if seg_len == 0:
            ok = off == 0 if wnd == 0 else off < wnd
        else:
            ok = wnd > 0 and (off < wnd or ((seq + seg_len - 1 - rcv_nxt) & _M) < wnd)
        if not ok:
            if not f & _RST:
                self._send_ack()
                if st is _S.TIME_WAIT and f & _FIN and (seq + seg_len) & _M == rcv_nxt:
                    # a retransmitted FIN: RFC 9293 says restart the 2*MSL timer on it; the
                    # acceptability test of the same RFC would have hidden it
                    self._tw_deadline = now + 2 * cfg.msl_ns
            self._drop(DROP_OUT_OF_WINDOW)
            return

        # second: the RST bit
        if f & _RST:
            if cfg.rst_exact and off != 0:
                self._challenge_ack(now, "rst-exact")  # tcpsecure 2.2 C)
                return
            if st is _S.SYN_RECEIVED and self.passive:
                self.counters.resets_accepted += 1
                self._return_to_listen()
                return
            self._reset("rst received")
            return

        # fourth: the SYN bit (RFC 793: an in-window SYN in a synchronized state is an error)
        if f & _SYN:
            if st is _S.SYN_RECEIVED and self.passive:
                self._return_to_listen()
                self._drop(DROP_SYN_RCVD_SYN)
                return
            self._reply_reset(seg, self.remote_ip)
            self.counters.syn_resets += 1
            self._reset("syn in window", count_rst=False)
            return

        # fifth: the ACK field
        if not f & _ACK:
            self._drop(DROP_NO_ACK)
            return
        if not self._process_ack(seg, now):
            return

        # seventh and eighth: text and FIN
        if seg.payload or f & _FIN:
            st = self.state
            if st in _TEXT_STATES:
                self._process_text(seg, now)
            elif st is not _S.CLOSED:
                # CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: new text or a new FIN after the peer's
                # FIN "should not occur" (RFC 9293); ignore it
                self._drop(DROP_TEXT_AFTER_FIN)

    def _process_ack(self, seg: TcpSegment, now: int) -> bool:
        """RFC 9293 3.10.7.4 fifth; False when the segment must not be processed further."""
        ack = seg.ack
        st = self.state
        if st is _S.SYN_RECEIVED:
            if _gt(ack, self.snd_una) and not _gt(ack, self.snd_nxt):
                self.state = transition(st, Trigger.RCV_ACK_OF_SYN)
                self._on_new_ack(ack, now)
                self._update_window(seg, force=True)
                self._established(now)
                st = self.state
                if st is not _S.ESTABLISHED:
                    return True
            else:
                self._reply_reset(seg, self.remote_ip)
                self._drop(DROP_SYN_RCVD_BAD_ACK)
                return False
        elif self.config.ack_check:
            # tcpsecure 4.2: (SND.UNA - MAX.SND.WND) <= SEG.ACK <= SND.NXT, else challenge ACK
            lo = (self.snd_una - self.max_snd_wnd) & _M
            if ((ack - lo) & _M) > ((self.snd_nxt - lo) & _M):
                self._challenge_ack(now, "ack-check")
                return False
        if _gt(ack, self.snd_nxt):
            self._send_ack()
            self._drop(DROP_ACK_UNSENT)
            return False
        if _gt(ack, self.snd_una):
            self._on_new_ack(ack, now)
        # RFC 793: "If the ACK is a duplicate (SEG.ACK < SND.UNA), it can be ignored": the segment's
        # data is still processed below. That is tcpsecure 4.1's injection window.
        if not _lt(ack, self.snd_una):
            self._update_window(seg)

        if st is _S.FIN_WAIT_1 and self._fin_acked():
            self.state = transition(st, Trigger.RCV_ACK_OF_FIN)
        elif st is _S.CLOSING:
            if self._fin_acked():
                self.state = transition(st, Trigger.RCV_ACK_OF_FIN)
                self._start_time_wait(now)
            return False  # "otherwise ignore the segment"
        elif st is _S.LAST_ACK and self._fin_acked():
            self.state = transition(st, Trigger.RCV_ACK_OF_FIN)
            self._enter_closed()
            self._events.append(ConnectionClosed("closed"))
            return False
        return True

    def _update_window(self, seg: TcpSegment, force: bool = False) -> None:
        seq, ack = seg.seq, seg.ack
        if force or _lt(self.snd_wl1, seq) or (self.snd_wl1 == seq and not _lt(ack, self.snd_wl2)):
            self.snd_wnd = seg.window << self.snd_wscale
            self.snd_wl1 = seq
            self.snd_wl2 = ack
            self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)

    def _process_text(self, seg: TcpSegment, now: int) -> None:
        """RFC 9293 3.10.7.4 seventh and eighth: deliver in-order data, hold the rest, note the FIN."""
        payload = seg.payload
        # signed distance of SEG.SEQ from RCV.NXT (acceptable segments are within the window)
        d = ((seg.seq - self.rcv_nxt + _HALF) & _M) - _HALF
        if int(seg.flags) & _SYN:
            d += 1  # the SYN's sequence number comes before the data
        wnd = self.rcv_wnd
        base = self._rcv_off  # RCV.NXT before this segment, in the queue's numbering
        start = d
        data = payload
        if start < 0:
            data = data[-start:]
            start = 0
        fin = bool(int(seg.flags) & _FIN)
        if start + len(data) > wnd:
            data = data[: max(0, wnd - start)]
            fin = False  # the FIN lies beyond the window
        if fin and self._rcv_fin_off is None:
            self._rcv_fin_off = base + d + len(payload)
        if data:
            if start == 0:
                self._deliver(data)
            else:
                self._rcv_queue.add(base + start, data)
        if self._rcv_fin_off is not None and self._rcv_fin_off == self._rcv_off:
            self._rcv_fin_off = None
            self._on_fin(now)
        else:
            self._send_ack()

    def _deliver(self, data: bytes) -> None:
        """Hand in-order bytes at RCV.NXT (and whatever they join up with) to the application;
        nothing beyond the peer's FIN."""
        start = self._rcv_off
        end = start + len(data)
        if len(self._rcv_queue):
            more = self._rcv_queue.pop_ready(end)
            if more:
                data = data + more
                end += len(more)
        fin = self._rcv_fin_off
        if fin is not None and end > fin:
            data = data[: fin - start]
            end = fin
        n = end - start
        self._rcv_off = end
        self.rcv_nxt = (self.rcv_nxt + n) & _M
        self.counters.bytes_delivered += n
        if not self.config.auto_consume:
            self._rcv_unread += n
            self.rcv_wnd -= n
        self._events.append(DataReceived(data))

    def _on_fin(self, now: int) -> None:
        self.rcv_nxt = (self.rcv_nxt + 1) & _M
        self._rcv_off += 1
        self.state = transition(self.state, Trigger.RCV_FIN)
        self._events.append(FinReceived())
        self._send_ack()
        if self.state is _S.TIME_WAIT:
            self._start_time_wait(now)

    # --- handshake helpers ------------------------------------------------------------------------

    def _choose_iss(self) -> None:
        self.iss = self.rng.getrandbits(32)
        self.snd_una = self.iss
        self.snd_nxt = (self.iss + 1) & _M
        self._snd_buf_seq = self.snd_nxt

    def _take_syn(self, seg: TcpSegment) -> None:
        """Learn IRS, the peer's window, MSS and window scale from its SYN."""
        self.irs = seg.seq
        self.rcv_nxt = (seg.seq + 1) & _M
        self._rcv_off = 0
        self.snd_wnd = seg.window  # never scaled in a SYN (RFC 7323 2.2)
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.snd_wl1 = seg.seq
        self.snd_wl2 = seg.ack
        mss = seg.option(MSS)
        # RFC 9293 3.7.1: without the option, 536 (IPv4) or 1220 (IPv6)
        default = 536 if isinstance(self.local_ip, IPv4Address) else 1220
        self.snd_mss = min(self.config.mss, mss.value if mss is not None else default) or 1
        ws = seg.option(WindowScale)
        if ws is not None and self.config.window_scale is not None:
            self._ws_ok = True
            self.snd_wscale = min(ws.shift, 14)  # RFC 7323 2.3: use 14 for larger shifts
            self.rcv_wscale = self.config.window_scale
        else:
            self._ws_ok = False
            self.snd_wscale = 0
            self.rcv_wscale = 0
        self.rcv_wnd = self._max_rcv_wnd() - self._rcv_unread

    def _max_rcv_wnd(self) -> int:
        return min(self.config.rcv_buf, 0xFFFF << self.rcv_wscale)

    def _send_syn(self, now: int) -> None:
        st = self.state
        opts: tuple = (MSS(self.config.mss),)
        ws = self.config.window_scale
        # RFC 7323 2.2: a SYN,ACK carries Window Scale only if the SYN did
        if ws is not None and (st is _S.SYN_SENT or self._ws_ok):
            opts += (Nop(), WindowScale(ws))
        flags = TcpFlags.SYN if st is _S.SYN_SENT else _F_SYN_ACK
        self._emit(self.iss, flags, options=opts, window=min(self.rcv_wnd, 0xFFFF))
        if self._rtt_seq is None and not self._syn_timed_out:
            self._rtt_seq = self.snd_nxt
            self._rtt_start = now
        self._rtx_deadline = now + self._rto.rto

    def _established(self, now: int) -> None:
        self._retries = 0
        if self._syn_timed_out and self._rto.srtt is None:
            self._rto.after_syn_timeout()  # RFC 6298 5.7
        self._events.append(ConnectionEstablished())
        if self._close_pending:
            self._close_pending = False
            self.state = transition(self.state, Trigger.CLOSE)
            self._fin_queued = True

    def _return_to_listen(self) -> None:
        # RFC 9293 3.10.7.4: a passive open's SYN-RECEIVED returns to LISTEN on RST or SYN
        self.state = transition(self.state, Trigger.RETURN_TO_LISTEN)
        self._set_remote(self._listen_remote)
        self._rtx_deadline = None
        self._rtt_seq = None
        self._retries = 0
        self._syn_timed_out = False
        self._snd_buf.clear()

    # --- sending ----------------------------------------------------------------------------------

    def _emit(
        self,
        seq: int,
        flags: TcpFlags,
        payload: bytes = b"",
        options: tuple = (),
        ack: int | None = None,
        window: int | None = None,
        dst: Address | None = None,
    ) -> None:
        if ack is None:
            ack = self.rcv_nxt if int(flags) & _ACK else 0
        if window is None:
            window = min(self.rcv_wnd >> self.rcv_wscale, 0xFFFF)
        if dst is None:
            dst_ip, dst_port = self.remote_ip, self.remote_port
        else:
            dst_ip, dst_port = dst
        seg = new_segment(self.local_port, dst_port, seq, ack, flags, window, 0, options, payload)
        if self._md5_key is not None:
            seg = sign_md5(seg, self.local_ip, dst_ip, self._md5_key)
        self._out.append(OutgoingSegment(seg, self.local_ip, dst_ip))
        self.counters.segments_sent += 1

    def _send_ack(self) -> None:
        # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
        self._emit(self.snd_nxt, _F_ACK)

    def _reply_reset(self, seg: TcpSegment, ip: IPAddress | None) -> None:
        """RST in reply to `seg` (RFC 9293 3.5.2); never to a RST."""
        f = int(seg.flags)
        if f & _RST or ip is None:
            return
        if f & _ACK:
            self._emit(seg.ack, TcpFlags.RST, ack=0, window=0, dst=(ip, seg.src_port))
        else:
            self._emit(0, _F_RST_ACK, ack=(seg.seq + seg.seg_len) & _M, window=0, dst=(ip, seg.src_port))

    def _challenge_ack(self, now: int, defense: str) -> None:
        lim = self.challenge_ack_limiter
        if lim is None or lim.allow(now):
            self._send_ack()
            self.counters.challenge_acks_sent += 1
            self._events.append(ChallengeAckSent(defense))
            self._drop(defense + ": challenge ACK sent")
        else:
            self.counters.challenge_acks_suppressed += 1
            self._drop(defense + ": challenge ACK suppressed")

    def _output(self, now: int) -> None:
        """Send queued data as the peer's window allows, then our FIN once it is all out."""
        if self.state not in _DATA_STATES or self._fin_seq is not None:
            return
        buf = self._snd_buf
        while True:
            off = (self.snd_nxt - self._snd_buf_seq) & _M
            unsent = len(buf) - off
            if unsent <= 0:
                break
            usable = self.snd_wnd - ((self.snd_nxt - self.snd_una) & _M)
            if usable <= 0:
                if self._rtx_deadline is None:
                    # zero window, nothing in flight: the persist timer (RFC 9293 3.8.6.1)
                    self._persist = True
                    self._rtx_deadline = now + self._rto.rto
                return
            n = min(unsent, usable, self.snd_mss)
            fin = n == unsent and self._fin_queued
            flags = (_F_ACK_PSH_FIN if fin else _F_ACK_PSH) if n == unsent else _F_ACK
            seq = self.snd_nxt
            self._emit(seq, flags, bytes(buf[off : off + n]))
            self.snd_nxt = (seq + n + fin) & _M
            if fin:
                self._fin_seq = (seq + n) & _M
            self._sent_new(now)
            if fin:
                return
        if self._fin_queued and self._fin_seq is None:
            self._fin_seq = self.snd_nxt
            self._emit(self.snd_nxt, _F_ACK_FIN)
            self.snd_nxt = (self.snd_nxt + 1) & _M
            self._sent_new(now)

    def _sent_new(self, now: int) -> None:
        if self._rtt_seq is None:
            self._rtt_seq = self.snd_nxt
            self._rtt_start = now
        if self._rtx_deadline is None or self._persist:
            self._persist = False
            self._rtx_deadline = now + self._rto.rto  # RFC 6298 5.1

    def _retransmit_first(self) -> None:
        """Send again the earliest unacknowledged segment (RFC 6298 5.4)."""
        una = self.snd_una
        buf = self._snd_buf
        off = (una - self._snd_buf_seq) & _M
        in_flight = (self.snd_nxt - una) & _M
        n = min(len(buf) - off, self.snd_mss, in_flight)
        self._rtt_seq = None  # Karn: no RTT sample from a retransmitted segment
        self.counters.retransmissions += 1
        if n > 0:
            fin = self._fin_seq is not None and (una + n) & _M == self._fin_seq
            self._emit(una, (_F_ACK_PSH_FIN if fin else _F_ACK_PSH), bytes(buf[off : off + n]))
        elif self._fin_seq is not None and una == self._fin_seq:
            self._emit(una, _F_ACK_FIN)

    def _on_new_ack(self, ack: int, now: int) -> None:
        """SND.UNA < SEG.ACK <= SND.NXT: drop acknowledged data, sample the RTT, rearm the timer."""
        start = self._snd_buf_seq
        if _gt(ack, start):
            n = min((ack - start) & _M, len(self._snd_buf))
            del self._snd_buf[:n]
            self._snd_buf_seq = (start + n) & _M
        self.snd_una = ack
        self._retries = 0
        if self._rtt_seq is not None and not _lt(ack, self._rtt_seq):
            self._rto.on_sample(now - self._rtt_start)
            self._rtt_seq = None
        if ack == self.snd_nxt:
            self._rtx_deadline = None  # RFC 6298 5.2
            self._recover = None
            self._persist = False
        else:
            self._rtx_deadline = now + self._rto.rto  # RFC 6298 5.3
            if self._recover is not None:
                if _lt(ack, self._recover):
                    self._retransmit_first()  # a partial ACK after a timeout: repair the next hole
                else:
                    self._recover = None

    def _on_rtx_timeout(self, now: int) -> None:
        st = self.state
        cfg = self.config
        self._rtx_deadline = None
        if st is _S.SYN_SENT or st is _S.SYN_RECEIVED:
            self._retries += 1
            if self._retries > cfg.max_syn_retransmissions:
                self._time_out()
                return
            self._rto.backoff()
            self._syn_timed_out = True
            self._rtt_seq = None
            self.counters.retransmissions += 1
            self._send_syn(now)
            return
        if self._persist:
            # probe the zero window (RFC 9293 3.8.6.1) as Linux does: an empty segment one below
            # SND.UNA is unacceptable to the peer, which answers with an ACK carrying its window.
            # Probing goes on, backed off, as long as the peer's window stays shut.
            self._emit((self.snd_una - 1) & _M, _F_ACK)
            self._rto.backoff()
            self._rtx_deadline = now + self._rto.rto
            return
        if self.snd_una == self.snd_nxt:
            return
        self._retries += 1
        if self._retries > cfg.max_retransmissions:
            self._time_out()
            return
        self._rto.backoff()  # RFC 6298 5.5
        self._recover = self.snd_nxt
        self._retransmit_first()
        self._rtx_deadline = now + self._rto.rto  # RFC 6298 5.6

    # --- endings ----------------------------------------------------------------------------------

    def _fin_acked(self) -> bool:
        return self._fin_seq is not None and self.snd_una == (self._fin_seq + 1) & _M

    def _start_time_wait(self, now: int) -> None:
        self._rtx_deadline = None
        self._tw_deadline = now + 2 * self.config.msl_ns

    def _reset(self, reason: str, count_rst: bool = True) -> None:
        self.state = transition(self.state, Trigger.RCV_RST if count_rst else Trigger.RESET)
        if count_rst:
            self.counters.resets_accepted += 1
        self._enter_closed()
        self._events.append(ConnectionReset(reason))

    def _time_out(self) -> None:
        self.state = transition(self.state, Trigger.RESET)
        retries = self._retries - 1
        self._enter_closed()
        self._events.append(ConnectionTimedOut(retries))

    def _enter_closed(self) -> None:
        self.state = _S.CLOSED
        self._rtx_deadline = None
        self._tw_deadline = None
        self._persist = False
        self._snd_buf.clear()
        self._rcv_queue = ReassemblyQueue()

    def _drop(self, reason: str) -> None:
        d = self.counters.segments_dropped
        d[reason] = d.get(reason, 0) + 1
        ev = self._drop_events.get(reason)
        if ev is None:
            ev = self._drop_events[reason] = SegmentDropped(reason)
        self._events.append(ev)

    def __repr__(self) -> str:
        return (
            f"<TcpEndpoint {self.local_ip}:{self.local_port} -> "
            f"{self.remote_ip}:{self.remote_port} {self.state.value}>"
        )
