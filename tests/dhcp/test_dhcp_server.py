"""threatlab's DHCP server: the exact reply to each message (RFC 2131 4.3) and what each defense
switch changes (draft-ietf-dhc-v4-threat-analysis 2.1.2, 2.1.3, 3, 4.2)."""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address as A
from ipaddress import IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threatlab.dhcp.auth import AuthKey, KeyRing, ReplayDetector, Verifier, check_mac, sign
from threatlab.dhcp.events import (
    Dropped,
    InformAnswered,
    LeaseBound,
    LeaseDeclined,
    LeaseExpired,
    LeaseOffered,
    LeaseReleased,
    NakSent,
    OfferWithdrawn,
)
from threatlab.dhcp.leases import LeaseState, LeaseStore
from threatlab.dhcp.server import DROP_NO_SUBNET, DhcpServer, DhcpServerConfig, Drop, Pool, RateLimit
from threatlab.dhcp.server import AuthKey as ReexportedAuthKey
from threatlab.dhcp.wire import (
    Authentication,
    CircuitId,
    ClientIdentifier,
    DhcpMessage,
    DhcpMessageType,
    DomainName,
    DomainNameServers,
    IpAddressLeaseTime,
    MaximumMessageSize,
    Message,
    RawOption,
    RebindingTime,
    RelayAgentInformation,
    RemoteId,
    RenewalTime,
    RequestedIpAddress,
    Routers,
    ServerIdentifier,
    SubnetMask,
)
from threatlab.errors import ParamError

S = 1_000_000_000
SERVER = A("192.168.0.1")
BCAST = A("255.255.255.255")
ZERO = A("0.0.0.0")
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")

BASE = DhcpServerConfig(
    server_id=SERVER, pool_start=A("192.168.0.10"), pool_end=A("192.168.0.13"),
    routers=(SERVER,), dns_servers=(A("192.168.0.2"),), domain_name=b"lab.example",
    lease_time=3600,
)


def mac(n: int) -> bytes:
    return bytes([2, 0, 0, 0, 0, n])


def server(config: DhcpServerConfig = BASE, store: LeaseStore | None = None) -> DhcpServer:
    return DhcpServer(config, store if store is not None else LeaseStore(), random.Random(7))


def msg(mtype: int, n: int = 1, *, xid: int = 0x1000, cid: bool = True, opts=(), **fields) -> DhcpMessage:
    options = [DhcpMessageType(mtype)]
    if cid:
        options.append(ClientIdentifier(1, mac(n)))
    return DhcpMessage(xid=xid, chaddr=mac(n), options=tuple(options) + tuple(opts), **fields)


def discover(n=1, **kw):
    return msg(1, n, **kw)


def request(n=1, *, address, server_id=SERVER, **kw):
    opts = [RequestedIpAddress(address)]
    if server_id is not None:
        opts.append(ServerIdentifier(server_id))
    return msg(3, n, opts=tuple(opts) + tuple(kw.pop("opts", ())), **kw)


def expected_reply(request_msg: DhcpMessage, mtype: int, *, yiaddr=ZERO, ciaddr=ZERO, lease=True, extra=(),
                   flags=None, message: bytes | None = None) -> bytes:
    """The reply RFC 2131 table 3 asks for, with our option order, padded to 300 bytes."""
    opts = [DhcpMessageType(mtype), ServerIdentifier(SERVER)]
    if mtype == 6:
        if message:
            opts.append(Message(message))
    else:
        if lease:
            opts += [IpAddressLeaseTime(3600), RenewalTime(1800), RebindingTime(3150)]
        opts += [SubnetMask(A("255.255.255.0")), Routers((SERVER,)), DomainNameServers((A("192.168.0.2"),)),
                 DomainName(b"lab.example")]
    m = DhcpMessage(op=2, xid=request_msg.xid, chaddr=request_msg.chaddr, yiaddr=yiaddr, ciaddr=ciaddr,
                    giaddr=request_msg.giaddr, flags=request_msg.flags if flags is None else flags,
                    options=tuple(opts) + tuple(extra))
    return replace(m, padding=max(0, 300 - len(m.encode()))).encode()


def only(out):
    assert len(out) == 1, out
    return out[0]


def drops_of(srv):
    return [e.reason for e in srv.events() if isinstance(e, Dropped)]


def bind(srv, n, now=0, **kw):
    """DISCOVER, OFFER, REQUEST, ACK: the address client n got."""
    offer = DhcpMessage.decode(only(srv.receive(discover(n, **kw).encode(), now)).payload)
    ack = DhcpMessage.decode(only(srv.receive(request(n, address=offer.yiaddr, **kw).encode(), now)).payload)
    assert ack.message_type == 5
    return ack.yiaddr


# --- DISCOVER / OFFER (RFC 2131 4.3.1) -----------------------------------------------------------


def test_discover_gets_an_offer_unicast_to_chaddr():
    srv = server()
    d = discover()
    dg = only(srv.receive(d.encode(), 0, src_ip=ZERO, interface="eth0"))
    assert dg.payload == expected_reply(d, 2, yiaddr=A("192.168.0.10"))
    assert (dg.src_ip, dg.dst_ip, dg.src_port, dg.dst_port, dg.dst_mac, dg.interface) == (
        SERVER, A("192.168.0.10"), 67, 68, mac(1), "eth0")
    assert srv.events() == [LeaseOffered(0, A("192.168.0.10"), mac(1), b"i\x01" + mac(1))]
    assert srv.leases.get(A("192.168.0.10")).state is LeaseState.OFFERED
    assert srv.counters["offers"] == 1


def test_discover_with_broadcast_bit_gets_a_broadcast_offer():
    d = discover(flags=0x8000)
    dg = only(server().receive(d.encode(), 0))
    assert (dg.dst_ip, dg.dst_mac) == (BCAST, b"\xff" * 6)
    assert dg.payload == expected_reply(d, 2, yiaddr=A("192.168.0.10"))


def test_offer_reserves_the_address_for_the_offer_hold():
    srv = server()
    a = DhcpMessage.decode(only(srv.receive(discover(1).encode(), 0)).payload).yiaddr
    b = DhcpMessage.decode(only(srv.receive(discover(2).encode(), 1 * S)).payload).yiaddr
    assert a != b
    again = DhcpMessage.decode(only(srv.receive(discover(1).encode(), 2 * S)).payload).yiaddr
    assert again == a  # the same client is offered the same address
    # after the hold (60 s) the address is free and goes to the next newcomer once the pool is used up
    for n in (3, 4):
        srv.receive(discover(n).encode(), 3 * S)
    assert srv.receive(discover(5).encode(), 4 * S) == []
    assert drops_of(srv)[-1] == Drop.POOL_EXHAUSTED
    got = DhcpMessage.decode(only(srv.receive(discover(5).encode(), 61 * S)).payload).yiaddr
    assert got == b  # offered at 1 s, free at 61 s; client 1's second DISCOVER renewed its hold


def test_requested_address_is_offered_if_free():
    d = discover(opts=(RequestedIpAddress(A("192.168.0.12")),))
    assert DhcpMessage.decode(only(server().receive(d.encode(), 0)).payload).yiaddr == A("192.168.0.12")


def test_client_without_client_identifier_is_known_by_chaddr():
    srv = server()
    a = bind(srv, 1, cid=False)
    assert srv.leases.get(a).client_key == b"h\x01" + mac(1) and srv.leases.get(a).client_id is None


def test_offer_respects_the_maximum_message_size_with_overload():
    srv = server(replace(BASE, domain_name=b"d" * 255))
    d = discover(opts=(MaximumMessageSize(576),))
    payload = only(srv.receive(d.encode(), 0)).payload
    assert len(payload) <= 576 - 28
    assert DhcpMessage.decode(payload).get(15) == DomainName(b"d" * 255)


# --- REQUEST (RFC 2131 4.3.2) -----------------------------------------------------------------------


def test_selecting_request_gets_an_ack_and_binds():
    srv = server()
    srv.receive(discover().encode(), 0)
    r = request(address=A("192.168.0.10"))
    dg = only(srv.receive(r.encode(), 1 * S))
    assert dg.payload == expected_reply(r, 5, yiaddr=A("192.168.0.10"))
    assert (dg.dst_ip, dg.dst_mac) == (A("192.168.0.10"), mac(1))
    ev = srv.events()
    assert ev[-1] == LeaseBound(1 * S, A("192.168.0.10"), mac(1), b"i\x01" + mac(1), 3601 * S, False)
    lease = srv.leases.get(A("192.168.0.10"))
    assert (lease.state, lease.expiry) == (LeaseState.BOUND, 3601 * S)


def test_selecting_request_for_another_server_withdraws_our_offer_silently():
    srv = server()
    srv.receive(discover().encode(), 0)
    srv.events()
    assert srv.receive(request(address=A("192.168.0.10"), server_id=A("192.168.0.99")).encode(), S) == []
    assert srv.events() == [OfferWithdrawn(S, A("192.168.0.10"), mac(1)),
                            Dropped(S, Drop.OTHER_SERVER, mac(1))]
    assert srv.leases.get(A("192.168.0.10")).free(S)


def test_selecting_request_for_an_address_held_by_another_client_gets_a_broadcast_nak():
    srv = server()
    bind(srv, 1)
    r = request(2, address=A("192.168.0.10"))
    dg = only(srv.receive(r.encode(), S))
    assert dg.payload == expected_reply(r, 6, message=b"address not available")
    assert (dg.dst_ip, dg.dst_port, dg.dst_mac) == (BCAST, 68, b"\xff" * 6)
    assert srv.events()[-1] == NakSent(S, mac(2), A("192.168.0.10"), "address not available")


def test_selecting_request_for_another_address_than_offered_gets_a_nak():
    srv = server()
    srv.receive(discover().encode(), 0)
    r = request(address=A("192.168.0.12"))
    assert only(srv.receive(r.encode(), S)).payload == expected_reply(r, 6, message=b"address not offered")
    assert srv.leases.get(A("192.168.0.12")) is None


def test_selecting_request_without_an_offer_for_a_free_address_gets_an_ack():
    r = request(address=A("192.168.0.12"))
    assert only(server().receive(r.encode(), 0)).payload == expected_reply(r, 5, yiaddr=A("192.168.0.12"))


def test_selecting_request_outside_the_pool_gets_a_nak():
    r = request(address=A("192.168.0.200"))
    reply = only(server().receive(r.encode(), 0)).payload
    assert reply == expected_reply(r, 6, message=b"address not available")


def test_init_reboot_own_address_gets_an_ack():
    srv = server()
    a = bind(srv, 1)
    r = request(address=a, server_id=None)
    dg = only(srv.receive(r.encode(), 100 * S))
    assert dg.payload == expected_reply(r, 5, yiaddr=a)
    assert srv.events()[-1].renewed


def test_init_reboot_on_the_wrong_network_gets_a_nak():
    r = request(address=A("10.9.9.9"), server_id=None)
    assert only(server().receive(r.encode(), 0)).payload == expected_reply(r, 6, message=b"wrong network")


def test_init_reboot_of_an_unknown_client_nak_if_authoritative_else_silence():
    r = request(address=A("192.168.0.11"), server_id=None)
    assert only(server().receive(r.encode(), 0)).payload == expected_reply(
        r, 6, message=b"no record of this lease")
    quiet = server(replace(BASE, authoritative=False))
    assert quiet.receive(r.encode(), 0) == []
    assert drops_of(quiet) == [Drop.NO_RECORD]


def test_renewing_extends_the_lease_unicast_to_ciaddr():
    srv = server()
    a = bind(srv, 1)
    r = msg(3, ciaddr=a)
    dg = only(srv.receive(r.encode(), 1800 * S, src_ip=a))
    assert dg.payload == expected_reply(r, 5, yiaddr=a, ciaddr=a)
    assert (dg.dst_ip, dg.dst_port, dg.dst_mac) == (a, 68, None)
    assert srv.leases.get(a).expiry == (1800 + 3600) * S


def test_rebinding_after_expiry_still_gets_the_free_address_back():
    srv = server()
    a = bind(srv, 1)
    r = msg(3, ciaddr=a, flags=0x8000)
    dg = only(srv.receive(r.encode(), 4000 * S))
    assert DhcpMessage.decode(dg.payload).message_type == 5


def test_renewing_an_address_another_client_holds_gets_a_nak():
    srv = server()
    a = bind(srv, 1)
    r = msg(3, n=2, ciaddr=a)
    assert only(srv.receive(r.encode(), S)).payload == expected_reply(r, 6, message=b"address in use")


def test_request_without_any_address_is_dropped():
    srv = server()
    assert srv.receive(msg(3).encode(), 0) == []
    assert drops_of(srv) == [Drop.NO_ADDRESS]


# --- DECLINE (4.3.3) ------------------------------------------------------------------------------


def decline(n, address, server_id=SERVER):
    return msg(4, n, opts=(RequestedIpAddress(address), ServerIdentifier(server_id)))


def test_decline_holds_the_address_for_24_hours_by_default():
    srv = server()
    a = bind(srv, 1)
    assert srv.receive(decline(1, a).encode(), 10 * S) == []
    assert srv.events()[-1] == LeaseDeclined(10 * S, a, mac(1), (10 + 86400) * S)
    assert srv.leases.get(a).state is LeaseState.DECLINED
    # the declining client is given another address, and nobody gets this one during the hold
    assert DhcpMessage.decode(only(srv.receive(discover(1).encode(), 11 * S)).payload).yiaddr != a
    assert srv.addresses_free(11 * S) == 2
    assert srv.next_timer() == 71 * S  # the new offer's hold comes first
    srv.handle_timer(86410 * S)
    assert LeaseExpired(86410 * S, a, mac(1), "declined") in srv.events()
    assert srv.leases.get(a).free(86410 * S)


def test_decline_hold_cap_bounds_the_hold():
    srv = server(replace(BASE, decline_hold_cap=60))
    a = bind(srv, 1)
    srv.receive(decline(1, a).encode(), 0)
    assert srv.leases.get(a).expiry == 60 * S
    assert srv.leases.get(a).free(60 * S)


def test_decline_of_an_address_the_client_does_not_hold_is_dropped():
    srv = server()
    a = bind(srv, 1)
    assert srv.receive(decline(2, a).encode(), S) == []
    assert srv.receive(decline(1, a, server_id=A("192.168.0.99")).encode(), S) == []
    assert drops_of(srv)[-2:] == [Drop.NOT_OWNER, Drop.OTHER_SERVER]
    assert srv.leases.get(a).state is LeaseState.BOUND


def test_starvation_by_decline_one_attacker_empties_the_pool():
    # draft 2.1.2: an attacker with made-up chaddrs takes an address and declines it, pool-wide
    srv = server()
    for n in range(10, 14):
        a = bind(srv, n)
        srv.receive(decline(n, a).encode(), 0)
    assert srv.addresses_free(0) == 0
    assert srv.receive(discover(1).encode(), 3600 * S) == []
    capped = server(replace(BASE, decline_hold_cap=300))
    for n in range(10, 14):
        capped.receive(decline(n, bind(capped, n)).encode(), 0)
    assert capped.receive(discover(1).encode(), 3600 * S) != []


# --- RELEASE (4.3.4) ------------------------------------------------------------------------------


def release(n, address, *, cid=True, server_id=SERVER):
    return msg(7, n, cid=cid, ciaddr=address, opts=(ServerIdentifier(server_id),))


def test_release_frees_the_address_and_the_client_gets_it_again():
    srv = server()
    a = bind(srv, 1)
    assert srv.receive(release(1, a).encode(), 10 * S, src_ip=a) == []
    assert srv.events()[-1] == LeaseReleased(10 * S, a, mac(1))
    assert srv.leases.get(a).state is LeaseState.RELEASED
    assert DhcpMessage.decode(only(srv.receive(discover(1).encode(), 20 * S)).payload).yiaddr == a


def test_forged_release_with_a_different_client_identifier_is_dropped():
    srv = server()
    a = bind(srv, 1)
    forged = msg(7, 2, ciaddr=a, opts=(ServerIdentifier(SERVER),))
    assert srv.receive(forged.encode(), S) == []
    assert drops_of(srv) == [Drop.NOT_OWNER]


def test_forged_release_with_only_the_victims_mac_frees_the_lease_as_in_kea_and_dnsmasq():
    # draft 2.1.2: the RFC 2131 baseline identifies a client without option 61 by chaddr
    srv = server()
    a = bind(srv, 1)
    assert srv.receive(release(1, a, cid=False).encode(), S, src_ip=A("192.168.0.66")) == []
    assert srv.leases.get(a).state is LeaseState.RELEASED
    checked = server(replace(BASE, release_source_check=True))
    a = bind(checked, 1)
    assert checked.receive(release(1, a, cid=False).encode(), S, src_ip=A("192.168.0.66")) == []
    assert drops_of(checked) == [Drop.SOURCE_MISMATCH]
    assert checked.receive(release(1, a).encode(), S, src_ip=a) == []
    assert checked.leases.get(a).state is LeaseState.RELEASED


# --- INFORM (4.3.5) -------------------------------------------------------------------------------


def test_inform_gets_an_ack_without_lease_times_sent_to_ciaddr():
    srv = server()
    i = msg(8, ciaddr=A("192.168.0.50"))
    dg = only(srv.receive(i.encode(), 0, src_ip=A("192.168.0.50")))
    assert dg.payload == expected_reply(i, 5, ciaddr=A("192.168.0.50"), lease=False)
    assert (dg.dst_ip, dg.dst_port) == (A("192.168.0.50"), 68)
    assert srv.events() == [InformAnswered(0, A("192.168.0.50"), mac(1))]
    assert len(srv.leases) == 0


# --- relay agents (RFC 2131 4.1, RFC 3046) -------------------------------------------------------

RAI = RelayAgentInformation((CircuitId(b"sw1/port3"), RemoteId(b"\x00\x11\x22\x33\x44\x55")))
GIADDR = A("192.168.0.254")


def test_relayed_discover_is_answered_to_the_relay_with_option_82_echoed_last():
    d = discover(giaddr=GIADDR, hops=1, opts=(RAI,))
    dg = only(server().receive(d.encode(), 0, src_ip=GIADDR))
    assert (dg.dst_ip, dg.src_port, dg.dst_port, dg.dst_mac) == (GIADDR, 67, 67, None)
    reply = DhcpMessage.decode(dg.payload)
    assert reply.options[-1] == RAI and reply.giaddr == GIADDR and reply.hops == 0
    # option 82 is inserted before END of the reply a direct client would get (with giaddr kept)
    plain = expected_reply(replace(d, options=d.options[:-1]), 2, yiaddr=A("192.168.0.10"))
    end = len(plain.rstrip(b"\0")) - 1  # the END option
    assert dg.payload == plain[:end] + bytes([82, len(RAI.encode_value())]) + RAI.encode_value() + plain[end:]


def test_relayed_nak_goes_to_the_relay_with_the_broadcast_bit_set():
    srv = server()
    bind(srv, 1)
    r = request(2, address=A("192.168.0.10"), giaddr=GIADDR)
    dg = only(srv.receive(r.encode(), S))
    assert dg.dst_ip == GIADDR and dg.dst_port == 67
    assert dg.payload == expected_reply(r, 6, flags=0x8000, message=b"address not available")


# --- allow-lists ----------------------------------------------------------------------------------


def test_allow_list_by_chaddr_and_by_client_identifier():
    srv = server(replace(BASE, allow_chaddrs=frozenset({mac(1)}),
                         allow_client_ids=frozenset({b"\x01" + mac(3)})))
    assert srv.receive(discover(1).encode(), 0) != []
    assert srv.receive(discover(2).encode(), 0) == []
    assert srv.receive(discover(3).encode(), 0) != []
    assert drops_of(srv) == [Drop.ALLOW_LIST]


def test_impersonation_passes_the_allow_list():
    # draft 2.1.2: a captured chaddr is all the allow-list checks
    srv = server(replace(BASE, allow_chaddrs=frozenset({mac(1)})))
    spoofed = discover(1, cid=False, xid=0x666)
    assert DhcpMessage.decode(only(srv.receive(spoofed.encode(), 0)).payload).message_type == 2


# --- limits ---------------------------------------------------------------------------------------


def test_per_client_lease_limit_counts_leases_per_hardware_address():
    # one chaddr, a new client identifier per request: the classic way round "one lease per client"
    def sweep(srv):
        got = 0
        for k in range(4):
            d = DhcpMessage(xid=k, chaddr=mac(1),
                            options=(DhcpMessageType(1), ClientIdentifier(0, bytes([k]))))
            got += len(srv.receive(d.encode(), 0))
        return got

    assert sweep(server()) == 4
    limited = server(replace(BASE, per_client_lease_limit=1))
    assert sweep(limited) == 1
    assert drops_of(limited).count(Drop.PER_CLIENT_LIMIT) == 3


def test_per_circuit_lease_limit_uses_option_82_circuit_id():
    srv = server(replace(BASE, per_circuit_lease_limit=2))
    port = lambda c: RelayAgentInformation((CircuitId(c),))  # noqa: E731
    offers = [srv.receive(discover(n, giaddr=GIADDR, opts=(port(b"p1"),)).encode(), 0) for n in range(1, 4)]
    assert [len(o) for o in offers] == [1, 1, 0]
    assert drops_of(srv)[-1] == Drop.PER_CIRCUIT_LIMIT
    assert srv.receive(discover(9, giaddr=GIADDR, opts=(port(b"p2"),)).encode(), 0) != []
    # the limit counts offers and leases; an offer that ran out frees its slot
    assert srv.receive(discover(4, giaddr=GIADDR, opts=(port(b"p1"),)).encode(), 61 * S) != []


# --- rate limit -------------------------------------------------------------------------------------


def test_rate_limit_per_chaddr():
    srv = server(replace(BASE, rate_limit=RateLimit(per_chaddr=1.0, burst=2)))
    answered = [len(srv.receive(discover(1, xid=k).encode(), k * S // 10)) for k in range(10)]
    assert answered == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert srv.drops[Drop.RATE_LIMIT] == 8
    assert srv.receive(discover(2).encode(), S) != []  # other clients are not affected
    assert srv.receive(discover(1).encode(), 2 * S) != []  # the bucket refills


def test_rate_limit_global():
    srv = server(replace(BASE, rate_limit=RateLimit(per_chaddr=None, total=2.0)))
    answered = [len(srv.receive(discover(n).encode(), 0)) for n in range(1, 5)]
    assert answered == [1, 1, 0, 0]
    assert srv.drops[Drop.RATE_LIMIT_GLOBAL] == 2


# --- malformed and unexpected input -------------------------------------------------------------


def test_malformed_input_is_dropped_and_counted():
    srv = server()
    assert srv.receive(b"\x01\x02", 0) == []
    assert srv.receive(discover().encode()[:-1], 0) == []  # END missing
    assert srv.counters["malformed"] == 2 and srv.drops[Drop.MALFORMED] == 2
    assert srv.events() == [Dropped(0, Drop.MALFORMED, None)] * 2


def test_replies_bootp_and_server_messages_from_clients_are_dropped():
    srv = server()
    offer = replace(discover(), op=2)
    bootp = DhcpMessage(xid=1, chaddr=mac(1))
    ack = msg(5)
    unknown = msg(42)
    for m in (offer, bootp, ack, unknown):
        assert srv.receive(m.encode(), 0) == []
    assert drops_of(srv) == [
        Drop.NOT_REQUEST, Drop.NO_MESSAGE_TYPE, Drop.UNEXPECTED_TYPE, Drop.UNEXPECTED_TYPE]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_no_input_makes_the_server_raise(data):
    srv = server(replace(BASE, auth_paradigm="mutual", auth_keys=(AuthKey(1, KEY),),
                         per_circuit_lease_limit=1, rate_limit=RateLimit(total=1000.0)))
    srv.receive(data, 0)
    srv.receive(discover().encode()[:240] + data, 0)


# --- timers -----------------------------------------------------------------------------------------


def test_timers_expire_offers_and_leases():
    srv = server()
    srv.receive(discover(1).encode(), 0)
    a = bind(srv, 2, now=10 * S)
    assert srv.next_timer() == 60 * S
    srv.events()
    srv.handle_timer(60 * S)
    assert srv.events() == [LeaseExpired(60 * S, A("192.168.0.10"), mac(1), "offered")]
    assert srv.next_timer() == 3610 * S
    srv.handle_timer(3610 * S)
    assert srv.events() == [LeaseExpired(3610 * S, a, mac(2), "bound")]
    assert srv.next_timer() is None and srv.leases_held(3610 * S) == 0


# --- restart --------------------------------------------------------------------------------------


def test_a_restarted_server_keeps_its_leases(tmp_path):
    path = tmp_path / "leases.sqlite"
    srv = server(store=LeaseStore(path))
    a = bind(srv, 1)
    del srv  # no clean shutdown
    again = server(store=LeaseStore(path))
    assert DhcpMessage.decode(only(again.receive(discover(2).encode(), S)).payload).yiaddr != a
    r = msg(3, ciaddr=a)
    assert DhcpMessage.decode(only(again.receive(r.encode(), S)).payload).message_type == 5
    assert again.next_timer() == 61 * S


# --- authentication: the four paradigms of draft 4.2 ------------------------------------------------


def auth_config(paradigm, protocol=1, **kw):
    keys = kw.pop("keys", (AuthKey(0x11, KEY),))
    return replace(BASE, auth_paradigm=paradigm, auth_protocol=protocol, auth_keys=keys, **kw)


class AuthClient:
    """A client doing RFC 3118 delayed authentication (as dhcpcd does)."""

    def __init__(self, n=1, key=AuthKey(0x11, KEY)):
        self.n = n
        self.key = key
        self.replay = 1000
        self.server_check = Verifier(1, KeyRing([key]), ReplayDetector())

    def discover(self, opts=(), **kw):
        return discover(self.n, opts=(Authentication(1, 1, 0, 0),) + tuple(opts), **kw).encode()

    def signed(self, m: DhcpMessage) -> bytes:
        self.replay += 1
        auth = Authentication.delayed(self.key.secret_id, self.replay)
        return sign(m.with_options(auth).encode(), self.key.key)

    def request(self, address, **kw):
        return self.signed(request(self.n, address=address, **kw))

    def accepts(self, payload: bytes) -> bool:
        m = DhcpMessage.decode(payload)
        return self.server_check.verify(m, payload, m.client_key()).ok


def test_no_authentication_by_default_and_no_option_90_in_replies():
    payload = only(server().receive(AuthClient().discover(), 0)).payload
    assert DhcpMessage.decode(payload).authentication is None


def test_server_authenticates_client_delayed():
    srv = server(auth_config("server-authenticates-client"))
    c = AuthClient()
    offer = DhcpMessage.decode(only(srv.receive(c.discover(), 0)).payload)
    assert offer.authentication is None  # this paradigm does not sign the server's messages
    good = c.request(offer.yiaddr)
    assert DhcpMessage.decode(only(srv.receive(good, S)).payload).message_type == 5
    # replayed, tampered, unsigned, and signed with an unknown key: all dropped
    assert srv.receive(good, 2 * S) == []
    tampered = bytearray(c.request(offer.yiaddr))
    tampered[4] ^= 1  # xid
    assert srv.receive(bytes(tampered), 2 * S) == []
    assert srv.receive(request(address=offer.yiaddr).encode(), 2 * S) == []
    stranger = AuthClient(2, AuthKey(0x99, b"guess"))
    assert srv.receive(stranger.request(A("192.168.0.11")), 2 * S) == []
    assert drops_of(srv) == [Drop.AUTH_REPLAY, Drop.AUTH_BAD_HMAC, Drop.AUTH_MISSING, Drop.AUTH_UNKNOWN_KEY]


def test_server_authenticates_client_defeats_a_forged_release():
    srv = server(auth_config("server-authenticates-client"))
    c = AuthClient()
    offer = DhcpMessage.decode(only(srv.receive(c.discover(), 0)).payload)
    srv.receive(c.request(offer.yiaddr), 0)
    forged = release(1, offer.yiaddr, cid=False)
    assert srv.receive(forged.encode(), S) == []
    assert srv.leases.get(offer.yiaddr).state is LeaseState.BOUND
    assert srv.receive(c.signed(release(1, offer.yiaddr)), S) == []
    assert srv.leases.get(offer.yiaddr).state is LeaseState.RELEASED


def test_per_client_keys_stop_one_client_impersonating_another():
    alice = AuthClient(1, AuthKey(1, b"alice key", client=b"i\x01" + mac(1)))
    mallory = AuthClient(2, AuthKey(2, b"mallory key", client=b"i\x01" + mac(2)))
    srv = server(auth_config("server-authenticates-client", keys=(alice.key, mallory.key)))
    a = DhcpMessage.decode(only(srv.receive(alice.discover(), 0)).payload).yiaddr
    srv.receive(alice.request(a), 0)
    # mallory signs a DHCPRELEASE in alice's name with her own valid key
    forged = mallory.signed(release(1, a))
    assert srv.receive(forged, S) == []
    assert drops_of(srv)[-1] == Drop.AUTH_FOREIGN_KEY


def test_client_authenticates_server_every_reply_is_signed_with_increasing_replay():
    srv = server(auth_config("client-authenticates-server"))
    c = AuthClient()
    offer_payload = only(srv.receive(c.discover(), 0)).payload
    assert c.accepts(offer_payload) and check_mac(offer_payload, KEY)
    offer = DhcpMessage.decode(offer_payload)
    ack_payload = only(srv.receive(c.request(offer.yiaddr), S)).payload
    assert c.accepts(ack_payload)
    assert DhcpMessage.decode(ack_payload).authentication.replay > offer.authentication.replay
    # the client does not accept a replayed OFFER, nor an ACK rewritten into a NAK (draft 2.4)
    assert not c.accepts(offer_payload)
    nak = bytearray(ack_payload)
    nak[242] = 6
    assert not c.accepts(bytes(nak))
    # the server does not check clients in this paradigm
    assert DhcpMessage.decode(only(srv.receive(discover(5).encode(), S)).payload).message_type == 2


def test_mutual_authentication():
    srv = server(auth_config("mutual"))
    c = AuthClient()
    offer_payload = only(srv.receive(c.discover(), 0)).payload
    assert c.accepts(offer_payload)
    ack_payload = only(srv.receive(c.request(DhcpMessage.decode(offer_payload).yiaddr), S)).payload
    assert c.accepts(ack_payload)
    assert srv.receive(discover(5).encode(), S) == []  # no option 90: dropped
    assert drops_of(srv) == [Drop.AUTH_MISSING]


def test_a_signed_reply_through_a_relay_verifies_once_the_relay_strips_option_82():
    srv = server(auth_config("client-authenticates-server"))
    c = AuthClient()
    dg = only(srv.receive(c.discover(giaddr=GIADDR, opts=(RAI,)), 0))
    reply = DhcpMessage.decode(dg.payload)
    assert reply.options[-1] == RAI
    at = dg.payload.index(bytes([82, len(RAI.encode_value())]) + RAI.encode_value())
    stripped = dg.payload[:at] + dg.payload[at + 2 + len(RAI.encode_value()):]
    assert c.accepts(stripped)


def test_discover_from_a_client_without_a_key_is_dropped_when_clients_must_authenticate():
    srv = server(auth_config("server-authenticates-client", keys=(AuthKey(1, b"k", client=b"someone"),)))
    assert srv.receive(AuthClient().discover(), 0) == []
    assert drops_of(srv) == [Drop.AUTH_UNKNOWN_KEY]


def test_configuration_token_protocol_0():
    srv = server(auth_config("mutual", protocol=0, keys=(AuthKey(0, b"open sesame"),),
                             auth_token=b"server token"))
    d = discover(opts=(Authentication(0, 0, 0, 1, b"open sesame"),))
    reply = DhcpMessage.decode(only(srv.receive(d.encode(), 0)).payload)
    assert reply.authentication == Authentication(0, 0, 0, 1, b"server token")
    bad = discover(2, opts=(Authentication(0, 0, 0, 1, b"guess"),))
    assert srv.receive(bad.encode(), 0) == []
    # draft 3.1 / 3.3: a sniffed token works for anyone once the counter is moved on
    sniffed = discover(3, opts=(Authentication(0, 0, 0, 1, b"open sesame"),))
    assert srv.receive(sniffed.encode(), 0) != []
    assert drops_of(srv) == [Drop.AUTH_BAD_TOKEN]


def test_replay_counter_survives_a_restart(tmp_path):
    path = tmp_path / "leases.sqlite"
    srv = server(auth_config("client-authenticates-server"), LeaseStore(path))
    first = DhcpMessage.decode(only(srv.receive(AuthClient().discover(), 0)).payload).authentication.replay
    del srv
    srv = server(auth_config("client-authenticates-server"), LeaseStore(path))
    second = DhcpMessage.decode(only(srv.receive(AuthClient(2).discover(), 0)).payload).authentication.replay
    assert second > first


# --- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize("change,name", [
    (dict(auth_paradigm="sometimes"), "auth_paradigm"),
    (dict(auth_paradigm="mutual"), "auth_keys"),
    (dict(auth_protocol=3), "auth_protocol"),
    (dict(pool_start=A("192.168.0.20"), pool_end=A("192.168.0.10")), "pool_start"),
    (dict(pool_end=A("10.0.0.1")), "pool"),
    (dict(lease_time=0), "lease_time"),
    (dict(renewal_time=4000), "renewal_time"),
    (dict(per_circuit_lease_limit=0), "per_circuit_lease_limit"),
    (dict(decline_hold_cap=-1), "decline_hold_cap"),
])
def test_bad_configuration_names_the_parameter(change, name):
    with pytest.raises(ParamError) as e:
        replace(BASE, **change)
    assert name in str(e.value)


def test_bad_rate_limit_names_itself():
    with pytest.raises(ParamError, match="per_chaddr"):
        RateLimit(per_chaddr=0)


def test_server_module_reexports_auth_key():
    assert ReexportedAuthKey is AuthKey


def test_unknown_options_in_requests_are_ignored():
    d = discover(opts=(RawOption(224, b"vendor stuff"),))
    assert DhcpMessage.decode(only(server().receive(d.encode(), 0)).payload).message_type == 2


# --- tshark reads a whole authenticated, relayed exchange without a warning -----------------------


def _pcap(frames: list[bytes]) -> bytes:
    import struct

    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1, i, len(f), len(f)) + f)
    return b"".join(out)


def _frame(payload: bytes, src: A, dst: A, sport: int, dport: int) -> bytes:
    from threatlab.net.wire import ETH_P_IP, IPPROTO_UDP, UDP, Ethernet, IPv4

    ip = IPv4(src, dst, IPPROTO_UDP, UDP(sport, dport, payload).encode(src, dst)).encode()
    return Ethernet(b"\xff" * 6, mac(99), ETH_P_IP, ip).encode()


@pytest.mark.skipif(__import__("shutil").which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_a_mutually_authenticated_relayed_exchange(tmp_path):
    import subprocess

    srv = server(auth_config("mutual"))
    c = AuthClient()
    frames, replies = [], []

    def exchange(data: bytes, now: int) -> DhcpMessage:
        frames.append(_frame(data, GIADDR, SERVER, 67, 67))
        dg = only(srv.receive(data, now, src_ip=GIADDR))
        frames.append(_frame(dg.payload, dg.src_ip, dg.dst_ip, dg.src_port, dg.dst_port))
        replies.append(DhcpMessage.decode(dg.payload))
        return replies[-1]

    offer = exchange(c.discover(giaddr=GIADDR, hops=1, opts=(RAI,)), 0)
    exchange(c.request(offer.yiaddr, giaddr=GIADDR, hops=1, opts=(RAI,)), S)
    exchange(c.request(A("192.168.0.13"), giaddr=GIADDR, hops=1, opts=(RAI,), xid=9), 2 * S)  # NAK
    assert [r.message_type for r in replies] == [2, 5, 6]
    path = tmp_path / "exchange.pcap"
    path.write_bytes(_pcap(frames))
    warnings = subprocess.run(
        ["tshark", "-r", str(path), "-Y", '_ws.malformed || _ws.expert.severity >= "warning"'],
        capture_output=True, text=True, check=True).stdout
    assert warnings == ""
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "dhcp.option.dhcp == 2 || dhcp.option.dhcp >= 5",
         "-T", "fields", "-E", "separator=|", "-e", "dhcp.option.dhcp_authentication.rdm_replay_detection",
         "-e", "dhcp.option.dhcp_authentication.secret_id",
         "-e", "dhcp.option.dhcp_authentication.hmac_md5_hash",
         "-e", "dhcp.option.agent_information_option.agent_circuit_id", "-e", "dhcp.flags.bc"],
        capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines()]
    assert rows == [
        [f"0x{r.authentication.replay:016x}", "0x00000011", r.authentication.mac.hex(), b"sw1/port3".hex(),
         "1" if r.message_type == 6 else "0"]
        for r in replies
    ]


# --- any sequence of plausible messages: no exception, and the pool's bookkeeping holds -------------

POOL = [A("192.168.0.10"), A("192.168.0.11"), A("192.168.0.12"), A("192.168.0.13")]
_addr = st.sampled_from(POOL + [SERVER, A("192.168.0.99"), A("10.0.0.1"), ZERO])
_option = st.one_of(
    st.builds(RequestedIpAddress, _addr),
    st.builds(ServerIdentifier, st.sampled_from([SERVER, A("192.168.0.99")])),
    st.builds(ClientIdentifier, st.integers(0, 255), st.binary(min_size=1, max_size=3)),
    st.builds(RelayAgentInformation,
              st.lists(st.builds(CircuitId, st.binary(max_size=2)), max_size=2).map(tuple)),
    st.builds(Authentication, st.integers(0, 2), st.integers(0, 2), st.integers(0, 1), st.integers(0, 5),
              st.binary(max_size=24)),
    st.builds(MaximumMessageSize, st.integers(0, 2000)),
)


@st.composite
def client_messages(draw):
    return DhcpMessage(
        op=1, xid=draw(st.integers(0, 3)), chaddr=mac(draw(st.integers(1, 4))),
        ciaddr=draw(_addr), giaddr=draw(st.sampled_from([ZERO, GIADDR])),
        flags=draw(st.sampled_from([0, 0x8000])),
        options=(DhcpMessageType(draw(st.integers(1, 9))),)
        + tuple(draw(st.lists(_option, max_size=4, unique_by=lambda o: o.code))),
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(client_messages(), st.integers(0, 200)), min_size=1, max_size=25),
       st.sampled_from(["none", "mutual", "server-authenticates-client", "client-authenticates-server"]),
       st.sampled_from([0, 1, 2]))
def test_any_message_sequence_keeps_the_pool_consistent(steps, paradigm, protocol):
    cfg = replace(BASE, auth_paradigm=paradigm, auth_protocol=protocol, auth_keys=(AuthKey(0, b"k"),),
                  per_client_lease_limit=2, per_circuit_lease_limit=2, decline_hold_cap=100,
                  rate_limit=RateLimit(per_chaddr=5.0, total=50.0, burst=3), authoritative=paradigm != "none")
    srv = server(cfg)
    now = 0
    for m, dt in steps:
        now += dt * S
        for dg in srv.receive(m.encode(), now, src_ip=m.ciaddr):
            reply = DhcpMessage.decode(dg.payload)
            assert reply.op == 2 and reply.xid == m.xid and reply.message_type in (2, 5, 6)
            if reply.message_type in (2, 5) and reply.yiaddr != ZERO:
                assert reply.yiaddr in POOL
                assert srv.leases.get(reply.yiaddr).client_key == m.client_key()
        held = [lease for lease in srv.leases if not lease.free(now)]
        assert len(held) <= len(POOL) and all(lease.address in POOL for lease in held)
        assert srv.addresses_free(now) == len(POOL) - len(held)
    assert srv.counters["received"] == len(steps)


def test_configured_options_too_long_for_the_client_are_sent_whole_rather_than_raising():
    srv = server(replace(BASE, dns_servers=tuple(A(f"10.0.{i // 250}.{i % 250 + 1}") for i in range(200))))
    dg = only(srv.receive(discover(opts=(MaximumMessageSize(576),)).encode(), 0))
    assert len(DhcpMessage.decode(dg.payload).get(6).addresses) == 200


# --- subnets chosen by giaddr (RFC 2131 4.3.1) -----------------------------------------------------

REMOTE = Pool(IPv4Network("10.0.1.0/24"), A("10.0.1.100"), A("10.0.1.101"), (A("10.0.1.1"),))
OTHER = Pool(IPv4Network("10.0.2.0/23"), A("10.0.3.10"), A("10.0.3.10"))


def test_a_relayed_client_is_served_from_the_pool_of_its_giaddrs_subnet_with_that_subnets_mask_and_router():
    srv = server(replace(BASE, pools=(REMOTE, OTHER)))
    assert srv.pool_size == 4 + 2 + 1
    offer = DhcpMessage.decode(only(srv.receive(discover(1, giaddr=A("10.0.1.1")).encode(), 0)).payload)
    assert offer.yiaddr == A("10.0.1.100")
    assert (offer.get(1), offer.get(3)) == (SubnetMask(A("255.255.255.0")), Routers((A("10.0.1.1"),)))
    offer = DhcpMessage.decode(only(srv.receive(discover(2, giaddr=A("10.0.2.1")).encode(), 0)).payload)
    assert offer.yiaddr == A("10.0.3.10") and offer.get(1) == SubnetMask(A("255.255.254.0"))
    assert offer.get(3) is None  # that subnet has no router configured
    # a client on the server's own subnet still gets the local pool, with the server's options
    offer = DhcpMessage.decode(only(srv.receive(discover(3).encode(), 0)).payload)
    assert offer.yiaddr == A("192.168.0.10") and offer.get(3) == Routers((SERVER,))
    # and the whole exchange works for the relayed client: its pool, not the local one
    assert bind(srv, 4, giaddr=A("10.0.1.1")) == A("10.0.1.101")


def test_a_subnets_pool_runs_out_on_its_own():
    srv = server(replace(BASE, pools=(REMOTE,)))
    bind(srv, 1, giaddr=A("10.0.1.1"))
    bind(srv, 2, giaddr=A("10.0.1.1"))
    assert srv.receive(discover(3, giaddr=A("10.0.1.1")).encode(), 0) == []
    assert drops_of(srv)[-1] == Drop.POOL_EXHAUSTED
    assert bind(srv, 3) == A("192.168.0.10")  # the local pool is untouched


def test_a_relay_on_a_subnet_without_a_pool_gets_no_answer():
    srv = server(replace(BASE, pools=(REMOTE,)))
    assert srv.receive(discover(1, giaddr=A("10.0.9.1")).encode(), 0) == []
    assert drops_of(srv) == [DROP_NO_SUBNET]


def test_init_reboot_for_an_address_of_another_subnet_than_giaddrs_is_naked():
    srv = server(replace(BASE, pools=(REMOTE,)))
    address = bind(srv, 1, giaddr=A("10.0.1.1"))
    r = request(1, address=address, server_id=None, xid=9)  # now on the server's own subnet
    reply = DhcpMessage.decode(only(srv.receive(r.encode(), S)).payload)
    assert reply.message_type == 6 and reply.get(56) == Message(b"wrong network")
    r = request(1, address=address, server_id=None, xid=10, giaddr=A("10.0.1.1"))
    assert DhcpMessage.decode(only(srv.receive(r.encode(), S)).payload).message_type == 5


def test_a_renewal_unicast_from_a_remote_subnet_is_answered_to_ciaddr():
    srv = server(replace(BASE, pools=(REMOTE,)))
    address = bind(srv, 1, giaddr=A("10.0.1.1"))
    r = msg(3, 1, xid=11, ciaddr=address)
    dg = only(srv.receive(r.encode(), 1800 * S, src_ip=address))
    reply = DhcpMessage.decode(dg.payload)
    assert (dg.dst_ip, reply.message_type, reply.yiaddr) == (address, 5, address)
    assert reply.get(3) == Routers((A("10.0.1.1"),))


def test_a_server_with_only_remote_pools_serves_no_local_client():
    cfg = DhcpServerConfig(server_id=A("10.0.0.1"), pool_start=None, pool_end=None, pools=(REMOTE,))
    srv = server(cfg)
    assert srv.receive(discover(1).encode(), 0) == [] and drops_of(srv) == [DROP_NO_SUBNET]
    offer = DhcpMessage.decode(only(srv.receive(discover(2, giaddr=A("10.0.1.1")).encode(), 0)).payload)
    r = request(2, address=offer.yiaddr, server_id=A("10.0.0.1"), giaddr=A("10.0.1.1"))
    ack = DhcpMessage.decode(only(srv.receive(r.encode(), 0)).payload)
    assert (ack.message_type, ack.yiaddr, ack.get(1)) == (5, A("10.0.1.100"), SubnetMask(A("255.255.255.0")))


@pytest.mark.parametrize("change,words", [
    (dict(pools=(REMOTE, Pool(IPv4Network("10.0.0.0/16"), A("10.0.5.1"), A("10.0.5.2")))), "overlap"),
    (dict(pools=(Pool(IPv4Network("192.168.0.0/25"), A("192.168.0.20"), A("192.168.0.30")),)), "overlap"),
    (dict(pool_start=None, pool_end=None), "pool_start"),
    (dict(pools=[REMOTE]), "pools"),
])
def test_bad_pools_name_the_problem(change, words):
    with pytest.raises(ParamError, match=words):
        replace(BASE, **change)


def test_a_pool_outside_its_network_names_itself():
    with pytest.raises(ParamError, match="not inside 10.0.1.0/24"):
        Pool(IPv4Network("10.0.1.0/24"), A("10.0.1.10"), A("10.0.2.10"))
    with pytest.raises(ParamError, match="after"):
        Pool(IPv4Network("10.0.1.0/24"), A("10.0.1.10"), A("10.0.1.9"))
