"""A `Topology` built as real Linux network namespaces, and torn down again.

Layout of one run (run id `r`, six hex digits):

- `tl-r` holds the fabric: one Linux bridge per segment, named `s-<segment>`. A hub is a bridge
  with ageing time 0, so it learns nothing and floods every frame to every port; a switch is a
  bridge with normal learning. Multicast snooping is off on both, as on an unmanaged switch.
- `tl-r-<node>` is one namespace per node. Each interface is one end of a veth pair, named as in the
  topology, with its MAC, addresses, MTU and link shaping; the other end, `<node>-<i>`, is a port of
  the segment's bridge in the fabric.

Nothing here touches the host's own interfaces: every command is scoped to a namespace of this run
(`ip -n NAME ...`). A state file `/run/threatlab/<run id>.json` records the owner process, so that
`cleanup_stale()` can remove what a crashed run left behind; every `LiveNetwork` calls it first.
"""

from __future__ import annotations

import atexit
import ctypes
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

from threatlab.errors import LiveError, NotRootError, TopologyError
from threatlab.net.topology import Interface, Link, Node, NodeKind, SegmentKind, Topology

T = TypeVar("T")

PREFIX = "tl-"
STATE_DIR = Path("/run/threatlab")
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
_BRIDGE_NODE_DEV = "tl_br"  # the bridge inside a BRIDGE node; '_' cannot clash with topology names
_COMMAND_TIMEOUT = 30.0
FABRIC = "@fabric"  # names the fabric namespace where a node name is expected ('@' is no node name)

__all__ = [
    "FABRIC",
    "LiveNetwork",
    "call_in_netns",
    "cleanup_stale",
    "live_unavailable_reason",
    "require_root",
]


# --------------------------------------------------------------------------- host checks


def require_root() -> None:
    """Raise NotRootError unless this process is root (it needs CAP_NET_ADMIN and CAP_NET_RAW)."""
    if os.geteuid() != 0:
        raise NotRootError("live mode needs root (network namespaces and raw sockets): run it as root")


_IP_CANDIDATES = ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")


def _ip() -> str:
    path = shutil.which("ip") or next((p for p in _IP_CANDIDATES if os.access(p, os.X_OK)), None)
    if path is None:
        raise LiveError("live mode needs iproute2's `ip` command, which is not installed")
    return path


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin") if os.access(p := f"{d}/{name}", os.X_OK)), None
    )


def live_unavailable_reason() -> str | None:
    """None if live mode can run here; otherwise one line saying why not (for test skips)."""
    if os.geteuid() != 0:
        return "live mode needs root"
    try:
        ip = _ip()
    except LiveError as exc:
        return str(exc)
    probe = f"tl-probe{os.getpid()}"
    try:
        add = subprocess.run(
            [ip, "netns", "add", probe], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns` is not usable: {exc}"
    if add.returncode != 0:
        return f"`ip netns add` failed: {add.stderr.strip()}"
    subprocess.run([ip, "netns", "del", probe], capture_output=True, timeout=10, check=False)
    return None


def _run(argv: Sequence[str], *, stdin: str | None = None, what: str = "") -> str:
    try:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise LiveError(f"{what or argv[0]}: timed out after {_COMMAND_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise LiveError(f"{what or argv[0]}: {exc}") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().replace("\n", "; ")
        raise LiveError(f"{what or ' '.join(argv)} failed: {detail}")
    return proc.stdout


# --------------------------------------------------------------------------- entering a namespace

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, CLONE_NEWNET)
        return
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def call_in_netns(netns: str, fn: Callable[[], T]) -> T:
    """Run `fn()` in a short-lived thread that has joined network namespace `netns`.

    Only that thread changes namespace (setns on a thread is per thread for network namespaces);
    the caller stays where it is. Sockets created by `fn` stay bound to `netns` for their whole
    life, and writes to /proc/sys/net/... made by `fn` apply to `netns`.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            box["error"] = LiveError(f"no network namespace {netns!r}: {exc.strerror}")
            return
        try:
            _setns(fd)
        except OSError as exc:
            box["error"] = LiveError(f"cannot enter network namespace {netns!r}: {exc.strerror}")
            return
        finally:
            os.close(fd)
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"netns:{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _write_sysctls(netns: str, values: dict[str, str]) -> None:
    def write() -> None:
        for key, value in values.items():
            path = Path("/proc/sys") / key.replace(".", "/")
            try:
                path.write_text(value)
            except OSError as exc:
                raise LiveError(f"{netns}: cannot set {key}={value}: {exc.strerror}") from None

    call_in_netns(netns, write)


# --------------------------------------------------------------------------- stale runs


def _proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22: starttime, in clock ticks


def _owner_alive(run_id: str) -> bool:
    try:
        state = json.loads((STATE_DIR / f"{run_id}.json").read_text())
        pid, started = int(state["pid"]), state.get("start_time")
    except (OSError, ValueError, KeyError, TypeError):
        return False
    now_started = _proc_start_time(pid)
    return now_started is not None and (started is None or now_started == started)


def _list_netns(ip: str) -> list[str]:
    out = _run([ip, "netns", "list"], what="ip netns list")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _netns_pids(ip: str, netns: str) -> list[int]:
    proc = subprocess.run(
        [ip, "netns", "pids", netns], capture_output=True, text=True, timeout=10, check=False
    )
    me = os.getpid()
    return [int(p) for p in proc.stdout.split() if p.isdigit() and int(p) != me]


def _kill_pids(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _delete_netns(ip: str, names: Sequence[str]) -> list[str]:
    """Kill what still runs in `names`, then delete them; returns the names that could not go."""
    for name in names:
        _kill_pids(_netns_pids(ip, name))
    failed = []
    for name in names:
        proc = subprocess.run(
            [ip, "netns", "del", name], capture_output=True, text=True, timeout=30, check=False
        )
        if proc.returncode != 0 and (NETNS_DIR / name).exists():
            failed.append(name)
    return failed


def _run_id_of(netns: str) -> str:
    return netns[len(PREFIX) :].split("-", 1)[0]


def cleanup_stale() -> list[str]:
    """Delete every `tl-` namespace whose owning process is gone; returns the names deleted.

    A namespace's owner is the pid (and its start time, against pid reuse) recorded in
    /run/threatlab/<run id>.json; a namespace without a state file has no owner. Processes still
    running inside a stale namespace are killed first.
    """
    ip = _ip()
    stale = [n for n in _list_netns(ip) if n.startswith(PREFIX) and not _owner_alive(_run_id_of(n))]
    _delete_netns(ip, stale)
    if STATE_DIR.is_dir():
        for state in STATE_DIR.glob("*.json"):
            if not _owner_alive(state.stem):
                state.unlink(missing_ok=True)
    return stale


# --------------------------------------------------------------------------- signals

_OPEN: weakref.WeakSet[LiveNetwork] = weakref.WeakSet()
_PREVIOUS_HANDLERS: dict[int, Any] = {}
_HANDLED = (signal.SIGINT, signal.SIGTERM)


def _on_signal(signum: int, frame: Any) -> None:
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    for net in list(_OPEN):
        net.close()  # the last one restores the previous handlers
    _restore_handlers()
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # die of the signal, as we would have without the handler


def _install_handlers() -> None:
    if threading.current_thread() is not threading.main_thread() or _PREVIOUS_HANDLERS:
        return
    for sig in _HANDLED:
        previous = signal.signal(sig, _on_signal)
        # None: a handler installed outside Python; treat it as the default action
        _PREVIOUS_HANDLERS[sig] = signal.SIG_DFL if previous is None else previous


def _restore_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _HANDLED:
        if sig in _PREVIOUS_HANDLERS:
            signal.signal(sig, _PREVIOUS_HANDLERS.pop(sig))
        elif signal.getsignal(sig) is _on_signal:
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)


@atexit.register
def _close_all_at_exit() -> None:
    for net in list(_OPEN):
        net.close()


# --------------------------------------------------------------------------- the network


def _netem_args(link: Link) -> list[str]:
    args = ["netem"]
    if link.delay_ns:
        args += ["delay", f"{link.delay_ns / 1000:.3f}us"]
    if link.loss:
        args += ["loss", f"{link.loss * 100:.6f}%"]
    if link.rate_bps:
        args += ["rate", f"{link.rate_bps}bit"]
    return args


def _tbf_args(link: Link) -> list[str]:
    assert link.rate_bps is not None
    burst = max(link.mtu + 14, link.rate_bps // 8 // 250)  # at least a frame, about 4 ms worth
    return ["tbf", "rate", f"{link.rate_bps}bit", "burst", str(burst), "latency", "200ms"]


class LiveNetwork:
    """A topology as network namespaces; a context manager that builds on entry and tears down on exit.

    ``with LiveNetwork(topo) as net: net.exec("alice", ["ip", "addr"])``. Teardown also runs on
    SIGINT/SIGTERM (handlers are installed while a network is open, then the signal is re-raised)
    and at interpreter exit; what a SIGKILL leaves behind is removed by the next run's
    `cleanup_stale()`.
    """

    def __init__(self, topology: Topology, run_id: str | None = None, *, direct_pairs: bool = False) -> None:
        if run_id is not None and not (
            1 <= len(run_id) <= 8 and all(c in "0123456789abcdef" for c in run_id)
        ):
            raise LiveError(f"run_id must be 1-8 lower-case hex digits, got {run_id!r}")
        self.topology = topology
        self.direct_pairs = direct_pairs
        self.run_id = run_id or secrets.token_hex(3)
        self._ip: str | None = None
        self._procs: list[subprocess.Popen] = []
        self._closers: list[Callable[[], object]] = []
        self._created: list[str] = []
        self._extra_allowed: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        self._opened = False
        self._closed = False
        self._lock = threading.RLock()

    # ---- names

    @property
    def fabric_namespace(self) -> str:
        """The namespace holding one bridge per segment."""
        return f"{PREFIX}{self.run_id}"

    def namespace(self, node: str) -> str:
        """The namespace of `node` (or of the fabric, given FABRIC)."""
        if node == FABRIC:
            return self.fabric_namespace
        self.topology.node(node)  # raises TopologyError for an unknown node
        return f"{PREFIX}{self.run_id}-{node}"

    def bridge_of(self, segment: str) -> str:
        """The bridge device of `segment` (in `fabric_namespace`)."""
        self.topology.segment(segment)
        return f"s-{segment}"

    def port_of(self, node: str, ifname: str) -> str:
        """The fabric-side veth end of `node`'s interface `ifname`."""
        n = self.topology.node(node)
        return f"{node}-{n.interfaces.index(n.interface(ifname))}"

    def members(self, segment: str) -> list[tuple[str, Interface]]:
        """(node name, interface) of every interface attached to `segment`, in topology order."""
        self.topology.segment(segment)
        return [(n.name, i) for n in self.topology.nodes for i in n.interfaces if i.segment == segment]

    def is_direct(self, segment: str) -> bool:
        """True if `segment` is built as one veth pair between its two interfaces, without a bridge.

        Only with `direct_pairs=True`, and only for segments of exactly two interfaces: for two
        ports a hub, a switch and a wire forward the same frames (except a frame addressed to its
        own sender's MAC, which a wire delivers and a switch drops), and the pair is faster.
        """
        return self.direct_pairs and len(self.members(segment)) == 2

    @property
    def namespaces(self) -> list[str]:
        return [self.fabric_namespace] + [f"{PREFIX}{self.run_id}-{n.name}" for n in self.topology.nodes]

    @property
    def state_file(self) -> Path:
        return STATE_DIR / f"{self.run_id}.json"

    # ---- addresses

    def address_of(self, node: str, ifname: str, family: int = 4) -> str:
        """The address (without prefix length) of `node`'s `ifname`, IPv4 or (family=6) IPv6."""
        iface = self.topology.node(node).interface(ifname)
        addr = iface.ipv4_interface if family == 4 else iface.ipv6_interface
        if addr is None:
            raise TopologyError(f"{node}.{ifname} has no IPv{family} address")
        return str(addr.ip)

    def mac_of(self, node: str, ifname: str) -> str:
        return self.topology.node(node).interface(ifname).mac

    def assigned_addresses(self) -> frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """Every address assigned in this run: the topology's and those added with `allow()`."""
        out: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set(self._extra_allowed)
        for node in self.topology.nodes:
            for iface in node.interfaces:
                for ifa in (iface.ipv4_interface, iface.ipv6_interface):
                    if ifa is not None:
                        out.add(ifa.ip)
        return frozenset(out)

    def broadcast_addresses(self) -> frozenset[ipaddress.IPv4Address]:
        """Limited broadcast and the directed broadcast of every IPv4 subnet of this run."""
        out = {ipaddress.IPv4Address("255.255.255.255")}
        for node in self.topology.nodes:
            for iface in node.interfaces:
                ifa = iface.ipv4_interface
                if ifa is not None and ifa.network.prefixlen < 31:
                    out.add(ifa.network.broadcast_address)
        return frozenset(out)

    def allow(self, address: str) -> None:
        """Declare an address assigned inside this run after it was built (a DHCP lease, say),
        so the injector's interlock lets packets go to it."""
        try:
            addr = ipaddress.ip_address(address)
        except ValueError as exc:
            raise LiveError(f"allow: {exc}") from None
        if addr.is_loopback or addr.is_unspecified:
            raise LiveError(f"allow: {addr} cannot be an address of a live run")
        self._extra_allowed.add(addr)

    # ---- building

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> Self:
        """Build the namespaces. On any failure, tears down what was built and re-raises."""
        if self._opened:
            raise LiveError("this LiveNetwork was already opened; make a new one")
        require_root()
        self._ip = _ip()
        self._check_tools()
        cleanup_stale()
        self._opened = True
        _OPEN.add(self)
        _install_handlers()
        try:
            self._write_state()
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _check_tools(self) -> None:
        nodes = self.topology.nodes
        if any(n.kind is NodeKind.NAT for n in nodes) and not (_tool("nft") or _tool("iptables")):
            raise LiveError("a NAT node needs `nft` (package nftables) or `iptables`; neither is installed")
        links = [i.link for n in nodes for i in n.interfaces]
        if any(lk.delay_ns or lk.loss or lk.rate_bps for lk in links) and not _tool("tc"):
            raise LiveError("link delay, rate or loss needs `tc` (iproute2), which is not installed")

    def _write_state(self) -> None:
        STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        state = {
            "pid": os.getpid(),
            "start_time": _proc_start_time(os.getpid()),
            "created": time.time(),
            "topology": self.topology.name,
            "namespaces": self.namespaces,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state_file)

    def _batch(self, netns: str | None, commands: list[str], what: str) -> None:
        if not commands:
            return
        argv = [self._ip] + (["-n", netns] if netns else []) + ["-batch", "-"]
        _run(argv, stdin="\n".join(commands) + "\n", what=what)

    def _build(self) -> None:
        ip = self._ip
        assert ip is not None
        fabric = self.fabric_namespace
        for name in self.namespaces:
            _run([ip, "netns", "add", name], what=f"ip netns add {name}")
            self._created.append(name)
        quiet = {  # no IPv6 unless the topology asks for it; no DAD delay where it does
            "net.ipv6.conf.all.accept_dad": "0",
            "net.ipv6.conf.default.accept_dad": "0",
            "net.ipv6.conf.default.disable_ipv6": "1",
        }
        _write_sysctls(fabric, {**quiet, "net.ipv6.conf.all.disable_ipv6": "1"})
        for node in self.topology.nodes:
            values = dict(quiet)
            if node.kind in (NodeKind.ROUTER, NodeKind.NAT):
                values["net.ipv4.ip_forward"] = "1"
                values["net.ipv6.conf.all.forwarding"] = "1"
            _write_sysctls(self.namespace(node.name), values)

        # The fabric: one bridge per segment, one veth pair per interface.
        cmds = []
        for seg in self.topology.segments:
            if self.is_direct(seg.name):
                (n1, i1), (n2, i2) = self.members(seg.name)
                cmds.append(
                    f"link add {i1.name} netns {self.namespace(n1)} mtu {i1.link.mtu} address {i1.mac} "
                    f"type veth peer name {i2.name} netns {self.namespace(n2)} "
                    f"mtu {i2.link.mtu} address {i2.mac}"
                )
                continue
            ageing = 0 if seg.kind is SegmentKind.HUB else 30000  # centiseconds; 0: never learn
            br = self.bridge_of(seg.name)
            cmds.append(f"link add {br} type bridge ageing_time {ageing} mcast_snooping 0 stp_state 0")
            cmds.append(f"link set {br} up")
            for node_name, iface in self.members(seg.name):
                port = self.port_of(node_name, iface.name)
                cmds.append(
                    f"link add {port} mtu {iface.link.mtu} type veth peer name {iface.name} "
                    f"mtu {iface.link.mtu} address {iface.mac} netns {self.namespace(node_name)}"
                )
                cmds.append(f"link set {port} master {br} up")
        self._batch(fabric, cmds, what="building the segments")

        for node in self.topology.nodes:
            self._build_node(node)

    def _build_node(self, node: Node) -> None:
        ns = self.namespace(node.name)
        v6 = {f"net.ipv6.conf.{i.name}.disable_ipv6": "0" for i in node.interfaces if i.ipv6}
        if v6:
            _write_sysctls(ns, v6)
        cmds = ["link set lo up"]
        for iface in node.interfaces:
            if iface.ipv4:
                cmds.append(f"addr add {iface.ipv4} dev {iface.name}")
            if iface.ipv6:
                cmds.append(f"addr add {iface.ipv6} dev {iface.name} nodad")
        if node.kind is NodeKind.BRIDGE:
            cmds.append(f"link add {_BRIDGE_NODE_DEV} type bridge mcast_snooping 0 stp_state 0")
            cmds += [f"link set {i.name} master {_BRIDGE_NODE_DEV}" for i in node.interfaces]
            cmds.append(f"link set {_BRIDGE_NODE_DEV} up")
        cmds += [f"link set {i.name} up" for i in node.interfaces]
        for route in node.routes:
            via = f" via {route.via}" if route.via else ""
            cmds.append(f"route add {ipaddress.ip_network(route.prefix)}{via} dev {route.interface}")
        self._batch(ns, cmds, what=f"configuring node {node.name}")
        for iface in node.interfaces:
            self._shape(node, iface)
        if node.kind is NodeKind.NAT:
            self._masquerade(node)

    def _shape(self, node: Node, iface: Interface) -> None:
        link = iface.link
        if not (link.delay_ns or link.loss or link.rate_bps):
            return
        qdisc = _netem_args(link) if (link.delay_ns or link.loss) else _tbf_args(link)
        # Both directions: the node's end shapes what it sends, the fabric's end what it receives.
        ends = [(self.namespace(node.name), iface.name)]
        if not self.is_direct(iface.segment):
            ends.append((self.fabric_namespace, self.port_of(node.name, iface.name)))
        for ns, dev in ends:
            proc = subprocess.run(
                [self._ip, "netns", "exec", ns, _tool("tc") or "tc", "qdisc", "replace", "dev", dev, "root"]
                + qdisc,
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
            )
            if proc.returncode != 0:
                err = proc.stderr.strip()
                if qdisc[0] == "netem" and "unknown" in err.lower():
                    raise LiveError(
                        f"link {node.name}.{iface.name} asks for delay or loss, which needs tc netem, "
                        "and this kernel has no sch_netem"
                    )
                raise LiveError(f"tc qdisc {qdisc[0]} on {node.name}.{iface.name} failed: {err}")

    def _masquerade(self, node: Node) -> None:
        ns, out = self.namespace(node.name), node.nat_outside
        nft = _tool("nft")
        if nft:
            rules = (
                "table ip threatlab {\n chain postrouting {\n"
                "  type nat hook postrouting priority srcnat; policy accept;\n"
                f'  oifname "{out}" masquerade\n }}\n}}\n'
            )
            _run([self._ip, "netns", "exec", ns, nft, "-f", "-"], stdin=rules, what=f"nft on NAT {node.name}")
            return
        iptables = _tool("iptables")
        assert iptables is not None  # _check_tools
        _run(
            [self._ip, "netns", "exec", ns, iptables, "-t", "nat", "-A", "POSTROUTING", "-o", out]
            + ["-j", "MASQUERADE"],
            what=f"iptables on NAT {node.name}",
        )

    # ---- running things inside

    def _require_open(self) -> None:
        if not self._opened or self._closed:
            raise LiveError("the LiveNetwork is not open")

    def run(self, node: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen:
        """Start `argv` inside `node`'s namespace (or FABRIC's); teardown kills it and its process group.

        Runs in a new session unless `start_new_session` is given, so teardown can kill its children.
        """
        self._require_open()
        popen_kwargs.setdefault("start_new_session", True)
        with self._lock:
            proc = subprocess.Popen([self._ip, "netns", "exec", self.namespace(node), *argv], **popen_kwargs)
            self._procs.append(proc)
        return proc

    def exec(
        self,
        node: str,
        argv: Sequence[str],
        timeout: float = 10.0,
        *,
        check: bool = False,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run `argv` inside `node`'s namespace to completion; text output is captured.

        Raises LiveError when it outlives `timeout` (it is killed) or, with `check`, when it fails.
        """
        self._require_open()
        argv = list(argv)
        try:
            done = subprocess.run(
                [self._ip, "netns", "exec", self.namespace(node), *argv],
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LiveError(f"{node}: {' '.join(argv)} did not finish within {timeout} s") from None
        if check and done.returncode != 0:
            raise LiveError(f"{node}: {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def call_in(self, node: str, fn: Callable[[], T]) -> T:
        """Call `fn()` in a thread inside `node`'s namespace (or FABRIC's); returns its result."""
        self._require_open()
        return call_in_netns(self.namespace(node), fn)

    def socket(self, node: str, family: int, type: int, proto: int = 0) -> socket.socket:
        """A socket created inside `node`'s namespace (it stays bound to it), usable from any thread.
        Teardown closes it if the caller has not."""
        sock = self.call_in(node, lambda: socket.socket(family, type, proto))
        self.on_close(sock.close)
        return sock

    def on_close(self, fn: Callable[[], object]) -> None:
        """Call `fn` at teardown, before the namespaces go (an open socket would keep its namespace
        and its interfaces alive after `ip netns del`)."""
        with self._lock:
            self._closers.append(fn)

    # ---- teardown

    def close(self) -> None:
        """Kill every process started here, then delete this run's namespaces. Idempotent."""
        with self._lock:
            if self._closed or not self._opened:
                self._closed = True
                return
            self._closed = True
        main = threading.current_thread() is threading.main_thread()
        if main:  # a SIGINT/SIGTERM during teardown waits until it is done
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            for fn in reversed(self._closers):
                try:
                    fn()
                except Exception:  # noqa: BLE001, S110 - teardown goes on regardless
                    pass
            self._closers.clear()
            self._stop_processes()
            if self._ip and self._created:
                _delete_netns(self._ip, self._created)
            self.state_file.unlink(missing_ok=True)
            self.state_file.with_suffix(".tmp").unlink(missing_ok=True)
        finally:
            _OPEN.discard(self)
            if not _OPEN:
                _restore_handlers()
            if main:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

    def _stop_processes(self, grace: float = 1.0) -> None:
        live = [p for p in self._procs if p.poll() is None]
        for proc in live:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        # Whatever is left inside the namespaces (daemons that forked away) dies with them.


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal a child we have not reaped yet (so its pid is still ours), with its group if it leads one."""
    if proc.returncode is not None:
        return
    try:
        if os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
