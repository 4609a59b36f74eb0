"""The operator as a process on the local cluster, with the chart's own RBAC.

``chart_rbac`` renders the chart's ServiceAccount, Role(s), RoleBinding(s), ClusterRole and
ClusterRoleBinding with ``helm template --show-only`` and applies them; ``token_kubeconfig``
asks the API server for a TokenRequest token of that ServiceAccount and writes a kubeconfig
with it. ``OperatorProcess`` runs ``openwebui-langfuse run`` with that kubeconfig, so every
API call the operator makes is checked against the chart's RBAC, not an admin's.

By hand: ``python -m tests.world.operator --help``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.proc import LOOPBACK, Process, free_port, serve_until_interrupted

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "openwebui-langfuse"
CRD_FILE = CHART / "files" / "crd-langfusetracings.yaml"
CRD_NAME = "langfusetracings.openwebui-langfuse.io"
RBAC_TEMPLATES = (
    "templates/operator-serviceaccount.yaml",
    "templates/operator-rbac-role.yaml",
    "templates/operator-rbac-rolebinding.yaml",
    "templates/operator-rbac-clusterrole.yaml",
    "templates/operator-rbac-clusterrolebinding.yaml",
    "templates/operator-rbac-leaderrole.yaml",
    "templates/operator-rbac-leaderrolebinding.yaml",
    # Only rendered while the operator makes the Pipelines key (no existingSecret, no value).
    "templates/operator-rbac-keyrole.yaml",
    "templates/operator-rbac-keyrolebinding.yaml",
)


def _check(result: subprocess.CompletedProcess[Any], what: str) -> str:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {result.stderr!s}".strip())
    return str(result.stdout)


def install_crd(cluster: Cluster) -> None:
    """Apply the chart's CRD (idempotent) and wait until it is established."""
    _check(
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE)),
        "applying the CRD",
    )
    _check(
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s"),
        "waiting for the CRD",
    )


def render_rbac(
    world: World, release: str, namespace: str, watch_namespaces: Sequence[str] = ()
) -> str:
    """The chart's operator RBAC as YAML (what ``helm install`` would create)."""
    argv = [str(world.binary("helm")), "template", release, str(CHART), "--namespace", namespace]
    for template in RBAC_TEMPLATES:
        argv += ["--show-only", template]
    if watch_namespaces:
        argv += ["--set", "operator.watchNamespaces={" + ",".join(watch_namespaces) + "}"]
    return _check(
        subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False),
        "helm template (operator RBAC)",
    )


def chart_rbac(
    cluster: Cluster,
    world: World,
    namespace: str,
    *,
    release: str = "owl",
    watch_namespaces: Sequence[str] = (),
) -> str:
    """Apply the chart's operator RBAC; returns the ServiceAccount's name."""
    manifest = render_rbac(world, release, namespace, watch_namespaces)
    _check(cluster.kubectl("apply", "-f", "-", input=manifest.encode()), "applying the RBAC")
    for doc in yaml.safe_load_all(manifest):
        if doc and doc.get("kind") == "ServiceAccount":
            return str(doc["metadata"]["name"])
    raise RuntimeError("the chart rendered no ServiceAccount for the operator")


def delete_cluster_rbac(
    cluster: Cluster, world: World, namespace: str, *, release: str = "owl"
) -> None:
    """ClusterRole(Binding)s outlive the namespace; remove them after a test."""
    manifest = render_rbac(world, release, namespace)
    cluster_scoped = [
        d
        for d in yaml.safe_load_all(manifest)
        if d and d.get("kind") in ("ClusterRole", "ClusterRoleBinding")
    ]
    text = yaml.safe_dump_all(cluster_scoped)
    cluster.kubectl("delete", "--ignore-not-found", "-f", "-", input=text.encode())


def token_kubeconfig(cluster: Cluster, namespace: str, service_account: str, path: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of ``service_account`` (valid 2 h)."""
    token = _check(
        cluster.kubectl("create", "token", service_account, "-n", namespace, "--duration=2h"),
        "creating a token",
    ).strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    admin_cluster = admin["clusters"][0]["cluster"]
    cluster_entry: dict[str, Any] = {"server": admin_cluster["server"]}
    for key in ("certificate-authority-data", "certificate-authority", "insecure-skip-tls-verify"):
        if key in admin_cluster:
            cluster_entry[key] = admin_cluster[key]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "owl", "cluster": cluster_entry}],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [
            {
                "name": "owl",
                "context": {"cluster": "owl", "user": service_account, "namespace": namespace},
            }
        ],
        "current-context": "owl",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


PRE_DELETE_TEMPLATES = (
    "templates/pre-delete-serviceaccount.yaml",
    "templates/pre-delete-role.yaml",
    "templates/pre-delete-rolebinding.yaml",
)


def apply_pre_delete_rbac(
    cluster: Cluster,
    world: World,
    namespace: str,
    tmp: Path,
    *,
    release: str = "owl",
    chart: Sequence[str] = (str(CHART),),
) -> str:
    """Apply the pre-delete hook's ServiceAccount, Role and RoleBinding (Helm creates them only
    at uninstall time) rendered from ``chart`` (the source tree's, or e.g. ``oci://...
    --version X``); returns the ServiceAccount's name."""
    values = tmp / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "tracing": {
                    "enabled": True,
                    "spec": {
                        "langfuse": {
                            "host": "https://cloud.langfuse.com",
                            "publicKey": {"value": "pk-lf-x"},
                            "secretKey": {
                                "secretKeyRef": {"name": "langfuse", "key": "secret-key"}
                            },
                        }
                    },
                }
            }
        )
    )
    argv = [
        str(world.binary("helm")),
        "template",
        release,
        *chart,
        "--namespace",
        namespace,
        "-f",
        str(values),
    ]
    for template in PRE_DELETE_TEMPLATES:
        argv += ["--show-only", template]
    rendered = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout
    applied = cluster.kubectl("apply", "-f", "-", input=rendered.encode())
    assert applied.returncode == 0, applied.stderr
    return next(
        str(d["metadata"]["name"])
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] == "ServiceAccount"
    )


@dataclass(frozen=True)
class Launch:
    """How one operator command is started: its argv, environment and uid."""

    argv: list[str]
    env: dict[str, str]
    user: int | None = None


# From the command's argv and environment to how it runs: the source tree's virtualenv by
# default, or e.g. the released image in a sandbox (tests/release).
Launcher = Callable[[list[str], dict[str, str]], Launch]


def from_source_tree(world: World) -> Launcher:
    def launch(argv: list[str], env: dict[str, str]) -> Launch:
        command = world.venv("project") / "bin" / argv[0]
        return Launch([str(command), *argv[1:]], env)

    return launch


class OperatorProcess:
    """``openwebui-langfuse run`` on the cluster; ready when its liveness endpoint answers."""

    def __init__(
        self,
        world: World,
        kubeconfig: Path,
        namespaces: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        ready_timeout: float = 60.0,
        launcher: Launcher | None = None,
    ) -> None:
        self.world = world
        self.launcher = launcher or from_source_tree(world)
        self.kubeconfig = kubeconfig
        self.namespaces = list(namespaces)
        self.extra_env = dict(env or {})
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="owl-operator-"))
        self.ready_timeout = ready_timeout
        self.port: int | None = None
        self.ready_port: int | None = None
        self.process: Process | None = None
        self.starts = 0

    @property
    def liveness(self) -> str:
        assert self.port is not None, "operator not started"
        return f"http://{LOOPBACK}:{self.port}/healthz"

    @property
    def readiness(self) -> str:
        """The readiness endpoint: 200 once the operator's watches run (``readiness.py``)."""
        assert self.ready_port is not None, "operator not started"
        return f"http://{LOOPBACK}:{self.ready_port}/readyz"

    @property
    def log_path(self) -> Path:
        return self.log_dir / "operator.log"

    def start(self) -> OperatorProcess:
        self.port = free_port()
        self.ready_port = free_port()
        argv = ["openwebui-langfuse", "run", "--liveness", self.liveness]
        argv += ["--readiness", self.readiness]
        for namespace in self.namespaces:
            argv += ["--namespace", namespace]
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            "OPENWEBUI_LANGFUSE_LOG_LEVEL": "INFO",
            **self.extra_env,
        }
        launch = self.launcher(argv, env)
        self.starts += 1
        # The log is appended to: a restarted operator keeps the earlier run's lines.
        self.process = Process(
            "operator",
            launch.argv,
            log_path=self.log_path,
            env=launch.env,
            user=launch.user,
            cwd=self.log_dir,
            ready=self._ready,
            ready_timeout=self.ready_timeout,
            ready_what=f"answering {self.liveness}",
        )
        self.process.start()
        return self

    def _ready(self) -> bool:
        return httpx.get(self.liveness, timeout=2).status_code == 200

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a node loss would (no cleanup handlers run)."""
        assert self.process is not None and self.process.pid is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.stop()
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def log_text(self) -> str:
        """Every line this operator logged, across restarts."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.world.operator",
        description="Run the operator against an existing cluster with the chart's RBAC "
        "(applies the CRD and RBAC into NAMESPACE first).",
    )
    parser.add_argument("--kubeconfig", required=True, type=Path, help="admin kubeconfig")
    parser.add_argument("--namespace", required=True)
    args = parser.parse_args(argv)
    world = World.load()

    class ExistingCluster(Cluster):
        """A cluster started elsewhere (e.g. `python -m tests.world.cluster`): only its
        kubeconfig is known, and this process must not stop it."""

        @property
        def kubeconfig(self) -> Path:
            return Path(args.kubeconfig)

        @property
        def client_env(self) -> dict[str, str]:
            return {"KUBECONFIG": str(self.kubeconfig)}

    cluster = ExistingCluster(world)
    install_crd(cluster)
    account = chart_rbac(cluster, world, args.namespace)
    tmp = Path(tempfile.mkdtemp(prefix="owl-operator-"))
    config = token_kubeconfig(cluster, args.namespace, account, tmp / "kubeconfig")

    def factory() -> OperatorProcess:
        return OperatorProcess(world, config, [args.namespace], log_dir=tmp)

    def describe(op: OperatorProcess) -> str:
        return f"operator ready: liveness {op.liveness}, log {op.log_path}"

    return serve_until_interrupted(factory, describe)


if __name__ == "__main__":
    raise SystemExit(main())


# -- a small harness for operator tests and benchmarks -------------------------------------------

GROUP, VERSION, PLURAL = "openwebui-langfuse.io", "v1alpha1", "langfusetracings"


class Harness:
    """Admin-side helpers around one operator: Secrets, resources, conditions, Events.

    Remembers every secret value it wrote (``secret_values``) so a test can prove none of
    them shows up in logs, Events, status or annotations.
    """

    def __init__(self, api_client: Any) -> None:
        from kubernetes.client import CoreV1Api, CustomObjectsApi

        self.core = CoreV1Api(api_client)
        self.custom = CustomObjectsApi(api_client)
        self.secret_values: set[str] = set()

    # Secrets and ConfigMaps
    def put_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        from kubernetes.client import V1ObjectMeta, V1Secret
        from kubernetes.client.exceptions import ApiException

        self.secret_values.update(v for v in data.values() if len(v) >= 8)
        body = V1Secret(metadata=V1ObjectMeta(name=name), string_data=data)
        try:
            self.core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(name, namespace, body)

    def delete_secret(self, namespace: str, name: str) -> None:
        self.core.delete_namespaced_secret(name, namespace)

    def put_config_map(self, namespace: str, name: str, data: dict[str, str]) -> None:
        from kubernetes.client import V1ConfigMap, V1ObjectMeta
        from kubernetes.client.exceptions import ApiException

        body = V1ConfigMap(metadata=V1ObjectMeta(name=name), data=data)
        try:
            self.core.create_namespaced_config_map(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_config_map(name, namespace, body)

    def config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ConfigMap as a dict (metadata, data, binaryData), or None when there is none."""
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        result: dict[str, Any] = self.core.api_client.sanitize_for_serialization(found)
        return result

    # LangfuseTracings
    def apply(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LangfuseTracing",
            "metadata": {"name": name},
            "spec": spec,
        }
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body
        )
        return created

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
        )

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def list(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL
        )["items"]
        return items

    def condition(self, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
        obj = self.get(namespace, name) or {}
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if cond.get("type") == type_:
                return dict(cond)
        return None

    def wait_condition(
        self,
        namespace: str,
        name: str,
        type_: str,
        status: str,
        *,
        reason: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        from tests.world.poll import wait_for

        def matches() -> dict[str, Any] | None:
            cond = self.condition(namespace, name, type_)
            obj = self.get(namespace, name) or {}
            generation = obj.get("metadata", {}).get("generation")
            if (
                cond
                and cond["status"] == status
                and (reason is None or cond["reason"] == reason)
                and (obj.get("status") or {}).get("observedGeneration") == generation
            ):
                return cond
            return None

        what = f"{namespace}/{name} {type_}={status}" + (f" ({reason})" if reason else "")
        return wait_for(matches, timeout, what, interval=0.05, max_interval=0.5)

    def events(self, namespace: str) -> list[dict[str, str]]:
        items = self.core.list_namespaced_event(namespace).items
        return [
            {
                "type": e.type or "",
                "reason": e.reason or "",
                "message": e.message or "",
                "name": e.involved_object.name or "",
            }
            for e in items
        ]

    def visible_text(self, namespace: str) -> str:
        """Everything a user can read about the resources: status, annotations, Events."""
        import json

        parts = []
        for obj in self.list(namespace):
            parts.append(json.dumps(obj.get("status") or {}))
            parts.append(json.dumps(obj.get("metadata", {}).get("annotations") or {}))
        parts.extend(json.dumps(e) for e in self.events(namespace))
        return "\n".join(parts)
