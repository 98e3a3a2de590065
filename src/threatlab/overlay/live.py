"""Live overlay: real peer processes speaking RELOAD over TLS inside one network namespace.

    report = run_live_overlay(n_peers=50, malicious=5, attack="drop", defenses=("redundant",))

`run_live_overlay` builds a one-node topology with `LiveNetwork` (namespace `tl-<run>-ov`), starts
`threatlab serve enrollment` there on 127.0.0.1:8443 and N peer processes (`python -m
threatlab.overlay.live peer ...`), each on its own loopback address 127.0.x.y inside that namespace
(loopback of a namespace this run created: nothing leaves it). Each peer enrolls over HTTPS (a CSR
and its user name; the service picks the Node-ID), listens for TLS on its address (port 6084,
mutual authentication with the enrollment CA's certificates, TLS 1.3) and runs the sans-IO
`OverlayPeer` on an asyncio loop: a link is a TLS connection keyed by the Node-ID in the other
end's certificate, frames are a 4-byte length and one RELOAD message.

RELOAD reaches a Node-ID it has learned with Attach/ICE; that is not modelled (see `peer`): the
coordinator hands every peer the directory Node-ID -> address once all have enrolled, and plays
the operator: it joins the peers one by one through the first, has every honest peer store its SIP
registration, switches the malicious subset on, and has honest peers fetch other peers'
registrations. Peers are driven by JSON lines on stdin and report JSON lines on stdout.

Attacks (`attack`): "drop" (malicious peers discard requests they should forward), "pollute"
(malicious, enrolled peers store forged contacts under honest users' AORs: the data pollution of
draft figure 4). Measured: fetch failure rate (a fetch that does not return the owner's contact)
and polluted fetches (one that returns a contact the owner did not register). Each malicious peer
stops sending after `budget_packets` messages; the whole run is bounded by `budget_seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from threatlab.errors import LiveError, ParamError

__all__ = ["ATTACKS", "run_live_overlay", "live_drop", "live_pollution"]

ATTACKS = ("drop", "pollute", None)
PEER_PORT = 6084  # RELOAD over TLS
ENROLL_ADDR = ("127.0.0.1", 8443)
NODE = "ov"
FORGED = "sip:attacker@198.51.100.66"  # documentation address: a contact nobody registered


def peer_address(i: int) -> str:
    """Peer i's loopback address inside the namespace: 127.0.1.1, 127.0.1.2, ... (250 per /24)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def aor_of(i: int) -> str:
    return f"sip:peer{i}@threatlab.example"


# =============================================================================== the peer process


def _live_config(defenses: list[str]):
    from threatlab.net.sim import NS_PER_MS, NS_PER_S
    from threatlab.overlay.peer import PeerConfig

    cfg = PeerConfig(
        request_timeout_ns=1500 * NS_PER_MS,
        hop_timeout_ns=700 * NS_PER_MS,
        stabilize_interval_ns=1 * NS_PER_S,
        check_predecessor_interval_ns=1 * NS_PER_S,
        fix_fingers_interval_ns=300 * NS_PER_MS,
        retries=1,
    )
    return cfg.with_defenses(defenses)


class _PeerProcess:
    def __init__(self, args: argparse.Namespace) -> None:
        from threatlab.overlay.enroll_service import live_now

        self.args = args
        self.now = live_now
        self.conns: dict[int, asyncio.StreamWriter] = {}
        self.connecting: dict[int, list[bytes]] = {}
        self.directory: dict[int, tuple[str, int]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.sent = 0
        self.budget = args.budget_packets
        self.handles: dict[int, str] = {}

    # -- output -------------------------------------------------------------------------------------

    def emit(self, **obj: Any) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    # -- setup --------------------------------------------------------------------------------------

    def enroll(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from cryptography import x509

        from threatlab.overlay.enroll_service import client_enroll
        from threatlab.overlay.enrollment import Credentials

        key = ed25519.Ed25519PrivateKey.generate()
        t0 = time.monotonic()
        ans = client_enroll(self.args.enroll, self.args.user, key, self.args.ca)
        self.enroll_s = time.monotonic() - t0
        cert = x509.load_pem_x509_certificate(ans["certificate"].encode())
        self.creds = Credentials.from_certificate(key, cert)
        self.ca_cert = x509.load_pem_x509_certificate(ans["ca"].encode())
        d = Path(self.args.workdir)
        kp, cp = d / f"peer{self.args.index}-key.pem", d / f"peer{self.args.index}.pem"
        kp.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        cp.write_bytes(ans["certificate"].encode())
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        for ctx in (self.server_ctx, self.client_ctx):
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_cert_chain(cp, kp)
            ctx.load_verify_locations(self.args.ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        self.client_ctx.check_hostname = False  # peers are named by the Node-ID in their certificate

    def make_peer(self) -> None:
        from threatlab.overlay.peer import DROP, OverlayPeer

        outer = self

        class LivePeer(OverlayPeer):
            def choose_next_hop(self, key: int, skip: int):
                if outer.args.role == "drop" and outer.attacking:
                    return DROP
                return self.route_next(key, skip)

        self.attacking = False
        cfg = _live_config([d for d in self.args.defenses.split(",") if d])
        self.peer = LivePeer(
            self.creds.node_id, cfg, random.Random(self.creds.node_id), self.creds, ca=self.ca_cert
        )

    # -- links --------------------------------------------------------------------------------------

    @staticmethod
    def _peer_node_id(writer: asyncio.StreamWriter) -> int | None:
        from cryptography import x509

        from threatlab.overlay.enrollment import _cert_fields

        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj else None
        if not der:
            return None
        info = _cert_fields(x509.load_der_x509_certificate(der))
        return info[0][0] if info and info[0] else None

    async def on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nid = self._peer_node_id(writer)
        if nid is None:
            writer.close()
            return
        self.conns.setdefault(nid, writer)
        await self.read_loop(nid, reader, writer)

    async def read_loop(self, nid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                n = int.from_bytes(await reader.readexactly(4), "big")
                data = await reader.readexactly(n)
                self.peer.receive(data, nid, self.now())
                self.flush()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            if self.conns.get(nid) is writer:
                del self.conns[nid]
            writer.close()

    async def connect(self, nid: int) -> None:
        addr = self.directory.get(nid)
        try:
            if addr is None:
                raise OSError("unknown Node-ID")
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(addr[0], addr[1], ssl=self.client_ctx, local_addr=(self.args.addr, 0)),
                timeout=3,
            )
            if self._peer_node_id(writer) != nid:  # the certificate must name the Node-ID we dialled
                writer.close()
                raise OSError("certificate names another Node-ID")
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            self.connecting.pop(nid, None)  # the peer's request timeout notices
            return
        queued = self.connecting.pop(nid, [])
        self.conns[nid] = writer
        for data in queued:
            writer.write(len(data).to_bytes(4, "big") + data)
        asyncio.ensure_future(self.read_loop(nid, reader, writer))

    def send(self, dst: int, data: bytes) -> None:
        if self.attacking and self.args.role != "honest":
            if self.sent >= self.budget:
                return
            self.sent += 1
        w = self.conns.get(dst)
        if w is not None and not w.is_closing():
            w.write(len(data).to_bytes(4, "big") + data)
            return
        if dst in self.connecting:
            self.connecting[dst].append(data)
            return
        self.connecting[dst] = [data]
        asyncio.ensure_future(self.connect(dst))

    # -- the sans-IO driver ---------------------------------------------------------------------------

    def flush(self) -> None:
        from threatlab.overlay.enrollment import NS
        from threatlab.overlay.peer import FetchDone, Joined, JoinFailed, LookupDone, StoreDone

        now = self.now()
        for dst, data in self.peer.datagrams_to_send(now):
            self.send(dst, data)
        for ev in self.peer.events():
            if isinstance(ev, Joined):
                self.emit(ev="joined", successor=f"{ev.successor:032x}")
            elif isinstance(ev, JoinFailed):
                self.emit(ev="join-failed", reason=ev.reason)
            elif isinstance(ev, StoreDone):
                self.emit(ev="stored", tag=self.handles.pop(ev.handle, ""), ok=ev.ok, reason=ev.reason)
            elif isinstance(ev, FetchDone):
                self.emit(
                    ev="fetched",
                    tag=self.handles.pop(ev.handle, ""),
                    ok=ev.ok,
                    contacts=[c for _, c in ev.contacts],
                    reason=ev.reason,
                )
            elif isinstance(ev, LookupDone):
                if ev.handle in self.handles:
                    self.emit(ev="looked-up", tag=self.handles.pop(ev.handle), ok=ev.ok, hops=ev.hops)
        deadline = self.peer.next_timer()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if deadline is not None:
            delay = max(0.0, (deadline - now) / NS)
            self.timer = asyncio.get_running_loop().call_later(delay, self.on_timer)

    def on_timer(self) -> None:
        self.timer = None
        self.peer.handle_timer(self.now())
        self.flush()

    def command(self, cmd: dict) -> None:
        now = self.now()
        c = cmd.get("cmd")
        if c == "dir":
            self.directory = {int(k, 16): (a, p) for k, (a, p) in cmd["peers"].items()}
        elif c == "join":
            self.peer.join(int(cmd["bootstrap"], 16), now)
        elif c == "store":
            self.handles[self.peer.store(cmd["aor"], cmd["contact"], now)] = cmd.get("tag", "")
        elif c == "fetch":
            self.handles[self.peer.fetch(cmd["aor"], now)] = cmd.get("tag", "")
        elif c == "attack":
            self.attacking = True
        elif c == "stats":
            p = self.peer
            self.emit(
                ev="stats",
                state=p.state.value,
                successors=len(p.successors),
                drops=dict(p.drops),
                counters=dict(p.counters),
                attacker_sent=self.sent,
                stored=len(list(p.storage.resources())),
            )
        elif c == "quit":
            self.stop.set()
        self.flush()

    async def main(self) -> int:
        self.stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.enroll()
        self.make_peer()
        server = await asyncio.start_server(
            self.on_accept, self.args.addr, PEER_PORT, ssl=self.server_ctx, backlog=256
        )

        def read_stdin() -> None:
            for line in sys.stdin:
                try:
                    cmd = json.loads(line)
                except ValueError:
                    continue
                loop.call_soon_threadsafe(self.command, cmd)
            loop.call_soon_threadsafe(self.stop.set)

        threading.Thread(target=read_stdin, daemon=True).start()
        self.emit(
            ev="ready",
            node_id=f"{self.creds.node_id:032x}",
            addr=self.args.addr,
            port=PEER_PORT,
            enroll_s=round(self.enroll_s, 4),
        )
        await self.stop.wait()
        server.close()
        for w in list(self.conns.values()):
            w.close()
        return 0


def _peer_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m threatlab.overlay.live peer")
    ap.add_argument("--index", type=int, required=True)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--enroll", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--role", choices=("honest", "drop", "pollute"), default="honest")
    ap.add_argument("--defenses", default="")
    ap.add_argument("--budget-packets", type=int, default=10_000)
    args = ap.parse_args(argv)
    proc = _PeerProcess(args)
    try:
        return asyncio.run(proc.main())
    except Exception as e:  # noqa: BLE001 - one line for the coordinator
        proc.emit(ev="error", error=f"{type(e).__name__}: {e}")
        return 1


# =============================================================================== the coordinator


class _Peers:
    """The coordinator's view of the peer processes: their stdin, and one queue of (index, event)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.events: queue.Queue = queue.Queue()
        self.info: dict[int, dict] = {}

    def add(self, proc: subprocess.Popen) -> None:
        i = len(self.procs)
        self.procs.append(proc)

        def pump() -> None:
            for line in proc.stdout:
                try:
                    self.events.put((i, json.loads(line)))
                except ValueError:
                    continue

        threading.Thread(target=pump, daemon=True).start()

    def send(self, i: int, **cmd: Any) -> None:
        try:
            self.procs[i].stdin.write(json.dumps(cmd) + "\n")
            self.procs[i].stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def wait(self, want, count: int, deadline: float) -> list[tuple[int, dict]]:
        """Collect `count` events for which want(i, ev) holds, until `deadline` (monotonic)."""
        got: list[tuple[int, dict]] = []
        while len(got) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                i, ev = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if ev.get("ev") == "error":
                raise LiveError(f"overlay peer {i}: {ev['error']}")
            if want(i, ev):
                got.append((i, ev))
        return got


def _wait_listening(proc: subprocess.Popen, deadline: float) -> None:
    lines: list[str] = []

    def pump() -> None:
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    while time.monotonic() < deadline:
        if any("listening on" in x for x in lines):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise LiveError("the enrollment service did not start: " + " ".join("".join(lines).split())[-300:])


def run_live_overlay(
    n_peers: int = 50,
    *,
    malicious: int = 0,
    attack: str | None = None,
    defenses: tuple[str, ...] | list[str] = (),
    fetches_per_peer: int = 4,
    seed: int = 0,
    budget_packets: int = 10_000,
    budget_seconds: float = 60.0,
    settle_s: float = 2.0,
) -> dict[str, Any]:
    """Run the live overlay once; a dict of measurements (see the module docstring). Needs root."""
    from threatlab.live.namespaces import LiveNetwork, require_root
    from threatlab.net.topology import Node, Topology
    from threatlab.overlay.peer import DEFENSES

    if attack not in ATTACKS:
        raise ParamError(f"attack={attack!r}: allowed: drop, pollute, None")
    if not 2 <= n_peers <= 1000:
        raise ParamError(f"n_peers={n_peers}: allowed: 2..1000")
    if not 0 <= malicious < n_peers:
        raise ParamError(f"malicious={malicious}: allowed: 0..n_peers-1")
    for d in defenses:
        if d not in DEFENSES:
            raise ParamError(f"unknown defense {d!r}; allowed: {', '.join(sorted(DEFENSES))}")
    require_root()
    t_start = time.monotonic()
    hard_deadline = t_start + budget_seconds
    rng = random.Random(seed)
    # peer 0 is the bootstrap and honest; the malicious subset is drawn from the rest
    bad = set(rng.sample(range(1, n_peers), malicious)) if attack else set()
    role = {i: (attack if i in bad else "honest") for i in range(n_peers)}
    honest = [i for i in range(n_peers) if i not in bad]
    work = Path(tempfile.mkdtemp(prefix="tl-overlay-"))
    os.chmod(work, 0o700)
    topo = Topology(segments=(), nodes=(Node(NODE, ()),), name="overlay-live")
    py = sys.executable
    report: dict[str, Any] = {"peers": n_peers, "malicious": len(bad), "attack": attack or "none",
                              "defenses": ",".join(sorted(defenses)) or "none"}
    try:
        with LiveNetwork(topo) as net:
            report["namespace"] = net.namespace(NODE)
            # -- the enrollment service
            ca_dir = work / "ca"
            svc = net.run(
                NODE,
                [py, "-m", "threatlab.cli", "serve", "enrollment", "--listen", "%s:%d" % ENROLL_ADDR,
                 "--ca-dir", str(ca_dir), "--issuance-limit", "1", "--quiet"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            _wait_listening(svc, min(hard_deadline, time.monotonic() + 20))
            url = "https://%s:%d" % ENROLL_ADDR
            # -- the peers
            t_spawn = time.monotonic()
            peers = _Peers()
            for i in range(n_peers):
                argv = [py, "-m", "threatlab.overlay.live", "peer", "--index", str(i), "--addr", peer_address(i),
                        "--user", f"peer{i}@threatlab.example", "--enroll", url, "--ca", str(ca_dir / "ca.pem"),
                        "--workdir", str(work), "--role", role[i], "--defenses", ",".join(defenses),
                        "--budget-packets", str(budget_packets)]
                peers.add(net.run(NODE, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True, bufsize=1))
            ready = peers.wait(lambda i, ev: ev.get("ev") == "ready", n_peers, min(hard_deadline, t_spawn + 60))
            if len(ready) < n_peers:
                raise LiveError(f"only {len(ready)} of {n_peers} overlay peers enrolled and listened in time")
            for i, ev in ready:
                peers.info[i] = ev
            report["startup_s"] = round(time.monotonic() - t_spawn, 2)
            report["enroll_ms_median"] = round(
                1000 * sorted(ev["enroll_s"] for _, ev in ready)[n_peers // 2], 1
            )
            directory = {ev["node_id"]: [ev["addr"], ev["port"]] for ev in peers.info.values()}
            for i in range(n_peers):
                peers.send(i, cmd="dir", peers=directory)
            # -- join one by one through peer 0
            t_join = time.monotonic()
            boot = peers.info[0]["node_id"]
            peers.send(0, cmd="join", bootstrap=boot)
            joined = 1 if peers.wait(lambda i, ev: i == 0 and ev["ev"] == "joined", 1, hard_deadline) else 0
            for i in range(1, n_peers):
                peers.send(i, cmd="join", bootstrap=boot)
                ok = peers.wait(lambda j, ev, i=i: j == i and ev["ev"] in ("joined", "join-failed"), 1,
                                min(hard_deadline, time.monotonic() + 10))
                joined += bool(ok and ok[0][1]["ev"] == "joined")
            report["joined"] = joined
            report["join_s"] = round(time.monotonic() - t_join, 2)
            time.sleep(max(0.0, min(settle_s, hard_deadline - time.monotonic())))
            # -- every honest peer registers itself
            for i in honest:
                peers.send(i, cmd="store", aor=aor_of(i), contact=f"sip:peer{i}@{peer_address(i)}", tag=str(i))
            stored = peers.wait(lambda i, ev: ev["ev"] == "stored", len(honest),
                                min(hard_deadline, time.monotonic() + 15))
            report["stores_ok"] = sum(ev["ok"] for _, ev in stored)
            report["stores"] = len(honest)
            # -- the attack
            t_attack = time.monotonic()
            for i in bad:
                peers.send(i, cmd="attack")
            if attack == "pollute":
                victims = honest
                forged = 0
                for k, i in enumerate(sorted(bad)):
                    for v in victims[k::len(bad)]:
                        peers.send(i, cmd="store", aor=aor_of(v), contact=FORGED, tag=f"forged {v}")
                        forged += 1
                got = peers.wait(lambda i, ev: ev["ev"] == "stored" and ev["tag"].startswith("forged"), forged,
                                 min(hard_deadline, time.monotonic() + 15))
                report["forged_stores_accepted"] = sum(ev["ok"] for _, ev in got)
                report["forged_stores"] = forged
            # -- honest peers fetch other honest peers' registrations
            asked = 0
            want_contact: dict[tuple[int, str], str] = {}
            for i in honest:
                others = [v for v in honest if v != i]
                for v in rng.sample(others, min(fetches_per_peer, len(others))):
                    tag = f"{v}"
                    peers.send(i, cmd="fetch", aor=aor_of(v), tag=tag)
                    want_contact[(i, tag)] = f"sip:peer{v}@{peer_address(v)}"
                    asked += 1
            got = peers.wait(lambda i, ev: ev["ev"] == "fetched", asked, min(hard_deadline, time.monotonic() + 20))
            failed = polluted = 0
            answered = set()
            for i, ev in got:
                answered.add((i, ev["tag"]))
                contacts = ev["contacts"]
                if not ev["ok"] or want_contact[(i, ev["tag"])] not in contacts:
                    failed += 1
                if any(c != want_contact[(i, ev["tag"])] for c in contacts):
                    polluted += 1
            failed += asked - len(answered)  # no answer before the deadline
            report["fetches"] = asked
            report["fetch_failure_rate"] = round(failed / asked, 4) if asked else 0.0
            report["polluted_fetch_rate"] = round(polluted / asked, 4) if asked else 0.0
            report["attack_s"] = round(time.monotonic() - t_attack, 2)
            # -- counters
            for i in range(n_peers):
                peers.send(i, cmd="stats")
            stats = peers.wait(lambda i, ev: ev["ev"] == "stats", n_peers, min(hard_deadline, time.monotonic() + 5))
            drops: dict[str, int] = {}
            for _i, ev in stats:
                for k, v in ev["drops"].items():
                    drops[k] = drops.get(k, 0) + v
            report["attacker_messages"] = sum(ev["attacker_sent"] for i, ev in stats if i in bad)
            report["drops"] = drops
            report["success_rate"] = (
                report["polluted_fetch_rate"] if attack == "pollute" else report["fetch_failure_rate"]
            )
            for i in range(n_peers):
                peers.send(i, cmd="quit")
            for p in peers.procs:
                try:
                    p.wait(timeout=max(0.1, min(2.0, hard_deadline + 5 - time.monotonic())))
                except subprocess.TimeoutExpired:
                    pass
            svc.terminate()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["wall_s"] = round(time.monotonic() - t_start, 2)
    return report


# =============================================================================== catalogue hooks


def _defenses(defenses) -> tuple[str, ...]:
    from threatlab.overlay.peer import DEFENSES

    return tuple(d for d in sorted(defenses) if d in DEFENSES)


def live_drop(params, defenses, *, budget_packets: int, budget_seconds: float) -> dict:
    """Forwarding attack (draft figure 6, drop): a malicious subset of the live peers discards what
    it should forward; fetch failure rate with and without the defenses. Params: peers (50),
    malicious_fraction (0.2)."""
    n = int(params.get("peers", params.get("n_peers", 50)))
    m = round(n * float(params.get("malicious_fraction", 0.2)))
    return run_live_overlay(n, malicious=m, attack="drop", defenses=_defenses(defenses),
                            budget_packets=budget_packets, budget_seconds=budget_seconds,
                            seed=int(params.get("seed", 0)))


def live_pollution(params, defenses, *, budget_packets: int, budget_seconds: float) -> dict:
    """Data pollution (draft figure 4): enrolled malicious peers store forged contacts under honest
    users' AORs; share of fetches that return a forged contact (the `signatures` defense checks
    USER-MATCH / USER-NODE-MATCH end to end). Params: peers (50), malicious_fraction (0.1)."""
    n = int(params.get("peers", params.get("n_peers", 50)))
    m = max(1, round(n * float(params.get("malicious_fraction", 0.1))))
    return run_live_overlay(n, malicious=m, attack="pollute", defenses=_defenses(defenses),
                            budget_packets=budget_packets, budget_seconds=budget_seconds,
                            seed=int(params.get("seed", 0)))



if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "peer":
        sys.exit(_peer_main(sys.argv[2:]))
    print("usage: python -m threatlab.overlay.live peer --index I --addr A ...", file=sys.stderr)
    sys.exit(2)
