"""`LangfuseStandIn`: one stand-in served on a loopback port from a background thread.

The server runs its own event loop in its own thread, so tests (sync or async) and the
real SDKs talk to it over real HTTP; the Python API below reads and switches the same
state the HTTP routes use.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

from .app import build_app
from .keys import Project
from .state import FAILURE_MODES, HEALTH_FAILURE_MODES, StandInState, check_mode
from .values import new_id

T = TypeVar("T")
START_TIMEOUT_SECONDS = 10.0
# Handlers still sleeping in "slow" mode are cancelled after this on stop.
SHUTDOWN_GRACE_SECONDS = 0.5


def random_key_pair() -> tuple[str, str]:
    """A fresh `pk-lf-…`/`sk-lf-…` pair; random per test so SDK caches never collide."""
    return f"pk-lf-{secrets.token_hex(8)}", f"sk-lf-{secrets.token_hex(16)}"


class LangfuseStandIn:
    """A Langfuse server stand-in on `127.0.0.1`; use as a context manager.

    The first project added is the default one, exposed as `.public_key`, `.secret_key`
    and `.project_id` (what the `langfuse` fixture hands to tests).
    """

    def __init__(self, *, port: int = 0, version: str | None = None) -> None:
        self._requested_port = port
        self.state = StandInState()
        if version is not None:
            self.state.switches.version = version
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> LangfuseStandIn:
        if self._thread is not None:
            raise RuntimeError("Langfuse stand-in already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._requested_port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_site(sock))
            except BaseException as error:  # reported to the starting thread below
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._cleanup())
            loop.close()

        self._thread = threading.Thread(
            target=serve, name=f"langfuse-standin-{self._port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_SECONDS):
            raise RuntimeError(f"Langfuse stand-in did not start within {START_TIMEOUT_SECONDS}s")
        if failure:
            raise RuntimeError(f"Langfuse stand-in failed to start: {failure[0]!r}")
        return self

    async def _start_site(self, sock: socket.socket) -> None:
        # auto_decompress off: gzip handling is part of what the stand-in checks.
        self._runner = web.AppRunner(
            build_app(self.state),
            access_log=None,
            auto_decompress=False,
            shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> LangfuseStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- addressing and projects --------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("stand-in not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_project(
        self,
        public_key: str | None = None,
        secret_key: str | None = None,
        *,
        name: str = "standin-project",
        project_id: str | None = None,
    ) -> Project:
        """Register a key pair (random when not given) for a new project."""
        if public_key is None or secret_key is None:
            random_public, random_secret = random_key_pair()
            public_key = public_key or random_public
            secret_key = secret_key or random_secret
        project = Project(
            public_key=public_key,
            secret_key=secret_key,
            project_id=project_id or new_id(),
            name=name,
        )
        self.state.keys.add(project)
        return project

    @property
    def default_project(self) -> Project:
        projects = self.state.keys.projects()
        if not projects:
            raise RuntimeError("no project added to this stand-in")
        return projects[0]

    @property
    def public_key(self) -> str:
        return self.default_project.public_key

    @property
    def secret_key(self) -> str:
        return self.default_project.secret_key

    @property
    def project_id(self) -> str:
        return self.default_project.project_id

    @property
    def standin(self) -> LangfuseStandIn:
        """Itself, so `langfuse.standin` reads naturally where a fixture is passed on."""
        return self

    # --- switches -----------------------------------------------------------------------

    @property
    def version(self) -> str:
        return self.state.switches.version

    @version.setter
    def version(self, value: str) -> None:
        self.state.switches.version = value

    @property
    def failure(self) -> str | None:
        return self.state.switches.failure

    def set_failure(self, mode: str | None) -> None:
        """Make the authenticated routes answer `401`, `403`, `500`, `503`, `html` (a 200
        non-JSON page), `empty` (projects list `[]`), `slow` (answer after
        `slow_seconds`); None restores normal answers."""
        self.state.switches.failure = check_mode(mode, FAILURE_MODES)

    def set_health_failure(self, mode: str | None) -> None:
        """Make `GET /api/public/health` answer `500`, `503`, `html` or `slow`."""
        self.state.switches.health_failure = check_mode(mode, HEALTH_FAILURE_MODES)

    @property
    def slow_seconds(self) -> float:
        return self.state.switches.slow_seconds

    @slow_seconds.setter
    def slow_seconds(self, value: float) -> None:
        self.state.switches.slow_seconds = value

    @property
    def events_only(self) -> bool:
        return self.state.switches.events_only

    @events_only.setter
    def events_only(self, value: bool) -> None:
        self.state.switches.events_only = value

    @property
    def otlp(self) -> bool:
        """False: no OTLP endpoint (a Langfuse v2); pair it with a version such as 2.95.11."""
        return self.state.switches.otlp

    @otlp.setter
    def otlp(self, value: bool) -> None:
        self.state.switches.otlp = value

    # --- reads --------------------------------------------------------------------------

    def traces(self, project_id: str | None = None) -> list[dict[str, Any]]:
        return self.state.store.traces(project_id)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        return next((t for t in self.traces() if t["id"] == trace_id), None)

    def observations(
        self, trace_id: str | None = None, project_id: str | None = None
    ) -> list[dict[str, Any]]:
        return self.state.store.observations(project_id, trace_id)

    def scores(self, project_id: str | None = None) -> list[dict[str, Any]]:
        return self.state.store.scores(project_id)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request log (secrets redacted), oldest first."""
        return [entry.as_dict() for entry in self.state.log.entries()]

    def clear(self) -> None:
        """Forget stored data and the request log (keys and switches stay)."""
        self.state.store.clear()
        self.state.log.clear()

    def wait_for(
        self, check: Callable[[], T | None], *, timeout: float = 10.0, what: str = "condition"
    ) -> T:
        """Poll `check` until it returns something truthy, up to `timeout` seconds; for
        data that SDKs flush from background threads."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Langfuse stand-in: {what} not seen within {timeout}s")
            time.sleep(0.05)
