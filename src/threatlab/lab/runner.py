"""Run one threat: N trials, each with its own derived seed, aggregated into metrics.

`run_threat` is a pure function of its arguments (and threatlab's code): the same threat, parameters,
defenses, trial count and seed give the same `RunResult` in any process, so it can run in a worker
process or on a Dask worker and be stored under a key that says exactly what was run.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import threatlab
from threatlab.errors import ParamError, ThreatlabError, UsageError
from threatlab.lab.catalogue import ParamValue, Threat, default_aggregate
from threatlab.lab.seeds import canonical_json, trial_rng

SEED_MIN, SEED_MAX = 0, 2**63 - 1  # seeds are stored as SQLite integers


class RunFailed(ThreatlabError):
    """A threat's run function (or its aggregate or expectation) raised: the run failed, not the input."""


class RunKey(NamedTuple):
    """What identifies a run in the store: everything that determines its result."""

    threat: str
    params: str  # canonical JSON
    defenses: str  # canonical JSON of the sorted list
    seed: int
    trials: int
    code_version: str


@dataclass(frozen=True, slots=True)
class RunResult:
    threat: str
    params: Mapping[str, ParamValue]
    defenses: tuple[str, ...]  # sorted
    seed: int
    trials: int
    metrics: Mapping[str, float | None]
    expected: Mapping[str, float | None] | None
    code_version: str

    @property
    def key(self) -> RunKey:
        return run_key(self.threat, self.params, self.defenses, self.seed, self.trials, self.code_version)

    def to_row(self) -> dict[str, Any]:
        """The row of `--json` output."""
        return {
            "defenses": list(self.defenses),
            "params": dict(self.params),
            "seed": self.seed,
            "trials": self.trials,
            "metrics": dict(self.metrics),
            "expected": dict(self.expected) if self.expected is not None else None,
        }


def run_key(threat_id: str, params: Mapping[str, Any], defenses: Iterable[str], seed: int, trials: int,
            code_version: str | None = None) -> RunKey:
    return RunKey(threat_id, canonical_json(dict(params)), canonical_json(sorted(defenses)), int(seed), int(trials),
                  code_version if code_version is not None else get_code_version())


@functools.cache
def get_code_version() -> str:
    """threatlab's version + the first 12 hex digits of sha256 over its .py sources (sorted paths)."""
    root = Path(threatlab.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{threatlab.__version__}+{digest.hexdigest()[:12]}"


def check_run_args(threat: Threat, params: Mapping[str, Any] | None, defenses: Iterable[str], trials: int,
                   seed: int) -> tuple[dict[str, ParamValue], frozenset[str]]:
    """Validate and complete a run's inputs; UsageError/ParamError naming what is wrong."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ParamError(f"trials={trials!r}: must be an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or not SEED_MIN <= seed <= SEED_MAX:
        raise ParamError(f"seed={seed!r}: must be an integer in [{SEED_MIN}, {SEED_MAX}]")
    if isinstance(defenses, str):
        raise UsageError("defenses must be a collection of defense ids, not a string")
    return threat.resolve_params(params), threat.resolve_defenses(tuple(defenses))


def run_threat(threat: Threat, params: Mapping[str, Any] | None, defenses: Iterable[str], trials: int, seed: int,
               pcap: str | None = None, *, on_trial: Callable[[], None] | None = None) -> RunResult:
    """Play `trials` trials of `threat` and aggregate them.

    Parameters not given take their defaults; values are checked against their ranges (ParamError).
    Trial i uses `random.Random(trial_seed(seed, threat.id, params, defenses, i))`. `pcap`, a path,
    is handed to trial 0 only. An exception from the threat's own code becomes RunFailed, except a
    UsageError, which stays one (the parameters were bad in a way only the threat could tell).
    """
    values, defense_set = check_run_args(threat, params, defenses, trials, seed)
    sorted_defenses = tuple(sorted(defense_set))
    measurements: list[Mapping[str, Any]] = []
    for i in range(trials):
        rng = trial_rng(seed, threat.id, values, sorted_defenses, i)
        try:
            measurements.append(threat.run_trial(values, defense_set, rng, pcap=pcap if i == 0 else None))
        except UsageError:
            raise
        except Exception as exc:
            raise RunFailed(f"{threat.id} {_label(sorted_defenses)} trial {i}: {_describe(exc)}") from exc
        if on_trial is not None:
            on_trial()
    try:
        metrics = _numbers(dict((threat.aggregate or default_aggregate)(measurements)), "aggregate")
        if "success_rate" not in metrics:
            raise ValueError("aggregate returned no success_rate")
        expected = None
        if threat.expected is not None:
            expected = _numbers(dict(threat.expected(values, defense_set)), "expected")
    except UsageError:
        raise
    except Exception as exc:
        raise RunFailed(f"{threat.id} {_label(sorted_defenses)}: {_describe(exc)}") from exc
    return RunResult(threat.id, values, sorted_defenses, seed, trials, metrics, expected, get_code_version())


def _numbers(values: dict[str, Any], what: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{what} value {name}={v!r} is not a number")
        out[str(name)] = float(v) if math.isfinite(v) else None
    return out


def _label(defenses: tuple[str, ...]) -> str:
    return f"[defenses: {', '.join(defenses)}]" if defenses else "[no defense]"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
