"""TCP (RFC 9293) with the defenses of draft-ietf-tcpm-tcpsecure-01 (RFC 5961) and RFC 2385.

- `wire`: the segment codec (`TcpSegment`, options, checksum, RFC 2385 signatures);
- `endpoint`: the sans-IO `TcpEndpoint`, configured by `TcpConfig`;
- `_state`: the connection state machine as data.
"""

from threatlab.tcp._state import State, TcpStateError
from threatlab.tcp.challenge import ChallengeAckLimiter
from threatlab.tcp.config import TcpConfig
from threatlab.tcp.endpoint import OutgoingSegment, TcpCounters, TcpEndpoint
from threatlab.tcp.events import (
    ChallengeAckSent,
    ConnectionClosed,
    ConnectionEstablished,
    ConnectionReset,
    ConnectionTimedOut,
    DataReceived,
    Event,
    FinReceived,
    SegmentDropped,
)
from threatlab.tcp.ports import choose_ephemeral_port
from threatlab.tcp.wire import (
    MSS,
    Md5Signature,
    Nop,
    Sack,
    SackPermitted,
    TcpFlags,
    TcpSegment,
    Timestamps,
    UnknownOption,
    WindowScale,
    md5_signature,
    sign_md5,
    verify_md5,
)

__all__ = [
    "MSS",
    "ChallengeAckLimiter",
    "ChallengeAckSent",
    "ConnectionClosed",
    "ConnectionEstablished",
    "ConnectionReset",
    "ConnectionTimedOut",
    "DataReceived",
    "Event",
    "FinReceived",
    "Md5Signature",
    "Nop",
    "OutgoingSegment",
    "Sack",
    "SackPermitted",
    "SegmentDropped",
    "State",
    "TcpConfig",
    "TcpCounters",
    "TcpEndpoint",
    "TcpFlags",
    "TcpSegment",
    "TcpStateError",
    "Timestamps",
    "UnknownOption",
    "WindowScale",
    "choose_ephemeral_port",
    "md5_signature",
    "sign_md5",
    "verify_md5",
]
