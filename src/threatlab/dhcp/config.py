"""The DHCP server's configuration: its network, its lease times, and the defenses as switches.

Each defense field is named after its catalogue defense id; the defaults are the baseline of the
draft (RFC 2131 without RFC 3118: no authentication, no limits, Kea's 24-hour decline hold).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from threatlab.dhcp.auth import PROTOCOL_DELAYED, PROTOCOL_DELAYED_REALM, PROTOCOL_TOKEN, AuthKey
from threatlab.errors import ParamError

__all__ = ["AUTH_PARADIGMS", "Pool", "RateLimit", "DhcpServerConfig"]

# draft-ietf-dhc-v4-threat-analysis 4.2: the four paradigms an administrator must be able to choose.
AUTH_PARADIGMS = ("none", "mutual", "client-authenticates-server", "server-authenticates-client")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Token buckets on received messages: per hardware address and over all clients.
    A rate of None leaves that bucket out; a burst is the bucket depth in messages."""

    per_chaddr: float | None = 1.0  # messages per second per chaddr
    total: float | None = None  # messages per second, all clients together
    burst: float = 4.0  # per-chaddr bucket depth
    total_burst: float | None = None  # default: one second of `total`

    def __post_init__(self) -> None:
        for name in ("per_chaddr", "total"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ParamError(f"rate_limit.{name} must be a rate > 0 messages/s or None, got {v}")
        if not self.burst >= 1:
            raise ParamError(f"rate_limit.burst must be >= 1 message, got {self.burst}")
        if self.total_burst is not None and not self.total_burst >= 1:
            raise ParamError(f"rate_limit.total_burst must be >= 1 message, got {self.total_burst}")


@dataclass(frozen=True, slots=True)
class Pool:
    """Addresses `first`..`last` of one subnet, with that subnet's routers (option 3).

    A server picks the pool by the subnet the client is on (RFC 2131 4.3.1): the one holding
    `giaddr` for a relayed message, else the one of the interface it came in on (the server's own
    subnet); a RENEWING or REBINDING client is known by its `ciaddr`."""

    network: IPv4Network
    first: IPv4Address
    last: IPv4Address
    routers: tuple[IPv4Address, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.network, IPv4Network):
            raise ParamError(f"pool network must be an IPv4Network, got {self.network!r}")
        for name in ("first", "last"):
            if not isinstance(getattr(self, name), IPv4Address):
                raise ParamError(f"pool {name} must be an IPv4Address, got {getattr(self, name)!r}")
        if int(self.first) > int(self.last):
            raise ParamError(f"pool first {self.first} is after pool last {self.last}")
        if self.first not in self.network or self.last not in self.network:
            raise ParamError(f"pool {self.first}-{self.last} is not inside {self.network}")

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __contains__(self, address: object) -> bool:
        return isinstance(address, IPv4Address) and int(self.first) <= int(address) <= int(self.last)


def _seconds(name: str, value: int | None, *, allow_none: bool = False, minimum: int = 0) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= 0xFFFFFFFF:
        raise ParamError(
            f"{name} must be an integer number of seconds in [{minimum}, 4294967295], got {value!r}")


def _limit(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ParamError(f"{name} must be an integer >= 1 lease or None, got {value!r}")


@dataclass(frozen=True, slots=True)
class DhcpServerConfig:
    """The server's own subnet is server_id/subnet_mask, with the pool pool_start..pool_end and
    `routers`. `pools` adds subnets behind relay agents (RFC 2131 4.3.1: chosen by giaddr); with
    `pools` given, pool_start and pool_end may be None (no clients on the server's own subnet)."""

    server_id: IPv4Address
    pool_start: IPv4Address | None
    pool_end: IPv4Address | None
    subnet_mask: IPv4Address = IPv4Address("255.255.255.0")
    routers: tuple[IPv4Address, ...] = ()
    pools: tuple[Pool, ...] = ()  # further subnets, reached through relay agents
    dns_servers: tuple[IPv4Address, ...] = ()
    domain_name: bytes | None = None
    lease_time: int = 3600  # s (option 51)
    renewal_time: int | None = None  # T1, s (option 58); default half the lease (RFC 2131 4.4.5)
    rebinding_time: int | None = None  # T2, s (option 59); default 7/8 of the lease
    offer_hold: int = 60  # s an OFFER reserves its address for the client (RFC 2131 4.3.1)
    decline_hold: int = 86400  # s a declined address is held back: Kea's decline-probation-period
    # RFC 2131 4.3.2: NAK a client in INIT-REBOOT / RENEWING we have no record of (else stay silent)
    authoritative: bool = True
    allow_chaddrs: frozenset[bytes] | None = None  # None: any client hardware address
    allow_client_ids: frozenset[bytes] | None = None  # option 61 values (type + identifier)

    # --- defenses (catalogue defense ids) ----------------------------------------------------------
    auth_paradigm: str = "none"  # draft 4.2, one of AUTH_PARADIGMS
    auth_protocol: int = PROTOCOL_DELAYED  # RFC 3118: 0 token, 1 delayed (HMAC-MD5), 2 delayed + realm
    auth_keys: tuple[AuthKey, ...] = ()
    auth_token: bytes | None = None  # protocol 0: the token the server sends; default the client's
    auth_replay_start: int = 0  # first replay detection value the server sends is this + 1
    per_client_lease_limit: int | None = None  # active leases per hardware address
    per_circuit_lease_limit: int | None = None  # active leases per relay circuit (option 82)
    rate_limit: RateLimit | None = None
    decline_hold_cap: int | None = None  # s: upper bound on the decline hold
    release_source_check: bool = False  # a RELEASE not sent from its ciaddr (nor relayed) is dropped

    def __post_init__(self) -> None:
        local = self.pool_start is not None or self.pool_end is not None or not self.pools
        names = ("server_id", "subnet_mask") + (("pool_start", "pool_end") if local else ())
        for name in names:
            if not isinstance(getattr(self, name), IPv4Address):
                raise ParamError(f"{name} must be an IPv4Address, got {getattr(self, name)!r}")
        try:
            net = IPv4Network(f"{self.server_id}/{self.subnet_mask}", strict=False)
        except ValueError:
            raise ParamError(f"subnet_mask {self.subnet_mask} is not a contiguous netmask") from None
        if local:
            if int(self.pool_start) > int(self.pool_end):
                raise ParamError(f"pool_start {self.pool_start} is after pool_end {self.pool_end}")
            if self.pool_start not in net or self.pool_end not in net:
                raise ParamError(f"pool {self.pool_start}-{self.pool_end} is not inside {net}")
        if not isinstance(self.pools, tuple) or not all(isinstance(p, Pool) for p in self.pools):
            raise ParamError(f"pools must be a tuple of Pool, got {self.pools!r}")
        nets = [p.network for p in self.subnets]
        for i, a in enumerate(nets):
            for b in nets[i + 1:]:
                if a.overlaps(b):
                    raise ParamError(f"pools: subnets {a} and {b} overlap (one pool per subnet)")
        _seconds("lease_time", self.lease_time, minimum=1)
        _seconds("renewal_time", self.renewal_time, allow_none=True)
        _seconds("rebinding_time", self.rebinding_time, allow_none=True)
        if self.t1 > self.t2 or self.t2 > self.lease_time:
            raise ParamError(f"need renewal_time <= rebinding_time <= lease_time, got {self.t1}, {self.t2}, "
                             f"{self.lease_time}")
        _seconds("offer_hold", self.offer_hold, minimum=1)
        _seconds("decline_hold", self.decline_hold)
        _seconds("decline_hold_cap", self.decline_hold_cap, allow_none=True)
        if self.auth_paradigm not in AUTH_PARADIGMS:
            raise ParamError(
                f"auth_paradigm must be one of {', '.join(AUTH_PARADIGMS)}, got {self.auth_paradigm!r}")
        if self.auth_protocol not in (PROTOCOL_TOKEN, PROTOCOL_DELAYED, PROTOCOL_DELAYED_REALM):
            raise ParamError(f"auth_protocol must be 0 (token), 1 (delayed) or 2 (delayed with realm), "
                             f"got {self.auth_protocol!r}")
        if self.auth_paradigm != "none" and not self.auth_keys:
            raise ParamError(f"auth_paradigm {self.auth_paradigm!r} needs at least one key in auth_keys")
        if not 0 <= self.auth_replay_start < 2**64 - 1:
            raise ParamError(f"auth_replay_start must be in [0, 2^64 - 2], got {self.auth_replay_start}")
        _limit("per_client_lease_limit", self.per_client_lease_limit)
        _limit("per_circuit_lease_limit", self.per_circuit_lease_limit)
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise ParamError(f"rate_limit must be a RateLimit or None, got {self.rate_limit!r}")

    @property
    def t1(self) -> int:
        return self.lease_time // 2 if self.renewal_time is None else self.renewal_time

    @property
    def t2(self) -> int:
        return self.lease_time * 7 // 8 if self.rebinding_time is None else self.rebinding_time

    @property
    def network(self) -> IPv4Network:
        return IPv4Network(f"{self.server_id}/{self.subnet_mask}", strict=False)

    @property
    def subnets(self) -> tuple[Pool, ...]:
        """Every pool: the server's own subnet's first (if it has one), then `pools`."""
        if self.pool_start is None:
            return self.pools
        return (Pool(self.network, self.pool_start, self.pool_end, self.routers),) + self.pools

    @property
    def effective_decline_hold(self) -> int:
        """The decline hold in seconds after the `decline_hold_cap` defense."""
        if self.decline_hold_cap is None:
            return self.decline_hold
        return min(self.decline_hold, self.decline_hold_cap)

    @property
    def client_authenticated(self) -> bool:
        """The server demands authentication from clients."""
        return self.auth_paradigm in ("mutual", "server-authenticates-client")

    @property
    def server_authenticated(self) -> bool:
        """The server authenticates its own messages to clients."""
        return self.auth_paradigm in ("mutual", "client-authenticates-server")
