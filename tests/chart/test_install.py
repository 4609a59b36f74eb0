"""The chart installed with the real Helm v4 on the local cluster (kwok nodes: pods are
scheduled and become Ready, Job pods complete, no container ever runs)."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.chart.conftest import apply_crd, delete_crd
from tests.chart.helm import (
    CHART,
    CRD_FILE,
    CRD_NAME,
    GROUP,
    PLURAL,
    SCENARIOS,
    VERSION,
    Helm,
    by_kind,
    documents,
    pod_specs,
)
from tests.chart.invalid_resources import valid_resource
from tests.world.manifest import World
from tests.world.operator import OperatorProcess, token_kubeconfig
from tests.world.poll import wait_for

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.world.cluster import Cluster

# Also on the oldest Kubernetes the chart claims (kubeVersion), see tests/world/fixtures.py.
pytestmark = pytest.mark.every_kubernetes

NO_CRD = ["--set", "crd.install=false"]  # the session's CRD is applied by the `crd` fixture
TRACING = CHART / "ci" / "tracing-values.yaml"
TRACING_OPEN_WEBUI = CHART / "ci" / "tracing-open-webui-values.yaml"
WAIT = ["--wait", "--timeout", "90s"]
# Where a LangfuseTracing is a release resource and no operator runs: Helm 4's kstatus watcher
# rightly waits for the resource's first status (observedGeneration 0 reads as InProgress);
# "legacy" still waits for every Deployment to be Available.
WAIT_WITHOUT_OPERATOR = ["--wait=legacy", "--timeout", "90s"]


def _deployments_available(kube: ApiClient, namespace: str) -> dict[str, bool]:
    from kubernetes.client import AppsV1Api

    result = {}
    for deployment in AppsV1Api(kube).list_namespaced_deployment(namespace).items:
        conditions = {c.type: c.status for c in deployment.status.conditions or []}
        result[deployment.metadata.name] = conditions.get("Available") == "True"
    return result


def _secret(kube: ApiClient, namespace: str, name: str, data: dict[str, str]) -> None:
    from kubernetes.client import CoreV1Api, V1ObjectMeta, V1Secret

    CoreV1Api(kube).create_namespaced_secret(
        namespace, V1Secret(metadata=V1ObjectMeta(name=name), string_data=data)
    )


def _tracing(kube: ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    try:
        found: dict[str, Any] = CustomObjectsApi(kube).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


def test_install_wait_makes_every_deployment_available(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    helm_cluster.ok("install", "owl", CHART, "-n", namespace, *NO_CRD, *WAIT)
    assert _deployments_available(kube, namespace) == {
        "owl-openwebui-langfuse-operator": True,
        "owl-openwebui-langfuse-pipelines": True,
    }

    assert helm_cluster.ok("status", "owl", "-n", namespace).count("STATUS: deployed") == 1


def test_the_operator_makes_the_pipelines_key_once(
    helm_cluster: Helm,
    kube: ApiClient,
    crd: str,
    namespace: str,
    cluster: Cluster,
    world: World,
    tmp_path: Path,
) -> None:
    """The chart renders no key (renders must not vary); the operator, with the installed
    Deployment's own environment and the chart's ServiceAccount, creates it once and keeps it
    across operator restarts and Helm upgrades."""
    from kubernetes.client import AppsV1Api, CoreV1Api

    helm_cluster.ok("install", "owl", CHART, "-n", namespace, *NO_CRD, *WAIT)
    core = CoreV1Api(kube)
    secret_name = "owl-openwebui-langfuse-pipelines-api-key"
    assert _secret_data(kube, namespace, secret_name) is None
    deployment = AppsV1Api(kube).read_namespaced_deployment(
        "owl-openwebui-langfuse-operator", namespace
    )
    env = {
        e.name: e.value
        for e in deployment.spec.template.spec.containers[0].env
        if e.name.startswith("OPENWEBUI_LANGFUSE_PIPELINES_KEY")
    }
    account = deployment.spec.template.spec.service_account_name
    config = token_kubeconfig(cluster, namespace, account, tmp_path / "kubeconfig")
    keys = []
    for _start in range(2):
        with OperatorProcess(world, config, [namespace], env=env, log_dir=tmp_path):
            keys.append(wait_for(lambda: _secret_data(kube, namespace, secret_name), 20, "the key"))
    assert keys[0] == keys[1], "a restarted operator must keep the key"
    key = base64.b64decode(keys[0]["api-key"]).decode()
    assert len(key) == 48 and key != "0p3n-w3bu!"
    labels = core.read_namespaced_secret(secret_name, namespace).metadata.labels
    assert labels["app.kubernetes.io/created-by"] == "openwebui-langfuse-operator"
    helm_cluster.ok("upgrade", "owl", CHART, "-n", namespace, *NO_CRD, *WAIT)
    assert _secret_data(kube, namespace, secret_name) == keys[0]
    assert key not in (tmp_path / "operator.log").read_text()


def _secret_data(kube: ApiClient, namespace: str, name: str) -> dict[str, str] | None:
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        data: dict[str, str] = CoreV1Api(kube).read_namespaced_secret(name, namespace).data
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return data


def _changed_chart(tmp_path: Path) -> Path:
    """A copy of the chart whose CRD has one more field (spec.team) and a new chart version."""
    copy = tmp_path / "openwebui-langfuse"
    shutil.copytree(CHART, copy)
    crd = yaml.safe_load(CRD_FILE.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["team"] = {"type": "string", "description": "Added by the upgrade test."}
    (copy / "files" / CRD_FILE.name).write_text(yaml.safe_dump(crd))
    chart = yaml.safe_load((copy / "Chart.yaml").read_text())
    chart["version"] = "0.1.1"
    (copy / "Chart.yaml").write_text(yaml.safe_dump(chart))
    return copy


def _hook_kinds(helm: Helm, namespace: str) -> list[str]:
    return [d["kind"] for d in documents(helm.ok("get", "hooks", "owl", "-n", namespace))]


def test_crd_lifecycle_install_upgrade_uninstall(
    helm_cluster: Helm,
    cluster: Cluster,
    kube: ApiClient,
    namespace: str,
    tmp_path: Path,
    make_namespace: Callable[..., str],
) -> None:
    from kubernetes.client import ApiextensionsV1Api, CoreV1Api, CustomObjectsApi

    extensions = ApiextensionsV1Api(kube)
    delete_crd(cluster)  # a cluster that never saw the chart
    try:
        # 1. One install creates the CRD and the resource (as a hook the first time).
        out = helm_cluster.ok("install", "owl", CHART, "-n", namespace, "-f", TRACING, *WAIT)
        assert "STATUS: deployed" in out
        crd = extensions.read_custom_resource_definition(CRD_NAME)
        assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"
        first = _tracing(kube, namespace, "owl-openwebui-langfuse")
        assert first is not None
        assert first["spec"]["langfuse"]["publicKey"] == {"value": "pk-lf-00000000"}
        assert _hook_kinds(helm_cluster, namespace).count("LangfuseTracing") == 1

        # A second release that also wants the CRD fails before creating anything.
        second = make_namespace("second")
        result = helm_cluster.run(
            "install", "owl", CHART, "-n", second, "--set", "pipelines.apiKey.value=k", *WAIT
        )
        assert result.returncode != 0
        assert (
            f'CustomResourceDefinition "{CRD_NAME}" in namespace "" exists and cannot be '
            "imported into the current release"
        ) in result.stderr
        _release_absent(helm_cluster, kube, second)
        helm_cluster.ok(
            "install",
            "owl",
            CHART,
            "-n",
            second,
            *NO_CRD,
            "--set",
            "pipelines.apiKey.value=k",
            *WAIT,
        )
        helm_cluster.ok("uninstall", "owl", "-n", second, "--wait")

        # 2. An upgrade to a chart with a changed schema updates the CRD, and adopts the
        #    resource as a normal release resource (same object).
        changed = _changed_chart(tmp_path)
        # No --wait: no operator runs here, so the adopted resource rightly stays InProgress
        # for kstatus (observedGeneration 0 by the CRD's default) and --wait would time out.
        helm_cluster.ok("upgrade", "owl", changed, "-n", namespace, "-f", TRACING)
        crd = extensions.read_custom_resource_definition(CRD_NAME)
        properties = crd.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties
        assert "team" in properties
        adopted = _tracing(kube, namespace, "owl-openwebui-langfuse")
        assert adopted is not None
        assert adopted["metadata"]["uid"] == first["metadata"]["uid"]
        assert not any(k.startswith("helm.sh/hook") for k in adopted["metadata"]["annotations"])
        manifest = helm_cluster.ok("get", "manifest", "owl", "-n", namespace)
        assert any(d.get("kind") == "LangfuseTracing" for d in documents(manifest))
        assert "LangfuseTracing" not in _hook_kinds(helm_cluster, namespace)
        # The new field is served at once.
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LangfuseTracing",
            "metadata": {"name": "with-team"},
            "spec": {**adopted["spec"], "team": "a"},
        }
        created = wait_for(
            lambda: CustomObjectsApi(kube).create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict"
            ),
            30,
            "the upgraded schema to accept spec.team",
        )
        assert created["spec"]["team"] == "a"
        CustomObjectsApi(kube).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "with-team"
        )

        # 3. Uninstall runs the pre-delete hook, removes the release, keeps the CRD.
        out = helm_cluster.ok("uninstall", "owl", "-n", namespace, "--wait", "--timeout", "90s")
        assert "These resources were kept due to the resource policy" in out
        assert extensions.read_custom_resource_definition(CRD_NAME).metadata.name == CRD_NAME
        assert _tracing(kube, namespace, "owl-openwebui-langfuse") is None
        events = CoreV1Api(kube).list_namespaced_event(namespace).items
        assert any(
            e.involved_object.kind == "Job"
            and e.involved_object.name == "owl-openwebui-langfuse-pre-delete"
            for e in events
        ), "the pre-delete hook Job never ran"
        assert _deployments_available(kube, namespace) == {}

        # 4. The kept CRD still names the gone release as its owner: a new release takes it
        #    over explicitly, and then upgrades it like the first did.
        successor = make_namespace("successor")
        helm_cluster.ok(
            "install",
            "next",
            CHART,
            "-n",
            successor,
            "--take-ownership",
            "--set",
            "pipelines.apiKey.value=k",
            *WAIT,
        )
        crd = extensions.read_custom_resource_definition(CRD_NAME)
        assert crd.metadata.annotations["meta.helm.sh/release-name"] == "next"
        assert crd.metadata.annotations["meta.helm.sh/release-namespace"] == successor
        helm_cluster.ok("uninstall", "next", "-n", successor, "--wait")
    finally:
        # Give the rest of the session its CRD back, owned by nobody.
        delete_crd(cluster)
        apply_crd(cluster)


def test_first_install_without_wait_also_creates_crd_and_resource(
    helm_cluster: Helm, cluster: Cluster, kube: ApiClient, namespace: str
) -> None:
    """Helm 4's default wait strategy (hookOnly): the hook is still mapped after the CRD
    exists, with nothing waiting for the CRD to be established in between."""
    delete_crd(cluster)
    try:
        helm_cluster.ok("install", "owl", CHART, "-n", namespace, "-f", TRACING)
        assert _tracing(kube, namespace, "owl-openwebui-langfuse") is not None
        helm_cluster.ok("uninstall", "owl", "-n", namespace, "--wait")
    finally:
        delete_crd(cluster)
        apply_crd(cluster)


def test_rollback_to_the_first_revision_keeps_the_resource(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    # The first revision rendered the resource as a hook; its post-rollback event recreates it.
    hooked = ["-f", TRACING, *NO_CRD, *WAIT_WITHOUT_OPERATOR]
    helm_cluster.ok("install", "owl", CHART, "-n", namespace, *hooked)
    helm_cluster.ok("upgrade", "owl", CHART, "-n", namespace, *hooked)
    helm_cluster.ok("rollback", "owl", "1", "-n", namespace, *WAIT_WITHOUT_OPERATOR)
    assert _tracing(kube, namespace, "owl-openwebui-langfuse") is not None


def test_every_pod_is_admitted_by_restricted_pod_security(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    from kubernetes.client import CoreV1Api

    core = CoreV1Api(kube)
    core.patch_namespace(
        namespace,
        {
            "metadata": {
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                }
            }
        },
    )
    _secret(kube, namespace, "pipelines-api-key", {"api-key": "a-random-test-key"})
    values = ["-f", TRACING_OPEN_WEBUI, *NO_CRD]
    # Deployments only become Available if the ReplicaSets' pods were admitted.
    helm_cluster.ok("install", "owl", CHART, "-n", namespace, *values, *WAIT_WITHOUT_OPERATOR)
    assert all(_deployments_available(kube, namespace).values())
    # The hook Jobs' pods too: dry-run create each rendered pod template as a Pod.
    rendered = helm_cluster.ok("template", "owl", CHART, "-n", namespace, *values)
    templates = dict(pod_specs(documents(rendered)))
    assert sorted(templates) == [
        "Deployment/owl-openwebui-langfuse-operator",
        "Deployment/owl-openwebui-langfuse-pipelines",
        "Job/owl-openwebui-langfuse-pre-delete",
        "Job/owl-openwebui-langfuse-smoke-test",
    ]
    for name, template in templates.items():
        # The pre-delete hook's ServiceAccount exists only while the hook runs; PodSecurity
        # does not look at the account.
        spec = {**template["spec"], "serviceAccountName": "default"}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "admission-", "labels": template["metadata"]["labels"]},
            "spec": spec,
        }
        created = core.create_namespaced_pod(namespace, pod, dry_run="All")
        assert created.metadata.name.startswith("admission-"), name
    # And the same check catches a pod that is not restricted.
    from kubernetes.client.exceptions import ApiException

    root = dict(templates["Deployment/owl-openwebui-langfuse-pipelines"]["spec"])
    root["securityContext"] = {"runAsUser": 0}
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "root-"},
                "spec": root,
            },
            dry_run="All",
        )
    assert 'violates PodSecurity "restricted:latest"' in json.loads(rejected.value.body)["message"]


def _strict_dry_run(cluster: Cluster, docs: list[dict[str, Any]]) -> tuple[int, str]:
    """Server-side apply, dry run, with strict field validation: (exit code, stderr)."""
    result = cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        "--field-manager=chart-tests",
        "-f",
        "-",
        input=yaml.safe_dump_all(docs).encode(),
    )
    return result.returncode, result.stderr.decode()


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.name.removesuffix("-values.yaml"))
def test_every_scenario_is_known_field_by_field_to_the_api_server(
    helm_cluster: Helm, cluster: Cluster, crd: str, namespace: str, values: Path
) -> None:
    """Every rendered object, hooks included: a field this Kubernetes release does not know
    fails here, where a client that validates less would have it dropped without a word."""
    docs = documents(helm_cluster.ok("template", "owl", CHART, "-n", namespace, "-f", values))
    for doc in docs:  # Roles of watched namespaces (team-a, ...): same schema, any namespace
        if "namespace" in doc["metadata"]:
            doc["metadata"]["namespace"] = namespace
    code, stderr = _strict_dry_run(cluster, docs)
    assert code == 0, stderr


def test_strict_validation_names_a_field_the_server_does_not_know(
    helm_cluster: Helm, cluster: Cluster, crd: str, namespace: str
) -> None:
    docs = documents(helm_cluster.ok("template", "owl", CHART, "-n", namespace))
    (deployment, *_) = by_kind(docs, "Deployment")
    deployment["spec"]["template"]["spec"]["notAPodField"] = True
    code, stderr = _strict_dry_run(cluster, [deployment])
    assert code != 0
    assert ".spec.template.spec.notAPodField: field not declared in schema" in stderr


def _release_absent(helm: Helm, kube: ApiClient, namespace: str) -> None:
    assert helm.ok("list", "-n", namespace, "-q").strip() == ""
    assert _deployments_available(kube, namespace) == {}


def _install_with_existing_secret(namespace: str) -> list[str | Path]:
    """Install with the Pipelines key taken from the user's Secret "pipelines-key"."""
    return [
        "install",
        "owl",
        CHART,
        "-n",
        namespace,
        *NO_CRD,
        "--set",
        "pipelines.apiKey.existingSecret=pipelines-key",
        *WAIT,
    ]


def test_existing_secret_must_exist(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    args = _install_with_existing_secret(namespace)
    result = helm_cluster.run(*args)
    assert result.returncode != 0
    assert (
        'pipelines.apiKey.existingSecret: Secret "pipelines-key" not found in namespace '
        f'"{namespace}"'
    ) in result.stderr
    _release_absent(helm_cluster, kube, namespace)

    _secret(kube, namespace, "pipelines-key", {"other": "x"})
    result = helm_cluster.run(*args)
    assert 'Secret "pipelines-key" has no key "api-key"' in result.stderr
    _release_absent(helm_cluster, kube, namespace)


def test_existing_secret_with_the_default_key_is_refused(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    _secret(kube, namespace, "pipelines-key", {"api-key": "0p3n-w3bu!"})
    args = _install_with_existing_secret(namespace)
    result = helm_cluster.run(*args)
    assert result.returncode != 0
    assert "holds the well-known upstream default key 0p3n-w3bu!" in result.stderr
    _release_absent(helm_cluster, kube, namespace)


def test_existing_secret_is_used(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    _secret(kube, namespace, "pipelines-key", {"api-key": "a-random-test-key"})
    helm_cluster.ok(*_install_with_existing_secret(namespace))
    manifest = documents(helm_cluster.ok("get", "manifest", "owl", "-n", namespace))
    assert not by_kind(manifest, "Secret")
    (pipelines,) = [
        d for d in by_kind(manifest, "Deployment") if "pipelines" in d["metadata"]["name"]
    ]
    env = pipelines["spec"]["template"]["spec"]["containers"][0]["env"][0]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "pipelines-key", "key": "api-key"}


def test_notes_warn_when_no_open_webui_pod_matches(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    from kubernetes.client import CoreV1Api

    out = helm_cluster.ok("install", "owl", CHART, "-n", namespace, *NO_CRD, *WAIT)
    assert "WARNING: no pod in namespace" in out
    assert "pipelines.networkPolicy.openWebUI.podSelector" in out
    CoreV1Api(kube).create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "open-webui-0",
                "labels": {"app.kubernetes.io/component": "open-webui"},
            },
            "spec": {
                "containers": [{"name": "open-webui", "image": "ghcr.io/open-webui/open-webui"}]
            },
        },
    )
    out = helm_cluster.ok("upgrade", "owl", CHART, "-n", namespace, *NO_CRD, *WAIT)
    assert "WARNING" not in out


def test_helm_test_hook_is_wired(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    """Only the wiring: kwok completes the Job's pod without running the smoke-test command."""
    from kubernetes.client import BatchV1Api

    _secret(kube, namespace, "pipelines-api-key", {"api-key": "a-random-test-key"})
    helm_cluster.ok(
        "install",
        "owl",
        CHART,
        "-n",
        namespace,
        "-f",
        TRACING_OPEN_WEBUI,
        *NO_CRD,
        *WAIT_WITHOUT_OPERATOR,
    )
    out = helm_cluster.ok("test", "owl", "-n", namespace, "--timeout", "90s")
    assert "owl-openwebui-langfuse-smoke-test" in out
    assert "Phase:          Succeeded" in out or "Succeeded" in out
    job = BatchV1Api(kube).read_namespaced_job("owl-openwebui-langfuse-smoke-test", namespace)
    container = job.spec.template.spec.containers[0]
    assert container.args[:5] == ["smoke-test", "--namespace", namespace, "--name", "langfuse"]
    assert job.spec.template.spec.service_account_name == "owl-openwebui-langfuse-operator"


def test_bad_tracing_values_leave_nothing_behind(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    result = helm_cluster.run(
        "install",
        "owl",
        CHART,
        "-n",
        namespace,
        "-f",
        TRACING,
        *NO_CRD,
        "--set",
        "tracing.spec.resyncInterval=5s",
        *WAIT,
    )
    assert result.returncode != 0
    assert "tracing.spec.resyncInterval: must be at least 10s (it is 5s)" in result.stderr
    _release_absent(helm_cluster, kube, namespace)
    assert _tracing(kube, namespace, "owl-openwebui-langfuse") is None


def test_helm4_replaces_an_existing_hook_resource(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str, tmp_path: Path
) -> None:
    """Helm 4's implicit before-hook-creation policy: a hook whose object already exists is
    deleted and created anew (recorded in the README's CRD lifecycle table). The chart renders
    the resource as a hook only when the CRD is not served, so this cannot meet a user's
    resource; this test keeps the observation honest across Helm upgrades."""
    from kubernetes.client import CustomObjectsApi

    forced = tmp_path / "openwebui-langfuse"
    shutil.copytree(CHART, forced)
    template = forced / "templates" / "langfusetracing.yaml"
    text = template.read_text()
    template.write_text(
        text.replace(
            "{{- $asHook := not (.Capabilities.APIVersions.Has "
            '"openwebui-langfuse.io/v1alpha1/LangfuseTracing") }}',
            "{{- $asHook := true }}",
        )
    )
    assert template.read_text() != text
    existing = valid_resource("owl-openwebui-langfuse")
    existing["metadata"]["labels"] = {"mine": "yes"}
    existing["spec"]["langfuse"]["host"] = "https://other.example"
    before = CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, existing
    )
    helm_cluster.ok("install", "owl", forced, "-n", namespace, "-f", TRACING, *NO_CRD, *WAIT)
    after = _tracing(kube, namespace, "owl-openwebui-langfuse")
    assert after is not None
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert "mine" not in after["metadata"]["labels"]
    assert after["spec"]["langfuse"]["host"] == "https://cloud.langfuse.com"


def _condition(kind: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def test_upgrade_wait_reads_the_resources_status(
    helm_cluster: Helm, kube: ApiClient, crd: str, namespace: str
) -> None:
    """Helm 4's --wait (kstatus) on the adopted resource, with the status the operator writes
    (set here through the status subresource, as the operator would): Stalled fails the
    upgrade with the condition's message, Reconciling waits, Ready passes."""
    from kubernetes.client import CustomObjectsApi

    objects = CustomObjectsApi(kube)
    values = ["-f", TRACING, *NO_CRD]
    helm_cluster.ok("install", "owl", CHART, "-n", namespace, *values, *WAIT_WITHOUT_OPERATOR)

    def status(*conditions: dict[str, str]) -> None:
        objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "owl-openwebui-langfuse",
            {"status": {"observedGeneration": 1, "conditions": list(conditions)}},
        )

    upgrade = ["upgrade", "owl", CHART, "-n", namespace, *values, "--wait"]
    status(
        _condition("Ready", "False", "CredentialsInvalid", "Langfuse answered 401"),
        _condition("Stalled", "True", "CredentialsInvalid", "Langfuse answered 401"),
    )
    result = helm_cluster.run(*upgrade, "--timeout", "30s")
    assert result.returncode != 0
    assert (
        "resource LangfuseTracing/" + namespace + "/owl-openwebui-langfuse not ready. "
        "status: Failed, message: Langfuse answered 401"
    ) in result.stderr

    status(_condition("Ready", "False", "Reconciling"), _condition("Reconciling", "True", "Sync"))
    result = helm_cluster.run(*upgrade, "--timeout", "3s")
    assert result.returncode != 0
    assert "context deadline exceeded" in result.stderr

    status(
        _condition("Ready", "True", "Ready"),
        _condition("Reconciling", "False", "Done"),
        _condition("Stalled", "False", "Done"),
    )
    helm_cluster.ok(*upgrade, "--timeout", "30s")
