"""``run --all-namespaces`` with the chart's cluster-wide RBAC (``operator.clusterWide``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    OPERATOR_ENV,
    crd_fixture,
    harness_fixture,
    pipeline_ids,
    release_all,
    running_operator,
    secrets_in_fixture,
    spec,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.operator import (
    CHART,
    RBAC_TEMPLATES,
    Harness,
    OperatorProcess,
)
from tests.world.pipelines import PipelinesServer

pytestmark = pytest.mark.world


@pytest.fixture
def clusterwide_operator(
    cluster: Cluster,
    world: World,
    namespace: str,
    crd: None,
    harness: Harness,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    argv = [
        str(world.binary("helm")),
        "template",
        "owl",
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        "operator.clusterWide=true",
    ]
    # In this mode the namespaced Role(Binding) templates render nothing: the rules join the
    # ClusterRole.
    for template in RBAC_TEMPLATES:
        if "rbac-role" not in template:
            argv += ["--show-only", template]
    rendered = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    applied = cluster.kubectl("apply", "-f", "-", input=rendered.stdout.encode())
    assert applied.returncode == 0, applied.stderr
    with running_operator(
        cluster,
        world,
        harness,
        namespace,
        "owl-openwebui-langfuse-operator",
        tmp_path,
        watched=[],
        env={"OPENWEBUI_LANGFUSE_ALL_NAMESPACES": "true"},
    ) as op:
        yield op


@pytest.mark.usefixtures("secrets_in")
def test_cluster_wide_operator_reconciles(
    clusterwide_operator: OperatorProcess,
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
) -> None:
    harness.apply(namespace, "tracing", spec(pipelines, langfuse))
    harness.wait_condition(namespace, "tracing", "Ready", "True")
    assert pipeline_ids(pipelines) == [f"lft_{namespace}_tracing".replace("-", "_")]
    assert "Not enough permissions" not in clusterwide_operator.log_text()
    seen = clusterwide_operator.log_text() + harness.visible_text(namespace)
    for value in (langfuse.secret_key, pipelines.api_key):
        assert value not in seen
