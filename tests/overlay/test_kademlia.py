"""Data pollution and chosen-ID attacks against the PyPI `kademlia` overlay, live in a namespace."""

from __future__ import annotations

import functools
import subprocess

import pytest

from threatlab.overlay.kademlia_peer import kademlia_available, kademlia_chosen_id, kademlia_pollution


@functools.cache
def _reason() -> str | None:
    from threatlab.live import live_unavailable_reason

    return kademlia_available() or live_unavailable_reason()


@pytest.fixture(autouse=True)
def _need_kademlia_and_root():
    reason = _reason()
    if reason:
        pytest.skip(reason)
    yield
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert "-kad" not in out


@pytest.mark.live
def test_one_forged_store_reaches_most_readers_and_signatures_stop_it():
    plain = kademlia_pollution(50)
    assert plain["honest_reads_before_attack"] >= 40
    assert plain["polluted_read_rate"] >= 0.3
    signed = kademlia_pollution(50, signed=True)
    assert signed["forged_reads"] == 0  # the forged value fails the owner's signature ...
    assert signed["failed_reads"] > 0  # ... but the overwrite still denies the honest value


@pytest.mark.live
def test_chosen_ids_capture_the_key_random_ids_do_not():
    full = kademlia_chosen_id(50, attackers=20)
    assert full["storage_capture_rate"] == 1.0
    assert full["lookup_capture_rate"] == 1.0
    some = kademlia_chosen_id(50, attackers=5)
    assert some["closest_nodes_captured"] == 5
    rand = kademlia_chosen_id(50, attackers=5, chosen=False)
    assert rand["storage_capture_rate"] < some["storage_capture_rate"]
    assert rand["lookup_capture_rate"] <= some["lookup_capture_rate"]
