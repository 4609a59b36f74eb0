"""Faults of the world: each stops with a message naming it, in bounded time, leaving nothing."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.world.cluster import Cluster
from tests.world.manifest import World, WorldError
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for
from tests.world.proc import LOOPBACK, TAG_VAR, PortInUse, Process, StartupError, alive, tagged

SLEEP_FOREVER = [sys.executable, "-c", "import time; time.sleep(600)"]
# A child that detaches a grandchild into its own session, as kwokctl does.
SLEEP_AND_DETACH = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], "
    "start_new_session=True); time.sleep(600)",
]


def test_a_process_that_never_gets_ready_fails_within_its_deadline_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    proc = Process(
        "never-ready",
        SLEEP_AND_DETACH,
        log_path=tmp_path / "log",
        ready=lambda: False,
        ready_timeout=1.5,
        ready_what="listening",
    )
    started = time.monotonic()
    with pytest.raises(StartupError, match=r"never-ready was not listening within 1.5s"):
        proc.start()
    assert time.monotonic() - started < 15
    assert proc.pid is not None and not alive(proc.pid)
    assert tagged(TAG_VAR, proc.tag) == []  # the detached grandchild is gone too


def test_a_process_that_exits_early_reports_its_exit_code_and_log(tmp_path: Path) -> None:
    proc = Process(
        "crasher",
        [sys.executable, "-c", "print('boom: bad config'); exit(3)"],
        log_path=tmp_path / "log",
        ready=lambda: False,
        ready_timeout=30,
    )
    started = time.monotonic()
    with pytest.raises(StartupError) as failed:
        proc.start()
    assert time.monotonic() - started < 10
    message = str(failed.value)
    assert "crasher exited with code 3" in message
    assert "boom: bad config" in message
    assert str(tmp_path / "log") in message


def test_a_missing_executable_is_named(tmp_path: Path) -> None:
    proc = Process("ghost", ["/nonexistent/owl-ghost-binary"], log_path=tmp_path / "log")
    with pytest.raises(StartupError, match="ghost: cannot run /nonexistent/owl-ghost-binary"):
        proc.start()


def test_stop_ends_a_detached_descendant(tmp_path: Path) -> None:
    proc = Process("detacher", SLEEP_AND_DETACH, log_path=tmp_path / "log").start()
    try:
        wait_for(
            lambda: len(tagged(TAG_VAR, proc.tag)) >= 2, 10, "the child and its detached grandchild"
        )
        assert len(tagged(TAG_VAR, proc.tag)) == 2
    finally:
        proc.stop()
    assert tagged(TAG_VAR, proc.tag) == []


def test_an_unprovisioned_world_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OWL_WORLD", str(tmp_path / "absent.json"))
    with pytest.raises(WorldError, match=r"no world manifest at .*ci/provision.py"):
        World.load()


def test_a_missing_binary_is_named_before_anything_starts(tmp_path: Path) -> None:
    world = World(
        source=tmp_path / "world.json", bins={"kwokctl": str(tmp_path / "missing" / "kwokctl")}
    )
    cluster = Cluster(world, base_dir=tmp_path)
    with pytest.raises(WorldError, match=r"binary 'kwokctl' is missing .*ci/provision.py"):
        cluster.start()
    assert cluster.tmp is None
    assert list(tmp_path.iterdir()) == []  # no work directory was made


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.world
def test_a_taken_port_is_named(world: World, taken_port: int) -> None:
    server = PipelinesServer(world, port=taken_port)
    started = time.monotonic()
    with pytest.raises(
        PortInUse, match=f"Pipelines server: port {taken_port} on {LOOPBACK} is already in use"
    ):
        server.start()
    assert time.monotonic() - started < 5
    assert server.process is None


@pytest.mark.world
def test_a_pipelines_server_that_cannot_start_fails_fast_with_its_log(world: World) -> None:
    # An invalid GLOBAL_LOG_LEVEL makes the real server fail at import
    # (docs/upstream/pipelines.md, "Running it").
    server = PipelinesServer(world, env={"GLOBAL_LOG_LEVEL": "CHATTY"}, ready_timeout=60)
    started = time.monotonic()
    try:
        with pytest.raises(StartupError) as failed:
            server.start()
        assert time.monotonic() - started < 30
        message = str(failed.value)
        assert "Pipelines server exited with code" in message
        assert "KeyError: 'CHATTY'" in message
    finally:
        server.stop()
