"""Feedback sync benchmark (issue 13): a rating in Open WebUI -> its score in Langfuse, and the
load the sync puts on Open WebUI, Langfuse and the cluster when nothing new happens.

On the local world, in one run: the operator process with the chart's RBAC, the real Open WebUI
with the echo Pipe model, the Langfuse stand-in, and LangfuseTracings with the function target
on that Open WebUI (``resyncInterval: 1h``, so no resync pass falls in a measured window: what
is left between passes is the feedback sync and the Open WebUI probe).

1. Rating -> score: ``--count`` traced chat turns (``saved_chat_turn``, then its generation in
   the stand-in), each rated as the web UI rates (``POST /api/v1/evaluations/feedback``, the
   integration test's ``rate``); the time from that call's start to the score being in the
   stand-in's store (read in-process every 20 ms). One rating at a time: the next turn is made
   and rated after the previous score landed.
2. At rest, one resource: ``--idle-seconds`` with nothing new, past the sync's recheck margin
   after the last score: the requests the operator sent to Open WebUI (uvicorn's access lines
   in Open WebUI's log, ``OpenWebUI.log_path``, by route: the benchmark itself sends Open WebUI
   nothing in the window), to Langfuse (the stand-in's request log), and the writes to the
   LangfuseTracing and its sync-point ConfigMap (resourceVersions before and after).
3. At rest, ``--resources`` resources (when more than 1): as 2, after adding resources that
   trace a model that does not exist on the same Open WebUI with the same admin; the feedback
   id list is one request per Open WebUI and admin (``SharedLists``), not one per resource.

Run from the repository root:

    <project venv>/bin/python -m bench.feedback_sync [--count 20] [--idle-seconds 60]
        [--resources 10]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from openwebui_langfuse.feedback import RECHECK_MARGIN_SECONDS
from openwebui_langfuse.feedback_sync import sync_point_name

from bench.operator_latency import PACKAGE, langfuse_spec, percentile, summary
from tests.integration.test_function_target import (
    ECHO_PIPE_FUNCTION,
    PIPE_ID,
    create_function,
    refresh_models,
    switch_on,
)
from tests.integration.test_operator_feedback import (
    feedback_status,
    rate,
    scores_of,
    traced_turn,
)
from tests.integration.test_operator_function_target import openwebui_auth
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.open_webui import OpenWebUI
from tests.world.operator import (
    Harness,
    OperatorProcess,
    chart_rbac,
    install_crd,
    token_kubeconfig,
)
from tests.world.poll import wait_for

NAMESPACE = "bench-feedback"
FIRST = "tracing"
POLL_SECONDS = 2.0  # spec.feedback.pollInterval's default: what the figures are compared with
# Uvicorn's access lines: `127.0.0.1:PORT - "GET /path?query HTTP/1.1" 200`.
ACCESS = re.compile(r'"(GET|POST|DELETE|PUT|PATCH) (\S+?)(\?\S*)? HTTP/[\d.]+"')
# Ids in paths (feedback ids are UUIDs), so that routes add up.
PATH_ID = re.compile(r"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SCORE_POLL = 0.02
LANGFUSE_LOG_CAPACITY = 10_000  # the stand-in's request log keeps this many (requestlog.py)


def tracing_spec(
    open_webui: OpenWebUI, langfuse: LangfuseStandIn, models: list[str]
) -> dict[str, Any]:
    return {
        "target": "function",
        "langfuse": langfuse_spec(langfuse, "langfuse"),
        "openWebUI": openwebui_auth(open_webui),
        "filter": {"models": models},
        "resyncInterval": "1h",
    }


def access_counts(log: Path, offset: int) -> collections.Counter[str]:
    """The requests in Open WebUI's access log past ``offset`` bytes, by method and route."""
    text = log.read_bytes()[offset:].decode(errors="replace")
    return collections.Counter(
        f"{m[1]} {PATH_ID.sub('/{id}', m[2])}"
        for line in text.splitlines()
        if (m := ACCESS.search(line))
    )


def resource_versions(harness: Harness, names: list[str]) -> dict[str, str]:
    """The resourceVersion of each LangfuseTracing and of its sync-point ConfigMap ('-': none)."""
    versions = {}
    for name in names:
        versions[name] = (harness.get(NAMESPACE, name) or {})["metadata"]["resourceVersion"]
        config_map = harness.config_map(NAMESPACE, sync_point_name(name)) or {}
        versions[f"{name} sync point"] = (config_map.get("metadata") or {}).get(
            "resourceVersion", "-"
        )
    return versions


def settle() -> None:
    """Past the recheck margin of the last feedback and two more polls: the sync reads nothing
    but the list from now on, unless something new comes."""
    time.sleep(RECHECK_MARGIN_SECONDS + 2 * POLL_SECONDS + 1)


def at_rest(
    label: str,
    seconds: float,
    harness: Harness,
    open_webui: OpenWebUI,
    langfuse: LangfuseStandIn,
    names: list[str],
) -> dict[str, str]:
    before = resource_versions(harness, names)
    log_offset = open_webui.log_path.stat().st_size
    langfuse_before = len(langfuse.requests)
    started = time.monotonic()
    time.sleep(seconds)  # the window measured: nothing new happens in it
    elapsed = time.monotonic() - started
    after = resource_versions(harness, names)
    calls = access_counts(open_webui.log_path, log_offset)
    langfuse_log = langfuse.requests
    assert len(langfuse_log) < LANGFUSE_LOG_CAPACITY, "the stand-in's request log went round"
    langfuse_calls = collections.Counter(
        f"{r['method']} {r['path']}" for r in langfuse_log[langfuse_before:]
    )
    per_minute = 60.0 / elapsed
    feedback_list = sum(n for route, n in calls.items() if "/evaluations/" in route)
    moved = [k for k in before if before[k] != after[k]]
    tracings = [n for n in names if before[n] != after[n]]
    config_maps = [k for k in moved if k.endswith("sync point")]
    return {
        f"{label}: window": f"{elapsed:.1f} s, {len(names)} resource(s)",
        f"{label}: Open WebUI, feedback sync": (
            f"{feedback_list * per_minute:.1f}/min (target {60 / POLL_SECONDS:.0f}/min)"
        ),
        f"{label}: Open WebUI, all routes": (
            f"{sum(calls.values()) * per_minute:.1f}/min: "
            + (", ".join(f"{r} {n * per_minute:.1f}/min" for r, n in calls.most_common()) or "-")
        ),
        f"{label}: Langfuse requests": (
            f"{sum(langfuse_calls.values())}"
            + (f": {dict(langfuse_calls)}" if langfuse_calls else "")
            + " (target 0)"
        ),
        f"{label}: LangfuseTracing writes": (
            f"{len(tracings)} of {len(names)} moved"
            + (f": {tracings}" if tracings else "")
            + " (target 0)"
        ),
        f"{label}: sync-point ConfigMap writes": (
            f"{len(config_maps)} moved"
            + (f": {config_maps}" if config_maps else "")
            + f" (target 0; present: "
            f"{sum(1 for k in after if k.endswith('sync point') and after[k] != '-')})"
        ),
    }


def run(count: int, idle_seconds: float, resources: int) -> dict[str, str]:
    world = World.load()
    results: dict[str, str] = {}
    with (
        Cluster(world) as cluster,
        LangfuseStandIn() as langfuse,
        OpenWebUI(world) as open_webui,
    ):
        install_crd(cluster)
        project = langfuse.add_project(name="bench")
        api = cluster.api_client()
        harness = Harness(api)
        cluster.kubectl("create", "namespace", NAMESPACE)
        wait_for(
            lambda: cluster.kubectl("get", "sa", "default", "-n", NAMESPACE).returncode == 0,
            30,
            "default ServiceAccount",
        )
        harness.put_secret(
            NAMESPACE,
            "langfuse",
            {"public-key": project.public_key, "secret-key": project.secret_key},
        )
        harness.put_secret(
            NAMESPACE,
            "open-webui-admin",
            {"email": open_webui.admin_email, "password": open_webui.admin_password},
        )
        with open_webui.client() as http:
            assert create_function(http, PIPE_ID, "Echo", ECHO_PIPE_FUNCTION).status_code == 200
            switch_on(http, PIPE_ID)
            refresh_models(http)
        account = chart_rbac(cluster, world, NAMESPACE)
        tmp = Path(tempfile.mkdtemp(prefix="owl-bench-feedback-"))
        kubeconfig = token_kubeconfig(cluster, NAMESPACE, account, tmp / "kubeconfig")
        # The operator runs from a copy of the package: others may edit the tree meanwhile.
        snapshot = tmp / "snapshot"
        shutil.copytree(
            PACKAGE, snapshot / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__")
        )
        try:
            with OperatorProcess(
                world, kubeconfig, [NAMESPACE], env={"PYTHONPATH": str(snapshot)}, log_dir=tmp
            ):
                harness.apply(NAMESPACE, FIRST, tracing_spec(open_webui, langfuse, ["*"]))
                harness.wait_condition(NAMESPACE, FIRST, "Ready", "True", timeout=120)
                wait_for(lambda: feedback_status(harness, NAMESPACE, FIRST), 60, "the first poll")

                # 1. rating -> score, one at a time
                log_offset = open_webui.log_path.stat().st_size
                latencies: list[float] = []
                for i in range(count):
                    turn = traced_turn(open_webui, langfuse, f"rate me {i}")
                    started = time.monotonic()
                    feedback_id = rate(open_webui, turn, -1 if i % 2 else 1, comment=f"#{i}")
                    wait_for(
                        lambda feedback_id=feedback_id: scores_of(langfuse, feedback_id),
                        60,
                        f"the score of rating {i}",
                        interval=SCORE_POLL,
                        max_interval=SCORE_POLL,
                    )
                    latencies.append(time.monotonic() - started)
                wait_for(
                    lambda: feedback_status(harness, NAMESPACE, FIRST).get("scored") == count,
                    30,
                    "status.feedback.scored",
                )
                fetched = access_counts(open_webui.log_path, log_offset)[
                    "GET /api/v1/evaluations/feedback/{id}"
                ]
                results["1. rating -> score"] = summary(latencies)
                results["1. p50 / p95 / max (s)"] = (
                    f"{statistics.median(latencies):.2f} / {percentile(latencies, 95):.2f} / "
                    f"{max(latencies):.2f} (target p95 ≤ 5 s)"
                )
                results["1. in order (ms)"] = " ".join(f"{s * 1000:.0f}" for s in latencies)
                results["1. feedback reads per rating"] = f"{fetched / count:.1f}"

                # 2. at rest, one resource
                settle()
                results.update(
                    at_rest("2. rest", idle_seconds, harness, open_webui, langfuse, [FIRST])
                )

                # 3. at rest, more resources on the same Open WebUI and admin, each tracing a
                # Workspace model of its own on the echo pipe (so every one is Ready and no
                # pass retries in the window); the ratings are all of the echo pipe: theirs
                # to read, none theirs to send.
                if resources > 1:
                    names = [FIRST] + [f"other-{i:02d}" for i in range(1, resources)]
                    with contextlib.ExitStack() as models:
                        for i, name in enumerate(names[1:], 1):
                            model = models.enter_context(
                                open_webui.workspace_model(f"owl-bench-{i:02d}", PIPE_ID, name)
                            )
                            harness.apply(
                                NAMESPACE, name, tracing_spec(open_webui, langfuse, [model])
                            )
                        for name in names[1:]:
                            harness.wait_condition(NAMESPACE, name, "Ready", "True", timeout=120)
                            wait_for(
                                lambda name=name: feedback_status(harness, NAMESPACE, name),
                                60,
                                f"the first poll of {name}",
                            )
                        settle()
                        results.update(
                            at_rest(
                                f"3. rest x{resources}",
                                idle_seconds,
                                harness,
                                open_webui,
                                langfuse,
                                names,
                            )
                        )
        finally:
            api.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--resources", type=int, default=10)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    for key, value in run(args.count, args.idle_seconds, args.resources).items():
        print(f"{key}: {value}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; started {started}; 1-minute "
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
