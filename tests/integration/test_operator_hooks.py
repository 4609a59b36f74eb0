"""``openwebui-langfuse pre-delete`` (the chart's pre-delete hook command) as a local process.

kwok runs no containers, so the hook's command runs here with a TokenRequest token of the
chart's own pre-delete ServiceAccount (its Role is exercised), against the running operator.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    crd_fixture,
    harness_fixture,
    operator_fixture,
    pipeline_ids,
    secret_guard_fixture,
    secrets_in_fixture,
    spec,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.operator import Harness, apply_pre_delete_rbac, token_kubeconfig
from tests.world.pipelines import PipelinesServer

pytestmark = [pytest.mark.world, pytest.mark.usefixtures("secret_guard", "secrets_in")]

RELEASE = "owl"
SELECTOR = (
    f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=openwebui-langfuse,"
    "app.kubernetes.io/component=tracing"
)


def test_pre_delete_removes_the_release_resources_after_cleanup(
    cluster: Cluster,
    world: World,
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    tmp_path: Path,
) -> None:
    labels = dict(item.split("=") for item in SELECTOR.split(","))
    harness.apply(namespace, "from-release", spec(pipelines, langfuse))
    harness.custom.patch_namespaced_custom_object(
        "openwebui-langfuse.io",
        "v1alpha1",
        namespace,
        "langfusetracings",
        "from-release",
        {"metadata": {"labels": labels}},
    )
    harness.apply(namespace, "other", spec(pipelines, langfuse))
    for name in ("from-release", "other"):
        harness.wait_condition(namespace, name, "Ready", "True")
    assert len(pipeline_ids(pipelines)) == 2

    account = apply_pre_delete_rbac(cluster, world, namespace, tmp_path)
    kubeconfig = token_kubeconfig(cluster, namespace, account, tmp_path / "hook-kubeconfig")
    command = world.venv("project") / "bin" / "openwebui-langfuse"
    result = subprocess.run(
        [
            str(command),
            "pre-delete",
            "--namespace",
            namespace,
            "--selector",
            SELECTOR,
            "--timeout",
            "30",
        ],
        env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 langfusetracing(s) deleted" in result.stdout
    assert harness.get(namespace, "from-release") is None
    assert harness.get(namespace, "other") is not None
    assert pipeline_ids(pipelines) == [f"lft_{namespace}_other".replace("-", "_")]
