"""The LangfuseTracing CRD on the real API server: bad resources are rejected with a message
that names the field, the documented examples are accepted, and the CRD reads well."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.chart.helm import EXAMPLES, GROUP, PLURAL, VERSION
from tests.chart.invalid_resources import (
    INVALID,
    Invalid,
    valid_function_resource,
    valid_resource,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CustomObjectsApi

    from tests.world.cluster import Cluster

# Also on the oldest Kubernetes the chart claims (kubeVersion), see tests/world/fixtures.py.
pytestmark = pytest.mark.every_kubernetes


@pytest.fixture(scope="module")
def crd_namespace(kube: ApiClient, crd: str) -> Iterator[str]:
    """One namespace for the whole table (a namespace per case would only add minutes)."""
    from kubernetes.client import CoreV1Api, V1Namespace, V1ObjectMeta

    core = CoreV1Api(kube)
    name = f"crd-{uuid.uuid4().hex[:6]}"
    core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def objects(kube: ApiClient) -> CustomObjectsApi:
    from kubernetes.client import CustomObjectsApi

    return CustomObjectsApi(kube)


def _create(
    objects: CustomObjectsApi, namespace: str, body: dict[str, Any], dry_run: bool = True
) -> dict[str, Any]:
    # Strict field validation, as `kubectl apply` does by default.
    kwargs: dict[str, Any] = {"field_validation": "Strict"}
    if dry_run:
        kwargs["dry_run"] = "All"
    result: dict[str, Any] = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, **kwargs
    )
    return result


def test_table_is_large_enough() -> None:
    assert len(INVALID) >= 30
    assert len({case.case for case in INVALID}) == len(INVALID)


def test_the_base_resource_is_valid(objects: CustomObjectsApi, crd_namespace: str) -> None:
    created = _create(objects, crd_namespace, valid_resource("base"))
    # Defaults the operator relies on are filled in by the API server.
    spec = created["spec"]
    # Without a target it is today's resource: the filter goes into Pipelines.
    assert spec["target"] == "pipelines"
    assert spec["filter"] == {"source": "bundled", "models": ["*"], "priority": 0}
    assert spec["resyncInterval"] == "5m"
    assert spec["suspend"] is False
    assert spec["deletionPolicy"] == "Delete"
    assert spec["langfuse"]["verify"] is True


def test_the_function_target_needs_no_pipelines(
    objects: CustomObjectsApi, crd_namespace: str
) -> None:
    created = _create(objects, crd_namespace, valid_function_resource("function"))
    spec = created["spec"]
    assert spec["target"] == "function"
    assert "pipelines" not in spec
    assert spec["filter"] == {"source": "bundled", "models": ["*"], "priority": 0}
    assert spec["openWebUI"]["usageCapability"] is True


@pytest.mark.parametrize(
    "filter_",
    [
        {"source": "bundled", "functionId": "lft_tracing_langfuse"},
        # The operator downloads the file itself: its name need not be a module name.
        {"source": "url", "url": "https://example.com/langfuse-filter.py"},
        {"source": "configMap", "configMap": {"name": "f", "key": "filter.py"}, "functionId": "_f"},
    ],
    ids=["function-id", "url-any-file-name", "configmap"],
)
def test_function_target_filters_are_accepted(
    objects: CustomObjectsApi, crd_namespace: str, filter_: dict[str, Any]
) -> None:
    body = valid_function_resource(f"function-{uuid.uuid4().hex[:6]}")
    body["spec"]["filter"] = filter_
    assert _create(objects, crd_namespace, body)["spec"]["filter"]["source"] == filter_["source"]


@pytest.mark.parametrize("invalid", INVALID, ids=[case.case for case in INVALID])
def test_invalid_resource_is_rejected_naming_the_field(
    objects: CustomObjectsApi, crd_namespace: str, invalid: Invalid
) -> None:
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as rejected:
        _create(objects, crd_namespace, invalid.resource(f"bad-{uuid.uuid4().hex[:6]}"))
    assert rejected.value.status in (400, 422)
    message = json.loads(rejected.value.body)["message"]
    assert invalid.message in message


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_accepted(objects: CustomObjectsApi, crd_namespace: str, example: Path) -> None:
    body = yaml.safe_load(example.read_text())
    created = _create(objects, crd_namespace, body, dry_run=False)
    assert created["metadata"]["name"] == body["metadata"]["name"]
    assert created["spec"]["langfuse"]["host"] == body["spec"]["langfuse"]["host"]


def test_openwebui_defaults(objects: CustomObjectsApi, crd_namespace: str) -> None:
    body = valid_resource("with-login")
    body["spec"]["openWebUI"] = {
        "url": "http://o:8080",
        "auth": {"credentials": {"secretRef": {"name": "login"}}},
    }
    spec = _create(objects, crd_namespace, body)["spec"]["openWebUI"]
    assert spec["usageCapability"] is True
    assert spec["auth"]["credentials"] == {
        "secretRef": {"name": "login"},
        "emailKey": "email",
        "passwordKey": "password",
    }


def test_status_subresource_and_printer_columns(
    cluster: Cluster, objects: CustomObjectsApi, crd_namespace: str
) -> None:
    _create(objects, crd_namespace, valid_resource("printed"), dry_run=False)
    status = {
        "status": {
            "observedGeneration": 1,
            "target": "pipelines",
            "pipelineId": "lft_ns_printed",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "CredentialsInvalid",
                    "message": "Langfuse answered 401",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                    "observedGeneration": 1,
                }
            ],
            "langfuse": {
                "projectId": "p",
                "projectName": "demo",
                "serverVersion": "3.0.0",
                "ingestionMode": "otlp+legacy",
            },
            "openWebUI": {"connectionUrl": "http://p:9099"},
            "lastSyncTime": "2026-01-01T00:00:00Z",
        }
    }
    patched = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, crd_namespace, PLURAL, "printed", status
    )
    assert patched["status"] == status["status"]  # nothing pruned
    # A status sent to the main resource is ignored (status subresource).
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, crd_namespace, PLURAL, "printed", {"status": {"pipelineId": "changed"}}
    )
    result = cluster.kubectl("get", "lft", "printed", "-n", crd_namespace, "-o", "wide")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "READY", "REASON", "TARGET", "FILTER", "LANGFUSE", "AGE"]
    assert row.split()[:6] == [
        "printed",
        "False",
        "CredentialsInvalid",
        "pipelines",
        "lft_ns_printed",
        "https://cloud.langfuse.com",
    ]
    listed = cluster.kubectl("get", "openwebui-langfuse", "-n", crd_namespace, "-o", "name")
    assert "langfusetracing.openwebui-langfuse.io/printed" in listed.stdout.split()


def test_function_target_status_is_kept(objects: CustomObjectsApi, crd_namespace: str) -> None:
    _create(objects, crd_namespace, valid_function_resource("function-status"), dry_run=False)
    status = {
        "status": {
            "observedGeneration": 1,
            "target": "function",
            "functionId": "lft_ns_function_status",
            "openWebUI": {"attachedModels": ["gpt-4o", "llama3:8b"]},
        }
    }
    patched = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, crd_namespace, PLURAL, "function-status", status
    )
    assert patched["status"] == status["status"]  # nothing pruned


def test_kubectl_explain_reads_like_documentation(cluster: Cluster, crd: str) -> None:
    result = cluster.kubectl("explain", "langfusetracing.spec.langfuse")
    assert result.returncode == 0, result.stderr
    assert "The Langfuse project that receives the traces." in result.stdout
    assert "Langfuse base URL, http or https" in result.stdout
    result = cluster.kubectl("explain", "lft.spec.filter.source")
    assert "bundled (this project's own OTLP filter" in " ".join(result.stdout.split())
    result = cluster.kubectl("explain", "lft.spec.target")
    assert "installed into Open WebUI itself as a Filter Function" in " ".join(
        result.stdout.split()
    )
