"""``helm test``: the chart's test hook and the command it runs, proven in two halves.

kwok runs no container, so the hook cannot run its command on the cluster. The chart makes the
hook a **Job** (not Helm's usual bare Pod, which would stay Running forever on kwok), and kwok's
default stages complete Job pods: that proves the wiring only (Helm creates the hook, with the
operator's ServiceAccount, and waits for it). The command itself is then proven by running
exactly the Job's container arguments as a local process the way the pod would run them: with a
token of the Job's ServiceAccount and with its environment filled from the Secrets its
``secretKeyRef``s name, against the real Open WebUI, Pipelines and the Langfuse stand-in.

Here ``helm install`` alone sets tracing up: the chart renders the LangfuseTracing from values.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.stack import ECHO_MODEL, RELEASE, TRACING, Stack
from tests.world.operator import token_kubeconfig

pytestmark = [pytest.mark.world, pytest.mark.timeout(420)]

CHAT_KEY_SECRET = "open-webui-chat"


def _hook_job(stack: Stack) -> dict[str, Any]:
    out = stack.kubectl("get", "jobs", "-l", "app.kubernetes.io/component=smoke-test", "-o", "json")
    assert out.returncode == 0, out.stderr
    jobs = json.loads(out.stdout)["items"]
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    job: dict[str, Any] = jobs[0]
    return job


def _pod_environment(stack: Stack, container: dict[str, Any]) -> dict[str, str]:
    """What the kubelet would put into the container's environment."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = stack.secret_value(ref["name"], ref["key"])
    return env


def test_helm_test_hook_and_its_command(stack: Stack) -> None:
    stack.create_secrets()
    stack.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": CHAT_KEY_SECRET},
            "stringData": {"api-key": stack.open_webui.mint_api_key()},
        }
    )
    pipelines_secret, _ = stack.create_pipelines_secret()
    stack.start_pipelines()
    spec = stack.tracing_manifest()["spec"]
    # No --wait: the operator that makes the rendered LangfuseTracing Ready needs the chart's
    # ServiceAccount, so it can only start after the install (a kstatus-based --wait would
    # otherwise wait for it).
    stack.install_chart(
        {
            "pipelines": {"apiKey": {"existingSecret": pipelines_secret}},
            "tracing": {"enabled": True, "name": TRACING, "spec": spec},
            "smokeTest": {
                "openWebUI": {"existingSecret": CHAT_KEY_SECRET, "secretKey": "api-key"},
                "model": ECHO_MODEL,
                "timeoutSeconds": 60,
            },
        },
        wait=False,
    )
    stack.start_operator()
    stack.wait_ready()

    # The wiring: Helm runs the hook Job and reports it passed (kwok completes Job pods).
    result = stack.helm("test", RELEASE, "--timeout", "2m")
    assert result.returncode == 0, result.stderr
    assert "smoke-test" in result.stdout
    assert "Succeeded" in result.stdout

    job = _hook_job(stack)
    pod_spec = job["spec"]["template"]["spec"]
    account = pod_spec["serviceAccountName"]
    assert account == stack.chart_resource_name("serviceaccount", "operator")
    (container,) = pod_spec["containers"]
    args: list[str] = container["args"]
    assert args[0] == "smoke-test"
    assert container.get("command") is None  # the image's entrypoint is the CLI

    # The command: the Job's own arguments and environment, run as the pod would run them.
    kubeconfig = token_kubeconfig(
        stack.cluster, stack.namespace, account, stack.tmp / "hook-kubeconfig"
    )
    env = {
        "PATH": os.environ["PATH"],
        "KUBECONFIG": str(kubeconfig),
        **_pod_environment(stack, container),
    }
    cli = Path(stack.world.venv("project")) / "bin" / "openwebui-langfuse"
    run = subprocess.run(
        [str(cli), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("PASS: "), output
    assert "langfusetracing" in output and "Ready=True" in output
    # The trace it found is in the stand-in, under the resource's project.
    trace_id = last.split(" as trace ")[1].split()[0]
    trace = stack.langfuse.trace(trace_id)
    assert trace is not None and trace["projectId"] == stack.project.project_id
    for secret in (
        *_pod_environment(stack, container).values(),
        stack.project.secret_key,
        stack.open_webui.admin_password,
    ):
        assert secret not in output


def test_smoke_test_fails_clearly_without_a_trace(stack: Stack) -> None:
    """The same command against a resource whose filter sends nowhere useful: exit 1 and a
    one-line verdict that says what is missing."""
    stack.install_chart()
    stack.start_operator()
    stack.start_pipelines()
    stack.create_secrets()
    stack.apply_tracing()
    stack.wait_ready()
    stack.langfuse.set_failure("500")  # the export fails; the read API answers 500 too

    account = stack.chart_resource_name("serviceaccount", "operator")
    kubeconfig = token_kubeconfig(
        stack.cluster, stack.namespace, account, stack.tmp / "hook-kubeconfig"
    )
    cli = Path(stack.world.venv("project")) / "bin" / "openwebui-langfuse"
    run = subprocess.run(
        [
            str(cli),
            "smoke-test",
            "--namespace",
            stack.namespace,
            "--name",
            TRACING,
            "--model",
            ECHO_MODEL,
            "--timeout",
            "5",
        ],
        env={"PATH": os.environ["PATH"], "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("FAIL: "), run.stdout
    assert "no trace with marker" in last and "HTTP 500" in last
    assert stack.project.secret_key not in run.stdout + run.stderr
