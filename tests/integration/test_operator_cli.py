"""``openwebui-langfuse run``: configuration errors, JSON logs, what it leaves on the resource."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    OPERATOR_ENV,
    crd_fixture,
    harness_fixture,
    release_all,
    running_operator,
    secrets_in_fixture,
    spec,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.operator import (
    Harness,
    OperatorProcess,
    chart_rbac,
    delete_cluster_rbac,
    token_kubeconfig,
)
from tests.world.pipelines import PipelinesServer

pytestmark = pytest.mark.world


def test_run_without_a_namespace_explains_itself(world: World) -> None:
    command = world.venv("project") / "bin" / "openwebui-langfuse"
    result = subprocess.run(
        [str(command), "run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert "no namespace to watch" in result.stderr
    result = subprocess.run(
        [str(command), "run", "--namespace", "a"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "OPENWEBUI_LANGFUSE_LOG_LEVEL": "LOUD"},
    )
    assert result.returncode == 2 and "log level" in result.stderr


@pytest.fixture
def json_operator(
    cluster: Cluster,
    world: World,
    namespace: str,
    crd: None,
    harness: Harness,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    account = chart_rbac(cluster, world, namespace)
    with running_operator(
        cluster,
        world,
        harness,
        namespace,
        account,
        tmp_path,
        watched=[namespace],
        env={"OPENWEBUI_LANGFUSE_LOG_FORMAT": "json"},
    ) as op:
        yield op


@pytest.mark.usefixtures("secrets_in")
def test_json_logs_one_line_per_transition_and_a_clean_resource(
    json_operator: OperatorProcess,
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
) -> None:
    harness.apply(namespace, "tracing", spec(pipelines, langfuse))
    harness.wait_condition(namespace, "tracing", "Ready", "True")
    lines = [
        line
        for line in json_operator.log_text().splitlines()
        if line.strip() and not line.startswith("$ ")
    ]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    messages = [r["message"] for r in records]
    assert sum("Ready (none)->True" in m for m in messages) == 1
    assert any("uploaded filter" in m for m in messages)

    obj = harness.get(namespace, "tracing")
    assert obj is not None
    annotations = obj["metadata"].get("annotations") or {}
    # kopf's own names never appear; no handler progress is left behind.
    assert not any("kopf.zalando.org" in key for key in annotations)
    assert obj["metadata"]["finalizers"] == ["openwebui-langfuse.io/cleanup"]
    for value in (langfuse.secret_key, pipelines.api_key):
        assert value not in json_operator.log_text()
        assert value not in json.dumps(obj)


@pytest.mark.usefixtures("secrets_in")
def test_events_only_langfuse_is_reported(
    json_operator: OperatorProcess,
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
) -> None:
    langfuse.events_only = True
    harness.apply(namespace, "tracing", spec(pipelines, langfuse))
    cond = harness.wait_condition(namespace, "tracing", "CredentialsValid", "True")
    assert "events_only" in cond["message"]
    status = (harness.get(namespace, "tracing") or {})["status"]
    assert status["langfuse"]["ingestionMode"] == "events_only"


@pytest.mark.usefixtures("secrets_in")
def test_the_chart_deployments_environment_runs_the_operator(
    cluster: Cluster,
    world: World,
    namespace: str,
    crd: None,
    harness: Harness,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    tmp_path: Path,
) -> None:
    """The env the chart's Deployment sets is what `run` reads (no flags but the liveness
    port, which must be a free loopback one here)."""
    import yaml

    from tests.world.operator import CHART

    rendered = subprocess.run(
        [
            str(world.binary("helm")),
            "template",
            "owl",
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            "operator.logFormat=json",
            "--show-only",
            "templates/operator-deployment.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    deployment = yaml.safe_load(rendered)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["run"]
    env = {e["name"]: e.get("value") for e in container["env"] if "value" in e}
    assert env["OPENWEBUI_LANGFUSE_NAMESPACES"] == namespace
    account = chart_rbac(cluster, world, namespace)
    kubeconfig = token_kubeconfig(cluster, namespace, account, tmp_path / "kubeconfig")
    op = OperatorProcess(
        world, kubeconfig, [], env={**env, **OPERATOR_ENV}, log_dir=tmp_path / "operator"
    )
    op.start()
    try:
        harness.apply(namespace, "tracing", spec(pipelines, langfuse))
        harness.wait_condition(namespace, "tracing", "Ready", "True")
        lines = [ln for ln in op.log_text().splitlines() if ln.strip() and not ln.startswith("$")]
        assert all(json.loads(ln) for ln in lines)  # logFormat json reached the process
    finally:
        release_all(harness, namespace, op)
        op.stop()
        delete_cluster_rbac(cluster, world, namespace)
