"""tshark as an independent dissector: a pcap of real endpoint conversations opens without
malformed packets or bad checksums."""

from __future__ import annotations

import shutil
import struct
import subprocess
from ipaddress import IPv4Address

import pytest
from tcp_harness import A_IP, B_IP, MS, Pair, S

from threatlab.net.wire import internet_checksum
from threatlab.tcp import TcpConfig
from threatlab.tcp.wire import MSS, Nop, SackPermitted, TcpFlags, TcpSegment, Timestamps, WindowScale

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def _ipv4(src: IPv4Address, dst: IPv4Address, payload: bytes, ident: int) -> bytes:
    """A minimal IPv4 header (RFC 791), written here independently of threatlab.net."""
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, 6, 0, src.packed, dst.packed
    )
    c = internet_checksum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def _frame(src: IPv4Address, dst: IPv4Address, tcp: bytes, ident: int) -> bytes:
    macs = (MAC_B + MAC_A) if src == A_IP else (MAC_A + MAC_B)
    return macs + b"\x08\x00" + _ipv4(src, dst, tcp, ident)


def _write_pcap(path, frames: list[tuple[int, bytes]]) -> None:
    """Classic libpcap, microsecond timestamps, linktype 1 (Ethernet)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t_ns, frame in frames:
            sec, usec = divmod(t_ns // 1000, 1_000_000)
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
            f.write(frame)


def _conversation(pair: Pair) -> list[tuple[int, IPv4Address, IPv4Address, bytes]]:
    pair.establish()
    pair.a.send(bytes(range(256)) * 40, pair.now)
    pair.b.send(b"reply " * 300, pair.now)
    pair.run()
    pair.a.close(pair.now)
    pair.run(until=pair.now + S)
    pair.b.close(pair.now)
    pair.run()
    return pair.frames


def _options_conversation() -> list[tuple[int, IPv4Address, IPv4Address, bytes]]:
    """Hand-built segments with the options the endpoint does not send (timestamps, SACK)."""
    a, b = 50000, 8080
    syn_opts = (MSS(1460), SackPermitted(), Timestamps(100, 0), Nop(), WindowScale(7))
    segs = [
        (A_IP, B_IP, TcpSegment(a, b, 1000, 0, TcpFlags.SYN, 64240, 0, syn_opts)),
        (
            B_IP,
            A_IP,
            TcpSegment(
                b,
                a,
                5000,
                1001,
                TcpFlags.SYN | TcpFlags.ACK,
                65160,
                0,
                (MSS(1460), SackPermitted(), Timestamps(200, 100), Nop(), WindowScale(7)),
            ),
        ),
        (
            A_IP,
            B_IP,
            TcpSegment(a, b, 1001, 5001, TcpFlags.ACK, 502, 0, (Nop(), Nop(), Timestamps(101, 200))),
        ),
        (
            A_IP,
            B_IP,
            TcpSegment(
                a,
                b,
                1001,
                5001,
                TcpFlags.PSH | TcpFlags.ACK,
                502,
                0,
                (Nop(), Nop(), Timestamps(102, 200)),
                b"x" * 100,
            ),
        ),
        (
            B_IP,
            A_IP,
            TcpSegment(b, a, 5001, 1101, TcpFlags.ACK, 509, 0, (Nop(), Nop(), Timestamps(201, 102))),
        ),
        (
            A_IP,
            B_IP,
            TcpSegment(
                a, b, 1101, 5001, TcpFlags.FIN | TcpFlags.ACK, 502, 0, (Nop(), Nop(), Timestamps(103, 201))
            ),
        ),
        (
            B_IP,
            A_IP,
            TcpSegment(
                b, a, 5001, 1102, TcpFlags.FIN | TcpFlags.ACK, 509, 0, (Nop(), Nop(), Timestamps(202, 103))
            ),
        ),
        (
            A_IP,
            B_IP,
            TcpSegment(a, b, 1102, 5002, TcpFlags.ACK, 502, 0, (Nop(), Nop(), Timestamps(104, 202))),
        ),
    ]
    return [(i * MS, s, d, seg.encode(s, d)) for i, (s, d, seg) in enumerate(segs)]


def _tshark(path, display_filter: str) -> str:
    out = subprocess.run(
        [
            TSHARK,
            "-n",
            "-r",
            str(path),
            "-o",
            "tcp.check_checksum:TRUE",
            "-Y",
            display_filter,
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.col.Info",
            "-e",
            "_ws.expert.message",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_tshark_reads_our_segments_without_malformed_packets_or_bad_checksums(tmp_path):
    frames = []
    for pair in (
        Pair(seed=1, a_port=40001),
        Pair(
            TcpConfig(window_scale=7, rcv_buf=1 << 20),
            TcpConfig(window_scale=5, rcv_buf=1 << 18),
            seed=3,
            a_port=40002,
        ),
        Pair(TcpConfig(tcp_md5_key=b"secret"), TcpConfig(tcp_md5_key=b"secret"), seed=5, a_port=40003),
    ):
        frames.extend(_conversation(pair))
    base = frames[-1][0] + S
    frames.extend((base + t, s, d, raw) for t, s, d, raw in _options_conversation())
    # each conversation restarts virtual time: lay them out one after another
    timeline, t_off, last = [], 0, -1
    for i, (t, s, d, raw) in enumerate(frames):
        if t + t_off < last:
            t_off = last - t + MS
        last = t + t_off
        timeline.append((last, _frame(s, d, raw, i)))
    path = tmp_path / "tcp.pcap"
    _write_pcap(path, timeline)

    # Everything tshark dissects as TCP, with checksums checked.
    count = _tshark(path, "tcp")
    assert len(count.splitlines()) == len(frames)
    # The conversations are consistent (distinct ports and ISNs, no loss), so even tshark's TCP
    # sequence analysis has nothing to warn about: the strict filter applies unchanged.
    assert _tshark(path, '_ws.malformed || _ws.expert.severity >= "warning"') == ""

    # The filter is not vacuous: one corrupted checksum is caught.
    t, frame = timeline[3]
    bad = bytearray(frame)
    bad[14 + 20 + 16] ^= 0x01
    timeline[3] = (t, bytes(bad))
    _write_pcap(path, timeline)
    hits = _tshark(path, '_ws.malformed || tcp.checksum.status == "Bad"').splitlines()
    assert [h.split("\t")[0] for h in hits] == ["4"]
