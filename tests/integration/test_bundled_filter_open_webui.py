"""The bundled filter behind the real Open WebUI 0.12.4: the bodies it really sends.

The scripted bodies of the other tests follow docs/upstream/open-webui.md, "How filters run in a
chat"; here Open WebUI itself calls the filter (Pipelines registered as a connection, the echo
pipe as the model), so the inlet/outlet pairing of API calls, streamed answers and inlet-only
title tasks is proven against what Open WebUI actually sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_bundled_filter import install_bundled, point_at
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.open_webui import OpenWebUI
from tests.world.pipelines import PipelinesServer
from tests.world.sample_pipelines import ECHO_PIPE_ID

pytestmark = pytest.mark.world


@pytest.fixture
def connected(
    open_webui: OpenWebUI, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> Iterator[OpenWebUI]:
    """Pipelines (echo pipe + bundled filter) as Open WebUI's only connection."""
    assert pipelines.upload(ECHO_PIPE_ID).status_code == 200
    install_bundled(pipelines)
    point_at(pipelines, langfuse)
    open_webui.set_connections([pipelines.url], [pipelines.api_key])
    try:
        with open_webui.client() as http:
            models = http.get("/api/models", params={"refresh": "true"}).json()["data"]
            assert ECHO_PIPE_ID in [m["id"] for m in models]
        yield open_webui
    finally:
        open_webui.set_connections([], [])  # leave the session's Open WebUI as found


def only_observation(langfuse: LangfuseStandIn, count: int) -> list[dict[str, Any]]:
    observations = langfuse.wait_for(
        lambda: (rows := langfuse.observations()) and len(rows) >= count and rows,
        what=f"{count} observations",
    )
    return list(observations)


def test_api_chat_completion_is_one_generation_with_real_latency(
    connected: OpenWebUI, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    with connected.client() as http:
        answer = http.post(
            "/api/chat/completions",
            json={
                "model": ECHO_PIPE_ID,
                "messages": [{"role": "user", "content": "hello through open webui"}],
                "stream": False,
            },
        )
    assert answer.status_code == 200, answer.text
    assert "echo: hello through open webui" in answer.text

    [obs] = only_observation(langfuse, 1)
    [trace] = langfuse.traces()
    assert trace["name"] == "open-webui api request"
    assert trace["sessionId"] is None
    assert obs["metadata"]["inlet_seen"] is True  # the outlet found its inlet
    assert obs["model"] == ECHO_PIPE_ID
    assert obs["input"][-1]["content"] == "hello through open webui"
    assert obs["output"] == "echo: hello through open webui"
    assert obs["startTime"] < obs["endTime"]
    assert obs["metadata"]["message_id"]  # the id Open WebUI minted for the outlet
    # Shutdown would send any turn still waiting for its outlet: there is none.
    pipelines.stop()
    assert len(langfuse.observations()) == 1


def test_streamed_api_chat_and_a_title_task(
    connected: OpenWebUI, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    with connected.client() as http:
        with http.stream(
            "POST",
            "/api/chat/completions",
            json={
                "model": ECHO_PIPE_ID,
                "messages": [{"role": "user", "content": "stream me"}],
                "stream": True,
            },
        ) as streamed:
            assert streamed.status_code == 200
            text = "".join(streamed.iter_text())
        assert "echo: stream me" in text
        title = http.post(
            "/api/v1/tasks/title/completions",
            json={
                "model": ECHO_PIPE_ID,
                "messages": [
                    {"role": "user", "content": "stream me"},
                    {"role": "assistant", "content": "echo: stream me"},
                ],
                "chat_id": "c0ffee00-title-chat",
            },
        )
        assert title.status_code == 200, title.text

    observations = only_observation(langfuse, 2)
    by_name = {o["name"]: o for o in observations}
    assert set(by_name) == {"assistant response", "task:title_generation"}
    turn = by_name["assistant response"]
    assert turn["metadata"]["stream"] is True
    assert turn["metadata"]["inlet_seen"] is True
    assert turn["output"] == "echo: stream me"
    task = by_name["task:title_generation"]
    assert task["metadata"]["task"] == "title_generation"
    title_trace = langfuse.trace(task["traceId"])
    assert title_trace is not None
    assert title_trace["sessionId"] == "c0ffee00-title-chat"
    assert "title_generation" in title_trace["tags"]
    pipelines.stop()
    assert len(langfuse.observations()) == 2


def test_saved_chat_as_the_web_ui_sends_it(
    connected: OpenWebUI, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    """A new chat (Open WebUI creates and stores it, and runs the title task in the
    background), then a streamed follow-up in the same chat: one trace, session = chat id."""
    with connected.client() as http:
        first = http.post(
            "/api/chat/completions",
            json={
                "model": ECHO_PIPE_ID,
                "messages": [{"role": "user", "content": "first"}],
                "parent_id": None,  # a new chat
                "id": "assistant-1",
                "user_message": {"id": "user-1", "role": "user", "content": "first"},
                "background_tasks": {"title_generation": True},
                "stream": False,
            },
        )
        assert first.status_code == 200, first.text
        # The turn and its background title task both carry the chat id Open WebUI minted.
        chat_id = only_observation(langfuse, 1)[0]["metadata"]["chat_id"]
        follow_up = http.post(
            "/api/chat/completions",
            json={
                "model": ECHO_PIPE_ID,
                "messages": [
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "echo: first"},
                    {"role": "user", "content": "second"},
                ],
                "chat_id": chat_id,
                "parent_id": "assistant-1",
                "id": "assistant-2",
                "user_message": {"id": "user-2", "role": "user", "content": "second"},
                "stream": True,
            },
        )
        assert follow_up.status_code == 200, follow_up.text

    observations = only_observation(langfuse, 3)
    pipelines.stop()
    assert len(langfuse.observations()) == 3  # nothing was left waiting for an outlet
    [trace] = langfuse.traces()
    assert trace["name"] == "open-webui chat" and trace["sessionId"] == chat_id
    assert trace["output"] == "echo: second"
    turns = {
        o["metadata"]["message_id"]: o for o in observations if o["name"] == "assistant response"
    }
    assert set(turns) == {"assistant-1", "assistant-2"}
    assert turns["assistant-1"]["output"] == "echo: first"
    assert turns["assistant-2"]["output"] == "echo: second"
    assert turns["assistant-2"]["metadata"]["stream"] is True
    assert all(o["metadata"]["inlet_seen"] for o in turns.values())
    [title] = [o for o in observations if o["name"] == "task:title_generation"]
    assert title["traceId"] == trace["id"]


def test_a_custom_model_through_pipelines_is_priced_as_its_base_model(
    connected: OpenWebUI, langfuse: LangfuseStandIn
) -> None:
    """Open WebUI hands the Pipelines filter `body.metadata.model`, the registry model dict
    with `info.base_model_id` for a Workspace model: the generation names the base model."""
    custom = "owl-pipelines-custom"
    with (
        connected.workspace_model(custom, ECHO_PIPE_ID, "OWL Pipelines Custom"),
        connected.client() as http,
    ):
        answer = http.post(
            "/api/chat/completions",
            json={
                "model": custom,
                "messages": [{"role": "user", "content": "which model am I?"}],
                "stream": False,
            },
        )
        assert answer.status_code == 200, answer.text
        [obs] = only_observation(langfuse, 1)
    assert obs["model"] == ECHO_PIPE_ID
    assert obs["metadata"]["model_id"] == custom
    assert obs["metadata"]["model_name"] == "OWL Pipelines Custom"
    assert obs["metadata"]["base_model_id"] == ECHO_PIPE_ID
