"""Packet capture to a pcap file, from inside a live run's namespaces.

`Capture(net, "alice", path)` records alice's first interface (or `ifname=`); `Capture(net, "lan",
path)` records the whole segment: the bridge of `lan` in the fabric namespace, which in promiscuous
mode sees every frame crossing the segment, forwarded or flooded (a segment built as a direct veth
pair is recorded on its first member's interface, which sees both directions). tcpdump does the
recording (`-w`, Ethernet link type, full snap length); stopping waits for it to flush and exit.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Self

from threatlab.errors import LiveError, TopologyError
from threatlab.live.namespaces import FABRIC, LiveNetwork

__all__ = ["Capture"]

_STATS = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")


class Capture:
    """Records frames seen at a node's interface or on a segment into the pcap file `path`.

    A context manager: recording has started when `__enter__` returns, and `__exit__` (or `stop()`)
    waits `linger` seconds for frames still in flight, stops tcpdump with SIGINT and waits for it.
    `filter` is a pcap filter expression. After stopping, `captured` and `dropped` hold tcpdump's
    counts (`dropped`: frames the capture buffer had no room for; raise `buffer_kib` if not 0).
    """

    def __init__(
        self,
        net: LiveNetwork,
        node_or_segment: str,
        path: str | os.PathLike[str],
        filter: str | None = None,
        *,
        ifname: str | None = None,
        linger: float = 0.05,
        start_timeout: float = 5.0,
        snaplen: int | None = None,
        buffer_kib: int = 65536,
    ) -> None:
        self.net = net
        self.path = Path(path)
        self.filter = filter
        self.linger = linger
        self.start_timeout = start_timeout
        # In immediate mode libpcap uses a TPACKET_V2 ring of snaplen-sized slots, so the snap length
        # decides how many frames the buffer holds: the largest frame of the topology, not 256 KiB.
        mtu = max((i.link.mtu for n in net.topology.nodes for i in n.interfaces), default=1500)
        self.snaplen = snaplen or mtu + 14 + 8
        self.buffer_kib = buffer_kib
        self.captured: int | None = None
        self.dropped: int | None = None
        self._proc: subprocess.Popen | None = None
        self.where, self.device = self._resolve(node_or_segment, ifname)

    def _resolve(self, name: str, ifname: str | None) -> tuple[str, str]:
        """(node name or FABRIC, device) to record on."""
        topo = self.net.topology
        if name in {n.name for n in topo.nodes}:
            node = topo.node(name)
            if ifname is None:
                if not node.interfaces:
                    raise TopologyError(f"node {name!r} has no interfaces to capture on")
                ifname = node.interfaces[0].name
            node.interface(ifname)
            return name, ifname
        if name in {s.name for s in topo.segments}:
            if ifname is not None:
                raise TopologyError("ifname applies to a node, not to a segment")
            if self.net.is_direct(name):
                member, iface = self.net.members(name)[0]
                return member, iface.name
            return FABRIC, self.net.bridge_of(name)
        raise TopologyError(f"{name!r} is neither a node nor a segment of topology {topo.name!r}")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        tcpdump = shutil.which("tcpdump") or next(
            (p for p in ("/usr/bin/tcpdump", "/usr/sbin/tcpdump") if os.access(p, os.X_OK)), None
        )
        if tcpdump is None:
            raise LiveError("capture needs tcpdump, which is not installed")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            tcpdump,
            "-i",
            self.device,
            "-w",
            str(self.path),
            "-U",
            "-n",
            "-s",
            str(self.snaplen),
            "--immediate-mode",
            "-B",
            str(self.buffer_kib),
            "-Z",
            "root",
            "-y",
            "EN10MB",
        ]
        if self.filter:
            argv.append(self.filter)
        proc = self.net.run(self.where, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._proc = proc
        self._stderr = b""
        deadline = time.monotonic() + self.start_timeout
        assert proc.stderr is not None
        while b"listening on" not in self._stderr:  # tcpdump says so once the socket is live
            left = deadline - time.monotonic()
            if proc.poll() is not None or left <= 0:
                self._stop_proc()
                detail = (self._stderr + (proc.stderr.read() or b"")).decode(errors="replace").strip()
                where = f"{self.where}/{self.device}"
                raise LiveError(f"tcpdump on {where} did not start: {detail or 'timed out'}")
            ready, _, _ = select.select([proc.stderr], [], [], left)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 4096)
                self._stderr += chunk

    def _stop_proc(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # tcpdump flushes the file and prints its counts
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def stop(self) -> None:
        """Stop recording; idempotent. Raises LiveError if tcpdump failed."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None and self.linger > 0:
            time.sleep(self.linger)
        self._stop_proc()
        assert proc.stderr is not None
        rest = proc.stderr.read() or b""
        proc.stderr.close()
        self._proc = None
        text = (self._stderr + rest).decode(errors="replace")
        for count, what in _STATS.findall(text):
            if what == "captured":
                self.captured = int(count)
            elif what == "dropped by kernel":
                self.dropped = int(count)
        if proc.returncode not in (0, -signal.SIGINT) and self.captured is None:
            raise LiveError(f"tcpdump on {self.where}/{self.device} failed: {text.strip()}")
