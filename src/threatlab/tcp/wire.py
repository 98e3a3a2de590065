"""TCP segment codec (RFC 9293 3.1) with the options threatlab's analyses need.

`TcpSegment` is a frozen, slotted dataclass; `encode(src_ip, dst_ip)` gives the wire bytes with the
checksum over the IPv4 or IPv6 pseudo-header (chosen by the address type) and
`TcpSegment.decode(data, src_ip, dst_ip)` gives the segment back, verifying the checksum when both
addresses are given. Bad bytes raise only `DecodeError("tcp", field, offset, reason)`; field values
that cannot be encoded raise `ValueError`.

Options: MSS (RFC 9293 3.2), Window Scale and Timestamps (RFC 7323), SACK-Permitted and SACK
(RFC 2018), the MD5 signature (RFC 2385), NOP, and `UnknownOption` for any other kind. EOL (kind 0)
only ends the option list and pads it to a 32-bit boundary; it never appears as an option object.
A known option with a wrong length is a decode error rather than an `UnknownOption`, so that
`decode(encode(x)) == x` holds and a malformed MSS never reaches an endpoint.

The segment is the whole buffer handed to `decode`: TCP has no length field, the IP layer gives it.
The reserved header bits (RFC 9293: "must be zero in generated segments and must be ignored in
received segments") are ignored on decode and sent as zero.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntFlag
from ipaddress import IPv4Address, IPv6Address

from threatlab.errors import DecodeError
from threatlab.net.wire import IPPROTO_TCP, internet_checksum, pseudo_header_v4, pseudo_header_v6

__all__ = [
    "HEADER_LEN",
    "MAX_OPTIONS_LEN",
    "MSS",
    "IPAddress",
    "Md5Signature",
    "Nop",
    "Sack",
    "SackPermitted",
    "TcpFlags",
    "TcpOption",
    "TcpSegment",
    "Timestamps",
    "UnknownOption",
    "WindowScale",
    "encode_options",
    "md5_signature",
    "new_segment",
    "pseudo_sum",
    "sign_md5",
    "verify_md5",
]

IPAddress = IPv4Address | IPv6Address

HEADER_LEN = 20
MAX_OPTIONS_LEN = 40  # data offset is 4 bits: at most 15 words of header

_HDR = struct.Struct("!HHIIBBHHH")
_H = struct.Struct("!H")
_I = struct.Struct("!I")
_II = struct.Struct("!II")


class TcpFlags(IntFlag):
    """The eight control bits of RFC 9293 3.1 (ECE and CWR from RFC 3168)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


# Every flag combination built once: constructing an IntFlag per decoded segment costs ~0.5 us.
_FLAGS: tuple[TcpFlags, ...] = tuple(TcpFlags(i) for i in range(256))

# --- options ---------------------------------------------------------------------------------------

KIND_EOL = 0
KIND_NOP = 1
KIND_MSS = 2
KIND_WSCALE = 3
KIND_SACK_PERMITTED = 4
KIND_SACK = 5
KIND_TIMESTAMPS = 8
KIND_MD5 = 19
_KNOWN_KINDS = frozenset(
    {KIND_EOL, KIND_NOP, KIND_MSS, KIND_WSCALE, KIND_SACK_PERMITTED, KIND_SACK, KIND_TIMESTAMPS, KIND_MD5}
)


@dataclass(frozen=True, slots=True)
class MSS:
    """Maximum segment size (RFC 9293 3.7.1); only in SYN segments."""

    value: int


@dataclass(frozen=True, slots=True)
class WindowScale:
    """Window scale shift count (RFC 7323 2.2); a receiver uses at most 14."""

    shift: int


@dataclass(frozen=True, slots=True)
class SackPermitted:
    """SACK-permitted (RFC 2018 2)."""


@dataclass(frozen=True, slots=True)
class Sack:
    """SACK blocks (RFC 2018 3): (left edge, right edge) pairs, one to four of them."""

    blocks: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Timestamps:
    """TSval and TSecr (RFC 7323 3.2)."""

    tsval: int
    tsecr: int


@dataclass(frozen=True, slots=True)
class Md5Signature:
    """The 16-byte MD5 digest of RFC 2385 (kind 19, length 18)."""

    digest: bytes


@dataclass(frozen=True, slots=True)
class Nop:
    """No-operation, used to align later options."""


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """Any other option kind, kept as its raw data (length = 2 + len(data))."""

    kind: int
    data: bytes = b""


TcpOption = MSS | WindowScale | SackPermitted | Sack | Timestamps | Md5Signature | Nop | UnknownOption

_NOP = Nop()
_SACK_PERMITTED = SackPermitted()


def _encode_option(o: TcpOption) -> bytes:
    t = type(o)
    try:
        if t is Nop:
            return b"\x01"
        if t is MSS:
            return b"\x02\x04" + _H.pack(o.value)
        if t is WindowScale:
            if not 0 <= o.shift <= 255:
                raise ValueError(f"tcp: window scale shift {o.shift} is not a byte")
            return bytes((KIND_WSCALE, 3, o.shift))
        if t is SackPermitted:
            return b"\x04\x02"
        if t is Timestamps:
            return b"\x08\x0a" + _II.pack(o.tsval, o.tsecr)
        if t is Md5Signature:
            if len(o.digest) != 16:
                raise ValueError(f"tcp: MD5 digest is 16 bytes, got {len(o.digest)}")
            return b"\x13\x12" + bytes(o.digest)
        if t is Sack:
            n = len(o.blocks)
            if not 1 <= n <= 4:
                raise ValueError(f"tcp: SACK carries 1..4 blocks, got {n}")
            return bytes((KIND_SACK, 2 + 8 * n)) + b"".join(_II.pack(le, re) for le, re in o.blocks)
        if t is UnknownOption:
            if o.kind in _KNOWN_KINDS or not 0 <= o.kind <= 255:
                raise ValueError(f"tcp: UnknownOption kind {o.kind} must be a byte and not a known kind")
            if len(o.data) > MAX_OPTIONS_LEN - 2:
                raise ValueError(f"tcp: option data of {len(o.data)} bytes exceeds 38")
            return bytes((o.kind, 2 + len(o.data))) + bytes(o.data)
    except struct.error as e:
        raise ValueError(f"tcp: option field out of range: {e}") from None
    raise ValueError(f"tcp: not a TCP option: {o!r}")


def encode_options(options: tuple[TcpOption, ...]) -> bytes:
    """The option bytes padded with EOL/zeros to a 32-bit boundary; ValueError beyond 40 bytes."""
    raw = b"".join([_encode_option(o) for o in options])
    pad = -len(raw) & 3
    if pad:
        raw += bytes(pad)
    if len(raw) > MAX_OPTIONS_LEN:
        raise ValueError(f"tcp: options take {len(raw)} bytes, at most 40 fit")
    return raw


def _decode_options(data: bytes, end: int) -> tuple[TcpOption, ...]:
    opts: list[TcpOption] = []
    i = HEADER_LEN
    while i < end:
        kind = data[i]
        if kind == KIND_EOL:  # the rest of the header is padding
            break
        if kind == KIND_NOP:
            opts.append(_NOP)
            i += 1
            continue
        if i + 1 >= end:
            raise DecodeError("tcp", "options", i, f"option {kind} has no length byte")
        ln = data[i + 1]
        if ln < 2:
            raise DecodeError("tcp", "options", i + 1, f"option {kind} length {ln} < 2")
        if i + ln > end:
            raise DecodeError("tcp", "options", i + 1, f"option {kind} length {ln} runs past the header")
        if kind == KIND_MSS:
            if ln != 4:
                raise DecodeError("tcp", "mss", i + 1, f"MSS option length {ln}, must be 4")
            opts.append(MSS((data[i + 2] << 8) | data[i + 3]))
        elif kind == KIND_WSCALE:
            if ln != 3:
                raise DecodeError("tcp", "window_scale", i + 1, f"window scale option length {ln}, must be 3")
            opts.append(WindowScale(data[i + 2]))
        elif kind == KIND_SACK_PERMITTED:
            if ln != 2:
                raise DecodeError("tcp", "sack_permitted", i + 1, f"SACK-permitted length {ln}, must be 2")
            opts.append(_SACK_PERMITTED)
        elif kind == KIND_TIMESTAMPS:
            if ln != 10:
                raise DecodeError("tcp", "timestamps", i + 1, f"timestamps option length {ln}, must be 10")
            opts.append(Timestamps(*_II.unpack_from(data, i + 2)))
        elif kind == KIND_MD5:
            if ln != 18:
                raise DecodeError("tcp", "md5_signature", i + 1, f"MD5 signature length {ln}, must be 18")
            opts.append(Md5Signature(bytes(data[i + 2 : i + 18])))
        elif kind == KIND_SACK:
            if ln < 10 or (ln - 2) & 7:
                raise DecodeError("tcp", "sack", i + 1, f"SACK option length {ln}, must be 2 + 8n, n >= 1")
            opts.append(Sack(tuple(_II.unpack_from(data, j) for j in range(i + 2, i + ln, 8))))
        else:
            opts.append(UnknownOption(kind, bytes(data[i + 2 : i + ln])))
        i += ln
    return tuple(opts)


# --- checksum ---------------------------------------------------------------------------------------


def pseudo_sum(src_ip: IPAddress, dst_ip: IPAddress) -> int:
    """Running sum of the TCP pseudo-header without its length: an address taken as an integer is
    congruent (mod 0xffff) to the sum of its 16-bit words, so no pseudo-header bytes are built.
    Add the TCP length and pass it as `initial` to `internet_checksum`."""
    if isinstance(src_ip, IPv4Address) is not isinstance(dst_ip, IPv4Address):
        raise ValueError("tcp: src_ip and dst_ip must both be IPv4 or both IPv6")
    return int(src_ip) + int(dst_ip) + IPPROTO_TCP


# --- the segment ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TcpSegment:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int = 65535
    urgent: int = 0
    options: tuple[TcpOption, ...] = ()
    payload: bytes = b""

    @property
    def seg_len(self) -> int:
        """SEG.LEN: the sequence space the segment occupies (payload, SYN and FIN). Not `__len__`,
        so that a bare ACK is not falsy."""
        f = int(self.flags)
        return len(self.payload) + (f & 1) + ((f >> 1) & 1)

    def option(self, kind: type) -> TcpOption | None:
        """The first option of the given class, or None."""
        for o in self.options:
            if type(o) is kind:
                return o
        return None

    def header_bytes(self, checksum: int = 0) -> tuple[bytes, bytes]:
        """(fixed 20-byte header with the given checksum, padded option bytes)."""
        opts = encode_options(self.options) if self.options else b""
        try:
            hdr = _HDR.pack(
                self.src_port,
                self.dst_port,
                self.seq,
                self.ack,
                (5 + (len(opts) >> 2)) << 4,
                int(self.flags),
                self.window,
                checksum,
                self.urgent,
            )
        except struct.error as e:
            raise ValueError(f"tcp: field out of range: {e}") from None
        return hdr, opts

    def encode(self, src_ip: IPAddress, dst_ip: IPAddress) -> bytes:
        """The segment bytes with the checksum over the pseudo-header of `src_ip` -> `dst_ip`."""
        hdr, opts = self.header_bytes()
        raw = hdr + opts + self.payload
        if len(raw) > 0xFFFF:
            raise ValueError(f"tcp: segment of {len(raw)} bytes exceeds 65535")
        c = internet_checksum(raw, pseudo_sum(src_ip, dst_ip) + len(raw))
        return raw[:16] + _H.pack(c) + raw[18:]

    @classmethod
    def decode(
        cls,
        data: bytes,
        src_ip: IPAddress | None = None,
        dst_ip: IPAddress | None = None,
        verify: bool = True,
    ) -> TcpSegment:
        """Decode a segment; the checksum is verified when both addresses are given and `verify`."""
        n = len(data)
        if n < HEADER_LEN:
            raise DecodeError("tcp", "header", 0, f"truncated: {n} bytes, need 20")
        sp, dp, seq, ack, off, fl, win, csum, urg = _HDR.unpack_from(data)
        hl = (off >> 4) << 2
        if hl < HEADER_LEN:
            raise DecodeError("tcp", "data_offset", 12, f"data offset {hl >> 2} < 5")
        if hl > n:
            raise DecodeError("tcp", "data_offset", 12, f"header length {hl} exceeds the {n} bytes given")
        if verify and src_ip is not None and dst_ip is not None:
            try:
                ps = pseudo_sum(src_ip, dst_ip)
            except ValueError:
                raise DecodeError("tcp", "checksum", 16, "src_ip and dst_ip of different families") from None
            if internet_checksum(data, ps + n) != 0:
                raise DecodeError(
                    "tcp",
                    "checksum",
                    16,
                    f"checksum {csum:#06x}, expected {internet_checksum(data[:16] + data[18:], ps + n):#06x}",
                )
        options = _decode_options(data, hl) if hl > HEADER_LEN else ()
        return new_segment(sp, dp, seq, ack, _FLAGS[fl], win, urg, options, bytes(data[hl:]))


# A frozen dataclass's __init__ sets each field through object.__setattr__ (1.6 us for nine fields);
# setting the slots through their member descriptors builds the same frozen object in 0.6 us. Used on
# the hot paths (decode, the endpoint's own segments); the public constructor is the dataclass's.
_new = object.__new__
(_s_sp, _s_dp, _s_seq, _s_ack, _s_fl, _s_win, _s_urg, _s_opts, _s_pl) = [
    TcpSegment.__dict__[f].__set__
    for f in ("src_port", "dst_port", "seq", "ack", "flags", "window", "urgent", "options", "payload")
]


def new_segment(
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: TcpFlags,
    window: int,
    urgent: int,
    options: tuple[TcpOption, ...],
    payload: bytes,
) -> TcpSegment:
    """`TcpSegment(...)` with every field given, without the frozen-dataclass __init__ cost."""
    o = _new(TcpSegment)
    _s_sp(o, src_port)
    _s_dp(o, dst_port)
    _s_seq(o, seq)
    _s_ack(o, ack)
    _s_fl(o, flags)
    _s_win(o, window)
    _s_urg(o, urgent)
    _s_opts(o, options)
    _s_pl(o, payload)
    return o


# --- RFC 2385 ---------------------------------------------------------------------------------------


def _md5_pseudo_header(src_ip: IPAddress, dst_ip: IPAddress, length: int) -> bytes:
    if isinstance(src_ip, IPv4Address) and isinstance(dst_ip, IPv4Address):
        return pseudo_header_v4(src_ip, dst_ip, IPPROTO_TCP, length)
    if isinstance(src_ip, IPv6Address) and isinstance(dst_ip, IPv6Address):
        # RFC 2385 names only IPv4; Linux and the BSDs use the RFC 2460 pseudo-header for IPv6.
        return pseudo_header_v6(src_ip, dst_ip, IPPROTO_TCP, length)
    raise ValueError("tcp: src_ip and dst_ip must both be IPv4 or both IPv6")


def md5_signature(src_ip: IPAddress, dst_ip: IPAddress, segment: TcpSegment | bytes, key: bytes) -> bytes:
    """The RFC 2385 section 2.0 digest of a segment: MD5 over, in order,
    1. the pseudo-header (source address, destination address, zero-padded protocol, segment length),
    2. the TCP header excluding options, with a checksum of zero,
    3. the segment data,
    4. the key.

    `segment` is a `TcpSegment` (its options must already include the `Md5Signature` option, whose
    digest value does not matter, so that the data offset and segment length are the ones sent) or
    the segment's wire bytes as received. The segment length is the whole TCP length, options
    included, as Linux computes it.
    """
    if isinstance(segment, TcpSegment):
        hdr, opts = segment.header_bytes()
        payload = segment.payload
        length = len(hdr) + len(opts) + len(payload)
    else:
        data = segment
        length = len(data)
        hl = (data[12] >> 4) << 2
        hdr = bytes(data[:16]) + b"\x00\x00" + bytes(data[18:20])
        payload = bytes(data[hl:])
    return hashlib.md5(_md5_pseudo_header(src_ip, dst_ip, length) + hdr + payload + key).digest()


_MD5_PLACEHOLDER = Md5Signature(bytes(16))


def sign_md5(segment: TcpSegment, src_ip: IPAddress, dst_ip: IPAddress, key: bytes) -> TcpSegment:
    """`segment` with its MD5 signature option filled in; if it has none, NOP NOP MD5 is put first
    (20 bytes, the layout Linux sends)."""
    opts = segment.options
    idx = next((i for i, o in enumerate(opts) if type(o) is Md5Signature), None)
    if idx is None:
        opts = (_NOP, _NOP, _MD5_PLACEHOLDER) + opts
        idx = 2
    else:
        opts = opts[:idx] + (_MD5_PLACEHOLDER,) + opts[idx + 1 :]
    placeholder = new_segment(
        segment.src_port,
        segment.dst_port,
        segment.seq,
        segment.ack,
        segment.flags,
        segment.window,
        segment.urgent,
        opts,
        segment.payload,
    )
    digest = md5_signature(src_ip, dst_ip, placeholder, key)
    opts = opts[:idx] + (Md5Signature(digest),) + opts[idx + 1 :]
    return new_segment(
        segment.src_port,
        segment.dst_port,
        segment.seq,
        segment.ack,
        segment.flags,
        segment.window,
        segment.urgent,
        opts,
        segment.payload,
    )


def verify_md5(
    segment: TcpSegment, src_ip: IPAddress, dst_ip: IPAddress, key: bytes, raw: bytes | None = None
) -> bool:
    """Whether `segment` carries an MD5 signature option that matches `key` (RFC 2385 2.0).
    With `raw`, the digest is computed over the bytes as received."""
    opt = segment.option(Md5Signature)
    if opt is None:
        return False
    expected = md5_signature(src_ip, dst_ip, raw if raw is not None else segment, key)
    return hmac.compare_digest(expected, opt.digest)
