"""The TCP connection state machine of RFC 9293 3.3.2 (figure 5) as data.

As in h11's `_state.py`: every legal transition is one entry of `TRANSITIONS`, and `transition()`
is the one place that raises for an illegal one. The endpoint decides *which* trigger a segment or
a user call amounts to (that is where the RFC's segment-arrival rules and the tcpsecure defenses
live); this module only says where each trigger leads from each state.
"""

from __future__ import annotations

from enum import Enum

from threatlab.errors import ThreatlabError

__all__ = [
    "SEND_STATES",
    "SYNCHRONIZED",
    "TRANSITIONS",
    "State",
    "TcpStateError",
    "Trigger",
    "check_send",
    "transition",
]


class TcpStateError(ThreatlabError):
    """A user call or trigger that the connection's current state does not allow
    (RFC 9293 3.10: "error: connection does not exist", "error: connection closing", ...)."""


class State(Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    def __repr__(self) -> str:
        return f"State.{self.name}"

    # Members are singletons compared by identity: hash them by identity too, in C, since the
    # endpoint tests set membership on every segment (Enum's own __hash__ is Python code).
    __hash__ = object.__hash__


class Trigger(Enum):
    PASSIVE_OPEN = "listen()"
    ACTIVE_OPEN = "connect()"
    RCV_SYN = "SYN received"
    RCV_SYN_ACK = "SYN,ACK acknowledging our SYN received"
    RCV_ACK_OF_SYN = "ACK of our SYN received"
    CLOSE = "close()"
    RCV_FIN = "FIN received"
    RCV_ACK_OF_FIN = "ACK of our FIN received"
    TIMEOUT_2MSL = "2*MSL timer expired"
    RCV_RST = "acceptable RST received"
    RETURN_TO_LISTEN = "RST or in-window SYN in SYN-RECEIVED after a passive open"
    RESET = "connection reset: in-window SYN, abort(), retransmission limit"


S = State
T = Trigger

# The synchronized states of RFC 793 3.4: the ones the tcpsecure defenses apply to.
SYNCHRONIZED = frozenset(
    {S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK, S.TIME_WAIT}
)
# States in which send() queues data (in SYN-SENT and SYN-RECEIVED it goes out once established).
SEND_STATES = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT})

_RESETTABLE = (S.LISTEN, S.SYN_SENT, S.SYN_RECEIVED) + tuple(SYNCHRONIZED)

TRANSITIONS: dict[State, dict[Trigger, State]] = {
    S.CLOSED: {
        T.PASSIVE_OPEN: S.LISTEN,
        T.ACTIVE_OPEN: S.SYN_SENT,
    },
    S.LISTEN: {
        T.RCV_SYN: S.SYN_RECEIVED,
        T.CLOSE: S.CLOSED,
    },
    S.SYN_SENT: {
        T.RCV_SYN_ACK: S.ESTABLISHED,
        T.RCV_SYN: S.SYN_RECEIVED,  # simultaneous open (RFC 9293 3.5, figure 8)
        T.CLOSE: S.CLOSED,
    },
    S.SYN_RECEIVED: {
        # close() here is queued until ESTABLISHED (RFC 9293 3.10.4 allows it), so figure 5's
        # SYN-RECEIVED --CLOSE--> FIN-WAIT-1 edge is taken as ESTABLISHED --CLOSE--> FIN-WAIT-1
        T.RCV_ACK_OF_SYN: S.ESTABLISHED,
        T.RETURN_TO_LISTEN: S.LISTEN,
    },
    S.ESTABLISHED: {
        T.CLOSE: S.FIN_WAIT_1,
        T.RCV_FIN: S.CLOSE_WAIT,
    },
    S.FIN_WAIT_1: {
        T.CLOSE: S.FIN_WAIT_1,  # a second close() is accepted and sends no second FIN
        T.RCV_ACK_OF_FIN: S.FIN_WAIT_2,
        T.RCV_FIN: S.CLOSING,
    },
    S.FIN_WAIT_2: {
        T.CLOSE: S.FIN_WAIT_2,
        T.RCV_FIN: S.TIME_WAIT,
    },
    S.CLOSE_WAIT: {
        T.CLOSE: S.LAST_ACK,
        T.RCV_FIN: S.CLOSE_WAIT,  # a retransmitted FIN
    },
    S.CLOSING: {
        T.CLOSE: S.CLOSING,
        T.RCV_ACK_OF_FIN: S.TIME_WAIT,
        T.RCV_FIN: S.CLOSING,
    },
    S.LAST_ACK: {
        T.CLOSE: S.LAST_ACK,
        T.RCV_ACK_OF_FIN: S.CLOSED,
        T.RCV_FIN: S.LAST_ACK,
    },
    S.TIME_WAIT: {
        T.CLOSE: S.TIME_WAIT,
        T.RCV_FIN: S.TIME_WAIT,  # a retransmitted FIN restarts the 2*MSL timer
        T.TIMEOUT_2MSL: S.CLOSED,
    },
}
for _s in _RESETTABLE:
    TRANSITIONS[_s][T.RESET] = S.CLOSED
    if _s is not S.LISTEN:
        TRANSITIONS[_s][T.RCV_RST] = S.CLOSED
del _s


def transition(state: State, trigger: Trigger) -> State:
    """The state `trigger` leads to from `state`; TcpStateError if the machine has no such edge."""
    try:
        return TRANSITIONS[state][trigger]
    except KeyError:
        raise TcpStateError(f"tcp: {trigger.value} is not allowed in state {state.value}") from None


def check_send(state: State) -> None:
    """RFC 9293 3.10.2: SEND is an error in CLOSED and LISTEN here, and once our side has closed."""
    if state not in SEND_STATES:
        if state is S.CLOSED or state is S.LISTEN:
            raise TcpStateError(f"tcp: error: connection does not exist (state {state.value})")
        raise TcpStateError(f"tcp: error: connection closing (state {state.value})")
