"""The one-command demo: Langfuse tracing for Open WebUI, from ``helm install`` to a trace.

Starts the local world (a kwok cluster with the real control plane, the real Open WebUI, a
Langfuse stand-in), installs the chart with the real Helm, runs the real Pipelines server and the
operator (with the chart's ServiceAccount and RBAC) as local processes, applies a
``LangfuseTracing``, and prints every step: the resource's conditions as they change, a chat
through Open WebUI, the trace as Langfuse shows it, the chart's ``helm test`` command, a key
rotation, and the cleanup after deleting the resource. Everything it starts is stopped at the
end, also on failure and on Ctrl-C.

``--target function`` runs the same flow with the filter as an Open WebUI Filter Function: no
Pipelines server, the echo model served by Open WebUI itself (what differs: demo/targets.py).

The pieces are the test world's launchers and the end-to-end tests' stack
(``tests/world/``, ``tests/e2e/stack.py``): the demo shows exactly what the tests prove.

Run ``ci/demo`` (provisions first), or ``python -m demo`` from the repository root.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx
import yaml

from demo.targets import TARGETS, DemoTarget
from tests.e2e.stack import ECHO_MODEL, TRACING, Stack, StackError
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World, WorldError
from tests.world.open_webui import OpenWebUI
from tests.world.proc import RUN_VAR, StartupError, tagged, terminate_pids

NAMESPACE = "demo"
T = TypeVar("T")


class Printer:
    """Step headers and indented detail lines, with the time since the start."""

    def __init__(self, steps: int) -> None:
        self.started = time.monotonic()
        self.steps = steps
        self.step_no = 0

    def step(self, title: str) -> None:
        self.step_no += 1
        print(
            f"\n==> [{self.step_no}/{self.steps}] {title}  "
            f"(t+{time.monotonic() - self.started:.1f}s)",
            flush=True,
        )

    def line(self, text: str = "") -> None:
        for part in text.splitlines() or [""]:
            print(f"    {part}", flush=True)

    def block(self, text: str) -> None:
        self.line(textwrap.indent(text.rstrip("\n"), "  "))


def _in_parallel(*jobs: Callable[[], T]) -> list[T]:
    """Run slow starts side by side (the cluster and Open WebUI take seconds each)."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, job: Callable[[], T]) -> None:
        try:
            results[i] = job()
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


class _Interrupts:
    """Ctrl-C or SIGTERM stops the demo once; while it cleans up, further ones are ignored
    (an interrupted cleanup would leave processes behind)."""

    def __init__(self) -> None:
        self.cleaning = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.cleaning:
            print("cleaning up, one moment ...", file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def cleanup_phase(self) -> Iterator[None]:
        """Everything after the ``yield`` of the wrapped block is cleanup."""
        try:
            yield
        finally:
            self.cleaning = True


INTERRUPTS = _Interrupts()


# -- what Langfuse shows ------------------------------------------------------------------------


def _short(value: Any, width: int = 90) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def show_trace(
    p: Printer, langfuse_url: str, public_key: str, secret_key: str, trace_id: str
) -> None:
    """The trace read back through Langfuse's public API, laid out like its trace view."""
    with httpx.Client(base_url=langfuse_url, auth=(public_key, secret_key), timeout=10) as http:
        trace = http.get(f"/api/public/traces/{trace_id}").json()
    p.line(f"Trace      {trace['name']}   ({trace['id']})")
    p.line(f"  user     {trace['userId']}")
    p.line(f"  session  {trace['sessionId']}")
    p.line(f"  tags     {', '.join(trace.get('tags') or []) or '-'}")
    p.line(f"  input    {_short(trace.get('input'))}")
    p.line(f"  output   {_short(trace.get('output'))}")
    p.line(f"  latency  {trace.get('latency', 0):.3f}s")
    for obs in trace.get("observations", []):
        usage = ", ".join(f"{k}={v}" for k, v in (obs.get("usageDetails") or {}).items())
        p.line(f"  └─ {obs['type']}  {obs.get('name')}")
        p.line(f"       model   {obs.get('model')}")
        p.line(f"       input   {_short(obs.get('input'), 80)}")
        p.line(f"       output  {_short(obs.get('output'), 80)}")
        p.line(f"       usage   {usage or '-'}")
        p.line(f"       time    {obs.get('startTime')} → {obs.get('endTime')}")


# -- watching the resource ----------------------------------------------------------------------


def watch_until_ready(p: Printer, stack: Stack, timeout: float = 90) -> dict[str, Any]:
    """Print each condition when it appears or changes, until Ready=True."""
    seen: dict[str, tuple[str, str]] = {}
    deadline = time.monotonic() + timeout
    while True:
        obj = stack.get_tracing()
        conditions = (obj or {}).get("status", {}).get("conditions", []) if obj else []
        for cond in conditions:
            key = (cond["status"], cond["reason"])
            if seen.get(cond["type"]) != key:
                seen[cond["type"]] = key
                message = f" — {cond['message']}" if cond.get("message") else ""
                p.line(f"{cond['type']:<21} {cond['status']:<5} {cond['reason']}{message}")
        ready = next((c for c in conditions if c["type"] == "Ready"), None)
        if (
            obj
            and ready
            and ready["status"] == "True"
            and (obj["status"].get("observedGeneration") == obj["metadata"]["generation"])
        ):
            return obj
        if time.monotonic() > deadline:
            raise StackError(f"not Ready within {timeout:g}s")
        time.sleep(0.2)


# -- the demo -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _world(p: Printer, world: World) -> Iterator[tuple[Cluster, OpenWebUI, LangfuseStandIn]]:
    started = time.monotonic()
    cluster = Cluster(world)
    open_webui = OpenWebUI(world)
    with contextlib.ExitStack() as stack:
        # Registered before starting: whatever did start is stopped, whatever fails.
        stack.callback(cluster.stop)
        stack.callback(open_webui.stop)
        _in_parallel(cluster.start, open_webui.start)
        langfuse = stack.enter_context(LangfuseStandIn())
        project = langfuse.add_project(name="open-webui-demo")
        version = cluster.kubectl("version", "-o", "json").stdout
        server = json.loads(version).get("serverVersion", {}).get("gitVersion", "?")
        p.line(f"Kubernetes {server} (kwok, 2 fake nodes)    {cluster.server}")
        owui_version = httpx.get(f"{open_webui.url}/api/version", timeout=10).json()["version"]
        p.line(f"Open WebUI {owui_version} (the real server)       {open_webui.url}")
        p.line(f"Langfuse stand-in {langfuse.version}              {langfuse.url}")
        p.line(f"  with project {project.name!r} (its keys go into a Secret below)")
        p.line(f"ready in {time.monotonic() - started:.1f}s")
        with INTERRUPTS.cleanup_phase():
            yield cluster, open_webui, langfuse
        p.line("stopping Langfuse, Open WebUI and the cluster")


def run_demo(p: Printer, target: DemoTarget) -> None:
    world = World.load()
    p.step("Start the local world: a Kubernetes cluster, Open WebUI and Langfuse")
    with _world(p, world) as (cluster, open_webui, langfuse):
        created = cluster.kubectl("create", "namespace", NAMESPACE)
        if created.returncode != 0:
            raise StackError(created.stderr)
        with Stack(world, cluster, open_webui, langfuse, NAMESPACE) as stack:
            with INTERRUPTS.cleanup_phase():
                run_steps(p, stack, target)
            p.step("Clean up")
            p.line(f"stopping {target.runs}, uninstalling the chart")


def run_steps(p: Printer, stack: Stack, target: DemoTarget) -> None:
    langfuse = stack.langfuse
    p.step(f"helm install openwebui-langfuse (the chart: {target.chart})")
    p.line(f"$ helm install owl charts/openwebui-langfuse -n {NAMESPACE}{target.helm_flags} --wait")
    out = stack.install_chart(target.chart_values())
    p.block(
        "\n".join(
            line
            for line in out.splitlines()
            if line.split(":")[0] in ("NAME", "NAMESPACE", "STATUS", "REVISION")
        )
    )
    p.line(f"$ kubectl -n {NAMESPACE} get deploy,svc,sa")
    p.block(stack.kubectl("get", "deploy,svc,sa", "-l", "app.kubernetes.io/instance=owl").stdout)
    p.line("(kwok runs no containers: what the chart deploys runs next to the cluster as")
    p.line(" processes; the operator uses a token of the chart's own ServiceAccount)")
    operator = stack.start_operator()
    p.line(f"operator: openwebui-langfuse run --namespace {NAMESPACE}  (log {operator.log_path})")
    target.start_model(p, stack)

    p.step("Create the Secrets and apply a LangfuseTracing")
    stack.create_secrets()
    p.line(
        f"$ kubectl -n {NAMESPACE} create secret generic langfuse-keys "
        "--from-literal=public-key=pk-lf-… --from-literal=secret-key=sk-lf-…"
    )
    p.line(
        f"$ kubectl -n {NAMESPACE} create secret generic open-webui-admin "
        "--from-literal=email=… --from-literal=password=…"
    )
    manifest = target.manifest(stack)
    stack.apply(manifest)
    p.line(f"$ kubectl -n {NAMESPACE} apply -f tracing.yaml")
    p.block(yaml.safe_dump(manifest, sort_keys=False))

    p.step("The operator reconciles: conditions as they change")
    started = time.monotonic()
    obj = watch_until_ready(p, stack)
    p.line(f"Ready after {time.monotonic() - started:.1f}s")
    p.line(f"$ kubectl -n {NAMESPACE} get lft")
    p.block(stack.kubectl("get", "lft").stdout)
    p.line(
        f"$ kubectl -n {NAMESPACE} get events --field-selector involvedObject.kind=LangfuseTracing"
    )
    p.block(
        stack.kubectl(
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=LangfuseTracing",
            "-o",
            "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
        ).stdout
    )
    status = obj["status"]
    p.line(f"status.target: {status.get('target')}")
    p.line(f"status.langfuse: {json.dumps(status.get('langfuse'))}")
    p.line(f"status.openWebUI: {json.dumps(status.get('openWebUI'))}")
    target.show_installed(p, stack, status)

    p.step("Chat through Open WebUI's API")
    turn = stack.chat("Hello! Is this conversation traced?")
    p.line(f"user ({stack.open_webui.admin_email}):  {turn.prompt}")
    p.line(f"{turn.model}:  {turn.reply}")
    p.line(f"chat id {turn.chat_id}")

    p.step("The trace in Langfuse (read back through its public API)")
    trace, _ = stack.wait_trace(turn)
    show_trace(p, langfuse.url, stack.project.public_key, stack.project.secret_key, trace["id"])
    streamed = stack.chat("And a streamed answer?", stream=True)
    _, generation = stack.wait_trace(streamed)
    usage = ", ".join(f"{k}={v}" for k, v in (generation.get("usageDetails") or {}).items())
    p.line(f"a streamed chat ({streamed.reply!r}) reports usage too: {usage or 'none'}")
    p.line("  (the operator turned on Open WebUI's 'usage' capability, so Open WebUI asks")
    p.line("   the model for token counts on streamed answers)")

    p.step("helm test's command: openwebui-langfuse smoke-test")
    cli = Path(stack.world.venv("project")) / "bin" / "openwebui-langfuse"
    p.line(
        f"$ openwebui-langfuse smoke-test --namespace {NAMESPACE} --name {TRACING} "
        f"--model {ECHO_MODEL}"
    )
    smoke = subprocess.run(
        [
            str(cli),
            "smoke-test",
            "--namespace",
            NAMESPACE,
            "--name",
            TRACING,
            "--model",
            ECHO_MODEL,
            "--timeout",
            "30",
        ],
        env={**os.environ, "KUBECONFIG": str(stack.operator_kubeconfig())},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    p.block(smoke.stdout + smoke.stderr)
    if smoke.returncode != 0:
        raise StackError("the smoke test failed")

    p.step("Rotate the Langfuse keys: the next chat lands under the new project")
    old = stack.project
    new = stack.rotate_langfuse_keys("rotated-project")
    p.line(f"$ kubectl -n {NAMESPACE} apply -f langfuse-keys.yaml   (keys of project {new.name!r})")
    started = time.monotonic()
    stack.wait_ready(also=lambda o: o["status"]["langfuse"]["projectId"] == new.project_id)
    p.line(f"operator verified and pushed the new keys in {time.monotonic() - started:.2f}s")
    turn2 = stack.chat("And now?")
    trace2, _ = stack.wait_trace(turn2, new)
    p.line(f"chat {turn2.chat_id} → trace {trace2['id']} in project {new.name!r}")
    p.line(
        f"traces in {old.name!r}: {len(langfuse.traces(old.project_id))}, "
        f"in {new.name!r}: {len(langfuse.traces(new.project_id))}"
    )

    p.step("Delete the LangfuseTracing: the operator removes what it added")
    p.line(f"$ kubectl -n {NAMESPACE} delete lft {TRACING}")
    stack.delete_tracing()
    target.show_removed(p, stack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ci/demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        choices=sorted(TARGETS),
        default="pipelines",
        help="where the filter runs (spec.target): in a Pipelines server (the default), or "
        "inside Open WebUI as a Filter Function, with no Pipelines server",
    )
    args = parser.parse_args(argv)
    # Every process the demo starts carries this tag (its own, also under a test run that has
    # one), and the end proves none is left.
    run_id = os.environ[RUN_VAR] = uuid.uuid4().hex
    INTERRUPTS.cleaning = False
    previous = {sig: signal.signal(sig, INTERRUPTS) for sig in (signal.SIGINT, signal.SIGTERM)}
    p = Printer(steps=10)
    code = 0
    try:
        print(f"openwebui-langfuse demo, spec.target: {args.target}", flush=True)
        run_demo(p, TARGETS[args.target])
    except KeyboardInterrupt:
        print("\ninterrupted: everything started was stopped", file=sys.stderr, flush=True)
        code = 130
    except (StackError, StartupError, WorldError, TimeoutError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    left = [pid for pid in tagged(RUN_VAR, run_id) if pid != os.getpid()]
    if left:
        terminate_pids(left)
        print(f"ended {len(left)} leftover process(es)", file=sys.stderr, flush=True)
        code = code or 1
    elif code == 0:
        print(f"\nDone in {time.monotonic() - p.started:.1f}s; nothing left running.", flush=True)
    return code
