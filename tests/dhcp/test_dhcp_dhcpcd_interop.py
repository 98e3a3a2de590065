"""dhcpcd (the one RFC 3118 client there is) gets a lease from threatlab's server with mutual
authentication: configuration token, delayed authentication, delayed authentication with a realm.
Needs root, iproute2 and dhcpcd (Debian: dhcpcd-base); runs in two network namespaces of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from threatlab.dhcp.peers import dhcpcd_isolated as isolated
from threatlab.live.namespaces import LiveNetwork
from threatlab.net.topology import Interface, Node, Segment, Topology, mac_for


pytestmark = [
    pytest.mark.live,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("dhcpcd") is None or shutil.which("ip") is None,
        reason="needs root, iproute2 and dhcpcd",
    ),
]

SERVER = textwrap.dedent("""
    import random, socket, sys, time
    from ipaddress import IPv4Address as A
    from threatlab.dhcp.leases import LeaseStore
    from threatlab.dhcp.server import AuthKey, DhcpServer, DhcpServerConfig
    ifname, protocol, realm, key = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4].encode()
    cfg = DhcpServerConfig(server_id=A("10.77.0.1"), pool_start=A("10.77.0.10"), pool_end=A("10.77.0.20"),
                           lease_time=600, auth_paradigm="mutual", auth_protocol=protocol,
                           auth_keys=(AuthKey(0 if protocol == 0 else 17, key, realm=realm),))
    srv = DhcpServer(cfg, LeaseStore(), random.Random(1))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
    s.bind(("0.0.0.0", 67))
    s.settimeout(30)
    t0 = time.monotonic_ns()
    while True:
        data, addr = s.recvfrom(4096)
        for dg in srv.receive(data, time.monotonic_ns() - t0, src_ip=A(addr[0])):
            # the client has no address yet: broadcast, so that no ARP is needed
            s.sendto(dg.payload, ("255.255.255.255", 68))
        for ev in srv.events():
            print(type(ev).__name__, getattr(ev, "reason", ""), flush=True)
""")


def _topology(ifname: str) -> Topology:
    """The server and the client joined by one veth pair; the client's interface has no address.
    The interface name is unique to the test so that dhcpcd's lease file cannot be the host's."""
    return Topology(
        (Segment("lan"),),
        (Node("srv", (Interface(ifname, "lan", mac_for(1), "10.77.0.1/24"),)),
         Node("cli", (Interface(ifname, "lan", mac_for(2)),))),
        name="dhcpcd-interop",
    )


@pytest.mark.parametrize("protocol,authprotocol,realm", [
    (0, "token", ""),
    (1, "delayed", ""),
    (2, "delayedrealm", "lab.example"),
])
def test_dhcpcd_gets_a_lease_with_mutual_authentication(tmp_path, protocol, authprotocol, realm):
    ifname = f"tldhc{protocol}"
    key = "sesame-sesame"
    conf = tmp_path / "dhcpcd.conf"
    conf.write_text(f'authprotocol {authprotocol}\nauthtoken {0 if protocol == 0 else 17} "{realm}" forever '
                    f'"{key}"\nnoipv4ll\nclientid\n')
    hook = tmp_path / "hook.sh"
    hook.write_text('#!/bin/sh\n[ "$reason" = BOUND ] && ip addr add "$new_ip_address/$new_subnet_cidr" '
                    'dev "$interface"\nexit 0\n')
    hook.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with LiveNetwork(_topology(ifname), direct_pairs=True) as net:
        server = net.run("srv", [sys.executable, "-c", SERVER, ifname, str(protocol), realm, key],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        time.sleep(0.5)
        client = net.exec("cli", isolated(tmp_path, ["dhcpcd", "-f", str(conf), "-c", str(hook), "-4",
                                                     "-1", "-B", "-t", "20", ifname]), timeout=40)
        addr = net.exec("cli", ["ip", "-4", "addr", "show", ifname], timeout=10).stdout
        net.exec("cli", isolated(tmp_path, ["dhcpcd", "-f", str(conf), "-4", "-k", ifname]), timeout=20)
        server.kill()
        events, _ = server.communicate(timeout=10)
    assert client.returncode == 0, client.stderr
    assert "authentication failed" not in client.stderr
    assert "inet 10.77.0.10/24" in addr
    assert "LeaseBound" in events and "Dropped" not in events, events
