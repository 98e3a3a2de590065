"""Run threatlab's DHCP server, client and relay on hosts of the simulated network.

    sim = Simulator(seed=1)
    lab = dhcp_lab(sim, n_clients=3)                # one server, 3 clients, a same-LAN adversary
    sim.run(until=10 * NS_PER_S)
    assert lab.bound() == 3

or piece by piece on any network built by `threatlab.net.build`:

    srv = attach_server(net.node("srv"), DhcpServer(config, LeaseStore(), rng))
    c1 = attach_client(net.node("c1"), DhcpClient(DhcpClientConfig(), rng, net.node("c1").mac))
    relay = attach_relay(net.node("relay"), DhcpRelay(relay_config))
    c1.start()

Each handle owns UDP sockets on the host (67 for a server or relay, 68 for a client), drives the
sans-IO object with the simulator's clock, sends what it returns, keeps its next timer scheduled,
and collects its events in `handle.events`.

Where a real stack needs a packet socket, the glue sniffs the interface, as dhcpcd and ISC
dhclient do with BPF: a client takes the unicast DHCPOFFER / DHCPACK sent to an address it does
not have yet (RFC 2131 4.1), and a relay learns which interface a client's broadcast came in on.
Replies a server or relay sends to a client without an address go out as raw frames to chaddr.

The client handle configures the interface when the client is bound (address, mask, a default
route via the first router of option 3) and clears it when the lease ends. With `arp_probe` it
first probes the address as RFC 5227 2.1.1 does (ARP request from 0.0.0.0; any ARP from that
address, or a probe for it by another host, means it is in use) and tells the client
`address_in_use`, which declines it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from threatlab.dhcp.client import Bound, ClientEvent, DhcpClient, DhcpClientConfig
from threatlab.dhcp.config import DhcpServerConfig, Pool
from threatlab.dhcp.events import Datagram, Event
from threatlab.dhcp.leases import LeaseStore
from threatlab.dhcp.relay import DhcpRelay, DhcpRelayConfig, RelayEvent, RelayInterface
from threatlab.dhcp.server import DhcpServer
from threatlab.dhcp.wire import BOOTREPLY, BOOTREQUEST, CLIENT_PORT, SERVER_PORT
from threatlab.errors import DecodeError, ParamError, TopologyError
from threatlab.net.adversary import Adversary
from threatlab.net.build import Network, build
from threatlab.net.host import Host
from threatlab.net.sim import NS_PER_S, Simulator, Timer
from threatlab.net.topology import (
    Interface,
    Link,
    Node,
    NodeKind,
    Position,
    Route,
    Segment,
    SegmentKind,
    Topology,
    mac_for,
)
from threatlab.net.wire import (
    ARP,
    ARP_REQUEST,
    BROADCAST_MAC,
    ETH_P_ARP,
    ETH_P_IP,
    IPPROTO_UDP,
    UDP,
    Ethernet,
    IPv4,
)

__all__ = [
    "ServerHandle",
    "ClientHandle",
    "RelayHandle",
    "attach_server",
    "attach_client",
    "attach_relay",
    "send_datagram",
    "dhcp_lan",
    "dhcp_routed",
    "DhcpLab",
    "dhcp_lab",
    "lan_server_config",
    "routed_server_config",
]

_ZERO = IPv4Address(0)
_LIMITED = IPv4Address("255.255.255.255")
_ZERO_MAC = bytes(6)
_ALL_ONES = IPv4Address("255.255.255.255")
_DEFAULT = IPv4Network("0.0.0.0/0")
_IP_UDP = b"\x08\x00"


# --- sending ---------------------------------------------------------------------------------------


def send_datagram(host: Host, dg: Datagram, ifname: str | None = None) -> bool:
    """Send a Datagram a DHCP role returned, as RFC 2131 4.1 wants it addressed:

    - `dst_mac` a unicast MAC: a raw frame to it, no ARP (the client has no address yet);
    - to 255.255.255.255: a link broadcast on `dg.interface` (or `ifname`);
    - otherwise by the routing table; a src_ip of 0.0.0.0 means the address of the way out.
    """
    out = dg.interface or ifname
    if dg.dst_mac is not None and dg.dst_mac != BROADCAST_MAC:
        if out is None:
            r = host.route(dg.dst_ip)
            if r is None:
                host.drops["no-route"] += 1
                return False
            out = r[0].name
        nic = host.interfaces[out]
        seg = UDP(dg.src_port, dg.dst_port, dg.payload).encode(dg.src_ip, dg.dst_ip)
        packet = IPv4(dg.src_ip, dg.dst_ip, IPPROTO_UDP, seg, identification=host.next_ip_id())
        return host.raw_send(out, Ethernet(dg.dst_mac, nic.mac, ETH_P_IP, packet.encode()).encode())
    if dg.dst_ip == _LIMITED:
        return host.send_udp(dg.src_port, dg.dst_ip, dg.dst_port, dg.payload, src=dg.src_ip, ifname=out)
    src = None if dg.src_ip == _ZERO else dg.src_ip
    return host.send_udp(dg.src_port, dg.dst_ip, dg.dst_port, dg.payload, src=src)


def _udp_in(frame: bytes, port: int) -> tuple[IPv4, UDP] | None:
    """The IPv4 packet and UDP datagram of an Ethernet frame to UDP `port`, else None."""
    if frame[12:14] != _IP_UDP or len(frame) < 42 or frame[23] != IPPROTO_UDP:
        return None
    at = 14 + (frame[14] & 0x0F) * 4 + 2  # the UDP destination port, before decoding anything
    if frame[at:at + 2] != port.to_bytes(2, "big"):
        return None
    try:
        packet = IPv4.decode(Ethernet.decode(frame).payload)
        if packet.mf or packet.frag_offset:
            return None
        udp = UDP.decode(packet.payload, packet.src, packet.dst)
    except DecodeError:
        return None
    return (packet, udp) if udp.dst_port == port else None


def _accepts(host: Host, ifname: str, dst: IPv4Address) -> bool:
    """Whether the host's IP stack takes a packet to `dst` on `ifname` (and so its socket sees it)."""
    if dst == _LIMITED or host.is_local(dst):
        return True
    v4 = host.interfaces[ifname].ipv4
    return v4 is not None and v4.network.prefixlen < 31 and dst == v4.network.broadcast_address


class _Driver:
    """Keeps one simulator timer at a sans-IO object's next deadline."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self._timer: Timer | None = None

    def _reschedule(self, deadline: int | None) -> None:
        t = self._timer
        if t is not None and t.active and t.time == deadline:
            return
        if t is not None:
            t.cancel()
        self._timer = None if deadline is None else self.sim.at(max(deadline, self.sim.now), self._on_timer)

    def _on_timer(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


# --- server ----------------------------------------------------------------------------------------


class ServerHandle(_Driver):
    """A DhcpServer on a host: UDP port 67 on `ifname`."""

    def __init__(self, host: Host, server: DhcpServer, ifname: str) -> None:
        super().__init__(host.sim)
        self.host = host
        self.server = server
        self.ifname = ifname
        self.events: list[Event] = []
        self.sock = host.udp_socket(SERVER_PORT)
        self.sock.on_datagram = self._on_datagram

    def _on_datagram(self, data: bytes, addr: tuple[IPv4Address, int], dst: IPv4Address) -> None:
        now = self.sim.now
        for dg in self.server.receive(data, now, src_ip=addr[0], interface=self.ifname):
            send_datagram(self.host, dg, self.ifname)
        self._after()

    def _on_timer(self) -> None:
        self.server.handle_timer(self.sim.now)
        self._after()

    def _after(self) -> None:
        self.events.extend(self.server.events())
        self._reschedule(self.server.next_timer())

    def close(self) -> None:
        self.sock.close()
        self._reschedule(None)


def attach_server(host: Host, server: DhcpServer, ifname: str | None = None) -> ServerHandle:
    """Run `server` on `host` (its first interface unless `ifname`)."""
    return ServerHandle(host, server, _ifname(host, ifname))


# --- client ----------------------------------------------------------------------------------------


class ClientHandle(_Driver):
    """A DhcpClient on a host's interface; `configured` is the address the interface has from it."""

    def __init__(self, host: Host, client: DhcpClient, ifname: str, arp_probe: float | None) -> None:
        super().__init__(host.sim)
        if arp_probe is not None and not arp_probe > 0:
            raise ParamError(f"arp_probe must be a wait in seconds > 0 or None, got {arp_probe!r}")
        self.host = host
        self.client = client
        self.ifname = ifname
        self.nic = host.interfaces[ifname]
        self.arp_probe = arp_probe
        self.events: list[ClientEvent] = []
        self.configured: IPv4Interface | None = None
        self.gateway: IPv4Address | None = None
        self.probes_sent = 0
        self.conflicts = 0
        self._confirmed: IPv4Address | None = None
        self._probing: IPv4Address | None = None
        self._probe_timer: Timer | None = None
        self._unicast_at: int | None = None  # when the client last sent a unicast from its address
        self._linger: Timer | None = None
        host.configure_ipv4(ifname, None)  # a DHCP client starts without an address
        self.sock = host.udp_socket(CLIENT_PORT)
        self.sock.on_datagram = self._on_datagram
        host.add_sniffer(self._sniff, ifname)

    # the user's calls

    def start(self, at: int | None = None, address: IPv4Address | None = None) -> None:
        """Start the client now, or as an event at virtual time `at` (so a capture set up before
        the simulator runs sees the first DHCPDISCOVER); with `address`, as INIT-REBOOT."""
        if at is None:
            self.client.start(self.sim.now, address)
            self._pump()
        else:
            self.sim.at(max(at, self.sim.now), self.start, None, address)

    def release(self) -> None:
        self.client.release(self.sim.now)
        self._pump()

    @property
    def address(self) -> IPv4Address | None:
        return None if self.configured is None else self.configured.ip

    # input

    def _on_datagram(self, data: bytes, addr: tuple[IPv4Address, int], dst: IPv4Address) -> None:
        self.client.receive(data, self.sim.now)
        self._pump()

    def _sniff(self, frame: bytes, ifname: str, now: int) -> None:
        if frame[12:14] == b"\x08\x06":
            self._sniff_arp(frame)
            return
        got = _udp_in(frame, CLIENT_PORT)
        if got is None or _accepts(self.host, ifname, got[0].dst):
            return  # not DHCP, or the socket gets it
        # After the IP stack has seen (and dropped) the frame: were the client to bind now, the
        # stack would take the same frame for its new address and hand it to the socket as well.
        self.sim.post(0, self._on_sniffed, got[1].payload)

    def _on_sniffed(self, payload: bytes) -> None:
        self.client.receive(payload, self.sim.now)
        self._pump()

    def _sniff_arp(self, frame: bytes) -> None:
        probing = self._probing
        if probing is None:
            return
        try:
            arp = ARP.decode(Ethernet.decode(frame).payload)
        except DecodeError:
            return
        if arp.sender_mac == self.nic.mac:
            return
        # RFC 5227 2.1.1: any ARP from the address, or another host's probe for it
        if arp.sender_ip == probing or (arp.op == ARP_REQUEST and arp.sender_ip == _ZERO
                                        and arp.target_ip == probing):
            self.conflicts += 1
            self._stop_probe()
            self.client.address_in_use(self.sim.now)
            self._pump()

    def _on_timer(self) -> None:
        self.client.handle_timer(self.sim.now)
        self._pump()

    # output

    def _pump(self) -> None:
        now = self.sim.now
        for dg in self.client.datagrams_to_send(now):
            if dg.dst_mac is None:
                self._unicast_at = now
            send_datagram(self.host, dg, self.ifname)
        for ev in self.client.events():
            self.events.append(ev)
            if isinstance(ev, Bound):
                self._stop_probe()
                if self.arp_probe is None:
                    self._confirmed = ev.address
                else:
                    self._probe(ev.address)
        self._sync()
        self._reschedule(self.client.next_timer())

    def _probe(self, address: IPv4Address) -> None:
        self._confirmed = None
        self._probing = address
        self.probes_sent += 1
        arp = ARP(ARP_REQUEST, self.nic.mac, _ZERO, _ZERO_MAC, address)
        frame = Ethernet(BROADCAST_MAC, self.nic.mac, ETH_P_ARP, arp.encode()).encode()
        self.host.raw_send(self.ifname, frame)
        self._probe_timer = self.sim.schedule(int(self.arp_probe * NS_PER_S), self._probe_done, address)

    def _probe_done(self, address: IPv4Address) -> None:
        if self._probing == address:
            self._probing = None
            self._confirmed = address
            self._sync()

    def _stop_probe(self) -> None:
        if self._probe_timer is not None:
            self._probe_timer.cancel()
        self._probe_timer = None
        self._probing = None

    def _sync(self) -> None:
        """Make the interface match the lease: address and mask, and the default route."""
        lease = self.client.lease
        want: IPv4Interface | None = None
        gateway: IPv4Address | None = None
        if lease is not None and lease.address == self._confirmed:
            mask = lease.subnet_mask or _ALL_ONES
            want = IPv4Interface(f"{lease.address}/{mask}")
            gateway = lease.routers[0] if lease.routers else None
        elif self._probing is None:
            self._confirmed = None
        if want == self.configured and gateway == self.gateway:
            return
        if want is None and self._unicast_at is not None:
            # The address stays until ARP for a unicast just sent from it (a DHCPRELEASE) is done:
            # the host's ARP retries need the interface address (see net.host `_arp_request`).
            until = self._unicast_at + self.host.arp_retries * self.host.arp_retry_ns
            if self.sim.now < until:
                if self._linger is None or not self._linger.active:
                    self._linger = self.sim.at(until, self._sync)
                return
        if self.gateway is not None:
            self.host.routes.remove(_DEFAULT)
        if want != self.configured:
            self.host.configure_ipv4(self.ifname, want)
        if gateway is not None:
            self.host.add_route("0.0.0.0/0", self.ifname, str(gateway))
        self.configured, self.gateway = want, gateway

    def close(self) -> None:
        self.sock.close()
        self._stop_probe()
        self._reschedule(None)


def attach_client(host: Host, client: DhcpClient, ifname: str | None = None, *,
                  arp_probe: float | None = None) -> ClientHandle:
    """Run `client` on `host` (its first interface unless `ifname`), whose address it clears.
    `arp_probe`: seconds to wait for an answer to an ARP probe of a new address (None: no probe).
    Call `handle.start()` to begin."""
    return ClientHandle(host, client, _ifname(host, ifname), arp_probe)


# --- relay -----------------------------------------------------------------------------------------


class RelayHandle:
    """A DhcpRelay on a router: requests are sniffed on every interface (to know which one they
    came in on), replies arrive on UDP port 67."""

    def __init__(self, host: Host, relay: DhcpRelay) -> None:
        for iface in relay.config.interfaces:
            _ifname(host, iface.name)
        self.host = host
        self.sim = host.sim
        self.relay = relay
        self.events: list[RelayEvent] = []
        self.sock = host.udp_socket(SERVER_PORT)
        self.sock.on_datagram = self._on_datagram
        host.add_sniffer(self._sniff)

    def _sniff(self, frame: bytes, ifname: str, now: int) -> None:
        got = _udp_in(frame, SERVER_PORT)
        if got is None:
            return
        packet, udp = got
        if not udp.payload or udp.payload[0] != BOOTREQUEST or not _accepts(self.host, ifname, packet.dst):
            return
        self._send(self.relay.receive(udp.payload, now, interface=ifname, src_ip=packet.src))

    def _on_datagram(self, data: bytes, addr: tuple[IPv4Address, int], dst: IPv4Address) -> None:
        if data[:1] != bytes((BOOTREPLY,)):
            return  # requests are taken by the sniffer, which knows the interface
        self._send(self.relay.receive(data, self.sim.now, src_ip=addr[0]))

    def _send(self, out: list[Datagram]) -> None:
        for dg in out:
            send_datagram(self.host, dg)
        self.events.extend(self.relay.events())

    def close(self) -> None:
        self.sock.close()


def attach_relay(host: Host, relay: DhcpRelay) -> RelayHandle:
    """Run `relay` on `host`, a router with the interfaces its config names."""
    return RelayHandle(host, relay)


def _ifname(host: Host, ifname: str | None) -> str:
    if ifname is None:
        if not host.interfaces:
            raise ParamError(f"{host.name} has no interface")
        return next(iter(host.interfaces))
    if ifname not in host.interfaces:
        raise ParamError(f"{host.name} has no interface {ifname!r}")
    return ifname


# --- ready-made topologies -------------------------------------------------------------------------

_SERVER_MAC = 0x10000  # mac_for indices clear of clients 1..100
_ADV_MAC = 0x20000
_RELAY_MAC = 0x30000


def dhcp_lan(n_clients: int = 1, *, n_servers: int = 1, adversary: Position | None = Position.SAME_LAN,
             kind: SegmentKind = SegmentKind.SWITCH, link: Link = Link()) -> Topology:
    """One LAN "lan": servers "srv" (10.0.0.1), "srv2" (10.0.0.2), ...; clients "c1".."cK" without
    addresses; the adversary "adv": SAME_LAN, a host 10.0.0.250 on the LAN; ON_PATH, a bridge between
    c1 (on segment "c1-wire") and the LAN."""
    if not 1 <= n_clients <= 100:
        raise TopologyError(f"n_clients must be in [1, 100], got {n_clients}")
    if not 1 <= n_servers <= 9:
        raise TopologyError(f"n_servers must be in [1, 9], got {n_servers}")
    if adversary is Position.OFF_PATH:
        raise TopologyError("dhcp_lan has no off-path position: DHCP does not cross routers but by a relay")
    segments = [Segment("lan", kind)]
    nodes = [_server_node(i, "lan", f"10.0.0.{i}/24", link) for i in range(1, n_servers + 1)]
    for i in range(1, n_clients + 1):
        seg = "lan"
        if adversary is Position.ON_PATH and i == 1:
            seg = "c1-wire"
            segments.append(Segment("c1-wire", SegmentKind.HUB))
        nodes.append(Node(f"c{i}", (Interface("eth0", seg, mac_for(i), link=link),)))
    nodes += _adversary_nodes(adversary, "lan", "10.0.0.250/24", link)
    return Topology(tuple(segments), tuple(nodes), name=f"dhcp-lan-{n_clients}")


def dhcp_routed(n_clients: int = 1, *, adversary: Position | None = Position.SAME_LAN,
                kind: SegmentKind = SegmentKind.SWITCH, link: Link = Link()) -> Topology:
    """Clients "c1".."cK" and the adversary (10.0.1.250) on "lan"; router "relay" (10.0.1.1 on
    "lan", 10.0.0.254 on "srvnet"); server "srv" (10.0.0.1) on "srvnet"."""
    if not 1 <= n_clients <= 100:
        raise TopologyError(f"n_clients must be in [1, 100], got {n_clients}")
    if adversary is Position.OFF_PATH:
        raise TopologyError("dhcp_routed puts the adversary on the clients' LAN (same-lan or on-path)")
    segments = [Segment("lan", kind), Segment("srvnet", SegmentKind.SWITCH)]
    nodes = [
        Node("srv", (Interface("eth0", "srvnet", mac_for(_SERVER_MAC + 1), "10.0.0.1/24", link=link),),
             routes=(Route("10.0.1.0/24", "eth0", "10.0.0.254"),)),
        Node("relay", (Interface("eth0", "lan", mac_for(_RELAY_MAC), "10.0.1.1/24", link=link),
                       Interface("eth1", "srvnet", mac_for(_RELAY_MAC + 1), "10.0.0.254/24", link=link)),
             kind=NodeKind.ROUTER),
    ]
    for i in range(1, n_clients + 1):
        seg = "lan"
        if adversary is Position.ON_PATH and i == 1:
            seg = "c1-wire"
            segments.append(Segment("c1-wire", SegmentKind.HUB))
        nodes.append(Node(f"c{i}", (Interface("eth0", seg, mac_for(i), link=link),)))
    nodes += _adversary_nodes(adversary, "lan", "10.0.1.250/24", link)
    return Topology(tuple(segments), tuple(nodes), name=f"dhcp-routed-{n_clients}")


def _server_node(i: int, segment: str, address: str, link: Link) -> Node:
    return Node("srv" if i == 1 else f"srv{i}",
                (Interface("eth0", segment, mac_for(_SERVER_MAC + i), address, link=link),))


def _adversary_nodes(position: Position | None, segment: str, address: str, link: Link) -> list[Node]:
    if position is Position.SAME_LAN:
        return [Node("adv", (Interface("eth0", segment, mac_for(_ADV_MAC), address, link=link),),
                     adversary=Position.SAME_LAN)]
    if position is Position.ON_PATH:
        return [Node("adv", (Interface("host", "c1-wire", mac_for(_ADV_MAC), link=link),
                             Interface("net", segment, mac_for(_ADV_MAC + 1), link=link)),
                     kind=NodeKind.BRIDGE, adversary=Position.ON_PATH)]
    return []


def lan_server_config(i: int = 1, n_servers: int = 1, **changes) -> DhcpServerConfig:
    """Server i of `dhcp_lan`: server identifier 10.0.0.i; the pool 10.0.0.100-199 shared out
    between the servers (disjoint pools, as RFC 2131 4.3.1 expects of servers on one subnet)."""
    size = 100 // n_servers
    first = 100 + (i - 1) * size
    kw: dict = {"server_id": IPv4Address(f"10.0.0.{i}"), "pool_start": IPv4Address(f"10.0.0.{first}"),
                "pool_end": IPv4Address(f"10.0.0.{first + size - 1}")}
    kw.update(changes)
    return DhcpServerConfig(**kw)


def routed_server_config(**changes) -> DhcpServerConfig:
    """The server of `dhcp_routed` (10.0.0.1/24, no clients of its own), serving the relay's
    subnet 10.0.1.0/24 (chosen by giaddr, RFC 2131 4.3.1): 10.0.1.100-199 with router 10.0.1.1.
    A client renews at T1 by unicast to the server through its router, as RFC 2131 4.4.5 wants."""
    pool = Pool(IPv4Network("10.0.1.0/24"), IPv4Address("10.0.1.100"), IPv4Address("10.0.1.199"),
                (IPv4Address("10.0.1.1"),))
    kw: dict = {"server_id": IPv4Address("10.0.0.1"), "pool_start": None, "pool_end": None, "pools": (pool,),
                "lease_time": 3600}
    kw.update(changes)
    return DhcpServerConfig(**kw)


@dataclass
class DhcpLab:
    """A built DHCP network with every role attached."""

    sim: Simulator
    net: Network
    servers: list[ServerHandle]
    clients: list[ClientHandle]
    relay: RelayHandle | None = None
    extra: dict = field(default_factory=dict)

    @property
    def server(self) -> ServerHandle:
        return self.servers[0]

    @property
    def adversary(self) -> Adversary | None:
        return self.net.adversaries.get("adv")

    def bound(self) -> int:
        """How many clients have an address configured now."""
        return sum(1 for c in self.clients if c.configured is not None)

    def client_events(self, kind: type | None = None) -> list[tuple[str, ClientEvent]]:
        """Every client event so far as (host name, event), in order per client."""
        return [(c.host.name, e) for c in self.clients for e in c.events
                if kind is None or isinstance(e, kind)]


def dhcp_lab(sim: Simulator, *, n_clients: int = 1, client_config: DhcpClientConfig = DhcpClientConfig(),
             server_configs: Sequence[DhcpServerConfig] | None = None, n_servers: int = 1,
             relayed: bool = False, relay_config: DhcpRelayConfig | None = None,
             adversary: Position | None = Position.SAME_LAN, kind: SegmentKind = SegmentKind.SWITCH,
             link: Link = Link(), arp_probe: float | None = None, start: int | None = 0,
             client_ids: bool = False) -> DhcpLab:
    """Build `dhcp_lan` (or with `relayed`, `dhcp_routed`) on `sim` and attach a server per
    server host, a client per client host (started at `start`, or not if None) and the relay.
    Every role draws from its own stream of the simulator's seed, so a trial is reproducible."""
    if relayed:
        if n_servers != 1:
            raise ParamError("a relayed lab has one server")
        topo = dhcp_routed(n_clients, adversary=adversary, kind=kind, link=link)
        default = [routed_server_config()]
    else:
        topo = dhcp_lan(n_clients, n_servers=n_servers, adversary=adversary, kind=kind, link=link)
        default = [lan_server_config(i, n_servers) for i in range(1, n_servers + 1)]
    configs = list(server_configs) if server_configs is not None else default
    if len(configs) != n_servers:
        raise ParamError(f"server_configs must hold {n_servers} config(s), got {len(configs)}")
    net = build(topo, sim)
    servers = []
    for i, cfg in enumerate(configs, 1):
        name = "srv" if i == 1 else f"srv{i}"
        server = DhcpServer(cfg, LeaseStore(), sim.child_rng(f"dhcp-server:{name}"))
        servers.append(attach_server(net.node(name), server))
    relay = None
    if relayed:
        rcfg = relay_config or DhcpRelayConfig(
            interfaces=(RelayInterface("eth0", IPv4Address("10.0.1.1"), remote_id=b"relay"),),
            servers=(configs[0].server_id,))
        relay = attach_relay(net.node("relay"), DhcpRelay(rcfg))
    clients = []
    for i in range(1, n_clients + 1):
        host = net.node(f"c{i}")
        cid = b"\x01" + host.mac if client_ids else None
        client = DhcpClient(client_config, sim.child_rng(f"dhcp-client:c{i}"), host.mac, cid)
        handle = attach_client(host, client, arp_probe=arp_probe)
        if start is not None:
            handle.start(at=start)
        clients.append(handle)
    return DhcpLab(sim, net, servers, clients, relay)
