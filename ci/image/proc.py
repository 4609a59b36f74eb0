"""Running the build's commands: output goes to the build log, a failure names the step."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path


class BuildError(Exception):
    """A build step failed; the message says which, with the command and the log's tail."""


def run(
    step: str,
    cmd: list[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    capture: bool = False,
) -> str:
    """Run ``cmd``, appending its output to ``log`` (stdout returned instead if ``capture``)."""
    with log.open("a") as fh:
        fh.write(f"\n[{step}] $ {shlex.join(cmd)}\n")
        fh.flush()
        try:
            proc = subprocess.run(
                cmd,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=subprocess.PIPE if capture else fh,
                stderr=fh,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            raise BuildError(
                f"{step}: command not found: {cmd[0]} "
                "(run `python3 ci/provision.py` to install the build tools)"
            ) from None
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise BuildError(
            f"{step} failed (exit {proc.returncode}): {shlex.join(cmd)}\n"
            f"  log: {log}\n    " + "\n    ".join(tail)
        )
    return proc.stdout if capture else ""
