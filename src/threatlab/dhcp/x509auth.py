"""EXPERIMENTAL: DHCP server authentication with X.509 certificates (draft-ietf-dhc-v4-threat-analysis
4.3, "Musings on the Key Distribution Problem"). Not a standard: no RFC defines this option, and no
DHCP implementation but this one speaks it.

The draft's idea: as with web servers, the server holds a certificate and its key; clients ship with
a trust anchor (a CA certificate) and need no per-client secret, so the key distribution problem of
RFC 3118 (draft 3.2) goes away for the direction that matters most, the client authenticating the
server (4.2). This module is a concrete, measurable form of it.

Option format (site-specific option code 224, RFC 3942; split over several instances by RFC 3396
when longer than 255 bytes, which a certificate chain always is)::

    0      version                       1
    1      algorithm                     1 = Ed25519, 2 = ECDSA P-256 with SHA-256
    2..9   signing time                  seconds since 1970-01-01, 64-bit big-endian
    10     n, number of certificates     the leaf first, then intermediates; never the trust anchor
    11..   n x (2-byte length, DER)
    ..     2-byte length, signature      over the signed data below

The signed data is `CONTEXT || canonical(message) || option value up to the signature length`.
`canonical(message)` is the message as decoded, with `hops` and `giaddr` zero (relay agents change
them, as RFC 3118 5.2 also allows for), options 82 (added and removed by relay agents), 90 (an
RFC 3118 MAC, computed after this option and covering it) and 224 itself left out, no padding,
encoded by `DhcpMessage.encode()`. The signature therefore covers every option the client uses,
the header fields, chaddr and xid (so a signed reply cannot be replayed to another client or
another exchange), and the signing time.

A client accepts a reply when: the option is present and well formed; each certificate is issued by
the next one (`verify_directly_issued_by`) and the last by a trust anchor; every issuer is a CA
(basicConstraints); all are within their validity at the client's clock (if it has one); the leaf's
subjectAltName holds the message's server identifier (option 54) as an IP address, so a certificate
for one server does not vouch for another address; the signing time is within `max_skew` of the
client's clock; and the signature verifies with the leaf's key.

What it does not solve, as the draft foresees: revocation (a client being configured cannot fetch a
CRL), and time (a client without a clock at boot cannot check validity or freshness; `clock=None`
skips those checks and a captured reply stays valid for its chaddr and xid).
"""

from __future__ import annotations

import datetime
import random
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from threatlab.dhcp.auth import PROTOCOL_DELAYED, PROTOCOL_DELAYED_REALM, KeyRing, insert_before_end, sign
from threatlab.dhcp.client import LISTENS, DhcpClient, DhcpClientConfig, ServerIgnored
from threatlab.dhcp.events import Datagram
from threatlab.dhcp.leases import LeaseStore
from threatlab.dhcp.relay import strip_relay_agent_information
from threatlab.dhcp.server import DhcpServer, DhcpServerConfig
from threatlab.dhcp.wire import BOOTREPLY, DhcpMessage, option_spans
from threatlab.errors import DecodeError

__all__ = [
    "EXPERIMENTAL",
    "X509_OPTION",
    "ALG_ED25519",
    "ALG_P256",
    "CONTEXT",
    "X509Drop",
    "Pki",
    "make_pki",
    "issue_leaf",
    "X509Signer",
    "X509Verifier",
    "X509DhcpServer",
    "X509DhcpClient",
    "canonical",
    "option_bytes",
    "measure_costs",
]

EXPERIMENTAL = True
X509_OPTION = 224  # site-specific (RFC 3942): experimental, never to be sent outside a lab
VERSION = 1
ALG_ED25519 = 1
ALG_P256 = 2
CONTEXT = b"threatlab DHCPv4 X.509 server authentication v1\0"
EPOCH_2025 = 1735689600  # 2025-01-01T00:00:00Z: virtual time 0 of a simulated run

_HEAD = struct.Struct("!BBQB")


class X509Drop:
    """Why a client dropped a reply (a drop reason, as `ClientDrop`)."""

    MISSING = "x509: missing"
    MALFORMED = "x509: malformed"
    ALGORITHM = "x509: unsupported algorithm"
    UNTRUSTED = "x509: untrusted chain"
    NOT_CA = "x509: issuer is not a CA"
    EXPIRED = "x509: certificate not valid now"
    IDENTITY = "x509: certificate is not for this server"
    STALE = "x509: signing time out of range"
    SIGNATURE = "x509: bad signature"


# --- certificates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A trust anchor, and a server's chain (leaf first, without the anchor) with the leaf's key."""

    anchor: x509.Certificate
    anchor_key: object
    chain: tuple[x509.Certificate, ...]
    key: object  # the leaf's private key
    algorithm: int
    issuer_key: object = None  # the private key of the CA that issued the leaf (for `issue_leaf`)


def _private_key(algorithm: int, rng: random.Random):
    """A private key drawn from `rng`, so a trial's bytes are a function of its seed."""
    if algorithm == ALG_ED25519:
        return ed25519.Ed25519PrivateKey.from_private_bytes(rng.getrandbits(256).to_bytes(32, "big"))
    if algorithm == ALG_P256:
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        return ec.derive_private_key(1 + rng.randrange(order - 1), ec.SECP256R1())
    raise ValueError(f"x509: algorithm {algorithm} is not 1 (Ed25519) or 2 (ECDSA P-256)")


def _hash(key) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "threatlab lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(
    subject: str,
    key,
    issuer: str,
    issuer_key,
    serial: int,
    *,
    ca: bool,
    path_length: int | None,
    not_before: datetime.datetime,
    days: int,
    server_ip: IPv4Address | None = None,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        b = b.add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
    # RFC 5280 4.2.1.1-2: key identifiers (path building, and what common validators demand)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if key is not issuer_key:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if server_ip is not None:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(server_ip)]), critical=False)
    det = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else True
    return b.sign(issuer_key, _hash(issuer_key), ecdsa_deterministic=det)


def make_pki(
    server_ip: IPv4Address,
    rng: random.Random,
    *,
    algorithm: int = ALG_ED25519,
    depth: int = 2,
    not_before: int = EPOCH_2025 - 86400,
    days: int = 365,
    org: str = "lab",
) -> Pki:
    """A root CA (the trust anchor), `depth - 1` intermediates, and a leaf for `server_ip` (in its
    subjectAltName). depth 1: the root signs the leaf directly. Keys come from `rng`."""
    if not 1 <= depth <= 4:
        raise ValueError(f"x509: depth must be 1 to 4, got {depth}")
    nb = datetime.datetime.fromtimestamp(not_before, datetime.timezone.utc)
    root_key = _private_key(algorithm, rng)
    root = _cert(
        f"{org} root CA",
        root_key,
        f"{org} root CA",
        root_key,
        1,
        ca=True,
        path_length=None,
        not_before=nb,
        days=days * 10,
    )
    issuer_key, issuer_name = root_key, f"{org} root CA"
    chain: list[x509.Certificate] = []
    for i in range(depth - 1):
        k = _private_key(algorithm, rng)
        name = f"{org} DHCP CA {i + 1}"
        c = _cert(
            name, k, issuer_name, issuer_key, 10 + i, ca=True, path_length=None, not_before=nb, days=days * 5
        )
        chain.insert(0, c)
        issuer_key, issuer_name = k, name
    leaf_key = _private_key(algorithm, rng)
    leaf = _cert(
        f"dhcp server {server_ip}",
        leaf_key,
        issuer_name,
        issuer_key,
        100,
        ca=False,
        path_length=None,
        not_before=nb,
        days=days,
        server_ip=server_ip,
    )
    return Pki(root, root_key, (leaf, *chain), leaf_key, algorithm, issuer_key)


def issue_leaf(
    pki: Pki,
    server_ip: IPv4Address,
    rng: random.Random,
    *,
    serial: int = 200,
    not_before: int = EPOCH_2025 - 86400,
    days: int = 365,
) -> Pki:
    """The same CA certifies another server address: the same chain above a new leaf and key."""
    issuer = pki.chain[1] if len(pki.chain) > 1 else pki.anchor
    name = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    key = _private_key(pki.algorithm, rng)
    nb = datetime.datetime.fromtimestamp(not_before, datetime.timezone.utc)
    leaf = _cert(
        f"dhcp server {server_ip}",
        key,
        str(name),
        pki.issuer_key,
        serial,
        ca=False,
        path_length=None,
        not_before=nb,
        days=days,
        server_ip=server_ip,
    )
    return replace(pki, chain=(leaf, *pki.chain[1:]), key=key)


# --- the option ------------------------------------------------------------------------------------


def canonical(msg: DhcpMessage) -> bytes:
    """What the signature covers of a message (see the module docstring)."""
    opts = tuple(o for o in msg.options if o.code not in (82, 90, X509_OPTION))
    return replace(msg, hops=0, giaddr=IPv4Address(0), options=opts, padding=0).encode()


def _encode_head(algorithm: int, signed_at: int, chain: Sequence[x509.Certificate]) -> bytes:
    out = bytearray(_HEAD.pack(VERSION, algorithm, signed_at, len(chain)))
    for c in chain:
        der = c.public_bytes(serialization.Encoding.DER)
        out += len(der).to_bytes(2, "big") + der
    return bytes(out)


@dataclass(frozen=True, slots=True)
class _Parsed:
    algorithm: int
    signed_at: int
    chain: tuple[x509.Certificate, ...]
    head: bytes  # the value up to the signature length
    signature: bytes


def _parse(value: bytes) -> _Parsed | str:
    try:
        version, algorithm, signed_at, n = _HEAD.unpack_from(value)
        if version != VERSION or n == 0:
            return X509Drop.MALFORMED
        at = _HEAD.size
        chain = []
        for _ in range(n):
            length = int.from_bytes(value[at : at + 2], "big")
            der = value[at + 2 : at + 2 + length]
            if len(der) != length:
                return X509Drop.MALFORMED
            chain.append(x509.load_der_x509_certificate(der))
            at += 2 + length
        head = value[:at]
        length = int.from_bytes(value[at : at + 2], "big")
        sig = value[at + 2 : at + 2 + length]
        if len(sig) != length or at + 2 + length != len(value):
            return X509Drop.MALFORMED
    except (struct.error, ValueError):
        return X509Drop.MALFORMED
    return _Parsed(algorithm, signed_at, tuple(chain), head, sig)


def option_bytes(data: bytes) -> int:
    """The bytes the option takes in a message, headers of every RFC 3396 instance included."""
    return sum(2 + s.length for s in option_spans(data) if s.code == X509_OPTION)


class X509Signer:
    """The server side: adds the option to an encoded reply."""

    def __init__(self, pki: Pki, clock: Callable[[int], int] | None = None) -> None:
        self.pki = pki
        self.clock = clock or (lambda now_ns: EPOCH_2025 + now_ns // 1_000_000_000)
        self.signed = 0
        self.bytes_added = 0

    def sign(self, data: bytes, now_ns: int) -> bytes:
        msg = DhcpMessage.decode(data)
        head = _encode_head(self.pki.algorithm, self.clock(now_ns), self.pki.chain)
        key = self.pki.key
        to_sign = CONTEXT + canonical(msg) + head
        if isinstance(key, ed25519.Ed25519PrivateKey):
            sig = key.sign(to_sign)
        else:
            sig = key.sign(to_sign, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        value = head + len(sig).to_bytes(2, "big") + sig
        tlvs = b"".join(
            bytes((X509_OPTION, len(value[i : i + 255]))) + value[i : i + 255]
            for i in range(0, len(value), 255)
        )  # RFC 3396 5
        out = insert_before_end(data, tlvs)
        self.signed += 1
        self.bytes_added += len(tlvs)
        return out


class X509Verifier:
    """The client side: trust anchors, and a clock (None: the client has none, see the docstring)."""

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        *,
        clock: Callable[[int], int] | None = None,
        max_skew: int = 300,
    ) -> None:
        self.anchors = tuple(anchors)
        self.clock = clock
        self.max_skew = max_skew

    def verify(self, msg: DhcpMessage, now_ns: int) -> str | None:
        """None if `msg` (decoded from what was received) carries a valid signature of a server
        certified for its server identifier; else the drop reason."""
        opt = msg.get(X509_OPTION)
        if opt is None:
            return X509Drop.MISSING
        parsed = _parse(opt.encode_value())
        if isinstance(parsed, str):
            return parsed
        if parsed.algorithm not in (ALG_ED25519, ALG_P256):
            return X509Drop.ALGORITHM
        reason = self._chain(parsed.chain, now_ns)
        if reason is not None:
            return reason
        leaf = parsed.chain[0]
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            ips = san.get_values_for_type(x509.IPAddress)
        except x509.ExtensionNotFound:
            ips = []
        if msg.server_id is None or msg.server_id not in ips:
            return X509Drop.IDENTITY
        if self.clock is not None and abs(self.clock(now_ns) - parsed.signed_at) > self.max_skew:
            return X509Drop.STALE
        to_sign = CONTEXT + canonical(msg) + parsed.head
        pub = leaf.public_key()
        try:
            if isinstance(pub, ed25519.Ed25519PublicKey) and parsed.algorithm == ALG_ED25519:
                pub.verify(parsed.signature, to_sign)
            elif isinstance(pub, ec.EllipticCurvePublicKey) and parsed.algorithm == ALG_P256:
                pub.verify(parsed.signature, to_sign, ec.ECDSA(hashes.SHA256()))
            else:
                return X509Drop.ALGORITHM
        except InvalidSignature:
            return X509Drop.SIGNATURE
        return None

    def _chain(self, chain: tuple[x509.Certificate, ...], now_ns: int) -> str | None:
        when = None
        if self.clock is not None:
            when = datetime.datetime.fromtimestamp(self.clock(now_ns), datetime.timezone.utc)
        for i, cert in enumerate(chain):
            if when is not None and not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
                return X509Drop.EXPIRED
            issuers = [chain[i + 1]] if i + 1 < len(chain) else list(self.anchors)
            issuer = next((c for c in issuers if _issued_by(cert, c)), None)
            if issuer is None:
                return X509Drop.UNTRUSTED
            if not _is_ca(issuer):
                return X509Drop.NOT_CA
        return None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


# --- server and client ---------------------------------------------------------------------------


class X509DhcpServer(DhcpServer):
    """`DhcpServer` whose every reply carries the X.509 option, added to the encoded reply. If the
    server also signs with RFC 3118 delayed authentication, the HMAC is computed again over the
    message with the new option (it covers it; the X.509 signature leaves option 90 out), and
    option 82 goes back on last, after both, as the server's relay agent expects."""

    def __init__(
        self, config: DhcpServerConfig, leases: LeaseStore, rng: random.Random, signer: X509Signer
    ) -> None:
        super().__init__(config, leases, rng)
        self.signer = signer
        self._ring = KeyRing(config.auth_keys)

    def receive(self, data: bytes, now: int, **kw) -> list[Datagram]:
        out = super().receive(data, now, **kw)
        return [
            replace(dg, payload=self._sign(dg.payload, now)) if dg.payload[:1] == bytes((BOOTREPLY,)) else dg
            for dg in out
        ]

    def _sign(self, data: bytes, now: int) -> bytes:
        msg = DhcpMessage.decode(data)
        rai = msg.relay_agent_information
        signed = self.signer.sign(strip_relay_agent_information(data), now)
        auth = msg.authentication
        if (
            auth is not None
            and auth.protocol in (PROTOCOL_DELAYED, PROTOCOL_DELAYED_REALM)
            and auth.secret_id is not None
        ):
            key = self._ring.lookup(auth.realm or b"", auth.secret_id)
            if key is not None:
                signed = sign(signed, key.key)
        if rai is not None:
            value = rai.encode_value()
            signed = insert_before_end(signed, bytes((82, len(value))) + value)
        return signed


class X509DhcpClient(DhcpClient):
    """`DhcpClient` that drops every server message without a valid X.509 option, as
    `require_server_auth` does for RFC 3118 (and with the same `ignore_failed_server`)."""

    def __init__(
        self,
        config: DhcpClientConfig,
        rng: random.Random,
        chaddr: bytes,
        client_id: bytes | None = None,
        *,
        verifier: X509Verifier,
        **kw,
    ) -> None:
        super().__init__(config, rng, chaddr, client_id, **kw)
        self.verifier = verifier
        self.verified = 0

    def receive(self, data: bytes, now: int) -> None:
        try:
            msg = DhcpMessage.decode(data)
        except DecodeError:
            return super().receive(data, now)
        # the checks that need no cryptography first: another client's or exchange's reply is not ours
        if (
            msg.op != BOOTREPLY
            or msg.mac != self.chaddr
            or msg.xid != self.xid
            or msg.server_id is None
            or msg.message_type not in LISTENS[self.state]
        ):
            return super().receive(data, now)
        server = msg.server_id
        until = self._ignored.get(server)
        if until is not None and until > now:
            return super().receive(data, now)  # dropped as ignored there
        reason = self.verifier.verify(msg, now)
        if reason is not None:
            self.handle_timer(now)
            self.counters["received"] += 1
            self._drop(now, reason, server)
            if self.config.ignore_failed_server:
                until = now + self.config.ignore_failed_server * 1_000_000_000
                self._ignored[server] = until
                self.counters["servers ignored"] += 1
                self._events.append(ServerIgnored(now, server, reason, until))
            return None
        self.verified += 1
        return super().receive(data, now)


# --- what it costs ---------------------------------------------------------------------------------


def measure_costs(pki: Pki, sample: bytes, *, repeat: int = 200) -> dict[str, float]:
    """Wall-clock cost on this machine: microseconds to sign one reply and to verify one (chain and
    signature), and the bytes the option adds to `sample`, an encoded reply."""
    signer = X509Signer(pki)
    verifier = X509Verifier([pki.anchor], clock=signer.clock)
    t0 = time.perf_counter()
    for _ in range(repeat):
        signed = signer.sign(sample, 0)
    t1 = time.perf_counter()
    msg = DhcpMessage.decode(signed)
    for _ in range(repeat):
        ok = verifier.verify(msg, 0)
    t2 = time.perf_counter()
    if ok is not None:
        raise RuntimeError(f"x509: a freshly signed sample does not verify: {ok}")
    return {
        "sign_us": (t1 - t0) / repeat * 1e6,
        "verify_us": (t2 - t1) / repeat * 1e6,
        "bytes_added": float(option_bytes(signed)),
        "message_bytes": float(len(signed)),
    }
