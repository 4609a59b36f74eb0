"""Conformance of the Langfuse stand-in with the real `langfuse` SDK 5.0.4.

Every SDK call runs in a subprocess of the project venv's Python
(`tests.peers.langfuse_standin.sdk_probe`): the v5 SDK caches one client per public key and
installs a global OTel TracerProvider for the whole process (docs/upstream/langfuse.md, "SDK
client lifecycle"), so a subprocess per call is the honest isolation. If the stand-in drifted
from what the SDK expects (auth errors, response models, OTLP layout, v2 reads), these tests
fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.peers.langfuse_standin import LangfuseStandIn
from tests.peers.langfuse_standin.sdk_probe import SECRET_ENV

if TYPE_CHECKING:
    from langfuse.api import AsyncLangfuseAPI

REPO_ROOT = Path(__file__).resolve().parents[2]
ERRORS = "langfuse.api.commons.errors"


def run_probe(
    command: str, host: str, public_key: str, secret_key: str, *, timeout: int = 5
) -> dict[str, Any]:
    # No LANGFUSE_*/OTEL_* from the outside: LANGFUSE_BASE_URL would override base_url.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGFUSE_", "OTEL_"))}
    env[SECRET_ENV] = secret_key
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.peers.langfuse_standin.sdk_probe",
            command,
            "--host",
            host,
            "--public-key",
            public_key,
            "--timeout",
            str(timeout),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    # Computed outside the assert so a failure never prints the secret.
    leaked = secret_key in completed.stdout + completed.stderr
    assert not leaked, "the SDK probe printed the secret key"
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def auth_check(langfuse: LangfuseStandIn, **overrides: Any) -> dict[str, Any]:
    return run_probe(
        "auth-check",
        overrides.get("host", langfuse.url),
        overrides.get("public_key", langfuse.public_key),
        overrides.get("secret_key", langfuse.secret_key),
        timeout=overrides.get("timeout", 5),
    )


# --- auth_check ------------------------------------------------------------------------


def test_auth_check_accepts_good_keys(langfuse: LangfuseStandIn) -> None:
    assert auth_check(langfuse) == {"result": True}
    (request,) = langfuse.requests
    assert request["path"] == "/api/public/projects"
    assert request["headers"]["x-langfuse-sdk-version"] == "5.0.4"
    assert request["headers"]["authorization"] == "Basic [REDACTED]"


def test_auth_check_raises_unauthorized_for_a_wrong_secret(langfuse: LangfuseStandIn) -> None:
    result = auth_check(langfuse, secret_key="sk-lf-not-the-secret")
    assert result["error"] == f"{ERRORS}.unauthorized_error.UnauthorizedError"
    assert result["status_code"] == 401
    assert result["body"] == {
        "message": "Invalid credentials. Confirm that you've configured the correct host."
    }


def test_auth_check_raises_access_denied_for_an_organization_key(
    langfuse: LangfuseStandIn,
) -> None:
    langfuse.set_failure("403")
    result = auth_check(langfuse)
    assert result["error"] == f"{ERRORS}.access_denied_error.AccessDeniedError"
    assert result["status_code"] == 403


def test_auth_check_raises_api_error_for_5xx_after_its_retries(langfuse: LangfuseStandIn) -> None:
    langfuse.set_failure("500")
    result = auth_check(langfuse)
    assert result["error"] == "langfuse.api.core.api_error.ApiError"
    assert result["status_code"] == 500
    # The Fern client retries 5xx twice: three attempts reached the server.
    assert [r["status"] for r in langfuse.requests] == [500, 500, 500]


def test_auth_check_raises_api_error_for_a_non_json_200(langfuse: LangfuseStandIn) -> None:
    langfuse.set_failure("html")
    result = auth_check(langfuse)
    assert result["error"] == "langfuse.api.core.api_error.ApiError"
    assert result["status_code"] == 200


def test_auth_check_fails_when_the_key_sees_no_project(langfuse: LangfuseStandIn) -> None:
    langfuse.set_failure("empty")
    result = auth_check(langfuse)
    assert result["error"] == "builtins.Exception"


def test_auth_check_times_out_on_a_slow_server(langfuse: LangfuseStandIn) -> None:
    langfuse.slow_seconds = 4.0
    langfuse.set_failure("slow")
    result = auth_check(langfuse, timeout=1)
    assert result["error"] == "httpx.ReadTimeout"


def test_auth_check_raises_connect_error_for_a_wrong_host(langfuse: LangfuseStandIn) -> None:
    with socket.socket() as holder:  # a bound but never listening port refuses connections
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        result = auth_check(langfuse, host=f"http://127.0.0.1:{port}")
    assert result["error"] == "httpx.ConnectError"


# --- a trace with a generation, written and read back through the SDK -----------------


@pytest.fixture
def sent_trace(langfuse: LangfuseStandIn) -> dict[str, Any]:
    return run_probe("trace", langfuse.url, langfuse.public_key, langfuse.secret_key)


def test_sdk_trace_is_stored_with_trace_level_attributes(
    langfuse: LangfuseStandIn, sent_trace: dict[str, Any]
) -> None:
    trace = langfuse.trace(sent_trace["trace_id"])
    assert trace is not None
    assert trace["projectId"] == langfuse.project_id
    assert trace["name"] == "chat:chat-123"
    assert trace["userId"] == "alice@example.com"
    assert trace["sessionId"] == "chat-123"
    assert trace["tags"] == ["open-webui", "conformance"]
    assert trace["metadata"] == {"interface": "open-webui"}
    # v5 has no trace-level io: the trace shows the root observation's.
    assert trace["input"] == {"question": "2+2?"}
    assert trace["output"] == {"answer": "4"}


def test_sdk_generation_is_stored_with_model_usage_and_cost(
    langfuse: LangfuseStandIn, sent_trace: dict[str, Any]
) -> None:
    by_id = {o["id"]: o for o in langfuse.observations(trace_id=sent_trace["trace_id"])}
    assert set(by_id) == {sent_trace["root_id"], sent_trace["generation_id"]}
    root = by_id[sent_trace["root_id"]]
    generation = by_id[sent_trace["generation_id"]]
    assert root["type"] == "SPAN"
    assert root["parentObservationId"] is None
    assert generation["type"] == "GENERATION"
    assert generation["name"] == "llm_response"
    assert generation["parentObservationId"] == sent_trace["root_id"]
    assert generation["model"] == "gpt-4o"
    assert generation["modelParameters"] == {"temperature": 0.2}
    assert generation["usageDetails"] == {"input": 10, "output": 5, "total": 15}
    assert generation["costDetails"] == pytest.approx(
        {"input": 0.001, "output": 0.002, "total": 0.003}
    )
    assert generation["input"] == [{"role": "user", "content": "2+2?"}]
    assert generation["output"] == "4"
    assert generation["metadata"] == {"chat_id": "chat-123"}
    assert generation["startTime"] <= generation["endTime"]


def test_sdk_export_is_gzip_protobuf_with_ingestion_version_4(
    langfuse: LangfuseStandIn, sent_trace: dict[str, Any]
) -> None:
    exports = [r for r in langfuse.requests if r["path"] == "/api/public/otel/v1/traces"]
    assert exports and all(r["status"] == 200 for r in exports)
    headers = exports[0]["headers"]
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["content-encoding"] == "gzip"
    assert headers["x-langfuse-ingestion-version"] == "4"
    assert exports[0]["publicKey"] == langfuse.public_key
    leaked = langfuse.secret_key in json.dumps(langfuse.requests)
    assert not leaked, "the secret key is in the request log"


def test_sdk_score_arrives_as_an_array_and_is_stored(
    langfuse: LangfuseStandIn, sent_trace: dict[str, Any]
) -> None:
    (score_post,) = [r for r in langfuse.requests if r["path"] == "/api/public/scores"]
    assert score_post["status"] == 202
    assert isinstance(score_post["body"], list)
    (score,) = langfuse.scores()
    assert score["name"] == "helpfulness"
    assert score["value"] == 0.9
    assert score["traceId"] == sent_trace["trace_id"]


def test_sdk_reads_observations_back_through_v2(
    langfuse: LangfuseStandIn, sent_trace: dict[str, Any]
) -> None:
    read = {o["id"]: o for o in sent_trace["observations"]}
    assert set(read) == {sent_trace["root_id"], sent_trace["generation_id"]}
    generation = read[sent_trace["generation_id"]]
    assert generation["projectId"] == langfuse.project_id
    assert generation["type"] == "GENERATION"
    assert generation["model"] == "gpt-4o"
    assert generation["usageDetails"] == {"input": 10, "output": 5, "total": 15}
    assert generation["costDetails"]["total"] == pytest.approx(0.003)
    assert generation["userId"] == "alice@example.com"
    assert generation["sessionId"] == "chat-123"
    assert generation["traceName"] == "chat:chat-123"
    assert generation["tags"] == ["open-webui", "conformance"]
    assert json.loads(generation["input"]) == [{"role": "user", "content": "2+2?"}]
    (read_request,) = [r for r in langfuse.requests if r["path"] == "/api/public/v2/observations"]
    assert read_request["query"]["traceId"] == sent_trace["trace_id"]


# --- the SDK's low-level async client (what the operator uses, no global state) --------


@contextlib.asynccontextmanager
async def low_level_api(langfuse: LangfuseStandIn) -> AsyncIterator[AsyncLangfuseAPI]:
    """The SDK's low-level async client for the stand-in's project, on a client of its own."""
    from langfuse.api import AsyncLangfuseAPI

    async with httpx.AsyncClient(timeout=5) as http:
        yield AsyncLangfuseAPI(
            base_url=langfuse.url,
            username=langfuse.public_key,
            password=langfuse.secret_key,
            httpx_client=http,
        )


async def test_low_level_async_client_reads_health_and_projects(
    langfuse: LangfuseStandIn,
) -> None:
    langfuse.version = "4.61.0"
    async with low_level_api(langfuse) as api:
        health = await api.health.health()
        projects = await api.projects.get()
    assert health.version == "4.61.0"
    assert health.status == "OK"
    (project,) = projects.data
    assert project.id == langfuse.project_id
    assert project.organization.name


@pytest.mark.parametrize(
    ("mode", "error_class"),
    [("401", "UnauthorizedError"), ("403", "AccessDeniedError")],
)
async def test_low_level_async_client_raises_typed_errors(
    langfuse: LangfuseStandIn, mode: str, error_class: str
) -> None:
    from langfuse.api import core

    langfuse.set_failure(mode)
    async with low_level_api(langfuse) as api:
        with pytest.raises(core.ApiError) as raised:
            await api.projects.get(request_options={"max_retries": 0})
    assert type(raised.value).__name__ == error_class
    assert raised.value.status_code == int(mode)


# --- scores: written by the SDK, read back through v3, replaced by id, deleted ---------


@pytest.fixture
def score_roundtrip(langfuse: LangfuseStandIn) -> dict[str, Any]:
    return run_probe("scores", langfuse.url, langfuse.public_key, langfuse.secret_key)


def test_sdk_scores_read_back_through_v3_with_typed_values_and_subject(
    langfuse: LangfuseStandIn, score_roundtrip: dict[str, Any]
) -> None:
    by_name = {score["name"]: score for score in score_roundtrip["first"]}
    assert set(by_name) == {"helpfulness", "rating"}
    numeric, categorical = by_name["helpfulness"], by_name["rating"]
    assert numeric["dataType"] == "NUMERIC"
    assert numeric["value"] == 0.5
    assert numeric["comment"] == "first"
    assert numeric["projectId"] == langfuse.project_id
    assert numeric["source"] == "API"
    assert numeric["subject"] == {"kind": "trace", "id": score_roundtrip["trace_id"]}
    assert categorical["dataType"] == "CATEGORICAL"
    assert categorical["value"] == "good"
    reads = [r for r in langfuse.requests if r["path"] == "/api/public/v3/scores"]
    assert reads[0]["query"]["traceId"] == score_roundtrip["trace_id"]


def test_sdk_score_written_again_with_its_id_replaces_the_first(
    score_roundtrip: dict[str, Any],
) -> None:
    (replaced,) = score_roundtrip["replaced"]
    assert replaced["id"] == score_roundtrip["score_id"]
    assert replaced["value"] == 0.9
    assert replaced["comment"] is None  # not merged: the second write had no comment
    assert [s["name"] for s in score_roundtrip["numeric"]] == ["helpfulness"]


def test_sdk_score_deleted_through_the_api_is_gone(
    langfuse: LangfuseStandIn, score_roundtrip: dict[str, Any]
) -> None:
    assert [s["name"] for s in score_roundtrip["after_delete"]] == ["rating"]
    assert [s["name"] for s in langfuse.scores()] == ["rating"]


# --- models: the SDK's low-level client creates, lists, reads and deletes --------------


async def test_low_level_client_lists_managed_models_with_prices(
    langfuse: LangfuseStandIn,
) -> None:
    async with low_level_api(langfuse) as api:
        listed = await api.models.list(page=1, limit=100)
    by_name = {model.model_name: model for model in listed.data}
    assert {"gpt-4o", "gpt-4o-mini", "gpt-4.1"} <= set(by_name)
    gpt4o = by_name["gpt-4o"]
    assert gpt4o.is_langfuse_managed is True
    assert gpt4o.prices["input"].price > 0
    assert gpt4o.prices["output"].price > gpt4o.prices["input"].price
    assert listed.meta.total_items == len(listed.data)
    assert listed.meta.page == 1


async def test_low_level_client_creates_gets_upserts_and_deletes_a_model(
    langfuse: LangfuseStandIn,
) -> None:
    from langfuse.api import core

    async with low_level_api(langfuse) as api:
        created = await api.models.create(
            model_name="llama3.1:8b",
            match_pattern=r"(?i)^(ollama/)?llama3\.1:8b$",
            unit="TOKENS",
            input_price=1e-7,
            output_price=2e-7,
        )
        fetched = await api.models.get(created.id)
        upserted = await api.models.upsert(
            created.id,
            model_name="llama3.1:8b",
            match_pattern=r"(?i)^llama3\.1:8b$",
            unit="TOKENS",
            total_price=5e-7,
        )
        first_page = await api.models.list(page=1, limit=1)
        await api.models.delete(created.id)
        with pytest.raises(core.ApiError) as missing:
            await api.models.get(created.id, request_options={"max_retries": 0})
    assert created.is_langfuse_managed is False
    assert created.prices["input"].price == pytest.approx(1e-7)
    assert created.pricing_tiers[0].name == "Standard"
    assert fetched.model_name == "llama3.1:8b"
    assert upserted.id == created.id
    assert upserted.total_price == pytest.approx(5e-7)
    assert upserted.input_price is None
    assert len(first_page.data) == 1
    assert first_page.meta.total_pages == first_page.meta.total_items  # one model per page
    assert missing.value.status_code == 404


async def test_low_level_client_cannot_delete_or_overwrite_a_managed_model(
    langfuse: LangfuseStandIn,
) -> None:
    from langfuse.api import core

    async with low_level_api(langfuse) as api:
        listed = await api.models.list(limit=100)
        managed = next(m for m in listed.data if m.model_name == "gpt-4o")
        with pytest.raises(core.ApiError) as deleting:
            await api.models.delete(managed.id, request_options={"max_retries": 0})
        with pytest.raises(core.ApiError) as overwriting:
            await api.models.upsert(
                managed.id,
                model_name="gpt-4o",
                match_pattern="(?i)^gpt-4o$",
                unit="TOKENS",
                input_price=0.0,
                request_options={"max_retries": 0},
            )
    assert deleting.value.status_code == 404
    assert overwriting.value.status_code == 404
