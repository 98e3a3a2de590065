"""threatlab's own DHCP client, sans-IO (RFC 2131 4.4, with RFC 3118 authentication).

    client = DhcpClient(DhcpClientConfig(), rng, chaddr=b"\\x02\\0\\0\\0\\0\\x01")
    client.start(now)                                  # DHCPDISCOVER (or INIT-REBOOT with address=)
    for dgram in client.datagrams_to_send(now): ...    # addressed per RFC 2131 4.1 and 4.4
    client.receive(payload, now)                       # a UDP payload received on port 68
    deadline = client.next_timer(); client.handle_timer(now)
    for ev in client.events(): ...                     # Bound, Renewed, Nak, ServerIgnored, Dropped...
    client.address_in_use(now)                         # the driver's ARP probe found the address taken

The state machine of RFC 2131 figure 5 is the data `TRANSITIONS` below; `transition()` is the one
place that raises for an illegal move. Which message types each state listens for is `LISTENS`;
anything else is dropped with a named reason (`ClientDrop`), counted in `drops`, and reported as
`Dropped`. Malformed input is one of them and never raises.

Two departures from figure 5, both explicit: a DHCPACK always leads to BOUND and the address check
comes after it (`address_in_use` is BOUND --DECLINE--> INIT, where the figure declines from
REQUESTING), because the driver probes with ARP; and a REQUESTING or REBOOTING client that gets no
answer after its retransmissions returns to INIT (RFC 2131 4.4.1 and 3.2 allow both).

Two guards of dhcpcd's, so that a rogue server cannot make the client spin (which in a simulation
with no link delay would stop virtual time): consecutive DHCPNAKs back off (at once, then 1, 2,
4 s... up to `nak_backoff_max`), and a lease shorter than `min_lease_time` is held that long.

Defenses (RFC 3118, draft-ietf-dhc-v4-threat-analysis 2.1.1, 2.2, 2.4): `require_server_auth`
drops every server message that fails authentication, and `ignore_failed_server` then ignores that
server for a while. The server is known by its server identifier, which an attacker can forge: a
forged failing message makes the client ignore the real server (a denial of service the measure
itself opens, which the threats can measure).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from enum import Enum
from hmac import compare_digest
from ipaddress import IPv4Address

from threatlab.dhcp.auth import (
    ALGORITHM_HMAC_MD5,
    DROP_ALGORITHM,
    DROP_BAD_HMAC,
    DROP_BAD_TOKEN,
    DROP_MISSING,
    DROP_NO_MAC,
    DROP_RDM,
    DROP_REPLAY,
    DROP_SPLIT,
    DROP_UNKNOWN_KEY,
    DROP_WRONG_PROTOCOL,
    PROTOCOL_DELAYED,
    PROTOCOL_DELAYED_REALM,
    PROTOCOL_TOKEN,
    RDM_MONOTONIC,
    AuthKey,
    KeyRing,
    ReplayCounter,
    ReplayDetector,
    auth_option,
    check_mac,
    sign,
)
from threatlab.dhcp.events import Datagram
from threatlab.dhcp.wire import (
    BOOTP_MIN_SIZE,
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    CLIENT_PORT,
    SERVER_PORT,
    Authentication,
    ClientIdentifier,
    DhcpMessage,
    DhcpMessageType,
    HostName,
    MaximumMessageSize,
    MessageType,
    Option,
    ParameterRequestList,
    RequestedIpAddress,
    ServerIdentifier,
)
from threatlab.errors import DecodeError, ParamError, ThreatlabError

__all__ = [
    "DhcpClient",
    "DhcpClientConfig",
    "DhcpClientStateError",
    "ClientLease",
    "State",
    "Trigger",
    "TRANSITIONS",
    "LISTENS",
    "transition",
    "ClientDrop",
    "OfferReceived",
    "OfferSelected",
    "Bound",
    "Renewed",
    "Nak",
    "Declined",
    "Released",
    "LeaseExpired",
    "RequestTimedOut",
    "ServerIgnored",
    "Dropped",
    "ClientEvent",
]

NS_PER_S = 1_000_000_000
INFINITY = 0xFFFFFFFF  # RFC 2131 3.3: an infinite lease
_ZERO = IPv4Address(0)
_BROADCAST = IPv4Address("255.255.255.255")
_BROADCAST_MAC = b"\xff" * 6
# what a client usually asks for: mask, router, DNS, domain, lease, server id, T1, T2 (dhcpcd's core)
DEFAULT_PRL = (1, 3, 6, 15, 51, 54, 58, 59)


# --- the state machine (RFC 2131 figure 5) as data -------------------------------------------------


class DhcpClientStateError(ThreatlabError):
    """A call the client's state does not allow (release() while SELECTING, start() twice, ...)."""


class State(Enum):
    INIT = "INIT"
    SELECTING = "SELECTING"
    REQUESTING = "REQUESTING"
    BOUND = "BOUND"
    RENEWING = "RENEWING"
    REBINDING = "REBINDING"
    INIT_REBOOT = "INIT-REBOOT"
    REBOOTING = "REBOOTING"

    def __repr__(self) -> str:
        return f"State.{self.name}"


class Trigger(Enum):
    DISCOVER = "DHCPDISCOVER sent"
    REBOOT = "start() with a remembered address"
    REBOOT_REQUEST = "DHCPREQUEST sent for the remembered address"
    SELECT = "offer selected, DHCPREQUEST sent"
    ACK = "DHCPACK accepted"
    NAK = "DHCPNAK accepted"
    GIVE_UP = "no answer after the last retransmission"
    T1 = "T1 expired, DHCPREQUEST unicast to the leasing server"
    T2 = "T2 expired, DHCPREQUEST broadcast"
    EXPIRE = "lease expired"
    DECLINE = "address in use, DHCPDECLINE sent"
    RELEASE = "release(), DHCPRELEASE sent"


S, T = State, Trigger

TRANSITIONS: dict[State, dict[Trigger, State]] = {
    S.INIT: {T.DISCOVER: S.SELECTING, T.REBOOT: S.INIT_REBOOT},
    S.INIT_REBOOT: {T.REBOOT_REQUEST: S.REBOOTING},
    S.SELECTING: {T.SELECT: S.REQUESTING, T.GIVE_UP: S.INIT},
    S.REQUESTING: {T.ACK: S.BOUND, T.NAK: S.INIT, T.GIVE_UP: S.INIT},
    S.REBOOTING: {T.ACK: S.BOUND, T.NAK: S.INIT, T.GIVE_UP: S.INIT},
    # T2 straight from BOUND: a server may set T1 == T2 (RFC 2131 4.4.5 only asks T1 <= T2)
    S.BOUND: {T.T1: S.RENEWING, T.T2: S.REBINDING, T.EXPIRE: S.INIT, T.DECLINE: S.INIT, T.RELEASE: S.INIT},
    S.RENEWING: {T.ACK: S.BOUND, T.NAK: S.INIT, T.T2: S.REBINDING, T.EXPIRE: S.INIT, T.RELEASE: S.INIT},
    S.REBINDING: {T.ACK: S.BOUND, T.NAK: S.INIT, T.EXPIRE: S.INIT, T.RELEASE: S.INIT},
}

_M = MessageType
# What each state listens for; figure 5's "discard" edges are everything else.
LISTENS: dict[State, frozenset[MessageType]] = {
    S.INIT: frozenset(),
    S.INIT_REBOOT: frozenset(),
    S.SELECTING: frozenset({_M.OFFER}),
    S.REQUESTING: frozenset({_M.ACK, _M.NAK}),
    S.REBOOTING: frozenset({_M.ACK, _M.NAK}),
    S.BOUND: frozenset(),
    S.RENEWING: frozenset({_M.ACK, _M.NAK}),
    S.REBINDING: frozenset({_M.ACK, _M.NAK}),
}

# States that hold a lease (the interface is configured).
HAS_LEASE = frozenset({S.BOUND, S.RENEWING, S.REBINDING})


def transition(state: State, trigger: Trigger) -> State:
    """Where `trigger` leads from `state`; DhcpClientStateError if figure 5 has no such edge."""
    try:
        return TRANSITIONS[state][trigger]
    except KeyError:
        raise DhcpClientStateError(
            f"dhcp client: {trigger.value} is not allowed in state {state.value}") from None


# --- configuration ---------------------------------------------------------------------------------

OFFER_CHOICES = ("first", "best")


@dataclass(frozen=True, slots=True)
class DhcpClientConfig:
    # --- ordinary knobs ----------------------------------------------------------------------------
    broadcast: bool = False  # RFC 2131 4.1: ask for broadcast replies (cannot take unicast unconfigured)
    hostname: bytes | None = None  # option 12
    parameter_request_list: tuple[int, ...] = DEFAULT_PRL  # option 55
    max_message_size: int | None = None  # option 57
    init_delay: float = 0.0  # s: start() waits uniform [0, init_delay] (RFC 2131 4.4.1 suggests 1-10)
    rtx_jitter: float = 1.0  # s: RFC 2131 4.1 randomizes each retransmission delay by +-1 s
    rtx_max: int = 64  # s: the retransmission delay doubles from 4 s up to this
    discover_retries: int | None = None  # DHCPDISCOVER retransmissions before a pause; None: forever
    discover_pause: int = 300  # s in INIT after giving up on DISCOVER (dhclient's "retry")
    request_retries: int = 4  # REQUESTING / REBOOTING retransmissions before INIT (4 + 8 + 16 + 32 s)
    offer_wait: float = 0.0  # s to keep collecting offers after the first (RFC 2131 4.4.1)
    offer_choice: str = "first"  # "first": the earliest offer; "best": the longest lease (then earliest)
    decline_wait: int = 10  # s before restarting after a DHCPDECLINE (RFC 2131 3.1 step 5)
    # s: after a DHCPNAK the client restarts at once, after the next consecutive one waits 1 s, then
    # 2, 4, ... up to this (dhcpcd's "nakoff"); 0 restarts at once every time
    nak_backoff_max: int = 60
    min_lease_time: int = 20  # s: shorter leases are held this long (dhcpcd's DHCP_MIN_LEASE)
    renew_min_wait: int = 60  # s: the RENEWING / REBINDING retransmission floor (RFC 2131 4.4.5)

    # --- defenses: RFC 3118 authentication (draft 2.1.1, 2.2, 2.4, 3, 4.2) ------------------------
    auth_protocol: int = PROTOCOL_DELAYED  # 0 token, 1 delayed (HMAC-MD5), 2 delayed with realm
    auth_keys: tuple[AuthKey, ...] = ()  # for protocol 0 each key is a token
    require_server_auth: bool = False  # drop server messages that do not authenticate
    authenticate_to_server: bool = False  # send a token / sign REQUEST, DECLINE and RELEASE
    auth_replay_start: int = 0  # the first replay detection value sent is this + 1
    ignore_failed_server: int = 0  # s a server whose message failed authentication is ignored

    def __post_init__(self) -> None:
        for name in ("rtx_max", "discover_pause", "request_retries", "decline_wait", "renew_min_wait",
                     "ignore_failed_server", "nak_backoff_max", "min_lease_time"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ParamError(f"{name} must be an integer >= 0, got {v!r}")
        if self.rtx_max < 4:
            raise ParamError(f"rtx_max must be >= 4 s (the first retransmission delay), got {self.rtx_max}")
        if self.discover_retries is not None and (not isinstance(self.discover_retries, int)
                                                  or self.discover_retries < 0):
            raise ParamError(
                f"discover_retries must be an integer >= 0 or None, got {self.discover_retries!r}")
        for name in ("init_delay", "offer_wait"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ParamError(f"{name} must be a number of seconds >= 0, got {v!r}")
        if not isinstance(self.rtx_jitter, (int, float)) or not 0 <= self.rtx_jitter < 4:
            raise ParamError(f"rtx_jitter must be in [0, 4) s, got {self.rtx_jitter!r}")
        if self.offer_choice not in OFFER_CHOICES:
            raise ParamError(
                f"offer_choice must be one of {', '.join(OFFER_CHOICES)}, got {self.offer_choice!r}")
        if self.auth_protocol not in (PROTOCOL_TOKEN, PROTOCOL_DELAYED, PROTOCOL_DELAYED_REALM):
            raise ParamError(f"auth_protocol must be 0 (token), 1 (delayed) or 2 (delayed with realm), "
                             f"got {self.auth_protocol!r}")
        if (self.require_server_auth or self.authenticate_to_server) and not self.auth_keys:
            raise ParamError(
                "require_server_auth and authenticate_to_server need at least one key in auth_keys")
        if not 0 <= self.auth_replay_start < 2**64 - 1:
            raise ParamError(f"auth_replay_start must be in [0, 2^64 - 2], got {self.auth_replay_start}")
        if self.max_message_size is not None and not 576 <= self.max_message_size <= 0xFFFF:
            raise ParamError(f"max_message_size must be in [576, 65535] or None, got {self.max_message_size}")
        for c in self.parameter_request_list:
            if not 1 <= c <= 254:
                raise ParamError(f"parameter_request_list codes must be in [1, 254], got {c}")

    @property
    def uses_auth_option(self) -> bool:
        return self.require_server_auth or self.authenticate_to_server


# --- what the client hands back --------------------------------------------------------------------


class ClientDrop:
    """The named reasons a received message is dropped (no state change)."""

    MALFORMED = "malformed"
    NOT_REPLY = "not a reply"  # op is BOOTREQUEST (another client's broadcast)
    NOT_FOR_US = "chaddr mismatch"  # a reply to another client
    XID = "xid mismatch"
    NO_MESSAGE_TYPE = "no message type"
    UNEXPECTED = "unexpected in state"  # e.g. a DHCPNAK while BOUND, a DHCPOFFER while REQUESTING
    NO_SERVER_ID = "no server identifier"
    IGNORED = "ignored server"
    OTHER_SERVER = "other server"  # not the server we are talking to
    NO_ADDRESS = "no address"  # DHCPOFFER / DHCPACK with yiaddr 0
    NO_LEASE_TIME = "no lease time"  # DHCPACK without option 51 (RFC 2131 table 3: MUST)
    WRONG_ADDRESS = "ack for another address"  # RENEWING / REBINDING / REBOOTING
    AUTH_MISSING = DROP_MISSING
    AUTH_WRONG_PROTOCOL = DROP_WRONG_PROTOCOL
    AUTH_ALGORITHM = DROP_ALGORITHM
    AUTH_RDM = DROP_RDM
    AUTH_NO_MAC = DROP_NO_MAC
    AUTH_UNKNOWN_KEY = DROP_UNKNOWN_KEY
    AUTH_BAD_TOKEN = DROP_BAD_TOKEN
    AUTH_BAD_HMAC = DROP_BAD_HMAC
    AUTH_REPLAY = DROP_REPLAY
    AUTH_SPLIT = DROP_SPLIT


@dataclass(frozen=True, slots=True)
class ClientLease:
    """What the client holds: the address and its configuration, with absolute times (ns)."""

    address: IPv4Address
    server: IPv4Address
    lease_time: int  # s; INFINITY for an infinite lease
    start: int  # ns: when the request that got it was first sent (RFC 2131 4.4.1)
    t1: int | None  # ns; None for an infinite lease
    t2: int | None
    expiry: int | None
    options: tuple[Option, ...]

    def _get(self, code: int, attr: str):
        for o in self.options:
            if o.code == code:
                return getattr(o, attr, None)
        return None

    @property
    def subnet_mask(self) -> IPv4Address | None:
        return self._get(1, "address")

    @property
    def routers(self) -> tuple[IPv4Address, ...]:
        return self._get(3, "addresses") or ()

    @property
    def dns_servers(self) -> tuple[IPv4Address, ...]:
        return self._get(6, "addresses") or ()


@dataclass(frozen=True, slots=True)
class OfferReceived:
    time: int
    server: IPv4Address
    address: IPv4Address
    lease: int | None  # s (option 51)


@dataclass(frozen=True, slots=True)
class OfferSelected:
    time: int
    server: IPv4Address
    address: IPv4Address
    offers: int  # how many acceptable offers there were to choose from


@dataclass(frozen=True, slots=True)
class Bound:
    """A lease obtained (REQUESTING or REBOOTING -> BOUND). `options` are the DHCPACK's."""

    time: int
    address: IPv4Address
    server: IPv4Address
    lease: int  # s
    options: tuple[Option, ...]


@dataclass(frozen=True, slots=True)
class Renewed:
    """The lease extended (RENEWING or REBINDING -> BOUND); `rebinding` says which."""

    time: int
    address: IPv4Address
    server: IPv4Address
    lease: int
    options: tuple[Option, ...]
    rebinding: bool


@dataclass(frozen=True, slots=True)
class Nak:
    time: int
    server: IPv4Address
    state: State  # the state the DHCPNAK arrived in
    message: bytes | None  # option 56


@dataclass(frozen=True, slots=True)
class Declined:
    time: int
    address: IPv4Address
    server: IPv4Address


@dataclass(frozen=True, slots=True)
class Released:
    time: int
    address: IPv4Address
    server: IPv4Address


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    time: int
    address: IPv4Address


@dataclass(frozen=True, slots=True)
class RequestTimedOut:
    """No DHCPACK or DHCPNAK after the last retransmission (REQUESTING / REBOOTING), or no
    DHCPOFFER after `discover_retries` (SELECTING)."""

    time: int
    state: State


@dataclass(frozen=True, slots=True)
class ServerIgnored:
    """draft 2.1.1: a server whose message failed authentication is ignored until `until` (ns)."""

    time: int
    server: IPv4Address
    reason: str
    until: int


@dataclass(frozen=True, slots=True)
class Dropped:
    time: int
    reason: str
    server: IPv4Address | None  # the message's server identifier, if it got that far


ClientEvent = (OfferReceived | OfferSelected | Bound | Renewed | Nak | Declined | Released | LeaseExpired
               | RequestTimedOut | ServerIgnored | Dropped)


@dataclass(frozen=True, slots=True)
class _Offer:
    time: int
    server: IPv4Address
    address: IPv4Address
    lease: int | None
    order: int


# Timer names, in the order they fire when due at the same instant: the lease running out wins
# over T2, T2 over T1 (T1 == T2 goes straight to REBINDING), and both over retransmissions.
_TIMER_ORDER = ("expiry", "t2", "t1", "select", "rtx", "restart")


class DhcpClient:
    """A DHCP client for one interface."""

    def __init__(self, config: DhcpClientConfig, rng: random.Random, chaddr: bytes,
                 client_id: bytes | None = None, *, htype: int = 1) -> None:
        if not 1 <= len(chaddr) <= 16:
            raise ParamError(f"chaddr must be 1 to 16 bytes, got {len(chaddr)}")
        if client_id is not None and len(client_id) < 2:
            raise ParamError("client_id is option 61's value: a type byte and at least one identifier byte")
        self.config = config
        self.rng = rng
        self.chaddr = bytes(chaddr)
        self.htype = htype
        self.client_id = None if client_id is None else ClientIdentifier(client_id[0], bytes(client_id[1:]))
        # DhcpMessage.client_key() of our messages: what the server (and per-client keys) know us by
        self.client_key = (b"i" + self.client_id.raw if self.client_id is not None
                           else b"h" + bytes((htype,)) + self.chaddr)
        self.state = State.INIT
        self.lease: ClientLease | None = None
        self.xid: int | None = None
        self.counters: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._events: list[ClientEvent] = []
        self._out: list[Datagram] = []
        self._timers: dict[str, int] = {}
        self._offers: list[_Offer] = []
        self._selected: _Offer | None = None
        self._reboot_address: IPv4Address | None = None
        self._started = 0  # ns: acquisition or renewal began ('secs', RFC 2131 2)
        self._sent = 0  # ns: the current request was first sent (the lease counts from here)
        self._rtx = 0  # retransmissions of the current message
        self._nakoff = 0  # s to wait before restarting after the next DHCPNAK
        self._ignored: dict[IPv4Address, int] = {}
        self._keys = KeyRing(config.auth_keys)
        self._replay_in = ReplayDetector()
        self._replay_out = ReplayCounter(config.auth_replay_start)

    # --- the sans-IO interface ---------------------------------------------------------------------

    def start(self, now: int, address: IPv4Address | None = None) -> None:
        """Begin: DHCPDISCOVER, or with `address` (a lease remembered from before) INIT-REBOOT."""
        if self.state is not State.INIT or self._timers:
            raise DhcpClientStateError(f"dhcp client: start() in state {self.state.value} (already started)")
        if address is not None:
            self._reboot(now, address)
            return
        delay = 0
        if self.config.init_delay:
            delay = int(self.rng.uniform(0, self.config.init_delay) * NS_PER_S)
        if delay:
            self._timers["restart"] = now + delay
        else:
            self._discover(now)

    def receive(self, data: bytes, now: int) -> None:
        """Handle one UDP payload received on port 68 at `now` (ns)."""
        self.counters["received"] += 1
        self.handle_timer(now)
        try:
            msg = DhcpMessage.decode(data)
        except DecodeError:
            return self._drop(now, ClientDrop.MALFORMED, None)
        if msg.op != BOOTREPLY:
            return self._drop(now, ClientDrop.NOT_REPLY, None)
        if msg.htype != self.htype or msg.mac != self.chaddr:
            return self._drop(now, ClientDrop.NOT_FOR_US, None)
        if msg.xid != self.xid:
            return self._drop(now, ClientDrop.XID, None)
        mtype = msg.message_type
        if mtype is None:
            return self._drop(now, ClientDrop.NO_MESSAGE_TYPE, None)
        if mtype not in LISTENS[self.state]:
            return self._drop(now, ClientDrop.UNEXPECTED, msg.server_id)
        server = msg.server_id
        if server is None:  # RFC 2131 table 3: MUST in DHCPOFFER, DHCPACK and DHCPNAK
            return self._drop(now, ClientDrop.NO_SERVER_ID, None)
        until = self._ignored.get(server)
        if until is not None:
            if until > now:
                return self._drop(now, ClientDrop.IGNORED, server)
            del self._ignored[server]
        if self.config.require_server_auth:
            reason = self._authenticate(msg, data, server)
            if reason is not None:
                self._drop(now, reason, server)
                if self.config.ignore_failed_server:
                    # draft 2.1.1: "ignoring for a while a server that failed it"
                    until = now + self.config.ignore_failed_server * NS_PER_S
                    self._ignored[server] = until
                    self.counters["servers ignored"] += 1
                    self._events.append(ServerIgnored(now, server, reason, until))
                return
        if mtype is MessageType.OFFER:
            self._on_offer(msg, server, now)
        elif mtype is MessageType.ACK:
            self._on_ack(msg, server, now)
        else:
            self._on_nak(msg, server, now)

    def datagrams_to_send(self, now: int) -> list[Datagram]:
        """The datagrams queued since the last call."""
        out, self._out = self._out, []
        return out

    def next_timer(self) -> int | None:
        """The next deadline (ns): a retransmission, the end of the offer window, T1, T2, expiry."""
        return min(self._timers.values()) if self._timers else None

    def handle_timer(self, now: int) -> None:
        """Act on every deadline that has come by `now`, each at its own time."""
        while self._timers:
            t, _, name = min((t, _TIMER_ORDER.index(name), name) for name, t in self._timers.items())
            if t > now:
                return
            del self._timers[name]
            getattr(self, f"_on_{name}")(t)

    def events(self) -> list[ClientEvent]:
        """The events since the last call."""
        ev, self._events = self._events, []
        return ev

    def address_in_use(self, now: int) -> None:
        """The driver found the address just bound in use (ARP): DHCPDECLINE it, and restart after
        `decline_wait` (RFC 2131 3.1 step 5, 4.4.1)."""
        lease = self.lease
        self._move(Trigger.DECLINE)
        assert lease is not None
        self.counters["declines"] += 1
        self._send(now, MessageType.DECLINE, requested=lease.address, server=lease.server, secs=False)
        self._end_lease()
        self._events.append(Declined(now, lease.address, lease.server))
        self._timers["restart"] = now + self.config.decline_wait * NS_PER_S

    def release(self, now: int) -> None:
        """Give the lease back (RFC 2131 4.4.6) and stay in INIT until start() again."""
        lease = self.lease
        self._move(Trigger.RELEASE)
        assert lease is not None
        self.counters["releases"] += 1
        self._send(now, MessageType.RELEASE, ciaddr=lease.address, server=lease.server, unicast=lease.server,
                   secs=False)
        self._end_lease()
        self._events.append(Released(now, lease.address, lease.server))

    @property
    def address(self) -> IPv4Address | None:
        """The address held (BOUND, RENEWING, REBINDING), else None."""
        return self.lease.address if self.lease is not None else None

    def ignored_servers(self, now: int) -> dict[IPv4Address, int]:
        """The servers ignored at `now`, with the time each is ignored until."""
        return {s: t for s, t in self._ignored.items() if t > now}

    # --- states ------------------------------------------------------------------------------------

    def _discover(self, now: int) -> None:
        self._move(Trigger.DISCOVER)
        self._new_exchange(now)
        self._offers = []
        self._selected = None
        self._send(now, MessageType.DISCOVER)
        self._schedule_rtx(now)

    def _reboot(self, now: int, address: IPv4Address) -> None:
        # RFC 2131 3.2: INIT-REBOOT broadcasts a DHCPREQUEST for the remembered address
        self._move(Trigger.REBOOT)
        self._reboot_address = address
        self._new_exchange(now)
        self._move(Trigger.REBOOT_REQUEST)
        self._send_request(now)
        self._schedule_rtx(now)

    def _select(self, now: int) -> None:
        offers = self._offers
        if self.config.offer_choice == "best":
            best = min(offers, key=lambda o: (-(o.lease if o.lease is not None else -1), o.order))
        else:
            best = offers[0]
        self._move(Trigger.SELECT)
        self._selected = best
        self._timers.pop("rtx", None)
        self._events.append(OfferSelected(now, best.server, best.address, len(offers)))
        # RFC 2131 4.4.1: the DHCPREQUEST keeps the xid of the DHCPOFFER
        self._sent = now
        self._rtx = 0
        self._send_request(now)
        self._schedule_rtx(now)

    def _on_offer(self, msg: DhcpMessage, server: IPv4Address, now: int) -> None:
        if msg.yiaddr == _ZERO:
            return self._drop(now, ClientDrop.NO_ADDRESS, server)
        self.counters["offers"] += 1
        offer = _Offer(now, server, msg.yiaddr, msg.lease_time, len(self._offers))
        self._offers.append(offer)
        self._events.append(OfferReceived(now, server, msg.yiaddr, msg.lease_time))
        if self.config.offer_wait == 0:
            self._select(now)
        elif "select" not in self._timers:
            self._timers.pop("rtx", None)  # an offer is in hand: no more DHCPDISCOVERs
            self._timers["select"] = now + int(self.config.offer_wait * NS_PER_S)

    def _on_ack(self, msg: DhcpMessage, server: IPv4Address, now: int) -> None:
        state = self.state
        if state is State.REQUESTING and server != self._selected.server:
            return self._drop(now, ClientDrop.OTHER_SERVER, server)
        if state is State.RENEWING and server != self.lease.server:
            return self._drop(now, ClientDrop.OTHER_SERVER, server)
        if msg.yiaddr == _ZERO:
            return self._drop(now, ClientDrop.NO_ADDRESS, server)
        if state in (State.RENEWING, State.REBINDING):
            expected = self.lease.address
        elif state is State.REBOOTING:
            expected = self._reboot_address
        else:
            expected = msg.yiaddr  # REQUESTING: the server may ACK another address than it offered
        if msg.yiaddr != expected:
            return self._drop(now, ClientDrop.WRONG_ADDRESS, server)
        lease_time = msg.lease_time
        if lease_time is None:
            return self._drop(now, ClientDrop.NO_LEASE_TIME, server)
        self._move(Trigger.ACK)
        self.counters["acks"] += 1
        self.lease = self._lease(msg, server, lease_time)
        self._timers.clear()
        for name in ("t1", "t2", "expiry"):
            t = getattr(self.lease, name)
            if t is not None:
                self._timers[name] = max(t, now)
        options = msg.options
        if state in (State.RENEWING, State.REBINDING):
            self.counters["renewals"] += 1
            rebinding = state is State.REBINDING
            self._events.append(Renewed(now, msg.yiaddr, server, lease_time, options, rebinding))
        else:
            self.counters["bound"] += 1
            self._events.append(Bound(now, msg.yiaddr, server, lease_time, options))
        self._nakoff = 0

    def _on_nak(self, msg: DhcpMessage, server: IPv4Address, now: int) -> None:
        state = self.state
        if state is State.REQUESTING and server != self._selected.server:
            return self._drop(now, ClientDrop.OTHER_SERVER, server)
        if state is State.RENEWING and server != self.lease.server:
            return self._drop(now, ClientDrop.OTHER_SERVER, server)
        self._move(Trigger.NAK)
        self.counters["naks"] += 1
        text = msg.get(56)
        self._events.append(Nak(now, server, state, getattr(text, "name", None)))
        self._end_lease()
        # RFC 2131 4.4.1 / 4.4.5: restart the configuration process; a client NAKed again and again
        # (draft 2.1.1, a rogue server) backs off
        wait, cap = self._nakoff, self.config.nak_backoff_max
        self._nakoff = min(cap, 1 if wait == 0 else 2 * wait)
        if wait == 0:
            self._discover(now)
        else:
            self._timers["restart"] = now + wait * NS_PER_S

    def _lease(self, msg: DhcpMessage, server: IPv4Address, lease_time: int) -> ClientLease:
        start = self._sent
        if lease_time == INFINITY:
            return ClientLease(msg.yiaddr, server, lease_time, start, None, None, None, msg.options)
        t1, t2 = msg.renewal_time, msg.rebinding_time
        if lease_time < self.config.min_lease_time:
            lease_time, t1, t2 = self.config.min_lease_time, None, None
        # RFC 2131 4.4.5: defaults 0.5 and 0.875 of the lease; values out of order are ignored
        if t2 is None or t2 > lease_time:
            t2 = lease_time * 7 // 8
        if t1 is None or t1 > t2:
            t1 = min(lease_time // 2, t2)
        return ClientLease(msg.yiaddr, server, lease_time, start, start + t1 * NS_PER_S,
                           start + t2 * NS_PER_S, start + lease_time * NS_PER_S, msg.options)

    def _end_lease(self) -> None:
        self.lease = None
        self._timers.clear()
        self._selected = None

    # --- timers ------------------------------------------------------------------------------------

    def _on_restart(self, now: int) -> None:
        self._discover(now)

    def _on_select(self, now: int) -> None:
        self._select(now)

    def _on_t1(self, now: int) -> None:
        # RFC 2131 4.4.5: unicast a DHCPREQUEST to the server that granted the lease
        self._move(Trigger.T1)
        self._new_exchange(now)
        self._send_request(now)
        self._schedule_renew_rtx(now, self.lease.t2)

    def _on_t2(self, now: int) -> None:
        self._timers.pop("t1", None)
        self._timers.pop("rtx", None)
        self._move(Trigger.T2)
        self._new_exchange(now)
        self._send_request(now)
        self._schedule_renew_rtx(now, self.lease.expiry)

    def _on_expiry(self, now: int) -> None:
        lease = self.lease
        self._move(Trigger.EXPIRE)
        self.counters["expired"] += 1
        self._events.append(LeaseExpired(now, lease.address))
        self._end_lease()
        self._discover(now)

    def _on_rtx(self, now: int) -> None:
        cfg, state = self.config, self.state
        if state is State.SELECTING:
            if cfg.discover_retries is not None and self._rtx >= cfg.discover_retries:
                self._move(Trigger.GIVE_UP)
                self.counters["discover timeouts"] += 1
                self._events.append(RequestTimedOut(now, state))
                self._timers["restart"] = now + cfg.discover_pause * NS_PER_S
                return
            self._rtx += 1
            self.counters["retransmissions"] += 1
            self._send(now, MessageType.DISCOVER)
            self._schedule_rtx(now)
        elif state in (State.REQUESTING, State.REBOOTING):
            if self._rtx >= cfg.request_retries:
                self._move(Trigger.GIVE_UP)
                self.counters["request timeouts"] += 1
                self._events.append(RequestTimedOut(now, state))
                self._end_lease()
                self._discover(now)
                return
            self._rtx += 1
            self.counters["retransmissions"] += 1
            self._send_request(now)
            self._schedule_rtx(now)
        elif state is State.RENEWING:
            self._rtx += 1
            self.counters["retransmissions"] += 1
            self._send_request(now)
            self._schedule_renew_rtx(now, self.lease.t2)
        elif state is State.REBINDING:
            self._rtx += 1
            self.counters["retransmissions"] += 1
            self._send_request(now)
            self._schedule_renew_rtx(now, self.lease.expiry)

    def _schedule_rtx(self, now: int) -> None:
        # RFC 2131 4.1: 4 s, then 8, 16, ... up to 64 s, each randomized by +-1 s
        cfg = self.config
        delay = min(4 << min(self._rtx, 16), cfg.rtx_max) * NS_PER_S
        if cfg.rtx_jitter:
            delay += int(self.rng.uniform(-cfg.rtx_jitter, cfg.rtx_jitter) * NS_PER_S)
        self._timers["rtx"] = now + delay

    def _schedule_renew_rtx(self, now: int, until: int | None) -> None:
        # RFC 2131 4.4.5: half the time left until T2 (RENEWING) or expiry (REBINDING), at least 60 s
        if until is None:
            return
        at = now + max(self.config.renew_min_wait * NS_PER_S, (until - now) // 2)
        if at < until:
            self._timers["rtx"] = at

    # --- sending -----------------------------------------------------------------------------------

    def _new_exchange(self, now: int) -> None:
        self.xid = self.rng.getrandbits(32)
        self._started = now
        self._sent = now
        self._rtx = 0

    def _send_request(self, now: int) -> None:
        state = self.state
        self.counters["requests"] += 1
        if state is State.REQUESTING:
            o = self._selected
            self._send(now, MessageType.REQUEST, requested=o.address, server=o.server)
        elif state is State.REBOOTING:
            self._send(now, MessageType.REQUEST, requested=self._reboot_address)
        elif state is State.RENEWING:
            self._send(now, MessageType.REQUEST, ciaddr=self.lease.address, unicast=self.lease.server)
        else:  # REBINDING
            self._send(now, MessageType.REQUEST, ciaddr=self.lease.address)

    def _send(self, now: int, mtype: MessageType, *, ciaddr: IPv4Address = _ZERO,
              requested: IPv4Address | None = None, server: IPv4Address | None = None,
              unicast: IPv4Address | None = None, secs: bool = True) -> None:
        """Queue one message, built afresh (a retransmission has a new 'secs' and replay value).
        RFC 2131 table 5 says which fields and options each message has."""
        cfg = self.config
        opts: list[Option] = [DhcpMessageType(mtype)]
        if self.client_id is not None:
            opts.append(self.client_id)
        if requested is not None:
            opts.append(RequestedIpAddress(requested))
        if server is not None:
            opts.append(ServerIdentifier(server))
        asks = mtype in (MessageType.DISCOVER, MessageType.REQUEST, MessageType.INFORM)
        if asks and cfg.max_message_size is not None:
            opts.append(MaximumMessageSize(cfg.max_message_size))
        if asks and cfg.parameter_request_list:
            opts.append(ParameterRequestList(cfg.parameter_request_list))
        if asks and cfg.hostname:
            opts.append(HostName(cfg.hostname))
        auth, key = self._auth_option(mtype)
        if auth is not None:
            opts.append(auth)
        elapsed = min((now - self._started) // NS_PER_S, 0xFFFF) if secs else 0
        msg = DhcpMessage(
            op=BOOTREQUEST, htype=self.htype, hlen=len(self.chaddr), xid=self.xid or 0, secs=elapsed,
            flags=BROADCAST_FLAG if cfg.broadcast and unicast is None else 0, ciaddr=ciaddr,
            chaddr=self.chaddr, options=tuple(opts),
        )
        data = msg.encode()
        if len(data) < BOOTP_MIN_SIZE:  # RFC 1542 2.1: relays may drop shorter BOOTP messages
            data = replace(msg, padding=BOOTP_MIN_SIZE - len(data)).encode()
        if key is not None:
            data = sign(data, key.key)
        self.counters["sent"] += 1
        self.counters[f"sent {mtype.name}"] += 1
        if unicast is not None:
            self._out.append(Datagram(data, ciaddr, unicast, CLIENT_PORT, SERVER_PORT))
        else:
            self._out.append(Datagram(data, ciaddr, _BROADCAST, CLIENT_PORT, SERVER_PORT, _BROADCAST_MAC))

    def _auth_option(self, mtype: MessageType) -> tuple[Authentication | None, AuthKey | None]:
        """RFC 3118: the option 90 to send, and the key to sign with (delayed authentication)."""
        cfg = self.config
        if not cfg.uses_auth_option:
            return None, None
        protocol = cfg.auth_protocol
        if protocol == PROTOCOL_TOKEN:
            if not cfg.authenticate_to_server:
                return None, None
            token = self._keys.for_client(self.client_key)
            return Authentication(PROTOCOL_TOKEN, 0, RDM_MONOTONIC, self._replay_out.next(), token.key), None
        if mtype in (MessageType.DISCOVER, MessageType.INFORM):
            # RFC 3118 5.4: asks for delayed authentication; there is no key agreed on yet
            return Authentication(protocol, ALGORITHM_HMAC_MD5, RDM_MONOTONIC, self._replay_out.next()), None
        if not cfg.authenticate_to_server:
            return None, None
        key = self._keys.for_client(self.client_key)
        opt = Authentication.delayed(key.secret_id, self._replay_out.next(),
                                     realm=key.realm if protocol == PROTOCOL_DELAYED_REALM else b"",
                                     protocol=protocol)
        return opt, key

    # --- receiving ---------------------------------------------------------------------------------

    def _authenticate(self, msg: DhcpMessage, data: bytes, server: IPv4Address) -> str | None:
        """RFC 3118 4 / 5.2: None if the message authenticates, else the drop reason. Replay
        detection is per server (each server keeps one counter)."""
        auth = msg.authentication
        if auth is None:
            return DROP_MISSING
        protocol = self.config.auth_protocol
        if auth.protocol != protocol:
            return DROP_WRONG_PROTOCOL
        if auth.rdm != RDM_MONOTONIC:
            return DROP_RDM
        if protocol == PROTOCOL_TOKEN:
            # RFC 3118 4: the token authenticates the sender, not the message (draft 3.1, 3.3)
            if not any(compare_digest(k.key, auth.info) for k in self._keys.tokens_for(self.client_key)):
                return DROP_BAD_TOKEN
            if not self._replay_in.fresh(server, auth.replay):
                return DROP_REPLAY
        else:
            if auth.algorithm != ALGORITHM_HMAC_MD5:
                return DROP_ALGORITHM
            if auth.secret_id is None:
                return DROP_NO_MAC
            key = self._keys.lookup(auth.realm or b"", auth.secret_id)
            if key is None or (key.client is not None and key.client != self.client_key):
                return DROP_UNKNOWN_KEY
            # RFC 3118 5.2: replay detection first, then the MAC
            if not self._replay_in.fresh(server, auth.replay):
                return DROP_REPLAY
            if isinstance(auth_option(data), str):
                return DROP_SPLIT
            if not check_mac(data, key.key):
                return DROP_BAD_HMAC
        self._replay_in.accept(server, auth.replay)
        return None

    def _move(self, trigger: Trigger) -> None:
        self.state = transition(self.state, trigger)

    def _drop(self, now: int, reason: str, server: IPv4Address | None) -> None:
        self.drops[reason] += 1
        self.counters["dropped"] += 1
        self._events.append(Dropped(now, reason, server))

    def __repr__(self) -> str:
        return f"<DhcpClient {self.chaddr.hex(':')} {self.state.value} {self.address}>"
