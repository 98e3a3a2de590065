"""DHCPv4 codec: bytes <-> `DhcpMessage`.

The BOOTP header and magic cookie (RFC 2131 2, 3), options (RFC 2132) as an ordered tuple of typed
option objects, long options split over several instances and concatenated again (RFC 3396),
option overload into `sname` / `file` (RFC 2131 4.1, RFC 2132 9.3), the relay agent information
option with its sub-options (RFC 3046) and the authentication option (RFC 3118).

`DhcpMessage.decode(data)` raises only `DecodeError("dhcp", field, offset, reason)`; a known option
with a wrong length is an error, not a silent fallback to raw bytes. Options this module does not
know are kept as `RawOption` and encoded back unchanged. `decode(m.encode()) == m` for every message
whose options have distinct codes (repeated codes are one option on the wire: RFC 3396 3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum
from ipaddress import IPv4Address
from typing import ClassVar, NamedTuple, Union

from threatlab.errors import DecodeError

__all__ = [
    "BOOTREQUEST",
    "BOOTREPLY",
    "CLIENT_PORT",
    "SERVER_PORT",
    "MAGIC_COOKIE",
    "MIN_MESSAGE_SIZE",
    "BOOTP_MIN_SIZE",
    "BROADCAST_FLAG",
    "MessageType",
    "OptionCode",
    "DhcpMessage",
    "Option",
    "RawOption",
    "SubnetMask",
    "Routers",
    "DomainNameServers",
    "HostName",
    "DomainName",
    "RequestedIpAddress",
    "IpAddressLeaseTime",
    "DhcpMessageType",
    "ServerIdentifier",
    "ParameterRequestList",
    "Message",
    "MaximumMessageSize",
    "RenewalTime",
    "RebindingTime",
    "ClientIdentifier",
    "RelayAgentInformation",
    "SubOption",
    "CircuitId",
    "RemoteId",
    "RawSubOption",
    "Authentication",
    "OptionSpan",
    "option_spans",
    "decode",
]

BOOTREQUEST = 1
BOOTREPLY = 2
SERVER_PORT = 67
CLIENT_PORT = 68
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 3: 99.130.83.99
BROADCAST_FLAG = 0x8000  # RFC 2131 2, figure 2: the leftmost bit of 'flags'
# RFC 2131 2: a client must accept options of 312 bytes, i.e. a 576-byte IP datagram.
MIN_MESSAGE_SIZE = 576
BOOTP_MIN_SIZE = 300  # RFC 1542 2.1: relays may drop BOOTP messages shorter than 300 bytes

_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_HEADER_LEN = 236
_OPTIONS_AT = 240
_SNAME_AT = 44
_FILE_AT = 108
_HOPS_AT = 3
_GIADDR_AT = 24
_ZERO4 = IPv4Address(0)


class MessageType(IntEnum):
    """Option 53 values (RFC 2132 9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class OptionCode(IntEnum):
    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DOMAIN_NAME_SERVER = 6
    HOST_NAME = 12
    DOMAIN_NAME = 15
    REQUESTED_IP_ADDRESS = 50
    IP_ADDRESS_LEASE_TIME = 51
    OPTION_OVERLOAD = 52
    DHCP_MESSAGE_TYPE = 53
    SERVER_IDENTIFIER = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    MAXIMUM_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    CLIENT_IDENTIFIER = 61
    RELAY_AGENT_INFORMATION = 82
    AUTHENTICATION = 90
    END = 255


def _err(field_name: str, offset: int, reason: str) -> DecodeError:
    return DecodeError("dhcp", field_name, offset, reason)


def _check_u(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"dhcp: {name} {value} is out of range for {bits} bits")


# --- options ---------------------------------------------------------------------------------------
#
# Every typed option has a class-level `code`, `encode_value()` and `decode_value(value, offset)`;
# `offset` is where the option starts in the message, for the DecodeError.


def _fixed(value: bytes, offset: int, code: int, n: int) -> None:
    if len(value) != n:
        raise _err(f"option {code}", offset, f"length {len(value)}, expected {n}")


def _addresses(value: bytes, offset: int, code: int) -> tuple[IPv4Address, ...]:
    if not value or len(value) % 4:
        raise _err(f"option {code}", offset, f"length {len(value)}, expected a positive multiple of 4")
    return tuple(IPv4Address(value[i:i + 4]) for i in range(0, len(value), 4))


@dataclass(frozen=True, slots=True)
class RawOption:
    """An option this codec does not interpret, kept byte for byte."""

    code: int
    data: bytes

    def __post_init__(self) -> None:
        if not 1 <= self.code <= 254:
            raise ValueError(f"dhcp: option code {self.code} is not 1..254 (0 and 255 are pad and end)")

    def encode_value(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class _AddressOption:
    address: IPv4Address

    def encode_value(self) -> bytes:
        return self.address.packed

    @classmethod
    def decode_value(cls, value: bytes, offset: int):
        _fixed(value, offset, cls.code, 4)  # type: ignore[attr-defined]
        return cls(IPv4Address(value))


@dataclass(frozen=True, slots=True)
class _AddressListOption:
    addresses: tuple[IPv4Address, ...]

    def __post_init__(self) -> None:
        if not self.addresses:
            code = self.code  # type: ignore[attr-defined]
            raise ValueError(f"dhcp: option {code} needs at least one address")

    def encode_value(self) -> bytes:
        return b"".join(a.packed for a in self.addresses)

    @classmethod
    def decode_value(cls, value: bytes, offset: int):
        return cls(_addresses(value, offset, cls.code))  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class _TextOption:
    name: bytes  # RFC 2132 says NVT ASCII; kept as bytes so that any name round-trips

    def __post_init__(self) -> None:
        if not self.name:
            code = self.code  # type: ignore[attr-defined]
            raise ValueError(f"dhcp: option {code} needs at least one byte")

    def encode_value(self) -> bytes:
        return self.name

    @classmethod
    def decode_value(cls, value: bytes, offset: int):
        if not value:
            code = cls.code  # type: ignore[attr-defined]
            raise _err(f"option {code}", offset, "length 0, expected at least 1")
        return cls(value)


@dataclass(frozen=True, slots=True)
class _SecondsOption:
    seconds: int  # 0xffffffff means infinity (RFC 2131 3.3)

    def __post_init__(self) -> None:
        _check_u(f"option {self.code}", self.seconds, 32)  # type: ignore[attr-defined]

    def encode_value(self) -> bytes:
        return self.seconds.to_bytes(4, "big")

    @classmethod
    def decode_value(cls, value: bytes, offset: int):
        _fixed(value, offset, cls.code, 4)  # type: ignore[attr-defined]
        return cls(int.from_bytes(value, "big"))


@dataclass(frozen=True, slots=True)
class SubnetMask(_AddressOption):
    code: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class Routers(_AddressListOption):
    code: ClassVar[int] = 3


@dataclass(frozen=True, slots=True)
class DomainNameServers(_AddressListOption):
    code: ClassVar[int] = 6


@dataclass(frozen=True, slots=True)
class HostName(_TextOption):
    code: ClassVar[int] = 12


@dataclass(frozen=True, slots=True)
class DomainName(_TextOption):
    code: ClassVar[int] = 15


@dataclass(frozen=True, slots=True)
class RequestedIpAddress(_AddressOption):
    code: ClassVar[int] = 50


@dataclass(frozen=True, slots=True)
class IpAddressLeaseTime(_SecondsOption):
    code: ClassVar[int] = 51


@dataclass(frozen=True, slots=True)
class DhcpMessageType:
    code: ClassVar[int] = 53
    type: int

    def __post_init__(self) -> None:
        _check_u("message type", self.type, 8)

    def encode_value(self) -> bytes:
        return bytes((self.type,))

    @classmethod
    def decode_value(cls, value: bytes, offset: int) -> DhcpMessageType:
        _fixed(value, offset, cls.code, 1)
        return cls(value[0])


@dataclass(frozen=True, slots=True)
class ServerIdentifier(_AddressOption):
    code: ClassVar[int] = 54


@dataclass(frozen=True, slots=True)
class ParameterRequestList:
    code: ClassVar[int] = 55
    codes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.codes:
            raise ValueError("dhcp: option 55 needs at least one code")
        for c in self.codes:
            _check_u("requested option code", c, 8)

    def encode_value(self) -> bytes:
        return bytes(self.codes)

    @classmethod
    def decode_value(cls, value: bytes, offset: int) -> ParameterRequestList:
        if not value:
            raise _err("option 55", offset, "length 0, expected at least 1")
        return cls(tuple(value))


@dataclass(frozen=True, slots=True)
class Message(_TextOption):
    """Option 56: an error message, e.g. why a DHCPNAK was sent (RFC 2131 4.3.2)."""

    code: ClassVar[int] = 56


@dataclass(frozen=True, slots=True)
class MaximumMessageSize:
    code: ClassVar[int] = 57
    size: int  # RFC 2132 9.10: at least 576; a smaller value is decoded and left to the user

    def __post_init__(self) -> None:
        _check_u("maximum message size", self.size, 16)

    def encode_value(self) -> bytes:
        return self.size.to_bytes(2, "big")

    @classmethod
    def decode_value(cls, value: bytes, offset: int) -> MaximumMessageSize:
        _fixed(value, offset, cls.code, 2)
        return cls(int.from_bytes(value, "big"))


@dataclass(frozen=True, slots=True)
class RenewalTime(_SecondsOption):
    code: ClassVar[int] = 58


@dataclass(frozen=True, slots=True)
class RebindingTime(_SecondsOption):
    code: ClassVar[int] = 59


@dataclass(frozen=True, slots=True)
class ClientIdentifier:
    """Option 61 (RFC 2132 9.14): a type (1 = Ethernet, 255 = RFC 4361 IAID+DUID, 0 = other) and
    the identifier."""

    code: ClassVar[int] = 61
    type: int
    identifier: bytes

    def __post_init__(self) -> None:
        _check_u("client identifier type", self.type, 8)
        if not self.identifier:
            raise ValueError("dhcp: option 61 needs at least one identifier byte")

    @property
    def raw(self) -> bytes:
        """The option value as on the wire: what identifies the client (RFC 2131 4.2)."""
        return bytes((self.type,)) + self.identifier

    def encode_value(self) -> bytes:
        return self.raw

    @classmethod
    def decode_value(cls, value: bytes, offset: int) -> ClientIdentifier:
        if len(value) < 2:
            raise _err("option 61", offset, f"length {len(value)}, expected at least 2")
        return cls(value[0], value[1:])


# --- option 82, relay agent information (RFC 3046) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class CircuitId:
    """Sub-option 1: the port or circuit the client's request came in on (RFC 3046 3.1)."""

    code: ClassVar[int] = 1
    data: bytes


@dataclass(frozen=True, slots=True)
class RemoteId:
    """Sub-option 2: the remote host end of the circuit (RFC 3046 3.2)."""

    code: ClassVar[int] = 2
    data: bytes


@dataclass(frozen=True, slots=True)
class RawSubOption:
    code: int
    data: bytes

    def __post_init__(self) -> None:
        _check_u("sub-option code", self.code, 8)


SubOption = Union[CircuitId, RemoteId, RawSubOption]


@dataclass(frozen=True, slots=True)
class RelayAgentInformation:
    """Option 82: sub-options added by a relay agent and echoed by the server (RFC 3046 2.2)."""

    code: ClassVar[int] = 82
    suboptions: tuple[SubOption, ...]

    def __post_init__(self) -> None:
        for s in self.suboptions:
            if len(s.data) > 255:
                raise ValueError(f"dhcp: option 82 sub-option {s.code} is longer than 255 bytes")

    def _find(self, code: int) -> bytes | None:
        for s in self.suboptions:
            if s.code == code:
                return s.data
        return None

    @property
    def circuit_id(self) -> bytes | None:
        return self._find(1)

    @property
    def remote_id(self) -> bytes | None:
        return self._find(2)

    def encode_value(self) -> bytes:
        return b"".join(bytes((s.code, len(s.data))) + s.data for s in self.suboptions)

    @classmethod
    def decode_value(cls, value: bytes, offset: int) -> RelayAgentInformation:
        subs: list[SubOption] = []
        i = 0
        n = len(value)
        while i < n:
            if i + 2 > n:
                raise _err("option 82 sub-option", offset, f"sub-option header truncated at value byte {i}")
            code, length = value[i], value[i + 1]
            if i + 2 + length > n:
                raise _err(
                    f"option 82 sub-option {code}", offset,
                    f"length {length} runs past the end of the option",
                )
            data = value[i + 2:i + 2 + length]
            if code == 1:
                subs.append(CircuitId(data))
            elif code == 2:
                subs.append(RemoteId(data))
            else:
                subs.append(RawSubOption(code, data))
            i += 2 + length
        return cls(tuple(subs))


# --- option 90, authentication (RFC 3118) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authentication:
    """Option 90 (RFC 3118 2): protocol, algorithm, replay detection method, 64-bit replay detection
    value, and the authentication information, whose layout depends on the protocol:

    - protocol 0 (configuration token, RFC 3118 4): the token itself;
    - protocol 1 (delayed authentication, RFC 3118 5): secret ID (32 bits) + HMAC-MD5 (16 bytes),
      or nothing in a DHCPDISCOVER / DHCPINFORM that only asks for authentication;
    - protocol 2 (dhcpcd's "delayedrealm", the RFC 3315 21.4 layout): DHCP realm + secret ID + HMAC.
    """

    code: ClassVar[int] = 90
    protocol: int
    algorithm: int
    rdm: int
    replay: int
    info: bytes = b""

    def __post_init__(self) -> None:
        _check_u("auth protocol", self.protocol, 8)
        _check_u("auth algorithm", self.algorithm, 8)
        _check_u("auth rdm", self.rdm, 8)
        _check_u("auth replay detection", self.replay, 64)

    @classmethod
    def delayed(cls, secret_id: int, replay: int, mac: bytes = bytes(16), *, realm: bytes = b"",
                protocol: int = 1, algorithm: int = 1, rdm: int = 0) -> Authentication:
        """A delayed-authentication option; `mac` zero until signed (see `threatlab.dhcp.auth`)."""
        _check_u("secret id", secret_id, 32)
        if len(mac) != 16:
            raise ValueError("dhcp: an HMAC-MD5 is 16 bytes")
        if realm and protocol != 2:
            raise ValueError("dhcp: only protocol 2 carries a realm on the wire")
        return cls(protocol, algorithm, rdm, replay, realm + secret_id.to_bytes(4, "big") + mac)

    @property
    def token(self) -> bytes | None:
        """Protocol 0: the configuration token."""
        return self.info if self.protocol == 0 else None

    @property
    def _has_mac(self) -> bool:
        return self.protocol in (1, 2) and len(self.info) >= 20

    @property
    def secret_id(self) -> int | None:
        return int.from_bytes(self.info[-20:-16], "big") if self._has_mac else None

    @property
    def mac(self) -> bytes | None:
        return self.info[-16:] if self._has_mac else None

    @property
    def realm(self) -> bytes | None:
        """Protocol 2: the realm before the secret ID; protocol 1 carries none on the wire."""
        if not self._has_mac:
            return None
        return self.info[:-20] if self.protocol == 2 else b""

    def encode_value(self) -> bytes:
        return bytes((self.protocol, self.algorithm, self.rdm)) + self.replay.to_bytes(8, "big") + self.info

    @classmethod
    def decode_value(cls, value: bytes, offset: int) -> Authentication:
        if len(value) < 11:
            raise _err("option 90", offset, f"length {len(value)}, expected at least 11")
        protocol = value[0]
        info = value[11:]
        if protocol == 1 and info and len(info) != 20:
            # RFC 3118 5.1: secret ID + HMAC-MD5, nothing else; empty only when merely asking for it.
            raise _err("option 90", offset,
                       f"delayed authentication information is {len(info)} bytes, expected 0 or 20")
        if protocol == 2 and info and len(info) < 20:
            raise _err("option 90", offset,
                       f"delayed authentication information is {len(info)} bytes, expected 0 or at least 20")
        return cls(protocol, value[1], value[2], int.from_bytes(value[3:11], "big"), info)


Option = Union[
    RawOption, SubnetMask, Routers, DomainNameServers, HostName, DomainName, RequestedIpAddress,
    IpAddressLeaseTime, DhcpMessageType, ServerIdentifier, ParameterRequestList, Message,
    MaximumMessageSize, RenewalTime, RebindingTime, ClientIdentifier, RelayAgentInformation,
    Authentication,
]

_TYPED: dict[int, type] = {
    cls.code: cls  # type: ignore[attr-defined]
    for cls in (
        SubnetMask, Routers, DomainNameServers, HostName, DomainName, RequestedIpAddress,
        IpAddressLeaseTime, DhcpMessageType, ServerIdentifier, ParameterRequestList, Message,
        MaximumMessageSize, RenewalTime, RebindingTime, ClientIdentifier, RelayAgentInformation,
        Authentication,
    )
}


# --- scanning option areas -------------------------------------------------------------------------


class OptionSpan(NamedTuple):
    """One option instance on the wire: its code, where its code byte is, and where its value is."""

    code: int
    at: int
    value_at: int
    length: int


def _scan(data: bytes, start: int, end: int, area: str, spans: list[OptionSpan], require_end: bool) -> int:
    """Append the option instances of data[start:end] to `spans`; return the offset after END."""
    i = start
    while i < end:
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            return i + 1
        if i + 1 >= end:
            raise _err(f"option {code}", i, f"length byte missing at the end of the {area}")
        length = data[i + 1]
        if i + 2 + length > end:
            raise _err(f"option {code}", i, f"length {length} runs past the end of the {area}")
        spans.append(OptionSpan(code, i, i + 2, length))
        i += 2 + length
    if require_end:
        raise _err("options", end, "no end option")
    return end


def _header_checks(data: bytes) -> None:
    n = len(data)
    if n < _OPTIONS_AT:
        if n >= _HEADER_LEN:
            raise _err("magic cookie", _HEADER_LEN, f"truncated: {n} bytes, need 240")
        raise _err("header", 0, f"truncated: {n} bytes, need 240")
    if data[0] not in (BOOTREQUEST, BOOTREPLY):
        raise _err("op", 0, f"{data[0]} is neither BOOTREQUEST (1) nor BOOTREPLY (2)")
    if data[2] > 16:
        raise _err("hlen", 2, f"{data[2]} is more than the 16 bytes of chaddr")
    if data[_HEADER_LEN:_OPTIONS_AT] != MAGIC_COOKIE:
        raise _err("magic cookie", _HEADER_LEN, f"{data[_HEADER_LEN:_OPTIONS_AT].hex()} is not 63825363")


def _scan_all(data: bytes) -> tuple[list[OptionSpan], int, int]:
    """Every option instance, in RFC 3396 order (options field, then file, then sname); the offset
    after END in the options field; the overload value (0 if none)."""
    spans: list[OptionSpan] = []
    end = _scan(data, _OPTIONS_AT, len(data), "options field", spans, True)
    overload = 0
    ov = [s for s in spans if s.code == 52]
    if ov:
        s = ov[0]
        value = b"".join(data[x.value_at:x.value_at + x.length] for x in ov)
        if len(value) != 1:
            raise _err("option 52", s.at, f"length {len(value)}, expected 1")
        overload = value[0]
        if overload not in (1, 2, 3):
            raise _err("option 52", s.at, f"value {overload}, expected 1 (file), 2 (sname) or 3 (both)")
        # RFC 2131 4.1: 'file' is read before 'sname' (RFC 3396 7 orders the aggregate the same way)
        n = len(spans)
        if overload & 1:
            _scan(data, _FILE_AT, _HEADER_LEN, "file field", spans, False)
        if overload & 2:
            _scan(data, _SNAME_AT, _FILE_AT, "sname field", spans, False)
        for s in spans[n:]:
            if s.code == 52:
                raise _err("option 52", s.at, "option overload may only appear in the options field")
    return spans, end, overload


def option_spans(data: bytes) -> list[OptionSpan]:
    """The option instances of a message on the wire, for code that must work on raw bytes (the
    RFC 3118 MAC covers the message as sent). Raises DecodeError like `decode`."""
    _header_checks(data)
    return _scan_all(data)[0]


# --- the message -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, repr=False)
class DhcpMessage:
    """A DHCP message (RFC 2131 2, figure 1).

    `chaddr`, `sname` and `file` are always 16, 64 and 128 bytes (shorter values are zero-padded).
    `options` holds every option but pad, end and option overload (52), in wire order, each code once
    (RFC 3396). `padding` counts the zero bytes after the end option.
    """

    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = _ZERO4
    yiaddr: IPv4Address = _ZERO4
    siaddr: IPv4Address = _ZERO4
    giaddr: IPv4Address = _ZERO4
    chaddr: bytes = bytes(16)
    sname: bytes = bytes(64)
    file: bytes = bytes(128)
    options: tuple[Option, ...] = field(default=())
    padding: int = 0

    def __post_init__(self) -> None:
        for name, n in (("chaddr", 16), ("sname", 64), ("file", 128)):
            v = getattr(self, name)
            if len(v) > n:
                raise ValueError(f"dhcp: {name} is longer than {n} bytes")
            if len(v) < n:
                object.__setattr__(self, name, bytes(v) + bytes(n - len(v)))
        if not isinstance(self.options, tuple):
            object.__setattr__(self, "options", tuple(self.options))
        for o in self.options:
            if o.code == 52:
                raise ValueError("dhcp: option overload is made by encode(max_size=...), not given")
        if self.padding < 0:
            raise ValueError("dhcp: padding must be >= 0")

    def __repr__(self) -> str:
        # only what differs from the defaults: an all-zero sname and file would drown the rest
        parts = []
        for name in self.__dataclass_fields__:
            v = getattr(self, name)
            default = self.__dataclass_fields__[name].default
            if name in ("sname", "file", "chaddr"):
                v = v.rstrip(b"\0")
                if not v and name != "chaddr":
                    continue
            elif v == default:
                continue
            parts.append(f"{name}={v!r}")
        return f"DhcpMessage({', '.join(parts)})"

    # --- helpers -----------------------------------------------------------------------------------

    def get(self, code: int) -> Option | None:
        """The first option with this code, or None."""
        for o in self.options:
            if o.code == code:
                return o
        return None

    def _value(self, code: int, attr: str):
        o = self.get(code)
        return None if o is None or isinstance(o, RawOption) else getattr(o, attr)

    @property
    def message_type(self) -> MessageType | int | None:
        t = self._value(53, "type")
        if t is None:
            return None
        try:
            return MessageType(t)
        except ValueError:
            return t

    @property
    def requested_ip(self) -> IPv4Address | None:
        return self._value(50, "address")

    @property
    def server_id(self) -> IPv4Address | None:
        return self._value(54, "address")

    @property
    def client_id(self) -> ClientIdentifier | None:
        o = self.get(61)
        return o if isinstance(o, ClientIdentifier) else None

    @property
    def lease_time(self) -> int | None:
        return self._value(51, "seconds")

    @property
    def renewal_time(self) -> int | None:
        return self._value(58, "seconds")

    @property
    def rebinding_time(self) -> int | None:
        return self._value(59, "seconds")

    @property
    def max_message_size(self) -> int | None:
        return self._value(57, "size")

    @property
    def parameter_request_list(self) -> tuple[int, ...]:
        return self._value(55, "codes") or ()

    @property
    def host_name(self) -> bytes | None:
        return self._value(12, "name")

    @property
    def relay_agent_information(self) -> RelayAgentInformation | None:
        o = self.get(82)
        return o if isinstance(o, RelayAgentInformation) else None

    @property
    def authentication(self) -> Authentication | None:
        o = self.get(90)
        return o if isinstance(o, Authentication) else None

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    @property
    def mac(self) -> bytes:
        """The client hardware address: the first `hlen` bytes of chaddr."""
        return self.chaddr[:self.hlen]

    def client_key(self) -> bytes:
        """What identifies the client to a server (RFC 2131 4.2): the client identifier if present,
        else htype + chaddr. The two forms never collide (a tag byte tells them apart)."""
        cid = self.get(61)
        if cid is not None:
            return b"i" + cid.encode_value()
        return b"h" + bytes((self.htype,)) + self.mac

    def with_options(self, *options: Option) -> DhcpMessage:
        """A copy with these options replacing any of the same codes (appended in order if new)."""
        new = {o.code: o for o in options}
        kept = [new.pop(o.code) if o.code in new else o for o in self.options]
        return replace(self, options=tuple(kept) + tuple(new.values()))

    def without_options(self, *codes: int) -> DhcpMessage:
        return replace(self, options=tuple(o for o in self.options if o.code not in codes))

    # --- codec -------------------------------------------------------------------------------------

    def encode(self, *, max_size: int | None = None) -> bytes:
        """The message bytes. With `max_size` (the largest DHCP message, UDP payload, the receiver
        takes), options that do not fit the options field continue in `file` and then `sname` with
        an option overload (RFC 2131 4.1); ValueError if they still do not fit."""
        for name, value, bits in (
            ("op", self.op, 8), ("htype", self.htype, 8), ("hlen", self.hlen, 8), ("hops", self.hops, 8),
            ("xid", self.xid, 32), ("secs", self.secs, 16), ("flags", self.flags, 16),
        ):
            _check_u(name, value, bits)
        values = [(o.code, o.encode_value()) for o in self.options]
        body = b"".join(_tlvs(code, v) for code, v in values)
        sname, file = self.sname, self.file
        if max_size is None or _OPTIONS_AT + len(body) + 1 <= max_size:
            opts = body + b"\xff"
        else:
            opts, sname, file = self._overload(values, max_size)
        head = _HEADER.pack(
            self.op, self.htype, self.hlen, self.hops, self.xid, self.secs, self.flags,
            self.ciaddr.packed, self.yiaddr.packed, self.siaddr.packed, self.giaddr.packed,
            self.chaddr, sname, file,
        )
        out = head + MAGIC_COOKIE + opts
        pad = self.padding
        if max_size is not None:
            pad = max(0, min(pad, max_size - len(out)))
        return out + bytes(pad) if pad else out

    def _overload(self, values: list[tuple[int, bytes]], max_size: int) -> tuple[bytes, bytes, bytes]:
        # Areas in RFC 3396 7 order; each ends with END. The options field keeps 3 bytes for option 52.
        caps = [max_size - _OPTIONS_AT - 1 - 3]
        use_file = not any(self.file)
        use_sname = not any(self.sname)
        if caps[0] < 0:
            raise ValueError(f"dhcp: max_size {max_size} leaves no room for options")
        if use_file:
            caps.append(128 - 1)
        if use_sname:
            caps.append(64 - 1)
        areas: list[bytearray] = [bytearray() for _ in caps]
        a = 0
        for code, value in values:
            pos = 0
            first = True
            while first or pos < len(value):
                room = caps[a] - len(areas[a]) - 2
                left = len(value) - pos
                take = min(255, left)
                # A short option moves whole to the next area; a long one (RFC 3396) fills this one.
                if room < take and (len(value) <= 255 or room <= 0):
                    a += 1
                    if a >= len(areas):
                        raise ValueError(f"dhcp: options do not fit in {max_size} bytes, even overloaded")
                    continue
                take = min(take, room)
                areas[a] += bytes((code, take)) + value[pos:pos + take]
                pos += take
                first = False
        main = bytes(areas[0])
        file, sname = self.file, self.sname
        overload = 0
        k = 1
        if use_file:
            if k <= a:
                file = bytes(areas[k]) + b"\xff"
                file += bytes(128 - len(file))
                overload |= 1
            k += 1
        if use_sname and k <= a:
            sname = bytes(areas[k]) + b"\xff"
            sname += bytes(64 - len(sname))
            overload |= 2
        if not overload:  # the options did fit the options field after all (with 3 bytes spare)
            return main + b"\xff", sname, file
        return bytes((52, 1, overload)) + main + b"\xff", sname, file

    @classmethod
    def decode(cls, data: bytes) -> DhcpMessage:
        """Decode one DHCP message (a UDP payload). Raises only DecodeError."""
        data = bytes(data)
        _header_checks(data)
        (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
         file) = _HEADER.unpack_from(data)
        spans, end, overload = _scan_all(data)
        tail = data[end:]
        if tail.count(0) != len(tail):
            i = next(k for k, b in enumerate(tail) if b)
            raise _err("padding", end + i, "non-zero byte after the end option")
        # RFC 3396 3: every instance of a code is one option, concatenated in order.
        groups: dict[int, list[OptionSpan]] = {}
        for s in spans:
            if s.code != 52:
                groups.setdefault(s.code, []).append(s)
        options: list[Option] = []
        for code, group in groups.items():
            if len(group) == 1:
                s = group[0]
                value = data[s.value_at:s.value_at + s.length]
            else:
                value = b"".join(data[s.value_at:s.value_at + s.length] for s in group)
            typed = _TYPED.get(code)
            options.append(typed.decode_value(value, group[0].at) if typed else RawOption(code, value))
        return cls(
            op, htype, hlen, hops, xid, secs, flags,
            IPv4Address(ciaddr), IPv4Address(yiaddr), IPv4Address(siaddr), IPv4Address(giaddr),
            chaddr, bytes(64) if overload & 2 else sname, bytes(128) if overload & 1 else file,
            tuple(options), len(tail),
        )


def _tlvs(code: int, value: bytes) -> bytes:
    if len(value) <= 255:
        return bytes((code, len(value))) + value
    # RFC 3396 5: a value longer than 255 bytes goes in consecutive instances of the option.
    chunks = (value[i:i + 255] for i in range(0, len(value), 255))
    return b"".join(bytes((code, len(c))) + c for c in chunks)


def decode(data: bytes) -> DhcpMessage:
    return DhcpMessage.decode(data)
