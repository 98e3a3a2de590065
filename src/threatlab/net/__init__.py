"""The simulated network: event loop and clock, Ethernet segments, links, hosts, IP, routers, NAT,
adversary positions, taps and pcap traces.

    from threatlab.net import Simulator, build, lan, SegmentKind, Position
    sim = Simulator(seed=1)
    net = build(lan(2, SegmentKind.SWITCH, adversary=Position.SAME_LAN), sim)
"""

from threatlab.net.adversary import Adversary
from threatlab.net.bridge import Bridge
from threatlab.net.build import Network, build, chain, lan, natted, offpath
from threatlab.net.ethernet import Nic, Port, Segment, serialization_ns
from threatlab.net.host import EchoReply, Host, RoutingTable, UdpSocket
from threatlab.net.pcap import PcapWriter, read_pcap
from threatlab.net.router import Nat, NatConfig, NatMapping, Router
from threatlab.net.sim import NS_PER_MS, NS_PER_S, NS_PER_US, Simulator, Timer
from threatlab.net.topology import Link, NodeKind, Position, SegmentKind, Topology

__all__ = [
    "Adversary", "Bridge", "EchoReply", "Host", "Link", "NS_PER_MS", "NS_PER_S", "NS_PER_US", "Nat",
    "NatConfig", "NatMapping", "Network", "Nic", "NodeKind", "PcapWriter", "Port", "Position", "Router",
    "RoutingTable", "Segment", "SegmentKind", "Simulator", "Timer", "Topology", "UdpSocket", "build",
    "chain", "lan", "natted", "offpath", "read_pcap", "serialization_ns",
]
