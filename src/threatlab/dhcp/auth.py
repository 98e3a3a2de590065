"""DHCP authentication (RFC 3118): configuration tokens (protocol 0) and delayed authentication
(protocol 1, HMAC-MD5), replay detection by a monotonic counter, per-client keys and realms.

The MAC covers the message exactly as sent, so everything here works on bytes; `DhcpMessage` only
says where option 90 is. RFC 3118 5.2: the MAC is computed over the whole DHCP message with the
HMAC field of option 90 set to zero, and with `hops` and `giaddr` set to zero because relay agents
change them. The secret ID, RDM and replay detection value are covered as sent. This is what dhcpcd
(src/auth.c) does, the one RFC 3118 peer there is.

Protocol 2 is dhcpcd's "delayedrealm": the RFC 3315 21.4 layout, a DHCP realm before the secret ID.
With protocol 1 the realm is never on the wire, so its keys have the empty realm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from cryptography.hazmat.primitives import constant_time, hashes
from cryptography.hazmat.primitives.hmac import HMAC

from threatlab.dhcp.wire import (
    Authentication,
    DhcpMessage,
    MessageType,
    OptionSpan,
    option_spans,
)
from threatlab.errors import DecodeError

__all__ = [
    "PROTOCOL_TOKEN",
    "PROTOCOL_DELAYED",
    "PROTOCOL_DELAYED_REALM",
    "ALGORITHM_HMAC_MD5",
    "RDM_MONOTONIC",
    "MAC_LEN",
    "AuthKey",
    "KeyRing",
    "ReplayDetector",
    "ReplayCounter",
    "Verdict",
    "Verifier",
    "hmac_md5",
    "mac_input",
    "compute_mac",
    "sign",
    "check_mac",
    "auth_option",
    "sign_message",
    "insert_before_end",
    "DROP_MISSING",
    "DROP_WRONG_PROTOCOL",
    "DROP_ALGORITHM",
    "DROP_RDM",
    "DROP_NO_MAC",
    "DROP_UNKNOWN_KEY",
    "DROP_FOREIGN_KEY",
    "DROP_BAD_TOKEN",
    "DROP_BAD_HMAC",
    "DROP_REPLAY",
    "DROP_SPLIT",
]

PROTOCOL_TOKEN = 0
PROTOCOL_DELAYED = 1
PROTOCOL_DELAYED_REALM = 2
ALGORITHM_HMAC_MD5 = 1
RDM_MONOTONIC = 0
MAC_LEN = 16

# Drop reasons: what a receiver reports when it discards a message for authentication.
DROP_MISSING = "auth: missing"
DROP_WRONG_PROTOCOL = "auth: wrong protocol"
DROP_ALGORITHM = "auth: unsupported algorithm"
DROP_RDM = "auth: unsupported rdm"
DROP_NO_MAC = "auth: no MAC"
DROP_UNKNOWN_KEY = "auth: unknown key"
DROP_FOREIGN_KEY = "auth: key of another client"
DROP_BAD_TOKEN = "auth: bad token"
DROP_BAD_HMAC = "auth: bad HMAC"
DROP_REPLAY = "auth: replay"
DROP_SPLIT = "auth: split option"

_HOPS_AT = 3
_GIADDR_AT = 24


@dataclass(frozen=True, slots=True)
class AuthKey:
    """A shared secret (RFC 3118 5.3): identified by (realm, secret ID). `client` is the
    `DhcpMessage.client_key()` of the one client the key belongs to, or None for a key any client
    may use. For protocol 0 `key` is the token."""

    secret_id: int
    key: bytes
    realm: bytes = b""
    client: bytes | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.secret_id <= 0xFFFFFFFF:
            raise ValueError(f"auth: secret id {self.secret_id} is not a 32-bit value")
        if not self.key:
            raise ValueError("auth: a key must not be empty")


class KeyRing:
    """Keys by (realm, secret ID) and by the client they belong to."""

    __slots__ = ("_by_id", "_by_client", "_shared")

    def __init__(self, keys: Iterable[AuthKey] = ()) -> None:
        self._by_id: dict[tuple[bytes, int], AuthKey] = {}
        self._by_client: dict[bytes, AuthKey] = {}
        self._shared: list[AuthKey] = []
        for k in keys:
            if (k.realm, k.secret_id) in self._by_id:
                raise ValueError(f"auth: two keys with realm {k.realm!r} and secret id {k.secret_id}")
            self._by_id[(k.realm, k.secret_id)] = k
            if k.client is None:
                self._shared.append(k)
            else:
                self._by_client.setdefault(k.client, k)

    def __len__(self) -> int:
        return len(self._by_id)

    def lookup(self, realm: bytes, secret_id: int) -> AuthKey | None:
        return self._by_id.get((realm, secret_id))

    def for_client(self, client: bytes, realm: bytes | None = None) -> AuthKey | None:
        """The key to use with this client: its own, else the first shared one (of `realm`)."""
        k = self._by_client.get(client)
        if k is not None and (realm is None or k.realm == realm):
            return k
        for k in self._shared:
            if realm is None or k.realm == realm:
                return k
        return None

    def tokens_for(self, client: bytes) -> list[AuthKey]:
        """Protocol 0: the tokens this client may present (its own if it has one, else the shared)."""
        k = self._by_client.get(client)
        return [k] if k is not None else list(self._shared)


# --- the MAC ---------------------------------------------------------------------------------------


def hmac_md5(key: bytes, data: bytes) -> bytes:
    h = HMAC(key, hashes.MD5())
    h.update(data)
    return h.finalize()


def mac_input(data: bytes, mac_at: int) -> bytes:
    """The bytes the MAC is computed over (RFC 3118 5.2): the MAC field zeroed, and `hops` and
    `giaddr` zeroed because a relay agent may change them."""
    buf = bytearray(data)
    buf[_HOPS_AT] = 0
    buf[_GIADDR_AT:_GIADDR_AT + 4] = bytes(4)
    buf[mac_at:mac_at + MAC_LEN] = bytes(MAC_LEN)
    return bytes(buf)


def compute_mac(key: bytes, data: bytes, mac_at: int) -> bytes:
    return hmac_md5(key, mac_input(data, mac_at))


def auth_option(data: bytes) -> OptionSpan | None | str:
    """Where option 90 is in `data`: its span, None if absent, or DROP_SPLIT if it is split in
    several instances (RFC 3396) and so has no single MAC field. Raises DecodeError."""
    spans = [s for s in option_spans(data) if s.code == 90]
    if not spans:
        return None
    if len(spans) > 1:
        return DROP_SPLIT
    return spans[0]


def _mac_at(span: OptionSpan) -> int:
    return span.value_at + span.length - MAC_LEN


def sign(data: bytes, key: bytes) -> bytes:
    """`data` with the HMAC field of its delayed-authentication option filled in."""
    span = auth_option(data)
    if not isinstance(span, OptionSpan) or span.length < 11 + 4 + MAC_LEN:
        raise ValueError("auth: no single delayed-authentication option with room for a MAC")
    if data[span.value_at] not in (PROTOCOL_DELAYED, PROTOCOL_DELAYED_REALM):
        raise ValueError("auth: only delayed authentication carries a MAC")
    at = _mac_at(span)
    mac = compute_mac(key, data, at)
    return data[:at] + mac + data[at + MAC_LEN:]


def check_mac(data: bytes, key: bytes) -> bool:
    """True if `data` carries one delayed-authentication option whose MAC is right for `key`
    (False for anything else, malformed bytes included)."""
    try:
        span = auth_option(data)
    except DecodeError:
        return False
    if not isinstance(span, OptionSpan) or span.length < 11 + 4 + MAC_LEN:
        return False
    at = _mac_at(span)
    return constant_time.bytes_eq(compute_mac(key, data, at), data[at:at + MAC_LEN])


def insert_before_end(data: bytes, tlv: bytes) -> bytes:
    """Insert an option just before the end option of the options field, as a relay agent adds
    option 82 (RFC 3046 2.1) or a server appends it to a signed reply."""
    spans = option_spans(data)
    end = 240
    for s in spans:
        if s.at >= 240:
            end = max(end, s.value_at + s.length)
    # skip pads between the last option and END
    while data[end] == 0:
        end += 1
    return data[:end] + tlv + data[end:]


def _without_relay_info(data: bytes, spans: list[OptionSpan]) -> list[bytes]:
    """The client's message as it was before a relay agent appended option 82 (RFC 3046 2.1):
    the relay either grew the message or used its padding, so both candidates."""
    own = [s for s in spans if s.code == 82]
    if len(own) != 1 or own[0].at < 240:
        return []
    s = own[0]
    if any(t.at > s.at and t.at >= 240 for t in spans):
        return []  # option 82 is not the last option: not appended by a relay
    n = 2 + s.length
    stripped = data[:s.at] + data[s.at + n:]
    return [stripped, stripped + bytes(n)]


# --- replay detection ------------------------------------------------------------------------------


class ReplayDetector:
    """RFC 3118 2 (RDM 0) as corrected by errata 3474: the replay detection value of each sender
    must strictly increase. Remembers the last value accepted per sender."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[object, int] = {}

    def fresh(self, sender: object, replay: int) -> bool:
        last = self._last.get(sender)
        return last is None or replay > last

    def accept(self, sender: object, replay: int) -> None:
        self._last[sender] = replay

    def last(self, sender: object) -> int | None:
        return self._last.get(sender)


class ReplayCounter:
    """The sending side of RDM 0: a strictly increasing counter."""

    __slots__ = ("value",)

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def next(self) -> int:
        self.value += 1
        return self.value


# --- verification ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of checking a received message. `ok` with `authenticated` False is a
    delayed-authentication DHCPDISCOVER / DHCPINFORM that only asks for authentication
    (RFC 3118 5.4: it carries no MAC yet)."""

    ok: bool
    reason: str | None = None
    key: AuthKey | None = None
    authenticated: bool = False


_REQUEST_ONLY = frozenset({MessageType.DISCOVER, MessageType.INFORM})


class Verifier:
    """Checks received messages for one protocol against a key ring, with replay detection."""

    __slots__ = ("protocol", "keys", "replay")

    def __init__(self, protocol: int, keys: KeyRing, replay: ReplayDetector | None = None) -> None:
        if protocol not in (PROTOCOL_TOKEN, PROTOCOL_DELAYED, PROTOCOL_DELAYED_REALM):
            raise ValueError(f"auth: protocol {protocol} is not 0, 1 or 2")
        self.protocol = protocol
        self.keys = keys
        self.replay = replay if replay is not None else ReplayDetector()

    def verify(self, msg: DhcpMessage, data: bytes, client: bytes | None = None) -> Verdict:
        """Check `msg`, decoded from `data`, sent by `client` (default `msg.client_key()`)."""
        if client is None:
            client = msg.client_key()
        auth = msg.authentication
        if auth is None:
            return Verdict(False, DROP_MISSING)
        if auth.protocol != self.protocol:
            return Verdict(False, DROP_WRONG_PROTOCOL)
        if auth.rdm != RDM_MONOTONIC:
            return Verdict(False, DROP_RDM)
        if self.protocol == PROTOCOL_TOKEN:
            return self._token(auth, client)
        return self._delayed(msg, auth, data, client)

    def _token(self, auth: Authentication, client: bytes) -> Verdict:
        # RFC 3118 4: the token is compared as it is; it authenticates the sender, not the message.
        for k in self.keys.tokens_for(client):
            if constant_time.bytes_eq(k.key, auth.info):
                sender = (client, k.realm, k.secret_id)
                if not self.replay.fresh(sender, auth.replay):
                    return Verdict(False, DROP_REPLAY, k)
                self.replay.accept(sender, auth.replay)
                return Verdict(True, None, k, True)
        return Verdict(False, DROP_BAD_TOKEN)

    def _delayed(self, msg: DhcpMessage, auth: Authentication, data: bytes, client: bytes) -> Verdict:
        if auth.algorithm != ALGORITHM_HMAC_MD5:
            return Verdict(False, DROP_ALGORITHM)
        if not auth.info:
            if msg.message_type in _REQUEST_ONLY:
                return Verdict(True)  # RFC 3118 5.4: a request for delayed authentication
            return Verdict(False, DROP_NO_MAC)
        realm = auth.realm or b""
        key = self.keys.lookup(realm, auth.secret_id)  # type: ignore[arg-type]
        if key is None:
            return Verdict(False, DROP_UNKNOWN_KEY)
        if key.client is not None and key.client != client:
            return Verdict(False, DROP_FOREIGN_KEY, key)
        sender = (client, key.realm, key.secret_id)
        # RFC 3118 5.2: replay detection first, then the MAC
        if not self.replay.fresh(sender, auth.replay):
            return Verdict(False, DROP_REPLAY, key)
        try:
            spans = option_spans(data)
        except DecodeError:
            return Verdict(False, DROP_BAD_HMAC, key)
        own = [s for s in spans if s.code == 90]
        if len(own) != 1:
            return Verdict(False, DROP_SPLIT, key)
        at = _mac_at(own[0])
        mac = data[at:at + MAC_LEN]
        candidates = [data]
        if msg.giaddr.packed != bytes(4):
            candidates += _without_relay_info(data, spans)
        for c in candidates:
            if constant_time.bytes_eq(compute_mac(key.key, c, at), mac):
                self.replay.accept(sender, auth.replay)
                return Verdict(True, None, key, True)
        return Verdict(False, DROP_BAD_HMAC, key)


# --- signing a message -----------------------------------------------------------------------------


def sign_message(msg: DhcpMessage, protocol: int, key: AuthKey, replay: int, *,
                 max_size: int | None = None, token: bytes | None = None) -> bytes:
    """Encode `msg` with an authentication option (replacing any) and, for delayed authentication,
    its MAC. Protocol 0 sends `token` (default: the key itself)."""
    if protocol == PROTOCOL_TOKEN:
        opt = Authentication(PROTOCOL_TOKEN, 0, RDM_MONOTONIC, replay, key.key if token is None else token)
        return msg.with_options(opt).encode(max_size=max_size)
    if protocol not in (PROTOCOL_DELAYED, PROTOCOL_DELAYED_REALM):
        raise ValueError(f"auth: protocol {protocol} is not 0, 1 or 2")
    opt = Authentication.delayed(
        key.secret_id, replay, realm=key.realm if protocol == PROTOCOL_DELAYED_REALM else b"",
        protocol=protocol,
    )
    return sign(msg.with_options(opt).encode(max_size=max_size), key.key)
