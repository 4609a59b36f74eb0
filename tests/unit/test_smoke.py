"""smoke.py against scripted upstreams (httpx.MockTransport): the read-back paths the local
world does not take (a Langfuse v3 server without the v2 API, a trace that never gets its output,
Langfuse 5xx that clears), and the settings rules. The real-world runs are in
tests/e2e/test_smoke_command.py and tests/e2e/test_helm_test.py."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable

import httpx
import pytest
from openwebui_langfuse import smoke
from openwebui_langfuse.clients.openwebui import ApiKeyAuth, CredentialsAuth

SECRET = "sk-lf-unit-secret"


def _target(timeout: float = 3.0) -> smoke.SmokeTarget:
    return smoke.SmokeTarget(
        openwebui_url="http://owui.test",
        openwebui_auth=ApiKeyAuth("sk-owui-unit"),
        langfuse_host="http://lf.test",
        langfuse_public_key="pk-lf-unit",
        langfuse_secret_key=SECRET,
        model="m",
        timeout=timeout,
    )


class Upstreams:
    """Open WebUI answers chats; Langfuse answers per the given handler."""

    def __init__(self, langfuse: Callable[[httpx.Request, str], httpx.Response]) -> None:
        self.langfuse = langfuse
        self.marker = ""
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.host == "owui.test":
            body = json.loads(request.content)
            self.marker = re.search(r"owl-smoke-[0-9a-f]+", body["messages"][0]["content"])[0]
            return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}}]})
        return self.langfuse(request, self.marker)


def _run(upstreams: Upstreams, timeout: float = 3.0) -> smoke.SmokeResult:
    return smoke.run_smoke_test(
        _target(timeout), say=lambda line: None, transport=httpx.MockTransport(upstreams)
    )


def test_v3_server_falls_back_to_the_v1_reads() -> None:
    def langfuse(request: httpx.Request, marker: str) -> httpx.Response:
        path = request.url.path
        if path == "/api/public/v2/observations":
            return httpx.Response(404, json={"message": "not found"})
        if path == "/api/public/observations":
            return httpx.Response(
                200,
                json={
                    "data": [
                        {
                            "id": "o1",
                            "traceId": "t1",
                            "type": "GENERATION",
                            "model": "m",
                            "input": [{"role": "user", "content": marker}],
                            "output": "hi",
                            "usageDetails": {"input": 3, "output": 1},
                        },
                    ],
                    "meta": {},
                },
            )
        if path == "/api/public/traces/t1":
            return httpx.Response(
                200,
                json={
                    "id": "t1",
                    "name": "open-webui api request",
                    "userId": "u1",
                    "sessionId": None,
                },
            )
        return httpx.Response(500)

    upstreams = Upstreams(langfuse)
    result = _run(upstreams)
    assert result.trace.trace_id == "t1"
    assert result.trace.api == "/api/public/observations"
    assert result.trace.user_id == "u1"
    assert dict(result.trace.usage) == {"input": 3, "output": 1}
    assert upstreams.paths.count("/api/public/v2/observations") == 1  # asked once, then v1


def test_trace_without_output_says_the_outlet_did_not_run() -> None:
    def langfuse(request: httpx.Request, marker: str) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "data": [
                    {
                        "id": "o1",
                        "traceId": "t1",
                        "type": "GENERATION",
                        "input": json.dumps([{"content": marker}]),
                        "output": None,
                    },
                ],
                "meta": {},
            },
        )

    with pytest.raises(
        smoke.SmokeFailed, match="without output: Open WebUI did not run the outlet"
    ):
        _run(Upstreams(langfuse), timeout=1.5)


def test_langfuse_5xx_is_polled_through() -> None:
    calls = {"n": 0}

    def langfuse(request: httpx.Request, marker: str) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            return httpx.Response(503)
        return httpx.Response(
            200,
            json={
                "data": [
                    {
                        "id": "o1",
                        "traceId": "t9",
                        "type": "GENERATION",
                        "traceName": "n",
                        "input": json.dumps([{"content": marker}]),
                        "output": '"hi"',
                    },
                ],
                "meta": {},
            },
        )

    result = _run(Upstreams(langfuse), timeout=10)
    assert result.trace.trace_id == "t9"
    assert result.trace.output == "hi"  # v2's raw JSON string, decoded for display
    assert calls["n"] == 3


def test_a_non_json_langfuse_is_named() -> None:
    def langfuse(request: httpx.Request, marker: str) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>")

    with pytest.raises(smoke.SmokeFailed, match="not JSON"):
        _run(Upstreams(langfuse))


def _args(**overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    smoke.add_arguments(parser)
    args = parser.parse_args([])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_settings_from_environment_and_files(tmp_path: object) -> None:
    env = {
        "OPENWEBUI_LANGFUSE_SMOKE_OPEN_WEBUI_URL": "http://owui.test",
        "OPENWEBUI_LANGFUSE_SMOKE_OPEN_WEBUI_EMAIL": "a@b.test",
        "OPENWEBUI_LANGFUSE_SMOKE_OPEN_WEBUI_PASSWORD": "pw",
        "OPENWEBUI_LANGFUSE_SMOKE_LANGFUSE_HOST": "http://lf.test",
        "OPENWEBUI_LANGFUSE_SMOKE_LANGFUSE_PUBLIC_KEY": "pk-lf-x",
        "OPENWEBUI_LANGFUSE_SMOKE_LANGFUSE_SECRET_KEY": SECRET,
        "OPENWEBUI_LANGFUSE_SMOKE_MODEL": "m",
    }
    target = smoke.target_from_args(_args(), env)
    assert target.openwebui_auth == CredentialsAuth("a@b.test", "pw")
    assert target.model == "m"
    assert SECRET not in repr(target) and "pw" not in repr(target.openwebui_auth)


def test_only_one_half_of_the_credentials_is_a_usage_error() -> None:
    with pytest.raises(smoke.UsageError, match="both an email and a password"):
        smoke.target_from_args(_args(open_webui_email="a@b.test"), {})


def test_namespace_without_name_is_a_usage_error() -> None:
    with pytest.raises(smoke.UsageError, match="go together"):
        smoke.target_from_args(_args(namespace="ns"), {})
