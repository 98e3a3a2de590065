"""The sans-IO overlay node: a Chord peer (or a client attached to one) speaking `wire` messages.

    peer = OverlayPeer(node_id, PeerConfig(), rng, credentials)
    peer.join(bootstrap_node_id, now)           # or install_tables(...) for a converged overlay
    peer.receive(data, src_node_id, now)        # bytes from the link to `src_node_id`
    for dst, data in peer.datagrams_to_send(now): ...
    deadline = peer.next_timer(); peer.handle_timer(now)
    h = peer.lookup(key, now); peer.store(aor, contact, now); peer.fetch(aor, now)
    for ev in peer.events(): ...                # Joined, LookupDone, StoreDone, FetchDone, ...

Link layer. Datagrams are addressed by Node-ID: RELOAD keeps a connection table of TLS/DTLS links
keyed by the neighbour's Node-ID, authenticated by its certificate (RFC 6940 section 6.5). ICE and
Attach-before-every-link are not modelled: a Node-ID a peer learns is reachable, and the driver
(`simnet` or a live runner) plays the connection table. `src` in `receive` is the link's other end.

Routing (Chord, RFC 6940 section 10, and the vectorized engine's rule, so the two agree): a peer is
responsible for keys in (predecessor, self]; if the key's responsible node is in the successor list
the message goes straight to it, else to the farther of the closest preceding finger and the last
successor preceding the key. Predecessors are not used for routing (RELOAD would also consider them;
that shortens only routes to keys among the few nodes just behind the current one). Requests are
routed recursively with a via list and answered along the reversed via list (symmetric routing,
6.2); with `iterative` the querier asks each hop itself with RouteQuery.

Routing maintenance: join through a bootstrap peer (Attach to one's own Node-ID reaches the admitting
peer, then Join, and the admitting peer answers with a full Update; the new peer then announces
itself to its neighbours), graceful leave (Leave to neighbours, data handed to the successor), and
three timers: stabilize (Update to the successor), check_predecessor (Update to the predecessor) and
fix_fingers (a lookup of n + 2^i for one finger level per tick; levels inside the successor list are
set from it). An Update from our successor replaces our successor list with its view, one from our
predecessor our predecessor list, as Chord's stabilization does; from anyone else we learn only the
sender. A request that times out on a neighbour removes it, and a removed node is not taken back
from other peers' older lists for a while. Joins that time out are retried (`join_attempts`).

Storage: the responsible peer keeps each SIP registration (AOR -> contact) and replicates it on its
next `replicas` successors (Store with replica_number 1..replicas).

Defenses are fields of `PeerConfig` named after the catalogue's defense ids (`DEFENSES`); without any
the peer is the 2008 baseline the draft analyses. Every silently dropped message has a reason in
`drops`. Attackers are subclasses that override `choose_next_hop` (see `simnet`).
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from itertools import count
from typing import ClassVar, Union

from cryptography import x509

from threatlab.errors import DecodeError, ParamError
from threatlab.net.sim import NS_PER_MS, NS_PER_S
from threatlab.overlay import ids
from threatlab.overlay.enrollment import Credentials, SecurityError, Verifier, sign_message, sign_stored_data
from threatlab.overlay.ids import MASK
from threatlab.overlay.storage import (
    Storage,
    StorageConfig,
    access_ok,
    aor_resource_id,
    parse_sip_registration,
    sip_registration_value,
    storage_time_ms,
)
from threatlab.overlay.wire import (
    KINDS,
    SIP_REGISTRATION,
    AttachAns,
    AttachReq,
    ChordLeaveType,
    ChordUpdateType,
    DataValue,
    DictionaryEntry,
    ErrorCode,
    ErrorResponse,
    FetchAns,
    FetchReq,
    ForwardingHeader,
    GenericCertificate,
    HeaderInfo,
    JoinAns,
    JoinReq,
    LeaveAns,
    LeaveReq,
    Message,
    MessageCode,
    NodeDest,
    OpaqueDest,
    PingAns,
    PingReq,
    ProbeAns,
    ProbeInformation,
    ProbeInformationType,
    ProbeReq,
    ResourceDest,
    RouteQueryAns,
    RouteQueryReq,
    SecurityBlock,
    StoreAns,
    StoredData,
    StoredDataSpecifier,
    StoreKindData,
    StoreKindResponse,
    StoreReq,
    UpdateAns,
    UpdateReq,
    decode_header,
    decode_rest,
    forward_bytes,
)

__all__ = [
    "DEFENSES",
    "DROP",
    "PeerConfig",
    "OverlayPeer",
    "State",
    "Drop",
    "Joined",
    "JoinFailed",
    "Attached",
    "Left",
    "LookupDone",
    "StoreDone",
    "FetchDone",
    "NeighborDown",
    "Event",
]

DROP = -1  # `choose_next_hop`'s answer for "discard this message"

# catalogue defense id -> PeerConfig field, and what it switches
DEFENSES: dict[str, tuple[str, str]] = {
    "enrollment": (
        "enrollment",
        (
            "Join, Update, Leave and joining Attach must be signed with a certificate the enrollment server "
            "issued for the claimed Node-ID (no self-chosen IDs)"
        ),
    ),
    "verify-responsible": (
        "verify_responsible",
        (
            "the querier rejects an answer from a node when it knows a node closer after the key (RELOAD's "
            "Node-ID check on the responder)"
        ),
    ),
    "iterative": (
        "iterative",
        (
            "iterative routing: the querier asks each hop with RouteQuery and, when a hop times out or a "
            "claim is rejected, asks the previous hop for its next-best entry"
        ),
    ),
    "redundant": ("redundant", "redundant routing: `redundancy` copies leave through different first hops"),
    "signatures": (
        "signatures",
        (
            "every message and stored value is signed; receivers verify and enforce the Kind's access "
            "control (USER-MATCH, NODE-MATCH, USER-NODE-MATCH)"
        ),
    ),
    "replay-protection": (
        "replay_protection",
        (
            "repeated transaction ids are dropped; stored values must be fresh and newer than what they "
            "replace"
        ),
    ),
    "constrained-tables": (
        "constrained_tables",
        (
            "finger i must be successor(n + 2^i): a candidate replaces an entry only if it is closer to the "
            "finger point"
        ),
    ),
    "join-rate-limit": (
        "join_rate_limit",
        "an admitting peer refuses a Join from a Node-ID it admitted less than `rejoin_hold_ns` ago",
    ),
    "publication-limit": (
        "publication_limit",
        "at most `publication_limit` stored values per writer per peer",
    ),
    "blacklist": (
        "blacklist",
        "nodes caught misbehaving, and writers and contacts an operator lists, are refused",
    ),
}


@dataclass(frozen=True, slots=True)
class PeerConfig:
    overlay: str = "threatlab.example"
    client: bool = False  # a client stores and routes nothing; it talks through its attached peer
    successors: int = 8  # successor list length r
    predecessors: int = 3
    replicas: int = 2  # copies on the successors besides the responsible peer's
    ttl: int = 100  # RFC 6940 initial-ttl
    request_timeout_ns: int = 3 * NS_PER_S
    hop_timeout_ns: int = 1 * NS_PER_S  # iterative routing: one RouteQuery
    stabilize_interval_ns: int = 30 * NS_PER_S
    check_predecessor_interval_ns: int = 30 * NS_PER_S
    fix_fingers_interval_ns: int = 30 * NS_PER_S
    maintenance: bool = True  # run the three timers
    registration_lifetime_s: int = 3600
    redundancy: int = 3
    retries: int = 3
    join_attempts: int = 3
    # RELOAD routes to a predecessor responsible for the key; Chord (and the vectorized engine) go
    # round the ring. Only keys among the few nodes just behind the querier tell the two apart.
    route_via_predecessors: bool = True
    replay_window_ns: int = 60 * NS_PER_S
    # defenses (catalogue ids in DEFENSES)
    enrollment: bool = False
    verify_responsible: bool = False
    iterative: bool = False
    redundant: bool = False
    signatures: bool = False
    replay_protection: bool = False
    constrained_tables: bool = False
    publication_limit: int | None = None
    blacklist: bool = False
    join_rate_limit: bool = False
    rejoin_hold_ns: int = 600 * NS_PER_S  # join-rate-limit: one Join per Node-ID per this long

    def with_defenses(self, names, publication_limit: int = 10) -> PeerConfig:
        """This config with the named catalogue defenses switched on."""
        changes: dict[str, object] = {}
        for name in names:
            if name not in DEFENSES:
                raise ParamError(f"unknown defense {name!r}; allowed: {', '.join(sorted(DEFENSES))}")
            f = DEFENSES[name][0]
            changes[f] = publication_limit if f == "publication_limit" else True
        return replace(self, **changes)

    def defenses(self) -> list[str]:
        return sorted(n for n, (f, _) in DEFENSES.items() if getattr(self, f) not in (False, None))

    def storage_config(self) -> StorageConfig:
        return StorageConfig(
            signatures=self.signatures,
            replay_protection=self.replay_protection,
            replay_window_ms=max(1, self.replay_window_ns // NS_PER_MS),
            publication_limit=self.publication_limit,
            blacklist=self.blacklist,
        )

    def check(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("overlay",) or isinstance(v, bool) or v is None:
                continue
            least = 0 if f.name in ("replicas", "retries") else 1
            if not isinstance(v, int) or v < least:
                raise ParamError(f"parameter {f.name}={v!r}: allowed: int >= {least}")
        if self.ttl > 255:
            raise ParamError(f"parameter ttl={self.ttl}: allowed: int in [1, 255]")
        if self.replicas > self.successors:
            raise ParamError(f"parameter replicas={self.replicas}: allowed: int in [0, successors]")


class State(Enum):
    INIT = "init"
    JOINING = "joining"  # peer: Attach/Join under way
    JOINED = "joined"  # peer: in the ring
    ATTACHING = "attaching"  # client
    ATTACHED = "attached"  # client
    LEFT = "left"


class Drop:
    """Named reasons for silently dropped messages (counted in `OverlayPeer.drops`)."""

    MALFORMED = "malformed"
    OTHER_OVERLAY = "other overlay"
    TTL = "ttl exceeded"
    NOT_JOINED = "not joined"
    CLIENT = "client does not route"
    UNEXPECTED_RESPONSE = "response to no pending request"
    NO_ROUTE = "no route"
    CRITICAL_EXTENSION = "unknown critical extension"
    UNSIGNED = "signatures: message unsigned"
    BAD_SIGNATURE = "signatures: signature invalid"
    SIGNER_MISMATCH = "signatures: signer is not the originator"
    NOT_ENROLLED = "enrollment: no certificate from the enrollment server for the claimed Node-ID"
    REPLAY = "replay-protection: transaction seen before"
    BLACKLISTED = "blacklist: sender blacklisted"
    REPLICA_SOURCE = "replica from a node that is not a predecessor"
    REJECTED_RESPONDER = "verify-responsible: responder is not responsible"
    BAD_STORED_VALUE = "signatures: fetched value fails its signature or access control"
    ATTACK = "attack: discarded by a malicious peer"
    VIA_FULL = "via list full"
    JOIN_RATE = "join-rate-limit: Node-ID rejoined too soon"


# -- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined:
    node_id: int
    successor: int


@dataclass(frozen=True, slots=True)
class JoinFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class Attached:
    peer: int


@dataclass(frozen=True, slots=True)
class Left:
    node_id: int


@dataclass(frozen=True, slots=True)
class NeighborDown:
    node_id: int


@dataclass(frozen=True, slots=True)
class LookupDone:
    """A lookup ended. `responsible` is the node the querier believes responsible (None: failed);
    `hops` the request path length of the accepted answer (recursive) or the hops queried
    (iterative); `messages` what the lookup sent, retries and copies included."""

    handle: int
    key: int
    ok: bool
    responsible: int | None
    hops: int
    reason: str = ""
    messages: int = 1


@dataclass(frozen=True, slots=True)
class StoreDone:
    handle: int
    aor: str
    ok: bool
    stored_at: int | None
    replicas: tuple[int, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FetchDone:
    handle: int
    aor: str
    ok: bool
    contacts: tuple[tuple[int, str], ...]  # (registering Node-ID, contact URI)
    responder: int | None = None
    reason: str = ""


Event = Union[Joined, JoinFailed, Attached, Left, NeighborDown, LookupDone, StoreDone, FetchDone]


# -- bookkeeping ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Op:
    """A user operation (lookup, store, fetch) routed toward `key`."""

    handle: int
    kind: str
    key: int
    body: object
    aor: str = ""
    copies: int = 1
    outstanding: int = 0
    messages: int = 0
    answers: list = field(default_factory=list)  # (responder, hops, body)
    rejected: int = 0
    # iterative routing
    path: list = field(default_factory=list)  # hops asked so far, self first
    skips: list = field(default_factory=list)  # alternatives each hop on the path was asked for
    retries: int = 0
    done: bool = False


@dataclass(slots=True)
class _Pending:
    purpose: str
    dst: int | None  # the node we expect to answer or to forward, for failure detection
    op: _Op | None = None
    arg: int = 0


_TX, _STABILIZE, _CHECK_PRED, _FIX_FINGERS, _EXPIRE, _JOIN_RETRY = range(6)


class OverlayPeer:
    """A Chord peer or client (`config.client`); see the module docstring for the API."""

    def __init__(
        self,
        node_id: int,
        config: PeerConfig,
        rng: random.Random,
        credentials: Credentials | None = None,
        *,
        ca: x509.Certificate | None = None,
    ) -> None:
        config.check()
        if not 0 <= node_id <= MASK:
            raise ParamError(f"node_id must be a 128-bit unsigned integer, got {node_id!r}")
        if credentials is not None and node_id != credentials.node_id:
            raise ParamError("the credentials' certificate does not name this Node-ID")
        if (config.signatures or config.enrollment) and credentials is None:
            raise ParamError("the signatures and enrollment defenses need credentials")
        if config.enrollment and ca is None:
            raise ParamError("the enrollment defense needs the enrollment server's CA certificate")
        self.node_id = node_id
        self.config = config
        self.rng = rng
        self.credentials = credentials
        self.verifier = Verifier(ca if config.enrollment else None, config.overlay)
        self.storage = Storage(config.storage_config(), self.verifier)
        self._overlay = ids.overlay_hash(config.overlay)
        self.state = State.INIT
        self.successors: list[int] = []
        self.predecessors: list[int] = []
        self.fingers: list[int | None] = [None] * ids.ID_BITS
        self._finger_set: set[int] = set()
        self.clients: set[int] = set()
        self.attached_to: int | None = None
        self.blacklisted: set[int] = set()
        self.drops: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self._out: list[tuple[int, bytes]] = []
        self._events: list[Event] = []
        self._timers: list[tuple[int, int, int, int]] = []
        self._seq = count()
        self._pending: dict[int, _Pending] = {}
        self._handles = count(1)
        self._ops: dict[int, _Op] = {}
        self._seen: dict[tuple[int, int], int] = {}  # (originator, txid) -> time, for replay-protection
        self._finger_cursor = ids.ID_BITS - 1
        self._joined_at = 0
        self._bootstrap: int | None = None
        self._join_attempt = 0
        self._admitted: dict[int, int] = {}  # join-rate-limit: Node-ID -> when we last admitted it
        self._gone: dict[int, int] = {}  # node -> until when it is not taken back into our lists
        self._gone_ns = (
            2 * config.successors * max(config.stabilize_interval_ns, config.check_predecessor_interval_ns)
        )

    # -- the sans-IO surface ------------------------------------------------------------------------

    def datagrams_to_send(self, now: int) -> list[tuple[int, bytes]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        ev, self._events = self._events, []
        return ev

    def next_timer(self) -> int | None:
        t = self._timers
        while t and t[0][2] == _TX and t[0][3] not in self._pending:
            heapq.heappop(t)
        return t[0][0] if t else None

    def handle_timer(self, now: int) -> None:
        t = self._timers
        while t and t[0][0] <= now:
            _, _, kind, arg = heapq.heappop(t)
            if kind == _TX:
                p = self._pending.pop(arg, None)
                if p is not None:
                    self._on_timeout(p, now)
            elif kind == _JOIN_RETRY:
                if self.state is State.INIT and self._bootstrap is not None:
                    self.join(self._bootstrap, now, retry=True)
            elif self.state is State.JOINED and self.config.maintenance:
                if kind == _STABILIZE:
                    self._stabilize(now)
                elif kind == _CHECK_PRED:
                    self._check_predecessor(now)
                elif kind == _FIX_FINGERS:
                    self._fix_fingers(now)
                elif kind == _EXPIRE:
                    self.storage.expire(now)
                    self._at(now + 60 * NS_PER_S, _EXPIRE)

    # -- user calls -------------------------------------------------------------------------------

    def join(self, bootstrap: int, now: int, retry: bool = False) -> None:
        """Join the ring through `bootstrap`: Attach to our own Node-ID reaches the admitting peer.
        A failed attempt is retried up to `join_attempts` times; JoinFailed reports the last one."""
        if self.config.client:
            raise ParamError("a client attaches to a peer; it does not join")
        self._bootstrap = bootstrap
        self._join_attempt = self._join_attempt + 1 if retry else 1
        if bootstrap == self.node_id:  # the first peer of a new overlay
            self._become_joined(now)
            return
        self.state = State.JOINING
        self._request(
            bootstrap,
            (NodeDest(self.node_id),),
            AttachReq(role=b"active"),
            now,
            "join-attach",
            maintenance=True,
        )

    def attach(self, peer: int, now: int) -> None:
        """A client's Attach to the peer it will send everything through."""
        if not self.config.client:
            raise ParamError("only a client attaches; a peer joins")
        self.state = State.ATTACHING
        self.attached_to = peer
        self._request(peer, (NodeDest(peer),), AttachReq(role=b"active"), now, "attach")

    def leave(self, now: int) -> None:
        """Graceful leave: hand stored data to the successor, tell the neighbours (RFC 6940 10, leaving)."""
        if self.state is not State.JOINED:
            self.state = State.LEFT
            return
        if self.successors:
            succ = self.successors[0]
            for rid in self.storage.resources():
                if self._responsible(rid):
                    kd, certs = self.storage.kind_data(rid)
                    self._request(
                        succ, (NodeDest(succ),), StoreReq(rid, 0, kd), now, "handover", extra_certs=certs
                    )
            for s in self.successors:
                self._request(
                    s,
                    (NodeDest(s),),
                    LeaveReq(self.node_id, ChordLeaveType.FROM_PRED, tuple(self.predecessors)),
                    now,
                    "leave",
                    maintenance=True,
                )
        for p in self.predecessors:
            self._request(
                p,
                (NodeDest(p),),
                LeaveReq(self.node_id, ChordLeaveType.FROM_SUCC, tuple(self.successors)),
                now,
                "leave",
                maintenance=True,
            )
        self.state = State.LEFT
        self._events.append(Left(self.node_id))

    def lookup(self, key: int, now: int) -> int:
        """Find the peer responsible for `key` (a Probe routed to the Resource-ID); LookupDone follows."""
        return self._start(_Op(next(self._handles), "lookup", key & MASK, ProbeReq()), now)

    def store(self, aor: str, contact: str, now: int) -> int:
        """Register `contact` for `aor` (SIP-REGISTRATION Kind, keyed by our Node-ID); StoreDone follows."""
        rid = aor_resource_id(aor)
        value = DictionaryEntry(ids.to_bytes(self.node_id), DataValue(True, sip_registration_value(contact)))
        st = storage_time_ms(now)
        life = self.config.registration_lifetime_s
        if self.credentials is not None:
            sd = sign_stored_data(rid, SIP_REGISTRATION, st, life, value, self.credentials)
        else:
            sd = StoredData(st, life, value)
        body = StoreReq(rid, 0, (StoreKindData(SIP_REGISTRATION, 0, (sd,)),))
        return self._start(_Op(next(self._handles), "store", rid, body, aor=aor), now)

    def fetch(self, aor: str, now: int) -> int:
        """Fetch every registration of `aor`; FetchDone follows."""
        rid = aor_resource_id(aor)
        body = FetchReq(rid, (StoredDataSpecifier(SIP_REGISTRATION),))
        return self._start(_Op(next(self._handles), "fetch", rid, body, aor=aor), now)

    # -- converged overlay --------------------------------------------------------------------------

    def install_tables(self, successors, predecessors, fingers, now: int) -> None:
        """Set the routing state a converged ring would have (fingers[i] = successor(n + 2^i)) and start
        maintenance, without the messages of a join."""
        self.successors = list(successors)[: self.config.successors]
        self.predecessors = list(predecessors)[: self.config.predecessors]
        self.fingers = list(fingers)
        self._finger_set = {f for f in self.fingers if f is not None}
        self._become_joined(now, announce=False)

    # -- receiving ----------------------------------------------------------------------------------

    def receive(self, data: bytes, src: int, now: int) -> None:
        self.counters["received"] += 1
        try:
            info = decode_header(data)
        except DecodeError:
            return self._drop(Drop.MALFORMED)
        h = info.header
        if h.overlay != self._overlay:
            return self._drop(Drop.OTHER_OVERLAY)
        if self.config.blacklist and src in self.blacklisted:
            return self._drop(Drop.BLACKLISTED)
        dest = h.destination_list
        first = dest[0]
        if type(first) is NodeDest and first.node_id == self.node_id:
            if len(dest) > 1:
                if self.config.client:
                    return self._drop(Drop.CLIENT)
                return self._forward(data, info, src, dest[1:], now)
            return self._deliver(data, info, src, now)
        if self.config.client or self.state is not State.JOINED:
            return self._drop(Drop.CLIENT if self.config.client else Drop.NOT_JOINED)
        if type(first) is NodeDest:
            key = first.node_id
        elif type(first) is ResourceDest:
            key = first.resource_id
        else:
            return self._drop(Drop.NO_ROUTE)
        if len(dest) == 1 and self._responsible(key) and key not in self.clients:
            return self._deliver(data, info, src, now)
        return self._forward(data, info, src, dest, now)

    def _forward(self, data: bytes, info: HeaderInfo, src: int, dest, now: int) -> None:
        h = info.header
        code = int.from_bytes(data[info.contents_at : info.contents_at + 2], "big")
        request = code & 1 == 1 and code != MessageCode.ERROR
        if h.ttl == 0:
            self._drop(Drop.TTL)
            if request:
                self._reply(h, src, ErrorResponse(ErrorCode.TTL_EXCEEDED, b"ttl exceeded"), now)
            return
        if sum(len(d.encode()) for d in h.via_list) + 18 > 0xFFFF:
            return self._drop(Drop.VIA_FULL)  # one more entry would not fit the 16-bit via list length
        first = dest[0]
        if type(first) is OpaqueDest:
            return self._drop(Drop.NO_ROUTE)  # an opaque ID means something only to its sender's peer
        if type(first) is NodeDest and (not request or self._is_link(first.node_id)):
            nxt = first.node_id  # a source route (a response's reversed via list) or a neighbour
        else:
            key = first.node_id if type(first) is NodeDest else first.resource_id
            nxt = self.choose_next_hop(key, 0) if request else self.route_next(key, 0)
            if nxt == DROP:
                return self._drop(Drop.ATTACK)
            if nxt is None:
                return self._deliver(data, info, src, now)
        self.counters["forwarded"] += 1
        nh = replace(h, via_list=h.via_list + (NodeDest(src),), destination_list=tuple(dest), ttl=h.ttl - 1)
        self._send(nxt, forward_bytes(data, info, nh))

    def _deliver(self, data: bytes, info: HeaderInfo, src: int, now: int) -> None:
        """The message is for us: decode it whole, check it, and handle it."""
        h = info.header
        try:
            body, exts, sec, sec_at = decode_rest(data, info.contents_at)
        except DecodeError:
            return self._drop(Drop.MALFORMED)
        if any(e.critical for e in exts):
            return self._drop(Drop.CRITICAL_EXTENSION)
        origin = h.via_list[0].node_id if h.via_list and type(h.via_list[0]) is NodeDest else src
        request = body.CODE & 1 == 1 and body.CODE != MessageCode.ERROR
        maintenance = type(body) in (JoinReq, UpdateReq, LeaveReq) or (
            type(body) is AttachReq and h.destination_list[-1] != NodeDest(self.node_id)
        )
        if self.config.signatures or (self.config.enrollment and maintenance):
            reason = self._check_signature(data, origin, now)
            if reason:
                return self._drop(reason)
            claimed = getattr(body, "joining_peer_id", getattr(body, "leaving_peer_id", origin))
            if claimed != origin:  # a Join or Leave for somebody else
                return self._drop(Drop.SIGNER_MISMATCH)
        if request and self.config.replay_protection:
            k = (origin, h.transaction_id)
            if k in self._seen:
                return self._drop(Drop.REPLAY)
            self._seen[k] = now
            if len(self._seen) > 4096:
                cutoff = now - self.config.replay_window_ns
                self._seen = {kk: t for kk, t in self._seen.items() if t >= cutoff}
        if not request:
            return self._on_response(h, body, sec, src, origin, now)
        last = h.destination_list[-1]
        if (
            type(last) is NodeDest
            and last.node_id != self.node_id
            and type(body) not in (AttachReq, RouteQueryReq)
        ):
            # a Node-ID destination that is not us reached us as the closest peer: no such node
            return self._reply(h, src, ErrorResponse(ErrorCode.NOT_FOUND, b"no such node"), now)
        self.counters["requests handled"] += 1
        handler = self._HANDLERS.get(type(body))
        if handler is None:  # an answer type sent as a request cannot happen: codes fix the type
            return self._drop(Drop.MALFORMED)
        handler(self, h, body, sec, src, origin, now)

    def _check_signature(self, data: bytes, origin: int, now: int) -> str:
        try:
            signer = self.verifier.message(data, now)
        except SecurityError as e:
            if e.reason == "message unsigned":
                return Drop.UNSIGNED if self.config.signatures else Drop.NOT_ENROLLED
            return (
                Drop.NOT_ENROLLED if "enrollment" in e.reason or "issued" in e.reason else Drop.BAD_SIGNATURE
            )
        if origin not in signer.node_ids:
            return Drop.SIGNER_MISMATCH
        if self.config.enrollment and not signer.enrolled:
            return Drop.NOT_ENROLLED
        return ""

    # -- request handlers -----------------------------------------------------------------------------

    def _on_probe(self, h, body: ProbeReq, sec, src, origin, now) -> None:
        info = []
        for t in body.requested_info:
            if t == ProbeInformationType.RESPONSIBLE_SET:
                span = ids.distance(self.predecessors[0], self.node_id) if self.predecessors else MASK
                info.append(ProbeInformation(t, min(2**32 - 1, span * 10**9 >> ids.ID_BITS)))
            elif t == ProbeInformationType.NUM_RESOURCES:
                info.append(ProbeInformation(t, min(2**32 - 1, len(self.storage.resources()))))
            else:
                info.append(ProbeInformation(t, min(2**32 - 1, (now - self._joined_at) // NS_PER_S)))
        self._reply(h, src, ProbeAns(tuple(info)), now)

    def _on_attach(self, h, body: AttachReq, sec, src, origin, now) -> None:
        if h.destination_list[-1] == NodeDest(self.node_id) and not h.via_list:
            self.clients.add(src)  # a client attaching to us over its own link
        self._reply(h, src, AttachAns(role=b"passive"), now)

    def _on_join(self, h, body: JoinReq, sec, src, origin, now) -> None:
        jp = body.joining_peer_id
        if self.config.join_rate_limit:
            last = self._admitted.get(jp)
            if last is not None and now - last < self.config.rejoin_hold_ns:
                self._drop(Drop.JOIN_RATE)
                return self._reply(h, src, ErrorResponse(ErrorCode.FORBIDDEN, b"rejoined too soon"), now)
            self._admitted[jp] = now
        self._reply(h, src, JoinAns(), now)
        old_pred = self.predecessors[0] if self.predecessors else self.node_id
        fingers = tuple(dict.fromkeys(f for f in self.fingers if f is not None))
        self._request(
            jp,
            (NodeDest(jp),),
            UpdateReq(
                self._uptime(now),
                ChordUpdateType.FULL,
                tuple(self.predecessors),
                (self.node_id,) + tuple(self.successors),
                fingers,
            ),
            now,
            "update",
            maintenance=True,
        )
        self._merge([jp], now)
        # data the new peer is now responsible for (old predecessor, jp]; we keep it as a replica
        for rid in self.storage.resources():
            if ids.between_right(rid, old_pred, jp):
                kd, certs = self.storage.kind_data(rid)
                self._request(jp, (NodeDest(jp),), StoreReq(rid, 0, kd), now, "handover", extra_certs=certs)

    def _on_update(self, h, body: UpdateReq, sec, src, origin, now) -> None:
        self._reply(h, src, UpdateAns(), now)
        if self.state is State.JOINING and body.update_type == ChordUpdateType.FULL:
            self._merge([origin, *body.successors, *body.predecessors], now)
            for f in body.fingers:
                self._offer_finger(f)
            self._become_joined(now)
            return
        if self.state is not State.JOINED:
            return
        me = self.node_id
        if self.successors and origin == self.successors[0]:
            # Chord's stabilize: our successor list is our successor and its list (stale entries go)
            view = {origin, *body.successors, *(x for x in body.predecessors if ids.between(x, me, origin))}
            view.discard(me)
            self.successors = sorted(view, key=lambda x: (x - me) & MASK)[: self.config.successors]
        if self.predecessors and origin == self.predecessors[0]:
            view = {origin, *body.predecessors, *(x for x in body.successors if ids.between(x, origin, me))}
            view.discard(me)
            self.predecessors = sorted(view, key=lambda x: (me - x) & MASK)[: self.config.predecessors]
        # from anyone else only the sender itself is news we can trust to be alive: merging other
        # peers' lists would bring back entries that have left or failed
        self._merge([origin], now)
        for f in body.fingers:
            self._offer_finger(f)

    def _on_leave(self, h, body: LeaveReq, sec, src, origin, now) -> None:
        self._reply(h, src, LeaveAns(), now)
        self._remove(body.leaving_peer_id, now, announce=False)
        self._merge(list(body.neighbors), now)

    def _on_route_query(self, h, body: RouteQueryReq, sec, src, origin, now) -> None:
        d = body.destination
        key = d.node_id if type(d) is NodeDest else getattr(d, "resource_id", None)
        if key is None:
            return self._reply(h, src, ErrorResponse(ErrorCode.INVALID_MESSAGE, b"opaque destination"), now)
        skip = body.overlay_data[0] if body.overlay_data else 0
        nxt = self.node_id if self._responsible(key) else self.choose_next_hop(key, skip)
        if nxt == DROP:
            return self._drop(Drop.ATTACK)
        self._reply(h, src, RouteQueryAns(self.node_id if nxt is None else nxt), now)

    def _on_ping(self, h, body: PingReq, sec, src, origin, now) -> None:
        self._reply(h, src, PingAns(self.rng.getrandbits(64), storage_time_ms(now)), now)

    def _on_store(self, h, body: StoreReq, sec, src, origin, now) -> None:
        if body.replica_number > 0 and origin not in self.predecessors[: self.config.replicas]:
            return self._drop(Drop.REPLICA_SOURCE)
        outcome = self.storage.store(body.resource, body.kind_data, sec.certificates, origin, now)
        if not outcome.ok:
            return self._reply(h, src, ErrorResponse(outcome.error_code, outcome.reason.encode()), now)
        replicas: tuple[int, ...] = ()
        if body.replica_number == 0:
            replicas = tuple(self.successors[: self.config.replicas])
            for i, s in enumerate(replicas, start=1):
                self._request(
                    s,
                    (NodeDest(s),),
                    replace(body, replica_number=i),
                    now,
                    "replica",
                    extra_certs=sec.certificates,
                )
        gens = dict(outcome.generations)
        self._reply(
            h,
            src,
            StoreAns(
                tuple(StoreKindResponse(kd.kind, gens.get(kd.kind, 0), replicas) for kd in body.kind_data)
            ),
            now,
        )

    def _on_fetch(self, h, body: FetchReq, sec, src, origin, now) -> None:
        for spec in body.specifiers:
            if spec.kind not in KINDS:
                return self._reply(h, src, ErrorResponse(ErrorCode.UNKNOWN_KIND), now)
        responses, certs = self.storage.fetch(body.resource, body.specifiers, now)
        self._reply(h, src, FetchAns(responses), now, extra_certs=certs)

    _HANDLERS: ClassVar[dict] = {
        ProbeReq: _on_probe,
        AttachReq: _on_attach,
        JoinReq: _on_join,
        UpdateReq: _on_update,
        LeaveReq: _on_leave,
        RouteQueryReq: _on_route_query,
        PingReq: _on_ping,
        StoreReq: _on_store,
        FetchReq: _on_fetch,
    }

    # -- responses --------------------------------------------------------------------------------

    def _on_response(self, h, body, sec, src, responder, now) -> None:
        p = self._pending.pop(h.transaction_id, None)
        if p is None:
            return self._drop(Drop.UNEXPECTED_RESPONSE)
        hops = len(h.via_list) + 1
        purpose = p.purpose
        if purpose == "op":
            return self._op_answer(p.op, responder, hops, body, sec, now)
        if purpose == "route-query":
            return self._iter_answer(p.op, p.dst, body, now)
        if purpose == "join-attach":
            if type(body) is not AttachAns:
                return self._join_failed("attach refused", now)
            self._request(
                responder, (NodeDest(responder),), JoinReq(self.node_id), now, "join", maintenance=True
            )
        elif purpose == "join":
            if type(body) is not JoinAns:
                return self._join_failed("join refused", now)
        elif purpose == "attach":
            if type(body) is AttachAns:
                self.state = State.ATTACHED
                self._events.append(Attached(responder))
        elif purpose == "fix-finger":
            if type(body) is ProbeAns:
                self._offer_finger(responder, level=p.arg, from_lookup=True)

    def _on_timeout(self, p: _Pending, now: int) -> None:
        self.counters["timeouts"] += 1
        if p.purpose == "op":
            op = p.op
            op.outstanding -= 1
            if op.outstanding <= 0 and not op.done:
                self._op_finish(op, now, timeout=True)
        elif p.purpose == "route-query":
            self._iter_timeout(p.op, p.dst, now)
        elif p.purpose in ("join-attach", "join"):
            self._join_failed(f"{p.purpose} timed out", now)
        elif p.purpose in ("update", "ping", "replica", "handover") and p.dst is not None:
            self._remove(p.dst, now)

    # -- user operations ------------------------------------------------------------------------------

    def _start(self, op: _Op, now: int) -> int:
        self._ops[op.handle] = op
        if self.config.client:
            if self.state is not State.ATTACHED or self.attached_to is None:
                self._op_finish(op, now, reason="not attached")
                return op.handle
            self._send_op(op, self.attached_to, (ResourceDest(op.key),), now)
            return op.handle
        if self.state is not State.JOINED:
            self._op_finish(op, now, reason="not joined")
            return op.handle
        if self._responsible(op.key):
            self._local_answer(op, now)
            return op.handle
        if self.config.iterative:
            op.path = [self.node_id]
            op.skips = [0]
            op.retries = self.config.retries
            self._iter_ask(op, self.node_id, 0, now)
            return op.handle
        op.copies = self.config.redundancy if self.config.redundant else 1
        for i in range(op.copies):
            first = self.route_next(op.key, i)
            if first is None or first == DROP:
                continue
            self._send_op(op, first, (ResourceDest(op.key),), now)
        if op.outstanding == 0:
            self._op_finish(op, now, reason="no route")
        return op.handle

    def _send_op(self, op: _Op, first: int, dest, now: int) -> None:
        op.outstanding += 1
        op.messages += 1
        extra = ()
        if op.kind == "store" and self.credentials is not None:
            extra = (self.credentials.generic_certificate,)
        self._request(first, dest, op.body, now, "op", op=op, extra_certs=extra)

    def _local_answer(self, op: _Op, now: int) -> None:
        """We are responsible ourselves: answer without messages."""
        if op.kind == "lookup":
            op.answers.append((self.node_id, 0, ProbeAns(())))
        elif op.kind == "fetch":
            responses, _ = self.storage.fetch(op.key, op.body.specifiers, now)
            op.answers.append((self.node_id, 0, FetchAns(responses)))
        else:
            certs = (self.credentials.generic_certificate,) if self.credentials else ()
            outcome = self.storage.store(op.key, op.body.kind_data, certs, self.node_id, now)
            if outcome.ok:
                for i, s in enumerate(self.successors[: self.config.replicas], start=1):
                    self._request(
                        s,
                        (NodeDest(s),),
                        replace(op.body, replica_number=i),
                        now,
                        "replica",
                        extra_certs=certs,
                    )
                op.answers.append(
                    (
                        self.node_id,
                        0,
                        StoreAns(
                            (
                                StoreKindResponse(
                                    SIP_REGISTRATION, 0, tuple(self.successors[: self.config.replicas])
                                ),
                            )
                        ),
                    )
                )
            else:
                op.answers.append(
                    (self.node_id, 0, ErrorResponse(outcome.error_code, outcome.reason.encode()))
                )
        self._op_finish(op, now)

    def _op_answer(self, op: _Op, responder: int, hops: int, body, sec: SecurityBlock, now: int) -> None:
        op.outstanding -= 1
        if op.done:
            return
        if self.config.verify_responsible and not self._plausible(op.key, responder):
            op.rejected += 1
            self._drop(Drop.REJECTED_RESPONDER)
        else:
            if type(body) is FetchAns and self.config.signatures:
                body = self._checked_fetch(op.key, body, sec, now)
            op.answers.append((responder, hops, body))
        if op.outstanding <= 0:
            self._op_finish(op, now)

    def _checked_fetch(self, rid: int, body: FetchAns, sec: SecurityBlock, now: int) -> FetchAns:
        """End-to-end checks on fetched values: the responsible peer is not trusted (draft figure 1)."""
        out = []
        for kr in body.kind_responses:
            good = []
            for sd in kr.values:
                try:
                    signer = self.verifier.stored_data(rid, kr.kind, sd, sec.certificates, now)
                except SecurityError:
                    self._drop(Drop.BAD_STORED_VALUE)
                    continue
                if not access_ok(KINDS[kr.kind].access, rid, sd.value, signer.user, signer.node_ids):
                    self._drop(Drop.BAD_STORED_VALUE)
                    continue
                good.append(sd)
            out.append(replace(kr, values=tuple(good)))
        return FetchAns(tuple(out))

    def _op_finish(self, op: _Op, now: int, timeout: bool = False, reason: str = "") -> None:
        op.done = True
        self._ops.pop(op.handle, None)
        answers = [a for a in op.answers if type(a[2]) is not ErrorResponse]
        errors = [a for a in op.answers if type(a[2]) is ErrorResponse]
        chosen = self._choose(op, answers)
        if not reason:
            if chosen is None and errors:
                err = errors[0][2]
                reason = f"error {err.error_code}: {err.error_info.decode('utf-8', 'replace')}"
            elif chosen is None:
                reason = "rejected" if op.rejected else ("timeout" if timeout else "no answer")
        responder, hops, body = chosen if chosen is not None else (None, 0, None)
        ok = chosen is not None
        if op.kind == "lookup":
            self._events.append(LookupDone(op.handle, op.key, ok, responder, hops, reason, op.messages))
        elif op.kind == "store":
            replicas = body.kind_responses[0].replicas if ok and body.kind_responses else ()
            self._events.append(StoreDone(op.handle, op.aor, ok, responder, replicas, reason))
        else:
            contacts = []
            if ok:
                for kr in body.kind_responses:
                    for sd in kr.values:
                        v = sd.value
                        if isinstance(v, DictionaryEntry) and v.value.exists and len(v.key) == 16:
                            c = parse_sip_registration(v.value.value)
                            if c is not None:
                                contacts.append((ids.from_bytes(v.key), c))
            self._events.append(FetchDone(op.handle, op.aor, ok, tuple(contacts), responder, reason))

    def _choose(self, op: _Op, answers: list):
        """One answer among copies: the closest responder after the key when we check responders,
        else the one most copies agree on (a tie goes to the first)."""
        if not answers:
            return None
        if len(answers) == 1:
            return answers[0]
        if self.config.verify_responsible:
            return min(answers, key=lambda a: ids.distance(op.key, a[0]))
        votes = Counter(a[0] for a in answers)
        best = max(votes.values())
        return next(a for a in answers if votes[a[0]] == best)

    # -- iterative routing --------------------------------------------------------------------------

    def _iter_ask(self, op: _Op, hop: int, skip: int, now: int) -> None:
        """Ask `hop` (or consult our own table when hop is us) for its skip-th best next hop."""
        if hop == self.node_id:
            nxt = self.route_next(op.key, skip)
            if nxt is None or nxt == DROP:
                return self._op_finish(op, now, reason="no route")
            return self._iter_step(op, hop, nxt, now)
        op.messages += 1
        op.outstanding += 1
        self._request(
            hop,
            (NodeDest(hop),),
            RouteQueryReq(False, ResourceDest(op.key), bytes((min(skip, 255),))),
            now,
            "route-query",
            op=op,
            dst=hop,
            timeout=self.config.hop_timeout_ns,
        )

    def _iter_answer(self, op: _Op, hop: int, body, now: int) -> None:
        op.outstanding -= 1
        if op.done:
            return
        if type(body) is not RouteQueryAns:
            return self._iter_timeout(op, hop, now)
        if body.next_peer == hop:  # the hop says it is responsible
            if self.config.verify_responsible and not self._plausible(op.key, hop):
                op.rejected += 1
                self._drop(Drop.REJECTED_RESPONDER)
                return self._iter_backtrack(op, now)
            if op.kind == "lookup":
                op.answers.append((hop, len(op.path), ProbeAns(())))
                return self._op_finish(op, now)
            return self._send_op(op, hop, (NodeDest(hop), ResourceDest(op.key)), now)
        self._iter_step(op, hop, body.next_peer, now)

    def _iter_step(self, op: _Op, hop: int, nxt: int, now: int) -> None:
        if len(op.path) > 2 * ids.ID_BITS:
            return self._op_finish(op, now, reason="no route")
        if nxt == self.node_id:  # pointed back at us: we hold the answer ourselves
            return self._iter_backtrack(op, now)
        op.path.append(nxt)
        op.skips.append(0)
        self._iter_ask(op, nxt, 0, now)

    def _iter_timeout(self, op: _Op, hop: int, now: int) -> None:
        op.outstanding -= 1
        if not op.done:
            self._iter_backtrack(op, now)

    def _iter_backtrack(self, op: _Op, now: int) -> None:
        """The last hop failed us: ask the one before it for its next-best entry."""
        if op.retries <= 0 or len(op.path) < 2:
            return self._op_finish(op, now, reason="rejected" if op.rejected else "timeout")
        op.retries -= 1
        op.path.pop()
        op.skips.pop()
        op.skips[-1] += 1
        self._iter_ask(op, op.path[-1], op.skips[-1], now)

    # -- routing ------------------------------------------------------------------------------------

    def choose_next_hop(self, key: int, skip: int) -> int | None:
        """Where this node sends a request for `key` it is not responsible for: a Node-ID, None to
        answer it as if responsible, or DROP to discard it. Honest peers follow `route_next`;
        attackers override this one method."""
        return self.route_next(key, skip)

    def route_next(self, key: int, skip: int = 0) -> int | None:
        """Chord's greedy next hop (see the module docstring); `skip` > 0 asks for the skip-th
        alternative: a lower finger or a nearer successor, never the shortcut to the root."""
        me = self.node_id
        succ = self.successors
        if not succ:
            return None
        dk = (key - me) & MASK
        if dk == 0:
            return None
        if skip == 0:
            for s in succ:
                if (s - me) & MASK >= dk:
                    return s
            if self.config.route_via_predecessors:
                preds = self.predecessors
                for i in range(len(preds) - 1):
                    if ids.between_right(key, preds[i + 1], preds[i]):
                        return preds[i]
        preceding = [s for s in succ if 0 < (s - me) & MASK < dk]
        best = preceding[max(len(preceding) - 1 - skip, 0)] if preceding else None
        best_d = (best - me) & MASK if best is not None else 0
        # the closest preceding finger: the highest level whose entry lies in (me, key); skip > 0
        # walks that many valid levels further down
        fingers = self.fingers
        level = dk.bit_length() - 1
        while level >= 0:
            f = fingers[level]
            if f is not None and 0 < (f - me) & MASK < dk:
                if skip == 0:
                    if (f - me) & MASK > best_d:
                        best = f
                    break
                skip -= 1
            level -= 1
        return best

    def _responsible(self, key: int) -> bool:
        if self.config.client or self.state is not State.JOINED:
            return False
        if not self.predecessors:
            return True
        return ids.between_right(key, self.predecessors[0], self.node_id)

    def _plausible(self, key: int, responder: int) -> bool:
        """RELOAD's responder check: no node we know lies in [key, responder)."""
        d = ids.distance(key, responder)
        for n in (self.node_id, *self.successors, *self.predecessors, *self._finger_set):
            if n != responder and ids.distance(key, n) < d:
                return False
        return True

    def _is_link(self, node: int) -> bool:
        return (
            node in self.successors
            or node in self.predecessors
            or node in self.clients
            or node in self._finger_set
        )

    def _merge(self, candidates, now: int) -> None:
        """Take candidates into the successor and predecessor lists (closest first)."""
        me = self.node_id
        gone = self._gone
        cands = {
            c
            for c in candidates
            if c != me and not (self.config.blacklist and c in self.blacklisted) and gone.get(c, -1) < now
        }
        cands -= self.clients
        if not cands:
            return
        new = cands - set(self.successors) - set(self.predecessors) - self._finger_set
        s = set(self.successors) | cands
        self.successors = sorted(s, key=lambda x: (x - me) & MASK)[: self.config.successors]
        p = set(self.predecessors) | cands
        self.predecessors = sorted(p, key=lambda x: (me - x) & MASK)[: self.config.predecessors]
        for c in new:
            self._offer_finger(c)

    def _offer_finger(self, node: int, level: int | None = None, from_lookup: bool = False) -> None:
        """Consider `node` as finger `level` (or every level whose interval holds it).

        constrained-tables: finger i is successor(n + 2^i), so a candidate replaces an entry only if
        it is closer after the finger point. Without: any node in [n + 2^i, n + 2^(i+1)) may be
        finger i (proximity-style); a lookup's answer is taken as is, others fill empty slots."""
        me = self.node_id
        if node == me or (self.config.blacklist and node in self.blacklisted):
            return
        d = (node - me) & MASK
        levels = [level] if level is not None else [d.bit_length() - 1] if d else []
        if self.config.constrained_tables and level is None:
            levels = range(d.bit_length())  # a node is a candidate for every point before it
        changed = False
        for i in levels:
            cur = self.fingers[i]
            target = (me + (1 << i)) & MASK
            if self.config.constrained_tables:
                if cur is None or (node - target) & MASK < (cur - target) & MASK:
                    self.fingers[i] = node
                    changed = True
            elif from_lookup or cur is None:
                if cur != node:
                    self.fingers[i] = node
                    changed = True
        if changed:
            self._finger_set = {f for f in self.fingers if f is not None}

    def _remove(self, node: int, now: int, announce: bool = True) -> None:
        """Forget a failed or departed node everywhere, and for a while refuse to learn it again from
        neighbours whose lists are older than our news."""
        self._gone[node] = now + self._gone_ns
        if len(self._gone) > 1024:
            self._gone = {k: t for k, t in self._gone.items() if t >= now}
        hit = False
        if node in self.successors:
            self.successors.remove(node)
            hit = True
        if node in self.predecessors:
            self.predecessors.remove(node)
            hit = True
        if node in self._finger_set:
            self.fingers = [None if f == node else f for f in self.fingers]
            self._finger_set.discard(node)
            hit = True
        self.clients.discard(node)
        if hit and announce:
            self._events.append(NeighborDown(node))

    # -- maintenance ----------------------------------------------------------------------------------

    def _become_joined(self, now: int, announce: bool = True) -> None:
        self.state = State.JOINED
        self._joined_at = now
        if announce:
            self._events.append(Joined(self.node_id, self.successors[0] if self.successors else self.node_id))
            # tell the neighbours we are here (RELOAD: the joining peer's Updates)
            for n in dict.fromkeys([*self.predecessors, *self.successors]):
                self._send_update(n, now)
        if self.config.maintenance:
            c = self.config
            r = self.rng
            self._at(now + r.randrange(c.stabilize_interval_ns), _STABILIZE)
            self._at(now + r.randrange(c.check_predecessor_interval_ns), _CHECK_PRED)
            self._at(now + r.randrange(c.fix_fingers_interval_ns), _FIX_FINGERS)
            self._at(now + 60 * NS_PER_S + r.randrange(NS_PER_S), _EXPIRE)

    def _send_update(self, node: int, now: int) -> None:
        self._request(
            node,
            (NodeDest(node),),
            UpdateReq(
                self._uptime(now), ChordUpdateType.NEIGHBORS, tuple(self.predecessors), tuple(self.successors)
            ),
            now,
            "update",
            maintenance=True,
        )

    def _stabilize(self, now: int) -> None:
        if self.successors:
            self._send_update(self.successors[0], now)
        self._at(now + self.config.stabilize_interval_ns, _STABILIZE)

    def _check_predecessor(self, now: int) -> None:
        if self.predecessors:
            self._send_update(self.predecessors[0], now)
        self._at(now + self.config.check_predecessor_interval_ns, _CHECK_PRED)

    def _fix_fingers(self, now: int) -> None:
        """Refresh one finger level whose point lies past the successor list (lower levels are
        successors and are set from the list)."""
        self._at(now + self.config.fix_fingers_interval_ns, _FIX_FINGERS)
        if not self.successors:
            return
        span = (self.successors[-1] - self.node_id) & MASK
        for _ in range(ids.ID_BITS):
            i = self._finger_cursor
            self._finger_cursor = i - 1 if i > 0 else ids.ID_BITS - 1
            if (1 << i) <= span:
                f = next(s for s in self.successors if (s - self.node_id) & MASK >= (1 << i))
                if self.fingers[i] != f:
                    self.fingers[i] = f
                    self._finger_set = {x for x in self.fingers if x is not None}
                continue
            target = (self.node_id + (1 << i)) & MASK
            first = self.route_next(target, 0)
            if first is None or first == DROP:
                return
            self._request(first, (ResourceDest(target),), ProbeReq(), now, "fix-finger", arg=i)
            return

    def _join_failed(self, reason: str, now: int) -> None:
        if self.state is not State.JOINING:
            return
        self.state = State.INIT
        self.counters["join attempts failed"] += 1
        if self._join_attempt < self.config.join_attempts:
            self._at(now + self.rng.randrange(1, self.config.request_timeout_ns), _JOIN_RETRY)
        else:
            self._events.append(JoinFailed(reason))

    def _uptime(self, now: int) -> int:
        return min(2**32 - 1, max(0, now - self._joined_at) // NS_PER_S)

    # -- sending ----------------------------------------------------------------------------------

    def _request(
        self,
        first: int,
        dest,
        body,
        now: int,
        purpose: str,
        *,
        op: _Op | None = None,
        arg: int = 0,
        dst: int | None = None,
        extra_certs: tuple[GenericCertificate, ...] = (),
        maintenance: bool = False,
        timeout: int | None = None,
    ) -> int:
        txid = self.rng.getrandbits(64)
        while txid in self._pending:
            txid = self.rng.getrandbits(64)
        header = ForwardingHeader(self._overlay, txid, tuple(dest), ttl=self.config.ttl)
        data = self._encode(header, body, extra_certs, sign=maintenance and self.config.enrollment)
        self._pending[txid] = _Pending(purpose, first if dst is None else dst, op, arg)
        self._at(now + (timeout or self.config.request_timeout_ns), _TX, txid)
        self._send(first, data)
        return txid

    def _reply(
        self, h: ForwardingHeader, src: int, body, now: int, extra_certs: tuple[GenericCertificate, ...] = ()
    ) -> None:
        dest = (NodeDest(src),) + tuple(reversed(h.via_list))
        header = ForwardingHeader(self._overlay, h.transaction_id, dest, ttl=self.config.ttl)
        self._send(src, self._encode(header, body, extra_certs))

    def _encode(self, header: ForwardingHeader, body, extra_certs=(), sign: bool = False) -> bytes:
        msg = Message(header, body)
        if (self.config.signatures or sign) and self.credentials is not None:
            msg = sign_message(msg, self.credentials, tuple(extra_certs))
        elif extra_certs and self.config.signatures:
            msg = Message(header, body, security=SecurityBlock(tuple(extra_certs)))
        return msg.encode()

    def _send(self, dst: int, data: bytes) -> None:
        self.counters["sent"] += 1
        self._out.append((dst, data))

    def _at(self, time: int, kind: int, arg: int = 0) -> None:
        heapq.heappush(self._timers, (time, next(self._seq), kind, arg))

    def _drop(self, reason: str) -> None:
        self.drops[reason] += 1

    def __repr__(self) -> str:
        role = "client" if self.config.client else "peer"
        return f"<OverlayPeer {role} {ids.short(self.node_id)} {self.state.value}>"
