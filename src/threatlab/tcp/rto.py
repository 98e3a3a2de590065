"""The retransmission timer's value, RFC 6298, in integer nanoseconds."""

from __future__ import annotations

__all__ = ["RtoEstimator"]

_K = 4


class RtoEstimator:
    """SRTT, RTTVAR and RTO of RFC 6298 2; `backoff()` is 5.5, `on_sample()` 2.2/2.3 with the 1 s
    floor of 2.4 (here `min_ns`, configurable) and the ceiling of 2.5.

    Karn's algorithm (RFC 6298 3) is the caller's job: it must not sample a retransmitted segment.
    A backed-off RTO stays until the next valid sample recomputes it.
    """

    __slots__ = ("granularity_ns", "initial_ns", "max_ns", "min_ns", "rto", "rttvar", "srtt")

    def __init__(self, initial_ns: int, min_ns: int, max_ns: int, granularity_ns: int) -> None:
        self.srtt: int | None = None
        self.rttvar: int | None = None
        self.rto = initial_ns  # 2.1: 1 second until a measurement is made
        self.initial_ns = initial_ns
        self.min_ns = min_ns
        self.max_ns = max_ns
        self.granularity_ns = granularity_ns

    def on_sample(self, r: int) -> None:
        if self.srtt is None:
            # 2.2: the first measurement
            self.srtt = r
            self.rttvar = r // 2
        else:
            # 2.3: alpha = 1/8, beta = 1/4; RTTVAR is updated with the old SRTT
            assert self.rttvar is not None
            self.rttvar = (3 * self.rttvar + abs(self.srtt - r)) // 4
            self.srtt = (7 * self.srtt + r) // 8
        rto = self.srtt + max(self.granularity_ns, _K * self.rttvar)
        self.rto = min(max(rto, self.min_ns), self.max_ns)

    def backoff(self) -> None:
        # 5.5: back off the timer, bounded by the maximum of 2.5
        self.rto = min(self.rto * 2, self.max_ns)

    def after_syn_timeout(self) -> None:
        # 5.7: "If the timer expires awaiting the ACK of a SYN segment and the TCP implementation
        # is using an RTO less than 3 seconds, the RTO MUST be re-initialized to 3 seconds when data
        # transmission begins": the backed-off handshake value is dropped, as Linux does.
        if self.initial_ns < 3_000_000_000:
            self.rto = 3_000_000_000
