"""The Langfuse check against the stand-in: every failure has its own reason, none leaks a key."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from openwebui_langfuse.clients.langfuse import LangfuseCheckError, LangfuseClient

from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.proc import free_port


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_good_keys(langfuse: LangfuseStandIn, http: httpx.AsyncClient) -> None:
    check = await LangfuseClient(langfuse.url + "/", http=http).check(
        langfuse.public_key, langfuse.secret_key
    )
    assert check.project.id == langfuse.project_id
    assert check.project.name == "test-project"
    assert check.server_version == langfuse.version
    assert check.ingestion_mode == "otlp+legacy"
    assert check.warning == ""


async def test_events_only_is_detected(langfuse: LangfuseStandIn, http: httpx.AsyncClient) -> None:
    langfuse.events_only = True
    check = await LangfuseClient(langfuse.url, http=http).check(
        langfuse.public_key, langfuse.secret_key
    )
    assert check.ingestion_mode == "events_only"
    assert "events_only" in check.warning


async def _failure(client: LangfuseClient, pk: str, sk: str) -> LangfuseCheckError:
    with pytest.raises(LangfuseCheckError) as info:
        await client.check(pk, sk)
    error = info.value
    for text in (str(error), error.message, repr(error)):
        assert sk not in text
    return error


async def test_wrong_keys(langfuse: LangfuseStandIn, http: httpx.AsyncClient) -> None:
    error = await _failure(
        LangfuseClient(langfuse.url, http=http), langfuse.public_key, "sk-lf-wrong-secret"
    )
    assert (error.reason, error.temporary) == ("InvalidCredentials", False)


@pytest.mark.parametrize(
    ("mode", "reason", "temporary"),
    [
        ("401", "InvalidCredentials", False),
        ("403", "AccessDenied", False),
        ("500", "LangfuseServerError", True),
        ("503", "LangfuseServerError", True),
        ("html", "NotLangfuse", False),
        ("empty", "NoProject", False),
    ],
)
async def test_failure_modes(
    langfuse: LangfuseStandIn, http: httpx.AsyncClient, mode: str, reason: str, temporary: bool
) -> None:
    langfuse.set_failure(mode)
    started = time.monotonic()
    error = await _failure(
        LangfuseClient(langfuse.url, http=http), langfuse.public_key, langfuse.secret_key
    )
    assert (error.reason, error.temporary) == (reason, temporary)
    # No hidden SDK retries (they would take ~3 s on a 5xx).
    assert time.monotonic() - started < 1.5


async def test_slow_server_times_out(langfuse: LangfuseStandIn, http: httpx.AsyncClient) -> None:
    langfuse.slow_seconds = 3
    langfuse.set_failure("slow")
    started = time.monotonic()
    error = await _failure(
        LangfuseClient(langfuse.url, http=http, timeout=0.5),
        langfuse.public_key,
        langfuse.secret_key,
    )
    assert (error.reason, error.temporary) == ("LangfuseTimeout", True)
    assert time.monotonic() - started < 2.5


async def test_unreachable(http: httpx.AsyncClient) -> None:
    error = await _failure(
        LangfuseClient(f"http://127.0.0.1:{free_port()}", http=http),
        "pk-lf-x",
        "sk-lf-unreachable-secret",
    )
    assert (error.reason, error.temporary) == ("LangfuseUnreachable", True)


async def test_not_langfuse_health(langfuse: LangfuseStandIn, http: httpx.AsyncClient) -> None:
    langfuse.set_health_failure("html")
    error = await _failure(
        LangfuseClient(langfuse.url, http=http), langfuse.public_key, langfuse.secret_key
    )
    assert error.reason == "NotLangfuse"
