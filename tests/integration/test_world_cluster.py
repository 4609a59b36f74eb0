"""The simulated cluster behaves like a real control plane where the project relies on it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes.client import (
    ApiClient,
    ApiextensionsV1Api,
    AppsV1Api,
    BatchV1Api,
    Configuration,
    CoreV1Api,
    CustomObjectsApi,
    RbacAuthorizationV1Api,
)
from kubernetes.client.exceptions import ApiException

from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.poll import wait_for

pytestmark = pytest.mark.world

IMAGE = "registry.invalid/owl/never-pulled:1"  # kwok never runs a container


def _condition(obj: Any, kind: str) -> str | None:
    for cond in (obj.status.conditions or []) if obj.status else []:
        if cond.type == kind:
            return str(cond.status)
    return None


def test_crd_with_cel_rule_round_trips_and_rejects_invalid_resources(
    kube: ApiClient, namespace: str
) -> None:
    ext = ApiextensionsV1Api(kube)
    objects = CustomObjectsApi(kube)
    group = f"{namespace}.owl.test"  # CRDs are cluster-wide: one group per test
    name = f"widgets.{group}"
    ext.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": {
                    "plural": "widgets",
                    "singular": "widget",
                    "kind": "Widget",
                    "listKind": "WidgetList",
                },
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "properties": {
                                    "spec": {
                                        "type": "object",
                                        "required": ["min", "max"],
                                        "properties": {
                                            "min": {"type": "integer"},
                                            "max": {"type": "integer"},
                                            "label": {"type": "string"},
                                        },
                                        "x-kubernetes-validations": [
                                            {
                                                "rule": "self.min <= self.max",
                                                "message": "min must not be greater than max",
                                            }
                                        ],
                                    }
                                },
                            }
                        },
                    }
                ],
            },
        }
    )
    try:
        wait_for(
            lambda: _condition(ext.read_custom_resource_definition(name), "Established") == "True",
            30,
            f"CRD {name} Established",
        )
        body = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "good"},
            "spec": {"min": 1, "max": 3, "label": "a"},
        }
        # Established can precede the REST endpoint by a moment: retry only the 404.
        wait_for(
            lambda: objects.create_namespaced_custom_object(
                group, "v1", namespace, "widgets", body
            ),
            30,
            "the Widget endpoint to serve",
            retry_on=(ApiException,),
        )
        got = objects.get_namespaced_custom_object(group, "v1", namespace, "widgets", "good")
        assert got["spec"] == {"min": 1, "max": 3, "label": "a"}
        assert got["metadata"]["generation"] == 1

        bad = copy.deepcopy(body)
        bad["metadata"]["name"] = "bad"
        bad["spec"].update(min=5, max=2)
        with pytest.raises(ApiException) as rejected:
            objects.create_namespaced_custom_object(group, "v1", namespace, "widgets", bad)
        assert rejected.value.status == 422
        assert "min must not be greater than max" in str(rejected.value.body)
    finally:
        ext.delete_custom_resource_definition(name)

        def crd_gone() -> bool:
            try:
                ext.read_custom_resource_definition(name)
            except ApiException as exc:
                return exc.status == 404
            return False

        wait_for(crd_gone, 60, f"CRD {name} to be deleted")


def test_rbac_is_enforced_for_a_service_account_token(kube: ApiClient, namespace: str) -> None:
    core = CoreV1Api(kube)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token

    config = Configuration()
    config.host = kube.configuration.host
    config.ssl_ca_cert = kube.configuration.ssl_ca_cert
    config.api_key = {"authorization": token}
    config.api_key_prefix = {"authorization": "Bearer"}
    with ApiClient(config) as sa_client:
        as_reader = CoreV1Api(sa_client)
        with pytest.raises(ApiException) as denied:
            as_reader.list_namespaced_secret(namespace)
        assert denied.value.status == 403
        assert f"system:serviceaccount:{namespace}:reader" in str(denied.value.body)

        rbac = RbacAuthorizationV1Api(kube)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "secret-reader"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "reader-reads-secrets"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "secret-reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        )
        secrets = wait_for(
            lambda: as_reader.list_namespaced_secret(namespace),
            30,
            "the RoleBinding to take effect",
            retry_on=(ApiException,),
        )
        assert secrets.items == []
        # Still namespaced: the grant does not reach other namespaces.
        with pytest.raises(ApiException) as elsewhere:
            as_reader.list_namespaced_secret("default")
        assert elsewhere.value.status == 403


def _privileged_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "c", "image": IMAGE, "securityContext": {"privileged": True}}]
        },
    }


def test_restricted_pod_security_label_rejects_a_privileged_pod(
    kube: ApiClient, namespace: str
) -> None:
    core = CoreV1Api(kube)
    # Accepted before the label (dry run), so the rejection below is the label's doing.
    core.create_namespaced_pod(namespace, _privileged_pod("before"), dry_run="All")

    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    with pytest.raises(ApiException) as rejected:
        core.create_namespaced_pod(namespace, _privileged_pod("after"))
    assert rejected.value.status == 403
    message = json.loads(rejected.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "privileged" in message


def _deployment(name: str, *, replicas: int, container: str) -> dict[str, Any]:
    """A Deployment of ``replicas`` pods labelled ``app=<name>``, one container of IMAGE."""
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": container, "image": IMAGE}]},
            },
        },
    }


def test_deployment_becomes_available_on_fake_nodes(kube: ApiClient, namespace: str) -> None:
    apps, core = AppsV1Api(kube), CoreV1Api(kube)
    apps.create_namespaced_deployment(namespace, _deployment("web", replicas=2, container="web"))

    def available() -> bool:
        dep = apps.read_namespaced_deployment("web", namespace)
        return _condition(dep, "Available") == "True" and dep.status.available_replicas == 2

    wait_for(available, 60, "Deployment web Available with 2 replicas")
    nodes = {n.metadata.name for n in core.list_node().items}
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running"
        assert _condition(pod, "Ready") == "True"
        assert pod.spec.node_name in nodes


def test_job_completes(kube: ApiClient, namespace: str) -> None:
    batch = BatchV1Api(kube)
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "once"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "once", "image": IMAGE}],
                    }
                },
            },
        },
    )

    def complete() -> bool:
        job = batch.read_namespaced_job("once", namespace)
        return _condition(job, "Complete") == "True" and job.status.succeeded == 1

    wait_for(complete, 60, "Job once Complete")


def test_deleting_a_namespace_finishes(kube: ApiClient, namespace: str) -> None:
    apps, core = AppsV1Api(kube), CoreV1Api(kube)
    apps.create_namespaced_deployment(namespace, _deployment("doomed", replicas=1, container="c"))
    wait_for(
        lambda: apps.read_namespaced_deployment("doomed", namespace).status.ready_replicas,
        60,
        "Deployment doomed ready",
    )
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "data"}})

    core.delete_namespace(namespace)

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 60, f"namespace {namespace} to be deleted (pods finalized by kwok)")


def test_a_second_cluster_runs_beside_the_session_cluster(
    world: World, cluster: Cluster, kube: ApiClient
) -> None:
    with Cluster(world, nodes=1) as second:
        assert second.server != cluster.server
        assert set(second.ports.values()).isdisjoint(cluster.ports.values())
        with second.api_client() as client:
            nodes = CoreV1Api(client).list_node().items
            assert len(nodes) == 1
        version = second.kubectl("version", "-o", "json")
        assert '"gitVersion": "v1.37.2"' in version.stdout, version.stderr
    # The session cluster is untouched.
    assert len(CoreV1Api(kube).list_node().items) == cluster.nodes
