"""The chart without a cluster: lint, renders, determinism, bad values, docs, the CRD's text."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart import schema_sync
from tests.chart.helm import (
    CHART,
    CRD_FILE,
    FIXED_KEY,
    SCENARIOS,
    Helm,
    by_kind,
    documents,
    pod_specs,
)
from tests.chart.invalid_resources import INVALID, Invalid
from tests.world.manifest import World

LFT_API = "openwebui-langfuse.io/v1alpha1/LangfuseTracing"


@pytest.fixture(scope="module")
def helm(world: World) -> Helm:
    return Helm(world)


def _scenario_id(path: Path) -> str:
    return path.name.removesuffix("-values.yaml")


# -- lint and render ---------------------------------------------------------------------------


def test_lint_strict_defaults(helm: Helm) -> None:
    out = helm.ok("lint", "--strict", CHART)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


@pytest.mark.parametrize("values", SCENARIOS, ids=_scenario_id)
def test_lint_strict_scenario(helm: Helm, values: Path) -> None:
    out = helm.ok("lint", "--strict", CHART, "-f", values)
    assert "0 chart(s) failed" in out


def test_defaults_render_the_whole_stack(helm: Helm) -> None:
    docs = documents(helm.template(*FIXED_KEY))
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert kinds == [
        "ClusterRole/owl-openwebui-langfuse-operator-tracing",
        "ClusterRoleBinding/owl-openwebui-langfuse-operator-tracing",
        "CustomResourceDefinition/langfusetracings.openwebui-langfuse.io",
        "Deployment/owl-openwebui-langfuse-operator",
        "Deployment/owl-openwebui-langfuse-pipelines",
        "NetworkPolicy/owl-openwebui-langfuse-operator",
        "NetworkPolicy/owl-openwebui-langfuse-operator-egress",
        "NetworkPolicy/owl-openwebui-langfuse-pipelines",
        "NetworkPolicy/owl-openwebui-langfuse-pipelines-egress",
        "Role/owl-openwebui-langfuse-operator",
        "Role/owl-openwebui-langfuse-operator-leader",
        "RoleBinding/owl-openwebui-langfuse-operator",
        "RoleBinding/owl-openwebui-langfuse-operator-leader",
        "Secret/owl-openwebui-langfuse-pipelines-api-key",
        "Service/owl-openwebui-langfuse-pipelines",
        "ServiceAccount/owl-openwebui-langfuse-operator",
    ]
    pipelines = by_kind(docs, "Deployment")[1]
    assert pipelines["spec"]["replicas"] == 1
    assert pipelines["spec"]["strategy"] == {"type": "Recreate"}
    container = pipelines["spec"]["template"]["spec"]["containers"][0]
    # The project's own build of Pipelines, released (and pinned by digest) with the chart.
    assert container["image"] == "ghcr.io/openwebui-langfuse/pipelines:0.1.0"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 9099, "protocol": "TCP"}]
    secret = by_kind(docs, "Secret")[0]
    assert base64.b64decode(secret["data"]["api-key"]).decode() == "fixed-test-key"


def test_operator_deployment_follows_the_process_contract(helm: Helm) -> None:
    docs = documents(helm.template(*FIXED_KEY))
    operator = by_kind(docs, "Deployment")[0]
    spec = operator["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["image"] == "ghcr.io/openwebui-langfuse/operator:0.1.0"
    assert container["args"] == ["run"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in (
        container["env"]
    )
    del env["POD_NAME"]  # the replica's name in the leader Lease
    assert env == {
        "OPENWEBUI_LANGFUSE_NAMESPACES": "tracing",
        "OPENWEBUI_LANGFUSE_LIVENESS": "http://0.0.0.0:8080/healthz",
        "OPENWEBUI_LANGFUSE_READINESS": "http://0.0.0.0:8081/readyz",
        "OPENWEBUI_LANGFUSE_LOG_FORMAT": "text",
        "OPENWEBUI_LANGFUSE_LOG_LEVEL": "INFO",
        # The operator's bounds, as documented chart values (operator.deleteTimeout, ...).
        "OPENWEBUI_LANGFUSE_DELETE_TIMEOUT": "60",
        "OPENWEBUI_LANGFUSE_HTTP_TIMEOUT": "10",
        "OPENWEBUI_LANGFUSE_MAX_BACKOFF": "60",
        "OPENWEBUI_LANGFUSE_LEADER_LEASE": "tracing/owl-openwebui-langfuse-operator-leader",
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ready"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "ready": 8081}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert spec["serviceAccountName"] == "owl-openwebui-langfuse-operator"
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    assert not by_kind(docs, "PodDisruptionBudget")


def test_two_replicas_roll_elect_a_leader_and_keep_one_through_a_drain(helm: Helm) -> None:
    docs = documents(helm.template(*FIXED_KEY, "--set", "operator.replicas=2"))
    operator = by_kind(docs, "Deployment")[0]
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    (budget,) = by_kind(docs, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == operator["spec"]["selector"]
    leader = next(r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader"))
    assert leader["metadata"]["namespace"] == "tracing"
    assert _rules(leader) == {
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "update"),
        ("coordination.k8s.io", "leases", "create"),
    }
    named = [rule for rule in leader["rules"] if "get" in rule["verbs"]]
    assert named[0]["resourceNames"] == ["owl-openwebui-langfuse-operator-leader"]


@pytest.mark.parametrize("values", SCENARIOS, ids=_scenario_id)
def test_scenario_renders_identically_twice(helm: Helm, values: Path) -> None:
    first = helm.template("-f", values)
    assert first == helm.template("-f", values)
    assert documents(first)


def test_defaults_render_identically_with_a_fixed_key(helm: Helm) -> None:
    assert helm.template(*FIXED_KEY) == helm.template(*FIXED_KEY)


def test_default_renders_are_byte_identical_and_hold_no_key(helm: Helm) -> None:
    # Argo CD and Flux render with `helm template` (no lookup): nothing may vary between renders,
    # so the key is made by the operator where it is kept, never by the template.
    first = helm.template()
    assert first == helm.template()
    docs = documents(first)
    assert by_kind(docs, "Secret") == []
    operator = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env["OPENWEBUI_LANGFUSE_PIPELINES_KEY_SECRET"] == (
        "tracing/owl-openwebui-langfuse-pipelines-api-key"
    )
    assert env["OPENWEBUI_LANGFUSE_PIPELINES_KEY_SECRET_KEY"] == "api-key"
    pipelines = by_kind(docs, "Deployment")[1]["spec"]["template"]["spec"]["containers"][0]
    assert pipelines["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": "owl-openwebui-langfuse-pipelines-api-key",
        "key": "api-key",
    }
    # The one right that making the key needs, in the release namespace only.
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "Role")}
    key_role = roles["owl-openwebui-langfuse-operator-pipelines-key"]
    assert key_role["metadata"]["namespace"] == "tracing"
    assert key_role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]
    binding = {b["metadata"]["name"]: b for b in by_kind(docs, "RoleBinding")}[
        "owl-openwebui-langfuse-operator-pipelines-key"
    ]
    assert binding["subjects"][0]["name"] == "owl-openwebui-langfuse-operator"


@pytest.mark.parametrize(
    "values",
    [
        FIXED_KEY,
        ["--set", "pipelines.apiKey.existingSecret=mine"],
        ["--set", "pipelines.enabled=false"],
    ],
    ids=["value", "existing-secret", "no-pipelines"],
)
def test_the_operator_makes_no_key_when_one_is_given(helm: Helm, values: list[str]) -> None:
    docs = documents(helm.template(*values))
    operator = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert not any(
        e["name"].startswith("OPENWEBUI_LANGFUSE_PIPELINES_KEY") for e in operator["env"]
    )
    assert not any(r["metadata"]["name"].endswith("-pipelines-key") for r in by_kind(docs, "Role"))


def test_pipelines_runs_uvicorn_as_pid_1(helm: Helm) -> None:
    # Upstream's entrypoint `bash start.sh` runs uvicorn as a child without exec: SIGTERM stops
    # bash, never uvicorn, so filters would not flush. The chart starts uvicorn itself.
    docs = documents(helm.template())
    container = by_kind(docs, "Deployment")[1]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == [
        "python3",
        "-m",
        "uvicorn",
        "main:app",
        "--host",
        "0.0.0.0",
        "--port",
        "9099",
    ]
    assert "args" not in container
    kept = documents(helm.template("--set-json", "pipelines.command=[]"))
    assert (
        "command" not in by_kind(kept, "Deployment")[1]["spec"]["template"]["spec"]["containers"][0]
    )


def test_tracing_is_a_hook_until_the_crd_is_served(helm: Helm) -> None:
    values = CHART / "ci" / "tracing-values.yaml"
    first_install = by_kind(documents(helm.template("-f", values)), "LangfuseTracing")[0]
    annotations = first_install["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade,post-rollback"
    assert "helm.sh/hook-delete-policy" not in annotations
    # Helm's ownership metadata, so that the next upgrade adopts it.
    assert annotations["meta.helm.sh/release-name"] == "owl"
    assert annotations["meta.helm.sh/release-namespace"] == "tracing"
    assert first_install["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"

    served = helm.template("-f", values, "--api-versions", LFT_API)
    normal = by_kind(documents(served), "LangfuseTracing")[0]
    assert not any(
        k.startswith(("helm.sh/", "meta.helm.sh/")) for k in normal["metadata"]["annotations"]
    )
    assert normal["spec"] == first_install["spec"]


def test_tracing_defaults_to_the_charts_pipelines(helm: Helm) -> None:
    rendered = helm.template("-f", CHART / "ci" / "tracing-values.yaml")
    spec = by_kind(documents(rendered), "LangfuseTracing")[0]["spec"]
    assert spec["pipelines"] == {
        "url": "http://owl-openwebui-langfuse-pipelines.tracing.svc:9099",
        "apiKey": {
            "secretKeyRef": {"name": "owl-openwebui-langfuse-pipelines-api-key", "key": "api-key"}
        },
    }


FUNCTION_TARGET = CHART / "ci" / "function-target-values.yaml"


def _pipelines_objects(docs: list[dict[str, Any]]) -> list[str]:
    """kind/name of every object that is part of a Pipelines server (or reaches one)."""
    found = []
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        if (
            labels.get("app.kubernetes.io/component") == "pipelines"
            or "pipelines" in (doc["metadata"]["name"])
        ):
            found.append(f"{doc['kind']}/{doc['metadata']['name']}")
        for rule in doc.get("spec", {}).get("egress", []) if doc["kind"] == "NetworkPolicy" else []:
            for peer in rule.get("to") or []:
                selector = (peer.get("podSelector") or {}).get("matchLabels") or {}
                if selector.get("app.kubernetes.io/component") == "pipelines":
                    found.append(f"{doc['kind']}/{doc['metadata']['name']} egress to Pipelines")
    return found


def test_function_target_renders_no_pipelines(helm: Helm) -> None:
    docs = documents(helm.template("-f", FUNCTION_TARGET))
    (tracing,) = by_kind(docs, "LangfuseTracing")
    spec = tracing["spec"]
    assert spec["target"] == "function"
    assert "pipelines" not in spec
    assert spec["openWebUI"]["auth"] == {
        "apiKey": {"secretKeyRef": {"name": "open-webui-admin", "key": "api-key"}}
    }
    assert "connectionUrl" not in spec["openWebUI"]
    # No Pipelines Deployment, Service, Secret, claim or NetworkPolicy, and nothing reaches one.
    assert _pipelines_objects(docs) == []
    assert [d["metadata"]["name"] for d in by_kind(docs, "Deployment")] == [
        "owl-openwebui-langfuse-operator"
    ]
    operator = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert not any(e["name"].startswith("OPENWEBUI_LANGFUSE_PIPELINES") for e in operator["env"])
    # The hook Jobs still run: they talk to the Kubernetes API, Open WebUI and Langfuse only.
    jobs = {d["metadata"]["annotations"]["helm.sh/hook"] for d in by_kind(docs, "Job")}
    assert jobs == {"pre-delete", "test"}


def test_without_pipelines_nothing_of_pipelines_renders(helm: Helm) -> None:
    """pipelines.enabled=false wins over every other Pipelines value."""
    docs = documents(
        helm.template(
            "-f",
            FUNCTION_TARGET,
            "--set",
            "pipelines.persistence.enabled=true",
            "--set",
            "pipelines.apiKey.value=ignored-key",
            "--set",
            "pipelines.networkPolicy.enabled=true",
        )
    )
    assert _pipelines_objects(docs) == []
    assert by_kind(docs, "PersistentVolumeClaim") == []
    assert by_kind(docs, "Secret") == []


def test_function_target_with_the_charts_pipelines_keeps_them_apart(helm: Helm) -> None:
    # Pipelines may still serve other resources: the function-target resource never points at it.
    docs = documents(helm.template("-f", FUNCTION_TARGET, "--set", "pipelines.enabled=true"))
    assert "pipelines" not in by_kind(docs, "LangfuseTracing")[0]["spec"]
    assert by_kind(docs, "Service")


def test_function_target_takes_a_url_file_of_any_name(helm: Helm) -> None:
    # Only Pipelines takes the file name as the id; for a function the operator downloads it.
    url = "https://example.com/langfuse-filter.py"
    docs = documents(
        helm.template(
            "-f",
            FUNCTION_TARGET,
            "--set",
            "tracing.spec.filter.source=url",
            "--set",
            f"tracing.spec.filter.url={url}",
            "--set",
            "tracing.spec.filter.functionId=langfuse",
        )
    )
    spec = by_kind(docs, "LangfuseTracing")[0]["spec"]
    assert spec["filter"]["url"] == url
    assert spec["filter"]["functionId"] == "langfuse"


def test_hooks_run_the_contract_commands(helm: Helm) -> None:
    docs = documents(helm.template("-f", CHART / "ci" / "tracing-open-webui-values.yaml"))
    jobs = {d["metadata"]["annotations"]["helm.sh/hook"]: d for d in by_kind(docs, "Job")}
    pre_delete = jobs["pre-delete"]["spec"]["template"]["spec"]["containers"][0]
    assert pre_delete["args"] == [
        "pre-delete",
        "--namespace",
        "tracing",
        "--selector",
        "app.kubernetes.io/instance=owl,app.kubernetes.io/name=openwebui-langfuse,"
        "app.kubernetes.io/component=tracing",
        "--timeout",
        "120",
    ]
    smoke = jobs["test"]["spec"]["template"]["spec"]["containers"][0]
    assert smoke["args"][:5] == ["smoke-test", "--namespace", "tracing", "--name", "langfuse"]
    assert smoke["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": "open-webui-admin",
        "key": "api-key",
    }
    tracing = by_kind(docs, "LangfuseTracing")[0]
    assert tracing["metadata"]["labels"]["app.kubernetes.io/component"] == "tracing"


def test_no_hooks_without_tracing(helm: Helm) -> None:
    docs = documents(helm.template(*FIXED_KEY))
    assert not [d for d in docs if "helm.sh/hook" in (d["metadata"].get("annotations") or {})]


# -- RBAC --------------------------------------------------------------------------------------


def _rules(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in doc["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


NAMESPACED_RULES = {
    *{
        ("openwebui-langfuse.io", "langfusetracings", v)
        for v in ("get", "list", "watch", "patch", "update")
    },
    *{("openwebui-langfuse.io", "langfusetracings/status", v) for v in ("get", "patch", "update")},
    *{("", r, v) for r in ("secrets", "configmaps") for v in ("get", "list", "watch")},
    *{("", "configmaps", v) for v in ("create", "patch")},  # the feedback sync point
    *{(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")},
}
CRD_READ = {
    ("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("get", "list", "watch")
}


def test_rbac_namespaced_by_default(helm: Helm) -> None:
    docs = documents(helm.template(*FIXED_KEY))
    (role,) = [r for r in by_kind(docs, "Role") if not r["metadata"]["name"].endswith("-leader")]
    assert role["metadata"]["namespace"] == "tracing"
    assert _rules(role) == NAMESPACED_RULES
    (cluster_role,) = by_kind(docs, "ClusterRole")
    assert _rules(cluster_role) == CRD_READ


def test_rbac_per_watched_namespace(helm: Helm) -> None:
    docs = documents(helm.template("-f", CHART / "ci" / "watch-namespaces-values.yaml"))
    roles = [r for r in by_kind(docs, "Role") if not r["metadata"]["name"].endswith("-leader")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    bindings = [
        b for b in by_kind(docs, "RoleBinding") if not b["metadata"]["name"].endswith("-leader")
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["subjects"][0]["namespace"] == "tracing" for b in bindings)
    env = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "OPENWEBUI_LANGFUSE_NAMESPACES", "value": "team-a,team-b"} in env


def test_rbac_cluster_wide(helm: Helm) -> None:
    docs = documents(helm.template("-f", CHART / "ci" / "cluster-wide-values.yaml"))
    # Only the leader Lease's Role, in the release namespace: the rest is cluster-wide.
    assert [r["metadata"]["name"] for r in by_kind(docs, "Role")] == [
        "owl-openwebui-langfuse-operator-leader"
    ]
    assert len(by_kind(docs, "RoleBinding")) == 1
    (cluster_role,) = by_kind(docs, "ClusterRole")
    assert _rules(cluster_role) == NAMESPACED_RULES | CRD_READ | {
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
    }
    env = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "OPENWEBUI_LANGFUSE_ALL_NAMESPACES", "value": "true"} in env
    assert not by_kind(docs, "CustomResourceDefinition")


# -- network policy, images --------------------------------------------------------------------


def _policy(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (policy,) = [d for d in by_kind(docs, "NetworkPolicy") if d["metadata"]["name"] == name]
    return policy


def test_network_policy_admits_open_webui_and_the_operator_only(helm: Helm) -> None:
    policy = _policy(documents(helm.template(*FIXED_KEY)), "owl-openwebui-langfuse-pipelines")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [
        {"app.kubernetes.io/component": "open-webui"},
        {
            "app.kubernetes.io/name": "openwebui-langfuse",
            "app.kubernetes.io/instance": "owl",
            "app.kubernetes.io/component": "operator",
        },
    ]


def test_digests_pvc_and_peers(helm: Helm) -> None:
    docs = documents(helm.template("-f", CHART / "ci" / "persistence-values.yaml"))
    images = sorted(c["image"] for _, pod in pod_specs(docs) for c in pod["spec"]["containers"])
    assert images == [
        "ghcr.io/openwebui-langfuse/operator@sha256:" + "1" * 64,
        "ghcr.io/openwebui-langfuse/pipelines@sha256:" + "0" * 64,
    ]
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    policy = _policy(docs, "owl-openwebui-langfuse-pipelines")
    peers = policy["spec"]["ingress"][0]["from"]
    assert peers[0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "open-webui"
    }
    assert peers[2] == {"podSelector": {"matchLabels": {"app": "monitoring"}}}
    assert all(d["metadata"]["labels"]["team"] == "platform" for d in docs)


# -- bad values --------------------------------------------------------------------------------

BAD_VALUES: list[tuple[str, list[str], str]] = [
    ("well-known key", ["--set", "pipelines.apiKey.value=0p3n-w3bu!"], "0p3n-w3bu!"),
    (
        "key twice",
        ["--set", "pipelines.apiKey.value=k", "--set", "pipelines.apiKey.existingSecret=s"],
        "pipelines.apiKey: set either existingSecret or value, not both",
    ),
    (
        "unknown top-level key",
        [*FIXED_KEY, "--set", "pipeline.enabled=false"],
        "additional properties 'pipeline' not allowed",
    ),
    (
        "unknown nested key",
        [*FIXED_KEY, "--set", "operator.replica=2"],
        "at '/operator': additional properties 'replica' not allowed",
    ),
    (
        "port not a number",
        [*FIXED_KEY, "--set-string", "pipelines.service.port=http"],
        "at '/pipelines/service/port'",
    ),
    (
        "log format enum",
        [*FIXED_KEY, "--set", "operator.logFormat=xml"],
        "at '/operator/logFormat'",
    ),
    (
        "bad digest",
        [*FIXED_KEY, "--set", "pipelines.image.digest=latest"],
        "at '/pipelines/image/digest'",
    ),
    (
        "bad namespace name",
        [*FIXED_KEY, "--set", "operator.watchNamespaces[0]=Team_A"],
        "at '/operator/watchNamespaces/0'",
    ),
    (
        "tracing without langfuse",
        [*FIXED_KEY, "--set", "tracing.enabled=true"],
        "tracing.spec.langfuse: required when tracing.enabled is true",
    ),
    (
        "tracing without pipelines",
        [
            "--set",
            "pipelines.enabled=false",
            "--set",
            "tracing.enabled=true",
            "--set",
            "tracing.spec.langfuse.host=https://cloud.langfuse.com",
            "--set",
            "tracing.spec.langfuse.publicKey.value=pk",
            "--set",
            "tracing.spec.langfuse.secretKey.secretKeyRef.name=s",
            "--set",
            "tracing.spec.langfuse.secretKey.secretKeyRef.key=k",
        ],
        "tracing.spec.pipelines: required when pipelines.enabled is false",
    ),
    (
        "tracing function without openWebUI",
        [
            "--set",
            "pipelines.enabled=false",
            "--set",
            "tracing.enabled=true",
            "--set",
            "tracing.spec.target=function",
            "--set",
            "tracing.spec.langfuse.host=https://cloud.langfuse.com",
            "--set",
            "tracing.spec.langfuse.publicKey.value=pk",
            "--set",
            "tracing.spec.langfuse.secretKey.secretKeyRef.name=s",
            "--set",
            "tracing.spec.langfuse.secretKey.secretKeyRef.key=k",
        ],
        "tracing.spec.openWebUI: required when tracing.spec.target is function: the filter is "
        "installed into that Open WebUI",
    ),
    (
        "tracing host with path",
        [*FIXED_KEY, "--set", "tracing.spec.langfuse.host=https://cloud.langfuse.com/api"],
        "at '/tracing/spec/langfuse/host'",
    ),
    (
        "tracing unknown field",
        [*FIXED_KEY, "--set", "tracing.spec.langfuse.hostname=x"],
        "at '/tracing/spec/langfuse': additional properties 'hostname' not allowed",
    ),
    (
        "tracing inline secret key",
        [*FIXED_KEY, "--set", "tracing.spec.langfuse.secretKey.value=sk-lf-1"],
        "at '/tracing/spec/langfuse/secretKey'",
    ),
    (
        "tracing bad duration",
        [*FIXED_KEY, "--set", "tracing.spec.resyncInterval=5 minutes"],
        "at '/tracing/spec/resyncInterval'",
    ),
    (
        "tracing unknown deletionPolicy",
        [*FIXED_KEY, "--set", "tracing.spec.deletionPolicy=Orphan"],
        "at '/tracing/spec/deletionPolicy'",
    ),
]

_TRACING_BASE = ["-f", str(CHART / "ci" / "tracing-values.yaml")]
BAD_TRACING_RULES: list[tuple[str, list[str], str]] = [
    (
        "release namespace not watched",
        ["--set", "operator.watchNamespaces={team-a}"],
        'tracing.enabled: the LangfuseTracing is created in the release namespace "tracing", '
        "which operator.watchNamespaces leaves out",
    ),
    (
        "publicKey value and ref",
        [
            "--set",
            "tracing.spec.langfuse.publicKey.secretKeyRef.name=s",
            "--set",
            "tracing.spec.langfuse.publicKey.secretKeyRef.key=k",
        ],
        "tracing.spec.langfuse.publicKey: set exactly one of value or secretKeyRef",
    ),
    (
        "source url without url",
        ["--set", "tracing.spec.filter.source=url"],
        "tracing.spec.filter.url: required when tracing.spec.filter.source is url",
    ),
    (
        "configMap with bundled",
        [
            "--set",
            "tracing.spec.filter.configMap.name=c",
            "--set",
            "tracing.spec.filter.configMap.key=k",
        ],
        "tracing.spec.filter.configMap: only allowed when tracing.spec.filter.source is configMap",
    ),
    (
        "two Open WebUI auths",
        [
            "--set-json",
            'tracing.spec.openWebUI={"url": "http://o:8080", '
            '"auth": {"apiKey": {"secretKeyRef": {"name": "a", "key": "b"}}, '
            '"credentials": {"secretRef": {"name": "c"}}}}',
        ],
        "tracing.spec.openWebUI.auth: set exactly one of apiKey or credentials",
    ),
]


_FUNCTION_BASE = ["-f", str(CHART / "ci" / "function-target-values.yaml")]
BAD_FUNCTION_RULES: list[tuple[str, list[str], str]] = [
    (
        "pipelines with target function",
        [
            "--set",
            "tracing.spec.pipelines.url=http://pipelines:9099",
            "--set",
            "tracing.spec.pipelines.apiKey.secretKeyRef.name=s",
            "--set",
            "tracing.spec.pipelines.apiKey.secretKeyRef.key=k",
        ],
        "tracing.spec.pipelines: not allowed when tracing.spec.target is function: the filter "
        "runs inside Open WebUI",
    ),
    (
        "connectionUrl with target function",
        ["--set", "tracing.spec.openWebUI.connectionUrl=http://pipelines:9099"],
        "tracing.spec.openWebUI.connectionUrl: not allowed when tracing.spec.target is function: "
        "there is no connection",
    ),
    (
        "pipelineId with target function",
        ["--set", "tracing.spec.filter.pipelineId=lft_a"],
        "tracing.spec.filter.pipelineId: not allowed when tracing.spec.target is function: use "
        "tracing.spec.filter.functionId",
    ),
    (
        "functionId with target pipelines",
        [
            "--set",
            "pipelines.enabled=true",
            "--set",
            "tracing.spec.target=pipelines",
            "--set",
            "tracing.spec.filter.functionId=f",
        ],
        "tracing.spec.filter.functionId: only allowed when tracing.spec.target is function "
        "(it is pipelines)",
    ),
    (
        "functionId upper case",
        ["--set", "tracing.spec.filter.functionId=Langfuse"],
        "at '/tracing/spec/filter/functionId'",
    ),
    (
        "unknown target",
        ["--set", "tracing.spec.target=openwebui"],
        "at '/tracing/spec/target'",
    ),
]


@pytest.mark.parametrize(
    ("args", "message"), [(a, m) for _, a, m in BAD_VALUES], ids=[case for case, _, _ in BAD_VALUES]
)
def test_bad_values_fail_naming_the_value(helm: Helm, args: list[str], message: str) -> None:
    result = helm.run("template", "owl", CHART, "--namespace", "tracing", *args)
    assert result.returncode != 0, result.stdout[:500]
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(a, m) for _, a, m in BAD_TRACING_RULES],
    ids=[case for case, _, _ in BAD_TRACING_RULES],
)
def test_bad_tracing_rules_fail_before_anything_is_created(
    helm: Helm, args: list[str], message: str
) -> None:
    result = helm.run("template", "owl", CHART, "--namespace", "tracing", *_TRACING_BASE, *args)
    assert result.returncode != 0, result.stdout[:500]
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [(a, m) for _, a, m in BAD_FUNCTION_RULES],
    ids=[case for case, _, _ in BAD_FUNCTION_RULES],
)
def test_bad_function_target_values_fail_before_anything_is_created(
    helm: Helm, args: list[str], message: str
) -> None:
    result = helm.run("template", "owl", CHART, "--namespace", "tracing", *_FUNCTION_BASE, *args)
    assert result.returncode != 0, result.stdout[:500]
    assert message in result.stderr


# -- documentation -----------------------------------------------------------------------------


def test_readme_is_what_helm_docs_generates(world: World, tmp_path: Path) -> None:
    copy = tmp_path / "charts" / "openwebui-langfuse"
    shutil.copytree(CHART, copy)
    (copy / "README.md").unlink()
    helm_docs = str(world.binary("helm-docs"))
    subprocess.run(
        [helm_docs, "--chart-search-root", str(tmp_path / "charts")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert (copy / "README.md").read_text() == (CHART / "README.md").read_text(), (
        "charts/openwebui-langfuse/README.md is stale: run helm-docs --chart-search-root charts"
    )


def test_every_value_is_documented() -> None:
    """Every leaf of values.yaml has a `# --` comment (the README's table is built from them)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    undocumented = []
    for path, _ in _leaves(values):
        key = path.split(".")[-1]
        indent = "  " * path.count(".")
        index = next(
            i
            for i, line in enumerate(lines)
            if line.startswith(f"{indent}{key}:") and _parents_match(lines, i, path)
        )
        comment = index - 1
        while (
            comment >= 0
            and lines[comment].lstrip().startswith("#")
            and not lines[comment].lstrip().startswith("# --")
        ):
            comment -= 1
        if comment < 0 or not lines[comment].lstrip().startswith("# --"):
            undocumented.append(path)
    assert undocumented == []


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict) and node and not _is_documented_map(prefix):
        out: list[tuple[str, Any]] = []
        for key, value in node.items():
            out += _leaves(value, f"{prefix}.{key}".lstrip("."))
        return out
    return [(prefix, node)]


# Maps whose default has keys but which are documented as one value (objects passed through).
_OBJECT_VALUES = re.compile(
    r".*(resources|SecurityContext|securityContext|Probe|podSelector|namespaceSelector)$"
)


def _is_documented_map(path: str) -> bool:
    return bool(_OBJECT_VALUES.match(path))


def _parents_match(lines: list[str], index: int, path: str) -> bool:
    parents = path.split(".")[:-1]
    level = len(parents)
    for i in range(index - 1, -1, -1):
        if not parents:
            return True
        line = lines[i]
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        depth = (len(line) - len(stripped)) // 2
        if depth < level:
            if not stripped.startswith(f"{parents[-1]}:"):
                return False
            parents.pop()
            level -= 1
    return not parents


def test_values_schema_tracing_spec_matches_the_crd() -> None:
    assert schema_sync.main(["--check"]) == 0


def _schema_nodes(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        out += _schema_nodes(child, f"{path}.{name}")
    if "items" in node:
        out += _schema_nodes(node["items"], f"{path}[]")
    return out


def test_every_crd_field_has_a_description() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = [
        path
        for path, node in _schema_nodes(root, "")
        if path not in ("", ".metadata") and not node.get("description") and not path.endswith("[]")
    ]
    assert missing == []


def test_crd_template_renders_the_file(helm: Helm) -> None:
    (crd,) = by_kind(documents(helm.template(*FIXED_KEY)), "CustomResourceDefinition")
    source = yaml.safe_load(CRD_FILE.read_text())
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# -- the same bad resources as values ----------------------------------------------------------

# With target pipelines the chart fills in a missing `pipelines` (its own): valid as values.
_VALID_AS_VALUES = {"no pipelines", "target pipelines without pipelines"}


@pytest.mark.parametrize(
    "invalid",
    [c for c in INVALID if c.case not in _VALID_AS_VALUES],
    ids=[c.case for c in INVALID if c.case not in _VALID_AS_VALUES],
)
def test_invalid_resource_as_tracing_values_fails_before_install(
    helm: Helm, tmp_path: Path, invalid: Invalid
) -> None:
    """Every resource the API server rejects is rejected as `tracing.spec` already by Helm's
    schema or the templates, so a first install never half-creates a release."""
    spec = invalid.resource("from-values").get("spec", {})
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {"tracing": {"enabled": True, "spec": spec}, "pipelines": {"apiKey": {"value": "k"}}}
        )
    )
    result = helm.run("template", "owl", CHART, "--namespace", "tracing", "-f", values)
    assert result.returncode != 0, f"accepted by the chart: {spec}"
    assert "tracing" in result.stderr
