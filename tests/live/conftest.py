"""Fixtures of the live suite: skip with a clear reason unless root and `ip netns` work here."""

from __future__ import annotations

import functools
import shutil

import pytest
from live_helpers import lan, routed

from threatlab.live.namespaces import live_unavailable_reason
from threatlab.net.topology import Topology


@functools.cache
def _unavailable() -> str | None:
    return live_unavailable_reason()


@pytest.fixture
def live() -> None:
    """Skip the test unless live mode can run (root, iproute2, usable `ip netns`)."""
    reason = _unavailable()
    if reason:
        pytest.skip(f"live mode unavailable: {reason}")


@pytest.fixture
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed")
    return path


@pytest.fixture
def lan_topology() -> Topology:
    return lan()


@pytest.fixture
def routed_topology() -> Topology:
    return routed()
