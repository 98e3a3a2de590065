"""Real DHCP clients get their leases from `threatlab serve dhcp`: dhcpcd, dhclient and udhcpc.

A bridged LAN of network namespaces (`LiveNetwork(lan(...))`): h1 runs `python -m threatlab serve
dhcp` on its eth0 (10.0.0.1/24); the other hosts have their static address flushed and run one
client each. Each client runs with a hook script of ours that only sets the address on its own
interface (never the stock script, so the host's /etc/resolv.conf is never touched), and with its
lease and pid files under the test's tmp dir. dhcpcd has no option to move its database and run
directory, so it gets them bind-mounted from the tmp dir inside the private mount namespace that
`ip netns exec` gives each command.

Needs root, iproute2 and the clients (Debian: dhcpcd-base, isc-dhcp-client, udhcpc; installed by
scripts/install-debian-deps.sh); a client that is missing skips its tests.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from ipaddress import IPv4Address as A
from pathlib import Path

import pytest

from threatlab.dhcp import peers
from threatlab.dhcp.leases import LeaseState, LeaseStore
from threatlab.live.namespaces import live_unavailable_reason
from threatlab.net.build import lan
from threatlab.net.wire import mac_bytes

pytestmark = [pytest.mark.live, pytest.mark.slow]

POOL_FIRST, POOL_LAST = A("10.0.0.100"), A("10.0.0.150")
LEASE_TIME = 20  # s: T1 10 s, so a client renews within a test; dhcpcd takes no shorter lease (20 s minimum)


# the clients, their hooks and their command lines: threatlab.dhcp.peers (shared with the live threats)
Client, CLIENTS, DHCPCD_HOOK = peers.Client, peers.CLIENTS, peers.DHCPCD_HOOK


def _dhcpcd(tmp: Path, binary: str, conf: str = "") -> list[str]:
    return peers.dhcpcd_argv(tmp, binary, conf)


# --------------------------------------------------------------------------- the LAN and the server


def wait_for(predicate: Callable[[], object], timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def net():
    reason = live_unavailable_reason()
    if reason:
        pytest.skip(f"live mode unavailable: {reason}")
    from threatlab.live import LiveNetwork

    with LiveNetwork(lan(4)) as network:  # h1 serves; h2, h3, h4 are clients without an address
        for host in ("h2", "h3", "h4"):
            network.exec(host, ["ip", "-4", "addr", "flush", "dev", "eth0"], check=True)
        yield network


class Server:
    """`python -m threatlab serve dhcp` in h1, its log in a file under the tmp dir."""

    def __init__(self, net, tmp: Path, db: Path, name: str, *extra: str) -> None:
        self.log = tmp / f"{name}.log"
        self.proc = peers.start_threatlab(net, "h1", tmp, iface="eth0", first=str(POOL_FIRST), last=str(POOL_LAST),
                                          lease_time=LEASE_TIME, db=db, extra=extra, log_name=self.log.name,
                                          ready_timeout=30)
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


def start_client(net, host: str, client: Client, tmp: Path) -> subprocess.Popen:
    if peers.tool(client.binary) is None:
        pytest.skip(f"{client.binary} is not installed (scripts/install-debian-deps.sh installs it)")
    return peers.start_client(net, host, client, tmp)


def address_of(net, host: str) -> A | None:
    out = net.exec(host, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/24", out)
    return A(m.group(1)) if m else None


def leased(net, host: str, proc: subprocess.Popen, tmp: Path, timeout: float = 30) -> A:
    def have() -> A | None:
        if proc.poll() is not None:
            raise AssertionError(f"the client exited {proc.returncode}:\n{(tmp / 'client.log').read_text()}")
        return address_of(net, host)

    return wait_for(have, timeout, f"{host} to get an address")


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", list(CLIENTS))
def test_a_real_client_gets_a_lease(net, tmp_path, name):
    db = tmp_path / "leases.sqlite"
    server = Server(net, tmp_path, db, "server")
    proc = start_client(net, "h2", CLIENTS[name], tmp_path / name)
    address = leased(net, "h2", proc, tmp_path / name)
    mac = net.mac_of("h2", "eth0")
    assert POOL_FIRST <= address <= POOL_LAST
    wait_for(lambda: f"ack {address} to {mac}" in server.text(), 10, "the server to log the ACK")
    assert server.stop() == 0
    log = server.text()
    assert f"offer {address} to {mac}" in log and "nak" not in log and "Traceback" not in log, log
    assert "stopped on SIGTERM: 1 leases" in log.splitlines()[-1] and "1 bound" in log.splitlines()[-1]
    with LeaseStore(db) as store:
        lease = store.get(address)
        assert lease is not None and lease.state is LeaseState.BOUND and lease.chaddr == mac_bytes(mac)


def test_three_real_clients_on_one_lan_get_distinct_leases(net, tmp_path):
    db = tmp_path / "leases.sqlite"
    server = Server(net, tmp_path, db, "server")
    procs = {host: (name, start_client(net, host, CLIENTS[name], tmp_path / name))
             for host, name in (("h2", "dhcpcd"), ("h3", "dhclient"), ("h4", "udhcpc"))}
    addresses = {host: leased(net, host, proc, tmp_path / name) for host, (name, proc) in procs.items()}
    assert len(set(addresses.values())) == 3, addresses
    assert server.stop() == 0
    with LeaseStore(db) as store:
        bound = {lease.address: lease.chaddr for lease in store if lease.state is LeaseState.BOUND}
    assert bound == {addresses[h]: mac_bytes(net.mac_of(h, "eth0")) for h in addresses}


@pytest.mark.parametrize("name", list(CLIENTS))
def test_after_a_restart_on_the_same_database_the_client_renews_and_keeps_its_address(net, tmp_path, name):
    db = tmp_path / "leases.sqlite"
    first = Server(net, tmp_path, db, "first")
    proc = start_client(net, "h2", CLIENTS[name], tmp_path / name)
    address = leased(net, "h2", proc, tmp_path / name)
    mac = net.mac_of("h2", "eth0")
    wait_for(lambda: f"ack {address} to {mac}" in first.text(), 10, "the first server to log the ACK")
    assert first.stop() == 0
    assert "stopped on SIGTERM" in first.text()

    second = Server(net, tmp_path, db, "second")
    assert "(1 rows, 1 bound" in second.text()
    # the client renews at T1 (LEASE_TIME / 2 after it was bound), by unicast to the server
    renewed = f"ack {address} to {mac}"
    wait_for(lambda: any(renewed in line and "(renewed)" in line for line in second.text().splitlines()),
             LEASE_TIME + 5, f"{name} to renew with the restarted server")
    assert address_of(net, "h2") == address
    assert proc.poll() is None
    assert second.stop() == 0
    log = second.text()
    assert "nak" not in log and "offer" not in log, log  # renewed, not started over


def test_dhcpcd_with_delayed_authentication_gets_a_lease_from_serve_dhcp_with_the_key(net, tmp_path):
    """RFC 3118 through the command line: --auth-key ID:SECRET, mutual authentication by default."""
    key = "sesame-sesame"
    server = Server(net, tmp_path, tmp_path / "leases.sqlite", "server", "--auth-protocol", "1",
                    "--auth-key", f"17:{key}")
    assert "auth mutual, protocol 1, 1 key(s)" in server.text()
    conf = f'clientid\nauthprotocol delayed\nauthtoken 17 "" forever "{key}"\n'
    client = Client("dhcpcd", "dhcpcd", lambda tmp, binary: _dhcpcd(tmp, binary, conf), DHCPCD_HOOK)
    tmp = tmp_path / "dhcpcd"
    proc = start_client(net, "h2", client, tmp)
    address = leased(net, "h2", proc, tmp)
    assert POOL_FIRST <= address <= POOL_LAST
    assert server.stop() == 0
    client_log = (tmp / "client.log").read_text()
    assert "authentication failed" not in client_log and "drop" not in server.text(), server.text()
    assert f"ack {address} to {net.mac_of('h2', 'eth0')}" in server.text()
