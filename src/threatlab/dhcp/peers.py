"""Real DHCPv4 peers in the namespaces of a `LiveNetwork`: servers (dnsmasq, Kea, `threatlab serve
dhcp`) and clients (udhcpc, dhcpcd, dhclient), each with every file it writes under a directory of
the caller's, never the host's (no pid file in /run, no lease in /var/lib, no /etc/resolv.conf).

Shared by the live threats (`threatlab.dhcp.live`), the real-client tests and the DHCP benchmark.

- dnsmasq 2.90: `dnsmasq -k -C FILE`, `port=0` (no DNS), `bind-interfaces`, its lease file, pid file
  and log in the directory. By default it pings an address before offering it.
- Kea 2.2: `kea-dhcp4 -c kea.json` with KEA_PIDFILE_DIR/KEA_LOCKFILE_DIR in the directory, raw
  sockets, memfile with `persist: true`; its CSV is append-only (the last row of an address wins).
- `python -m threatlab serve dhcp`, leases in SQLite.
- Clients run in the foreground with a hook script that only sets the address (never the stock one);
  dhcpcd, whose database and run directory are fixed at build time, gets directories of ours
  bind-mounted over them inside the private mount namespace `ip netns exec` makes per command.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from threatlab.errors import LiveError

__all__ = [
    "CLIENTS",
    "Client",
    "dhcpcd_isolated",
    "dnsmasq_leases",
    "kea_leases",
    "start_client",
    "start_dnsmasq",
    "start_kea",
    "start_threatlab",
    "stop",
    "threatlab_leases",
    "tool",
    "wait_for",
]


def tool(name: str) -> str | None:
    """The path of an executable, also in /usr/sbin and /sbin (not on a non-root PATH)."""
    return shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/sbin") if os.access(p := f"{d}/{name}", os.X_OK)), None)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something true (returned) or `timeout` s pass (LiveError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LiveError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL after `timeout` s; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _log(net: Any, path: Path):
    out = path.open("w")
    net.on_close(out.close)
    return out


# --------------------------------------------------------------------------- servers


def start_dnsmasq(net: Any, node: str, d: Path, *, iface: str, first: str, last: str, netmask: str,
                  lease_time: int, lease_max: int | None = None, ping: bool = True, quiet: bool = False,
                  extra: Sequence[str] = ()) -> subprocess.Popen:
    """dnsmasq serving `first`-`last` on `iface` of `node`; its files in `d` (dnsmasq.leases, .log)."""
    d.mkdir(parents=True, exist_ok=True)
    lines = ["port=0", f"interface={iface}", "bind-interfaces", "user=root", "dhcp-authoritative",
             f"dhcp-range={first},{last},{netmask},{lease_time}", f"dhcp-leasefile={d / 'dnsmasq.leases'}",
             f"pid-file={d / 'dnsmasq.pid'}", f"log-facility={d / 'dnsmasq.log'}"]
    if not ping:
        lines.append("no-ping")
    if lease_max is not None:
        lines.append(f"dhcp-lease-max={lease_max}")
    if quiet:
        lines.append("quiet-dhcp")
    (d / "dnsmasq.conf").write_text("\n".join([*lines, *extra, ""]))
    binary = tool("dnsmasq")
    if binary is None:
        raise LiveError("dnsmasq is not installed (Debian: dnsmasq-base)")
    return net.run(node, [binary, "-k", "-C", str(d / "dnsmasq.conf")],
                   stdout=subprocess.DEVNULL, stderr=_log(net, d / "dnsmasq.err"))


def dnsmasq_leases(d: Path) -> dict[IPv4Address, str]:
    """dnsmasq's lease file (rewritten whole on every change): address -> MAC."""
    path = d / "dnsmasq.leases"
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            f = line.split()
            if len(f) >= 3:
                out[IPv4Address(f[2])] = f[1].lower()
    return out


def start_kea(net: Any, node: str, d: Path, *, iface: str, subnet: str, first: str, last: str,
              lease_time: int, quiet: bool = False, pool_class: str | None = None,
              reservations: Iterable[dict] = ()) -> subprocess.Popen:
    """kea-dhcp4 serving `first`-`last` of `subnet` on `iface`; its files in `d` (kea-leases4.csv,
    kea.log). `pool_class` restricts the pool to a client class (e.g. KNOWN: hosts with a
    reservation in `reservations`)."""
    d.mkdir(parents=True, exist_ok=True)
    pool: dict[str, Any] = {"pool": f"{first} - {last}"}
    if pool_class:
        pool["client-class"] = pool_class
    sub: dict[str, Any] = {"id": 1, "subnet": subnet, "pools": [pool]}
    reservations = list(reservations)
    if reservations:
        sub["reservations"] = reservations
    conf = {"Dhcp4": {
        "interfaces-config": {"interfaces": [iface], "dhcp-socket-type": "raw"},
        "lease-database": {"type": "memfile", "persist": True, "name": str(d / "kea-leases4.csv"),
                           "lfc-interval": 0},
        "valid-lifetime": lease_time, "renew-timer": lease_time // 2, "rebind-timer": lease_time * 7 // 8,
        "multi-threading": {"enable-multi-threading": False},
        "subnet4": [sub],
        "loggers": [{"name": "kea-dhcp4", "severity": "WARN" if quiet else "INFO",
                     "output_options": [{"output": str(d / "kea.log")}]}],
    }}
    (d / "kea.json").write_text(json.dumps(conf, indent=1))
    binary = tool("kea-dhcp4")
    if binary is None:
        raise LiveError("kea-dhcp4 is not installed (Debian: kea-dhcp4-server)")
    env = {**os.environ, "KEA_PIDFILE_DIR": str(d), "KEA_LOCKFILE_DIR": str(d)}
    return net.run(node, [binary, "-c", str(d / "kea.json")],
                   stdout=subprocess.DEVNULL, stderr=_log(net, d / "kea.err"), env=env)


def kea_leases(d: Path) -> dict[IPv4Address, str]:
    """Kea's CSV is append-only: the last row of an address wins; address -> MAC of the valid ones
    (state 0, default, with a lifetime and not yet expired)."""
    last: dict[str, list[str]] = {}
    for path in sorted(d.glob("kea-leases4.csv*")):
        for line in path.read_text().splitlines()[1:]:
            row = line.split(",")
            if len(row) > 9:
                last[row[0]] = row
    now = time.time()
    return {IPv4Address(a): row[1].lower() for a, row in last.items()
            if row[9] == "0" and int(row[3] or 0) > 0 and int(row[4] or 0) > now}


def start_threatlab(net: Any, node: str, d: Path, *, iface: str, first: str, last: str, lease_time: int,
                    db: Path | None = None, sync: str | None = None, quiet: bool = False,
                    extra: Sequence[str] = (), log_name: str = "threatlab.log",
                    ready_timeout: float | None = None) -> subprocess.Popen:
    """`python -m threatlab serve dhcp` in `node`; its log in d/`log_name`, leases in `db`
    (default d/leases.sqlite). With `ready_timeout`, waits for "serving DHCP on IF" in the log."""
    d.mkdir(parents=True, exist_ok=True)
    log = d / log_name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    argv = [sys.executable, "-m", "threatlab", "serve", "dhcp", "--interface", iface,
            "--pool", f"{first}-{last}", "--lease-time", str(lease_time),
            "--lease-db", str(db or d / "leases.sqlite")]
    if sync:
        argv += ["--sync", sync]
    if quiet:
        argv.append("--quiet")
    proc = net.run(node, [*argv, *extra], stdout=_log(net, log), stderr=subprocess.STDOUT, env=env)
    if ready_timeout is not None:
        wait_for(lambda: f"serving DHCP on {iface}" in log.read_text() or proc.poll() is not None,
                 ready_timeout, "threatlab serve dhcp to start")
        if proc.poll() is not None:
            raise LiveError(f"threatlab serve dhcp exited {proc.returncode}: {log.read_text()[-2000:]}")
    return proc


def threatlab_leases(db: Path) -> dict[IPv4Address, str]:
    """Bound leases in threatlab's SQLite store: address -> MAC."""
    from threatlab.dhcp.leases import LeaseState, LeaseStore

    if not db.exists():
        return {}
    with LeaseStore(db) as store:
        return {lease.address: ":".join(f"{b:02x}" for b in lease.chaddr[:6])
                for lease in store if lease.state is LeaseState.BOUND}


# --------------------------------------------------------------------------- clients


@dataclass(frozen=True)
class Client:
    name: str
    binary: str
    argv: Callable[[Path, str], list[str]]  # (its directory, binary path) -> the command, in the foreground
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


def dhcpcd_isolated(d: Path, argv: list[str]) -> list[str]:
    """`argv` (a dhcpcd command) with d/db over /var/lib/dhcpcd and d/run over /run/dhcpcd, mounted
    in the private mount namespace of the one command (`ip netns exec` makes one per command)."""
    for sub in ("db", "run"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    return ["sh", "-c", 'mount --bind "$1" /var/lib/dhcpcd && mount --bind "$2" /run/dhcpcd && shift 2 && exec "$@"',
            "sh", str(d / "db"), str(d / "run"), *argv]


def dhcpcd_argv(d: Path, binary: str, conf: str = "", timeout: int = 30, iface: str = "eth0") -> list[str]:
    (d / "dhcpcd.conf").write_text("noipv4ll\nnoarp\n" + conf)
    return dhcpcd_isolated(d, [binary, "-f", str(d / "dhcpcd.conf"), "-c", str(d / "hook.sh"), "-4", "-B", "-d",
                               "-t", str(timeout), iface])


def dhclient_argv(d: Path, binary: str, iface: str = "eth0") -> list[str]:
    (d / "dhclient.conf").write_text("")
    return [binary, "-4", "-d", "-v", "-cf", str(d / "dhclient.conf"), "-sf", str(d / "hook.sh"),
            "-lf", str(d / "dhclient.leases"), "-pf", str(d / "dhclient.pid"), iface]


def udhcpc_argv(d: Path, binary: str, tries: int = 10, iface: str = "eth0", quit_on_failure: bool = False) -> list[str]:
    return [binary, "-f", "-i", iface, "-s", str(d / "hook.sh"), "-p", str(d / "udhcpc.pid"),
            "-t", str(tries), "-T", "2", "-A", "2"] + (["-n"] if quit_on_failure else [])


CLIENTS = {
    "dhcpcd": Client("dhcpcd", "dhcpcd", lambda d, b: dhcpcd_argv(d, b), DHCPCD_HOOK),
    "dhclient": Client("dhclient", "dhclient", lambda d, b: dhclient_argv(d, b), DHCLIENT_HOOK),
    "udhcpc": Client("udhcpc", "udhcpc", lambda d, b: udhcpc_argv(d, b), UDHCPC_HOOK),
}


def start_client(net: Any, node: str, client: Client, d: Path) -> subprocess.Popen:
    """Run `client` in `node`, its files and log (client.log) in `d`. LiveError if it is not installed."""
    binary = tool(client.binary)
    if binary is None:
        raise LiveError(f"{client.binary} is not installed")
    d.mkdir(parents=True, exist_ok=True)
    hook = d / "hook.sh"
    hook.write_text(client.hook)
    hook.chmod(0o755)
    return net.run(node, client.argv(d, binary), stdout=_log(net, d / "client.log"), stderr=subprocess.STDOUT)


def address_of(net: Any, node: str, iface: str = "eth0", prefix: int | None = None) -> IPv4Address | None:
    """The first IPv4 address on `iface` of `node` (with prefix length `prefix`, if given)."""
    out = net.exec(node, ["ip", "-4", "-o", "addr", "show", "dev", iface]).stdout
    plen = r"\d+" if prefix is None else str(prefix)
    m = re.search(rf"inet (\d+\.\d+\.\d+\.\d+)/{plen}", out)
    return IPv4Address(m.group(1)) if m else None


def netmask(subnet: str) -> str:
    return str(IPv4Network(subnet).netmask)
