"""Operator memory benchmark (issue 14, item 2): the operator's RSS does not grow with the
Secrets of its namespaces that no LangfuseTracing references.

On the local world: N LangfuseTracings (bundled filter, one Pipelines server, one namespace)
and one more with a Langfuse Secret of its own, the operator as a process with the chart's
RBAC. Then:

1. RSS before: the operator's ``VmRSS`` (``/proc/<pid>/status``) once it is steady (all
   resources Ready, the RSS within 256 KiB for 10 s).
2. M unrelated Secrets of S bytes each (random data, type Opaque) are created in the watched
   namespace, 8 at a time. The rotating resource's Secret is then rotated and its new key
   awaited in Pipelines' valves: the Secret watch is one ordered stream, so by then the
   operator has received every one of the M events. RSS after: steady again (kopf's per-object
   queue workers end soon after their last event, ``settings.queueing.idle_timeout``).
3. Secret rotation -> new valves, R times, with the M Secrets still there (as
   ``bench.operator_latency``: from the Secret update returning to Pipelines' ``GET
   /<id>/valves`` showing the new secret key, polled every 5 ms).
4. The operator restarted with the M Secrets there (its watch lists them all at once): its
   steady RSS once a rotation has come through, and its peak.

``VmHWM`` (the peak RSS) is reported too: it includes the events in flight while the M Secrets
streamed in. ``--package DIR`` runs another copy of the ``openwebui_langfuse`` package (e.g. an
older commit's, from ``git archive``) for a before/after comparison. Run from the repository
root:

    <project venv>/bin/python -m bench.operator_memory [--resources 20] [--unrelated 5000]
        [--size 8192] [--rotations 20] [--package DIR]
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.operator_latency import summary
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.operator import Harness, OperatorProcess, chart_rbac, install_crd, token_kubeconfig
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

NAMESPACE = "bench-memory"
PACKAGE = Path(__file__).resolve().parents[1] / "operator" / "openwebui_langfuse"
# Steady: the RSS moved by at most this much over the window.
STEADY_KIB = 256
STEADY_SECONDS = 10.0


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def steady_rss(pid: int, timeout: float = 180.0) -> int:
    """The RSS (KiB) once it has stayed within ``STEADY_KIB`` for ``STEADY_SECONDS``."""
    samples: list[tuple[float, int]] = []

    def steady() -> int | None:
        now = time.monotonic()
        samples.append((now, status_kib(pid, "VmRSS")))
        window = [rss for at, rss in samples if now - at <= STEADY_SECONDS]
        if now - samples[0][0] < STEADY_SECONDS or max(window) - min(window) > STEADY_KIB:
            return None
        return int(statistics.median(window))

    return wait_for(steady, timeout, "a steady RSS", interval=0.5, max_interval=0.5)


def spec(pipelines: PipelinesServer, langfuse: LangfuseStandIn, secret: str) -> dict[str, Any]:
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
        "resyncInterval": "5m",
    }


def create_unrelated(harness: Harness, count: int, size: int) -> float:
    """``count`` Opaque Secrets of ``size`` random bytes; returns the seconds it took."""
    from kubernetes.client import V1ObjectMeta, V1Secret

    def create(i: int) -> None:
        data = {"blob": base64.b64encode(os.urandom(size)).decode()}
        body = V1Secret(metadata=V1ObjectMeta(name=f"unrelated-{i:05d}"), data=data)
        harness.core.create_namespaced_secret(NAMESPACE, body)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(count)))
    return time.monotonic() - started


class Rotator:
    """Rotates one resource's Langfuse Secret and times the new key's arrival in Pipelines."""

    def __init__(
        self, harness: Harness, langfuse: LangfuseStandIn, pipelines: PipelinesServer, pid: str
    ) -> None:
        self.harness = harness
        self.langfuse = langfuse
        self.http = httpx.Client(base_url=pipelines.url, timeout=5)
        self.pid = pid

    def rotate(self, timeout: float = 30.0) -> float:
        fresh = self.langfuse.add_project(name="rotated")
        self.harness.put_secret(
            NAMESPACE,
            "langfuse-rot",
            {"public-key": fresh.public_key, "secret-key": fresh.secret_key},
        )
        updated = time.monotonic()
        # Compared here, never printed: the valves hold a secret.
        wait_for(
            lambda: (
                self.http.get(f"/{self.pid}/valves").json().get("secret_key") == fresh.secret_key
            ),
            timeout,
            "rotated valves",
            interval=0.005,
            max_interval=0.005,
        )
        return time.monotonic() - updated


def run(resources: int, unrelated: int, size: int, rotations: int, package: Path) -> dict[str, str]:
    world = World.load()
    results: dict[str, str] = {}
    with (
        Cluster(world) as cluster,
        LangfuseStandIn() as langfuse,
        PipelinesServer(world) as pipelines,
    ):
        install_crd(cluster)
        api = cluster.api_client()
        harness = Harness(api)
        cluster.kubectl("create", "namespace", NAMESPACE)
        wait_for(
            lambda: cluster.kubectl("get", "sa", "default", "-n", NAMESPACE).returncode == 0,
            30,
            "default ServiceAccount",
        )
        project = langfuse.add_project(name="bench-memory")
        keys = {"public-key": project.public_key, "secret-key": project.secret_key}
        harness.put_secret(NAMESPACE, "langfuse", keys)
        harness.put_secret(NAMESPACE, "langfuse-rot", keys)
        harness.put_secret(NAMESPACE, "pipelines", {"api-key": pipelines.api_key})
        account = chart_rbac(cluster, world, NAMESPACE)
        tmp = Path(tempfile.mkdtemp(prefix="owl-bench-memory-"))
        kubeconfig = token_kubeconfig(cluster, NAMESPACE, account, tmp / "kubeconfig")
        # A snapshot, as in bench.operator_latency: a checkout being edited must not change
        # the operator mid-run.
        snapshot = tmp / "snapshot"
        shutil.copytree(
            package, snapshot / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__")
        )
        env = {"PYTHONPATH": str(snapshot)}
        try:
            with OperatorProcess(world, kubeconfig, [NAMESPACE], env=env, log_dir=tmp) as op:
                assert op.process is not None and op.process.pid is not None
                pid = op.process.pid
                for i in range(resources):
                    harness.apply(NAMESPACE, f"r{i:02d}", spec(pipelines, langfuse, "langfuse"))
                harness.apply(NAMESPACE, "rotating", spec(pipelines, langfuse, "langfuse-rot"))
                for name in [*(f"r{i:02d}" for i in range(resources)), "rotating"]:
                    harness.wait_condition(NAMESPACE, name, "Ready", "True", timeout=120)
                rotating = harness.get(NAMESPACE, "rotating")
                assert rotating is not None
                rotator = Rotator(harness, langfuse, pipelines, rotating["status"]["pipelineId"])
                rotator.rotate()  # the rotation path's first use, before the baseline
                before = steady_rss(pid)
                took = create_unrelated(harness, unrelated, size)
                rotator.rotate()  # by now every unrelated Secret's event has been received
                after = steady_rss(pid)
                peak = status_kib(pid, "VmHWM")
                times = [rotator.rotate() for _ in range(rotations)]
                op.stop()
                started = time.monotonic()
                op.start()
                assert op.process is not None and op.process.pid is not None
                # Through once the restarted operator has listed every Secret.
                first = time.monotonic() - started
                first += rotator.rotate(timeout=300)
                restarted = steady_rss(op.process.pid)
                restarted_peak = status_kib(op.process.pid, "VmHWM")
                rotator.http.close()
                log = op.log_text()
                assert not [v for v in harness.secret_values if v in log], "a secret was logged"
        finally:
            api.close()
    mib = 1024.0
    results[f"operator RSS with {resources + 1} resources, steady"] = f"{before / mib:.1f} MiB"
    results[f"created {unrelated} unrelated Secrets of {size} bytes"] = f"in {took:.0f} s"
    results["operator RSS after, steady"] = f"{after / mib:.1f} MiB"
    results["RSS change"] = f"{(after - before) / mib:+.1f} MiB"
    results["peak RSS (VmHWM) over the whole run"] = f"{peak / mib:.1f} MiB"
    results[f"Secret rotation -> new valves, {unrelated} unrelated Secrets present"] = summary(
        times
    )
    results["restarted with them: start -> first rotation through"] = f"{first:.1f} s"
    results["restarted with them: RSS steady"] = f"{restarted / mib:.1f} MiB"
    results["restarted with them: RSS change from the first steady figure"] = (
        f"{(restarted - before) / mib:+.1f} MiB"
    )
    results["restarted with them: peak RSS (VmHWM)"] = f"{restarted_peak / mib:.1f} MiB"
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--unrelated", type=int, default=5000)
    parser.add_argument("--size", type=int, default=8192, help="bytes of data per Secret")
    parser.add_argument("--rotations", type=int, default=20)
    parser.add_argument(
        "--package",
        type=Path,
        default=PACKAGE,
        help="the openwebui_langfuse package directory to run (default: this checkout's)",
    )
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    results = run(args.resources, args.unrelated, args.size, args.rotations, args.package)
    for key, value in results.items():
        print(f"{key}: {value}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; started {started}; 1-minute "
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
