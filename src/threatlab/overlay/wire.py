"""Overlay message codec: bytes <-> `Message`, laid out as RELOAD (RFC 6940 section 6.3).

A message is a forwarding header (6.3.2), the message contents (6.3.3: a message code, a body and
extensions) and a security block (6.3.4: certificates and one signature). The bodies are RELOAD's
for Probe, Attach, Store, Fetch, Join, Leave, Update, RouteQuery, Ping and Error, with the Chord
topology plugin's overlay-specific parts (section 10: ChordUpdate, ChordRouteQueryAns,
ChordLeaveData). Stored data (6.4.1) carries the single-value, array and dictionary data models;
which model a Kind uses is in `KINDS`, as a RELOAD node learns it from the overlay configuration.

Integers are big-endian; Node-IDs and Resource-IDs are 128-bit (16 bytes). The encoding is RFC
6940's byte for byte, so Wireshark's RELOAD dissector reads it (tests cross-check with tshark).
What threatlab does not implement is an explicit error, never a silent fallback: fragmented
messages, compressed destinations, ICE candidates in Attach and Kinds missing from `KINDS` raise.

`Message.decode(data)` raises only `DecodeError("overlay", field, offset, reason)`, and trailing
bytes anywhere (after the message, inside a length-delimited body) are an error.
`Message.decode(m.encode()) == m`.

Forwarding peers need only the header: `decode_header(data)` reads it and `forward_bytes` writes a
new header in front of the unchanged contents and security block, as a RELOAD peer forwards a
message without parsing its body (6.1.2).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Union, get_args

from threatlab.errors import DecodeError

__all__ = [
    "RELO_TOKEN",
    "VERSION",
    "FRAGMENT_UNFRAGMENTED",
    "DEFAULT_TTL",
    "MessageCode",
    "ErrorCode",
    "DestinationType",
    "NodeDest",
    "ResourceDest",
    "OpaqueDest",
    "Destination",
    "ForwardingOption",
    "ForwardingHeader",
    "Extension",
    "CertificateType",
    "GenericCertificate",
    "SignerIdentityType",
    "SignerIdentity",
    "Signature",
    "SecurityBlock",
    "UNSIGNED",
    "HashAlgorithm",
    "SignatureAlgorithm",
    "DataModel",
    "Kind",
    "KINDS",
    "DataValue",
    "ArrayEntry",
    "DictionaryEntry",
    "StoredData",
    "StoreKindData",
    "StoreReq",
    "StoreKindResponse",
    "StoreAns",
    "StoredDataSpecifier",
    "FetchReq",
    "FetchKindResponse",
    "FetchAns",
    "ProbeInformationType",
    "ProbeInformation",
    "ProbeReq",
    "ProbeAns",
    "AttachReq",
    "AttachAns",
    "JoinReq",
    "JoinAns",
    "ChordLeaveType",
    "LeaveReq",
    "LeaveAns",
    "ChordUpdateType",
    "UpdateReq",
    "UpdateAns",
    "RouteQueryReq",
    "RouteQueryAns",
    "PingReq",
    "PingAns",
    "ErrorResponse",
    "Body",
    "BODIES",
    "Message",
    "HeaderInfo",
    "decode_header",
    "forward_bytes",
    "encode_header",
    "encode_contents",
    "decode_rest",
    "signature_input",
    "stored_data_signature_input",
    "encode_signer_identity",
    "is_request",
    "SIP_REGISTRATION",
    "CERTIFICATE_BY_NODE",
    "CERTIFICATE_BY_USER",
]

RELO_TOKEN = 0xD2454C4F  # "\xd2ELO" (6.3.2.1)
VERSION = 0x0A  # 1.0
# 6.3.2.1: the high bit is always set (historical); the next one marks the last (or only) fragment
FRAGMENT_UNFRAGMENTED = 0xC0000000
DEFAULT_TTL = 100  # 11.1: initial-ttl default
_P = "overlay"

_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
# relo_token overlay configuration_sequence version ttl fragment length transaction_id
# max_response_length via_list_length destination_list_length options_length
_FWD = struct.Struct("!IIHBBIIQIHHH")
_FWD_LEN = _FWD.size  # 38
_FWD_LENGTH_AT = 16  # offset of the `length` field


def _err(field: str, offset: int, reason: str) -> DecodeError:
    return DecodeError(_P, field, offset, reason)


class _Reader:
    """Bounds-checked reads from data[pos:end]; every failure names the field and its offset."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def need(self, n: int, field: str) -> int:
        p = self.pos
        if p + n > self.end:
            raise _err(field, p, f"needs {n} bytes, {self.end - p} left")
        self.pos = p + n
        return p

    def u8(self, field: str) -> int:
        p = self.need(1, field)
        return self.data[p]

    def u16(self, field: str) -> int:
        p = self.need(2, field)
        return _U16.unpack_from(self.data, p)[0]

    def u32(self, field: str) -> int:
        p = self.need(4, field)
        return _U32.unpack_from(self.data, p)[0]

    def u64(self, field: str) -> int:
        p = self.need(8, field)
        return _U64.unpack_from(self.data, p)[0]

    def boolean(self, field: str) -> bool:
        p = self.pos
        v = self.u8(field)
        if v > 1:
            raise _err(field, p, f"Boolean is {v}, must be 0 or 1")
        return bool(v)

    def raw(self, n: int, field: str) -> bytes:
        p = self.need(n, field)
        return bytes(self.data[p : p + n])

    def opaque(self, len_bytes: int, field: str) -> bytes:
        n = self._length(len_bytes, field)
        return self.raw(n, field)

    def node_id(self, field: str) -> int:
        p = self.need(16, field)
        return int.from_bytes(self.data[p : p + 16], "big")

    def resource_id(self, field: str) -> int:
        p = self.pos
        n = self.u8(field)
        if n != 16:
            raise _err(field, p, f"Resource-ID of {n} bytes; this overlay's are 16")
        return self.node_id(field)

    def sub(self, len_bytes: int, field: str) -> _Reader:
        """A reader over a length-prefixed vector; the caller must consume it exactly."""
        n = self._length(len_bytes, field)
        p = self.need(n, field)
        return _Reader(self.data, p, p + n)

    def done(self, field: str) -> None:
        if self.pos != self.end:
            raise _err(field, self.pos, f"{self.end - self.pos} trailing bytes")

    def more(self) -> bool:
        return self.pos < self.end

    def _length(self, len_bytes: int, field: str) -> int:
        if len_bytes == 1:
            return self.u8(field)
        if len_bytes == 2:
            return self.u16(field)
        if len_bytes == 3:
            p = self.need(3, field)
            return int.from_bytes(self.data[p : p + 3], "big")
        return self.u32(field)


def _vec(payload: bytes, len_bytes: int) -> bytes:
    return len(payload).to_bytes(len_bytes, "big") + payload


def _nid(x: int) -> bytes:
    return x.to_bytes(16, "big")


def _nids(ids: tuple[int, ...], len_bytes: int = 2) -> bytes:
    return _vec(b"".join(x.to_bytes(16, "big") for x in ids), len_bytes)


def _read_nids(r: _Reader, field: str, len_bytes: int = 2) -> tuple[int, ...]:
    s = r.sub(len_bytes, field)
    if (s.end - s.pos) % 16:
        raise _err(field, s.pos, f"{s.end - s.pos} bytes is not a whole number of Node-IDs")
    out = []
    while s.more():
        out.append(s.node_id(field))
    return tuple(out)


def _u8(v: int) -> bytes:
    return _U8.pack(v)


def _u16(v: int) -> bytes:
    return _U16.pack(v)


def _u32(v: int) -> bytes:
    return _U32.pack(v)


def _u64(v: int) -> bytes:
    return _U64.pack(v)


# -- codes ------------------------------------------------------------------------------------------


class MessageCode(IntEnum):
    """RFC 6940 14.8: requests are odd, their answers the next even code."""

    PROBE_REQ = 1
    PROBE_ANS = 2
    ATTACH_REQ = 3
    ATTACH_ANS = 4
    STORE_REQ = 7
    STORE_ANS = 8
    FETCH_REQ = 9
    FETCH_ANS = 10
    JOIN_REQ = 15
    JOIN_ANS = 16
    LEAVE_REQ = 17
    LEAVE_ANS = 18
    UPDATE_REQ = 19
    UPDATE_ANS = 20
    ROUTE_QUERY_REQ = 21
    ROUTE_QUERY_ANS = 22
    PING_REQ = 23
    PING_ANS = 24
    ERROR = 0xFFFF


class ErrorCode(IntEnum):
    """RFC 6940 14.9."""

    FORBIDDEN = 2
    NOT_FOUND = 3
    REQUEST_TIMEOUT = 4
    GENERATION_COUNTER_TOO_LOW = 5
    INCOMPATIBLE_WITH_OVERLAY = 6
    UNSUPPORTED_FORWARDING_OPTION = 7
    DATA_TOO_LARGE = 8
    DATA_TOO_OLD = 9
    TTL_EXCEEDED = 10
    MESSAGE_TOO_LARGE = 11
    UNKNOWN_KIND = 12
    UNKNOWN_EXTENSION = 13
    RESPONSE_TOO_LARGE = 14
    CONFIG_TOO_OLD = 15
    CONFIG_TOO_NEW = 16
    IN_PROGRESS = 17
    EXP_A = 18
    EXP_B = 19
    INVALID_MESSAGE = 20


# -- destinations and the forwarding header (6.3.2) ----------------------------------------------


class DestinationType(IntEnum):
    NODE = 1
    RESOURCE = 2
    OPAQUE_ID = 3


@dataclass(frozen=True, slots=True)
class NodeDest:
    node_id: int

    def encode(self) -> bytes:
        return b"\x01\x10" + self.node_id.to_bytes(16, "big")


@dataclass(frozen=True, slots=True)
class ResourceDest:
    resource_id: int

    def encode(self) -> bytes:
        # a ResourceId is itself opaque<0..2^8-1>, so the destination holds 1 + 16 bytes
        return b"\x02\x11\x10" + self.resource_id.to_bytes(16, "big")


@dataclass(frozen=True, slots=True)
class OpaqueDest:
    """An opaque destination (6.3.2.2), e.g. an application's own identifier; at most 255 bytes."""

    value: bytes

    def encode(self) -> bytes:
        return bytes((3, len(self.value) + 1, len(self.value))) + self.value


Destination = Union[NodeDest, ResourceDest, OpaqueDest]


def _read_dest(r: _Reader, field: str) -> Destination:
    p = r.pos
    t = r.u8(field)
    if t & 0x80:
        raise _err(field, p, "compressed (16-bit opaque) destinations are not supported")
    n = r.u8(field)
    s = _Reader(r.data, r.pos, r.pos + n)
    r.need(n, field)
    if t == DestinationType.NODE:
        if n != 16:
            raise _err(field, p, f"node destination of {n} bytes; Node-IDs here are 16")
        d: Destination = NodeDest(s.node_id(field))
    elif t == DestinationType.RESOURCE:
        d = ResourceDest(s.resource_id(field))
    elif t == DestinationType.OPAQUE_ID:
        d = OpaqueDest(s.opaque(1, field))
    else:
        raise _err(field, p, f"unknown destination type {t}")
    s.done(field)
    return d


def _read_dest_list(r: _Reader, n: int, field: str) -> tuple[Destination, ...]:
    s = _Reader(r.data, r.pos, r.pos + n)
    r.need(n, field)
    out = []
    while s.more():
        out.append(_read_dest(s, field))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ForwardingOption:
    """A forwarding option (6.3.2.3): type, flags (FORWARD_CRITICAL 1, DESTINATION_CRITICAL 2,
    RESPONSE_COPY 4) and its value. RFC 6940 defines no option types; the structure is kept."""

    type: int
    flags: int
    value: bytes

    def encode(self) -> bytes:
        return bytes((self.type, self.flags)) + _vec(self.value, 2)


@dataclass(frozen=True, slots=True)
class ForwardingHeader:
    overlay: int
    transaction_id: int
    destination_list: tuple[Destination, ...]
    via_list: tuple[Destination, ...] = ()
    ttl: int = DEFAULT_TTL
    configuration_sequence: int = 0
    version: int = VERSION
    fragment: int = FRAGMENT_UNFRAGMENTED
    max_response_length: int = 0
    options: tuple[ForwardingOption, ...] = ()


def encode_header(h: ForwardingHeader, rest_len: int) -> bytes:
    """The forwarding header for a message whose contents and security block take `rest_len` bytes."""
    via = b"".join(d.encode() for d in h.via_list)
    dst = b"".join(d.encode() for d in h.destination_list)
    opt = b"".join(o.encode() for o in h.options)
    total = _FWD_LEN + len(via) + len(dst) + len(opt) + rest_len
    return (
        _FWD.pack(
            RELO_TOKEN,
            h.overlay,
            h.configuration_sequence,
            h.version,
            h.ttl,
            h.fragment,
            total,
            h.transaction_id,
            h.max_response_length,
            len(via),
            len(dst),
            len(opt),
        )
        + via
        + dst
        + opt
    )


@dataclass(frozen=True, slots=True)
class HeaderInfo:
    """A decoded forwarding header and where the message contents start."""

    header: ForwardingHeader
    contents_at: int


def decode_header(data: bytes) -> HeaderInfo:
    """The forwarding header of a whole message (the `length` field must match len(data))."""
    if len(data) < _FWD_LEN:
        raise _err("forwarding header", 0, f"needs {_FWD_LEN} bytes, got {len(data)}")
    (token, overlay, seq, version, ttl, fragment, length, txid, max_resp, via_len, dst_len, opt_len) = (
        _FWD.unpack_from(data, 0)
    )
    if token != RELO_TOKEN:
        raise _err("relo_token", 0, f"0x{token:08x} is not 0x{RELO_TOKEN:08x}")
    if version != VERSION:
        raise _err("version", 10, f"0x{version:02x}, only 0x{VERSION:02x} (1.0) is spoken")
    if not fragment & 0x80000000:
        raise _err("fragment", 12, "the high bit must be set")
    if fragment != FRAGMENT_UNFRAGMENTED:
        raise _err("fragment", 12, "fragmented messages are not supported")
    if length != len(data):
        raise _err("length", _FWD_LENGTH_AT, f"says {length} bytes, the message has {len(data)}")
    r = _Reader(data, _FWD_LEN)
    via = _read_dest_list(r, via_len, "via_list")
    dst = _read_dest_list(r, dst_len, "destination_list")
    if not dst:
        raise _err("destination_list", r.pos, "is empty")
    s = _Reader(data, r.pos, r.pos + opt_len)
    r.need(opt_len, "options")
    opts = []
    while s.more():
        t = s.u8("options")
        fl = s.u8("options")
        opts.append(ForwardingOption(t, fl, s.opaque(2, "options")))
    header = ForwardingHeader(
        overlay=overlay,
        transaction_id=txid,
        destination_list=dst,
        via_list=via,
        ttl=ttl,
        configuration_sequence=seq,
        version=version,
        fragment=fragment,
        max_response_length=max_resp,
        options=tuple(opts),
    )
    return HeaderInfo(header, r.pos)


def forward_bytes(data: bytes, info: HeaderInfo, header: ForwardingHeader) -> bytes:
    """`data` with its forwarding header replaced by `header`; contents and signature unchanged."""
    rest = data[info.contents_at :]
    return encode_header(header, len(rest)) + rest


# -- security block (6.3.4) ------------------------------------------------------------------------


class CertificateType(IntEnum):
    X509 = 0


class HashAlgorithm(IntEnum):
    """TLS HashAlgorithm values (RFC 5246 7.4.1.4.1; 8 is 'intrinsic', RFC 8422, for Ed25519)."""

    NONE = 0
    SHA1 = 2
    SHA256 = 4
    INTRINSIC = 8


class SignatureAlgorithm(IntEnum):
    ANONYMOUS = 0
    ECDSA = 3
    ED25519 = 7


@dataclass(frozen=True, slots=True)
class GenericCertificate:
    type: int
    certificate: bytes

    def encode(self) -> bytes:
        return bytes((self.type,)) + _vec(self.certificate, 2)


class SignerIdentityType(IntEnum):
    CERT_HASH = 1
    CERT_HASH_NODE_ID = 2
    NONE = 3


@dataclass(frozen=True, slots=True)
class SignerIdentity:
    """Who signed: a hash of the signer's certificate (cert_hash), or nobody (none)."""

    type: int = SignerIdentityType.NONE
    hash_alg: int = HashAlgorithm.NONE
    digest: bytes = b""

    def encode(self) -> bytes:
        if self.type == SignerIdentityType.NONE:
            return b"\x03\x00\x00"
        value = bytes((self.hash_alg,)) + _vec(self.digest, 1)
        return bytes((self.type,)) + _vec(value, 2)


def encode_signer_identity(identity: SignerIdentity) -> bytes:
    return identity.encode()


def _read_identity(r: _Reader) -> SignerIdentity:
    p = r.pos
    t = r.u8("signer identity")
    s = r.sub(2, "signer identity")
    if t == SignerIdentityType.NONE:
        s.done("signer identity")
        return SignerIdentity()
    if t not in (SignerIdentityType.CERT_HASH, SignerIdentityType.CERT_HASH_NODE_ID):
        raise _err("signer identity", p, f"unknown identity type {t}")
    alg = s.u8("signer identity")
    digest = s.opaque(1, "signer identity")
    s.done("signer identity")
    return SignerIdentity(t, alg, digest)


@dataclass(frozen=True, slots=True)
class Signature:
    hash_alg: int = HashAlgorithm.NONE
    sig_alg: int = SignatureAlgorithm.ANONYMOUS
    identity: SignerIdentity = SignerIdentity()
    value: bytes = b""

    def encode(self) -> bytes:
        return bytes((self.hash_alg, self.sig_alg)) + self.identity.encode() + _vec(self.value, 2)

    @property
    def signed(self) -> bool:
        return self.identity.type != SignerIdentityType.NONE


UNSIGNED = Signature()


def _read_signature(r: _Reader) -> Signature:
    h = r.u8("signature algorithm")
    s = r.u8("signature algorithm")
    ident = _read_identity(r)
    return Signature(h, s, ident, r.opaque(2, "signature value"))


@dataclass(frozen=True, slots=True)
class SecurityBlock:
    certificates: tuple[GenericCertificate, ...] = ()
    signature: Signature = UNSIGNED

    def encode(self) -> bytes:
        return _vec(b"".join(c.encode() for c in self.certificates), 2) + self.signature.encode()


def _read_security(r: _Reader) -> SecurityBlock:
    s = r.sub(2, "certificates")
    certs = []
    while s.more():
        t = s.u8("certificates")
        certs.append(GenericCertificate(t, s.opaque(2, "certificates")))
    return SecurityBlock(tuple(certs), _read_signature(r))


def signature_input(overlay: int, transaction_id: int, contents: bytes, identity: SignerIdentity) -> bytes:
    """What a message signature covers (6.3.4): overlay, transaction id, contents, signer identity."""
    return _U32.pack(overlay) + _U64.pack(transaction_id) + contents + identity.encode()


# -- stored data (6.4.1) ------------------------------------------------------------------------------


class DataModel(IntEnum):
    SINGLE_VALUE = 1
    ARRAY = 2
    DICTIONARY = 3


@dataclass(frozen=True, slots=True)
class Kind:
    kind_id: int
    name: str
    model: DataModel
    access: str  # "USER-MATCH", "NODE-MATCH", "USER-NODE-MATCH" (7.3)


# The Kinds this overlay is configured with (RFC 6940 7.4 and 14.6, RFC 7904 for SIP-REGISTRATION).
KINDS: dict[int, Kind] = {
    1: Kind(1, "SIP-REGISTRATION", DataModel.DICTIONARY, "USER-NODE-MATCH"),
    3: Kind(3, "CERTIFICATE_BY_NODE", DataModel.ARRAY, "NODE-MATCH"),
    16: Kind(16, "CERTIFICATE_BY_USER", DataModel.ARRAY, "USER-MATCH"),
}
SIP_REGISTRATION = 1
CERTIFICATE_BY_NODE = 3
CERTIFICATE_BY_USER = 16


def _kind(kind_id: int, p: int, field: str) -> Kind:
    k = KINDS.get(kind_id)
    if k is None:
        raise _err(field, p, f"unknown Kind {kind_id}")
    return k


@dataclass(frozen=True, slots=True)
class DataValue:
    exists: bool
    value: bytes

    def encode(self) -> bytes:
        return (b"\x01" if self.exists else b"\x00") + _vec(self.value, 4)


@dataclass(frozen=True, slots=True)
class ArrayEntry:
    index: int
    value: DataValue

    def encode(self) -> bytes:
        return _u32(self.index) + self.value.encode()


@dataclass(frozen=True, slots=True)
class DictionaryEntry:
    key: bytes
    value: DataValue

    def encode(self) -> bytes:
        return _vec(self.key, 2) + self.value.encode()


StoredDataValue = Union[DataValue, ArrayEntry, DictionaryEntry]


def _read_data_value(r: _Reader) -> DataValue:
    return DataValue(r.boolean("exists"), r.opaque(4, "value"))


def _read_stored_value(r: _Reader, model: DataModel) -> StoredDataValue:
    if model == DataModel.SINGLE_VALUE:
        return _read_data_value(r)
    if model == DataModel.ARRAY:
        return ArrayEntry(r.u32("array index"), _read_data_value(r))
    return DictionaryEntry(r.opaque(2, "dictionary key"), _read_data_value(r))


@dataclass(frozen=True, slots=True)
class StoredData:
    """One stored value with its storage time (ms), lifetime (s) and its owner's signature."""

    storage_time: int
    lifetime: int
    value: StoredDataValue
    signature: Signature = UNSIGNED

    def encode(self) -> bytes:
        inner = _u64(self.storage_time) + _u32(self.lifetime) + self.value.encode() + self.signature.encode()
        return _vec(inner, 4)


def _read_stored_data(r: _Reader, model: DataModel) -> StoredData:
    s = r.sub(4, "stored data")
    sd = StoredData(
        s.u64("storage_time"), s.u32("lifetime"), _read_stored_value(s, model), _read_signature(s)
    )
    s.done("stored data")
    return sd


def stored_data_signature_input(
    resource_id: int,
    kind: int,
    storage_time: int,
    lifetime: int,
    value: StoredDataValue,
    identity: SignerIdentity,
) -> bytes:
    """What a stored value's signature covers: RFC 6940 7.1 signs resource_id, kind, storage_time,
    the value and the signer identity; threatlab also signs the lifetime so that a storing peer
    cannot extend it."""
    return (
        b"\x10"
        + _nid(resource_id)
        + _u32(kind)
        + _u64(storage_time)
        + _u32(lifetime)
        + value.encode()
        + identity.encode()
    )


# -- bodies ----------------------------------------------------------------------------------------
#
# Every body class has CODE, `encode_body() -> bytes` and `decode_body(reader)`; the reader spans
# exactly the message_body vector, which must be consumed.


@dataclass(frozen=True, slots=True)
class StoreKindData:
    kind: int
    generation: int
    values: tuple[StoredData, ...]

    def encode(self) -> bytes:
        return _u32(self.kind) + _u64(self.generation) + _vec(b"".join(v.encode() for v in self.values), 4)


@dataclass(frozen=True, slots=True)
class StoreReq:
    CODE: ClassVar[int] = MessageCode.STORE_REQ
    resource: int
    replica_number: int
    kind_data: tuple[StoreKindData, ...]

    def encode_body(self) -> bytes:
        return (
            b"\x10"
            + _nid(self.resource)
            + _u8(self.replica_number)
            + _vec(b"".join(k.encode() for k in self.kind_data), 4)
        )

    @classmethod
    def decode_body(cls, r: _Reader) -> StoreReq:
        res = r.resource_id("resource")
        replica = r.u8("replica_number")
        s = r.sub(4, "kind_data")
        kinds = []
        while s.more():
            p = s.pos
            kind = _kind(s.u32("kind"), p, "kind")
            gen = s.u64("generation_counter")
            vs = s.sub(4, "values")
            values = []
            while vs.more():
                values.append(_read_stored_data(vs, kind.model))
            kinds.append(StoreKindData(kind.kind_id, gen, tuple(values)))
        return cls(res, replica, tuple(kinds))


@dataclass(frozen=True, slots=True)
class StoreKindResponse:
    kind: int
    generation: int
    replicas: tuple[int, ...]

    def encode(self) -> bytes:
        return _u32(self.kind) + _u64(self.generation) + _nids(self.replicas)


@dataclass(frozen=True, slots=True)
class StoreAns:
    CODE: ClassVar[int] = MessageCode.STORE_ANS
    kind_responses: tuple[StoreKindResponse, ...]

    def encode_body(self) -> bytes:
        return _vec(b"".join(k.encode() for k in self.kind_responses), 2)

    @classmethod
    def decode_body(cls, r: _Reader) -> StoreAns:
        s = r.sub(2, "kind_responses")
        out = []
        while s.more():
            out.append(
                StoreKindResponse(s.u32("kind"), s.u64("generation_counter"), _read_nids(s, "replicas"))
            )
        return cls(tuple(out))


@dataclass(frozen=True, slots=True)
class StoredDataSpecifier:
    """Which values of a Kind to fetch: all (no indices or keys), array ranges, or dictionary keys."""

    kind: int
    generation: int = 0
    indices: tuple[tuple[int, int], ...] = ()  # array: (first, last) ranges
    keys: tuple[bytes, ...] = ()  # dictionary

    def encode(self) -> bytes:
        model = KINDS[self.kind].model
        if model == DataModel.ARRAY:
            spec = _vec(b"".join(_u32(a) + _u32(b) for a, b in self.indices), 2)
        elif model == DataModel.DICTIONARY:
            spec = _vec(b"".join(_vec(k, 2) for k in self.keys), 2)
        else:
            spec = b""
        return _u32(self.kind) + _u64(self.generation) + _vec(spec, 2)


@dataclass(frozen=True, slots=True)
class FetchReq:
    CODE: ClassVar[int] = MessageCode.FETCH_REQ
    resource: int
    specifiers: tuple[StoredDataSpecifier, ...]

    def encode_body(self) -> bytes:
        return b"\x10" + _nid(self.resource) + _vec(b"".join(s.encode() for s in self.specifiers), 2)

    @classmethod
    def decode_body(cls, r: _Reader) -> FetchReq:
        res = r.resource_id("resource")
        s = r.sub(2, "specifiers")
        out = []
        while s.more():
            p = s.pos
            kind = _kind(s.u32("kind"), p, "kind")
            gen = s.u64("generation")
            m = s.sub(2, "model specifier")
            indices: list[tuple[int, int]] = []
            keys: list[bytes] = []
            if kind.model == DataModel.ARRAY:
                v = m.sub(2, "indices")
                while v.more():
                    indices.append((v.u32("indices"), v.u32("indices")))
            elif kind.model == DataModel.DICTIONARY:
                v = m.sub(2, "keys")
                while v.more():
                    keys.append(v.opaque(2, "keys"))
            m.done("model specifier")
            out.append(StoredDataSpecifier(kind.kind_id, gen, tuple(indices), tuple(keys)))
        return cls(res, tuple(out))


@dataclass(frozen=True, slots=True)
class FetchKindResponse:
    kind: int
    generation: int
    values: tuple[StoredData, ...]

    def encode(self) -> bytes:
        return _u32(self.kind) + _u64(self.generation) + _vec(b"".join(v.encode() for v in self.values), 4)


@dataclass(frozen=True, slots=True)
class FetchAns:
    CODE: ClassVar[int] = MessageCode.FETCH_ANS
    kind_responses: tuple[FetchKindResponse, ...]

    def encode_body(self) -> bytes:
        return _vec(b"".join(k.encode() for k in self.kind_responses), 4)

    @classmethod
    def decode_body(cls, r: _Reader) -> FetchAns:
        s = r.sub(4, "kind_responses")
        out = []
        while s.more():
            p = s.pos
            kind = _kind(s.u32("kind"), p, "kind")
            gen = s.u64("generation")
            vs = s.sub(4, "values")
            values = []
            while vs.more():
                values.append(_read_stored_data(vs, kind.model))
            out.append(FetchKindResponse(kind.kind_id, gen, tuple(values)))
        return cls(tuple(out))


class ProbeInformationType(IntEnum):
    RESPONSIBLE_SET = 1  # parts per billion of the ring this peer is responsible for
    NUM_RESOURCES = 2
    UPTIME = 3


@dataclass(frozen=True, slots=True)
class ProbeInformation:
    type: int
    value: int  # uint32

    def encode(self) -> bytes:
        return bytes((self.type, 4)) + _u32(self.value)


@dataclass(frozen=True, slots=True)
class ProbeReq:
    """Probe: routed to a Resource-ID, answered by the responsible peer. threatlab's lookup
    ("find successor") is a Probe for responsible_set."""

    CODE: ClassVar[int] = MessageCode.PROBE_REQ
    requested_info: tuple[int, ...] = (ProbeInformationType.RESPONSIBLE_SET,)

    def encode_body(self) -> bytes:
        return _vec(bytes(self.requested_info), 1)

    @classmethod
    def decode_body(cls, r: _Reader) -> ProbeReq:
        p = r.pos
        info = tuple(r.opaque(1, "requested_info"))
        for t in info:
            if t not in (1, 2, 3):
                raise _err("requested_info", p, f"unknown probe information type {t}")
        return cls(info)


@dataclass(frozen=True, slots=True)
class ProbeAns:
    CODE: ClassVar[int] = MessageCode.PROBE_ANS
    probe_info: tuple[ProbeInformation, ...]

    def encode_body(self) -> bytes:
        return _vec(b"".join(i.encode() for i in self.probe_info), 2)

    @classmethod
    def decode_body(cls, r: _Reader) -> ProbeAns:
        s = r.sub(2, "probe_info")
        out = []
        while s.more():
            p = s.pos
            t = s.u8("probe_info")
            if t not in (1, 2, 3):
                raise _err("probe_info", p, f"unknown probe information type {t}")
            v = s.sub(1, "probe_info")
            out.append(ProbeInformation(t, v.u32("probe_info")))
            v.done("probe_info")
        return cls(tuple(out))


@dataclass(frozen=True, slots=True)
class _AttachReqAns:
    """AttachReqAns without ICE candidates: threatlab's link layer needs none, so a
    non-empty candidate list is an error rather than bytes kept uninterpreted."""

    ufrag: bytes = b""
    password: bytes = b""
    role: bytes = b"passive"
    send_update: bool = False

    def encode_body(self) -> bytes:
        return (
            _vec(self.ufrag, 1)
            + _vec(self.password, 1)
            + _vec(self.role, 1)
            + b"\x00\x00"
            + (b"\x01" if self.send_update else b"\x00")
        )

    @classmethod
    def decode_body(cls, r: _Reader):
        ufrag = r.opaque(1, "ufrag")
        password = r.opaque(1, "password")
        role = r.opaque(1, "role")
        p = r.pos
        if r.u16("candidates"):
            raise _err("candidates", p, "ICE candidates are not supported")
        return cls(ufrag, password, role, r.boolean("send_update"))


@dataclass(frozen=True, slots=True)
class AttachReq(_AttachReqAns):
    CODE: ClassVar[int] = MessageCode.ATTACH_REQ


@dataclass(frozen=True, slots=True)
class AttachAns(_AttachReqAns):
    CODE: ClassVar[int] = MessageCode.ATTACH_ANS


@dataclass(frozen=True, slots=True)
class JoinReq:
    CODE: ClassVar[int] = MessageCode.JOIN_REQ
    joining_peer_id: int
    overlay_data: bytes = b""

    def encode_body(self) -> bytes:
        return _nid(self.joining_peer_id) + _vec(self.overlay_data, 2)

    @classmethod
    def decode_body(cls, r: _Reader) -> JoinReq:
        return cls(r.node_id("joining_peer_id"), r.opaque(2, "overlay_specific_data"))


@dataclass(frozen=True, slots=True)
class JoinAns:
    CODE: ClassVar[int] = MessageCode.JOIN_ANS
    overlay_data: bytes = b""

    def encode_body(self) -> bytes:
        return _vec(self.overlay_data, 2)

    @classmethod
    def decode_body(cls, r: _Reader) -> JoinAns:
        return cls(r.opaque(2, "overlay_specific_data"))


class ChordLeaveType(IntEnum):
    """Named from the receiver's side: from_succ goes to the leaving peer's predecessors (it is
    their successor) and carries its successors; from_pred goes to its successors and carries its
    predecessors."""

    FROM_SUCC = 1
    FROM_PRED = 2


@dataclass(frozen=True, slots=True)
class LeaveReq:
    """Leave with the Chord plugin's ChordLeaveData (RFC 6940 section 10, leaving): the leaving
    peer hands each side of the ring the neighbours on the other side."""

    CODE: ClassVar[int] = MessageCode.LEAVE_REQ
    leaving_peer_id: int
    leave_type: int
    neighbors: tuple[int, ...]

    def encode_body(self) -> bytes:
        data = _u8(self.leave_type) + _nids(self.neighbors)
        return _nid(self.leaving_peer_id) + _vec(data, 2)

    @classmethod
    def decode_body(cls, r: _Reader) -> LeaveReq:
        leaving = r.node_id("leaving_peer_id")
        s = r.sub(2, "overlay_specific_data")
        p = s.pos
        t = s.u8("leave type")
        if t not in (ChordLeaveType.FROM_SUCC, ChordLeaveType.FROM_PRED):
            raise _err("leave type", p, f"unknown ChordLeaveType {t}")
        nb = _read_nids(s, "leave neighbors")
        s.done("overlay_specific_data")
        return cls(leaving, t, nb)


@dataclass(frozen=True, slots=True)
class LeaveAns:
    CODE: ClassVar[int] = MessageCode.LEAVE_ANS

    def encode_body(self) -> bytes:
        return b""

    @classmethod
    def decode_body(cls, r: _Reader) -> LeaveAns:
        return cls()


class ChordUpdateType(IntEnum):
    PEER_READY = 1
    NEIGHBORS = 2
    FULL = 3


@dataclass(frozen=True, slots=True)
class UpdateReq:
    """ChordUpdate (RFC 6940 section 10, updates): uptime, and the sender's neighbours (and, for
    `full`, its fingers)."""

    CODE: ClassVar[int] = MessageCode.UPDATE_REQ
    uptime: int
    update_type: int
    predecessors: tuple[int, ...] = ()
    successors: tuple[int, ...] = ()
    fingers: tuple[int, ...] = ()

    def encode_body(self) -> bytes:
        out = _u32(self.uptime) + _u8(self.update_type)
        if self.update_type != ChordUpdateType.PEER_READY:
            out += _nids(self.predecessors) + _nids(self.successors)
        if self.update_type == ChordUpdateType.FULL:
            out += _nids(self.fingers)
        return out

    @classmethod
    def decode_body(cls, r: _Reader) -> UpdateReq:
        up = r.u32("uptime")
        p = r.pos
        t = r.u8("update type")
        if t == ChordUpdateType.PEER_READY:
            return cls(up, t)
        if t not in (ChordUpdateType.NEIGHBORS, ChordUpdateType.FULL):
            raise _err("update type", p, f"unknown ChordUpdateType {t}")
        preds = _read_nids(r, "predecessors")
        succs = _read_nids(r, "successors")
        fingers = _read_nids(r, "fingers") if t == ChordUpdateType.FULL else ()
        return cls(up, t, preds, succs, fingers)


@dataclass(frozen=True, slots=True)
class UpdateAns:
    CODE: ClassVar[int] = MessageCode.UPDATE_ANS

    def encode_body(self) -> bytes:
        return b""

    @classmethod
    def decode_body(cls, r: _Reader) -> UpdateAns:
        return cls()


@dataclass(frozen=True, slots=True)
class RouteQueryReq:
    """RouteQuery: "where would you send a message for this destination?" Iterative routing asks
    each hop in turn."""

    CODE: ClassVar[int] = MessageCode.ROUTE_QUERY_REQ
    send_update: bool
    destination: Destination
    overlay_data: bytes = b""

    def encode_body(self) -> bytes:
        return (
            (b"\x01" if self.send_update else b"\x00")
            + self.destination.encode()
            + _vec(self.overlay_data, 2)
        )

    @classmethod
    def decode_body(cls, r: _Reader) -> RouteQueryReq:
        return cls(
            r.boolean("send_update"), _read_dest(r, "destination"), r.opaque(2, "overlay_specific_data")
        )


@dataclass(frozen=True, slots=True)
class RouteQueryAns:
    """ChordRouteQueryAns: the next peer the answering peer would route to; its own Node-ID when it
    is responsible."""

    CODE: ClassVar[int] = MessageCode.ROUTE_QUERY_ANS
    next_peer: int

    def encode_body(self) -> bytes:
        return _nid(self.next_peer)

    @classmethod
    def decode_body(cls, r: _Reader) -> RouteQueryAns:
        return cls(r.node_id("next_peer"))


@dataclass(frozen=True, slots=True)
class PingReq:
    CODE: ClassVar[int] = MessageCode.PING_REQ
    padding: bytes = b""

    def encode_body(self) -> bytes:
        return _vec(self.padding, 2)

    @classmethod
    def decode_body(cls, r: _Reader) -> PingReq:
        return cls(r.opaque(2, "padding"))


@dataclass(frozen=True, slots=True)
class PingAns:
    CODE: ClassVar[int] = MessageCode.PING_ANS
    response_id: int
    time: int

    def encode_body(self) -> bytes:
        return _u64(self.response_id) + _u64(self.time)

    @classmethod
    def decode_body(cls, r: _Reader) -> PingAns:
        return cls(r.u64("response_id"), r.u64("time"))


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    CODE: ClassVar[int] = MessageCode.ERROR
    error_code: int
    error_info: bytes = b""

    def encode_body(self) -> bytes:
        return _u16(self.error_code) + _vec(self.error_info, 2)

    @classmethod
    def decode_body(cls, r: _Reader) -> ErrorResponse:
        return cls(r.u16("error_code"), r.opaque(2, "error_info"))


Body = Union[
    ProbeReq,
    ProbeAns,
    AttachReq,
    AttachAns,
    StoreReq,
    StoreAns,
    FetchReq,
    FetchAns,
    JoinReq,
    JoinAns,
    LeaveReq,
    LeaveAns,
    UpdateReq,
    UpdateAns,
    RouteQueryReq,
    RouteQueryAns,
    PingReq,
    PingAns,
    ErrorResponse,
]
BODIES: dict[int, type] = {cls.CODE: cls for cls in get_args(Body)}


def is_request(code: int) -> bool:
    return code != MessageCode.ERROR and code & 1 == 1


# -- the message ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Extension:
    """A MessageExtension (6.3.3.1); RFC 6940 defines none, a critical one is refused by peers."""

    type: int
    critical: bool
    contents: bytes

    def encode(self) -> bytes:
        return _u16(self.type) + (b"\x01" if self.critical else b"\x00") + _vec(self.contents, 4)


def encode_contents(body: Body, extensions: tuple[Extension, ...] = ()) -> bytes:
    """MessageContents (6.3.3): message_code, message_body<0..2^32-1>, extensions<0..2^32-1>."""
    return _u16(body.CODE) + _vec(body.encode_body(), 4) + _vec(b"".join(e.encode() for e in extensions), 4)


@dataclass(frozen=True, slots=True)
class Message:
    header: ForwardingHeader
    body: Body
    extensions: tuple[Extension, ...] = ()
    security: SecurityBlock = SecurityBlock()

    @property
    def code(self) -> int:
        return self.body.CODE

    def encode(self) -> bytes:
        rest = encode_contents(self.body, self.extensions) + self.security.encode()
        return encode_header(self.header, len(rest)) + rest

    @classmethod
    def decode(cls, data: bytes) -> Message:
        info = decode_header(data)
        body, extensions, security, _ = decode_rest(data, info.contents_at)
        return cls(info.header, body, extensions, security)


def decode_rest(data: bytes, at: int) -> tuple[Body, tuple[Extension, ...], SecurityBlock, int]:
    """Contents and security block starting at `at`; also returns where the security block starts
    (the contents, data[at:that], are what the signature covers)."""
    r = _Reader(data, at)
    p = r.pos
    code = r.u16("message_code")
    cls = BODIES.get(code)
    if cls is None:
        raise _err("message_code", p, f"unknown or unsupported message code {code}")
    s = r.sub(4, "message_body")
    body = cls.decode_body(s)
    s.done("message_body")
    es = r.sub(4, "extensions")
    exts = []
    while es.more():
        t = es.u16("extensions")
        crit = es.boolean("extensions")
        exts.append(Extension(t, crit, es.opaque(4, "extensions")))
    sec_at = r.pos
    sec = _read_security(r)
    r.done("message")
    return body, tuple(exts), sec, sec_at
