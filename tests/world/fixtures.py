"""pytest plugin: the local world as fixtures (registered in tests/conftest.py).

Session-scoped where a part is slow to start (``cluster``, ``kube``, ``open_webui``);
per test where state must not leak (``namespace``, ``pipelines``). Every fixture stops what it
started, also when a test fails or the run is interrupted (Ctrl-C or SIGTERM: pytest runs
session finalizers on KeyboardInterrupt).

The cluster runs the current Kubernetes release. In a module marked
``pytest.mark.every_kubernetes`` each test that needs the cluster runs twice, on the current
release and on the oldest one the chart claims (ids ``k8s-1.37.2`` / ``k8s-1.30.14``): the
session-scoped ``kubernetes_role`` fixture is parametrised for those tests only, pytest groups
them by release, and the oldest release's cluster lives only while its group runs. The current
cluster is started once for the session whatever the order.

At the end of the session the plugin proves that no process started by the run is left: every
process the world starts inherits ``OWL_WORLD_RUN=<run id>`` (also the ones kwokctl detaches
with setsid), so ``/proc/*/environ`` is scanned for it, together with the process tree under
pytest. Anything found is reported, ended, and fails the run.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

import pytest

from tests.world.manifest import KubernetesRelease, World, WorldError
from tests.world.namespaces import create_namespace, delete_namespace, wait_ready_for_pods
from tests.world.poll import wait_for
from tests.world.proc import RUN_VAR, cmdline, descendants, tagged, terminate_pids

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from tests.world.cluster import Cluster
    from tests.world.open_webui import OpenWebUI
    from tests.world.pipelines import PipelinesServer

NAMESPACE_DELETE_TIMEOUT = 60.0
KUBERNETES_ROLES = ("current", "oldest")
EVERY_KUBERNETES = "every_kubernetes"
_timings_key = pytest.StashKey[dict[str, float]]()
_leaks_key = pytest.StashKey[list[str]]()


# -- run identity, interruption ----------------------------------------------------------------


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def pytest_configure(config: pytest.Config) -> None:
    # Inherited by every child (and theirs): the leak check looks for it at the end.
    os.environ.setdefault(RUN_VAR, uuid.uuid4().hex)
    config.stash[_timings_key] = {}
    config.stash[_leaks_key] = []
    config.addinivalue_line(
        "markers",
        f"{EVERY_KUBERNETES}: cluster tests run on every provisioned Kubernetes release "
        "(current and the oldest the chart claims)",
    )
    # A terminated run (CI timeout, kill <pid>) tears the world down like Ctrl-C does.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_to_interrupt)


def _timed(config: pytest.Config, key: str, started: float) -> None:
    config.stash[_timings_key][key] = time.monotonic() - started


# -- the Kubernetes release ----------------------------------------------------------------------


@functools.cache
def _release_id(role: str) -> str:
    """``k8s-<version>`` from the manifest; the role when the world is not provisioned (the
    fixture then fails with the provisioning hint)."""
    try:
        return f"k8s-{World.load().kubernetes(role).version}"
    except WorldError:
        return f"k8s-{role}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker(EVERY_KUBERNETES) is None:
        return
    if "kubernetes_role" not in metafunc.fixturenames:  # the test needs no cluster
        return
    metafunc.parametrize(
        "kubernetes_role",
        KUBERNETES_ROLES,
        indirect=True,
        scope="session",
        ids=[_release_id(role) for role in KUBERNETES_ROLES],
    )


@pytest.fixture(scope="session")
def kubernetes_role(request: pytest.FixtureRequest) -> str:
    """The role of the Kubernetes release the test's cluster runs: ``current`` unless the test
    is marked ``every_kubernetes``."""
    role: str = getattr(request, "param", "current")
    return role


# -- the parts ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def world() -> World:
    """Paths of the provisioned world (fails with "run ci/provision.py first" if absent)."""
    return World.load()


def _run_cluster(
    world: World, pytestconfig: pytest.Config, release: KubernetesRelease | None, label: str
) -> Iterator[Cluster]:
    from tests.world.cluster import Cluster

    started = time.monotonic()
    c = Cluster(world, kubernetes=release).start()
    _timed(pytestconfig, f"{label} start", started)
    try:
        yield c
    finally:
        started = time.monotonic()
        c.stop()
        _timed(pytestconfig, f"{label} stop", started)


@pytest.fixture(scope="session")
def _current_cluster(world: World, pytestconfig: pytest.Config) -> Iterator[Cluster]:
    """The current release's cluster, kept for the whole session: switching the
    ``kubernetes_role`` parameter back and forth never restarts it."""
    yield from _run_cluster(world, pytestconfig, None, "cluster")


@pytest.fixture(scope="session")
def cluster(
    world: World,
    kubernetes_role: str,
    pytestconfig: pytest.Config,
    request: pytest.FixtureRequest,
) -> Iterator[Cluster]:
    """One kwok cluster with two Ready fake nodes, running the ``kubernetes_role`` release."""
    if kubernetes_role == "current":
        current: Cluster = request.getfixturevalue("_current_cluster")
        yield current
        return
    release = world.kubernetes(kubernetes_role)
    yield from _run_cluster(world, pytestconfig, release, f"cluster k8s-{release.version}")


@pytest.fixture(scope="session")
def kube(cluster: Cluster) -> Iterator[ApiClient]:
    """A kubernetes ApiClient with admin credentials."""
    client = cluster.api_client()
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _namespace_name(test_name: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")
    base = re.sub(r"^test-?", "", base)[:40].strip("-") or "ns"
    return f"t-{base}-{uuid.uuid4().hex[:5]}"


@pytest.fixture(scope="session")
def _namespace_deletions(kube: ApiClient) -> Iterator[list[str]]:
    """Namespaces whose deletion was started; all must be gone by the end of the session.

    The namespace controller waits a fixed 5 s before it even looks at a deleted namespace
    (namespaceDeletionGracePeriod), so waiting test by test would cost 5 s each; the waits
    run concurrently here instead, under one deadline.
    """
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    pending: list[str] = []
    yield pending
    core = CoreV1Api(kube)

    def remaining() -> list[str]:
        left = []
        for name in pending:
            try:
                core.read_namespace(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
            else:
                left.append(name)
        return left

    left = remaining()
    if left:
        wait_for(
            lambda: not remaining(),
            NAMESPACE_DELETE_TIMEOUT,
            f"test namespaces to be deleted: {', '.join(left)}",
        )


@pytest.fixture
def namespace(
    kube: ApiClient, _namespace_deletions: list[str], request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards (the session waits for it)."""
    name = _namespace_name(request.node.name)
    create_namespace(kube, name, labels={"owl.test/run": os.environ[RUN_VAR][:16]})
    try:
        wait_ready_for_pods(kube, name)
        yield name
    finally:
        delete_namespace(kube, name)
        _namespace_deletions.append(name)


@pytest.fixture
def pipelines(world: World) -> Iterator[PipelinesServer]:
    """A real Pipelines server of its own for this test (empty PIPELINES_DIR)."""
    from tests.world.pipelines import PipelinesServer

    server = PipelinesServer(world).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def open_webui(world: World, pytestconfig: pytest.Config) -> Iterator[OpenWebUI]:
    """The real Open WebUI for the session, with a known admin and API keys enabled."""
    from tests.world.open_webui import OpenWebUI

    started = time.monotonic()
    server = OpenWebUI(world).start()
    _timed(pytestconfig, "Open WebUI start", started)
    try:
        yield server
    finally:
        server.stop()


# -- nothing left behind -----------------------------------------------------------------------


def _leftovers(run_id: str) -> list[int]:
    return sorted(set(tagged(RUN_VAR, run_id)) | set(descendants(os.getpid())))


@pytest.hookimpl(trylast=True)  # after the session fixtures were finalized
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run_id = os.environ.get(RUN_VAR)
    if not run_id:
        return
    found = _leftovers(run_id)
    if found:  # give processes that were just signalled a moment to go
        deadline = time.monotonic() + 5
        while found and time.monotonic() < deadline:
            time.sleep(0.2)
            found = _leftovers(run_id)
    if not found:
        return
    leaks = [f"pid {pid}: {cmdline(pid)}" for pid in found]
    session.config.stash[_leaks_key] = leaks
    terminate_pids(found)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    timings = config.stash.get(_timings_key, {})
    leaks = config.stash.get(_leaks_key, [])
    run_id = os.environ.get(RUN_VAR, "")
    if timings:
        terminalreporter.write_line(
            "world: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        )
    if leaks:
        terminalreporter.write_line(
            f"world: {len(leaks)} process(es) started by this run were still running (now ended):",
            red=True,
        )
        for leak in leaks:
            terminalreporter.write_line(f"  {leak}", red=True)
    elif run_id:
        terminalreporter.write_line(
            f"world: no process left behind ({RUN_VAR}={run_id[:12]}… found in no "
            f"/proc/*/environ, no child of pytest pid {os.getpid()})"
        )
