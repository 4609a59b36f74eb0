"""Test namespaces on the session's cluster: created ready for pods, deleted without fuss."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.world.poll import wait_for

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def create_namespace(kube: ApiClient, name: str, labels: dict[str, str] | None = None) -> None:
    from kubernetes.client import CoreV1Api, V1Namespace, V1ObjectMeta

    CoreV1Api(kube).create_namespace(V1Namespace(metadata=V1ObjectMeta(name=name, labels=labels)))


def wait_ready_for_pods(kube: ApiClient, name: str) -> None:
    """Pods are refused until the controller manager made the default ServiceAccount."""
    from kubernetes.client import CoreV1Api

    core = CoreV1Api(kube)
    wait_for(
        lambda: core.read_namespaced_service_account("default", name),
        30,
        f"ServiceAccount default in namespace {name}",
    )


def delete_namespace(kube: ApiClient, name: str) -> None:
    """Ask for the deletion (without waiting for it); a namespace already gone is fine."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    try:
        CoreV1Api(kube).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
