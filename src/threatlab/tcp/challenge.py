"""Challenge ACK throttling (tcpsecure 2.2: "send no more than 10 challenge ACKs in a 5 second
window. These values MUST be tunable"; RFC 5961 7), and Linux 4.7's randomized budget against the
side channel a shared fixed one opens (CVE-2016-5696)."""

from __future__ import annotations

import random

from threatlab.errors import ParamError

__all__ = ["ChallengeAckLimiter", "RandomizedChallengeAckLimiter"]


class ChallengeAckLimiter:
    """At most `count` challenge ACKs per fixed window of `interval_s` seconds, the window starting
    at the first challenge ACK after the previous one ended (as Linux's tcp_challenge_ack_limit).

    One instance per connection, or one per host shared by every endpoint of the host
    (`TcpConfig.challenge_ack_scope = "host"`). `sent` and `suppressed` count over its lifetime.
    `TcpConfig.challenge_ack_budget = "random"` makes it a `RandomizedChallengeAckLimiter`.
    """

    __slots__ = ("_in_window", "_window_start", "count", "interval_ns", "sent", "suppressed")

    def __init__(self, count: int, interval_s: float) -> None:
        if count < 0 or not interval_s > 0:
            raise ParamError(f"challenge ACK limit {count} per {interval_s} s: need count >= 0, interval > 0")
        self.count = count
        self.interval_ns = round(interval_s * 1e9)
        self._window_start: int | None = None
        self._in_window = 0
        self.sent = 0
        self.suppressed = 0

    def allow(self, now: int) -> bool:
        """Whether a challenge ACK may go out at `now` (ns); counts it if so."""
        start = self._window_start
        if start is None or now - start >= self.interval_ns:
            self._window_start = now
            self._in_window = 0
        if self._in_window < self.count:
            self._in_window += 1
            self.sent += 1
            return True
        self.suppressed += 1
        return False


class RandomizedChallengeAckLimiter(ChallengeAckLimiter):
    """Linux's fix for CVE-2016-5696 (commit 75ff39ccc1bd, Linux 4.7): at the start of each
    interval the budget is drawn anew as ceil(count/2) + uniform(0 .. count-1), so an observer who
    counts the challenge ACKs it gets cannot tell whether someone else used one up.

    The window starts as `ChallengeAckLimiter`'s does (at the first challenge ACK after the last
    window ended); Linux aligns it to the second of its clock. `rng` is the owner's generator (the
    endpoint's for a per-connection limiter, the stack's for a host-wide one); one draw per
    interval, made when its first challenge ACK is asked for. `budgets` records every draw.
    """

    __slots__ = ("_budget", "_half", "budgets", "rng")

    def __init__(self, count: int, interval_s: float, rng: random.Random) -> None:
        super().__init__(count, interval_s)
        if count < 1:
            raise ParamError("a randomized challenge ACK budget needs count >= 1")
        self.rng = rng
        self._half = (count + 1) >> 1
        self._budget = count
        self.budgets: list[int] = []

    def allow(self, now: int) -> bool:
        start = self._window_start
        if start is None or now - start >= self.interval_ns:
            self._window_start = now
            self._in_window = 0
            self._budget = self._half + self.rng.randrange(self.count)
            self.budgets.append(self._budget)
        if self._in_window < self._budget:
            self._in_window += 1
            self.sent += 1
            return True
        self.suppressed += 1
        return False
