"""P2PSIP overlay (draft-song-p2psip-security-eval-00), with RELOAD (RFC 6940) as reference.

`vector` and `vector_attacks` are the vectorized Chord engine for routing-level questions at 10^5 to
10^7 nodes; `run_lookups` is what the catalogue calls.
"""

from threatlab.overlay.vector import ExactFingers, FingerTable, Ring, finger_table, make_ring, route
from threatlab.overlay.vector_attacks import (
    ATTACKS,
    DEFENSES,
    LookupConfig,
    castro_path_success,
    expected_lookup_failure,
    run_lookups,
)

__all__ = [
    "ATTACKS",
    "DEFENSES",
    "ExactFingers",
    "FingerTable",
    "LookupConfig",
    "Ring",
    "castro_path_success",
    "expected_lookup_failure",
    "finger_table",
    "make_ring",
    "route",
    "run_lookups",
]
