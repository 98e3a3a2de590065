"""A DHCP relay agent, sans-IO (RFC 1542 4, RFC 2131 4.1, RFC 3046 relay agent information).

    relay = DhcpRelay(DhcpRelayConfig(interfaces=(RelayInterface("eth0", IPv4Address("10.0.1.1")),),
                                      servers=(IPv4Address("10.0.0.1"),)))
    for dgram in relay.receive(payload, now, interface="eth0"): ...   # a UDP payload for port 67

Client to server (BOOTREQUEST, RFC 1542 4.1.1): drop it if `hops` exceeds `max_hops`; set
`giaddr` to the receiving interface's address if it is zero; increment `hops`; append option 82
with the interface's circuit and remote IDs (RFC 3046 2.1) unless the message carries one already,
which is dropped from an untrusted circuit and forwarded unchanged from a trusted one; send a copy
to every configured server.

Server to client (BOOTREPLY, RFC 1542 4.1.2): `giaddr` must be one of our interfaces; remove
option 82 (RFC 3046 2.2); deliver on that interface, broadcast if the BROADCAST flag is set (or
there is no yiaddr), else unicast to yiaddr at the link-layer address chaddr.

The relay edits the bytes in place (hops, giaddr, one option), so a client's or a server's
RFC 3118 MAC survives it: the MAC leaves out hops and giaddr, and the server signs before it adds
option 82. An adversary relay (draft 2.2 client misconfiguration, 2.4 modification) subclasses
`DhcpRelay` and overrides `alter_to_client` or `alter_to_server`; a message they return changed
is encoded anew (and so breaks the MAC), one returned as is goes on byte for byte, None drops it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address

from threatlab.dhcp.auth import insert_before_end
from threatlab.dhcp.events import Datagram
from threatlab.dhcp.wire import (
    BOOTREPLY,
    BOOTREQUEST,
    CLIENT_PORT,
    SERVER_PORT,
    CircuitId,
    DhcpMessage,
    RelayAgentInformation,
    RemoteId,
    option_spans,
)
from threatlab.errors import DecodeError, ParamError

__all__ = [
    "DhcpRelay",
    "DhcpRelayConfig",
    "RelayInterface",
    "RelayDrop",
    "Relayed",
    "RelayDropped",
    "RelayEvent",
    "strip_relay_agent_information",
]

_ZERO = IPv4Address(0)
_BROADCAST = IPv4Address("255.255.255.255")
_BROADCAST_MAC = b"\xff" * 6
_HOPS_AT = 3
_GIADDR_AT = 24
_OPTIONS_AT = 240


@dataclass(frozen=True, slots=True)
class RelayInterface:
    """An interface clients are on: its address becomes giaddr (RFC 1542 4.1.1)."""

    name: str
    address: IPv4Address
    circuit_id: bytes | None = None  # RFC 3046 3.1; default: the interface name
    remote_id: bytes | None = None  # RFC 3046 3.2; None: not sent
    trusted: bool = False  # RFC 3046 2.1: forward a client's own option 82 unchanged instead of dropping

    @property
    def agent_information(self) -> RelayAgentInformation:
        subs: list = [CircuitId(self.circuit_id if self.circuit_id is not None else self.name.encode())]
        if self.remote_id is not None:
            subs.append(RemoteId(self.remote_id))
        return RelayAgentInformation(tuple(subs))


@dataclass(frozen=True, slots=True)
class DhcpRelayConfig:
    interfaces: tuple[RelayInterface, ...]
    servers: tuple[IPv4Address, ...]
    max_hops: int = 16  # RFC 1542 4.1.1: discard a BOOTREQUEST whose hops exceeds this (at most 16)
    add_agent_information: bool = True  # RFC 3046: append option 82
    reply_source_check: bool = False  # accept replies only from a configured server's address

    def __post_init__(self) -> None:
        if not self.interfaces:
            raise ParamError("interfaces must name at least one interface clients are on")
        names = [i.name for i in self.interfaces]
        if len(set(names)) != len(names):
            raise ParamError(f"interfaces must have distinct names, got {names}")
        for i in self.interfaces:
            if not isinstance(i.address, IPv4Address) or i.address == _ZERO:
                raise ParamError(
                    f"interface {i.name}: address must be a non-zero IPv4Address, got {i.address!r}")
        if not self.servers:
            raise ParamError("servers must hold at least one server address")
        if not isinstance(self.max_hops, int) or not 0 <= self.max_hops <= 16:
            raise ParamError(f"max_hops must be an integer in [0, 16], got {self.max_hops!r}")


class RelayDrop:
    MALFORMED = "malformed"
    HOP_LIMIT = "hop limit"  # RFC 1542 4.1.1
    UNKNOWN_INTERFACE = "not a client interface"  # giaddr 0 on an interface with no address of ours
    UNTRUSTED_AGENT_INFO = "option 82 from untrusted circuit"  # RFC 3046 2.1
    NOT_OUR_GIADDR = "giaddr not ours"  # a reply for another relay (RFC 1542 4.1.2)
    NOT_FROM_SERVER = "not from a configured server"  # reply_source_check
    ALTERED_AWAY = "dropped by alter hook"  # an adversary subclass deleted it (draft 2.4)


@dataclass(frozen=True, slots=True)
class Relayed:
    time: int
    to_server: bool  # True: a client's request forwarded; False: a reply delivered
    xid: int
    chaddr: bytes
    interface: str | None


@dataclass(frozen=True, slots=True)
class RelayDropped:
    time: int
    reason: str


RelayEvent = Relayed | RelayDropped


class DhcpRelay:
    """A relay agent for the client interfaces of one router."""

    def __init__(self, config: DhcpRelayConfig) -> None:
        self.config = config
        self.counters: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._events: list[RelayEvent] = []
        self._by_name = {i.name: i for i in config.interfaces}
        self._by_address = {i.address: i for i in config.interfaces}

    # --- the sans-IO interface ---------------------------------------------------------------------

    def receive(self, data: bytes, now: int, *, interface: str | None = None,
                src_ip: IPv4Address = _ZERO) -> list[Datagram]:
        """Handle one UDP payload received on port 67 (on `interface`, from `src_ip`); return the
        datagrams to send. A datagram to a server has src_ip 0.0.0.0: the driver sends it from
        the address of the interface its route leaves by."""
        self.counters["received"] += 1
        try:
            msg = DhcpMessage.decode(data)
        except DecodeError:
            return self._drop(now, RelayDrop.MALFORMED)
        if msg.op == BOOTREQUEST:
            return self._to_server(data, msg, now, interface)
        if msg.op == BOOTREPLY:
            return self._to_client(data, msg, now, src_ip)
        return self._drop(now, RelayDrop.MALFORMED)  # pragma: no cover - the codec allows only 1 and 2

    def events(self) -> list[RelayEvent]:
        ev, self._events = self._events, []
        return ev

    def next_timer(self) -> int | None:
        """A relay keeps no timers; here so that drivers can treat every role alike."""
        return None

    def handle_timer(self, now: int) -> None:
        return None

    # --- hooks for adversary subclasses (draft 2.2, 2.4) -------------------------------------------

    def alter_to_server(self, message: DhcpMessage) -> DhcpMessage | None:
        """The client's request as it will go to the servers (giaddr, hops and option 82 done).
        Return it unchanged to forward the bytes as they are, another message to send that one,
        or None to drop it."""
        return message

    def alter_to_client(self, message: DhcpMessage) -> DhcpMessage | None:
        """The server's reply as it will go to the client (option 82 removed). As `alter_to_server`."""
        return message

    # --- the two directions ------------------------------------------------------------------------

    def _to_server(self, data: bytes, msg: DhcpMessage, now: int, interface: str | None) -> list[Datagram]:
        cfg = self.config
        if msg.hops > cfg.max_hops:
            return self._drop(now, RelayDrop.HOP_LIMIT)
        iface = self._by_name.get(interface) if interface is not None else None
        buf = bytearray(data)
        if msg.giaddr == _ZERO:
            if iface is None:
                return self._drop(now, RelayDrop.UNKNOWN_INTERFACE)
            buf[_GIADDR_AT:_GIADDR_AT + 4] = iface.address.packed
            if msg.relay_agent_information is not None and not iface.trusted:
                # RFC 3046 2.1: giaddr 0 with option 82 present comes from a client (spoofing it)
                return self._drop(now, RelayDrop.UNTRUSTED_AGENT_INFO)
        buf[_HOPS_AT] = min(msg.hops + 1, 255)
        out = bytes(buf)
        if (cfg.add_agent_information and iface is not None and msg.giaddr == _ZERO
                and msg.relay_agent_information is None):
            value = iface.agent_information.encode_value()
            out = insert_before_end(out, bytes((82, len(value))) + value)
        altered = self._altered(out, "alter_to_server", now)
        if altered is None:
            return []
        out = altered[0]
        self.counters["to server"] += 1
        self._events.append(Relayed(now, True, msg.xid, msg.mac, interface))
        return [Datagram(out, _ZERO, server, SERVER_PORT, SERVER_PORT) for server in cfg.servers]

    def _to_client(self, data: bytes, msg: DhcpMessage, now: int, src_ip: IPv4Address) -> list[Datagram]:
        cfg = self.config
        iface = self._by_address.get(msg.giaddr)
        if iface is None:
            return self._drop(now, RelayDrop.NOT_OUR_GIADDR)
        if cfg.reply_source_check and src_ip not in cfg.servers:
            return self._drop(now, RelayDrop.NOT_FROM_SERVER)
        altered = self._altered(strip_relay_agent_information(data), "alter_to_client", now)
        if altered is None:
            return []
        out, changed = altered
        if changed is not None:
            msg = changed
        self.counters["to client"] += 1
        self._events.append(Relayed(now, False, msg.xid, msg.mac, iface.name))
        if msg.broadcast or msg.yiaddr == _ZERO:
            return [Datagram(out, iface.address, _BROADCAST, SERVER_PORT, CLIENT_PORT, _BROADCAST_MAC,
                             iface.name)]
        # RFC 1542 4.1.2: unicast to yiaddr at chaddr, without ARP (the client has no address yet)
        return [Datagram(out, iface.address, msg.yiaddr, SERVER_PORT, CLIENT_PORT, msg.mac, iface.name)]

    def _altered(self, data: bytes, hook: str, now: int) -> tuple[bytes, DhcpMessage | None] | None:
        """Run the hook if a subclass overrides it: (bytes to send, the new message if changed),
        or None if it dropped the message."""
        if getattr(type(self), hook) is getattr(DhcpRelay, hook):
            return data, None
        msg = DhcpMessage.decode(data)
        new = getattr(self, hook)(msg)
        if new is None:
            self._drop(now, RelayDrop.ALTERED_AWAY)
            return None
        if new is msg:
            return data, None
        self.counters["altered"] += 1
        return new.encode(), new

    def _drop(self, now: int, reason: str) -> list[Datagram]:
        self.drops[reason] += 1
        self.counters["dropped"] += 1
        self._events.append(RelayDropped(now, reason))
        return []


def strip_relay_agent_information(data: bytes) -> bytes:
    """`data` without option 82, byte for byte otherwise (RFC 3046 2.2). An instance in the
    overloaded sname or file fields becomes pad bytes, as those fields have a fixed size."""
    spans = [s for s in option_spans(data) if s.code == 82]
    if not spans:
        return data
    buf = bytearray(data)
    for s in sorted(spans, key=lambda s: s.at, reverse=True):
        end = s.value_at + s.length
        if s.at >= _OPTIONS_AT:
            del buf[s.at:end]
        else:
            buf[s.at:end] = bytes(end - s.at)
    return bytes(buf)
