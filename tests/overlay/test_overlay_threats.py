"""The P2PSIP catalogue entries (draft-song-p2psip-security-eval-00 figures 4 and 6, section 4.2): each
runs through the lab runner with and without its defenses, and the defense's effect is asserted."""

from __future__ import annotations

import pytest

from threatlab.lab.catalogue import load_catalogue
from threatlab.lab.runner import run_threat
from threatlab.overlay.threats import THREATS

CAT = load_catalogue("")

# threat id -> (metric, baseline at least, defended at most)
CLAIMS = {
    "overlay.id-hijack": ("fetches_hijacked_mean", 0.9, 0.0),
    "overlay.unauthorized-data-op": ("objects_damaged_mean", 0.9, 0.0),
    "overlay.mitm-client": ("fetches_modified_mean", 0.8, 0.0),
    "overlay.data-pollution": ("objects_polluted_mean", 0.9, 0.0),
    "overlay.contact-flood": ("victim_call_share_mean", 0.9, 0.0),
    "overlay.spam": ("values_on_target_peer_mean", 200, 10),
    "overlay.replay": ("registrations_rolled_back_mean", 0.9, 0.0),
    "overlay.forward-modify": ("fetches_modified_mean", 0.3, 0.0),
    "overlay.chosen-id": ("attacked_share_mean", 0.95, 0.2),
    "overlay.sybil": ("lookup_failure_rate_mean", 0.65, 0.01),
    "overlay.fabricated-response": ("wrong_answer_rate_mean", 0.65, 0.0),
    "overlay.forward-drop": ("lookup_failure_rate_mean", 0.65, 0.01),
    "overlay.forward-misroute": ("lookup_failure_rate_mean", 0.7, 0.015),
    "overlay.routing-poison": ("poisoned_entry_share_mean", 0.6, 0.25),
    "overlay.churn": ("rereplication_kbytes_mean", 10, 6),
}


def test_every_p2psip_line_is_in_the_catalogue_with_its_source():
    ids = {t.id for t in THREATS}
    assert ids == set(CLAIMS)
    for t in THREATS:
        assert CAT.get(t.id) is t
        assert t.source.seed_file == "004_4e06618dac3b8aab.txt" and t.source.draft
        assert t.defenses and any(m.name == "success_rate" for m in t.metrics)
        assert "engine" in t.summary


@pytest.mark.parametrize("threat_id", sorted(CLAIMS))
def test_defenses_take_the_attack_away(threat_id):
    t = CAT.get(threat_id)
    metric, base_min, def_max = CLAIMS[threat_id]
    base = run_threat(t, {}, [], 1, seed=7)
    defended = run_threat(t, {}, list(t.defense_ids()), 1, seed=7)
    b, d = base.metrics[metric], defended.metrics[metric]
    assert b >= base_min, (metric, b)
    assert d <= def_max, (metric, d)
    assert base.metrics["success_rate"] == 1.0


def test_plain_lookups_match_castro_within_three_points():
    t = CAT.get("overlay.forward-drop")
    r = run_threat(t, {"lookups": 20000}, [], 1, seed=3)
    assert abs(r.metrics["lookup_failure_rate_mean"] - r.expected["lookup_failure_rate_mean"]) < 0.03


def test_signatures_alone_do_not_stop_a_replay_or_an_id_hijack():
    rep = run_threat(CAT.get("overlay.replay"), {}, ["signatures"], 1, seed=7)
    assert rep.metrics["registrations_rolled_back_mean"] >= 0.9
    hj = run_threat(CAT.get("overlay.id-hijack"), {}, ["signatures"], 1, seed=7)
    assert hj.metrics["fetches_hijacked_mean"] >= 0.9
