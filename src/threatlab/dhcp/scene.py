"""The scene the DHCPv4 threats play in (`threatlab.dhcp.threats`, `threatlab.dhcp.threats_auth`):
the addresses and keys of the lab, servers with a processing time or a finite CPU, the rogue
server and the PKI the trials use, how a client's outcome is judged, and the metrics and
defenses the entries share.

- a client is *configured correctly* when its interface has an address the real server has leased
  to it, with the real server's router and DNS server; *misconfigured* when it has an address but
  not that; *denied* when it has none at the end of the run (`outcome`);
- the real server answers after `server_delay` ms (ISC dhcpd pings an address before offering it;
  any server takes some time), so a rogue on the LAN answering at once wins the race for the
  client's first choice, the case the draft worries about (`DelayedServer`).
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from threatlab.dhcp.attacks import RogueServer
from threatlab.dhcp.auth import AuthKey
from threatlab.dhcp.client import Bound, DhcpClient, DhcpClientConfig
from threatlab.dhcp.config import DhcpServerConfig
from threatlab.dhcp.events import Drop
from threatlab.dhcp.leases import LeaseStore
from threatlab.dhcp.server import DhcpServer
from threatlab.dhcp.simhost import ClientHandle, DhcpLab, ServerHandle, send_datagram
from threatlab.dhcp.wire import DhcpMessage, MessageType
from threatlab.dhcp.x509auth import (
    ALG_ED25519,
    EPOCH_2025,
    X509DhcpClient,
    X509Signer,
    X509Verifier,
    make_pki,
)
from threatlab.lab.catalogue import Defense, Metric, Param, Source
from threatlab.net.sim import NS_PER_MS, NS_PER_S, Simulator

__all__ = [
    "DRAFT",
    "SEED_FILE",
    "SRV",
    "ADV",
    "MASK",
    "ROGUE_POOL",
    "BAD_POOL",
    "SECRET",
    "HIGH_REPLAY",
    "source",
    "new_sim",
    "secs",
    "msecs",
    "aggregate",
    "DelayedServer",
    "QueuedServer",
    "swap_server",
    "new_server",
    "client_key_of",
    "outcome",
    "first_bound",
    "mean_time_to_ok",
    "replace_client",
    "x509_clients",
    "start_clients",
    "run_until",
    "chain_frames",
    "auth_drops",
    "rogue_server",
    "SITE_KEYS",
    "lab_pki",
    "common_params",
    "M_OK",
    "M_MIS",
    "M_DENIED",
    "M_PACKETS",
    "D_X509",
    "rogue_signer",
    "per_client_keys",
]

DRAFT = "draft-ietf-dhc-v4-threat-analysis-02"
SEED_FILE = "000_b9328fc40e4aade4.txt"

SRV = IPv4Address("10.0.0.1")  # the real server, also the LAN's router and DNS server
ADV = IPv4Address("10.0.0.250")  # the attacker's host on the LAN
MASK = IPv4Address("255.255.255.0")
ROGUE_POOL = [IPv4Address(f"10.0.0.{i}") for i in range(220, 230)]  # plausible addresses on the LAN
BAD_POOL = [IPv4Address(f"192.0.2.{i}") for i in range(10, 20)]  # TEST-NET-1: routes nowhere here
SECRET = bytes.fromhex("00112233445566778899aabbccddeeff")  # the site's RFC 3118 key / token
HIGH_REPLAY = 1 << 40  # a replay detection value above anything the real parties have sent


def source(section: str) -> Source:
    return Source(seed_file=SEED_FILE, section=section, draft=DRAFT)


def new_sim(rng: random.Random) -> Simulator:
    return Simulator(rng.getrandbits(63))


def secs(x: float) -> int:
    return round(float(x) * NS_PER_S)


def msecs(x: float) -> int:
    return round(float(x) * NS_PER_MS)


def aggregate(trials: list[Mapping[str, Any]]) -> dict[str, float]:
    """success_rate, and NAME_mean of each numeric measurement over the trials that have it (a time
    to an event that never came is None in that trial)."""
    n = len(trials)
    out: dict[str, float] = {"success_rate": sum(1 for t in trials if t["success"]) / n if n else 0.0}
    keys: list[str] = []
    for t in trials:
        keys.extend(k for k in t if k != "success" and k not in keys)
    for key in keys:
        vals = [
            t[key]
            for t in trials
            if isinstance(t.get(key), (int, float)) and not isinstance(t.get(key), bool)
        ]
        if vals:
            out[f"{key}_mean"] = sum(vals) / len(vals)
    return out


# --- the scene: servers with a processing time or a finite CPU, client outcomes ------------------


class DelayedServer(ServerHandle):
    """A server that answers `delay_ns` after a message arrives (ping check, disk write, load)."""

    def __init__(self, host, server: DhcpServer, ifname: str, delay_ns: int) -> None:
        super().__init__(host, server, ifname)
        self.delay_ns = delay_ns

    def _on_datagram(self, data: bytes, addr, dst) -> None:
        if self.delay_ns:
            self.sim.post(self.delay_ns, ServerHandle._on_datagram, self, data, addr, dst)
        else:
            super()._on_datagram(data, addr, dst)


class QueuedServer(ServerHandle):
    """A server with a finite CPU (2.1.3): datagrams wait in a receive queue of `queue_limit`
    (a full queue drops them, as a full socket buffer does) and are handled one at a time, each
    taking 1/`capacity` s, or `drop_cost` of that if the server's rate limiter drops it (a limiter
    is cheap, but not free: the message is still received and looked at). The server decides when
    it takes a message up; its replies leave when it is done. Counts, by message type, what arrived,
    what the queue dropped, what the limiter dropped and what was handled, for the clients in
    `legit` (by hardware address) apart from everyone else."""

    def __init__(
        self,
        host,
        server: DhcpServer,
        ifname: str,
        *,
        capacity: float,
        queue_limit: int,
        drop_cost: float,
        legit: set[bytes],
    ) -> None:
        super().__init__(host, server, ifname)
        self.service_ns = max(1, round(NS_PER_S / capacity))
        self.queue_limit = queue_limit
        self.drop_cost = drop_cost
        self.legit = legit
        self.queue: deque = deque()
        self.serving = False
        self.busy_ns = 0
        self.stats: Counter[str] = Counter()

    def _who(self, data: bytes) -> str:
        if data[28:34] not in self.legit:
            return "other"
        try:
            mtype = DhcpMessage.decode(data).message_type
        except Exception:  # noqa: BLE001 - a malformed message is counted as one
            return "legit other"
        return "legit " + (mtype.name if isinstance(mtype, MessageType) else "other")

    def _count(self, data: bytes, what: str) -> None:
        who = self._who(data)
        self.stats[f"{who} {what}"] += 1
        if who.startswith("legit "):
            self.stats[f"legit {what}"] += 1

    def _on_datagram(self, data: bytes, addr, dst) -> None:
        self._count(data, "arrived")
        if len(self.queue) >= self.queue_limit:
            self._count(data, "queue drops")
            return
        self.queue.append((data, addr))
        if not self.serving:
            self._serve()

    def _serve(self) -> None:
        if not self.queue:
            self.serving = False
            return
        self.serving = True
        data, addr = self.queue.popleft()
        drops = self.server.drops
        before = drops[Drop.RATE_LIMIT] + drops[Drop.RATE_LIMIT_GLOBAL]
        out = self.server.receive(data, self.sim.now, src_ip=addr[0], interface=self.ifname)
        limited = drops[Drop.RATE_LIMIT] + drops[Drop.RATE_LIMIT_GLOBAL] > before
        self._count(data, "limited" if limited else "handled")
        cost = max(1, round(self.service_ns * (self.drop_cost if limited else 1.0)))
        self.busy_ns += cost
        self.sim.post(cost, self._done, out)

    def _done(self, out) -> None:
        for dg in out:
            send_datagram(self.host, dg, self.ifname)
        self._after()
        self._serve()


def swap_server(lab: DhcpLab, server: DhcpServer, *, delay_ns: int = 0, i: int = 0) -> ServerHandle:
    """Put `server` in place of lab server i, answering after `delay_ns`."""
    old = lab.servers[i]
    old.close()
    new = DelayedServer(old.host, server, old.ifname, delay_ns)
    lab.servers[i] = new
    return new


def new_server(cfg: DhcpServerConfig, sim: Simulator, name: str = "srv") -> DhcpServer:
    return DhcpServer(cfg, LeaseStore(), sim.child_rng(f"dhcp-server:{name}"))


def client_key_of(mac: bytes, client_id: bytes | None = None) -> bytes:
    """DhcpMessage.client_key() of a client with this chaddr (and option 61 value)."""
    return b"i" + client_id if client_id is not None else b"h\x01" + mac


def outcome(
    lab: DhcpLab,
    server: DhcpServer,
    routers: tuple[IPv4Address, ...] = (SRV,),
    dns: tuple[IPv4Address, ...] = (SRV,),
    clients: Sequence[ClientHandle] | None = None,
) -> Counter[str]:
    """How many clients are configured correctly ("ok"), misconfigured ("mis") or "denied" now."""
    now = lab.sim.now
    out: Counter[str] = Counter(ok=0, mis=0, denied=0)
    for c in lab.clients if clients is None else clients:
        lease = c.client.lease
        if c.configured is None or lease is None:
            out["denied"] += 1
            continue
        held = server.leases.get(lease.address)
        right = (
            held is not None
            and held.client_key == c.client.client_key
            and held.active(now)
            and lease.routers == routers
            and lease.dns_servers == dns
        )
        out["ok" if right else "mis"] += 1
    return out


def first_bound(handle: ClientHandle, server: IPv4Address | None = None) -> int | None:
    for e in handle.events:
        if isinstance(e, Bound) and (server is None or e.server == server):
            return e.time
    return None


def mean_time_to_ok(
    lab: DhcpLab,
    server: DhcpServer,
    clients: Sequence[ClientHandle] | None = None,
    since_s: float = 0.0,
    routers: tuple[IPv4Address, ...] = (SRV,),
    dns: tuple[IPv4Address, ...] = (SRV,),
) -> float | None:
    """Mean time (s, from `since_s`) to the lease that holds at the end, over the clients configured
    correctly; None if there are none."""
    times = []
    for h in lab.clients if clients is None else clients:
        if outcome(lab, server, routers, dns, clients=[h])["ok"]:
            last = [e.time for e in h.events if isinstance(e, Bound)]
            if last:
                times.append(last[-1] / NS_PER_S - since_s)
    return sum(times) / len(times) if times else None


def replace_client(handle: ClientHandle, client: DhcpClient) -> None:
    """Give a not yet started handle another client object (an X.509 client, a fallback)."""
    handle._reschedule(None)
    handle.client = client


def x509_clients(lab: DhcpLab, anchors, config: DhcpClientConfig, *, clock: bool = True) -> None:
    for h in lab.clients:
        old = h.client
        cid = None if old.client_id is None else old.client_id.raw
        verifier = X509Verifier(anchors, clock=(lambda ns: EPOCH_2025 + ns // NS_PER_S) if clock else None)
        replace_client(
            h,
            X509DhcpClient(
                replace(config, max_message_size=1500), old.rng, old.chaddr, cid, verifier=verifier
            ),
        )


def start_clients(
    lab: DhcpLab,
    at_s: float = 0.0,
    spacing_ms: float = 100.0,
    clients: Sequence[ClientHandle] | None = None,
    jitter_s: float = 0.0,
) -> None:
    """Start the clients `spacing_ms` apart from `at_s`, each up to `jitter_s` later at random
    (clients that boot at random moments, not in step with anything else in the run)."""
    rng = lab.sim.child_rng("client-starts")
    for k, h in enumerate(lab.clients if clients is None else clients):
        h.start(
            at=secs(at_s)
            + msecs(spacing_ms) * k
            + (round(rng.uniform(0, jitter_s) * NS_PER_S) if jitter_s else 0)
        )


def run_until(lab: DhcpLab, until_s: float) -> None:
    lab.sim.run(until=secs(until_s))


def chain_frames(adv, *handlers: Callable[[bytes, str, int], object]) -> None:
    """Feed every frame the adversary sees to each handler, in order."""

    def on_frame(frame: bytes, ifname: str, now: int) -> None:
        for h in handlers:
            h(frame, ifname, now)

    adv.on_frame = on_frame


def auth_drops(handles: Sequence[ClientHandle]) -> int:
    return sum(n for h in handles for r, n in h.client.drops.items() if r.startswith(("auth:", "x509:")))


def rogue_server(
    lab: DhcpLab,
    sim: Simulator,
    params: Mapping[str, Any],
    variant: str,
    *,
    server_id: IPv4Address = ADV,
    finish=None,
    auth=None,
    serve=None,
) -> RogueServer:
    pool, routers, dns = (
        (BAD_POOL, (IPv4Address("192.0.2.1"),), (IPv4Address("192.0.2.1"),))
        if variant == "bad-address"
        else (ROGUE_POOL, (ADV,), (ADV,))
    )
    return RogueServer(
        lab.adversary,
        sim,
        variant=variant,
        server_id=server_id,
        pool=pool,
        mask=MASK,
        routers=routers,
        dns=dns,
        delay_ns=msecs(params.get("rogue_delay", 0.0)),
        finish=finish,
        auth=auth,
        serve=serve,
    )


SITE_KEYS = (AuthKey(1, SECRET),)


def lab_pki(
    sim: Simulator,
    server_ip: IPv4Address = SRV,
    org: str = "lab",
    algorithm: int = ALG_ED25519,
    depth: int = 2,
):
    return make_pki(server_ip, sim.child_rng(f"pki:{org}"), algorithm=algorithm, depth=depth, org=org)


def common_params(n: int = 4, duration: float = 120.0) -> tuple[Param, ...]:
    return (
        Param("n_clients", "clients", n, "legitimate clients on the LAN", min=1, max=20),
        Param("duration", "s", duration, "virtual time the run lasts", min=5, max=3600),
        Param("server_delay", "ms", 5.0, "the real server's time to answer", min=0, max=5000),
        Param("rogue_delay", "ms", 0.0, "the rogue's time to answer", min=0, max=5000),
    )


M_OK = Metric("configured_ok_mean", "clients", "clients configured correctly by the real server at the end")
M_MIS = Metric(
    "misconfigured_mean",
    "clients",
    "clients with an address that is not the real server's lease, or the attacker's router / DNS",
)
M_DENIED = Metric("denied_mean", "clients", "clients without an address at the end")
M_PACKETS = Metric("attacker_packets_mean", "packets", "frames the attacker sent")


D_X509 = Defense(
    "x509-server-auth",
    "EXPERIMENTAL (draft 4.3): the server signs every reply with an X.509 certificate for its address "
    "(option 224, threatlab.dhcp.x509auth); clients hold only the CA certificate and drop what does not "
    "verify",
)


def rogue_signer(sim: Simulator, params: Mapping[str, Any]):
    own = lab_pki(sim, ADV, org="rogue")
    return lambda data: X509Signer(own).sign(data, sim.now)


def per_client_keys(handles: Sequence[ClientHandle]) -> tuple[AuthKey, ...]:
    """A key per client, each bound to its client (RFC 3118 5.3: a key per client)."""
    return tuple(
        AuthKey(100 + i, bytes([i + 1]) * 16, client=h.client.client_key) for i, h in enumerate(handles)
    )
