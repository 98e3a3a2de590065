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

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address as A
from pathlib import Path

import pytest

from dhcpcd_isolation import isolated

from threatlab.dhcp.leases import LeaseState, LeaseStore
from threatlab.live.namespaces import live_unavailable_reason
from threatlab.net.build import lan
from threatlab.net.wire import mac_bytes

pytestmark = [pytest.mark.live, pytest.mark.slow]

POOL_FIRST, POOL_LAST = A("10.0.0.100"), A("10.0.0.150")
LEASE_TIME = 20  # s: T1 10 s, so a client renews within a test; dhcpcd takes no shorter lease (20 s minimum)


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin") if os.access(p := f"{d}/{name}", os.X_OK)), None)


# --------------------------------------------------------------------------- the clients


@dataclass(frozen=True)
class Client:
    name: str
    binary: str
    argv: Callable[[Path, str], list[str]]  # (tmp dir, binary path) -> the command, run in the foreground
    hook: str  # the hook script: sets the address, nothing else


DHCPCD_HOOK = """\
#!/bin/sh
# dhcpcd's hook (-c): dhcpcd adds the address itself; this only makes sure, and touches nothing else
case "$reason" in
BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/$new_subnet_cidr" dev "$interface" ;;
esac
exit 0
"""

DHCLIENT_HOOK = """\
#!/bin/sh
# dhclient's script (-sf), instead of /sbin/dhclient-script: the address only
case "$reason" in
PREINIT) ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
EXPIRE|FAIL|RELEASE|STOP) [ -n "$old_ip_address" ] && ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" ;;
esac
exit 0
"""

UDHCPC_HOOK = """\
#!/bin/sh
# udhcpc's script (-s), instead of /etc/udhcpc/default.script: the address only
case "$1" in
deconfig) ip -4 addr flush dev "$interface" ;;
bound|renew) ip addr replace "$ip/$subnet" dev "$interface" ;;
esac
exit 0
"""


def _dhcpcd(tmp: Path, binary: str, conf: str = "") -> list[str]:
    (tmp / "dhcpcd.conf").write_text("noipv4ll\nnoarp\n" + conf)
    return isolated(tmp, [binary, "-f", str(tmp / "dhcpcd.conf"), "-c", str(tmp / "hook.sh"), "-4", "-B", "-d",
                          "-t", "30", "eth0"])


def _dhclient(tmp: Path, binary: str) -> list[str]:
    (tmp / "dhclient.conf").write_text("")
    return [binary, "-4", "-d", "-v", "-cf", str(tmp / "dhclient.conf"), "-sf", str(tmp / "hook.sh"),
            "-lf", str(tmp / "dhclient.leases"), "-pf", str(tmp / "dhclient.pid"), "eth0"]


def _udhcpc(tmp: Path, binary: str) -> list[str]:
    return [binary, "-f", "-i", "eth0", "-s", str(tmp / "hook.sh"), "-p", str(tmp / "udhcpc.pid"),
            "-t", "10", "-T", "2", "-A", "2"]


CLIENTS = {
    "dhcpcd": Client("dhcpcd", "dhcpcd", _dhcpcd, DHCPCD_HOOK),
    "dhclient": Client("dhclient", "dhclient", _dhclient, DHCLIENT_HOOK),
    "udhcpc": Client("udhcpc", "udhcpc", _udhcpc, UDHCPC_HOOK),
}


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
        self._out = self.log.open("w")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = net.run("h1", [sys.executable, "-m", "threatlab", "serve", "dhcp", "--interface", "eth0",
                                   "--pool", f"{POOL_FIRST}-{POOL_LAST}", "--lease-time", str(LEASE_TIME),
                                   "--lease-db", str(db), *extra],
                            stdout=self._out, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: "serving DHCP on eth0" in self.text() or self.proc.poll() is not None, 30,
                 "the server to start")
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.log.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        finally:
            self._out.close()


def start_client(net, host: str, client: Client, tmp: Path) -> subprocess.Popen:
    binary = _tool(client.binary)
    if binary is None:
        pytest.skip(f"{client.binary} is not installed (scripts/install-debian-deps.sh installs it)")
    tmp.mkdir(parents=True, exist_ok=True)
    hook = tmp / "hook.sh"
    hook.write_text(client.hook)
    hook.chmod(0o755)
    out = (tmp / "client.log").open("w")
    net.on_close(out.close)
    return net.run(host, client.argv(tmp, binary), stdout=out, stderr=subprocess.STDOUT)


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
