"""The overlay codec: RELOAD (RFC 6940 6.3) layout, round trips, bad input, and tshark's reading."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threatlab.errors import DecodeError
from threatlab.net.pcap import PcapWriter
from threatlab.net.wire import UDP, Ethernet, IPv4
from threatlab.overlay import ids
from threatlab.overlay.wire import (
    KINDS,
    UNSIGNED,
    ArrayEntry,
    AttachAns,
    AttachReq,
    ChordUpdateType,
    DataModel,
    DataValue,
    DictionaryEntry,
    ErrorCode,
    ErrorResponse,
    Extension,
    FetchAns,
    FetchKindResponse,
    FetchReq,
    ForwardingHeader,
    ForwardingOption,
    GenericCertificate,
    JoinAns,
    JoinReq,
    LeaveAns,
    LeaveReq,
    Message,
    NodeDest,
    OpaqueDest,
    PingAns,
    PingReq,
    ProbeAns,
    ProbeInformation,
    ProbeReq,
    ResourceDest,
    RouteQueryAns,
    RouteQueryReq,
    SecurityBlock,
    Signature,
    SignerIdentity,
    StoreAns,
    StoredData,
    StoredDataSpecifier,
    StoreKindData,
    StoreKindResponse,
    StoreReq,
    UpdateAns,
    UpdateReq,
    decode_header,
    forward_bytes,
)

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OVERLAY = ids.overlay_hash("threatlab.example")

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
nid = st.integers(0, 2**128 - 1)
small = st.binary(max_size=24)
nids = st.lists(nid, max_size=4).map(tuple)

dest = st.one_of(
    st.builds(NodeDest, nid), st.builds(ResourceDest, nid), st.builds(OpaqueDest, st.binary(max_size=40))
)
header = st.builds(
    ForwardingHeader,
    overlay=u32,
    transaction_id=u64,
    destination_list=st.lists(dest, min_size=1, max_size=3).map(tuple),
    via_list=st.lists(dest, max_size=3).map(tuple),
    ttl=u8,
    configuration_sequence=u16,
    max_response_length=u32,
    options=st.lists(st.builds(ForwardingOption, u8, u8, small), max_size=2).map(tuple),
)
identity = st.one_of(
    st.just(SignerIdentity()), st.builds(SignerIdentity, st.sampled_from([1, 2]), u8, st.binary(max_size=32))
)
signature = st.builds(Signature, u8, u8, identity, st.binary(max_size=64))
data_value = st.builds(DataValue, st.booleans(), small)


def stored(model: DataModel):
    value = {
        DataModel.SINGLE_VALUE: data_value,
        DataModel.ARRAY: st.builds(ArrayEntry, u32, data_value),
        DataModel.DICTIONARY: st.builds(DictionaryEntry, small, data_value),
    }[model]
    return st.builds(StoredData, u64, u32, value, signature)


kind_id = st.sampled_from(sorted(KINDS))


@st.composite
def store_kind_data(draw):
    k = draw(kind_id)
    return StoreKindData(k, draw(u64), tuple(draw(st.lists(stored(KINDS[k].model), max_size=2))))


@st.composite
def fetch_kind_response(draw):
    k = draw(kind_id)
    return FetchKindResponse(k, draw(u64), tuple(draw(st.lists(stored(KINDS[k].model), max_size=2))))


@st.composite
def specifier(draw):
    k = draw(kind_id)
    model = KINDS[k].model
    indices = tuple(draw(st.lists(st.tuples(u32, u32), max_size=2))) if model == DataModel.ARRAY else ()
    keys = tuple(draw(st.lists(small, max_size=2))) if model == DataModel.DICTIONARY else ()
    return StoredDataSpecifier(k, draw(u64), indices, keys)


body = st.one_of(
    st.builds(ProbeReq, st.lists(st.sampled_from([1, 2, 3]), max_size=3).map(tuple)),
    st.builds(
        ProbeAns,
        st.lists(st.builds(ProbeInformation, st.sampled_from([1, 2, 3]), u32), max_size=3).map(tuple),
    ),
    st.builds(AttachReq, small, small, small, st.booleans()),
    st.builds(AttachAns, small, small, small, st.booleans()),
    st.builds(StoreReq, nid, u8, st.lists(store_kind_data(), max_size=2).map(tuple)),
    st.builds(StoreAns, st.lists(st.builds(StoreKindResponse, kind_id, u64, nids), max_size=2).map(tuple)),
    st.builds(FetchReq, nid, st.lists(specifier(), max_size=2).map(tuple)),
    st.builds(FetchAns, st.lists(fetch_kind_response(), max_size=2).map(tuple)),
    st.builds(JoinReq, nid, small),
    st.builds(JoinAns, small),
    st.builds(LeaveReq, nid, st.sampled_from([1, 2]), nids),
    st.builds(LeaveAns),
    st.builds(UpdateReq, u32, st.just(ChordUpdateType.PEER_READY)),
    st.builds(UpdateReq, u32, st.just(ChordUpdateType.NEIGHBORS), nids, nids),
    st.builds(UpdateReq, u32, st.just(ChordUpdateType.FULL), nids, nids, nids),
    st.builds(UpdateAns),
    st.builds(RouteQueryReq, st.booleans(), dest, small),
    st.builds(RouteQueryAns, nid),
    st.builds(PingReq, small),
    st.builds(PingAns, u64, u64),
    st.builds(ErrorResponse, u16, small),
)
message = st.builds(
    Message,
    header,
    body,
    st.lists(st.builds(Extension, u16, st.booleans(), small), max_size=2).map(tuple),
    st.builds(
        SecurityBlock, st.lists(st.builds(GenericCertificate, u8, small), max_size=2).map(tuple), signature
    ),
)


@FAST
@given(message)
def test_every_message_round_trips(m):
    assert Message.decode(m.encode()) == m


@FAST
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_error(data):
    try:
        Message.decode(data)
    except DecodeError as e:
        assert e.protocol == "overlay"


@FAST
@given(message, st.data())
def test_corrupted_messages_raise_only_decode_error(m, data):
    raw = bytearray(m.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(u8)
    cut = data.draw(st.integers(0, len(raw)))
    for blob in (bytes(raw), bytes(raw[:cut]), bytes(raw) + b"\x00"):
        try:
            Message.decode(blob)
        except DecodeError as e:
            assert e.protocol == "overlay" and 0 <= e.offset <= len(blob)


@FAST
@given(message, header)
def test_forwarding_rewrites_the_header_and_keeps_contents_and_signature(m, h2):
    data = m.encode()
    info = decode_header(data)
    assert info.header == m.header
    out = Message.decode(forward_bytes(data, info, h2))
    assert out == Message(h2, m.body, m.extensions, m.security)


def _msg(body, dst=None):
    h = ForwardingHeader(OVERLAY, 0x0102030405060708, (dst or NodeDest(1),))
    return Message(h, body)


def test_header_known_answer():
    m = _msg(PingReq(b""), ResourceDest(0x00112233445566778899AABBCCDDEEFF))
    raw = m.encode()
    assert raw.hex() == (
        "d2454c4f"
        + f"{OVERLAY:08x}"
        + "0000"
        + "0a"
        + "64"
        + "c0000000"
        + f"{len(raw):08x}"
        + "0102030405060708"
        + "00000000"
        + "0000"
        + "0013"
        + "0000"
        + "0211"
        + "10"
        + "00112233445566778899aabbccddeeff"
        + "0017"
        + "00000002"
        + "0000"
        + "00000000"
        + "0000"
        + "0000"
        + "030000"
        + "0000"
    )


def test_trailing_bytes_are_an_error():
    raw = _msg(PingAns(1, 2)).encode()
    with pytest.raises(DecodeError) as e:
        Message.decode(raw + b"\x00")
    assert e.value.field == "length"
    # a body longer than its type needs: the body vector says 17 bytes, PingAns reads 16
    body_at = decode_header(raw).contents_at
    bad = bytearray(raw)
    bad[body_at + 2 : body_at + 6] = (17).to_bytes(4, "big")
    bad[body_at + 6 + 16 : body_at + 6 + 16] = b"\x00"
    bad[16:20] = len(bad).to_bytes(4, "big")
    with pytest.raises(DecodeError) as e:
        Message.decode(bytes(bad))
    assert e.value.field == "message_body" and "trailing" in e.value.reason


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ((0, b"\x00"), "relo_token"),
        ((10, b"\x01"), "version"),
        ((12, b"\x00"), "fragment"),
        ((12, b"\x80"), "fragment"),
    ],
)
def test_bad_header_fields_are_named(patch, field):
    raw = bytearray(_msg(PingReq()).encode())
    at, b = patch
    raw[at : at + len(b)] = b
    with pytest.raises(DecodeError) as e:
        Message.decode(bytes(raw))
    assert e.value.field == field and e.value.offset == at


def test_unknown_kind_and_unsupported_features_are_explicit_errors():
    good = _msg(FetchReq(5, (StoredDataSpecifier(16, 0, ((0, 3),)),))).encode()
    at = good.index((16).to_bytes(4, "big") + bytes(8))
    bad = good[:at] + (99).to_bytes(4, "big") + good[at + 4 :]
    with pytest.raises(DecodeError, match="unknown Kind 99"):
        Message.decode(bad)
    att = bytearray(_msg(AttachReq(b"", b"", b"")).encode())
    at = decode_header(bytes(att)).contents_at + 2 + 4 + 3
    att[at : at + 2] = b"\x00\x01"
    with pytest.raises(DecodeError, match="ICE candidates"):
        Message.decode(bytes(att))


def test_unsigned_block_is_what_an_unauthenticated_overlay_sends():
    assert _msg(PingReq()).security.signature == UNSIGNED
    assert not UNSIGNED.signed


# -- tshark ----------------------------------------------------------------------------------------


def _pcap(path, messages, port=6085):
    with PcapWriter(path) as w:
        for i, m in enumerate(messages):
            src, dst = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
            u = UDP(port, port, m.encode()).encode(src, dst)
            ip = IPv4(src=src, dst=dst, proto=17, payload=u).encode()
            w.write(Ethernet(b"\x02" * 6, b"\x02\x00\x00\x00\x00\x01", 0x0800, ip).encode(), i * 1000)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_reads_every_message_type_as_reload(tmp_path):
    sip = DictionaryEntry(bytes(range(16)), DataValue(True, b"\x01\x00\x14\x00\x12sip:alice@10.0.0.1"))
    sd = StoredData(1_700_000_000_000, 3600, sip)
    msgs = [
        _msg(ProbeReq(), ResourceDest(7)),
        _msg(ProbeAns((ProbeInformation(1, 1000),))),
        _msg(AttachReq(b"u", b"p", b"passive", True)),
        _msg(StoreReq(7, 1, (StoreKindData(1, 3, (sd,)),)), ResourceDest(7)),
        _msg(StoreAns((StoreKindResponse(1, 3, (1, 2)),))),
        _msg(FetchReq(7, (StoredDataSpecifier(1, 0, keys=(bytes(range(16)),)),)), ResourceDest(7)),
        _msg(FetchAns((FetchKindResponse(1, 3, (sd,)),))),
        _msg(JoinReq(5)),
        _msg(JoinAns()),
        _msg(LeaveReq(5, 1, (6, 7))),
        _msg(LeaveAns()),
        _msg(UpdateReq(10, ChordUpdateType.FULL, (1, 2), (3,), (4,))),
        _msg(UpdateAns()),
        _msg(RouteQueryReq(False, ResourceDest(9))),
        _msg(RouteQueryAns(9)),
        _msg(PingReq(b"ab")),
        _msg(PingAns(1, 2)),
        _msg(ErrorResponse(ErrorCode.NOT_FOUND, b"no")),
    ]
    path = tmp_path / "overlay.pcap"
    _pcap(path, msgs)
    fields = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-T",
            "fields",
            "-E",
            "occurrence=f",
            "-e",
            "reload.message.code",
            "-e",
            "reload.length.32",
            "-e",
            "reload.forwarding.trans_id",
            "-e",
            "_ws.expert.message",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(fields) == len(msgs)
    for line, m in zip(fields, msgs):
        code, length, txid, expert = (line.split("\t") + [""] * 4)[:4]
        assert int(code, 0) == m.code
        assert int(length, 0) == len(m.encode())  # the forwarding header's length field
        assert int(txid, 0) == 0x0102030405060708
        # Wireshark's dissector has no case for the `none` signer identity of an unsigned message
        assert expert.replace("Unknown identity type", "").strip(",") == "", (m, expert)
    verbose = subprocess.run(
        ["tshark", "-r", str(path), "-V", "-Y", "frame.number == 4"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "SIP-REGISTRATION" in verbose and "sip:alice@10.0.0.1" in verbose
