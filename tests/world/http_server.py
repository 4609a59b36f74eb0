"""Small stdlib HTTP servers for tests: a request handler served on a free loopback port by a
background thread, and a read-only directory served that way (what GitHub is in the Langfuse
guide, when Pipelines adds a filter by URL)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseRequestHandler
from typing import Any, Self

from tests.world.proc import LOOPBACK


class LoopbackHTTPServer:
    """``handler`` served on a free loopback port while the context is open."""

    def __init__(
        self, handler: Callable[..., BaseRequestHandler], *, poll_interval: float = 0.05
    ) -> None:
        self._server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _QuietFileHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        pass


class StaticFiles(LoopbackHTTPServer):
    """One directory served read-only (GET/HEAD), without request logging."""

    def __init__(self, directory: Path) -> None:
        super().__init__(functools.partial(_QuietFileHandler, directory=str(directory)))
