"""The release as a user consumes it, on the local world.

``ci/release.py --push`` runs in a fresh clone of the session's commit and pushes to a real OCI
registry on loopback (``tests/world/registry.py``). Then, as a platform engineer would:
``helm install oci://…/openwebui-langfuse --version X`` on the kwok cluster, and the operator
runs **from the pushed image** (unpacked, read-only root, uid 10001, in-cluster credentials:
the chart ServiceAccount's token and CA where a pod has them), against the real Pipelines, the
real Open WebUI and the Langfuse stand-in. The hook commands (``smoke-test``, ``pre-delete``) run
from the image too.

``ci/release.py`` is called rather than ``./ci/release``: the wrapper provisions, and that would
re-link the shared project virtualenv to the clone under the running session.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.stack import ECHO_MODEL, RELEASE, Stack
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.release.conftest import BuiltImage, unpack_layout
from tests.release.incluster import InCluster, in_cluster
from tests.release.sandbox import DEFAULT_UID, SERVICE_ACCOUNT_DIR, bwrap_argv
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.open_webui import OpenWebUI
from tests.world.operator import Launch, Launcher, apply_pre_delete_rbac
from tests.world.proc import RUN_VAR
from tests.world.registry import Registry

pytestmark = pytest.mark.world

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "openwebui-langfuse"  # the path under the registry host, as on ghcr.io
RELEASE_TIMEOUT = 900
IMAGES = ("operator", "pipelines")


@dataclass(frozen=True)
class Released:
    output: Path
    registry: str  # host/project
    record: dict[str, Any]
    log: str

    @property
    def version(self) -> str:
        return str(self.record["version"])

    @property
    def digests(self) -> dict[str, str]:
        return {name: (self.output / f"{name}.digest").read_text().strip() for name in IMAGES}

    @property
    def digest(self) -> str:
        """The operator image's."""
        return self.digests["operator"]

    @property
    def chart_ref(self) -> str:
        return f"oci://{self.registry}/charts/openwebui-langfuse"

    @property
    def chart_package(self) -> Path:
        return self.output / f"openwebui-langfuse-{self.version}.tgz"

    def chart_file(self, name: str) -> Any:
        with tarfile.open(self.chart_package) as tar:
            member = tar.extractfile(f"openwebui-langfuse/{name}")
            assert member is not None
            return yaml.safe_load(io.TextIOWrapper(member))


@pytest.fixture(scope="module")
def registry(world: World) -> Iterator[Registry]:
    with Registry(world) as running:
        yield running


@pytest.fixture(scope="module")
def released(
    registry: Registry, release_commit: str, tmp_path_factory: pytest.TempPathFactory
) -> Released:
    """``ci/release.py --push`` from a fresh clone: clean by construction, as CI and a
    maintainer on a tag have it."""
    base = tmp_path_factory.mktemp("release")
    clone = base / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", release_commit], check=True)
    output = base / "dist"
    target = f"{registry.host}/{PROJECT}"
    proc = subprocess.run(
        [
            sys.executable,
            str(clone / "ci" / "release.py"),
            "--output",
            str(output),
            "--push",
            target,
            "--plain-http",
        ],
        capture_output=True,
        text=True,
        timeout=RELEASE_TIMEOUT,
        check=False,
    )
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        pytest.fail("ci/release.py failed:\n" + "\n".join(log.splitlines()[-30:]))
    record = json.loads((output / "release.json").read_text())
    return Released(output, target, record, log)


def test_the_release_pushes_the_images_and_a_chart_pinned_to_them(
    released: Released, registry: Registry, world: World, operator_image: BuiltImage
) -> None:
    out = released.output
    for image in IMAGES:
        for suffix in ("-oci/index.json", ".digest", ".sbom.spdx.json"):
            assert (out / f"{image}{suffix}").is_file(), f"{image}{suffix} missing"
    assert (out / "release.json").is_file() and released.chart_package.is_file()
    crane = str(world.binary("crane"))
    values = released.chart_file("values.yaml")
    for image in IMAGES:
        digest = released.digests[image]
        assert released.record["pushed"][image] == f"{released.registry}/{image}@{digest}"
        assert registry.tags(f"{PROJECT}/{image}") == [released.version]
        served = subprocess.run(
            [crane, "digest", f"{released.registry}/{image}:{released.version}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert served == digest, f"the registry serves another {image}"
        # The chart's default image is this very image, by digest.
        pinned = values[image]["image"]
        assert (pinned["repository"], pinned["digest"]) == (f"{released.registry}/{image}", digest)
    assert registry.tags(f"{PROJECT}/charts/openwebui-langfuse") == [released.version]
    chart = released.chart_file("Chart.yaml")
    assert chart["version"] == chart["appVersion"] == released.version
    # Reproducible: the release (in a fresh clone) and the session's own build (in this
    # checkout) of one commit are the same image, to the digest.
    assert released.digest == operator_image.digest


def image_launcher(rootfs: Path, image: BuiltImage, pod: InCluster) -> Launcher:
    """Run operator commands from the unpacked image as a pod would: uid 10001, read-only
    root, the image's own environment, the in-cluster token and variables, no kubeconfig."""

    def launch(argv: list[str], env: dict[str, str]) -> Launch:
        inner = {
            **image.env(),
            **{k: v for k, v in env.items() if k != "KUBECONFIG"},
            **pod.env,
        }
        # The session's run id goes in, so the end-of-run check finds any process left.
        if RUN_VAR in os.environ:
            inner[RUN_VAR] = os.environ[RUN_VAR]
        cmd = bwrap_argv(
            rootfs, argv, env=inner, uid=DEFAULT_UID, binds={SERVICE_ACCOUNT_DIR: pod.directory}
        )
        return Launch(cmd, {}, user=DEFAULT_UID)

    return launch


def test_helm_install_from_the_registry_and_the_operator_from_the_image(
    released: Released,
    operator_image: BuiltImage,
    world: World,
    cluster: Cluster,
    open_webui: OpenWebUI,
    langfuse: LangfuseStandIn,
    namespace: str,
) -> None:
    chart = [released.chart_ref, "--version", released.version, "--plain-http"]
    stack = Stack(world, cluster, open_webui, langfuse, namespace, chart=chart)
    with contextlib.ExitStack() as cleanup:  # last in, first out
        # Directories the image's uid reads: under /tmp itself, not pytest's 0700 tmp_path.
        sa_dir, hook_dir = (Path(tempfile.mkdtemp(prefix="owl-released-")) for _ in range(2))
        for path in (sa_dir, hook_dir):
            path.chmod(0o755)
            cleanup.callback(shutil.rmtree, path, ignore_errors=True)
        rootfs = cleanup.enter_context(
            contextlib.contextmanager(unpack_layout)(
                released.output / "operator-oci", operator_image.tag, "released-operator"
            )
        )
        cleanup.callback(stack.close)  # stops the sandboxed operator before its rootfs goes
        stack.install_chart()
        pods = json.loads(stack.kubectl("get", "pods", "-o", "json").stdout)["items"]
        images = {
            p["metadata"]["labels"]["app.kubernetes.io/component"]: p["spec"]["containers"][0][
                "image"
            ]
            for p in pods
        }
        for image in IMAGES:
            assert images[image] == f"{released.registry}/{image}@{released.digests[image]}"
        account = stack.chart_resource_name("serviceaccount", "operator")
        pod = in_cluster(cluster, namespace, account, sa_dir)
        stack.operator_launcher = image_launcher(rootfs, operator_image, pod)
        _whole_path_from_the_image(stack, rootfs, operator_image, pod, cluster, released, hook_dir)


def _whole_path_from_the_image(
    stack: Stack,
    rootfs: Path,
    image: BuiltImage,
    pod: InCluster,
    cluster: Cluster,
    released: Released,
    hook_dir: Path,
) -> None:
    operator = stack.start_operator()  # from the image; it makes the Pipelines key first
    pipelines = stack.start_pipelines()
    stack.create_secrets()
    stack.apply_tracing()
    obj = stack.wait_ready()
    pipeline_id = obj["status"]["pipelineId"]
    turn = stack.chat("Traced by the released operator?")
    trace, generation = stack.wait_trace(turn)
    assert trace["sessionId"] == turn.chat_id and generation["output"] == turn.reply

    # A rotated Secret reaches Pipelines' valves.
    rotated = stack.rotate_langfuse_keys()
    stack.wait_ready(also=lambda o: o["status"]["langfuse"]["projectId"] == rotated.project_id)
    with pipelines.client() as http:
        valves = http.get(f"/{pipeline_id}/valves").json()
    assert (valves["public_key"], valves["secret_key"]) == (rotated.public_key, rotated.secret_key)

    # The chart's helm-test command, from the image, with the operator's ServiceAccount.
    smoke = _run_from_image(
        rootfs,
        image,
        pod,
        [
            "openwebui-langfuse",
            "smoke-test",
            "--namespace",
            stack.namespace,
            "--name",
            "tracing",
            "--model",
            ECHO_MODEL,
            "--timeout",
            "60",
        ],
    )
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert smoke.stdout.strip().splitlines()[-1].startswith("PASS")

    # The chart's pre-delete command, from the image, with the hook's own ServiceAccount.
    hook = hook_account(cluster, stack, released, hook_dir)
    pre_delete = _run_from_image(
        rootfs,
        image,
        hook,
        ["openwebui-langfuse", "pre-delete", "--namespace", stack.namespace, "--timeout", "60"],
    )
    assert pre_delete.returncode == 0, pre_delete.stdout + pre_delete.stderr
    assert stack.get_tracing() is None
    with pipelines.client() as http:
        loaded = {p["id"] for p in http.get("/pipelines").json()["data"]}
    assert pipeline_id not in loaded
    assert pipelines.url not in stack.openai_config()["OPENAI_API_BASE_URLS"]

    # Nothing secret in what the released operator and its hooks printed.
    printed = operator.log_text() + smoke.stdout + smoke.stderr + pre_delete.stdout
    for secret in (
        pipelines.api_key,
        rotated.secret_key,
        stack.project.secret_key,
        stack.open_webui.admin_password,
        pod.token,
    ):
        assert secret not in printed


def hook_account(cluster: Cluster, stack: Stack, released: Released, directory: Path) -> InCluster:
    """The pre-delete hook's account, rendered from the pulled chart, as a pod of it holds it."""
    chart = [released.chart_ref, "--version", released.version, "--plain-http"]
    account = apply_pre_delete_rbac(
        cluster, stack.world, stack.namespace, stack.tmp, release=RELEASE, chart=chart
    )
    return in_cluster(cluster, stack.namespace, account, directory)


def _run_from_image(
    rootfs: Path, image: BuiltImage, pod: InCluster, argv: list[str]
) -> subprocess.CompletedProcess[str]:
    launch = image_launcher(rootfs, image, pod)(argv, {})
    return subprocess.run(
        launch.argv,
        user=launch.user,
        group=launch.user,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
