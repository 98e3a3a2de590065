"""tcpsecure's blind attacks as catalogue entries: the adversary's frames, the entries run through
the catalogue's runner with and without their defenses, the CLI, and a pcap tshark reads cleanly.

Runs use a 1 MiB window (4,096 guesses cover the sequence space) or a small budget to stay fast;
tests/tcp/test_tcp_fidelity.py holds the statistics and the full-size sweep.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from ipaddress import IPv4Address

import pytest
from click.testing import CliRunner

from threatlab.cli import cli
from threatlab.lab.catalogue import load_catalogue
from threatlab.lab.runner import run_threat
from threatlab.net.wire import ETH_P_IP, IPPROTO_TCP, Ethernet, IPv4, pad_frame
from threatlab.tcp.attacks import ACK_HALF, BlindSweep, SegmentTemplate, port_candidates
from threatlab.tcp.threats import (
    BLIND_THREATS,
    SEQ_SPACE,
    THREATS,
    open_scene,
    sweep_hits,
    sweep_length,
    template_maker,
    throttled_acks,
    window_and_scale,
)
from threatlab.tcp.wire import TcpFlags, TcpSegment

MIB = 1 << 20
A, B = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
MAC_A, MAC_B = bytes.fromhex("020000000042"), bytes.fromhex("020000000002")


def _threat(tid: str):
    return load_catalogue().get(tid)


def _run(tid: str, defenses=(), trials: int = 4, **params):
    return run_threat(_threat(tid), {k: str(v) for k, v in params.items()}, defenses, trials, seed=7)


# --- the catalogue -----------------------------------------------------------------------------------


def test_every_blind_threat_is_in_the_catalogue_with_its_draft_section():
    cat = load_catalogue()
    sections = {"tcp.blind-rst": "2", "tcp.blind-syn": "3", "tcp.blind-data-injection": "4",
                "tcp.port-guessing": "1"}
    for tid, section in sections.items():
        t = cat.get(tid)
        assert t.source.seed_file == "001_8fae148b6f71f2f2.txt"
        assert t.source.draft == "draft-ietf-tcpm-tcpsecure-01" and t.source.section == section
        assert t.expected is not None and t.position.value == "off-path"
        assert all(p.unit or p.kind is bool for p in t.params if p.name != "window_scale")
    assert THREATS[: len(BLIND_THREATS)] == BLIND_THREATS


def test_the_blind_reset_and_injection_entries_name_linux_as_their_live_peer():
    for tid in ("tcp.blind-rst", "tcp.blind-syn", "tcp.blind-data-injection"):
        assert set(_threat(tid).peers) == {"linux"}
    assert _threat("tcp.port-guessing").peers == {}


def test_defense_ids_are_the_config_switches():
    known = {"rst-exact", "syn-challenge", "ack-check", "challenge-ack-limit", "port-randomization",
             "tcp-md5"}
    for t in BLIND_THREATS:
        assert set(t.defense_ids()) <= known


# --- the adversary's frames ----------------------------------------------------------------------------


def _reference_frame(port: int, seq: int, ack: int, flags: TcpFlags, window: int, payload: bytes) -> bytes:
    tcp = TcpSegment(port, 80, seq, ack, flags, window, 0, (), payload).encode(A, B)
    ip = IPv4(A, B, IPPROTO_TCP, tcp, 64, 0, 0, True).encode()
    return pad_frame(Ethernet(MAC_B, MAC_A, ETH_P_IP, ip).encode())


@pytest.mark.parametrize("flags,payload", [(TcpFlags.RST, b""), (TcpFlags.SYN, b""),
                                           (TcpFlags.ACK | TcpFlags.PSH, b"X"),
                                           (TcpFlags.ACK, b"injected!" * 9)])
def test_template_checksum_update_rfc1624_equals_a_full_encode(flags, payload):
    rng = random.Random(1)
    base = SegmentTemplate(MAC_A, MAC_B, A, B, 49152, 80, flags, window=512, payload=payload)
    for _ in range(3000):
        port = rng.randrange(65536)
        seq, ack = rng.choice([0, 0xFFFFFFFF, rng.getrandbits(32)]), rng.getrandbits(32)
        t = base.with_src_port(port)
        assert t.frame(seq, ack) == _reference_frame(port, seq, ack, flags, 512, payload)
        seg = TcpSegment.decode(t.frame(seq, ack)[34:34 + 20 + len(payload)], A, B)  # checksum verified
        assert (seg.seq, seg.ack, seg.src_port) == (seq, ack, port)


def test_port_candidates_go_upwards_from_the_seen_port_and_wrap():
    assert port_candidates(65534, 65530, 65535) == [65535, 65530, 65531, 65532, 65533, 65534]
    assert port_candidates(7, 65530, 65535)[0] == 65530  # a port outside the range tells nothing


def _scene(defenses=frozenset(), **params):
    p = _threat("tcp.blind-rst").resolve_params({k: str(v) for k, v in params.items()})
    return open_scene(p, frozenset(defenses), random.Random(3), None, ports_known=True)


def test_sweep_sends_segments_stepping_by_the_window_from_a_random_start():
    scene = _scene(window=MIB)
    nic = scene.net.adversary.host.interfaces["eth0"]
    frames: list[bytes] = []
    nic.tx_hooks.append(lambda frame, now: frames.append(frame))
    sweep = BlindSweep(scene.net.adversary, scene.candidates, template_maker(scene, TcpFlags.RST), step=MIB,
                       per_port=300, budget=300, rng=random.Random(9), batch=64)
    sweep.start()
    scene.sim.run(until=scene.sim.now + 10**9)
    assert sweep.sent == 300 and sweep.finished and len(frames) == 300
    segs = [TcpSegment.decode(IPv4.decode(Ethernet.decode(f).payload).payload, A, B) for f in frames]
    start = segs[0].seq
    assert [s.seq for s in segs] == [(start + i * MIB) % SEQ_SPACE for i in range(300)]
    assert {(s.flags, s.src_port, s.dst_port) for s in segs} == {(TcpFlags.RST, scene.candidates[0], 80)}


@pytest.mark.parametrize("flags,payload", [(TcpFlags.RST, b""), (TcpFlags.ACK | TcpFlags.PSH, b"injected")])
def test_sweep_frames_are_the_templates_frames_byte_for_byte(flags, payload):
    # the sweep folds the checksum its own way (one modulo); every frame must still be exactly
    # SegmentTemplate.frame(seq, ack), whatever SEG.ACK and wherever SEG.SEQ wraps
    rng = random.Random(4)
    for ack in (0, 1, 0xFFFF, 0x10000, 0xFFFFFFFF, rng.getrandbits(32), rng.getrandbits(32)):
        scene = _scene(window=MIB)
        make = template_maker(scene, flags, payload=payload)
        nic = scene.net.adversary.host.interfaces["eth0"]
        frames: list[bytes] = []
        nic.tx_hooks.append(lambda frame, now: frames.append(frame))
        start = rng.choice([0, 0xFFFFFFFF - 1000 * 4099, rng.getrandbits(32)])
        sweep = BlindSweep(scene.net.adversary, scene.candidates, make, step=4099, per_port=2000, budget=2000,
                           rng=random.Random(9), ack=ack, start=start)
        sweep.start()
        scene.sim.run(until=scene.sim.now + 10**9)
        tmpl = make(scene.candidates[0])
        assert frames == [tmpl.frame((start + i * 4099) & 0xFFFFFFFF, ack) for i in range(2000)]


def test_data_sweep_sends_each_guess_with_two_acks_half_the_space_apart():
    scene = _scene(window=MIB)
    nic = scene.net.adversary.host.interfaces["eth0"]
    frames: list[bytes] = []
    nic.tx_hooks.append(lambda frame, now: frames.append(frame))
    sweep = BlindSweep(scene.net.adversary, scene.candidates,
                       template_maker(scene, TcpFlags.ACK | TcpFlags.PSH, payload=b"x", window=65535),
                       step=MIB, per_port=200, budget=131, rng=random.Random(9), ack_pairs=True,
                       batch=51)  # pairs straddle batches
    sweep.start()
    scene.sim.run(until=scene.sim.now + 10**9)
    segs = [TcpSegment.decode(IPv4.decode(Ethernet.decode(f).payload).payload, A, B) for f in frames]
    assert len(segs) == 131
    for i in range(0, 130, 2):
        assert segs[i].seq == segs[i + 1].seq == (segs[0].seq + (i // 2) * MIB) % SEQ_SPACE
        assert segs[i + 1].ack == segs[i].ack ^ ACK_HALF
        assert segs[i].payload == b"x"
    assert len({s.ack for s in segs[::2]}) > 60  # a fresh random ACK guess per sequence guess


# --- the draft's arithmetic ----------------------------------------------------------------------------


def _brute(step, target, guesses, space):
    pts = [i * step for i in range(min(guesses, sweep_length(step, space)))]
    c = s = 0
    for d in range(space):
        for i, p in enumerate(pts):
            if (p - d) % space < target:
                c, s = c + 1, s + i + 1
                break
    return c, s


def test_sweep_hits_is_exact_against_brute_force_on_a_small_circle():
    for step in (1, 3, 7, 16, 37, 64):
        for target in (1, 2, 7, 16, 40, 90):
            for guesses in (0, 1, 3, 1000):
                assert sweep_hits(step, target, guesses, 256) == _brute(step, target, guesses, 256)


def test_sweep_length_is_the_drafts_2_to_the_32_over_rcv_wnd():
    assert sweep_length(65535) == 65538 and sweep_length(32768) == 131072 and sweep_length(MIB) == 4096
    c, s = sweep_hits(65535, 65535, 65538)
    assert c == SEQ_SPACE  # a full sweep always hits
    assert abs(s / c - SEQ_SPACE / (2 * 65535)) < 1  # on average 2^32 / (2 RCV.WND) guesses


def test_throttled_acks_counts_windows_of_the_limiter():
    assert throttled_acks(100, 10**9, 10, 5 * 10**9) == 100 // 5 * 5  # 5 per window, under the limit
    assert throttled_acks(4096, 1000, 10, 5 * 10**9) == 10
    assert throttled_acks(0, 1000, 10, 5 * 10**9) == 0


def test_window_scale_is_chosen_to_fit_the_window():
    assert window_and_scale({"window": 65535, "window_scale": -1}) == (65535, None)
    assert window_and_scale({"window": 65536, "window_scale": -1}) == (65536, 1)
    assert window_and_scale({"window": MIB, "window_scale": -1}) == (MIB, 5)
    with pytest.raises(Exception, match="window_scale >= 5"):
        window_and_scale({"window": MIB, "window_scale": 2})


# --- each threat through the runner, with and without its defenses --------------------------------------


def test_blind_rst_resets_rfc793_and_rst_exact_answers_with_a_challenge_ack():
    base = _run("tcp.blind-rst", window=MIB)
    assert base.metrics["success_rate"] == 1.0
    assert 1 <= base.metrics["packets_to_success_mean"] <= 4096
    assert base.metrics["challenge_acks_sent_mean"] == 0 and base.metrics["victim_segments_sent_mean"] == 0
    exact = _run("tcp.blind-rst", ["rst-exact"], window=MIB)
    assert exact.metrics["success_rate"] == 0.0
    assert exact.metrics["packets_sent_mean"] == 4096
    # the sweep lands in the window once (twice where it wraps): the draft's challenge ACK
    assert 1 <= exact.metrics["challenge_acks_sent_mean"] <= 2
    both = _run("tcp.blind-rst", ["rst-exact", "challenge-ack-limit", "port-randomization"], window=MIB)
    assert both.metrics["success_rate"] == 0.0


def test_blind_rst_with_unknown_ports_sweeps_port_after_port():
    seq = _run("tcp.blind-rst", window=MIB, ports_known="false", connections_between=1)
    assert seq.metrics["success_rate"] == 1.0  # sequential ports: among the 3 the budget covers
    assert seq.metrics["packets_to_success_mean"] <= 3 * 4096
    rnd = _run("tcp.blind-rst", ["port-randomization"], window=MIB, ports_known="false",
               connections_between=1)
    assert rnd.metrics["success_rate"] == 0.0  # 3 of 16,383 ports
    assert rnd.metrics["packets_sent_mean"] == 3 * 4096


def test_blind_syn_resets_rfc793_and_syn_challenge_defeats_it():
    base = _run("tcp.blind-syn", window=MIB)
    assert base.metrics["success_rate"] == 1.0
    # RFC 793: an ACK for every out-of-window SYN, a RST for the one in the window
    assert base.metrics["victim_segments_sent_mean"] == base.metrics["packets_to_success_mean"]
    chal = _run("tcp.blind-syn", ["syn-challenge"], window=MIB)
    assert chal.metrics["success_rate"] == 0.0
    assert chal.metrics["challenge_acks_sent_mean"] == 4096  # every SYN challenged
    limited = _run("tcp.blind-syn", ["syn-challenge", "challenge-ack-limit"], window=MIB)
    assert limited.metrics["success_rate"] == 0.0
    assert limited.metrics["challenge_acks_sent_mean"] == limited.expected["challenge_acks_sent_mean"] == 10


def test_blind_data_injection_lands_rfc793_ack_check_and_md5_stop_it():
    base = _run("tcp.blind-data-injection", window=MIB)
    assert base.metrics["success_rate"] == 1.0
    assert base.metrics["packets_to_success_mean"] <= 2 * 4096
    assert 0 <= base.metrics["queued_mean"] <= 1
    checked = _run("tcp.blind-data-injection", ["ack-check"], window=MIB)
    assert checked.metrics["success_rate"] == 0.0
    assert checked.metrics["challenge_acks_sent_mean"] >= 1  # the in-window guesses had no acceptable ACK
    md5 = _run("tcp.blind-data-injection", ["tcp-md5"], window=MIB)
    assert md5.metrics["success_rate"] == 0.0
    assert md5.metrics["victim_segments_sent_mean"] == 0  # dropped unread, not even an ACK


def test_port_guessing_sequential_ports_fall_in_a_few_guesses_random_ones_do_not():
    seq = _run("tcp.port-guessing", trials=10, port_range=4096, connections_between=2)
    assert seq.metrics["success_rate"] == 1.0 and seq.metrics["packets_to_success_mean"] <= 5
    rnd = _run("tcp.port-guessing", ["port-randomization"], trials=10, port_range=4096)
    assert rnd.metrics["success_rate"] == 1.0 and rnd.metrics["packets_to_success_mean"] > 200


def test_a_bad_window_scale_names_the_parameter():
    with pytest.raises(Exception, match="window_scale"):
        _run("tcp.blind-rst", window=MIB, window_scale=0)


# --- the CLI and a pcap -------------------------------------------------------------------------------


def test_cli_run_blind_rst_json(tmp_path):
    res = CliRunner().invoke(cli, ["run", "tcp.blind-rst", "--json", "--trials", "2",
                                   "--param", f"window={MIB}", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["threat"] == "tcp.blind-rst"
    rows = {tuple(r["defenses"]): r for r in out["rows"]}
    assert set(rows) == {(), ("challenge-ack-limit", "port-randomization", "rst-exact")}
    assert rows[()]["metrics"]["success_rate"] == 1.0 and rows[()]["expected"]["success_rate"] == 1.0
    assert rows[("challenge-ack-limit", "port-randomization", "rst-exact")]["metrics"]["success_rate"] == 0.0


def test_cli_rejects_a_window_out_of_range(tmp_path):
    res = CliRunner().invoke(cli, ["run", "tcp.blind-rst", "--param", "window=10", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "window" in res.output


TSHARK = shutil.which("tshark")


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("tid,defenses", [("tcp.blind-rst", ["rst-exact"]), ("tcp.blind-syn", []),
                                          ("tcp.blind-data-injection", []),
                                          ("tcp.blind-data-injection", ["tcp-md5"])])
def test_pcap_of_a_short_trial_has_no_malformed_frames_or_bad_checksums(tmp_path, tid, defenses):
    """Spoofed RSTs, SYNs and out-of-window data draw TCP expert notes by design: "Connection
    reset (RST)" (a warning) for every spoofed RST, "A new tcp session is started with the same
    ports" for every SYN, "suspected retransmission" for data guesses, "Duplicate ACK" and "ACKed
    segment that wasn't captured" for the server's replies. They describe the attack, not a codec
    fault, so the filter is malformed packets and bad IP or TCP checksums only."""
    path = tmp_path / "trial.pcap"
    t = _threat(tid)
    params = t.resolve_params({"window": str(MIB), "budget": "300"})
    t.run_trial(params, frozenset(defenses), random.Random(5), pcap=str(path))
    out = subprocess.run(
        [TSHARK, "-n", "-r", str(path), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
         "-Y", '_ws.malformed || tcp.checksum.status == "Bad" || ip.checksum.status == "Bad"',
         "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    count = subprocess.run([TSHARK, "-n", "-r", str(path), "-Y", "tcp.flags.reset == 1 || tcp.flags.syn == 1 "
                            "|| tcp.len > 0", "-T", "fields", "-e", "frame.number"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert len(count.stdout.splitlines()) >= 300  # the attack's frames are in it and dissect as TCP
