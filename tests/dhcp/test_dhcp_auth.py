"""RFC 3118: the MAC over the message with the HMAC field, hops and giaddr zeroed (5.2), computed
independently with the standard library; configuration tokens; replay detection; per-client keys
and realms."""

from __future__ import annotations

import hashlib
import hmac
import struct
from ipaddress import IPv4Address as A

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threatlab.dhcp.auth import (
    DROP_BAD_HMAC,
    DROP_BAD_TOKEN,
    DROP_FOREIGN_KEY,
    DROP_MISSING,
    DROP_NO_MAC,
    DROP_RDM,
    DROP_ALGORITHM,
    DROP_REPLAY,
    DROP_SPLIT,
    DROP_UNKNOWN_KEY,
    DROP_WRONG_PROTOCOL,
    AuthKey,
    KeyRing,
    ReplayCounter,
    ReplayDetector,
    Verifier,
    check_mac,
    compute_mac,
    hmac_md5,
    insert_before_end,
    mac_input,
    sign,
    sign_message,
)
from threatlab.dhcp.wire import (
    Authentication,
    CircuitId,
    ClientIdentifier,
    DhcpMessage,
    DhcpMessageType,
    RelayAgentInformation,
    RequestedIpAddress,
    ServerIdentifier,
)

MAC = bytes.fromhex("020000000001")
KEY = bytes.fromhex("0123456789abcdef0123456789abcdef")


def handmade_request(*, hops=0, giaddr=b"\0\0\0\0", replay=1, secret_id=0x1234, mac=bytes(16)) -> bytes:
    """A DHCPREQUEST with delayed authentication, written byte by byte without the codec."""
    header = struct.pack("!BBBBIHH", 1, 1, 6, hops, 0xCAFEBABE, 0, 0) + bytes(12) + giaddr
    header += MAC + bytes(10) + bytes(64) + bytes(128) + b"\x63\x82\x53\x63"
    opts = bytes([53, 1, 3]) + bytes([50, 4, 192, 168, 0, 10]) + bytes([54, 4, 192, 168, 0, 1])
    auth = bytes([90, 31, 1, 1, 0]) + replay.to_bytes(8, "big") + secret_id.to_bytes(4, "big") + mac
    return header + opts + auth + b"\xff"


AUTH_VALUE_AT = 240 + 9 + 6 + 2  # the options before option 90, then its code and length
MAC_AT = AUTH_VALUE_AT + 3 + 8 + 4


def stdlib_mac(key: bytes, message: bytes) -> bytes:
    """RFC 3118 5.2 done by hand: HMAC field, hops and giaddr zeroed; everything else as sent."""
    m = bytearray(message)
    m[3] = 0
    m[24:28] = bytes(4)
    m[MAC_AT:MAC_AT + 16] = bytes(16)
    return hmac.new(key, bytes(m), hashlib.md5).digest()


def test_hmac_md5_is_rfc_2104_hmac_md5():
    # RFC 2104 appendix / RFC 2202 test case 2
    assert hmac_md5(b"Jefe", b"what do ya want for nothing?").hex() == "750c783e6ab0b503eaa86e310a5db738"


def test_sign_fills_the_mac_the_standard_library_computes():
    unsigned = handmade_request()
    signed = sign(unsigned, KEY)
    assert signed[:MAC_AT] == unsigned[:MAC_AT] and signed[MAC_AT + 16:] == unsigned[MAC_AT + 16:]
    assert signed[MAC_AT:MAC_AT + 16] == stdlib_mac(KEY, unsigned)
    assert check_mac(signed, KEY)
    # the codec builds the same bytes the hand did
    m = DhcpMessage(xid=0xCAFEBABE, chaddr=MAC, options=(
        DhcpMessageType(3), RequestedIpAddress(A("192.168.0.10")), ServerIdentifier(A("192.168.0.1")),
        Authentication.delayed(0x1234, 1)))
    assert m.encode() == unsigned


def test_known_vector():
    # Pinned so that any change to what the MAC covers shows up. Computed with hmac/hashlib above
    # (no published RFC 3118 vector exists); dhcpcd's dhcp_auth_encode computes the same bytes.
    signed = sign(handmade_request(), KEY)
    assert signed[MAC_AT:MAC_AT + 16].hex() == stdlib_mac(KEY, handmade_request()).hex()
    assert signed[MAC_AT:MAC_AT + 16].hex() == "6074c4384b88a777f37861f342b139d6"


def test_relay_changes_to_hops_and_giaddr_do_not_break_the_mac():
    signed = sign(handmade_request(), KEY)
    relayed = bytearray(signed)
    relayed[3] = 1
    relayed[24:28] = bytes([10, 0, 0, 1])
    assert check_mac(bytes(relayed), KEY)
    assert mac_input(bytes(relayed), MAC_AT) == mac_input(signed, MAC_AT)


@pytest.mark.parametrize("offset", [0, 4, 16, 28, 44, 108, 240, 242, 251, AUTH_VALUE_AT + 3,
                                    AUTH_VALUE_AT + 11, MAC_AT, MAC_AT + 15])
def test_any_other_changed_byte_breaks_the_mac(offset):
    # including the replay detection value and the secret ID, which the MAC covers
    signed = bytearray(sign(handmade_request(), KEY))
    signed[offset] ^= 0x01
    assert not check_mac(bytes(signed), KEY)


def test_wrong_key_fails():
    assert not check_mac(sign(handmade_request(), KEY), KEY[:-1] + b"\x00")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=80), st.integers(0, 255), st.binary(min_size=4, max_size=4),
       st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1))
def test_mac_equals_stdlib_for_any_key_and_relay_fields(key, hops, giaddr, replay, secret_id):
    unsigned = handmade_request(hops=hops, giaddr=giaddr, replay=replay, secret_id=secret_id)
    assert compute_mac(key, unsigned, MAC_AT) == stdlib_mac(key, unsigned)
    assert sign(unsigned, key)[MAC_AT:MAC_AT + 16] == stdlib_mac(key, unsigned)


def test_sign_message_encodes_and_signs():
    key = AuthKey(7, KEY)
    m = DhcpMessage(op=2, xid=1, chaddr=MAC, options=(DhcpMessageType(5),))
    data = sign_message(m, 1, key, replay=9)
    auth = DhcpMessage.decode(data).authentication
    assert (auth.protocol, auth.algorithm, auth.rdm, auth.replay, auth.secret_id) == (1, 1, 0, 9, 7)
    assert check_mac(data, KEY)
    token = DhcpMessage.decode(sign_message(m, 0, AuthKey(1, b"tok"), replay=3)).authentication
    assert (token.protocol, token.token, token.replay) == (0, b"tok", 3)


def test_sign_refuses_what_has_no_mac_field():
    with pytest.raises(ValueError):
        sign(DhcpMessage(options=(DhcpMessageType(1),)).encode(), KEY)
    with pytest.raises(ValueError):
        sign(DhcpMessage(options=(Authentication(0, 0, 0, 1, bytes(30)),)).encode(), KEY)


# --- replay detection -------------------------------------------------------------------------------


def test_replay_detector_wants_strictly_increasing_values():
    # RFC 3118 2, RDM 0, as corrected by errata 3474: "strictly increasing"
    r = ReplayDetector()
    assert r.fresh("c", 0)
    r.accept("c", 5)
    assert not r.fresh("c", 5) and not r.fresh("c", 4) and r.fresh("c", 6)
    assert r.fresh("other", 1)


def test_replay_counter_increases():
    c = ReplayCounter(10)
    assert [c.next(), c.next(), c.next()] == [11, 12, 13]


# --- verification --------------------------------------------------------------------------------


CLIENT = b"i" + b"\x01" + MAC


def request(auth: Authentication | None, *, mtype=3, extra=()) -> DhcpMessage:
    opts = [DhcpMessageType(mtype), ClientIdentifier(1, MAC), RequestedIpAddress(A("192.168.0.10"))]
    if auth is not None:
        opts.append(auth)
    return DhcpMessage(xid=1, chaddr=MAC, options=tuple(opts) + tuple(extra))


def signed(key: AuthKey, replay: int, *, protocol=1, mtype=3, extra=()) -> tuple[DhcpMessage, bytes]:
    m = request(Authentication.delayed(key.secret_id, replay, realm=key.realm if protocol == 2 else b"",
                                       protocol=protocol), mtype=mtype, extra=extra)
    data = sign(m.encode(), key.key)
    return DhcpMessage.decode(data), data


def test_delayed_authentication_accepts_a_good_mac_once():
    key = AuthKey(0x1234, KEY)
    m, data = signed(key, 100)
    v2 = Verifier(1, KeyRing([key]))
    first = v2.verify(m, data)
    assert first.ok and first.authenticated and first.key == key
    assert v2.verify(m, data).reason == DROP_REPLAY  # the same message again
    m2, data2 = signed(key, 99)
    assert v2.verify(m2, data2).reason == DROP_REPLAY  # an older one
    m3, data3 = signed(key, 101)
    assert v2.verify(m3, data3).ok


def test_delayed_authentication_rejects():
    key = AuthKey(0x1234, KEY)
    v = Verifier(1, KeyRing([key]))
    m, data = signed(key, 1)
    tampered = bytearray(data)
    tampered[16] ^= 1  # yiaddr
    assert v.verify(DhcpMessage.decode(bytes(tampered)), bytes(tampered)).reason == DROP_BAD_HMAC
    m_other, data_other = signed(AuthKey(0x9999, KEY), 2)
    assert v.verify(m_other, data_other).reason == DROP_UNKNOWN_KEY
    assert v.verify(request(None), request(None).encode()).reason == DROP_MISSING
    tok = request(Authentication(0, 0, 0, 1, b"x"))
    assert v.verify(tok, tok.encode()).reason == DROP_WRONG_PROTOCOL
    rdm = request(Authentication(1, 1, 1, 1, bytes(20)))
    assert v.verify(rdm, rdm.encode()).reason == DROP_RDM
    alg = request(Authentication(1, 2, 0, 1, bytes(20)))
    assert v.verify(alg, alg.encode()).reason == DROP_ALGORITHM
    bare = request(Authentication(1, 1, 0, 0))
    assert v.verify(bare, bare.encode()).reason == DROP_NO_MAC


def test_a_discover_asking_for_delayed_authentication_passes_unauthenticated():
    # RFC 3118 5.4: the client's DHCPDISCOVER only asks; the server's DHCPOFFER carries the first MAC
    v = Verifier(1, KeyRing([AuthKey(1, KEY)]))
    d = request(Authentication(1, 1, 0, 0), mtype=1)
    verdict = v.verify(d, d.encode())
    assert verdict.ok and not verdict.authenticated and verdict.key is None


def test_per_client_keys_cannot_be_used_by_another_client():
    mine = AuthKey(1, KEY, client=CLIENT)
    theirs = AuthKey(2, b"other key", client=b"i\x01" + bytes(6))
    v = Verifier(1, KeyRing([mine, theirs]))
    m, data = signed(theirs, 5)  # a message from CLIENT signed with the other client's key
    assert v.verify(m, data).reason == DROP_FOREIGN_KEY
    m, data = signed(mine, 5)
    assert v.verify(m, data).ok


def test_replay_state_is_per_client():
    shared = AuthKey(1, KEY)
    v = Verifier(1, KeyRing([shared]))
    m, data = signed(shared, 50)
    assert v.verify(m, data).ok
    other = DhcpMessage(xid=1, chaddr=bytes(6), options=(
        DhcpMessageType(3), ClientIdentifier(1, bytes(6)), Authentication.delayed(1, 10)))
    other_data = sign(other.encode(), KEY)
    assert v.verify(DhcpMessage.decode(other_data), other_data).ok


def test_realm_keys_protocol_2():
    a = AuthKey(1, KEY, realm=b"example.org")
    b = AuthKey(1, b"another key", realm=b"example.net")
    v = Verifier(2, KeyRing([a, b]))
    m, data = signed(b, 3, protocol=2)
    verdict = v.verify(m, data)
    assert verdict.ok and verdict.key == b
    assert m.authentication.realm == b"example.net"
    wrong = AuthKey(1, KEY, realm=b"example.net")  # right realm, wrong key
    m, data = signed(wrong, 4, protocol=2)
    assert v.verify(m, data).reason == DROP_BAD_HMAC


def test_key_ring_lookup_and_client_keys():
    shared = AuthKey(1, b"s")
    own = AuthKey(2, b"o", client=CLIENT)
    ring = KeyRing([shared, own])
    assert ring.lookup(b"", 2) is own and ring.lookup(b"x", 2) is None
    assert ring.for_client(CLIENT) is own and ring.for_client(b"someone") is shared
    assert ring.tokens_for(CLIENT) == [own] and ring.tokens_for(b"someone") == [shared]
    with pytest.raises(ValueError):
        KeyRing([AuthKey(1, b"a"), AuthKey(1, b"b")])


def test_split_authentication_option_is_refused():
    key = AuthKey(1, KEY)
    m, data = signed(key, 1)
    # rewrite option 90 as two instances (RFC 3396): there is no single MAC field any more
    spans = [i for i in range(240, len(data)) if data[i] == 90 and data[i + 1] == 31]
    at = spans[0]
    value = data[at + 2:at + 33]
    split = data[:at] + bytes([90, 10]) + value[:10] + bytes([90, 21]) + value[10:] + data[at + 33:]
    v = Verifier(1, KeyRing([key]))
    assert v.verify(DhcpMessage.decode(split), split).reason == DROP_SPLIT


def test_token_protocol():
    tok = AuthKey(0, b"sesame")
    v = Verifier(0, KeyRing([tok]))
    good = request(Authentication(0, 0, 0, 1, b"sesame"))
    verdict = v.verify(good, good.encode())
    assert verdict.ok and verdict.authenticated and verdict.key == tok
    assert v.verify(good, good.encode()).reason == DROP_REPLAY
    # the token is not bound to the message: a sniffer replays it with a larger counter (draft 3.1, 3.3)
    sniffed = request(Authentication(0, 0, 0, 2, b"sesame"), mtype=4)
    assert v.verify(sniffed, sniffed.encode()).ok
    bad = request(Authentication(0, 0, 0, 3, b"open"))
    assert v.verify(bad, bad.encode()).reason == DROP_BAD_TOKEN


def test_mac_survives_a_relay_appending_option_82():
    # the relay adds option 82 after the client signed: by growing the message or in its padding
    key = AuthKey(1, KEY)
    v = Verifier(1, KeyRing([key]))
    m = request(Authentication.delayed(1, 7))
    unsigned = m.encode() + bytes(20)  # padding after END
    data = sign(unsigned, KEY)
    rai = RelayAgentInformation((CircuitId(b"port9"),)).encode_value()
    tlv = bytes([82, len(rai)]) + rai
    grown = bytearray(insert_before_end(data, tlv))
    grown[3] = 1
    grown[24:28] = bytes([10, 0, 0, 1])
    in_padding = bytes(grown[:len(data)])  # the relay used the padding instead of growing
    assert v.verify(DhcpMessage.decode(bytes(grown)), bytes(grown)).ok
    v2 = Verifier(1, KeyRing([key]))
    assert v2.verify(DhcpMessage.decode(in_padding), in_padding).ok
    # but the relay information is not authenticated by the client's MAC, and nothing else may change
    forged = bytearray(grown)
    forged[10] ^= 0x80
    v3 = Verifier(1, KeyRing([key]))
    assert v3.verify(DhcpMessage.decode(bytes(forged)), bytes(forged)).reason == DROP_BAD_HMAC


def test_insert_before_end_puts_the_option_last():
    data = DhcpMessage(options=(DhcpMessageType(1),), padding=10).encode()
    out = insert_before_end(data, bytes([82, 3, 1, 1, 7]))
    m = DhcpMessage.decode(out)
    assert [o.code for o in m.options] == [53, 82] and m.padding == 10


class DhcpcdLikeClient:
    """The client side as dhcpcd 9 writes it (src/auth.c dhcp_auth_encode): DISCOVER and INFORM
    carry protocol/algorithm and zero RDM data only; other messages a monotonic replay value,
    the secret ID and the HMAC over the message with hops and giaddr zeroed."""

    def __init__(self, key: AuthKey) -> None:
        self.key = key
        self.replay = 0x0000_0001_0000_0000  # dhcpcd's default RDM: an NTP-format timestamp

    def encode(self, m: DhcpMessage) -> bytes:
        if m.message_type in (1, 8):
            return m.with_options(Authentication(1, 1, 0, 0)).encode()
        self.replay += 1
        data = bytearray(m.with_options(Authentication.delayed(self.key.secret_id, self.replay)).encode())
        hops, giaddr = data[3], bytes(data[24:28])
        data[3] = 0
        data[24:28] = bytes(4)
        at = len(data) - 1 - 16
        data[at:at + 16] = hmac.new(self.key.key, bytes(data), hashlib.md5).digest()
        data[3] = hops
        data[24:28] = giaddr
        return bytes(data)


def test_a_dhcpcd_style_client_is_accepted():
    key = AuthKey(0x0000_0001, KEY)
    client = DhcpcdLikeClient(key)
    v = Verifier(1, KeyRing([key]))
    for mtype in (1, 3, 3, 7):
        m = DhcpMessage(xid=mtype, chaddr=MAC, options=(DhcpMessageType(mtype), ClientIdentifier(1, MAC)))
        data = client.encode(m)
        verdict = v.verify(DhcpMessage.decode(data), data)
        assert verdict.ok, (mtype, verdict)
        assert verdict.authenticated == (mtype != 1)
