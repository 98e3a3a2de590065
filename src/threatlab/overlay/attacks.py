"""Adversaries for the data-level threats of draft-song-p2psip-security-eval-00 (figure 4, figure 6),
built on the message-level engine (`peer`, `simnet`): every attack is real Store / Fetch messages,
encoded by `wire`, carried by `OverlayNet`, judged by the peers' own storage and signature checks.

    world = DataWorld.build(rng, n=200, defenses={"signatures"})
    world.register_all()                             # honest users store their SIP registrations
    h = forged_store(world.attacker, aor, key_node=victim.node_id, contact="sip:evil@203.0.113.66", ...)
    done = world.fetch(querier, aor)                 # FetchDone: what an honest caller believes

The attackers:
- `forged_store`: an insider peer writes any value under any Resource-ID and dictionary key: an
  overwrite or removal of somebody else's registration (unauthorized data operation), a fake object
  next to the real one (pollution), a contact pointing at a third party (flooding), many values
  (spam), or a captured, victim-signed old value sent again (replay).
- `hijack_node_id`: a node that takes over a victim's Node-ID with a self-signed certificate once the
  victim is offline, receives its traffic and rewrites its registration (ID hijack).
- `Tamperer`: whoever sits on a link (the man in the middle between a client and its peer, or a
  malicious forwarding peer) rewrites the contact URIs of the datagrams it passes, keeping lengths.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from threatlab.net.sim import NS_PER_S, Simulator
from threatlab.overlay import ids
from threatlab.overlay.enrollment import Credentials, EnrollmentConfig, EnrollmentServer, sign_stored_data
from threatlab.overlay.peer import FetchDone, OverlayPeer, PeerConfig, State, StoreDone, _Op
from threatlab.overlay.simnet import OverlayNet, converged_overlay
from threatlab.overlay.storage import aor_resource_id, sip_registration_value, storage_time_ms
from threatlab.overlay.wire import (
    SIP_REGISTRATION,
    DataValue,
    DictionaryEntry,
    GenericCertificate,
    ResourceDest,
    StoredData,
    StoreKindData,
    StoreReq,
)

__all__ = ["DataWorld", "Tamperer", "forged_store", "hijack_node_id", "contact_for", "evil_contact"]

SETTLE_NS = 5 * NS_PER_S  # long enough for any Store/Fetch (3 s request timeout) to finish


def contact_for(k: int) -> str:
    return f"sip:u{k:05d}@10.0.{k // 250}.{k % 250 + 1}"


def evil_contact(k: int) -> str:
    """Same length as `contact_for(k)`: a man in the middle can swap one for the other in place."""
    return f"sip:e{k:05d}@66.6.{k // 250}.{k % 250 + 1}"[: len(contact_for(k))].ljust(len(contact_for(k)), "9")


@dataclass
class DataWorld:
    """A converged overlay whose peers are registered users; the defenses are PeerConfig switches."""

    sim: Simulator
    net: OverlayNet
    config: PeerConfig
    server: EnrollmentServer | None
    peers: list[OverlayPeer]  # sorted by Node-ID
    aor: dict[int, str] = field(default_factory=dict)  # Node-ID -> its user's AOR
    index: dict[int, int] = field(default_factory=dict)  # Node-ID -> k (its contact_for(k))

    @classmethod
    def build(
        cls, rng: random.Random, n: int, defenses, publication_limit: int = 10, **cfg
    ) -> DataWorld:
        sim = Simulator(rng.getrandbits(63))
        config = PeerConfig(maintenance=False, **cfg).with_defenses(sorted(defenses), publication_limit)
        server = None
        if config.signatures or config.enrollment:
            server = EnrollmentServer(EnrollmentConfig(overlay=config.overlay, issuance_limit=None), rng)
        net = converged_overlay(sim, n, config, enrollment=server)
        peers = sorted(net.peers(), key=lambda p: p.node_id)
        w = cls(sim, net, config, server, peers)
        for k, p in enumerate(peers):
            user = p.credentials.user if p.credentials else f"u{p.node_id:032x}@threatlab.example"
            w.aor[p.node_id] = f"sip:{user}"
            w.index[p.node_id] = k
        return w

    def settle(self) -> None:
        self.net.run_for(SETTLE_NS)

    def register_all(self) -> None:
        """Every user stores its registration (AOR -> its contact) from its own peer."""
        for p in self.peers:
            p.store(self.aor[p.node_id], contact_for(self.index[p.node_id]), self.sim.now)
            self.net.service(p)
        self.settle()

    def fetch(self, querier: OverlayPeer, aor: str) -> FetchDone | None:
        start = len(self.net.events)
        h = querier.fetch(aor, self.sim.now)
        self.net.service(querier)
        self.settle()
        return _event(self.net, start, querier.node_id, h, FetchDone)

    def fetch_many(self, queries: list[tuple[OverlayPeer, str]]) -> list[FetchDone | None]:
        """Fetches issued together (one settle for all)."""
        start = len(self.net.events)
        handles = []
        for q, aor in queries:
            handles.append((q.node_id, q.fetch(aor, self.sim.now)))
            self.net.service(q)
        self.settle()
        got = {(nid, ev.handle): ev for _, nid, ev in self.net.events[start:] if type(ev) is FetchDone}
        return [got.get(k) for k in handles]

    def responsible(self, rid: int) -> OverlayPeer:
        import bisect

        ring = [p.node_id for p in self.peers]
        return self.peers[bisect.bisect_left(ring, rid) % len(ring)]

    def peer_not_responsible_for(self, rid: int, rng: random.Random, exclude=()) -> OverlayPeer:
        root = self.responsible(rid)
        while True:
            p = rng.choice(self.peers)
            if p is not root and p.node_id not in exclude and p.state is State.JOINED:
                return p

    def stored_values(self) -> list[int]:
        return [len(p.storage) for p in self.peers]


def _event(net: OverlayNet, start: int, nid: int, handle: int, kind):
    for _, who, ev in net.events[start:]:
        if who == nid and type(ev) is kind and ev.handle == handle:
            return ev
    return None


def registration(
    aor: str, key_node: int, contact: str, storage_time: int, creds: Credentials | None, lifetime: int = 3600,
    exists: bool = True,
) -> StoredData:
    """A SIP-REGISTRATION value under dictionary key `key_node`, signed by `creds` when given."""
    rid = aor_resource_id(aor)
    value = DictionaryEntry(ids.to_bytes(key_node), DataValue(exists, sip_registration_value(contact)))
    if creds is not None:
        return sign_stored_data(rid, SIP_REGISTRATION, storage_time, lifetime, value, creds)
    return StoredData(storage_time, lifetime, value)


def forged_store(
    attacker: OverlayPeer,
    aor: str,
    values: tuple[StoredData, ...],
    now: int,
    certificates: tuple[GenericCertificate, ...] = (),
) -> int:
    """The attacker routes a Store of `values` for `aor` as an ordinary peer does (StoreDone follows).
    `certificates` travel with it (a replayed value needs its real signer's certificate)."""
    rid = aor_resource_id(aor)
    body = StoreReq(rid, 0, (StoreKindData(SIP_REGISTRATION, 0, values),))
    op = _Op(next(attacker._handles), "store", rid, body, aor=aor)
    attacker._ops[op.handle] = op
    first = attacker.route_next(rid, 0)
    op.outstanding += 1
    op.messages += 1
    own = (attacker.credentials.generic_certificate,) if attacker.credentials is not None else ()
    attacker._request(first, (ResourceDest(rid),), body, now, "op", op=op, extra_certs=own + tuple(certificates))
    return op.handle


def store_and_wait(world: DataWorld, attacker: OverlayPeer, aor: str, values, certificates=()) -> StoreDone | None:
    start = len(world.net.events)
    h = forged_store(attacker, aor, tuple(values), world.sim.now, tuple(certificates))
    world.net.service(attacker)
    world.settle()
    return _event(world.net, start, attacker.node_id, h, StoreDone)


def hijack_node_id(world: DataWorld, victim: OverlayPeer, rng: random.Random) -> OverlayPeer:
    """The victim goes offline; the attacker comes up under its Node-ID with a self-signed certificate
    naming the victim's user and Node-ID (all a node can show without an enrollment server), takes over
    the victim's routing state, and from then on receives what the overlay sends to that Node-ID."""
    user = victim.credentials.user if victim.credentials else world.aor[victim.node_id][4:]
    creds = Credentials.self_signed(user, victim.node_id, rng, world.config.overlay)
    ca = world.server.ca_certificate if world.server is not None else None
    world.net.crash(victim.node_id)
    thief = OverlayPeer(victim.node_id, world.config, world.sim.child_rng("thief"), creds, ca=ca)
    thief.install_tables(victim.successors, victim.predecessors, victim.fingers, world.sim.now)
    world.net.add(thief)
    world.net.service(thief)
    world.peers[world.index[victim.node_id]] = thief
    return thief


class Tamperer:
    """On-link rewriting: datagrams sent by any node in `at` (to anyone, or only to `towards`) get
    every honest contact URI replaced by the same-length attacker URI. Lengths do not change, so the
    message still decodes; only a signature check can tell."""

    def __init__(self, net: OverlayNet, at: set[int], n_contacts: int, towards: set[int] | None = None) -> None:
        self.net = net
        self.at = at
        self.towards = towards
        self.swaps = [(contact_for(k).encode(), evil_contact(k).encode()) for k in range(n_contacts)]
        self.rewritten = 0
        self._orig = net._transmit
        net._transmit = self._transmit  # the link layer now passes through us

    def _transmit(self, src: int, dst: int, data: bytes) -> None:
        if src in self.at and (self.towards is None or dst in self.towards) and b"sip:u" in data:
            new = data
            for good, bad in self.swaps:
                if good in new:
                    new = new.replace(good, bad)
            if new != data:
                self.rewritten += 1
                data = new
        self._orig(src, dst, data)


def is_evil(contact: str) -> bool:
    return contact.startswith("sip:e")
