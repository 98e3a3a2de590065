"""A classic libpcap writer: Ethernet link type, nanosecond timestamps of virtual time.

The file is little-endian with the nanosecond magic 0xa1b23c4d, so Wireshark and tshark show
virtual time to the nanosecond. The bytes depend only on the frames and their times, so the same
seed gives the same file.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from threatlab.errors import UsageError

__all__ = ["PcapWriter", "read_pcap", "LINKTYPE_ETHERNET", "PCAP_NS_MAGIC"]

PCAP_NS_MAGIC = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
SNAPLEN = 262144

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


class PcapWriter:
    """Write frames to `path` (or to an open binary file) as a pcap with nanosecond timestamps.

    Use as a context manager or call `close()`; `write(frame, time_ns)` appends one record.
    """

    __slots__ = ("path", "_file", "_owns", "frames")

    def __init__(self, path: str | os.PathLike[str] | BinaryIO, snaplen: int = SNAPLEN) -> None:
        if hasattr(path, "write"):
            self.path = None
            self._file = path
            self._owns = False
        else:
            self.path = os.fspath(path)
            try:
                self._file = open(self.path, "wb")
            except OSError as exc:
                raise UsageError(f"cannot write pcap {self.path}: {exc.strerror}") from None
            self._owns = True
        self.frames = 0
        self._file.write(_GLOBAL.pack(PCAP_NS_MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))

    def write(self, frame: bytes, time_ns: int) -> None:
        sec, nsec = divmod(time_ns, 1_000_000_000)
        n = len(frame)
        self._file.write(_RECORD.pack(sec, nsec, n, n))
        self._file.write(frame)
        self.frames += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._file is None:
            return
        if self._owns:
            self._file.close()
        else:
            self._file.flush()
        self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(path: str | os.PathLike[str]) -> list[tuple[int, bytes]]:
    """Read a file written by PcapWriter back as [(time_ns, frame)] (for tests and reports)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _GLOBAL.size:
        raise UsageError(f"{path}: too short for a pcap header")
    magic, _, _, _, _, _, linktype = _GLOBAL.unpack_from(data, 0)
    if magic != PCAP_NS_MAGIC or linktype != LINKTYPE_ETHERNET:
        raise UsageError(f"{path}: not a little-endian nanosecond Ethernet pcap")
    out = []
    off = _GLOBAL.size
    while off < len(data):
        if off + _RECORD.size > len(data):
            raise UsageError(f"{path}: truncated record header at offset {off}")
        sec, nsec, incl, _ = _RECORD.unpack_from(data, off)
        off += _RECORD.size
        if off + incl > len(data):
            raise UsageError(f"{path}: truncated record at offset {off}")
        out.append((sec * 1_000_000_000 + nsec, data[off : off + incl]))
        off += incl
    return out
