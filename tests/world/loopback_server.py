"""What the uvicorn launchers (Pipelines, Open WebUI) share: a loopback port kept across
restarts, a temp directory removed on stop, and one ``Process`` with a readiness check.

Subclasses name themselves, say which subdirectories their temp directory holds, and
implement ``_ready`` and ``start``: ``_claim_port_and_dir``, build the environment (it names
paths in the temp directory), then ``_run_uvicorn``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Self

from tests.world.manifest import World
from tests.world.proc import LOOPBACK, Process, ensure_port_free, free_port


class LoopbackServer:
    name: ClassVar[str]  # in logs and errors, e.g. "Pipelines server"
    tmp_prefix: ClassVar[str]  # of the temp directory, e.g. "owl-pipelines-"
    log_name: ClassVar[str]  # the log file inside the temp directory
    subdirs: ClassVar[tuple[str, ...]]  # made in the temp directory; "cwd" is the working dir

    def __init__(
        self,
        world: World,
        *,
        port: int | None,
        base_dir: Path | None,
        ready_timeout: float,
        env: dict[str, str] | None,
    ) -> None:
        self.world = world
        self.port = port
        self.base_dir = base_dir
        self.ready_timeout = ready_timeout
        self.extra_env = dict(env or {})
        self.tmp: Path | None = None
        self.process: Process | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "server not started"
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.tmp is not None, "server not started"
        return self.tmp / self.log_name

    def start(self) -> Self:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _claim_port_and_dir(self) -> Path:
        """Pick a free port (or check the given one) and make the temp directory once;
        a restart keeps both."""
        if self.port is None:
            self.port = free_port()
        else:
            ensure_port_free(self.port, self.name)
        if self.tmp is None:
            self.tmp = Path(tempfile.mkdtemp(prefix=self.tmp_prefix, dir=self.base_dir))
            for sub in self.subdirs:
                (self.tmp / sub).mkdir()
        return self.tmp

    def _run_uvicorn(
        self,
        python: Path,
        app: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str],
        ready_what: str,
    ) -> None:
        """Start ``python -m uvicorn <app...>`` on the claimed port; wait until ``_ready``."""
        assert self.tmp is not None, "call _claim_port_and_dir first"
        self.process = Process(
            self.name,
            [python, "-m", "uvicorn", *app, "--host", LOOPBACK, "--port", str(self.port)],
            log_path=self.log_path,
            env=env,
            cwd=self.tmp / "cwd",
            ready=self._ready,
            ready_timeout=self.ready_timeout,
            ready_what=ready_what,
        )
        self.process.start()

    def stop(self, *, keep_files: bool = False) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        if self.tmp is not None and not keep_files:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
