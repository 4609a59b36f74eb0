"""The real Open WebUI (PyPI wheel, slim requirements) on a free loopback port.

Runs ``<open_webui venv>/bin/python -m uvicorn open_webui.main:app`` the way ``open-webui
serve`` does (``FROM_INIT_PY=true`` makes it serve the frontend bundled in the wheel), with a
temp ``DATA_DIR`` (SQLite), a temp ``STATIC_DIR`` (it copies assets there at start, which would
otherwise write into the cached venv), a random ``WEBUI_SECRET_KEY`` and an admin created from
``WEBUI_ADMIN_*`` on first boot. Ready when ``GET /health`` answers 200.

Offline: ``OFFLINE_MODE``/``HF_HUB_OFFLINE``/``USE_SLIM_DOCKER`` as in
docs/upstream/open-webui.md, "Running it for tests"; no Ollama, no version check, and HTTP(S)
proxies pointing at a closed loopback port (loopback exempt), so any outbound call a library
makes fails at once instead of waiting on DNS.

Connections: an empty ``OPENAI_API_BASE_URLS`` means ``https://api.openai.com/v1`` to Open
WebUI (config.py: empty list var -> ``OPENAI_API_BASE_URL`` -> the OpenAI URL; empty entries
too), so no environment value gives "no connection". It boots with a closed loopback URL and,
once ready, the launcher replaces the list with an empty one through the admin API
(``clear_connections=True``); tests register what they need.

By hand: ``python -m tests.world.open_webui --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import httpx

from tests.world.loopback_server import LoopbackServer
from tests.world.manifest import World
from tests.world.proc import LOOPBACK, serve_until_interrupted

# A port nothing listens on: connection refused at once, never a request that leaves the host.
CLOSED_URL = f"http://{LOOPBACK}:9"
ADMIN_EMAIL = "admin@owl.test"
ADMIN_NAME = "OWL Admin"


class OpenWebUI(LoopbackServer):
    """One Open WebUI server with a known admin."""

    name = "Open WebUI"
    tmp_prefix = "owl-open-webui-"
    log_name = "open-webui.log"
    subdirs = ("data", "static", "cwd")

    def __init__(
        self,
        world: World,
        *,
        port: int | None = None,
        base_dir: Path | None = None,
        persistent_config: bool = True,
        clear_connections: bool = True,
        ready_timeout: float = 120.0,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(world, port=port, base_dir=base_dir, ready_timeout=ready_timeout, env=env)
        self.persistent_config = persistent_config
        self.clear_connections = clear_connections
        self.admin_email = ADMIN_EMAIL
        self.admin_password = secrets.token_urlsafe(18)
        self.secret_key = secrets.token_urlsafe(32)
        self._token: str | None = None

    @property
    def data_dir(self) -> Path:
        assert self.tmp is not None, "server not started"
        return self.tmp / "data"

    def environment(self) -> dict[str, str]:
        assert self.tmp is not None
        no_proxy = f"{LOOPBACK},localhost,::1"
        return {
            "FROM_INIT_PY": "true",
            "DATA_DIR": str(self.data_dir),
            "STATIC_DIR": str(self.tmp / "static"),
            "WEBUI_SECRET_KEY": self.secret_key,
            "WEBUI_ADMIN_EMAIL": self.admin_email,
            "WEBUI_ADMIN_PASSWORD": self.admin_password,
            "WEBUI_ADMIN_NAME": ADMIN_NAME,
            "ENABLE_API_KEYS": "true",
            "ENABLE_PERSISTENT_CONFIG": "true" if self.persistent_config else "false",
            "USE_SLIM_DOCKER": "true",
            "OFFLINE_MODE": "true",
            "HF_HUB_OFFLINE": "1",
            "ENABLE_OLLAMA_API": "false",
            "ENABLE_OPENAI_API": "true",
            "OPENAI_API_BASE_URLS": CLOSED_URL,
            "OPENAI_API_KEYS": "none",
            "ENABLE_VERSION_UPDATE_CHECK": "false",
            "ANONYMIZED_TELEMETRY": "false",
            "DO_NOT_TRACK": "true",
            "SCARF_NO_ANALYTICS": "true",
            "HTTP_PROXY": CLOSED_URL,
            "HTTPS_PROXY": CLOSED_URL,
            "NO_PROXY": no_proxy,
            "http_proxy": CLOSED_URL,
            "https_proxy": CLOSED_URL,
            "no_proxy": no_proxy,
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **self.extra_env,
        }

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Self:
        python = self.world.python("open_webui")
        self._claim_port_and_dir()
        self._run_uvicorn(
            python,
            ["open_webui.main:app"],
            env=self.environment(),
            ready_what=f"healthy (GET {self.url}/health)",
        )
        self._token = None
        if self.clear_connections:
            try:
                self.set_connections([], [])
            except BaseException:
                self.stop()
                raise
        return self

    def _ready(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=2).status_code == 200

    def restart(self) -> Self:
        """Stop and start on the same port with the same data (config persistence tests)."""
        self.stop(keep_files=True)
        return self.start()

    # -- auth ----------------------------------------------------------------------------------

    def sign_in(self, email: str | None = None, password: str | None = None) -> str:
        """A JWT for the admin (or the given user) from /api/v1/auths/signin."""
        response = httpx.post(
            f"{self.url}/api/v1/auths/signin",
            timeout=30,
            json={"email": email or self.admin_email, "password": password or self.admin_password},
        )
        response.raise_for_status()
        return str(response.json()["token"])

    @property
    def token(self) -> str:
        """The admin's JWT, signed in once and reused."""
        if self._token is None:
            self._token = self.sign_in()
        return self._token

    def mint_api_key(self, token: str | None = None) -> str:
        """Create (or rotate) the admin's ``sk-`` API key; needs ENABLE_API_KEYS (set)."""
        response = httpx.post(
            f"{self.url}/api/v1/auths/api_key",
            timeout=30,
            headers={"Authorization": f"Bearer {token or self.token}"},
        )
        response.raise_for_status()
        return str(response.json()["api_key"])

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client authenticated as the admin (or with ``token``)."""
        return httpx.Client(
            base_url=self.url,
            timeout=60,
            headers={"Authorization": f"Bearer {token or self.token}"},
            **kwargs,
        )

    # -- models ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def workspace_model(self, model_id: str, base_model_id: str, name: str) -> Iterator[str]:
        """A custom Workspace model on ``base_model_id`` (as Admin → Models → new), in Open
        WebUI's model list for the ``with`` block, deleted afterwards."""
        with self.client() as http:
            http.delete("/api/v1/models/model/delete", params={"id": model_id})
            made = http.post(
                "/api/v1/models/create",
                json={
                    "id": model_id,
                    "base_model_id": base_model_id,
                    "name": name,
                    "meta": {},
                    "params": {},
                },
            )
            assert made.status_code == 200, made.text
            http.get("/api/models", params={"refresh": "true"})
        try:
            yield model_id
        finally:
            with self.client() as http:
                http.delete("/api/v1/models/model/delete", params={"id": model_id})

    # -- connections ---------------------------------------------------------------------------

    def set_connections(
        self, urls: list[str], keys: list[str], configs: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Replace every OpenAI-API connection (``POST /openai/config/update``)."""
        with self.client() as http:
            response = http.post(
                "/openai/config/update",
                json={
                    "ENABLE_OPENAI_API": True,
                    "OPENAI_API_BASE_URLS": urls,
                    "OPENAI_API_KEYS": keys,
                    "OPENAI_API_CONFIGS": configs or {},
                },
            )
            response.raise_for_status()
            result: dict[str, Any] = response.json()
            return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.world.open_webui",
        description="Start the real Open WebUI on a loopback port with a known admin, print "
        "its URL and credentials, wait for Ctrl-C, then stop it and remove its "
        "data.",
    )
    parser.add_argument("--port", type=int, help="port (default: a free one)")
    parser.add_argument(
        "--no-persistent-config", action="store_true", help="ENABLE_PERSISTENT_CONFIG=false"
    )
    parser.add_argument("--api-key", action="store_true", help="also mint an admin sk- key")
    args = parser.parse_args(argv)

    def describe(o: OpenWebUI) -> str:
        lines = [
            f"Open WebUI: {o.url}",
            f"  admin: {o.admin_email} / {o.admin_password}",
            f"  DATA_DIR={o.data_dir}",
            f"  log: {o.log_path}",
        ]
        if args.api_key:
            lines.append(f"  admin API key: {o.mint_api_key()}")
        return "\n".join(lines)

    return serve_until_interrupted(
        lambda: OpenWebUI(
            World.load(), port=args.port, persistent_config=not args.no_persistent_config
        ),
        describe,
    )


if __name__ == "__main__":
    raise SystemExit(main())
