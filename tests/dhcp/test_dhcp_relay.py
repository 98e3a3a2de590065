"""The DHCP relay agent (RFC 1542 4, RFC 3046): what it does to each message in each direction,
byte for byte, and an altering relay built as a subclass (draft-ietf-dhc-v4-threat-analysis 2.2, 2.4)."""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address as A

import pytest

from threatlab.dhcp.auth import AuthKey
from threatlab.dhcp.client import Bound, ClientDrop, DhcpClient, DhcpClientConfig, Dropped
from threatlab.dhcp.events import Datagram, LeaseBound
from threatlab.dhcp.leases import LeaseStore
from threatlab.dhcp.relay import (
    DhcpRelay,
    DhcpRelayConfig,
    RelayDrop,
    RelayDropped,
    Relayed,
    RelayInterface,
    strip_relay_agent_information,
)
from threatlab.dhcp.server import DhcpServer, DhcpServerConfig
from threatlab.dhcp.wire import (
    BROADCAST_FLAG,
    CircuitId,
    ClientIdentifier,
    DhcpMessage,
    DhcpMessageType,
    RelayAgentInformation,
    RemoteId,
    Routers,
    ServerIdentifier,
)
from threatlab.errors import ParamError

S = 1_000_000_000
GIADDR = A("10.0.1.1")
SERVER = A("10.0.0.1")
SERVER2 = A("10.0.0.2")
BCAST = A("255.255.255.255")
ZERO = A("0.0.0.0")
MAC = bytes.fromhex("020000000001")
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
RAI = RelayAgentInformation((CircuitId(b"port7"), RemoteId(b"sw1")))

CONFIG = DhcpRelayConfig(interfaces=(RelayInterface("eth0", GIADDR, b"port7", b"sw1"),), servers=(SERVER,))
SERVER_CONFIG = DhcpServerConfig(server_id=SERVER, pool_start=A("10.0.1.100"), pool_end=A("10.0.1.109"),
                                 subnet_mask=A("255.255.0.0"), routers=(GIADDR,))


def discover(**fields) -> DhcpMessage:
    m = DhcpMessage(xid=0x42, chaddr=MAC, options=(DhcpMessageType(1), ClientIdentifier(1, MAC)), **fields)
    return replace(m, padding=300 - len(m.encode()))


def only(out):
    assert len(out) == 1, out
    return out[0]


# --- client to server (RFC 1542 4.1.1, RFC 3046 2.1) --------------------------------------------------


def test_request_gets_giaddr_a_hop_and_option_82_appended_before_end():
    relay = DhcpRelay(CONFIG)
    data = discover().encode()
    dg = only(relay.receive(data, 0, interface="eth0"))
    assert (dg.src_ip, dg.dst_ip, dg.src_port, dg.dst_port, dg.dst_mac) == (ZERO, SERVER, 67, 67, None)
    # exactly: hops 1, giaddr, and the option TLV inserted where END was
    end = data.index(b"\xff", 240)
    tlv = bytes((82, 12)) + b"\x01\x05port7\x02\x03sw1"
    expected = bytearray(data[:end] + tlv + data[end:])
    expected[3] = 1
    expected[24:28] = GIADDR.packed
    assert dg.payload == bytes(expected)
    m = DhcpMessage.decode(dg.payload)
    assert (m.hops, m.giaddr, m.relay_agent_information) == (1, GIADDR, RAI)
    assert relay.events() == [Relayed(0, True, 0x42, MAC, "eth0")]


def test_request_is_sent_to_every_configured_server():
    relay = DhcpRelay(replace(CONFIG, servers=(SERVER, SERVER2)))
    out = relay.receive(discover().encode(), 0, interface="eth0")
    assert [d.dst_ip for d in out] == [SERVER, SERVER2] and out[0].payload == out[1].payload


def test_default_circuit_id_is_the_interface_name_and_option_82_can_be_off():
    relay = DhcpRelay(replace(CONFIG, interfaces=(RelayInterface("eth0", GIADDR),)))
    m = DhcpMessage.decode(only(relay.receive(discover().encode(), 0, interface="eth0")).payload)
    assert m.relay_agent_information == RelayAgentInformation((CircuitId(b"eth0"),))
    relay = DhcpRelay(replace(CONFIG, add_agent_information=False))
    m = DhcpMessage.decode(only(relay.receive(discover().encode(), 0, interface="eth0")).payload)
    assert m.relay_agent_information is None and m.giaddr == GIADDR


def test_a_request_from_another_relay_keeps_its_giaddr_and_gets_no_second_option_82():
    relay = DhcpRelay(CONFIG)
    other = A("10.0.7.1")
    data = discover(giaddr=other, hops=2).encode()
    dg = only(relay.receive(data, 0, interface="eth1"))
    assert dg.payload == data[:3] + b"\x03" + data[4:]


def test_hop_limit_rfc_1542_discards_a_request_whose_hops_exceed_the_maximum():
    relay = DhcpRelay(CONFIG)
    forwarded = only(relay.receive(discover(hops=16).encode(), 0, interface="eth0"))
    assert DhcpMessage.decode(forwarded.payload).hops == 17
    assert relay.receive(discover(hops=17).encode(), 0, interface="eth0") == []
    strict = DhcpRelay(replace(CONFIG, max_hops=2))
    assert strict.receive(discover(hops=3).encode(), 0, interface="eth0") == []
    assert len(strict.receive(discover(hops=2).encode(), 0, interface="eth0")) == 1
    assert relay.drops[RelayDrop.HOP_LIMIT] == 1 and strict.drops[RelayDrop.HOP_LIMIT] == 1


def test_option_82_from_a_client_on_an_untrusted_circuit_is_dropped_on_a_trusted_one_kept():
    # RFC 3046 2.1: giaddr 0 with option 82 means a client forged it (to pick its circuit)
    forged = RelayAgentInformation((CircuitId(b"port1"),))
    data = discover().with_options(forged).encode()
    relay = DhcpRelay(CONFIG)
    assert relay.receive(data, 0, interface="eth0") == []
    assert relay.events() == [RelayDropped(0, RelayDrop.UNTRUSTED_AGENT_INFO)]
    trusting = DhcpRelay(replace(CONFIG, interfaces=(replace(CONFIG.interfaces[0], trusted=True),)))
    m = DhcpMessage.decode(only(trusting.receive(data, 0, interface="eth0")).payload)
    assert m.relay_agent_information == forged and m.giaddr == GIADDR


def test_a_request_on_an_unknown_interface_and_malformed_input_are_dropped():
    relay = DhcpRelay(CONFIG)
    assert relay.receive(discover().encode(), 0, interface="eth9") == []
    assert relay.receive(b"\x01\x01", 0, interface="eth0") == []
    assert [e.reason for e in relay.events()] == [RelayDrop.UNKNOWN_INTERFACE, RelayDrop.MALFORMED]


# --- server to client (RFC 1542 4.1.2, RFC 3046 2.2) --------------------------------------------------


def serve(srv: DhcpServer, relay: DhcpRelay, request: bytes, now=0) -> tuple[Datagram, Datagram]:
    """The request through the relay to the server, and the reply back: (server's, relay's)."""
    up = only(relay.receive(request, now, interface="eth0"))
    back = only(srv.receive(up.payload, now, src_ip=GIADDR))
    return back, only(relay.receive(back.payload, now, src_ip=back.src_ip))


def test_reply_has_option_82_removed_byte_for_byte_and_goes_unicast_to_yiaddr_at_chaddr():
    srv = DhcpServer(SERVER_CONFIG, LeaseStore(), random.Random(1))
    relay = DhcpRelay(CONFIG)
    back, down = serve(srv, relay, discover().encode())
    assert back.dst_ip == GIADDR and DhcpMessage.decode(back.payload).relay_agent_information == RAI
    tlv = bytes((82, 12)) + b"\x01\x05port7\x02\x03sw1"
    assert down.payload == back.payload.replace(tlv, b"")
    assert (down.src_ip, down.dst_ip, down.src_port, down.dst_port, down.dst_mac, down.interface) == (
        GIADDR, A("10.0.1.100"), 67, 68, MAC, "eth0")


def test_reply_with_the_broadcast_flag_or_without_yiaddr_is_broadcast():
    srv = DhcpServer(SERVER_CONFIG, LeaseStore(), random.Random(1))
    relay = DhcpRelay(CONFIG)
    _, down = serve(srv, relay, discover(flags=BROADCAST_FLAG).encode())
    assert (down.dst_ip, down.dst_mac) == (BCAST, b"\xff" * 6)
    # a DHCPNAK (the server sets the broadcast bit for a relayed one, RFC 2131 4.3.2)
    req = DhcpMessage(xid=7, chaddr=MAC, options=(DhcpMessageType(3), ServerIdentifier(SERVER)))
    _, down = serve(srv, relay, req.encode())
    assert DhcpMessage.decode(down.payload).message_type == 6 and down.dst_ip == BCAST


def test_reply_for_another_relay_or_from_a_stranger_is_dropped():
    srv = DhcpServer(SERVER_CONFIG, LeaseStore(), random.Random(1))
    back, _ = serve(srv, DhcpRelay(CONFIG), discover().encode())
    m = DhcpMessage.decode(back.payload)
    relay = DhcpRelay(replace(CONFIG, reply_source_check=True))
    assert relay.receive(replace(m, giaddr=A("10.0.9.1")).encode(), 0, src_ip=SERVER) == []
    assert relay.receive(back.payload, 0, src_ip=A("10.0.1.66")) == []  # draft 2.1.1: a rogue "server"
    assert [e.reason for e in relay.events()] == [RelayDrop.NOT_OUR_GIADDR, RelayDrop.NOT_FROM_SERVER]
    assert len(relay.receive(back.payload, 0, src_ip=SERVER)) == 1


def test_strip_relay_agent_information_leaves_other_messages_alone():
    data = discover().encode()
    assert strip_relay_agent_information(data) == data


def test_config_errors_name_the_parameter():
    with pytest.raises(ParamError, match="max_hops"):
        replace(CONFIG, max_hops=17)
    with pytest.raises(ParamError, match="servers"):
        replace(CONFIG, servers=())
    with pytest.raises(ParamError, match="interfaces"):
        replace(CONFIG, interfaces=())


# --- a client, the relay and the server ---------------------------------------------------------------


class Path:
    """client <-> relay <-> server in memory."""

    def __init__(self, client: DhcpClient, relay: DhcpRelay, srv: DhcpServer) -> None:
        self.client, self.relay, self.srv = client, relay, srv

    def run(self, now=0) -> None:
        while out := self.client.datagrams_to_send(now):
            for dg in out:
                for up in self.relay.receive(dg.payload, now, interface="eth0", src_ip=dg.src_ip):
                    for back in self.srv.receive(up.payload, now, src_ip=GIADDR):
                        for down in self.relay.receive(back.payload, now, src_ip=back.src_ip):
                            self.client.receive(down.payload, now)


def test_a_client_gets_a_lease_through_the_relay_and_the_server_sees_its_circuit():
    c = DhcpClient(DhcpClientConfig(), random.Random(7), MAC)
    srv = DhcpServer(replace(SERVER_CONFIG, per_circuit_lease_limit=1), LeaseStore(), random.Random(1))
    relay = DhcpRelay(CONFIG)
    c.start(0)
    Path(c, relay, srv).run()
    assert [type(e) for e in c.events()][-1] is Bound and c.address == A("10.0.1.100")
    assert srv.leases.get(A("10.0.1.100")).circuit == GIADDR.packed + b"port7"
    # a second client on the same circuit hits the per-circuit limit (draft 2.1.3)
    c2 = DhcpClient(DhcpClientConfig(), random.Random(8), bytes.fromhex("020000000002"))
    c2.start(0)
    Path(c2, relay, srv).run()
    assert c2.state.name == "SELECTING"


def test_mutual_authentication_survives_the_relay():
    keys = (AuthKey(0x11, KEY),)
    c = DhcpClient(DhcpClientConfig(auth_keys=keys, require_server_auth=True, authenticate_to_server=True),
                   random.Random(7), MAC)
    srv = DhcpServer(replace(SERVER_CONFIG, auth_paradigm="mutual", auth_keys=keys), LeaseStore(),
                     random.Random(1))
    c.start(0)
    Path(c, DhcpRelay(CONFIG), srv).run()
    assert isinstance(c.events()[-1], Bound)
    assert [type(e) for e in srv.events()][-1] is LeaseBound


# --- the altering relay of draft 2.2 / 2.4, built by overriding one method ----------------------------


class RogueRouterRelay(DhcpRelay):
    """Rewrites the router option of every reply: the client's traffic goes to the attacker."""

    def alter_to_client(self, message: DhcpMessage) -> DhcpMessage | None:
        if message.get(3) is None:
            return message
        return message.with_options(Routers((A("10.0.1.66"),)))


class SwallowingRelay(DhcpRelay):
    def alter_to_server(self, message: DhcpMessage) -> DhcpMessage | None:
        return None


def test_an_altering_relay_misconfigures_a_client_without_authentication():
    c = DhcpClient(DhcpClientConfig(), random.Random(7), MAC)
    srv = DhcpServer(SERVER_CONFIG, LeaseStore(), random.Random(1))
    relay = RogueRouterRelay(CONFIG)
    c.start(0)
    Path(c, relay, srv).run()
    assert isinstance(c.events()[-1], Bound)
    assert c.lease.routers == (A("10.0.1.66"),) and relay.counters["altered"] == 2


def test_server_authentication_defeats_the_altering_relay():
    keys = (AuthKey(0x11, KEY),)
    c = DhcpClient(DhcpClientConfig(auth_keys=keys, require_server_auth=True), random.Random(7), MAC)
    srv = DhcpServer(replace(SERVER_CONFIG, auth_paradigm="client-authenticates-server", auth_keys=keys),
                     LeaseStore(), random.Random(1))
    c.start(0)
    Path(c, RogueRouterRelay(CONFIG), srv).run()
    assert c.events() == [Dropped(0, ClientDrop.AUTH_BAD_HMAC, SERVER)] and c.lease is None


def test_a_relay_that_deletes_requests():
    relay = SwallowingRelay(CONFIG)
    assert relay.receive(discover().encode(), 0, interface="eth0") == []
    assert relay.drops == {RelayDrop.ALTERED_AWAY: 1}
