"""Two operator replicas against the local world: one leads (a Lease), the other stands by.

Killed with SIGKILL, the leader is replaced within 15 s, and the new leader neither uploads the
filter again nor misses a change made while nobody led; stopped cleanly (a rolling update), it
hands over at once, and at no time do two replicas reconcile.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    OPERATOR_ENV,
    crd_fixture,
    harness_fixture,
    release_all,
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
    delete_cluster_rbac,
    render_rbac,
    token_kubeconfig,
)
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

pytestmark = pytest.mark.world

TOOK = re.compile(r"leader: (\S+) took lease")
UPLOAD = re.compile(r'"POST /pipelines/upload')


def lease_name(world: World, namespace: str) -> str:
    for doc in yaml.safe_load_all(render_rbac(world, "owl", namespace)):
        for rule in (doc or {}).get("rules") or []:
            if "leases" in rule.get("resources", []) and rule.get("resourceNames"):
                return str(rule["resourceNames"][0])
    raise AssertionError("the chart's RBAC names no Lease")


class Replicas:
    """Operator processes sharing one Lease, each with a log of its own."""

    def __init__(self, world: World, kubeconfig: Path, namespace: str, tmp: Path) -> None:
        lease = f"{namespace}/{lease_name(world, namespace)}"
        self.make = lambda i: OperatorProcess(
            world,
            kubeconfig,
            [namespace],
            env={**OPERATOR_ENV, "OPENWEBUI_LANGFUSE_LEADER_LEASE": lease},
            log_dir=tmp / f"replica-{i}",
        )
        self.all: list[OperatorProcess] = []

    def start(self) -> OperatorProcess:
        op = self.make(len(self.all)).start()
        self.all.append(op)
        return op

    def leading(self) -> list[OperatorProcess]:
        """Replicas that took the Lease and still run (a kopf that started)."""
        return [op for op in self.all if op.process is not None and TOOK.search(op.log_text())]


@pytest.fixture
def replicas(
    cluster: Cluster,
    world: World,
    namespace: str,
    crd: None,
    harness: Harness,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    tmp_path: Path,
) -> Iterator[Replicas]:
    account = chart_rbac(cluster, world, namespace)
    kubeconfig = token_kubeconfig(cluster, namespace, account, tmp_path / "kubeconfig")
    group = Replicas(world, kubeconfig, namespace, tmp_path)
    try:
        yield group
    finally:
        release_all(harness, namespace, next(iter(group.leading()), None))
        for op in group.all:
            op.stop()
        delete_cluster_rbac(cluster, world, namespace)
        for i, op in enumerate(group.all):
            print(f"---- replica {i} log (tail) ----\n" + op.log_text()[-3000:])


def test_one_leads_a_killed_leader_is_replaced_and_a_clean_stop_hands_over(
    replicas: Replicas,
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
) -> None:
    first = replicas.start()
    wait_for(lambda: replicas.leading() == [first], 20, "the first replica to lead")
    second = replicas.start()  # ready as a standby: its probes answer
    assert httpx.get(second.liveness, timeout=2).json() == {"status": "standby"}

    harness.put_secret(
        namespace,
        "langfuse",
        {"public-key": langfuse.public_key, "secret-key": langfuse.secret_key},
    )
    harness.put_secret(namespace, "pipelines", {"api-key": pipelines.api_key})
    harness.apply(namespace, "tracing", spec(pipelines, langfuse, resyncInterval="1h"))
    harness.wait_condition(namespace, "tracing", "Ready", "True", timeout=60)
    pid = (harness.get(namespace, "tracing") or {})["status"]["pipelineId"]
    assert "tracing" not in second.log_text()  # the standby did nothing
    uploads = len(UPLOAD.findall(pipelines.log_path.read_text(errors="replace")))
    assert uploads == 1

    # The leader dies; meanwhile the keys are rotated: the change must not be lost.
    first.kill()
    killed = time.monotonic()
    rotated = langfuse.add_project(name="rotated")
    harness.put_secret(
        namespace, "langfuse", {"public-key": rotated.public_key, "secret-key": rotated.secret_key}
    )
    wait_for(lambda: replicas.leading() == [second], 20, "the standby to take over")
    wait_for(
        lambda: valves(pipelines, pid)["secret_key"] == rotated.secret_key,
        20,
        "the rotated keys in Pipelines",
    )
    takeover = time.monotonic() - killed
    print(f"killed leader -> the new leader wrote the rotated keys: {takeover:.1f} s")
    assert takeover <= 15
    # The new leader read the install record: no second upload of the same filter.
    assert len(UPLOAD.findall(pipelines.log_path.read_text(errors="replace"))) == uploads

    # A rolling update: a new replica stands by, the leader is stopped cleanly, hands over.
    third = replicas.start()
    assert replicas.leading() == [second]
    second.stop()
    stopped = time.monotonic()
    wait_for(lambda: replicas.leading() == [third], 10, "the hand-over")
    assert time.monotonic() - stopped <= 5  # released, not left to expire
    assert "released lease" in second.log_text()
    harness.put_secret(
        namespace,
        "langfuse",
        {"public-key": langfuse.public_key, "secret-key": langfuse.secret_key},
    )
    wait_for(
        lambda: valves(pipelines, pid)["secret_key"] == langfuse.secret_key,
        20,
        "the new leader to reconcile",
    )
