"""A transparent two-port bridge: a bump in the wire with no addresses of its own.

Every frame that arrives on one port leaves by the other, unchanged, unless `intercept` is set:
then `intercept(frame, direction)` decides, where `direction` is the name of the port the frame
came in on. It returns the frame (or other bytes) to pass it on, None to drop it, or
(bytes, delay_ns) to pass it on later. This is where an on-path adversary stands.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from threatlab.errors import ParamError
from threatlab.net.ethernet import Nic
from threatlab.net.sim import Simulator
from threatlab.net.topology import NodeKind
from threatlab.net.wire import mac_bytes

__all__ = ["Bridge", "Verdict"]

Verdict = bytes | tuple[bytes, int] | None
Intercept = Callable[[bytes, str], Verdict]


class Bridge:
    kind = NodeKind.BRIDGE

    def __init__(self, name: str, sim: Simulator) -> None:
        self.name = name
        self.sim = sim
        self.interfaces: dict[str, Nic] = {}
        self.intercept: Intercept | None = None
        self.drops: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self._other: dict[Nic, Nic] = {}

    def add_interface(self, name: str, mac: bytes | str, ipv4: Any = None, ipv6: Any = None) -> Nic:
        if ipv4 is not None or ipv6 is not None:
            raise ParamError(f"bridge {self.name}: a bridge has no addresses")
        if len(self.interfaces) >= 2:
            raise ParamError(f"bridge {self.name}: a bridge has exactly two ports")
        nic = Nic(self.name, name, mac_bytes(mac) if isinstance(mac, str) else bytes(mac), self.sim)
        nic.promiscuous = True
        nic.handler = self._on_frame
        self.interfaces[name] = nic
        if len(self.interfaces) == 2:
            a, b = self.interfaces.values()
            self._other = {a: b, b: a}
        return nic

    def add_sniffer(self, callback: Callable[[bytes, str, int], Any], ifname: str | None = None) -> None:
        nics = [self.interfaces[ifname]] if ifname else list(self.interfaces.values())
        for nic in nics:
            nic.sniffers.append(callback)

    def raw_send(self, ifname: str, frame: bytes) -> bool:
        try:
            nic = self.interfaces[ifname]
        except KeyError:
            raise ParamError(f"bridge {self.name} has no interface {ifname!r}") from None
        return nic.transmit(bytes(frame))

    def _on_frame(self, nic: Nic, frame: bytes) -> None:
        out = self._other.get(nic)
        if out is None:
            self.drops["no-other-port"] += 1
            return
        hook = self.intercept
        if hook is None:
            self.stats["passed"] += 1
            out.transmit(frame, False)  # the same frame: an all-segment capture already holds it
            return
        verdict = hook(frame, nic.name)
        if verdict is None:
            self.drops["intercepted"] += 1
            return
        delay = 0
        if type(verdict) is tuple:
            verdict, delay = verdict
        data = bytes(verdict)
        modified = data != frame
        self.stats["modified" if modified else "passed"] += 1
        if delay > 0:
            self.stats["delayed"] += 1
            self.sim.post(delay, out.transmit, data, modified)
        else:
            out.transmit(data, modified)

    def __repr__(self) -> str:
        return f"<Bridge {self.name}>"
