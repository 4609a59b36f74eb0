"""Several resources, one Pipelines: per-team routing without touching each other's filter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    OPERATOR_ENV,
    crd_fixture,
    harness_fixture,
    pipeline_ids,
    release_all,
    running_operator,
    spec,
    valves,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.operator import (
    Harness,
    OperatorProcess,
    chart_rbac,
)
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

pytestmark = pytest.mark.world


@pytest.fixture
def second_namespace(kube: Any, namespace: str) -> Iterator[str]:
    from kubernetes.client import CoreV1Api, V1Namespace, V1ObjectMeta

    core = CoreV1Api(kube)
    name = f"{namespace[:50]}-b{uuid.uuid4().hex[:4]}"
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=name)))
    try:
        wait_for(
            lambda: core.read_namespaced_service_account("default", name),
            30,
            f"ServiceAccount default in {name}",
        )
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture
def two_namespace_operator(
    cluster: Cluster,
    world: World,
    namespace: str,
    second_namespace: str,
    crd: None,
    harness: Harness,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    watched = [namespace, second_namespace]
    account = chart_rbac(cluster, world, namespace, watch_namespaces=watched)
    with running_operator(
        cluster, world, harness, namespace, account, tmp_path, watched=watched
    ) as op:
        yield op


def test_two_teams_share_one_pipelines(
    two_namespace_operator: OperatorProcess,
    harness: Harness,
    namespace: str,
    second_namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
) -> None:
    team_b = langfuse.add_project(name="team-b")
    teams = {
        namespace: (langfuse.public_key, langfuse.secret_key, ["model-a"]),
        second_namespace: (team_b.public_key, team_b.secret_key, ["model-b1", "model-b2"]),
    }
    for ns, (public, secret, models) in teams.items():
        harness.put_secret(ns, "langfuse", {"public-key": public, "secret-key": secret})
        harness.put_secret(ns, "pipelines", {"api-key": pipelines.api_key})
        harness.apply(ns, "tracing", spec(pipelines, langfuse, filter={"models": models}))
    for ns in teams:
        harness.wait_condition(ns, "tracing", "Ready", "True")

    ids = {ns: f"lft_{ns}_tracing".replace("-", "_") for ns in teams}
    assert sorted(pipeline_ids(pipelines)) == sorted(ids.values())
    for ns, (public, secret, models) in teams.items():
        current = valves(pipelines, ids[ns])
        assert (current["public_key"], current["secret_key"], current["pipelines"]) == (
            public,
            secret,
            models,
        )
    status_b = (harness.get(second_namespace, "tracing") or {})["status"]
    assert status_b["langfuse"]["projectName"] == "team-b"

    # Deleting team A's resource removes only team A's filter.
    harness.delete(namespace, "tracing")
    wait_for(lambda: harness.get(namespace, "tracing") is None, 15, "team A's resource gone")
    assert pipeline_ids(pipelines) == [ids[second_namespace]]
    assert valves(pipelines, ids[second_namespace])["secret_key"] == team_b.secret_key

    text = (
        two_namespace_operator.log_text()
        + harness.visible_text(namespace)
        + harness.visible_text(second_namespace)
    )
    for value in (langfuse.secret_key, team_b.secret_key, pipelines.api_key):
        assert value not in text


def test_a_pipeline_id_in_use_is_refused_until_its_holder_goes(
    two_namespace_operator: OperatorProcess,
    harness: Harness,
    namespace: str,
    second_namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
) -> None:
    # Two teams name the same pipeline id on one Pipelines server: pushing both teams' keys
    # into one filter would send each team's chats to the other's project. The resource first
    # in (namespace, name) order keeps it; the other installs nothing and says why.
    team_b = langfuse.add_project(name="team-b")
    keys = {
        namespace: (langfuse.public_key, langfuse.secret_key),
        second_namespace: (team_b.public_key, team_b.secret_key),
    }
    holder, refused = sorted(keys)
    for ns, (public, secret) in keys.items():
        harness.put_secret(ns, "langfuse", {"public-key": public, "secret-key": secret})
        harness.put_secret(ns, "pipelines", {"api-key": pipelines.api_key})
    shared = {"pipelineId": "shared_langfuse"}
    # A long resync: only the holder's deletion can wake the refused resource in time.
    harness.apply(holder, "tracing", spec(pipelines, langfuse, filter=shared, resyncInterval="1h"))
    harness.wait_condition(holder, "tracing", "Ready", "True")
    harness.apply(refused, "tracing", spec(pipelines, langfuse, filter=shared, resyncInterval="1h"))
    conflict = harness.wait_condition(
        refused, "tracing", "FilterInstalled", "False", reason="PipelineIdConflict"
    )
    assert f"{holder}/tracing" in conflict["message"]
    harness.wait_condition(refused, "tracing", "Stalled", "True")
    assert valves(pipelines, "shared_langfuse")["secret_key"] == keys[holder][1]

    harness.delete(holder, "tracing")
    wait_for(lambda: harness.get(holder, "tracing") is None, 15, "the holder gone")
    harness.wait_condition(refused, "tracing", "Ready", "True", timeout=30)
    assert pipeline_ids(pipelines) == ["shared_langfuse"]
    assert valves(pipelines, "shared_langfuse")["secret_key"] == keys[refused][1]
