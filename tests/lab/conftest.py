"""Shared fixtures of the lab tests: the toy threats, importable here and in subprocesses."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

LAB_TESTS = Path(__file__).resolve().parent
if str(LAB_TESTS) not in sys.path:
    sys.path.insert(0, str(LAB_TESTS))


def subprocess_env(**extra: str) -> dict[str, str]:
    """An environment in which `python -m threatlab` sees the toy threats."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(LAB_TESTS)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["THREATLAB_PLUGINS"] = "toy_threats"
    env["THREATLAB_PROGRESS"] = "0"
    env.pop("THREATLAB_DEBUG", None)
    env.update(extra)
    return env


@pytest.fixture
def toy_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalogue holds the toy threats (through the THREATLAB_PLUGINS hook), and only those."""
    from threatlab.lab import catalogue

    monkeypatch.setattr(catalogue, "PROTOCOL_PACKAGES", ())
    monkeypatch.setenv("THREATLAB_PLUGINS", "toy_threats")
    monkeypatch.setenv("THREATLAB_PROGRESS", "0")
    monkeypatch.delenv("THREATLAB_DEBUG", raising=False)
