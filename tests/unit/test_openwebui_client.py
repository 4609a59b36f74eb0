"""The Open WebUI client against httpx.MockTransport: auth, re-sign-in, error mapping, no leaks."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from openwebui_langfuse.clients.openwebui import (
    ApiKeyAuth,
    CredentialsAuth,
    OpenAIConfig,
    OpenWebUIClient,
    OpenWebUIServerError,
    OpenWebUIUnauthorized,
    OpenWebUIUnexpectedResponse,
    OpenWebUIUnreachable,
    TokenCache,
)

BASE = "http://owui.test"
API_KEY = "sk-0123456789abcdef0123456789abcdef"
PASSWORD = "correct horse battery staple"
CONFIG = {
    "ENABLE_OPENAI_API": True,
    "OPENAI_API_BASE_URLS": ["http://p:9099"],
    "OPENAI_API_KEYS": ["pipelines-secret-key"],
    "OPENAI_API_CONFIGS": {"0": {"enable": True}},
}

Handler = Callable[[httpx.Request], httpx.Response]


def client(handler: Handler, auth: ApiKeyAuth | CredentialsAuth) -> OpenWebUIClient:
    return OpenWebUIClient(BASE, auth, transport=httpx.MockTransport(handler))


def assert_no_secret(text: str) -> None:
    for secret in (API_KEY, PASSWORD, "pipelines-secret-key", "jwt-"):
        assert secret not in text


async def test_api_key_is_sent_as_bearer() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json=CONFIG)

    async with client(handler, ApiKeyAuth(API_KEY)) as owui:
        config = await owui.get_openai_config()
    assert seen == [f"Bearer {API_KEY}"]
    assert config.base_urls == ["http://p:9099"]
    assert config.keys == ["pipelines-secret-key"]
    assert_no_secret(repr(config))


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_api_key_is_unauthorized_without_the_key(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": f"bad key {API_KEY}"})

    async with client(handler, ApiKeyAuth(API_KEY)) as owui:
        with pytest.raises(OpenWebUIUnauthorized) as caught:
            await owui.get_openai_config()
    assert "API key refused" in str(caught.value)
    assert_no_secret(str(caught.value))


class SignInServer:
    """Accepts one password; issues numbered tokens; can expire the current one."""

    def __init__(self, role: str = "admin") -> None:
        self.role = role
        self.signins = 0
        self.valid: set[str] = set()

    def expire_all(self) -> None:
        self.valid.clear()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auths/signin":
            body = json.loads(request.content)
            if body != {"email": "admin@example.com", "password": PASSWORD}:
                return httpx.Response(
                    400, json={"detail": "The email or password provided is incorrect."}
                )
            self.signins += 1
            token = f"jwt-{self.signins}"
            self.valid.add(token)
            return httpx.Response(
                200, json={"token": token, "token_type": "Bearer", "role": self.role}
            )
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401, json={"detail": "Not authenticated"})
        if self.role != "admin":
            return httpx.Response(401, json={"detail": "access prohibited"})
        return httpx.Response(200, json=CONFIG)


async def test_credentials_sign_in_once_and_reuse_the_token() -> None:
    server = SignInServer()
    async with client(server, CredentialsAuth("admin@example.com", PASSWORD)) as owui:
        await owui.get_openai_config()
        await owui.get_openai_config()
    assert server.signins == 1


async def test_credentials_sign_in_again_once_when_the_token_is_rejected() -> None:
    server = SignInServer()
    async with client(server, CredentialsAuth("admin@example.com", PASSWORD)) as owui:
        await owui.get_openai_config()
        server.expire_all()
        config = await owui.get_openai_config()
    assert server.signins == 2
    assert config.enable is True


async def test_wrong_password_is_unauthorized_without_the_password() -> None:
    server = SignInServer()
    async with client(server, CredentialsAuth("admin@example.com", "wrong " + PASSWORD)) as owui:
        with pytest.raises(OpenWebUIUnauthorized) as caught:
            await owui.get_openai_config()
    assert "wrong email or password" in str(caught.value)
    assert_no_secret(str(caught.value))
    assert (
        repr(CredentialsAuth("admin@example.com", PASSWORD))
        == "CredentialsAuth(email='admin@example.com')"
    )
    assert API_KEY not in repr(ApiKeyAuth(API_KEY))


async def test_a_user_who_is_not_an_admin_is_unauthorized() -> None:
    server = SignInServer(role="user")
    async with client(server, CredentialsAuth("admin@example.com", PASSWORD)) as owui:
        with pytest.raises(OpenWebUIUnauthorized, match="not an admin"):
            await owui.get_openai_config()


async def test_sign_in_without_a_token_points_at_two_factor_sign_in() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"mfa_required": True})

    async with client(handler, CredentialsAuth("admin@example.com", PASSWORD)) as owui:
        with pytest.raises(OpenWebUIUnauthorized, match="two-factor"):
            await owui.get_openai_config()


async def test_an_admin_rejected_after_a_fresh_sign_in_is_unauthorized() -> None:
    signins = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal signins
        if request.url.path == "/api/v1/auths/signin":
            signins += 1
            return httpx.Response(200, json={"token": f"jwt-{signins}", "role": "admin"})
        return httpx.Response(401, json={"detail": "nope"})

    async with client(handler, CredentialsAuth("admin@example.com", PASSWORD)) as owui:
        with pytest.raises(OpenWebUIUnauthorized, match="fresh sign-in"):
            await owui.get_openai_config()
    assert signins == 2  # one retry, not a loop


@pytest.mark.parametrize(
    ("response", "error", "text"),
    [
        (httpx.Response(500, text="Internal Server Error"), OpenWebUIServerError, "HTTP 500"),
        (httpx.Response(503, json={"detail": "x"}), OpenWebUIServerError, "HTTP 503"),
        (httpx.Response(404, json={"detail": "Not Found"}), OpenWebUIUnexpectedResponse, "404"),
        (httpx.Response(200, text="<html>login</html>"), OpenWebUIUnexpectedResponse, "not JSON"),
        (httpx.Response(200, json=["a"]), OpenWebUIUnexpectedResponse, "not a JSON object"),
        (
            httpx.Response(200, json={**CONFIG, "OPENAI_API_BASE_URLS": "http://p"}),
            OpenWebUIUnexpectedResponse,
            "not a list",
        ),
    ],
)
async def test_error_mapping(response: httpx.Response, error: type[Exception], text: str) -> None:
    async with client(lambda request: response, ApiKeyAuth(API_KEY)) as owui:
        with pytest.raises(error, match=text) as caught:
            await owui.get_openai_config()
    assert_no_secret(str(caught.value))


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("[Errno 111] Connection refused"), httpx.ReadTimeout("timed out")],
)
async def test_transport_failures_are_unreachable(failure: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    async with client(handler, ApiKeyAuth(API_KEY)) as owui:
        with pytest.raises(OpenWebUIUnreachable):
            await owui.get_openai_config()


async def test_update_sends_all_four_fields() -> None:
    bodies: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/openai/config/update"
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=json.loads(request.content))

    wanted = OpenAIConfig.from_wire(CONFIG)
    async with client(handler, ApiKeyAuth(API_KEY)) as owui:
        stored = await owui.update_openai_config(wanted)
    assert bodies == [CONFIG]
    assert stored.to_wire() == CONFIG


async def test_reads_of_models_and_pipelines() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/models":
            assert request.url.params["refresh"] == "true"
            return httpx.Response(200, json={"data": [{"id": "echo"}]})
        if path == "/api/v1/pipelines/list":
            return httpx.Response(
                200, json={"data": [{"url": "http://p:9099", "idx": 2}, {"url": 1, "idx": "x"}]}
            )
        if path == "/openai/models/2":
            return httpx.Response(
                200, json={"data": [{"id": "f", "pipeline": {"type": "filter"}}], "pipelines": True}
            )
        return httpx.Response(404)

    async with client(handler, ApiKeyAuth(API_KEY)) as owui:
        assert await owui.refresh_models() == [{"id": "echo"}]
        connections = await owui.list_pipelines_connections()
        assert [(c.url, c.idx) for c in connections] == [("http://p:9099", 2)]
        assert (await owui.connection_models(2))[0]["id"] == "f"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:99999", "http://127.0.0.1:9", "not a url", "ftp://127.0.0.1"]
)
async def test_urls_that_cannot_be_reached_are_unreachable_not_a_crash(url: str) -> None:
    async with OpenWebUIClient(url, ApiKeyAuth(API_KEY), timeout=2.0) as owui:
        with pytest.raises(OpenWebUIUnreachable) as caught:
            await owui.get_openai_config()
    assert_no_secret(str(caught.value))


async def test_a_token_cache_spares_sign_ins_across_clients() -> None:
    server = SignInServer()
    cache = TokenCache()
    auth = CredentialsAuth("admin@example.com", PASSWORD)

    async def read_config_with_new_clients(count: int) -> None:
        for _ in range(count):
            async with OpenWebUIClient(
                BASE, auth, transport=httpx.MockTransport(server), token_cache=cache
            ) as owui:
                await owui.get_openai_config()

    await read_config_with_new_clients(3)
    assert server.signins == 1

    server.expire_all()  # revoked: the next client signs in again, once, and caches that
    await read_config_with_new_clients(2)
    assert server.signins == 2


def test_a_token_cache_never_hands_a_token_to_another_password() -> None:
    cache = TokenCache()
    cache.put(BASE, CredentialsAuth("admin@example.com", PASSWORD), "jwt-1")
    assert cache.get(BASE, CredentialsAuth("admin@example.com", PASSWORD)) == "jwt-1"
    assert cache.get(BASE, CredentialsAuth("admin@example.com", "rotated")) is None
    assert cache.get("http://other", CredentialsAuth("admin@example.com", PASSWORD)) is None
    assert PASSWORD not in repr(cache.__dict__)


async def test_rate_limited_sign_in_is_a_retryable_server_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"detail": "rate limit exceeded"})

    async with client(handler, CredentialsAuth("admin@example.com", PASSWORD)) as owui:
        with pytest.raises(OpenWebUIServerError, match="429"):
            await owui.get_openai_config()
