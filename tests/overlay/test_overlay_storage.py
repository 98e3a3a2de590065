"""Stored data: owner signatures and RFC 6940 7.3 access control, replay checks, publication limits and
blacklists (draft-song 4.3, figure 4: unauthorized data operations, pollution, spam; figure 6: replay)."""

from __future__ import annotations

import random

import pytest

from threatlab.errors import ParamError
from threatlab.net.sim import NS_PER_S, Simulator
from threatlab.overlay import ids
from threatlab.overlay.enrollment import (
    Credentials,
    EnrollmentConfig,
    EnrollmentServer,
    Verifier,
    sign_stored_data,
)
from threatlab.overlay.peer import Drop as PeerDrop
from threatlab.overlay.peer import FetchDone, PeerConfig
from threatlab.overlay.simnet import converged_overlay
from threatlab.overlay.storage import (
    Drop,
    Storage,
    StorageConfig,
    aor_resource_id,
    parse_sip_registration,
    sip_registration_value,
    storage_time_ms,
)
from threatlab.overlay.wire import (
    CERTIFICATE_BY_NODE,
    CERTIFICATE_BY_USER,
    SIP_REGISTRATION,
    ArrayEntry,
    DataValue,
    DictionaryEntry,
    ErrorCode,
    StoredData,
    StoredDataSpecifier,
    StoreKindData,
)

NOW = 5 * NS_PER_S


@pytest.fixture(scope="module")
def world():
    server = EnrollmentServer(EnrollmentConfig(issuance_limit=None), random.Random(1))
    alice = Credentials.create(server, "alice@example.com", random.Random(2))
    mallory = Credentials.create(server, "mallory@example.com", random.Random(3))
    return server, alice, mallory


def _reg(
    creds: Credentials,
    aor: str,
    contact: str,
    t: int = NOW,
    key_node: int | None = None,
    lifetime: int = 3600,
) -> tuple[int, StoredData]:
    rid = aor_resource_id(aor)
    value = DictionaryEntry(
        ids.to_bytes(key_node if key_node is not None else creds.node_id),
        DataValue(True, sip_registration_value(contact)),
    )
    return rid, sign_stored_data(rid, SIP_REGISTRATION, storage_time_ms(t), lifetime, value, creds)


def _store(
    st: Storage,
    rid: int,
    sd: StoredData,
    creds: Credentials | None,
    kind: int = SIP_REGISTRATION,
    now: int = NOW,
    originator: int = 7,
):
    certs = (creds.generic_certificate,) if creds else ()
    return st.store(rid, (StoreKindData(kind, 0, (sd,)),), certs, originator, now)


def _signed_storage(server, **kw) -> Storage:
    return Storage(StorageConfig(signatures=True, **kw), Verifier(server.ca_certificate, "threatlab.example"))


def test_sip_registration_value_is_rfc7904_uri_form():
    v = sip_registration_value("sip:alice@192.0.2.1")
    assert v[0] == 1 and parse_sip_registration(v) == "sip:alice@192.0.2.1"
    assert parse_sip_registration(b"\x02\x00\x00") is None and parse_sip_registration(v[:-1]) is None
    assert aor_resource_id("sip:alice@example.com") == ids.resource_id("alice@example.com")


def test_without_signatures_anyone_overwrites_anyones_registration(world):
    _, alice, mallory = world
    st = Storage(StorageConfig())
    rid, sd = _reg(alice, "sip:alice@example.com", "sip:alice@192.0.2.1")
    assert _store(st, rid, sd, None).ok
    # the attacker writes the same slot (alice's Node-ID key) with its own contact: accepted
    _, fake = _reg(mallory, "sip:alice@example.com", "sip:mallory@203.0.113.66", key_node=alice.node_id)
    assert _store(st, rid, fake, None).ok
    (resp,), _ = st.fetch(rid, (StoredDataSpecifier(SIP_REGISTRATION),), NOW)
    assert [parse_sip_registration(v.value.value.value) for v in resp.values] == ["sip:mallory@203.0.113.66"]


def test_user_node_match_lets_only_the_aors_user_write_and_only_under_its_own_node_id(world):
    server, alice, mallory = world
    st = _signed_storage(server)
    rid, sd = _reg(alice, "sip:alice@example.com", "sip:alice@192.0.2.1")
    assert _store(st, rid, sd, alice).ok
    _, fake = _reg(mallory, "sip:alice@example.com", "sip:mallory@203.0.113.66", key_node=mallory.node_id)
    out = _store(st, rid, fake, mallory)
    assert not out.ok and out.reason == Drop.ACCESS_DENIED and out.error_code == ErrorCode.FORBIDDEN
    # alice under a Node-ID that is not hers
    _, wrong_key = _reg(alice, "sip:alice@example.com", "sip:x@192.0.2.9", key_node=mallory.node_id)
    assert _store(st, rid, wrong_key, alice).reason == Drop.ACCESS_DENIED
    # unsigned, or a signature over other bytes
    unsigned = StoredData(sd.storage_time, sd.lifetime, sd.value)
    assert _store(st, rid, unsigned, alice).reason == Drop.UNSIGNED
    bent = StoredData(sd.storage_time, sd.lifetime + 1, sd.value, sd.signature)  # lifetime is signed too
    assert _store(st, rid, bent, alice).reason == Drop.BAD_SIGNATURE
    assert st.drops == {Drop.ACCESS_DENIED: 2, Drop.UNSIGNED: 1, Drop.BAD_SIGNATURE: 1}
    assert len(st) == 1


def test_user_match_and_node_match(world):
    server, alice, mallory = world
    st = _signed_storage(server)
    by_user = ids.resource_id("alice@example.com")
    val = ArrayEntry(0, DataValue(True, alice.der))
    sd = sign_stored_data(by_user, CERTIFICATE_BY_USER, storage_time_ms(NOW), 60, val, alice)
    assert _store(st, by_user, sd, alice, CERTIFICATE_BY_USER).ok
    sd_m = sign_stored_data(by_user, CERTIFICATE_BY_USER, storage_time_ms(NOW), 60, val, mallory)
    assert _store(st, by_user, sd_m, mallory, CERTIFICATE_BY_USER).reason == Drop.ACCESS_DENIED
    by_node = ids.resource_id(ids.to_bytes(alice.node_id))
    sd_n = sign_stored_data(by_node, CERTIFICATE_BY_NODE, storage_time_ms(NOW), 60, val, alice)
    assert _store(st, by_node, sd_n, alice, CERTIFICATE_BY_NODE).ok
    sd_nm = sign_stored_data(by_node, CERTIFICATE_BY_NODE, storage_time_ms(NOW), 60, val, mallory)
    assert _store(st, by_node, sd_nm, mallory, CERTIFICATE_BY_NODE).reason == Drop.ACCESS_DENIED


def test_a_replayed_older_registration_overwrites_the_newer_one_unless_replay_protection(world):
    server, alice, _ = world
    rid, old = _reg(alice, "sip:alice@example.com", "sip:alice@old", t=NOW)
    _, new = _reg(alice, "sip:alice@example.com", "sip:alice@new", t=NOW + NS_PER_S)
    for cfg, accepted in ((StorageConfig(), True), (StorageConfig(replay_protection=True), False)):
        st = Storage(cfg)
        assert _store(st, rid, old, None).ok and _store(st, rid, new, None, now=NOW + NS_PER_S).ok
        out = _store(st, rid, old, None, now=NOW + 2 * NS_PER_S)  # the attacker replays the old Store
        assert out.ok is accepted
        if not accepted:
            assert out.reason == Drop.TOO_OLD and out.error_code == ErrorCode.DATA_TOO_OLD
    st = Storage(StorageConfig(replay_protection=True, replay_window_ms=10_000))
    assert _store(st, rid, old, None, now=NOW + 11 * NS_PER_S).reason == Drop.OUT_OF_WINDOW


def test_publication_limit_caps_values_per_writer(world):
    server, _, mallory = world
    st = _signed_storage(server, publication_limit=2)
    rid = aor_resource_id("sip:mallory@example.com")
    for k in range(2):
        _, sd = _reg(
            mallory, "sip:mallory@example.com", f"sip:spam{k}@x", key_node=mallory.node_id, t=NOW + k
        )
        assert _store(st, rid, sd, mallory).ok  # the same slot twice: one value
    spam = Storage(StorageConfig(publication_limit=3))
    outs = [
        _store(spam, ids.resource_id(f"r{k}"), _reg(mallory, f"sip:r{k}", "sip:x")[1], None).ok
        for k in range(5)
    ]
    assert outs == [True, True, True, False, False]
    assert spam.drops[Drop.PUBLICATION_LIMIT] == 2
    with pytest.raises(ParamError):
        StorageConfig(publication_limit=0).check()


def test_blacklist_refuses_listed_writers_and_contacts_pointing_at_a_victim(world):
    server, alice, mallory = world
    st = _signed_storage(server, blacklist=True)
    st.blacklisted_contacts.add("sip:victim@198.51.100.1")
    rid, sd = _reg(mallory, "sip:mallory@example.com", "sip:victim@198.51.100.1")
    assert _store(st, rid, sd, mallory).reason == Drop.BLACKLISTED
    st.blacklisted_writers.add("alice@example.com")
    rid, sd = _reg(alice, "sip:alice@example.com", "sip:alice@1")
    assert _store(st, rid, sd, alice).reason == Drop.BLACKLISTED


def test_values_expire_after_their_lifetime(world):
    _, alice, _ = world
    st = Storage(StorageConfig())
    rid, sd = _reg(alice, "sip:alice@example.com", "sip:a", lifetime=10)
    assert _store(st, rid, sd, None).ok
    (resp,), _ = st.fetch(rid, (StoredDataSpecifier(SIP_REGISTRATION),), NOW + 20 * NS_PER_S)
    assert resp.values == ()
    assert (
        st.expire(NOW + 20 * NS_PER_S) == 1 and len(st) == 0 and st.by_writer["node:" + "0" * 31 + "7"] == 0
    )


def test_fetchers_check_signatures_end_to_end_so_a_tampering_storing_peer_is_caught():
    sim = Simulator(seed=1)
    net = converged_overlay(sim, 20, PeerConfig(maintenance=False, signatures=True, enrollment=True))
    a, b = net.peers()[0], net.peers()[9]
    aor = "sip:" + a.credentials.user
    a.store(aor, "sip:a@192.0.2.1", sim.now)
    net.service(a)
    net.run_for(NS_PER_S)
    rid = aor_resource_id(aor)
    holders = [p for p in net.peers() if len(p.storage)]
    assert len(holders) == 3  # responsible peer and two replicas
    # every holder's copy is rewritten by a dishonest storing peer: a new contact, the old signature
    for h in holders:
        slot = h.storage.data[rid][SIP_REGISTRATION]
        ((_, s),) = slot.items()
        forged = DictionaryEntry(
            s.data.value.key, DataValue(True, sip_registration_value("sip:evil@203.0.113.9"))
        )
        s.data = StoredData(s.data.storage_time, s.data.lifetime, forged, s.data.signature)
    b.fetch(aor, sim.now)
    net.service(b)
    net.run_for(NS_PER_S)
    (done,) = [e for _, n, e in net.events if n == b.node_id and type(e) is FetchDone]
    assert done.ok and done.contacts == ()  # the forged value is dropped, not believed
    assert b.drops[PeerDrop.BAD_STORED_VALUE] == 1
