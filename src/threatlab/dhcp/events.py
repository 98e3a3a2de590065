"""What the DHCP server hands back: datagrams to send, events for its user, and drop reasons.

A drop reason is also what a defense reports ("per-circuit limit", "auth: bad HMAC"), so tests and
catalogue metrics name them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from threatlab.dhcp.auth import (
    DROP_ALGORITHM,
    DROP_BAD_HMAC,
    DROP_BAD_TOKEN,
    DROP_FOREIGN_KEY,
    DROP_MISSING,
    DROP_NO_MAC,
    DROP_RDM,
    DROP_REPLAY,
    DROP_SPLIT,
    DROP_UNKNOWN_KEY,
    DROP_WRONG_PROTOCOL,
)

__all__ = [
    "Datagram",
    "LeaseOffered",
    "LeaseBound",
    "LeaseDeclined",
    "LeaseReleased",
    "LeaseExpired",
    "OfferWithdrawn",
    "NakSent",
    "InformAnswered",
    "Dropped",
    "Event",
    "Drop",
]


class Drop:
    """The named reasons a message is dropped (no reply, no state change)."""

    MALFORMED = "malformed"
    NOT_REQUEST = "not a request"  # op is BOOTREPLY
    NO_MESSAGE_TYPE = "no message type"  # plain BOOTP is not served
    UNEXPECTED_TYPE = "unexpected message type"  # OFFER, ACK, NAK or unknown from a client
    RATE_LIMIT = "rate-limit"  # per-chaddr bucket empty
    RATE_LIMIT_GLOBAL = "rate-limit: global"
    ALLOW_LIST = "allow-list"
    POOL_EXHAUSTED = "pool exhausted"
    PER_CLIENT_LIMIT = "per-client limit"
    PER_CIRCUIT_LIMIT = "per-circuit limit"
    OTHER_SERVER = "other server"  # server identifier is not ours
    NOT_OWNER = "not the client's lease"  # DECLINE / RELEASE of an address the client does not hold
    NO_RECORD = "no record of client"  # INIT-REBOOT / RENEWING, non-authoritative server (RFC 2131 4.3.2)
    NO_ADDRESS = "no address"  # REQUEST / DECLINE / INFORM without the address it needs
    SOURCE_MISMATCH = "source mismatch"  # release_source_check
    AUTH_MISSING = DROP_MISSING
    AUTH_WRONG_PROTOCOL = DROP_WRONG_PROTOCOL
    AUTH_ALGORITHM = DROP_ALGORITHM
    AUTH_RDM = DROP_RDM
    AUTH_NO_MAC = DROP_NO_MAC
    AUTH_UNKNOWN_KEY = DROP_UNKNOWN_KEY
    AUTH_FOREIGN_KEY = DROP_FOREIGN_KEY
    AUTH_BAD_TOKEN = DROP_BAD_TOKEN
    AUTH_BAD_HMAC = DROP_BAD_HMAC
    AUTH_REPLAY = DROP_REPLAY
    AUTH_SPLIT = DROP_SPLIT
    AUTH_NO_KEY = "auth: no key for client"  # the server must sign but has no key for this client


@dataclass(frozen=True, slots=True)
class Datagram:
    """A UDP datagram the server sends (RFC 2131 4.1 chooses the destination).

    `dst_mac` is set when the link-layer destination is not found by ARP: the broadcast address,
    or the client's chaddr for a unicast to an address it does not have yet."""

    payload: bytes
    src_ip: IPv4Address
    dst_ip: IPv4Address
    src_port: int
    dst_port: int
    dst_mac: bytes | None = None
    interface: str | None = None


@dataclass(frozen=True, slots=True)
class LeaseOffered:
    time: int
    address: IPv4Address
    chaddr: bytes
    client_key: bytes


@dataclass(frozen=True, slots=True)
class LeaseBound:
    time: int
    address: IPv4Address
    chaddr: bytes
    client_key: bytes
    expiry: int
    renewed: bool  # the client held it already (RENEWING / REBINDING / INIT-REBOOT)


@dataclass(frozen=True, slots=True)
class LeaseDeclined:
    time: int
    address: IPv4Address
    chaddr: bytes
    hold_until: int


@dataclass(frozen=True, slots=True)
class LeaseReleased:
    time: int
    address: IPv4Address
    chaddr: bytes


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    time: int
    address: IPv4Address
    chaddr: bytes
    was: str  # "offered", "bound" or "declined"


@dataclass(frozen=True, slots=True)
class OfferWithdrawn:
    """The client chose another server's offer (its REQUEST names another server identifier)."""

    time: int
    address: IPv4Address
    chaddr: bytes


@dataclass(frozen=True, slots=True)
class NakSent:
    time: int
    chaddr: bytes
    requested: IPv4Address | None
    reason: str


@dataclass(frozen=True, slots=True)
class InformAnswered:
    time: int
    ciaddr: IPv4Address
    chaddr: bytes


@dataclass(frozen=True, slots=True)
class Dropped:
    time: int
    reason: str
    chaddr: bytes | None  # None when the message could not be decoded


Event = (LeaseOffered | LeaseBound | LeaseDeclined | LeaseReleased | LeaseExpired | OfferWithdrawn | NakSent
         | InformAnswered | Dropped)
