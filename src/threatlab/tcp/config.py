"""`TcpConfig`: the knobs of a `TcpEndpoint` and its defense switches.

The default is RFC 793's behaviour, the baseline draft-ietf-tcpm-tcpsecure-01 improves on, so "no
defense" is the honest historical behaviour. Defense fields are named after the catalogue's defense
ids (`rst_exact` is "rst-exact", ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from threatlab.errors import ParamError

__all__ = ["NS_PER_S", "TcpConfig"]

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class TcpConfig:
    # --- defenses (draft-ietf-tcpm-tcpsecure-01; RFC 5961) -------------------------------------
    # tcpsecure 2.2: reset only on SEG.SEQ == RCV.NXT; other in-window RSTs get a challenge ACK.
    rst_exact: bool = False
    # tcpsecure 3.2: any SYN in a synchronized state gets a challenge ACK, never a reset.
    syn_challenge: bool = False
    # tcpsecure 4.2: accept SEG.ACK only in SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT.
    ack_check: bool = False
    # tcpsecure 2.2: at most `count` challenge ACKs per `interval` seconds (the draft suggests 10, 5.0).
    challenge_ack_limit: tuple[int, float] | None = None
    # one limiter per connection, or one per host shared by all its endpoints (pass the same
    # `ChallengeAckLimiter` to each; Linux's tcp_challenge_ack_limit was host-global).
    challenge_ack_scope: Literal["connection", "host"] = "connection"
    # Linux 4.7's fix for CVE-2016-5696: "random" draws each interval's budget anew as
    # ceil(count/2) + uniform(0..count-1) (a `RandomizedChallengeAckLimiter`, for either scope);
    # "fixed" lets out exactly `count`, as the draft says.
    challenge_ack_budget: Literal["fixed", "random"] = "fixed"
    # tcpsecure 1 / RFC 6056: random ephemeral ports (see `choose_ephemeral_port`).
    port_randomization: bool = False
    ephemeral_ports: tuple[int, int] = (49152, 65535)
    # RFC 2385: sign every segment sent; drop every segment received without a valid signature.
    tcp_md5_key: bytes | None = None

    # --- ordinary knobs ---------------------------------------------------------------------------
    rcv_buf: int = 65535  # receive buffer, the largest RCV.WND (the draft: 32 KiB to 64 KiB)
    window_scale: int | None = None  # RFC 7323 shift offered in our SYN; None: no option (RFC 793)
    mss: int = 1460  # the MSS we announce; we send at most min(this, the peer's MSS)
    auto_consume: bool = True  # DataReceived frees receive buffer at once; else call consume()
    msl_ns: int = 120 * NS_PER_S  # RFC 793: MSL of 2 minutes; TIME-WAIT lasts 2*MSL
    rto_initial_ns: int = 1 * NS_PER_S  # RFC 6298 2.1
    rto_min_ns: int = 1 * NS_PER_S  # RFC 6298 2.4
    rto_max_ns: int = 60 * NS_PER_S  # RFC 6298 2.5
    clock_granularity_ns: int = 1_000_000  # G of RFC 6298 2
    max_retransmissions: int = 15  # R2 of RFC 9293 3.8.3 as a count (Linux tcp_retries2)
    max_syn_retransmissions: int = 6  # Linux tcp_syn_retries
    verify_checksum: bool = True  # receive(bytes) checks the checksum over the pseudo-header

    def __post_init__(self) -> None:
        if self.challenge_ack_limit is not None:
            count, interval = self.challenge_ack_limit
            if not isinstance(count, int) or count < 0:
                raise ParamError(f"challenge_ack_limit count {count!r} must be an integer >= 0")
            if not interval > 0:
                raise ParamError(f"challenge_ack_limit interval {interval!r} must be > 0 seconds")
        if self.challenge_ack_scope not in ("connection", "host"):
            raise ParamError(
                f"challenge_ack_scope {self.challenge_ack_scope!r} must be 'connection' or 'host'"
            )
        if self.challenge_ack_budget not in ("fixed", "random"):
            raise ParamError(
                f"challenge_ack_budget {self.challenge_ack_budget!r} must be 'fixed' or 'random'"
            )
        if self.challenge_ack_budget == "random" and self.challenge_ack_limit is not None \
                and self.challenge_ack_limit[0] < 1:
            raise ParamError("a random challenge ACK budget needs a challenge_ack_limit count >= 1")
        lo, hi = self.ephemeral_ports
        if not 1 <= lo <= hi <= 65535:
            raise ParamError(
                f"ephemeral_ports {self.ephemeral_ports!r} must satisfy 1 <= low <= high <= 65535"
            )
        if self.tcp_md5_key is not None and not 1 <= len(self.tcp_md5_key) <= 80:
            raise ParamError("tcp_md5_key must be 1..80 bytes (RFC 2385 keys as Linux accepts them)")
        if not 1 <= self.rcv_buf <= 0x3FFFFFFF:
            raise ParamError(f"rcv_buf {self.rcv_buf} must be 1..2**30-1 bytes")
        if self.window_scale is not None and not 0 <= self.window_scale <= 14:
            raise ParamError(f"window_scale {self.window_scale} must be 0..14 (RFC 7323 2.3)")
        if self.window_scale is None and self.rcv_buf > 65535:
            raise ParamError(f"rcv_buf {self.rcv_buf} above 65535 needs window_scale")
        if not 1 <= self.mss <= 65495:
            raise ParamError(f"mss {self.mss} must be 1..65495")
        for name in ("msl_ns", "rto_initial_ns", "rto_min_ns", "rto_max_ns"):
            if getattr(self, name) <= 0:
                raise ParamError(f"{name} must be > 0 nanoseconds")
        if self.rto_min_ns > self.rto_max_ns:
            raise ParamError("rto_min_ns must not exceed rto_max_ns")
        if self.max_retransmissions < 0 or self.max_syn_retransmissions < 0:
            raise ParamError("max_retransmissions and max_syn_retransmissions must be >= 0")

    @property
    def defenses(self) -> frozenset[str]:
        """The catalogue ids of the defenses this config switches on."""
        on = set()
        for field, ident in (
            ("rst_exact", "rst-exact"),
            ("syn_challenge", "syn-challenge"),
            ("ack_check", "ack-check"),
            ("port_randomization", "port-randomization"),
        ):
            if getattr(self, field):
                on.add(ident)
        if self.challenge_ack_limit is not None:
            on.add("challenge-ack-limit")
        if self.challenge_ack_budget == "random":
            on.add("challenge-ack-random-budget")
        if self.tcp_md5_key is not None:
            on.add("tcp-md5")
        return frozenset(on)
