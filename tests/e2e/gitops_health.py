"""The two GitOps health judges, run for real on LangfuseTracing objects.

* kstatus: the Go library ``sigs.k8s.io/cli-utils/pkg/kstatus/status`` that Flux, Helm 4's
  ``--wait`` and cli-utils appliers use. A tiny Go program (``tests/e2e/kstatus/``, versions
  pinned by its go.mod/go.sum) is built once with the Go toolchain from the module proxy and
  cached under the world's cache directory, keyed by the digest of its sources.
* Argo CD: the Lua health check ``docs/argocd-health.lua`` that users paste into argocd-cm, run
  in a real Lua 5.1 (Argo CD's gopher-lua speaks 5.1) from ``lupa``, with only the globals Argo
  CD's sandbox offers.

Used by the unit tests (fixture objects built with the operator's own condition helpers) and by
the end-to-end test (objects read back from the cluster).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.world.manifest import World, WorldError, cache_dir

REPO = Path(__file__).resolve().parents[2]
KSTATUS_SOURCE = Path(__file__).resolve().parent / "kstatus"
ARGOCD_HEALTH_LUA = REPO / "docs" / "argocd-health.lua"
KSTATUS_SOURCES = ("go.mod", "go.sum", "main.go")


class HealthToolError(RuntimeError):
    """A health judge could not run (no Go toolchain, build failure, bad script)."""


@dataclass(frozen=True)
class Verdict:
    status: str
    message: str


# -- kstatus ------------------------------------------------------------------------------------


def _kstatus_key() -> str:
    digest = hashlib.sha256()
    for name in KSTATUS_SOURCES:
        digest.update(name.encode() + b"\0" + (KSTATUS_SOURCE / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def kstatus_binary() -> Path:
    """The kstatus-compute binary: the provisioned one when the world manifest names it (bin
    ``kstatus-compute``), else built here on first use (about a minute cold) and cached."""
    try:
        return World.load().binary("kstatus-compute")
    except WorldError:
        pass
    final_dir = cache_dir() / f"kstatus-compute-{_kstatus_key()}"
    binary = final_dir / "kstatus-compute"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise HealthToolError("the kstatus check needs the Go toolchain (`go`) on PATH")
    cache_dir().mkdir(parents=True, exist_ok=True)
    # Parallel test processes (or a demo beside a test run) build it once, not twice.
    with open(cache_dir() / "kstatus-compute.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return binary
        with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="kstatus-build-") as tmp:
            out = Path(tmp) / "kstatus-compute"
            env = {
                **os.environ,
                "CGO_ENABLED": "0",
                "GOWORK": "off",
                "GOFLAGS": "-mod=readonly -buildvcs=false",
            }
            proc = subprocess.run(
                [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."],
                cwd=KSTATUS_SOURCE,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=900,
            )
            if proc.returncode != 0:
                raise HealthToolError(f"building kstatus-compute failed:\n{proc.stderr[-3000:]}")
            final_dir.mkdir(parents=True, exist_ok=True)
            out.replace(binary)
    return binary


def kstatus(objects: list[dict[str, Any]]) -> list[Verdict]:
    """kstatus' verdict (Current, InProgress, Failed, Terminating, ...) for each object."""
    proc = subprocess.run(
        [str(kstatus_binary())],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise HealthToolError(f"kstatus-compute failed: {proc.stderr.strip()}")
    return [Verdict(r["status"], r["message"]) for r in json.loads(proc.stdout)]


# -- Argo CD --------------------------------------------------------------------------------------

# What a health script can reach in Argo CD's Lua VM, less the safe `os` subset (this one needs
# none of it). Anything else (io, require, load...) is nil, as it would be there.
_SANDBOX_RUNNER = """
function(source, obj)
  local chunk, err = loadstring(source, "argocd-health.lua")
  if chunk == nil then error(err) end
  setfenv(chunk, {
    obj = obj, ipairs = ipairs, pairs = pairs, next = next, type = type, error = error,
    tostring = tostring, tonumber = tonumber, string = string, table = table, math = math,
  })
  local hs = chunk()
  return hs.status, hs.message
end
"""


class ArgoCDHealth:
    """The Argo CD health check of ``docs/argocd-health.lua``, loaded once into Lua 5.1."""

    def __init__(self, script: Path = ARGOCD_HEALTH_LUA) -> None:
        from lupa import lua51  # only the GitOps tests need lupa

        self._lua = lua51.LuaRuntime(unpack_returned_tuples=True)
        self._source = script.read_text()
        self._run = self._lua.eval(_SANDBOX_RUNNER)

    def __call__(self, obj: dict[str, Any]) -> Verdict:
        table = self._lua.table_from(obj, recursive=True)
        status, message = self._run(self._source, table)
        if not isinstance(status, str):
            raise HealthToolError(f"the health check returned no status for {obj!r}")
        return Verdict(status, message if isinstance(message, str) else "")


# kstatus verdict <-> Argo CD health, the correspondence docs/argocd-health.lua promises.
KSTATUS_TO_ARGOCD = {"Current": "Healthy", "InProgress": "Progressing", "Failed": "Degraded"}
