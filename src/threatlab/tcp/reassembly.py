"""The receiver's out-of-order queue (RFC 9293 3.10.7.4, seventh: segments "held for later
processing") in unbounded byte offsets, so sequence-number wraparound never reaches it.

Bytes that arrive first win: a later segment overlapping held bytes only fills the gaps. This is
what makes tcpsecure 4.1's injection stick: injected bytes sit here until the real sender bridges
the gap, and the real bytes for the same offsets are then discarded as duplicates.
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["ReassemblyQueue"]


class ReassemblyQueue:
    __slots__ = ("_datas", "_ends", "_starts", "bytes_held")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._datas: list[bytes] = []
        self.bytes_held = 0

    def __len__(self) -> int:
        return len(self._starts)

    def add(self, start: int, data: bytes) -> int:
        """Hold `data` at offset `start`, keeping bytes already held; return how many were new."""
        end = start + len(data)
        starts, ends = self._starts, self._ends
        i = bisect_right(ends, start)  # first piece ending after `start`
        pos = start
        pieces = []
        while i < len(starts) and starts[i] < end:
            if starts[i] > pos:
                pieces.append((pos, starts[i]))
            pos = max(pos, ends[i])
            i += 1
        if pos < end:
            pieces.append((pos, end))
        added = 0
        for s, e in pieces:
            j = bisect_right(starts, s)
            starts.insert(j, s)
            ends.insert(j, e)
            self._datas.insert(j, data[s - start : e - start])
            added += e - s
        self.bytes_held += added
        return added

    def pop_ready(self, pos: int) -> bytes:
        """Remove and return the bytes contiguous from offset `pos` (pieces wholly before `pos`
        are discarded as duplicates)."""
        starts, ends, datas = self._starts, self._ends, self._datas
        out = []
        while starts and starts[0] <= pos:
            s, e, d = starts.pop(0), ends.pop(0), datas.pop(0)
            self.bytes_held -= e - s
            if e > pos:
                out.append(d[pos - s :])
                pos = e
        return b"".join(out)

    def first_offset(self) -> int | None:
        return self._starts[0] if self._starts else None
