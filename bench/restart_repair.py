"""Restart repair benchmark (issue 14, item 4): a Pipelines restarted without persistence →
the filter loaded again, with an hour between resyncs so only the operator's probe can do it.

On the local world: one LangfuseTracing on one Pipelines server (resyncInterval 1h), the
operator as a process with the chart's RBAC. Then N times: restart Pipelines with an empty
pipelines directory (``PipelinesServer.restart(wipe=True)``, which returns once the new process
answers) and time, from that moment, until ``GET /pipelines`` lists the filter again (polled
every 20 ms). The probe period is 1 s (``openwebui_langfuse.probes``), so the figure is about
half a period plus one pass (upload, valves, Open WebUI untouched: no spec.openWebUI).

    <project venv>/bin/python -m bench.restart_repair [--count 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.operator_latency import percentile, summary
from tests.integration.operator_fixtures import spec
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.operator import Harness, OperatorProcess, chart_rbac, install_crd, token_kubeconfig
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for


def listed(pipelines: PipelinesServer) -> list[str]:
    with pipelines.client() as http:
        return [row["id"] for row in http.get("/pipelines").json()["data"]]


def run(count: int) -> dict[str, str]:
    world = World.load()
    namespace = "bench"
    with (
        Cluster(world) as cluster,
        PipelinesServer(world) as pipelines,
        LangfuseStandIn() as langfuse,
    ):
        install_crd(cluster)
        cluster.kubectl("create", "namespace", namespace)
        wait_for(
            lambda: cluster.kubectl("get", "sa", "default", "-n", namespace).returncode == 0,
            30,
            "default ServiceAccount",
        )
        project = langfuse.add_project(name="bench")
        harness = Harness(cluster.api_client())
        harness.put_secret(
            namespace,
            "langfuse",
            {"public-key": project.public_key, "secret-key": project.secret_key},
        )
        harness.put_secret(namespace, "pipelines", {"api-key": pipelines.api_key})
        account = chart_rbac(cluster, world, namespace)
        tmp = Path(tempfile.mkdtemp(prefix="owl-bench-restart-"))
        kubeconfig = token_kubeconfig(cluster, namespace, account, tmp / "kubeconfig")
        with OperatorProcess(world, kubeconfig, [namespace], log_dir=tmp):
            body = spec(pipelines, langfuse)
            body["resyncInterval"] = "1h"
            harness.apply(namespace, "tracing", body)
            harness.wait_condition(namespace, "tracing", "Ready", "True", timeout=60)
            pid = (harness.get(namespace, "tracing") or {})["status"]["pipelineId"]
            repairs: list[float] = []
            for _ in range(count):
                pipelines.restart(wipe=True)
                answered = time.monotonic()
                wait_for(
                    lambda: pid in listed(pipelines),
                    30,
                    "the filter back",
                    interval=0.02,
                    max_interval=0.02,
                )
                repairs.append(time.monotonic() - answered)
    return {
        "restart (empty) -> filter listed again": summary(repairs),
        "  p95 (ms)": f"{percentile([r * 1000 for r in repairs], 95):.0f}",
        "  in order (ms)": " ".join(f"{r * 1000:.0f}" for r in repairs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    args = parser.parse_args()
    for key, value in run(args.count).items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
