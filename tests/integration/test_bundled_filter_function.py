"""The bundled filter as an Open WebUI 0.12.4 Filter Function, in the real Open WebUI.

The same file that Pipelines loads as a `Pipeline` is created as a function (Open WebUI
instantiates its `Filter` class), made active and global, and given its valves through the
functions API. The model is a small Pipe function of this module, served by Open WebUI itself.
No lifecycle hook ever runs for functions, so every trace here proves the lazily built,
self-flushing exporter; rotating keys proves that valves set freshly per request are followed.
One chat traced by both targets at once (Pipelines as a connection, the function as a global
filter), each into its own project, gives traces of the same shape.

Every function made here is deleted afterwards and the models cache refreshed, so the session's
Open WebUI is left as found (docs/upstream/open-webui.md, "Functions: what the bundled filter
relies on").
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openwebui_langfuse.filters import bundled_filter_bytes
from openwebui_langfuse.filters.langfuse_tracing_filter import generation_id_for

from tests.integration.test_bundled_filter import FAST, trace_id
from tests.integration.test_bundled_filter_open_webui import connected  # noqa: F401 (fixture)
from tests.peers.langfuse_standin.keys import Project
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.open_webui import OpenWebUI
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for
from tests.world.sample_pipelines import ECHO_PIPE_ID

pytestmark = pytest.mark.world

FILTER_ID = "owl_langfuse_tracing"
PIPE_ID = "owl_echo_pipe"
UNREACHABLE = "http://127.0.0.1:9"
TRACE_TIMEOUT = 20.0
# What the echo pipe reports; the stand-in shows it as Langfuse usage details.
PIPE_USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
EXPECTED_USAGE = {"input": 7, "output": 3, "total": 10}

ECHO_PIPE_FUNCTION = '''\
"""
title: OWL Echo Pipe
description: Test pipe function of openwebui-langfuse; answers with the last user message.
"""

import time

USAGE = __USAGE__


class Pipe:
    def __init__(self):
        self.name = "OWL Echo Pipe"

    def _answer(self, body):
        for message in reversed(body.get("messages") or []):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, list):
                    content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
                return "echo: " + str(content)
        return "echo: "

    def pipe(self, body: dict):
        answer = self._answer(body)
        model = body.get("model")
        if body.get("stream"):
            return self._chunks(model, answer)
        return {
            "id": "chatcmpl-owl-echo",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": dict(USAGE),
        }

    def _chunks(self, model, answer):
        def chunk(delta, finish=None):
            return {
                "id": "chatcmpl-owl-echo",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        yield chunk({"role": "assistant", "content": ""})
        for word in answer.split(" "):
            yield chunk({"content": word + " "})
        yield chunk({}, "stop")
        yield {
            "id": "chatcmpl-owl-echo",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": dict(USAGE),
        }
'''.replace("__USAGE__", json.dumps(PIPE_USAGE))


# -- functions through the admin API -------------------------------------------------------------


def create_function(
    http: httpx.Client, function_id: str, name: str, content: str
) -> httpx.Response:
    http.delete(f"/api/v1/functions/id/{function_id}/delete")  # a leftover of an aborted run
    return http.post(
        "/api/v1/functions/create",
        json={
            "id": function_id,
            "name": name,
            "content": content,
            "meta": {"description": f"openwebui-langfuse test function {function_id}"},
        },
    )


def switch_on(http: httpx.Client, function_id: str, *, make_global: bool = False) -> None:
    toggled = http.post(f"/api/v1/functions/id/{function_id}/toggle")
    assert toggled.status_code == 200 and toggled.json()["is_active"] is True, toggled.text
    if make_global:
        made = http.post(f"/api/v1/functions/id/{function_id}/toggle/global")
        assert made.status_code == 200 and made.json()["is_global"] is True, made.text


def filter_valves(langfuse: LangfuseStandIn, project: Project | None = None, **extra: Any) -> Any:
    project = project or langfuse.default_project
    return {
        "public_key": project.public_key,
        "secret_key": project.secret_key,
        "host": langfuse.url,
        **FAST,
        **extra,
    }


def set_filter_valves(http: httpx.Client, valves: dict[str, Any]) -> None:
    """The whole valves set: an update replaces what is stored, it does not merge."""
    answer = http.post(f"/api/v1/functions/id/{FILTER_ID}/valves/update", json=valves)
    assert answer.status_code == 200, answer.text
    stored = http.get(f"/api/v1/functions/id/{FILTER_ID}/valves").json()
    assert {key: stored.get(key) for key in valves} == valves


def refresh_models(http: httpx.Client) -> list[str]:
    answer = http.get("/api/models", params={"refresh": "true"})
    assert answer.status_code == 200, answer.text
    return [model["id"] for model in answer.json()["data"]]


@dataclass
class FunctionFilter:
    open_webui: OpenWebUI
    langfuse: LangfuseStandIn
    admin_id: str

    def set_valves(self, valves: dict[str, Any]) -> None:
        with self.open_webui.client() as http:
            set_filter_valves(http, valves)


@pytest.fixture
def function_filter(open_webui: OpenWebUI, langfuse: LangfuseStandIn) -> Iterator[FunctionFilter]:
    """The echo pipe function and the bundled filter (active, global, pointed at the
    stand-in's default project); both deleted afterwards."""
    log_start = open_webui.log_path.stat().st_size
    with open_webui.client() as http:
        try:
            pipe = create_function(http, PIPE_ID, "OWL Echo Pipe", ECHO_PIPE_FUNCTION)
            assert pipe.status_code == 200 and pipe.json()["type"] == "pipe", pipe.text
            switch_on(http, PIPE_ID)
            created = create_function(
                http, FILTER_ID, "Langfuse Tracing", bundled_filter_bytes().decode()
            )
            assert created.status_code == 200, created.text
            switch_on(http, FILTER_ID, make_global=True)
            set_filter_valves(http, filter_valves(langfuse))
            assert PIPE_ID in refresh_models(http)
            admin_id = str(http.get("/api/v1/auths/").json()["id"])
            yield FunctionFilter(open_webui, langfuse, admin_id)
        finally:
            for function_id in (FILTER_ID, PIPE_ID):
                http.delete(f"/api/v1/functions/id/{function_id}/delete")
            refresh_models(http)
    with open_webui.log_path.open("rb") as log:
        log.seek(log_start)
        logged = log.read().decode("utf-8", "replace")
    # Every hook catches everything: a problem is one log line, never an exception.
    assert "Langfuse filter" not in logged, logged[-3000:]
    assert langfuse.secret_key not in logged


# -- chats -----------------------------------------------------------------------------------------


def api_chat(
    open_webui: OpenWebUI, prompt: str, *, model: str = PIPE_ID, stream: bool = False
) -> str:
    """A plain API call (no chat id): the text of the answer (for a stream, the SSE text)."""
    payload = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream}
    with open_webui.client() as http:
        if stream:
            with http.stream("POST", "/api/chat/completions", json=payload) as streamed:
                assert streamed.status_code == 200, streamed.read()
                return "".join(streamed.iter_text())
        answer = http.post("/api/chat/completions", json=payload)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["choices"][0]["message"]["content"])


@dataclass(frozen=True)
class SavedTurn:
    chat_id: str
    answer_id: str
    reply: str


def saved_chat_turn(open_webui: OpenWebUI, prompt: str, *, model: str = PIPE_ID) -> SavedTurn:
    """One turn of a new, saved chat, sent as the web UI sends it (tests/e2e/stack.py,
    `Stack.chat`): create the chat, then a completion naming it, the user message and the
    id of the answer."""
    answer_id = str(uuid.uuid4())
    with open_webui.client() as http:
        created = http.post(
            "/api/v1/chats/new",
            json={
                "chat": {
                    "title": "openwebui-langfuse function test",
                    "models": [model],
                    "messages": [],
                    "history": {"messages": {}, "currentId": None},
                }
            },
        )
        assert created.status_code == 200, created.text
        chat_id = str(created.json()["id"])
        answer = http.post(
            "/api/chat/completions",
            json={
                "model": model,
                "stream": False,
                "chat_id": chat_id,
                "id": answer_id,
                "user_message": {"id": str(uuid.uuid4()), "role": "user", "content": prompt},
                "messages": [{"role": "user", "content": prompt}],
            },
        )
        assert answer.status_code == 200, answer.text
        reply = str(answer.json()["choices"][0]["message"]["content"])
        http.delete(f"/api/v1/chats/{chat_id}")
    return SavedTurn(chat_id=chat_id, answer_id=answer_id, reply=reply)


def observations_in(
    langfuse: LangfuseStandIn, project: Project, count: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = wait_for(
        lambda: (
            (found := langfuse.observations(project_id=project.project_id))
            and len(found) >= count
            and found
        ),
        TRACE_TIMEOUT,
        f"{count} observation(s) in project {project.name}",
    )
    return rows


def shape(value: Any) -> Any:
    """What is present, not what it is: dict keys (recursively) with non-empty values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items() if item not in (None, "", [], {})}
    if isinstance(value, list):
        return "list"
    return type(value).__name__


# -- the tests -------------------------------------------------------------------------------------


def test_open_webui_accepts_the_file_as_a_filter_function(open_webui: OpenWebUI) -> None:
    with open_webui.client() as http:
        try:
            created = create_function(
                http, FILTER_ID, "Langfuse Tracing", bundled_filter_bytes().decode()
            )
            assert created.status_code == 200, created.text
            row = created.json()
            assert row["type"] == "filter"
            assert row["is_active"] is False and row["is_global"] is False
            manifest = row["meta"]["manifest"]
            assert manifest["title"] == "Langfuse Tracing"
            assert "requirements" not in manifest  # nothing for Open WebUI to pip-install
            assert row["meta"]["toggle"] is False  # runs for every chat, no per-chat switch
            spec = http.get(f"/api/v1/functions/id/{FILTER_ID}/valves/spec").json()
            assert {"public_key", "secret_key", "host", "priority"} <= set(spec["properties"])
            assert http.get(f"/api/v1/functions/id/{FILTER_ID}/valves").json() == {}
        finally:
            http.delete(f"/api/v1/functions/id/{FILTER_ID}/delete")


def test_plain_and_streamed_api_chats_are_traced_with_usage(
    function_filter: FunctionFilter, langfuse: LangfuseStandIn
) -> None:
    project = langfuse.default_project
    assert api_chat(function_filter.open_webui, "hello function") == "echo: hello function"
    [plain] = observations_in(langfuse, project, 1)
    trace = langfuse.trace(plain["traceId"])
    assert trace is not None
    assert trace["name"] == "open-webui api request" and trace["sessionId"] is None
    assert trace["userId"] == function_filter.admin_id
    assert trace["input"] == "hello function" and trace["output"] == "echo: hello function"
    assert plain["name"] == "assistant response" and plain["type"] == "GENERATION"
    assert plain["model"] == PIPE_ID
    assert plain["input"][-1] == {"role": "user", "content": "hello function"}
    assert plain["output"] == "echo: hello function"
    assert plain["usageDetails"] == EXPECTED_USAGE
    assert plain["metadata"]["inlet_seen"] is True  # the outlet found its inlet
    assert plain["metadata"]["stream"] is False
    assert plain["metadata"]["model_name"] == "OWL Echo Pipe"  # from __metadata__/metadata
    assert plain["startTime"] < plain["endTime"]

    text = api_chat(function_filter.open_webui, "stream me", stream=True)
    assert "echo:" in text and "stream" in text
    observations = observations_in(langfuse, project, 2)
    [streamed] = [o for o in observations if o["id"] != plain["id"]]
    assert streamed["metadata"]["stream"] is True
    assert streamed["metadata"]["inlet_seen"] is True
    assert streamed["output"].strip() == "echo: stream me"
    assert streamed["usageDetails"] == EXPECTED_USAGE
    assert streamed["traceId"] != plain["traceId"]  # one trace per API request


def test_a_saved_chat_turn_has_the_chat_as_session(
    function_filter: FunctionFilter, langfuse: LangfuseStandIn
) -> None:
    turn = saved_chat_turn(function_filter.open_webui, "remember me")
    assert turn.reply == "echo: remember me"
    [obs] = observations_in(langfuse, langfuse.default_project, 1)
    assert obs["traceId"] == trace_id(turn.chat_id)
    trace = langfuse.trace(obs["traceId"])
    assert trace is not None
    assert trace["name"] == "open-webui chat"
    assert trace["sessionId"] == turn.chat_id
    assert trace["userId"] == function_filter.admin_id
    assert trace["metadata"]["chat_id"] == turn.chat_id
    assert obs["metadata"]["message_id"] == turn.answer_id
    assert obs["metadata"]["inlet_seen"] is True
    assert obs["output"] == "echo: remember me"
    assert obs["usageDetails"] == EXPECTED_USAGE


def test_one_chat_through_both_targets_gives_traces_of_the_same_shape(
    connected: OpenWebUI,  # noqa: F811 (the fixture imported above)
    function_filter: FunctionFilter,
    langfuse: LangfuseStandIn,
) -> None:
    """Pipelines (bundled filter + echo pipe, a connection) traces into the default project,
    the function into its own; the model is the Pipelines echo pipe, so both see one chat."""
    pipelines_project = langfuse.default_project
    function_project = langfuse.add_project(name="function-target")
    function_filter.set_valves(filter_valves(langfuse, function_project))

    turn = saved_chat_turn(connected, "same chat, two targets", model=ECHO_PIPE_ID)
    api_chat(connected, "same api call, two targets", model=ECHO_PIPE_ID)

    by_target = {
        "pipelines": observations_in(langfuse, pipelines_project, 2),
        "function": observations_in(langfuse, function_project, 2),
    }
    views: dict[str, dict[str, Any]] = {}
    for target, observations in by_target.items():
        [chat] = [o for o in observations if o["traceId"] == trace_id(turn.chat_id)]
        [api] = [o for o in observations if o is not chat]
        views[target] = {
            "chat": chat,
            "api": api,
            "chat trace": langfuse.trace(chat["traceId"]),
            "api trace": langfuse.trace(api["traceId"]),
        }
    pipelines_view, function_view = views["pipelines"], views["function"]
    for key in ("chat", "api", "chat trace", "api trace"):
        assert shape(function_view[key]) == shape(pipelines_view[key]), key
    # Beyond the shape, what is not an id or a time is the same too.
    for key in ("chat", "api"):
        for field in ("name", "model", "input", "output", "usageDetails"):
            assert function_view[key][field] == pipelines_view[key][field], (key, field)
        ignore = {"message_id"}
        assert {k: v for k, v in function_view[key]["metadata"].items() if k not in ignore} == {
            k: v for k, v in pipelines_view[key]["metadata"].items() if k not in ignore
        }
    for key in ("chat trace", "api trace"):
        for field in ("name", "sessionId", "userId", "tags", "input", "output"):
            assert function_view[key][field] == pipelines_view[key][field], (key, field)
    assert function_view["chat"]["traceId"] == pipelines_view["chat"]["traceId"]


def test_rotated_keys_take_effect_on_the_next_chat(
    function_filter: FunctionFilter, langfuse: LangfuseStandIn
) -> None:
    first = langfuse.default_project
    api_chat(function_filter.open_webui, "before rotation")
    observations_in(langfuse, first, 1)

    rotated = langfuse.add_project(name="rotated")
    function_filter.set_valves(filter_valves(langfuse, rotated))  # no hook runs for functions
    turn = saved_chat_turn(function_filter.open_webui, "after rotation")
    [obs] = observations_in(langfuse, rotated, 1)
    assert obs["traceId"] == trace_id(turn.chat_id)
    assert obs["output"] == "echo: after rotation"
    assert len(langfuse.observations(project_id=first.project_id)) == 1


def test_nothing_breaks_or_slows_a_chat(
    function_filter: FunctionFilter, langfuse: LangfuseStandIn
) -> None:
    open_webui = function_filter.open_webui
    function_filter.set_valves(filter_valves(langfuse, host=UNREACHABLE))
    assert api_chat(open_webui, "nobody listens") == "echo: nobody listens"
    assert "echo:" in api_chat(open_webui, "nobody listens, streamed", stream=True)
    assert saved_chat_turn(open_webui, "nobody listens, saved").reply.startswith("echo:")

    function_filter.set_valves(filter_valves(langfuse, host="not a url"))  # tracing off
    assert api_chat(open_webui, "bad host") == "echo: bad host"

    # Langfuse answering only after 5 s: the outlet only queues, so the chat does not wait.
    langfuse.slow_seconds = 5.0
    langfuse.set_failure("slow")
    function_filter.set_valves(filter_valves(langfuse))
    api_chat(open_webui, "warm up the exporter")
    started = time.monotonic()
    assert api_chat(open_webui, "Langfuse is slow") == "echo: Langfuse is slow"
    assert time.monotonic() - started < 3.0
    langfuse.set_failure(None)
    observations_in(langfuse, langfuse.default_project, 1)


CUSTOM_MODEL_ID = "owl-custom-bot"
PREFIX = "owlpfx"


def test_a_custom_model_on_a_prefixed_connection_is_priced_as_the_upstream_model(
    function_filter: FunctionFilter, pipelines: PipelinesServer, langfuse: LangfuseStandIn
) -> None:
    """A Workspace model based on a connection model whose connection has a `prefix_id`: the
    generation names the upstream model (what Langfuse prices), the metadata keeps the ids
    Open WebUI knows, and the observation id is the one derived from the answer's message id."""
    open_webui = function_filter.open_webui
    # Pipelines serves the echo pipe as an OpenAI-compatible model; no Pipelines filter here.
    assert pipelines.upload(ECHO_PIPE_ID).status_code == 200
    open_webui.set_connections([pipelines.url], [pipelines.api_key], {"0": {"prefix_id": PREFIX}})
    prefixed = f"{PREFIX}.{ECHO_PIPE_ID}"
    stack = contextlib.ExitStack()
    try:
        with open_webui.client() as http:
            listed = http.get("/api/models", params={"refresh": "true"}).json()["data"]
            [connection_model] = [m for m in listed if m["id"] == prefixed]
            # Observed: nothing in the model dict keeps the unprefixed upstream id, so the
            # filter needs the prefix as a valve (model_prefixes).
            assert ECHO_PIPE_ID not in {
                str(connection_model.get(key)) for key in ("id", "name")
            } | {str((connection_model.get("openai") or {}).get("id"))}
        stack.enter_context(open_webui.workspace_model(CUSTOM_MODEL_ID, prefixed, "OWL Custom Bot"))
        function_filter.set_valves(filter_valves(langfuse, model_prefixes=[PREFIX]))
        turn = saved_chat_turn(open_webui, "priced as what?", model=CUSTOM_MODEL_ID)
        [obs] = observations_in(langfuse, langfuse.default_project, 1)
        assert obs["model"] == ECHO_PIPE_ID
        assert obs["metadata"]["model_id"] == CUSTOM_MODEL_ID
        assert obs["metadata"]["model_name"] == "OWL Custom Bot"
        assert obs["metadata"]["base_model_id"] == prefixed
        assert obs["id"] == generation_id_for(turn.answer_id)
        assert obs["traceId"] == trace_id(turn.chat_id)

        # Without the valve the prefixed base model id is what is sent.
        function_filter.set_valves(filter_valves(langfuse))
        saved_chat_turn(open_webui, "and now?", model=CUSTOM_MODEL_ID)
        rows = observations_in(langfuse, langfuse.default_project, 2)
        assert sorted(row["model"] for row in rows) == sorted([ECHO_PIPE_ID, prefixed])
    finally:
        stack.close()  # the Workspace model
        open_webui.set_connections([], [])
        with open_webui.client() as http:
            refresh_models(http)
