"""threatlab's DHCP server on a real interface: the I/O around the sans-IO `DhcpServer`.

    settings = ServeSettings(interface="eth0", pool_start=A("10.0.0.10"), pool_end=A("10.0.0.99"))
    sys.exit(serve(settings))        # until SIGTERM or SIGINT; exit 0 with every lease persisted

Sockets (needs root: port 67 and a packet socket):
- receive: a UDP socket on 0.0.0.0:67 bound to the interface (SO_BINDTODEVICE). The kernel checks
  the UDP checksum and reassembles, and a client's unicast RENEW finds a listener (no ICMP
  port unreachable). Broadcasts from 0.0.0.0 reach it as they reach every DHCP server's.
- send, RFC 2131 4.1: a reply whose link-layer destination cannot come from ARP (the limited
  broadcast, or a unicast to a client that has no address yet, straight to its chaddr) leaves as a
  whole Ethernet/IPv4/UDP frame built with `threatlab.net.wire` on an AF_PACKET socket bound to the
  interface. A reply to an address the client holds (ciaddr) or to a relay (giaddr) goes through
  the UDP socket, with IP_PKTINFO pinning its source to the server identifier.

Durability: leases live in SQLite (WAL) at `lease_db`. Messages are taken in batches of what is
waiting (at most `BATCH_MAX`), handled inside one transaction, committed, and only then are the
replies sent: no client ever holds an OFFER or ACK whose lease is not in the database. With
`sync="FULL"` (the default) the commit is fsync'ed, so a power loss loses no granted lease; with
"NORMAL" a crash of this process loses none, a crash of the machine may lose the last commits.
Batching is group commit: one fsync for every message that arrived while the last one ran.

Times are the wall clock (ns since the epoch), so lease expiries stay meaningful across a restart.
Every server event is one line on the log (stderr by default).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import selectors
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import TextIO

from threatlab.dhcp.auth import AuthKey
from threatlab.dhcp.config import AUTH_PARADIGMS, DhcpServerConfig
from threatlab.dhcp.events import (
    Datagram,
    Dropped,
    Event,
    InformAnswered,
    LeaseBound,
    LeaseDeclined,
    LeaseExpired,
    LeaseOffered,
    LeaseReleased,
    NakSent,
    OfferWithdrawn,
)
from threatlab.dhcp.leases import LeaseState, LeaseStore
from threatlab.dhcp.server import DhcpServer
from threatlab.dhcp.wire import SERVER_PORT
from threatlab.errors import LiveError, NotRootError, StoreError, ThreatlabError, UsageError
from threatlab.net.wire import ETH_P_IP, IPPROTO_UDP, UDP, Ethernet, IPv4, mac_str

__all__ = [
    "BATCH_MAX",
    "DEFAULT_LEASE_DB",
    "DhcpService",
    "InterfaceInfo",
    "ServeSettings",
    "build_config",
    "interface_info",
    "parse_auth_key",
    "parse_pool",
    "serve",
]

DEFAULT_LEASE_DB = Path("threatlab-out") / "dhcp-leases.sqlite"
BATCH_MAX = 64  # messages per transaction (and per fsync) at most
SYNC_MODES = ("FULL", "NORMAL")
_RCVBUF = 1 << 20
_MAX_WAIT = 60.0  # s: the loop wakes at least this often even with no timer due
_ARPHRD_ETHER = 1
_SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_NEED_ROOT = "serve dhcp needs root (a packet socket and port 67): run it as root"


# --------------------------------------------------------------------------- settings and their checks


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """What `threatlab serve dhcp` was asked for; `build_config` checks it against the interface."""

    interface: str
    pool_start: IPv4Address
    pool_end: IPv4Address
    server_id: IPv4Address | None = None  # default: the interface's address whose subnet holds the pool
    lease_time: int = 3600
    lease_db: Path = DEFAULT_LEASE_DB
    sync: str = "FULL"
    routers: tuple[IPv4Address, ...] = ()
    dns_servers: tuple[IPv4Address, ...] = ()
    auth_paradigm: str | None = None  # default: "mutual" with keys, else "none"
    auth_protocol: int = 1
    auth_keys: tuple[AuthKey, ...] = ()
    log_events: bool = True  # one line per server event; False: start, stop and errors only
    extra: dict = field(default_factory=dict)  # further DhcpServerConfig fields (defenses), by name


def parse_pool(text: str) -> tuple[IPv4Address, IPv4Address]:
    """"FIRST-LAST" -> (first, last); UsageError naming the problem otherwise."""
    first, sep, last = text.strip().partition("-")
    if not sep:
        raise UsageError(f"bad --pool {text!r}: expected FIRST-LAST, e.g. 10.0.0.10-10.0.0.99")
    try:
        a, b = IPv4Address(first.strip()), IPv4Address(last.strip())
    except ValueError:
        raise UsageError(f"bad --pool {text!r}: FIRST and LAST must be IPv4 addresses") from None
    if int(a) > int(b):
        raise UsageError(f"bad --pool {text!r}: {a} comes after {b}")
    return a, b


def parse_auth_key(text: str, realm: bytes = b"") -> AuthKey:
    """"ID:SECRET" -> AuthKey. SECRET is taken as text, or as hex after a 0x prefix; ID is the
    RFC 3118 secret ID (32 bits). For protocol 0 (token) SECRET is the token."""
    sid, sep, secret = text.partition(":")
    if not sep or not sid.strip() or not secret:
        raise UsageError(f"bad --auth-key {text!r}: expected ID:SECRET, e.g. 17:sesame")
    try:
        secret_id = int(sid.strip(), 0)
    except ValueError:
        raise UsageError(f"bad --auth-key {text!r}: the secret ID {sid!r} is not an integer") from None
    if not 0 <= secret_id <= 0xFFFFFFFF:
        raise UsageError(f"bad --auth-key {text!r}: the secret ID must be in [0, 4294967295]")
    if secret.startswith(("0x", "0X")):
        try:
            key = bytes.fromhex(secret[2:])
        except ValueError:
            raise UsageError(f"bad --auth-key {text!r}: the secret after 0x is not hex") from None
        if not key:
            raise UsageError(f"bad --auth-key {text!r}: empty secret")
    else:
        key = secret.encode()
    return AuthKey(secret_id, key, realm=realm)


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    name: str
    index: int
    addresses: tuple[IPv4Interface, ...]


def _ip_tool() -> str | None:
    return shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip") if os.access(p, os.X_OK)), None)


def interface_info(name: str) -> InterfaceInfo:
    """The interface `name` of this network namespace and its IPv4 addresses; UsageError if absent."""
    if not name or "/" in name or len(name) >= 16:
        raise UsageError(f"bad --interface {name!r}: not an interface name")
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        raise UsageError(f"no interface {name!r} in this network namespace") from None
    return InterfaceInfo(name, index, _ipv4_addresses(name))


def _ipv4_addresses(name: str) -> tuple[IPv4Interface, ...]:
    ip = _ip_tool()
    if ip is not None:
        proc = subprocess.run([ip, "-j", "-4", "addr", "show", "dev", name], capture_output=True, text=True,
                              timeout=10, check=False)
        if proc.returncode == 0:
            try:
                links = json.loads(proc.stdout or "[]")
                return tuple(IPv4Interface(f"{a['local']}/{a['prefixlen']}") for link in links
                             for a in link.get("addr_info", ()) if a.get("family") == "inet")
            except (ValueError, KeyError, TypeError):
                pass
    return _primary_address(name)


def _primary_address(name: str) -> tuple[IPv4Interface, ...]:
    """The interface's primary IPv4 address by ioctl (when iproute2 is not there to list them all)."""
    siocgifaddr, siocgifnetmask = 0x8915, 0x891B
    req = struct.pack("256s", name.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            addr = fcntl.ioctl(s.fileno(), siocgifaddr, req)[20:24]
            mask = fcntl.ioctl(s.fileno(), siocgifnetmask, req)[20:24]
        except OSError:
            return ()
    return (IPv4Interface(f"{IPv4Address(addr)}/{IPv4Address(mask)}"),)


def build_config(settings: ServeSettings, info: InterfaceInfo) -> DhcpServerConfig:
    """The server's configuration: the server identifier and subnet come from the interface.
    UsageError for a server identifier not on the interface or a pool outside its subnet."""
    s = settings
    listed = ", ".join(str(a) for a in info.addresses) or "none"
    if s.server_id is not None:
        ifa = next((a for a in info.addresses if a.ip == s.server_id), None)
        if ifa is None:
            raise UsageError(f"--server-id {s.server_id} is not an address of {info.name} "
                             f"(its IPv4 addresses: {listed})")
    else:
        if not info.addresses:
            raise UsageError(f"{info.name} has no IPv4 address: give it one (ip addr add ADDR/LEN dev "
                             f"{info.name}) before serving DHCP on it")
        ifa = next((a for a in info.addresses if s.pool_start in a.network and s.pool_end in a.network), None)
        if ifa is None:
            raise UsageError(f"pool {s.pool_start}-{s.pool_end} is not inside a subnet of {info.name} "
                             f"(its IPv4 addresses: {listed})")
    net: IPv4Network = ifa.network
    if s.pool_start not in net or s.pool_end not in net:
        raise UsageError(f"pool {s.pool_start}-{s.pool_end} is not inside {net}, the subnet of {ifa.ip} "
                         f"on {info.name}")
    if net.prefixlen < 31:
        for special, what in ((net.network_address, "network"), (net.broadcast_address, "broadcast")):
            if int(s.pool_start) <= int(special) <= int(s.pool_end):
                raise UsageError(f"pool {s.pool_start}-{s.pool_end} holds {special}, the {what} address "
                                 f"of {net}")
    if s.pool_start == s.pool_end == ifa.ip:
        raise UsageError(f"pool {s.pool_start}-{s.pool_end} holds only the server's own address")
    paradigm = s.auth_paradigm if s.auth_paradigm is not None else ("mutual" if s.auth_keys else "none")
    if paradigm not in AUTH_PARADIGMS:
        raise UsageError(f"bad auth paradigm {paradigm!r}: one of {', '.join(AUTH_PARADIGMS)}")
    if paradigm == "none" and s.auth_keys:
        raise UsageError("--auth-key given with --auth-paradigm none: the keys would not be used")
    if s.sync not in SYNC_MODES:
        raise UsageError(f"bad sync mode {s.sync!r}: one of {', '.join(SYNC_MODES)}")
    # DhcpServerConfig checks the rest (lease time, keys for a paradigm, ...) and raises ParamError
    return DhcpServerConfig(
        server_id=ifa.ip, pool_start=s.pool_start, pool_end=s.pool_end, subnet_mask=net.netmask,
        routers=s.routers, dns_servers=s.dns_servers, lease_time=s.lease_time,
        auth_paradigm=paradigm, auth_protocol=s.auth_protocol, auth_keys=s.auth_keys, **s.extra,
    )


# --------------------------------------------------------------------------- the log


def _ts(ns: int) -> str:
    """RFC 3339 UTC time with milliseconds."""
    second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    return f"{second}.{ns // 1_000_000 % 1000:03d}Z"


def _mac(chaddr: bytes | None) -> str:
    return "?" if chaddr is None else mac_str(chaddr) if len(chaddr) == 6 else chaddr.hex(":")


def describe(ev: Event) -> str:
    """One log line (without the time stamp) for a server event."""
    match ev:
        case LeaseOffered():
            return f"offer {ev.address} to {_mac(ev.chaddr)}"
        case LeaseBound():
            tail = " (renewed)" if ev.renewed else ""
            return f"ack {ev.address} to {_mac(ev.chaddr)} until {_ts(ev.expiry)}{tail}"
        case NakSent():
            return f"nak {ev.requested or '-'} to {_mac(ev.chaddr)}: {ev.reason}"
        case LeaseDeclined():
            return f"decline {ev.address} from {_mac(ev.chaddr)}: held until {_ts(ev.hold_until)}"
        case LeaseReleased():
            return f"release {ev.address} from {_mac(ev.chaddr)}"
        case LeaseExpired():
            return f"expire {ev.address} of {_mac(ev.chaddr)} ({ev.was})"
        case OfferWithdrawn():
            return f"withdrawn {ev.address} from {_mac(ev.chaddr)}: it chose another server"
        case InformAnswered():
            return f"inform {ev.ciaddr} from {_mac(ev.chaddr)}"
        case Dropped():
            return f"drop from {_mac(ev.chaddr)}: {ev.reason}"
    return type(ev).__name__


class _Log:
    """Lines with a UTC time stamp, written per batch; a closed log (EPIPE) silences it, no more."""

    def __init__(self, stream: TextIO, clock: Callable[[], int]) -> None:
        self._stream: TextIO | None = stream
        self._clock = clock
        self._lines: list[str] = []
        self._second = (-1, "")  # the last second formatted: a busy server logs many lines in one

    def add(self, text: str) -> None:
        ns = self._clock()
        s = ns // 1_000_000_000
        if self._second[0] != s:
            self._second = (s, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)))
        self._lines.append(f"{self._second[1]}.{ns // 1_000_000 % 1000:03d}Z {text}\n")

    def line(self, text: str) -> None:
        self.add(text)
        self.flush()

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if not lines or self._stream is None:
            return
        try:
            self._stream.write("".join(lines))
            self._stream.flush()
        except (OSError, ValueError):
            self._stream = None


# --------------------------------------------------------------------------- the service


class DhcpService:
    """`DhcpServer` on one interface: open() binds, serve() runs until stop(), close() releases."""

    def __init__(self, settings: ServeSettings, *, log: TextIO | None = None,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.settings = settings
        self.clock = clock
        self.log = _Log(sys.stderr if log is None else log, clock)
        self.config: DhcpServerConfig | None = None
        self.server: DhcpServer | None = None
        self.store: LeaseStore | None = None
        self.mac = b""
        self.stop_reason: str | None = None
        self._udp: socket.socket | None = None
        self._raw: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._lock_fd: int | None = None
        self._ip_id = 0
        self._pktinfo: list[tuple[int, int, bytes]] = []
        self._sources: dict[str, IPv4Address] = {}  # parsed source addresses; most are 0.0.0.0
        self.sent = 0
        self.send_errors = 0

    # ---- setting up

    def open(self) -> DhcpService:
        """Check the settings against the interface, open the lease database, bind the sockets.
        UsageError for bad settings; NotRootError or LiveError when the host says no."""
        s = self.settings
        try:
            info = interface_info(s.interface)
            self.config = build_config(s, info)
            self._lock_store()
            self._open_sockets(info)
            self._open_store()
        except BaseException:
            self.close()
            raise
        self.server = DhcpServer(self.config, self.store, random.Random())  # a service has no seed to keep
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        cfg = self.config
        auth = "none" if cfg.auth_paradigm == "none" else (
            f"{cfg.auth_paradigm}, protocol {cfg.auth_protocol}, {len(cfg.auth_keys)} key(s)")
        bound = self.store.count_state(self.clock(), LeaseState.BOUND)
        self.log.line(
            f"serving DHCP on {s.interface} ({mac_str(self.mac)}) as {cfg.server_id}/{cfg.network.prefixlen}"
            f": pool {cfg.pool_start}-{cfg.pool_end} ({self.server.pool_size} addresses)"
            f", lease {cfg.lease_time} s, "
            f"auth {auth}; leases in {self.store.path} ({len(self.store)} rows, {bound} bound, "
            f"synchronous {s.sync})")
        return self

    def _open_sockets(self, info: InterfaceInfo) -> None:
        name = info.name
        try:
            raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: send only
        except PermissionError:
            raise NotRootError(_NEED_ROOT) from None
        self._raw = raw
        raw.bind((name, 0))
        _, _, _, hatype, mac = raw.getsockname()
        if hatype != _ARPHRD_ETHER or len(mac) != 6:
            raise UsageError(f"{name} is not an Ethernet interface (ARP hardware type {hatype})")
        self.mac = mac
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._udp = udp
        try:
            udp.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, name.encode())
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            udp.bind(("0.0.0.0", SERVER_PORT))
        except PermissionError:
            raise NotRootError(_NEED_ROOT) from None
        except OSError as exc:
            if exc.errno == 98:  # EADDRINUSE
                raise LiveError(f"port 67 on {name} is taken: another DHCP server runs there") from None
            raise LiveError(f"cannot bind port 67 on {name}: {exc.strerror}") from None
        udp.setblocking(False)
        # IP_PKTINFO: unicast replies leave from the server identifier, whatever the route prefers
        assert self.config is not None
        self._pktinfo = [(socket.IPPROTO_IP, _IP_PKTINFO,
                          struct.pack("=I4s4s", info.index, self.config.server_id.packed, bytes(4)))]

    def _lock_store(self) -> None:
        """One server per lease database: an flock on PATH.lock, held until close()."""
        path = Path(self.settings.lease_db)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the directory of --lease-db {path}: {exc.strerror}") from None
        if path.is_dir():
            raise UsageError(f"--lease-db {path} is a directory")
        try:
            fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot open --lease-db {path}: {exc.strerror}") from None
        self._lock_fd = fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LiveError(f"lease database {path} is in use by another threatlab serve dhcp") from None

    def _open_store(self) -> None:
        s = self.settings
        path = Path(s.lease_db)
        try:
            self.store = LeaseStore(path, synchronous=s.sync)
        except StoreError as exc:
            raise UsageError(str(exc)) from None
        except sqlite3.Error as exc:  # a file that is no SQLite database, say
            raise UsageError(f"leases: cannot open {path}: {exc}") from None

    # ---- running

    def stop(self, reason: str = "stop") -> None:
        """Ask serve() to return after the batch in hand (safe from a signal handler or a thread)."""
        self.stop_reason = reason
        if self._wake_w is not None:
            try:
                self._wake_w.send(b"\0")
            except OSError:
                pass

    def serve(self) -> None:
        """Handle messages until stop()."""
        assert self.server is not None and self._udp is not None and self._wake_r is not None
        sel = selectors.DefaultSelector()
        sel.register(self._udp, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while self.stop_reason is None:
                deadline = self.server.next_timer()
                wait = _MAX_WAIT if deadline is None else (deadline - self.clock()) / 1e9
                sel.select(min(max(wait, 0.0), _MAX_WAIT))
                if self.stop_reason is not None:
                    break
                self.step()
        finally:
            sel.close()

    def step(self) -> int:
        """Take up to BATCH_MAX waiting messages (and run the timers) in one transaction; commit;
        then send the replies and log the events. Returns the number of messages taken."""
        server, udp, ifname = self.server, self._udp, self.settings.interface
        assert server is not None and udp is not None and self.store is not None
        clock, sources = self.clock, self._sources
        out: list[Datagram] = []
        taken = 0
        with _transaction(self.store):
            server.handle_timer(clock())
            while taken < BATCH_MAX:
                try:
                    data, (src, _) = udp.recvfrom(4096)
                except (BlockingIOError, InterruptedError):
                    break
                taken += 1
                src_ip = sources.get(src)
                if src_ip is None:
                    if len(sources) >= 4096:
                        sources.clear()
                    src_ip = sources[src] = IPv4Address(src)
                out += server.receive(data, clock(), src_ip=src_ip, interface=ifname)
        for dg in out:
            self._send(dg)
        events = server.events()
        if self.settings.log_events:
            for ev in events:
                self.log.add(describe(ev))
        self.log.flush()
        return taken

    def _send(self, dg: Datagram) -> None:
        try:
            if dg.dst_mac is not None:
                self._raw.send(self._frame(dg))
            else:
                self._udp.sendmsg([dg.payload], self._pktinfo, 0, (str(dg.dst_ip), dg.dst_port))
            self.sent += 1
        except OSError as exc:  # a full queue, an interface gone down: this reply is lost, not the server
            self.send_errors += 1
            self.log.add(f"send to {dg.dst_ip} failed: {exc.strerror or exc}")

    def _frame(self, dg: Datagram) -> bytes:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        udp = UDP(dg.src_port, dg.dst_port, dg.payload).encode(dg.src_ip, dg.dst_ip)
        ip = IPv4(dg.src_ip, dg.dst_ip, IPPROTO_UDP, udp, ttl=64, identification=self._ip_id).encode()
        return Ethernet(dg.dst_mac, self.mac, ETH_P_IP, ip).encode()

    # ---- shutting down

    def close(self) -> None:
        """Close the sockets and the lease database (every lease is committed already). Idempotent."""
        for name in ("_udp", "_raw", "_wake_r", "_wake_w"):
            sock = getattr(self, name)
            if sock is not None:
                sock.close()
                setattr(self, name, None)
        if self.store is not None:
            self.store.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


@contextmanager
def _transaction(store: LeaseStore) -> Iterator[None]:
    """Every lease write of one batch in one SQLite transaction (one fsync with synchronous FULL).
    LeaseStore writes through in autocommit mode; BEGIN makes its writes wait for our COMMIT.
    (LeaseStore has no public transaction API yet; this uses its connection.)"""
    db = store._db  # noqa: SLF001
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise StoreError(f"leases: cannot write {store.path}: {exc}") from None
    try:
        yield
    except BaseException:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
    try:
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"leases: cannot commit to {store.path}: {exc}") from None


def serve(settings: ServeSettings, *, log: TextIO | None = None) -> int:
    """Run the service until SIGTERM or SIGINT; returns the exit code (0: stopped cleanly).

    UsageError for bad settings; ThreatlabError when the host refuses (not root, port taken) or the
    lease database cannot be written."""
    service = DhcpService(settings, log=log)
    service.open()
    names = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}

    def on_signal(signum: int, frame: object) -> None:
        service.stop(names.get(signum, str(signum)))

    previous = {sig: signal.signal(sig, on_signal) for sig in names}
    try:
        service.serve()
    except ThreatlabError as exc:
        service.log.line(f"stopping: {exc}")
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store = service.store
        summary = ""
        if store is not None and store._db is not None:  # noqa: SLF001
            now = service.clock()
            bound = store.count_state(now, LeaseState.BOUND)
            summary = (f": {len(store)} leases in {store.path}, {bound} bound"
                       f"; {service.sent} replies sent")
        service.close()
        if service.stop_reason is not None:
            service.log.line(f"stopped on {service.stop_reason}{summary}")
    return 0
