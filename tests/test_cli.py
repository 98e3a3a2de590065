"""The `threatlab` command: the contract in DESIGN.md, its output shapes and its exit codes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

LAB_TESTS = Path(__file__).resolve().parent / "lab"
if str(LAB_TESTS) not in sys.path:
    sys.path.insert(0, str(LAB_TESTS))

import toy_threats as toy  # noqa: E402

import threatlab  # noqa: E402
from threatlab.cli import cli  # noqa: E402
from threatlab.lab import catalogue, progress  # noqa: E402
from threatlab.lab.runner import run_threat  # noqa: E402

BLIND = "toy.blind-guess"
ALL_DEFENSES = ["exact-match", "rate-limit"]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    # in-process commands see the toy threats only, not the protocol packages being written alongside
    monkeypatch.setattr(catalogue, "PROTOCOL_PACKAGES", ())
    monkeypatch.setenv("THREATLAB_PLUGINS", "toy_threats")
    monkeypatch.setenv("THREATLAB_PROGRESS", "0")
    monkeypatch.delenv("THREATLAB_DEBUG", raising=False)


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def stored_rows(out: Path) -> list[tuple]:
    conn = sqlite3.connect(out / "results.sqlite")
    try:
        return conn.execute("SELECT threat, params, defenses, seed, trials FROM runs ORDER BY id").fetchall()
    finally:
        conn.close()


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(LAB_TESTS)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["THREATLAB_PLUGINS"] = "toy_threats"
    env["THREATLAB_PROGRESS"] = "0"
    env.pop("THREATLAB_DEBUG", None)
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# list, show, --version


def test_version():
    res = invoke("--version")
    assert res.exit_code == 0 and res.stdout.strip() == f"threatlab {threatlab.__version__}"


def test_list_of_an_empty_catalogue_says_so(monkeypatch):
    monkeypatch.delenv("THREATLAB_PLUGINS")
    res = invoke("list")
    assert res.exit_code == 0 and "the catalogue is empty" in res.stdout
    assert json.loads(invoke("list", "--json").stdout) == []


def test_list_shows_the_catalogue():
    res = invoke("list")
    assert res.exit_code == 0
    for tid in (BLIND, "toy.coin", "toy.broken"):
        assert tid in res.stdout
    res = invoke("list", "--protocol", "toy", "--json")
    summaries = json.loads(res.stdout)
    assert [s["id"] for s in summaries] == [BLIND, "toy.coin", "toy.broken"]
    first = summaries[0]
    assert first["position"] == "off-path" and first["expected"] is True and first["peers"] == ["echo"]
    assert [d["id"] for d in first["defenses"]] == ALL_DEFENSES
    assert first["params"][0] == {"name": "space_bits", "unit": "bits", "default": 16,
                                  "range": "int in [1, 32] bits", "doc": "size of the sequence space"}
    assert json.loads(invoke("list", "--protocol", "tcp", "--json").stdout) == []


def test_show_describes_a_threat():
    res = invoke("show", BLIND)
    assert res.exit_code == 0
    for text in ("Blind guesser", "source: toy section 0", "off-path", "not its sequence numbers", "space_bits",
                 "bits", "1024", "int in [1, 32] bits", "exact-match", "rate-limit", "guesses_mean",
                 "analytic expectation: yes", "live peers: echo"):
        assert text in res.stdout, text
    assert "analytic expectation: no" in invoke("show", "toy.broken").stdout


# ---------------------------------------------------------------------------------------------
# run


def test_run_json_has_a_baseline_row_and_an_all_defenses_row(tmp_path):
    res = invoke("run", BLIND, "--json", "--trials", "30", "--seed", "5", "--param", "window=2048",
                 "--out", str(tmp_path))
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)  # exactly one JSON object, nothing else
    assert set(doc) == {"threat", "rows"} and doc["threat"] == BLIND
    assert [row["defenses"] for row in doc["rows"]] == [[], ALL_DEFENSES]
    for row in doc["rows"]:
        assert set(row) == {"defenses", "params", "seed", "trials", "metrics", "expected"}
        assert row["params"] == {"space_bits": 16, "window": 2048, "guesses": 64}
        assert (row["seed"], row["trials"]) == (5, 30)
        assert set(row["metrics"]) == {"success_rate", "guesses_mean"} == set(row["expected"])
    want = run_threat(toy.BLIND_GUESS, {"window": 2048}, [], 30, 5)
    assert doc["rows"][0]["metrics"] == want.metrics
    assert [r[2] for r in stored_rows(tmp_path)] == ["[]", '["exact-match","rate-limit"]']


def test_run_no_defense_and_chosen_defenses(tmp_path):
    out = str(tmp_path)
    rows = json.loads(invoke("run", BLIND, "--no-defense", "--json", "--trials", "5", "--out", out).stdout)["rows"]
    assert [r["defenses"] for r in rows] == [[]]
    rows = json.loads(invoke("run", BLIND, "--defense", "rate-limit", "--json", "--trials", "5", "--out", out)
                      .stdout)["rows"]
    assert [r["defenses"] for r in rows] == [["rate-limit"]]
    assert rows[0]["metrics"]["guesses_mean"] <= 8
    assert len(stored_rows(tmp_path)) == 2


def test_run_prints_a_table_and_stores_in_the_default_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = invoke("run", BLIND, "--trials", "20")
    assert res.exit_code == 0
    assert "success_rate" in res.stdout and "none" in res.stdout and "exact-match" in res.stdout
    assert len(stored_rows(tmp_path / "threatlab-out")) == 2


def test_run_pcap_goes_to_trial_0_of_each_row(tmp_path):
    pcap = tmp_path / "trace.pcap"
    assert invoke("run", BLIND, "--trials", "3", "--pcap", str(pcap), "--out", str(tmp_path)).exit_code == 0
    assert sorted(p.name for p in tmp_path.glob("trace*")) == ["trace-baseline.pcap",
                                                               "trace-exact-match+rate-limit.pcap"]
    assert invoke("run", BLIND, "--no-defense", "--trials", "3", "--pcap", str(pcap), "--out",
                  str(tmp_path)).exit_code == 0
    assert pcap.read_text().startswith("left_edge=")


def test_json_stays_clean_when_a_progress_bar_is_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("THREATLAB_PROGRESS", "1")
    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    res = invoke("run", BLIND, "--json", "--trials", "400", "--out", str(tmp_path))
    assert res.exit_code == 0
    assert json.loads(res.stdout)["threat"] == BLIND


def test_a_failing_run_exits_1_with_one_line(tmp_path):
    res = invoke("run", "toy.broken", "--out", str(tmp_path))
    assert res.exit_code == 1
    assert res.stderr == ("run failed: toy.broken [no defense] trial 0: ZeroDivisionError: "
                          "the adversary divided by zero\n")
    assert res.stdout == ""


def test_threatlab_debug_shows_the_traceback(tmp_path):
    res = invoke("run", "toy.broken", "--out", str(tmp_path), env={"THREATLAB_DEBUG": "1"})
    assert res.exit_code == 1
    assert "Traceback" in res.stderr and res.stderr.endswith("ZeroDivisionError: the adversary divided by zero\n")


# ---------------------------------------------------------------------------------------------
# run --all, sweep, report


def test_run_all_with_an_empty_catalogue_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("THREATLAB_PLUGINS")
    res = invoke("run", "--all", "--out", str(tmp_path))
    assert res.exit_code == 0 and "the catalogue is empty" in res.stdout


def test_run_all_runs_every_threat_and_writes_the_report(tmp_path):
    res = invoke("run", "--all", "--trials", "10", "--out", str(tmp_path), env={"THREATLAB_PLUGINS": "toy_good"})
    assert res.exit_code == 0, res.stderr
    assert BLIND in res.stdout and "toy.coin" in res.stdout
    assert f"report: {tmp_path / 'report.html'}" in res.stdout
    assert [(r[0], r[2]) for r in stored_rows(tmp_path)] == [
        (BLIND, "[]"), (BLIND, '["exact-match","rate-limit"]'), ("toy.coin", "[]")]
    assert "<table>" in (tmp_path / "report.html").read_text()


def test_run_all_reports_what_ran_and_fails_for_what_did_not(tmp_path):
    res = invoke("run", "--all", "--trials", "5", "--out", str(tmp_path))
    assert res.exit_code == 1
    assert (tmp_path / "report.html").exists() and len(stored_rows(tmp_path)) == 3
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("run failed: 2 of 5 runs failed; first: toy.broken")


def test_sweep_prints_the_table_and_stores_the_grid(tmp_path):
    args = ["sweep", BLIND, "--param", "window=128,512", "--param", "guesses=4,16,64", "--trials", "10",
            "--workers", "1", "--out", str(tmp_path)]
    res = invoke(*args)
    assert res.exit_code == 0, res.stderr
    assert "window" in res.stdout and "guesses" in res.stdout and "512" in res.stdout
    assert len(stored_rows(tmp_path)) == 12
    doc = json.loads(invoke(*args, "--json").stdout)  # the second time everything comes from the store
    assert len(doc["rows"]) == 12 and len(stored_rows(tmp_path)) == 12
    assert {(r["params"]["window"], r["params"]["guesses"]) for r in doc["rows"]} == {
        (w, g) for w in (128, 512) for g in (4, 16, 64)}
    res = invoke("sweep", BLIND, "--param", "window=128,512", "--defense", "rate-limit", "--trials", "10",
                 "--workers", "2", "--json", "--out", str(tmp_path))
    assert [r["defenses"] for r in json.loads(res.stdout)["rows"]] == [["rate-limit"]] * 2


def test_report_command(tmp_path):
    res = invoke("report", "--out", str(tmp_path))
    assert res.exit_code == 2 and "no results store" in res.stderr
    invoke("sweep", BLIND, "--param", "window=128,512", "--trials", "5", "--workers", "1", "--out", str(tmp_path))
    res = invoke("report", "--out", str(tmp_path))
    assert res.exit_code == 0 and res.stdout.strip() == f"report: {tmp_path / 'report.html'}"
    assert (tmp_path / "report.html").read_text().count('src="data:image/png;base64,') == 1


# ---------------------------------------------------------------------------------------------
# live


def test_live_calls_the_peer_with_its_budget():
    res = invoke("live", BLIND, "--peer", "echo", "--budget-packets", "10", "--budget-seconds", "2.5",
                 "--defense", "rate-limit", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout) == {
        "threat": BLIND, "peer": "echo", "defenses": ["rate-limit"],
        "params": {"space_bits": 16, "window": 1024, "guesses": 64},
        "result": {"packets_sent": 10, "budget_seconds": 2.5, "defenses": "rate-limit", "reset": False}}
    res = invoke("live", BLIND, "--peer", "echo")
    assert res.exit_code == 0 and "packets_sent" in res.stdout


# ---------------------------------------------------------------------------------------------
# bad usage and input: exit 2, exactly one line, no traceback

BAD = [
    (["run", "toy.nope"], "unknown threat 'toy.nope'"),
    (["show", "toy.nope"], "unknown threat 'toy.nope'"),
    (["run", BLIND, "--param", "window=0"], "window='0': out of range; allowed: int in [1, 4294967296] numbers"),
    (["run", BLIND, "--param", "window=abc"], "window='abc': not a valid int"),
    (["run", BLIND, "--param", "bogus=1"], "has no parameter 'bogus'"),
    (["run", BLIND, "--param", "window"], "bad --param 'window': expected NAME=VALUE"),
    (["run", BLIND, "--defense", "nope"], "has no defense 'nope'"),
    (["run", BLIND, "--defense", "rate-limit", "--no-defense"], "not both"),
    (["run", BLIND, "--trials", "0"], "'--trials': 0 is not in the range x>=1"),
    (["run", BLIND, "--trials", "many"], "'--trials'"),
    (["run", BLIND, "--seed", "-1"], "'--seed'"),
    (["run"], "missing threat ID"),
    (["run", "--all", BLIND], "not both"),
    (["run", "--all", "--json"], "takes no --json"),
    (["run", BLIND, "--frobnicate"], "No such option"),
    (["frobnicate"], "No such command"),
    (["sweep", BLIND, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
    (["sweep", BLIND, "--param", "window=1,,2"], "no empty value"),
    (["sweep", BLIND, "--param", "window=1,0"], "out of range"),
    (["sweep", BLIND, "--workers", "0"], "'--workers'"),
    (["live", BLIND], "Missing option '--peer'"),
    (["live", BLIND, "--peer", "linux"], "has no live peer 'linux' (peers: echo)"),
    (["live", "toy.coin", "--peer", "linux"], "(it has no live peers)"),
    (["list", "--protocol", "zz"], "unknown protocol 'zz'"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    res = invoke(*args, *(["--out", str(tmp_path)] if args[0] in ("run", "sweep") and "--frobnicate" not in args
                          else []))
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_a_bad_plugin_is_bad_input():
    res = invoke("list", env={"THREATLAB_PLUGINS": "no_such_module_xyz"})
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "THREATLAB_PLUGINS: cannot import plugin module 'no_such_module_xyz'" in res.stderr


def test_exit_codes_of_the_real_command(tmp_path):
    """The same contract through `python -m threatlab` and the console script, in parallel."""
    script = Path(sys.executable).with_name("threatlab")
    module = [sys.executable, "-m", "threatlab"]
    cases = [
        (module + ["run", "toy.nope"], 2, "unknown threat"),
        (module + ["run", BLIND, "--param", "window=0"], 2, "allowed: int in [1, 4294967296]"),
        (module + ["run", BLIND, "--param", "window"], 2, "expected NAME=VALUE"),
        (module + ["run", BLIND, "--defense", "nope"], 2, "no defense 'nope'"),
        (module + ["run", BLIND, "--trials", "0"], 2, "--trials"),
        (module + ["sweep", BLIND, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], 2, "not both"),
        (module + ["run", "--bogus"], 2, "No such option"),
        (module + ["run", "toy.broken", "--out", str(tmp_path)], 1, "run failed: toy.broken"),
        ([str(script), "run", "toy.nope"], 2, "unknown threat"),
    ]
    procs = [subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd, _, _ in cases]
    for proc, (cmd, code, message) in zip(procs, cases):
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == code, (cmd, err)
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, (cmd, err)
        assert out == ""
    done = subprocess.run([str(script), "run", BLIND, "--json", "--trials", "5", "--out", str(tmp_path)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)["threat"] == BLIND
