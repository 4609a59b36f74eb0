"""Everything one stand-in instance owns: key table, data, request log and switches.

Nothing here is module-global, so two stand-ins in one process never share state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .keys import KeyTable
from .requestlog import RequestLog
from .store import Store

DEFAULT_VERSION = "4.16.0"
# What the authenticated routes can be switched to answer instead of the real thing.
FAILURE_MODES = frozenset({"401", "403", "500", "503", "html", "empty", "slow"})
# The health route has its own switch: a wrong host or a dead database shows there too.
HEALTH_FAILURE_MODES = frozenset({"500", "503", "html", "slow"})


def check_mode(mode: str | None, allowed: frozenset[str]) -> str | None:
    if mode is not None and mode not in allowed:
        expected = ", ".join(sorted(allowed))
        raise ValueError(f"unknown failure mode {mode!r}; expected None or one of {expected}")
    return mode


@dataclass
class Switches:
    """Behaviour switches, read on every request (plain attribute reads: no lock needed)."""

    version: str = DEFAULT_VERSION
    failure: str | None = None
    health_failure: str | None = None
    slow_seconds: float = 10.0
    # Langfuse v4's default write mode: legacy ingestion rejects traces per event and the
    # v1 read endpoints answer 404 before auth.
    events_only: bool = False
    # False: a server without the OTLP endpoint (self-hosted Langfuse v2, or v3 before 3.22):
    # its web app has no such route and answers 404, before any auth.
    otlp: bool = True


@dataclass
class StandInState:
    keys: KeyTable = field(default_factory=KeyTable)
    store: Store = field(default_factory=Store)
    switches: Switches = field(default_factory=Switches)
    log: RequestLog = field(init=False)

    def __post_init__(self) -> None:
        self.log = RequestLog(self.keys.secrets)
