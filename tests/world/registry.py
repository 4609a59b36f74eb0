"""A real OCI registry on a free loopback port: ``crane registry serve`` (go-containerregistry's
registry, the one crane's own tests use), blobs in memory, gone when it stops.

It speaks the OCI distribution API over plain HTTP on 127.0.0.1, which is what `crane push`,
`helm push --plain-http` and `helm install oci://... --plain-http` talk to. Ready when
``GET /v2/`` answers 200.

By hand: ``python -m tests.world.registry --help``.
"""

from __future__ import annotations

import argparse
from typing import Self

import httpx

from tests.world.loopback_server import LoopbackServer
from tests.world.manifest import World
from tests.world.proc import LOOPBACK, Process, serve_until_interrupted


class Registry(LoopbackServer):
    """One in-memory registry; ``host`` is what image references and oci:// URLs start with."""

    name = "OCI registry"
    tmp_prefix = "owl-registry-"
    log_name = "registry.log"
    subdirs = ()

    def __init__(self, world: World, *, ready_timeout: float = 30.0) -> None:
        super().__init__(world, port=None, base_dir=None, ready_timeout=ready_timeout, env=None)

    @property
    def host(self) -> str:
        assert self.port is not None, "registry not started"
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> Self:
        self._claim_port_and_dir()
        self.process = Process(
            self.name,
            [self.world.binary("crane"), "registry", "serve", "--address", self.host],
            log_path=self.log_path,
            ready=self._ready,
            ready_timeout=self.ready_timeout,
            ready_what=f"answering {self.url}/v2/",
        )
        self.process.start()
        return self

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/v2/", timeout=2).status_code == 200

    def tags(self, repository: str) -> list[str]:
        """The tags the registry holds for ``repository`` (``[]`` when it has none)."""
        response = httpx.get(f"{self.url}/v2/{repository}/tags/list", timeout=5)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return list(response.json().get("tags") or [])


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
