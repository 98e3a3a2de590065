"""The lease store: SQLite in WAL mode, nothing lost across a restart or a crash; the lease state
table."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from ipaddress import IPv4Address as A

import pytest

from threatlab.dhcp.leases import (
    TRANSITIONS,
    Lease,
    LeaseEvent,
    LeaseState,
    LeaseStateError,
    LeaseStore,
    next_state,
)
from threatlab.errors import StoreError

S = 1_000_000_000


def lease(n: int, state=LeaseState.BOUND, expiry=100 * S, client=None, circuit=None) -> Lease:
    mac = bytes([2, 0, 0, 0, 0, n])
    return Lease(A(f"10.0.0.{n}"), mac, client or b"h\x01" + mac, state, expiry,
                 client_id=None, circuit=circuit)


def test_put_get_and_indexes():
    with LeaseStore() as store:
        a, b = lease(1), lease(2, LeaseState.OFFERED, circuit=b"c1")
        store.put(a)
        store.put(b)
        assert store.get(A("10.0.0.1")) == a and store.get(A("10.0.0.3")) is None
        assert store.by_client(a.client_key) == a
        assert len(store) == 2 and A("10.0.0.2") in store
        assert store.count_active(0) == 2 and store.count_active(200 * S) == 0
        assert store.count_active(0, chaddr=a.chaddr) == 1
        assert store.count_active(0, circuit=b"c1") == 1 and store.count_active(0, circuit=b"c2") == 0
        # the address goes to another client: the old client's index entry goes with it
        c = Lease(a.address, bytes(6), b"other", LeaseState.OFFERED, 5 * S)
        store.put(c)
        assert store.by_client(a.client_key) is None and store.by_client(b"other") == c
        store.delete(b.address)
        assert store.get(b.address) is None and store.count_active(0, circuit=b"c1") == 0


def test_leases_survive_a_clean_restart(tmp_path):
    path = tmp_path / "leases.sqlite"
    with LeaseStore(path) as store:
        for n in range(1, 6):
            store.put(lease(n))
        store.put(lease(3, LeaseState.DECLINED, expiry=7 * S))
        store.set_meta("auth_replay", 42)
    with LeaseStore(path) as store:
        assert len(store) == 5
        assert store.get(A("10.0.0.3")).state is LeaseState.DECLINED
        assert store.get_meta("auth_replay") == 42
        assert store.by_client(lease(4).client_key) == lease(4)


def test_the_database_is_in_wal_mode(tmp_path):
    path = tmp_path / "leases.sqlite"
    with LeaseStore(path) as store:
        store.put(lease(1))
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


CRASHER = textwrap.dedent("""
    import os, signal, sys
    from ipaddress import IPv4Address as A
    from threatlab.dhcp.leases import Lease, LeaseState, LeaseStore
    store = LeaseStore(sys.argv[1])
    for n in range(1, 51):
        mac = bytes([2, 0, 0, 0, 0, n])
        store.put(Lease(A(f"10.0.0.{n}"), mac, b"h\\x01" + mac, LeaseState.BOUND, n * 10**9))
    store.set_meta("auth_replay", 50)
    sys.stdout.write("written\\n"); sys.stdout.flush()
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)   # no close, no atexit, no flush of anything
    os._exit(0)
""")


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_no_lease_is_lost_when_the_process_dies_without_closing(tmp_path, how):
    path = tmp_path / "leases.sqlite"
    p = subprocess.run([sys.executable, "-c", CRASHER, str(path), how], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert p.stdout == "written\n", p.stderr
    assert os.path.exists(str(path) + "-wal")  # the data is in the write-ahead log, not yet checkpointed
    with LeaseStore(path) as store:
        assert len(store) == 50
        assert store.get(A("10.0.0.50")).expiry == 50 * S
        assert store.get_meta("auth_replay") == 50


def test_newest_lease_of_a_client_wins_on_reload(tmp_path):
    path = tmp_path / "leases.sqlite"
    client = b"i\x01abcdef"
    with LeaseStore(path) as store:
        store.put(lease(9, LeaseState.RELEASED, client=client))
        store.put(lease(2, LeaseState.BOUND, client=client))  # lower address, written later
    with LeaseStore(path) as store:
        assert store.by_client(client).address == A("10.0.0.2")


def test_an_unopenable_path_is_a_store_error(tmp_path):
    with pytest.raises(StoreError):
        LeaseStore(tmp_path / "missing-dir" / "leases.sqlite")


def test_effective_state_expires_timed_states():
    bound = lease(1, LeaseState.BOUND, expiry=10 * S)
    assert bound.effective(9 * S) is LeaseState.BOUND and bound.active(9 * S)
    assert bound.effective(10 * S) is LeaseState.EXPIRED and bound.free(10 * S)
    declined = lease(1, LeaseState.DECLINED, expiry=10 * S)
    assert not declined.free(9 * S) and not declined.active(9 * S) and declined.free(10 * S)
    released = lease(1, LeaseState.RELEASED, expiry=0)
    assert released.free(0)


def test_transition_table():
    assert next_state(LeaseState.FREE, LeaseEvent.OFFER) is LeaseState.OFFERED
    assert next_state(LeaseState.OFFERED, LeaseEvent.ACK) is LeaseState.BOUND
    assert next_state(LeaseState.BOUND, LeaseEvent.DECLINE) is LeaseState.DECLINED
    assert next_state(LeaseState.DECLINED, LeaseEvent.EXPIRE) is LeaseState.EXPIRED
    # a held declined address is never offered or bound; a free address cannot be released
    for state, event in [(LeaseState.DECLINED, LeaseEvent.OFFER), (LeaseState.DECLINED, LeaseEvent.ACK),
                         (LeaseState.FREE, LeaseEvent.RELEASE), (LeaseState.RELEASED, LeaseEvent.DECLINE)]:
        assert (state, event) not in TRANSITIONS
        with pytest.raises(LeaseStateError):
            next_state(state, event)


def test_moved_uses_the_effective_state():
    offered = lease(1, LeaseState.OFFERED, expiry=10 * S)
    assert offered.moved(LeaseEvent.ACK, 5 * S).state is LeaseState.BOUND
    declined = lease(1, LeaseState.DECLINED, expiry=10 * S)
    with pytest.raises(LeaseStateError):
        declined.moved(LeaseEvent.OFFER, 5 * S)
    assert declined.moved(LeaseEvent.OFFER, 10 * S).state is LeaseState.OFFERED  # the hold ran out
