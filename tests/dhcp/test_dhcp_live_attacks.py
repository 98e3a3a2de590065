"""DHCPv4 threats live against real peers (`threatlab live ID --peer NAME`), in network namespaces.

Asserts what /work/shared/PEERS.md observed: starvation by made-up clients denies a real client on
dnsmasq and Kea (and on threatlab's server, which has no limit on its command line either); a
forged RELEASE with only the victim's MAC, address and server id frees the lease in dnsmasq and Kea
(and threatlab without auth), and the next client gets the victim's address; the servers' own
allow-lists (dnsmasq known hosts, Kea KNOWN class) and RFC 3118 stop them; dhcpcd with delayed
authentication refuses an unsigned rogue and a tampered copy of a signed reply, binding only to
the real server. Each test leaves no namespace of its own and touches no host file.

Needs root and the peers (dnsmasq-base, kea-dhcp4-server, udhcpc, dhcpcd-base); skips otherwise.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from threatlab.dhcp.peers import tool
from threatlab.lab.catalogue import load_catalogue
from threatlab.live.namespaces import live_unavailable_reason

pytestmark = [pytest.mark.live, pytest.mark.slow]

BUDGET = {"budget_packets": 500, "budget_seconds": 30.0}
SERVER_TOOL = {"dnsmasq": "dnsmasq", "kea": "kea-dhcp4", "threatlab": None}
# files a peer would write (or a stock hook would) if it were not kept in the run's directory
HOST_FILES = ("/etc/resolv.conf", "/var/lib/misc/dnsmasq.leases", "/var/lib/kea", "/run/kea", "/var/lib/dhcpcd",
              "/run/dhcpcd", "/var/lib/dhcp", "/run/dnsmasq", "/run/udhcpc.pid")


def _state(path: str):
    p = Path(path)
    if not p.exists():
        return None
    if p.is_dir():
        return sorted((c.name, c.stat().st_mtime_ns) for c in p.iterdir())
    return p.stat().st_mtime_ns


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("tl-")}


@pytest.fixture
def clean_host():
    reason = live_unavailable_reason()
    if reason:
        pytest.skip(f"live mode unavailable: {reason}")
    ns, files = _namespaces(), {f: _state(f) for f in HOST_FILES}
    yield
    assert _namespaces() <= ns, f"namespaces left behind: {_namespaces() - ns}"
    assert {f: _state(f) for f in HOST_FILES} == files, "a host file changed"


def _need(*tools: str | None) -> None:
    for t in tools:
        if t and tool(t) is None:
            pytest.skip(f"{t} is not installed")


def _live(threat_id: str, peer: str, params: dict | None = None, defenses: tuple[str, ...] = ()) -> dict:
    threat = load_catalogue().get(threat_id)
    assert peer in threat.peers
    values = threat.resolve_params(params or {})
    return dict(threat.peers[peer](values, threat.resolve_defenses(defenses), **BUDGET))


@pytest.mark.parametrize("peer", ["dnsmasq", "kea", "threatlab"])
def test_starvation_empties_the_pool_and_denies_the_real_client(clean_host, peer):
    _need(SERVER_TOOL[peer], "udhcpc")
    r = _live("dhcp.starvation", peer, {"pool_size": "20"})
    assert r["leases_taken_by_attacker"] == 20 and r["attacker_leases_in_server_store"] == 20, r
    assert r["time_to_exhaustion_s"] is not None and r["time_to_exhaustion_s"] < 10
    assert r["real_client_lease"] == "none (denied)" and r["success"] is True
    assert 0 < r["attacker_packets"] <= BUDGET["budget_packets"]
    assert "no" in r["server_options"]  # says honestly which limits the server lacks


@pytest.mark.parametrize("peer", ["dnsmasq", "kea", "threatlab"])
def test_starvation_is_stopped_by_the_servers_own_allow_list_or_auth(clean_host, peer):
    _need(SERVER_TOOL[peer], "dhcpcd" if peer == "threatlab" else "udhcpc")
    r = _live("dhcp.starvation", peer, {"pool_size": "20"}, ("client-auth",))
    assert r["leases_taken_by_attacker"] == 0 and r["attacker_leases_in_server_store"] == 0, r
    assert r["real_client_lease"].startswith("10.0.0.1") and r["success"] is False, r


def test_starvation_refuses_a_defense_the_server_does_not_offer(clean_host):
    _need("kea-dhcp4")
    from threatlab.errors import ParamError

    with pytest.raises(ParamError, match="rate-limit is not an option"):
        _live("dhcp.starvation", "kea", {}, ("rate-limit",))


@pytest.mark.parametrize("peer", ["dnsmasq", "kea", "threatlab"])
def test_forged_release_frees_the_lease_and_hands_the_address_to_the_next_client(clean_host, peer):
    _need(SERVER_TOOL[peer], "udhcpc")
    r = _live("dhcp.forged-release", peer)
    assert r["victim_lease_before"] == "True", r
    assert r["lease_freed_in_store"] is True and r["success"] is True, r
    assert r["second_client_got_victims_address"] is True, r
    assert r["attacker_packets"] == 1


def test_forged_release_is_dropped_by_threatlab_with_client_authentication(clean_host):
    _need("dhcpcd", "udhcpc")
    r = _live("dhcp.forged-release", "threatlab", {}, ("client-auth",))
    assert r["lease_freed_in_store"] is False and r["success"] is False, r
    assert r["second_client_lease"] == "none"


def test_dhcpcd_with_delayed_auth_refuses_an_unsigned_and_a_tampered_rogue(clean_host):
    _need("dhcpcd")
    r = _live("dhcp.rogue-server-refusal", "dhcpcd")
    for variant, says in (("unsigned", "no authentication from 10.0.0.200"), ("tampered", "authentication failed")):
        assert r[f"{variant}_dhcpcd_bound_to"].endswith("(real server)"), r
        assert not r[f"{variant}_rogue_frames"].startswith("0 "), r
        assert r[f"{variant}_dhcpcd_refusals"] > 0 and says in r[f"{variant}_dhcpcd_log"], r
    assert r["refused_both"] is True and r["success"] is False
    assert os.geteuid() == 0
