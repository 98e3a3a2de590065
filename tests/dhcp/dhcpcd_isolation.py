"""Run dhcpcd inside a test namespace without touching the host's files.

dhcpcd's database (/var/lib/dhcpcd) and run directory (/run/dhcpcd) are fixed at build time, so the
command mounts directories of the test's own over them, in the private mount namespace that
`ip netns exec` makes for that one command.
"""

from __future__ import annotations

from pathlib import Path


def isolated(tmp: Path, argv: list[str]) -> list[str]:
    for d in ("db", "run"):
        (tmp / d).mkdir(exist_ok=True)
    return ["sh", "-c", 'mount --bind "$1" /var/lib/dhcpcd && mount --bind "$2" /run/dhcpcd && shift 2 && exec "$@"',
            "sh", str(tmp / "db"), str(tmp / "run"), *argv]
