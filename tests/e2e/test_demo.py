"""The README's first command runs green: ``python -m demo`` (what ``ci/demo`` runs after
provisioning), as a process, with its own cluster, Open WebUI and stand-in, for each target:
Pipelines (the default) and ``--target function`` (no Pipelines server); about 40 s each."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.world.proc import RUN_VAR

pytestmark = [pytest.mark.world, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]

# Printed by both: the same flow, whatever the target.
COMMON = (
    "==> [10/10] Clean up",
    "Ready                 True  Ready",
    "FilterInstalled       True  Installed",
    "└─ GENERATION  assistant response",
    "       model   owl_echo",
    "usage   input=",
    "a streamed chat ('echo: And a streamed answer?') reports usage too: input=",
    "PASS: a chat with 'owl_echo' through Open WebUI reached Langfuse",
    "in project 'rotated-project'",
    "Open WebUI connections now: []",
    "nothing left running.",
)
EXPECTED = {
    "pipelines": (
        "spec.target: pipelines",
        "ConnectionRegistered  True  Registered",
        "Pipelines (real server) http://127.0.0.1:",
        "Pipelines now holds: owl_echo (pipe)",
    ),
    "function": (
        "spec.target: function",
        "status.functionId: lft_demo_tracing",
        "Open WebUI functions now: lft_demo_tracing (filter, active, global), owl_echo (pipe",
        "Open WebUI functions now: owl_echo (pipe, active)",
    ),
}
# What only the other target shows: a function run starts no Pipelines and registers nothing.
ABSENT = {
    "pipelines": ("functionId",),
    "function": ("Pipelines (real server)", "ConnectionRegistered", "Pipelines now holds"),
}


@pytest.mark.parametrize("target", ["pipelines", "function"])
def test_demo_runs_green_and_cleans_up(target: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != RUN_VAR}
    argv = [] if target == "pipelines" else ["--target", target]  # the default needs no flag
    run = subprocess.run(
        [sys.executable, "-m", "demo", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    for expected in COMMON + EXPECTED[target]:
        assert expected in run.stdout, f"{expected!r} missing from the demo's output"
    for absent in ABSENT[target]:
        assert absent not in run.stdout, f"{absent!r} in the {target} demo's output"
    assert "sk-lf-" not in output.replace("sk-lf-…", "")
