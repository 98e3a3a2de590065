"""Engine benchmark: UDP ping-pong between two hosts across one switch, threatlab.net vs SimPy.

Both models move real Ethernet frames: every frame is built with `threatlab.net.wire` (UDP, IPv4,
Ethernet, padded to 60 bytes) and every received frame is decoded with it (Ethernet, IPv4 with
header checksum, UDP with checksum), so the per-frame codec work is the same and only the engine
differs: threatlab's heap loop, links, learning switch and host stack versus SimPy processes,
Stores and timeouts modelling the same two hosts, one learning switch and the same link delay.
One difference is the host stack's own: threatlab's host reads the EtherType from the 14-byte
header in place (the same checks) instead of building an `Ethernet` it has no use for; the SimPy
model calls `Ethernet.decode`. "codec only" times the full codec sequence, Ethernet.decode included.

    python -m benchmarks.bench_engine [--frames N] [--repeat R]

Prints a table and returns a dict of the figures (frames delivered per second, ratio).
"""

from __future__ import annotations

import argparse
import gc
import time
from ipaddress import IPv4Address

import simpy

from threatlab.net import Link, SegmentKind, Simulator, build, lan
from threatlab.net.wire import ETH_P_IP, IPPROTO_UDP, UDP, Ethernet, IPv4, pad_frame

DELAY_NS = 10_000  # one-way delay of each host's cable to the switch
PAYLOAD = b"x" * 32


# -- threatlab.net -----------------------------------------------------------------------------


def run_threatlab(round_trips: int) -> tuple[int, float]:
    """(frames delivered to hosts, wall seconds) for `round_trips` request/response exchanges."""
    sim = Simulator(seed=1)
    net = build(lan(2, SegmentKind.SWITCH, link=Link(delay_ns=DELAY_NS)), sim)
    h1, h2 = net.node("h1"), net.node("h2")
    h1.add_neighbor(h2.ip, h2.mac)  # static neighbours: the SimPy model has no ARP either
    h2.add_neighbor(h1.ip, h1.mac)
    server = h2.udp_socket(7)
    client = h1.udp_socket(40000)
    server_send = server.sendto
    client_send = client.sendto
    server.on_datagram = lambda data, addr, dst: server_send(data, addr)
    left = [round_trips]
    dst = (h2.ip, 7)

    def on_reply(data, addr, dst_ip):
        left[0] -= 1
        if left[0] > 0:
            client_send(data, dst)

    client.on_datagram = on_reply
    client_send(PAYLOAD, dst)
    gc.collect()
    t0 = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - t0
    assert left[0] == 0, "ping-pong did not finish"
    frames = h1.interfaces["eth0"].frames_in + h2.interfaces["eth0"].frames_in
    return frames, wall


# -- SimPy: the same model as processes and stores ---------------------------------------------


class _SimpyCable:
    """A one-way cable with propagation delay (the SimPy documentation's latency pattern)."""

    def __init__(self, env: simpy.Environment, delay: int, sink: simpy.Store) -> None:
        self.env = env
        self.delay = delay
        self.sink = sink

    def _latency(self, frame: bytes):
        yield self.env.timeout(self.delay)
        self.sink.put(frame)

    def put(self, frame: bytes) -> None:
        self.env.process(self._latency(frame))


class _SimpySwitch:
    """A learning switch process: learn the source MAC, send to the learned port or flood."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.inbox = simpy.Store(env)
        self.ports: list[_SimpyCable] = []
        self.fdb: dict[bytes, int] = {}
        env.process(self.run())

    def run(self):
        while True:
            ingress, frame = yield self.inbox.get()
            self.fdb[frame[6:12]] = ingress
            out = self.fdb.get(frame[:6]) if not frame[0] & 1 else None
            if out is None:
                for i, cable in enumerate(self.ports):
                    if i != ingress:
                        cable.put(frame)
            elif out != ingress:
                self.ports[out].put(frame)


class _SimpyHost:
    def __init__(self, env, index, mac, ip, peer_mac, peer_ip, uplink_to_switch) -> None:
        self.env = env
        self.index = index
        self.mac = mac
        self.ip = ip
        self.peer_mac = peer_mac
        self.peer_ip = peer_ip
        self.inbox = simpy.Store(env)
        self.uplink = uplink_to_switch
        self.frames_in = 0
        self.ip_id = 0

    def send(self, sport: int, dport: int, data: bytes) -> None:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        seg = UDP(sport, dport, data).encode(self.ip, self.peer_ip)
        packet = IPv4(self.ip, self.peer_ip, IPPROTO_UDP, seg, 64, 0, self.ip_id, False).encode()
        self.uplink.put((self.index, pad_frame(Ethernet(self.peer_mac, self.mac, ETH_P_IP, packet).encode())))

    def receive(self):
        frame = yield self.inbox.get()
        self.frames_in += 1
        eth = Ethernet.decode(frame)
        ip = IPv4.decode(eth.payload)
        udp = UDP.decode(ip.payload, ip.src, ip.dst)
        return udp


class _TaggedCable(_SimpyCable):
    def put(self, item) -> None:  # (ingress port, frame) into the switch
        self.env.process(self._latency(item))


def run_simpy(round_trips: int) -> tuple[int, float]:
    env = simpy.Environment()
    switch = _SimpySwitch(env)
    mac1, mac2 = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
    ip1, ip2 = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    to_switch = _TaggedCable(env, DELAY_NS, switch.inbox)
    h1 = _SimpyHost(env, 0, mac1, ip1, mac2, ip2, to_switch)
    h2 = _SimpyHost(env, 1, mac2, ip2, mac1, ip1, to_switch)
    switch.ports = [_SimpyCable(env, DELAY_NS, h1.inbox), _SimpyCable(env, DELAY_NS, h2.inbox)]

    def client():
        h1.send(40000, 7, PAYLOAD)
        for i in range(round_trips):
            udp = yield from h1.receive()
            if i + 1 < round_trips:
                h1.send(40000, 7, udp.payload)

    def server():
        while True:
            udp = yield from h2.receive()
            h2.send(7, udp.src_port, udp.payload)

    done = env.process(client())
    env.process(server())
    gc.collect()
    t0 = time.perf_counter()
    env.run(until=done)
    wall = time.perf_counter() - t0
    return h1.frames_in + h2.frames_in, wall


# -- the codec work alone ----------------------------------------------------------------------


def run_codec_only(frames: int) -> tuple[int, float]:
    """The per-frame codec work both models do, with no engine: what is left is engine overhead."""
    src, dst = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    mac1, mac2 = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
    gc.collect()
    t0 = time.perf_counter()
    for i in range(frames):
        seg = UDP(40000, 7, PAYLOAD).encode(src, dst)
        packet = IPv4(src, dst, IPPROTO_UDP, seg, 64, 0, i & 0xFFFF, False).encode()
        frame = pad_frame(Ethernet(mac2, mac1, ETH_P_IP, packet).encode())
        eth = Ethernet.decode(frame)
        ip = IPv4.decode(eth.payload)
        UDP.decode(ip.payload, ip.src, ip.dst)
    return frames, time.perf_counter() - t0


# -- driver ------------------------------------------------------------------------------------


def main(frames: int = 200_000, repeat: int = 3) -> dict:
    round_trips = frames // 2
    best = {}
    runs = (("threatlab", lambda: run_threatlab(round_trips)), ("simpy", lambda: run_simpy(round_trips)),
            ("codec only", lambda: run_codec_only(round_trips * 2)))
    for _ in range(repeat):  # interleaved, so a noisy neighbour hits every engine alike
        for name, fn in runs:
            n, wall = fn()
            if n / wall > best.get(name, (0, 0))[1]:
                best[name] = (n, n / wall)
    tl, sp, codec = best["threatlab"][1], best["simpy"][1], best["codec only"][1]
    result = {
        "benchmark": "udp ping-pong, 2 hosts, 1 learning switch, 10 us links, 32-byte payload",
        "frames": best["threatlab"][0],
        "threatlab_frames_per_s": round(tl),
        "simpy_frames_per_s": round(sp),
        "ratio": round(tl / sp, 2),
        "codec_us_per_frame": round(1e6 / codec, 2),
        "threatlab_engine_us_per_frame": round(1e6 / tl - 1e6 / codec, 2),
        "simpy_engine_us_per_frame": round(1e6 / sp - 1e6 / codec, 2),
        "simpy_version": simpy.__version__,
        "note": "both encode and decode every frame with threatlab.net.wire; only the engine differs"
        " (threatlab's host reads the Ethernet header in place instead of building an Ethernet)",
    }
    print(f"{result['benchmark']}; best of {repeat}, {result['frames']} frames each")
    print(f"{'engine':<14}{'frames/s':>12}{'us/frame':>10}{'engine us/frame':>17}")
    for name, rate in (("threatlab", tl), (f"simpy {simpy.__version__}", sp)):
        print(f"{name:<14}{round(rate):>12,}{1e6 / rate:>10.2f}{1e6 / rate - 1e6 / codec:>17.2f}")
    print(f"{'codec only':<14}{round(codec):>12,}{1e6 / codec:>10.2f}{0:>17.2f}")
    print(f"ratio threatlab/simpy: {result['ratio']}x ({result['note']})")
    return result


def profile(frames: int = 100_000, top: int = 20) -> None:
    """cProfile of the threatlab run: where a frame's time goes."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(run_threatlab, frames // 2)
    pstats.Stats(prof).sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="profile the threatlab run instead")
    args = ap.parse_args()
    if args.profile:
        profile(args.frames)
    else:
        main(args.frames, args.repeat)
