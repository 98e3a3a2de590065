"""EXPERIMENTAL X.509 server authentication (draft-ietf-dhc-v4-threat-analysis 4.3,
threatlab.dhcp.x509auth): a real certificate chain, cross-checked by independent validators
(cryptography's RFC 5280 verifier for P-256, `openssl verify` for Ed25519); the option's format
and its RFC 3396 split; every reason a client refuses a reply; and client and server on the
simulated network, through a relay agent, with and without RFC 3118 on top."""

from __future__ import annotations

import datetime
import random
import shutil
import subprocess
from dataclasses import replace
from ipaddress import IPv4Address as A

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from threatlab.dhcp.auth import AuthKey, insert_before_end
from threatlab.dhcp.client import DhcpClientConfig
from threatlab.dhcp.leases import LeaseStore
from threatlab.dhcp.relay import strip_relay_agent_information
from threatlab.dhcp.scene import swap_server, x509_clients
from threatlab.dhcp.simhost import dhcp_lab, lan_server_config, routed_server_config
from threatlab.dhcp.wire import (
    CircuitId,
    DhcpMessage,
    DhcpMessageType,
    IpAddressLeaseTime,
    MessageType,
    RawOption,
    RelayAgentInformation,
    Routers,
    ServerIdentifier,
    SubnetMask,
    option_spans,
)
from threatlab.dhcp.x509auth import (
    ALG_ED25519,
    ALG_P256,
    EPOCH_2025,
    EXPERIMENTAL,
    X509_OPTION,
    X509DhcpServer,
    X509Drop,
    X509Signer,
    X509Verifier,
    _cert,
    issue_leaf,
    make_pki,
    measure_costs,
    option_bytes,
)
from threatlab.net import Simulator

S = 1_000_000_000
SRV = A("10.0.0.1")
AT_2025 = datetime.datetime.fromtimestamp(EPOCH_2025, datetime.timezone.utc)


def clock(ns: int) -> int:
    return EPOCH_2025 + ns // S


def ack(server=SRV, router=SRV, xid=0x1234) -> bytes:
    msg = DhcpMessage(
        op=2,
        xid=xid,
        yiaddr=A("10.0.0.100"),
        chaddr=b"\x02\x00\x00\x00\x00\x01",
        options=(
            DhcpMessageType(MessageType.ACK),
            ServerIdentifier(server),
            IpAddressLeaseTime(3600),
            SubnetMask(A("255.255.255.0")),
            Routers((router,)),
        ),
    )
    data = msg.encode()
    return data + bytes(300 - len(data))


@pytest.fixture(scope="module")
def pki():
    return make_pki(SRV, random.Random(1))


def verify(pki_, data: bytes, **kw) -> str | None:
    return X509Verifier([pki_.anchor], clock=clock, **kw).verify(DhcpMessage.decode(data), 0)


def test_the_module_says_it_is_experimental_and_uses_a_site_specific_option_code():
    assert EXPERIMENTAL and 224 <= X509_OPTION <= 254


# --- the certificates ---------------------------------------------------------------------------


def test_the_chain_is_a_real_one_leaf_for_the_server_address_issued_by_an_intermediate_ca():
    p = make_pki(SRV, random.Random(2), depth=2)
    leaf, intermediate = p.chain
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.IPAddress
    ) == [SRV]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(p.anchor)
    assert p.anchor.subject == p.anchor.issuer  # self-signed root: the trust anchor
    assert p.chain == make_pki(SRV, random.Random(2), depth=2).chain  # keys from the rng: reproducible


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_cryptographys_own_rfc5280_verifier_accepts_the_p256_chain_for_the_server_address(depth):
    p = make_pki(SRV, random.Random(3), algorithm=ALG_P256, depth=depth)
    verifier = (
        PolicyBuilder().store(Store([p.anchor])).time(AT_2025).build_server_verifier(x509.IPAddress(SRV))
    )
    built = verifier.verify(p.chain[0], list(p.chain[1:]))
    assert len(built) == depth + 1 and built[-1] == p.anchor
    with pytest.raises(Exception):
        PolicyBuilder().store(Store([p.anchor])).time(AT_2025).build_server_verifier(
            x509.IPAddress(A("10.0.0.2"))
        ).verify(p.chain[0], list(p.chain[1:]))


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_verifies_the_ed25519_chain(tmp_path, pki):
    def pem(c):
        return c.public_bytes(serialization.Encoding.PEM)

    (tmp_path / "root.pem").write_bytes(pem(pki.anchor))
    (tmp_path / "int.pem").write_bytes(b"".join(pem(c) for c in pki.chain[1:]))
    (tmp_path / "leaf.pem").write_bytes(pem(pki.chain[0]))
    out = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            str(EPOCH_2025),
            "-CAfile",
            str(tmp_path / "root.pem"),
            "-untrusted",
            str(tmp_path / "int.pem"),
            "-verify_ip",
            str(SRV),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stdout.strip().endswith(": OK"), out.stdout + out.stderr


# --- the option --------------------------------------------------------------------------------------


def test_the_option_carries_version_algorithm_time_chain_and_signature_split_per_rfc3396(pki):
    signed = X509Signer(pki).sign(ack(), 5 * S)
    spans = [s for s in option_spans(signed) if s.code == X509_OPTION]
    assert len(spans) > 1 and all(s.length <= 255 for s in spans)  # RFC 3396: consecutive instances
    value = DhcpMessage.decode(signed).get(X509_OPTION).encode_value()
    assert value == b"".join(signed[s.value_at : s.value_at + s.length] for s in spans)
    assert value[0] == 1 and value[1] == ALG_ED25519
    assert int.from_bytes(value[2:10], "big") == EPOCH_2025 + 5 and value[10] == 2
    at = 11
    for cert in pki.chain:
        der = cert.public_bytes(serialization.Encoding.DER)
        assert (
            int.from_bytes(value[at : at + 2], "big") == len(der) and value[at + 2 : at + 2 + len(der)] == der
        )
        at += 2 + len(der)
    assert (
        int.from_bytes(value[at : at + 2], "big") == 64 and len(value) == at + 2 + 64
    )  # an Ed25519 signature
    assert option_bytes(signed) == len(signed) - len(ack()) == len(value) + 2 * len(spans)


def test_a_signed_reply_verifies_and_what_it_costs_is_measured(pki):
    assert verify(pki, X509Signer(pki).sign(ack(), 0)) is None
    costs = measure_costs(pki, ack(), repeat=5)
    assert (
        costs["bytes_added"] == option_bytes(X509Signer(pki).sign(ack(), 0)) and costs["message_bytes"] > 300
    )
    assert costs["sign_us"] > 0 and costs["verify_us"] > 0


def test_relay_agents_may_change_hops_giaddr_and_option_82_without_breaking_the_signature(pki):
    signed = bytearray(X509Signer(pki).sign(ack(), 0))
    signed[3] = 1
    signed[24:28] = A("10.0.1.1").packed
    rai = RelayAgentInformation((CircuitId(b"eth0"),)).encode_value()
    relayed = insert_before_end(bytes(signed), bytes((82, len(rai))) + rai)
    assert verify(pki, relayed) is None and verify(pki, strip_relay_agent_information(relayed)) is None


def _tamper_router(data: bytes) -> bytes:
    at = data.index(bytes((3, 4)) + SRV.packed)
    return data[: at + 2] + A("10.0.0.66").packed + data[at + 6 :]


@pytest.mark.parametrize(
    "case,reason",
    [
        ("missing", X509Drop.MISSING),
        ("tampered", X509Drop.SIGNATURE),
        ("other-anchor", X509Drop.UNTRUSTED),
        ("other-server-id", X509Drop.IDENTITY),
        ("expired", X509Drop.EXPIRED),
        ("stale", X509Drop.STALE),
        ("truncated", X509Drop.MALFORMED),
        ("leaf-as-ca", X509Drop.NOT_CA),
        ("other-xid", X509Drop.SIGNATURE),
    ],
)
def test_each_reason_to_refuse_a_reply(pki, case, reason):
    signer = X509Signer(pki)
    anchors = [pki.anchor]
    verifier_clock = clock
    data = signer.sign(ack(), 0)
    if case == "missing":
        data = ack()
    elif case == "tampered":
        data = _tamper_router(data)
    elif case == "other-anchor":
        anchors = [make_pki(SRV, random.Random(99)).anchor]
    elif case == "other-server-id":  # the rogue signs a reply naming another server with this certificate
        data = signer.sign(ack(server=A("10.0.0.250")), 0)
    elif case == "expired":

        def verifier_clock(ns):
            return EPOCH_2025 + 400 * 86400
    elif case == "stale":  # a reply signed an hour before it is checked

        def verifier_clock(ns):
            return EPOCH_2025 + 3600
    elif case == "truncated":
        msg = DhcpMessage.decode(data)
        value = msg.get(X509_OPTION).encode_value()
        data = replace(
            msg,
            options=tuple(o for o in msg.options if o.code != X509_OPTION)
            + (RawOption(X509_OPTION, value[:-10]),),
        ).encode()
    elif case == "leaf-as-ca":  # a leaf (not a CA) signing a "server" certificate
        rogue = make_pki(A("10.0.0.250"), random.Random(5), depth=1)
        forged = _cert(
            "dhcp server 10.0.0.1",
            rogue.key,
            "dhcp server 10.0.0.250",
            rogue.key,
            7,
            ca=False,
            path_length=None,
            not_before=AT_2025 - datetime.timedelta(days=1),
            days=30,
            server_ip=SRV,
        )
        bad = replace(pki, chain=(forged, rogue.chain[0]), key=rogue.key)
        data = X509Signer(bad).sign(ack(), 0)
        anchors = [rogue.anchor]
    elif case == "other-xid":  # a captured reply replayed to another exchange
        msg = DhcpMessage.decode(data)
        data = replace(msg, xid=msg.xid + 1).encode()
    v = X509Verifier(anchors, clock=verifier_clock)
    assert v.verify(DhcpMessage.decode(data), 0) == reason


def test_a_client_without_a_clock_skips_time_checks_and_accepts_an_old_reply(pki):
    data = X509Signer(pki).sign(ack(), 0)
    assert (
        X509Verifier([pki.anchor], clock=lambda ns: EPOCH_2025 + 400 * 86400).verify(
            DhcpMessage.decode(data), 0
        )
        == X509Drop.EXPIRED
    )
    assert X509Verifier([pki.anchor], clock=None).verify(DhcpMessage.decode(data), 0) is None


def test_the_ca_vouches_for_every_server_it_certified(pki):
    other = issue_leaf(pki, A("10.0.0.250"), random.Random(6))
    assert other.chain[1:] == pki.chain[1:] and other.chain[0] != pki.chain[0]
    assert verify(pki, X509Signer(other).sign(ack(server=A("10.0.0.250")), 0)) is None
    assert verify(pki, X509Signer(other).sign(ack(server=SRV), 0)) == X509Drop.IDENTITY


# --- on the simulated network ---------------------------------------------------------------------


def _x509_lab(seed, *, relayed, mutual=False, algorithm=ALG_ED25519):
    sim = Simulator(seed=seed)
    keys = (AuthKey(1, bytes(16) + b"k"),)
    extra = {"auth_paradigm": "mutual", "auth_keys": keys} if mutual else {}
    cfg = routed_server_config(**extra) if relayed else lan_server_config(routers=(SRV,), **extra)
    lab = dhcp_lab(sim, n_clients=2, relayed=relayed, start=None, server_configs=[cfg])
    p = make_pki(SRV, random.Random(seed), algorithm=algorithm)
    swap_server(lab, X509DhcpServer(cfg, LeaseStore(), random.Random(1), X509Signer(p)))
    ccfg = (
        DhcpClientConfig(auth_keys=keys, require_server_auth=True, authenticate_to_server=True)
        if mutual
        else DhcpClientConfig()
    )
    x509_clients(lab, [p.anchor], ccfg)
    for c in lab.clients:
        c.start()
    return sim, lab


@pytest.mark.parametrize("relayed,mutual", [(False, False), (True, False), (True, True)])
def test_x509_clients_bind_to_the_x509_server_through_a_relay_and_with_rfc3118_on_top(relayed, mutual):
    sim, lab = _x509_lab(7, relayed=relayed, mutual=mutual)
    sim.run(until=2 * S)
    assert lab.bound() == 2
    for c in lab.clients:
        assert c.client.verified == 2 and not c.client.drops  # OFFER and ACK, nothing refused
    assert lab.server.server.signer.signed == 4


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_the_signed_exchange_and_reassembles_the_split_option(tmp_path):
    sim, lab = _x509_lab(8, relayed=False)
    path = tmp_path / "x509.pcap"
    lab.net.capture(path)
    sim.run(until=2 * S)
    lab.net.close()
    warnings = subprocess.run(
        ["tshark", "-r", str(path), "-Y", '_ws.malformed || _ws.expert.severity >= "warning"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert warnings == ""
    codes = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "dhcp.option.type == 224", "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(codes) == 4  # the two OFFERs and two ACKs
