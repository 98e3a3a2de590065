"""Threat entries and the catalogue that holds them.

A threat is data plus a run function: the run function plays one trial (one attack against one
freshly built network) and returns that trial's measurements; the runner aggregates trials into
metrics. Protocol packages define their entries in `<proto>/threats.py` as `THREATS = (...)`; this
module finds them, so a protocol never imports `lab`.
"""

from __future__ import annotations

import importlib
import math
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from threatlab.errors import ParamError, UsageError
from threatlab.net.topology import Position

# Protocol packages whose `threats` module contributes entries, in catalogue order.
PROTOCOL_PACKAGES = ("dhcp", "tcp", "ike", "sctp", "overlay")

ParamValue = int | float | bool | str
# run(params, defenses, rng, pcap=None) -> one trial's measurements; must contain "success": bool.
RunFunction = Callable[..., Mapping[str, Any]]
# expected(params, defenses) -> analytic values of some metrics, same names as the metrics.
ExpectFunction = Callable[[Mapping[str, ParamValue], frozenset[str]], Mapping[str, float]]
# aggregate(list of trial measurements) -> metrics; the default is `default_aggregate`.
# live(params, defenses, budget) -> a LiveReport-like mapping; one per real peer the threat runs against.
LiveFunction = Callable[..., Mapping[str, Any]]
AggregateFunction = Callable[[list[Mapping[str, Any]]], dict[str, float]]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    unit: str
    default: ParamValue
    doc: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[ParamValue, ...] | None = None

    @property
    def kind(self) -> type:
        return type(self.default)

    def describe_range(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind is bool:
            return "true or false"
        lo = "-inf" if self.min is None else self._bound(self.min)
        hi = "inf" if self.max is None else self._bound(self.max)
        return f"{self.kind.__name__} in [{lo}, {hi}]" + (f" {self.unit}" if self.unit else "")

    def _bound(self, value: float) -> str:
        # an int parameter's bounds exactly (2**32, not 4.29497e+09)
        if self.kind is int and float(value).is_integer():
            return str(int(value))
        return f"{value:g}"

    def parse(self, text: str | ParamValue) -> ParamValue:
        """Turn a user's value into this parameter's type, or raise ParamError naming the range."""
        kind = self.kind
        try:
            if isinstance(text, str):
                if kind is bool:
                    low = text.strip().lower()
                    if low not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(text)
                    value: ParamValue = low in ("true", "1", "yes")
                elif kind is int:
                    value = int(float(text)) if _is_integral(text) else int(text)
                elif kind is float:
                    value = float(text)
                else:
                    value = text
            else:
                if kind is bool and not isinstance(text, bool):
                    raise ValueError(text)
                value = kind(text)
                if kind is int and isinstance(text, float) and not text.is_integer():
                    raise ValueError(text)
        except (ValueError, TypeError):
            raise ParamError(
                f"parameter {self.name}={text!r}: not a valid {kind.__name__}; allowed: {self.describe_range()}"
            ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamError(f"parameter {self.name}={text!r}: must be finite; allowed: {self.describe_range()}")
        if self.choices is not None and value not in self.choices:
            raise ParamError(f"parameter {self.name}={text!r}: allowed: {self.describe_range()}")
        if kind in (int, float) and not isinstance(value, bool):
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                raise ParamError(f"parameter {self.name}={text!r}: out of range; allowed: {self.describe_range()}")
        return value


def _is_integral(text: str) -> bool:
    # accept "1e6" for an int parameter, but not "1.5"
    try:
        f = float(text)
    except ValueError:
        return False
    return f.is_integer() and any(c in text for c in ".eE")


@dataclass(frozen=True, slots=True)
class Defense:
    id: str  # the config switch it turns on, e.g. "rst-exact"
    description: str


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    unit: str
    description: str


SUCCESS_RATE = Metric("success_rate", "share of trials", "share of trials in which the attack reached its goal")


@dataclass(frozen=True, slots=True)
class Source:
    seed_file: str  # e.g. "001_8fae148b6f71f2f2.txt"
    section: str  # the draft's own section number, e.g. "2"
    draft: str = ""  # e.g. "draft-ietf-tcpm-tcpsecure-01"


@dataclass(frozen=True)
class Threat:
    id: str  # "proto.slug"
    title: str
    source: Source
    position: Position
    knowledge: str  # what the attacker knows going in
    params: tuple[Param, ...]
    defenses: tuple[Defense, ...]
    metrics: tuple[Metric, ...]
    run: RunFunction
    expected: ExpectFunction | None = None
    aggregate: AggregateFunction | None = None
    default_trials: int = 20
    summary: str = ""
    tags: tuple[str, ...] = field(default=())
    # live mode: peer name ("linux", "dnsmasq", "threatlab", ...) -> function running the attack in namespaces
    peers: Mapping[str, LiveFunction] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "." not in self.id:
            raise ValueError(f"threat id {self.id!r} must be proto.slug")
        if not any(m.name == "success_rate" for m in self.metrics):
            raise ValueError(f"threat {self.id}: metrics must include success_rate")

    @property
    def protocol(self) -> str:
        return self.id.split(".", 1)[0]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise ParamError(f"{self.id} has no parameter {name!r} (parameters: {known})")

    def defense_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.defenses)

    def resolve_params(self, given: Mapping[str, str | ParamValue] | None = None) -> dict[str, ParamValue]:
        values = {p.name: p.default for p in self.params}
        for name, raw in (given or {}).items():
            values[name] = self.param(name).parse(raw)
        return values

    def resolve_defenses(self, given: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[str]:
        known = set(self.defense_ids())
        for d in given:
            if d not in known:
                raise ParamError(
                    f"{self.id} has no defense {d!r} (defenses: {', '.join(sorted(known)) or 'none'})"
                )
        return frozenset(given)

    def run_trial(self, params: Mapping[str, ParamValue], defenses: frozenset[str], rng: random.Random,
                  pcap: str | None = None) -> Mapping[str, Any]:
        result = self.run(params, defenses, rng, pcap=pcap)
        if "success" not in result:
            raise RuntimeError(f"{self.id}: run function returned no 'success'")
        return result


def default_aggregate(trials: list[Mapping[str, Any]]) -> dict[str, float]:
    """success_rate, and the mean of every other numeric measurement as NAME_mean."""
    n = len(trials)
    out: dict[str, float] = {"success_rate": sum(1 for t in trials if t["success"]) / n if n else 0.0}
    keys = [k for k in (trials[0] if trials else {}) if k != "success"]
    for key in keys:
        vals = [t[key] for t in trials if isinstance(t.get(key), (int, float)) and not isinstance(t.get(key), bool)]
        if vals:
            out[f"{key}_mean"] = sum(vals) / len(vals)
    return out


class Catalogue:
    """An ordered set of threats, by id."""

    def __init__(self, threats: tuple[Threat, ...] | list[Threat] = ()) -> None:
        self._threats: dict[str, Threat] = {}
        for t in threats:
            self.add(t)

    def add(self, threat: Threat) -> None:
        if threat.id in self._threats:
            raise ValueError(f"duplicate threat id {threat.id}")
        self._threats[threat.id] = threat

    def get(self, threat_id: str) -> Threat:
        try:
            return self._threats[threat_id]
        except KeyError:
            raise UsageError(f"unknown threat {threat_id!r}; `threatlab list` shows the catalogue") from None

    def __iter__(self):
        return iter(self._threats.values())

    def __len__(self) -> int:
        return len(self._threats)

    def protocol(self, proto: str) -> list[Threat]:
        return [t for t in self if t.protocol == proto]


# Environment variable naming extra modules whose `THREATS` tuple joins the catalogue.
PLUGINS_ENV = "THREATLAB_PLUGINS"


def load_catalogue(plugins: str | None = None) -> Catalogue:
    """The built-in catalogue: every protocol package's `threats.THREATS` that exists, then plugins.

    Plugins are modules outside threatlab that define their own threats: `plugins` (or, when it is
    None, the environment variable THREATLAB_PLUGINS) is a comma-separated list of importable module
    names, each with a `THREATS` tuple of `Threat` entries, added after the built-in ones in the
    order given. A plugin that cannot be imported, has no THREATS, or repeats an id is a UsageError.
    """
    cat = Catalogue()
    for proto in PROTOCOL_PACKAGES:
        try:
            mod = importlib.import_module(f"threatlab.{proto}.threats")
        except ModuleNotFoundError as exc:
            if exc.name in (f"threatlab.{proto}", f"threatlab.{proto}.threats"):
                continue
            raise
        for threat in getattr(mod, "THREATS", ()):
            cat.add(threat)
    if plugins is None:
        plugins = os.environ.get(PLUGINS_ENV, "")
    for name in (n.strip() for n in plugins.split(",")):
        if name:
            _add_plugin(cat, name)
    return cat


def _add_plugin(cat: Catalogue, name: str) -> None:
    try:
        mod = importlib.import_module(name)
    except ImportError as exc:
        raise UsageError(f"{PLUGINS_ENV}: cannot import plugin module {name!r}: {exc}") from None
    threats = getattr(mod, "THREATS", None)
    if threats is None:
        raise UsageError(f"{PLUGINS_ENV}: plugin module {name!r} has no THREATS tuple")
    for threat in threats:
        if not isinstance(threat, Threat):
            raise UsageError(f"{PLUGINS_ENV}: plugin module {name!r}: THREATS holds {threat!r}, not a Threat")
        try:
            cat.add(threat)
        except ValueError as exc:
            raise UsageError(f"{PLUGINS_ENV}: plugin module {name!r}: {exc}") from None
