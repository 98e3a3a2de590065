"""Catalogue entries for draft-ietf-dhc-v4-threat-analysis-02 (seed 000): every DHCPv4 line of
seeds/README.md. The general threats of section 2 are here; the weaknesses of RFC 3118 and the
requirements of section 4 (with the experimental 4.3 and 4.4 directions) are in
`threatlab.dhcp.threats_auth`; `THREATS` holds both.

Each run function plays one trial: it builds a simulated LAN (or a relayed network), runs
threatlab's own DHCP server, clients and relay agent on its hosts, lets the adversary send real
DHCP messages from its position, and reads the outcome off the endpoints (the client's lease and
configured interface, the server's lease database and counters, the adversary's own log). No
formula stands in for a run; the `expected` functions give what the draft (or a derivation in their
docstring) predicts, for the tests and the report to compare. Counts are per trial, so NAME_mean
is the mean over the trials; how a client's outcome is judged is in `threatlab.dhcp.scene`.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from threatlab.dhcp.attacks import (
    AlteringRelay,
    DeletionMonitor,
    DhcpSniffer,
    FakeClients,
    LeaseWatch,
    OnPathEditor,
    ack_to_nak,
    forge_decline,
    forge_release,
    rewrite_config,
)
from threatlab.dhcp.auth import PROTOCOL_DELAYED, AuthKey
from threatlab.dhcp.client import ClientDrop, DhcpClient, DhcpClientConfig, LeaseExpired, Nak
from threatlab.dhcp.config import DhcpServerConfig, Pool, RateLimit
from threatlab.dhcp.events import Drop
from threatlab.dhcp.leases import LeaseState, LeaseStore
from threatlab.dhcp.relay import DhcpRelay, DhcpRelayConfig, RelayInterface
from threatlab.dhcp.scene import (
    ADV,
    D_X509,
    M_DENIED,
    M_MIS,
    M_OK,
    M_PACKETS,
    SITE_KEYS,
    SRV,
    QueuedServer,
    aggregate,
    auth_drops,
    common_params,
    first_bound,
    lab_pki,
    mean_time_to_ok,
    msecs,
    new_server,
    new_sim,
    outcome,
    per_client_keys,
    replace_client,
    rogue_server,
    rogue_signer,
    run_until,
    secs,
    source,
    start_clients,
    swap_server,
    x509_clients,
)
from threatlab.dhcp.server import DhcpServer
from threatlab.dhcp.simhost import (
    ClientHandle,
    DhcpLab,
    ServerHandle,
    attach_client,
    attach_relay,
    attach_server,
    dhcp_lab,
    lan_server_config,
    routed_server_config,
)
from threatlab.dhcp.live import peer_function
from threatlab.dhcp.threats_auth import AUTH_THREATS
from threatlab.dhcp.wire import MessageType
from threatlab.dhcp.x509auth import X509DhcpServer, X509Signer
from threatlab.lab.catalogue import Defense, Metric, Param, Threat
from threatlab.net.build import build
from threatlab.net.sim import NS_PER_MS, NS_PER_S, Simulator
from threatlab.net.topology import (
    Interface,
    Node,
    NodeKind,
    Position,
    Route,
    Segment,
    SegmentKind,
    Topology,
    mac_for,
)

__all__ = ["THREATS", "GENERAL_THREATS"]

# ================================================================================================
# 2.1.1 Refusal to configure clients
# ================================================================================================

_D_SERVER_AUTH = Defense(
    "server-auth",
    "client authenticates server: RFC 3118 delayed authentication (protocol 1, HMAC-MD5); the server "
    "signs (auth_paradigm client-authenticates-server) and clients drop every unauthenticated server "
    "message (require_server_auth)",
)
_D_IGNORE = Defense(
    "ignore-failed-server",
    "draft 2.1.1: a client ignores a server whose message failed authentication for ignore_time s "
    "(DhcpClientConfig.ignore_failed_server); it acts only on authentication failures, and knows the "
    "server by its forgeable server identifier",
)


def _server_auth_setup(
    lab: DhcpLab,
    sim: Simulator,
    defenses: frozenset[str],
    cfg: DhcpServerConfig,
    ccfg: DhcpClientConfig,
    params: Mapping[str, Any],
) -> tuple[ServerHandle, object]:
    """The real server and the clients with the server-authentication defenses asked for. Returns
    the server handle and the PKI (None without x509-server-auth)."""
    if "server-auth" in defenses:
        cfg = replace(cfg, auth_paradigm="client-authenticates-server", auth_keys=SITE_KEYS)
    pki = None
    if "x509-server-auth" in defenses:
        pki = lab_pki(sim)
        server: DhcpServer = X509DhcpServer(
            cfg, LeaseStore(), sim.child_rng("dhcp-server:srv"), X509Signer(pki)
        )
    else:
        server = new_server(cfg, sim)
    handle = swap_server(lab, server, delay_ns=msecs(params["server_delay"]))
    if "x509-server-auth" in defenses:
        x509_clients(lab, [pki.anchor], ccfg)
    else:
        for h in lab.clients:
            old = h.client
            replace_client(h, DhcpClient(ccfg, old.rng, old.chaddr, None))
    return handle, pki


def _client_config(defenses: frozenset[str], params: Mapping[str, Any], **kw) -> DhcpClientConfig:
    auth = "server-auth" in defenses
    ignore = int(params.get("ignore_time", 60)) if "ignore-failed-server" in defenses else 0
    return DhcpClientConfig(
        auth_keys=SITE_KEYS if auth else (), require_server_auth=auth, ignore_failed_server=ignore, **kw
    )


def refusal_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """A rogue server on the LAN (draft 2.1.1) answers every client first, with a partial answer
    (an OFFER, then an ACK with no address), a bad address (TEST-NET-1, router to nowhere), or an
    OFFER and then silence. Clients take the first offer."""
    sim = new_sim(rng)
    n = int(params["n_clients"])
    lab = dhcp_lab(
        sim, n_clients=n, start=None, server_configs=[lan_server_config(routers=(SRV,), dns_servers=(SRV,))]
    )
    if pcap:
        lab.net.capture(pcap)
    ccfg = _client_config(defenses, params)
    handle, _ = _server_auth_setup(lab, sim, defenses, lab.server.server.config, ccfg, params)
    finish = None
    if "x509-server-auth" in defenses:  # the rogue signs too, with a certificate it made itself
        finish = rogue_signer(sim, params)
    sid = SRV if params["forge_server_id"] else ADV
    rogue = rogue_server(lab, sim, params, str(params["variant"]), server_id=sid, finish=finish)
    lab.adversary.on_frame = rogue.on_frame
    start_clients(lab)
    run_until(lab, params["duration"])
    lab.net.close()
    o = outcome(lab, handle.server)
    return {
        "success": o["mis"] + o["denied"] > 0,
        "configured_ok": o["ok"],
        "misconfigured": o["mis"],
        "denied": o["denied"],
        "time_to_configure_s": mean_time_to_ok(lab, handle.server),
        "attacker_packets": rogue.counters["packets"],
        "auth_drops": auth_drops(lab.clients),
        "ignored_drops": sum(h.client.drops[ClientDrop.IGNORED] for h in lab.clients),
    }


def refusal_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """The rogue answers first (rogue_delay < server_delay). Without authentication every client
    takes its offer: a bad address misconfigures it; a partial answer or silence leaves it in
    REQUESTING until it gives up (4 + 8 + 16 + 32 s), and the next DISCOVER meets the rogue again.
    With server authentication (either kind) the rogue's messages are dropped and the real server
    configures every client, unless the rogue forges the real server's identifier and the client
    ignores failed servers: then it ignores the real server, again and again."""
    n = int(params["n_clients"])
    if float(params["rogue_delay"]) >= float(params["server_delay"]):
        return {}
    authed = bool({"server-auth", "x509-server-auth"} & defenses)
    if authed and params["forge_server_id"] and "ignore-failed-server" in defenses:
        return {"success_rate": 1.0}  # a client may slip through when an ignore period ends
    if authed:
        return {
            "success_rate": 0.0,
            "configured_ok_mean": float(n),
            "misconfigured_mean": 0.0,
            "denied_mean": 0.0,
        }
    bad = params["variant"] == "bad-address"
    return {
        "success_rate": 1.0,
        "configured_ok_mean": 0.0,
        "misconfigured_mean": float(n if bad else 0),
        "denied_mean": float(0 if bad else n),
    }


ROGUE_REFUSAL = Threat(
    id="dhcp.rogue-server-refusal",
    title="A rogue server refuses to configure clients (partial answer, bad address, OFFER then silence)",
    source=source("2.1.1"),
    position=Position.SAME_LAN,
    knowledge="nothing beyond being on the LAN: it hears the clients' broadcast DHCPDISCOVERs",
    params=common_params(4, 120.0)
    + (
        Param(
            "variant",
            "",
            "offer-silence",
            "partial: OFFER, then an ACK without an address; bad-address: a lease in 192.0.2.0/24; "
            "offer-silence: OFFER, then no answer to the REQUEST",
            choices=("partial", "bad-address", "offer-silence"),
        ),
        Param("forge_server_id", "", False, "the rogue puts the real server's identifier in its messages"),
        Param(
            "ignore_time",
            "s",
            60,
            "ignore-failed-server: how long a failed server is ignored",
            min=1,
            max=86400,
        ),
    ),
    defenses=(_D_SERVER_AUTH, _D_IGNORE, D_X509),
    metrics=(
        Metric("success_rate", "share of trials", "some client is denied or misconfigured at the end"),
        M_OK,
        M_MIS,
        M_DENIED,
        Metric(
            "time_to_configure_s_mean",
            "s",
            "mean time to the lease held at the end, over clients configured correctly",
        ),
        M_PACKETS,
        Metric("auth_drops_mean", "messages", "server messages clients dropped for failed authentication"),
        Metric("ignored_drops_mean", "messages", "messages dropped unverified from an ignored server"),
    ),
    run=refusal_trial,
    expected=refusal_expected,
    aggregate=aggregate,
    default_trials=10,
    summary=(
        "Without server authentication the first answer wins: every client is refused. RFC 3118 (or "
        "the X.509 option) makes the client drop the rogue and take the real server. Ignoring a "
        "failed server saves verifications, but keyed on the forgeable server identifier it lets a "
        "rogue that forges the real server's identifier deny service again (forge_server_id=true)."
    ),
    tags=("rogue-server", "dos", "rfc3118"),
    peers={"dhcpcd": peer_function("rogue", "dhcpcd")},
)


# ================================================================================================
# 2.1.2 Impersonating clients
# ================================================================================================

_D_CLIENT_AUTH = Defense(
    "client-auth",
    "server authenticates client: RFC 3118 delayed authentication with a key per client (auth_paradigm "
    "server-authenticates-client); messages without a valid MAC of that client's key are dropped",
)


def _authenticating_clients(
    handles: Sequence[ClientHandle],
    keys: Sequence[AuthKey],
    *,
    broadcast: bool = False,
    require_server_auth: bool = False,
    protocol: int = PROTOCOL_DELAYED,
) -> None:
    for h, k in zip(handles, keys):
        old = h.client
        cfg = DhcpClientConfig(
            auth_protocol=protocol,
            auth_keys=(k,),
            authenticate_to_server=True,
            require_server_auth=require_server_auth,
            broadcast=broadcast,
        )
        replace_client(
            h, DhcpClient(cfg, old.rng, old.chaddr, None if old.client_id is None else old.client_id.raw)
        )


def impersonation_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """The server admits only the hardware addresses on its allow-list (draft 2.1.2: "hardware
    address or client identifier restrictions"). The attacker hears client c1's broadcasts, takes
    its chaddr and client identifier, and, after c1 has released its lease and left, asks for a
    lease as c1 (spoof=false: with its own hardware address)."""
    sim = new_sim(rng)
    n = int(params["n_clients"])
    lab = dhcp_lab(sim, n_clients=n, start=None, client_ids=True)
    if pcap:
        lab.net.capture(pcap)
    allow = frozenset(h.host.mac for h in lab.clients)
    cfg = lan_server_config(routers=(SRV,), dns_servers=(SRV,), allow_chaddrs=allow)
    if "client-auth" in defenses:
        keys = per_client_keys(lab.clients)
        cfg = replace(cfg, auth_paradigm="server-authenticates-client", auth_keys=keys)
        _authenticating_clients(lab.clients, keys)
    server = swap_server(lab, new_server(cfg, sim), delay_ns=msecs(params["server_delay"]))
    adv = lab.adversary
    sniffer = DhcpSniffer(adv)
    start_clients(lab)
    c1 = lab.clients[0]
    sim.at(secs(params["leave_at"]), lambda: c1.release() if c1.client.lease is not None else None)
    state: dict[str, Any] = {}

    def impersonate() -> None:
        seen = sniffer.clients().get(c1.host.mac)
        if seen is None:
            return
        state["captured"] = True
        cid = seen.client_id.raw if seen.client_id is not None and params["spoof"] else None
        chaddr = seen.chaddr if params["spoof"] else adv.host.mac
        # broadcast replies: the server's unicast to chaddr would go to c1's switch port
        client = DhcpClient(DhcpClientConfig(broadcast=True), sim.child_rng("impersonator"), chaddr, cid)
        handle = attach_client(adv.host, client)
        state["handle"] = handle
        handle.start()

    sim.at(secs(params["attack_at"]), impersonate)
    run_until(lab, params["duration"])
    lab.net.close()
    handle = state.get("handle")
    got = handle is not None and handle.configured is not None
    bound_at = first_bound(handle) if handle is not None else None
    legit = lab.clients[1:]
    o = outcome(lab, server.server, clients=legit)
    return {
        "success": got,
        "attacker_bound": 1.0 if got else 0.0,
        "identity_captured": 1.0 if state.get("captured") else 0.0,
        "time_to_lease_s": (bound_at / NS_PER_S - float(params["attack_at"]))
        if bound_at is not None
        else None,
        "attacker_packets": handle.client.counters["sent"] if handle is not None else 0,
        "legit_ok": o["ok"],
        "server_auth_drops": sum(v for r, v in server.server.drops.items() if r.startswith("auth:")),
        "allow_list_drops": server.server.drops[Drop.ALLOW_LIST],
    }


def impersonation_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """The allow-list admits any message with a listed chaddr: an impersonator gets a lease,
    one with its own address does not. A key per client stops both."""
    win = bool(params["spoof"]) and "client-auth" not in defenses
    return {"success_rate": 1.0 if win else 0.0, "legit_ok_mean": float(int(params["n_clients"]) - 1)}


IMPERSONATION = Threat(
    id="dhcp.client-impersonation",
    title="A rogue client passes a hardware-address allow-list with a captured chaddr and client identifier",
    source=source("2.1.2"),
    position=Position.SAME_LAN,
    knowledge="what it hears on the LAN: a legitimate client's broadcast DHCPDISCOVER / DHCPREQUEST",
    params=(
        Param("n_clients", "clients", 3, "legitimate clients; c1 is the one impersonated", min=1, max=20),
        Param("duration", "s", 40.0, "virtual time the run lasts", min=5, max=3600),
        Param("server_delay", "ms", 5.0, "the real server's time to answer", min=0, max=5000),
        Param("leave_at", "s", 10.0, "c1 releases its lease and leaves", min=0, max=3600),
        Param("attack_at", "s", 20.0, "the attacker asks for a lease", min=0, max=3600),
        Param("spoof", "", True, "use c1's chaddr and client identifier (false: the attacker's own)"),
    ),
    defenses=(_D_CLIENT_AUTH,),
    metrics=(
        Metric("success_rate", "share of trials", "the attacker got a lease past the allow-list"),
        Metric("attacker_bound_mean", "share of trials", "the attacker's interface has a leased address"),
        Metric("identity_captured_mean", "share of trials", "the attacker heard c1's identity"),
        Metric("time_to_lease_s_mean", "s", "from the attack to the attacker's lease"),
        M_PACKETS,
        Metric("legit_ok_mean", "clients", "the other legitimate clients configured correctly"),
        Metric("server_auth_drops_mean", "messages", "messages the server dropped for failed authentication"),
        Metric("allow_list_drops_mean", "messages", "messages the allow-list dropped"),
    ),
    run=impersonation_trial,
    expected=impersonation_expected,
    aggregate=aggregate,
    default_trials=10,
    summary=(
        "An allow-list of hardware addresses is a list of things anyone on the LAN can read and send:"
        " the impersonator gets c1's lease. With a key per client (RFC 3118) it gets an OFFER at "
        "most, never an ACK; legitimate clients are served as before."
    ),
    tags=("rogue-client", "allow-list", "rfc3118"),
)


# ================================================================================================
# 2.1.2 Address pool starvation, with held leases or DECLINEs
# ================================================================================================

_D_PER_CIRCUIT = Defense(
    "per-circuit-limit",
    "at most per_circuit_limit active leases per relay circuit (option 82 circuit ID: one access port; "
    "per_circuit_lease_limit)",
)
_D_PER_CLIENT = Defense(
    "per-client-limit", "at most 1 active lease per hardware address (per_client_lease_limit)"
)
_D_RATE = Defense(
    "rate-limit",
    "token buckets on received messages: 1 per s (burst 4) per hardware address and rate_limit_total per "
    "s for all clients together (RateLimit)",
)
_D_DECLINE_CAP = Defense(
    "decline-hold-cap",
    "a declined address comes back after decline_hold_cap s, not the baseline 24 h (Kea's "
    "decline-probation-period)",
)

# The access network: one relay agent (an access switch) with a port per client; its circuit ID
# names the port (RFC 3046 3.1). The attacker has port 0 to itself.
_RELAY_NET = IPv4Network("10.0.1.0/24")


def ports_topology(n_legit: int) -> Topology:
    """Router "relay" with a port "eth0".."ethK" per access segment "p0".."pK" (the attacker "adv"
    on p0, client cI on pI, all in 10.0.1.0/24, the relay's port I being 10.0.1.(I+1)) and "srvnet"
    with the server "srv" (10.0.0.1)."""
    segs = [Segment(f"p{i}", SegmentKind.SWITCH) for i in range(n_legit + 1)] + [
        Segment("srvnet", SegmentKind.SWITCH)
    ]
    relay_ifs = tuple(
        Interface(f"eth{i}", f"p{i}", mac_for(0x30000 + i), f"10.0.1.{i + 1}/24") for i in range(n_legit + 1)
    )
    relay_ifs += (Interface(f"eth{n_legit + 1}", "srvnet", mac_for(0x30100), "10.0.0.254/24"),)
    nodes = [
        Node(
            "srv",
            (Interface("eth0", "srvnet", mac_for(0x10001), "10.0.0.1/24"),),
            routes=(Route("10.0.1.0/24", "eth0", "10.0.0.254"),),
        ),
        Node("relay", relay_ifs, kind=NodeKind.ROUTER),
        Node(
            "adv", (Interface("eth0", "p0", mac_for(0x20000), "10.0.1.250/24"),), adversary=Position.SAME_LAN
        ),
    ]
    nodes += [Node(f"c{i}", (Interface("eth0", f"p{i}", mac_for(i)),)) for i in range(1, n_legit + 1)]
    return Topology(tuple(segs), tuple(nodes), name=f"dhcp-ports-{n_legit}")


def ports_lab(
    sim: Simulator, n_legit: int, cfg: DhcpServerConfig, client_config: DhcpClientConfig
) -> DhcpLab:
    net = build(ports_topology(n_legit), sim)
    server = attach_server(net.node("srv"), new_server(cfg, sim))
    rcfg = DhcpRelayConfig(
        interfaces=tuple(
            RelayInterface(
                f"eth{i}", IPv4Address(f"10.0.1.{i + 1}"), circuit_id=f"port{i}".encode(), remote_id=b"sw1"
            )
            for i in range(n_legit + 1)
        ),
        servers=(SRV,),
    )
    relay = attach_relay(net.node("relay"), DhcpRelay(rcfg))
    clients = []
    for i in range(1, n_legit + 1):
        host = net.node(f"c{i}")
        clients.append(
            attach_client(host, DhcpClient(client_config, sim.child_rng(f"dhcp-client:c{i}"), host.mac))
        )
    return DhcpLab(sim, net, [server], clients, relay)


def _starvation_config(params: Mapping[str, Any], defenses: frozenset[str], **kw) -> DhcpServerConfig:
    size = int(params["pool_size"])
    pool = Pool(
        _RELAY_NET,
        IPv4Address("10.0.1.100"),
        IPv4Address(int(IPv4Address("10.0.1.100")) + size - 1),
        (IPv4Address("10.0.1.1"),),
    )
    cfg = routed_server_config(pools=(pool,), **kw)
    if "per-circuit-limit" in defenses:
        cfg = replace(cfg, per_circuit_lease_limit=int(params["per_circuit_limit"]))
    if "per-client-limit" in defenses:
        cfg = replace(cfg, per_client_lease_limit=1)
    if "rate-limit" in defenses:
        total = float(params["rate_limit_total"])
        cfg = replace(
            cfg, rate_limit=RateLimit(per_chaddr=1.0, burst=4.0, total=total, total_burst=max(1.0, total))
        )
    if "decline-hold-cap" in defenses:
        cfg = replace(cfg, decline_hold_cap=int(params["decline_hold_cap"]))
    return cfg


def _watch_exhaustion(
    lab: DhcpLab, server: DhcpServer, step_ns: int = 20 * NS_PER_MS
) -> dict[str, int | None]:
    """Polls the server's free addresses every `step_ns`: when the pool first ran dry."""
    state: dict[str, int | None] = {"at": None}

    def poll() -> None:
        if state["at"] is None:
            if server.addresses_free(lab.sim.now) == 0:
                state["at"] = lab.sim.now
                return
            lab.sim.post(step_ns, poll)

    lab.sim.post(0, poll)
    return state


def _starve(
    params: Mapping[str, Any],
    defenses: frozenset[str],
    rng: random.Random,
    pcap: str | None,
    *,
    decline: bool,
) -> dict[str, Any]:
    sim = new_sim(rng)
    n = int(params["n_legit"])
    cfg = _starvation_config(params, defenses)
    ccfg = DhcpClientConfig()
    lab = ports_lab(sim, n, cfg, ccfg)
    if pcap:
        lab.net.capture(pcap)
    if "client-auth" in defenses:
        keys = per_client_keys(lab.clients)
        srv = new_server(replace(cfg, auth_paradigm="server-authenticates-client", auth_keys=keys), sim)
        lab.servers[0].close()
        lab.servers[0] = attach_server(lab.servers[0].host, srv)
        _authenticating_clients(lab.clients, keys)
    server = lab.server.server
    stop = secs(params["attack_stop"]) if decline else None
    fakes = FakeClients(
        lab.adversary,
        sim,
        sim.child_rng("fake-clients"),
        rate=float(params["rate"]),
        decline=decline,
        stop_at=stop,
        jitter=0.5,
    )
    lab.adversary.on_frame = fakes.on_frame
    fakes.start(at=0)
    state = _watch_exhaustion(lab, server)
    legit_start = float(params["legit_start"])
    start_clients(lab, legit_start)
    run_until(lab, params["duration"])
    lab.net.close()
    gw = (IPv4Address("10.0.1.1"),)
    o = outcome(lab, server, routers=gw, dns=())
    now = sim.now
    held_back = sum(1 for lease in server.leases if lease.effective(now) is LeaseState.DECLINED)
    at = state["at"]
    return {
        "success": o["denied"] + o["mis"] > 0,
        "exhausted": 1.0 if at is not None else 0.0,
        "time_to_exhaustion_s": at / NS_PER_S if at is not None else None,
        "legit_ok": o["ok"],
        "legit_denied": o["denied"],
        "time_to_configure_s": mean_time_to_ok(lab, server, since_s=legit_start, routers=gw, dns=()),
        "attacker_leases": fakes.counters["acks"],
        "attacker_packets": fakes.packets,
        "declined_held_at_end": held_back,
        "pool_free_at_end": server.addresses_free(now),
    }


def starvation_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """The attacker, on its own access port, sends DHCPDISCOVERs from made-up hardware addresses at
    `rate` per second and takes every address offered (DHCPREQUEST), as dhcpstarv or yersinia do.
    Legitimate clients, one per port, arrive at legit_start."""
    return _starve(params, defenses, rng, pcap, decline=False)


def _reserve_rate(params: Mapping[str, Any], defenses: frozenset[str]) -> float:
    """Addresses per second the attacker takes out of the pool. Every DHCPDISCOVER the server
    admits reserves an address for the offer hold (60 s), whether or not the REQUEST that follows
    gets through; under a global token bucket of T messages/s at most T DISCOVERs a second are
    admitted (a REQUEST right behind its DISCOVER finds the bucket empty)."""
    r = float(params["rate"])
    if "rate-limit" not in defenses:
        return r
    return min(r, float(params["rate_limit_total"]))


def starvation_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Time to exhaustion = pool size / reservation rate (the attacker's rate, or what a global
    bucket lets through, see `_reserve_rate`). A per-hardware-address limit does not bind (every
    fake client has its own address); a per-circuit limit caps the attacker's port at
    per_circuit_limit leases; client authentication admits none of them. With a global rate limit
    as well, the legitimate clients still compete with the flood for the bucket's tokens (it is
    checked before anything else): no claim about them then."""
    n = int(params["n_legit"])
    if "client-auth" in defenses or (
        "per-circuit-limit" in defenses and int(params["per_circuit_limit"]) < int(params["pool_size"])
    ):
        if "rate-limit" in defenses:
            return {"exhausted_mean": 0.0}
        return {"success_rate": 0.0, "exhausted_mean": 0.0, "legit_ok_mean": float(n)}
    t = int(params["pool_size"]) / _reserve_rate(params, defenses)
    out = {"time_to_exhaustion_s_mean": t}
    if t < float(params["legit_start"]):
        out.update(success_rate=1.0, exhausted_mean=1.0, legit_denied_mean=float(n))
    return out


def _starvation_params(duration: float, legit_start: float) -> tuple[Param, ...]:
    return (
        Param("pool_size", "addresses", 50, "addresses in the access subnet's pool", min=1, max=250),
        Param("rate", "DISCOVER/s", 10.0, "the attacker's made-up clients per second", min=0.01, max=10000),
        Param("n_legit", "clients", 3, "legitimate clients, each on its own access port", min=1, max=16),
        Param("legit_start", "s", legit_start, "when the legitimate clients start", min=0, max=3600),
        Param("duration", "s", duration, "virtual time the run lasts", min=1, max=86400),
        Param("per_circuit_limit", "leases", 4, "per-circuit-limit: leases per access port", min=1, max=250),
        Param(
            "rate_limit_total",
            "messages/s",
            5.0,
            "rate-limit: messages per second for all clients",
            min=0.1,
            max=100000,
        ),
    )


_STARVATION_METRICS = (
    Metric("success_rate", "share of trials", "some legitimate client is without an address at the end"),
    Metric("exhausted_mean", "share of trials", "the pool ran dry (no address free)"),
    Metric(
        "time_to_exhaustion_s_mean",
        "s",
        "from the attack's start to an empty pool, over trials where it emptied",
    ),
    Metric("legit_ok_mean", "clients", "legitimate clients configured at the end"),
    Metric("legit_denied_mean", "clients", "legitimate clients without an address at the end"),
    Metric("time_to_configure_s_mean", "s", "from legit_start to the lease, over the clients that got one"),
    Metric("attacker_leases_mean", "leases", "addresses acknowledged to made-up clients"),
    M_PACKETS,
    Metric("declined_held_at_end_mean", "addresses", "addresses held back as declined at the end"),
    Metric("pool_free_at_end_mean", "addresses", "addresses free at the end"),
)

STARVATION = Threat(
    id="dhcp.starvation",
    title="Address pool starvation by many made-up clients holding leases",
    source=source("2.1.2"),
    position=Position.SAME_LAN,
    knowledge="none: it makes up hardware addresses and takes what it is offered",
    params=_starvation_params(60.0, 10.0),
    defenses=(_D_CLIENT_AUTH, _D_PER_CIRCUIT, _D_PER_CLIENT, _D_RATE),
    metrics=_STARVATION_METRICS,
    run=starvation_trial,
    expected=starvation_expected,
    aggregate=aggregate,
    default_trials=5,
    summary=(
        "pool_size / rate seconds empty the pool; legitimate clients who come later get nothing. A "
        "limit per hardware address does not bind on made-up addresses; a global rate limit only "
        "slows the attack (and throttles everyone); a limit per access port (option 82) and client "
        "authentication stop it."
    ),
    tags=("rogue-client", "starvation", "option-82"),
    peers={p: peer_function("starvation", p) for p in ("dnsmasq", "kea", "threatlab")},
)


def decline_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """As dhcp.starvation, but each made-up client DHCPDECLINEs the address it was given, "in the
    hopes that the server will remove the declined address from use for a longer period of time"
    (2.1.2), and the attacker leaves at attack_stop; legitimate clients come after that."""
    return _starve(params, defenses, rng, pcap, decline=True)


def decline_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Declined addresses are held for 24 h (min(24 h, cap) with the cap); the attacker declines
    min(pool, rate x attack_stop) of them and leaves. Without the cap they are all still held at the
    end; with it they are free again cap seconds after they were declined, and the clients get them
    at their next DHCPDISCOVER. A per-circuit limit counts active leases, and a declined address is
    not one: it does not bind."""
    n = int(params["n_legit"])
    if "client-auth" in defenses:
        return {"success_rate": 0.0, "declined_held_at_end_mean": 0.0, "legit_ok_mean": float(n)}
    if "rate-limit" in defenses:
        return {}  # how many REQUESTs (and so DECLINEs) the bucket lets through depends on timing
    pool = int(params["pool_size"])
    declined = min(pool, math.floor(float(params["attack_stop"]) * float(params["rate"])))
    hold = 86400
    if "decline-hold-cap" in defenses:
        hold = min(hold, int(params["decline_hold_cap"]))
    last_back = float(params["attack_stop"]) + hold
    if last_back < float(params["duration"]):
        return {"declined_held_at_end_mean": 0.0}
    out = {"declined_held_at_end_mean": float(declined)}
    if declined >= pool:
        out.update(success_rate=1.0, legit_denied_mean=float(n))
    return out


DECLINE_STARVATION = Threat(
    id="dhcp.decline-starvation",
    title="Address pool starvation by DECLINEs that hold addresses back after the attacker has left",
    source=source("2.1.2"),
    position=Position.SAME_LAN,
    knowledge="none: it makes up hardware addresses, takes what it is offered and declines it",
    params=_starvation_params(150.0, 20.0)
    + (
        Param("attack_stop", "s", 10.0, "the attacker leaves", min=0.01, max=86400),
        Param("decline_hold_cap", "s", 60, "decline-hold-cap: the cap", min=0, max=86400),
    ),
    defenses=(_D_CLIENT_AUTH, _D_DECLINE_CAP, _D_PER_CIRCUIT, _D_RATE),
    metrics=_STARVATION_METRICS,
    run=decline_trial,
    expected=decline_expected,
    aggregate=aggregate,
    default_trials=5,
    summary=(
        "Ten seconds of DECLINEs keep the whole pool out of use for the server's decline hold (24 h "
        "by default), long after the attacker left. Capping the hold gives the addresses back after "
        "the cap; a per-circuit limit does not help (a declined address is no active lease); client "
        "authentication stops it."
    ),
    tags=("rogue-client", "starvation", "decline"),
)


# ================================================================================================
# 2.1.2 Forged DHCPRELEASE / DHCPDECLINE on behalf of other clients
# ================================================================================================

_D_SOURCE = Defense(
    "release-source-check",
    "the server drops a DHCPRELEASE not sent from its ciaddr (nor relayed) (release_source_check); a "
    "DHCPDECLINE has no source address to check",
)


def _forged(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None, kind: str
) -> dict[str, Any]:
    sim = new_sim(rng)
    n = int(params["n_clients"])
    size = int(params["pool_size"])
    lab = dhcp_lab(sim, n_clients=n + 1, start=None, client_ids=True)  # the last one is the newcomer
    if pcap:
        lab.net.capture(pcap)
    last = IPv4Address(f"10.0.0.{100 + size - 1}")
    cfg = lan_server_config(
        routers=(SRV,), dns_servers=(SRV,), pool_end=last, lease_time=int(params["lease_time"])
    )
    if "release-source-check" in defenses:
        cfg = replace(cfg, release_source_check=True)
    victims, newcomer = lab.clients[:n], lab.clients[n]
    if "client-auth" in defenses:
        keys = per_client_keys(lab.clients)
        cfg = replace(cfg, auth_paradigm="server-authenticates-client", auth_keys=keys)
        _authenticating_clients(lab.clients, keys)
    server = swap_server(lab, new_server(cfg, sim), delay_ns=msecs(params["server_delay"])).server
    adv = lab.adversary
    sniffer = DhcpSniffer(adv)
    start_clients(lab, clients=victims)
    forged = Counter()
    held: dict[bytes, IPv4Address] = {}

    def attack() -> None:
        for h in victims:
            if h.client.lease is not None:
                held[h.client.client_key] = h.client.lease.address
        for victim in sniffer.leases().values():
            if victim.server is None:
                continue
            if kind == "release":
                forge_release(adv, victim, victim.server, rng, spoof_source=bool(params["spoof_source"]))
            else:
                forge_decline(adv, victim, victim.server, rng)
            forged["sent"] += 1

    sim.at(secs(params["attack_at"]), attack)
    newcomer.start(at=secs(params["attack_at"]) + NS_PER_S)
    run_until(lab, params["duration"])
    lab.net.close()
    now = sim.now
    lost = sum(
        1
        for key, a in held.items()
        if (lease := server.leases.get(a)) is None
        or lease.client_key != key
        or not lease.active(now)
        or lease.effective(now) is LeaseState.OFFERED
    )
    victim_addresses = {h.address for h in victims if h.address is not None}
    duplicate = 1 if newcomer.address is not None and newcomer.address in victim_addresses else 0
    changed = sum(
        1 for h in victims if h.client.client_key in held and h.address != held[h.client.client_key]
    )
    naks = sum(1 for h in victims for e in h.events if isinstance(e, Nak))
    return {
        "success": lost > 0 or changed > 0,
        "leases_lost": lost,
        "duplicate_addresses": duplicate,
        "victims_naked": naks,
        "victims_moved": changed,
        "attacker_packets": forged["sent"],
        "server_drops": sum(
            server.drops[r] for r in (Drop.SOURCE_MISMATCH, Drop.AUTH_MISSING, Drop.AUTH_BAD_HMAC)
        ),
    }


def release_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """Victims bind. The attacker, having heard their DHCPREQUESTs (chaddr, client identifier,
    address, server identifier), sends a DHCPRELEASE for each (2.1.2: "prematurely release"). The
    server frees the addresses while the victims still use them; a newcomer then is given one of
    them (the pool is as big as the victims' leases)."""
    return _forged(params, defenses, rng, pcap, "release")


def release_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Every forged RELEASE frees its lease unless the source check sees the attacker's own
    address, or client authentication finds no MAC. With a pool the size of the victims' leases
    the newcomer gets a victim's address: a duplicate."""
    n = int(params["n_clients"])
    stopped = "client-auth" in defenses or ("release-source-check" in defenses and not params["spoof_source"])
    if stopped:
        return {"success_rate": 0.0, "leases_lost_mean": 0.0, "duplicate_addresses_mean": 0.0}
    out = {"success_rate": 1.0, "leases_lost_mean": float(n)}
    if int(params["pool_size"]) <= n:
        out["duplicate_addresses_mean"] = 1.0
    return out


def _forged_params(duration: float, lease_time: int, pool: int) -> tuple[Param, ...]:
    return (
        Param("n_clients", "clients", 3, "victims", min=1, max=20),
        Param("pool_size", "addresses", pool, "addresses in the pool", min=1, max=100),
        Param("lease_time", "s", lease_time, "the server's lease time (T1 is half of it)", min=20, max=86400),
        Param("attack_at", "s", 5.0, "when the forged messages are sent", min=0, max=86400),
        Param("duration", "s", duration, "virtual time the run lasts", min=1, max=86400),
        Param("server_delay", "ms", 5.0, "the real server's time to answer", min=0, max=5000),
    )


_FORGED_METRICS = (
    Metric("leases_lost_mean", "leases", "victims' leases the server no longer holds for them at the end"),
    Metric("duplicate_addresses_mean", "hosts", "the newcomer was given an address a victim still uses"),
    Metric("victims_naked_mean", "clients", "DHCPNAKs victims got (renewing a declined address)"),
    Metric("victims_moved_mean", "clients", "victims whose address changed or went"),
    M_PACKETS,
    Metric(
        "server_drops_mean", "messages", "forged messages the server dropped (source check, authentication)"
    ),
)

FORGED_RELEASE = Threat(
    id="dhcp.forged-release",
    title="Forged DHCPRELEASE frees other clients' leases",
    source=source("2.1.2"),
    position=Position.SAME_LAN,
    knowledge="the victims' chaddr, client identifier, address and server, from their broadcast DHCPREQUESTs",
    params=_forged_params(10.0, 3600, 3)
    + (
        Param(
            "spoof_source",
            "",
            False,
            "send the RELEASE from the victim's IP address (the attacker is on the LAN: nothing stops it)",
        ),
    ),
    defenses=(_D_SOURCE, _D_CLIENT_AUTH),
    metrics=(Metric("success_rate", "share of trials", "some victim lost its lease at the server"),)
    + _FORGED_METRICS,
    run=release_trial,
    expected=release_expected,
    aggregate=aggregate,
    default_trials=10,
    summary=(
        "The server believes any RELEASE that names the client: the leases go, and the next client "
        "gets a victim's address. Checking the source stops a forger that sends from its own address,"
        " not one that spoofs the victim's (spoof_source=true); a MAC from the client's key stops "
        "both."
    ),
    tags=("rogue-client", "release", "dos"),
    peers={p: peer_function("forged-release", p) for p in ("dnsmasq", "kea", "threatlab")},
)


def decline_forged_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """Victims bind. The attacker sends a DHCPDECLINE in each victim's name (2.1.2: "prematurely
    ... decline"). The server holds the addresses back as in use; at T1 the victims' renewals are
    NAKed, and they must start over with another address."""
    return _forged(params, defenses, rng, pcap, "decline")


def decline_forged_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Each forged DECLINE holds the victim's address back for the decline hold; a DECLINE has no
    source address to check. At T1 (lease_time / 2, inside the run) each victim is NAKed."""
    n = int(params["n_clients"])
    if "client-auth" in defenses:
        return {"success_rate": 0.0, "leases_lost_mean": 0.0, "victims_naked_mean": 0.0}
    out = {"success_rate": 1.0, "leases_lost_mean": float(n)}
    if int(params["lease_time"]) / 2 < float(params["duration"]):
        out["victims_naked_mean"] = float(n)
    return out


FORGED_DECLINE = Threat(
    id="dhcp.forged-decline",
    title="Forged DHCPDECLINE takes other clients' addresses away",
    source=source("2.1.2"),
    position=Position.SAME_LAN,
    knowledge="the victims' chaddr, client identifier, address and server, from their broadcast DHCPREQUESTs",
    params=_forged_params(70.0, 120, 10),
    defenses=(_D_SOURCE, _D_CLIENT_AUTH),
    metrics=(Metric("success_rate", "share of trials", "some victim lost its lease or address"),)
    + _FORGED_METRICS,
    run=decline_forged_trial,
    expected=decline_forged_expected,
    aggregate=aggregate,
    default_trials=10,
    summary=(
        "A DECLINE in the victim's name puts its address on hold for 24 h; the victim's renewal at T1"
        " is NAKed and it has to move. Source checks cannot help (a DECLINE comes from 0.0.0.0); only"
        " authentication of the client does."
    ),
    tags=("rogue-client", "decline", "dos"),
)


# ================================================================================================
# 2.1.3 Flooding
# ================================================================================================

_D_GLOBAL_RATE = Defense(
    "global-rate-limit",
    "one token bucket for all clients: rate_limit_total messages/s (RateLimit.total); what it drops costs"
    " drop_cost of a full message",
)
_D_CHADDR_RATE = Defense(
    "rate-limit",
    "a token bucket per hardware address: 1 message/s, burst 4 (RateLimit.per_chaddr); what it drops "
    "costs drop_cost of a full message",
)


def flooding_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """The attacker floods the server with DHCPREQUESTs (INIT-REBOOT form, for addresses it makes up)
    or DHCPDISCOVERs at `flood_rate` per second, from made-up hardware addresses (or one, fixed).
    The server handles `capacity` messages a second from a receive queue of `queue` messages
    (`QueuedServer`). Legitimate clients start a second into the flood. The flood's gaps are
    exponential (many sources, or one jittery one), so a legitimate message sees the server as a
    random flood message does."""
    sim = new_sim(rng)
    n = int(params["n_clients"])
    lab = dhcp_lab(sim, n_clients=n, start=None)
    if pcap:
        lab.net.capture(pcap)
    rl = None
    per = 1.0 if "rate-limit" in defenses else None
    total = float(params["rate_limit_total"]) if "global-rate-limit" in defenses else None
    if per is not None or total is not None:
        rl = RateLimit(
            per_chaddr=per,
            burst=4.0,
            total=total,
            total_burst=None if total is None else max(1.0, total / 10),
        )
    cfg = lan_server_config(routers=(SRV,), dns_servers=(SRV,), rate_limit=rl)
    old = lab.servers[0]
    old.close()
    legit = {h.host.mac for h in lab.clients}
    srv = QueuedServer(
        old.host,
        new_server(cfg, sim),
        old.ifname,
        capacity=float(params["capacity"]),
        queue_limit=int(params["queue"]),
        drop_cost=float(params["drop_cost"]),
        legit=legit,
    )
    lab.servers[0] = srv
    fixed = bytes.fromhex("02ffffffff01") if params["chaddrs"] == "fixed" else None
    message = MessageType.DISCOVER if params["message"] == "discover" else MessageType.REQUEST
    duration = float(params["duration"])
    flood = FakeClients(
        lab.adversary,
        sim,
        sim.child_rng("flood"),
        rate=float(params["flood_rate"]),
        follow=False,
        fixed_chaddr=fixed,
        message=message,
        stop_at=secs(duration),
        poisson=True,
    )
    flood.start(at=0)
    start_clients(lab, 1.0, jitter_s=1.0)
    run_until(lab, duration)
    lab.net.close()
    st = srv.stats
    sent = st["legit arrived"]
    served = st["legit handled"]
    first = st["legit DISCOVER arrived"]
    o = outcome(lab, srv.server)
    return {
        "success": o["denied"] > 0,
        "legit_ok": o["ok"],
        "legit_denied": o["denied"],
        "time_to_configure_s": mean_time_to_ok(lab, srv.server, since_s=1.0),
        "legit_accept_share": served / sent if sent else None,
        "legit_discover_accept_share": st["legit DISCOVER handled"] / first if first else None,
        "legit_queue_drops": st["legit queue drops"],
        "legit_rate_limited": st["legit limited"],
        "legit_messages": sent,
        "server_busy_share": srv.busy_ns / secs(duration),
        "attacker_packets": flood.packets,
    }


def flooding_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """The share of a legitimate client's DHCPDISCOVERs the server handles (fluid model, Poisson
    flood at L, capacity C, limiter drop cost c): without a limiter, or per hardware address against
    made-up addresses, the queue is full and takes C of the L arrivals a second: C/L. A
    per-address bucket against a fixed address drops the flood cheaply: the load L*c < C leaves the
    queue free: 1. A global bucket of T/s admits T of L: T/L, if the rest, dropped cheaply, fits the
    CPU. (A DHCPREQUEST does better than a DISCOVER: it comes right after its OFFER left, when the
    server has just taken a message off the queue; legit_accept_share counts both.)"""
    flood, cap, cost = float(params["flood_rate"]), float(params["capacity"]), float(params["drop_cost"])
    share = min(1.0, cap / flood)
    if "rate-limit" in defenses and params["chaddrs"] == "fixed" and flood * cost + 1 < cap:
        share = 1.0
    if "global-rate-limit" in defenses:
        t = float(params["rate_limit_total"])
        if t + (flood - t) * cost < cap:
            share = min(1.0, t / flood)
    return {"legit_discover_accept_share_mean": share}


FLOODING = Threat(
    id="dhcp.flooding",
    title="Flooding the server with requests: how little rate limiting helps legitimate clients",
    source=source("2.1.3"),
    position=Position.SAME_LAN,
    knowledge="none",
    params=(
        Param(
            "n_clients", "clients", 4, "legitimate clients, starting 1 to 2 s into the flood", min=1, max=20
        ),
        Param("duration", "s", 6.0, "virtual time the flood (and the run) lasts", min=1, max=600),
        Param("flood_rate", "messages/s", 1000.0, "the attacker's rate", min=1, max=100000),
        Param("capacity", "messages/s", 400.0, "messages the server handles per second", min=1, max=1000000),
        Param("queue", "messages", 64, "the server's receive queue", min=1, max=100000),
        Param(
            "drop_cost",
            "share of a full message",
            0.1,
            "what a message the rate limiter drops costs, relative to a full one",
            min=0,
            max=1,
        ),
        Param(
            "rate_limit_total",
            "messages/s",
            100.0,
            "global-rate-limit: messages/s for all clients",
            min=0.1,
            max=1000000,
        ),
        Param("chaddrs", "", "random", "the flood's hardware addresses", choices=("random", "fixed")),
        Param(
            "message",
            "",
            "request",
            "request: DHCPREQUESTs for made-up addresses (each answered with a DHCPNAK); discover: "
            "DHCPDISCOVERs (each reserves an address: a starvation as well)",
            choices=("request", "discover"),
        ),
    ),
    defenses=(_D_CHADDR_RATE, _D_GLOBAL_RATE),
    metrics=(
        Metric("success_rate", "share of trials", "some legitimate client has no address at the end"),
        Metric("legit_ok_mean", "clients", "legitimate clients configured at the end"),
        Metric("legit_denied_mean", "clients", "legitimate clients without an address"),
        Metric(
            "time_to_configure_s_mean", "s", "from the clients' start to their lease, over those that got one"
        ),
        Metric(
            "legit_accept_share_mean",
            "share",
            "legitimate messages the server handled (not dropped by the queue or the limiter)",
        ),
        Metric(
            "legit_discover_accept_share_mean", "share", "the same for the legitimate DHCPDISCOVERs alone"
        ),
        Metric("legit_queue_drops_mean", "messages", "legitimate messages lost to the full queue"),
        Metric("legit_rate_limited_mean", "messages", "legitimate messages the rate limiter dropped"),
        Metric("server_busy_share_mean", "share", "the server's CPU time over the run"),
        M_PACKETS,
    ),
    run=flooding_trial,
    expected=flooding_expected,
    aggregate=aggregate,
    default_trials=5,
    summary=(
        "The server can only pick which messages to drop, not get more of them through: with made-up "
        "hardware addresses a per-address limit drops nothing, and a global limit drops the "
        "legitimate messages in the same proportion as the flood (it saves the CPU, not the clients)."
        " Only a flood from one address is stopped by the per-address bucket."
    ),
    tags=("rogue-client", "flooding", "dos"),
)


# ================================================================================================
# 2.2 Client misconfiguration by a rogue server or an altering relay
# ================================================================================================

_RELAY_ATTACKER = IPv4Address("10.0.1.250")


def misconfiguration_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """rogue-server: a server on the LAN answers first with a plausible lease whose router and DNS
    server are the attacker's host (2.2: "fake gateways or DNS servers", to become the
    man in the middle). altering-relay: the relay agent between the clients and the server rewrites
    option 3 and 6 of every OFFER and ACK to the attacker's address."""
    sim = new_sim(rng)
    n = int(params["n_clients"])
    relayed = params["via"] == "altering-relay"
    if relayed:
        gw = (IPv4Address("10.0.1.1"),)
        cfg = routed_server_config(
            pools=(Pool(_RELAY_NET, IPv4Address("10.0.1.100"), IPv4Address("10.0.1.199"), gw),),
            dns_servers=(SRV,),
        )
    else:
        gw = (SRV,)
        cfg = lan_server_config(routers=gw, dns_servers=(SRV,))
    lab = dhcp_lab(sim, n_clients=n, start=None, relayed=relayed, server_configs=[cfg])
    if pcap:
        lab.net.capture(pcap)
    ccfg = _client_config(defenses, params)
    handle, _ = _server_auth_setup(lab, sim, defenses, cfg, ccfg, params)
    packets = 0
    if relayed:
        relay = lab.relay
        altering = AlteringRelay(relay.relay.config, rewrite_config(_RELAY_ATTACKER, _RELAY_ATTACKER))
        relay.relay = altering
    else:
        finish = rogue_signer(sim, params) if "x509-server-auth" in defenses else None
        rogue = rogue_server(lab, sim, params, "misconfigure", finish=finish)
        lab.adversary.on_frame = rogue.on_frame
    start_clients(lab)
    run_until(lab, params["duration"])
    lab.net.close()
    if relayed:
        packets = altering.counters["altered"]
    else:
        packets = rogue.counters["packets"]
    o = outcome(lab, handle.server, routers=gw)
    return {
        "success": o["mis"] > 0,
        "configured_ok": o["ok"],
        "misconfigured": o["mis"],
        "denied": o["denied"],
        "attacker_packets": packets,
        "auth_drops": auth_drops(lab.clients),
    }


def misconfiguration_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Without server authentication every client takes the attacker's router and DNS. With it, a
    rogue server's messages are dropped and the real server configures everyone; an altering relay
    breaks every message's signature, so nothing it forwards is accepted: no client is
    misconfigured, and none configured (only the integrity of the path could help)."""
    n = float(params["n_clients"])
    authed = bool({"server-auth", "x509-server-auth"} & defenses)
    if not authed:
        if params["via"] == "rogue-server" and float(params["rogue_delay"]) >= float(params["server_delay"]):
            return {}
        return {"success_rate": 1.0, "misconfigured_mean": n}
    if params["via"] == "altering-relay":
        return {"success_rate": 0.0, "misconfigured_mean": 0.0, "denied_mean": n}
    return {"success_rate": 0.0, "misconfigured_mean": 0.0, "configured_ok_mean": n}


MISCONFIGURATION = Threat(
    id="dhcp.misconfiguration",
    title="Clients misconfigured with the attacker's gateway and DNS server (rogue server or altering relay)",
    source=source("2.2"),
    position=Position.SAME_LAN,
    knowledge="the LAN's addressing (public, 4.4.1); as a relay it is on the path of every message",
    params=common_params(4, 10.0)
    + (
        Param(
            "via",
            "",
            "rogue-server",
            "rogue-server: a server on the clients' LAN; altering-relay: the relay agent rewrites the "
            "replies it relays",
            choices=("rogue-server", "altering-relay"),
        ),
    ),
    defenses=(_D_SERVER_AUTH, D_X509),
    metrics=(
        Metric("success_rate", "share of trials", "some client took the attacker's configuration"),
        M_OK,
        M_MIS,
        M_DENIED,
        Metric("attacker_packets_mean", "packets", "frames the rogue sent, or replies the relay altered"),
        Metric("auth_drops_mean", "messages", "server messages clients dropped for failed authentication"),
    ),
    run=misconfiguration_trial,
    expected=misconfiguration_expected,
    aggregate=aggregate,
    default_trials=10,
    summary=(
        "Every client takes the first (rogue) answer or the altered one and routes through the "
        "attacker. Authenticating the server, with RFC 3118 or the experimental X.509 option, stops "
        "the rogue server; against an altering relay it turns misconfiguration into denial of "
        "service."
    ),
    tags=("rogue-server", "mitm", "rfc3118", "x509"),
)


# ================================================================================================
# 2.3 Theft of network service
# ================================================================================================

_D_WATCH = Defense(
    "lease-watch",
    "detection only (2.3: 'little or nothing that a DHCP server, itself, can do'): a monitor on the "
    "server learns leases from DHCPACKs and reports every ARP sender or IP source without a lease, or "
    "with another hardware address than its lease's",
)


def theft_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """Legitimate clients bind and use the network (they ping the server). At use_at the attacker
    configures an address by hand and uses the network too: an unused pool address (unused), or
    the address of client c1, switched off with its lease still running (absent-client; with
    clone_mac it also takes c1's hardware address)."""
    sim = new_sim(rng)
    n = int(params["n_clients"])
    lab = dhcp_lab(sim, n_clients=n, start=None)
    if pcap:
        lab.net.capture(pcap)
    server = swap_server(
        lab,
        new_server(lan_server_config(routers=(SRV,), dns_servers=(SRV,)), sim),
        delay_ns=msecs(params["server_delay"]),
    )
    adv = lab.adversary.host
    adv.configure_ipv4("eth0", None)  # no address until it takes one
    watch = None
    if "lease-watch" in defenses:
        watch = LeaseWatch(exempt=(SRV,))
        lab.net.tap("lan", watch.on_frame)  # the switch's monitor port
    start_clients(lab)
    for h in lab.clients:
        sim.at(secs(2.0), lambda h=h: h.host.ping(SRV) if h.address is not None else None)
    use_at = float(params["use_at"])
    c1 = lab.clients[0]
    stolen: dict[str, Any] = {}

    def steal() -> None:
        if params["variant"] == "absent-client":
            address = c1.address
            c1.host.interfaces["eth0"].up = False  # switched off, lease still valid
            if params["clone_mac"]:
                adv.interfaces["eth0"].mac = c1.host.mac
        else:
            used = {h.address for h in lab.clients}
            address = next(
                IPv4Address(f"10.0.0.{i}")
                for i in range(199, 99, -1)
                if IPv4Address(f"10.0.0.{i}") not in used
                and server.server.leases.get(IPv4Address(f"10.0.0.{i}")) is None
            )
        stolen["address"] = address
        adv.configure_ipv4("eth0", f"{address}/24")
        for k in range(5):
            sim.post(secs(0.2 * k), adv.ping, SRV, k)

    sim.at(secs(use_at), steal)
    run_until(lab, params["duration"])
    lab.net.close()
    replies = len(adv.echo_replies)
    found = [f for f in (watch.findings if watch else []) if f.address == stolen.get("address")]
    false_pos = [f for f in (watch.findings if watch else []) if f.address != stolen.get("address")]
    return {
        "success": replies > 0,
        "service_obtained": replies / 5,
        "detected": 1.0 if found else 0.0,
        "detection_delay_s": (found[0].time / NS_PER_S - use_at) if found else None,
        "false_positives": len(false_pos),
        "legit_ok": outcome(lab, server.server)["ok"],
    }


def theft_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Nothing in DHCP stands between a host and an address it configures itself: the pings are
    answered with or without the watcher. The watcher sees an address without a lease, or a leased
    address from another hardware address; not a clone of the absent client's hardware address."""
    out = {"success_rate": 1.0, "service_obtained_mean": 1.0}
    if "lease-watch" in defenses:
        evade = params["variant"] == "absent-client" and params["clone_mac"]
        out.update(detected_mean=0.0 if evade else 1.0, false_positives_mean=0.0)
    else:
        out["detected_mean"] = 0.0
    return out


THEFT = Threat(
    id="dhcp.theft-of-service",
    title="Theft of network service: an address used without a lease",
    source=source("2.3"),
    position=Position.SAME_LAN,
    knowledge="the LAN's addressing (public), and which addresses are in use (ARP)",
    params=(
        Param("n_clients", "clients", 3, "legitimate clients", min=1, max=20),
        Param("duration", "s", 15.0, "virtual time the run lasts", min=5, max=3600),
        Param("server_delay", "ms", 5.0, "the real server's time to answer", min=0, max=5000),
        Param("use_at", "s", 5.0, "when the attacker takes an address", min=0, max=3600),
        Param(
            "variant",
            "",
            "unused",
            "unused: a free pool address; absent-client: the address of c1, which is switched off with "
            "its lease running",
            choices=("unused", "absent-client"),
        ),
        Param("clone_mac", "", False, "absent-client: the attacker also takes c1's hardware address"),
    ),
    defenses=(_D_WATCH,),
    metrics=(
        Metric("success_rate", "share of trials", "the attacker used the network (its pings were answered)"),
        Metric("service_obtained_mean", "share", "its 5 pings answered"),
        Metric("detected_mean", "share of trials", "the watcher reported the attacker's address"),
        Metric("detection_delay_s_mean", "s", "from use_at to the report"),
        Metric("false_positives_mean", "reports", "reports about legitimate hosts"),
        Metric("legit_ok_mean", "clients", "legitimate clients configured at the end"),
    ),
    run=theft_trial,
    expected=theft_expected,
    aggregate=aggregate,
    default_trials=10,
    summary=(
        "DHCP cannot stop a host from using an address it never leased. A lease watcher sees it at "
        "the first ARP (detection, not prevention), without false alarms, but not an attacker that "
        "clones an absent client's hardware address as well."
    ),
    tags=("theft-of-service", "detection"),
)


# ================================================================================================
# 2.4 Packet modification and deletion
# ================================================================================================


def modification_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """The relay agent between the clients and the server turns every DHCPACK into a DHCPNAK
    (2.4: "a DHCPACK could be modified to a DHCPNAK, thereby denying the client a lease")."""
    sim = new_sim(rng)
    n = int(params["n_clients"])
    gw = (IPv4Address("10.0.1.1"),)
    cfg = routed_server_config(
        pools=(Pool(_RELAY_NET, IPv4Address("10.0.1.100"), IPv4Address("10.0.1.199"), gw),),
        dns_servers=(SRV,),
    )
    lab = dhcp_lab(sim, n_clients=n, start=None, relayed=True, server_configs=[cfg])
    if pcap:
        lab.net.capture(pcap)
    ccfg = _client_config(defenses, params)
    handle, _ = _server_auth_setup(lab, sim, defenses, cfg, ccfg, params)
    altering = AlteringRelay(lab.relay.relay.config, ack_to_nak)
    lab.relay.relay = altering
    start_clients(lab)
    run_until(lab, params["duration"])
    lab.net.close()
    naks = sum(1 for h in lab.clients for e in h.events if isinstance(e, Nak))
    o = outcome(lab, handle.server, routers=gw)
    return {
        "success": naks > 0,
        "forged_naks_accepted": naks,
        "tampering_detected": sum(h.client.drops[ClientDrop.AUTH_BAD_HMAC] for h in lab.clients),
        "configured_ok": o["ok"],
        "denied": o["denied"],
        "server_naks_sent": handle.server.counters["naks"],
        "messages_altered": altering.counters["altered"],
    }


def modification_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Without integrity the client believes the NAK (the server sent none) and starts over, again
    and again. With the HMAC it drops the altered message as tampered with; it still gets no lease
    (what is altered is also what is deleted)."""
    n = float(params["n_clients"])
    if "server-auth" in defenses:
        return {
            "success_rate": 0.0,
            "forged_naks_accepted_mean": 0.0,
            "denied_mean": n,
            "server_naks_sent_mean": 0.0,
        }
    return {"success_rate": 1.0, "denied_mean": n, "server_naks_sent_mean": 0.0}


MODIFICATION = Threat(
    id="dhcp.packet-modification",
    title="A relay agent rewrites DHCPACK into DHCPNAK",
    source=source("2.4"),
    position=Position.ON_PATH,
    knowledge="it relays every message between the clients and the server",
    params=(
        Param("n_clients", "clients", 2, "clients behind the relay", min=1, max=20),
        Param("duration", "s", 90.0, "virtual time the run lasts", min=5, max=3600),
        Param("server_delay", "ms", 5.0, "the real server's time to answer", min=0, max=5000),
    ),
    defenses=(_D_SERVER_AUTH,),
    metrics=(
        Metric("success_rate", "share of trials", "a client accepted a DHCPNAK the server never sent"),
        Metric("forged_naks_accepted_mean", "messages", "DHCPNAKs clients acted on"),
        Metric("tampering_detected_mean", "messages", "altered messages clients dropped (bad HMAC)"),
        M_OK,
        M_DENIED,
        Metric("server_naks_sent_mean", "messages", "DHCPNAKs the server actually sent"),
        Metric("messages_altered_mean", "messages", "replies the relay rewrote"),
    ),
    run=modification_trial,
    expected=modification_expected,
    aggregate=aggregate,
    default_trials=10,
    summary=(
        "The client acts on NAKs the server never sent. Protocol 1's HMAC makes it drop them and "
        "counts the tampering; it does not get the client a lease: an element on the path can always "
        "deny service."
    ),
    tags=("on-path", "integrity", "rfc3118"),
)

_D_MONITOR = Defense(
    "deletion-monitor",
    "detection only: taps on both sides of the victim's wire match DHCP requests that went in with those "
    "that came out; one missing after 100 ms was deleted",
)


def deletion_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """An on-path bridge in front of client c1 deletes its DHCPREQUESTs to renew or rebind (ciaddr
    set) (2.4: "simply deleting certain packet types (DHCPREQUEST to renew or rebind a lease) would
    eventually result in client lease expiration"). c2, beside it, is the control."""
    sim = new_sim(rng)
    n = int(params["n_clients"])
    lease = int(params["lease_time"])
    cfg = lan_server_config(routers=(SRV,), dns_servers=(SRV,), lease_time=lease)
    lab = dhcp_lab(sim, n_clients=n, start=None, adversary=Position.ON_PATH, server_configs=[cfg])
    if pcap:
        lab.net.capture(pcap)
    ccfg = _client_config(defenses, params)
    _server_auth_setup(lab, sim, defenses, cfg, ccfg, params)
    editor = OnPathEditor(
        lab.adversary,
        lambda m, d: (
            None
            if (
                d == "host"
                and m.op == 1
                and m.ciaddr != IPv4Address(0)
                and m.message_type == MessageType.REQUEST
            )
            else m
        ),
    )
    monitor = None
    if "deletion-monitor" in defenses:
        monitor = DeletionMonitor(sim)
        lab.net.tap("c1-wire", monitor.on_entry)
        lab.net.tap("lan", monitor.on_exit)
    start_clients(lab)
    run_until(lab, params["duration"])
    lab.net.close()
    c1 = lab.clients[0]
    expired = [e for e in c1.events if isinstance(e, LeaseExpired)]
    control_lost = sum(1 for h in lab.clients[1:] for e in h.events if isinstance(e, LeaseExpired))
    first_del = editor.deleted_at[0] if editor.deleted_at else None
    det = monitor.detections if monitor else []
    return {
        "success": bool(expired),
        "leases_lost": len(expired),
        "control_leases_lost": control_lost,
        "renewals_deleted": editor.counters["deleted"],
        "detected": 1.0 if det else 0.0,
        "detection_delay_s": (det[0] - first_del) / NS_PER_S if det and first_del is not None else None,
        "time_to_loss_s": (expired[0].time - first_del) / NS_PER_S
        if expired and first_del is not None
        else None,
    }


def deletion_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """The first renewal (T1 = lease/2) is deleted, so are the retransmissions and the rebinding
    ones; the lease runs out at lease_time: lease/2 s after the first deletion, whatever the
    authentication. The monitor sees the first deleted request after its 100 ms window."""
    lease = int(params["lease_time"])
    if float(params["duration"]) <= lease:
        return {}
    out = {
        "success_rate": 1.0,
        "leases_lost_mean": 1.0,
        "control_leases_lost_mean": 0.0,
        "time_to_loss_s_mean": lease - lease // 2,
    }
    out["detected_mean"] = 1.0 if "deletion-monitor" in defenses else 0.0
    if "deletion-monitor" in defenses:
        out["detection_delay_s_mean"] = 0.1
    return out


DELETION = Threat(
    id="dhcp.packet-deletion",
    title="On-path deletion of renewals: the lease runs out (seen, not prevented)",
    source=source("2.4"),
    position=Position.ON_PATH,
    knowledge="it is on the client's wire",
    params=(
        Param("n_clients", "clients", 2, "c1 is behind the attacker, the others are not", min=1, max=20),
        Param("lease_time", "s", 120, "the server's lease time", min=20, max=86400),
        Param("duration", "s", 125.0, "virtual time the run lasts", min=5, max=86400),
        Param("server_delay", "ms", 5.0, "the real server's time to answer", min=0, max=5000),
    ),
    defenses=(_D_SERVER_AUTH, _D_MONITOR),
    metrics=(
        Metric("success_rate", "share of trials", "c1's lease ran out"),
        Metric("leases_lost_mean", "leases", "c1's leases that ran out"),
        Metric("control_leases_lost_mean", "leases", "the other clients' leases that ran out"),
        Metric("renewals_deleted_mean", "messages", "renewing / rebinding requests deleted"),
        Metric("time_to_loss_s_mean", "s", "from the first deletion to the lease's end"),
        Metric("detected_mean", "share of trials", "the monitor reported a deleted request"),
        Metric("detection_delay_s_mean", "s", "from the first deletion to the report"),
    ),
    run=deletion_trial,
    expected=deletion_expected,
    aggregate=aggregate,
    default_trials=10,
    summary=(
        "Deleting requests needs no key and leaves nothing to verify: with or without RFC 3118 the "
        "lease runs out half a lease after T1. A monitor on both sides of the wire sees it within its"
        " window."
    ),
    tags=("on-path", "deletion", "detection"),
)


GENERAL_THREATS: tuple[Threat, ...] = (
    ROGUE_REFUSAL,
    IMPERSONATION,
    STARVATION,
    DECLINE_STARVATION,
    FORGED_RELEASE,
    FORGED_DECLINE,
    FLOODING,
    MISCONFIGURATION,
    THEFT,
    MODIFICATION,
    DELETION,
)
THREATS: tuple[Threat, ...] = GENERAL_THREATS + AUTH_THREATS
