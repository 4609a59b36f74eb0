"""Operator latency benchmark (issues 5 and 12): apply -> Ready, Secret rotation -> valves, idle
writes, for each target (Pipelines, and the filter as an Open WebUI Filter Function).

On the local world, in one run, per target:

1. ``kubectl apply`` -> ``Ready=True``: N resources (bundled filter, no ``requirements:``), created
   one after another in one namespace sharing one upstream server (one Pipelines server, or one
   Open WebUI holding N global filter functions); the time from the create call returning to
   the first watch event showing ``Ready=True``.
2. Secret rotation -> new valves: N rotations of the Langfuse Secret of one resource to another
   valid key pair; the time from the Secret update returning to the upstream's valves showing
   the new secret key (Pipelines' ``GET /<id>/valves``, or Open WebUI's
   ``GET /api/v1/functions/id/<id>/valves``; polled every 5 ms).
3. Upstream writes during 10 resync periods with nothing changed (resyncInterval 10s): write
   requests in the upstream server's access log (Pipelines: upload, add, delete, valves update;
   Open WebUI: every POST or DELETE, and models refreshes).

The operator runs as a process with the chart's RBAC, exactly as in the integration tests; each
target gets a namespace and an operator process of its own (the cluster and the Langfuse
stand-in are shared), so one target's resyncs never run during the other's measurements.
Run from the repository root:

    <project venv>/bin/python -m bench.operator_latency [--count 20] [--idle-periods 10]
        [--target pipelines|function|both]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import httpx

from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.open_webui import OpenWebUI
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
PIPELINES_WRITE = re.compile(
    r'"(POST /pipelines/(upload|add)|DELETE /pipelines/delete|POST /\S+/valves/update)'
)
# Uvicorn's access lines in Open WebUI's log: every state change is a POST or a DELETE (sign-in
# too, which a cached token makes unnecessary); a models refresh is a GET that rebuilds the
# cached model list.
OPEN_WEBUI_WRITE = re.compile(r'"(POST|DELETE) /api/|"GET /api/models\?refresh=true')
TARGETS = ("pipelines", "function")


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


def langfuse_spec(langfuse: LangfuseStandIn, secret: str) -> dict[str, Any]:
    return {
        "host": langfuse.url,
        "publicKey": {"secretKeyRef": {"name": secret, "key": "public-key"}},
        "secretKey": {"secretKeyRef": {"name": secret, "key": "secret-key"}},
    }


class Upstream(Protocol):
    """Where one target's filter lives, as this benchmark drives and reads it."""

    target: str
    namespace: str
    where: str  # "in Pipelines", "in the function (Open WebUI)"

    def put_secrets(self, harness: Harness) -> None: ...

    def spec(self, langfuse: LangfuseStandIn, secret: str) -> dict[str, Any]: ...

    def filter_id(self, resource: dict[str, Any]) -> str: ...

    def stored_secret_key(self, filter_id: str) -> str | None: ...

    def writes(self) -> int: ...


class PipelinesUpstream:
    target = "pipelines"
    namespace = "bench"
    where = "in Pipelines"

    def __init__(self, pipelines: PipelinesServer) -> None:
        self.pipelines = pipelines
        self.http = httpx.Client(base_url=pipelines.url, timeout=5)

    def put_secrets(self, harness: Harness) -> None:
        harness.put_secret(self.namespace, "pipelines", {"api-key": self.pipelines.api_key})

    def spec(self, langfuse: LangfuseStandIn, secret: str) -> dict[str, Any]:
        return {
            "langfuse": langfuse_spec(langfuse, secret),
            "pipelines": {
                "url": self.pipelines.url,
                "apiKey": {"secretKeyRef": {"name": "pipelines", "key": "api-key"}},
            },
            "resyncInterval": f"{RESYNC_SECONDS}s",
        }

    def filter_id(self, resource: dict[str, Any]) -> str:
        return str(resource["status"]["pipelineId"])

    def stored_secret_key(self, filter_id: str) -> str | None:
        value = self.http.get(f"/{filter_id}/valves").json().get("secret_key")
        return str(value) if value is not None else None

    def writes(self) -> int:
        text = self.pipelines.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if PIPELINES_WRITE.search(line))


class FunctionUpstream:
    target = "function"
    namespace = "bench-function"
    where = "in the function (Open WebUI)"

    def __init__(self, open_webui: OpenWebUI) -> None:
        self.open_webui = open_webui
        # The benchmark's own admin session (a JWT of its own sign-in), kept alive for polling.
        self.http = httpx.Client(
            base_url=open_webui.url,
            headers={"Authorization": f"Bearer {open_webui.token}"},
            timeout=5,
        )

    def put_secrets(self, harness: Harness) -> None:
        harness.put_secret(
            self.namespace,
            "open-webui-admin",
            {"email": self.open_webui.admin_email, "password": self.open_webui.admin_password},
        )

    def spec(self, langfuse: LangfuseStandIn, secret: str) -> dict[str, Any]:
        return {
            "target": "function",
            "langfuse": langfuse_spec(langfuse, secret),
            "openWebUI": {
                "url": self.open_webui.url,
                "auth": {"credentials": {"secretRef": {"name": "open-webui-admin"}}},
            },
            "resyncInterval": f"{RESYNC_SECONDS}s",
        }

    def filter_id(self, resource: dict[str, Any]) -> str:
        return str(resource["status"]["functionId"])

    def stored_secret_key(self, filter_id: str) -> str | None:
        answer = self.http.get(f"/api/v1/functions/id/{filter_id}/valves")
        value = answer.json().get("secret_key") if answer.status_code == 200 else None
        return str(value) if value is not None else None

    def writes(self) -> int:
        text = self.open_webui.log_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if OPEN_WEBUI_WRITE.search(line))


def settle(upstream: Upstream, harness: Harness, quiet: float = 2.0) -> None:
    """Wait until the last rotation's tail (status patch, a resync already due) is over: no
    upstream write and no change to any resource for ``quiet`` seconds."""

    def state() -> tuple[int, tuple[str, ...]]:
        versions = tuple(o["metadata"]["resourceVersion"] for o in harness.list(upstream.namespace))
        return upstream.writes(), versions

    last, since = state(), time.monotonic()

    def quiet_enough() -> bool:
        nonlocal last, since
        now = state()
        if now != last:
            last, since = now, time.monotonic()
        return time.monotonic() - since >= quiet

    wait_for(quiet_enough, 60, f"{quiet:g} s without writes", interval=0.1, max_interval=0.1)


def measure(
    cluster: Cluster,
    world: World,
    harness: Harness,
    langfuse: LangfuseStandIn,
    upstream: Upstream,
    count: int,
    idle_periods: int,
) -> dict[str, str]:
    results: dict[str, str] = {}
    namespace = upstream.namespace
    cluster.kubectl("create", "namespace", namespace)
    wait_for(
        lambda: cluster.kubectl("get", "sa", "default", "-n", namespace).returncode == 0,
        30,
        "default ServiceAccount",
    )
    project = langfuse.add_project(name=f"bench-{upstream.target}")
    harness.put_secret(
        namespace,
        "langfuse",
        {"public-key": project.public_key, "secret-key": project.secret_key},
    )
    upstream.put_secrets(harness)
    account = chart_rbac(cluster, world, namespace)
    tmp = Path(tempfile.mkdtemp(prefix="owl-bench-"))
    kubeconfig = token_kubeconfig(cluster, namespace, account, tmp / "kubeconfig")
    watcher = ReadyWatch(harness, namespace)
    watcher.start()
    # The operator runs from a snapshot of the package taken now: in a checkout that is being
    # edited (the bundled filter, say), a changed file would rightly be re-uploaded at the next
    # resync and count as idle writes that the operator did not cause.
    snapshot = tmp / "snapshot"
    shutil.copytree(PACKAGE, snapshot / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(snapshot)}
    try:
        with OperatorProcess(world, kubeconfig, [namespace], env=env, log_dir=tmp) as operator:
            # 1. apply -> Ready
            latencies = []
            for i in range(count):
                name = f"r{i:02d}"
                harness.apply(namespace, name, upstream.spec(langfuse, "langfuse"))
                created = time.monotonic()
                wait_for(lambda n=name: n in watcher.ready_at, 30, f"{name} Ready")
                latencies.append(watcher.ready_at[name] - created)
            results["apply -> Ready=True"] = summary(latencies)
            results["  in creation order (ms)"] = " ".join(f"{v * 1000:.0f}" for v in latencies)

            # 2. Secret rotation -> valves: a resource with a Secret of its own, next to the
            # N resources above (all on the same upstream server).
            harness.put_secret(
                namespace,
                "langfuse-rot",
                {"public-key": project.public_key, "secret-key": project.secret_key},
            )
            harness.apply(namespace, "rotating", upstream.spec(langfuse, "langfuse-rot"))
            wait_for(lambda: "rotating" in watcher.ready_at, 30, "rotating Ready")
            rotating = harness.get(namespace, "rotating")
            assert rotating is not None
            filter_id = upstream.filter_id(rotating)
            rotations = []
            for _ in range(count):
                fresh = langfuse.add_project(name="rotated")
                harness.put_secret(
                    namespace,
                    "langfuse-rot",
                    {"public-key": fresh.public_key, "secret-key": fresh.secret_key},
                )
                updated = time.monotonic()
                # Compared here, never printed: the valves hold a secret.
                wait_for(
                    lambda s=fresh.secret_key: upstream.stored_secret_key(filter_id) == s,
                    30,
                    "rotated valves",
                    interval=0.005,
                    max_interval=0.005,
                )
                rotations.append(time.monotonic() - updated)
            results[f"Secret rotation -> new valves {upstream.where}"] = summary(rotations)

            settle(upstream, harness)
            # 3. idle writes over 10 resync periods: a window, so a wait is the measurement.
            before = upstream.writes()
            versions = {
                o["metadata"]["name"]: o["metadata"]["resourceVersion"]
                for o in harness.list(namespace)
            }
            time.sleep(idle_periods * RESYNC_SECONDS)
            after = upstream.writes()
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
                f"({idle_periods * RESYNC_SECONDS}s, {count + 1} resources)"
            ] = str(after - before)
            log = operator.log_text()
            results["valves writes in the whole run (operator log)"] = str(
                log.count("updated valves")
            )
            secrets_logged = [v for v in harness.secret_values if v in log]
            assert not secrets_logged, "a secret value showed up in the operator's log"
    finally:
        watcher.stop()
    return results


def run(count: int, idle_periods: int, targets: tuple[str, ...]) -> dict[str, dict[str, str]]:
    world = World.load()
    results: dict[str, dict[str, str]] = {}
    with Cluster(world) as cluster, LangfuseStandIn() as langfuse:
        install_crd(cluster)
        api = cluster.api_client()
        harness = Harness(api)
        try:
            for target in targets:
                upstream: PipelinesUpstream | FunctionUpstream
                if target == "pipelines":
                    with PipelinesServer(world) as pipelines:
                        upstream = PipelinesUpstream(pipelines)
                        results[target] = measure(
                            cluster, world, harness, langfuse, upstream, count, idle_periods
                        )
                else:
                    with OpenWebUI(world) as open_webui:
                        upstream = FunctionUpstream(open_webui)
                        results[target] = measure(
                            cluster, world, harness, langfuse, upstream, count, idle_periods
                        )
                upstream.http.close()
        finally:
            api.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--idle-periods", type=int, default=10)
    parser.add_argument(
        "--target",
        choices=(*TARGETS, "both"),
        default="both",
        help="which target's figures to measure (default: both, Pipelines first)",
    )
    args = parser.parse_args()
    targets = TARGETS if args.target == "both" else (args.target,)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    for target, results in run(args.count, args.idle_periods, targets).items():
        print(f"[{target}]")
        for key, value in results.items():
            print(f"{key}: {value}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; started {started}; 1-minute "
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
