"""The real Helm CLI, run the way the chart tests need it.

Each ``Helm`` has private config, cache and data directories (nothing of the user's Helm setup
leaks in or out) and optionally a kubeconfig; ``run`` returns the completed process and never
raises on a non-zero exit, so tests can assert on Helm's own error messages.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.world.manifest import World

CHART = Path(__file__).resolve().parents[2] / "charts" / "openwebui-langfuse"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
EXAMPLES = sorted((CHART.parents[1] / "examples").glob("*.yaml"))
CRD_FILE = CHART / "files" / "crd-langfusetracings.yaml"
CRD_NAME = "langfusetracings.openwebui-langfuse.io"
GROUP, VERSION, PLURAL = "openwebui-langfuse.io", "v1alpha1", "langfusetracings"
# Under `helm template` the key Secret is generated; a fixed key makes renders comparable.
FIXED_KEY = ["--set", "pipelines.apiKey.value=fixed-test-key"]


class Helm:
    """The provisioned helm binary with an isolated home and an optional cluster."""

    def __init__(self, world: World, kubeconfig: Path | None = None) -> None:
        self.binary = world.binary("helm")
        self.kubeconfig = kubeconfig
        self._home = Path(tempfile.mkdtemp(prefix="owl-helm-"))

    def env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self._home),
            "HELM_CONFIG_HOME": str(self._home / "config"),
            "HELM_CACHE_HOME": str(self._home / "cache"),
            "HELM_DATA_HOME": str(self._home / "data"),
        }
        # No cluster: point at a kubeconfig that does not exist rather than the user's.
        env["KUBECONFIG"] = str(self.kubeconfig or self._home / "no-kubeconfig")
        return env

    def run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *map(str, args)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str | Path, timeout: float = 120) -> str:
        """Run and return stdout; fail with Helm's stderr otherwise."""
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, (
            f"helm {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}"
        )
        return result.stdout

    def template(self, *args: str | Path, release: str = "owl", namespace: str = "tracing") -> str:
        return self.ok("template", release, CHART, "--namespace", namespace, *args)


def documents(rendered: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a render."""
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc.get("kind") == kind]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod template) of every workload in a render."""
    for doc in docs:
        if doc.get("kind") in ("Deployment", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]
