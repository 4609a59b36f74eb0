"""End to end: the chart, the operator, the real Open WebUI and Pipelines, and Langfuse.

The chart is installed with the real Helm into a fresh namespace of the kwok cluster (its
Deployments become Available on fake nodes); the real Pipelines server, the real Open WebUI and
the Langfuse stand-in run as local processes, and the operator runs as a process with a token of
the chart's own ServiceAccount (tests/e2e/stack.py). A person's own Open WebUI connection is
there from the start and must come out untouched.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.conftest import OTHER_CONFIG, OTHER_KEY, OTHER_URL
from tests.e2e.gitops_health import ArgoCDHealth, argocd_gopher_lua, kstatus
from tests.e2e.stack import ECHO_MODEL, Stack
from tests.world.poll import wait_for

pytestmark = [pytest.mark.world, pytest.mark.timeout(420)]


# A connection a person adds while the operator runs (port 9: nothing listens, nothing leaves).
LATE_URL = "http://127.0.0.1:9/late/v1"
LATE_KEY = "sk-late-connection"
LATE_CONFIG = {"enable": False, "prefix_id": "late", "model_ids": ["m1"]}


def _assert_no_secret_in(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret value appears in {where}"


def _argocd(obj: dict[str, Any]) -> str:
    """Argo CD's verdict on a live object: gopher-lua as Argo CD runs it, and the reference Lua
    5.1 agreeing with it."""
    (verdict,) = argocd_gopher_lua([obj])
    assert ArgoCDHealth()(obj) == verdict
    return verdict.status


def _events(stack: Stack) -> str:
    return stack.kubectl("get", "events", "-o", "json").stdout


def test_full_path(stack: Stack) -> None:
    langfuse = stack.langfuse
    first_project = stack.project
    stack.install_chart()
    # As in a cluster: the operator makes the Pipelines key, then the Pipelines pod starts.
    operator = stack.start_operator()
    pipelines = stack.start_pipelines()
    stack.create_secrets()

    # kubectl apply -> Ready=True, every condition True, the project named in the status.
    stack.apply_tracing()
    # What a user runs: kubectl wait on the Ready condition, then the printer columns.
    waited = stack.kubectl("wait", "--for=condition=Ready", "lft/tracing", "--timeout=90s")
    assert waited.returncode == 0, waited.stderr
    obj = stack.wait_ready()
    status = obj["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    for type_ in ("CredentialsValid", "FilterInstalled", "ValvesSynced", "ConnectionRegistered"):
        assert conditions[type_]["status"] == "True", conditions[type_]
    assert conditions["Stalled"]["status"] == "False"
    assert conditions["Reconciling"]["status"] == "False"
    assert status["langfuse"]["projectId"] == first_project.project_id
    pipeline_id = status["pipelineId"]
    assert pipeline_id == f"lft_{stack.namespace.replace('-', '_')}_tracing"
    columns = stack.kubectl("get", "lft", "tracing", "--no-headers").stdout.split()
    assert columns[:4] == ["tracing", "True", pipeline_id, stack.langfuse.url]
    # What Flux / Helm 4 --wait and Argo CD make of the live object.
    assert kstatus([obj])[0].status == "Current"
    assert _argocd(obj) == "Healthy"

    # Pipelines has the filter next to the model; Open WebUI has our connection after the
    # person's, whose entry is untouched.
    with pipelines.client() as http:
        loaded = {p["id"]: p["type"] for p in http.get("/pipelines").json()["data"]}
    assert loaded == {ECHO_MODEL: "pipe", pipeline_id: "filter"}
    config = stack.openai_config()
    assert config["OPENAI_API_BASE_URLS"] == [OTHER_URL, pipelines.url]
    assert config["OPENAI_API_KEYS"][0] == OTHER_KEY
    assert config["OPENAI_API_CONFIGS"]["0"] == OTHER_CONFIG
    ours = config["OPENAI_API_CONFIGS"]["1"]
    assert ours.get("enable") is True and "model_ids" not in ours and "prefix_id" not in ours

    # A person adds a connection after ours (index 2); it must survive every later write of
    # the operator, and move to index 1 with its config when ours is removed.
    stack.open_webui.set_connections(
        [*config["OPENAI_API_BASE_URLS"], LATE_URL],
        [*config["OPENAI_API_KEYS"], LATE_KEY],
        {**config["OPENAI_API_CONFIGS"], "2": LATE_CONFIG},
    )

    # A chat through Open WebUI's API -> a trace with user, session, model, output and usage.
    turn = stack.chat("What does Langfuse see?")
    assert turn.reply == "echo: What does Langfuse see?"
    trace, generation = stack.wait_trace(turn)
    assert trace["userId"] == turn.user_id
    assert trace["sessionId"] == turn.chat_id
    assert trace["name"] == "open-webui chat"
    assert generation["model"] == ECHO_MODEL
    assert generation["output"] == turn.reply
    assert generation["input"] == [{"role": "user", "content": turn.prompt}]
    assert generation["usageDetails"]["input"] > 0
    assert generation["usageDetails"]["output"] > 0

    # A streamed chat reports usage too: the operator turned on Open WebUI's "usage"
    # capability, so Open WebUI asks the model for it (stream_options.include_usage).
    streamed = stack.chat("Streamed, with usage?", stream=True)
    assert streamed.reply == "echo: Streamed, with usage?"
    _, streamed_generation = stack.wait_trace(streamed)
    assert streamed_generation["metadata"]["stream"] is True
    assert streamed_generation["usageDetails"]["input"] > 0
    assert streamed_generation["usageDetails"]["output"] > 0

    # Rotate the Langfuse Secret: the next chat lands under the new keys, none under the old.
    second_project = stack.rotate_langfuse_keys()
    stack.wait_ready(
        also=lambda o: o["status"]["langfuse"]["projectId"] == second_project.project_id
    )
    before = {t["id"] for t in langfuse.traces(first_project.project_id)}
    turn2 = stack.chat("And after the rotation?")
    trace2, _ = stack.wait_trace(turn2, second_project)
    assert trace2["sessionId"] == turn2.chat_id
    assert {t["id"] for t in langfuse.traces(first_project.project_id)} == before
    exports = [r for r in langfuse.requests if r["path"].endswith("/otel/v1/traces")]
    assert exports[-1]["publicKey"] == second_project.public_key
    assert exports[-1]["status"] == 200

    live = json.dumps(stack.get_tracing())
    # Delete the resource: the filter and our connection go, everything else stays.
    stack.delete_tracing()
    with pipelines.client() as http:
        loaded = {p["id"]: p["type"] for p in http.get("/pipelines").json()["data"]}
    assert loaded == {ECHO_MODEL: "pipe"}
    config = stack.openai_config()
    assert config["OPENAI_API_BASE_URLS"] == [OTHER_URL, LATE_URL]
    assert config["OPENAI_API_KEYS"] == [OTHER_KEY, LATE_KEY]
    assert config["OPENAI_API_CONFIGS"] == {"0": OTHER_CONFIG, "1": LATE_CONFIG}
    assert config["ENABLE_OPENAI_API"] is True

    secrets = [
        first_project.secret_key,
        second_project.secret_key,
        pipelines.api_key,
        stack.open_webui.admin_password,
        OTHER_KEY,
        LATE_KEY,
    ]
    _assert_no_secret_in(operator.log_text(), secrets, "the operator's log")
    _assert_no_secret_in(_events(stack), secrets, "the namespace's Events")
    _assert_no_secret_in(live, secrets, "the resource (status, annotations)")


def _wait_condition(stack: Stack, type_: str, status: str, timeout: float = 60) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = stack.get_tracing()
        if (
            obj is None
            or obj.get("status", {}).get("observedGeneration") != obj["metadata"]["generation"]
        ):
            return None
        for cond in obj["status"].get("conditions", []):
            if cond["type"] == type_ and cond["status"] == status:
                return obj
        return None

    return wait_for(check, timeout, f"{type_}={status}")


def test_gitops_health_of_live_objects(stack: Stack) -> None:
    """kstatus and the Argo CD check on status objects read back from the cluster, in each
    state: before the operator's first write, stalled (wrong keys), current (fixed), in
    progress (Langfuse failing, retried), suspended. Open WebUI auth here: an admin API key."""
    stack.openwebui_auth = "apiKey"
    # A Pipelines key of our own: Pipelines must run before the operator's first start here.
    pipelines_secret, _ = stack.create_pipelines_secret()
    stack.install_chart({"pipelines": {"apiKey": {"existingSecret": pipelines_secret}}})
    stack.start_pipelines()
    stack.create_secrets()
    good = stack.project
    wrong = stack.langfuse_secret_manifest(good)
    wrong["stringData"]["secret-key"] = "sk-lf-wrong"
    stack.apply(wrong)
    stack.apply_tracing()

    # Applied, the operator not running yet. Argo CD waits; kstatus can only wait when the CRD
    # defaults status.observedGeneration (then generation 1 is visibly not observed yet).
    fresh = stack.get_tracing()
    assert fresh is not None
    assert _argocd(fresh) == "Progressing"
    crd_defaults_status = fresh.get("status", {}).get("observedGeneration") == 0
    assert kstatus([fresh])[0].status == ("InProgress" if crd_defaults_status else "Current")

    stack.start_operator()

    stalled = _wait_condition(stack, "Stalled", "True")
    assert {c["type"]: c["reason"] for c in stalled["status"]["conditions"]}[
        "CredentialsValid"
    ] == "InvalidCredentials"
    assert kstatus([stalled])[0].status == "Failed"
    assert _argocd(stalled) == "Degraded"

    stack.apply(stack.langfuse_secret_manifest(good))
    ready = stack.wait_ready()
    assert kstatus([ready])[0].status == "Current"
    assert stack.tracing_manifest()["spec"]["openWebUI"]["auth"] == {
        "apiKey": {"secretKeyRef": {"name": "open-webui-admin", "key": "api-key"}}
    }
    assert _argocd(ready) == "Healthy"

    # Langfuse answers 500: a temporary error, retried; a spec change makes the operator look.
    stack.langfuse.set_failure("500")
    patch = json.dumps({"spec": {"filter": {"priority": 1}}})
    assert (
        stack.kubectl("patch", "langfusetracing", "tracing", "--type=merge", "-p", patch).returncode
        == 0
    )
    retrying = _wait_condition(stack, "Reconciling", "True")
    assert kstatus([retrying])[0].status == "InProgress"
    assert _argocd(retrying) == "Progressing"

    stack.langfuse.set_failure(None)
    recovered = stack.wait_ready(timeout=120)
    assert kstatus([recovered])[0].status == "Current"

    suspended_patch = json.dumps({"spec": {"suspend": True}})
    assert (
        stack.kubectl(
            "patch", "langfusetracing", "tracing", "--type=merge", "-p", suspended_patch
        ).returncode
        == 0
    )
    suspended = stack.get_tracing()
    assert suspended is not None
    assert _argocd(suspended) == "Suspended"
