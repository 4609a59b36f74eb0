"""The two GitOps health judges, run for real on LangfuseTracing objects.

* kstatus: the Go library ``sigs.k8s.io/cli-utils/pkg/kstatus/status`` that Flux, Helm 4's
  ``--wait`` and cli-utils appliers use.
* Argo CD: the Lua health check ``docs/argocd-health.lua`` that users paste into argocd-cm, run
  twice: in gopher-lua, the interpreter Argo CD embeds, set up as Argo CD sets it up; and in the
  reference Lua 5.1 (C) from ``lupa``, with the same few libraries.

The Go side is one small program (``tests/e2e/healthtool/``, versions pinned by its
go.mod/go.sum), built once with the Go toolchain from the module proxy and cached under the
world's cache directory, keyed by the digest of its sources (or provisioned: world manifest bin
``healthtool``).

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
HEALTHTOOL_SOURCE = Path(__file__).resolve().parent / "healthtool"
ARGOCD_HEALTH_LUA = REPO / "docs" / "argocd-health.lua"
HEALTHTOOL_SOURCES = ("go.mod", "go.sum", "main.go")


class HealthToolError(RuntimeError):
    """A health judge could not run (no Go toolchain, build failure, bad script)."""


@dataclass(frozen=True)
class Verdict:
    status: str
    message: str


# -- the Go program -------------------------------------------------------------------------------


def _healthtool_key() -> str:
    digest = hashlib.sha256()
    for name in HEALTHTOOL_SOURCES:
        digest.update(name.encode() + b"\0" + (HEALTHTOOL_SOURCE / name).read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def healthtool_binary() -> Path:
    """The healthtool binary: the provisioned one when the world manifest names it (bin
    ``healthtool``), else built here on first use (about a minute cold) and cached."""
    try:
        return World.load().binary("healthtool")
    except WorldError:
        pass
    final_dir = cache_dir() / f"healthtool-{_healthtool_key()}"
    binary = final_dir / "healthtool"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise HealthToolError("the GitOps health checks need the Go toolchain (`go`) on PATH")
    cache_dir().mkdir(parents=True, exist_ok=True)
    # Parallel test processes (or a demo beside a test run) build it once, not twice.
    with open(cache_dir() / "healthtool.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return binary
        with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="healthtool-build-") as tmp:
            out = Path(tmp) / "healthtool"
            env = {
                **os.environ,
                "CGO_ENABLED": "0",
                "GOWORK": "off",
                "GOFLAGS": "-mod=readonly -buildvcs=false",
            }
            proc = subprocess.run(
                [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out), "."],
                cwd=HEALTHTOOL_SOURCE,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=900,
            )
            if proc.returncode != 0:
                raise HealthToolError(f"building healthtool failed:\n{proc.stderr[-3000:]}")
            final_dir.mkdir(parents=True, exist_ok=True)
            out.replace(binary)
    return binary


def _healthtool(args: list[str], objects: list[dict[str, Any]]) -> list[Verdict]:
    proc = subprocess.run(
        [str(healthtool_binary()), *args],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise HealthToolError(f"healthtool {args[0]} failed: {proc.stderr.strip()}")
    return [Verdict(r["status"], r["message"]) for r in json.loads(proc.stdout)]


def kstatus(objects: list[dict[str, Any]]) -> list[Verdict]:
    """kstatus' verdict (Current, InProgress, Failed, Terminating, ...) for each object."""
    return _healthtool(["kstatus"], objects)


def argocd_gopher_lua(
    objects: list[dict[str, Any]], script: Path = ARGOCD_HEALTH_LUA
) -> list[Verdict]:
    """Argo CD's verdict for each object: the health check run in gopher-lua as Argo CD runs it."""
    return _healthtool(["argocd", str(script)], objects)


# -- Argo CD --------------------------------------------------------------------------------------

# What a health script can reach in Argo CD's Lua VM: the base and table libraries (Argo CD also
# opens `package` and a safe `os` subset, which this script does not use). No string or math
# library: Argo CD does not open them, so a script calling string.format would fail there.
_SANDBOX_RUNNER = """
function(source, obj)
  local chunk, err = loadstring(source, "argocd-health.lua")
  if chunk == nil then error(err) end
  setfenv(chunk, {
    obj = obj, ipairs = ipairs, pairs = pairs, next = next, type = type, error = error,
    tostring = tostring, tonumber = tonumber, select = select, unpack = unpack,
    pcall = pcall, assert = assert, rawget = rawget, rawequal = rawequal, table = table,
  })
  local hs = chunk()
  return hs.status, hs.message
end
"""


class ArgoCDHealth:
    """The Argo CD health check of ``docs/argocd-health.lua`` in the reference Lua 5.1 (lupa),
    one object at a time (handy in the end-to-end tests)."""

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
