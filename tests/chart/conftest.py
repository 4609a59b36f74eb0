"""Fixtures of the chart tests that need the cluster.

The CRD is cluster-scoped and the session shares one cluster: ``crd`` applies it from the
chart's file for a test module (server-side, without Helm's ownership metadata) and deletes it
after; tests that install the chart therefore pass ``crd.install=false``, except the
CRD-lifecycle test, which removes the CRD, lets Helm own it, and restores this state when it
ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.chart.helm import CRD_FILE, CRD_NAME, Helm
from tests.world.manifest import World
from tests.world.namespaces import create_namespace, delete_namespace, wait_ready_for_pods
from tests.world.poll import wait_for

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.world.cluster import Cluster


@pytest.fixture(scope="session")
def helm_cluster(world: World, cluster: Cluster) -> Helm:
    """The real Helm, talking to the session's cluster as admin."""
    return Helm(world, kubeconfig=cluster.kubeconfig)


def apply_crd(cluster: Cluster) -> None:
    """Apply the chart's CRD file as it is and wait until it is served."""
    result = cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager",
        "chart-tests",
        "-f",
        str(CRD_FILE),
    )
    assert result.returncode == 0, result.stderr
    result = cluster.kubectl(
        "wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s"
    )
    assert result.returncode == 0, result.stderr


def delete_crd(cluster: Cluster) -> None:
    """Delete the CRD (and with it every LangfuseTracing) and wait until it is gone."""
    cluster.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=true", timeout=60)
    wait_for(
        lambda: cluster.kubectl("get", "crd", CRD_NAME).returncode != 0,
        60,
        f"CRD {CRD_NAME} to be gone",
    )


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> Iterator[str]:
    """The CRD for one test module, deleted afterwards: later tests of the session (e2e ones
    that let Helm install the CRD, say) find the cluster as if the chart tests never ran."""
    apply_crd(cluster)
    yield CRD_NAME
    delete_crd(cluster)


@pytest.fixture
def make_namespace(kube: ApiClient) -> Iterator[Callable[..., str]]:
    """Create extra namespaces (e.g. one the operator does not watch); deleted afterwards."""
    made: list[str] = []

    def make(prefix: str = "extra", labels: dict[str, str] | None = None) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        create_namespace(kube, name, labels)
        made.append(name)
        wait_ready_for_pods(kube, name)
        return name

    yield make
    for name in made:
        delete_namespace(kube, name)
