"""A simulated Kubernetes cluster: the real control plane from the cache, kwok for the nodes.

``kwokctl create cluster --runtime binary`` runs etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and the kwok controller as local processes, with certificates, RBAC and the
default admission plugins (PodSecurity included). Every binary comes from the provisioned
cache through its own ``--*-binary`` flag and kubectl is put first on PATH, so kwokctl never
downloads anything. kwokctl reads each component's version from its ``--version`` output and
builds flags for it, so an older control plane (``World.kubernetes("oldest")``) runs the same
way. Each cluster has a private ``KWOK_WORKDIR`` and explicit loopback ports, so two clusters
can run at once. kwok's default stages make pods Running/Ready on the fake nodes
and Job pods Succeeded; no container ever runs.

By hand: ``python -m tests.world.cluster --help`` (``--kubernetes oldest`` for the oldest).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.world.manifest import KubernetesRelease, World
from tests.world.poll import wait_for
from tests.world.proc import (
    LOOPBACK,
    TAG_VAR,
    StartupError,
    free_port,
    kill_tagged,
    serve_until_interrupted,
    tail,
)

# kwok's node template reports cpu, memory and pods only; real nodes also report
# ephemeral-storage, and the scheduler refuses pods that request it (the chart's pods do) on a
# node without it.
NODE_PARAMS = ("--param", '.allocatable["ephemeral-storage"]="100Gi"')

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
# The binaries of one Kubernetes release (the rest come from the world as they are).
RELEASE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


class Cluster:
    """One kwok cluster; ``start()`` returns when its fake nodes are Ready."""

    def __init__(
        self,
        world: World,
        *,
        name: str | None = None,
        nodes: int = 2,
        base_dir: Path | None = None,
        start_timeout: float = 180.0,
        extra_args: list[str] | None = None,
        kubernetes: KubernetesRelease | None = None,
    ) -> None:
        """``kubernetes``: the release to run; by default the world's ``bin`` entries (the
        current release)."""
        self.world = world
        self.kubernetes = kubernetes
        self.name = name or f"owl-{uuid.uuid4().hex[:8]}"
        self.nodes = nodes
        self.base_dir = base_dir
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args or [])
        self.tag = uuid.uuid4().hex
        self.tmp: Path | None = None
        self.ports: dict[str, int] = {}
        self.started = False
        self.timings: dict[str, float] = {}

    # -- paths ---------------------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        assert self.tmp is not None, "cluster not started"
        return self.tmp / "kwok"

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig written by kwokctl (client certificate of system:masters)."""
        return self.cluster_dir / "kubeconfig.yaml"

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.ports['kube-apiserver']}"

    @property
    def log_path(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "kwokctl.log"

    @property
    def client_env(self) -> dict[str, str]:
        """Environment for clients run against this cluster (kubectl, helm, kopf): its
        kubeconfig, and a discovery cache inside the cluster's directory, never ~/.kube."""
        assert self.tmp is not None, "cluster not started"
        return {"KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.tmp / "kube-cache")}

    def component_logs(self) -> dict[str, Path]:
        logs = self.cluster_dir / "logs"
        return {p.stem: p for p in sorted(logs.glob("*.log"))} if logs.is_dir() else {}

    # -- lifecycle -----------------------------------------------------------------------------

    def _binaries(self) -> dict[str, Path]:
        names = ("kwokctl", "kwok", "kubectl", *CONTROL_PLANE)
        return {name: self._binary(name) for name in names}

    def _binary(self, name: str) -> Path:
        if self.kubernetes is not None and name in RELEASE_BINARIES:
            return self.kubernetes.binary(name)
        return self.world.binary(name)

    def _env(self, bins: dict[str, Path]) -> dict[str, str]:
        path = os.pathsep.join([str(bins["kubectl"].parent), os.environ.get("PATH", "")])
        return {
            **os.environ,
            "KWOK_WORKDIR": str(self.workdir),
            "KWOK_KUBECTL_BINARY": str(bins["kubectl"]),
            "PATH": path,
            # Never touch the user's ~/.kube (config or discovery cache).
            "KUBECONFIG": str(self.workdir / "unused-kubeconfig"),
            "KUBECACHEDIR": str(self.workdir / "kube-cache"),
            TAG_VAR: self.tag,
        }

    def _kwokctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[bytes]:
        bins = self._binaries()
        argv = [str(bins["kwokctl"]), "--name", self.name, *args]
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            try:
                return subprocess.run(
                    argv,
                    env=self._env(bins),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise StartupError(
                    f"cluster {self.name}: `kwokctl {' '.join(args)}` did not "
                    f"finish within {timeout:g}s; log: {self.log_path}"
                ) from None

    def _failure(self, what: str) -> StartupError:
        parts = [
            f"cluster {self.name}: {what}",
            f"  kwokctl log: {self.log_path}",
            "  last lines:",
            _indent(tail(self.log_path, 25)),
        ]
        for component, path in self.component_logs().items():
            parts += [f"  {component} log: {path}", _indent(tail(path, 8))]
        return StartupError("\n".join(parts))

    def start(self) -> Cluster:
        bins = self._binaries()  # a missing binary fails here, before anything runs
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.base_dir))
        self.workdir.mkdir()
        try:
            self._create(bins)
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self, bins: dict[str, Path]) -> None:
        self.ports = {
            name: free_port()
            for name in (
                "kube-apiserver",
                "etcd",
                "etcd-peer",
                "kwok-controller",
                "kube-controller-manager",
                "kube-scheduler",
            )
        }
        # Options without a flag go into a config file; flags win over it.
        assert self.tmp is not None
        config = self.tmp / "kwokctl.yaml"
        config.write_text(
            "kind: KwokctlConfiguration\n"
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
            "options:\n"
            f"  bindAddress: {LOOPBACK}\n"
            f"  etcdPeerPort: {self.ports['etcd-peer']}\n"
        )
        started = time.monotonic()
        timeout = self.start_timeout
        result = self._kwokctl(
            "--config",
            str(config),
            "create",
            "cluster",
            "--runtime",
            "binary",
            "--kubeconfig=",  # empty: do not add a context to any kubeconfig
            f"--kube-apiserver-binary={bins['kube-apiserver']}",
            f"--kube-controller-manager-binary={bins['kube-controller-manager']}",
            f"--kube-scheduler-binary={bins['kube-scheduler']}",
            f"--kwok-controller-binary={bins['kwok']}",
            f"--etcd-binary={bins['etcd']}",
            f"--kube-apiserver-port={self.ports['kube-apiserver']}",
            f"--etcd-port={self.ports['etcd']}",
            f"--controller-port={self.ports['kwok-controller']}",
            f"--kube-controller-manager-port={self.ports['kube-controller-manager']}",
            f"--kube-scheduler-port={self.ports['kube-scheduler']}",
            f"--wait={int(timeout)}s",
            f"--timeout={int(timeout)}s",
            *self.extra_args,
            timeout=timeout + 30,
        )
        if result.returncode != 0:
            raise self._failure(f"kwokctl create cluster failed (exit {result.returncode})")
        self.started = True
        self.timings["create"] = time.monotonic() - started
        if not self.kubeconfig.is_file():
            raise self._failure(f"kwokctl wrote no kubeconfig at {self.kubeconfig}")
        self._check_binaries_are_ours(bins)

        started = time.monotonic()
        if self.nodes:
            result = self._kwokctl(
                "scale", "node", "--replicas", str(self.nodes), *NODE_PARAMS, timeout=60
            )
            if result.returncode != 0:
                raise self._failure(f"kwokctl scale node failed (exit {result.returncode})")
        remaining = max(10.0, self.start_timeout - self.timings["create"])
        try:
            wait_for(self._nodes_ready, remaining, f"{self.nodes} Ready fake nodes")
            # Pods need the namespace's default ServiceAccount, made by the controller manager.
            wait_for(
                lambda: self._has_default_sa("default"),
                remaining,
                "the default ServiceAccount (controller manager running)",
            )
        except TimeoutError as exc:
            raise self._failure(str(exc)) from None
        self.timings["nodes"] = time.monotonic() - started

    def _check_binaries_are_ours(self, bins: dict[str, Path]) -> None:
        """kwokctl links the binaries it runs into <cluster>/bin; each must be a provisioned
        one (anything else would have been downloaded)."""
        ours = {path.resolve() for path in bins.values()}
        foreign = [
            f"{entry.name} -> {entry.resolve()}"
            for entry in sorted((self.cluster_dir / "bin").iterdir())
            if entry.resolve() not in ours
        ]
        if foreign:
            raise self._failure(
                "kwokctl used binaries that were not provisioned: " + ", ".join(foreign)
            )

    def stop(self) -> None:
        """Delete the cluster, end anything it left running, remove its directory."""
        if self.tmp is None:
            return
        if self.cluster_dir.exists():
            with contextlib.suppress(StartupError):
                self._kwokctl("delete", "cluster", "--kubeconfig=", timeout=60)
        kill_tagged(TAG_VAR, self.tag)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = None
        self.started = False

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients -------------------------------------------------------------------------------

    def kubectl(
        self, *args: str, timeout: float = 60, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the cluster's own kubectl against it (captured output, no check): the same
        release as the server, so no client/server version skew."""
        argv = [str(self._binary("kubectl")), *args]
        return subprocess.run(
            argv,
            capture_output=True,
            text=input is None,
            input=input,
            env={**os.environ, **self.client_env},
            timeout=timeout,
            check=False,
        )

    def api_client(self) -> ApiClient:
        """A kubernetes ApiClient with the admin credentials."""
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return client

    def _kubectl_json(self, *args: str) -> Any:
        import json

        result = self.kubectl(*args, "-o", "json", timeout=20)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip())
        return json.loads(result.stdout)

    def _nodes_ready(self) -> bool:
        items = self._kubectl_json("get", "nodes")["items"]
        ready = [
            n
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) >= self.nodes

    def _has_default_sa(self, namespace: str) -> bool:
        return (
            self.kubectl("get", "serviceaccount", "default", "-n", namespace, timeout=20).returncode
            == 0
        )


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.world.cluster",
        description="Start a kwok cluster from the provisioned binaries, print its kubeconfig, "
        "wait for Ctrl-C, then delete it and everything it started.",
    )
    parser.add_argument("--nodes", type=int, default=2, help="fake nodes (default: 2)")
    parser.add_argument("--name", help="cluster name (default: random)")
    parser.add_argument(
        "--kubernetes",
        choices=("current", "oldest"),
        default="current",
        help="Kubernetes release to run (default: current)",
    )
    args = parser.parse_args(argv)

    def make() -> Cluster:
        world = World.load()
        release = None if args.kubernetes == "current" else world.kubernetes(args.kubernetes)
        return Cluster(world, name=args.name, nodes=args.nodes, kubernetes=release)

    def describe(c: Cluster) -> str:
        return (
            f"cluster {c.name}: {c.server}\n"
            f"  export KUBECONFIG={c.kubeconfig}\n"
            f"  component logs: {c.cluster_dir / 'logs'}\n"
            f"  started in {c.timings}"
        )

    return serve_until_interrupted(make, describe)


if __name__ == "__main__":
    raise SystemExit(main())
