"""Enrollment (RFC 6940 11.3): random server-chosen Node-IDs in X.509 certificates, issuance limits,
and the checks peers make with them (draft-song figure 6: chosen-ID and Sybil attacks)."""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from threatlab.net.sim import NS_PER_S, Simulator
from threatlab.overlay import ids
from threatlab.overlay.enrollment import (
    Credentials,
    EnrollmentConfig,
    EnrollmentError,
    EnrollmentServer,
    SecurityError,
    Verifier,
    node_id_uri,
    parse_node_id_uri,
    sign_message,
)
from threatlab.overlay.peer import Drop, JoinFailed, OverlayPeer, PeerConfig, State
from threatlab.overlay.simnet import OverlayNet, converged_overlay
from threatlab.overlay.wire import ForwardingHeader, Message, NodeDest, PingReq, SignerIdentityType

OVERLAY = "threatlab.example"


@pytest.fixture
def server():
    return EnrollmentServer(EnrollmentConfig(issuance_limit=2), random.Random(1))


def test_certificate_binds_a_server_chosen_node_id_and_the_user(server):
    c = Credentials.create(server, "alice@example.com", random.Random(2))
    san = c.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [node_id_uri(c.node_id, OVERLAY)]
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@example.com"]
    assert node_id_uri(c.node_id, OVERLAY) == f"reload://{c.node_id:032x}@{OVERLAY}/"
    assert parse_node_id_uri(node_id_uri(c.node_id, OVERLAY)) == (c.node_id, OVERLAY)
    c.certificate.verify_directly_issued_by(server.ca_certificate)
    # a second certificate for the same user has another random Node-ID
    d = Credentials.create(server, "alice@example.com", random.Random(3))
    assert d.node_id != c.node_id and c.node_id.bit_length() > 100


def test_issuance_limit_per_user_is_configurable(server):
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    server.enroll("bob@example.com", key)
    server.enroll("bob@example.com", key)
    with pytest.raises(EnrollmentError, match="limit 2"):
        server.enroll("bob@example.com", key)
    assert server.issued["bob@example.com"] == 2 and server.refused["issuance limit"] == 1
    server.enroll("carol@example.com", key)  # the limit is per user
    unlimited = EnrollmentServer(EnrollmentConfig(issuance_limit=None), random.Random(1))
    for _ in range(5):
        unlimited.enroll("mallory@example.com", key)
    with pytest.raises(EnrollmentError, match="name@domain"):
        server.enroll("nobody", key)


def test_same_seed_same_certificates():
    a = EnrollmentServer(EnrollmentConfig(), random.Random(7))
    b = EnrollmentServer(EnrollmentConfig(), random.Random(7))
    assert a.ca_der == b.ca_der
    ca = Credentials.create(a, "u@example.com", random.Random(8))
    cb = Credentials.create(b, "u@example.com", random.Random(8))
    assert ca.der == cb.der and ca.node_id == cb.node_id


def test_a_csr_gets_a_certificate_whose_node_id_the_server_chose(server):
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dave@example.com")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(node_id_uri(42, OVERLAY))]),
            critical=False,
        )
        .sign(key, None)
    )
    cert = server.enroll_csr(csr.public_bytes(serialization.Encoding.DER), "dave@example.com")
    creds = Credentials.from_certificate(key, cert)
    assert creds.node_id != 42  # asking for an ID does not get it
    with pytest.raises(EnrollmentError):
        server.enroll_csr(b"junk", "dave@example.com")


def test_verifier_accepts_only_the_overlay_cas_certificates(server):
    v = Verifier(server.ca_certificate, OVERLAY)
    good = Credentials.create(server, "erin@example.com", random.Random(4))
    info = v.certificate(good.der, 0)
    assert info.node_ids == (good.node_id,) and info.user == "erin@example.com" and info.enrolled
    selfmade = Credentials.self_signed("mallory@example.com", 12345, random.Random(5))
    with pytest.raises(SecurityError, match="not issued by the enrollment server"):
        v.certificate(selfmade.der, 0)
    # a CA with the same name but another key
    rogue = EnrollmentServer(EnrollmentConfig(), random.Random(99))
    forged = Credentials.create(rogue, "mallory@example.com", random.Random(6))
    with pytest.raises(SecurityError, match="signature invalid"):
        v.certificate(forged.der, 0)
    other = EnrollmentServer(EnrollmentConfig(overlay="other.example"), random.Random(1))
    with pytest.raises(SecurityError, match="another overlay"):
        Verifier(other.ca_certificate, OVERLAY).certificate(
            Credentials.create(other, "x@example.com", random.Random(1)).der, 0
        )
    with pytest.raises(SecurityError, match="expired"):
        v.certificate(good.der, 400 * 86400 * NS_PER_S)
    # without an enrollment server every well-formed certificate is taken at its word
    assert Verifier(None, OVERLAY).certificate(selfmade.der, 0).node_ids == (12345,)


def test_message_signature_covers_contents_and_names_the_signer(server):
    creds = Credentials.create(server, "frank@example.com", random.Random(9))
    v = Verifier(server.ca_certificate, OVERLAY)
    h = ForwardingHeader(ids.overlay_hash(OVERLAY), 7, (NodeDest(1),))
    signed = sign_message(Message(h, PingReq(b"hello")), creds)
    assert signed.security.signature.identity.type == SignerIdentityType.CERT_HASH
    raw = signed.encode()
    assert v.message(raw, 0).node_ids == (creds.node_id,)
    tampered = raw.replace(b"hello", b"hellp")
    with pytest.raises(SecurityError, match="signature invalid"):
        v.message(tampered, 0)
    # the forwarding header is not signed: peers on the path rewrite it (via list, TTL)
    moved = sign_message(
        Message(ForwardingHeader(h.overlay, 7, (NodeDest(2),), ttl=3), PingReq(b"hello")), creds
    )
    assert v.message(moved.encode(), 0)
    with pytest.raises(SecurityError, match="unsigned"):
        v.message(Message(h, PingReq()).encode(), 0)


def test_with_enrollment_a_self_chosen_node_id_cannot_join():
    sim = Simulator(seed=1)
    cfg = PeerConfig(maintenance=False, enrollment=True)
    net = converged_overlay(sim, 30, cfg)
    ca = next(iter(net.nodes.values())).verifier.ca
    bootstrap = sorted(net.nodes)[0]
    # a chosen-ID attacker: places itself just before a victim key with a self-made certificate
    target = sorted(net.nodes)[10] - 1
    mallory = OverlayPeer(
        target,
        cfg,
        random.Random(3),
        Credentials.self_signed("mallory@example.com", target, random.Random(3)),
        ca=ca,
    )
    net.add(mallory)
    mallory.join(bootstrap, sim.now)
    net.service(mallory)
    net.run_for(20 * NS_PER_S)
    assert mallory.state is not State.JOINED
    assert any(type(e) is JoinFailed for _, n, e in net.events if n == target)
    assert net.drops()[Drop.NOT_ENROLLED] >= 1
    assert all(
        target not in p.successors and target not in p.predecessors for p in net.peers() if p is not mallory
    )


def test_without_enrollment_the_same_chosen_id_joins_where_it_likes():
    sim = Simulator(seed=1)
    cfg = PeerConfig(maintenance=False)
    net = converged_overlay(sim, 30, cfg)
    victim = sorted(net.nodes)[10]
    mallory = net.add(OverlayPeer(victim - 1, cfg, random.Random(3)))
    mallory.join(sorted(net.nodes)[0], sim.now)
    net.service(mallory)
    net.run_for(5 * NS_PER_S)
    assert mallory.state is State.JOINED and net.nodes[victim].predecessors[0] == victim - 1


def test_enrolled_peers_join_for_real():
    sim = Simulator(seed=2)
    server = EnrollmentServer(EnrollmentConfig(issuance_limit=None), random.Random(5))
    cfg = PeerConfig(
        enrollment=True,
        signatures=True,
        stabilize_interval_ns=2 * NS_PER_S,
        check_predecessor_interval_ns=2 * NS_PER_S,
        fix_fingers_interval_ns=NS_PER_S,
    )
    net = OverlayNet(sim)
    first = None
    for k in range(6):
        c = Credentials.create(server, f"p{k}@example.com", random.Random(k))
        p = net.add(OverlayPeer(c.node_id, cfg, random.Random(k), c, ca=server.ca_certificate))
        p.join(first or p.node_id, sim.now)
        first = first or p.node_id
        net.service(p)
        net.run_for(3 * NS_PER_S)
    net.run_for(10 * NS_PER_S)
    assert all(p.state is State.JOINED for p in net.peers())
    assert not net.drops()
    assert all(p.verifier.checks["certificate"] <= 6 for p in net.peers())  # certificates are cached


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_a_signed_overlay_run_without_complaint(tmp_path):
    sim = Simulator(seed=3)
    net = converged_overlay(sim, 20, PeerConfig(maintenance=False, signatures=True, enrollment=True))
    path = tmp_path / "signed.pcap"
    net.capture(path)
    a, b = net.peers()[0], net.peers()[7]
    aor = "sip:" + a.credentials.user
    a.store(aor, "sip:a@192.0.2.1", sim.now)
    net.service(a)
    net.run_for(NS_PER_S)
    b.fetch(aor, sim.now)
    net.service(b)
    net.run_for(NS_PER_S)
    net.close()
    assert [e.ok for _, _, e in net.events] == [True, True]
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "reload.message.code",
            "-e",
            "reload.signature.identity.type",
            "-e",
            "_ws.expert.message",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(out) == net.counters["datagrams"] >= 6
    codes = {int(line.split("\t")[0]) for line in out}
    assert {7, 8, 9, 10} <= codes  # store and fetch, request and answer
    for line in out:
        code, ident, expert = (line.split("\t") + ["", ""])[:3]
        assert ident == "1" and expert == "", line  # cert_hash identities, nothing Wireshark objects to
