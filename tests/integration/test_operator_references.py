"""Referenced Secrets only (``references``): a resource created after its Secrets, whose
events came while nothing referenced them, reads them from the API and then follows the watch.
The operator as a process on the cluster (chart RBAC), real Pipelines, Langfuse stand-in."""

from __future__ import annotations

import base64
import os
import time

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    crd_fixture,
    harness_fixture,
    operator_fixture,
    secret_guard_fixture,
    spec,
    valves,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.operator import Harness
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

pytestmark = [pytest.mark.world, pytest.mark.usefixtures("secret_guard", "operator")]


def pid_of(namespace: str, name: str) -> str:
    return f"lft_{namespace}_{name}".replace("-", "_")


def test_a_resource_created_after_its_secrets_is_ready_and_follows_them(
    harness: Harness, namespace: str, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    # A resource waiting for a Secret "marker": once the marker's event has woken it, the
    # operator has seen every Secret event before it (one ordered watch), unreferenced then.
    waiter = spec(pipelines, langfuse)
    waiter["langfuse"]["publicKey"]["secretKeyRef"]["name"] = "marker"
    waiter["langfuse"]["secretKey"]["secretKeyRef"]["name"] = "marker"
    waiter["pipelines"]["apiKey"]["secretKeyRef"]["name"] = "marker"
    harness.apply(namespace, "waiter", waiter)
    harness.wait_condition(
        namespace, "waiter", "CredentialsValid", "False", reason="SecretNotFound"
    )

    harness.core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "unrelated"},
            "data": {"blob": base64.b64encode(os.urandom(8192)).decode()},
        },
    )
    keys = {"public-key": langfuse.public_key, "secret-key": langfuse.secret_key}
    harness.put_secret(namespace, "langfuse", keys)
    harness.put_secret(namespace, "pipelines", {"api-key": pipelines.api_key})
    harness.put_secret(
        namespace,
        "marker",
        {**keys, "api-key": pipelines.api_key},
    )
    harness.wait_condition(namespace, "waiter", "Ready", "True")

    # Created after its Secrets: Ready, with their values in the valves.
    harness.apply(namespace, "tracing", spec(pipelines, langfuse))
    harness.wait_condition(namespace, "tracing", "Ready", "True")
    pid = pid_of(namespace, "tracing")
    assert valves(pipelines, pid)["secret_key"] == langfuse.secret_key

    # Then the watch keeps it: a rotation reaches Pipelines at once.
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

    # And a deletion: the Secret is gone for the reader too.
    harness.delete_secret(namespace, "langfuse")
    cond = harness.wait_condition(
        namespace, "tracing", "CredentialsValid", "False", reason="SecretNotFound", timeout=5
    )
    assert f"{namespace}/langfuse" in cond["message"]
    assert valves(pipelines, pid)["secret_key"] == project.secret_key  # working valves stay
