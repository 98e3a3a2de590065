"""Threats for the lab's tests: small, real computations with analytic answers.

Loaded by tests directly, and by subprocesses through THREATLAB_PLUGINS=toy_threats (with this
directory on PYTHONPATH).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from threatlab.lab.catalogue import SUCCESS_RATE, Defense, Metric, Param, Source, Threat
from threatlab.net.topology import Position

RATE_LIMIT = 8  # guesses the "rate-limit" defense lets through


def _effective(params: Mapping[str, Any], defenses: frozenset[str]) -> tuple[int, int, int]:
    space = 1 << params["space_bits"]
    window = 1 if "exact-match" in defenses else min(params["window"], space)
    guesses = min(params["guesses"], RATE_LIMIT) if "rate-limit" in defenses else params["guesses"]
    return space, window, guesses


def blind_guess_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                      pcap: str | None = None) -> dict[str, Any]:
    """A blind attacker draws sequence numbers until one lands in the receiver's window."""
    space, window, guesses = _effective(params, defenses)
    left_edge = rng.randrange(space)  # the victim's rcv_nxt, unknown to the attacker
    if pcap is not None:
        with open(pcap, "w") as f:  # stands in for a trace; tests check only trial 0 gets it
            f.write(f"left_edge={left_edge}\n")
    for sent in range(1, guesses + 1):
        if (rng.randrange(space) - left_edge) % space < window:
            return {"success": True, "guesses": sent}
    return {"success": False, "guesses": guesses}


def blind_guess_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    space, window, guesses = _effective(params, defenses)
    p = window / space
    miss_all = (1 - p) ** guesses
    # guesses sent: min(Geometric(p), k); E = sum_{i<k} (1-p)^i
    return {"success_rate": 1 - miss_all, "guesses_mean": (1 - miss_all) / p}




def echo_live(params: Mapping[str, Any], defenses: frozenset[str], *, budget_packets: int,
              budget_seconds: float) -> dict[str, Any]:
    """A stand-in for a live driver: reports what it was given."""
    return {"packets_sent": min(budget_packets, params["guesses"]), "budget_seconds": budget_seconds,
            "defenses": ",".join(sorted(defenses)) or "none", "reset": False}


BLIND_GUESS = Threat(
    id="toy.blind-guess",
    title="Blind guesser against a receive window",
    source=Source(seed_file="none.txt", section="0", draft="toy"),
    position=Position.OFF_PATH,
    knowledge="the connection's addresses and ports, not its sequence numbers",
    params=(
        Param("space_bits", "bits", 16, "size of the sequence space", min=1, max=32),
        Param("window", "numbers", 1024, "receive window", min=1, max=2**32),
        Param("guesses", "packets", 64, "attacker's packet budget", min=1, max=10**7),
    ),
    defenses=(
        Defense("exact-match", "only the exact next sequence number is accepted"),
        Defense("rate-limit", f"at most {RATE_LIMIT} guesses get through"),
    ),
    metrics=(SUCCESS_RATE, Metric("guesses_mean", "packets", "guesses sent per trial")),
    run=blind_guess_trial,
    expected=blind_guess_expected,
    default_trials=200,
    summary="Each trial: a random window in a 2^space_bits space; the attacker guesses uniformly.",
    peers={"echo": echo_live},
)


def coin_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
               pcap: str | None = None) -> dict[str, Any]:
    flips = [rng.random() < params["p"] for _ in range(params["flips"])]
    return {"success": flips[0], "heads": sum(flips)}


def coin_aggregate(trials: list[Mapping[str, Any]]) -> dict[str, float]:
    return {
        "success_rate": sum(t["success"] for t in trials) / len(trials),
        "heads_max": float(max(t["heads"] for t in trials)),
    }


def coin_expected(params: Mapping[str, Any], defenses: frozenset[str]) -> dict[str, float]:
    return {"success_rate": params["p"]}


COIN = Threat(
    id="toy.coin",
    title="Biased coin, custom aggregate, no defenses",
    source=Source(seed_file="none.txt", section="0"),
    position=Position.SAME_LAN,
    knowledge="everything",
    params=(
        Param("p", "probability", 0.5, "chance of heads", min=0.0, max=1.0),
        Param("flips", "flips", 10, "flips per trial", min=1, max=1000),
        Param("mode", "", "fair", "a string parameter", choices=("fair", "loaded")),
    ),
    defenses=(),
    metrics=(SUCCESS_RATE, Metric("heads_max", "flips", "most heads in one trial")),
    run=coin_trial,
    aggregate=coin_aggregate,
    expected=coin_expected,
)


def broken_trial(params: Mapping[str, Any], defenses: frozenset[str], rng: random.Random,
                 pcap: str | None = None) -> dict[str, Any]:
    if rng.random() < 2:
        raise ZeroDivisionError("the adversary divided by zero")
    return {"success": False}


BROKEN = Threat(
    id="toy.broken",
    title="A run function that fails",
    source=Source(seed_file="none.txt", section="0"),
    position=Position.ON_PATH,
    knowledge="none",
    params=(),
    defenses=(Defense("nothing", "does nothing"),),
    metrics=(SUCCESS_RATE,),
    run=broken_trial,
    default_trials=3,
)

THREATS = (BLIND_GUESS, COIN, BROKEN)
