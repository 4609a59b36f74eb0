"""Operator latency benchmark (issue 5): apply -> Ready, Secret rotation -> valves, idle writes.

On the local world, in one run:

1. ``kubectl apply`` -> ``Ready=True``: N resources (bundled filter, no ``requirements:``), created
   one after another in one namespace sharing one Pipelines server; the time from the create
   call returning to the first watch event showing ``Ready=True``.
2. Secret rotation -> new valves: N rotations of the Langfuse Secret of one resource to another
   valid key pair; the time from the Secret update returning to Pipelines' valves showing the
   new secret key (polled every 5 ms).
3. Upstream writes during 10 resync periods with nothing changed (resyncInterval 10s): write
   requests (upload, add, delete, valves update) in the Pipelines access log.

The operator runs as a process with the chart's RBAC, exactly as in the integration tests.
Run from the repository root:

    <project venv>/bin/python -m bench.operator_latency [--count 20] [--idle-periods 10]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

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
    install_crd,
    token_kubeconfig,
)
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

RESYNC_SECONDS = 10
PACKAGE = Path(__file__).resolve().parents[1] / "operator" / "openwebui_langfuse"
WRITE_LINE = re.compile(
    r'"(POST /pipelines/(upload|add)|DELETE /pipelines/delete|POST /\S+/valves/update)'
)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"n={len(ms)} p50={statistics.median(ms):.0f} ms p95={percentile(ms, 95):.0f} ms "
        f"min={min(ms):.0f} ms max={max(ms):.0f} ms"
    )


class ReadyWatch:
    """Records, per resource name, when a watch event first showed Ready=True."""

    def __init__(self, harness: Harness, namespace: str) -> None:
        self.harness = harness
        self.namespace = namespace
        self.ready_at: dict[str, float] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True

    def _run(self) -> None:
        try:
            self._watch()
        except Exception:  # the cluster went away at the end of the run
            if not self._stop:
                raise

    def _watch(self) -> None:
        from kubernetes import watch

        w = watch.Watch()
        for event in w.stream(
            self.harness.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            timeout_seconds=3600,
        ):
            now = time.monotonic()
            obj: dict[str, Any] = event["object"]
            name = obj["metadata"]["name"]
            conditions = (obj.get("status") or {}).get("conditions") or []
            if name not in self.ready_at and any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
            ):
                self.ready_at[name] = now
            if self._stop:
                w.stop()
                return


def spec(
    pipelines: PipelinesServer, langfuse: LangfuseStandIn, secret: str = "langfuse"
) -> dict[str, Any]:
    return {
        "langfuse": {
            "host": langfuse.url,
            "publicKey": {"secretKeyRef": {"name": secret, "key": "public-key"}},
            "secretKey": {"secretKeyRef": {"name": secret, "key": "secret-key"}},
        },
        "pipelines": {
            "url": pipelines.url,
            "apiKey": {"secretKeyRef": {"name": "pipelines", "key": "api-key"}},
        },
        "resyncInterval": f"{RESYNC_SECONDS}s",
    }


def pipelines_writes(pipelines: PipelinesServer) -> int:
    return sum(
        1
        for line in pipelines.log_path.read_text(errors="replace").splitlines()
        if WRITE_LINE.search(line)
    )


def run(count: int, idle_periods: int) -> dict[str, str]:
    world = World.load()
    results: dict[str, str] = {}
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
        api = cluster.api_client()
        harness = Harness(api)
        harness.put_secret(
            namespace,
            "langfuse",
            {"public-key": project.public_key, "secret-key": project.secret_key},
        )
        harness.put_secret(namespace, "pipelines", {"api-key": pipelines.api_key})
        account = chart_rbac(cluster, world, namespace)
        tmp = Path(tempfile.mkdtemp(prefix="owl-bench-"))
        kubeconfig = token_kubeconfig(cluster, namespace, account, tmp / "kubeconfig")
        watcher = ReadyWatch(harness, namespace)
        watcher.start()
        # The operator runs from a snapshot of the package taken now: in a checkout that is
        # being edited (the bundled filter, say), a changed file would rightly be re-uploaded
        # at the next resync and count as idle writes that the operator did not cause.
        snapshot = tmp / "snapshot"
        shutil.copytree(
            PACKAGE, snapshot / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__")
        )
        env = {"PYTHONPATH": str(snapshot)}
        with OperatorProcess(world, kubeconfig, [namespace], env=env, log_dir=tmp) as operator:
            # 1. apply -> Ready
            latencies = []
            for i in range(count):
                name = f"r{i:02d}"
                harness.apply(namespace, name, spec(pipelines, langfuse))
                created = time.monotonic()
                wait_for(lambda n=name: n in watcher.ready_at, 30, f"{name} Ready")
                latencies.append(watcher.ready_at[name] - created)
            results["apply -> Ready=True"] = summary(latencies)
            results["  in creation order (ms)"] = " ".join(f"{v * 1000:.0f}" for v in latencies)

            # 2. Secret rotation -> valves: a resource with a Secret of its own, next to the
            # N resources above (all on the same Pipelines server).
            harness.put_secret(
                namespace,
                "langfuse-rot",
                {"public-key": project.public_key, "secret-key": project.secret_key},
            )
            harness.apply(namespace, "rotating", spec(pipelines, langfuse, "langfuse-rot"))
            wait_for(lambda: "rotating" in watcher.ready_at, 30, "rotating Ready")
            pid = f"lft_{namespace}_rotating"
            rotations = []
            for _ in range(count):
                fresh = langfuse.add_project(name="rotated")
                harness.put_secret(
                    namespace,
                    "langfuse-rot",
                    {"public-key": fresh.public_key, "secret-key": fresh.secret_key},
                )
                updated = time.monotonic()
                wait_for(
                    lambda s=fresh.secret_key: (
                        httpx.get(f"{pipelines.url}/{pid}/valves", timeout=5).json()["secret_key"]
                        == s
                    ),
                    30,
                    "rotated valves",
                    interval=0.005,
                    max_interval=0.005,
                )
                rotations.append(time.monotonic() - updated)
            results["Secret rotation -> new valves in Pipelines"] = summary(rotations)

            # Let the last rotation settle on every resource before counting.
            time.sleep(3)
            # 3. idle writes over 10 resync periods
            before = pipelines_writes(pipelines)
            versions = {
                o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                for o in harness.list(namespace)
            }
            time.sleep(idle_periods * RESYNC_SECONDS)
            after = pipelines_writes(pipelines)
            touched = [
                o["metadata"]["name"]
                for o in harness.list(namespace)
                if versions.get(o["metadata"]["name"]) != o["metadata"]["resourceVersion"]
            ]
            results[
                f"LangfuseTracing writes (status/metadata) in the same {idle_periods} periods"
            ] = str(len(touched))
            results[
                f"upstream writes during {idle_periods} resync periods "
                f"({idle_periods * RESYNC_SECONDS}s, {count} resources)"
            ] = str(after - before)
            passes = operator.log_text().count("updated valves")
            results["valves writes in the whole run (operator log)"] = str(passes)
        watcher.stop()
        api.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--idle-periods", type=int, default=10)
    args = parser.parse_args()
    for key, value in run(args.count, args.idle_periods).items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
