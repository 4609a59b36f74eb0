"""A real OCI registry on a free loopback port: ``crane registry serve`` (go-containerregistry's
registry, the one crane's own tests use), blobs in memory, gone when it stops.

It speaks the OCI distribution API over plain HTTP on 127.0.0.1, which is what `crane push`,
`helm push --plain-http` and `helm install oci://... --plain-http` talk to. Ready when
``GET /v2/`` answers 200.

By hand: ``python -m tests.world.registry --help``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Self

import httpx

from tests.world.manifest import World
from tests.world.proc import LOOPBACK, Process, free_port, serve_until_interrupted


class Registry:
    """One in-memory registry; ``host`` is what image references and oci:// URLs start with."""

    def __init__(self, world: World, *, ready_timeout: float = 30.0) -> None:
        self.world = world
        self.ready_timeout = ready_timeout
        self.port: int | None = None
        self.tmp: Path | None = None
        self.process: Process | None = None

    @property
    def host(self) -> str:
        assert self.port is not None, "registry not started"
        return f"{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.tmp is not None, "registry not started"
        return self.tmp / "registry.log"

    def start(self) -> Self:
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="owl-registry-"))
        self.process = Process(
            "OCI registry",
            [self.world.binary("crane"), "registry", "serve", "--address", self.host],
            log_path=self.log_path,
            ready=self._ready,
            ready_timeout=self.ready_timeout,
            ready_what=f"answering http://{self.host}/v2/",
        )
        self.process.start()
        return self

    def _ready(self) -> bool:
        return httpx.get(f"http://{self.host}/v2/", timeout=2).status_code == 200

    def tags(self, repository: str) -> list[str]:
        """The tags the registry holds for ``repository`` (``[]`` when it has none)."""
        response = httpx.get(f"http://{self.host}/v2/{repository}/tags/list", timeout=5)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json().get("tags") or [])

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python -m tests.world.registry",
        description="Serve an in-memory OCI registry on a free loopback port until Ctrl-C.",
    ).parse_args(argv)
    world = World.load()
    return serve_until_interrupted(
        lambda: Registry(world), lambda r: f"OCI registry at http://{r.host} (plain HTTP)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
