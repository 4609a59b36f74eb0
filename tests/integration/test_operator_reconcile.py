"""The operator as a process on the cluster (chart RBAC), real Pipelines, Langfuse stand-in."""

from __future__ import annotations

import time

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    crd_fixture,
    harness_fixture,
    operator_fixture,
    pipeline_ids,
    secret_guard_fixture,
    secrets_in_fixture,
    spec,
    valves,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.operator import Harness
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

pytestmark = [pytest.mark.world, pytest.mark.usefixtures("secret_guard")]

NAME = "tracing"


def pid_of(namespace: str, name: str = NAME) -> str:
    return f"lft_{namespace}_{name}".replace("-", "_")


@pytest.mark.usefixtures("secrets_in")
def test_apply_makes_it_ready_and_pushes_valves(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    harness.apply(
        namespace, NAME, spec(pipelines, langfuse, filter={"models": ["llama3"], "priority": 5})
    )
    ready = harness.wait_condition(namespace, NAME, "Ready", "True")
    assert ready["reason"] == "ConnectionNotManaged"  # no spec.openWebUI
    pid = pid_of(namespace)
    assert pipeline_ids(pipelines) == [pid]
    current = valves(pipelines, pid)
    assert current["public_key"] == langfuse.public_key
    assert current["secret_key"] == langfuse.secret_key
    assert current["host"] == langfuse.url
    assert current["pipelines"] == ["llama3"] and current["priority"] == 5
    obj = harness.get(namespace, NAME)
    assert obj is not None
    status = obj["status"]
    assert status["pipelineId"] == pid
    assert status["langfuse"]["projectId"] == langfuse.project_id
    assert status["langfuse"]["ingestionMode"] == "otlp+legacy"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "CredentialsValid": "True",
        "FilterInstalled": "True",
        "ValvesSynced": "True",
        "Reconciling": "False",
        "Stalled": "False",
    }
    assert "openwebui-langfuse.io/cleanup" in obj["metadata"]["finalizers"]
    wait_for(
        lambda: any(e["reason"] == "ConnectionNotManaged" for e in harness.events(namespace)),
        10,
        "a Ready Event",
    )


@pytest.mark.usefixtures("operator")
def test_missing_secret_then_created_recovers(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    harness.put_secret(namespace, "pipelines", {"api-key": pipelines.api_key})
    harness.apply(namespace, NAME, spec(pipelines, langfuse))
    cond = harness.wait_condition(
        namespace, NAME, "CredentialsValid", "False", reason="SecretNotFound"
    )
    assert f"{namespace}/langfuse" in cond["message"]
    assert harness.condition(namespace, NAME, "Stalled")["status"] == "True"  # type: ignore[index]

    harness.put_secret(namespace, "langfuse", {"public-key": langfuse.public_key})
    harness.wait_condition(namespace, NAME, "CredentialsValid", "False", reason="SecretKeyNotFound")
    harness.put_secret(
        namespace,
        "langfuse",
        {"public-key": langfuse.public_key, "secret-key": langfuse.secret_key},
    )
    harness.wait_condition(namespace, NAME, "Ready", "True", timeout=5)
    assert valves(pipelines, pid_of(namespace))["secret_key"] == langfuse.secret_key


@pytest.mark.usefixtures("secrets_in")
def test_rotation_reaches_pipelines_and_wrong_keys_leave_valves(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    harness.apply(namespace, NAME, spec(pipelines, langfuse))
    harness.wait_condition(namespace, NAME, "Ready", "True")
    pid = pid_of(namespace)

    # Rotate to another valid pair: Pipelines has it within a couple of seconds.
    project = langfuse.add_project(name="rotated")
    harness.put_secret(
        namespace, "langfuse", {"public-key": project.public_key, "secret-key": project.secret_key}
    )
    started = time.monotonic()
    wait_for(
        lambda: valves(pipelines, pid)["secret_key"] == project.secret_key,
        5,
        "rotated secret key in the valves",
        interval=0.02,
    )
    assert time.monotonic() - started < 2.0

    # A wrong pair is refused and the working valves stay.
    harness.put_secret(
        namespace,
        "langfuse",
        {"public-key": project.public_key, "secret-key": "sk-lf-definitely-wrong-1234"},
    )
    harness.wait_condition(
        namespace, NAME, "CredentialsValid", "False", reason="InvalidCredentials"
    )
    assert harness.condition(namespace, NAME, "ValvesSynced")["reason"] == (  # type: ignore[index]
        "CredentialsNotVerified"
    )
    assert valves(pipelines, pid)["secret_key"] == project.secret_key


@pytest.mark.usefixtures("secrets_in")
def test_changing_the_pipeline_id_moves_the_filter(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    harness.apply(namespace, NAME, spec(pipelines, langfuse))
    harness.wait_condition(namespace, NAME, "Ready", "True")
    harness.patch_spec(namespace, NAME, {"filter": {"pipelineId": "team_filter"}})
    harness.wait_condition(namespace, NAME, "Ready", "True")
    # The old one would trace the same chats again with stale settings: it is gone.
    wait_for(lambda: pipeline_ids(pipelines) == ["team_filter"], 10, "only the new filter")
    assert valves(pipelines, "team_filter")["secret_key"] == langfuse.secret_key
    assert (harness.get(namespace, NAME) or {})["status"]["pipelineId"] == "team_filter"
