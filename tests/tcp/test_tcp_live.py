"""tcpsecure's acceptance rules on the real Linux kernel, and threatlab's RFC 5961 endpoint beside it.

The live tests need root and network namespaces (they skip with the reason otherwise). One run of the
whole probe suite (about 4 s) is shared by the tests that read the kernel's behaviour, which is what
PEERS.md ("TCP: the kernel") records: an in-window RST draws a challenge ACK and the connection
survives, the exact RST resets, an out-of-window RST is dropped silently, any SYN draws a challenge
ACK, data with an acceptable ACK is accepted, data with an old or a future ACK draws a challenge ACK
and is dropped, and challenge ACKs are throttled per socket to one per tcp_invalid_ratelimit.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import replace

import pytest

from threatlab.errors import NotRootError, ParamError
from threatlab.tcp.live import (
    HARNESS_NOTE,
    ProbeTable,
    live_blind_data_injection,
    live_blind_rst,
    live_blind_syn,
    live_tcpsecure,
    run_probes,
)
from threatlab.tcp.probes import PROBES, RFC793, RFC5961, Outcome, probe, replay

BUDGET = {"budget_packets": 200, "budget_seconds": 30.0}


@functools.cache
def _unavailable() -> str | None:
    from threatlab.live import live_unavailable_reason

    return live_unavailable_reason()


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """One live run of every probe class (Linux, threatlab RFC 5961, threatlab RFC 793)."""
    reason = _unavailable()
    if reason:
        pytest.skip(f"live mode unavailable: {reason}")
    pcap = tmp_path_factory.mktemp("tcp-live") / "suite.pcap"
    result = live_tcpsecure({}, frozenset(), pcap=str(pcap), **BUDGET)
    result["pcap"] = pcap
    return result


def linux(result, name: str) -> dict:
    return result["details"][name]["linux"]


def tl_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("tl-")]


# --- the kernel, as PEERS.md records it -----------------------------------------------------------------


@pytest.mark.live
def test_linux_in_window_rst_gets_challenge_ack_and_connection_survives(suite):
    got = linux(suite, "rst-in-window")
    assert got["outcome"] == "ack" and got["acks"] == 1 and got["challenge_acks"] == 1
    assert not got["reset"] and got["rsts"] == 0 and got["survives"] is True


@pytest.mark.live
def test_linux_exact_rst_resets_the_connection(suite):
    got = linux(suite, "rst-exact")
    assert got["outcome"] == "reset" and got["reset"] and got["acks"] == 0


@pytest.mark.live
def test_linux_out_of_window_rst_is_dropped_silently(suite):
    got = linux(suite, "rst-out-of-window")
    assert got["outcome"] == "dropped" and got["acks"] == got["rsts"] == 0 and got["challenge_acks"] == 0
    assert got["survives"] is True


@pytest.mark.live
@pytest.mark.parametrize("name", ["syn-in-window", "syn-out-of-window"])
def test_linux_syn_in_or_out_of_window_gets_challenge_ack(suite, name):
    got = linux(suite, name)
    assert got["outcome"] == "ack" and got["acks"] == 1 and got["challenge_acks"] == 1
    assert "TCPSYNChallenge +1" in got["note"]
    assert not got["reset"] and got["rsts"] == 0 and got["survives"] is True


@pytest.mark.live
def test_linux_accepts_data_with_an_acceptable_ack(suite):
    got = linux(suite, "data-ack-ok")
    assert got["outcome"] == "accepted" and got["bytes_accepted"] == 16
    # the server now expects bytes the client never sent: the client's own data no longer gets through
    assert got["survives"] is False


@pytest.mark.live
@pytest.mark.parametrize("name", ["data-ack-old", "data-ack-future"])
def test_linux_data_with_old_or_future_ack_gets_challenge_ack_and_is_dropped(suite, name):
    got = linux(suite, name)
    assert got["outcome"] == "ack" and got["acks"] == 1 and got["challenge_acks"] == 1
    assert got["bytes_accepted"] == 0 and got["survives"] is True


@pytest.mark.live
def test_linux_throttles_challenge_acks_per_socket_to_one_per_invalid_ratelimit(suite):
    assert "tcp_invalid_ratelimit=500 ms" in suite["sysctls"]
    burst = suite["details"]["rst-burst"]
    got = burst["linux"]
    times = burst["send_times_s"]
    assert got["sent"] == len(times) == 20 and not got["reset"] and got["survives"] is True
    # one challenge ACK per 500 ms: exactly what a limiter of 1 per 0.5 s gives at the same send times
    like_linux = replay(probe("rst-burst"), replace(RFC5961, challenge_ack_limit=(1, 0.5)), times_s=times)
    assert got["acks"] == got["challenge_acks"] == like_linux.acks
    assert 2 <= got["acks"] <= 4  # 20 RSTs 60 ms apart span 1.14 s: 3 when the sleeps keep time
    assert got["suppressed"] == 20 - got["acks"]
    # the draft's 10 per 5 s lets ten through: the one difference of the table, with its reason
    assert burst["threatlab_rfc5961"]["acks"] == 10
    [row] = [r for r in suite["rows"] if r["probe"] == "rst-burst"]
    assert row["linux_vs_rfc5961"].startswith("differ") and "tcp_invalid_ratelimit" in row["reason"]


# --- threatlab against the kernel ---------------------------------------------------------------------------


@pytest.mark.live
def test_threatlab_rfc5961_agrees_with_linux_on_every_single_segment_probe(suite):
    rows = {r["probe"]: r for r in suite["rows"]}
    assert set(rows) == {p.name for p in PROBES}
    for name, row in rows.items():
        if name != "rst-burst":
            assert row["linux_vs_rfc5961"] == "agree", row
            assert row["linux"] == row["threatlab_rfc5961"], row
    assert suite["agree"] == 8 and suite["differ"] == 1


@pytest.mark.live
def test_rfc793_differs_from_linux_where_the_draft_changes_the_rules(suite):
    rows = {r["probe"]: r for r in suite["rows"]}
    assert rows["rst-in-window"]["threatlab_rfc793"] == "reset"
    assert rows["syn-in-window"]["threatlab_rfc793"] == "reset, RST sent"
    assert rows["data-ack-old"]["threatlab_rfc793"].startswith("accepted 16 B")


@pytest.mark.live
def test_result_says_the_harness_reads_sequence_numbers_and_is_printable(suite):
    assert suite["note"] == HARNESS_NOTE and "not blind guessing" in suite["note"]
    assert suite["frames_injected"] == 8 + 20 and suite["probes_run"] == 9
    table = str(suite["rows"])
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1  # aligned even when printed right-justified
    assert "rst-burst" in table and "[1]" in table
    assert isinstance(suite["rows"], list) and isinstance(suite["rows"][0], dict)


@pytest.mark.live
def test_namespaces_are_gone_after_the_run(suite):
    run_id = suite["run_id"]
    assert suite["namespaces_removed"]
    assert not [n for n in tl_namespaces() if n == f"tl-{run_id}" or n.startswith(f"tl-{run_id}-")]


@pytest.mark.live
def test_suite_pcap_reads_cleanly(suite):
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark is not installed")
    proc = subprocess.run(
        [tshark, "-r", str(suite["pcap"]), "-Y", "_ws.malformed"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and proc.stdout == ""
    count = subprocess.run(
        [tshark, "-r", str(suite["pcap"]), "-Y", "eth.src == 02:00:00:00:00:c8 && tcp"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert len(count.splitlines()) == suite["frames_injected"]  # every probe frame, from the adversary


# --- budgets ---------------------------------------------------------------------------------------------


@pytest.mark.live
def test_packet_budget_stops_probing_cleanly():
    reason = _unavailable()
    if reason:
        pytest.skip(f"live mode unavailable: {reason}")
    before = set(tl_namespaces())
    result = live_blind_rst({}, frozenset(), budget_packets=3, budget_seconds=30.0)
    assert result["frames_injected"] == 3
    burst = result["details"]["rst-burst"]["linux"]
    assert burst["sent"] == 0 and "packet budget" in burst["note"]
    assert "stopped: packet budget spent" in result["budget"]
    assert set(tl_namespaces()) <= before


@pytest.mark.live
def test_time_budget_stops_probing_cleanly():
    reason = _unavailable()
    if reason:
        pytest.skip(f"live mode unavailable: {reason}")
    result = live_blind_rst({"live_burst": 40}, frozenset(), budget_packets=1000, budget_seconds=0.5)
    ran = [d["linux"] for d in result["details"].values()]
    assert 1 <= result["frames_injected"] < 3 + 40
    assert any(o["outcome"] == "not run" and "time budget" in o["note"] for o in ran)
    assert "stopped: time budget spent" in result["budget"]


@pytest.mark.live
@pytest.mark.parametrize(
    "entry, names",
    [
        (live_blind_syn, {"syn-in-window", "syn-out-of-window"}),
        (live_blind_data_injection, {"data-ack-ok", "data-ack-old", "data-ack-future"}),
    ],
)
def test_each_threat_entry_runs_its_own_probe_classes(entry, names):
    reason = _unavailable()
    if reason:
        pytest.skip(f"live mode unavailable: {reason}")
    result = entry({}, frozenset(), **BUDGET)
    assert {r["probe"] for r in result["rows"]} == names
    assert all(r["linux_vs_rfc5961"] == "agree" for r in result["rows"])


@pytest.mark.live
def test_tcp_md5_on_the_kernel_drops_every_unsigned_probe():
    reason = _unavailable()
    if reason:
        pytest.skip(f"live mode unavailable: {reason}")
    result = run_probes(["rst-exact", "data-ack-ok"], {}, frozenset({"tcp-md5"}), **BUDGET)
    for name in ("rst-exact", "data-ack-ok"):
        got = linux(result, name)
        assert got["outcome"] == "dropped" and got["survives"] is True
        assert "TCPMD5NotFound +1" in got["note"]
    assert all(r["linux_vs_defended"] == "agree" for r in result["rows"])


# --- without root, and in memory -------------------------------------------------------------------------


def test_live_run_without_root_says_so(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NotRootError, match="root"):
        live_blind_rst({}, frozenset(), **BUDGET)


def test_unknown_probe_or_bad_param_is_a_param_error():
    with pytest.raises(ParamError, match="unknown probe class"):
        run_probes(["rst-sideways"], {}, (), **BUDGET)
    with pytest.raises(ParamError, match="live_burst"):
        run_probes(["rst-burst"], {"live_burst": 0}, (), **BUDGET)


@pytest.mark.parametrize(
    "name, rfc5961, rfc793",
    [
        ("rst-in-window", "ack", "reset"),
        ("rst-exact", "reset", "reset"),
        ("rst-out-of-window", "dropped", "dropped"),
        ("syn-in-window", "ack", "reset"),
        ("syn-out-of-window", "ack", "ack"),
        ("data-ack-ok", "accepted", "accepted"),
        ("data-ack-old", "ack", "accepted"),
        ("data-ack-future", "ack", "ack"),
        ("rst-burst", "ack", "reset"),
    ],
)
def test_replay_classifies_threatlab_rfc5961_and_rfc793(name, rfc5961, rfc793):
    assert replay(probe(name), RFC5961).kind == rfc5961
    assert replay(probe(name), RFC793).kind == rfc793


def test_replay_burst_is_held_to_the_drafts_ten_per_five_seconds():
    got = replay(probe("rst-burst"), RFC5961)
    assert (got.acks, got.challenge_acks, got.suppressed, got.survives) == (10, 10, 10, True)


def test_outcome_agreement_needs_the_same_reaction_and_count():
    assert Outcome(1, acks=1, challenge_acks=1).agrees_with(Outcome(1, acks=1))
    assert not Outcome(20, acks=3).agrees_with(Outcome(20, acks=10))
    assert not Outcome(0, note="time budget spent").agrees_with(Outcome(0))
    assert Outcome(1, reset=True, rsts=1).label == "reset, RST sent"


def test_probe_table_prints_aligned_with_numbered_reasons():
    table = ProbeTable(
        [{"probe": "a", "linux": "x", "reason": ""}, {"probe": "b", "linux": "y", "reason": "why"}]
    )
    table.columns = (("probe", "probe"), ("linux", "linux"))
    lines = str(table).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert any("[1] why" in line for line in lines)
