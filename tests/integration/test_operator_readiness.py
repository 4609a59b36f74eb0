"""The operator's readiness endpoint on the real cluster: 200 only once kopf watches every
namespace it serves; liveness answers throughout (``readiness.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    crd_fixture,
    harness_fixture,
    operator_fixture,
    running_operator,
    secrets_in_fixture,
    spec,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.namespaces import create_namespace, delete_namespace, wait_ready_for_pods
from tests.world.operator import Harness, OperatorProcess, chart_rbac
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

pytestmark = pytest.mark.world


def _status(url: str) -> int:
    return httpx.get(url, timeout=2).status_code


@pytest.mark.usefixtures("secrets_in")
def test_ready_once_the_watches_run_and_then_it_serves(
    operator: OperatorProcess,
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
) -> None:
    wait_for(lambda: _status(operator.readiness) == 200, 30, "the operator's readiness")
    assert httpx.get(operator.readiness, timeout=2).json() == {"ready": True}
    assert "watching: ready" in operator.log_text()
    harness.apply(namespace, "tracing", spec(pipelines, langfuse))
    harness.wait_condition(namespace, "tracing", "Ready", "True")


@pytest.fixture
def unlisted_namespace(kube: Any) -> Iterator[str]:
    """A second namespace, where the operator's ServiceAccount has no rights (yet)."""
    name = f"unlisted-{uuid.uuid4().hex[:6]}"
    create_namespace(kube, name)
    wait_ready_for_pods(kube, name)
    yield name
    delete_namespace(kube, name)


def test_not_ready_while_a_watched_namespace_cannot_be_listed(
    cluster: Cluster,
    world: World,
    namespace: str,
    unlisted_namespace: str,
    crd: None,
    harness: Harness,
    tmp_path: Path,
) -> None:
    # The chart's RBAC in the release namespace only: the listing of the second one is refused.
    account = chart_rbac(cluster, world, namespace)
    with running_operator(
        cluster,
        world,
        harness,
        namespace,
        account,
        tmp_path,
        watched=[namespace, unlisted_namespace],
    ) as op:
        wait_for(
            lambda: "403" in op.log_text() or "Forbidden" in op.log_text(),
            30,
            "the operator to report the refused listing",
        )
        response = httpx.get(op.readiness, timeout=2)
        assert response.status_code == 503
        assert "initial listing" in response.json()["reason"]
        assert _status(op.liveness) == 200  # alive, so not restarted: only not ready
        # The rights arrive (as with `operator.watchNamespaces` on the next upgrade): kopf's
        # retried listing goes through and the operator becomes ready without a restart.
        chart_rbac(cluster, world, namespace, watch_namespaces=[namespace, unlisted_namespace])
        wait_for(lambda: _status(op.readiness) == 200, 60, "readiness once the rights exist")
        assert op.starts == 1
