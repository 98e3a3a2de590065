"""Hosts: interfaces with MAC and IP addresses, a routing table, ARP, ICMP, UDP sockets, raw access.

The stack follows the host requirements (RFC 1122) where they matter to an attack:
- ARP (RFC 826): a cache with a pending-packet queue per unresolved next hop; the "merge" rule
  updates an existing entry from any ARP packet, so unsolicited replies overwrite; static
  neighbours never change.
- ICMP errors (RFC 1122 3.2.2, RFC 1812 4.3.2.7) are never sent about ICMP errors, non-first
  fragments, or packets to or from broadcast, multicast or unspecified addresses.
- Fragments (RFC 791 3.2) are reassembled before delivery; a DF packet larger than the egress MTU
  is dropped and reported as "fragmentation needed" with that MTU (RFC 1191).

Malformed frames and packets are dropped and counted in `drops` by reason, never raised.
Protocol packages plug in with `register_protocol(proto, handler)` (and, optionally, a fast
handler that takes an unfragmented packet's addresses and payload without an `IPv4` object);
attackers and DHCP use `raw_send` and `add_sniffer`.
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter, deque
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any, Callable

from threatlab.errors import DecodeError, ParamError
from threatlab.net.ethernet import ETH_HEADER_LEN, Nic
from threatlab.net.sim import NS_PER_S, Simulator, Timer
from threatlab.net.topology import NodeKind
from threatlab.net.wire import (
    ARP,
    ARP_REPLY,
    ARP_REQUEST,
    BROADCAST_MAC,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_IPV6,
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    IPPROTO_ICMP,
    IPPROTO_UDP,
    UDP,
    UNREACH_FRAG_NEEDED,
    UNREACH_PORT,
    UNREACH_PROTOCOL,
    Ethernet,
    ICMPv4,
    IPv4,
    IPv6,
    Reassembler,
    fragment,
    mac_bytes,
)
from threatlab.net.wire import _IP_MF, _IP_OFFSET_MASK, _IP_RESERVED, _V4_ADDRS, _ipv4_address

__all__ = ["Host", "UdpSocket", "RoutingTable", "RouteEntry", "EchoReply", "ArpEntry"]

ANY4 = IPv4Address(0)
LIMITED_BROADCAST = IPv4Address("255.255.255.255")
ALL_HOSTS = IPv4Address("224.0.0.1")
_ZERO_MAC = bytes(6)
_STATIC = 1 << 62  # expiry of a static neighbour entry: never
# ICMP types that are errors (RFC 1122 3.2.2: never answer one with another)
_ICMP_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})

ProtocolHandler = Callable[[IPv4, Nic], Any]
# fast(src, dst, payload, interface) -> True if it took the packet (see Host.register_protocol)
FastProtocolHandler = Callable[[IPv4Address, IPv4Address, bytes, Nic], bool]

# What the fast dispatch reads of a frame: the EtherType, then of the IPv4 header (RFC 791 3.1)
# version/IHL, total length, flags/fragment offset, protocol, source, destination
_ETH_IPV4_VIEW = struct.Struct("!12xHBxHxxHxBxxII")
_IP_NOT_PLAIN = _IP_RESERVED | _IP_MF | _IP_OFFSET_MASK  # any of these: the full decoder decides
_from_bytes = int.from_bytes

# The decoders as bound classmethods: `IPv4.decode(...)` binds a new method object per call.
_decode_ipv4 = IPv4.decode
_decode_udp = UDP.decode


@dataclass(frozen=True, slots=True)
class RouteEntry:
    network: IPv4Network | IPv6Network
    interface: str
    via: IPv4Address | IPv6Address | None = None
    connected: bool = False


class RoutingTable:
    """Longest prefix match; ties go to the route added first. Lookups are cached per destination."""

    __slots__ = ("_routes", "_cache", "on_change")

    _CACHE_MAX = 4096

    def __init__(self) -> None:
        self._routes: list[tuple[int, int, RouteEntry]] = []  # (mask, network, entry), longest first
        self._cache: dict[Any, RouteEntry | None] = {}
        self.on_change: list[Callable[[], Any]] = []  # callers that cache lookups forget them

    def _changed(self) -> None:
        self._cache.clear()
        for cb in self.on_change:
            cb()

    def add(
        self,
        network: IPv4Network | IPv6Network | str,
        interface: str,
        via: IPv4Address | IPv6Address | str | None = None,
        connected: bool = False,
    ) -> RouteEntry:
        """Add a route, replacing one for the same prefix."""
        net = ip_network(network, strict=False) if isinstance(network, str) else network
        gw = ip_address(via) if isinstance(via, str) else via
        entry = RouteEntry(net, interface, gw, connected)
        self._routes = [r for r in self._routes if r[2].network != net]
        self._routes.append((int(net.netmask), int(net.network_address), entry))
        self._routes.sort(key=lambda r: -r[2].network.prefixlen)  # stable: first added wins ties
        self._changed()
        return entry

    def remove(self, network: IPv4Network | IPv6Network | str) -> bool:
        net = ip_network(network, strict=False) if isinstance(network, str) else network
        before = len(self._routes)
        self._routes = [r for r in self._routes if r[2].network != net]
        self._changed()
        return len(self._routes) != before

    def remove_interface(self, interface: str, connected_only: bool = True) -> None:
        self._routes = [
            r for r in self._routes
            if not (r[2].interface == interface and (r[2].connected or not connected_only))
        ]
        self._changed()

    def lookup(self, dst: IPv4Address | IPv6Address) -> RouteEntry | None:
        cache = self._cache
        try:
            return cache[dst]
        except KeyError:
            pass
        d = int(dst)
        found = None
        for mask, net, entry in self._routes:
            if d & mask == net and entry.network.version == dst.version:
                found = entry
                break
        if len(cache) >= self._CACHE_MAX:
            cache.clear()
        cache[dst] = found
        return found

    def __iter__(self):
        return (r[2] for r in self._routes)

    def __len__(self) -> int:
        return len(self._routes)


class ArpEntry:
    __slots__ = ("mac", "expires", "static", "nic")

    def __init__(self, mac: bytes, expires: int, static: bool, nic: Nic | None) -> None:
        self.mac = mac
        self.expires = expires
        self.static = static
        self.nic = nic

    def __repr__(self) -> str:
        kind = "static" if self.static else f"expires={self.expires}"
        return f"<ArpEntry {self.mac.hex(':')} {kind}>"


class _Pending:
    """Packets waiting for ARP to resolve one next hop (RFC 1122 2.3.2.2: keep at least one)."""

    __slots__ = ("nic", "packets", "tries", "timer")

    def __init__(self, nic: Nic) -> None:
        self.nic = nic
        self.packets: deque[tuple[bytes, bytes]] = deque()  # (ip packet, source MAC)
        self.tries = 0
        self.timer: Timer | None = None


@dataclass(frozen=True, slots=True)
class EchoReply:
    src: IPv4Address
    ident: int
    seq: int
    rtt_ns: int | None  # None if the request was not sent by `ping`
    time_ns: int
    data: bytes


class UdpSocket:
    """A UDP socket bound to a local port.

    Received datagrams go to `on_datagram(data, (src_ip, src_port), dst_ip)` when it is set,
    otherwise to `queue` (read with `recvfrom()`), up to `rcvbuf` datagrams.
    """

    __slots__ = ("host", "port", "bind_ip", "on_datagram", "queue", "rcvbuf", "closed", "ttl", "df", "drops")

    def __init__(self, host: Host, port: int, bind_ip: IPv4Address | None, rcvbuf: int = 1024) -> None:
        self.host = host
        self.port = port
        self.bind_ip = bind_ip
        self.on_datagram: Callable[[bytes, tuple[IPv4Address, int], IPv4Address], Any] | None = None
        self.queue: deque[tuple[bytes, tuple[IPv4Address, int], IPv4Address]] = deque()
        self.rcvbuf = rcvbuf
        self.closed = False
        self.ttl = 64
        self.df = False
        self.drops: Counter[str] = Counter()

    def sendto(self, data: bytes, addr: tuple[IPv4Address | str, int], ifname: str | None = None) -> bool:
        """Send one datagram; False if it could not leave (no route, DF too big, closed).

        `ifname` picks the interface for a broadcast when there is no route (a DHCP client).
        """
        if self.closed:
            self.drops["closed"] += 1
            return False
        ip, port = addr
        if type(ip) is not IPv4Address:
            ip = _to_v4(ip)
        return self.host.send_udp(self.port, ip, port, data, self.bind_ip, self.ttl, self.df, ifname)

    def recvfrom(self) -> tuple[bytes, tuple[IPv4Address, int], IPv4Address] | None:
        """The oldest queued datagram as (data, (src_ip, src_port), dst_ip), or None."""
        return self.queue.popleft() if self.queue else None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.host._udp.pop(self.port, None)

    def _deliver(self, data: bytes, addr: tuple[IPv4Address, int], dst: IPv4Address) -> None:
        cb = self.on_datagram
        if cb is not None:
            cb(data, addr, dst)
        elif len(self.queue) < self.rcvbuf:
            self.queue.append((data, addr, dst))
        else:
            self.drops["rcvbuf-full"] += 1

    def __repr__(self) -> str:
        return f"<UdpSocket {self.host.name}:{self.port}>"


def _to_v4(ip: Any) -> IPv4Address:
    try:
        addr = ip_address(ip)
    except ValueError:
        raise ParamError(f"not an IP address: {ip!r}") from None
    if not isinstance(addr, IPv4Address):
        raise ParamError(f"UDP sockets are IPv4 only, got {ip!r}")
    return addr


def multicast_mac_v4(ip: IPv4Address) -> bytes:
    """RFC 1112 6.4: 01:00:5e and the low 23 bits of the group."""
    return b"\x01\x00\x5e" + (int(ip) & 0x7FFFFF).to_bytes(3, "big")


def multicast_mac_v6(ip: IPv6Address) -> bytes:
    """RFC 2464 7: 33:33 and the low 32 bits of the group."""
    return b"\x33\x33" + ip.packed[-4:]


class Host:
    """An end system: it never forwards (see `Router`).

    `drops` counts every discarded frame or packet by reason; `stats` counts everything else a
    metric may need ("icmp-out:3/3", "fragments-out", "arp-requests-out", ...).
    """

    kind = NodeKind.HOST
    forwarding = False

    def __init__(
        self,
        name: str,
        sim: Simulator,
        *,
        arp_timeout_ns: int = 60 * NS_PER_S,
        arp_retry_ns: int = NS_PER_S,
        arp_retries: int = 3,
        arp_queue_len: int = 16,
        reassembly_timeout_ns: int = 30 * NS_PER_S,
    ) -> None:
        self.name = name
        self.sim = sim
        self.interfaces: dict[str, Nic] = {}
        self.routes = RoutingTable()
        self.routes6 = RoutingTable()
        self._arp: dict[int, ArpEntry] = {}  # keyed by int(address): IPv4Address hashes slowly
        self.neighbors6: dict[IPv6Address, bytes] = {}
        self.arp_timeout_ns = arp_timeout_ns
        self.arp_retry_ns = arp_retry_ns
        self.arp_retries = arp_retries
        self.arp_queue_len = arp_queue_len
        self.reassembler = Reassembler(reassembly_timeout_ns)
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.reply_to_echo = True
        self.echo_ignore_broadcasts = True  # as Linux icmp_echo_ignore_broadcasts=1
        self.echo_replies: list[EchoReply] = []
        self.icmp_listeners: list[Callable[[ICMPv4, IPv4, Nic | None], Any]] = []
        self.ipv6_handler: Callable[[IPv6, Nic], Any] | None = None
        self.rng = sim.child_rng(f"host:{name}")
        self.ephemeral_ports = (49152, 65535)  # RFC 6335 dynamic range
        self.random_ephemeral_ports = True  # RFC 6056 port randomization
        self._next_ephemeral = 49152
        self._ip_id = self.rng.randrange(0x10000)
        self.ping_ident = zlib.crc32(name.encode()) & 0xFFFF  # stands in for the pid
        self._pending: dict[int, _Pending] = {}
        self._pings: dict[tuple[int, int], int] = {}
        self._udp: dict[int, UdpSocket] = {}
        self._protocols: dict[int, ProtocolHandler] = {IPPROTO_ICMP: self._on_icmp, IPPROTO_UDP: self._on_udp}
        self._fast4: dict[int, FastProtocolHandler] = {}
        # The fast handlers `_on_frame` consults: the registry itself, or, for a subclass that takes
        # IPv4 input over (the NAT), none, so that it sees every packet.
        self._fast4_in = self._fast4 if type(self)._on_ipv4 is Host._on_ipv4 else {}
        self._ethertypes: dict[int, Callable[[Ethernet, Nic], Any]] = {}
        # Addresses as ints on the data path (IPv4Address._ip; hashing an IPv4Address runs hex()).
        self._local4: set[int] = set()
        self._accept4: set[int] = {LIMITED_BROADCAST._ip, ALL_HOSTS._ip}
        self._local6: set[IPv6Address] = set()
        self._route_nic: dict[int, tuple[Nic, IPv4Address] | None] = {}
        self.routes.on_change.append(self._route_nic.clear)
        self._arp[LIMITED_BROADCAST._ip] = ArpEntry(BROADCAST_MAC, _STATIC, True, None)

    # -- configuration ----------------------------------------------------------------------

    def add_interface(
        self,
        name: str,
        mac: bytes | str,
        ipv4: IPv4Interface | str | None = None,
        ipv6: IPv6Interface | str | None = None,
    ) -> Nic:
        if name in self.interfaces:
            raise ParamError(f"{self.name}: interface {name!r} exists")
        nic = Nic(self.name, name, mac_bytes(mac) if isinstance(mac, str) else bytes(mac), self.sim)
        nic.handler = self._on_frame
        self.interfaces[name] = nic
        if ipv4 is not None:
            self.configure_ipv4(name, ipv4)
        if ipv6 is not None:
            self.configure_ipv6(name, ipv6)
        return nic

    def configure_ipv4(self, ifname: str, address: IPv4Interface | str | None) -> None:
        """Set or clear the interface's IPv4 address (a DHCP client calls this); the connected
        route follows."""
        nic = self._nic(ifname)
        old = nic.ipv4
        if old is not None:
            self._local4.discard(int(old.ip))
            self._accept4.discard(int(old.ip))
            if old.network.prefixlen < 31:
                self._accept4.discard(int(old.network.broadcast_address))
                self._arp.pop(int(old.network.broadcast_address), None)
            self.routes.remove_interface(ifname)
        addr = IPv4Interface(address) if isinstance(address, str) else address
        nic.ipv4 = addr
        nic.ip = addr.ip if addr is not None else None
        if addr is not None:
            self._local4.add(int(addr.ip))
            self._accept4.add(int(addr.ip))
            if addr.network.prefixlen < 31:
                bcast = int(addr.network.broadcast_address)
                self._accept4.add(bcast)
                self._arp[bcast] = ArpEntry(BROADCAST_MAC, _STATIC, True, nic)
            self.routes.add(addr.network, ifname, connected=True)
        self._route_nic.clear()

    def configure_ipv6(self, ifname: str, address: IPv6Interface | str | None) -> None:
        nic = self._nic(ifname)
        if nic.ipv6 is not None:
            self._local6.discard(nic.ipv6.ip)
            self.routes6.remove_interface(ifname)
        addr = IPv6Interface(address) if isinstance(address, str) else address
        nic.ipv6 = addr
        if addr is not None:
            self._local6.add(addr.ip)
            self.routes6.add(addr.network, ifname, connected=True)

    def add_route(self, prefix: str, interface: str, via: str | None = None) -> RouteEntry:
        self._nic(interface)
        net = ip_network(prefix, strict=False)
        table = self.routes if net.version == 4 else self.routes6
        return table.add(net, interface, via)

    def add_neighbor(
        self, ip: IPv4Address | IPv6Address | str, mac: bytes | str, ifname: str | None = None
    ) -> None:
        """A static neighbour: ARP never overwrites it (the classic defense against ARP spoofing)."""
        addr = ip_address(ip) if isinstance(ip, str) else ip
        mb = mac_bytes(mac) if isinstance(mac, str) else bytes(mac)
        if addr.version == 4:
            nic = self._nic(ifname) if ifname else None
            self._arp[int(addr)] = ArpEntry(mb, _STATIC, True, nic)
            self._flush_pending(int(addr), mb)
        else:
            self.neighbors6[addr] = mb

    def register_protocol(self, proto: int, handler: ProtocolHandler,
                          fast: FastProtocolHandler | None = None) -> None:
        """Deliver IPv4 packets for us of protocol `proto` to handler(packet, interface), after
        reassembly. Replaces the built-in ICMP or UDP handling if given 1 or 17.

        `fast`, if given, is offered every unfragmented packet for us without IP options whose
        header checksum verified, as fast(src, dst, payload, interface) with the addresses as
        `IPv4Address`es: the packet `handler` would get, without building an `IPv4`. It returns
        True when it took the packet, False to have it decoded and given to `handler` as usual.
        Registering again without `fast` removes the previous one."""
        if not 0 <= proto <= 255:
            raise ParamError(f"proto must be in [0, 255], got {proto}")
        self._protocols[proto] = handler
        if fast is None:
            self._fast4.pop(proto, None)
        else:
            self._fast4[proto] = fast

    def unregister_protocol(self, proto: int) -> None:
        self._protocols.pop(proto, None)
        self._fast4.pop(proto, None)
        if proto == IPPROTO_ICMP:
            self._protocols[proto] = self._on_icmp
        elif proto == IPPROTO_UDP:
            self._protocols[proto] = self._on_udp

    def register_ethertype(self, ethertype: int, handler: Callable[[Ethernet, Nic], Any]) -> None:
        """Frames of another EtherType go to handler(ethernet, interface) instead of being dropped."""
        self._ethertypes[ethertype] = handler

    def register_ipv6(self, handler: Callable[[IPv6, Nic], Any] | None) -> None:
        """IPv6 packets for us go to handler(packet, interface); without one they are dropped."""
        self.ipv6_handler = handler

    def add_sniffer(self, callback: Callable[[bytes, str, int], Any], ifname: str | None = None) -> None:
        """callback(frame, ifname, now) for every frame the NIC(s) accept."""
        nics = [self._nic(ifname)] if ifname else list(self.interfaces.values())
        for nic in nics:
            nic.sniffers.append(callback)

    def _nic(self, ifname: str) -> Nic:
        try:
            return self.interfaces[ifname]
        except KeyError:
            raise ParamError(f"{self.name} has no interface {ifname!r}") from None

    @property
    def addresses(self) -> list[IPv4Address]:
        return [n.ipv4.ip for n in self.interfaces.values() if n.ipv4 is not None]

    @property
    def ip(self) -> IPv4Address | None:
        """The first interface's IPv4 address (convenient in tests and builders)."""
        for nic in self.interfaces.values():
            if nic.ipv4 is not None:
                return nic.ipv4.ip
        return None

    @property
    def ip6(self) -> IPv6Address | None:
        for nic in self.interfaces.values():
            if nic.ipv6 is not None:
                return nic.ipv6.ip
        return None

    @property
    def mac(self) -> bytes:
        return next(iter(self.interfaces.values())).mac

    def is_local(self, ip: IPv4Address) -> bool:
        return int(ip) in self._local4

    def neighbor(self, ip: IPv4Address | str) -> bytes | None:
        """The MAC ARP (or a static entry) holds for `ip` now, or None."""
        entry = self._arp.get(int(ip_address(ip)))
        if entry is None or entry.expires <= self.sim.now:
            return None
        return entry.mac

    def arp_table(self) -> dict[IPv4Address, bytes]:
        """Every live ARP entry, broadcast entries excluded."""
        now = self.sim.now
        return {
            IPv4Address(ip): e.mac
            for ip, e in self._arp.items()
            if e.expires > now and e.mac != BROADCAST_MAC
        }

    # -- sockets ----------------------------------------------------------------------------

    def udp_socket(self, port: int | None = None, bind_ip: IPv4Address | str | None = None) -> UdpSocket:
        """A socket on `port`, or on a free ephemeral port (random in the dynamic range, RFC 6056)."""
        if port is None:
            port = self._ephemeral_port()
        elif not 0 < port <= 0xFFFF:
            raise ParamError(f"UDP port must be in [1, 65535], got {port}")
        elif port in self._udp:
            raise ParamError(f"{self.name}: UDP port {port} is in use")
        bip = _to_v4(bind_ip) if bind_ip is not None and not isinstance(bind_ip, IPv4Address) else bind_ip
        sock = UdpSocket(self, port, bip)
        self._udp[port] = sock
        return sock

    def _ephemeral_port(self) -> int:
        lo, hi = self.ephemeral_ports
        n = hi - lo + 1
        for _ in range(n):
            if self.random_ephemeral_ports:
                port = self.rng.randint(lo, hi)
            else:
                port = self._next_ephemeral
                self._next_ephemeral = lo + (port + 1 - lo) % n
            if port not in self._udp:
                return port
        raise ParamError(f"{self.name}: no free ephemeral UDP port")

    # -- sending ----------------------------------------------------------------------------

    def next_ip_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id

    def route(self, dst: IPv4Address) -> tuple[Nic, IPv4Address] | None:
        """(egress interface, next hop) for `dst`, or None."""
        key = dst._ip
        try:
            return self._route_nic[key]
        except KeyError:
            pass
        entry = self.routes.lookup(dst)
        res = None if entry is None else (self.interfaces[entry.interface], entry.via or dst)
        if len(self._route_nic) >= 4096:
            self._route_nic.clear()
        self._route_nic[key] = res
        return res

    def send_udp(
        self,
        src_port: int,
        dst: IPv4Address,
        dst_port: int,
        data: bytes,
        src: IPv4Address | None = None,
        ttl: int = 64,
        df: bool = False,
        ifname: str | None = None,
    ) -> bool:
        """Send a UDP datagram from `src_port` (no socket needed: an attacker's forged datagram)."""
        if ifname is None:
            r = self._route_nic.get(dst._ip)
            if r is None:
                r = self.route(dst)
                if r is None:
                    r = self._route_or_broadcast(dst, None)
                    if r is None:
                        return False
        else:
            r = self._route_or_broadcast(dst, ifname)
        nic, nexthop = r
        if src is None:
            src = nic.ip or ANY4
        try:
            seg = UDP(src_port, dst_port, data).encode(src, dst)
        except ValueError:
            self.drops["udp-too-large"] += 1
            return False
        self._ip_id = ident = (self._ip_id + 1) & 0xFFFF
        return self._output(IPv4(src, dst, IPPROTO_UDP, seg, ttl, 0, ident, df), nic, nexthop)

    def send_ip(
        self,
        dst: IPv4Address | str,
        proto: int,
        payload: bytes,
        src: IPv4Address | str | None = None,
        ttl: int = 64,
        df: bool = False,
        tos: int = 0,
        ifname: str | None = None,
    ) -> bool:
        """Send an IPv4 packet by the routing table, fragmenting if it is too big and DF is clear.

        Returns False if it could not leave (no route, DF and too big). A packet to one of our own
        addresses is delivered locally.
        """
        if type(dst) is not IPv4Address:
            dst = _to_v4(dst)
        if src is not None and type(src) is not IPv4Address:
            src = _to_v4(src)
        r = self._route_or_broadcast(dst, ifname)
        if r is None:
            return False
        nic, nexthop = r
        if src is None:
            src = nic.ip or ANY4
        return self._output(IPv4(src, dst, proto, payload, ttl, tos, self.next_ip_id(), df), nic, nexthop)

    def _route_or_broadcast(self, dst: IPv4Address, ifname: str | None) -> tuple[Nic, IPv4Address] | None:
        if ifname is not None:
            nic = self._nic(ifname)
            if dst == LIMITED_BROADCAST or dst._ip in self._local4:
                return nic, dst
            entry = self.routes.lookup(dst)
            return nic, (entry.via if entry is not None and entry.interface == ifname and entry.via else dst)
        r = self.route(dst)
        if r is None:
            if dst == LIMITED_BROADCAST and len(self.interfaces) == 1:
                return next(iter(self.interfaces.values())), dst
            self.drops["no-route"] += 1
        return r

    def _output(self, packet: IPv4, nic: Nic, nexthop: IPv4Address, forwarded_from=None) -> bool:
        """Encode, fragment to the egress MTU if allowed, and hand to ARP.

        `forwarded_from` is (packet as received, its bytes) when a router forwards it.
        """
        data = packet.encode()
        if len(data) <= nic.mtu:
            entry = self._arp.get(nexthop._ip)
            if entry is not None and entry.expires > self.sim.now:  # the common case, inlined
                nic.transmit(Ethernet(entry.mac, nic.mac, ETH_P_IP, data).encode())
            else:
                self._send_l3(nic, nexthop, data, nic.mac)
            return True
        if packet.df:
            self.drops["frag-needed"] += 1
            self._frag_needed(packet, data, nic.mtu, forwarded_from)
            return False
        frags = fragment(packet, nic.mtu)
        self.stats["fragments-out"] += len(frags)
        for frag in frags:
            self._send_l3(nic, nexthop, frag.encode(), nic.mac)
        return True

    def _frag_needed(self, packet: IPv4, data: bytes, mtu: int, forwarded_from) -> None:
        """A host's own DF packet that does not fit: tell our own ICMP listeners, as a local
        "fragmentation needed" (Linux reports EMSGSIZE and updates the path MTU)."""
        icmp = ICMPv4.dest_unreachable(UNREACH_FRAG_NEEDED, data, next_hop_mtu=mtu)
        note = IPv4(packet.src, packet.src, IPPROTO_ICMP, icmp.encode())
        for listener in self.icmp_listeners:
            listener(icmp, note, None)

    def _send_l3(self, nic: Nic, nexthop: IPv4Address, ip_packet: bytes, src_mac: bytes) -> None:
        """Frame an IPv4 packet to `nexthop`'s MAC, resolving it with ARP if needed."""
        key = nexthop._ip
        entry = self._arp.get(key)
        if entry is not None and entry.expires > self.sim.now:
            nic.transmit(Ethernet(entry.mac, src_mac, ETH_P_IP, ip_packet).encode())
            return
        if nexthop.is_multicast:
            nic.transmit(Ethernet(multicast_mac_v4(nexthop), src_mac, ETH_P_IP, ip_packet).encode())
            return
        if key in self._local4:
            self.sim.post(0, self._loopback, ip_packet, nic)
            return
        if nic.ipv4 is None:
            self.drops["arp-no-address"] += 1
            return
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(nic)
            pending.packets.append((ip_packet, src_mac))
            self._arp_request(nexthop)
            return
        if len(pending.packets) >= self.arp_queue_len:
            pending.packets.popleft()
            self.drops["arp-queue-overflow"] += 1
        pending.packets.append((ip_packet, src_mac))

    def _loopback(self, ip_packet: bytes, nic: Nic) -> None:
        self._on_ipv4(nic, ip_packet)

    # -- ARP (RFC 826) ----------------------------------------------------------------------

    def _arp_request(self, target: IPv4Address) -> None:
        key = int(target)
        pending = self._pending.get(key)
        if pending is None:
            return
        if pending.tries >= self.arp_retries:
            del self._pending[key]
            self.drops["arp-unresolved"] += len(pending.packets)
            return
        nic = pending.nic
        if nic.ipv4 is None:
            # the interface lost its address (a DHCP lease ended) while the request was pending
            del self._pending[key]
            self.drops["arp-no-source-address"] += len(pending.packets)
            return
        pending.tries += 1
        req = ARP(ARP_REQUEST, nic.mac, nic.ipv4.ip, _ZERO_MAC, target)
        nic.transmit(Ethernet(BROADCAST_MAC, nic.mac, ETH_P_ARP, req.encode()).encode())
        self.stats["arp-requests-out"] += 1
        pending.timer = self.sim.schedule(self.arp_retry_ns, self._arp_request, target)

    def _on_arp(self, nic: Nic, payload: bytes) -> None:
        try:
            arp = ARP.decode(payload)
        except DecodeError:
            self.drops["malformed-arp"] += 1
            return
        sender = int(arp.sender_ip)
        now = self.sim.now
        entry = self._arp.get(sender)
        merged = False
        if entry is not None and sender != 0:
            # RFC 826 merge: an existing entry is updated from any ARP packet
            if entry.static:
                if entry.mac != arp.sender_mac:
                    self.drops["arp-static-conflict"] += 1
            else:
                entry.mac = arp.sender_mac
                entry.expires = now + self.arp_timeout_ns
                entry.nic = nic
            merged = True
        if int(arp.target_ip) not in self._local4:
            if not merged:
                self.stats["arp-not-for-us"] += 1
            return
        if not merged and sender != 0:
            self._arp[sender] = ArpEntry(arp.sender_mac, now + self.arp_timeout_ns, False, nic)
        if sender != 0:
            self._flush_pending(sender, self._arp[sender].mac)
        if arp.op == ARP_REQUEST:
            reply = ARP(ARP_REPLY, nic.mac, arp.target_ip, arp.sender_mac, arp.sender_ip)
            nic.transmit(Ethernet(arp.sender_mac, nic.mac, ETH_P_ARP, reply.encode()).encode())
            self.stats["arp-replies-out"] += 1

    def _flush_pending(self, key: int, mac: bytes) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        nic = pending.nic
        for packet, src_mac in pending.packets:
            nic.transmit(Ethernet(mac, src_mac, ETH_P_IP, packet).encode())

    # -- receiving --------------------------------------------------------------------------

    def _on_frame(self, nic: Nic, frame: bytes) -> None:
        if nic.promiscuous and not (frame[0] & 1 or frame.startswith(nic.mac)):
            return  # seen by the sniffers only: IP ignores other hosts' frames (PACKET_OTHERHOST)
        # The stack itself needs only the EtherType and the payload, so read those from the header
        # instead of building an Ethernet: the three types below are ones Ethernet.decode accepts,
        # and every other frame still goes through it (802.3 length and VLAN checks included).
        n = len(frame)
        fast = self._fast4_in
        if fast and n >= 34:
            # Fast dispatch (register_protocol's `fast`): the packets `_on_ipv4` would decode with
            # a bare 20-byte header (version 4, IHL 5, total length within the frame, no reserved
            # bit) and, being for us and not fragments, hand straight to their protocol's handler.
            # The header checksum is verified as IPv4.decode does (the RFC 1071 sum of the 20
            # bytes, see threatlab.net.checksum). Anything else, or a fast handler declining, takes
            # the usual way below.
            et, vihl, total, ff, proto, src, dst = _ETH_IPV4_VIEW.unpack_from(frame)
            if et == ETH_P_IP and vihl == 0x45 and 20 <= total <= n - ETH_HEADER_LEN \
                    and not ff & _IP_NOT_PLAIN and dst in self._accept4:
                handler = fast.get(proto)
                if handler is not None:
                    s = _from_bytes(frame[ETH_HEADER_LEN:34], "big")
                    if s and not s % 0xFFFF and handler(_V4_ADDRS.get(src) or _ipv4_address(src),
                                                        _V4_ADDRS.get(dst) or _ipv4_address(dst),
                                                        frame[34:ETH_HEADER_LEN + total], nic):
                        return
        if n < ETH_HEADER_LEN:
            self.drops["malformed-ethernet"] += 1
            return
        et = (frame[12] << 8) | frame[13]
        if et == ETH_P_IP:
            self._on_ipv4(nic, frame[ETH_HEADER_LEN:])
        elif et == ETH_P_ARP:
            self._on_arp(nic, frame[ETH_HEADER_LEN:])
        elif et == ETH_P_IPV6:
            self._on_ipv6(nic, frame[ETH_HEADER_LEN:])
        else:
            try:
                eth = Ethernet.decode(frame)
            except DecodeError:
                self.drops["malformed-ethernet"] += 1
                return
            handler = self._ethertypes.get(et)
            if handler is None:
                self.drops["unknown-ethertype"] += 1
            else:
                handler(eth, nic)

    def _on_ipv4(self, nic: Nic, data: bytes) -> None:
        try:
            packet = _decode_ipv4(data)
        except DecodeError:
            self.drops["malformed-ipv4"] += 1
            return
        if packet.dst._ip in self._accept4 and not (packet.mf or packet.frag_offset):
            handler = self._protocols.get(packet.proto)  # the common case, without a call
            if handler is not None:
                handler(packet, nic)
                return
        self._dispatch_ipv4(packet, nic, data)

    def _dispatch_ipv4(self, packet: IPv4, nic: Nic, data: bytes) -> None:
        if packet.dst._ip in self._accept4:
            self._local_ipv4(packet, nic)
        elif self.forwarding:
            self._forward(packet, nic, data)
        else:
            self.drops["ip-not-for-us"] += 1

    def _local_ipv4(self, packet: IPv4, nic: Nic) -> None:
        """Deliver a packet for us: reassemble, then hand it to its protocol."""
        if packet.mf or packet.frag_offset:
            now = self.sim.now
            self.stats["fragments-in"] += 1
            self.reassembler.expire(now)
            whole = self.reassembler.add(packet, now)
            if whole is None:
                return
            self.stats["reassembled"] += 1
            packet = whole
        handler = self._protocols.get(packet.proto)
        if handler is not None:
            handler(packet, nic)
            return
        self.drops["protocol-unreachable"] += 1
        if packet.dst._ip in self._local4:
            self.icmp_error(packet, ICMPv4.dest_unreachable(UNREACH_PROTOCOL, packet.encode()))

    def _forward(self, packet: IPv4, nic: Nic, data: bytes) -> None:
        self.drops["ip-not-for-us"] += 1

    def _on_ipv6(self, nic: Nic, data: bytes) -> None:
        try:
            packet = IPv6.decode(data)
        except DecodeError:
            self.drops["malformed-ipv6"] += 1
            return
        dst = packet.dst
        if not (dst in self._local6 or dst.is_multicast):
            self.drops["ipv6-not-for-us"] += 1
            return
        handler = self.ipv6_handler
        if handler is None:
            self.drops["ipv6-no-handler"] += 1
            return
        handler(packet, nic)

    def _on_udp(self, packet: IPv4, nic: Nic) -> None:
        try:
            udp = _decode_udp(packet.payload, packet.src, packet.dst)
        except DecodeError:
            self.drops["malformed-udp"] += 1
            return
        sock = self._udp.get(udp.dst_port)
        if sock is None:
            self.drops["udp-port-unreachable"] += 1
            if packet.dst._ip in self._local4:
                self.icmp_error(packet, ICMPv4.dest_unreachable(UNREACH_PORT, packet.encode()))
            return
        bind = sock.bind_ip
        if bind is not None and packet.dst != bind and packet.dst._ip in self._local4:
            self.drops["udp-wrong-address"] += 1
            return
        cb = sock.on_datagram
        if cb is not None:
            cb(udp.payload, (packet.src, udp.src_port), packet.dst)
        else:
            sock._deliver(udp.payload, (packet.src, udp.src_port), packet.dst)

    # -- ICMP (RFC 792) ---------------------------------------------------------------------

    def _on_icmp(self, packet: IPv4, nic: Nic) -> None:
        try:
            icmp = ICMPv4.decode(packet.payload)
        except DecodeError:
            self.drops["malformed-icmp"] += 1
            return
        t = icmp.type
        self.stats[f"icmp-in:{t}/{icmp.code}"] += 1
        for listener in self.icmp_listeners:
            listener(icmp, packet, nic)
        to_us = packet.dst._ip in self._local4
        if t == ICMP_ECHO_REQUEST:
            if not to_us and self.echo_ignore_broadcasts:
                self.drops["icmp-echo-broadcast"] += 1
                return
            if not self.reply_to_echo:
                self.drops["icmp-echo-ignored"] += 1
                return
            reply = ICMPv4(ICMP_ECHO_REPLY, 0, icmp.rest, icmp.payload).encode()
            self.send_ip(packet.src, IPPROTO_ICMP, reply, src=packet.dst if to_us else None)
        elif t == ICMP_ECHO_REPLY:
            sent = self._pings.pop((icmp.ident, icmp.seq), None)
            now = self.sim.now
            rtt = None if sent is None else now - sent
            self.echo_replies.append(EchoReply(packet.src, icmp.ident, icmp.seq, rtt, now, icmp.payload))

    def ping(
        self, dst: IPv4Address | str, seq: int = 0, ident: int | None = None, data: bytes = b"",
        df: bool = False, ttl: int = 64,
    ) -> bool:
        """Send an echo request; replies are appended to `echo_replies` with their round-trip time."""
        if ident is None:
            ident = self.ping_ident
        self._pings[(ident, seq)] = self.sim.now
        payload = ICMPv4.echo_request(ident, seq, data).encode()
        return self.send_ip(dst, IPPROTO_ICMP, payload, df=df, ttl=ttl)

    def icmp_error(self, original: IPv4, icmp: ICMPv4, src: IPv4Address | None = None) -> bool:
        """Send an ICMP error about `original` to its source, unless RFC 1122 3.2.2 forbids it."""
        if original.frag_offset:
            self.drops["icmp-error-suppressed"] += 1
            return False
        if original.proto == IPPROTO_ICMP:
            p = original.payload
            if not p or p[0] in _ICMP_ERROR_TYPES:
                self.drops["icmp-error-suppressed"] += 1
                return False
        s = original.src
        if s == ANY4 or s == LIMITED_BROADCAST or s.is_multicast or s.is_loopback or s._ip in self._accept4:
            self.drops["icmp-error-suppressed"] += 1
            return False
        if original.dst.is_multicast or original.dst == LIMITED_BROADCAST:
            self.drops["icmp-error-suppressed"] += 1
            return False
        if src is None and original.dst._ip in self._local4:
            src = original.dst
        self.stats[f"icmp-out:{icmp.type}/{icmp.code}"] += 1
        return self.send_ip(s, IPPROTO_ICMP, icmp.encode(), src=src)

    # -- raw access -------------------------------------------------------------------------

    def raw_send(self, ifname: str, frame: bytes) -> bool:
        """Put any frame on an interface's wire, as an AF_PACKET socket would (the NIC pads it)."""
        return self._nic(ifname).transmit(bytes(frame))

    def send_ipv6(
        self, dst: IPv6Address | str, next_header: int, payload: bytes, src: IPv6Address | None = None,
        hop_limit: int = 64,
    ) -> bool:
        """Send an IPv6 packet to an on-link or routed destination with a static neighbour (no NDP)."""
        addr = ip_address(dst) if isinstance(dst, str) else dst
        entry = self.routes6.lookup(addr)
        if entry is None:
            self.drops["no-route6"] += 1
            return False
        nic = self.interfaces[entry.interface]
        nexthop = entry.via or addr
        if nexthop.is_multicast:
            mac = multicast_mac_v6(nexthop)
        else:
            mac = self.neighbors6.get(nexthop)
            if mac is None:
                self.drops["ipv6-no-neighbor"] += 1
                return False
        if src is None:
            if nic.ipv6 is None:
                self.drops["ipv6-no-address"] += 1
                return False
            src = nic.ipv6.ip
        data = IPv6(src, addr, next_header, payload, hop_limit).encode()
        if len(data) > nic.mtu:
            self.drops["ipv6-too-big"] += 1  # IPv6 routers never fragment; no PMTUD here
            return False
        return nic.transmit(Ethernet(mac, nic.mac, ETH_P_IPV6, data).encode())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
