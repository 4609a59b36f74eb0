"""Each Kubernetes release the tests run on is the one pinned in ci/versions.env (the API
server's /version, the kubectl the tests use, the module the running binary was built from),
and the oldest one is the lower bound of the chart's kubeVersion."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from tests.chart.helm import CHART
from tests.world.manifest import World, WorldError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.world.cluster import Cluster

pytestmark = [pytest.mark.world, pytest.mark.every_kubernetes]

VERSIONS_FILE = Path(__file__).resolve().parents[2] / "ci" / "versions.env"
PIN_OF_ROLE = {"current": "KUBERNETES_VERSION", "oldest": "KUBERNETES_OLDEST_VERSION"}


def _pinned(role: str) -> str:
    """The version ci/versions.env pins for a role (the file ci/provision.py builds from)."""
    key = PIN_OF_ROLE[role]
    for line in VERSIONS_FILE.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    raise AssertionError(f"{key} is not in {VERSIONS_FILE}")


def test_the_cluster_runs_the_pinned_release(
    cluster: Cluster, kube: ApiClient, kubernetes_role: str, world: World
) -> None:
    from kubernetes.client import VersionApi

    pinned = _pinned(kubernetes_role)
    assert world.kubernetes(kubernetes_role).version == pinned, "re-run ci/provision.py"
    served = VersionApi(kube).get_code()
    assert served.git_version == f"v{pinned}"
    assert (served.major, served.minor) == ("1", pinned.split(".")[1])
    result = cluster.kubectl("version", "-o", "json")
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout)
    assert versions["clientVersion"]["gitVersion"] == f"v{pinned}"  # no client/server skew
    assert versions["serverVersion"]["gitVersion"] == f"v{pinned}"
    # The ldflags only set the version string: the build info Go embeds in the binary kwokctl
    # runs (what `go version -m` prints) says which module version it was built from.
    running = (cluster.cluster_dir / "bin" / "kube-apiserver").resolve()
    assert f"\nmod\tk8s.io/kubernetes\tv{pinned}\t".encode() in running.read_bytes()


def test_the_oldest_release_is_the_lower_bound_of_the_charts_kube_version() -> None:
    kube_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    lower = re.fullmatch(r">=\s*(\d+)\.(\d+)\.0-0", kube_version)
    assert lower, kube_version
    major, minor, _ = _pinned("oldest").split(".")
    assert (major, minor) == lower.groups()


def test_a_release_missing_from_the_manifest_says_how_to_fix_it(tmp_path: Path) -> None:
    world = World(source=tmp_path / "world.json")  # written before the release was added
    with pytest.raises(
        WorldError,
        match=r"release 'oldest' is not in the world manifest .*"
        r"ci/provision.py",
    ):
        world.kubernetes("oldest")
