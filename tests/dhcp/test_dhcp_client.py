"""threatlab's DHCP client against threatlab's server, wired together in memory: the exact events
of RFC 2131 4.4 (selecting, requesting, renewing, rebinding, expiry, NAK, DECLINE, retransmission)
and what RFC 3118 authentication changes (draft-ietf-dhc-v4-threat-analysis 2.1.1, 2.2, 2.4, 3.3)."""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address as A
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threatlab.dhcp.auth import AuthKey
from threatlab.dhcp.client import (
    LISTENS,
    TRANSITIONS,
    Bound,
    ClientDrop,
    Declined,
    DhcpClient,
    DhcpClientConfig,
    DhcpClientStateError,
    Dropped,
    LeaseExpired,
    Nak,
    OfferReceived,
    OfferSelected,
    Released,
    Renewed,
    RequestTimedOut,
    ServerIgnored,
    State,
    Trigger,
    transition,
)
from threatlab.dhcp.events import LeaseBound, LeaseDeclined, LeaseOffered, LeaseReleased, OfferWithdrawn
from threatlab.dhcp.leases import LeaseStore
from threatlab.dhcp.server import DhcpServer, DhcpServerConfig
from threatlab.dhcp.wire import (
    Authentication,
    DhcpMessage,
    DhcpMessageType,
    ServerIdentifier,
)
from threatlab.errors import ParamError

S = 1_000_000_000
SERVER = A("192.168.0.1")
SERVER2 = A("192.168.0.2")
BCAST = A("255.255.255.255")
ZERO = A("0.0.0.0")
MAC = bytes.fromhex("020000000001")
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
KEYS = (AuthKey(0x11, KEY),)
EXACT = DhcpClientConfig(rtx_jitter=0)  # no randomization: exact retransmission times

BASE = DhcpServerConfig(server_id=SERVER, pool_start=A("192.168.0.10"), pool_end=A("192.168.0.19"),
                        routers=(SERVER,), lease_time=3600)


def server(config=BASE, **changes) -> DhcpServer:
    return DhcpServer(replace(config, **changes), LeaseStore(), random.Random(1))


def client(config=EXACT, **changes) -> DhcpClient:
    return DhcpClient(replace(config, **changes), random.Random(7), MAC)


class Wire:
    """One client and some servers on one link, in memory. A broadcast reaches every server that
    is up, a unicast the server it is addressed to; `tap(payload) -> payload | None` sees each
    server reply first. `sent` logs (time, datagram) of everything the client sent."""

    def __init__(self, c: DhcpClient, *servers: DhcpServer) -> None:
        self.c = c
        self.servers = list(servers)
        self.up = {id(s): True for s in servers}
        self.unicast_up = True
        self.tap = None
        self.now = 0
        self.sent: list = []
        self.server_events: list = []

    def flush(self) -> None:
        while True:
            out = self.c.datagrams_to_send(self.now)
            if not out:
                return
            for dg in out:
                self.sent.append((self.now, dg))
                for srv in self.servers:
                    if not self.up[id(srv)]:
                        continue
                    if dg.dst_ip != BCAST and (dg.dst_ip != srv.config.server_id or not self.unicast_up):
                        continue
                    for reply in srv.receive(dg.payload, self.now, src_ip=dg.src_ip):
                        payload = reply.payload if self.tap is None else self.tap(reply.payload)
                        if payload is not None:
                            self.c.receive(payload, self.now)
                    self.server_events += srv.events()

    def run(self, until: int) -> None:
        self.flush()
        while True:
            timers = [self.c.next_timer()] + [s.next_timer() for s in self.servers]
            deadlines = [t for t in timers if t is not None]
            if not deadlines or min(deadlines) > until:
                break
            self.now = max(self.now, min(deadlines))
            for srv in self.servers:
                srv.handle_timer(self.now)
            self.c.handle_timer(self.now)
            self.flush()
        self.now = until

    def start(self, address=None) -> None:
        self.c.start(self.now, address)
        self.flush()

    def kinds(self) -> list[tuple[float, str, A]]:
        """(seconds, message type, destination) of what the client sent."""
        return [(t / S, DhcpMessage.decode(dg.payload).message_type.name, dg.dst_ip) for t, dg in self.sent]


def bound_events(address, at=0, srv=SERVER, lease=3600, offers=1, options=None):
    return [OfferReceived(at, srv, address, lease), OfferSelected(at, srv, address, offers),
            Bound(at, address, srv, lease, options)]


def strip_options(events):
    """Events with the Bound / Renewed options left out (compared separately)."""
    return [replace(e, options=None) if isinstance(e, (Bound, Renewed)) else e for e in events]


# --- the state machine as data -----------------------------------------------------------------------


def test_figure_5_edges_are_the_transition_table():
    assert transition(State.INIT, Trigger.DISCOVER) is State.SELECTING
    assert transition(State.SELECTING, Trigger.SELECT) is State.REQUESTING
    assert transition(State.REQUESTING, Trigger.ACK) is State.BOUND
    assert transition(State.BOUND, Trigger.T1) is State.RENEWING
    assert transition(State.RENEWING, Trigger.T2) is State.REBINDING
    assert transition(State.REBINDING, Trigger.EXPIRE) is State.INIT
    assert transition(State.INIT_REBOOT, Trigger.REBOOT_REQUEST) is State.REBOOTING
    assert set(TRANSITIONS) == set(State) and set(LISTENS) == set(State)
    with pytest.raises(DhcpClientStateError, match="not allowed in state SELECTING"):
        transition(State.SELECTING, Trigger.RELEASE)


def test_illegal_calls_raise_state_errors():
    c = client()
    with pytest.raises(DhcpClientStateError):
        c.release(0)
    c.start(0)
    with pytest.raises(DhcpClientStateError):
        c.start(0)
    with pytest.raises(DhcpClientStateError):
        c.address_in_use(0)


# --- acquiring a lease (RFC 2131 3.1, 4.4.1) ----------------------------------------------------------


def test_discover_offer_request_ack_binds_with_exact_messages():
    c, srv = client(), server()
    w = Wire(c, srv)
    w.start()
    events = c.events()
    assert strip_options(events) == bound_events(A("192.168.0.10"))
    assert c.state is State.BOUND and c.address == A("192.168.0.10")
    assert c.lease.routers == (SERVER,) and c.lease.subnet_mask == A("255.255.255.0")
    assert (c.lease.t1, c.lease.t2, c.lease.expiry) == (1800 * S, 3150 * S, 3600 * S)
    discover, request = (dg for _, dg in w.sent)
    assert (discover.src_ip, discover.dst_ip, discover.src_port, discover.dst_port, discover.dst_mac) == (
        ZERO, BCAST, 68, 67, b"\xff" * 6)
    d, r = DhcpMessage.decode(discover.payload), DhcpMessage.decode(request.payload)
    assert (d.op, d.message_type, d.mac, d.ciaddr, d.flags, d.parameter_request_list) == (
        1, 1, MAC, ZERO, 0, (1, 3, 6, 15, 51, 54, 58, 59))
    assert len(discover.payload) == 300  # RFC 1542 2.1 minimum
    # RFC 2131 4.4.1: the DHCPREQUEST keeps the offer's xid, names the server and the address
    assert (r.xid, r.message_type, r.server_id, r.requested_ip, r.ciaddr) == (
        d.xid, 3, SERVER, A("192.168.0.10"), ZERO)
    key = b"h\x01" + MAC
    assert w.server_events == [LeaseOffered(0, A("192.168.0.10"), MAC, key),
                               LeaseBound(0, A("192.168.0.10"), MAC, key, 3600 * S, False)]


def test_broadcast_flag_when_configured():
    c = client(broadcast=True)
    c.start(0)
    assert DhcpMessage.decode(c.datagrams_to_send(0)[0].payload).broadcast


def test_discover_retransmission_backs_off_4_8_16_32_64_and_stays_at_64():
    c = client()
    w = Wire(c)  # no server
    w.start()
    w.run(400 * S)
    assert [t for t, _, _ in w.kinds()] == [0, 4, 12, 28, 60, 124, 188, 252, 316, 380]
    xids = {DhcpMessage.decode(dg.payload).xid for _, dg in w.sent}
    assert len(xids) == 1  # retransmissions keep the xid
    secs = [DhcpMessage.decode(dg.payload).secs for _, dg in w.sent]
    assert secs == [0, 4, 12, 28, 60, 124, 188, 252, 316, 380]


def test_retransmission_delays_are_randomized_by_one_second():
    c = DhcpClient(DhcpClientConfig(), random.Random(3), MAC)
    w = Wire(c)
    w.start()
    w.run(200 * S)
    times = [t for t, _ in w.sent]
    delays = [(b - a) / S for a, b in pairwise(times)]
    for d, base in zip(delays, [4, 8, 16, 32, 64, 64]):
        assert base - 1 <= d <= base + 1
    assert delays[:4] != [4, 8, 16, 32]


def test_discover_retries_then_a_pause_in_init():
    c = client(discover_retries=2, discover_pause=100)
    w = Wire(c)
    w.start()
    w.run(200 * S)
    # two retransmissions; no offer by the time the third would go: INIT for 100 s, then again
    assert [t for t, _, _ in w.kinds()] == [0, 4, 12, 128, 132, 140]
    assert c.events() == [RequestTimedOut(28 * S, State.SELECTING), RequestTimedOut(156 * S, State.SELECTING)]


def test_request_unanswered_is_retransmitted_then_back_to_init():
    c, srv = client(), server()
    w = Wire(c, srv)
    real = srv.receive

    def no_requests(payload, now, **kw):
        return [] if DhcpMessage.decode(payload).message_type == 3 else real(payload, now, **kw)

    srv.receive = no_requests
    w.start()
    w.run(124 * S)
    assert w.kinds()[:7] == [(0, "DISCOVER", BCAST), (0, "REQUEST", BCAST), (4, "REQUEST", BCAST),
                             (12, "REQUEST", BCAST), (28, "REQUEST", BCAST), (60, "REQUEST", BCAST),
                             (124, "DISCOVER", BCAST)]
    events = c.events()
    assert RequestTimedOut(124 * S, State.REQUESTING) in events
    assert c.state is State.REQUESTING  # offered again at once, requesting again


def test_dropped_replies_have_named_reasons():
    c, srv = client(), server()
    c.start(0)
    discover = DhcpMessage.decode(c.datagrams_to_send(0)[0].payload)
    offer = DhcpMessage.decode(srv.receive(discover.encode(), 0)[0].payload)
    c.receive(b"\x02garbage", 0)
    c.receive(replace(offer, op=1).encode(), 0)
    c.receive(replace(offer, chaddr=bytes(6)).encode(), 0)
    c.receive(replace(offer, xid=offer.xid ^ 1).encode(), 0)
    c.receive(offer.without_options(53).encode(), 0)
    c.receive(offer.without_options(54).encode(), 0)
    c.receive(offer.with_options(DhcpMessageType(5)).encode(), 0)  # an ACK while SELECTING
    c.receive(replace(offer, yiaddr=ZERO).encode(), 0)
    assert [e.reason for e in c.events()] == [
        ClientDrop.MALFORMED, ClientDrop.NOT_REPLY, ClientDrop.NOT_FOR_US, ClientDrop.XID,
        ClientDrop.NO_MESSAGE_TYPE, ClientDrop.NO_SERVER_ID, ClientDrop.UNEXPECTED, ClientDrop.NO_ADDRESS]
    assert c.state is State.SELECTING and sum(c.drops.values()) == 8


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_no_input_makes_the_client_raise(data):
    c = client()
    c.start(0)
    c.receive(data, 0)
    c.receive(b"\x02" + data[1:], 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 3), st.lists(st.tuples(st.integers(0, 599), st.integers(0, 255)), max_size=6))
def test_corrupted_server_replies_in_any_state_never_raise(state, flips):
    """Replies with bytes flipped, fed in SELECTING, REQUESTING, BOUND or RENEWING."""
    c, srv = client(offer_wait=1.0), server()
    w = Wire(c, srv)
    replies = []
    w.tap = lambda p: replies.append(p) or p
    w.start()
    w.run([0, 1, 2, 1800][state] * S)
    for payload in replies:
        buf = bytearray(payload)
        for at, value in flips:
            if at < len(buf):
                buf[at] = value
        c.receive(bytes(buf), w.now)
    c.handle_timer(w.now + 4000 * S)


# --- several servers (RFC 2131 4.4.1: the client may wait for several offers) --------------------------


def two_servers(lease_a=600, lease_b=7200):
    a = server(lease_time=lease_a)
    b = server(server_id=SERVER2, pool_start=A("192.168.0.20"), pool_end=A("192.168.0.29"),
               lease_time=lease_b)
    return a, b


def test_first_offer_is_taken_by_default():
    c = client()
    a, b = two_servers()
    w = Wire(c, a, b)
    w.start()
    first, selected, bound = bound_events(A("192.168.0.10"), lease=600)
    # b's offer comes in once the client is REQUESTING from a
    assert strip_options(c.events()) == [first, selected, Dropped(0, ClientDrop.UNEXPECTED, SERVER2), bound]
    assert OfferWithdrawn(0, A("192.168.0.20"), MAC) in w.server_events


def test_best_offer_after_the_window_is_the_longest_lease():
    c = client(offer_wait=2.0, offer_choice="best")
    a, b = two_servers()
    w = Wire(c, a, b)
    w.start()
    w.run(3 * S)
    assert strip_options(c.events()) == [
        OfferReceived(0, SERVER, A("192.168.0.10"), 600), OfferReceived(0, SERVER2, A("192.168.0.20"), 7200),
        OfferSelected(2 * S, SERVER2, A("192.168.0.20"), 2),
        Bound(2 * S, A("192.168.0.20"), SERVER2, 7200, None)]
    # the other server saw the DHCPREQUEST for someone else and withdrew its offer (RFC 2131 4.3.2)
    assert OfferWithdrawn(2 * S, A("192.168.0.10"), MAC) in w.server_events
    assert w.kinds() == [(0, "DISCOVER", BCAST), (2, "REQUEST", BCAST)]


# --- renewing, rebinding, expiry (RFC 2131 4.4.5) ------------------------------------------------------


def test_renew_at_t1_is_unicast_to_the_leasing_server():
    c, srv = client(), server()
    w = Wire(c, srv)
    w.start()
    c.events()
    w.run(1800 * S)
    assert strip_options(c.events()) == [Renewed(1800 * S, A("192.168.0.10"), SERVER, 3600, None, False)]
    t, renew = w.sent[-1]
    m = DhcpMessage.decode(renew.payload)
    assert (t, renew.src_ip, renew.dst_ip, renew.dst_mac) == (1800 * S, A("192.168.0.10"), SERVER, None)
    assert (m.message_type, m.ciaddr, m.requested_ip, m.server_id) == (3, A("192.168.0.10"), None, None)
    assert c.state is State.BOUND and c.lease.t1 == (1800 + 1800) * S


def test_silent_server_renew_retransmits_then_rebinds_at_t2_then_the_lease_expires():
    c, srv = client(), server()
    w = Wire(c, srv)
    w.start()
    c.events()
    w.up[id(srv)] = False
    w.run(3600 * S)
    # RENEWING: half the time left to T2, at least 60 s; REBINDING: half the time left to expiry
    assert w.kinds()[2:] == [
        (1800, "REQUEST", SERVER), (2475, "REQUEST", SERVER), (2812.5, "REQUEST", SERVER),
        (2981.25, "REQUEST", SERVER), (3065.625, "REQUEST", SERVER), (3125.625, "REQUEST", SERVER),
        (3150, "REQUEST", BCAST), (3375, "REQUEST", BCAST), (3487.5, "REQUEST", BCAST),
        (3547.5, "REQUEST", BCAST), (3600, "DISCOVER", BCAST)]
    assert c.events() == [LeaseExpired(3600 * S, A("192.168.0.10"))]
    assert c.state is State.SELECTING and c.lease is None


def test_rebinding_reaches_any_server_by_broadcast():
    c, srv = client(), server()
    w = Wire(c, srv)
    w.start()
    c.events()
    w.unicast_up = False  # the leasing server cannot be reached by unicast
    w.run(3150 * S)
    assert strip_options(c.events()) == [Renewed(3150 * S, A("192.168.0.10"), SERVER, 3600, None, True)]
    assert c.state is State.BOUND and c.lease.expiry == (3150 + 3600) * S


def test_t1_equal_to_t2_goes_straight_to_rebinding():
    c, srv = client(), server(renewal_time=3000, rebinding_time=3000)
    w = Wire(c, srv)
    w.start()
    w.run(3000 * S)
    assert w.kinds()[2:] == [(3000, "REQUEST", BCAST)]


# --- DHCPNAK (RFC 2131 3.2, 4.4.1, 4.4.5) ----------------------------------------------------------------


def test_nak_in_rebooting_goes_back_to_init_and_discovers():
    c, srv = client(), server()
    w = Wire(c, srv)
    w.start(address=A("10.9.9.9"))  # remembered from another network
    ev = strip_options(c.events())
    assert ev == [Nak(0, SERVER, State.REBOOTING, b"wrong network")] + bound_events(A("192.168.0.10"))
    r = DhcpMessage.decode(w.sent[0][1].payload)
    assert (r.message_type, r.requested_ip, r.server_id, r.ciaddr) == (3, A("10.9.9.9"), None, ZERO)


def test_init_reboot_with_a_known_lease_is_acked():
    srv = server()
    w = Wire(client(), srv)
    w.start()
    c2 = client()
    w2 = Wire(c2, srv)
    w2.now = 10 * S
    w2.start(address=A("192.168.0.10"))
    assert strip_options(c2.events()) == [Bound(10 * S, A("192.168.0.10"), SERVER, 3600, None)]


def test_nak_in_renewing_halts_and_restarts():
    c, srv = client(), server()
    w = Wire(c, srv)
    w.start()
    c.events()
    w.servers = [server()]  # the server lost its leases: authoritative, it NAKs
    w.up[id(w.servers[0])] = True
    w.run(1800 * S)
    ev = strip_options(c.events())
    assert ev == [Nak(1800 * S, SERVER, State.RENEWING, b"no record of this lease")] + bound_events(
        A("192.168.0.10"), at=1800 * S)


def test_repeated_naks_back_off_1_2_4_seconds_up_to_the_maximum():
    # draft 2.1.1: a rogue server NAKing every request; the client must not spin
    c, srv = client(nak_backoff_max=4), server()
    w = Wire(c, srv)

    def nak_every_ack(payload):
        m = DhcpMessage.decode(payload)
        if m.message_type != 5:
            return payload
        return replace(m, yiaddr=ZERO, options=(DhcpMessageType(6), ServerIdentifier(SERVER))).encode()

    w.tap = nak_every_ack
    w.start()
    w.run(20 * S)
    naks = [e.time / S for e in c.events() if isinstance(e, Nak)]
    assert naks == [0, 0, 1, 3, 7, 11, 15, 19]  # at once, then 1, 2, 4, 4, ... s later


def test_a_very_short_lease_is_held_for_the_minimum():
    c, srv = client(), server(lease_time=2, renewal_time=1, rebinding_time=2)
    w = Wire(c, srv)
    w.start()
    assert (c.lease.t1, c.lease.t2, c.lease.expiry) == (10 * S, 17 * S, 20 * S)


def test_a_forged_nak_while_bound_is_dropped():
    # draft 2.1.1: a rogue DHCPNAK only works while the client waits for an answer
    c, srv = client(), server()
    w = Wire(c, srv)
    w.start()
    c.events()
    nak = DhcpMessage(op=2, xid=c.xid, chaddr=MAC, options=(DhcpMessageType(6), ServerIdentifier(SERVER)))
    c.receive(nak.encode(), S)
    assert c.events() == [Dropped(S, ClientDrop.UNEXPECTED, SERVER)] and c.state is State.BOUND


# --- DECLINE and RELEASE (RFC 2131 3.1, 4.4.4, 4.4.6) ----------------------------------------------------


def test_address_in_use_declines_and_restarts_after_ten_seconds():
    c, srv = client(), server()
    w = Wire(c, srv)
    w.start()
    c.events()
    c.address_in_use(S)
    w.now = S
    w.flush()
    assert c.events() == [Declined(S, A("192.168.0.10"), SERVER)] and c.state is State.INIT
    _, dg = w.sent[-1]
    m = DhcpMessage.decode(dg.payload)
    assert (dg.dst_ip, m.message_type, m.requested_ip, m.server_id, m.ciaddr, m.secs) == (
        BCAST, 4, A("192.168.0.10"), SERVER, ZERO, 0)
    assert LeaseDeclined(S, A("192.168.0.10"), MAC, S + 86400 * S) in w.server_events
    w.run(11 * S)
    assert strip_options(c.events()) == bound_events(A("192.168.0.11"), at=11 * S)


def test_release_gives_the_address_back_and_stops():
    c, srv = client(), server()
    w = Wire(c, srv)
    w.start()
    c.events()
    c.release(5 * S)
    w.now = 5 * S
    w.flush()
    assert c.events() == [Released(5 * S, A("192.168.0.10"), SERVER)]
    assert LeaseReleased(5 * S, A("192.168.0.10"), MAC) in w.server_events
    assert w.sent[-1][1].dst_ip == SERVER and c.next_timer() is None and c.state is State.INIT


# --- authentication (RFC 3118; draft 2.1.1, 2.2, 2.4, 3.3, 4.2) ------------------------------------------


def auth_client(**changes) -> DhcpClient:
    return client(replace(EXACT, auth_keys=KEYS, require_server_auth=True, **changes))


def auth_server(paradigm="client-authenticates-server", protocol=1, **changes) -> DhcpServer:
    return server(auth_paradigm=paradigm, auth_protocol=protocol, auth_keys=KEYS, **changes)


def test_required_auth_refuses_an_unauthenticated_server_and_ignores_it_for_a_while():
    c, srv = auth_client(ignore_failed_server=30), server()
    w = Wire(c, srv)
    w.start()
    w.run(60 * S)
    assert c.events() == [
        Dropped(0, ClientDrop.AUTH_MISSING, SERVER),
        ServerIgnored(0, SERVER, ClientDrop.AUTH_MISSING, 30 * S),
        Dropped(4 * S, ClientDrop.IGNORED, SERVER), Dropped(12 * S, ClientDrop.IGNORED, SERVER),
        Dropped(28 * S, ClientDrop.IGNORED, SERVER),
        Dropped(60 * S, ClientDrop.AUTH_MISSING, SERVER),
        ServerIgnored(60 * S, SERVER, ClientDrop.AUTH_MISSING, 90 * S)]
    assert c.state is State.SELECTING and c.ignored_servers(60 * S) == {SERVER: 90 * S}


def test_a_tampered_offer_fails_the_hmac_and_its_server_is_ignored_until_the_period_ends():
    c, srv = auth_client(ignore_failed_server=30), auth_server()
    w = Wire(c, srv)
    seen = []

    def tamper_first(payload):  # draft 2.4: an on-path modification of the first OFFER
        seen.append(payload)
        if len(seen) == 1:
            m = DhcpMessage.decode(payload)
            if m.message_type == 2:  # yiaddr rewritten
                return payload[:16] + A("192.168.0.66").packed + payload[20:]
        return payload

    w.tap = tamper_first
    w.start()
    w.run(60 * S)
    ev = strip_options(c.events())
    assert ev[:5] == [
        Dropped(0, ClientDrop.AUTH_BAD_HMAC, SERVER),
        ServerIgnored(0, SERVER, ClientDrop.AUTH_BAD_HMAC, 30 * S),
        Dropped(4 * S, ClientDrop.IGNORED, SERVER), Dropped(12 * S, ClientDrop.IGNORED, SERVER),
        Dropped(28 * S, ClientDrop.IGNORED, SERVER)]
    assert ev[5:] == bound_events(A("192.168.0.10"), at=60 * S)


def test_without_ignoring_a_failing_message_is_only_dropped():
    c, srv = auth_client(), server()
    w = Wire(c, srv)
    w.start()
    w.run(4 * S)
    assert c.events() == [Dropped(0, ClientDrop.AUTH_MISSING, SERVER),
                          Dropped(4 * S, ClientDrop.AUTH_MISSING, SERVER)]


def test_a_tampered_ack_turned_nak_is_refused():
    # draft 2.4: rewriting the message type of a signed ACK breaks its MAC
    c, srv = auth_client(), auth_server()
    w = Wire(c, srv)

    def ack_to_nak(payload):
        m = DhcpMessage.decode(payload)
        if m.message_type == 5:
            i = payload.index(bytes((53, 1, 5)))
            return payload[:i + 2] + b"\x06" + payload[i + 3:]
        return payload

    w.tap = ack_to_nak
    w.start()
    ev = c.events()
    assert ev[-1] == Dropped(0, ClientDrop.AUTH_BAD_HMAC, SERVER) and c.state is State.REQUESTING


def test_mutual_authentication_protocol_1_end_to_end():
    c = auth_client(authenticate_to_server=True)
    srv = auth_server("mutual")
    w = Wire(c, srv)
    w.start()
    assert strip_options(c.events()) == bound_events(A("192.168.0.10"))
    discover, request = (DhcpMessage.decode(dg.payload) for _, dg in w.sent)
    # RFC 3118 5.4: the DISCOVER asks for delayed authentication; the REQUEST is signed
    assert discover.authentication == Authentication(1, 1, 0, 1)
    assert request.authentication.secret_id == 0x11 and request.authentication.replay == 2
    assert not any(e.__class__.__name__ == "Dropped" for e in w.server_events)
    # the lease goes on: the renewal is signed and verified both ways
    w.run(1800 * S)
    assert [type(e) for e in c.events()] == [Renewed]


def test_mutual_authentication_a_client_without_the_key_gets_nothing():
    c = client(replace(EXACT, auth_keys=(AuthKey(0x11, b"wrong key"),), require_server_auth=True,
                       authenticate_to_server=True))
    srv = auth_server("mutual")
    w = Wire(c, srv)
    w.start()
    # the OFFER's MAC is made with the server's key: the client refuses it
    assert c.events() == [Dropped(0, ClientDrop.AUTH_BAD_HMAC, SERVER)]


def test_a_replayed_server_message_is_rejected():
    c, srv = auth_client(offer_wait=5.0), auth_server()
    w = Wire(c, srv)
    offers = []
    w.tap = lambda p: offers.append(p) or p
    w.start()
    c.receive(offers[0], S)  # the same OFFER again: its replay detection value is not new
    assert c.events() == [OfferReceived(0, SERVER, A("192.168.0.10"), 3600),
                          Dropped(S, ClientDrop.AUTH_REPLAY, SERVER)]


def test_without_authentication_a_replayed_offer_counts_again():
    c, srv = client(offer_wait=5.0), server()
    w = Wire(c, srv)
    offers = []
    w.tap = lambda p: offers.append(p) or p
    w.start()
    c.receive(offers[0], S)
    assert [type(e) for e in c.events()] == [OfferReceived, OfferReceived]


def test_configuration_token_protocol_0_both_ways():
    token = (AuthKey(0, b"open sesame"),)
    c = client(replace(EXACT, auth_protocol=0, auth_keys=token, require_server_auth=True,
                       authenticate_to_server=True))
    srv = server(auth_paradigm="mutual", auth_protocol=0, auth_keys=token)
    w = Wire(c, srv)
    w.start()
    assert [type(e) for e in c.events()] == [OfferReceived, OfferSelected, Bound]
    discover = DhcpMessage.decode(w.sent[0][1].payload)
    assert discover.authentication == Authentication(0, 0, 0, 1, b"open sesame")
    # a server with another token is refused
    c2 = client(replace(EXACT, auth_protocol=0, auth_keys=token, require_server_auth=True))
    Wire(c2, server(auth_paradigm="client-authenticates-server", auth_protocol=0, auth_keys=token,
                    auth_token=b"guess")).start()
    assert c2.events() == [Dropped(0, ClientDrop.AUTH_BAD_TOKEN, SERVER)]


def test_wrong_protocol_and_unknown_key_are_named():
    c = auth_client()
    Wire(c, auth_server(protocol=0)).start()
    assert c.events() == [Dropped(0, ClientDrop.AUTH_WRONG_PROTOCOL, SERVER)]
    c = auth_client()
    Wire(c, server(auth_paradigm="client-authenticates-server", auth_keys=(AuthKey(0x99, KEY),))).start()
    assert c.events() == [Dropped(0, ClientDrop.AUTH_UNKNOWN_KEY, SERVER)]


# --- configuration ------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, name", [
    (dict(offer_choice="random"), "offer_choice"),
    (dict(require_server_auth=True), "auth_keys"),
    (dict(auth_protocol=3), "auth_protocol"),
    (dict(rtx_max=2), "rtx_max"),
    (dict(offer_wait=-1), "offer_wait"),
    (dict(request_retries=-1), "request_retries"),
    (dict(max_message_size=100), "max_message_size"),
])
def test_bad_configuration_names_the_parameter(change, name):
    with pytest.raises(ParamError, match=name):
        DhcpClientConfig(**change)


def test_bad_chaddr_and_client_id():
    with pytest.raises(ParamError, match="chaddr"):
        DhcpClient(EXACT, random.Random(), b"")
    with pytest.raises(ParamError, match="client_id"):
        DhcpClient(EXACT, random.Random(), MAC, b"\x01")


def test_client_identifier_is_sent_and_keys_the_lease():
    c = DhcpClient(EXACT, random.Random(7), MAC, b"\x01" + MAC)
    srv = server()
    Wire(c, srv).start()
    assert srv.leases.get(A("192.168.0.10")).client_key == b"i\x01" + MAC == c.client_key
