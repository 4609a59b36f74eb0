"""The Langfuse check against the stand-in: every failure has its own reason, none leaks a key."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from openwebui_langfuse.clients.langfuse import (
    OTLP_NOT_SUPPORTED,
    LangfuseCheckError,
    LangfuseClient,
    predates_otlp,
)

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


async def test_a_langfuse_without_otlp_is_legacy_only(
    langfuse: LangfuseStandIn, http: httpx.AsyncClient
) -> None:
    """A self-hosted Langfuse v2: the keys are fine, but the bundled filter's OTLP spans are
    refused (issue 14); its health check says which version it is."""
    langfuse.version = "2.95.11"
    langfuse.otlp = False
    # The stand-in behaves like that server: no OTLP route, legacy ingestion works.
    span = await http.post(
        f"{langfuse.url}/api/public/otel/v1/traces",
        auth=(langfuse.public_key, langfuse.secret_key),
        json={"resourceSpans": []},
    )
    assert span.status_code == 404
    legacy = await http.post(
        f"{langfuse.url}/api/public/ingestion",
        auth=(langfuse.public_key, langfuse.secret_key),
        json={"batch": []},
    )
    assert legacy.status_code == 207

    check = await LangfuseClient(langfuse.url, http=http).check(
        langfuse.public_key, langfuse.secret_key
    )
    assert (check.project.id, check.server_version) == (langfuse.project_id, "2.95.11")
    assert check.ingestion_mode == "legacy_only"
    assert "no OTLP endpoint" in check.warning and "legacy SDK" in check.warning
    refusal = check.refusal(sends_otlp=True)  # the bundled filter
    assert refusal is not None
    assert (refusal.reason, refusal.temporary) == (OTLP_NOT_SUPPORTED, False)
    assert "Upgrade Langfuse to v3.22" in refusal.message
    assert "spec.filter.source: url" in refusal.message
    assert langfuse.secret_key not in refusal.message
    assert check.refusal(sends_otlp=False) is None  # a filter of one's own may use SDK v2
    # Nothing was sent to the OTLP route to find out (it would be logged at every resync).
    assert [r["status"] for r in langfuse.requests if "/otel/" in r["path"]] == [404]


@pytest.mark.parametrize(
    ("version", "events_only", "mode"),
    [
        ("3.21.9", False, "legacy_only"),
        ("3.22.0", False, "otlp+legacy"),
        ("3.225.4", False, "otlp+legacy"),
        ("4.16.0", True, "events_only"),
        ("dev-build", False, "otlp+legacy"),  # unreadable: no claim
    ],
)
async def test_ingestion_mode_by_version(
    langfuse: LangfuseStandIn,
    http: httpx.AsyncClient,
    version: str,
    events_only: bool,
    mode: str,
) -> None:
    langfuse.version = version
    langfuse.events_only = events_only
    check = await LangfuseClient(langfuse.url, http=http).check(
        langfuse.public_key, langfuse.secret_key
    )
    assert check.ingestion_mode == mode
    assert (check.refusal(sends_otlp=True) is None) is (mode != "legacy_only")


@pytest.mark.parametrize(
    ("version", "old"),
    [
        ("2.95.11", True),
        ("v2.0.0", True),
        ("3.21.9", True),
        ("3.22", False),
        ("3.22.0", False),
        ("4.16.0", False),
        ("", False),
        ("latest", False),
    ],
)
def test_predates_otlp(version: str, old: bool) -> None:
    assert predates_otlp(version) is old


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
