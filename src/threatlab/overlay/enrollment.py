"""The enrollment server and what peers need to check its certificates and each other's signatures.

RELOAD's security model (RFC 6940 section 11.3): a central enrollment server, a CA, issues each
user an X.509 certificate binding a Node-ID the server chose at random to the user's name and
public key. The certificate names the Node-ID in a subjectAltName URI `reload://<hex>@<overlay>/`
and the user in an rfc822Name. Because the server picks the Node-ID, an attacker cannot place its
nodes where it likes (the chosen-ID attack of draft-song-p2psip-security-eval figure 6), and a
per-user issuance limit bounds how many identities one user can hold (a Sybil attack, same figure).

`EnrollmentServer.enroll(user, public_key, now)` issues a certificate; `Credentials.create(...)`
is the usual path for a simulated node (key pair + enrollment). Keys come from the caller's
`random.Random` and signatures are Ed25519 (deterministic), so the same seed gives the same
bytes. ECDSA P-256 is available as `algorithm="p256"` (its signatures are randomized).

`Verifier` checks certificates against the CA (with a cache, as a peer would keep one), message
signatures (6.3.4: over overlay, transaction id, contents and signer identity) and stored-data
signatures (7.1). Failures raise `SecurityError` with a short `reason`, which peers count as a
named drop.

Virtual time (integer ns from 0) maps to wall-clock certificate validity through `EPOCH`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from threatlab.errors import ParamError, ThreatlabError
from threatlab.overlay import ids
from threatlab.overlay.wire import (
    CertificateType,
    GenericCertificate,
    HashAlgorithm,
    Message,
    SecurityBlock,
    Signature,
    SignatureAlgorithm,
    SignerIdentity,
    SignerIdentityType,
    StoredData,
    StoredDataValue,
    decode_header,
    decode_rest,
    encode_contents,
    signature_input,
    stored_data_signature_input,
)

__all__ = [
    "EPOCH",
    "EnrollmentConfig",
    "EnrollmentServer",
    "EnrollmentError",
    "SecurityError",
    "Credentials",
    "CertInfo",
    "Verifier",
    "node_id_uri",
    "parse_node_id_uri",
    "sign_message",
    "sign_stored_data",
]

EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)  # virtual time 0
NS = 1_000_000_000

PrivateKey = Union[ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey]
PublicKey = Union[ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey]


class EnrollmentError(ThreatlabError):
    """The enrollment server refuses: issuance limit reached, a bad request."""


class SecurityError(ThreatlabError):
    """A certificate or signature that does not check out; `reason` is the drop reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def wall(now_ns: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=now_ns // 1000)


def node_id_uri(node_id: int, overlay: str) -> str:
    """RFC 6940 11.3: the Node-ID as a URI in the certificate's subjectAltName."""
    return f"reload://{node_id:032x}@{overlay}/"


def parse_node_id_uri(uri: str) -> tuple[int, str] | None:
    if not uri.startswith("reload://") or not uri.endswith("/") or "@" not in uri:
        return None
    hexid, _, overlay = uri[len("reload://") : -1].partition("@")
    if len(hexid) != 32:
        return None
    try:
        return int(hexid, 16), overlay
    except ValueError:
        return None


def _key_from_rng(rng: random.Random, algorithm: str) -> PrivateKey:
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    if algorithm == "p256":
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        return ec.derive_private_key(rng.randrange(1, order), ec.SECP256R1())
    raise ParamError(f"parameter algorithm={algorithm!r}: allowed: 'ed25519', 'p256'")


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def _verify(key: PublicKey, sig: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        else:
            key.verify(sig, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _algorithms(key: PrivateKey | PublicKey) -> tuple[int, int]:
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return HashAlgorithm.INTRINSIC, SignatureAlgorithm.ED25519
    return HashAlgorithm.SHA256, SignatureAlgorithm.ECDSA


def _cert_sign_hash(key: PrivateKey):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


# -- the server -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnrollmentConfig:
    overlay: str = "threatlab.example"
    issuance_limit: int | None = 1  # certificates per user; None: unlimited
    validity_s: int = 365 * 86400
    algorithm: str = "ed25519"

    def check(self) -> None:
        if self.issuance_limit is not None and (
            isinstance(self.issuance_limit, bool)
            or not isinstance(self.issuance_limit, int)
            or self.issuance_limit < 1
        ):
            raise ParamError(f"parameter issuance_limit={self.issuance_limit!r}: allowed: int >= 1 or None")
        if not isinstance(self.validity_s, int) or self.validity_s < 1:
            raise ParamError(f"parameter validity_s={self.validity_s!r}: allowed: int >= 1")
        if self.algorithm not in ("ed25519", "p256"):
            raise ParamError(f"parameter algorithm={self.algorithm!r}: allowed: 'ed25519', 'p256'")


class EnrollmentServer:
    """A CA for one overlay: random server-chosen Node-IDs, at most `issuance_limit` per user."""

    def __init__(self, config: EnrollmentConfig, rng: random.Random) -> None:
        config.check()
        self.config = config
        self.rng = rng
        self._key = _key_from_rng(rng, config.algorithm)
        name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, f"threatlab enrollment CA {config.overlay}")]
        )
        self.ca_certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(rng.getrandbits(63) + 1)
            .not_valid_before(EPOCH - dt.timedelta(days=1))
            .not_valid_after(EPOCH + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._key, _cert_sign_hash(self._key))
        )
        self.issued: Counter[str] = Counter()
        self.node_ids: set[int] = set()
        self.refused: Counter[str] = Counter()

    @property
    def ca_der(self) -> bytes:
        return self.ca_certificate.public_bytes(serialization.Encoding.DER)

    def enroll(self, user: str, public_key: PublicKey, now: int = 0) -> x509.Certificate:
        """A certificate for `user` and `public_key` with a fresh random Node-ID (RFC 6940 11.3)."""
        if not user or "@" not in user:
            self.refused["bad user name"] += 1
            raise EnrollmentError(f"user name {user!r} is not of the form name@domain")
        limit = self.config.issuance_limit
        if limit is not None and self.issued[user] >= limit:
            self.refused["issuance limit"] += 1
            raise EnrollmentError(
                f"user {user!r} already holds {self.issued[user]} certificate(s) (limit {limit})"
            )
        while True:  # Node-IDs are unique: a collision in 2^128 is drawn again
            node_id = ids.random_id(self.rng)
            if node_id not in self.node_ids:
                break
        start = wall(now)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
            .issuer_name(self.ca_certificate.subject)
            .public_key(public_key)
            .serial_number(self.rng.getrandbits(63) + 1)
            .not_valid_before(start - dt.timedelta(minutes=5))
            .not_valid_after(start + dt.timedelta(seconds=self.config.validity_s))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(node_id_uri(node_id, self.config.overlay)),
                        x509.RFC822Name(user),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self._key, _cert_sign_hash(self._key))
        )
        self.issued[user] += 1
        self.node_ids.add(node_id)
        return cert

    def enroll_csr(self, csr_der: bytes, user: str, now: int = 0) -> x509.Certificate:
        """Enrollment from a PKCS#10 request (what a real client sends over HTTPS): the CSR must be
        signed by the key it certifies; the server, not the CSR, chooses the Node-ID."""
        try:
            csr = x509.load_der_x509_csr(csr_der)
        except ValueError as e:
            raise EnrollmentError(f"not a DER certificate signing request: {e}") from None
        if not csr.is_signature_valid:
            raise EnrollmentError("the request's signature does not verify")
        return self.enroll(user, csr.public_key(), now)


# -- credentials ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Credentials:
    """A node's identity: its key, certificate and what the certificate says."""

    user: str
    node_id: int
    key: PrivateKey
    certificate: x509.Certificate
    der: bytes
    cert_hash: bytes

    @classmethod
    def create(cls, server: EnrollmentServer, user: str, rng: random.Random, now: int = 0) -> Credentials:
        key = _key_from_rng(rng, server.config.algorithm)
        cert = server.enroll(user, key.public_key(), now)
        return cls.from_certificate(key, cert)

    @classmethod
    def from_certificate(cls, key: PrivateKey, cert: x509.Certificate) -> Credentials:
        der = cert.public_bytes(serialization.Encoding.DER)
        info = _cert_fields(cert)
        if info is None or not info[0]:
            raise EnrollmentError("the certificate names no Node-ID")
        return cls(info[1], info[0][0], key, cert, der, hashlib.sha256(der).digest())

    @classmethod
    def self_signed(
        cls, user: str, node_id: int, rng: random.Random, overlay: str = "threatlab.example"
    ) -> Credentials:
        """A certificate a node made for itself, naming any Node-ID it likes: what exists without
        an enrollment server, and what a chosen-ID attacker presents."""
        key = _key_from_rng(rng, "ed25519")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(rng.getrandbits(63) + 1)
            .not_valid_before(EPOCH - dt.timedelta(days=1))
            .not_valid_after(EPOCH + dt.timedelta(days=365))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(node_id_uri(node_id, overlay)), x509.RFC822Name(user)]
                ),
                critical=False,
            )
            .sign(key, None)
        )
        return cls.from_certificate(key, cert)

    @property
    def identity(self) -> SignerIdentity:
        return SignerIdentity(SignerIdentityType.CERT_HASH, HashAlgorithm.SHA256, self.cert_hash)

    @property
    def generic_certificate(self) -> GenericCertificate:
        return GenericCertificate(CertificateType.X509, self.der)

    def sign(self, data: bytes) -> Signature:
        h, s = _algorithms(self.key)
        return Signature(h, s, self.identity, _sign(self.key, data))


def _cert_fields(cert: x509.Certificate) -> tuple[list[int], str, str | None] | None:
    """(Node-IDs, user name, overlay) from the subjectAltName."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    node_ids: list[int] = []
    overlay = None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        parsed = parse_node_id_uri(uri)
        if parsed:
            node_ids.append(parsed[0])
            overlay = parsed[1]
    users = san.get_values_for_type(x509.RFC822Name)
    return node_ids, (users[0] if users else ""), overlay


# -- verification ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class CertInfo:
    """What a checked certificate vouches for."""

    node_ids: tuple[int, ...]
    user: str
    public_key: PublicKey
    cert_hash: bytes
    not_after_ns: int  # virtual time
    enrolled: bool  # issued by the overlay's CA (False: self-signed, accepted only without enrollment)


@dataclass(slots=True)
class Verifier:
    """Checks certificates (cached by hash, as RELOAD nodes cache them), message signatures and
    stored-data signatures.

    With a CA (`ca` given) only certificates the CA issued for this overlay are valid; without one
    (no enrollment server) any well-formed certificate is taken at its word, self-signed ones
    included, which is exactly what lets a node choose its own Node-ID."""

    ca: x509.Certificate | None
    overlay: str = "threatlab.example"
    cache: dict[bytes, CertInfo] = field(default_factory=dict)
    checks: Counter[str] = field(default_factory=Counter)

    def certificate(self, der: bytes, now: int) -> CertInfo:
        digest = hashlib.sha256(der).digest()
        info = self.cache.get(digest)
        if info is None:
            info = self._check(der, digest)
            self.cache[digest] = info
        if now > info.not_after_ns:
            raise SecurityError("certificate expired")
        return info

    def _check(self, der: bytes, digest: bytes) -> CertInfo:
        self.checks["certificate"] += 1
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise SecurityError("certificate unreadable") from None
        fields = _cert_fields(cert)
        if fields is None or not fields[0]:
            raise SecurityError("certificate names no Node-ID")
        node_ids, user, overlay = fields
        if overlay != self.overlay:
            raise SecurityError("certificate for another overlay")
        enrolled = False
        if self.ca is not None:
            if cert.issuer != self.ca.subject:
                raise SecurityError("certificate not issued by the enrollment server")
            try:
                cert.verify_directly_issued_by(self.ca)
            except (ValueError, TypeError, InvalidSignature):
                raise SecurityError("certificate signature invalid") from None
            enrolled = True
        not_after = cert.not_valid_after_utc - EPOCH
        not_after_ns = int(not_after.total_seconds()) * NS
        return CertInfo(tuple(node_ids), user, cert.public_key(), digest, not_after_ns, enrolled)

    def known(self, digest: bytes) -> CertInfo | None:
        return self.cache.get(digest)

    def message(self, data: bytes, now: int) -> CertInfo:
        """Check a whole encoded message's signature (6.3.4) and return its signer's certificate.

        The signer's certificate must be in the message's certificate list or already known."""
        info = decode_header(data)
        body, exts, sec, sec_at = decode_rest(data, info.contents_at)
        sig = sec.signature
        if not sig.signed:
            raise SecurityError("message unsigned")
        signer = self._signer(sig.identity, sec.certificates, now)
        self.checks["message signature"] += 1
        to_sign = signature_input(
            info.header.overlay, info.header.transaction_id, data[info.contents_at : sec_at], sig.identity
        )
        if not _verify(signer.public_key, sig.value, to_sign):
            raise SecurityError("message signature invalid")
        return signer

    def stored_data(self, resource_id: int, kind: int, sd: StoredData, certificates, now: int) -> CertInfo:
        """Check a stored value's signature (7.1) and return its signer's certificate."""
        sig = sd.signature
        if not sig.signed:
            raise SecurityError("stored data unsigned")
        signer = self._signer(sig.identity, certificates, now)
        self.checks["stored data signature"] += 1
        to_sign = stored_data_signature_input(
            resource_id, kind, sd.storage_time, sd.lifetime, sd.value, sig.identity
        )
        if not _verify(signer.public_key, sig.value, to_sign):
            raise SecurityError("stored data signature invalid")
        return signer

    def _signer(self, identity: SignerIdentity, certificates, now: int) -> CertInfo:
        if identity.type != SignerIdentityType.CERT_HASH or identity.hash_alg != HashAlgorithm.SHA256:
            raise SecurityError("signer identity type unsupported")
        known = self.cache.get(identity.digest)
        if known is not None:
            if now > known.not_after_ns:
                raise SecurityError("certificate expired")
            return known
        for c in certificates:
            if c.type == CertificateType.X509 and hashlib.sha256(c.certificate).digest() == identity.digest:
                return self.certificate(c.certificate, now)
        raise SecurityError("signer certificate unknown")


# -- signing ------------------------------------------------------------------------------------


def sign_message(
    msg: Message, creds: Credentials, extra_certificates: tuple[GenericCertificate, ...] = ()
) -> Message:
    """`msg` with a security block: the signer's certificate (and any others, e.g. of stored-data
    signers) and a signature over overlay, transaction id, contents and signer identity."""
    contents = encode_contents(msg.body, msg.extensions)
    sig = creds.sign(signature_input(msg.header.overlay, msg.header.transaction_id, contents, creds.identity))
    certs = (creds.generic_certificate,) + tuple(c for c in extra_certificates if c.certificate != creds.der)
    return Message(msg.header, msg.body, msg.extensions, SecurityBlock(certs, sig))


def sign_stored_data(
    resource_id: int, kind: int, storage_time: int, lifetime: int, value: StoredDataValue, creds: Credentials
) -> StoredData:
    sig = creds.sign(
        stored_data_signature_input(resource_id, kind, storage_time, lifetime, value, creds.identity)
    )
    return StoredData(storage_time, lifetime, value, sig)
