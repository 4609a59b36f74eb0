"""The bundled filter in the real Pipelines server, exporting to the Langfuse stand-in.

Installed the way the operator installs it (upload under a per-resource pipeline id, then a
complete valves object), driven through Pipelines' HTTP inlet/outlet routes the way Open WebUI
calls them, and read back through the stand-in.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import pytest
from openwebui_langfuse.filters import bundled_filter_bytes
from openwebui_langfuse.filters.langfuse_tracing_filter import generation_id_for

from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.unit.test_filter_conversation import (
    A1,
    A2,
    API_OUTLET_ID,
    CHAT_ID,
    MODEL,
    Q1,
    Q2,
    TASK_MODEL,
    TEMP_CHAT_ID,
    USER,
    Step,
    outlet_body,
    scripted_conversation,
    user_turn,
)
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for
from tests.world.proc import free_port

pytestmark = pytest.mark.world

PIPELINE_ID = "lft_team_a_tracing"  # the shape of derived ids (docs/design.md, "Names")
# Short export cadence so tests wait milliseconds, not the default second.
FAST = {"flush_interval_seconds": 0.1, "request_timeout_seconds": 2.0}


def trace_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def install_bundled(pipelines: PipelinesServer, pipeline_id: str = PIPELINE_ID) -> None:
    with pipelines.client() as http:
        answer = http.post(
            "/pipelines/upload",
            files={"file": (f"{pipeline_id}.py", bundled_filter_bytes(), "text/x-python")},
        )
        assert answer.status_code == 200, answer.text
        # Upload says 200 even when loading failed: confirm it is listed.
        listed = http.get("/pipelines").json()["data"]
        assert {"id": pipeline_id, "name": pipeline_id, "type": "filter", "valves": True} in listed
        models = http.get("/models").json()["data"]
        [row] = [m for m in models if m["id"] == pipeline_id]
        assert row["name"] == "Langfuse Tracing"
        assert row["pipeline"] == {
            "type": "filter",
            "pipelines": ["*"],
            "priority": 0,
            "valves": True,
        }


def set_valves(pipelines: PipelinesServer, pipeline_id: str, **desired: Any) -> dict[str, Any]:
    """GET, overlay, POST the complete object (a partial POST resets the rest)."""
    with pipelines.client() as http:
        current = http.get(f"/{pipeline_id}/valves").json()
        answer = http.post(f"/{pipeline_id}/valves/update", json={**current, **desired})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


def point_at(pipelines: PipelinesServer, langfuse: LangfuseStandIn, **extra: Any) -> None:
    desired = {
        "public_key": langfuse.public_key,
        "secret_key": langfuse.secret_key,
        "host": langfuse.url,
    }
    set_valves(pipelines, PIPELINE_ID, **{**desired, **FAST, **extra})


def call(http: httpx.Client, pipeline_id: str, step: Step) -> httpx.Response:
    return http.post(
        f"/{pipeline_id}/filter/{step.hook}", json={"user": step.user, "body": step.body}
    )


def replay(
    pipelines: PipelinesServer, steps: list[Step], pipeline_id: str = PIPELINE_ID
) -> list[float]:
    """Send each step as Open WebUI does; assert the body comes back unchanged."""
    durations = []
    with pipelines.client() as http:
        for step in steps:
            started = time.perf_counter()
            answer = call(http, pipeline_id, step)
            durations.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
            assert answer.json() == step.body
    return durations


def otlp_posts(langfuse: LangfuseStandIn) -> list[dict[str, Any]]:
    return [r for r in langfuse.requests if r["path"] == "/api/public/otel/v1/traces"]


def observation_by_message(langfuse: LangfuseStandIn) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for obs in langfuse.observations():
        metadata = obs.get("metadata") or {}
        key = "title" if metadata.get("task") else metadata.get("message_id")
        if (
            obs["traceId"] == trace_id("api:" + API_OUTLET_ID)
            or (langfuse.trace(obs["traceId"]) or {}).get("name") == "open-webui api request"
        ):
            key = "api"
        assert key not in found, f"two observations for {key}"
        found[str(key)] = obs
    return found


def test_scripted_conversation_arrives_as_expected_traces_and_observations(
    pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    install_bundled(pipelines)
    point_at(pipelines, langfuse)
    started = time.time()
    replay(pipelines, scripted_conversation())

    langfuse.wait_for(lambda: len(langfuse.observations()) >= 5, what="5 observations")
    traces = {t["id"]: t for t in langfuse.traces()}
    assert len(traces) == 3
    chat = traces[trace_id(CHAT_ID)]
    assert chat["name"] == "open-webui chat"
    assert chat["sessionId"] == CHAT_ID
    assert chat["userId"] == USER["id"]
    assert chat["tags"] == ["open-webui", "title_generation"]
    assert chat["input"] == Q2 and chat["output"] == A2  # the last exchange, not the title task
    assert chat["metadata"]["chat_id"] == CHAT_ID
    temporary = traces[trace_id(TEMP_CHAT_ID)]
    assert temporary["name"] == "open-webui temporary chat"
    assert temporary["sessionId"] == TEMP_CHAT_ID
    assert temporary["tags"] == ["open-webui", "temporary-chat"]
    assert temporary["input"] is None and temporary["output"] is None
    [api] = [t for t in traces.values() if t["name"] == "open-webui api request"]
    assert api["sessionId"] is None and api["tags"] == ["open-webui", "api"]
    assert api["userId"] == USER["id"]

    observations = observation_by_message(langfuse)
    assert sorted(observations) == ["api", "msg-a1", "msg-a2", "msg-t1", "title"]
    assert {o["type"] for o in observations.values()} == {"GENERATION"}
    assert [observations[k]["traceId"] for k in ("msg-a1", "title", "msg-a2")] == [chat["id"]] * 3

    turn1 = observations["msg-a1"]
    assert turn1["name"] == "assistant response"
    assert turn1["model"] == MODEL
    assert turn1["modelParameters"] == {"temperature": 0.2}
    assert turn1["input"][-1] == {"role": "user", "content": Q1}
    assert turn1["output"] == A1
    assert turn1["usageDetails"] == {"input": 21, "output": 9, "total": 30}
    assert turn1["metadata"]["stream"] is False
    assert turn1["startTime"] < turn1["endTime"]
    assert turn1["startTime"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started - 1))

    title = observations["title"]
    assert title["name"] == "task:title_generation"
    assert title["model"] == TASK_MODEL
    assert title["metadata"]["task"] == "title_generation"

    turn2 = observations["msg-a2"]
    assert turn2["metadata"]["stream"] is True
    assert turn2["input"][-1]["content"] == Q2 and turn2["output"] == A2
    assert turn2["usageDetails"] == {
        "input": 32,
        "input_cached_tokens": 16,
        "output": 12,
        "total": 60,
    }
    assert turn2["costDetails"] == {"total": 0.00042}

    assert observations["api"]["metadata"]["message_id"] == API_OUTLET_ID
    assert observations["api"]["metadata"]["inlet_seen"] is True
    temp_obs = observations["msg-t1"]
    assert temp_obs["input"] is None and temp_obs["output"] is None
    assert temp_obs["usageDetails"] in (None, {})

    # Through the stand-in's HTTP read API too (what a v5 SDK or the Langfuse UI reads).
    read = httpx.get(
        f"{langfuse.url}/api/public/v2/observations",
        params={"traceId": chat["id"], "fields": "core,basic,usage,model"},
        auth=(langfuse.public_key, langfuse.secret_key),
    )
    assert read.status_code == 200
    assert len(read.json()["data"]) == 3

    # Only OTLP was used, with the project's keys; nothing went to legacy ingestion.
    paths = {r["path"] for r in langfuse.requests if r["method"] == "POST"}
    assert paths == {"/api/public/otel/v1/traces"}
    assert langfuse.secret_key not in pipelines.log_path.read_text()
    assert Q1 not in pipelines.log_path.read_text()  # no prompts in logs without debug


def test_rotating_keys_through_a_valves_update(
    pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    install_bundled(pipelines)
    point_at(pipelines, langfuse)
    first_project = langfuse.default_project
    replay(pipelines, scripted_conversation()[:2])
    langfuse.wait_for(lambda: langfuse.traces(first_project.project_id), what="first trace")

    rotated = langfuse.add_project(name="rotated")
    set_valves(pipelines, PIPELINE_ID, public_key=rotated.public_key, secret_key=rotated.secret_key)
    steps = [
        Step("inlet", user_turn("chat-after-rotation", "r1", [], "q", stream=False), USER),
        Step(
            "outlet",
            outlet_body("chat-after-rotation", "r1", [{"role": "user", "content": "q"}], "a", None),
            USER,
        ),
    ]
    replay(pipelines, steps)
    [trace] = langfuse.wait_for(lambda: langfuse.traces(rotated.project_id), what="rotated trace")
    assert trace["id"] == trace_id("chat-after-rotation")
    assert [t["id"] for t in langfuse.traces(first_project.project_id)] == [trace_id(CHAT_ID)]
    expected = {first_project.public_key, rotated.public_key}

    def auth_keys() -> set[str]:
        return {
            r["headers"].get("x-langfuse-public-key")
            for r in langfuse.requests
            if r["path"] == "/api/public/otel/v1/traces"
        }

    # The stand-in logs a request after its handler has stored the trace: wait for the log
    # entry of the export just seen instead of reading the log in between.
    langfuse.wait_for(lambda: auth_keys() >= expected, what="both keys in the request log")
    assert auth_keys() == expected


def test_langfuse_outage_loses_no_chat_and_is_logged_once(
    pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    install_bundled(pipelines)
    point_at(pipelines, langfuse)
    langfuse.set_failure("500")
    durations = replay(pipelines, scripted_conversation())
    assert max(durations) < 1.0  # chats are not held up by the outage
    langfuse.wait_for(lambda: len(otlp_posts(langfuse)) >= 3, what="retries during the outage")
    assert langfuse.observations() == []
    # More chats during the outage, then Langfuse comes back.
    more = [
        Step("inlet", user_turn(CHAT_ID, "during", [], "q", stream=False), USER),
        Step(
            "outlet",
            outlet_body(CHAT_ID, "during", [{"role": "user", "content": "q"}], "a", None),
            USER,
        ),
    ]
    replay(pipelines, more)
    langfuse.set_failure(None)
    langfuse.wait_for(
        lambda: len(langfuse.observations()) >= 6, timeout=40, what="all 6 observations"
    )
    langfuse.wait_for(lambda: "recovered" in pipelines.log_path.read_text(), what="recovery log")
    assert len(langfuse.observations()) == 6  # delivered once each, none twice
    log = pipelines.log_path.read_text()
    assert log.count("Langfuse export to") == 2, log  # one "failing", one "recovered"
    assert log.count("failing: HTTP 500") == 1
    assert langfuse.secret_key not in log


def test_unreachable_langfuse_loses_no_chat_and_is_logged_once(
    pipelines: PipelinesServer,
) -> None:
    # Nothing listens on the port yet: connection refused, the "Langfuse is down" case.
    port = free_port()
    later = LangfuseStandIn(port=port)
    project = later.add_project(name="comes-back")
    install_bundled(pipelines)
    set_valves(
        pipelines,
        PIPELINE_ID,
        public_key=project.public_key,
        secret_key=project.secret_key,
        host=f"http://127.0.0.1:{port}",
        **FAST,
    )
    durations = replay(pipelines, scripted_conversation())
    assert max(durations) < 1.0
    wait_for(lambda: "unreachable" in pipelines.log_path.read_text(), 10, "outage log line")
    with later:
        later.wait_for(lambda: len(later.observations()) >= 5, timeout=40, what="5 observations")
        later.wait_for(
            lambda: "recovered" in pipelines.log_path.read_text(), what="recovery log line"
        )
        assert len(later.traces()) == 3 and len(later.observations()) == 5
    log = pipelines.log_path.read_text()
    assert log.count("failing: unreachable") == 1, log
    assert log.count("recovered after") == 1, log


def test_reload_and_restart_keep_tracing_with_the_stored_valves(
    pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    install_bundled(pipelines)
    point_at(pipelines, langfuse)
    pipelines.restart()  # valves.json restores keys; on_startup builds the exporter
    steps = [
        Step("inlet", user_turn(CHAT_ID, "after-restart", [], "q", stream=False), USER),
        Step(
            "outlet",
            outlet_body(CHAT_ID, "after-restart", [{"role": "user", "content": "q"}], "a", None),
            USER,
        ),
    ]
    replay(pipelines, steps)
    [obs] = langfuse.wait_for(lambda: langfuse.observations(), what="observation after restart")
    assert obs["traceId"] == trace_id(CHAT_ID)
    assert obs["metadata"]["inlet_seen"] is True


def test_shutdown_flushes_what_is_queued(
    pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    install_bundled(pipelines)
    # A long flush interval: only the shutdown flush can deliver in time.
    point_at(pipelines, langfuse, flush_interval_seconds=60)
    replay(pipelines, scripted_conversation())
    assert langfuse.observations() == []
    pipelines.restart()
    assert len(langfuse.observations()) == 5


def test_a_bad_host_never_stops_pipelines(
    pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    install_bundled(pipelines)
    point_at(pipelines, langfuse, host="langfuse without a scheme")  # stored in valves.json
    pipelines.restart()  # on_startup with the stored bad host: the server must still start
    replay(pipelines, scripted_conversation()[:2])  # chats pass, untraced
    assert "Langfuse tracing is off" in pipelines.log_path.read_text()
    point_at(pipelines, langfuse)  # fixed by the next valves update
    replay(pipelines, scripted_conversation()[:2])
    langfuse.wait_for(lambda: langfuse.observations(), what="a trace after the fix")


def test_a_message_sent_twice_is_one_observation_and_its_task_another(
    pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    """The observation id comes from the message id: an outlet that comes again (retried, or
    after a reload lost the pending turn) updates the generation instead of adding one."""
    install_bundled(pipelines)
    point_at(pipelines, langfuse)
    message = "twice-1"
    prompt = [{"role": "user", "content": "q"}]
    replay(
        pipelines,
        [
            Step("inlet", user_turn(CHAT_ID, message, [], "q", stream=False), USER),
            Step("outlet", outlet_body(CHAT_ID, message, prompt, "a", None), USER),
        ],
    )
    [first] = langfuse.wait_for(lambda: langfuse.observations(), what="the first export")
    assert first["id"] == generation_id_for(message)
    assert first["metadata"]["inlet_seen"] is True
    pipelines.restart()  # the pending turns are gone; the outlet comes again
    replay(pipelines, [Step("outlet", outlet_body(CHAT_ID, message, prompt, "a2", None), USER)])
    langfuse.wait_for(
        lambda: [o for o in langfuse.observations() if o["output"] == "a2"],
        what="the second export",
    )
    [again] = langfuse.observations()
    assert again["id"] == first["id"]
    assert again["metadata"]["inlet_seen"] is False

    task = user_turn(CHAT_ID, message, [], "Generate a concise title", stream=False)
    task["metadata"]["task"] = "title_generation"
    replay(pipelines, [Step("inlet", task, USER)])
    rows = langfuse.wait_for(
        lambda: len(langfuse.observations()) == 2 and langfuse.observations(),
        what="the task's observation",
    )
    assert {row["id"] for row in rows} == {
        generation_id_for(message),
        generation_id_for(message, "title_generation"),
    }
