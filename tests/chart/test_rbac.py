"""The chart's RBAC is enough and no more: real API calls with a TokenRequest token of the
chart's ServiceAccounts (the operator's, and the pre-delete hook's running its real command)."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.chart.helm import CHART, GROUP, PLURAL, VERSION, Helm, documents
from tests.chart.invalid_resources import valid_resource
from tests.world.poll import wait_for

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.world.cluster import Cluster

# Also on the oldest Kubernetes the chart claims (kubeVersion), see tests/world/fixtures.py.
pytestmark = pytest.mark.every_kubernetes

BASE = [
    "--set",
    "crd.install=false",
    "--set",
    "pipelines.apiKey.value=fixed-test-key",
    "--wait",
    "--timeout",
    "90s",
]
OPERATOR_SA = "owl-openwebui-langfuse-operator"


def _token(kube: ApiClient, namespace: str, service_account: str) -> str:
    from kubernetes.client import AuthenticationV1TokenRequest, CoreV1Api, V1TokenRequestSpec

    request = AuthenticationV1TokenRequest(
        spec=V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    response = CoreV1Api(kube).create_namespaced_service_account_token(
        service_account, namespace, request
    )
    token: str = response.status.token
    return token


def _client_as(kube: ApiClient, token: str) -> ApiClient:
    """An ApiClient for the same API server, authenticated only by the token."""
    from kubernetes.client import ApiClient, Configuration

    admin = kube.configuration
    config = Configuration(host=admin.host)
    config.ssl_ca_cert = admin.ssl_ca_cert
    config.verify_ssl = admin.verify_ssl
    config.api_key = {"authorization": token}
    config.api_key_prefix = {"authorization": "Bearer"}
    return ApiClient(config)


def _allowed(call: Callable[[], Any]) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except ApiException as exc:
        if exc.status == 403:
            return False
        raise
    return True


def _as_operator(kube: ApiClient, release_namespace: str) -> ApiClient:
    """A client holding a token of the operator's ServiceAccount."""
    return _client_as(kube, _token(kube, release_namespace, OPERATOR_SA))


def _outcomes(calls: dict[str, Callable[[], Any]]) -> dict[str, bool]:
    """Each call's name: whether the API server allowed it."""
    return {name: _allowed(call) for name, call in calls.items()}


def _tracing_body(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    body = valid_resource(name)
    body["metadata"]["labels"] = labels or {}
    return body


def _watch_once(list_call: Callable[..., Any]) -> None:
    """Open a watch (the verb kopf and the reference index use) and close it at once."""
    response = list_call(watch=True, timeout_seconds=1, _preload_content=False)
    response.release_conn()


class OperatorCalls:
    """Every API call the operator makes, against one namespace, as the operator."""

    def __init__(self, admin: ApiClient, as_operator: ApiClient, namespace: str) -> None:
        from kubernetes.client import (
            ApiextensionsV1Api,
            CoreV1Api,
            CustomObjectsApi,
            EventsV1Api,
        )

        self.namespace = namespace
        self.admin_objects = CustomObjectsApi(admin)
        self.objects = CustomObjectsApi(as_operator)
        self.core = CoreV1Api(as_operator)
        self.events = EventsV1Api(as_operator)
        self.extensions = ApiextensionsV1Api(as_operator)

    def all(self) -> dict[str, Callable[[], Any]]:
        ns, objects, core = self.namespace, self.objects, self.core
        self.admin_objects.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, _tracing_body("rbac")
        )
        lft = (GROUP, VERSION, ns, PLURAL)
        ref = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LangfuseTracing",
            "name": "rbac",
            "namespace": ns,
        }
        core_event = {
            "metadata": {"generateName": "rbac-"},
            "involvedObject": ref,
            "reason": "Test",
            "message": "rbac",
            "type": "Normal",
        }
        return {
            "list langfusetracings": lambda: objects.list_namespaced_custom_object(*lft),
            "watch langfusetracings": lambda: _watch_once(
                lambda **kw: objects.list_namespaced_custom_object(*lft, **kw)
            ),
            "get langfusetracing": lambda: objects.get_namespaced_custom_object(*lft, "rbac"),
            "patch finalizer and annotations": lambda: objects.patch_namespaced_custom_object(
                *lft,
                "rbac",
                {
                    "metadata": {
                        "finalizers": ["openwebui-langfuse.io/cleanup"],
                        "annotations": {"openwebui-langfuse.io/x": "1"},
                    }
                },
            ),
            "update langfusetracing": lambda: objects.replace_namespaced_custom_object(
                *lft, "rbac", objects.get_namespaced_custom_object(*lft, "rbac")
            ),
            "get status": lambda: objects.get_namespaced_custom_object_status(*lft, "rbac"),
            "patch status": lambda: objects.patch_namespaced_custom_object_status(
                *lft, "rbac", {"status": {"pipelineId": "lft_rbac"}}
            ),
            "list secrets": lambda: core.list_namespaced_secret(ns),
            "watch secrets": lambda: _watch_once(
                lambda **kw: core.list_namespaced_secret(ns, **kw)
            ),
            "get secret": lambda: core.read_namespaced_secret("langfuse-keys", ns),
            "list configmaps": lambda: core.list_namespaced_config_map(ns),
            "watch configmaps": lambda: _watch_once(
                lambda **kw: core.list_namespaced_config_map(ns, **kw)
            ),
            "get configmap": lambda: core.read_namespaced_config_map("filter", ns),
            # The feedback sync point (feedback_sync.SyncPointStore).
            "create configmap": lambda: core.create_namespaced_config_map(
                ns, {"metadata": {"name": "rbac-feedback-sync"}, "binaryData": {}}
            ),
            "patch configmap": lambda: core.patch_namespaced_config_map(
                "rbac-feedback-sync", ns, {"binaryData": {"sync-point.json.gz": "AA=="}}
            ),
            "create core event": lambda: core.create_namespaced_event(ns, core_event),
            "patch core event": lambda: core.patch_namespaced_event(
                core.create_namespaced_event(ns, core_event).metadata.name, ns, {"count": 2}
            ),
            "create events.k8s.io event": lambda: self.events.create_namespaced_event(
                ns,
                {
                    "metadata": {"generateName": "rbac-"},
                    "regarding": ref,
                    "reason": "Test",
                    "note": "rbac",
                    "type": "Normal",
                    "action": "Reconcile",
                    "reportingController": "openwebui-langfuse.io/operator",
                    "reportingInstance": "test",
                    # MicroTime: the client serializes a datetime; with microseconds it parses.
                    "eventTime": datetime.datetime(2026, 1, 1, microsecond=1, tzinfo=datetime.UTC),
                },
            ),
            "list crds": lambda: self.extensions.list_custom_resource_definition(),
            "watch crds": lambda: _watch_once(self.extensions.list_custom_resource_definition),
            "get crd": lambda: self.extensions.read_custom_resource_definition(
                "langfusetracings.openwebui-langfuse.io"
            ),
        }


@pytest.fixture
def release_finalizers(kube: ApiClient) -> Iterator[list[str]]:
    """Namespaces whose LangfuseTracings got the operator's finalizer from a test: released at
    the end, or the namespace could never be deleted (no operator runs here)."""
    from kubernetes.client import CustomObjectsApi

    namespaces: list[str] = []
    yield namespaces
    objects = CustomObjectsApi(kube)
    for ns in namespaces:
        for item in objects.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]:
            objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                PLURAL,
                item["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )


def _seed(kube: ApiClient, namespace: str) -> None:
    from kubernetes.client import CoreV1Api

    core = CoreV1Api(kube)
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "langfuse-keys"}, "stringData": {"secret-key": "sk"}}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "filter"}, "data": {"filter.py": "# filter"}}
    )


def _denied_elsewhere(as_operator: ApiClient, namespace: str) -> dict[str, bool]:
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    core, objects = CoreV1Api(as_operator), CustomObjectsApi(as_operator)
    return {
        "list secrets": _allowed(lambda: core.list_namespaced_secret(namespace)),
        "get secret": _allowed(lambda: core.read_namespaced_secret("langfuse-keys", namespace)),
        "list langfusetracings": _allowed(
            lambda: objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        ),
    }


def _never_allowed(as_operator: ApiClient, namespace: str) -> dict[str, bool]:
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    core, objects = CoreV1Api(as_operator), CustomObjectsApi(as_operator)
    return {
        "delete langfusetracing": _allowed(
            lambda: objects.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, "rbac"
            )
        ),
        "create langfusetracing": _allowed(
            lambda: objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, _tracing_body("by-operator")
            )
        ),
        "create secret": _allowed(
            lambda: core.create_namespaced_secret(namespace, {"metadata": {"name": "by-operator"}})
        ),
        "delete configmap": _allowed(
            lambda: core.delete_namespaced_config_map("filter", namespace)
        ),
        "list pods": _allowed(lambda: core.list_namespaced_pod(namespace)),
        "list secrets in every namespace": _allowed(core.list_secret_for_all_namespaces),
    }


def test_operator_rbac_is_enough_and_no_more(
    helm_cluster: Helm,
    kube: ApiClient,
    crd: str,
    namespace: str,
    make_namespace: Callable[..., str],
    release_finalizers: list[str],
) -> None:
    release_finalizers.append(namespace)
    helm_cluster.ok("install", "owl", CHART, "-n", namespace, *BASE)
    other = make_namespace("unwatched")
    _seed(kube, namespace)
    _seed(kube, other)
    as_operator = _as_operator(kube, namespace)
    calls = OperatorCalls(kube, as_operator, namespace).all()
    results = _outcomes(calls)
    assert results == dict.fromkeys(calls, True)
    assert _denied_elsewhere(as_operator, other) == {
        "list secrets": False,
        "get secret": False,
        "list langfusetracings": False,
    }
    assert _never_allowed(as_operator, namespace) == {
        "delete langfusetracing": False,
        "create langfusetracing": False,
        "create secret": False,
        "delete configmap": False,
        "list pods": False,
        "list secrets in every namespace": False,
    }


def test_watched_namespaces_get_the_rules(
    helm_cluster: Helm,
    kube: ApiClient,
    crd: str,
    namespace: str,
    make_namespace: Callable[..., str],
    release_finalizers: list[str],
) -> None:
    team, unwatched = make_namespace("team"), make_namespace("unwatched")
    release_finalizers.append(team)
    helm_cluster.ok(
        "install",
        "owl",
        CHART,
        "-n",
        namespace,
        *BASE,
        "--set",
        f"operator.watchNamespaces={{{namespace},{team}}}",
    )
    for ns in (team, unwatched):
        _seed(kube, ns)
    as_operator = _as_operator(kube, namespace)
    calls = OperatorCalls(kube, as_operator, team).all()
    assert _outcomes(calls) == dict.fromkeys(calls, True)
    assert set(_denied_elsewhere(as_operator, unwatched).values()) == {False}


def test_cluster_wide_reaches_every_namespace(
    helm_cluster: Helm,
    kube: ApiClient,
    crd: str,
    namespace: str,
    make_namespace: Callable[..., str],
    release_finalizers: list[str],
) -> None:
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    anywhere = make_namespace("anywhere")
    release_finalizers.append(anywhere)
    helm_cluster.ok(
        "install", "owl", CHART, "-n", namespace, *BASE, "--set", "operator.clusterWide=true"
    )
    _seed(kube, anywhere)
    as_operator = _as_operator(kube, namespace)
    calls = OperatorCalls(kube, as_operator, anywhere).all()
    assert _outcomes(calls) == dict.fromkeys(calls, True)
    assert _allowed(
        lambda: CustomObjectsApi(as_operator).list_cluster_custom_object(GROUP, VERSION, PLURAL)
    )
    assert _allowed(lambda: CoreV1Api(as_operator).list_namespace())
    assert not _allowed(lambda: CoreV1Api(as_operator).list_namespaced_pod(anywhere))


# -- the pre-delete hook's command with the hook's own account ----------------------------------


def _token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "hook",
                "clusters": [server],
                "users": [{"name": "hook", "user": {"token": token}}],
                "contexts": [
                    {"name": "hook", "context": {"cluster": server["name"], "user": "hook"}}
                ],
            }
        )
    )
    return path


@pytest.fixture
def hook_rbac(helm_cluster: Helm, cluster: Cluster, namespace: str) -> Iterator[list[str]]:
    """The pre-delete hook's ServiceAccount, Role and RoleBinding, applied as Helm would, and
    the rendered Job's arguments."""
    rendered = helm_cluster.ok(
        "template",
        "owl",
        CHART,
        "-n",
        namespace,
        "-f",
        str(CHART / "ci" / "tracing-values.yaml"),
        "--show-only",
        "templates/pre-delete-serviceaccount.yaml",
        "--show-only",
        "templates/pre-delete-role.yaml",
        "--show-only",
        "templates/pre-delete-rolebinding.yaml",
        "--show-only",
        "templates/pre-delete-job.yaml",
    )
    docs = documents(rendered)
    accounts = yaml.safe_dump_all([d for d in docs if d["kind"] != "Job"])
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=accounts.encode())
    assert result.returncode == 0, result.stderr
    (job,) = [d for d in docs if d["kind"] == "Job"]
    yield job["spec"]["template"]["spec"]["containers"][0]["args"]


def test_pre_delete_command_with_the_hooks_account(
    cluster: Cluster,
    kube: ApiClient,
    crd: str,
    namespace: str,
    hook_rbac: list[str],
    tmp_path: Path,
    release_finalizers: list[str],
) -> None:
    """The hook's exact arguments, run as a local process with the hook's token: it deletes
    the release's resources, waits for the operator's finalizer, and leaves others alone."""
    from kubernetes.client import CustomObjectsApi

    objects = CustomObjectsApi(kube)
    release_finalizers.append(namespace)
    release = {
        "app.kubernetes.io/instance": "owl",
        "app.kubernetes.io/name": "openwebui-langfuse",
        "app.kubernetes.io/component": "tracing",
    }
    ours = _tracing_body("owl-openwebui-langfuse", release)
    ours["metadata"]["finalizers"] = ["openwebui-langfuse.io/cleanup"]
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, ours)
    objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _tracing_body("someone-elses")
    )
    kubeconfig = _token_kubeconfig(
        cluster,
        _token(kube, namespace, "owl-openwebui-langfuse-pre-delete"),
        tmp_path / "hook.kubeconfig",
    )
    command = [str(Path(sys.executable).with_name("openwebui-langfuse")), *hook_rbac]
    process = subprocess.Popen(
        command,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def deletion_requested() -> bool:
            found = objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, "owl-openwebui-langfuse"
            )
            return bool(found["metadata"].get("deletionTimestamp"))

        wait_for(deletion_requested, 30, "the hook to delete the release's resource")
        assert process.poll() is None, "the hook did not wait for the finalizer"
        # The operator's part: release the finalizer once cleaned up.
        threading.Timer(
            0.5,
            lambda: objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                "owl-openwebui-langfuse",
                {"metadata": {"finalizers": None}},
            ),
        ).start()
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert "1 langfusetracing(s) deleted" in output
    remaining = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert [o["metadata"]["name"] for o in remaining["items"]] == ["someone-elses"]
