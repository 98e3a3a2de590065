"""Token buckets for the `rate_limit` defense: one per hardware address and one for all clients.
Time is integer nanoseconds; nothing here reads a clock."""

from __future__ import annotations

__all__ = ["TokenBucket", "BucketMap"]

_NS = 1_000_000_000


class TokenBucket:
    """`rate` tokens per second up to `depth`; a message takes one."""

    __slots__ = ("rate", "depth", "tokens", "stamp")

    def __init__(self, rate: float, depth: float, now: int) -> None:
        self.rate = rate
        self.depth = depth
        self.tokens = depth
        self.stamp = now

    def refill(self, now: int) -> None:
        if now > self.stamp:
            self.tokens = min(self.depth, self.tokens + (now - self.stamp) * self.rate / _NS)
            self.stamp = now

    def take(self, now: int) -> bool:
        self.refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class BucketMap:
    """A bucket per key. A flood of made-up keys cannot grow it without bound: past `max_keys`,
    the buckets that have refilled to full (they hold no state worth keeping) are forgotten."""

    __slots__ = ("rate", "depth", "max_keys", "_buckets")

    def __init__(self, rate: float, depth: float, max_keys: int = 65536) -> None:
        self.rate = rate
        self.depth = depth
        self.max_keys = max_keys
        self._buckets: dict[bytes, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: bytes, now: int) -> bool:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            b = self._buckets[key] = TokenBucket(self.rate, self.depth, now)
        return b.take(now)

    def _prune(self, now: int) -> None:
        for k, b in list(self._buckets.items()):
            b.refill(now)
            if b.tokens >= b.depth:
                del self._buckets[k]
