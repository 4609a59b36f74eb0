"""The readiness endpoint: 503 with a reason until the CRD check and the first event, then 200."""

from __future__ import annotations

import httpx
import pytest
from openwebui_langfuse.config import ConfigError, settings_from_env
from openwebui_langfuse.readiness import Readiness, parse_endpoint, serve, served

from tests.world.proc import LOOPBACK, free_port


def test_ready_needs_the_crd_and_the_first_event() -> None:
    state = Readiness()
    assert not state.ready and state.reason().startswith("starting")
    state.watching = True  # an event cannot make up for a CRD that was not checked
    assert not state.ready
    state.crd_served = False
    assert not state.ready
    assert "langfusetracings.openwebui-langfuse.io" in state.reason()
    assert "restart the operator" in state.reason()
    state = Readiness(crd_served=True)
    assert not state.ready and "initial listing" in state.reason()
    state.watching = True
    assert state.ready and state.reason() == ""


def test_served_reads_the_api_resource_list() -> None:
    listing = {
        "kind": "APIResourceList",
        "groupVersion": "openwebui-langfuse.io/v1alpha1",
        "resources": [{"name": "langfusetracings/status"}, {"name": "langfusetracings"}],
    }
    assert served(listing)
    assert not served({"resources": [{"name": "langfusetracings/status"}]})
    assert not served({})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://0.0.0.0:8081/readyz", "http://host:port/path"),
        ("0.0.0.0:8081", "http://host:port/path"),
        ("http://0.0.0.0/readyz", "needs a port"),
        ("http://0.0.0.0:http/readyz", "invalid port"),
    ],
)
def test_bad_endpoints_are_refused_at_startup(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoint(url)
    env = {"OPENWEBUI_LANGFUSE_NAMESPACES": "a", "OPENWEBUI_LANGFUSE_READINESS": url}
    with pytest.raises(ConfigError, match="OPENWEBUI_LANGFUSE_READINESS"):
        settings_from_env(env).validate()


def test_the_endpoint_is_read_from_the_environment() -> None:
    env = {
        "OPENWEBUI_LANGFUSE_NAMESPACES": "a",
        "OPENWEBUI_LANGFUSE_READINESS": "http://0.0.0.0:8081/readyz",
    }
    settings = settings_from_env(env).validate()
    assert settings.readiness == "http://0.0.0.0:8081/readyz"
    assert parse_endpoint(settings.readiness) == ("0.0.0.0", 8081, "/readyz")
    assert settings_from_env({"OPENWEBUI_LANGFUSE_NAMESPACES": "a"}).readiness is None


async def test_the_endpoint_answers_503_with_the_reason_then_200() -> None:
    state = Readiness()
    url = f"http://{LOOPBACK}:{free_port()}/readyz"
    runner = await serve(url, state)
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(url)
            assert response.status_code == 503
            assert response.json() == {"ready": False, "reason": state.reason()}
            state.crd_served = True
            response = await http.get(url)
            assert response.status_code == 503
            assert "initial listing" in response.json()["reason"]
            state.watching = True
            response = await http.get(url)
            assert response.status_code == 200 and response.json() == {"ready": True}
            # Only the configured path: a probe pointed elsewhere fails loudly.
            assert (await http.get(url.replace("/readyz", "/healthz"))).status_code == 404
        # Stopped with the operator (the cleanup handler): nothing answers any more.
        await runner.cleanup()
        async with httpx.AsyncClient(timeout=2) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(url)
    finally:
        await runner.cleanup()


async def test_a_taken_port_is_an_error_not_a_silent_endpoint() -> None:
    url = f"http://{LOOPBACK}:{free_port()}/readyz"
    first = await serve(url, Readiness())
    try:
        with pytest.raises(OSError):
            await serve(url, Readiness())
    finally:
        await first.cleanup()
