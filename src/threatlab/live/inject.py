"""Raw Ethernet injection from inside an adversary's namespace, behind a safety interlock.

The socket is an AF_PACKET socket created inside the adversary's namespace (by a thread that joined
it), bound to one of its interfaces; frames can therefore only enter this run's segments. On top of
that, every frame passes `Interlock.check` before it leaves: its IPv4/IPv6 destination (or ARP
target) must be an address assigned in this `LiveNetwork`, a broadcast address of one of its subnets,
multicast, or an IPv6 link-local address of one of its interfaces. Anything else raises
`LiveSafetyError` and nothing is sent.

Budgets. An `Injector` has a packet budget and a time budget (the clock starts at the first send).
A call that would go over the packet budget raises `LiveSafetyError` before it sends anything.
When the time budget runs out during a call, sending stops (checked before every `send`, every 256
frames of `send_many`, and every batch of a sweep: at most `RING_FRAMES`, a few milliseconds) and
`BudgetExhausted` (a `LiveSafetyError` whose `.sent` counts the frames that call sent) is raised.
`injector.sent` always counts what really left.

The high-rate path, `inject_tcp_sweep`, writes the template into every slot of a PACKET_MMAP TX ring
(TPACKET_V2) once, then per batch rewrites only the changing fields, computed with numpy: sequence
number, IPv4 identification, and both checksums updated incrementally (RFC 1624). One system call
sends a whole ring; PACKET_QDISC_BYPASS skips the qdisc layer (unless the link is shaped), and a virtio-net header makes the
kernel copy each frame into a linear buffer. `method="sendmmsg"` and `method="send"` (one send per
frame) are kept for comparison; see benchmarks/bench_live_inject.py.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import mmap
import os
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Self

import numpy as np

from threatlab.errors import LiveError, LiveSafetyError
from threatlab.live.namespaces import LiveNetwork

__all__ = [
    "BudgetExhausted",
    "Injector",
    "Interlock",
    "SweepResult",
    "build_tcp_frame",
    "checksum16",
]

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
_VLAN_TPIDS = (0x8100, 0x88A8)
IPPROTO_TCP = 6

SOL_PACKET = 263
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_QDISC_BYPASS = 20
PACKET_VNET_HDR = 15
VNET_HDR_LEN = 10  # struct virtio_net_hdr
TPACKET_V2 = 1
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
TP_STATUS_WRONG_FORMAT = 4
TPACKET2_HDRLEN = 32  # TPACKET_ALIGN(sizeof(struct tpacket2_hdr)); TX data starts here
SO_SNDBUFFORCE = 32

RING_FRAMES = 4096  # frames per TX ring, and so per system call of the sweep
SENDMMSG_BATCH = 1024

_LINK_LOCAL_V6 = ipaddress.IPv6Network("fe80::/10")
_MULTICAST_V4 = ipaddress.IPv4Network("224.0.0.0/4")
_MULTICAST_V6 = ipaddress.IPv6Network("ff00::/8")


class BudgetExhausted(LiveSafetyError):
    """The time budget ran out during a call; `sent` frames of that call left before it stopped."""

    def __init__(self, message: str, sent: int) -> None:
        super().__init__(message)
        self.sent = sent


# --------------------------------------------------------------------------- checksums and frames


def checksum16(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`: one's complement of the one's complement sum."""
    if len(data) % 2:
        data += b"\x00"
    total = int(np.frombuffer(data, dtype=">u2").sum(dtype=np.uint64)) if data else 0
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _l3_offset(frame: bytes) -> tuple[int, int]:
    """(ethertype, offset of the layer-3 header), skipping up to two VLAN tags."""
    if len(frame) < 14:
        raise LiveSafetyError(f"refused: a {len(frame)}-byte frame is shorter than an Ethernet header")
    off = 12
    ethertype = int.from_bytes(frame[off : off + 2], "big")
    for _ in range(2):
        if ethertype not in _VLAN_TPIDS:
            break
        off += 4
        if len(frame) < off + 2:
            raise LiveSafetyError("refused: truncated VLAN tag")
        ethertype = int.from_bytes(frame[off : off + 2], "big")
    return ethertype, off + 2


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def build_tcp_frame(
    src_mac: str,
    dst_mac: str,
    src_ip: str,
    dst_ip: str,
    sport: int,
    dport: int,
    seq: int = 0,
    ack: int = 0,
    flags: str = "S",
    window: int = 65535,
    payload: bytes = b"",
    *,
    ip_id: int = 0,
    ttl: int = 64,
) -> bytes:
    """An Ethernet/IPv4-or-IPv6/TCP frame with correct checksums. `flags` from "FSRPAUEC"."""
    bits = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}
    try:
        flag_byte = sum(bits[c] for c in set(flags.upper()))
    except KeyError:
        raise LiveError(f"TCP flags must be letters of FSRPAUEC, got {flags!r}") from None
    src, dst = ipaddress.ip_address(src_ip), ipaddress.ip_address(dst_ip)
    if src.version != dst.version:
        raise LiveError("source and destination must both be IPv4 or both IPv6")
    tcp = (
        struct.pack(
            "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flag_byte, window, 0, 0
        )
        + payload
    )
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, IPPROTO_TCP, len(tcp))
        tcp = tcp[:16] + checksum16(pseudo + tcp).to_bytes(2, "big") + tcp[18:]
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(tcp),
            ip_id & 0xFFFF,
            0x4000,
            ttl,
            IPPROTO_TCP,
            0,
            src.packed,
            dst.packed,
        )
        ip = ip[:10] + checksum16(ip).to_bytes(2, "big") + ip[12:]
        ethertype = ETH_P_IP
    else:
        pseudo = src.packed + dst.packed + struct.pack("!IxxxB", len(tcp), IPPROTO_TCP)
        tcp = tcp[:16] + checksum16(pseudo + tcp).to_bytes(2, "big") + tcp[18:]
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), IPPROTO_TCP, ttl, src.packed, dst.packed)
        ethertype = ETH_P_IPV6
    return _mac(dst_mac) + _mac(src_mac) + ethertype.to_bytes(2, "big") + ip + tcp


@dataclass(frozen=True, slots=True)
class _TcpLayout:
    """Where the fields a sweep changes sit in a template frame, and the template's own values."""

    ip_off: int
    tcp_off: int
    version: int
    frame: bytes  # with seq = seq_start and both checksums correct


def _tcp_template(frame: bytes, seq_start: int) -> _TcpLayout:
    ethertype, l3 = _l3_offset(frame)
    buf = bytearray(frame)
    if ethertype == ETH_P_IP:
        if len(buf) < l3 + 20 or buf[l3] >> 4 != 4:
            raise LiveError("sweep template: not an IPv4 header")
        ihl = (buf[l3] & 0x0F) * 4
        total = int.from_bytes(buf[l3 + 2 : l3 + 4], "big")
        if buf[l3 + 9] != IPPROTO_TCP:
            raise LiveError("sweep template: IPv4 payload is not TCP")
        if int.from_bytes(buf[l3 + 6 : l3 + 8], "big") & 0x3FFF:
            raise LiveError("sweep template: a fragment cannot be swept")
        tcp_off, tcp_end = l3 + ihl, l3 + total
        pseudo = bytes(buf[l3 + 12 : l3 + 20]) + struct.pack("!BBH", 0, IPPROTO_TCP, total - ihl)
        version = 4
    elif ethertype == ETH_P_IPV6:
        if len(buf) < l3 + 40 or buf[l3 + 6] != IPPROTO_TCP:
            raise LiveError("sweep template: IPv6 payload is not TCP (extension headers are not supported)")
        plen = int.from_bytes(buf[l3 + 4 : l3 + 6], "big")
        tcp_off, tcp_end = l3 + 40, l3 + 40 + plen
        pseudo = bytes(buf[l3 + 8 : l3 + 40]) + struct.pack("!IxxxB", plen, IPPROTO_TCP)
        version = 6
    else:
        raise LiveError(f"sweep template: ethertype 0x{ethertype:04x} is neither IPv4 nor IPv6")
    if tcp_end > len(buf) or tcp_end - tcp_off < 20:
        raise LiveError("sweep template: the IP length does not cover a TCP header inside the frame")
    buf[tcp_off + 4 : tcp_off + 8] = (seq_start & 0xFFFFFFFF).to_bytes(4, "big")
    buf[tcp_off + 16 : tcp_off + 18] = b"\x00\x00"
    csum = checksum16(pseudo + bytes(buf[tcp_off:tcp_end]))
    buf[tcp_off + 16 : tcp_off + 18] = csum.to_bytes(2, "big")
    if version == 4:
        buf[l3 + 10 : l3 + 12] = b"\x00\x00"
        buf[l3 + 10 : l3 + 12] = checksum16(bytes(buf[l3 : l3 + ihl])).to_bytes(2, "big")
    return _TcpLayout(ip_off=l3, tcp_off=tcp_off, version=version, frame=bytes(buf))


class _SweepFields:
    """Vectorized fields of frames k..k+n of a sweep: sequence number, IP id and both checksums.

    RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), in 16-bit one's complement arithmetic, where m is the
    template's value of a changed 16-bit word and m' the new one.
    """

    def __init__(self, layout: _TcpLayout, seq_start: int, seq_step: int, ip_id_step: int) -> None:
        f, t, i = layout.frame, layout.tcp_off, layout.ip_off
        self.seq_start = np.uint64(seq_start & 0xFFFFFFFF)
        self.seq_step = np.uint64(seq_step & 0xFFFFFFFF)
        seq0 = int.from_bytes(f[t + 4 : t + 8], "big")
        tcp_c0 = int.from_bytes(f[t + 16 : t + 18], "big")
        self.tcp_k = np.uint64((~tcp_c0 & 0xFFFF) + (~(seq0 >> 16) & 0xFFFF) + (~seq0 & 0xFFFF))
        self.ipv4 = layout.version == 4 and ip_id_step % 0x10000 != 0
        if self.ipv4:
            id0 = int.from_bytes(f[i + 4 : i + 6], "big")
            ip_c0 = int.from_bytes(f[i + 10 : i + 12], "big")
            self.id0, self.id_step = np.uint64(id0), np.uint64(ip_id_step & 0xFFFF)
            self.ip_k = np.uint64((~ip_c0 & 0xFFFF) + (~id0 & 0xFFFF))

    @staticmethod
    def _fold(total: np.ndarray) -> np.ndarray:
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        return (~total & 0xFFFF).astype(">u2")

    def compute(self, k0: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(seq as >u4, tcp checksum as >u2, ip id as >u2 or None, ip checksum as >u2 or None)."""
        k = np.arange(k0, k0 + n, dtype=np.uint64)
        seq = (self.seq_start + k * self.seq_step) & np.uint64(0xFFFFFFFF)
        tcp_c = self._fold(self.tcp_k + (seq >> np.uint64(16)) + (seq & np.uint64(0xFFFF)))
        if not self.ipv4:
            return seq.astype(">u4"), tcp_c, None, None
        ip_id = (self.id0 + k * self.id_step) & np.uint64(0xFFFF)
        ip_c = self._fold(self.ip_k + ip_id)
        return seq.astype(">u4"), tcp_c, ip_id.astype(">u2"), ip_c


@dataclass(frozen=True, slots=True)
class SweepResult:
    sent: int
    seconds: float
    method: str
    first_seq: int
    last_seq: int
    dropped_by_link: int = 0  # of `sent`: frames a full queue of the adversary's shaped link dropped

    @property
    def packets_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- the interlock


class Interlock:
    """Decides, per frame, whether its destination lies inside one `LiveNetwork` run."""

    def __init__(self, net: LiveNetwork, allow_ethertypes: Iterable[int] = ()) -> None:
        self.net = net
        self.allow_ethertypes = frozenset(allow_ethertypes)
        self._ok: set[tuple[int, bytes]] = set()

    def _allowed(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if addr in self.net.assigned_addresses():
            return True
        if addr.version == 4:
            return addr in _MULTICAST_V4 or addr in self.net.broadcast_addresses()
        if addr in _MULTICAST_V6:
            return True
        return addr in _LINK_LOCAL_V6 and addr in self._link_locals()

    def _link_locals(self) -> set[ipaddress.IPv6Address]:
        """The EUI-64 link-local address of every interface of the run (addr_gen_mode eui64)."""
        out = set()
        for node in self.net.topology.nodes:
            for iface in node.interfaces:
                mac = bytearray(_mac(iface.mac))
                mac[0] ^= 0x02
                out.add(ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + mac[:3] + b"\xff\xfe" + mac[3:]))
        return out

    def check(self, frame: bytes) -> None:
        """Return if `frame` may leave; otherwise raise LiveSafetyError saying why."""
        ethertype, l3 = _l3_offset(frame)
        if ethertype == ETH_P_IP:
            field, what = frame[l3 + 16 : l3 + 20], "IPv4 destination"
        elif ethertype == ETH_P_IPV6:
            field, what = frame[l3 + 24 : l3 + 40], "IPv6 destination"
        elif ethertype == ETH_P_ARP:
            # Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4; the target address is at 24.
            if frame[l3 : l3 + 6] != b"\x00\x01\x08\x00\x06\x04":
                raise LiveSafetyError("refused: ARP other than Ethernet/IPv4")
            field, what = frame[l3 + 24 : l3 + 28], "ARP target"
        elif ethertype in self.allow_ethertypes:
            return
        else:
            raise LiveSafetyError(
                f"refused: ethertype 0x{ethertype:04x} has no destination the interlock can check "
                "(pass allow_ethertypes to the Injector to send it anyway)"
            )
        if len(field) not in (4, 16):
            raise LiveSafetyError(f"refused: frame too short to hold its {what}")
        if (ethertype, field) in self._ok:
            return
        addr = ipaddress.ip_address(bytes(field))
        if not self._allowed(addr):
            raise LiveSafetyError(
                f"refused: {what} {addr} is not an address of live run {self.net.run_id} "
                "(nor broadcast or multicast on its segments); nothing was sent"
            )
        if addr in self.net.assigned_addresses() or addr.is_multicast or addr.version == 4:
            self._ok.add((ethertype, field))  # assigned addresses never go away within a run


# --------------------------------------------------------------------------- sockets


def _packet_socket(ifname: str, bypass_qdisc: bool) -> socket.socket:
    """An AF_PACKET socket for sending only (protocol 0: it receives nothing), bound to `ifname`."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        if bypass_qdisc:
            sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 4 << 20)
        except OSError:
            pass
        sock.bind((ifname, 0))
    except OSError as exc:
        sock.close()
        raise LiveError(f"cannot open a packet socket on {ifname}: {exc.strerror}") from None
    return sock


class _TxRing:
    """A PACKET_MMAP TX ring (TPACKET_V2) on its own socket, for frames of one length."""

    def __init__(self, sock: socket.socket, frame_len: int, frames: int = RING_FRAMES) -> None:
        need = TPACKET2_HDRLEN + VNET_HDR_LEN + frame_len
        if need <= mmap.PAGESIZE:
            frame_size = max(64, 1 << (need - 1).bit_length())
            block_size = max(mmap.PAGESIZE * 16, frame_size)
        else:
            frame_size = block_size = -(-need // mmap.PAGESIZE) * mmap.PAGESIZE
        per_block = block_size // frame_size
        block_nr = max(1, -(-frames // per_block))
        self.frames = block_nr * per_block
        self.frame_size, self.frame_len = frame_size, frame_len
        self.sock = sock
        # A virtio_net_hdr before each frame, whose hdr_len is the whole frame, makes the kernel copy
        # the frame into one linear skb instead of attaching ring pages as fragments, which the
        # receiving stack would have to pull into the linear part again (measured: about 25% faster).
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        req = struct.pack("IIII", block_size, block_nr, frame_size, self.frames)  # struct tpacket_req
        sock.setsockopt(SOL_PACKET, PACKET_TX_RING, req)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        self.mm = mmap.mmap(sock.fileno(), block_size * block_nr, mmap.MAP_SHARED, prot)
        self.bytes = np.frombuffer(self.mm, dtype=np.uint8).reshape(self.frames, frame_size)
        words = np.frombuffer(self.mm, dtype=np.uint32).reshape(self.frames, frame_size // 4)
        self.status, self.tp_len, self.tp_snaplen = words[:, 0], words[:, 1], words[:, 2]
        self.head = 0  # the kernel's next frame; it walks the ring in order

    def load(self, frame: bytes) -> None:
        """Put the template in every slot; a sweep then only rewrites its changing fields."""
        vnet = struct.pack("<BBHHHH", 0, 0, len(frame), 0, 0, 0)  # no offloads; hdr_len = frame
        data = np.frombuffer(vnet + frame, dtype=np.uint8)
        self.bytes[:, TPACKET2_HDRLEN : TPACKET2_HDRLEN + len(data)] = data
        self.tp_len[:] = len(data)
        self.tp_snaplen[:] = len(data)

    def slices(self, n: int) -> list[tuple[int, int]]:
        """The ring rows of the next `n` (<= frames) frames from the head, as (start, stop) runs."""
        first = min(n, self.frames - self.head)
        runs = [(self.head, self.head + first)]
        if first < n:
            runs.append((0, n - first))
        return runs

    def flush(self, n: int) -> int:
        """Hand the next `n` prepared frames to the kernel and wait until they are sent.

        Returns how many frames the device dropped (ENOBUFS) and were handed over again: after such
        a drop the kernel stops with its head on the dropped slot, so that slot is requested again.
        """
        runs = self.slices(n)
        for a, b in runs:
            if self.status[a:b].any():
                raise LiveError("TX ring slot still owned by the kernel")
            self.status[a:b] = TP_STATUS_SEND_REQUEST
        order = np.concatenate([np.arange(a, b) for a, b in runs])
        retried = 0
        while True:
            try:
                self.sock.send(b"")  # blocking: returns when every requested frame has gone
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS or retried >= n:
                    raise
            pending = np.flatnonzero(self.status[order] & TP_STATUS_SEND_REQUEST)
            if len(pending) and pending[0] == 0:
                raise LiveError("TX ring: the kernel dropped a frame it was not at")
            self.status[order[pending[0] - 1] if len(pending) else order[-1]] = TP_STATUS_SEND_REQUEST
            retried += 1
        for a, b in runs:
            if (self.status[a:b] & TP_STATUS_WRONG_FORMAT).any():
                raise LiveError("the kernel rejected a frame of the sweep (TP_STATUS_WRONG_FORMAT)")
            if self.status[a:b].any():
                raise LiveError("TX ring: frames left unsent after a blocking send")
        self.head = (self.head + n) % self.frames
        return retried

    def close(self) -> None:
        del self.bytes, self.status, self.tp_len, self.tp_snaplen
        try:
            self.mm.close()
        except BufferError:  # a numpy view still alive somewhere: the mapping goes with it
            pass
        self.sock.close()


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------- the injector


class Injector:
    """Sends raw Ethernet frames out of `node`'s interface `ifname`, within budgets and the interlock.

    Use as a context manager or call `close()`. See the module docstring for the budget rules.
    """

    def __init__(
        self,
        net: LiveNetwork,
        node: str,
        ifname: str,
        budget_packets: int,
        budget_seconds: float,
        *,
        allow_ethertypes: Iterable[int] = (),
    ) -> None:
        if not isinstance(budget_packets, int) or budget_packets <= 0:
            raise LiveError(f"budget_packets must be a positive integer, got {budget_packets!r}")
        if not budget_seconds > 0:
            raise LiveError(f"budget_seconds must be > 0, got {budget_seconds!r}")
        net.topology.node(node).interface(ifname)  # TopologyError if unknown
        self.net, self.node, self.ifname = net, node, ifname
        self.budget_packets, self.budget_seconds = budget_packets, float(budget_seconds)
        self.interlock = Interlock(net, allow_ethertypes)
        self.sent = 0
        self.dropped_by_link = 0  # frames a full queue of the adversary's link dropped (ENOBUFS)
        self.requeued = 0  # ring frames the device dropped and the sweep handed over again
        self._started: float | None = None
        link = net.topology.node(node).interface(ifname).link
        # Bypassing the qdisc would also bypass the link's shaping (tc tbf/netem): only without it.
        self._bypass = not (link.rate_bps or link.delay_ns or link.loss)
        self._sock = net.call_in(node, lambda: _packet_socket(ifname, self._bypass))
        self._ring: _TxRing | None = None
        net.on_close(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the sockets; idempotent (teardown of the network calls it too)."""
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        self._sock.close()

    # ---- budgets

    @property
    def elapsed(self) -> float:
        return 0.0 if self._started is None else time.monotonic() - self._started

    @property
    def remaining_packets(self) -> int:
        return self.budget_packets - self.sent

    def _reserve(self, n: int) -> None:
        if n > self.remaining_packets:
            raise LiveSafetyError(
                f"refused: {n} frame(s) would exceed the packet budget "
                f"({self.sent} of {self.budget_packets} spent); nothing was sent"
            )
        if self._started is None:
            self._started = time.monotonic()
        self._check_time(0)

    def _check_time(self, sent_in_call: int) -> None:
        if self.elapsed >= self.budget_seconds:
            raise BudgetExhausted(
                f"time budget of {self.budget_seconds} s spent after {self.sent} frame(s); stopped",
                sent_in_call,
            )

    # ---- per-frame path

    def send(self, frame: bytes) -> None:
        """Send one frame (checked by the interlock, charged to the budgets)."""
        self.interlock.check(frame)
        self._reserve(1)
        self._send_one(frame)

    def _send_one(self, frame: bytes) -> None:
        try:
            self._sock.send(frame)
        except OSError as exc:
            self._send_failed(exc)
        self.sent += 1

    def _send_failed(self, exc: OSError) -> None:
        """A full device or qdisc queue (ENOBUFS) drops the frame, as a congested uplink would: it
        left the injector and counts as sent, and in `dropped_by_link`. Anything else is an error."""
        if exc.errno != errno.ENOBUFS:
            raise LiveError(f"send on {self.node}.{self.ifname} failed: {exc.strerror}") from None
        self.dropped_by_link += 1

    def send_many(self, frames: Iterable[bytes]) -> int:
        """Send frames in order; every one is checked before the first leaves. Returns how many went."""
        frames = list(frames)
        for frame in frames:
            self.interlock.check(frame)
        self._reserve(len(frames))
        for i, frame in enumerate(frames):
            if i % 256 == 0:
                self._check_time(i)
            self._send_one(frame)
        return len(frames)

    # ---- the high-rate sweep

    def inject_tcp_sweep(
        self,
        template_frame: bytes,
        seq_start: int,
        seq_step: int,
        count: int,
        *,
        ip_id_step: int = 1,
        method: str = "ring",
    ) -> SweepResult:
        """Send `count` copies of a TCP segment, the k-th with sequence number seq_start + k*seq_step
        (mod 2**32) and, for IPv4, identification id + k*ip_id_step, with correct checksums.

        The template's checksums need not be right; they are recomputed once, then updated
        incrementally per frame. `method`: "ring" (PACKET_MMAP TX ring, fastest), "sendmmsg", "send".
        On a shaped link (rate, delay or loss) "ring" becomes "sendmmsg": the link's qdisc then
        drops what its queue cannot take, as a congested uplink would (`dropped_by_link`), where the
        ring would retry and stall. The result names the method used.
        """
        if count < 0:
            raise LiveError(f"count must be >= 0, got {count}")
        if method not in ("ring", "sendmmsg", "send"):
            raise LiveError(f"method must be ring, sendmmsg or send, got {method!r}")
        if method == "ring" and not self._bypass:
            method = "sendmmsg"
        self.interlock.check(template_frame)  # seq, id and checksums never change the destination
        layout = _tcp_template(template_frame, seq_start)
        fields = _SweepFields(layout, seq_start, seq_step, ip_id_step)
        self._reserve(count)
        before, dropped_before, t0 = self.sent, self.dropped_by_link, time.perf_counter()
        try:
            if method == "ring":
                self._sweep_ring(layout, fields, count)
            elif method == "sendmmsg":
                self._sweep_sendmmsg(layout, fields, count)
            else:
                self._sweep_send(layout, fields, count)
        except BudgetExhausted as exc:
            exc.sent = self.sent - before
            raise
        seconds = time.perf_counter() - t0
        last = (seq_start + (count - 1) * seq_step) & 0xFFFFFFFF if count else seq_start & 0xFFFFFFFF
        dropped = self.dropped_by_link - dropped_before
        return SweepResult(self.sent - before, seconds, method, seq_start & 0xFFFFFFFF, last, dropped)

    @staticmethod
    def _write_fields(rows: np.ndarray, base: int, layout: _TcpLayout, vals: tuple) -> None:
        """Write computed fields into `rows` (frames start at column `base`)."""
        seq, tcp_c, ip_id, ip_c = vals
        t, i = base + layout.tcp_off, base + layout.ip_off
        rows[:, t + 4 : t + 8] = seq.view(np.uint8).reshape(-1, 4)
        rows[:, t + 16 : t + 18] = tcp_c.view(np.uint8).reshape(-1, 2)
        if ip_id is not None:
            rows[:, i + 4 : i + 6] = ip_id.view(np.uint8).reshape(-1, 2)
            rows[:, i + 10 : i + 12] = ip_c.view(np.uint8).reshape(-1, 2)

    def _ring_for(self, frame_len: int) -> _TxRing:
        if self._ring is None or self._ring.frame_len != frame_len:
            if self._ring is not None:
                self._ring.close()
                self._ring = None
            sock = self.net.call_in(self.node, lambda: _packet_socket(self.ifname, self._bypass))
            try:
                self._ring = _TxRing(sock, frame_len)
            except OSError as exc:
                sock.close()
                raise LiveError(f"cannot set up a PACKET_MMAP TX ring: {exc.strerror}") from None
        return self._ring

    def _sweep_ring(self, layout: _TcpLayout, fields: _SweepFields, count: int) -> None:
        ring = self._ring_for(len(layout.frame))
        ring.load(layout.frame)
        done = 0
        while done < count:
            self._check_time(done)
            n = min(ring.frames, count - done)
            vals = fields.compute(done, n)
            k = 0
            for a, b in ring.slices(n):
                self._write_fields(
                    ring.bytes[a:b],
                    TPACKET2_HDRLEN + VNET_HDR_LEN,
                    layout,
                    tuple(v[k : k + b - a] if v is not None else None for v in vals),
                )
                k += b - a
            try:
                self.requeued += ring.flush(n)
            except OSError as exc:
                raise LiveError(f"TX ring send on {self.node}.{self.ifname} failed: {exc.strerror}") from None
            done += n
            self.sent += n

    def _sweep_sendmmsg(self, layout: _TcpLayout, fields: _SweepFields, count: int) -> None:
        length = len(layout.frame)
        batch = min(SENDMMSG_BATCH, max(count, 1))
        buf = np.tile(np.frombuffer(layout.frame, dtype=np.uint8), (batch, 1))
        iov = (_Iovec * batch)()
        msgs = (_Mmsghdr * batch)()
        base = buf.ctypes.data
        for j in range(batch):
            iov[j].iov_base = base + j * length
            iov[j].iov_len = length
            msgs[j].msg_hdr.msg_iov = ctypes.pointer(iov[j])
            msgs[j].msg_hdr.msg_iovlen = 1
        fd = self._sock.fileno()
        done = 0
        while done < count:
            self._check_time(done)
            n = min(batch, count - done)
            self._write_fields(buf[:n], 0, layout, fields.compute(done, n))
            off = 0
            while off < n:
                r = _libc.sendmmsg(fd, ctypes.byref(msgs, off * ctypes.sizeof(_Mmsghdr)), n - off, 0)
                if r < 0:
                    err = ctypes.get_errno()
                    self._send_failed(OSError(err, os.strerror(err)))
                    r = 1  # the first message of the call was dropped; go on with the next
                off += r
                self.sent += r
            done += n

    def _sweep_send(self, layout: _TcpLayout, fields: _SweepFields, count: int) -> None:
        batch = 4096
        send = self._sock.send
        done = 0
        while done < count:
            self._check_time(done)
            n = min(batch, count - done)
            buf = np.tile(np.frombuffer(layout.frame, dtype=np.uint8), (n, 1))
            self._write_fields(buf, 0, layout, fields.compute(done, n))
            for row in map(bytes, buf):
                try:
                    send(row)
                except OSError as exc:
                    self._send_failed(exc)
                self.sent += 1
            done += n
