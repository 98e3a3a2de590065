"""Sweeps: a threat over a grid of parameter values and defense sets, resumable through the store.

Each grid point is one `run_threat` call. Points already in the store (same key, hence the same
code) are skipped, and each new result is stored by this process the moment it arrives, so a sweep
killed at any instant loses at most the runs in flight and never stores one twice. The runs go to
local worker processes (`workers`) or to a Dask distributed cluster (`scheduler`).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from threatlab.errors import ThreatlabError, UsageError
from threatlab.lab.catalogue import ParamValue, Threat
from threatlab.lab.progress import LazyProgress
from threatlab.lab.runner import RunResult, check_run_args, get_code_version, run_key, run_threat
from threatlab.lab.store import Store


SCHEDULER_TIMEOUT_S = 10.0  # how long to try to reach a Dask scheduler


class SchedulerError(ThreatlabError):
    """The Dask scheduler cannot be reached, or its workers run other code."""


@dataclass(frozen=True, slots=True)
class SweepPoint:
    params: Mapping[str, ParamValue]
    defenses: frozenset[str]


def default_defense_sets(threat: Threat) -> list[frozenset[str]]:
    """Baseline (no defense) and all of the threat's defenses together (just baseline if it has none)."""
    sets = [frozenset()]
    if threat.defenses:
        sets.append(frozenset(threat.defense_ids()))
    return sets


def expand_grid(threat: Threat, grid: Mapping[str, Sequence[str | ParamValue]]) -> list[dict[str, ParamValue]]:
    """The cartesian product of the grid's values, each completed with the other parameters' defaults."""
    names = list(grid)
    axes: list[list[ParamValue]] = []
    for name in names:
        param = threat.param(name)
        raw = list(grid[name])
        if not raw:
            raise UsageError(f"parameter {name}: no values to sweep")
        values: list[ParamValue] = []
        for v in raw:
            parsed = param.parse(v)
            if parsed not in values:
                values.append(parsed)
        axes.append(values)
    base = threat.resolve_params()
    return [{**base, **dict(zip(names, combo))} for combo in itertools.product(*axes)]


def sweep_points(threat: Threat, grid: Mapping[str, Sequence[str | ParamValue]],
                 defense_sets: Iterable[Iterable[str]] | None = None) -> list[SweepPoint]:
    sets = default_defense_sets(threat) if defense_sets is None else [threat.resolve_defenses(tuple(d)) for d in defense_sets]
    unique_sets = list(dict.fromkeys(sets))
    return [SweepPoint(params, d) for params in expand_grid(threat, grid) for d in unique_sets]


def sweep(threat: Threat, grid: Mapping[str, Sequence[str | ParamValue]],
          defense_sets: Iterable[Iterable[str]] | None = None, trials: int | None = None, seed: int = 0,
          store: Store | None = None, *, workers: int | None = None, scheduler: str | None = None,
          progress: bool | None = None, on_result: Callable[[RunResult], None] | None = None) -> list[RunResult]:
    """Run `threat` at every point of `grid` x `defense_sets`; the results in grid order.

    `grid` maps parameter names to the values to try (strings are parsed as on the command line).
    `defense_sets` defaults to the baseline and all defenses. Runs already in `store` are not run
    again; new ones are put in it as they complete. `workers` local processes (default: the number
    of CPUs; 1 runs in this process), or `scheduler`, the address of a Dask scheduler
    ("tcp://host:8786"). `on_result` is called with each newly computed result.
    """
    if workers is not None and scheduler is not None:
        raise UsageError("give either workers or a scheduler, not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UsageError(f"workers={workers!r}: must be an integer >= 1")
    trials = threat.default_trials if trials is None else trials
    points = sweep_points(threat, grid, defense_sets)
    for p in points:
        check_run_args(threat, p.params, p.defenses, trials, seed)
    version = get_code_version()
    keys = [run_key(threat.id, p.params, p.defenses, seed, trials, version) for p in points]
    done: dict[int, RunResult] = {}
    if store is not None:
        for i, key in enumerate(keys):
            stored = store.get(key)
            if stored is not None:
                done[i] = stored
    pending = [i for i in range(len(points)) if i not in done]

    def finished(i: int, result: RunResult) -> None:
        if result.code_version != version:
            raise SchedulerError(
                f"a worker runs threatlab {result.code_version}, this process {version}: install the same code"
            )
        if store is not None:
            store.put(result)
        done[i] = result
        if on_result is not None:
            on_result(result)

    with LazyProgress(len(points), f"sweep {threat.id}", progress) as bar:
        bar.advance(len(done))
        if scheduler is not None:
            _run_dask(threat, points, pending, trials, seed, scheduler, finished, bar)
        else:
            n = (os.cpu_count() or 1) if workers is None else workers
            if n > 1 and pending:
                _check_picklable(threat)
            if n == 1 or len(pending) <= 1:
                for i in pending:
                    p = points[i]
                    finished(i, run_threat(threat, p.params, p.defenses, trials, seed))
                    bar.advance()
            else:
                _run_pool(threat, points, pending, trials, seed, min(n, len(pending)), finished, bar)
    return [done[i] for i in range(len(points))]


def _run_pool(threat: Threat, points: list[SweepPoint], pending: list[int], trials: int, seed: int, workers: int,
              finished: Callable[[int, RunResult], None], bar: LazyProgress) -> None:
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(run_threat, threat, points[i].params, points[i].defenses, trials, seed): i for i in pending
        }
        try:
            for fut in concurrent.futures.as_completed(futures):
                finished(futures[fut], fut.result())
                bar.advance()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _run_dask(threat: Threat, points: list[SweepPoint], pending: list[int], trials: int, seed: int, address: str,
              finished: Callable[[int, RunResult], None], bar: LazyProgress) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover - a declared dependency
        raise SchedulerError("a Dask scheduler needs the `distributed` package") from None
    try:
        client = Client(address, timeout=SCHEDULER_TIMEOUT_S, set_as_default=False)
    except Exception as exc:
        raise SchedulerError(f"cannot connect to Dask scheduler {address}: {exc}") from None
    with client:
        futures = {}
        for i in pending:
            p = points[i]
            fut = client.submit(run_threat, threat, p.params, p.defenses, trials, seed, pure=False)
            futures[fut] = i
        try:
            for fut in as_completed(list(futures), loop=client.loop):
                finished(futures[fut], fut.result())
                bar.advance()
        finally:
            client.cancel(list(futures))


def _check_picklable(threat: Threat) -> None:
    try:
        pickle.dumps(threat)
    except Exception as exc:
        raise UsageError(
            f"threat {threat.id} cannot be sent to worker processes ({exc}); "
            "its functions must be module-level, or use one worker"
        ) from None
