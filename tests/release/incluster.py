"""What a pod of the chart's ServiceAccount holds: the projected token and CA, and the two
``KUBERNETES_SERVICE_*`` variables, made for a process that runs from the image on loopback.

kwok runs no kubelet, so nothing projects a token into a pod; this does what the kubelet would:
a TokenRequest token of the ServiceAccount, the cluster's CA and the namespace, in a directory
that the sandbox binds at ``/var/run/secrets/kubernetes.io/serviceaccount``. The variables point
at the kwok API server on loopback (a pod would get the ``kubernetes`` Service's address).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from tests.world.cluster import Cluster

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class InCluster:
    """The service-account directory (bind it at ``MOUNT``) and the pod's variables."""

    directory: Path
    env: dict[str, str]
    token: str


def in_cluster(
    cluster: Cluster, namespace: str, service_account: str, directory: Path
) -> InCluster:
    """A token of ``service_account`` and the cluster's CA, as the kubelet would project them."""
    made = cluster.kubectl("create", "token", service_account, "-n", namespace, "--duration=2h")
    if made.returncode != 0:
        raise RuntimeError(f"creating a token for {namespace}/{service_account}: {made.stderr!s}")
    token = str(made.stdout).strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"]
    if "certificate-authority-data" in admin:
        ca = base64.b64decode(admin["certificate-authority-data"])
    else:
        ca = Path(admin["certificate-authority"]).read_bytes()
    server = urlsplit(admin["server"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_bytes(ca)
    (directory / "namespace").write_text(namespace)
    for name in ("token", "ca.crt", "namespace"):
        (directory / name).chmod(0o644)  # readable by the image's uid, as the kubelet mounts it
    env = {
        "KUBERNETES_SERVICE_HOST": server.hostname or "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(server.port or 443),
    }
    return InCluster(directory=directory, env=env, token=token)
