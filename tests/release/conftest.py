"""Release fixtures: the project's images, built once per session by ci/image/build.py.

``operator_image`` and ``pipelines_image`` build their image of the commit checked out when
the session starts (pinned by sha, so a commit landing meanwhile changes nothing) into a
session temp directory: the OCI layout, its digest, the build's info JSON and the SPDX SBOM.
Each build runs with canary secrets in its environment, which must never reach the image
(``BuiltImage.canaries``). ``operator_rootfs`` and ``pipelines_rootfs`` are those images
unpacked by umoci (an independent reader of the layout) into a directory any uid can
traverse, for ``sandbox.run_in_image``.

Registry and install tests share these fixtures: push ``operator_image.layout`` (tag
``operator_image.tag``) and pin ``operator_image.digest``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.release.layout import Layout
from tests.world.manifest import World

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "ci" / "image" / "build.py"
# A cold build (empty .deb and wheel caches) measured about 3 minutes on 2 cores.
BUILD_TIMEOUT = 900


@dataclass(frozen=True)
class BuiltImage:
    """One image as ``ci/image/build.py IMAGE --output DIR`` left it."""

    name: str
    commit: str
    output: Path
    seconds: float
    canaries: tuple[str, ...] = field(default=())

    @property
    def layout(self) -> Layout:
        return Layout(self.output / f"{self.name}-oci")

    @property
    def digest(self) -> str:
        return (self.output / f"{self.name}.digest").read_text().strip()

    @property
    def info(self) -> dict[str, Any]:
        return dict(json.loads((self.output / f"{self.name}.json").read_text()))

    @property
    def tag(self) -> str:
        return str(self.info["tag"])

    @property
    def sbom(self) -> Path:
        return self.output / f"{self.name}.sbom.spdx.json"

    def env(self) -> dict[str, str]:
        """The image's Env as a mapping, what a runtime starts the entrypoint with."""
        pairs = (item.partition("=") for item in self.layout.config()["config"]["Env"])
        return {key: value for key, _, value in pairs}


def head_commit() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def build_image(
    name: str, output: Path, commit: str, *, sbom: bool = True, offline: bool = False
) -> BuiltImage:
    """Run the builder as the release does; a failure shows the end of its output.

    ``offline`` runs it in a network namespace of its own (loopback only, down): a build with
    warm caches must not need the network.
    """
    canaries = (f"sk-lf-{uuid.uuid4()}", f"owl-canary-{secrets.token_hex(16)}")
    env = {
        **os.environ,
        # Secrets a release machine may well have in its environment.
        "LANGFUSE_SECRET_KEY": canaries[0],
        "PIPELINES_API_KEY": canaries[1],
    }
    argv = [sys.executable, str(BUILD), name, "--output", str(output), "--commit", commit]
    if not sbom:
        argv.append("--no-sbom")
    if offline:
        argv = ["unshare", "--net", *argv]
    started = time.monotonic()
    proc = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        pytest.fail(f"{BUILD.name} {name} failed (exit {proc.returncode}):\n{tail}")
    return BuiltImage(name, commit, output, time.monotonic() - started, canaries)


@pytest.fixture(scope="session")
def release_commit() -> str:
    """The commit every image of this session is built from."""
    return head_commit()


@pytest.fixture(scope="session")
def operator_image(tmp_path_factory: pytest.TempPathFactory, release_commit: str) -> BuiltImage:
    return build_image("operator", tmp_path_factory.mktemp("operator-image"), release_commit)


def unpack(image: BuiltImage) -> Iterator[Path]:
    """The image unpacked by umoci under a directory every uid can traverse; removed after."""
    return unpack_layout(image.layout.path, image.tag, image.name)


def unpack_layout(layout: Path, tag: str, name: str) -> Iterator[Path]:
    """A layout (the session's build, or one pulled back from a release) unpacked by umoci, as
    ``unpack`` does; a generator, for ``yield from`` or ``contextlib.contextmanager``."""
    umoci = World.load().binary("umoci")
    base = Path(tempfile.mkdtemp(prefix=f"owl-{name}-rootfs-"))
    try:
        bundle = base / "bundle"
        subprocess.run(
            [str(umoci), "unpack", "--image", f"{layout}:{tag}", str(bundle)],
            check=True,
            capture_output=True,
        )
        # mkdtemp and umoci make their directories 0700; a pod's uid must reach its root.
        for path in (base, bundle):
            path.chmod(path.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)
        yield bundle / "rootfs"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def operator_rootfs(operator_image: BuiltImage) -> Iterator[Path]:
    yield from unpack(operator_image)


@pytest.fixture(scope="session")
def pipelines_image(tmp_path_factory: pytest.TempPathFactory, release_commit: str) -> BuiltImage:
    return build_image("pipelines", tmp_path_factory.mktemp("pipelines-image"), release_commit)


@pytest.fixture(scope="session")
def pipelines_rootfs(pipelines_image: BuiltImage) -> Iterator[Path]:
    yield from unpack(pipelines_image)
