"""The upstream Langfuse filter (open-webui/pipelines 1.7.1, SDK v2) in the real Pipelines
server, sending its legacy batch to the stand-in.

The filter file is read from ../shared/peers at run time (never copied) and served from a
loopback HTTP server, so Pipelines installs it by URL exactly as the Langfuse guide does
(its `requirements: langfuse<3.0.0` makes Pipelines pip-install SDK 2.x on load). Its
inlet and outlet are driven through Pipelines' HTTP routes with Open-WebUI-shaped bodies
(docs/upstream/pipelines.md, "Filter inlet and outlet" and "The upstream Langfuse filter").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.peers.langfuse_standin import LangfuseStandIn
from tests.world.http_server import StaticFiles
from tests.world.manifest import World
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

pytestmark = pytest.mark.world

REPO_ROOT = Path(__file__).resolve().parents[2]
FILTER_DIR = REPO_ROOT.parent / "shared" / "peers" / "upstream-langfuse-filter"
FILTER_FILE = "langfuse_filter_pipeline.py"
FILTER_ID = "langfuse_filter_pipeline"
# Loading runs the file's pip install of langfuse<3 into the Pipelines venv.
ADD_TIMEOUT = 240.0
FLUSH_DEADLINE = 30.0

USER = {"id": "u-1", "email": "alice@example.com", "name": "Alice", "role": "user"}
CHAT_ID = "chat-123"


@pytest.fixture
def filter_url() -> Iterator[str]:
    """The upstream filter file, served read-only from its shared folder on loopback."""
    if not (FILTER_DIR / FILTER_FILE).is_file():
        pytest.fail(f"upstream filter missing at {FILTER_DIR / FILTER_FILE}")
    with StaticFiles(FILTER_DIR) as files:
        yield f"{files.url}/{FILTER_FILE}"


@pytest.fixture
def pipelines_for_filter(world: World, langfuse: LangfuseStandIn) -> Iterator[PipelinesServer]:
    """A real Pipelines server whose filter defaults point at the stand-in: the filter's
    on_startup runs auth_check with its env-derived valves, which would otherwise call
    https://cloud.langfuse.com. The startup keys are deliberately not the project's."""
    env = {
        "LANGFUSE_HOST": langfuse.url,
        "LANGFUSE_PUBLIC_KEY": "pk-lf-startup-placeholder",
        "LANGFUSE_SECRET_KEY": "sk-lf-startup-placeholder",
    }
    with PipelinesServer(world, env=env) as server:
        yield server


def install_filter(pipelines: PipelinesServer, filter_url: str, langfuse: LangfuseStandIn) -> None:
    with httpx.Client(
        base_url=pipelines.url, headers=pipelines.headers, timeout=ADD_TIMEOUT
    ) as http:
        added = http.post("/pipelines/add", json={"url": filter_url})
        assert added.status_code == 200, added.text
        # add answers 200 even when loading failed: confirm it is listed.
        listed = http.get("/pipelines").json()["data"]
        assert FILTER_ID in [row["id"] for row in listed], pipelines.log_path.read_text()[-3000:]
        valves = http.get(f"/{FILTER_ID}/valves").json()
        valves.update(
            pipelines=["*"],
            priority=0,
            public_key=langfuse.public_key,
            secret_key=langfuse.secret_key,
            host=langfuse.url,
            insert_tags=True,
            use_model_name_instead_of_id_for_generation=False,
            debug=False,
        )
        updated = http.post(f"/{FILTER_ID}/valves/update", json=valves)
        assert updated.status_code == 200
        # The answer holds the secret key in clear: compare one field, never print it.
        host = updated.json()["host"]
        assert host == langfuse.url


def inlet_body() -> dict[str, Any]:
    return {
        "model": "llama3:8b",
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "stream": False,
        "metadata": {
            "chat_id": CHAT_ID,
            "message_id": "msg-1",
            "session_id": "sess-1",
            "user_id": USER["id"],
            "model": {"id": "llama3:8b", "name": "Llama 3 8B"},
        },
    }


def outlet_body() -> dict[str, Any]:
    return {
        "model": "llama3:8b",
        "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {
                "role": "assistant",
                "content": "4",
                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
            },
        ],
        "chat_id": CHAT_ID,
        "session_id": "sess-1",
        "id": "msg-1",
    }


def run_turn(pipelines: PipelinesServer) -> None:
    """One chat turn as Open WebUI runs it: inlet before the model, outlet after."""
    with httpx.Client(base_url=pipelines.url, headers=pipelines.headers, timeout=60) as http:
        inlet = http.post(f"/{FILTER_ID}/filter/inlet", json={"user": USER, "body": inlet_body()})
        assert inlet.status_code == 200, inlet.text
        assert inlet.json()["metadata"]["interface"] == "open-webui"
        outlet = http.post(
            f"/{FILTER_ID}/filter/outlet", json={"user": USER, "body": outlet_body()}
        )
        assert outlet.status_code == 200, outlet.text


def ingestion_requests(langfuse: LangfuseStandIn) -> list[dict[str, Any]]:
    return [r for r in langfuse.requests if r["path"] == "/api/public/ingestion"]


def test_upstream_filter_legacy_batch_is_stored(
    langfuse: LangfuseStandIn, pipelines_for_filter: PipelinesServer, filter_url: str
) -> None:
    install_filter(pipelines_for_filter, filter_url, langfuse)
    # The valves update re-created the SDK client, whose auth_check reached the stand-in.
    auth_checks = [
        r
        for r in langfuse.requests
        if r["path"] == "/api/public/projects" and r["publicKey"] == langfuse.public_key
    ]
    assert auth_checks and auth_checks[-1]["status"] == 200
    assert auth_checks[-1]["headers"]["x-langfuse-sdk-version"].startswith("2.")

    run_turn(pipelines_for_filter)

    def complete_trace() -> dict[str, Any] | None:
        traces = [t for t in langfuse.traces() if t["name"] == f"chat:{CHAT_ID}"]
        if not traces or traces[0]["output"] is None:
            return None
        types = {o["type"] for o in langfuse.observations(trace_id=traces[0]["id"])}
        return traces[0] if {"EVENT", "GENERATION"} <= types else None

    trace = wait_for(complete_trace, FLUSH_DEADLINE, "the filter's trace, event and generation")
    assert trace["projectId"] == langfuse.project_id
    assert trace["userId"] == USER["email"]
    assert trace["sessionId"] == CHAT_ID
    assert trace["tags"] == ["open-webui"]
    assert trace["input"]["messages"] == inlet_body()["messages"]
    assert trace["output"] == "4"  # the second trace-create, merged by id

    observations = langfuse.observations(trace_id=trace["id"])
    (event,) = [o for o in observations if o["type"] == "EVENT"]
    assert event["name"].startswith("user_response:")
    (generation,) = [o for o in observations if o["type"] == "GENERATION"]
    assert generation["name"].startswith("llm_response:")
    assert generation["model"] == "llama3:8b"
    # legacy usage {input, output, unit: TOKENS} became usage details with a total
    assert generation["usageDetails"] == {"input": 11, "output": 3, "total": 14}
    assert generation["metadata"]["model_name"] == "Llama 3 8B"

    batches = ingestion_requests(langfuse)
    assert batches and all(r["status"] == 207 for r in batches)
    assert all(r["response"]["errors"] == [] for r in batches)
    event_types = {e["type"] for r in batches for e in r["body"]["batch"]}
    assert {"trace-create", "event-create", "generation-create", "generation-update"} <= event_types
    leaked = langfuse.secret_key in str(langfuse.requests)
    assert not leaked, "the secret key is in the request log"


def test_upstream_filter_batch_is_rejected_per_event_in_events_only_mode(
    langfuse: LangfuseStandIn, pipelines_for_filter: PipelinesServer, filter_url: str
) -> None:
    langfuse.events_only = True
    install_filter(pipelines_for_filter, filter_url, langfuse)
    # auth_check still passes on a v4 server in events_only mode: the trap this mirrors.
    auth_checks = [
        r
        for r in langfuse.requests
        if r["path"] == "/api/public/projects" and r["publicKey"] == langfuse.public_key
    ]
    assert auth_checks and auth_checks[-1]["status"] == 200

    run_turn(pipelines_for_filter)

    def rejected_generation() -> list[dict[str, Any]]:
        return [
            r
            for r in ingestion_requests(langfuse)
            if any(e["type"] == "generation-update" for e in r["body"]["batch"])
        ]

    wait_for(rejected_generation, FLUSH_DEADLINE, "the filter's generation batch")
    batches = ingestion_requests(langfuse)
    assert all(r["status"] == 207 for r in batches)
    for request in batches:
        answer = request["response"]
        assert answer["successes"] == []
        sent_ids = sorted(e["id"] for e in request["body"]["batch"])
        assert sorted(e["id"] for e in answer["errors"]) == sent_ids
        assert {e["status"] for e in answer["errors"]} == {400}
        assert {e["message"] for e in answer["errors"]} == {"Event type not accepted"}
    assert langfuse.traces() == []
    assert langfuse.observations() == []
