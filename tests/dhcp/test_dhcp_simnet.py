"""DHCP server, client and relay on simulated hosts (threatlab.dhcp.simhost): leases on a LAN and
through a relay, renewal, expiry, several and rogue servers, the ARP check, and a pcap that tshark
reads without a warning. Virtual time throughout; exact expected events."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from ipaddress import IPv4Address as A
from ipaddress import IPv4Interface

import pytest

from threatlab.dhcp.auth import AuthKey
from threatlab.dhcp.client import (
    Bound,
    ClientDrop,
    Declined,
    DhcpClient,
    DhcpClientConfig,
    Dropped,
    LeaseExpired,
    OfferReceived,
    OfferSelected,
    Renewed,
    ServerIgnored,
    State,
)
from threatlab.dhcp.events import LeaseDeclined, OfferWithdrawn
from threatlab.dhcp.leases import LeaseStore
from threatlab.dhcp.relay import Relayed
from threatlab.dhcp.server import DhcpServer
from threatlab.dhcp.simhost import (
    attach_client,
    attach_server,
    dhcp_lab,
    dhcp_lan,
    lan_server_config,
    routed_server_config,
)
from threatlab.dhcp.wire import DhcpMessage, Routers
from threatlab.errors import DecodeError, ParamError, TopologyError
from threatlab.net import Position, Simulator, build
from threatlab.net.wire import UDP, Ethernet, IPv4

S = 1_000_000_000
SRV = A("10.0.0.1")
EXACT = DhcpClientConfig(rtx_jitter=0)
KEYS = (AuthKey(0x11, bytes.fromhex("00112233445566778899aabbccddeeff")),)


def dhcp_frames(frames):
    """(time, DhcpMessage, IPv4) of every DHCP frame in `frames` [(frame, time)]."""
    out = []
    for frame, t in frames:
        try:
            eth = Ethernet.decode(frame)
            if eth.ethertype != 0x0800:
                continue
            ip = IPv4.decode(eth.payload)
            udp = UDP.decode(ip.payload, ip.src, ip.dst)
            if {udp.src_port, udp.dst_port} & {67, 68}:
                out.append((t, DhcpMessage.decode(udp.payload), ip))
        except DecodeError:
            continue
    return out


def record(lab, segment):
    frames = []
    lab.net.tap(segment, lambda f, now: frames.append((f, now)))
    return frames


def no_options(events):
    return [replace(e, options=None) if isinstance(e, (Bound, Renewed)) else e for e in events]


# --- one LAN --------------------------------------------------------------------------------------


def test_a_client_gets_a_lease_on_a_simulated_lan_and_uses_it():
    sim = Simulator(seed=1)
    lab = dhcp_lab(sim, client_config=EXACT, adversary=None)
    sim.run(until=S)
    c = lab.clients[0]
    assert no_options(c.events) == [
        OfferReceived(0, SRV, A("10.0.0.100"), 3600), OfferSelected(0, SRV, A("10.0.0.100"), 1),
        Bound(0, A("10.0.0.100"), SRV, 3600, None)]
    assert c.configured == IPv4Interface("10.0.0.100/24") and c.host.ip == A("10.0.0.100")
    # the address works: the host pings the server from it
    c.host.ping(SRV)
    sim.run(until=2 * S)
    assert [r.src for r in c.host.echo_replies] == [SRV]


@pytest.mark.parametrize("broadcast", [False, True])
def test_many_clients_and_a_same_lan_adversary_host_all_in_one_network(broadcast):
    sim = Simulator(seed=2)
    lab = dhcp_lab(sim, n_clients=8, client_config=replace(EXACT, broadcast=broadcast))
    sim.run(until=S)
    assert lab.bound() == 8
    assert sorted(c.address for c in lab.clients) == [A(f"10.0.0.{100 + i}") for i in range(8)]
    assert lab.adversary.position is Position.SAME_LAN and lab.adversary.frames_seen > 0
    assert lab.server.server.leases_held(sim.now) == 8


def test_renew_at_t1_on_the_wire_is_unicast_to_the_server():
    sim = Simulator(seed=3)
    lab = dhcp_lab(sim, client_config=EXACT, server_configs=[lan_server_config(lease_time=120)],
                   adversary=None)
    frames = record(lab, "lan")
    sim.run(until=61 * S)
    c = lab.clients[0]
    assert no_options(c.events[3:]) == [Renewed(60 * S, A("10.0.0.100"), SRV, 120, None, False)]
    _, renew, ip = next(x for x in dhcp_frames(frames) if x[0] == 60 * S)
    assert (renew.message_type, ip.src, ip.dst, renew.ciaddr) == (3, A("10.0.0.100"), SRV, A("10.0.0.100"))


def test_server_down_the_client_rebinds_then_loses_its_address_then_gets_one_again():
    sim = Simulator(seed=4)
    lab = dhcp_lab(sim, client_config=EXACT, server_configs=[lan_server_config(lease_time=120)],
                   adversary=None)
    sim.run(until=S)
    nic = lab.server.host.interfaces["eth0"]
    nic.up = False
    c = lab.clients[0]
    sim.run(until=121 * S)
    assert c.events[3:] == [LeaseExpired(120 * S, A("10.0.0.100"))]
    assert c.configured is None and c.host.ip is None and c.client.state is State.SELECTING
    nic.up = True  # DISCOVERs at 120, 124 s: the second finds the server again
    sim.run(until=125 * S)
    assert no_options(c.events[4:]) == [
        OfferReceived(124 * S, SRV, A("10.0.0.100"), 120), OfferSelected(124 * S, SRV, A("10.0.0.100"), 1),
        Bound(124 * S, A("10.0.0.100"), SRV, 120, None)]
    assert c.configured == IPv4Interface("10.0.0.100/24")


def test_two_servers_two_offers_one_chosen_the_other_withdraws():
    sim = Simulator(seed=5)
    cfgs = [lan_server_config(1, 2, lease_time=600), lan_server_config(2, 2, lease_time=7200)]
    lab = dhcp_lab(sim, n_servers=2, server_configs=cfgs,
                   client_config=replace(EXACT, offer_wait=1.0, offer_choice="best"))
    sim.run(until=2 * S)
    c = lab.clients[0]
    offers = [e for e in c.events if isinstance(e, OfferReceived)]
    assert sorted((o.server, o.address) for o in offers) == [
        (SRV, A("10.0.0.100")), (A("10.0.0.2"), A("10.0.0.150"))]
    assert no_options(c.events[2:]) == [OfferSelected(S, A("10.0.0.2"), A("10.0.0.150"), 2),
                                        Bound(S, A("10.0.0.150"), A("10.0.0.2"), 7200, None)]
    assert OfferWithdrawn(S, A("10.0.0.100"), c.host.mac) in lab.servers[0].events


# --- rogue servers and the ARP check (draft 2.1.1, 2.2) ------------------------------------------


def rogue_on_adversary(lab):
    cfg = lan_server_config(server_id=A("10.0.0.250"), pool_start=A("10.0.0.220"), pool_end=A("10.0.0.229"),
                            routers=(A("10.0.0.250"),), lease_time=86400)
    srv = DhcpServer(cfg, LeaseStore(), lab.sim.child_rng("rogue"))
    return attach_server(lab.adversary.host, srv)


def test_a_rogue_server_on_the_lan_misconfigures_a_client_without_authentication():
    sim = Simulator(seed=6)
    lab = dhcp_lab(sim, client_config=replace(EXACT, offer_wait=1.0, offer_choice="best"), start=None)
    rogue_on_adversary(lab)
    c = lab.clients[0]
    c.start()
    sim.run(until=2 * S)
    assert c.address == A("10.0.0.220") and c.gateway == A("10.0.0.250")  # the attacker is the router


def test_with_server_authentication_the_client_ignores_the_rogue_and_binds_to_the_real_server():
    sim = Simulator(seed=6)
    cfg = replace(EXACT, offer_wait=1.0, offer_choice="best", auth_keys=KEYS, require_server_auth=True,
                  ignore_failed_server=60)
    lab = dhcp_lab(sim, client_config=cfg, start=None,
                   server_configs=[lan_server_config(auth_paradigm="client-authenticates-server",
                                                     auth_keys=KEYS)])
    rogue_on_adversary(lab)
    c = lab.clients[0]
    c.start()
    sim.run(until=2 * S)
    rogue = A("10.0.0.250")
    assert [e for e in c.events if isinstance(e, (Dropped, ServerIgnored))] == [
        Dropped(0, ClientDrop.AUTH_MISSING, rogue), ServerIgnored(0, rogue, ClientDrop.AUTH_MISSING, 60 * S)]
    assert c.address == A("10.0.0.100") and c.gateway is None


def test_arp_probe_finds_the_address_in_use_and_the_client_declines_it():
    sim = Simulator(seed=7)
    lab = dhcp_lab(sim, client_config=EXACT, arp_probe=1.0)
    lab.adversary.host.configure_ipv4("eth0", "10.0.0.100/24")  # squats on the first pool address
    sim.run(until=12 * S)
    c = lab.clients[0]
    assert no_options([e for e in c.events if isinstance(e, (Bound, Declined))]) == [
        Bound(0, A("10.0.0.100"), SRV, 3600, None), Declined(0, A("10.0.0.100"), SRV),
        Bound(10 * S, A("10.0.0.101"), SRV, 3600, None)]
    assert LeaseDeclined(0, A("10.0.0.100"), c.host.mac, 86400 * S) in lab.server.events
    assert c.conflicts == 1 and c.probes_sent == 2
    assert c.configured == IPv4Interface("10.0.0.101/24")  # after the second probe's second


def test_arp_probe_holds_the_address_back_until_the_wait_is_over():
    sim = Simulator(seed=8)
    lab = dhcp_lab(sim, client_config=EXACT, arp_probe=1.0, adversary=None)
    sim.run(until=S - 1)
    assert lab.clients[0].configured is None and lab.clients[0].client.address == A("10.0.0.100")
    sim.run(until=S)
    assert lab.clients[0].configured == IPv4Interface("10.0.0.100/24")


def _rewrite_router(evil: A):
    """An on-path intercept (draft 2.4) that rewrites option 3 of every DHCPOFFER / DHCPACK."""

    def intercept(frame: bytes, direction: str):
        got = dhcp_frames([(frame, 0)])
        if not got or got[0][1].op != 2:
            return frame
        _, msg, ip = got[0]
        udp = UDP.decode(ip.payload, ip.src, ip.dst)
        data = msg.with_options(Routers((evil,))).encode()
        packet = replace(ip, payload=UDP(udp.src_port, udp.dst_port, data).encode(ip.src, ip.dst))
        eth = Ethernet.decode(frame)
        return Ethernet(eth.dst, eth.src, eth.ethertype, packet.encode()).encode()

    return intercept


def test_an_on_path_adversary_rewrites_the_router_unless_the_server_is_authenticated():
    evil = A("10.0.0.66")
    sim = Simulator(seed=15)
    lab = dhcp_lab(sim, n_clients=2, client_config=EXACT, adversary=Position.ON_PATH)
    lab.adversary.intercept = _rewrite_router(evil)
    sim.run(until=S)
    c1, c2 = lab.clients
    assert (c1.gateway, c2.gateway) == (evil, None)  # only c1 is behind the adversary's bridge
    sim = Simulator(seed=15)
    cfg = replace(EXACT, auth_keys=KEYS, require_server_auth=True)
    lab = dhcp_lab(sim, n_clients=2, client_config=cfg, adversary=Position.ON_PATH,
                   server_configs=[lan_server_config(auth_paradigm="client-authenticates-server",
                                                     auth_keys=KEYS)])
    lab.adversary.intercept = _rewrite_router(evil)
    sim.run(until=S)
    c1, c2 = lab.clients
    assert c1.events == [Dropped(0, ClientDrop.AUTH_BAD_HMAC, SRV)] and c1.configured is None
    assert c2.configured == IPv4Interface("10.0.0.100/24")


# --- through a relay (RFC 1542, RFC 3046) --------------------------------------------------------


def test_a_client_gets_a_lease_through_a_relay_with_option_82_added_and_stripped():
    sim = Simulator(seed=9)
    lab = dhcp_lab(sim, relayed=True, client_config=EXACT)
    server_side, client_side = record(lab, "srvnet"), record(lab, "lan")
    sim.run(until=S)
    c = lab.clients[0]
    assert no_options(c.events) == [
        OfferReceived(0, SRV, A("10.0.1.100"), 3600), OfferSelected(0, SRV, A("10.0.1.100"), 1),
        Bound(0, A("10.0.1.100"), SRV, 3600, None)]
    assert c.configured == IPv4Interface("10.0.1.100/24") and c.gateway == A("10.0.1.1")
    up = dhcp_frames(server_side)
    assert [m.message_type for _, m, _ in up] == [1, 2, 3, 5]
    for _, m, ip in up:
        assert m.giaddr == A("10.0.1.1")
        rai = m.relay_agent_information
        assert (rai.circuit_id, rai.remote_id) == (b"eth0", b"relay")
    assert [ip.dst for _, m, ip in up if m.op == 2] == [A("10.0.1.1")] * 2
    down = dhcp_frames(client_side)
    assert [m.message_type for _, m, _ in down] == [1, 2, 3, 5]
    assert all(m.relay_agent_information is None for _, m, _ in down)
    assert [(ip.src, ip.dst) for _, m, ip in down if m.op == 2] == [(A("10.0.1.1"), A("10.0.1.100"))] * 2
    assert [type(e) for e in lab.relay.events] == [Relayed] * 4


def test_through_the_relay_the_client_renews_at_t1_by_unicast_through_its_router():
    sim = Simulator(seed=10)
    lab = dhcp_lab(sim, relayed=True, client_config=EXACT)
    server_side = record(lab, "srvnet")
    sim.run(until=1801 * S)
    c = lab.clients[0]
    assert no_options(c.events[3:]) == [Renewed(1800 * S, A("10.0.1.100"), SRV, 3600, None, False)]
    # RFC 2131 4.4.5: unicast from ciaddr to the server, routed (not relayed: giaddr stays 0)
    _, renew, ip = next(x for x in dhcp_frames(server_side) if x[0] == 1800 * S and x[1].op == 1)
    assert (ip.src, ip.dst, renew.giaddr, renew.ciaddr) == (A("10.0.1.100"), SRV, A(0), A("10.0.1.100"))


def test_mutual_authentication_through_the_relay_with_several_clients():
    sim = Simulator(seed=11)
    cfg = replace(EXACT, auth_keys=KEYS, require_server_auth=True, authenticate_to_server=True)
    lab = dhcp_lab(sim, n_clients=3, relayed=True, client_config=cfg,
                   server_configs=[routed_server_config(auth_paradigm="mutual", auth_keys=KEYS)])
    sim.run(until=S)
    assert lab.bound() == 3
    assert not lab.server.server.drops and all(not c.client.drops for c in lab.clients)


# --- the glue itself --------------------------------------------------------------------------------


def test_attach_client_clears_the_static_address_and_names_bad_arguments():
    sim = Simulator()
    net = build(dhcp_lan(1, adversary=None), sim)
    host = net.node("c1")
    host.configure_ipv4("eth0", "10.0.0.77/24")
    h = attach_client(host, DhcpClient(EXACT, sim.child_rng("c"), host.mac))
    assert host.ip is None and h.configured is None
    with pytest.raises(ParamError, match="arp_probe"):
        attach_client(net.node("srv"), DhcpClient(EXACT, sim.child_rng("d"), host.mac), arp_probe=0)
    with pytest.raises(ParamError, match="no interface"):
        attach_server(net.node("srv"), DhcpServer(lan_server_config(), LeaseStore(), sim.rng), "eth7")
    with pytest.raises(TopologyError):
        dhcp_lan(0)


def test_release_on_the_wire_unconfigures_and_frees_the_lease():
    sim = Simulator(seed=12)
    lab = dhcp_lab(sim, client_config=EXACT, adversary=None)
    sim.run(until=S)
    c = lab.clients[0]
    c.release()
    sim.run(until=2 * S)
    assert lab.server.server.leases_held(sim.now) == 0
    assert c.configured == IPv4Interface("10.0.0.100/24")  # until ARP for the RELEASE is done
    sim.run(until=4 * S)
    assert c.configured is None and c.host.ip is None


def _run_to_pcap(path, seed, relayed=True):
    """Two clients with mutual authentication and ARP probes bind, rebind at T2 (400 s); on the
    LAN the first then releases its lease."""
    sim = Simulator(seed=seed)
    cfg = DhcpClientConfig(auth_keys=KEYS, require_server_auth=True, authenticate_to_server=True)
    times = {"auth_paradigm": "mutual", "auth_keys": KEYS, "lease_time": 600, "renewal_time": 400,
             "rebinding_time": 400}
    server = routed_server_config(**times) if relayed else lan_server_config(**times)
    lab = dhcp_lab(sim, n_clients=2, relayed=relayed, client_config=cfg, arp_probe=1.0,
                   server_configs=[server])
    lab.net.capture(path)
    sim.run(until=500 * S)
    if not relayed:
        lab.clients[0].release()
    sim.run(until=510 * S)
    lab.net.close()
    return lab


def test_the_same_seed_gives_the_same_pcap(tmp_path):
    _run_to_pcap(tmp_path / "a.pcap", 13)
    _run_to_pcap(tmp_path / "b.pcap", 13)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("relayed", [False, True])
def test_tshark_reads_a_full_authenticated_exchange_without_warnings(tmp_path, relayed):
    path = tmp_path / "dhcp.pcap"
    lab = _run_to_pcap(path, 14, relayed)
    assert lab.bound() == (2 if relayed else 1)
    warnings = subprocess.run(
        ["tshark", "-r", str(path), "-Y", '_ws.malformed || _ws.expert.severity >= "warning"'],
        capture_output=True, text=True, check=True).stdout
    assert warnings == ""
    types = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "dhcp", "-T", "fields", "-e", "dhcp.option.dhcp"],
        capture_output=True, text=True, check=True).stdout.split()
    # each client: DISCOVER, OFFER, REQUEST, ACK, then the rebinding REQUEST and ACK at 400 s;
    # through the relay every message crosses two segments and is captured on each
    per_client = ["1", "2", "3", "5", "3", "5"]
    if relayed:
        assert sorted(types) == sorted(per_client * 4)
    else:
        assert sorted(types) == sorted(per_client * 2 + ["7"])
    auth = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "dhcp.option.dhcp_authentication.secret_id == 0x11",
         "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, check=True)
    assert len(auth.stdout.split()) == len(types) - (4 if relayed else 2)  # all but the DISCOVERs carry a MAC
