"""Catalogue entries for the weaknesses of RFC 3118 and the security requirements of
draft-ietf-dhc-v4-threat-analysis-02 (sections 3 and 4): protocol 0 tokens sniffed and replayed
(3.1, 3.3), key distribution (3.2), no negotiation of the protocol (3.4), the four authentication
paradigms (4.2), certificates for server authentication (4.3, experimental, `x509auth`) and
two-step configuration with private options over an authenticated DHCPINFORM (4.4,
experimental, `twostep`). The general threats of section 2 are in `threatlab.dhcp.threats`,
which collects both into `THREATS`; the scene they share is `threatlab.dhcp.scene`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

from threatlab.dhcp.attacks import AckForger, DhcpSniffer, FakeClients, RogueServer, parse_dhcp_frame
from threatlab.dhcp.auth import (
    PROTOCOL_DELAYED,
    PROTOCOL_DELAYED_REALM,
    PROTOCOL_TOKEN,
    AuthKey,
    sign,
)
from threatlab.dhcp.client import Bound, DhcpClient, DhcpClientConfig
from threatlab.dhcp.events import Drop
from threatlab.dhcp.leases import LeaseStore
from threatlab.dhcp.scene import (
    ADV,
    D_X509,
    HIGH_REPLAY,
    M_DENIED,
    M_MIS,
    M_OK,
    M_PACKETS,
    MASK,
    SECRET,
    SRV,
    aggregate,
    auth_drops,
    chain_frames,
    client_key_of,
    common_params,
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
from threatlab.dhcp.simhost import ClientHandle, DhcpLab, dhcp_lab, lan_server_config, send_datagram
from threatlab.dhcp.twostep import Informer, LeakyServer, TwoStepServer, inform_datagram
from threatlab.dhcp.wire import (
    Authentication,
    DhcpMessage,
    DhcpMessageType,
    DomainNameServers,
    IpAddressLeaseTime,
    MessageType,
    RawOption,
    Routers,
    ServerIdentifier,
    SubnetMask,
)
from threatlab.dhcp.x509auth import (
    ALG_ED25519,
    ALG_P256,
    X509DhcpServer,
    X509Signer,
    issue_leaf,
    make_pki,
    measure_costs,
)
from threatlab.lab.catalogue import Defense, Metric, Param, Threat
from threatlab.net.sim import NS_PER_MS, NS_PER_S, Simulator
from threatlab.net.topology import Position, SegmentKind

__all__ = ["AUTH_THREATS"]
# ================================================================================================
# 3.1 / 3.3 Protocol 0 tokens in clear, sniffed and replayed
# ================================================================================================

_D_PROTO1 = Defense(
    "auth-protocol-1",
    "RFC 3118 delayed authentication (protocol 1: HMAC-MD5 over the message, monotonic replay detection) "
    "in place of the configuration token (protocol 0)",
)


def _copied_auth(sniffer: DhcpSniffer, protocol: int) -> Callable[[], Authentication | None]:
    """What a sniffer can put in its own messages: a protocol 0 token it saw, with a replay
    value above any seen; for protocol 1 the last option it saw that carries a MAC, as it was."""

    replay = iter(range(HIGH_REPLAY, HIGH_REPLAY + 10**9))

    def auth() -> Authentication | None:
        if protocol == PROTOCOL_TOKEN:
            tokens = sniffer.tokens()
            return Authentication(PROTOCOL_TOKEN, 0, 0, next(replay), tokens[0]) if tokens else None
        macs = [a for a in sniffer.auth_options() if a.protocol == protocol and a.mac is not None]
        return macs[-1] if macs else None

    return auth


def _paradigm_lab(sim: Simulator, paradigm: str, protocol: int, n_late: int, server_delay: float):
    """A hub LAN (the shared medium of draft 1.1: Wi-Fi) with the real server in `paradigm`, one
    client c1 booting at 0 and `n_late` clients at 3 s; all share the site's key (or token)."""
    keys = (AuthKey(1, SECRET),)
    lab = dhcp_lab(sim, n_clients=1 + n_late, start=None, kind=SegmentKind.HUB)
    cfg = lan_server_config(
        routers=(SRV,),
        dns_servers=(SRV,),
        auth_paradigm=paradigm,
        auth_protocol=protocol,
        auth_keys=keys if paradigm != "none" else (),
    )
    server = swap_server(lab, new_server(cfg, sim), delay_ns=msecs(server_delay))
    ccfg = DhcpClientConfig(
        auth_protocol=protocol,
        auth_keys=keys,
        require_server_auth=paradigm in ("mutual", "client-authenticates-server"),
        authenticate_to_server=paradigm in ("mutual", "server-authenticates-client"),
    )
    for h in lab.clients:
        old = h.client
        replace_client(h, DhcpClient(ccfg, old.rng, old.chaddr, None))
    lab.clients[0].start(at=0)
    start_clients(lab, 3.0, clients=lab.clients[1:])
    return lab, server


def _rogue_both(
    lab: DhcpLab,
    sim: Simulator,
    sniffer: DhcpSniffer,
    protocol: int,
    *,
    server: bool,
    client: bool,
    after_s: float = 2.0,
) -> tuple[RogueServer | None, FakeClients | None]:
    """The sniffing attacker as a rogue server (for clients whose requests it sees after `after_s`)
    and as a rogue client (one made-up client a second from `after_s`), both with copied auth."""
    auth = _copied_auth(sniffer, protocol)
    handlers: list = [sniffer._on_frame]
    rogue = fakes = None
    if server:
        rogue = rogue_server(
            lab, sim, {}, "misconfigure", auth=auth, serve=lambda m, now: now >= secs(after_s)
        )
        handlers.append(rogue.on_frame)
    if client:
        fakes = FakeClients(
            lab.adversary, sim, sim.child_rng("rogue-client"), rate=1.0, auth=auth, stop_at=secs(after_s + 5)
        )
        handlers.append(fakes.on_frame)
        fakes.start(at=secs(after_s))
    chain_frames(lab.adversary, *handlers)
    return rogue, fakes


def replay_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """Mutual authentication with the site's token (protocol 0) on a shared medium. c1 boots; its
    messages carry the token in clear (3.1, 3.3). The attacker copies it into its own messages:
    as a rogue server for the clients that boot later (rogue-server), or as a client asking the
    server for leases (rogue-client). With protocol 1 it can copy only an option whose MAC covers
    another message."""
    sim = new_sim(rng)
    protocol = PROTOCOL_DELAYED if "auth-protocol-1" in defenses else PROTOCOL_TOKEN
    lab, server = _paradigm_lab(
        sim, "mutual", protocol, int(params["n_clients"]) - 1, float(params["server_delay"])
    )
    if pcap:
        lab.net.capture(pcap)
    sniffer = DhcpSniffer(lab.adversary)
    as_server = params["variant"] == "rogue-server"
    rogue, fakes = _rogue_both(lab, sim, sniffer, protocol, server=as_server, client=not as_server)
    run_until(lab, params["duration"])
    lab.net.close()
    late = lab.clients[1:]
    o = outcome(lab, server.server, clients=late)
    leases = fakes.counters["acks"] if fakes else 0
    won = o["mis"] > 0 if as_server else leases > 0
    return {
        "success": won,
        "token_captured": 1.0 if sniffer.tokens() else 0.0,
        "misconfigured": o["mis"],
        "configured_ok": o["ok"],
        "attacker_leases": leases,
        "attacker_packets": (rogue.counters["packets"] if rogue else 0) + (fakes.packets if fakes else 0),
        "auth_drops": auth_drops(lab.clients)
        + sum(v for r, v in server.server.drops.items() if r.startswith("auth:")),
    }


def replay_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Protocol 0: the token is the whole proof, and it is in every message: the copy passes.
    Protocol 1: the copied MAC is for another message (and its replay value is not new): no copy
    passes, and the real server configures the late clients."""
    late = float(int(params["n_clients"]) - 1)
    if "auth-protocol-1" in defenses:
        return {
            "success_rate": 0.0,
            "token_captured_mean": 0.0,
            "misconfigured_mean": 0.0,
            "attacker_leases_mean": 0.0,
        }
    out = {"success_rate": 1.0, "token_captured_mean": 1.0}
    if params["variant"] == "rogue-server":
        out["misconfigured_mean"] = late
    return out


TOKEN_REPLAY = Threat(
    id="dhcp.token-replay",
    title="A protocol 0 token sniffed on the LAN and replayed (as a rogue server or a rogue client)",
    source=source("3.1, 3.3"),
    position=Position.SAME_LAN,
    knowledge="what it hears on a shared medium (hub, Wi-Fi): every DHCP message of the other stations",
    params=(
        Param("n_clients", "clients", 3, "c1 boots first; the others boot at 3 s", min=2, max=20),
        Param("duration", "s", 10.0, "virtual time the run lasts", min=5, max=3600),
        Param("server_delay", "ms", 5.0, "the real server's time to answer", min=0, max=5000),
        Param(
            "variant",
            "",
            "rogue-server",
            "what the attacker does with the token",
            choices=("rogue-server", "rogue-client"),
        ),
    ),
    defenses=(_D_PROTO1,),
    metrics=(
        Metric(
            "success_rate",
            "share of trials",
            "a late client took the rogue's configuration (rogue-server), or the attacker got a lease "
            "(rogue-client)",
        ),
        Metric("token_captured_mean", "share of trials", "the attacker read a token off the wire"),
        Metric("misconfigured_mean", "clients", "late clients configured by the rogue"),
        Metric("configured_ok_mean", "clients", "late clients configured by the real server"),
        Metric("attacker_leases_mean", "leases", "leases the rogue client got"),
        M_PACKETS,
        Metric(
            "auth_drops_mean", "messages", "messages clients and server dropped for failed authentication"
        ),
    ),
    run=replay_trial,
    expected=replay_expected,
    aggregate=aggregate,
    default_trials=10,
    summary=(
        "Protocol 0 sends the password in every message: the first message on the air gives it away, "
        "and with it server and client authentication both. Protocol 1's MAC cannot be moved to "
        "another message."
    ),
    tags=("rfc3118", "replay", "key-exposure"),
)


# ================================================================================================
# 3.4 Protocol agreement difficulties
# ================================================================================================

_D_FALLBACK = Defense(
    "auth-fallback",
    "the only negotiation there is, trial and error: after fallback_after s without a lease the client "
    "tries the next protocol (its own, then 0, 1, 2 in order)",
)


def _keys_for(protocol: int) -> tuple[AuthKey, ...]:
    """The site's one secret, for each protocol (protocol 0 sends it as the token)."""
    return (AuthKey(1, SECRET, realm=b"lab.example" if protocol == PROTOCOL_DELAYED_REALM else b""),)


def _ladder(client_protocol: int) -> list[int]:
    return [client_protocol] + [
        p for p in (PROTOCOL_TOKEN, PROTOCOL_DELAYED, PROTOCOL_DELAYED_REALM) if p != client_protocol
    ]


def _mutual_client(protocol: int, old: DhcpClient) -> DhcpClient:
    cfg = DhcpClientConfig(
        auth_protocol=protocol,
        auth_keys=_keys_for(protocol),
        require_server_auth=True,
        authenticate_to_server=True,
    )
    return DhcpClient(cfg, old.rng, old.chaddr, None)


def mismatch_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """Client and server are configured for mutual authentication with the site's key, but for
    protocols chosen separately (3.4: "an a priori agreement is presumed"). There is nothing to
    negotiate with: the one that cannot verify stays silent. With the fallback the client tries
    the protocols in turn, and protocol 0 sends the site's key in clear."""
    sim = new_sim(rng)
    cp, sp = int(params["client_protocol"]), int(params["server_protocol"])
    n = int(params["n_clients"])
    lab = dhcp_lab(sim, n_clients=n, start=None)
    if pcap:
        lab.net.capture(pcap)
    cfg = lan_server_config(
        routers=(SRV,), dns_servers=(SRV,), auth_paradigm="mutual", auth_protocol=sp, auth_keys=_keys_for(sp)
    )
    server = swap_server(lab, new_server(cfg, sim), delay_ns=msecs(params["server_delay"])).server
    for h in lab.clients:
        replace_client(h, _mutual_client(cp, h.client))
    sniffer = DhcpSniffer(lab.adversary)
    start_clients(lab)
    tried = {k: 1 for k in range(n)}
    if "auth-fallback" in defenses:
        ladder = _ladder(cp)
        step = secs(params["fallback_after"])

        def fallback(stage: int) -> None:
            for k, h in enumerate(lab.clients):
                if h.configured is None:
                    tried[k] = stage + 1
                    replace_client(h, _mutual_client(ladder[stage], h.client))
                    h.start()

        for stage in range(1, len(ladder)):
            sim.at(stage * step, fallback, stage)
    run_until(lab, params["duration"])
    lab.net.close()
    o = outcome(lab, server)
    return {
        "success": o["denied"] + o["mis"] > 0,
        "configured_ok": o["ok"],
        "denied": o["denied"],
        "time_to_configure_s": mean_time_to_ok(lab, server),
        "protocols_tried": sum(tried.values()) / n,
        "token_leaked": 1.0 if sniffer.tokens() else 0.0,
        "server_auth_drops": sum(v for r, v in server.drops.items() if r.startswith("auth:")),
        "client_auth_drops": auth_drops(lab.clients),
    }


def mismatch_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Same protocol: configured at once; the key is in clear only if that protocol is 0. Different
    protocols: the server drops the client's messages (wrong protocol) and never answers: every
    client is denied, silently, for as long as the run lasts. With the fallback the client reaches
    the server's protocol at stage k of its ladder, k x fallback_after s in; if protocol 0 comes
    first on the ladder, the site's key has gone out in clear on the way (3.1: "it also leaks the
    key before knowing whether the server supports protocol 0")."""
    n = float(params["n_clients"])
    cp, sp = int(params["client_protocol"]), int(params["server_protocol"])
    if cp == sp:
        return {
            "success_rate": 0.0,
            "configured_ok_mean": n,
            "protocols_tried_mean": 1.0,
            "token_leaked_mean": 1.0 if cp == PROTOCOL_TOKEN else 0.0,
        }
    if "auth-fallback" not in defenses:
        return {
            "success_rate": 1.0,
            "denied_mean": n,
            "protocols_tried_mean": 1.0,
            "token_leaked_mean": 1.0 if cp == PROTOCOL_TOKEN else 0.0,
        }
    ladder = _ladder(cp)
    k = ladder.index(sp)
    at = k * float(params["fallback_after"])
    if at >= float(params["duration"]):
        return {}
    return {
        "success_rate": 0.0,
        "configured_ok_mean": n,
        "protocols_tried_mean": float(k + 1),
        "time_to_configure_s_mean": at,
        "token_leaked_mean": 1.0 if PROTOCOL_TOKEN in ladder[: k + 1] else 0.0,
    }


PROTOCOL_MISMATCH = Threat(
    id="dhcp.auth-protocol-mismatch",
    title="No negotiation of the authentication protocol: silence, or a key leaked by trial and error",
    source=source("3.4"),
    position=Position.SAME_LAN,
    knowledge="none needed; a listener on the LAN reads whatever goes out in clear",
    params=(
        Param("n_clients", "clients", 2, "clients", min=1, max=20),
        Param("duration", "s", 60.0, "virtual time the run lasts", min=5, max=3600),
        Param("server_delay", "ms", 5.0, "the real server's time to answer", min=0, max=5000),
        Param(
            "client_protocol",
            "",
            1,
            "the clients' RFC 3118 protocol (0 token, 1 delayed, 2 delayed with realm)",
            choices=(0, 1, 2),
        ),
        Param("server_protocol", "", 2, "the server's protocol", choices=(0, 1, 2)),
        Param(
            "fallback_after",
            "s",
            15.0,
            "auth-fallback: seconds without a lease before the next protocol",
            min=1,
            max=3600,
        ),
    ),
    defenses=(_D_FALLBACK,),
    metrics=(
        Metric("success_rate", "share of trials", "some client is without an address at the end"),
        M_OK,
        M_DENIED,
        Metric("time_to_configure_s_mean", "s", "to the lease, over the clients that got one"),
        Metric("protocols_tried_mean", "protocols", "protocols a client went through"),
        Metric("token_leaked_mean", "share of trials", "the site's key went out in clear (protocol 0)"),
        Metric("server_auth_drops_mean", "messages", "client messages the server dropped"),
        Metric("client_auth_drops_mean", "messages", "server messages the clients dropped"),
    ),
    run=mismatch_trial,
    expected=mismatch_expected,
    aggregate=aggregate,
    default_trials=5,
    summary=(
        "With different protocols at each end nothing tells anyone why: the server drops, the client "
        "waits, for ever. Trying the protocols in turn gets there after fallback_after s a step, and "
        "on the way sends the site's key in clear as a protocol 0 token to a server that never asked "
        "for it."
    ),
    tags=("rfc3118", "negotiation"),
)


# ================================================================================================
# 3.2 Key distribution
# ================================================================================================


def key_distribution_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """The server authenticates itself to clients (client-authenticates-server, protocol 1). Its
    keys must be provisioned in advance: with per-client keys the last `unprovisioned` clients
    (new laptops, visitors) have keys the server does not know; with a shared site key they have not
    been given it. An insider (a provisioned client, on the adversary's host) turns rogue server,
    signing with the key it holds. With x509-server-auth the server signs with its certificate and
    every client holds only the CA certificate."""
    sim = new_sim(rng)
    n = int(params["n_clients"])
    unprov = min(int(params["unprovisioned"]), n)
    lab = dhcp_lab(sim, n_clients=n, start=None)
    if pcap:
        lab.net.capture(pcap)
    cfg = lan_server_config(routers=(SRV,), dns_servers=(SRV,))
    shared = params["key_scope"] == "shared"
    provisioned = lab.clients[: n - unprov]
    x509 = "x509-server-auth" in defenses
    insider_key: AuthKey | None = None
    if x509:
        pki = lab_pki(sim)
        server = X509DhcpServer(cfg, LeaseStore(), sim.child_rng("dhcp-server:srv"), X509Signer(pki))
        x509_clients(lab, [pki.anchor], DhcpClientConfig())
        secrets = 0
    else:
        if shared:
            site = AuthKey(1, SECRET)
            server_keys: tuple[AuthKey, ...] = (site,)
            client_keys = [site if h in provisioned else AuthKey(1, bytes(16) + b"x") for h in lab.clients]
            insider_key = site
            secrets = (
                len(provisioned) + 1
            )  # a copy of the one secret on each provisioned client, and the server
        else:
            client_keys = [
                AuthKey(100 + k, bytes([k + 1]) * 16, client=h.client.client_key)
                for k, h in enumerate(lab.clients)
            ]
            server_keys = tuple(client_keys[: n - unprov])
            insider_key = AuthKey(99, bytes([0xEE]) * 16, client=client_key_of(lab.adversary.host.mac))
            server_keys += (insider_key,)
            secrets = 2 * len(server_keys)  # each secret on its client and on the server
        cfg = replace(cfg, auth_paradigm="client-authenticates-server", auth_keys=server_keys)
        server = new_server(cfg, sim)
        for h, k in zip(lab.clients, client_keys):
            old = h.client
            replace_client(
                h,
                DhcpClient(
                    DhcpClientConfig(auth_keys=(k,), require_server_auth=True), old.rng, old.chaddr, None
                ),
            )
    handle = swap_server(lab, server, delay_ns=msecs(params["server_delay"]))
    if params["insider"]:
        if x509:
            finish = rogue_signer(sim, params)
            auth = None
        else:
            key = insider_key
            counter = iter(range(HIGH_REPLAY, HIGH_REPLAY + 10**6))

            def finish(data: bytes) -> bytes:
                return sign(data, key.key)

            def auth() -> Authentication:
                return Authentication.delayed(key.secret_id, next(counter))

        rogue = rogue_server(lab, sim, params, "misconfigure", finish=finish, auth=auth)
        lab.adversary.on_frame = rogue.on_frame
    start_clients(lab)
    run_until(lab, params["duration"])
    lab.net.close()
    o = outcome(lab, handle.server)
    o_new = outcome(lab, handle.server, clients=lab.clients[n - unprov :])
    return {
        "success": o["denied"] + o["mis"] > 0,
        "configured_ok": o["ok"],
        "misconfigured": o["mis"],
        "denied": o["denied"],
        "unprovisioned_ok": o_new["ok"],
        "secrets_distributed": secrets,
        "server_no_key_drops": handle.server.drops[Drop.AUTH_NO_KEY],
    }


def key_distribution_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Per-client keys: the server has no key to sign for the unprovisioned clients (it drops
    their requests), and the insider's key is bound to the insider, so others reject it. A shared
    key: the unprovisioned clients cannot verify anything, and every provisioned client accepts the
    insider (who answers first). X.509: no secret is distributed; every client can verify the
    server; the insider has no certificate for the server's address."""
    n = int(params["n_clients"])
    u = min(int(params["unprovisioned"]), n)
    if "x509-server-auth" in defenses:
        return {
            "success_rate": 0.0,
            "configured_ok_mean": float(n),
            "denied_mean": 0.0,
            "misconfigured_mean": 0.0,
            "secrets_distributed_mean": 0.0,
        }
    insider = bool(params["insider"]) and float(params["rogue_delay"]) < float(params["server_delay"])
    if params["key_scope"] == "shared":
        mis = float(n - u) if insider else 0.0
        return {
            "success_rate": 1.0 if u or mis else 0.0,
            "denied_mean": float(u),
            "misconfigured_mean": mis,
            "secrets_distributed_mean": float(n - u + 1),
        }
    return {
        "success_rate": 1.0 if u else 0.0,
        "denied_mean": float(u),
        "misconfigured_mean": 0.0,
        "configured_ok_mean": float(n - u),
        "secrets_distributed_mean": float(2 * (n - u + 1)),
    }


KEY_DISTRIBUTION = Threat(
    id="dhcp.key-distribution",
    title=(
        "Keys provisioned in advance: the unprovisioned client is denied, a shared key makes every "
        "client a possible rogue server"
    ),
    source=source("3.2"),
    position=Position.SAME_LAN,
    knowledge="insider: a provisioned client, with the key it was given",
    params=common_params(6, 20.0)
    + (
        Param(
            "unprovisioned",
            "clients",
            2,
            "clients whose key the server does not have (per-client) or who do not have the site key "
            "(shared)",
            min=0,
            max=20,
        ),
        Param(
            "key_scope",
            "",
            "per-client",
            "one key per client, or one key for the site",
            choices=("per-client", "shared"),
        ),
        Param("insider", "", True, "a provisioned client turns rogue server with its key"),
    ),
    defenses=(D_X509,),
    metrics=(
        Metric("success_rate", "share of trials", "some client is denied or misconfigured at the end"),
        M_OK,
        M_MIS,
        M_DENIED,
        Metric("unprovisioned_ok_mean", "clients", "unprovisioned clients configured correctly"),
        Metric(
            "secrets_distributed_mean",
            "secret copies",
            "copies of secret keys the administrator had to place (on clients and server); the X.509 "
            "trust anchor is public",
        ),
        Metric(
            "server_no_key_drops_mean",
            "messages",
            "requests the server dropped for lack of a key to sign with",
        ),
    ),
    run=key_distribution_trial,
    expected=key_distribution_expected,
    aggregate=aggregate,
    default_trials=5,
    summary=(
        "Per-client keys cost two secret copies a client and lock out whoever was not provisioned; "
        "one shared key costs less and lets any holder impersonate the server (key_scope=shared). "
        "Certificates (4.3) need no secret on the clients and serve the newcomer too."
    ),
    tags=("rfc3118", "key-distribution", "x509"),
)


# ================================================================================================
# 4.2 The four authentication paradigms
# ================================================================================================

PARADIGMS = ("none", "mutual", "client-authenticates-server", "server-authenticates-client")
_SHORT = {
    "none": "none",
    "mutual": "mutual",
    "client-authenticates-server": "cas",
    "server-authenticates-client": "sac",
}


def _one_paradigm(
    sim: Simulator, paradigm: str, protocol: int, params: Mapping[str, Any], pcap: str | None
) -> dict[str, float]:
    lab, server = _paradigm_lab(
        sim, paradigm, protocol, int(params["n_clients"]), float(params["server_delay"])
    )
    if pcap:
        lab.net.capture(pcap)
    sniffer = DhcpSniffer(lab.adversary)
    _, fakes = _rogue_both(lab, sim, sniffer, protocol, server=True, client=True)
    run_until(lab, params["duration"])
    lab.net.close()
    late = lab.clients[1:]
    o = outcome(lab, server.server, clients=late)
    return {
        "rogue_server": o["mis"] / len(late),
        "rogue_client": 1.0 if fakes.counters["acks"] else 0.0,
        "legit_ok": o["ok"] / len(late),
    }


def paradigms_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """For each paradigm of 4.2 (or the one asked for), on a shared medium: c1 boots, then, from
    2 s, the attacker acts both as a rogue server (answering the clients that boot at 3 s) and as a
    rogue client (asking the server for leases), each time with whatever authentication it could
    copy off the air. The site's key is protocol 0 tokens, or protocol 1 with auth-protocol-1."""
    protocol = PROTOCOL_DELAYED if "auth-protocol-1" in defenses else PROTOCOL_TOKEN
    which = PARADIGMS if params["paradigm"] == "all" else (str(params["paradigm"]),)
    out: dict[str, Any] = {}
    won = 0
    for k, p in enumerate(which):
        sim = Simulator(rng.getrandbits(63))
        r = _one_paradigm(sim, p, protocol, params, pcap if k == 0 else None)
        short = _SHORT[p]
        out[f"{short}_rogue_server"] = r["rogue_server"]
        out[f"{short}_rogue_client"] = r["rogue_client"]
        out[f"{short}_legit_ok"] = r["legit_ok"]
        won += (r["rogue_server"] > 0) + (r["rogue_client"] > 0)
    out["attacks_won_share"] = won / (2 * len(which))
    out["success"] = won > 0
    return out


def _paradigms_aggregate(trials: list[Mapping[str, Any]]) -> dict[str, float]:
    """success_rate is the share of (paradigm, attack) pairs the attacker won, over the trials."""
    out = aggregate(trials)
    out["success_rate"] = out.get("attacks_won_share_mean", 0.0)
    return out


def paradigms_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """What each paradigm stops (4.2), given keys the attacker cannot read: client authenticates
    server stops the rogue server; server authenticates client stops the rogue client; mutual
    both; none neither. With protocol 0 the attacker reads the token off the air (from the client's
    messages or the server's), so no paradigm stops anything."""
    which = PARADIGMS if params["paradigm"] == "all" else (str(params["paradigm"]),)
    strong = "auth-protocol-1" in defenses
    out: dict[str, float] = {}
    won = 0
    for p in which:
        stops_server = strong and p in ("mutual", "client-authenticates-server")
        stops_client = strong and p in ("mutual", "server-authenticates-client")
        out[f"{_SHORT[p]}_rogue_server_mean"] = 0.0 if stops_server else 1.0
        out[f"{_SHORT[p]}_rogue_client_mean"] = 0.0 if stops_client else 1.0
        won += (not stops_server) + (not stops_client)
    out["success_rate"] = won / (2 * len(which))
    return out


def _paradigm_metrics() -> tuple[Metric, ...]:
    ms = [Metric("success_rate", "share", "(paradigm, attack) pairs the attacker won")]
    for p in PARADIGMS:
        s = _SHORT[p]
        ms += [
            Metric(f"{s}_rogue_server_mean", "share", f"{p}: late clients the rogue server configured"),
            Metric(f"{s}_rogue_client_mean", "share of trials", f"{p}: the rogue client got a lease"),
            Metric(f"{s}_legit_ok_mean", "share", f"{p}: late clients the real server configured"),
        ]
    return tuple(ms)


PARADIGMS_THREAT = Threat(
    id="dhcp.auth-paradigms",
    title="The four authentication paradigms against a rogue server and a rogue client",
    source=source("4.2"),
    position=Position.SAME_LAN,
    knowledge="what it hears on a shared medium; no key",
    params=(
        Param("paradigm", "", "all", "the paradigm to run, or all four", choices=("all",) + PARADIGMS),
        Param("n_clients", "clients", 2, "clients that boot after the attacker is ready", min=1, max=20),
        Param("duration", "s", 10.0, "virtual time each paradigm's run lasts", min=5, max=3600),
        Param("server_delay", "ms", 5.0, "the real server's time to answer", min=0, max=5000),
    ),
    defenses=(_D_PROTO1,),
    metrics=_paradigm_metrics(),
    run=paradigms_trial,
    expected=paradigms_expected,
    aggregate=_paradigms_aggregate,
    default_trials=3,
    summary=(
        "With protocol 1 each paradigm stops what its name says and nothing else: only mutual "
        "authentication stops both the rogue server and the rogue client. With protocol 0 the token "
        "is on the air and none stops anything."
    ),
    tags=("rfc3118", "paradigms"),
)


# ================================================================================================
# 4.3 Server authentication with certificates (experimental)
# ================================================================================================


def x509_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """A rogue server on the LAN against clients that check the experimental X.509 option (draft
    4.3). The rogue has: no certificate (none); one it made itself (self-signed); the real server's
    chain, copied off the wire, but not its key (stolen-chain); or a genuine certificate from the
    same CA for its own address (certified-rogue: a second, compromised server of the domain)."""
    sim = new_sim(rng)
    n = int(params["n_clients"])
    alg = ALG_ED25519 if params["algorithm"] == "ed25519" else ALG_P256
    lab = dhcp_lab(sim, n_clients=n, start=None)
    if pcap:
        lab.net.capture(pcap)
    cfg = lan_server_config(routers=(SRV,), dns_servers=(SRV,))
    pki = lab_pki(sim, algorithm=alg, depth=int(params["depth"]))
    signer = X509Signer(pki)
    server = X509DhcpServer(cfg, LeaseStore(), sim.child_rng("dhcp-server:srv"), signer)
    handle = swap_server(lab, server, delay_ns=msecs(params["server_delay"]))
    checking = "x509-server-auth" in defenses
    ccfg = DhcpClientConfig(max_message_size=1500)
    if checking:
        x509_clients(lab, [pki.anchor], ccfg, clock=bool(params["client_clock"]))
    finish = None
    kind = params["rogue_cert"]
    if kind == "self-signed":
        finish = rogue_signer(sim, params)
    elif kind == "stolen-chain":
        own = lab_pki(sim, ADV, org="rogue", algorithm=alg)
        stolen = replace(pki, key=own.key)  # the real chain, the rogue's key
        finish = lambda data: X509Signer(stolen).sign(data, sim.now)  # noqa: E731
    elif kind == "certified-rogue":
        # the CA also certified the rogue's address (another server of the domain, compromised)
        certified = issue_leaf(pki, ADV, sim.child_rng("pki:certified-rogue"))
        finish = lambda data: X509Signer(certified).sign(data, sim.now)  # noqa: E731
    rogue = rogue_server(lab, sim, params, "misconfigure", finish=finish)
    lab.adversary.on_frame = rogue.on_frame
    start_clients(lab)
    run_until(lab, params["duration"])
    lab.net.close()
    o = outcome(lab, handle.server)
    x509_drops = sum(n for h in lab.clients for r, n in h.client.drops.items() if r.startswith("x509:"))
    costs = measure_costs(pki, _signed_sample(), repeat=int(params["timing_repeat"]))
    return {
        "success": o["mis"] > 0,
        "configured_ok": o["ok"],
        "misconfigured": o["mis"],
        "denied": o["denied"],
        "x509_drops": x509_drops,
        "bytes_added": signer.bytes_added / signer.signed if signer.signed else None,
        "signed_ack_bytes": costs["message_bytes"],
        "sign_us": costs["sign_us"],
        "verify_us": costs["verify_us"],
        "secrets_per_client": 0,
    }


def _signed_sample() -> bytes:
    """An unsigned DHCPACK like the server's, to time and size the option on."""
    msg = DhcpMessage(
        op=2,
        xid=1,
        yiaddr=IPv4Address("10.0.0.100"),
        chaddr=bytes(6),
        options=(
            DhcpMessageType(MessageType.ACK),
            ServerIdentifier(SRV),
            IpAddressLeaseTime(3600),
            SubnetMask(MASK),
            Routers((SRV,)),
            DomainNameServers((SRV,)),
        ),
    )
    data = msg.encode()
    return data + bytes(max(0, 300 - len(data)))


def x509_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Unchecked, the first answer wins. Checked, a rogue without a certificate chaining to the
    anchor for the address it signs as is dropped; a rogue the CA certified for its own address is
    accepted (the anchor vouches for every server it certified: the trust domain is the CA's).
    A signed reply that no longer fits an Ethernet frame (1472 bytes of DHCP message) is lost: a
    client without an address takes no IP fragments, so every checking client is denied."""
    n = float(params["n_clients"])
    if float(params["rogue_delay"]) >= float(params["server_delay"]):
        return {}
    if "x509-server-auth" not in defenses or params["rogue_cert"] == "certified-rogue":
        return {"success_rate": 1.0, "misconfigured_mean": n}
    if signed_reply_size(params) > MAX_DHCP_OVER_ETHERNET:
        return {"success_rate": 0.0, "misconfigured_mean": 0.0, "denied_mean": n}
    return {"success_rate": 0.0, "misconfigured_mean": 0.0, "configured_ok_mean": n}


MAX_DHCP_OVER_ETHERNET = 1500 - 28  # IP and UDP headers


def signed_reply_size(params: Mapping[str, Any]) -> int:
    """The size of the server's signed DHCPACK for this chain (the certificates' sizes do not depend
    on the keys, bar a byte of an ECDSA signature)."""
    alg = ALG_ED25519 if params["algorithm"] == "ed25519" else ALG_P256
    pki = make_pki(SRV, random.Random(0), algorithm=alg, depth=int(params["depth"]))
    return len(X509Signer(pki).sign(_signed_sample(), 0))


X509_THREAT = Threat(
    id="dhcp.x509-server-auth",
    title=(
        "EXPERIMENTAL: certificates for server authentication (draft 4.3) against a rogue server, and "
        "what they cost"
    ),
    source=source("4.3"),
    position=Position.SAME_LAN,
    knowledge="the real server's certificate chain (it is on the wire); rogue_cert says what else it has",
    params=common_params(4, 10.0)
    + (
        Param(
            "rogue_cert",
            "",
            "self-signed",
            "what the rogue signs with",
            choices=("none", "self-signed", "stolen-chain", "certified-rogue"),
        ),
        Param(
            "algorithm", "", "ed25519", "signature algorithm of the whole chain", choices=("ed25519", "p256")
        ),
        Param(
            "depth",
            "certificates",
            2,
            "chain length below the anchor (1: the root signs the leaf)",
            min=1,
            max=3,
        ),
        Param("client_clock", "", True, "clients have a clock to check validity and signing time"),
        Param(
            "timing_repeat", "operations", 50, "sign and verify operations timed per trial", min=1, max=100000
        ),
    ),
    defenses=(D_X509,),
    metrics=(
        Metric("success_rate", "share of trials", "some client took the rogue's configuration"),
        M_OK,
        M_MIS,
        M_DENIED,
        Metric("x509_drops_mean", "messages", "server messages clients dropped for the X.509 check"),
        Metric(
            "bytes_added_mean", "bytes", "the option's size in each signed reply (RFC 3396 headers included)"
        ),
        Metric("signed_ack_bytes_mean", "bytes", "a signed DHCPACK (over Ethernet it must fit in 1472)"),
        Metric("sign_us_mean", "µs (wall clock)", "to sign one reply on this machine"),
        Metric(
            "verify_us_mean", "µs (wall clock)", "to verify one reply (chain and signature) on this machine"
        ),
        Metric("secrets_per_client_mean", "secrets", "secret keys a client needs (the anchor is public)"),
    ),
    run=x509_trial,
    expected=x509_expected,
    aggregate=aggregate,
    default_trials=5,
    summary=(
        "A trust anchor on the client stops rogue servers without any per-client secret, for about "
        "0.7 kB per reply (Ed25519, one intermediate) and well under a millisecond of verification. "
        "It cannot tell two servers the CA certified apart (certified-rogue), and revocation is not "
        "addressed."
    ),
    tags=("x509", "experimental", "rogue-server"),
)


# ================================================================================================
# 4.4 Two-step configuration: private options only over a protected DHCPINFORM
# ================================================================================================

WPAD = 252  # RFC-less but well known: the web proxy auto-discovery URL
_PRIVATE = (
    RawOption(WPAD, b"http://wpad.lab.example/wpad.dat"),
    RawOption(43, b"provisioning-secret=s3cr3t"),
)
_FORGED_WPAD = RawOption(WPAD, b"http://10.0.0.250/wpad.dat")
_SECRET_VALUE = _PRIVATE[1].data


class _InformDriver:
    """Step two on a client host: once the interface is configured, a DHCPINFORM to the server that
    leased it (retransmitted every 4 s, 4 times), its answer checked by the `Informer`."""

    def __init__(self, handle: ClientHandle, informer: Informer) -> None:
        self.handle = handle
        self.informer = informer
        self.sim = handle.sim
        self.sent = 0
        self._last = None
        chained = handle.sock.on_datagram
        self._chained = chained

        def on_datagram(data: bytes, addr, dst) -> None:
            if (
                self.informer.xid is not None
                and len(data) > 8
                and data[4:8] == self.informer.xid.to_bytes(4, "big")
            ):
                self.informer.receive(data, self.sim.now)
                return
            chained(data, addr, dst)

        handle.sock.on_datagram = on_datagram
        self.sim.post(0, self._poll)

    def _poll(self) -> None:
        h = self.handle
        if self.informer.result is None:
            now = self.sim.now
            if h.configured is not None and h.client.lease is not None and self.sent < 5:
                if self._last is None or now - self._last >= 4 * NS_PER_S:
                    data = self.informer.inform(h.configured.ip, now)
                    send_datagram(
                        h.host, inform_datagram(data, h.configured.ip, h.client.lease.server), h.ifname
                    )
                    self.sent += 1
                    self._last = now
            self.sim.post(100 * NS_PER_MS, self._poll)


def private_trial(
    params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random, pcap: str | None = None
) -> dict[str, Any]:
    """The site hands out private options (a WPAD proxy URL, option 252, and a provisioning secret
    in option 43). On a shared medium the attacker reads every reply, and races the server with a
    DHCPACK of its own to every DHCPREQUEST and DHCPINFORM: right public data (4.4.1: it is public),
    and its own WPAD URL. Baseline: the private options travel in every OFFER and ACK, and the
    client uses what its ACK says. two-step (4.4.2): they travel only encrypted in the DHCPACK to an
    authenticated DHCPINFORM (`threatlab.dhcp.twostep`), and the client uses only those."""
    sim = new_sim(rng)
    n = int(params["n_clients"])
    lab = dhcp_lab(sim, n_clients=n, start=None, kind=SegmentKind.HUB)
    if pcap:
        lab.net.capture(pcap)
    cfg = lan_server_config(routers=(SRV,), dns_servers=(SRV,))
    two = "two-step" in defenses
    keys = per_client_keys(lab.clients)
    if two:
        server: DhcpServer = TwoStepServer(
            cfg, LeaseStore(), sim.child_rng("dhcp-server:srv"), private=_PRIVATE, keys=keys
        )
    else:
        server = LeakyServer(cfg, LeaseStore(), sim.child_rng("dhcp-server:srv"), private=_PRIVATE)
    handle = swap_server(lab, server, delay_ns=msecs(params["server_delay"]))
    drivers = []
    if two:
        for h, k in zip(lab.clients, keys):
            drivers.append(
                _InformDriver(h, Informer(h.host.mac, None, k, sim.child_rng(f"informer:{h.host.name}")))
            )
    sniffer = DhcpSniffer(lab.adversary)
    handlers: list = [sniffer._on_frame]
    seen_secret = {"n": 0}

    def eavesdrop(frame: bytes, ifname: str, now: int) -> None:
        f = parse_dhcp_frame(frame)
        if f is not None and f.msg.op == 2:
            o = f.msg.get(43)
            if o is not None and getattr(o, "data", None) == _SECRET_VALUE:
                seen_secret["n"] += 1

    handlers.append(eavesdrop)
    if params["forge"]:
        forger = AckForger(lab.adversary, mask=MASK, routers=(SRV,), dns=(SRV,), inject=(_FORGED_WPAD,))
        handlers.append(forger.on_frame)
    chain_frames(lab.adversary, *handlers)
    start_clients(lab)
    run_until(lab, params["duration"])
    lab.net.close()
    forged = ok = 0
    for k, h in enumerate(lab.clients):
        if two:
            res = drivers[k].informer.result
            opts = res.options if res is not None else ()
        else:
            bound = [e for e in h.events if isinstance(e, Bound)]
            opts = bound[-1].options if bound else ()
        wpad = next((o for o in opts if o.code == WPAD), None)
        if wpad == _FORGED_WPAD:
            forged += 1
        elif wpad == _PRIVATE[0]:
            ok += 1
    o = outcome(lab, handle.server)
    extra = sum(d.sent for d in drivers) + sum(d.informer.counters["private received"] for d in drivers)
    return {
        "success": seen_secret["n"] > 0 or forged > 0,
        "private_leaked": 1.0 if seen_secret["n"] else 0.0,
        "private_forged": forged,
        "private_ok": ok,
        "public_ok": o["ok"],
        "extra_messages": extra / n,
        "forged_dropped": sum(
            d.informer.drops.get("two-step: ACK does not authenticate", 0) for d in drivers
        ),
    }


def private_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    """Baseline: the secret is in every reply the attacker hears, and every client takes the
    forger's ACK (it answers first) and its WPAD URL. Two-step: nothing private in clear, the
    forged INFORM answers fail the MAC, every client gets the real options, for one INFORM and one
    ACK more per client."""
    n = float(params["n_clients"])
    if "two-step" in defenses:
        return {
            "success_rate": 0.0,
            "private_leaked_mean": 0.0,
            "private_forged_mean": 0.0,
            "private_ok_mean": n,
            "extra_messages_mean": 2.0,
        }
    out = {"success_rate": 1.0, "private_leaked_mean": 1.0}
    if params["forge"]:
        out["private_forged_mean"] = n
    return out


PRIVATE_OPTIONS = Threat(
    id="dhcp.private-options",
    title=(
        "Private options read and forged on the LAN, and two-step configuration (public data first, "
        "private over an authenticated DHCPINFORM)"
    ),
    source=source("4.4"),
    position=Position.SAME_LAN,
    knowledge="what it hears on a shared medium; the LAN's public configuration",
    params=(
        Param("n_clients", "clients", 3, "clients", min=1, max=20),
        Param("duration", "s", 10.0, "virtual time the run lasts", min=5, max=3600),
        Param("server_delay", "ms", 5.0, "the real server's time to answer", min=0, max=5000),
        Param("forge", "", True, "the attacker also races the server with forged ACKs"),
    ),
    defenses=(
        Defense(
            "two-step",
            "EXPERIMENTAL (draft 4.4.2): private options only in the DHCPACK to a DHCPINFORM "
            "authenticated with the client's RFC 3118 key, encrypted with AES-GCM under a key derived "
            "from it (option 225, threatlab.dhcp.twostep)",
        ),
    ),
    metrics=(
        Metric(
            "success_rate",
            "share of trials",
            "the secret was read off the wire or a client took a forged private option",
        ),
        Metric("private_leaked_mean", "share of trials", "the attacker read the provisioning secret"),
        Metric("private_forged_mean", "clients", "clients using the attacker's WPAD URL"),
        Metric("private_ok_mean", "clients", "clients using the real WPAD URL"),
        Metric("public_ok_mean", "clients", "clients with the right public configuration"),
        Metric("extra_messages_mean", "messages", "messages per client for step two"),
        Metric("forged_dropped_mean", "messages", "forged answers to a DHCPINFORM the clients dropped"),
    ),
    run=private_trial,
    expected=private_expected,
    aggregate=aggregate,
    default_trials=5,
    summary=(
        "In one step the private options are as public as the address: the listener reads the secret,"
        " the forger sets the proxy. In two steps they travel only encrypted and authenticated, at "
        "the price of one INFORM/ACK per client and a per-client key (RFC 3118's key distribution "
        "problem, 3.2)."
    ),
    tags=("confidentiality", "two-step", "experimental"),
)


AUTH_THREATS: tuple[Threat, ...] = (
    TOKEN_REPLAY,
    PROTOCOL_MISMATCH,
    KEY_DISTRIBUTION,
    PARADIGMS_THREAT,
    X509_THREAT,
    PRIVATE_OPTIONS,
)
