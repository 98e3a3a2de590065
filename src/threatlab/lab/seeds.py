"""Seeds for trials, derived so that every trial of every run is independent and reproducible.

A trial's seed is a pure function of the run's seed, the threat, its parameters, its defenses and the
trial's index: sha256 over their canonical encoding, first 8 bytes. It never uses Python's `hash()`
(salted per process), so a trial played in a worker process, on a Dask worker or in a later run is
the same trial.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Mapping
from typing import Any


def canonical_json(value: Any) -> str:
    """The one JSON text of a value: sorted keys, no spaces; used for seeds and store keys."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def trial_seed(seed: int, threat_id: str, params: Mapping[str, Any], defenses: Iterable[str], trial: int) -> int:
    """The 64-bit seed of one trial."""
    material = canonical_json([int(seed), threat_id, dict(params), sorted(defenses), int(trial)])
    return int.from_bytes(hashlib.sha256(material.encode("utf-8")).digest()[:8], "big")


def trial_rng(seed: int, threat_id: str, params: Mapping[str, Any], defenses: Iterable[str], trial: int) -> random.Random:
    """A fresh `random.Random` seeded for one trial."""
    return random.Random(trial_seed(seed, threat_id, params, defenses, trial))
