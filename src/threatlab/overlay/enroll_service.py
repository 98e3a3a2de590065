"""`threatlab serve enrollment`: the enrollment server (`enrollment.EnrollmentServer`) as an HTTPS service.

RFC 6940 section 11.3 has a node obtain its certificate from the enrollment server over HTTPS: it
posts a PKCS#10 request and its user name, and the server answers with a certificate naming a
Node-ID the server chose at random. Here:

    GET  /ca       the CA certificate (PEM): what peers need to check each other
    POST /enroll   JSON {"user": "alice@example.com", "csr": "<PEM>"}
                   200 {"certificate": PEM, "node_id": hex, "ca": PEM}
                   403 {"error": ...} when the user's issuance limit is reached
                   400 {"error": ...} for anything malformed

The CA (key and certificate) and the per-user issuance counts live in `--ca-dir` (`ca-key.pem`,
`ca.pem`, `issued.json`), so a restart keeps both. The HTTPS server certificate is issued by the
same CA at start for the listening address. Node-IDs and keys come from the OS's random source.
Runs until SIGTERM or SIGINT, then saves its state and exits 0.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import random
import signal
import ssl
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from threatlab.errors import ThreatlabError, UsageError
from threatlab.overlay.enrollment import (
    EnrollmentConfig,
    EnrollmentError,
    EnrollmentServer,
    _cert_fields,
    _cert_sign_hash,
    wall,
)

from threatlab.overlay.enrollment import EPOCH

__all__ = ["EPOCH_NS", "EnrollmentService", "ServiceSettings", "client_enroll", "live_now", "parse_listen", "serve"]

EPOCH_NS = int(EPOCH.timestamp()) * 1_000_000_000
MAX_BODY = 64 * 1024


def live_now() -> int:
    """Live mode's clock in the overlay's time base: ns since `enrollment.EPOCH`, so that
    certificates the CA issues are valid in real (wall-clock) time as well."""
    import time

    return time.time_ns() - EPOCH_NS


def parse_listen(text: str) -> tuple[str, int]:
    """"ADDR:PORT" (IPv4) -> (addr, port); UsageError otherwise."""
    addr, sep, port = text.rpartition(":")
    try:
        ipaddress.IPv4Address(addr)
        p = int(port)
    except ValueError:
        raise UsageError(f"--listen {text!r}: expected IPV4ADDR:PORT, e.g. 127.0.0.1:8443") from None
    if not sep or not 0 <= p <= 65535:
        raise UsageError(f"--listen {text!r}: expected IPV4ADDR:PORT with a port in 0..65535")
    return addr, p


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    host: str = "127.0.0.1"
    port: int = 8443
    ca_dir: Path = Path("threatlab-out/enrollment-ca")
    issuance_limit: int | None = 1
    overlay: str = "threatlab.example"
    log: bool = True


class EnrollmentService:
    """The CA with its state in `ca_dir`, and an HTTPS server in front of it (not yet serving)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        cfg = EnrollmentConfig(overlay=settings.overlay, issuance_limit=settings.issuance_limit)
        self.ca = EnrollmentServer(cfg, random.SystemRandom())
        self._load_or_create_ca()
        self.httpd: _Server | None = None

    # -- CA state -----------------------------------------------------------------------------------

    @property
    def ca_pem(self) -> bytes:
        return self.ca.ca_certificate.public_bytes(serialization.Encoding.PEM)

    def _load_or_create_ca(self) -> None:
        d = self.settings.ca_dir
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ThreatlabError(f"cannot create --ca-dir {d}: {e.strerror}") from None
        key_p, cert_p, state_p = d / "ca-key.pem", d / "ca.pem", d / "issued.json"
        try:
            if key_p.exists() and cert_p.exists():
                key = serialization.load_pem_private_key(key_p.read_bytes(), None)
                cert = x509.load_pem_x509_certificate(cert_p.read_bytes())
                self.ca._key = key  # noqa: SLF001 - the CA we issued before, reloaded
                self.ca.ca_certificate = cert
            else:
                key_p.write_bytes(
                    self.ca._key.private_bytes(  # noqa: SLF001
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
                os.chmod(key_p, 0o600)
                cert_p.write_bytes(self.ca_pem)
            if state_p.exists():
                state = json.loads(state_p.read_text())
                self.ca.issued.update({str(k): int(v) for k, v in state.get("issued", {}).items()})
                self.ca.node_ids.update(int(h, 16) for h in state.get("node_ids", []))
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise ThreatlabError(f"--ca-dir {d}: cannot load the CA state: {e}") from None

    def save_state(self) -> None:
        with self.lock:
            self._save_locked()

    def _save_locked(self) -> None:
        state = {
            "issued": dict(self.ca.issued),
            "node_ids": sorted(f"{n:032x}" for n in self.ca.node_ids),
        }
        p = self.settings.ca_dir / "issued.json"
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(p)

    def enroll(self, user: str, csr_pem: str) -> tuple[x509.Certificate, int]:
        try:
            csr_der = x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER)
        except (ValueError, TypeError):
            raise EnrollmentError("csr: not a PEM certificate signing request") from None
        with self.lock:
            cert = self.ca.enroll_csr(csr_der, user, live_now())
            self._save_locked()
        info = _cert_fields(cert)
        node_id = info[0][0] if info else 0
        return cert, node_id

    # -- TLS ----------------------------------------------------------------------------------------

    def server_context(self, host: str) -> ssl.SSLContext:
        """A TLS context with a server certificate the CA issues now for `host`."""
        key = ed25519.Ed25519PrivateKey.generate()
        now = wall(live_now())
        alt: list[x509.GeneralName] = [x509.DNSName("localhost")]
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            pass
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"enrollment {host}")]))
            .issuer_name(self.ca.ca_certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.ca._key, _cert_sign_hash(self.ca._key))  # noqa: SLF001
        )
        d = self.settings.ca_dir
        kp, cp = d / "server-key.pem", d / "server.pem"
        kp.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        os.chmod(kp, 0o600)
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.ca_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # Ed25519 certificates need TLS 1.3
        ctx.load_cert_chain(cp, kp)
        return ctx

    def bind(self) -> _Server:
        s = self.settings
        service = self

        class Handler(_Handler):
            svc = service

        try:
            httpd = _Server((s.host, s.port), Handler)
        except OSError as e:
            raise ThreatlabError(f"cannot listen on {s.host}:{s.port}: {e.strerror}") from None
        httpd.daemon_threads = True
        ctx = self.server_context(s.host)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.httpd = httpd
        return httpd

    def log(self, text: str, always: bool = False) -> None:
        if self.settings.log or always:
            print(f"enrollment: {text}", file=sys.stderr, flush=True)


class _Server(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    svc: EnrollmentService
    server_version = "threatlab-enrollment"
    timeout = 10

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - one line per enrollment instead
        pass

    def _json(self, code: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/ca":
            body = self.svc.ca_pem
            self.send_response(200)
            self.send_header("Content-Type", "application/x-pem-file")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self._json(404, {"error": "not found: GET /ca or POST /enroll"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/enroll":
            return self._json(404, {"error": "not found: POST /enroll"})
        try:
            n = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            n = -1
        if not 0 <= n <= MAX_BODY:
            return self._json(400, {"error": f"a Content-Length of at most {MAX_BODY} is required"})
        try:
            req = json.loads(self.rfile.read(n))
            user, csr = req["user"], req["csr"]
            if not isinstance(user, str) or not isinstance(csr, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self._json(400, {"error": 'expected JSON {"user": NAME, "csr": PEM}'})
        try:
            cert, node_id = self.svc.enroll(user, csr)
        except EnrollmentError as e:
            code = 403 if "limit" in str(e) else 400
            self.svc.log(f"refused {user!r} from {self.client_address[0]}: {e}")
            return self._json(code, {"error": str(e)})
        self.svc.log(f"issued Node-ID {node_id:032x} to {user!r} ({self.client_address[0]})")
        self._json(
            200,
            {
                "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
                "node_id": f"{node_id:032x}",
                "ca": self.svc.ca_pem.decode(),
            },
        )


def serve(settings: ServiceSettings, ready=None) -> int:
    """Serve until SIGTERM/SIGINT (main thread) or until `ready`'s caller sets the returned stop event."""
    svc = EnrollmentService(settings)
    httpd = svc.bind()
    stop = threading.Event()
    main = threading.current_thread() is threading.main_thread()
    old = {}
    if main:
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, lambda *_: stop.set())
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    host, port = httpd.server_address[:2]
    limit = settings.issuance_limit if settings.issuance_limit is not None else "unlimited"
    svc.log(
        f"listening on https://{host}:{port}/ (CA {settings.ca_dir / 'ca.pem'}, issuance limit {limit})", always=True
    )
    if ready is not None:
        ready(svc, stop)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        httpd.shutdown()
        httpd.server_close()
        svc.save_state()
        if main:
            for sig, h in old.items():
                signal.signal(sig, h)
        svc.log("stopped", always=True)
    return 0


def client_enroll(url: str, user: str, key, ca_file: str | None, timeout: float = 10.0) -> dict:
    """POST a CSR for `key` and `user` to the service at `url` (https://ADDR:PORT); its JSON answer.
    Raises EnrollmentError with the server's reason when it refuses."""
    import urllib.error
    import urllib.request

    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .sign(key, _cert_sign_hash(key))
    )
    body = json.dumps({"user": user, "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}).encode()
    ctx = ssl.create_default_context(cafile=ca_file)
    req = urllib.request.Request(
        url.rstrip("/") + "/enroll", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:  # noqa: S310 - https only
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            reason = json.loads(e.read()).get("error", e.reason)
        except ValueError:
            reason = e.reason
        raise EnrollmentError(f"enrollment refused ({e.code}): {reason}") from None

