"""``openwebui-langfuse smoke-test`` as a process, settings from flags, files and environment,
against the real Open WebUI and Pipelines and the Langfuse stand-in (no cluster: the filter and
the connection are set up by hand here, as a person following the manual guide would).

Each failure gives exit code 1 and one ``FAIL:`` line that names the cause; usage errors give 2;
no secret ever appears in the output.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import pytest

from tests.e2e.stack import ECHO_MODEL, ECHO_PIPE
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.manifest import World
from tests.world.open_webui import OpenWebUI
from tests.world.pipelines import PipelinesServer

pytestmark = [pytest.mark.world, pytest.mark.timeout(180)]

FILTER_ID = "langfuse_smoke"


@dataclass
class Traced:
    """Open WebUI -> Pipelines (echo model + the bundled filter) -> the stand-in."""

    open_webui: OpenWebUI
    pipelines: PipelinesServer
    langfuse: LangfuseStandIn
    api_key: str
    tmp: Path

    def secret_file(self, name: str, value: str) -> str:
        path = self.tmp / name
        path.write_text(value + "\n")
        return str(path)

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: str = "30"
    ) -> subprocess.CompletedProcess[str]:
        cli = World.load().venv("project") / "bin" / "openwebui-langfuse"
        return subprocess.run(
            [str(cli), "smoke-test", *args, "--timeout", timeout],
            env={"PATH": os.environ["PATH"], **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def flags(
        self, *, secret_key: str | None = None, api_key: str | None = None, model: str = ECHO_MODEL
    ) -> list[str]:
        return [
            "--open-webui-url",
            self.open_webui.url,
            "--open-webui-api-key-file",
            self.secret_file("owui-key", api_key or self.api_key),
            "--langfuse-host",
            self.langfuse.url,
            "--langfuse-public-key",
            self.langfuse.public_key,
            "--langfuse-secret-key-file",
            self.secret_file("lf-secret", secret_key or self.langfuse.secret_key),
            "--model",
            model,
        ]

    def secrets(self) -> list[str]:
        return [
            self.api_key,
            self.langfuse.secret_key,
            self.pipelines.api_key,
            self.open_webui.admin_password,
        ]


@pytest.fixture
def traced(
    open_webui: OpenWebUI, pipelines: PipelinesServer, langfuse: LangfuseStandIn, tmp_path: Path
) -> Iterator[Traced]:
    pipelines.upload(ECHO_MODEL, ECHO_PIPE).raise_for_status()
    source = (files("openwebui_langfuse.filters") / "langfuse_tracing_filter.py").read_text()
    pipelines.upload(FILTER_ID, source).raise_for_status()
    with pipelines.client() as http:
        valves = http.get(f"/{FILTER_ID}/valves").json()
        valves.update(
            public_key=langfuse.public_key, secret_key=langfuse.secret_key, host=langfuse.url
        )
        http.post(f"/{FILTER_ID}/valves/update", json=valves).raise_for_status()
    open_webui.set_connections([pipelines.url], [pipelines.api_key], {"0": {"enable": True}})
    with open_webui.client() as http:
        http.get("/api/models", params={"refresh": "true"}).raise_for_status()
    try:
        yield Traced(open_webui, pipelines, langfuse, open_webui.mint_api_key(), tmp_path)
    finally:
        open_webui.set_connections([], [])


def _verdict(run: subprocess.CompletedProcess[str]) -> str:
    lines = run.stdout.strip().splitlines()
    return lines[-1] if lines else ""


def _clean(run: subprocess.CompletedProcess[str], secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in run.stdout + run.stderr


def test_pass_with_flags_and_files(traced: Traced) -> None:
    run = traced.run(*traced.flags())
    assert run.returncode == 0, run.stdout + run.stderr
    verdict = _verdict(run)
    assert verdict.startswith("PASS: a chat with 'owl_echo' through Open WebUI reached Langfuse")
    trace_id = verdict.split(" as trace ")[1].split()[0]
    trace = traced.langfuse.trace(trace_id)
    assert trace is not None
    observations = traced.langfuse.observations(trace_id=trace_id)
    assert any("owl-smoke-" in str(o.get("input")) for o in observations)
    assert "usage     input=" in run.stdout
    _clean(run, traced.secrets())


def test_pass_with_credentials_from_environment(traced: Traced) -> None:
    env = {
        "OPENWEBUI_LANGFUSE_SMOKE_OPEN_WEBUI_URL": traced.open_webui.url,
        "OPENWEBUI_LANGFUSE_SMOKE_OPEN_WEBUI_EMAIL": traced.open_webui.admin_email,
        "OPENWEBUI_LANGFUSE_SMOKE_OPEN_WEBUI_PASSWORD": traced.open_webui.admin_password,
        "OPENWEBUI_LANGFUSE_SMOKE_LANGFUSE_HOST": traced.langfuse.url,
        "OPENWEBUI_LANGFUSE_SMOKE_LANGFUSE_PUBLIC_KEY": traced.langfuse.public_key,
        "OPENWEBUI_LANGFUSE_SMOKE_LANGFUSE_SECRET_KEY": traced.langfuse.secret_key,
    }
    run = traced.run(env=env)  # no --model: the first model Open WebUI lists
    assert run.returncode == 0, run.stdout + run.stderr
    assert _verdict(run).startswith("PASS: a chat with 'owl_echo'")
    _clean(run, traced.secrets())


def test_fail_wrong_langfuse_secret(traced: Traced) -> None:
    run = traced.run(*traced.flags(secret_key="sk-lf-wrong"))
    assert run.returncode == 1
    assert _verdict(run) == (
        "FAIL: Langfuse refused the project keys on /api/public/v2/observations (HTTP 401)"
    )
    _clean(run, [*traced.secrets(), "sk-lf-wrong"])


def test_fail_wrong_open_webui_key(traced: Traced) -> None:
    run = traced.run(*traced.flags(api_key="sk-wrong"))
    assert run.returncode == 1
    assert _verdict(run) == "FAIL: Open WebUI refused the credentials (HTTP 401)"
    _clean(run, [*traced.secrets(), "sk-wrong"])


def test_fail_unknown_model(traced: Traced) -> None:
    run = traced.run(*traced.flags(model="no-such-model"))
    assert run.returncode == 1
    verdict = _verdict(run)
    assert verdict.startswith(
        "FAIL: the chat with model 'no-such-model' failed: Open WebUI answered HTTP 4"
    ), verdict
    _clean(run, traced.secrets())


def test_fail_when_the_filter_is_missing(traced: Traced) -> None:
    with traced.pipelines.client() as http:
        http.request("DELETE", "/pipelines/delete", json={"id": FILTER_ID}).raise_for_status()
    with traced.open_webui.client() as http:
        http.get("/api/models", params={"refresh": "true"}).raise_for_status()
    run = traced.run(*traced.flags(), timeout="4")
    assert run.returncode == 1
    verdict = _verdict(run)
    assert verdict.startswith(
        "FAIL: the chat went through Open WebUI, but no trace with marker owl-smoke-"
    ), verdict
    assert "within 4s" in verdict
    _clean(run, traced.secrets())


def test_usage_error_names_what_is_missing(traced: Traced) -> None:
    run = traced.run("--open-webui-url", traced.open_webui.url)
    assert run.returncode == 2
    assert "missing: --langfuse-host, --langfuse-public-key, --langfuse-secret-key-file" in (
        run.stderr
    )
