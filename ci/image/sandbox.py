"""Run a command inside the root filesystem being built, with bubblewrap.

The image's own Python (Debian's 3.11) runs pip, setuptools and compileall, so installed
scripts get its interpreter and compiled files its magic number; the host's Python never
touches the tree. No network (--unshare-all): everything comes from bind-mounted caches.
Mount points live under /tmp, a tmpfs of the sandbox, so none is left in the tree.
"""

from __future__ import annotations

from pathlib import Path

from proc import run

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run_in_tree(
    step: str,
    rootfs: Path,
    argv: list[str],
    log: Path,
    *,
    ro_binds: dict[str, Path] | None = None,
    binds: dict[str, Path] | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run ``argv`` as root in ``rootfs`` (writable); ``binds`` map /tmp/... to host paths."""
    cmd = [
        "bwrap",
        "--bind",
        str(rootfs),
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--unshare-all",
        "--die-with-parent",
        "--clearenv",
    ]
    for inside, host in sorted((ro_binds or {}).items()):
        cmd += ["--ro-bind", str(host), _under_tmp(inside)]
    for inside, host in sorted((binds or {}).items()):
        cmd += ["--bind", str(host), _under_tmp(inside)]
    for key, value in sorted(
        {"PATH": PATH, "HOME": "/tmp", "LC_ALL": "C.UTF-8", **(env or {})}.items()
    ):
        cmd += ["--setenv", key, value]
    run(step, [*cmd, "--chdir", "/tmp", "--", *argv], log)


def _under_tmp(path: str) -> str:
    if not path.startswith("/tmp/"):
        raise ValueError(f"bind target {path} must be under /tmp (the sandbox's tmpfs)")
    return path
