"""The bundled filter in-process: the scripted conversation, what each span carries, privacy
valves, key rotation, bounded state, and that a chat is never broken."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.unit.test_filter_capture import (
    OtlpCapture,
    load_filter_module,
    wait_until,
)
from tests.unit.test_filter_conversation import (
    A1,
    A2,
    API_OUTLET_ID,
    AT,
    CHAT_ID,
    MODEL,
    MODEL_NAME,
    Q1,
    Q2,
    TASK_MODEL,
    TEMP_CHAT_ID,
    USER,
    outlet_body,
    scripted_conversation,
    user_turn,
)

FAST_EXPORT = {"flush_interval_seconds": 0.05, "request_timeout_seconds": 2.0}


@pytest.fixture
def capture() -> Iterator[OtlpCapture]:
    with OtlpCapture() as server:
        yield server


@pytest.fixture(scope="module")
def module() -> ModuleType:
    return load_filter_module()


def valves(module: ModuleType, capture: OtlpCapture, **overrides: Any) -> Any:
    public_key, secret_key = next(iter(capture.keys.items()))
    settings = {"public_key": public_key, "secret_key": secret_key, "host": capture.url}
    return module.Pipeline.Valves(**{**settings, **FAST_EXPORT, **overrides})


@pytest.fixture
async def pipeline(module: ModuleType, capture: OtlpCapture) -> AsyncIterator[Any]:
    pipe = module.Pipeline()
    pipe.valves = valves(module, capture)
    await pipe.on_startup()
    yield pipe
    await pipe.on_shutdown()


async def run_script(pipe: Any) -> list[dict[str, Any]]:
    """Replay the script; return the bodies the filter handed back."""
    returned = []
    for step in scripted_conversation():
        hook = pipe.inlet if step.hook == "inlet" else pipe.outlet
        returned.append(await hook(step.body, step.user))
    return returned


def by_message(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for span in spans:
        metadata = span["attributes"]
        task = metadata.get("langfuse.observation.metadata.task")
        message = metadata.get("langfuse.observation.metadata.message_id")
        key = "title" if task else json.loads(message) if message else "?"
        if metadata.get("langfuse.trace.name") == "open-webui api request":
            key = "api"
        assert key not in found, f"two spans for {key}"
        found[key] = span
    return found


def pipeline_module_trace_id(chat_id: str) -> str:
    return str(load_filter_module("langfuse_tracing_filter_ids").trace_id_for(chat_id))


def meta(span: dict[str, Any], key: str) -> Any:
    return json.loads(span["attributes"][f"langfuse.observation.metadata.{key}"])


async def test_scripted_conversation_exports_the_expected_observations(
    pipeline: Any, capture: OtlpCapture
) -> None:
    started = time.time_ns()
    await run_script(pipeline)
    spans = by_message(capture.wait_for_spans(5))
    assert sorted(spans) == ["api", "msg-a1", "msg-a2", "msg-t1", "title"]

    chat_trace = spans["msg-a1"]["traceId"]
    assert spans["msg-a2"]["traceId"] == spans["title"]["traceId"] == chat_trace
    assert len({chat_trace, spans["api"]["traceId"], spans["msg-t1"]["traceId"]}) == 3
    assert len({s["spanId"] for s in spans.values()}) == 5

    turn1 = spans["msg-a1"]["attributes"]
    assert turn1["langfuse.trace.name"] == "open-webui chat"
    assert turn1["session.id"] == CHAT_ID
    assert turn1["user.id"] == USER["id"]
    assert turn1["langfuse.trace.tags"] == ["open-webui"]
    assert spans["msg-a1"]["name"] == "assistant response"
    assert turn1["langfuse.observation.type"] == "generation"
    assert turn1["langfuse.observation.model.name"] == MODEL
    assert json.loads(turn1["langfuse.observation.model.parameters"]) == {"temperature": 0.2}
    assert json.loads(turn1["langfuse.observation.input"])[-1] == {"role": "user", "content": Q1}
    assert turn1["langfuse.observation.output"] == A1
    assert json.loads(turn1["langfuse.observation.usage_details"]) == {
        "input": 21,
        "output": 9,
        "total": 30,
    }
    assert "langfuse.observation.cost_details" not in turn1
    assert turn1["langfuse.trace.input"] == Q1 and turn1["langfuse.trace.output"] == A1
    assert meta(spans["msg-a1"], "chat_id") == CHAT_ID
    assert meta(spans["msg-a1"], "model_name") == MODEL_NAME
    assert meta(spans["msg-a1"], "stream") is False
    assert meta(spans["msg-a1"], "inlet_seen") is True
    start, end = int(spans["msg-a1"]["startTimeUnixNano"]), int(spans["msg-a1"]["endTimeUnixNano"])
    assert started <= start < end <= time.time_ns()

    title = spans["title"]["attributes"]
    assert spans["title"]["name"] == "task:title_generation"
    assert meta(spans["title"], "task") == "title_generation"
    assert title["langfuse.trace.tags"] == ["open-webui", "title_generation"]
    assert title["langfuse.observation.model.name"] == TASK_MODEL
    assert "langfuse.trace.input" not in title and "langfuse.trace.output" not in title

    turn2 = spans["msg-a2"]["attributes"]
    assert meta(spans["msg-a2"], "stream") is True
    assert json.loads(turn2["langfuse.observation.usage_details"]) == {
        "input": 32,
        "input_cached_tokens": 16,
        "output": 12,
        "total": 60,
    }
    assert json.loads(turn2["langfuse.observation.cost_details"]) == {"total": 0.00042}
    assert turn2["langfuse.observation.output"] == A2
    assert json.loads(turn2["langfuse.observation.input"])[-1]["content"] == Q2

    api = spans["api"]["attributes"]
    assert api["langfuse.trace.tags"] == ["open-webui", "api"]
    assert "session.id" not in api
    assert meta(spans["api"], "inlet_seen") is True  # matched although the id was minted later
    assert meta(spans["api"], "message_id") == API_OUTLET_ID
    assert json.loads(api["langfuse.observation.usage_details"])["input"] == 5

    temp = spans["msg-t1"]["attributes"]
    assert temp["langfuse.trace.name"] == "open-webui temporary chat"
    assert temp["session.id"] == TEMP_CHAT_ID
    assert temp["langfuse.trace.tags"] == ["open-webui", "temporary-chat"]
    # Temporary chats are unsaved by design: no content unless a valve says so.
    assert not any(k.endswith((".input", ".output")) for k in temp)
    assert AT not in json.dumps(spans["msg-t1"])

    # Resource and scope identify the sender; the secret never appears in what is sent.
    assert spans["msg-a1"]["scope"]["name"] == "openwebui-langfuse-filter"
    assert "sk-lf-test" not in json.dumps(capture.exports)


async def test_bodies_come_back_unchanged(pipeline: Any) -> None:
    script = scripted_conversation()
    returned = await run_script(pipeline)
    for step, body in zip(script, returned, strict=True):
        assert body == step.body
    # Same object, too: nothing is copied or rebuilt on the way.
    body = user_turn(CHAT_ID, "m-same", [], "q", stream=False)
    assert await pipeline.inlet(body, USER) is body


async def test_chat_ids_are_stable_trace_ids_across_instances(
    module: ModuleType, capture: OtlpCapture
) -> None:
    # A restart (new instance, no memory) keeps adding to the same trace.
    ids = []
    for message_id in ("r1", "r2"):
        pipe = module.Pipeline()
        pipe.valves = valves(module, capture)
        await pipe.on_startup()
        await pipe.inlet(user_turn(CHAT_ID, message_id, [], "q", stream=False), USER)
        await pipe.outlet(outlet_body(CHAT_ID, message_id, [], "a", None), USER)
        await pipe.on_shutdown()
        ids.append(capture.wait_for_spans(len(ids) + 1)[-1]["traceId"])
    assert ids[0] == ids[1] == module.trace_id_for(CHAT_ID)


async def test_api_requests_get_a_trace_each_and_match_by_order(
    pipeline: Any, capture: OtlpCapture
) -> None:
    for index in range(3):
        await pipeline.inlet(user_turn("", None, [], f"q{index}", stream=False), USER)
    for index in range(3):
        history = [{"role": "user", "content": f"q{index}"}]
        await pipeline.outlet(outlet_body("", f"minted-{index}", history, f"a{index}", None), USER)
    spans = capture.wait_for_spans(3)
    assert len({s["traceId"] for s in spans}) == 3
    for span in spans:
        question = json.loads(span["attributes"]["langfuse.observation.input"])[-1]["content"]
        assert span["attributes"]["langfuse.observation.output"] == "a" + question[1:]
        assert "session.id" not in span["attributes"]
    assert len(pipeline._pending) == 0


async def test_privacy_valves(module: ModuleType, capture: OtlpCapture) -> None:
    pipe = module.Pipeline()
    pipe.valves = valves(
        module,
        capture,
        capture_content=False,
        user_identity="email",
        use_model_name_instead_of_id_for_generation=True,
        tags=["team-a"],
        environment="Staging",
        release="v1.2",
    )
    await pipe.on_startup()
    await run_script(pipe)
    await pipe.on_shutdown()
    spans = capture.spans()
    assert len(spans) == 5
    text = json.dumps(spans)
    for secret_text in (Q1, A1, Q2, A2, "Generate a concise title"):
        assert secret_text not in text
    turn = by_message(spans)["msg-a1"]
    assert turn["attributes"]["user.id"] == USER["email"]
    assert turn["attributes"]["langfuse.observation.model.name"] == MODEL_NAME
    assert turn["attributes"]["langfuse.trace.tags"] == ["team-a"]
    assert json.loads(turn["attributes"]["langfuse.observation.usage_details"])["total"] == 30
    assert turn["resource"]["langfuse.environment"] == "staging"
    assert turn["resource"]["langfuse.release"] == "v1.2"


async def test_temporary_chat_content_only_with_its_valve(
    module: ModuleType, capture: OtlpCapture
) -> None:
    pipe = module.Pipeline()
    pipe.valves = valves(module, capture, capture_temporary_chat_content=True)
    await pipe.on_startup()
    await pipe.inlet(user_turn(TEMP_CHAT_ID, "t", [], "tq", stream=False), USER)
    await pipe.outlet(
        outlet_body(TEMP_CHAT_ID, "t", [{"role": "user", "content": "tq"}], "ta", None), USER
    )
    await pipe.on_shutdown()
    [span] = capture.spans()
    assert span["attributes"]["langfuse.observation.output"] == "ta"


async def test_legacy_local_temporary_chat_uses_the_session(
    pipeline: Any, capture: OtlpCapture
) -> None:
    body = user_turn("local", "l1", [], "q", stream=False)
    body["metadata"]["session_id"] = "sock-7"
    await pipeline.inlet(body, USER)
    out = outlet_body("local", "l1", [{"role": "user", "content": "q"}], "a", None)
    out["session_id"] = "sock-7"
    await pipeline.outlet(out, USER)
    [span] = capture.wait_for_spans(1)
    assert span["attributes"]["session.id"] == "local:sock-7"
    assert meta(span, "inlet_seen") is True


async def test_outlet_without_inlet_is_still_recorded(pipeline: Any, capture: OtlpCapture) -> None:
    await pipeline.outlet(
        outlet_body(CHAT_ID, "orphan", [{"role": "user", "content": "q"}], "a", None), USER
    )
    [span] = capture.wait_for_spans(1)
    assert meta(span, "inlet_seen") is False
    assert span["attributes"]["langfuse.observation.output"] == "a"
    assert span["traceId"] == pipeline_module_trace_id(CHAT_ID)


async def test_rotating_keys_sends_the_next_trace_with_the_new_keys(
    module: ModuleType, capture: OtlpCapture
) -> None:
    capture.keys["pk-lf-rotated"] = "sk-lf-rotated"
    pipe = module.Pipeline()
    pipe.valves = valves(module, capture, flush_interval_seconds=30)  # only flushes send
    await pipe.on_startup()
    await pipe.inlet(user_turn(CHAT_ID, "k1", [], "q", stream=False), USER)
    await pipe.outlet(outlet_body(CHAT_ID, "k1", [], "a", None), USER)
    old_exporter = pipe._exporter

    # What Pipelines does on POST /{id}/valves/update: a new Valves object, then the hook.
    pipe.valves = valves(
        module,
        capture,
        public_key="pk-lf-rotated",
        secret_key="sk-lf-rotated",
        flush_interval_seconds=0.05,
    )
    await pipe.on_valves_updated()
    # The old exporter flushed its queue (with the old keys) and stopped.
    assert [s["public_key"] for s in capture.spans()] == ["pk-lf-test"]
    assert not old_exporter._thread.is_alive()

    await pipe.inlet(user_turn(CHAT_ID, "k2", [], "q", stream=False), USER)
    await pipe.outlet(outlet_body(CHAT_ID, "k2", [], "a", None), USER)
    spans = capture.wait_for_spans(2)
    assert [s["public_key"] for s in spans] == ["pk-lf-test", "pk-lf-rotated"]
    assert spans[1]["scope"]["attributes"][0]["value"]["stringValue"] == "pk-lf-rotated"
    await pipe.on_shutdown()


async def test_unchanged_valves_keep_the_exporter(module: ModuleType, capture: OtlpCapture) -> None:
    pipe = module.Pipeline()
    pipe.valves = valves(module, capture)
    await pipe.on_startup()
    exporter = pipe._exporter
    pipe.valves = valves(module, capture, priority=5, tags=["x"])  # no exporter setting changed
    await pipe.on_valves_updated()
    assert pipe._exporter is exporter
    await pipe.on_shutdown()
    assert not exporter._thread.is_alive()


async def test_without_keys_tracing_is_off_and_chats_pass(
    module: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    pipe = module.Pipeline()
    pipe.valves = module.Pipeline.Valves()
    await pipe.on_startup()
    body = user_turn(CHAT_ID, "x", [], "q", stream=False)
    assert await pipe.inlet(copy.deepcopy(body), USER) == body
    assert pipe._exporter is None
    assert len(pipe._pending) == 0
    assert "tracing is off" in caplog.text
    await pipe.on_shutdown()


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"messages": "not a list", "metadata": "not a dict"},
        {"model": 3, "messages": [None, 1, {"role": None}], "metadata": {"chat_id": 5}},
        {"model": MODEL, "messages": [{"role": "assistant", "content": [1, {"text": 2}]}]},
    ],
)
async def test_odd_bodies_never_raise(pipeline: Any, body: Any) -> None:
    original = copy.deepcopy(body)
    assert await pipeline.inlet(body, None) == original
    assert await pipeline.outlet(body, "not a dict") == original


async def test_internal_errors_are_swallowed_and_logged_without_content(
    pipeline: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret prompt text sk-lf-test")

    monkeypatch.setattr(pipeline, "_on_inlet", boom)
    caplog.set_level(logging.WARNING)
    body = user_turn(CHAT_ID, "e", [], "the user's private question", stream=False)
    for _ in range(3):
        assert await pipeline.inlet(body, USER) is body
    records = [r for r in caplog.records if "inlet error" in r.getMessage()]
    assert len(records) == 1  # logged once, not per message
    assert "RuntimeError" in records[0].getMessage()
    assert "private question" not in caplog.text and "sk-lf-test" not in caplog.text


async def test_pending_turns_are_bounded_and_reported_unfinished(
    module: ModuleType, capture: OtlpCapture
) -> None:
    pipe = module.Pipeline()
    pipe.valves = valves(module, capture, max_pending_turns=3, pending_turn_timeout_seconds=3600)
    await pipe.on_startup()
    for index in range(10):
        await pipe.inlet(user_turn(f"c{index}", f"m{index}", [], "q", stream=False), USER)
    assert len(pipe._pending) == 3
    spans = capture.wait_for_spans(7)
    assert {s["attributes"]["langfuse.observation.level"] for s in spans} == {"WARNING"}
    assert all("no outlet" in s["attributes"]["langfuse.observation.status_message"] for s in spans)

    # Age: a turn older than the timeout is sent unfinished by the next inlet.
    pipe.valves = valves(module, capture, max_pending_turns=3, pending_turn_timeout_seconds=0)
    await pipe.on_valves_updated()
    await pipe.inlet(user_turn("late", "late", [], "q", stream=False), USER)
    assert len(pipe._pending) == 1  # only the turn just started
    capture.wait_for_spans(10)
    # Shutdown sends whatever is still pending, too.
    await pipe.on_shutdown()
    assert len(capture.spans()) == 11


async def test_no_threads_or_io_at_import_or_construction() -> None:
    import threading

    before = threading.active_count()
    module = load_filter_module("langfuse_tracing_filter_import_check")
    pipe = module.Pipeline()
    assert threading.active_count() == before
    assert pipe._exporter is None
    assert pipe.type == "filter" and pipe.name == "Langfuse Tracing"


async def test_exporter_threads_do_not_leak_across_updates(
    module: ModuleType, capture: OtlpCapture
) -> None:
    import threading

    pipe = module.Pipeline()
    pipe.valves = valves(module, capture)
    await pipe.on_startup()
    baseline = threading.active_count()
    for index in range(5):
        pipe.valves = valves(module, capture, release=f"r{index}")
        await pipe.on_valves_updated()
    wait_until(lambda: threading.active_count() <= baseline, 5, "old exporter threads to end")
    await pipe.on_shutdown()


async def test_waiting_turns_keep_no_media_and_no_content_when_not_captured(
    module: ModuleType, capture: OtlpCapture
) -> None:
    image = "data:image/png;base64," + "A" * 100_000
    body = user_turn(CHAT_ID, "img", [], "what is this?", stream=False)
    body["messages"][-1]["content"] = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": image}},
    ]
    original = copy.deepcopy(body)
    pipe = module.Pipeline()
    pipe.valves = valves(module, capture)
    await pipe.on_startup()
    assert await pipe.inlet(body, USER) == original  # the model still gets the image
    [waiting] = pipe._pending.drain()
    assert len(json.dumps(waiting.messages)) < 1_000
    assert waiting.messages[-1]["content"][0]["text"] == "what is this?"

    pipe.valves = valves(module, capture, capture_content=False)
    await pipe.on_valves_updated()
    await pipe.inlet(body, USER)
    [waiting] = pipe._pending.drain()
    assert waiting.messages is None
    await pipe.on_shutdown()


async def test_two_instances_in_one_process_keep_their_own_keys_and_hosts(
    module: ModuleType, capture: OtlpCapture
) -> None:
    # Same public key, different secret and host: SDK v3+ would silently share one client.
    with OtlpCapture(secret_key="sk-lf-other") as other:
        first, second = module.Pipeline(), module.Pipeline()
        first.valves = valves(module, capture)
        second.valves = valves(module, other)
        await first.on_startup()
        await second.on_startup()
        for pipe, message_id in ((first, "one"), (second, "two")):
            await pipe.inlet(user_turn(CHAT_ID, message_id, [], "q", stream=False), USER)
            await pipe.outlet(outlet_body(CHAT_ID, message_id, [], "a", None), USER)
        await first.on_shutdown()
        await second.on_shutdown()
        assert [meta(s, "message_id") for s in capture.spans()] == ["one"]
        assert [meta(s, "message_id") for s in other.spans()] == ["two"]
        assert capture.rejected == [] and other.rejected == []


@pytest.mark.parametrize("host", ["not a url", "ftp://langfuse.example", "http://", "https://[::1"])
async def test_a_bad_host_turns_tracing_off_without_raising(
    module: ModuleType, host: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A raising on_startup would stop Pipelines from starting, on every restart.
    caplog.set_level(logging.WARNING)
    pipe = module.Pipeline()
    pipe.valves = module.Pipeline.Valves(public_key="pk-lf-x", secret_key="sk-lf-x", host=host)
    await pipe.on_startup()
    await pipe.on_valves_updated()
    assert pipe._exporter is None
    body = user_turn(CHAT_ID, "b", [], "q", stream=False)
    assert await pipe.inlet(body, USER) is body
    warnings = [r.getMessage() for r in caplog.records if "tracing is off" in r.getMessage()]
    assert len(warnings) == 1 and "URL" in warnings[0]
    assert "sk-lf-x" not in caplog.text
    await pipe.on_shutdown()


async def test_a_custom_model_is_priced_as_its_prefix_free_base_model(
    module: ModuleType, capture: OtlpCapture
) -> None:
    """What Langfuse prices is the upstream model; the Open WebUI ids stay in the metadata."""
    custom = {"id": "bot", "name": "Bot", "info": {"base_model_id": "azure.gpt-4o"}}
    pipe = module.Pipeline()
    pipe.valves = valves(module, capture, model_prefixes=["azure"])
    await pipe.on_startup()
    for message_id, model_info in (("m-custom", custom), ("m-plain", None)):
        body = user_turn(CHAT_ID, message_id, [], "q", stream=False)
        body["model"] = "bot" if model_info else "azure.gpt-4o"
        body["metadata"]["model"] = model_info or {"id": "azure.gpt-4o", "name": "GPT-4o"}
        await pipe.inlet(body, USER)
        out = outlet_body(CHAT_ID, message_id, [{"role": "user", "content": "q"}], "a", None)
        out["model"] = body["model"]
        await pipe.outlet(out, USER)
    await pipe.on_shutdown()
    spans = by_message(capture.spans())
    turn, plain = spans["m-custom"], spans["m-plain"]
    assert turn["attributes"]["langfuse.observation.model.name"] == "gpt-4o"
    assert (meta(turn, "model_id"), meta(turn, "model_name")) == ("bot", "Bot")
    assert meta(turn, "base_model_id") == "azure.gpt-4o"
    assert plain["attributes"]["langfuse.observation.model.name"] == "gpt-4o"
    assert meta(plain, "model_id") == "azure.gpt-4o"
    assert "langfuse.observation.metadata.base_model_id" not in plain["attributes"]
    assert turn["spanId"] == module.generation_id_for("m-custom")


async def test_the_display_name_valve_still_wins_over_the_base_model(
    module: ModuleType, capture: OtlpCapture
) -> None:
    pipe = module.Pipeline()
    pipe.valves = valves(module, capture, use_model_name_instead_of_id_for_generation=True)
    await pipe.on_startup()
    body = user_turn(CHAT_ID, "m-name", [], "q", stream=False)
    body["metadata"]["model"] = {"id": MODEL, "name": "Bot", "info": {"base_model_id": "base-llm"}}
    await pipe.inlet(body, USER)
    await pipe.outlet(outlet_body(CHAT_ID, "m-name", [], "a", None), USER)
    await pipe.on_shutdown()
    [span] = capture.spans()
    assert span["attributes"]["langfuse.observation.model.name"] == "Bot"
    assert meta(span, "base_model_id") == "base-llm"
