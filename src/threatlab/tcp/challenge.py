"""Challenge ACK throttling (tcpsecure 2.2: "send no more than 10 challenge ACKs in a 5 second
window. These values MUST be tunable"; RFC 5961 7)."""

from __future__ import annotations

from threatlab.errors import ParamError

__all__ = ["ChallengeAckLimiter"]


class ChallengeAckLimiter:
    """At most `count` challenge ACKs per fixed window of `interval_s` seconds, the window starting
    at the first challenge ACK after the previous one ended (as Linux's tcp_challenge_ack_limit).

    One instance per connection, or one per host shared by every endpoint of the host
    (`TcpConfig.challenge_ack_scope = "host"`). `sent` and `suppressed` count over its lifetime.
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
