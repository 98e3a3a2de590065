"""Two-step configuration (draft-ietf-dhc-v4-threat-analysis 4.4.2): "sufficient client
configuration is first obtained by the normal DHCPDISCOVER/OFFER/REQUEST/ACK exchange, and private
data subsequently transmitted over a secure communications channel ... using DHCPINFORM".

Step one is plain RFC 2131: the public data of 4.4.1 (address, mask, routers, DNS), which anyone on
the LAN may see. Step two is a DHCPINFORM from the configured address, authenticated with RFC 3118
delayed authentication (protocol 1, the client's own key), answered by a DHCPACK that is
authenticated the same way and carries the private options encrypted:

- option 225 (site-specific, RFC 3942; experimental), "encrypted private options": version (1) ||
  nonce (12) || AES-128-GCM(key, nonce, the private options as TLVs, aad = xid || chaddr || ciaddr);
- key = HKDF-SHA256(ikm = the client's RFC 3118 key, salt = the DHCPINFORM's replay detection value,
  info = "threatlab DHCPv4 two-step v1" || chaddr), 16 bytes: a fresh key per INFORM, known only to
  the server and that client.

The protected channel is this authenticated and encrypted INFORM/ACK pair, in place of the IPsec the
draft names; it needs the per-client key of RFC 3118 (and so inherits its key distribution problem,
3.2). A private option in an ordinary DHCPACK is ignored by a two-step client.

    server = TwoStepServer(config, LeaseStore(), rng, private=(RawOption(252, b"http://wpad/wpad.dat"),),
                           keys=(AuthKey(1, key, client=client_key),))
    informer = Informer(chaddr, client_key, AuthKey(1, key, client=client_key), rng)
    data = informer.inform(address, server_id, now)   # the DHCPINFORM to send
    informer.receive(ack_bytes, now)                   # -> private options, or a drop reason
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from threatlab.dhcp.auth import (
    PROTOCOL_DELAYED,
    AuthKey,
    KeyRing,
    ReplayCounter,
    ReplayDetector,
    Verifier,
    check_mac,
    sign,
)
from threatlab.dhcp.events import Datagram
from threatlab.dhcp.leases import LeaseStore
from threatlab.dhcp.server import DhcpServer, DhcpServerConfig
from threatlab.dhcp.wire import (
    BOOTREPLY,
    BOOTREQUEST,
    CLIENT_PORT,
    SERVER_PORT,
    Authentication,
    ClientIdentifier,
    DhcpMessage,
    DhcpMessageType,
    MessageType,
    Option,
    ParameterRequestList,
    RawOption,
    _tlvs,
)
from threatlab.errors import DecodeError

__all__ = [
    "EXPERIMENTAL",
    "ENCRYPTED_OPTION",
    "TwoStepDrop",
    "encrypt_private",
    "decrypt_private",
    "LeakyServer",
    "TwoStepServer",
    "Informer",
]

EXPERIMENTAL = True
ENCRYPTED_OPTION = 225
_VERSION = 1
_INFO = b"threatlab DHCPv4 two-step v1"
_ZERO = IPv4Address(0)
_BROADCAST = IPv4Address("255.255.255.255")


class TwoStepDrop:
    NOT_OURS = "two-step: not the answer to our INFORM"
    AUTH = "two-step: ACK does not authenticate"
    REPLAY = "two-step: replayed ACK"
    NO_PRIVATE = "two-step: no encrypted options"
    DECRYPT = "two-step: cannot decrypt"
    BAD_INFORM = "two-step: INFORM does not authenticate"


def _key(secret: bytes, replay: int, chaddr: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 16, replay.to_bytes(8, "big"), _INFO + chaddr).derive(secret)


def _aad(msg: DhcpMessage) -> bytes:
    return msg.xid.to_bytes(4, "big") + msg.chaddr + msg.ciaddr.packed


def encrypt_private(
    options: tuple[Option, ...], secret: bytes, replay: int, request: DhcpMessage, nonce: bytes
) -> RawOption:
    """Option 225 for the DHCPACK to `request` (a DHCPINFORM whose replay value is `replay`)."""
    plain = b"".join(_tlvs(o.code, o.encode_value()) for o in options)
    ct = AESGCM(_key(secret, replay, request.chaddr)).encrypt(nonce, plain, _aad(request))
    return RawOption(ENCRYPTED_OPTION, bytes((_VERSION,)) + nonce + ct)


def decrypt_private(
    value: bytes, secret: bytes, replay: int, request: DhcpMessage
) -> tuple[Option, ...] | None:
    """The private options in option 225, or None if they do not decrypt."""
    if len(value) < 1 + 12 + 16 or value[0] != _VERSION:
        return None
    try:
        plain = AESGCM(_key(secret, replay, request.chaddr)).decrypt(value[1:13], value[13:], _aad(request))
    except InvalidTag:
        return None
    # the TLVs, as the options field of a message would carry them
    try:
        shell = DhcpMessage.decode(DhcpMessage(op=BOOTREPLY).encode()[:-1] + plain + b"\xff")
    except DecodeError:
        return None
    return shell.options


# --- servers ---------------------------------------------------------------------------------------


class LeakyServer(DhcpServer):
    """The baseline: the private options go in every DHCPOFFER and DHCPACK, in clear, to whoever
    asks (what a server does with site options today)."""

    def __init__(
        self, config: DhcpServerConfig, leases: LeaseStore, rng: random.Random, *, private: tuple[Option, ...]
    ) -> None:
        super().__init__(config, leases, rng)
        self.private = private

    def receive(self, data: bytes, now: int, **kw) -> list[Datagram]:
        out = []
        for dg in super().receive(data, now, **kw):
            msg = DhcpMessage.decode(dg.payload)
            if msg.message_type in (MessageType.OFFER, MessageType.ACK):
                new = msg.with_options(*self.private).encode()
                dg = replace(dg, payload=new + bytes(max(0, 300 - len(new))))
            out.append(dg)
        return out


class TwoStepServer(DhcpServer):
    """Public configuration by the ordinary server (whatever its own authentication settings);
    a DHCPINFORM with RFC 3118 delayed authentication from a client whose key it holds gets the
    private options, encrypted for that client, in an authenticated DHCPACK. An INFORM without
    valid authentication gets the public options only (RFC 2131 4.3.5)."""

    def __init__(
        self,
        config: DhcpServerConfig,
        leases: LeaseStore,
        rng: random.Random,
        *,
        private: tuple[Option, ...],
        keys: tuple[AuthKey, ...],
    ) -> None:
        super().__init__(config, leases, rng)
        self.private = private
        self._ring = KeyRing(keys)
        self._check = Verifier(PROTOCOL_DELAYED, self._ring)
        self._out_replay = ReplayCounter()
        self.private_sent = 0

    def receive(self, data: bytes, now: int, **kw) -> list[Datagram]:
        try:
            msg = DhcpMessage.decode(data)
        except DecodeError:
            return super().receive(data, now, **kw)
        if msg.op != BOOTREQUEST or msg.message_type != MessageType.INFORM or msg.authentication is None:
            return super().receive(data, now, **kw)
        verdict = self._check.verify(msg, data)
        if not verdict.ok or verdict.key is None:
            self.drops[TwoStepDrop.BAD_INFORM] += 1
            self.counters["dropped"] += 1
            return []
        stripped = msg.without_options(90).encode()  # the base server answers the INFORM itself
        out = []
        for dg in super().receive(stripped, now, **kw):
            reply = DhcpMessage.decode(dg.payload)
            if reply.message_type != MessageType.ACK:
                out.append(dg)
                continue
            key = verdict.key
            nonce = self.rng.getrandbits(96).to_bytes(12, "big")
            enc = encrypt_private(self.private, key.key, msg.authentication.replay, msg, nonce)
            auth = Authentication.delayed(key.secret_id, self._out_replay.next())
            body = reply.with_options(enc, auth).encode()
            body += bytes(max(0, 300 - len(body)))
            self.private_sent += 1
            out.append(replace(dg, payload=sign(body, key.key)))
        return out


# --- the client's second step ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Private:
    """What the second step brought: the private options and the server that sent them."""

    time: int
    server: IPv4Address | None
    options: tuple[Option, ...]


class Informer:
    """Sans-IO: the DHCPINFORM of step two, and the check of its answer."""

    def __init__(
        self,
        chaddr: bytes,
        client_id: bytes | None,
        key: AuthKey,
        rng: random.Random,
        *,
        codes: tuple[int, ...] = (252,),
    ) -> None:
        self.chaddr = chaddr
        self.client_id = None if client_id is None else ClientIdentifier(client_id[0], client_id[1:])
        self.key = key
        self.rng = rng
        self.codes = codes
        self.counters: Counter[str] = Counter()
        self.drops: Counter[str] = Counter()
        self._out = ReplayCounter()
        self._in = ReplayDetector()
        self._sent: DhcpMessage | None = None
        self._replay = 0
        self.result: Private | None = None

    @property
    def xid(self) -> int | None:
        return None if self._sent is None else self._sent.xid

    def inform(self, address: IPv4Address, now: int) -> bytes:
        """The signed DHCPINFORM from `address` (a new xid for each call)."""
        opts: list[Option] = [DhcpMessageType(MessageType.INFORM)]
        if self.client_id is not None:
            opts.append(self.client_id)
        opts.append(ParameterRequestList((1, 3, 6, ENCRYPTED_OPTION) + self.codes))
        self._replay = self._out.next()
        opts.append(Authentication.delayed(self.key.secret_id, self._replay))
        msg = DhcpMessage(
            op=BOOTREQUEST,
            xid=self.rng.getrandbits(32),
            ciaddr=address,
            chaddr=self.chaddr,
            options=tuple(opts),
        )
        data = msg.encode()
        data += bytes(max(0, 300 - len(data)))
        self._sent = DhcpMessage.decode(data)
        self.counters["informs"] += 1
        return sign(data, self.key.key)

    def receive(self, data: bytes, now: int) -> Private | str:
        """Check a reply; the private options if it is the authenticated answer, else the reason."""
        sent = self._sent
        try:
            msg = DhcpMessage.decode(data)
        except DecodeError:
            return self._drop(TwoStepDrop.NOT_OURS)
        if sent is None or msg.op != BOOTREPLY or msg.xid != sent.xid or msg.mac != self.chaddr:
            return self._drop(TwoStepDrop.NOT_OURS)
        auth = msg.authentication
        if auth is None or auth.protocol != PROTOCOL_DELAYED or auth.secret_id != self.key.secret_id:
            return self._drop(TwoStepDrop.AUTH)
        server = msg.server_id
        if not self._in.fresh(server, auth.replay):
            return self._drop(TwoStepDrop.REPLAY)
        if not check_mac(data, self.key.key):
            return self._drop(TwoStepDrop.AUTH)
        enc = msg.get(ENCRYPTED_OPTION)
        if enc is None:
            return self._drop(TwoStepDrop.NO_PRIVATE)
        private = decrypt_private(enc.encode_value(), self.key.key, self._replay, sent)
        if private is None:
            return self._drop(TwoStepDrop.DECRYPT)
        self._in.accept(server, auth.replay)
        self.counters["private received"] += 1
        self.result = Private(now, server, private)
        return self.result

    def _drop(self, reason: str) -> str:
        self.drops[reason] += 1
        return reason


def inform_datagram(data: bytes, address: IPv4Address, server: IPv4Address | None) -> Datagram:
    """Where the DHCPINFORM goes: unicast to the server that leased the address, else broadcast."""
    if server is None:
        return Datagram(data, address, _BROADCAST, CLIENT_PORT, SERVER_PORT, b"\xff" * 6)
    return Datagram(data, address, server, CLIENT_PORT, SERVER_PORT)
