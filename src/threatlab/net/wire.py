"""Link, network and transport codecs: Ethernet II, ARP, IPv4 (options, fragmentation, reassembly),
IPv6 (fixed header), ICMPv4 and UDP.

Every unit is a frozen, slotted dataclass; `encode()` gives the wire bytes with real checksums and
`decode(data)` gives the unit back, `X.decode(x.encode()) == x`. `decode` raises only `DecodeError`
for bad bytes; `encode` raises `ValueError` for field values that cannot be encoded.

Hot paths (a simulation moves hundreds of thousands of frames per second through them) use
precompiled `struct.Struct`s and sum checksums arithmetically (see `threatlab.net.checksum`):
no per-call parsing of address strings. Units are built cheaply (see `_fast_init`), and the
decoders share IPv4Address objects.
"""

from __future__ import annotations

import dataclasses
import struct
from bisect import bisect_left
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from threatlab.errors import DecodeError, ThreatlabError
from threatlab.net.checksum import (
    checksum_of_sum,
    internet_checksum,
    pseudo_header_v4,
    pseudo_header_v6,
)

__all__ = [
    "ARP",
    "ARP_REPLY",
    "ARP_REQUEST",
    "BROADCAST_MAC",
    "ETH_MIN_FRAME",
    "ETH_P_ARP",
    "ETH_P_IP",
    "ETH_P_IPV6",
    "ICMP_DEST_UNREACH",
    "ICMP_ECHO_REPLY",
    "ICMP_ECHO_REQUEST",
    "ICMP_TIME_EXCEEDED",
    "IPPROTO_ICMP",
    "IPPROTO_IPV6_ICMP",
    "IPPROTO_SCTP",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "UNREACH_FRAG_NEEDED",
    "UNREACH_PORT",
    "UNREACH_PROTOCOL",
    "ICMPv4",
    "IPv4",
    "IPv4Option",
    "IPv6",
    "UDP",
    "Ethernet",
    "FragmentationNeeded",
    "Reassembler",
    "fragment",
    "internet_checksum",
    "mac_bytes",
    "mac_str",
    "pad_frame",
    "pseudo_header_v4",
    "pseudo_header_v6",
]

# --- constants -------------------------------------------------------------------------------------

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6_ICMP = 58
IPPROTO_SCTP = 132

BROADCAST_MAC = b"\xff" * 6
ETH_MIN_FRAME = 60  # 64-byte minimum frame (IEEE 802.3 4.4.2) without the 4-byte FCS

ARP_REQUEST = 1
ARP_REPLY = 2

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11

UNREACH_PROTOCOL = 2
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4

_ETH_HLEN = 14
# 802.1Q C-tag, 802.1ad S-tag and the pre-standard 0x9100 Q-in-Q tag: not supported.
_VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
_ETHERTYPE_MIN = 0x0600  # below: an IEEE 802.3 length field (LLC frame), not an EtherType

_ETH_TYPE = struct.Struct("!H")
_ETH_HDR = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6sI6sI")
_IPV4 = struct.Struct("!BBHHHBBHII")
_IPV6 = struct.Struct("!IHBB16s16s")
_ICMP = struct.Struct("!BBH4s")
_UDP = struct.Struct("!HHHH")
_H = struct.Struct("!H")

# Decoding makes an address per header field; a simulation sees few distinct ones, and an
# IPv4Address is immutable, so share them. A plain dict, not functools.lru_cache: IPv4.decode
# looks it up inline (`_V4_ADDRS[n]`), which costs a third of an lru_cache hit.
_V4_ADDRS: dict[int, IPv4Address] = {}
_V4_ADDRS_MAX = 4096


def _ipv4_address(n: int) -> IPv4Address:
    """The shared IPv4Address for the integer `n`."""
    addr = _V4_ADDRS.get(n)
    if addr is None:
        if len(_V4_ADDRS) >= _V4_ADDRS_MAX:
            _V4_ADDRS.clear()
        addr = _V4_ADDRS[n] = IPv4Address(n)
    return addr


_IP_DF = 0x4000
_IP_MF = 0x2000
_IP_RESERVED = 0x8000
_IP_OFFSET_MASK = 0x1FFF
_IP_MAX_OPTIONS = 40  # IHL is 4 bits: at most 15 words of header (RFC 791 3.1)
_IPV4_MIN_MTU = 68  # RFC 791 3.2: every module forwards 68 bytes unfragmented

_from_bytes = int.from_bytes  # bound once: `int.from_bytes(...)` binds the classmethod per call
_new = object.__new__
_set_class = object.__dict__["__class__"].__set__  # object.__setattr__(o, "__class__", t), bound once


def _fast_init(cls):
    """Make constructing a frozen, slotted dataclass cheap; decoding builds one per layer, so this
    is a large part of a decode.

    The generated `__init__` calls `object.__setattr__` per field. Instead, fill the slots through
    a private *twin* class with the same `__slots__` and no frozen `__setattr__`, where a plain
    `o.field = value` is a specialised slot store, then set `o.__class__` to the real class.
    Python allows that `__class__` assignment exactly when the two layouts are identical (same
    base, same slots in the same order), so the result is an ordinary frozen instance of `cls`.
    This gives `cls` a new `__init__` with the same signature (for IPv4's 11 fields, 55% of the
    dataclass one's cost) and `cls._make(*every_field)`, which also skips the call machinery of
    `cls(...)` (35%); the decoders use it when called on `cls` itself. An instance of a subclass,
    whose layout may differ, is filled through the slots' member descriptors instead.
    """
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    assert tuple(names) == cls.__slots__ and not hasattr(cls, "__post_init__")
    twin = type(f"_{cls.__name__}Slots", (), {"__slots__": cls.__slots__, "__module__": cls.__module__})
    ns: dict[str, object] = {"_cls": cls, "_twin": twin, "_new": _new, "_set_class": _set_class}
    ns["_type"] = type  # a field may be called `type`
    params = []
    for f in fields:
        assert f.default_factory is dataclasses.MISSING and f.init
        ns[f"_set_{f.name}"] = getattr(cls, f.name).__set__
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            ns[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    stores = "".join(f"        self.{n} = {n}\n" for n in names)
    sets = "".join(f"        _set_{n}(self, {n})\n" for n in names)
    src = (
        f"def __init__(self, {', '.join(params)}):\n"
        "    if _type(self) is _cls:\n"
        "        _set_class(self, _twin)\n"
        f"{stores}"
        "        self.__class__ = _cls\n"
        "    else:\n"
        f"{sets}"
        f"def _make({', '.join(names)}):\n"
        "    self = _new(_twin)\n"
        f"{stores.replace('        ', '    ')}"
        "    self.__class__ = _cls\n"
        "    return self\n"
    )
    exec(src, ns)  # noqa: S102
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    init.__doc__ = cls.__init__.__doc__  # type: ignore[attr-defined]
    cls.__init__ = init
    make = ns["_make"]
    make.__qualname__ = f"{cls.__qualname__}._make"  # type: ignore[attr-defined]
    cls._make = staticmethod(make)
    return cls


class FragmentationNeeded(ThreatlabError):
    """An IPv4 datagram with DF set does not fit the MTU (RFC 791 3.2, RFC 1191)."""

    def __init__(self, mtu: int) -> None:
        self.mtu = mtu
        super().__init__(f"fragmentation needed and DF set: datagram exceeds mtu {mtu}")

    def __reduce__(self):
        return (type(self), (self.mtu,))


# --- MAC addresses ---------------------------------------------------------------------------------


def mac_bytes(s: str) -> bytes:
    """'02:00:00:00:00:01' -> the 6 bytes; ValueError for anything else."""
    parts = s.split(":")
    if len(parts) != 6 or any(len(p) != 2 for p in parts):
        raise ValueError(f"not a MAC address (6 colon-separated hex octets): {s!r}")
    try:
        return bytes.fromhex("".join(parts))
    except ValueError:
        raise ValueError(f"not a MAC address (6 colon-separated hex octets): {s!r}") from None


def mac_str(b: bytes) -> str:
    """6 bytes -> '02:00:00:00:00:01'."""
    if len(b) != 6:
        raise ValueError(f"a MAC address is 6 bytes, got {len(b)}")
    return b.hex(":")


# --- Ethernet II -----------------------------------------------------------------------------------


def pad_frame(frame: bytes) -> bytes:
    """Pad a frame with zeros to the 60-byte minimum (without FCS), as a NIC does on transmit."""
    n = len(frame)
    if n >= ETH_MIN_FRAME:
        return frame
    return frame + bytes(ETH_MIN_FRAME - n)


@_fast_init
@dataclass(frozen=True, slots=True)
class Ethernet:
    """An Ethernet II frame without preamble and FCS."""

    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes

    def encode(self) -> bytes:
        """The frame bytes, not padded (see `pad_frame`)."""
        dst = self.dst
        src = self.src
        et = self.ethertype
        if len(dst) != 6 or len(src) != 6:
            raise ValueError("ethernet: dst and src must be 6 bytes")
        if not _ETHERTYPE_MIN <= et <= 0xFFFF or et in _VLAN_TPIDS:
            raise ValueError(f"ethernet: ethertype {et:#x} is not an Ethernet II type this codec handles")
        try:
            return _ETH_HDR.pack(dst, src, et) + self.payload  # one pack: the lengths are checked
        except struct.error:  # addresses that are not bytes: fail (or not) as concatenation does
            return dst + src + _ETH_TYPE.pack(et) + self.payload

    @classmethod
    def decode(cls, data: bytes) -> Ethernet:
        """Decode a frame; `payload` is everything after the header, link padding included."""
        if len(data) < _ETH_HLEN:
            raise DecodeError("ethernet", "header", 0, f"truncated: {len(data)} bytes, need 14")
        dst, src, et = _ETH_HDR.unpack_from(data)
        if et < _ETHERTYPE_MIN:
            raise DecodeError("ethernet", "ethertype", 12, f"{et:#06x} is an 802.3 length (LLC), unsupported")
        if et in _VLAN_TPIDS:
            raise DecodeError("ethernet", "ethertype", 12, f"VLAN tag {et:#06x} unsupported")
        return (Ethernet._make if cls is Ethernet else cls)(dst, src, et, data[_ETH_HLEN:])


# --- ARP (RFC 826), Ethernet/IPv4 only -------------------------------------------------------------


@_fast_init
@dataclass(frozen=True, slots=True)
class ARP:
    op: int
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address

    def encode(self) -> bytes:
        if len(self.sender_mac) != 6 or len(self.target_mac) != 6:
            raise ValueError("arp: sender_mac and target_mac must be 6 bytes")
        try:
            return _ARP.pack(
                1, ETH_P_IP, 6, 4, self.op, self.sender_mac, int(self.sender_ip), self.target_mac,
                int(self.target_ip),
            )
        except struct.error as e:
            raise ValueError(f"arp: field out of range: {e}") from None

    @classmethod
    def decode(cls, data: bytes) -> ARP:
        """Decode an ARP packet; bytes after the 28 of Ethernet/IPv4 ARP are link padding."""
        n = len(data)
        if n < 8:
            raise DecodeError("arp", "header", 0, f"truncated: {n} bytes, need 28")
        if data[0] != 0 or data[1] != 1:
            htype = (data[0] << 8) | data[1]
            raise DecodeError("arp", "htype", 0, f"hardware type {htype} is not Ethernet (1)")
        if data[2] != 0x08 or data[3] != 0x00:
            raise DecodeError("arp", "ptype", 2, f"protocol type {(data[2] << 8) | data[3]:#06x} is not IPv4")
        if data[4] != 6:
            raise DecodeError("arp", "hlen", 4, f"hardware address length {data[4]} is not 6")
        if data[5] != 4:
            raise DecodeError("arp", "plen", 5, f"protocol address length {data[5]} is not 4")
        if n < 28:
            raise DecodeError("arp", "header", 0, f"truncated: {n} bytes, need 28")
        _, _, _, _, op, sha, spa, tha, tpa = _ARP.unpack_from(data)
        return cls(op, sha, _ipv4_address(spa), tha, _ipv4_address(tpa))


# --- IPv4 (RFC 791) --------------------------------------------------------------------------------


@_fast_init
@dataclass(frozen=True, slots=True)
class IPv4Option:
    """One IPv4 option: kind 1 (NOP) is a single byte; every other kind is TLV, length 2 + len(data).

    EOL (kind 0) only ends the list and pads it; it never appears as an option here.
    The copied flag (RFC 791 3.1) is the top bit of `kind`.
    """

    kind: int
    data: bytes = b""

    @property
    def copied(self) -> bool:
        return bool(self.kind & 0x80)

    def encode(self) -> bytes:
        kind = self.kind
        if kind == 1:
            if self.data:
                raise ValueError("ipv4: option NOP (1) carries no data")
            return b"\x01"
        if not 2 <= kind <= 255:
            raise ValueError(f"ipv4: option kind {kind} is not 2..255 (EOL 0 is padding, NOP 1 has no data)")
        if len(self.data) > _IP_MAX_OPTIONS - 2:
            raise ValueError(f"ipv4: option data of {len(self.data)} bytes exceeds 38")
        return bytes((kind, 2 + len(self.data))) + self.data


_NOP = IPv4Option(1)


def _encode_options(options: tuple[IPv4Option, ...]) -> bytes:
    raw = b"".join([o.encode() for o in options])
    pad = -len(raw) & 3
    if pad:
        raw += bytes(pad)  # EOL, then zero padding to the 32-bit boundary
    if len(raw) > _IP_MAX_OPTIONS:
        raise ValueError(f"ipv4: options take {len(raw)} bytes, at most 40 fit")
    return raw


def _decode_options(data: bytes, hl: int) -> tuple[IPv4Option, ...]:
    opts = []
    i = 20
    while i < hl:
        kind = data[i]
        if kind == 0:  # EOL: the rest of the header is padding
            break
        if kind == 1:
            opts.append(_NOP)
            i += 1
            continue
        if i + 1 >= hl:
            raise DecodeError("ipv4", "options", i, f"option {kind} has no length byte")
        ln = data[i + 1]
        if ln < 2:
            raise DecodeError("ipv4", "options", i + 1, f"option {kind} length {ln} < 2")
        if i + ln > hl:
            raise DecodeError("ipv4", "options", i + 1, f"option {kind} length {ln} runs past the header")
        opts.append(IPv4Option(kind, data[i + 2 : i + ln]))
        i += ln
    return tuple(opts)


@_fast_init
@dataclass(frozen=True, slots=True)
class IPv4:
    src: IPv4Address
    dst: IPv4Address
    proto: int
    payload: bytes
    ttl: int = 64
    tos: int = 0
    identification: int = 0
    df: bool = False
    mf: bool = False
    frag_offset: int = 0  # in 8-byte units
    options: tuple[IPv4Option, ...] = ()

    @property
    def header_length(self) -> int:
        """Header bytes including options and their padding."""
        if not self.options:
            return 20
        return 20 + len(_encode_options(self.options))

    @property
    def is_fragment(self) -> bool:
        return self.mf or self.frag_offset != 0

    def encode(self) -> bytes:
        options = self.options
        opts = _encode_options(options) if options else b""
        hl = 20 + len(opts)
        payload = self.payload
        total = hl + len(payload)
        if total > 0xFFFF:
            raise ValueError(f"ipv4: total length {total} exceeds 65535")
        ff = self.frag_offset
        if not 0 <= ff <= _IP_OFFSET_MASK:
            raise ValueError(f"ipv4: frag_offset {ff} is not 0..8191")
        if self.df:
            ff |= _IP_DF
        if self.mf:
            ff |= _IP_MF
        vihl = 0x40 | (hl >> 2)
        tos = self.tos
        ttl = self.ttl
        proto = self.proto
        ident = self.identification
        src = self.src
        dst = self.dst
        if type(src) is IPv4Address and type(dst) is IPv4Address:
            src = src._ip  # int(address) would call the Python-level __int__, which returns this
            dst = dst._ip
        else:
            src = int(src)
            dst = int(dst)
        # Header checksum (RFC 791 3.1) summed from the fields; see threatlab.net.checksum.
        s = (vihl << 8) + tos + total + ident + ff + (ttl << 8) + proto + src + dst
        if opts:
            s += _from_bytes(opts)
        s %= 0xFFFF  # checksum_of_sum inlined; the sum holds the version, so it is never 0
        try:
            header = _IPV4.pack(vihl, tos, total, ident, ff, ttl, proto, 0xFFFF - s if s else 0, src, dst)
        except struct.error as e:
            raise ValueError(f"ipv4: field out of range: {e}") from None
        return header + opts + payload if opts else header + payload

    @classmethod
    def decode(cls, data: bytes, verify: bool = True) -> IPv4:
        """Decode a datagram; bytes beyond the total length are link padding and ignored."""
        n = len(data)
        if n < 20:
            raise DecodeError("ipv4", "header", 0, f"truncated: {n} bytes, need 20")
        vihl, tos, total, ident, ff, ttl, proto, csum, src, dst = _IPV4.unpack_from(data)
        if vihl == 0x45 and 20 <= total <= n and not ff & _IP_RESERVED:
            hl = 20  # the common case: version 4, no options, and every check below passes
        else:
            if vihl >> 4 != 4:
                raise DecodeError("ipv4", "version", 0, f"version {vihl >> 4} is not 4")
            hl = (vihl & 0x0F) << 2
            if hl < 20:
                raise DecodeError("ipv4", "ihl", 0, f"header length {hl} < 20")
            if total < hl:
                raise DecodeError("ipv4", "total_length", 2, f"total length {total} < header length {hl}")
            if total > n:
                reason = f"total length {total} exceeds the {n} bytes given"
                raise DecodeError("ipv4", "total_length", 2, reason)
            if ff & _IP_RESERVED:
                raise DecodeError("ipv4", "flags", 6, "reserved flag bit set (RFC 791: must be zero)")
        if verify:
            s = _from_bytes(data[:hl])
            if s % 0xFFFF or not s:  # see threatlab.net.checksum.sum_ok
                expected = internet_checksum(data[:10] + b"\0\0" + data[12:hl])
                reason = f"header checksum {csum:#06x}, expected {expected:#06x}"
                raise DecodeError("ipv4", "checksum", 10, reason)
        try:
            src_addr = _V4_ADDRS[src]
            dst_addr = _V4_ADDRS[dst]
        except KeyError:
            src_addr = _ipv4_address(src)
            dst_addr = _ipv4_address(dst)
        return (IPv4._make if cls is IPv4 else cls)(
            src_addr,
            dst_addr,
            proto,
            data[hl:total],
            ttl,
            tos,
            ident,
            ff & _IP_DF != 0,
            ff & _IP_MF != 0,
            ff & _IP_OFFSET_MASK,
            _decode_options(data, hl) if hl > 20 else (),
        )


def fragment(packet: IPv4, mtu: int) -> list[IPv4]:
    """Split `packet` into fragments of at most `mtu` bytes each (RFC 791 3.2, "An Example
    Fragmentation Procedure"); `[packet]` if it fits. The first fragment keeps every option, later
    ones only those with the copied flag. A fragment can be fragmented again.

    Raises FragmentationNeeded if DF is set and the packet does not fit; ValueError if mtu < 68.
    """
    hl = packet.header_length
    payload = packet.payload
    n = len(payload)
    if hl + n <= mtu:
        return [packet]
    if packet.df:
        raise FragmentationNeeded(mtu)
    if mtu < _IPV4_MIN_MTU:
        raise ValueError(f"ipv4: mtu {mtu} < 68 (RFC 791)")
    later_options = tuple(o for o in packet.options if o.kind & 0x80)
    later_hl = 20 + len(_encode_options(later_options)) if later_options else 20
    base = packet.frag_offset << 3
    first_chunk = (mtu - hl) & ~7
    later_chunk = (mtu - later_hl) & ~7
    out = []
    pos = 0
    while pos < n:
        end = min(pos + (first_chunk if pos == 0 else later_chunk), n)
        last = end == n
        out.append(
            IPv4(
                packet.src,
                packet.dst,
                packet.proto,
                payload[pos:end],
                packet.ttl,
                packet.tos,
                packet.identification,
                False,
                packet.mf or not last,
                (base + pos) >> 3,
                packet.options if pos == 0 else later_options,
            )
        )
        pos = end
    return out


class _Partial:
    """A datagram being reassembled: disjoint pieces sorted by offset."""

    __slots__ = ("first_ns", "starts", "ends", "datas", "received", "total", "max_end", "head")

    def __init__(self, now_ns: int) -> None:
        self.first_ns = now_ns
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.datas: list[bytes] = []
        self.received = 0
        self.total: int | None = None  # known once the last fragment (MF=0) arrives
        self.max_end = 0
        self.head: IPv4 | None = None  # the fragment at offset 0: header fields and options


class Reassembler:
    """IPv4 reassembly (RFC 791 3.2), keyed by (src, dst, protocol, identification).

    Out-of-order and exact duplicate fragments are fine. Any other overlap drops the whole datagram,
    as RFC 5722 requires for IPv6 and Linux does for IPv4 (overlaps are how fragment attacks evade
    inspection). A partial datagram older than `timeout_ns` (since its first fragment) is dropped.
    `completed` counts reassembled datagrams, `dropped` discarded partial datagrams, and
    `drops` the discards by reason. `now_ns` must not decrease between calls.
    """

    def __init__(self, timeout_ns: int = 30_000_000_000) -> None:
        if timeout_ns <= 0:
            raise ValueError(f"reassembly timeout_ns must be > 0, got {timeout_ns}")
        self.timeout_ns = timeout_ns
        self.completed = 0
        self.dropped = 0
        self.drops: dict[str, int] = {}
        self._partials: dict[tuple[IPv4Address, IPv4Address, int, int], _Partial] = {}

    @property
    def pending(self) -> int:
        """Partial datagrams held."""
        return len(self._partials)

    def _drop(self, key: tuple, reason: str) -> None:
        del self._partials[key]
        self.dropped += 1
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def add(self, packet: IPv4, now_ns: int) -> IPv4 | None:
        """Take one datagram; return the whole datagram once complete (at once if not a fragment)."""
        if not packet.mf and packet.frag_offset == 0:
            return packet
        key = (packet.src, packet.dst, packet.proto, packet.identification)
        partials = self._partials
        p = partials.get(key)
        if p is not None and now_ns - p.first_ns >= self.timeout_ns:
            self._drop(key, "timeout")
            p = None
        if p is None:
            p = partials[key] = _Partial(now_ns)
        data = packet.payload
        start = packet.frag_offset << 3
        end = start + len(data)
        if packet.mf and (not data or len(data) & 7):
            # RFC 791: every fragment but the last carries a multiple of 8 data bytes
            self._drop(key, "bad-length")
            return None
        if end > 0xFFFF - 20:
            self._drop(key, "oversize")  # the "ping of death": more than 65535 bytes reassembled
            return None
        if packet.mf:
            if p.total is not None and end > p.total:
                self._drop(key, "beyond-end")
                return None
        else:
            if (p.total is not None and p.total != end) or p.max_end > end:
                self._drop(key, "beyond-end")
                return None
            p.total = end
        starts = p.starts
        i = bisect_left(starts, start)
        if i < len(starts) and starts[i] == start and p.ends[i] == end:
            return None  # exact duplicate: ignore it, keep the datagram
        if (i > 0 and p.ends[i - 1] > start) or (i < len(starts) and starts[i] < end):
            self._drop(key, "overlap")
            return None
        starts.insert(i, start)
        p.ends.insert(i, end)
        p.datas.insert(i, data)
        p.received += len(data)
        if end > p.max_end:
            p.max_end = end
        if start == 0:
            p.head = packet
        if p.total is None or p.received != p.total:
            return None
        # Disjoint pieces inside [0, total) adding up to total cover it: complete.
        head = p.head
        assert head is not None
        if head.header_length + p.total > 0xFFFF:
            self._drop(key, "oversize")
            return None
        del partials[key]
        self.completed += 1
        return IPv4(
            head.src,
            head.dst,
            head.proto,
            b"".join(p.datas),
            head.ttl,
            head.tos,
            head.identification,
            head.df,
            False,
            0,
            head.options,
        )

    def expire(self, now_ns: int) -> int:
        """Drop partial datagrams whose timer ran out; return how many."""
        partials = self._partials
        expired = []
        for key, p in partials.items():  # insertion order is arrival order of first fragments
            if now_ns - p.first_ns < self.timeout_ns:
                break
            expired.append(key)
        for key in expired:
            self._drop(key, "timeout")
        return len(expired)


# --- IPv6 (RFC 8200), fixed header -----------------------------------------------------------------


@_fast_init
@dataclass(frozen=True, slots=True)
class IPv6:
    src: IPv6Address
    dst: IPv6Address
    next_header: int
    payload: bytes
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    def encode(self) -> bytes:
        n = len(self.payload)
        if n > 0xFFFF:
            raise ValueError(f"ipv6: payload length {n} exceeds 65535 (jumbograms unsupported)")
        tc = self.traffic_class
        fl = self.flow_label
        if not 0 <= tc <= 0xFF or not 0 <= fl <= 0xFFFFF:
            raise ValueError("ipv6: traffic_class is 8 bits, flow_label 20 bits")
        try:
            return (
                _IPV6.pack(
                    0x60000000 | (tc << 20) | fl, n, self.next_header, self.hop_limit, self.src.packed,
                    self.dst.packed,
                )
                + self.payload
            )
        except struct.error as e:
            raise ValueError(f"ipv6: field out of range: {e}") from None

    @classmethod
    def decode(cls, data: bytes) -> IPv6:
        """Decode a packet; bytes beyond the payload length are link padding and ignored."""
        n = len(data)
        if n < 40:
            raise DecodeError("ipv6", "header", 0, f"truncated: {n} bytes, need 40")
        vtf, plen, nh, hlim, src, dst = _IPV6.unpack_from(data)
        if vtf >> 28 != 6:
            raise DecodeError("ipv6", "version", 0, f"version {vtf >> 28} is not 6")
        if 40 + plen > n:
            reason = f"payload length {plen} exceeds the {n - 40} bytes given"
            raise DecodeError("ipv6", "payload_length", 4, reason)
        tc = (vtf >> 20) & 0xFF
        return cls(IPv6Address(src), IPv6Address(dst), nh, data[40 : 40 + plen], hlim, tc, vtf & 0xFFFFF)


# --- ICMPv4 (RFC 792) ------------------------------------------------------------------------------


@_fast_init
@dataclass(frozen=True, slots=True)
class ICMPv4:
    type: int
    code: int
    rest: bytes  # the 4 bytes after the checksum: ident+seq, unused+next-hop MTU, pointer, gateway
    payload: bytes

    @classmethod
    def echo_request(cls, ident: int, seq: int, data: bytes = b"") -> ICMPv4:
        return cls(ICMP_ECHO_REQUEST, 0, _H.pack(ident) + _H.pack(seq), data)

    @classmethod
    def echo_reply(cls, ident: int, seq: int, data: bytes = b"") -> ICMPv4:
        return cls(ICMP_ECHO_REPLY, 0, _H.pack(ident) + _H.pack(seq), data)

    @classmethod
    def dest_unreachable(cls, code: int, original: bytes, next_hop_mtu: int = 0) -> ICMPv4:
        """Destination unreachable quoting `original`, the offending datagram: its header and the
        first 8 bytes of its payload are kept (RFC 792); the next-hop MTU goes in for code 4 (RFC 1191)."""
        return cls(ICMP_DEST_UNREACH, code, b"\x00\x00" + _H.pack(next_hop_mtu), _quote(original))

    @classmethod
    def time_exceeded(cls, code: int, original: bytes) -> ICMPv4:
        """Time exceeded (code 0: TTL in transit, 1: reassembly) quoting `original` as RFC 792 says."""
        return cls(ICMP_TIME_EXCEEDED, code, b"\x00\x00\x00\x00", _quote(original))

    @property
    def ident(self) -> int:
        return (self.rest[0] << 8) | self.rest[1]

    @property
    def seq(self) -> int:
        return (self.rest[2] << 8) | self.rest[3]

    @property
    def next_hop_mtu(self) -> int:
        return (self.rest[2] << 8) | self.rest[3]

    def encode(self) -> bytes:
        if len(self.rest) != 4:
            raise ValueError(f"icmpv4: rest is 4 bytes, got {len(self.rest)}")
        t = self.type
        c = self.code
        payload = self.payload
        s = (t << 8) + c + _from_bytes(self.rest)
        if len(payload) & 1:
            s += _from_bytes(payload) << 8
        else:
            s += _from_bytes(payload)
        try:
            return _ICMP.pack(t, c, checksum_of_sum(s), self.rest) + payload
        except struct.error as e:
            raise ValueError(f"icmpv4: field out of range: {e}") from None

    @classmethod
    def decode(cls, data: bytes, verify: bool = True) -> ICMPv4:
        n = len(data)
        if n < 8:
            raise DecodeError("icmpv4", "header", 0, f"truncated: {n} bytes, need 8")
        if verify:
            s = _from_bytes(data) << 8 if n & 1 else _from_bytes(data)
            if s % 0xFFFF or not s:
                csum = (data[2] << 8) | data[3]
                expected = internet_checksum(data[:2] + b"\0\0" + data[4:])
                raise DecodeError("icmpv4", "checksum", 2, f"checksum {csum:#06x}, expected {expected:#06x}")
        return cls(data[0], data[1], data[4:8], data[8:])


def _quote(original: bytes) -> bytes:
    if not original:
        return b""
    ihl = (original[0] & 0x0F) << 2
    return original[: max(ihl, 20) + 8]


# --- UDP (RFC 768) ---------------------------------------------------------------------------------


@_fast_init
@dataclass(frozen=True, slots=True)
class UDP:
    src_port: int
    dst_port: int
    payload: bytes

    def encode(self, src_ip: IPv4Address | IPv6Address, dst_ip: IPv4Address | IPv6Address) -> bytes:
        """The datagram with its checksum over the IPv4 or IPv6 pseudo-header, by the address type."""
        payload = self.payload
        n = len(payload)
        length = 8 + n
        if length > 0xFFFF:
            raise ValueError(f"udp: length {length} exceeds 65535")
        if type(src_ip) is IPv4Address and type(dst_ip) is IPv4Address:
            s = src_ip._ip + dst_ip._ip  # int(address) calls the Python-level __int__, which returns this
        elif isinstance(src_ip, IPv4Address) is not isinstance(dst_ip, IPv4Address):
            raise ValueError("udp: src_ip and dst_ip must both be IPv4 or both IPv6")
        else:
            s = int(src_ip) + int(dst_ip)
        sp = self.src_port
        dp = self.dst_port
        # pseudo-header (an address as an int is congruent to its word sum) + header, length twice
        s += IPPROTO_UDP + sp + dp + length + length
        s += _from_bytes(payload) << 8 if n & 1 else _from_bytes(payload)
        # checksum_of_sum inlined (the sum holds the length, so it is never 0); RFC 768 and
        # RFC 8200 8.1: a computed zero is sent as all ones, as zero means "no checksum".
        s %= 0xFFFF
        try:
            return _UDP.pack(sp, dp, length, 0xFFFF - s if s else 0xFFFF) + payload
        except struct.error as e:
            raise ValueError(f"udp: port out of range: {e}") from None

    @classmethod
    def decode(
        cls,
        data: bytes,
        src_ip: IPv4Address | IPv6Address | None = None,
        dst_ip: IPv4Address | IPv6Address | None = None,
        verify: bool = True,
    ) -> UDP:
        """Decode a datagram; the checksum is verified when both addresses are given. Bytes beyond
        the length field are ignored (IP or link padding)."""
        n = len(data)
        if n < 8:
            raise DecodeError("udp", "header", 0, f"truncated: {n} bytes, need 8")
        sp, dp, length, csum = _UDP.unpack_from(data)
        if length < 8:
            raise DecodeError("udp", "length", 4, f"length {length} < 8")
        if length > n:
            raise DecodeError("udp", "length", 4, f"length {length} exceeds the {n} bytes given")
        payload = data[8:length]
        if verify and type(src_ip) is IPv4Address and type(dst_ip) is IPv4Address:
            # The common case, summed as below but over the datagram's own bytes (header with its
            # checksum field, then payload: one int.from_bytes; the header is 8 bytes, so an odd
            # payload keeps its alignment) plus the pseudo-header. `_ip` is what int(address)
            # returns, without the Python-level __int__ call. A zero checksum means none (IPv4).
            if csum:
                s = src_ip._ip + dst_ip._ip + IPPROTO_UDP + length
                s += _from_bytes(data[:length]) << 8 if length & 1 else _from_bytes(data[:length])
                if s % 0xFFFF:  # the sum holds the length, so it is never 0 (see checksum.sum_ok)
                    _bad_udp_checksum(src_ip, dst_ip, sp, dp, length, csum, payload)
        elif verify and src_ip is not None and dst_ip is not None:
            v4 = isinstance(src_ip, IPv4Address)
            if v4 is not isinstance(dst_ip, IPv4Address):
                raise ValueError("udp: src_ip and dst_ip must both be IPv4 or both IPv6")
            if csum == 0:
                if not v4:
                    raise DecodeError("udp", "checksum", 6, "zero checksum over IPv6 (RFC 8200 8.1)")
            else:
                s = int(src_ip) + int(dst_ip) + IPPROTO_UDP + sp + dp + length + length + csum
                s += _from_bytes(payload) << 8 if len(payload) & 1 else _from_bytes(payload)
                if s % 0xFFFF or not s:
                    _bad_udp_checksum(src_ip, dst_ip, sp, dp, length, csum, payload)
        return (UDP._make if cls is UDP else cls)(sp, dp, payload)


def _bad_udp_checksum(src_ip, dst_ip, sp: int, dp: int, length: int, csum: int, payload: bytes):
    """Raise the DecodeError for a UDP checksum that does not verify, with the expected value."""
    s = int(src_ip) + int(dst_ip) + IPPROTO_UDP + sp + dp + length + length
    s += _from_bytes(payload) << 8 if len(payload) & 1 else _from_bytes(payload)
    expected = checksum_of_sum(s) or 0xFFFF
    raise DecodeError("udp", "checksum", 6, f"checksum {csum:#06x}, expected {expected:#06x}")
