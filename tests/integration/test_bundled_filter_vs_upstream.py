"""The same scripted conversation through the upstream Langfuse filter 1.7.1 and the bundled one.

The upstream file is served from a loopback HTTP server straight out of ../shared/peers (read
at test time, never copied) and added by URL to a second real Pipelines server, exactly as the
Langfuse guide has users do; Pipelines pip-installs its `langfuse<3.0.0` on load. Each filter
gets its own project in one stand-in, so what each delivers can be read side by side.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_bundled_filter import (
    PIPELINE_ID,
    install_bundled,
    replay,
    set_valves,
    trace_id,
)
from tests.peers.langfuse_standin.keys import Project
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.unit.test_filter_conversation import CHAT_ID, TEMP_CHAT_ID, USER, scripted_conversation
from tests.world.http_server import StaticFiles
from tests.world.manifest import World
from tests.world.pipelines import PipelinesServer

pytestmark = pytest.mark.world

PEERS = Path(__file__).resolve().parents[3] / "shared" / "peers" / "upstream-langfuse-filter"
UPSTREAM_FILE = "langfuse_filter_pipeline.py"
UPSTREAM_ID = "langfuse_filter_pipeline"
# Adding it runs `pip install langfuse<3.0.0` inside Pipelines (seconds when cached).
ADD_TIMEOUT = 300.0


@pytest.fixture
def upstream_pipelines(world: World) -> Iterator[PipelinesServer]:
    """A second real Pipelines server with the upstream filter added by URL."""
    assert (PEERS / UPSTREAM_FILE).is_file(), f"missing peer file {PEERS / UPSTREAM_FILE}"
    with StaticFiles(PEERS) as files, PipelinesServer(world) as server:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=ADD_TIMEOUT) as http:
            answer = http.post("/pipelines/add", json={"url": f"{files.url}/{UPSTREAM_FILE}"})
            assert answer.status_code == 200, answer.text
            listed = [row["id"] for row in http.get("/pipelines").json()["data"]]
            assert UPSTREAM_ID in listed, server.log_path.read_text()[-3000:]
        yield server


def point_upstream_at(server: PipelinesServer, langfuse: LangfuseStandIn, project: Project) -> None:
    set_valves(
        server,
        UPSTREAM_ID,
        public_key=project.public_key,
        secret_key=project.secret_key,
        host=langfuse.url,
    )


def point_bundled_at(server: PipelinesServer, langfuse: LangfuseStandIn, project: Project) -> None:
    set_valves(
        server,
        PIPELINE_ID,
        public_key=project.public_key,
        secret_key=project.secret_key,
        host=langfuse.url,
        flush_interval_seconds=0.1,
    )


def replay_upstream(server: PipelinesServer) -> list[dict[str, Any]]:
    """The upstream filter answers 200 but changes the body it hands back (and on to the
    model): record what came back instead of requiring it unchanged."""
    returned = []
    with server.client() as http:
        for step in scripted_conversation():
            answer = http.post(
                f"/{UPSTREAM_ID}/filter/{step.hook}", json={"user": step.user, "body": step.body}
            )
            assert answer.status_code == 200, answer.text
            returned.append(answer.json())
    return returned


def ingestion_posts(langfuse: LangfuseStandIn, project: Project) -> list[dict[str, Any]]:
    return [
        r
        for r in langfuse.requests
        if r["path"] == "/api/public/ingestion"
        and r["headers"].get("x_langfuse_public_key", r["headers"].get("x-langfuse-public-key"))
        == project.public_key
    ]


def test_upstream_filter_records_the_same_conversation_with_its_known_gaps(
    upstream_pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    project = langfuse.default_project
    point_upstream_at(upstream_pipelines, langfuse, project)
    returned = replay_upstream(upstream_pipelines)
    upstream_pipelines.stop()  # on_shutdown flushes the SDK's queue

    traces = langfuse.traces(project.project_id)
    observations = langfuse.observations(project_id=project.project_id)
    by_session = {t["sessionId"]: t for t in traces}
    # One trace per chat id it saw; API calls (chat_id "") all share one trace "chat:".
    assert set(by_session) == {CHAT_ID, None, TEMP_CHAT_ID}
    chat = by_session[CHAT_ID]
    assert chat["name"] == f"chat:{CHAT_ID}"
    assert chat["userId"] == USER["email"]  # always the email, no valve
    assert chat["id"] != trace_id(CHAT_ID)  # random ids: a restart starts a new trace
    assert by_session[None]["name"] == "chat:"
    generations = [o for o in observations if o["type"] == "GENERATION"]
    assert len(generations) == 4  # one per outlet, the title task is an event
    for generation in generations:
        assert generation["output"] is None  # the answer is only on the trace
        assert generation["name"].startswith("llm_response:")
    events = [o for o in observations if o["type"] == "EVENT"]
    assert len(events) == 5  # one per inlet
    # It changes what Open WebUI forwards to the model.
    assert returned[0]["metadata"]["interface"] == "open-webui"
    assert returned[0]["metadata"]["type"] == "user_response"
    # Everything went through the legacy ingestion endpoint.
    assert ingestion_posts(langfuse, project)
    assert not [r for r in langfuse.requests if r["path"] == "/api/public/otel/v1/traces"]


def test_side_by_side_against_langfuse_v4_events_only(
    pipelines: PipelinesServer,
    upstream_pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
) -> None:
    langfuse.events_only = True  # Langfuse v4's default write mode
    upstream_project = langfuse.add_project(name="upstream-filter")
    bundled_project = langfuse.add_project(name="bundled-filter")
    install_bundled(pipelines)
    point_bundled_at(pipelines, langfuse, bundled_project)
    log_before = len(upstream_pipelines.log_path.read_text())
    point_upstream_at(upstream_pipelines, langfuse, upstream_project)

    # The upstream filter's credential check passes against this server...
    assert "Please re-enter" not in upstream_pipelines.log_path.read_text()[log_before:]
    checks = [
        r
        for r in langfuse.requests
        if r["path"] == "/api/public/projects"
        and r["headers"].get("x-langfuse-public-key") == upstream_project.public_key
    ]
    assert [r["status"] for r in checks] == [200]
    replay(pipelines, scripted_conversation())
    replay_upstream(upstream_pipelines)
    upstream_pipelines.stop()
    pipelines.stop()
    delivered = {
        name: (
            len(langfuse.traces(project.project_id)),
            len(langfuse.observations(project_id=project.project_id)),
        )
        for name, project in (("upstream", upstream_project), ("bundled", bundled_project))
    }
    print(f"\ndelivered to an events_only Langfuse (traces, observations): {delivered}")
    # ...and its data still reached the server, which refused every event inside a 207.
    assert ingestion_posts(langfuse, upstream_project)
    assert delivered == {"upstream": (0, 0), "bundled": (3, 5)}
