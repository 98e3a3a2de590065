"""Benchmark: tcpsecure 2.1's full blind-RST sweep (65,538 spoofed RSTs at RCV.WND = 65,535) in
simulation, threatlab against scapy building and dissecting the same segments, in the same run.

What is timed, exactly:

- threatlab, trial path: `BlindSweep.start(); sim.run()` on a network `tcp.blind-rst` builds
  (client, server and off-path attacker on a learning switch, the attacker's link at 10 Gbit/s),
  with its connection already open and rst-exact on, so that none of the 65,538 RSTs ends the
  sweep early. Per segment: the attacker stamps SEG.SEQ into its frame template (RFC 1624
  checksum update) and puts it on its link; the simulator carries it through the link (one event
  at the end of its serialization) and the switch (learning, forwarding); the server's NIC takes
  it, the host reads the Ethernet and IPv4 headers (header checksum verified; the host's fast
  dispatch for unfragmented, option-less packets hands TCP the addresses and the payload without
  building an `IPv4`), `TcpStack` demuxes it and `TcpEndpoint.receive` verifies the TCP checksum
  and judges the RST against RCV.NXT and RCV.WND (dropped, or a challenge ACK). Not timed:
  building the network, the handshake.
- threatlab, endpoint alone: the same 65,538 segments (the TCP part of the same frames, each
  stamped by the same template) handed to the same established `TcpEndpoint.receive(bytes, now,
  src)`, sans-IO, virtual time advancing by one frame time each: the modeled endpoint without the
  network.
- scapy: for the same 65,538 sequence numbers, `raw(Ether()/IP()/TCP(flags="R", seq=...))` (build,
  with scapy computing the IP and TCP checksums) and `Ether(frame)` plus reading `[TCP].seq`
  (dissect). scapy verifies no checksum and judges nothing, so it does less per segment.

Before timing, the first frames scapy builds are checked to be byte for byte threatlab's (without
the Ethernet padding): the same segments. Times are wall clock (`perf_counter`) and this process's
CPU time (`process_time`; less disturbed by other load on the machine); rates use the best of
`--repeat` runs for threatlab and one run for scapy (slow: about 50 s for the whole sweep).

    python -m benchmarks.bench_tcp_blind_rst [--repeat R] [--scapy-segments N] [--profile]
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from threatlab.net.sim import NS_PER_S
from threatlab.tcp.attacks import BlindSweep
from threatlab.tcp.threats import BLIND_RST, SERVER_PORT, open_scene, sweep_length, template_maker
from threatlab.tcp.wire import TcpFlags

WINDOW = 65535
SEGMENTS = sweep_length(WINDOW)  # 65,538
RATE = 10_000_000_000
GOAL_RATE = 250_000
GOAL_RATIO = 25


def _scene(seed: int = 1):
    params = BLIND_RST.resolve_params({"window": str(WINDOW), "rate": str(RATE)})
    rng = random.Random(seed)
    scene = open_scene(params, frozenset({"rst-exact"}), rng, None, ports_known=True)
    make = template_maker(scene, TcpFlags.RST)
    return scene, make, rng


def _timed(fn) -> tuple[float, float]:
    gc.collect()
    gc.disable()
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w0, time.process_time() - c0
    finally:
        gc.enable()


def run_trial_path(seed: int = 1) -> tuple[int, float, float, list[int]]:
    """(segments the endpoint received, wall s, cpu s, the sequence numbers sent)."""
    scene, make, rng = _scene(seed)
    sweep = BlindSweep(scene.net.adversary, scene.candidates, make, step=WINDOW, per_port=SEGMENTS,
                       budget=SEGMENTS, rng=rng)
    ep = scene.victim.endpoint
    before = ep.counters.segments_received

    def go() -> None:
        sweep.start()
        scene.sim.run()

    wall, cpu = _timed(go)
    received = ep.counters.segments_received - before
    assert sweep.sent == SEGMENTS == received, (sweep.sent, received)
    assert ep.state.name == "ESTABLISHED" or ep.counters.resets_accepted == 1
    start = sweep.starts[0]  # the random start the sweep drew
    seqs = [(start + i * WINDOW) & 0xFFFFFFFF for i in range(SEGMENTS)]
    return received, wall, cpu, seqs


def run_endpoint_only(seqs: list[int], seed: int = 1) -> tuple[int, float, float]:
    scene, make, _ = _scene(seed)
    tmpl = make(scene.candidates[0])
    ep = scene.victim.endpoint
    src = scene.client_conn.endpoint.local_ip
    frame_ns = 60 * 8 * NS_PER_S // RATE
    before = ep.counters.segments_received

    def go() -> None:
        receive = ep.receive
        frame = tmpl.frame
        now = scene.sim.now
        for seq in seqs:
            now += frame_ns
            receive(frame(seq)[34:54], now, src)  # the TCP segment of the frame

    wall, cpu = _timed(go)
    received = ep.counters.segments_received - before
    assert received == len(seqs)
    return received, wall, cpu


def _scapy_frame(seq: int, sport: int):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    return (Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:42")
            / IP(src="10.0.0.1", dst="10.0.0.2", id=0, flags="DF", ttl=64)
            / TCP(sport=sport, dport=SERVER_PORT, seq=seq, ack=0, flags="R", window=0))


def check_same_segments(seqs: list[int], n: int = 64) -> None:
    from scapy.compat import raw

    scene, make, _ = _scene()
    tmpl = make(scene.candidates[0])
    for seq in seqs[:n]:
        ours = tmpl.frame(seq)
        theirs = raw(_scapy_frame(seq, scene.candidates[0]))
        assert ours[: len(theirs)] == theirs and set(ours[len(theirs):]) <= {0}, "scapy builds other bytes"


def run_scapy(seqs: list[int], sport: int) -> tuple[int, float, float]:
    from scapy.compat import raw
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether

    def go() -> None:
        for seq in seqs:
            frame = raw(_scapy_frame(seq, sport))
            if Ether(frame)[TCP].seq != seq:
                raise AssertionError("scapy dissected another sequence number")

    wall, cpu = _timed(go)
    return len(seqs), wall, cpu


def main(repeat: int = 3, scapy_segments: int = SEGMENTS) -> dict:
    import scapy

    best_trial = best_ep = None
    seqs: list[int] = []
    for i in range(repeat):
        n, wall, cpu, seqs = run_trial_path(seed=1 + i)
        if best_trial is None or cpu < best_trial[2]:
            best_trial = (n, wall, cpu)
        m, wall2, cpu2 = run_endpoint_only(seqs, seed=1 + i)
        if best_ep is None or cpu2 < best_ep[2]:
            best_ep = (m, wall2, cpu2)
    check_same_segments(seqs)
    scene, _, _ = _scene()
    sc = run_scapy(seqs[:scapy_segments], scene.candidates[0])
    rate = {name: (n / cpu, n / wall) for name, (n, wall, cpu) in
            (("trial", best_trial), ("endpoint", best_ep), ("scapy", sc))}
    result = {
        "benchmark": f"blind-RST sweep, {SEGMENTS} RSTs at RCV.WND = {WINDOW}",
        "segments": SEGMENTS,
        "trial_path_segments_per_s_cpu": round(rate["trial"][0]),
        "trial_path_segments_per_s_wall": round(rate["trial"][1]),
        "endpoint_only_segments_per_s_cpu": round(rate["endpoint"][0]),
        "endpoint_only_segments_per_s_wall": round(rate["endpoint"][1]),
        "scapy_segments": sc[0],
        "scapy_build_dissect_per_s_cpu": round(rate["scapy"][0]),
        "scapy_build_dissect_per_s_wall": round(rate["scapy"][1]),
        "ratio_trial_path_over_scapy": round(rate["trial"][0] / rate["scapy"][0], 1),
        "ratio_endpoint_over_scapy": round(rate["endpoint"][0] / rate["scapy"][0], 1),
        "scapy_version": scapy.VERSION,
    }
    print(f"{result['benchmark']}; threatlab best of {repeat}, scapy on {sc[0]} segments")
    print(f"{'what':<46}{'seg/s (cpu)':>13}{'seg/s (wall)':>14}{'us/seg':>9}")
    for label, key in (("threatlab trial path (net + stack + endpoint)", "trial"),
                       ("threatlab endpoint alone (sans-IO)", "endpoint"),
                       (f"scapy {scapy.VERSION} build + dissect", "scapy")):
        c, w = rate[key]
        print(f"{label:<46}{round(c):>13,}{round(w):>14,}{1e6 / c:>9.2f}")
    for label, key in (("trial path", "trial"), ("endpoint alone", "endpoint")):
        c = rate[key][0]
        print(f"{label}: {c / rate['scapy'][0]:.0f}x scapy (goal {GOAL_RATIO}x: "
              f"{'met' if c / rate['scapy'][0] >= GOAL_RATIO else 'MISSED'}); "
              f"{round(c):,} seg/s (goal {GOAL_RATE:,}: {'met' if c >= GOAL_RATE else 'MISSED'})")
    return result


def profile(top: int = 25) -> None:
    """cProfile of the trial path: where a segment's time goes."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(run_trial_path)
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scapy-segments", type=int, default=SEGMENTS,
                    help="how many of the sweep's segments scapy builds and dissects (default: all)")
    ap.add_argument("--profile", action="store_true", help="profile the trial path instead")
    args = ap.parse_args()
    if args.profile:
        profile()
    else:
        main(args.repeat, args.scapy_segments)
