"""The DHCPv4 codec: known answers from a real capture, RFC 3396 / overload / option 82 / option 90,
every malformed input a DecodeError, round trips, and scapy and tshark reading our bytes."""

from __future__ import annotations

import shutil
import struct
import subprocess
from ipaddress import IPv4Address as A

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threatlab.dhcp.wire import (
    Authentication,
    CircuitId,
    ClientIdentifier,
    DhcpMessage,
    DhcpMessageType,
    DomainName,
    DomainNameServers,
    HostName,
    IpAddressLeaseTime,
    MaximumMessageSize,
    Message,
    MessageType,
    ParameterRequestList,
    RawOption,
    RawSubOption,
    RebindingTime,
    RelayAgentInformation,
    RemoteId,
    RenewalTime,
    RequestedIpAddress,
    Routers,
    ServerIdentifier,
    SubnetMask,
    option_spans,
)
from threatlab.errors import DecodeError

MAC = bytes.fromhex("000b8201fc42")

# The DISCOVER and the ACK of Wireshark's sample capture dhcp.pcap (wiki.wireshark.org/SampleCaptures),
# UDP payloads. The BOOTP header is written out field by field.
DISCOVER_HEX = (
    "01" "01" "06" "00" "00003d1d" "0000" "0000"  # op htype hlen hops xid secs flags
    + "00000000" * 4  # ciaddr yiaddr siaddr giaddr
    + "000b8201fc42" + "00" * 10  # chaddr
    + "00" * 64 + "00" * 128  # sname file
    + "63825363"
    + "350101"  # 53 DISCOVER
    + "3d0701000b8201fc42"  # 61 client id, type 1
    + "320400000000"  # 50 requested 0.0.0.0
    + "37040103062a"  # 55 PRL 1 3 6 42
    + "ff" + "00" * 7
)
ACK_HEX = (
    "02" "01" "06" "00" "00003d1e" "0000" "0000"
    + "00000000" + "c0a8000a" + "00000000" + "00000000"  # ciaddr yiaddr=192.168.0.10 siaddr giaddr
    + "000b8201fc42" + "00" * 10
    + "00" * 64 + "00" * 128
    + "63825363"
    + "350105"  # 53 ACK
    + "3a0400000708"  # 58 T1 1800
    + "3b0400000c4e"  # 59 T2 3150
    + "330400000e10"  # 51 lease 3600
    + "3604c0a80001"  # 54 server id 192.168.0.1
    + "0104ffffff00"  # 1 mask
    + "ff" + "00" * 26
)
# The same payloads as they appear in the capture, unedited.
DISCOVER_CAPTURED = (
    "0101060000003d1d0000000000000000000000000000000000000000000b8201fc42" + "00" * 202
    + "638253633501013d0701000b8201fc4232040000000037040103062aff00000000000000"
)
ACK_CAPTURED = (
    "0201060000003d1e0000000000000000c0a8000a0000000000000000000b8201fc42" + "00" * 202
    + "638253633501053a04000007083b0400000c4e330400000e103604c0a800010104ffffff00ff" + "00" * 26
)


def test_known_answer_hex_tables_are_the_captured_bytes():
    assert DISCOVER_HEX == DISCOVER_CAPTURED
    assert ACK_HEX == ACK_CAPTURED


def test_real_discover_decodes_field_by_field_and_encodes_back_byte_exact():
    data = bytes.fromhex(DISCOVER_HEX)
    m = DhcpMessage.decode(data)
    assert m == DhcpMessage(
        op=1, htype=1, hlen=6, hops=0, xid=0x3D1D, secs=0, flags=0, chaddr=MAC,
        options=(
            DhcpMessageType(1), ClientIdentifier(1, MAC), RequestedIpAddress(A("0.0.0.0")),
            ParameterRequestList((1, 3, 6, 42)),
        ),
        padding=7,
    )
    assert m.message_type is MessageType.DISCOVER
    assert m.client_id == ClientIdentifier(1, MAC)
    assert m.requested_ip == A("0.0.0.0")
    assert m.parameter_request_list == (1, 3, 6, 42)
    assert m.mac == MAC and not m.broadcast
    assert m.encode() == data


def test_real_ack_decodes_field_by_field_and_encodes_back_byte_exact():
    data = bytes.fromhex(ACK_HEX)
    m = DhcpMessage.decode(data)
    assert m == DhcpMessage(
        op=2, xid=0x3D1E, yiaddr=A("192.168.0.10"), chaddr=MAC,
        options=(
            DhcpMessageType(5), RenewalTime(1800), RebindingTime(3150), IpAddressLeaseTime(3600),
            ServerIdentifier(A("192.168.0.1")), SubnetMask(A("255.255.255.0")),
        ),
        padding=26,
    )
    assert (m.message_type, m.lease_time, m.renewal_time, m.rebinding_time, m.server_id) == (
        MessageType.ACK, 3600, 1800, 3150, A("192.168.0.1"))
    assert m.encode() == data


OPTION_TABLE = [
    # (option, value bytes on the wire)
    (SubnetMask(A("255.255.255.0")), "0104ffffff00"),
    (Routers((A("10.0.0.1"), A("10.0.0.2"))), "03080a0000010a000002"),
    (DomainNameServers((A("9.9.9.9"),)), "060409090909"),
    (HostName(b"pc1"), "0c03706331"),
    (DomainName(b"example.org"), "0f0b6578616d706c652e6f7267"),
    (RequestedIpAddress(A("192.168.0.10")), "3204c0a8000a"),
    (IpAddressLeaseTime(0xFFFFFFFF), "3304ffffffff"),
    (DhcpMessageType(8), "350108"),
    (ServerIdentifier(A("192.168.0.1")), "3604c0a80001"),
    (ParameterRequestList((1, 3, 6, 15, 90)), "3705010306 0f5a"),
    (Message(b"no"), "38026e6f"),
    (MaximumMessageSize(1500), "390205dc"),
    (RenewalTime(1800), "3a0400000708"),
    (RebindingTime(3150), "3b0400000c4e"),
    (ClientIdentifier(255, bytes.fromhex("0000000100")), "3d06ff0000000100"),
    (RelayAgentInformation((CircuitId(b"eth0/1"), RemoteId(b"\x01\x02"), RawSubOption(200, b""))),
     "520e 0106657468302f31 02020102 c800"),
    # RFC 3118 5.1 delayed: protocol 1, algorithm 1 (HMAC-MD5), RDM 0, replay, secret ID, HMAC
    (Authentication(1, 1, 0, 0x0102030405060708, bytes.fromhex("0000002a") + bytes(range(16))),
     "5a1f 01 01 00 0102030405060708 0000002a 000102030405060708090a0b0c0d0e0f"),
    # a DHCPDISCOVER asking for delayed authentication carries no authentication information
    (Authentication(1, 1, 0, 0), "5a0b 010100 0000000000000000"),
    # RFC 3118 4: configuration token
    (Authentication(0, 0, 0, 1, b"tok"), "5a0e 000000 0000000000000001 746f6b"),
    (RawOption(224, b"\x00\xff"), "e00200ff"),
    (RawOption(80, b""), "5000"),  # RFC 4039 rapid commit: an empty option
]


@pytest.mark.parametrize("option,wire", OPTION_TABLE, ids=lambda x: getattr(x, "code", None) and str(x.code))
def test_option_known_answers(option, wire):
    wire = bytes.fromhex(wire.replace(" ", ""))
    m = DhcpMessage(options=(option,))
    data = m.encode()
    assert data[240:] == wire + b"\xff"
    assert DhcpMessage.decode(data).options == (option,)


def test_authentication_fields_by_protocol():
    delayed = Authentication.delayed(42, 7, bytes(range(16)))
    assert (delayed.protocol, delayed.algorithm, delayed.rdm, delayed.replay) == (1, 1, 0, 7)
    assert (delayed.secret_id, delayed.mac, delayed.realm, delayed.token) == (42, bytes(range(16)), b"", None)
    realm = Authentication.delayed(42, 7, realm=b"example.org", protocol=2)
    assert (realm.realm, realm.secret_id, realm.mac) == (b"example.org", 42, bytes(16))
    token = Authentication(0, 0, 0, 1, b"secret")
    assert (token.token, token.secret_id, token.mac) == (b"secret", None, None)
    request = Authentication(1, 1, 0, 0)
    assert (request.secret_id, request.mac, request.realm) == (None, None, None)


def test_relay_agent_information_sub_options():
    rai = RelayAgentInformation((RemoteId(b"r"), CircuitId(b"c"), RawSubOption(9, b"v")))
    assert (rai.circuit_id, rai.remote_id) == (b"c", b"r")
    decoded = DhcpMessage.decode(DhcpMessage(options=(rai,)).encode()).relay_agent_information
    assert decoded == rai
    assert isinstance(decoded.suboptions[2], RawSubOption)


# --- RFC 3396 long options and option overload --------------------------------------------------------


def test_long_option_is_split_in_255_byte_instances_and_concatenated_on_decode():
    value = bytes(i % 251 for i in range(600))
    m = DhcpMessage(options=(DhcpMessageType(1), RawOption(224, value)))
    data = m.encode()
    spans = [s for s in option_spans(data) if s.code == 224]
    assert [s.length for s in spans] == [255, 255, 90]
    assert spans[1].at == spans[0].value_at + 255  # consecutive (RFC 3396 5)
    assert DhcpMessage.decode(data) == m


def test_instances_of_one_code_anywhere_are_concatenated():
    # RFC 3396 3: a router list sent as two instances, not adjacent
    opts = "3501 01" + "0304 0a000001" + "0c02 6869" + "0304 0a000002" + "ff"
    data = DhcpMessage().encode()[:240] + bytes.fromhex(opts.replace(" ", ""))
    m = DhcpMessage.decode(data)
    assert m.options == (DhcpMessageType(1), Routers((A("10.0.0.1"), A("10.0.0.2"))), HostName(b"hi"))


def test_overloaded_message_reads_options_field_then_file_then_sname():
    header = bytearray(DhcpMessage(xid=9, chaddr=MAC).encode()[:240])
    file = bytes.fromhex("0304 0a000002 0c03 616263 ff".replace(" ", ""))  # routers part 2, host name
    sname = bytes.fromhex("0304 0a000003 ff".replace(" ", ""))  # routers part 3
    header[108:108 + len(file)] = file
    header[44:44 + len(sname)] = sname
    opts = bytes.fromhex("3501 05 3401 03 0304 0a000001 ff".replace(" ", ""))
    m = DhcpMessage.decode(bytes(header) + opts)
    assert m.options == (
        DhcpMessageType(5), Routers((A("10.0.0.1"), A("10.0.0.2"), A("10.0.0.3"))), HostName(b"abc"))
    assert m.sname == bytes(64) and m.file == bytes(128)


def test_encode_overloads_into_file_and_sname_when_asked_for_a_small_message():
    many = tuple(RawOption(c, bytes([c]) * 40) for c in range(200, 211))  # 462 bytes of options
    m = DhcpMessage(op=2, xid=1, chaddr=MAC, options=(DhcpMessageType(2),) + many)
    assert len(m.encode()) > 576
    data = m.encode(max_size=576)
    assert len(data) <= 576
    spans = option_spans(data)
    assert spans[0].code == 52 and data[spans[0].value_at] == 3  # both file and sname used
    assert any(108 <= s.at < 236 for s in spans) and any(44 <= s.at < 108 for s in spans)
    assert DhcpMessage.decode(data) == m


def test_overload_keeps_a_boot_file_name_and_uses_only_sname():
    many = tuple(RawOption(c, bytes(40)) for c in range(200, 207))
    m = DhcpMessage(op=2, chaddr=MAC, file=b"pxelinux.0", options=(DhcpMessageType(2),) + many)
    data = m.encode(max_size=576)
    assert data[option_spans(data)[0].value_at] == 2
    assert DhcpMessage.decode(data) == m


def test_options_that_cannot_fit_even_overloaded_are_a_value_error():
    m = DhcpMessage(options=(RawOption(224, bytes(1000)),))
    with pytest.raises(ValueError):
        m.encode(max_size=576)


def test_without_max_size_nothing_is_overloaded_and_with_room_nothing_changes():
    m = DhcpMessage(options=(DhcpMessageType(1),), padding=3)
    assert m.encode(max_size=1500) == m.encode()


# --- malformed input: DecodeError("dhcp", field, offset, reason), nothing else -----------------------


def _msg(opts_hex: str, tail: str = "") -> bytes:
    return DhcpMessage().encode()[:240] + bytes.fromhex(opts_hex.replace(" ", "")) + bytes.fromhex(tail)


def _header(**fields) -> bytes:
    b = bytearray(DhcpMessage(options=(DhcpMessageType(1),)).encode())
    for offset, value in fields.values():
        b[offset:offset + len(value)] = value
    return bytes(b)


BAD = [
    ("empty", b"", "header", 0),
    ("short header", bytes(100), "header", 0),
    ("no cookie", DhcpMessage().encode()[:238], "magic cookie", 236),
    ("bad cookie", _header(c=(236, b"\x63\x82\x53\x64")), "magic cookie", 236),
    ("bad op", _header(op=(0, b"\x03")), "op", 0),
    ("hlen > 16", _header(hlen=(2, b"\x11")), "hlen", 2),
    ("no end", _msg("350101"), "options", 243),
    ("length past end", _msg("3505 01"), "option 53", 240),
    ("length byte missing", _msg("3501 01 0c"), "option 12", 243),
    ("non-zero after end", _msg("350101 ff", "0000ab"), "padding", 246),
    ("53 length 2", _msg("35020101 ff"), "option 53", 240),
    ("50 length 3", _msg("3203000000 ff"), "option 50", 240),
    ("3 length 6", _msg("0306000000000000 ff"), "option 3", 240),
    ("3 empty", _msg("0300 ff"), "option 3", 240),
    ("12 empty", _msg("0c00 ff"), "option 12", 240),
    ("55 empty", _msg("3700 ff"), "option 55", 240),
    ("57 length 4", _msg("390400000240 ff"), "option 57", 240),
    ("61 length 1", _msg("3d0101 ff"), "option 61", 240),
    ("82 sub-option truncated", _msg("5203 0105aa ff"), "option 82 sub-option 1", 240),
    ("82 sub-option header cut", _msg("5201 01 ff"), "option 82 sub-option", 240),
    ("90 shorter than 11", _msg("5a0a 00000000000000000000 ff"), "option 90", 240),
    ("90 delayed with 5 bytes of info", _msg("5a10 010100" + "00" * 8 + "0102030405 ff"), "option 90", 240),
    ("52 value 4", _msg("340104 ff"), "option 52", 240),
    ("52 length 2", _msg("34020101 ff"), "option 52", 240),
]


@pytest.mark.parametrize("name,data,field,offset", BAD, ids=[b[0] for b in BAD])
def test_malformed_input_is_a_decode_error_naming_field_and_offset(name, data, field, offset):
    with pytest.raises(DecodeError) as e:
        DhcpMessage.decode(data)
    assert (e.value.protocol, e.value.field, e.value.offset) == ("dhcp", field, offset)
    assert e.value.reason


def test_option_overload_inside_file_is_rejected():
    b = bytearray(_msg("340101 ff"))
    b[108:111] = bytes.fromhex("340102")
    with pytest.raises(DecodeError) as e:
        DhcpMessage.decode(bytes(b))
    assert (e.value.field, e.value.offset) == ("option 52", 108)


def test_option_running_past_the_file_field_is_rejected():
    b = bytearray(_msg("340101 ff"))
    b[230:233] = bytes.fromhex("e010aa")  # 16 bytes announced, 6 left in 'file'
    with pytest.raises(DecodeError) as e:
        DhcpMessage.decode(bytes(b))
    assert (e.value.field, e.value.offset) == ("option 224", 230)


# --- properties ---------------------------------------------------------------------------------------

addresses = st.builds(A, st.integers(0, 2**32 - 1))
u32 = st.integers(0, 2**32 - 1)
text = st.binary(min_size=1, max_size=300)
suboption = st.one_of(
    st.builds(CircuitId, st.binary(max_size=20)),
    st.builds(RemoteId, st.binary(max_size=20)),
    st.builds(RawSubOption, st.integers(3, 255), st.binary(max_size=20)),
)
typed_options = [
    st.builds(SubnetMask, addresses),
    st.builds(Routers, st.lists(addresses, min_size=1, max_size=70).map(tuple)),
    st.builds(DomainNameServers, st.lists(addresses, min_size=1, max_size=4).map(tuple)),
    st.builds(HostName, text),
    st.builds(DomainName, text),
    st.builds(RequestedIpAddress, addresses),
    st.builds(IpAddressLeaseTime, u32),
    st.builds(DhcpMessageType, st.integers(1, 8)),
    st.builds(ServerIdentifier, addresses),
    st.builds(ParameterRequestList, st.lists(st.integers(0, 255), min_size=1, max_size=300).map(tuple)),
    st.builds(Message, text),
    st.builds(MaximumMessageSize, st.integers(0, 65535)),
    st.builds(RenewalTime, u32),
    st.builds(RebindingTime, u32),
    st.builds(ClientIdentifier, st.integers(0, 255), st.binary(min_size=1, max_size=40)),
    st.builds(RelayAgentInformation, st.lists(suboption, max_size=5).map(tuple)),
    st.builds(Authentication, st.just(0), st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**64 - 1),
              st.binary(max_size=40)),
    st.builds(Authentication.delayed, u32, st.integers(0, 2**64 - 1), st.binary(min_size=16, max_size=16)),
    st.builds(Authentication, st.just(1), st.just(1), st.just(0), st.integers(0, 2**64 - 1)),
]
TYPED_CODES = {1, 3, 6, 12, 15, 50, 51, 53, 54, 55, 56, 57, 58, 59, 61, 82, 90}
raw_options = st.builds(
    RawOption, st.integers(1, 254).filter(lambda c: c not in TYPED_CODES and c != 52),
    st.binary(max_size=600))


@st.composite
def messages(draw):
    opts = draw(st.lists(st.one_of(*typed_options, raw_options), max_size=8, unique_by=lambda o: o.code))
    return DhcpMessage(
        op=draw(st.sampled_from([1, 2])), htype=draw(st.integers(0, 255)), hlen=draw(st.integers(0, 16)),
        hops=draw(st.integers(0, 255)), xid=draw(u32), secs=draw(st.integers(0, 65535)),
        flags=draw(st.integers(0, 65535)), ciaddr=draw(addresses), yiaddr=draw(addresses),
        siaddr=draw(addresses), giaddr=draw(addresses), chaddr=draw(st.binary(min_size=16, max_size=16)),
        sname=draw(st.binary(max_size=64)), file=draw(st.binary(max_size=128)),
        options=tuple(opts), padding=draw(st.integers(0, 64)),
    )


@settings(max_examples=400, deadline=None)
@given(messages())
def test_round_trip(m):
    data = m.encode()
    assert DhcpMessage.decode(data) == m
    assert DhcpMessage.decode(data).encode() == data


@settings(max_examples=200, deadline=None)
@given(messages())
def test_round_trip_overloaded_into_576_bytes(m):
    m = DhcpMessage(op=m.op, xid=m.xid, chaddr=m.chaddr, options=m.options)
    try:
        data = m.encode(max_size=576)
    except ValueError:
        return  # too many options for 576 bytes even with sname and file
    assert len(data) <= 576
    assert DhcpMessage.decode(data) == m


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=700))
def test_arbitrary_bytes_raise_only_decode_error(data):
    try:
        m = DhcpMessage.decode(data)
    except DecodeError:
        return
    assert DhcpMessage.decode(m.encode()) == m


_PREFIX = DhcpMessage().encode()[:240]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.binary(min_size=192, max_size=192))
def test_arbitrary_options_and_overload_areas_raise_only_decode_error(options, areas):
    # past the header and cookie so that the option parsers, not the header checks, see the bytes
    data = bytearray(_PREFIX + options)
    data[44:236] = areas
    try:
        m = DhcpMessage.decode(bytes(data))
    except DecodeError:
        return
    again = DhcpMessage.decode(m.encode())
    assert again == m
    spans = option_spans(bytes(data))
    assert {s.code for s in spans} - {52} == {o.code for o in m.options}


# --- scapy reads our bytes the same way -----------------------------------------------------------


def _scapy_options(data):
    from scapy.layers.dhcp import BOOTP, DHCP

    p = BOOTP(data)
    assert p.haslayer(DHCP), "scapy found no DHCP layer"
    opts = {}
    for o in p[DHCP].options:
        if isinstance(o, tuple):
            opts[o[0]] = o[1] if len(o) == 2 else o[1:]
    return p, opts


def _check_against_scapy(m: DhcpMessage) -> None:
    data = m.encode()
    p, so = _scapy_options(data)
    assert (p.op, p.htype, p.hlen, p.hops, p.xid, p.secs, p.flags) == (
        m.op, m.htype, m.hlen, m.hops, m.xid, m.secs, m.flags)
    assert (p.ciaddr, p.yiaddr, p.siaddr, p.giaddr) == tuple(
        str(a) for a in (m.ciaddr, m.yiaddr, m.siaddr, m.giaddr))
    assert bytes(p.chaddr) == m.chaddr and bytes(p.sname) == m.sname and bytes(p.file) == m.file
    for o in m.options:
        if isinstance(o, DhcpMessageType):
            assert so["message-type"] == o.type
        elif isinstance(o, ServerIdentifier):
            assert so["server_id"] == str(o.address)
        elif isinstance(o, RequestedIpAddress):
            assert so["requested_addr"] == str(o.address)
        elif isinstance(o, SubnetMask):
            assert so["subnet_mask"] == str(o.address)
        elif isinstance(o, IpAddressLeaseTime):
            assert so["lease_time"] == o.seconds
        elif isinstance(o, RenewalTime):
            assert so["renewal_time"] == o.seconds
        elif isinstance(o, RebindingTime):
            assert so["rebinding_time"] == o.seconds
        elif isinstance(o, MaximumMessageSize):
            assert so["max_dhcp_size"] == o.size
        elif isinstance(o, ClientIdentifier):
            assert bytes(so["client_id"]) == o.raw
        elif isinstance(o, HostName):
            assert bytes(so["hostname"]) == o.name
        elif isinstance(o, ParameterRequestList):
            prl = so["param_req_list"]
            assert list(prl if isinstance(prl, (list, tuple)) else [prl]) == list(o.codes)
        elif isinstance(o, RelayAgentInformation):
            assert bytes(so["relay_agent_information"]) == o.encode_value()
        elif isinstance(o, Authentication):
            # scapy has no option 90: it must keep it as raw bytes, ours byte for byte
            assert so[90] == o.encode_value()
        elif isinstance(o, Routers):
            r = so["router"]
            assert [str(a) for a in o.addresses] == (list(r) if isinstance(r, (list, tuple)) else [r])


def test_scapy_dissects_the_real_capture_like_we_do():
    _check_against_scapy(DhcpMessage.decode(bytes.fromhex(DISCOVER_HEX)))
    _check_against_scapy(DhcpMessage.decode(bytes.fromhex(ACK_HEX)))


scapy_options = st.lists(
    st.one_of(
        st.builds(DhcpMessageType, st.integers(1, 8)),
        st.builds(ServerIdentifier, addresses),
        st.builds(RequestedIpAddress, addresses),
        st.builds(SubnetMask, addresses),
        st.builds(IpAddressLeaseTime, u32),
        st.builds(RenewalTime, u32),
        st.builds(RebindingTime, u32),
        st.builds(MaximumMessageSize, st.integers(0, 65535)),
        st.builds(ClientIdentifier, st.integers(0, 255), st.binary(min_size=1, max_size=20)),
        st.builds(HostName, st.binary(min_size=1, max_size=30).filter(lambda b: b"\0" not in b)),
        st.builds(ParameterRequestList, st.lists(st.integers(1, 254), min_size=1, max_size=10).map(tuple)),
        st.builds(RelayAgentInformation, st.lists(suboption, max_size=3).map(tuple)),
        st.builds(Authentication.delayed, u32, st.integers(0, 2**64 - 1),
                  st.binary(min_size=16, max_size=16)),
        st.builds(Routers, st.lists(addresses, min_size=1, max_size=1).map(tuple)),
    ),
    max_size=8, unique_by=lambda o: o.code,
)


@settings(max_examples=150, deadline=None)
@given(scapy_options, st.integers(0, 2**32 - 1), st.binary(min_size=6, max_size=6), addresses, addresses)
def test_scapy_dissects_our_messages_with_the_same_fields(opts, xid, mac, yiaddr, giaddr):
    m = DhcpMessage(op=2, xid=xid, chaddr=mac, yiaddr=yiaddr, giaddr=giaddr, hops=1, flags=0x8000,
                    options=tuple(opts))
    _check_against_scapy(m)


# --- tshark reads our bytes without a warning and with the same values ----------------------------


def _pcap(frames: list[bytes]) -> bytes:
    """A tiny classic libpcap file (microsecond magic, Ethernet link type)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1, i, len(f), len(f)) + f)
    return b"".join(out)


def _frame(payload: bytes, src: str, dst: str, sport: int, dport: int, src_mac: bytes) -> bytes:
    from threatlab.net.wire import ETH_P_IP, IPPROTO_UDP, UDP, Ethernet, IPv4

    s, d = A(src), A(dst)
    ip = IPv4(s, d, IPPROTO_UDP, UDP(sport, dport, payload).encode(s, d)).encode()
    return Ethernet(b"\xff" * 6, src_mac, ETH_P_IP, ip).encode()


def _tshark(path, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|", "-E", "occurrence=a",
            "-E", "aggregator=,"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def _tshark_clean(path) -> str:
    return subprocess.run(
        ["tshark", "-r", str(path), "-Y", '_ws.malformed || _ws.expert.severity >= "warning"'],
        capture_output=True, text=True, check=True,
    ).stdout


@needs_tshark
def test_tshark_dissects_auth_relay_info_and_overload_without_warnings(tmp_path):
    from threatlab.dhcp.auth import sign

    mac = bytes.fromhex("020000000001")
    rai = RelayAgentInformation((CircuitId(b"eth0/7"), RemoteId(b"\x00\x11\x22"), RawSubOption(200, b"xyz")))
    discover = DhcpMessage(xid=1, chaddr=mac, options=(
        DhcpMessageType(1), ClientIdentifier(1, mac), Authentication(1, 1, 0, 0),
        ParameterRequestList((1, 3, 6))))
    request = DhcpMessage(xid=2, hops=1, giaddr=A("10.1.0.1"), chaddr=mac, options=(
        DhcpMessageType(3), RequestedIpAddress(A("10.1.0.50")), ServerIdentifier(A("10.1.0.2")),
        Authentication.delayed(0xDEADBEEF, 0x1122334455667788), rai))
    signed = sign(request.encode(), b"key")
    token = DhcpMessage(xid=3, chaddr=mac, options=(DhcpMessageType(1), Authentication(0, 0, 0, 5, b"tok3n")))
    many = tuple(RawOption(c, bytes([c]) * 40) for c in range(224, 235))
    overloaded = DhcpMessage(op=2, xid=4, yiaddr=A("10.1.0.50"), chaddr=mac,
                             options=(DhcpMessageType(5), ServerIdentifier(A("10.1.0.2"))) + many)
    over = overloaded.encode(max_size=576)
    assert option_spans(over)[0].code == 52
    frames = [
        _frame(discover.encode(), "0.0.0.0", "255.255.255.255", 68, 67, mac),
        _frame(signed, "10.1.0.1", "10.1.0.2", 67, 67, mac),
        _frame(token.encode(), "0.0.0.0", "255.255.255.255", 68, 67, mac),
        _frame(over, "10.1.0.2", "10.1.0.50", 67, 68, mac),
    ]
    path = tmp_path / "dhcp.pcap"
    path.write_bytes(_pcap(frames))
    assert _tshark_clean(path) == ""
    rows = _tshark(
        path, "dhcp.id", "dhcp.option.dhcp_authentication.protocol",
        "dhcp.option.dhcp_authentication.alg_delay",
        "dhcp.option.dhcp_authentication.algorithm", "dhcp.option.dhcp_authentication.rdm",
        "dhcp.option.dhcp_authentication.rdm_replay_detection", "dhcp.option.dhcp_authentication.secret_id",
        "dhcp.option.dhcp_authentication.hmac_md5_hash", "dhcp.option.dhcp_authentication.information",
        "dhcp.option.agent_information_option.agent_circuit_id",
        "dhcp.option.agent_information_option.agent_remote_id",
        "dhcp.option.agent_information_option.suboption", "dhcp.option.agent_information_option.value",
        "dhcp.option.option_overload", "dhcp.hops", "dhcp.ip.relay", "dhcp.option.type",
    )
    auth = DhcpMessage.decode(signed).authentication
    assert rows[0][:9] == ["0x00000001", "1", "1", "", "0", "0x0000000000000000", "", "", ""]
    assert rows[1][:14] == [
        "0x00000002", "1", "1", "", "0", "0x1122334455667788", "0xdeadbeef", auth.mac.hex(), "",
        "657468302f37", "001122", "1,2,200", "657468302f37,001122,78797a", ""]
    assert rows[1][14:16] == ["1", "10.1.0.1"]
    assert rows[2][:9] == ["0x00000003", "0", "", "0", "0", "0x0000000000000005", "", "", "tok3n"]
    assert rows[3][13] == "3"
    # every option we encoded is one tshark saw (it lists them in packet order: sname, file, options)
    codes = [int(c) for c in rows[3][16].split(",")]
    assert sorted(c for c in codes if c not in (0, 52, 255)) == sorted(o.code for o in overloaded.options)


@needs_tshark
def test_tshark_reads_the_captured_discover_and_ack_as_we_encode_them(tmp_path):
    frames = [
        _frame(DhcpMessage.decode(bytes.fromhex(DISCOVER_HEX)).encode(),
               "0.0.0.0", "255.255.255.255", 68, 67, MAC),
        _frame(DhcpMessage.decode(bytes.fromhex(ACK_HEX)).encode(),
               "192.168.0.1", "192.168.0.10", 67, 68, MAC),
    ]
    path = tmp_path / "kat.pcap"
    path.write_bytes(_pcap(frames))
    assert _tshark_clean(path) == ""
    rows = _tshark(path, "dhcp.option.dhcp", "dhcp.hw.mac_addr", "dhcp.ip.your",
                   "dhcp.option.ip_address_lease_time", "dhcp.option.dhcp_server_id",
                   "dhcp.option.request_list_item")
    rows[0][1] = rows[0][1].split(",")[0]  # the client identifier holds the MAC address too
    assert rows == [
        ["1", "00:0b:82:01:fc:42", "0.0.0.0", "", "", "1,3,6,42"],
        ["5", "00:0b:82:01:fc:42", "192.168.0.10", "3600", "192.168.0.1", ""],
    ]
