"""The Function target through the cluster: the operator process, a LangfuseTracing with
``target: function``, the real Open WebUI; and the move of a resource from the Pipelines target
to the function target, with no chat left untraced and no trace twice.

The model is a Pipe function served by Open WebUI itself, so the same chats go through either
target (a Pipelines filter applies to every model of Open WebUI, function pipes included).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    crd_fixture,
    harness_fixture,
    operator_fixture,
    pipeline_ids,
    secret_guard_fixture,
    secrets_in_fixture,
    spec,
)
from tests.integration.test_bundled_filter import trace_id
from tests.integration.test_bundled_filter_function import (
    EXPECTED_USAGE,
    SavedTurn,
    saved_chat_turn,
)
from tests.integration.test_function_target import (
    PIPE_ID,
    echo_pipe,  # noqa: F401 - fixture by name
    function,
    stored_valves,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.open_webui import OpenWebUI
from tests.world.operator import Harness
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

pytestmark = [pytest.mark.world, pytest.mark.usefixtures("secret_guard", "secrets_in")]


@pytest.fixture
def admin_secret(harness: Harness, namespace: str, open_webui: OpenWebUI) -> Iterator[None]:
    harness.put_secret(
        namespace,
        "open-webui-admin",
        {"email": open_webui.admin_email, "password": open_webui.admin_password},
    )
    yield
    open_webui.set_connections([], [])  # leave the session's Open WebUI as found


def openwebui_auth(open_webui: OpenWebUI) -> dict[str, Any]:
    return {
        "url": open_webui.url,
        "auth": {"credentials": {"secretRef": {"name": "open-webui-admin"}}},
    }


def function_spec(
    pipelines: PipelinesServer, langfuse: LangfuseStandIn, open_webui: OpenWebUI
) -> dict[str, Any]:
    body = spec(pipelines, langfuse, target="function", openWebUI=openwebui_auth(open_webui))
    del body["pipelines"]
    return body


def generations(langfuse: LangfuseStandIn, turn: SavedTurn) -> list[dict[str, Any]]:
    """The observations of a saved chat's trace (its id derives from the chat id)."""
    return langfuse.observations(trace_id=trace_id(turn.chat_id))


@pytest.mark.usefixtures("admin_secret", "echo_pipe")
def test_a_function_target_resource_is_ready_and_traces(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    open_webui: OpenWebUI,
) -> None:
    harness.apply(namespace, "tracing", function_spec(pipelines, langfuse, open_webui))
    harness.wait_condition(namespace, "tracing", "Ready", "True", timeout=60)
    resource = harness.get(namespace, "tracing") or {}
    status = resource["status"]
    function_id = f"lft_{namespace.replace('-', '_')}_tracing"
    assert status["target"] == "function" and status["functionId"] == function_id
    assert "ConnectionRegistered" not in {c["type"] for c in status["conditions"]}
    assert pipeline_ids(pipelines) == []  # nothing went to Pipelines
    stored = function(open_webui, function_id)
    assert stored is not None and stored["is_active"] and stored["is_global"]
    assert stored_valves(open_webui, function_id)["public_key"] == langfuse.public_key

    turn = saved_chat_turn(open_webui, "traced through the cluster", model=PIPE_ID)
    observation = wait_for(
        lambda: next(iter(generations(langfuse, turn)), None), 20, "the chat's generation"
    )
    assert observation["usageDetails"] == EXPECTED_USAGE
    trace = langfuse.trace(observation["traceId"])
    assert trace is not None and trace["userId"] and trace["sessionId"] == turn.chat_id

    harness.delete(namespace, "tracing")
    wait_for(lambda: harness.get(namespace, "tracing") is None, 30, "the resource to be gone")
    assert function(open_webui, function_id) is None


@pytest.mark.usefixtures("admin_secret", "echo_pipe")
def test_moving_from_pipelines_to_function_leaves_no_chat_untraced(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    open_webui: OpenWebUI,
) -> None:
    pipelines_spec = spec(pipelines, langfuse, openWebUI=openwebui_auth(open_webui))
    harness.apply(namespace, "tracing", pipelines_spec)
    harness.wait_condition(namespace, "tracing", "Ready", "True", timeout=60)
    pipeline_id = (harness.get(namespace, "tracing") or {})["status"]["pipelineId"]
    assert pipeline_ids(pipelines) == [pipeline_id]
    function_id = pipeline_id  # derived from the resource the same way

    # Chats all through the move, one saved chat (one trace) after another.
    turns: list[SavedTurn] = []
    failures: list[str] = []
    moving = threading.Event()
    moving.set()

    def chat_on() -> None:
        n = 0
        while moving.is_set():
            n += 1
            try:
                turns.append(
                    saved_chat_turn(open_webui, f"chat {n} during the move", model=PIPE_ID)
                )
            except AssertionError as exc:  # a failed chat (HTTP status) is a finding
                failures.append(str(exc)[:300])
            time.sleep(0.2)  # pacing of the simulated users, not a wait for a result

    chatter = threading.Thread(target=chat_on, daemon=True)
    chatter.start()
    try:
        wait_for(lambda: len(turns) >= 3, 30, "chats before the move")
        harness.patch_spec(
            namespace,
            "tracing",
            {"target": "function", "pipelines": None, "openWebUI": {"connectionUrl": None}},
        )
        harness.wait_condition(namespace, "tracing", "Ready", "True", timeout=60)
        wait_for(lambda: pipeline_ids(pipelines) == [], 30, "the Pipelines filter to go")
        settled = len(turns)
        wait_for(lambda: len(turns) >= settled + 3, 30, "chats after the move")
    finally:
        moving.clear()
        chatter.join(timeout=30)

    assert failures == []  # no chat failed, before, during or after the move
    status = (harness.get(namespace, "tracing") or {})["status"]
    assert status["target"] == "function" and "pipelineId" not in status
    stored = function(open_webui, function_id)
    assert stored is not None and stored["is_active"] and stored["is_global"]
    # No gap: every chat has its trace; no chat has two (the trace id comes from the chat id).
    for index, turn in enumerate(turns):
        wait_for(
            lambda turn=turn: langfuse.trace(trace_id(turn.chat_id)),
            20,
            f"the trace of chat {index} of {len(turns)} (the move was done at chat {settled})",
        )
    sessions = [t["sessionId"] for t in langfuse.traces()]
    assert sorted(sessions) == sorted(turn.chat_id for turn in turns)
    # The filter that was removed went only after the function was confirmed.
    messages = [e["message"] for e in harness.events(namespace) if e["reason"] == "Synced"]
    moved = next(m for m in messages if f"deleted the previous filter {pipeline_id}" in m)
    assert any(f"switched on function {function_id}" in m for m in messages), messages
    assert "switched on" not in moved or moved.index("switched on") < moved.index("deleted")
    # After the move, each chat is traced once: one generation per chat.
    for turn in turns[-2:]:
        assert len(generations(langfuse, turn)) == 1


@pytest.mark.usefixtures("admin_secret", "echo_pipe")
def test_the_function_cuts_connection_prefixes_and_the_status_names_unpriced_models(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    open_webui: OpenWebUI,
) -> None:
    # A prefixed connection (its server need not answer: only its prefix matters here).
    open_webui.set_connections(
        ["http://127.0.0.1:9/v1"], [""], {"0": {"enable": True, "prefix_id": "owlpfx"}}
    )
    harness.apply(namespace, "tracing", function_spec(pipelines, langfuse, open_webui))
    harness.wait_condition(namespace, "tracing", "Ready", "True", timeout=60)
    function_id = (harness.get(namespace, "tracing") or {})["status"]["functionId"]
    assert stored_valves(open_webui, function_id)["model_prefixes"] == ["owlpfx"]
    # The echo pipe is a model no Langfuse definition prices: the status says so.
    pricing = wait_for(
        lambda: ((harness.get(namespace, "tracing") or {}).get("status") or {}).get("pricing"),
        20,
        "status.pricing",
    )
    assert PIPE_ID in pricing["unpricedModels"] and pricing["checkedModels"] >= 1
