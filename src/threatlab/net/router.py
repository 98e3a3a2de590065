"""Routers (RFC 1812) and a NAPT (RFC 3022) with the behaviour RFC 4787, 5382 and 5508 describe.

A router is a host that forwards: it decrements TTL, answers an expired TTL with ICMP time
exceeded, a missing route with net unreachable, and a DF packet larger than the egress MTU with
"fragmentation needed" carrying that MTU (RFC 1191); other oversize packets are fragmented.
`rp_filter` (off by default, as in the RFCs) is the BCP 38 / RFC 3704 strict reverse-path check.

The NAT rewrites the source of packets leaving by its outside interface to the outside address,
mapping (protocol, inside address, inside port) to an outside port for UDP and TCP and to an
outside identifier for ICMP echo; ICMP errors about mapped flows are translated with the packet
they quote (RFC 5508). Mappings expire after an idle time per protocol; an inbound packet that
finds no live mapping is dropped and counted ("nat-no-mapping", "nat-mapping-expired").
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from threatlab.errors import DecodeError, ParamError
from threatlab.net.ethernet import Nic
from threatlab.net.host import ANY4, LIMITED_BROADCAST, Host
from threatlab.net.sim import NS_PER_S, Simulator
from threatlab.net.topology import NodeKind
from threatlab.net.wire import (
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    UDP,
    UNREACH_FRAG_NEEDED,
    ICMPv4,
    IPv4,
    Reassembler,
    internet_checksum,
)

__all__ = ["Router", "Nat", "NatConfig", "NatMapping"]

UNREACH_NET = 0
TIME_EXCEEDED_TTL = 0
_ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
_NAT_PROTOS = frozenset({IPPROTO_UDP, IPPROTO_TCP, IPPROTO_ICMP})
_FILTERING = ("endpoint-independent", "address-dependent", "address-and-port-dependent")
_ALLOCATION = ("preserve", "sequential", "random")


class Router(Host):
    """A host that forwards IPv4 between its interfaces by its routing table."""

    kind = NodeKind.ROUTER
    forwarding = True

    def __init__(self, name: str, sim: Simulator, *, rp_filter: bool = False, **kwargs) -> None:
        super().__init__(name, sim, **kwargs)
        self.rp_filter = rp_filter

    def _forward(self, packet: IPv4, nic: Nic, data: bytes, original: IPv4 | None = None) -> None:
        dst = packet.dst
        if dst.is_multicast or dst == ANY4 or dst == LIMITED_BROADCAST:
            self.drops["not-forwardable"] += 1
            return
        if original is None:
            original = packet
        if self.rp_filter:  # RFC 3704 2.2 strict reverse path forwarding
            back = self.routes.lookup(original.src)
            if back is None or back.interface != nic.name:
                self.drops["rp-filter"] += 1
                return
        if packet.ttl <= 1:  # RFC 1812 5.3.1
            self.drops["ttl-exceeded"] += 1
            self.icmp_error(original, ICMPv4.time_exceeded(TIME_EXCEEDED_TTL, _received(data)))
            return
        r = self.route(dst)
        if r is None:
            self.drops["no-route"] += 1
            self.icmp_error(original, ICMPv4.dest_unreachable(UNREACH_NET, _received(data)))
            return
        out, nexthop = r
        fwd = IPv4(
            packet.src, dst, packet.proto, packet.payload, packet.ttl - 1, packet.tos,
            packet.identification, packet.df, packet.mf, packet.frag_offset, packet.options,
        )
        fwd = self._translate_forward(fwd, nic, out)
        if fwd is None:
            return
        self.stats["forwarded"] += 1
        self._output(fwd, out, nexthop, (original, data))

    def _translate_forward(self, packet: IPv4, ingress: Nic, egress: Nic) -> IPv4 | None:
        return packet

    def _frag_needed(self, packet: IPv4, data: bytes, mtu: int, forwarded_from) -> None:
        if forwarded_from is None:
            super()._frag_needed(packet, data, mtu, None)
            return
        original, raw = forwarded_from  # RFC 1191: quote the datagram as it arrived
        icmp = ICMPv4.dest_unreachable(UNREACH_FRAG_NEEDED, _received(raw), next_hop_mtu=mtu)
        self.icmp_error(original, icmp)


def _received(data: bytes) -> bytes:
    """The IPv4 datagram without link padding."""
    return data[: (data[2] << 8) | data[3]] if len(data) >= 4 else data


@dataclass(frozen=True, slots=True)
class NatConfig:
    """How the NAT maps and filters; defaults follow the RFC minimums and Linux conntrack."""

    udp_timeout_ns: int = 300 * NS_PER_S  # RFC 4787 REQ-5: >= 2 min, 5 min recommended
    tcp_timeout_ns: int = 7440 * NS_PER_S  # RFC 5382 REQ-5: established idle >= 2 h 4 min
    icmp_timeout_ns: int = 60 * NS_PER_S  # RFC 5508 REQ-1: ICMP query mappings >= 60 s
    port_range: tuple[int, int] = (1024, 65535)
    port_allocation: str = "preserve"  # "preserve" the inside port if free, "sequential", "random"
    filtering: str = "address-and-port-dependent"  # RFC 4787 4.3; Linux conntrack's behaviour
    inbound_refresh: bool = True  # RFC 4787 REQ-6 allows it; Linux refreshes both ways

    def __post_init__(self) -> None:
        for name in ("udp_timeout_ns", "tcp_timeout_ns", "icmp_timeout_ns"):
            if getattr(self, name) <= 0:
                raise ParamError(f"NAT {name} must be > 0, got {getattr(self, name)}")
        lo, hi = self.port_range
        if not 1 <= lo <= hi <= 65535:
            raise ParamError(f"NAT port_range must satisfy 1 <= lo <= hi <= 65535, got {self.port_range}")
        if self.filtering not in _FILTERING:
            raise ParamError(f"NAT filtering must be one of {', '.join(_FILTERING)}, got {self.filtering!r}")
        if self.port_allocation not in _ALLOCATION:
            raise ParamError(
                f"NAT port_allocation must be one of {', '.join(_ALLOCATION)}, got {self.port_allocation!r}"
            )


class NatMapping:
    __slots__ = ("proto", "inside_ip", "inside_port", "outside_port", "created", "last_used", "remotes")

    def __init__(
        self, proto: int, inside_ip: IPv4Address, inside_port: int, outside_port: int, now: int
    ) -> None:
        self.proto = proto
        self.inside_ip = inside_ip
        self.inside_port = inside_port
        self.outside_port = outside_port
        self.created = now
        self.last_used = now
        self.remotes: set = set()  # remote addresses or (address, port) seen outbound, for filtering

    def __repr__(self) -> str:
        return (f"<NatMapping proto={self.proto} {self.inside_ip}:{self.inside_port} -> "
                f":{self.outside_port} last_used={self.last_used}>")


class _Local:
    """Marker: the inbound packet is for the NAT itself."""


_LOCAL = _Local()


class Nat(Router):
    """A NAPT router; `outside` names the interface whose address inside sources become."""

    kind = NodeKind.NAT

    def __init__(
        self, name: str, sim: Simulator, outside: str, config: NatConfig | None = None, **kwargs
    ) -> None:
        super().__init__(name, sim, **kwargs)
        self.outside = outside
        self.config = config or NatConfig()
        self._out: dict[tuple[int, IPv4Address, int], NatMapping] = {}
        self._in: dict[tuple[int, int], NatMapping] = {}
        self._next_port: dict[int, int] = {}
        self._nat_reassembler = Reassembler(self.reassembler.timeout_ns)

    @property
    def outside_ip(self) -> IPv4Address:
        nic = self.interfaces[self.outside]
        if nic.ipv4 is None:
            raise ParamError(f"NAT {self.name}: outside interface {self.outside} has no IPv4 address")
        return nic.ip

    def mappings(self) -> list[NatMapping]:
        return list(self._out.values())

    def timeout_for(self, proto: int) -> int:
        c = self.config
        if proto == IPPROTO_UDP:
            return c.udp_timeout_ns
        return c.tcp_timeout_ns if proto == IPPROTO_TCP else c.icmp_timeout_ns

    def expire(self) -> int:
        """Remove every mapping idle past its timeout; return how many."""
        now = self.sim.now
        dead = [m for m in self._out.values() if now - m.last_used > self.timeout_for(m.proto)]
        for m in dead:
            self._remove(m)
        return len(dead)

    def _remove(self, m: NatMapping) -> None:
        self._out.pop((m.proto, m.inside_ip, m.inside_port), None)
        if self._in.get((m.proto, m.outside_port)) is m:
            del self._in[(m.proto, m.outside_port)]

    def _alive(self, m: NatMapping) -> bool:
        if self.sim.now - m.last_used > self.timeout_for(m.proto):
            self._remove(m)
            return False
        return True

    # -- outbound ---------------------------------------------------------------------------

    def _translate_forward(self, packet: IPv4, ingress: Nic, egress: Nic) -> IPv4 | None:
        if egress.name != self.outside or ingress.name == self.outside:
            return packet
        if packet.mf or packet.frag_offset:  # ports live in the first fragment: reassemble first
            whole = self._nat_reassemble(packet)
            if whole is None:
                self.stats["nat-fragments-held"] += 1
                return None
            packet = whole
        proto = packet.proto
        outside_ip = self.outside_ip
        if proto == IPPROTO_UDP or proto == IPPROTO_TCP:
            seg = packet.payload
            if len(seg) < (8 if proto == IPPROTO_UDP else 20):
                self.drops["nat-malformed"] += 1
                return None
            sport = (seg[0] << 8) | seg[1]
            dport = (seg[2] << 8) | seg[3]
            m = self._map_out(proto, packet.src, sport)
            if m is None:
                return None
            m.remotes.add(self._remote_key(packet.dst, dport))
            seg = _rewrite_l4(proto, seg, outside_ip, packet.dst, sport=m.outside_port)
            if seg is None:
                self.drops["nat-malformed"] += 1
                return None
            return _with(packet, src=outside_ip, payload=seg)
        if proto == IPPROTO_ICMP:
            return self._icmp_out(packet, outside_ip)
        self.drops["nat-unsupported-protocol"] += 1
        return None

    def _icmp_out(self, packet: IPv4, outside_ip: IPv4Address) -> IPv4 | None:
        try:
            icmp = ICMPv4.decode(packet.payload)
        except DecodeError:
            self.drops["nat-malformed"] += 1
            return None
        if icmp.type == ICMP_ECHO_REQUEST:
            m = self._map_out(IPPROTO_ICMP, packet.src, icmp.ident)
            if m is None:
                return None
            m.remotes.add(self._remote_key(packet.dst, None))
            rest = m.outside_port.to_bytes(2, "big") + icmp.rest[2:]
            echo = ICMPv4(icmp.type, icmp.code, rest, icmp.payload).encode()
            return _with(packet, src=outside_ip, payload=echo)
        if icmp.type in _ICMP_ERRORS:
            # RFC 5508 4.2: an inside host's error about an inbound flow; the quoted packet went
            # remote -> inside, and must read remote -> outside as the remote sent it
            quote = _parse_quote(icmp.payload)
            if quote is None:
                self.drops["nat-malformed"] += 1
                return None
            qproto, _, qdst, _, qdport = quote
            m = self._out.get((qproto, qdst, qdport))
            if m is None or not self._alive(m):
                self.drops["nat-no-mapping"] += 1
                return None
            new_quote = _rewrite_quote(icmp.payload, dst=outside_ip, dport=m.outside_port)
            out = ICMPv4(icmp.type, icmp.code, icmp.rest, new_quote).encode()
            return _with(packet, src=outside_ip, payload=out)
        self.drops["nat-unsupported-icmp"] += 1
        return None

    def _nat_reassemble(self, packet: IPv4) -> IPv4 | None:
        now = self.sim.now
        self._nat_reassembler.expire(now)
        return self._nat_reassembler.add(packet, now)

    def _remote_key(self, ip: IPv4Address, port: int | None):
        f = self.config.filtering
        if f == "address-and-port-dependent" and port is not None:
            return (ip, port)
        return ip

    def _map_out(self, proto: int, inside_ip: IPv4Address, inside_port: int) -> NatMapping | None:
        now = self.sim.now
        key = (proto, inside_ip, inside_port)
        m = self._out.get(key)
        if m is not None and self._alive(m):
            m.last_used = now  # RFC 4787 REQ-6: outbound refresh
            return m
        port = self._allocate(proto, inside_port)
        if port is None:
            self.drops["nat-ports-exhausted"] += 1
            return None
        m = NatMapping(proto, inside_ip, inside_port, port, now)
        self._out[key] = m
        self._in[(proto, port)] = m
        self.stats["nat-mappings-created"] += 1
        return m

    def _port_free(self, proto: int, port: int) -> bool:
        m = self._in.get((proto, port))
        return m is None or not self._alive(m)

    def _allocate(self, proto: int, inside_port: int) -> int | None:
        lo, hi = self.config.port_range
        how = self.config.port_allocation
        if proto == IPPROTO_ICMP:
            lo, hi = 0, 0xFFFF  # echo identifiers use the whole space
        if how == "preserve" and lo <= inside_port <= hi and self._port_free(proto, inside_port):
            return inside_port
        n = hi - lo + 1
        if how == "random":
            for _ in range(64):
                port = self.rng.randint(lo, hi)
                if self._port_free(proto, port):
                    return port
        start = self._next_port.get(proto, lo)
        for i in range(n):
            port = lo + (start - lo + i) % n
            if self._port_free(proto, port):
                self._next_port[proto] = lo + (port + 1 - lo) % n
                return port
        return None

    # -- inbound ----------------------------------------------------------------------------

    def _on_ipv4(self, nic: Nic, data: bytes) -> None:
        if nic.name != self.outside:
            super()._on_ipv4(nic, data)
            return
        try:
            packet = IPv4.decode(data)
        except DecodeError:
            self.drops["malformed-ipv4"] += 1
            return
        if packet.proto not in _NAT_PROTOS or packet.dst != nic.ip:
            self._dispatch_ipv4(packet, nic, data)
            return
        if packet.mf or packet.frag_offset:
            whole = self._nat_reassemble(packet)
            if whole is None:
                self.stats["nat-fragments-held"] += 1
                return
            packet = whole
        res = self._translate_in(packet)
        if res is _LOCAL:
            self._local_ipv4(packet, nic)
        elif res is not None:
            self.stats["nat-inbound"] += 1
            self._forward(res, nic, packet.encode(), original=packet)

    def _lookup_in(self, proto: int, port: int, remote: IPv4Address, rport: int | None):
        """The live mapping an inbound packet may use; None if there is none (not counted), False if
        it expired or filtering refuses the sender (counted)."""
        m = self._in.get((proto, port))
        if m is None:
            return None
        if not self._alive(m):
            self.drops["nat-mapping-expired"] += 1
            return False
        filtered = self.config.filtering != "endpoint-independent"
        if filtered and self._remote_key(remote, rport) not in m.remotes:
            self.drops["nat-filtered"] += 1
            return False
        if self.config.inbound_refresh:
            m.last_used = self.sim.now
        return m

    def _translate_in(self, packet: IPv4):
        proto = packet.proto
        if proto == IPPROTO_UDP or proto == IPPROTO_TCP:
            seg = packet.payload
            if len(seg) < 4:
                self.drops["nat-malformed"] += 1
                return None
            dport = (seg[2] << 8) | seg[3]
            m = self._lookup_in(proto, dport, packet.src, (seg[0] << 8) | seg[1])
            if m is None:
                if self._has_local_listener(proto, dport):
                    return _LOCAL
                self.drops["nat-no-mapping"] += 1
                return None
            if m is False:
                return None
            new = _rewrite_l4(proto, seg, packet.src, m.inside_ip, dport=m.inside_port)
            if new is None:
                self.drops["nat-malformed"] += 1
                return None
            return _with(packet, dst=m.inside_ip, payload=new)
        # ICMP
        try:
            icmp = ICMPv4.decode(packet.payload)
        except DecodeError:
            self.drops["nat-malformed"] += 1
            return None
        if icmp.type == ICMP_ECHO_REPLY:
            m = self._lookup_in(IPPROTO_ICMP, icmp.ident, packet.src, None)
            if not m:
                if m is None:
                    self.drops["nat-no-mapping"] += 1
                return None
            rest = m.inside_port.to_bytes(2, "big") + icmp.rest[2:]
            echo = ICMPv4(icmp.type, icmp.code, rest, icmp.payload).encode()
            return _with(packet, dst=m.inside_ip, payload=echo)
        if icmp.type in _ICMP_ERRORS:
            # RFC 5508 4.1: an error about an outbound flow quotes outside_ip:mapped -> remote
            quote = _parse_quote(icmp.payload)
            if quote is None:
                self.drops["nat-malformed"] += 1
                return None
            qproto, qsrc, _, qsport, _ = quote
            m = self._in.get((qproto, qsport)) if qsrc == self.outside_ip else None
            if m is None:
                return _LOCAL  # about the NAT's own traffic
            if not self._alive(m):
                self.drops["nat-mapping-expired"] += 1
                return None
            new_quote = _rewrite_quote(icmp.payload, src=m.inside_ip, sport=m.inside_port)
            out = ICMPv4(icmp.type, icmp.code, icmp.rest, new_quote).encode()
            return _with(packet, dst=m.inside_ip, payload=out)
        return _LOCAL  # echo requests and the rest are for the NAT itself

    def _has_local_listener(self, proto: int, port: int) -> bool:
        if proto == IPPROTO_UDP:
            return port in self._udp
        return proto in self._protocols  # a TCP stack registered on the NAT itself


def _with(
    p: IPv4, src: IPv4Address | None = None, dst: IPv4Address | None = None, payload: bytes | None = None
) -> IPv4:
    return IPv4(
        src or p.src, dst or p.dst, p.proto, p.payload if payload is None else payload, p.ttl, p.tos,
        p.identification, p.df, p.mf, p.frag_offset, p.options,
    )


def _rewrite_l4(
    proto: int, seg: bytes, src: IPv4Address, dst: IPv4Address,
    sport: int | None = None, dport: int | None = None,
) -> bytes | None:
    """A UDP or TCP segment with new ports and its checksum recomputed over the new pseudo-header."""
    if proto == IPPROTO_UDP:
        try:
            udp = UDP.decode(seg, verify=False)
        except DecodeError:
            return None
        had_checksum = seg[6:8] != b"\x00\x00"
        sp = udp.src_port if sport is None else sport
        new = UDP(sp, udp.dst_port if dport is None else dport, udp.payload)
        out = new.encode(src, dst)
        return out if had_checksum else out[:6] + b"\x00\x00" + out[8:]  # RFC 768: keep "no checksum"
    b = bytearray(seg)
    if sport is not None:
        b[0:2] = sport.to_bytes(2, "big")
    if dport is not None:
        b[2:4] = dport.to_bytes(2, "big")
    b[16:18] = b"\x00\x00"  # RFC 9293 3.1: checksum over pseudo-header and segment
    c = internet_checksum(bytes(b), int(src) + int(dst) + IPPROTO_TCP + len(b))
    b[16:18] = c.to_bytes(2, "big")
    return bytes(b)


def _parse_quote(quote: bytes):
    """(proto, src, dst, sport/ident, dport/ident) of the datagram an ICMP error quotes."""
    if len(quote) < 20 or quote[0] >> 4 != 4:
        return None
    ihl = (quote[0] & 0x0F) * 4
    if ihl < 20 or len(quote) < ihl + 8:
        return None
    proto = quote[9]
    src = IPv4Address(quote[12:16])
    dst = IPv4Address(quote[16:20])
    if proto == IPPROTO_ICMP:
        ident = (quote[ihl + 4] << 8) | quote[ihl + 5]
        return proto, src, dst, ident, ident
    sport = (quote[ihl] << 8) | quote[ihl + 1]
    dport = (quote[ihl + 2] << 8) | quote[ihl + 3]
    return proto, src, dst, sport, dport


def _csum_replace(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eqn. 3: update a checksum for 16-bit aligned `old` bytes replaced by `new`."""
    s = (~csum & 0xFFFF)
    for i in range(0, len(old), 2):
        s += (~((old[i] << 8) | old[i + 1]) & 0xFFFF) + ((new[i] << 8) | new[i + 1])
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _rewrite_quote(
    quote: bytes, src: IPv4Address | None = None, dst: IPv4Address | None = None,
    sport: int | None = None, dport: int | None = None,
) -> bytes:
    """The quoted datagram with address and port (or echo identifier) rewritten, its header checksum
    recomputed and its transport checksum adjusted incrementally when the quote holds it."""
    b = bytearray(quote)
    ihl = (b[0] & 0x0F) * 4
    proto = b[9]
    changes: list[tuple[bytes, bytes]] = []  # for the transport checksum (pseudo-header and ports)
    if src is not None:
        changes.append((bytes(b[12:16]), src.packed))
        b[12:16] = src.packed
    if dst is not None:
        changes.append((bytes(b[16:20]), dst.packed))
        b[16:20] = dst.packed
    b[10:12] = b"\x00\x00"
    b[10:12] = internet_checksum(bytes(b[:ihl])).to_bytes(2, "big")
    if proto == IPPROTO_ICMP:
        ident = sport if sport is not None else dport
        if ident is not None:
            old = bytes(b[ihl + 4 : ihl + 6])
            b[ihl + 4 : ihl + 6] = ident.to_bytes(2, "big")
            off = ihl + 2
            if len(b) >= off + 2:
                c = (b[off] << 8) | b[off + 1]
                b[off : off + 2] = _csum_replace(c, old, bytes(b[ihl + 4 : ihl + 6])).to_bytes(2, "big")
        return bytes(b)
    if sport is not None:
        changes.append((bytes(b[ihl : ihl + 2]), sport.to_bytes(2, "big")))
        b[ihl : ihl + 2] = sport.to_bytes(2, "big")
    if dport is not None:
        changes.append((bytes(b[ihl + 2 : ihl + 4]), dport.to_bytes(2, "big")))
        b[ihl + 2 : ihl + 4] = dport.to_bytes(2, "big")
    off = ihl + (6 if proto == IPPROTO_UDP else 16 if proto == IPPROTO_TCP else -1)
    if off >= ihl and len(b) >= off + 2:
        c = (b[off] << 8) | b[off + 1]
        if not (proto == IPPROTO_UDP and c == 0):
            for old, new in changes:
                c = _csum_replace(c, old, new)
            if proto == IPPROTO_UDP and c == 0:
                c = 0xFFFF
            b[off : off + 2] = c.to_bytes(2, "big")
    return bytes(b)
