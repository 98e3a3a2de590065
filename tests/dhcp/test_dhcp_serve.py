"""`threatlab serve dhcp`: threatlab's DHCP server on a real interface.

The pure parts (argument parsing, the configuration taken from the interface, the log lines) run
anywhere; the service itself runs inside network namespaces of a `LiveNetwork` (root), talking to a
client made of a packet socket and threatlab's own codecs: bad arguments exit 2 with one line,
SIGTERM and SIGINT exit 0, and the leases are in the database for the next start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from ipaddress import IPv4Address as A
from ipaddress import IPv4Interface
from pathlib import Path

import pytest
from click.testing import CliRunner

from threatlab.cli import cli
from threatlab.dhcp.auth import AuthKey
from threatlab.dhcp.events import Dropped, LeaseBound, LeaseOffered, NakSent
from threatlab.dhcp.leases import LeaseState, LeaseStore
from threatlab.dhcp.serve import InterfaceInfo, ServeSettings, build_config, describe, parse_auth_key, parse_pool
from threatlab.dhcp.wire import (
    BOOTREPLY,
    BOOTREQUEST,
    CLIENT_PORT,
    SERVER_PORT,
    DhcpMessage,
    DhcpMessageType,
    MessageType,
    RequestedIpAddress,
    ServerIdentifier,
)
from threatlab.errors import DecodeError, UsageError
from threatlab.live.namespaces import live_unavailable_reason
from threatlab.net.build import lan
from threatlab.net.wire import ETH_P_IP, IPPROTO_UDP, UDP, Ethernet, IPv4, mac_bytes

# --------------------------------------------------------------------------- arguments, without root


def test_pool_is_first_dash_last():
    assert parse_pool("10.0.0.10-10.0.0.99") == (A("10.0.0.10"), A("10.0.0.99"))
    assert parse_pool(" 10.0.0.10 - 10.0.0.10 ") == (A("10.0.0.10"), A("10.0.0.10"))


@pytest.mark.parametrize(("text", "why"), [
    ("10.0.0.10", "expected FIRST-LAST"),
    ("10.0.0.99-10.0.0.10", "10.0.0.99 comes after 10.0.0.10"),
    ("10.0.0.10-10.0.0.300", "must be IPv4 addresses"),
    ("fd00::1-fd00::9", "must be IPv4 addresses"),
])
def test_a_bad_pool_says_what_is_wrong(text, why):
    with pytest.raises(UsageError, match=why):
        parse_pool(text)


def test_auth_key_is_id_colon_secret_as_text_or_hex():
    assert parse_auth_key("17:sesame") == AuthKey(17, b"sesame")
    assert parse_auth_key("0x11:0x00ff", realm=b"lab") == AuthKey(17, b"\x00\xff", realm=b"lab")
    assert parse_auth_key("1:a:b") == AuthKey(1, b"a:b")


@pytest.mark.parametrize(("text", "why"), [
    ("sesame", "expected ID:SECRET"),
    ("17:", "expected ID:SECRET"),
    ("x:sesame", "not an integer"),
    ("4294967296:sesame", r"\[0, 4294967295\]"),
    ("1:0xzz", "not hex"),
    ("1:0x", "empty secret"),
])
def test_a_bad_auth_key_says_what_is_wrong(text, why):
    with pytest.raises(UsageError, match=why):
        parse_auth_key(text)


ETH0 = InterfaceInfo("eth0", 2, (IPv4Interface("10.0.0.1/24"), IPv4Interface("192.168.7.1/16")))


def settings(pool: str, **kw) -> ServeSettings:
    first, last = parse_pool(pool)
    return ServeSettings(interface="eth0", pool_start=first, pool_end=last, **kw)


def test_the_server_identifier_and_subnet_come_from_the_interface():
    cfg = build_config(settings("10.0.0.10-10.0.0.20"), ETH0)
    assert (cfg.server_id, cfg.subnet_mask) == (A("10.0.0.1"), A("255.255.255.0"))
    cfg = build_config(settings("192.168.9.1-192.168.9.200"), ETH0)
    assert (cfg.server_id, cfg.subnet_mask) == (A("192.168.7.1"), A("255.255.0.0"))
    cfg = build_config(settings("10.0.0.10-10.0.0.20", server_id=A("10.0.0.1"), lease_time=60), ETH0)
    assert cfg.lease_time == 60 and cfg.auth_paradigm == "none"


def test_keys_mean_mutual_authentication_unless_told_otherwise():
    key = AuthKey(17, b"sesame")
    cfg = build_config(settings("10.0.0.10-10.0.0.20", auth_keys=(key,)), ETH0)
    assert cfg.auth_paradigm == "mutual" and cfg.auth_keys == (key,)
    cfg = build_config(settings("10.0.0.10-10.0.0.20", auth_keys=(key,), auth_protocol=0,
                                auth_paradigm="client-authenticates-server"), ETH0)
    assert cfg.auth_paradigm == "client-authenticates-server" and cfg.auth_protocol == 0


@pytest.mark.parametrize(("kw", "why"), [
    (dict(pool="10.0.0.10-10.0.0.20", server_id=A("10.0.0.2")), "--server-id 10.0.0.2 is not an address of eth0"),
    (dict(pool="10.0.1.10-10.0.1.20"), "is not inside a subnet of eth0"),
    (dict(pool="10.0.0.10-10.0.1.20"), "is not inside a subnet of eth0"),
    (dict(pool="10.0.1.10-10.0.1.20", server_id=A("10.0.0.1")), "is not inside 10.0.0.0/24"),
    (dict(pool="10.0.0.0-10.0.0.20"), "the network address"),
    (dict(pool="10.0.0.200-10.0.0.255"), "the broadcast address"),
    (dict(pool="10.0.0.1-10.0.0.1"), "only the server's own address"),
    (dict(pool="10.0.0.10-10.0.0.20", auth_paradigm="mutual"), "needs at least one key"),
    (dict(pool="10.0.0.10-10.0.0.20", auth_paradigm="none", auth_keys=(AuthKey(1, b"k"),)), "would not be used"),
])
def test_settings_the_interface_cannot_serve_are_refused(kw, why):
    with pytest.raises(UsageError, match=why):
        build_config(settings(**kw), ETH0)


def test_an_interface_without_an_address_is_refused():
    with pytest.raises(UsageError, match="has no IPv4 address"):
        build_config(settings("10.0.0.10-10.0.0.20"), InterfaceInfo("eth0", 2, ()))


BAD_CLI = [
    (["--pool", "10.0.0.10-10.0.0.20"], "Missing option '--interface'"),
    (["--interface", "lo"], "Missing option '--pool'"),
    (["--interface", "lo", "--pool", "10.0.0.20-10.0.0.10"], "10.0.0.20 comes after 10.0.0.10"),
    (["--interface", "lo", "--pool", "10.0.0.10"], "expected FIRST-LAST"),
    (["--interface", "tl-no-such-if", "--pool", "10.0.0.10-10.0.0.20"], "no interface 'tl-no-such-if'"),
    (["--interface", "lo", "--pool", "10.0.0.10-10.0.0.20"], "is not inside a subnet of lo"),
    (["--interface", "lo", "--pool", "127.0.0.10-127.0.0.20", "--server-id", "10.9.9.9"],
     "--server-id 10.9.9.9 is not an address of lo"),
    (["--interface", "lo", "--pool", "1.2.3.4-1.2.3.5", "--server-id", "nope"], "'nope' is not an IPv4 address"),
    (["--interface", "lo", "--pool", "1.2.3.4-1.2.3.5", "--lease-time", "0"], "'--lease-time'"),
    (["--interface", "lo", "--pool", "1.2.3.4-1.2.3.5", "--auth-protocol", "3"], "'--auth-protocol'"),
    (["--interface", "lo", "--pool", "1.2.3.4-1.2.3.5", "--auth-key", "sesame"], "expected ID:SECRET"),
    (["--interface", "lo", "--pool", "1.2.3.4-1.2.3.5", "--auth-paradigm", "maybe"], "'--auth-paradigm'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_CLI, ids=[" ".join(a) for a, _ in BAD_CLI])
def test_bad_arguments_exit_2_with_one_line(args, message):
    # every case fails before a socket is opened, so none touches the host's interfaces
    res = CliRunner().invoke(cli, ["serve", "dhcp", *args], catch_exceptions=False)
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_the_real_command_exits_2_with_one_line():
    done = subprocess.run([sys.executable, "-m", "threatlab", "serve", "dhcp", "--interface", "tl-no-such-if",
                           "--pool", "10.0.0.10-10.0.0.20"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 2
    assert done.stderr == "threatlab: error: no interface 'tl-no-such-if' in this network namespace\n"


def test_each_event_is_one_log_line():
    mac = bytes.fromhex("020000000002")
    assert describe(LeaseOffered(0, A("10.0.0.10"), mac, b"")) == "offer 10.0.0.10 to 02:00:00:00:00:02"
    assert describe(LeaseBound(0, A("10.0.0.10"), mac, b"", 3_600_000_000_000, True)) == (
        "ack 10.0.0.10 to 02:00:00:00:00:02 until 1970-01-01T01:00:00.000Z (renewed)")
    assert describe(NakSent(0, mac, None, "no record of this lease")) == (
        "nak - to 02:00:00:00:00:02: no record of this lease")
    assert describe(Dropped(0, "malformed", None)) == "drop from ?: malformed"


# --------------------------------------------------------------------------- the service, live

live = pytest.mark.live  # the `net` fixture skips unless root and `ip netns` work here

POOL = "10.0.0.100-10.0.0.150"
CLIENT_MAC = "02:00:00:00:00:02"
_ZERO, _BCAST = A("0.0.0.0"), A("255.255.255.255")


@pytest.fixture
def net():
    reason = live_unavailable_reason()
    if reason:
        pytest.skip(f"live mode unavailable: {reason}")
    from threatlab.live import LiveNetwork

    with LiveNetwork(lan(2)) as network:  # h1 serves; h2 is a client without an address
        network.exec("h2", ["ip", "-4", "addr", "flush", "dev", "eth0"], check=True)
        yield network


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Server:
    """`python -m threatlab serve dhcp` in h1's namespace, its stderr in a file."""

    def __init__(self, net, tmp: Path, *args: str, name: str = "server") -> None:
        self.log = tmp / f"{name}.log"
        self.out = self.log.open("w")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = net.run("h1", [sys.executable, "-m", "threatlab", "serve", "dhcp", "--interface", "eth0",
                                   *args], stdout=self.out, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        return self.log.read_text()

    def wait_ready(self) -> str:
        return wait_for(lambda: "serving DHCP on eth0" in self.text() or self.proc.poll() is not None, 20,
                        "the server to start") and self.text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        finally:
            self.out.close()


class RawClient:
    """A DHCP client made of a packet socket in h2 and threatlab's codecs (no real client needed)."""

    def __init__(self, net, mac: str = CLIENT_MAC) -> None:
        self.mac = mac_bytes(mac)
        self.sock = net.socket("h2", socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        self.sock.bind(("eth0", 0))
        self.sock.settimeout(0.5)
        self.xid = 0x1000

    def send(self, *options, ciaddr=_ZERO, src=_ZERO, dst=_BCAST, dst_mac=b"\xff" * 6) -> None:
        msg = DhcpMessage(op=BOOTREQUEST, xid=self.xid, ciaddr=ciaddr, chaddr=self.mac + bytes(10),
                          options=options)
        udp = UDP(CLIENT_PORT, SERVER_PORT, msg.encode()).encode(src, dst)
        frame = Ethernet(dst_mac, self.mac, ETH_P_IP, IPv4(src, dst, IPPROTO_UDP, udp).encode()).encode()
        self.sock.send(frame)

    def reply(self, timeout: float = 5.0) -> tuple[Ethernet, IPv4, DhcpMessage]:
        """The next DHCP reply for our xid, with every checksum of its frame verified."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                frame = self.sock.recv(4096)
            except TimeoutError:
                continue
            try:
                eth = Ethernet.decode(frame)
                ip = IPv4.decode(eth.payload)  # verifies the header checksum
                if ip.proto != IPPROTO_UDP:
                    continue
                udp = UDP.decode(ip.payload, ip.src, ip.dst)  # verifies the UDP checksum
                if udp.dst_port != CLIENT_PORT:
                    continue
                msg = DhcpMessage.decode(udp.payload)
            except DecodeError:
                continue
            if msg.op == BOOTREPLY and msg.xid == self.xid:
                return eth, ip, msg
        raise AssertionError(f"no DHCP reply to xid {self.xid:#x} within {timeout} s")

    def lease(self) -> A:
        """DISCOVER, OFFER, REQUEST, ACK; returns the address."""
        self.xid += 1
        self.send(DhcpMessageType(MessageType.DISCOVER))
        eth, ip, offer = self.reply()
        assert offer.message_type is MessageType.OFFER
        # RFC 2131 4.1: no broadcast bit and no address yet, so the OFFER is unicast to chaddr
        assert eth.dst == self.mac and ip.dst == offer.yiaddr and ip.src == A("10.0.0.1")
        self.send(DhcpMessageType(MessageType.REQUEST), ServerIdentifier(A("10.0.0.1")),
                  RequestedIpAddress(offer.yiaddr))
        eth, ip, ack = self.reply()
        assert ack.message_type is MessageType.ACK and ack.yiaddr == offer.yiaddr
        return ack.yiaddr

    def reboot(self, address: A) -> DhcpMessage:
        """INIT-REBOOT: ask the server to confirm `address` (RFC 2131 4.3.2)."""
        self.xid += 1
        self.send(DhcpMessageType(MessageType.REQUEST), RequestedIpAddress(address))
        return self.reply()[2]


@live
def test_sigterm_exits_0_and_the_leases_are_in_the_database(net, tmp_path):
    from threatlab.live import Capture

    db = tmp_path / "leases.sqlite"
    server = Server(net, tmp_path, "--pool", POOL, "--lease-db", str(db))
    assert "synchronous FULL" in server.wait_ready()
    pcap = tmp_path / "lan.pcap"
    with Capture(net, "lan", pcap, "udp port 67 or udp port 68"):
        address = RawClient(net).lease()
    tshark = shutil.which("tshark")
    if tshark is not None:  # the frames the server built pass an independent dissector without a warning
        done = subprocess.run([tshark, "-r", str(pcap), "-Y", '_ws.malformed || _ws.expert.severity >= "warning"'],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
        dhcp = subprocess.run([tshark, "-r", str(pcap), "-Y", "dhcp", "-T", "fields", "-e", "dhcp.option.dhcp"],
                              capture_output=True, text=True, timeout=60).stdout.split()
        assert dhcp == ["1", "2", "3", "5"]  # DISCOVER, OFFER, REQUEST, ACK
    assert A("10.0.0.100") <= address <= A("10.0.0.150")
    assert server.stop(signal.SIGTERM) == 0
    log = server.text().splitlines()
    assert f"offer {address} to {CLIENT_MAC}" in log[1] and f"ack {address} to {CLIENT_MAC}" in log[2]
    assert "stopped on SIGTERM: 1 leases" in log[-1] and "Traceback" not in server.text()
    with LeaseStore(db) as store:
        lease = store.get(address)
        assert lease is not None and lease.state is LeaseState.BOUND and lease.chaddr == mac_bytes(CLIENT_MAC)
        assert lease.expiry > time.time_ns() + 3000 * 10**9  # wall clock: meaningful after a restart


@live
def test_a_restarted_server_confirms_the_lease_it_granted_before(net, tmp_path):
    db = tmp_path / "leases.sqlite"
    first = Server(net, tmp_path, "--pool", POOL, "--lease-db", str(db), "--sync", "normal", name="first")
    first.wait_ready()
    client = RawClient(net)
    address = client.lease()
    assert first.stop(signal.SIGINT) == 0
    assert "stopped on SIGINT" in first.text()
    second = Server(net, tmp_path, "--pool", POOL, "--lease-db", str(db), name="second")
    assert "(1 rows, 1 bound" in second.wait_ready()
    ack = client.reboot(address)
    assert ack.message_type is MessageType.ACK and ack.yiaddr == address
    assert second.stop() == 0
    assert f"ack {address} to {CLIENT_MAC}" in second.text() and "(renewed)" in second.text()
    # a server without that database has no record of the client, and says so (authoritative)
    third = Server(net, tmp_path, "--pool", POOL, "--lease-db", str(tmp_path / "empty.sqlite"), name="third")
    third.wait_ready()
    nak = client.reboot(address)
    assert nak.message_type is MessageType.NAK
    assert third.stop() == 0


@live
def test_arguments_the_interface_refuses_exit_2_with_one_line(net, tmp_path):
    base = [sys.executable, "-m", "threatlab", "serve", "dhcp", "--lease-db", str(tmp_path / "l.sqlite")]
    cases = [
        (["--interface", "eth0", "--pool", "10.0.1.10-10.0.1.20"], "is not inside a subnet of eth0"),
        (["--interface", "eth0", "--pool", POOL, "--server-id", "10.0.0.2"],
         "--server-id 10.0.0.2 is not an address of eth0 (its IPv4 addresses: 10.0.0.1/24)"),
        (["--interface", "eth1", "--pool", POOL], "no interface 'eth1'"),
        (["--interface", "lo", "--pool", "127.0.0.10-127.0.0.20"], "lo is not an Ethernet interface"),
    ]
    for args, message in cases:
        done = net.exec("h1", base + args, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    done = net.exec("h2", base + ["--interface", "eth0", "--pool", POOL], timeout=60)
    assert done.returncode == 2 and "eth0 has no IPv4 address" in done.stderr, done.stderr
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("these are not leases\n" * 100)
    done = net.exec("h1", [sys.executable, "-m", "threatlab", "serve", "dhcp", "--interface", "eth0", "--pool", POOL,
                           "--lease-db", str(not_a_db)], timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"leases: cannot open {not_a_db}" in done.stderr, done.stderr


@live
def test_a_second_server_on_the_same_interface_or_database_is_refused(net, tmp_path):
    db = tmp_path / "leases.sqlite"
    server = Server(net, tmp_path, "--pool", POOL, "--lease-db", str(db))
    server.wait_ready()
    base = [sys.executable, "-m", "threatlab", "serve", "dhcp", "--interface", "eth0", "--pool", POOL]
    done = net.exec("h1", base + ["--lease-db", str(tmp_path / "other.sqlite")], timeout=60)
    assert done.returncode == 1 and "port 67 on eth0 is taken" in done.stderr, done.stderr
    done = net.exec("h1", base + ["--lease-db", str(db)], timeout=60)
    assert done.returncode == 1 and "is in use by another threatlab serve dhcp" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1
    assert server.stop() == 0
