"""The one error hierarchy of threatlab.

Library code raises these and nothing else for bad input; the CLI turns any of them into one
clear line on stderr and exit code 2 (bad usage or input) or 1 (the run failed).
"""

from __future__ import annotations


class ThreatlabError(Exception):
    """Base of every error threatlab raises on purpose."""


class DecodeError(ThreatlabError):
    """Bytes that are not a valid encoding of a protocol unit.

    `protocol` names the codec ("ipv4", "udp", ...), `field` the field that could not be read,
    `offset` the byte offset of that field in the buffer handed to the decoder, and `reason` says why.
    """

    def __init__(self, protocol: str, field: str, offset: int, reason: str) -> None:
        self.protocol = protocol
        self.field = field
        self.offset = offset
        self.reason = reason
        super().__init__(f"{protocol}: bad {field} at offset {offset}: {reason}")

    def __reduce__(self):  # picklable across process pools
        return (type(self), (self.protocol, self.field, self.offset, self.reason))


class UsageError(ThreatlabError):
    """Bad usage or input: an unknown threat, a malformed option, a file that cannot be read."""


class ParamError(UsageError):
    """A parameter value outside its type or range; the message names the parameter and its range."""


class TopologyError(UsageError):
    """A topology description that cannot be built (unknown segment, duplicate name, bad address)."""


class StoreError(ThreatlabError):
    """The results store cannot be opened or written."""


class LiveError(ThreatlabError):
    """Live mode cannot run: a missing tool, a namespace that cannot be made, a peer that did not start."""


class NotRootError(LiveError):
    """Live mode needs root (CAP_NET_ADMIN and CAP_NET_RAW)."""


class LiveSafetyError(LiveError):
    """Refused before a packet left: the destination is not one of this run's namespaces,
    or the packet or time budget is spent."""
