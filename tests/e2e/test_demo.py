"""The README's first command runs green: ``python -m demo`` (what ``ci/demo`` runs after
provisioning), as a process, with its own cluster, Open WebUI and stand-in (about 40 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.world.proc import RUN_VAR

pytestmark = [pytest.mark.world, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_green_and_cleans_up() -> None:
    env = {k: v for k, v in os.environ.items() if k != RUN_VAR}
    run = subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    for expected in (
        "==> [10/10] Clean up",
        "Ready                 True  Ready",
        "ConnectionRegistered  True  Registered",
        "└─ GENERATION  assistant response",
        "usage   input=",
        "PASS: a chat with 'owl_echo' through Open WebUI reached Langfuse",
        "in project 'rotated-project'",
        "Pipelines now holds: owl_echo (pipe)",
        "Open WebUI connections now: []",
        "nothing left running.",
    ):
        assert expected in run.stdout, f"{expected!r} missing from the demo's output"
    assert "sk-lf-" not in output.replace("sk-lf-…", "")
