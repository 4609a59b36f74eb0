"""The bundled filter's memory, bounded in bytes: content cut when it is captured, the pending
turns and the export queue bounded in bytes (oldest dropped, counted), requests that never
exceed `max_request_bytes`, losses logged once per episode, and delivery of what fit once
Langfuse is back. bench/filter_memory.py measures the same promises at scale."""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.unit.test_filter_capture import OtlpCapture, load_filter_module, wait_until
from tests.unit.test_filter_conversation import CHAT_ID, USER, outlet_body, user_turn

LOGGER = "langfuse_tracing_filter_memory_test"
KIB = 1024


@pytest.fixture
def capture() -> Iterator[OtlpCapture]:
    with OtlpCapture() as server:
        yield server


@pytest.fixture(scope="module")
def module() -> ModuleType:
    return load_filter_module(LOGGER)


def make_pipeline(module: ModuleType, host: str, **overrides: Any) -> Any:
    pipe = module.Pipeline()
    settings: dict[str, Any] = {
        "public_key": "pk-lf-test",
        "secret_key": "sk-lf-test",
        "host": host,
        "flush_interval_seconds": 0.05,
        "request_timeout_seconds": 1.0,
    }
    pipe.valves = module.Pipeline.Valves(**{**settings, **overrides})
    return pipe


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING
    ]


def observation(module: ModuleType, index: int, size: int, **fields: Any) -> Any:
    return module.Observation(
        trace_key=CHAT_ID,
        kind="chat",
        session_id=CHAT_ID,
        user_id="u",
        tags=(),
        name="assistant response",
        start_ns=time.time_ns(),
        model="m",
        model_id="m",
        model_name=None,
        chat_id=CHAT_ID,
        message_id=f"m{index}",
        task=None,
        stream=None,
        capture_content=True,
        size=size,
        **fields,
    )


def exporter(module: ModuleType, host: str, **overrides: Any) -> Any:
    settings: dict[str, Any] = {
        "host": host,
        "public_key": "pk-lf-test",
        "secret_key": "sk-lf-test",
        "flush_interval": 30.0,  # only flushes send: the queue fills as the test says
        "timeout": 1.0,
    }
    return module.LangfuseExporter(module.ExporterConfig(**{**settings, **overrides}))


def message_ids(spans: list[dict[str, Any]]) -> list[str]:
    return [json.loads(s["attributes"]["langfuse.observation.metadata.message_id"]) for s in spans]


def sent_text(span: dict[str, Any], key: str) -> str:
    return str(span["attributes"][f"langfuse.{key}"])


# --- cut when captured -------------------------------------------------------------------


async def test_long_texts_are_cut_when_captured_not_when_sent(
    module: ModuleType, capture: OtlpCapture
) -> None:
    limit = 16 * KIB
    pipe = make_pipeline(module, capture.url, max_field_bytes=limit, flush_interval_seconds=30)
    await pipe.on_startup()
    question = "q" * (100 * KIB)
    answer = "é" * (60 * KIB)  # 120 KB of UTF-8: cut in bytes, not characters
    body = user_turn(CHAT_ID, "big", [], question, stream=False)
    original = copy.deepcopy(body)
    assert await pipe.inlet(body, USER) is body
    assert body == original  # the model still gets every byte

    [waiting] = list(pipe._pending._turns.values())
    kept = waiting.messages[-1]["content"]
    assert len(kept.encode()) <= limit and kept.endswith("characters]")
    assert waiting.size < 3 * limit  # what the turn holds, not 100 KB
    assert pipe._pending.bytes == waiting.size

    history = [{"role": "user", "content": question}]
    await pipe.outlet(outlet_body(CHAT_ID, "big", history, answer, None), USER)
    [queued] = list(pipe._exporter._queue)
    assert len(queued.output.encode()) <= limit and queued.output.startswith("é" * 100)
    assert queued.size < 4 * limit
    assert pipe._exporter._queued_bytes == queued.size

    await pipe.on_shutdown()
    [span] = capture.spans()
    assert json.loads(sent_text(span, "observation.input"))[-1]["content"] == kept
    assert sent_text(span, "observation.output") == queued.output
    assert sent_text(span, "trace.input") == kept
    assert sent_text(span, "trace.output") == queued.output


async def test_the_prompt_kept_per_turn_is_bounded_newest_messages_first(
    module: ModuleType, capture: OtlpCapture
) -> None:
    prompt_limit = 32 * KIB
    pipe = make_pipeline(
        module, capture.url, max_field_bytes=4 * KIB, max_prompt_bytes=prompt_limit
    )
    await pipe.on_startup()
    history = [
        {"role": "user" if index % 2 == 0 else "assistant", "content": f"{index} " + "x" * 3000}
        for index in range(100)
    ]
    body = user_turn(CHAT_ID, "long", history, "the question", stream=False)
    await pipe.inlet(body, USER)
    [waiting] = list(pipe._pending._turns.values())
    messages = waiting.messages
    assert waiting.size <= prompt_limit + 2 * KIB  # plus the observation's own fields
    assert messages[-1] == {"role": "user", "content": "the question"}  # always kept
    assert messages[-2]["content"].startswith("99 ")  # the newest history, in order
    placeholder = messages[0]
    assert placeholder["role"] == "system" and "earlier messages left out" in placeholder["content"]
    left_out = int(placeholder["content"][1:].split(" ", 1)[0])
    assert left_out + len(messages) - 1 == len(body["messages"])
    assert len(body["messages"]) == 101  # the request itself is untouched
    await pipe.outlet(outlet_body(CHAT_ID, "long", [], "a", None), USER)
    await pipe.on_shutdown()
    [span] = capture.spans()
    assert json.loads(sent_text(span, "observation.input")) == messages


def test_capture_copies_only_what_it_cuts(module: ModuleType) -> None:
    small = {"role": "user", "content": "short"}
    big = {"role": "user", "content": [{"type": "text", "text": "y" * 5000}]}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 5000}}
    with_image = {"role": "user", "content": [{"type": "text", "text": "look"}, image]}
    kept, size = module.prompt_to_keep([small, big, with_image], 1 * KIB, 1024 * KIB)
    assert kept[0] is small  # nothing cut: shared, not copied
    assert kept[1] is not big and len(kept[1]["content"][0]["text"]) <= 1 * KIB
    assert big["content"][0]["text"] == "y" * 5000  # the caller's objects are never changed
    assert kept[2]["content"][1]["image_url"]["url"].startswith("[inline image/png omitted")
    assert 0 < size < 5000


# --- the pending turns, bounded in bytes ---------------------------------------------------


async def test_pending_turns_are_bounded_in_bytes_and_reported_once(
    module: ModuleType, capture: OtlpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    pipe = make_pipeline(
        module, capture.url, max_pending_bytes=100 * KIB, pending_turn_timeout_seconds=3600
    )
    await pipe.on_startup()
    for index in range(20):  # about 21 KB each: five fit
        body = user_turn(f"c{index}", f"m{index}", [], "p" * (20 * KIB), stream=False)
        await pipe.inlet(body, USER)
        assert pipe._pending.bytes <= 100 * KIB
    assert 3 <= len(pipe._pending) <= 5
    evicted = 20 - len(pipe._pending)
    spans = capture.wait_for_spans(evicted)
    assert message_ids(spans) == [f"m{i}" for i in range(evicted)]  # the oldest went first
    assert {s["attributes"]["langfuse.observation.level"] for s in spans} == {"WARNING"}
    started = [m for m in warnings_of(caplog) if "awaiting their outlet reached" in m]
    assert len(started) == 1 and "max_pending_bytes = 102400" in started[0]

    for index in range(evicted, 20):  # their outlets come: back under the bounds
        await pipe.outlet(outlet_body(f"c{index}", f"m{index}", [], "a", None), USER)
    await pipe.inlet(user_turn("after", "after", [], "q", stream=False), USER)
    ended = [m for m in warnings_of(caplog) if "back under their bounds" in m]
    assert ended == [
        "Langfuse filter: turns awaiting their outlet are back under their bounds; "
        f"{evicted} turns were sent unfinished early"
    ]
    await pipe.on_shutdown()
    assert "sk-lf-test" not in caplog.text


# --- the export queue, bounded in bytes ----------------------------------------------------


async def test_byte_bounded_queue_drops_oldest_and_counts(
    module: ModuleType, capture: OtlpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    export = exporter(module, capture.url, max_queue_bytes=10_000)
    for index in range(10):
        export.submit(observation(module, index, 3_000))
        assert export._queued_bytes <= 10_000
    assert export.dropped == 7
    export.submit(observation(module, 99, 10_001))  # larger than the whole queue: not kept,
    assert export.dropped == 8  # and nothing else is dropped for it
    assert [obs.message_id for obs in export._queue] == ["m7", "m8", "m9"]
    export.close(timeout=5)
    assert message_ids(capture.spans()) == ["m7", "m8", "m9"]
    warnings = warnings_of(caplog)
    assert [m for m in warnings if "queue full" in m] == [
        "Langfuse export queue full (max_queue_bytes = 10000 bytes): dropping the oldest spans"
    ]
    assert [m for m in warnings if "queue drained" in m] == [
        "Langfuse export queue drained; 8 spans were dropped while it was full"
    ]


async def test_the_request_being_retried_counts_against_the_queue_bytes(
    module: ModuleType, capture: OtlpCapture
) -> None:
    capture.status = 503
    export = exporter(module, capture.url, max_queue_bytes=200_000, flush_interval=0.05)
    incompressible = {"stop": [os.urandom(10).hex() for _ in range(8_000)]}
    export.submit(observation(module, 0, 150_000, model_parameters=incompressible))
    wait_until(lambda: export._inflight is not None, 5, "the first request")
    held = export._inflight_bytes
    assert held > 50_000  # what the retried request holds, compressed
    for index in range(1, 40):
        export.submit(observation(module, index, 5_000))
        assert export._queued_bytes + export._inflight_bytes <= 200_000
    assert export.dropped > 0
    assert len(export._queue) == (200_000 - held) // 5_000
    capture.status = 200
    assert export.flush(timeout=40)
    assert export.sent_spans + export.dropped == 40
    export.close(timeout=1)


# --- requests within the limit -------------------------------------------------------------


async def test_no_request_exceeds_max_request_bytes(
    module: ModuleType, capture: OtlpCapture
) -> None:
    limit = 64 * KIB
    pipe = make_pipeline(
        module,
        capture.url,
        max_request_bytes=limit,
        max_field_bytes=8 * KIB,
        max_batch_size=500,
        flush_interval_seconds=30,
    )
    await pipe.on_startup()
    for index in range(60):
        text = "z" * (index * 150)  # 0 to 9 KB: from many spans per request to one or two
        body = user_turn(CHAT_ID, f"m{index}", [], text, stream=False)
        await pipe.inlet(body, USER)
        history = [{"role": "user", "content": text}]
        await pipe.outlet(outlet_body(CHAT_ID, f"m{index}", history, text, None), USER)
    await pipe.on_shutdown()
    assert sorted(message_ids(capture.spans())) == sorted(f"m{i}" for i in range(60))
    sizes = [export["body_bytes"] for export in capture.exports]
    assert max(sizes) <= limit
    assert len(sizes) >= sum(sizes) / limit > 10  # batched by size: max_batch_size is 500


async def test_a_span_over_the_request_limit_is_sent_without_content_and_counted(
    module: ModuleType, capture: OtlpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    limit = 64 * KIB
    pipe = make_pipeline(module, capture.url, max_request_bytes=limit, max_field_bytes=256 * KIB)
    await pipe.on_startup()
    big = "b" * (100 * KIB)
    for index in range(3):
        await pipe.inlet(user_turn(CHAT_ID, f"big{index}", [], big, stream=False), USER)
        await pipe.outlet(outlet_body(CHAT_ID, f"big{index}", [], "fine", None), USER)
    await pipe.inlet(user_turn(CHAT_ID, "small", [], "small question", stream=False), USER)
    await pipe.outlet(outlet_body(CHAT_ID, "small", [], "small answer", None), USER)
    exporter_ = pipe._exporter
    await pipe.on_shutdown()
    assert exporter_.oversized == 3 and exporter_.unsendable == 0
    spans = {message_ids([s])[0]: s for s in capture.spans()}
    assert sorted(spans) == ["big0", "big1", "big2", "small"]
    note = sent_text(spans["big0"], "observation.input")
    assert note.startswith("[content omitted: this span was") and "65536 bytes" in note
    assert sent_text(spans["big0"], "observation.output") == note
    assert sent_text(spans["big0"], "trace.input") == note
    assert "langfuse.observation.usage_details" not in spans["big0"]["attributes"]
    assert sent_text(spans["small"], "observation.output") == "small answer"
    assert max(export["body_bytes"] for export in capture.exports) <= limit
    # Such spans come one by one: one line, not one per span (later ones every 10 minutes).
    [line] = [m for m in warnings_of(caplog) if "over the request limit" in m]
    assert "(max_request_bytes = 65536) were sent without their prompt and answer" in line
    assert "further ones are counted here every 10 minutes" in line
    assert not [m for m in warnings_of(caplog) if "queue" in m]


async def test_a_span_too_large_even_without_content_is_dropped_and_counted(
    module: ModuleType, capture: OtlpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    export = exporter(module, capture.url, max_request_bytes=64 * KIB)
    huge_parameters = {"stop": ["s" * 1000] * 100}  # model parameters are not content
    export.submit(observation(module, 0, 2_000, model_parameters=huge_parameters))
    export.submit(observation(module, 1, 2_000))
    export.close(timeout=5)
    assert (export.unsendable, export.oversized, export.sent_spans) == (1, 0, 1)
    assert message_ids(capture.spans()) == ["m1"]
    [line] = [m for m in warnings_of(caplog) if "over the request limit" in m]
    assert "0 spans over the request limit" in line and "1 could not be sent at all" in line


# --- an outage: bounded, logged once, delivered after ---------------------------------------


async def test_outage_holds_its_byte_bound_logs_once_and_delivers_what_fit(
    module: ModuleType, capture: OtlpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    max_bytes = 256 * KIB
    pipe = make_pipeline(module, capture.url, max_queue_bytes=max_bytes)
    await pipe.on_startup()
    capture.status = 503
    turns = 60
    for index in range(turns):  # about 21 KB each: a dozen fit
        body = user_turn(CHAT_ID, f"m{index}", [], "o" * (20 * KIB), stream=False)
        await pipe.inlet(body, USER)
        await pipe.outlet(outlet_body(CHAT_ID, f"m{index}", [], "a", None), USER)
        exporter_ = pipe._exporter
        assert exporter_._queued_bytes + exporter_._inflight_bytes <= max_bytes
    wait_until(lambda: any("queue full" in m for m in warnings_of(caplog)), 10, "the drop line")
    dropped = exporter_.dropped
    assert dropped > turns / 2
    capture.status = 200
    wait_until(lambda: any("queue drained" in m for m in warnings_of(caplog)), 40, "the summary")
    delivered = message_ids(capture.spans())
    assert len(delivered) + exporter_.dropped == turns  # each turn delivered or counted
    assert len(set(delivered)) == len(delivered)  # none twice
    assert delivered[-1] == f"m{turns - 1}"  # the newest were kept
    warnings = warnings_of(caplog)
    assert len([m for m in warnings if "queue full" in m]) == 1, warnings
    assert len([m for m in warnings if "failing" in m]) == 1, warnings
    assert [m for m in warnings if "queue drained" in m] == [
        f"Langfuse export queue drained; {exporter_.dropped} spans were dropped while it was full"
    ]
    assert "sk-lf-test" not in caplog.text
    await pipe.on_shutdown()


# --- the chat path -------------------------------------------------------------------------


async def test_huge_pastes_cost_the_chat_path_what_the_limit_does(
    module: ModuleType, capture: OtlpCapture
) -> None:
    pipe = make_pipeline(module, capture.url)
    await pipe.on_startup()
    pastes = ["p" * (4 * 1024 * KIB), "日本語" * (1024 * KIB)]  # 4 MB ASCII, 9 MB of UTF-8
    bodies = [
        (
            user_turn(CHAT_ID, f"h{index}", [], pastes[index % 2], stream=False),
            outlet_body(
                CHAT_ID, f"h{index}", [{"role": "user", "content": "q"}], pastes[index % 2], None
            ),
        )
        for index in range(20)
    ]
    started = time.perf_counter()
    for inlet, outlet in bodies:
        await pipe.inlet(inlet, USER)
        await pipe.outlet(outlet, USER)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # linear in the 256 KiB limit, not in the paste (usually ~10 ms)
    await pipe.on_shutdown()
