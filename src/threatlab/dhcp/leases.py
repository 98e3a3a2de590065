"""The server's lease database: SQLite in WAL mode, written through on every change, so a restart
or a crash loses no lease; an in-memory index answers the server's lookups.

A lease's life is the table `TRANSITIONS` below (the one place that says what may follow what):
an address is offered (RFC 2131 4.3.1), bound by a DHCPACK (4.3.2), declined (4.3.3) or released
(4.3.4), and a timed state that runs out expires. Times are integer nanoseconds, virtual or wall
clock: the store only compares them.
"""

from __future__ import annotations

import enum
import os
import sqlite3
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Iterator

from threatlab.errors import StoreError, ThreatlabError

__all__ = [
    "LeaseState",
    "LeaseEvent",
    "TRANSITIONS",
    "LeaseStateError",
    "next_state",
    "Lease",
    "LeaseStore",
]


class LeaseState(enum.Enum):
    FREE = "free"  # no row: never leased
    OFFERED = "offered"
    BOUND = "bound"
    DECLINED = "declined"
    RELEASED = "released"
    EXPIRED = "expired"


class LeaseEvent(enum.Enum):
    OFFER = "offer"  # DHCPOFFER sent (4.3.1)
    ACK = "ack"  # DHCPACK sent: bound or extended (4.3.2)
    DECLINE = "decline"  # DHCPDECLINE received (4.3.3)
    RELEASE = "release"  # DHCPRELEASE received, or the client chose another server's offer (4.3.2)
    EXPIRE = "expire"  # the lease, offer or decline hold ran out


S, E = LeaseState, LeaseEvent
# (state, event) -> next state. A state whose time ran out counts as EXPIRED (see `Lease.effective`).
TRANSITIONS: dict[tuple[LeaseState, LeaseEvent], LeaseState] = {
    (S.FREE, E.OFFER): S.OFFERED,
    (S.FREE, E.ACK): S.BOUND,  # INIT-REBOOT / SELECTING for a free address
    (S.RELEASED, E.OFFER): S.OFFERED,
    (S.RELEASED, E.ACK): S.BOUND,
    (S.EXPIRED, E.OFFER): S.OFFERED,
    (S.EXPIRED, E.ACK): S.BOUND,
    (S.OFFERED, E.OFFER): S.OFFERED,
    (S.OFFERED, E.ACK): S.BOUND,
    (S.OFFERED, E.DECLINE): S.DECLINED,
    (S.OFFERED, E.RELEASE): S.RELEASED,
    (S.OFFERED, E.EXPIRE): S.EXPIRED,
    (S.BOUND, E.OFFER): S.BOUND,  # a bound client that starts over is offered its own address
    (S.BOUND, E.ACK): S.BOUND,  # renewed
    (S.BOUND, E.DECLINE): S.DECLINED,
    (S.BOUND, E.RELEASE): S.RELEASED,
    (S.BOUND, E.EXPIRE): S.EXPIRED,
    (S.DECLINED, E.EXPIRE): S.EXPIRED,  # the hold ran out: the address may be used again
}
del S, E

_TIMED = frozenset({LeaseState.OFFERED, LeaseState.BOUND, LeaseState.DECLINED})


class LeaseStateError(ThreatlabError):
    """A lease change the table does not allow: a bug in the caller, never bad input."""


def next_state(state: LeaseState, event: LeaseEvent) -> LeaseState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise LeaseStateError(f"lease: no transition from {state.value} on {event.value}") from None


@dataclass(frozen=True, slots=True)
class Lease:
    address: IPv4Address
    chaddr: bytes  # the client hardware address (chaddr[:hlen])
    client_key: bytes  # DhcpMessage.client_key(): client identifier, else htype + chaddr
    state: LeaseState
    expiry: int  # ns: end of the offer hold, lease or decline hold
    client_id: bytes | None = None  # option 61 as sent
    circuit: bytes | None = None  # giaddr + option 82 circuit ID of a relayed client

    def effective(self, now: int) -> LeaseState:
        """The state at `now`: a timed state whose time ran out is EXPIRED."""
        if self.state in _TIMED and self.expiry <= now:
            return LeaseState.EXPIRED
        return self.state

    def active(self, now: int) -> bool:
        """Offered or bound and not run out: the address is this client's."""
        return self.effective(now) in (LeaseState.OFFERED, LeaseState.BOUND)

    def free(self, now: int) -> bool:
        """Anyone may be given the address."""
        return self.effective(now) in (LeaseState.RELEASED, LeaseState.EXPIRED)

    def moved(self, event: LeaseEvent, now: int, **changes) -> Lease:
        """The lease after `event` at `now` (raises LeaseStateError if the table forbids it)."""
        return replace(self, state=next_state(self.effective(now), event), **changes)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    address    INTEGER PRIMARY KEY,
    chaddr     BLOB NOT NULL,
    client_key BLOB NOT NULL,
    state      TEXT NOT NULL,
    expiry     INTEGER NOT NULL,
    client_id  BLOB,
    circuit    BLOB,
    seq        INTEGER NOT NULL  -- order of writes: the newest lease of a client wins on reload
);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


class LeaseStore:
    """Leases by address, with indexes by client, hardware address and circuit.

    `path` ":memory:" keeps the database in memory (simulations); a file path makes it durable:
    WAL journal, one committed transaction per change, `synchronous` FULL by default (NORMAL still
    survives a process crash, only not a power loss).
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, synchronous: str = "FULL") -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"leases: synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
        self.path = os.fspath(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if self.path != ":memory:":
                mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"leases: {self.path} cannot use WAL (journal mode {mode})")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            rows = self._db.execute(
                "SELECT address, chaddr, client_key, state, expiry, client_id, circuit, seq FROM leases"
                " ORDER BY seq"
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"leases: cannot open {self.path}: {exc}") from None
        self._leases: dict[int, Lease] = {}
        self._by_client: dict[bytes, int] = {}
        self._by_chaddr: dict[bytes, set[int]] = {}
        self._by_circuit: dict[bytes, set[int]] = {}
        self._by_state: dict[LeaseState, set[int]] = {s: set() for s in LeaseState}
        self._seq = rows[-1][-1] if rows else 0
        for address, chaddr, client_key, state, expiry, client_id, circuit, _ in rows:
            self._index(Lease(
                IPv4Address(address), bytes(chaddr), bytes(client_key), LeaseState(state), expiry,
                None if client_id is None else bytes(client_id), None if circuit is None else bytes(circuit),
            ))

    # --- reads (from the index) --------------------------------------------------------------------

    def get(self, address: IPv4Address) -> Lease | None:
        return self._leases.get(int(address))

    def by_client(self, client_key: bytes) -> Lease | None:
        """The lease this client had last, in any state."""
        a = self._by_client.get(client_key)
        return None if a is None else self._leases[a]

    def __len__(self) -> int:
        return len(self._leases)

    def __iter__(self) -> Iterator[Lease]:
        return iter(list(self._leases.values()))

    def __contains__(self, address: IPv4Address) -> bool:
        return int(address) in self._leases

    def count_active(self, now: int, *, chaddr: bytes | None = None, circuit: bytes | None = None) -> int:
        """Leases offered or bound at `now`: all, or of one hardware address, or of one circuit."""
        if chaddr is not None:
            addrs = self._by_chaddr.get(chaddr, ())
        elif circuit is not None:
            addrs = self._by_circuit.get(circuit, ())
        else:
            addrs = self._leases
        return sum(1 for a in addrs if self._leases[a].active(now))

    def count_state(self, now: int, state: LeaseState) -> int:
        return sum(1 for lease in self._leases.values() if lease.effective(now) is state)

    def in_state(self, *states: LeaseState) -> list[Lease]:
        """The leases whose stored state (not the effective one) is one of `states`."""
        return [self._leases[a] for s in states for a in self._by_state[s]]

    # --- writes (through to SQLite) ----------------------------------------------------------------

    def put(self, lease: Lease) -> None:
        """Insert or replace the lease of `lease.address`, committed before returning."""
        self._seq += 1
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO leases"
                " (address, chaddr, client_key, state, expiry, client_id, circuit, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (int(lease.address), lease.chaddr, lease.client_key, lease.state.value, lease.expiry,
                 lease.client_id, lease.circuit, self._seq),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"leases: cannot write {self.path}: {exc}") from None
        self._unindex(int(lease.address))
        self._index(lease)

    def delete(self, address: IPv4Address) -> None:
        try:
            self._db.execute("DELETE FROM leases WHERE address = ?", (int(address),))
        except sqlite3.Error as exc:
            raise StoreError(f"leases: cannot write {self.path}: {exc}") from None
        self._unindex(int(address))

    def get_meta(self, name: str, default: int = 0) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else int(row[0])

    def set_meta(self, name: str, value: int) -> None:
        try:
            self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))
        except sqlite3.Error as exc:
            raise StoreError(f"leases: cannot write {self.path}: {exc}") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None  # type: ignore[assignment]

    def __enter__(self) -> LeaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- index -------------------------------------------------------------------------------------

    def _index(self, lease: Lease) -> None:
        a = int(lease.address)
        self._leases[a] = lease
        self._by_client[lease.client_key] = a
        self._by_chaddr.setdefault(lease.chaddr, set()).add(a)
        self._by_state[lease.state].add(a)
        if lease.circuit is not None:
            self._by_circuit.setdefault(lease.circuit, set()).add(a)

    def _unindex(self, a: int) -> None:
        old = self._leases.pop(a, None)
        if old is None:
            return
        if self._by_client.get(old.client_key) == a:
            del self._by_client[old.client_key]
        self._by_state[old.state].discard(a)
        s = self._by_chaddr.get(old.chaddr)
        if s is not None:
            s.discard(a)
            if not s:
                del self._by_chaddr[old.chaddr]
        if old.circuit is not None:
            s = self._by_circuit.get(old.circuit)
            if s is not None:
                s.discard(a)
                if not s:
                    del self._by_circuit[old.circuit]
