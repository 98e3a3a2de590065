"""The results store: one row per run, never twice, WAL, clear errors."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest
import toy_threats as toy

from threatlab.errors import StoreError
from threatlab.lab.runner import run_key, run_threat
from threatlab.lab.store import Store, default_store_path


@pytest.fixture
def result():
    return run_threat(toy.BLIND_GUESS, {"window": 64}, ["rate-limit"], 20, 3)


def test_default_path():
    assert default_store_path().as_posix() == "threatlab-out/results.sqlite"
    assert default_store_path("x").as_posix() == "x/results.sqlite"


def test_store_uses_wal_and_creates_its_directory(tmp_path):
    path = tmp_path / "a" / "b" / "results.sqlite"
    with Store(path) as store:
        assert store.journal_mode() == "wal"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_run_is_stored_once(tmp_path, result):
    with Store(tmp_path / "r.sqlite") as store:
        assert not store.has(result.key)
        assert store.put(result) is True
        assert store.has(result.key)
        assert store.put(result) is False
        assert store.count() == 1
        assert store.get(result.key) == result
        assert store.query() == [result]


def test_the_key_covers_every_input(tmp_path, result):
    other_seed = run_threat(toy.BLIND_GUESS, {"window": 64}, ["rate-limit"], 20, 4)
    other_trials = run_threat(toy.BLIND_GUESS, {"window": 64}, ["rate-limit"], 21, 3)
    other_defenses = run_threat(toy.BLIND_GUESS, {"window": 64}, [], 20, 3)
    coin = run_threat(toy.COIN, None, [], 5, 3)
    with Store(tmp_path / "r.sqlite") as store:
        for r in (result, other_seed, other_trials, other_defenses, coin):
            assert store.put(r)
        assert store.count() == 5
        assert store.count("toy.coin") == 1
        assert store.query("toy.coin") == [coin]
        assert [r.seed for r in store.query("toy.blind-guess")] == [3, 4, 3, 3]
        other_version = run_key(result.threat, result.params, result.defenses, 3, 20, "0.0.0+000000000000")
        assert not store.has(other_version)


def test_the_database_itself_refuses_a_duplicate(tmp_path, result):
    with Store(tmp_path / "r.sqlite") as store:
        store.put(result)
    conn = sqlite3.connect(tmp_path / "r.sqlite")
    row = conn.execute("SELECT threat, params, defenses, seed, trials, code_version, metrics, expected, created "
                       "FROM runs").fetchone()
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO runs (threat, params, defenses, seed, trials, code_version, metrics, expected, "
                     "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    # columns hold canonical JSON and a UTC ISO time
    assert row[1] == '{"guesses":64,"space_bits":16,"window":64}'
    assert row[2] == '["rate-limit"]'
    assert datetime.fromisoformat(row[8]).utcoffset().total_seconds() == 0
    conn.close()


def test_a_second_connection_sees_a_put_at_once(tmp_path, result):
    with Store(tmp_path / "r.sqlite") as writer, Store(tmp_path / "r.sqlite") as reader:
        writer.put(result)
        assert reader.has(result.key)


def test_errors_opening_are_store_errors(tmp_path):
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(StoreError, match="dir.sqlite: cannot open"):
        Store(tmp_path / "dir.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="junk.sqlite: cannot open"):
        Store(tmp_path / "junk.sqlite")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create its directory"):
        Store(tmp_path / "file" / "r.sqlite")


def test_errors_writing_are_store_errors(tmp_path, result):
    store = Store(tmp_path / "r.sqlite")
    store.close()
    with pytest.raises(StoreError, match="r.sqlite"):
        store.put(result)
