"""Where the provisioned world lives: the manifest written by ``ci/provision.py``.

The manifest (``world.json``) holds paths, and the version of each Kubernetes release built.
Launchers ask it for a binary, a virtualenv, a directory or a Kubernetes release and get a
clear error naming the missing part instead of a FileNotFoundError deep inside a subprocess
call.

Kubernetes releases have roles: ``current`` (KUBERNETES_VERSION, also the plain ``bin``
entries every cluster uses by default) and ``oldest`` (KUBERNETES_OLDEST_VERSION, the oldest
minor the chart's kubeVersion claims).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

PROVISION_HINT = "run `python3 ci/provision.py` first"


class WorldError(RuntimeError):
    """The world is not provisioned, or a part of it is missing."""


def cache_dir() -> Path:
    """The per-user cache, resolved exactly as ``ci/provision.py`` does."""
    explicit = os.environ.get("OWL_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "openwebui-langfuse"


def manifest_path() -> Path:
    explicit = os.environ.get("OWL_WORLD")
    return Path(explicit) if explicit else cache_dir() / "world.json"


def _executable(path: Path, what: str) -> Path:
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise WorldError(f"{what} is missing or not executable at {path}: {PROVISION_HINT}")
    return path


@dataclass(frozen=True)
class KubernetesRelease:
    """One provisioned Kubernetes control plane (kube-apiserver, -controller-manager,
    -scheduler and kubectl of one version)."""

    role: str
    version: str
    bin_dir: Path

    def binary(self, name: str) -> Path:
        return _executable(self.bin_dir / name, f"Kubernetes {self.version} binary '{name}'")


@dataclass(frozen=True)
class World:
    """Paths of every provisioned part; see ``ci/provision.py`` for how they are made."""

    source: Path
    bins: dict[str, str] = field(default_factory=dict)
    venvs: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    releases: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> World:
        path = path or manifest_path()
        if not path.is_file():
            raise WorldError(f"no world manifest at {path}: {PROVISION_HINT}")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise WorldError(
                f"unreadable world manifest {path} ({exc}): {PROVISION_HINT}"
            ) from None
        return cls(
            source=path,
            bins=dict(data.get("bin", {})),
            venvs=dict(data.get("venv", {})),
            paths=dict(data.get("path", {})),
            releases=dict(data.get("kubernetes", {})),
        )

    def _listed(self, table: dict[str, str], kind: str, name: str) -> Path:
        """The manifest's entry ``name`` of one table; a missing entry names the manifest."""
        raw = table.get(name)
        if not raw:
            raise WorldError(
                f"{kind} '{name}' is not in the world manifest {self.source}: {PROVISION_HINT}"
            )
        return Path(raw)

    def binary(self, name: str) -> Path:
        """An executable of the world (kube-apiserver, etcd, kwokctl, helm, ...)."""
        return _executable(self._listed(self.bins, "binary", name), f"binary '{name}'")

    def kubernetes(self, role: str) -> KubernetesRelease:
        """The Kubernetes release of a role (``current`` or ``oldest``)."""
        entry = self.releases.get(role)
        if not entry:
            raise WorldError(
                f"Kubernetes release '{role}' is not in the world manifest {self.source}: "
                f"{PROVISION_HINT}"
            )
        return KubernetesRelease(role=role, version=entry["version"], bin_dir=Path(entry["bin"]))

    def venv(self, name: str) -> Path:
        """The root of a provisioned virtualenv (project, pipelines, open_webui)."""
        root = self._listed(self.venvs, "virtualenv", name)
        if not (root / "bin" / "python").exists():
            raise WorldError(f"virtualenv '{name}' has no bin/python at {root}: {PROVISION_HINT}")
        return root

    def python(self, venv: str) -> Path:
        """The interpreter of a virtualenv (console scripts are avoided: see launchers)."""
        return self.venv(venv) / "bin" / "python"

    def path(self, name: str) -> Path:
        path = self._listed(self.paths, "path", name)
        if not path.exists():
            raise WorldError(f"path '{name}' does not exist: {path}: {PROVISION_HINT}")
        return path
