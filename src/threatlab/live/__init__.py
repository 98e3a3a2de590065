"""Live mode: a topology as real Linux network namespaces, raw injection into it, and captures.

Needs root. Everything is scoped to namespaces named `tl-<run id>...` that a `LiveNetwork` creates
and deletes; the injector refuses any destination outside them.
"""

from threatlab.live.capture import Capture
from threatlab.live.inject import BudgetExhausted, Injector, Interlock, SweepResult, build_tcp_frame
from threatlab.live.namespaces import (
    FABRIC,
    LiveNetwork,
    cleanup_stale,
    live_unavailable_reason,
    require_root,
)
from threatlab.live.probe import ping

__all__ = [
    "FABRIC",
    "BudgetExhausted",
    "Capture",
    "Injector",
    "Interlock",
    "LiveNetwork",
    "SweepResult",
    "build_tcp_frame",
    "cleanup_stale",
    "live_unavailable_reason",
    "ping",
    "require_root",
]
