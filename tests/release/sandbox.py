"""Run a command of an unpacked image the way a Kubernetes pod would, with bubblewrap.

``run_in_image(rootfs, argv, ...)`` starts ``argv`` with the image's root filesystem mounted
read-only at ``/``, a fresh tmpfs at ``/tmp`` and ``/run``, its own /proc and /dev, as PID 1 of
its own PID namespace, under a numeric uid and gid that are also the process's real ids on the
host (a user namespace maps them to themselves): the image's root-owned files are not the
process's (they show as 65534), exactly the position of a non-root container. The network is
the host's by default (loopback servers of the test world are reachable; nothing else is
started). Returns the ``Popen`` of bwrap; ``pid1`` finds the command itself, which is where a
kubelet's SIGTERM goes.

Binds (``{path inside: path on the host}``) are read-only unless listed in ``writable``;
targets under /tmp or /run need no mount point in the image, any other must exist in it. Host
paths must be readable by ``uid`` (as a pod's projected token is), and the root filesystem's
parents traversable by it. Example, the operator in a cluster::

    proc = run_in_image(rootfs, ["openwebui-langfuse", "run"], env={
        **image_env, "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443",
    }, binds={SERVICE_ACCOUNT_DIR: token_dir}, stdout=log, stderr=subprocess.STDOUT)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tests.world.poll import WaitTimeout, wait_for


class ProcessExited(RuntimeError):
    """The sandbox ended before the awaited state."""


SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_UID = 10001
_TMPFS = ("/tmp", "/run")


def _inside(path: str) -> str:
    # /var/run is a symlink to /run in the image; bwrap would resolve it on the host.
    return "/run" + path.removeprefix("/var/run") if path.startswith("/var/run/") else path


def bwrap_argv(
    rootfs: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    uid: int = DEFAULT_UID,
    gid: int | None = None,
    binds: Mapping[str, Path] | None = None,
    writable: Sequence[str] = (),
    cwd: str = "/",
    network: bool = True,
) -> list[str]:
    """The bwrap command line ``run_in_image`` runs (exposed for logs and tests)."""
    gid = uid if gid is None else gid
    cmd = ["bwrap", "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev"]
    for mount in _TMPFS:
        cmd += ["--tmpfs", mount]
    for inside, host in sorted((binds or {}).items()):
        flag = "--bind" if inside in writable else "--ro-bind"
        cmd += [flag, str(host), _inside(inside)]
    cmd += ["--unshare-all", "--unshare-user", *(["--share-net"] if network else [])]
    cmd += ["--as-pid-1", "--uid", str(uid), "--gid", str(gid), "--die-with-parent"]
    cmd += ["--clearenv"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    return [*cmd, "--chdir", cwd, "--", *argv]


def run_in_image(
    rootfs: Path,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    uid: int = DEFAULT_UID,
    gid: int | None = None,
    binds: Mapping[str, Path] | None = None,
    writable: Sequence[str] = (),
    cwd: str = "/",
    network: bool = True,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the image (see the module docstring); the caller waits or stops it."""
    gid = uid if gid is None else gid
    cmd = bwrap_argv(
        rootfs,
        argv,
        env=env,
        uid=uid,
        gid=gid,
        binds=binds,
        writable=writable,
        cwd=cwd,
        network=network,
    )
    # The host-side ids are the container's ids too: bwrap then needs no privilege, and the
    # process cannot own anything of the image.
    return subprocess.Popen(
        cmd,
        user=uid,
        group=gid,
        extra_groups=[],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


def pid1(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """The host pid of the sandboxed command (PID 1 inside), once bwrap has started it."""

    def child() -> int:
        if proc.poll() is not None:
            raise ProcessExited(f"bwrap (pid {proc.pid}) exited with {proc.returncode}")
        found = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        return int(found[0]) if found else 0

    return wait_for(
        child,
        timeout,
        f"bwrap (pid {proc.pid}) to start its command",
        interval=0.01,
        max_interval=0.1,
        retry_on=(OSError,),
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM to PID 1 as a kubelet would, SIGKILL after ``timeout``; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessExited, WaitTimeout, ProcessLookupError):
            os.kill(pid1(proc, timeout=1.0), signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(10)
