"""Sweeps: the grid, skipping stored runs, worker processes, crash and resume, a Dask cluster."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import toy_threats as toy
from click.testing import CliRunner
from conftest import subprocess_env

from threatlab.cli import cli
from threatlab.errors import UsageError
from threatlab.lab import sweep as sweep_mod
from threatlab.lab.catalogue import SUCCESS_RATE, Source, Threat
from threatlab.lab.runner import RunFailed, run_threat
from threatlab.lab.store import Store
from threatlab.lab.sweep import SchedulerError, sweep
from threatlab.net.topology import Position

GRID = {"window": ["256", "1024", "4096"], "guesses": ["8", "32"]}


def _rows(path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT threat, params, defenses, seed, trials, code_version, metrics, expected "
                            "FROM runs ORDER BY params, defenses").fetchall()
    finally:
        conn.close()


def test_sweep_runs_the_grid_times_defense_sets_and_stores_each(tmp_path):
    seen = []
    with Store(tmp_path / "r.sqlite") as store:
        results = sweep(toy.BLIND_GUESS, GRID, trials=30, seed=1, store=store, workers=1, on_result=seen.append)
        assert len(results) == 12 == len(seen) == store.count()
        assert [(r.params["window"], r.params["guesses"], r.defenses) for r in results[:3]] == [
            (256, 8, ()), (256, 8, ("exact-match", "rate-limit")), (256, 32, ())]
        for r in results:
            assert r == run_threat(toy.BLIND_GUESS, r.params, r.defenses, 30, 1)
        # again: everything is in the store, nothing runs
        seen.clear()
        again = sweep(toy.BLIND_GUESS, GRID, trials=30, seed=1, store=store, workers=1, on_result=seen.append)
        assert again == results and seen == [] and store.count() == 12


def test_sweep_skips_what_is_stored(tmp_path):
    with Store(tmp_path / "r.sqlite") as store:
        store.put(run_threat(toy.BLIND_GUESS, {"window": 256, "guesses": 8}, [], 30, 1))
        seen = []
        results = sweep(toy.BLIND_GUESS, GRID, [[]], trials=30, seed=1, store=store, workers=1, on_result=seen.append)
        assert len(results) == 6 and len(seen) == 5 and store.count() == 6


def test_worker_processes_give_the_same_results_as_one(tmp_path):
    with Store(tmp_path / "one.sqlite") as a, Store(tmp_path / "pool.sqlite") as b:
        one = sweep(toy.BLIND_GUESS, GRID, trials=30, seed=2, store=a, workers=1)
        pool = sweep(toy.BLIND_GUESS, GRID, trials=30, seed=2, store=b, workers=3)
    assert one == pool
    assert _rows(tmp_path / "one.sqlite") == _rows(tmp_path / "pool.sqlite")


def test_a_failing_run_in_a_worker_fails_the_sweep(tmp_path):
    with Store(tmp_path / "r.sqlite") as store, pytest.raises(RunFailed, match="ZeroDivisionError"):
        sweep(toy.BROKEN, {}, trials=2, seed=0, store=store, workers=2)


def test_sweep_argument_errors():
    with pytest.raises(UsageError, match="not both"):
        sweep(toy.BLIND_GUESS, GRID, workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(UsageError, match="workers"):
        sweep(toy.BLIND_GUESS, GRID, workers=0)
    unpicklable = Threat(id="t.lambda", title="t", source=Source("s", "1"), position=Position.OFF_PATH,
                         knowledge="-", params=(), defenses=(), metrics=(SUCCESS_RATE,),
                         run=lambda p, d, rng, pcap=None: {"success": True})
    with pytest.raises(UsageError, match="cannot be sent to worker processes"):
        sweep(unpicklable, {}, [[]], trials=1, workers=2)


def test_an_unreachable_scheduler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sweep_mod, "SCHEDULER_TIMEOUT_S", 0.5)
    with pytest.raises(SchedulerError, match="cannot connect to Dask scheduler tcp://127.0.0.1:9"):
        sweep(toy.BLIND_GUESS, {"window": ["1", "2"]}, trials=1, scheduler="tcp://127.0.0.1:9")


def _count(path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created yet


def test_a_sweep_killed_with_sigkill_resumes_without_losing_or_repeating_runs(tmp_path):
    windows = ",".join(str(w) for w in range(1, 13))
    cmd = [sys.executable, "-m", "threatlab", "sweep", "toy.blind-guess", "--param", "space_bits=32",
           "--param", f"window={windows}", "--param", "guesses=100000", "--no-defense", "--trials", "3",
           "--workers", "2", "--out", str(tmp_path)]
    db = tmp_path / "results.sqlite"
    env = subprocess_env()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while _count(db) < 2:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes, as in a crash
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = _count(db)
    assert 2 <= partial < 12

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = _rows(db)
    assert len(rows) == 12
    keys = [row[:6] for row in rows]
    assert len(set(keys)) == 12  # no run twice
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    windows_stored = sorted(int(p.split('"window":')[1].rstrip("}")) for (p,) in conn.execute("SELECT params FROM runs"))
    conn.close()
    assert windows_stored == list(range(1, 13))


def test_a_dask_cluster_gives_the_same_results_as_a_local_sweep(tmp_path, toy_plugins):
    from distributed import LocalCluster

    grid = {"window": ["512", "2048"], "guesses": ["16", "64"]}
    with Store(tmp_path / "local.sqlite") as store:
        local = sweep(toy.BLIND_GUESS, grid, trials=40, seed=7, store=store, workers=1)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Store(tmp_path / "dask.sqlite") as store:
            remote = sweep(toy.BLIND_GUESS, grid, trials=40, seed=7, store=store, scheduler=cluster.scheduler_address)
        # the same through the command line, into its own store
        out = tmp_path / "cli"
        res = CliRunner().invoke(cli, ["sweep", "toy.blind-guess", "--param", "window=512,2048",
                                       "--param", "guesses=16,64", "--trials", "40", "--seed", "7",
                                       "--scheduler", cluster.scheduler_address, "--out", str(out)])
        assert res.exit_code == 0, res.output
    assert remote == local
    assert _rows(tmp_path / "dask.sqlite") == _rows(tmp_path / "local.sqlite") == _rows(out / "results.sqlite")
    assert len(_rows(out / "results.sqlite")) == 8
