"""Fixtures shared by the operator integration tests (imported by test_operator_*).

Each test gets its own namespace, the chart's RBAC in it, a TokenRequest kubeconfig of the
chart's ServiceAccount, a real Pipelines server, a Langfuse stand-in and an operator process.
The ``secret_guard`` fixture (autouse in the modules that import it) fails a test whose
operator log, pytest log, Events, statuses or annotations contain a secret it used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.operator import (
    GROUP,
    PLURAL,
    VERSION,
    Harness,
    OperatorProcess,
    chart_rbac,
    delete_cluster_rbac,
    install_crd,
    token_kubeconfig,
)
from tests.world.pipelines import PipelinesServer
from tests.world.poll import WaitTimeout, wait_for

# Short bounds so fault tests finish quickly: finalizer bound 4 s, HTTP timeout 2 s,
# retry backoff capped at 1 s.
OPERATOR_ENV = {
    "OPENWEBUI_LANGFUSE_DELETE_TIMEOUT": "4",
    "OPENWEBUI_LANGFUSE_HTTP_TIMEOUT": "2",
    "OPENWEBUI_LANGFUSE_MAX_BACKOFF": "1",
}


@pytest.fixture(scope="session", name="crd")
def crd_fixture(cluster: Cluster) -> None:
    install_crd(cluster)


@pytest.fixture(name="harness")
def harness_fixture(kube: Any) -> Harness:
    return Harness(kube)


def release_all(harness: Harness, namespace: str, op: OperatorProcess | None) -> None:
    """Delete the namespace's resources while the operator still runs (so the namespace can
    go); whatever a dead operator left is released by dropping the finalizer."""
    for obj in harness.list(namespace):
        if not obj["metadata"].get("deletionTimestamp"):
            harness.delete(namespace, obj["metadata"]["name"])
    if op is not None and op.process is not None:
        with contextlib.suppress(WaitTimeout):
            wait_for(lambda: not harness.list(namespace), 15, "resources to be cleaned up")
    for obj in harness.list(namespace):
        harness.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            obj["metadata"]["name"],
            {"metadata": {"finalizers": None}},
        )


@contextlib.contextmanager
def running_operator(
    cluster: Cluster,
    world: World,
    harness: Harness,
    namespace: str,
    account: str,
    tmp_path: Path,
    *,
    watched: list[str],
    env: dict[str, str] | None = None,
) -> Iterator[OperatorProcess]:
    """The operator as a process with a token of ``account`` (the chart's RBAC, applied by
    the caller into ``namespace``); afterwards its resources are released in every watched
    namespace (all of ``namespace`` in cluster-wide mode), it stops and the RBAC goes."""
    kubeconfig = token_kubeconfig(cluster, namespace, account, tmp_path / "kubeconfig")
    op = OperatorProcess(
        world,
        kubeconfig,
        watched,
        env={**OPERATOR_ENV, **(env or {})},
        log_dir=tmp_path / "operator",
    )
    op.start()
    try:
        yield op
    finally:
        for ns in watched or [namespace]:
            release_all(harness, ns, op)
        op.stop()
        delete_cluster_rbac(cluster, world, namespace)
        # Shown by pytest only when the test failed.
        print("---- operator log (tail) ----\n" + op.log_text()[-6000:])


@pytest.fixture(name="operator")
def operator_fixture(
    cluster: Cluster,
    world: World,
    namespace: str,
    crd: None,
    harness: Harness,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    # Depends on Pipelines and Langfuse so that they outlive it: the resources are deleted
    # (and cleaned up) while both still answer.
    account = chart_rbac(cluster, world, namespace)
    with running_operator(
        cluster, world, harness, namespace, account, tmp_path, watched=[namespace]
    ) as op:
        yield op


@pytest.fixture(name="secrets_in")
def secrets_in_fixture(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    """The Secrets a basic resource references: Langfuse keys and the Pipelines key."""
    harness.put_secret(
        namespace,
        "langfuse",
        {"public-key": langfuse.public_key, "secret-key": langfuse.secret_key},
    )
    harness.put_secret(namespace, "pipelines", {"api-key": pipelines.api_key})


@pytest.fixture(name="secret_guard")
def secret_guard_fixture(
    operator: OperatorProcess,
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[None]:
    yield
    values = {*harness.secret_values, pipelines.api_key, langfuse.secret_key}
    places = {
        "operator log": operator.log_text(),
        "pytest log": caplog.text,
        "status, annotations and Events": harness.visible_text(namespace),
    }
    for where, text in places.items():
        for value in values:
            assert value not in text, f"a secret value leaked into the {where}"


def spec(pipelines: PipelinesServer, langfuse: LangfuseStandIn, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "langfuse": {
            "host": langfuse.url,
            "publicKey": {"secretKeyRef": {"name": "langfuse", "key": "public-key"}},
            "secretKey": {"secretKeyRef": {"name": "langfuse", "key": "secret-key"}},
        },
        "pipelines": {
            "url": pipelines.url,
            "apiKey": {"secretKeyRef": {"name": "pipelines", "key": "api-key"}},
        },
        "resyncInterval": "10s",
    }
    base.update(extra)
    return base


def pipeline_ids(pipelines: PipelinesServer) -> list[str]:
    with pipelines.client() as http:
        return [row["id"] for row in http.get("/pipelines").json()["data"]]


def valves(pipelines: PipelinesServer, pipeline_id: str) -> dict[str, Any]:
    response = httpx.get(f"{pipelines.url}/{pipeline_id}/valves", timeout=10)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body
