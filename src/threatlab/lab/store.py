"""The results store: one SQLite file, one row per run, never the same run twice.

A run is identified by (threat, params, defenses, seed, trials, code_version), all of which
determine its result; a UNIQUE constraint over them lets a sweep that was killed start again and
skip what is done. WAL mode lets a report read while a sweep writes; every `put` commits at once.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from threatlab.errors import StoreError
from threatlab.lab.runner import RunKey, RunResult
from threatlab.lab.seeds import canonical_json

DEFAULT_OUT = Path("threatlab-out")
STORE_NAME = "results.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    threat TEXT NOT NULL,
    params TEXT NOT NULL,
    defenses TEXT NOT NULL,
    seed INTEGER NOT NULL,
    trials INTEGER NOT NULL,
    code_version TEXT NOT NULL,
    metrics TEXT NOT NULL,
    expected TEXT,
    created TEXT NOT NULL,
    UNIQUE (threat, params, defenses, seed, trials, code_version)
);
CREATE INDEX IF NOT EXISTS runs_threat ON runs (threat);
"""
_KEY_WHERE = "threat = ? AND params = ? AND defenses = ? AND seed = ? AND trials = ? AND code_version = ?"
_COLUMNS = "threat, params, defenses, seed, trials, code_version, metrics, expected"


def default_store_path(out_dir: str | Path | None = None) -> Path:
    return Path(out_dir if out_dir is not None else DEFAULT_OUT) / STORE_NAME


class Store:
    """`with Store(path) as store: store.put(result)`."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"results store {self.path}: cannot create its directory: {exc.strerror or exc}") from None
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"results store {self.path}: cannot open: {exc}") from None
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"journal mode is {mode}, WAL is needed")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, this threatlab knows {SCHEMA_VERSION}")
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreError(f"results store {self.path}: cannot open: {exc}") from None

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()

    # -- queries ---------------------------------------------------------------------------------
    def journal_mode(self) -> str:
        return str(self._execute("PRAGMA journal_mode").fetchone()[0]).lower()

    def has(self, key: RunKey) -> bool:
        return self._execute(f"SELECT 1 FROM runs WHERE {_KEY_WHERE}", tuple(key)).fetchone() is not None

    def get(self, key: RunKey) -> RunResult | None:
        row = self._execute(f"SELECT {_COLUMNS} FROM runs WHERE {_KEY_WHERE}", tuple(key)).fetchone()
        return _to_result(row) if row is not None else None

    def put(self, result: RunResult) -> bool:
        """Store a run, committed at once; False when the same run was stored already."""
        key = result.key
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            metrics = canonical_json(dict(result.metrics))
            expected = canonical_json(dict(result.expected)) if result.expected is not None else None
        except (TypeError, ValueError) as exc:
            raise StoreError(f"results store {self.path}: run of {result.threat} is not storable: {exc}") from None
        cur = self._execute(
            f"INSERT OR IGNORE INTO runs ({_COLUMNS}, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*key, metrics, expected, created),
        )
        return cur.rowcount == 1

    def query(self, threat: str | None = None) -> list[RunResult]:
        """Stored runs, oldest first; only `threat`'s when given."""
        if threat is None:
            rows = self._execute(f"SELECT {_COLUMNS} FROM runs ORDER BY id").fetchall()
        else:
            rows = self._execute(f"SELECT {_COLUMNS} FROM runs WHERE threat = ? ORDER BY id", (threat,)).fetchall()
        return [_to_result(r) for r in rows]

    def count(self, threat: str | None = None) -> int:
        if threat is None:
            return self._execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return self._execute("SELECT COUNT(*) FROM runs WHERE threat = ?", (threat,)).fetchone()[0]

    def _execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"results store {self.path}: {exc}") from None
        except OverflowError as exc:
            raise StoreError(f"results store {self.path}: value out of range: {exc}") from None


def _to_result(row: tuple) -> RunResult:
    threat, params, defenses, seed, trials, code_version, metrics, expected = row
    return RunResult(
        threat=threat,
        params=json.loads(params),
        defenses=tuple(json.loads(defenses)),
        seed=seed,
        trials=trials,
        metrics=json.loads(metrics),
        expected=json.loads(expected) if expected is not None else None,
        code_version=code_version,
    )
