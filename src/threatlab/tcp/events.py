"""What a `TcpEndpoint` tells its user, as frozen slotted dataclasses (drained by `events()`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ChallengeAckSent",
    "ConnectionClosed",
    "ConnectionEstablished",
    "ConnectionReset",
    "ConnectionTimedOut",
    "DataReceived",
    "Event",
    "FinReceived",
    "SegmentDropped",
]


class Event:
    """Base of every endpoint event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class ConnectionEstablished(Event):
    """The handshake completed (SYN-SENT or SYN-RECEIVED -> ESTABLISHED)."""


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """In-order bytes the peer sent (or a blind attacker injected) for the application."""

    data: bytes


@dataclass(frozen=True, slots=True)
class FinReceived(Event):
    """The peer closed its direction: RFC 9293's "connection closing" signal; no more data comes."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The connection reached CLOSED without a reset: "closed" after an orderly close (LAST-ACK
    acknowledged or TIME-WAIT expired), "aborted" after abort(), "closed before established"
    after close() in LISTEN or SYN-SENT."""

    reason: str = "closed"


@dataclass(frozen=True, slots=True)
class ConnectionReset(Event):
    """The connection was torn down by the peer or by what claimed to be it: "rst received",
    "connection refused" (RST in SYN-SENT), "syn in window" (RFC 793: an in-window SYN in a
    synchronized state makes us send RST and close)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionTimedOut(Event):
    """Retransmissions of a SYN or data went unacknowledged beyond the configured limit."""

    retransmissions: int


@dataclass(frozen=True, slots=True)
class ChallengeAckSent(Event):
    """A challenge ACK went out (tcpsecure 2.2, 3.2, 4.2); `defense` is the defense id that sent it:
    "rst-exact", "syn-challenge" or "ack-check"."""

    defense: str


@dataclass(frozen=True, slots=True)
class SegmentDropped(Event):
    """A received segment had no effect beyond, at most, an ACK or RST in reply; `reason` is the
    same string the `segments_dropped` counter is keyed by."""

    reason: str
