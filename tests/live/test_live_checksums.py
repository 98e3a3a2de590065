"""Pure parts of the injector, no root needed: the sweep's incremental checksums (RFC 1624) equal a
full recomputation, and the interlock's verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from live_helpers import lan

from threatlab.errors import LiveError, LiveSafetyError
from threatlab.live import Interlock, LiveNetwork, build_tcp_frame
from threatlab.live.inject import _SweepFields, _tcp_template, checksum16

A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def sweep_frames(template: bytes, seq0: int, step: int, id_step: int, k0: int, n: int) -> list[bytes]:
    layout = _tcp_template(template, seq0)
    seq, tcp_c, ip_id, ip_c = _SweepFields(layout, seq0, step, id_step).compute(k0, n)
    rows = np.tile(np.frombuffer(layout.frame, dtype=np.uint8), (n, 1))
    t, i = layout.tcp_off, layout.ip_off
    rows[:, t + 4 : t + 8] = seq.view(np.uint8).reshape(-1, 4)
    rows[:, t + 16 : t + 18] = tcp_c.view(np.uint8).reshape(-1, 2)
    if ip_id is not None:
        rows[:, i + 4 : i + 6] = ip_id.view(np.uint8).reshape(-1, 2)
        rows[:, i + 10 : i + 12] = ip_c.view(np.uint8).reshape(-1, 2)
    return [bytes(r) for r in rows]


@settings(max_examples=200, deadline=None)
@given(
    seq0=st.integers(0, 2**32 - 1),
    step=st.integers(-(2**32), 2**32),
    ip_id=st.integers(0, 2**16 - 1),
    id_step=st.integers(0, 2**16),
    k0=st.integers(0, 2**33),
    sport=st.integers(0, 65535),
    payload=st.binary(max_size=9),
    v6=st.booleans(),
)
def test_incremental_checksums_equal_full_recomputation(seq0, step, ip_id, id_step, k0, sport, payload, v6):
    src, dst = ("fd00::1", "fd00::2") if v6 else ("10.0.0.1", "10.0.0.2")
    template = build_tcp_frame(A, B, src, dst, sport, 80, 12345, 777, "PA", payload=payload, ip_id=ip_id)
    frames = sweep_frames(template, seq0, step, id_step, k0, 4)
    for j, frame in enumerate(frames):
        k = k0 + j
        want = build_tcp_frame(
            A,
            B,
            src,
            dst,
            sport,
            80,
            (seq0 + k * step) % 2**32,
            777,
            "PA",
            payload=payload,
            ip_id=ip_id if (v6 or id_step % 2**16 == 0) else (ip_id + k * id_step) % 2**16,
        )
        assert frame == want


def test_template_checksums_are_repaired():
    good = build_tcp_frame(A, B, "10.0.0.1", "10.0.0.2", 1, 2, 99)
    broken = good[: 14 + 10] + b"\xde\xad" + good[14 + 12 : 14 + 20 + 16] + b"\xbe\xef" + good[14 + 20 + 18 :]
    assert _tcp_template(broken, 99).frame == good
    assert checksum16(good[14:34]) == 0  # a header including its checksum sums to zero


@pytest.mark.parametrize(
    "frame",
    [
        build_tcp_frame(A, B, "10.0.0.1", "10.0.0.2", 1, 2)[:30],  # truncated
        bytes.fromhex("ffffffffffff0200000000010806") + bytes(28),  # ARP is not TCP
    ],
)
def test_sweep_template_must_be_tcp(frame):
    with pytest.raises(LiveError):
        _tcp_template(frame, 0)


def test_interlock_verdicts():
    lock = Interlock(LiveNetwork(lan(v6=True)))  # not opened: the interlock needs only the description
    ok = [
        ("10.0.0.2", "10.0.0.1"),
        ("10.0.0.1", "255.255.255.255"),
        ("10.0.0.1", "10.0.0.255"),
        ("10.0.0.1", "224.0.0.1"),
        ("fd00::1", "fd00::2"),
        ("fd00::1", "ff02::1"),
        ("fd00::1", "fe80::ff:fe00:2"),  # bob's EUI-64 link-local address
    ]
    for src, dst in ok:
        lock.check(build_tcp_frame(A, B, src, dst, 1, 2))
    refused = [
        ("10.0.0.1", "127.0.0.2"),
        ("10.0.0.1", "192.0.2.1"),
        ("10.0.0.1", "10.0.0.77"),
        ("fd00::1", "fe80::1"),
        ("fd00::1", "2001:db8::1"),
    ]
    for src, dst in refused:
        with pytest.raises(LiveSafetyError, match="refused"):
            lock.check(build_tcp_frame(A, B, src, dst, 1, 2))
    vlan = build_tcp_frame(A, B, "10.0.0.1", "192.0.2.1", 1, 2)
    vlan = vlan[:12] + b"\x81\x00\x00\x05" + vlan[12:]  # a VLAN tag does not hide the destination
    with pytest.raises(LiveSafetyError):
        lock.check(vlan)
