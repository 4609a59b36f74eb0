"""The bundled filter's exporter: batching, outages logged once and survived, drop-oldest on a
full queue, rejected keys, and time-bounded flushes. Driven through the Pipeline hooks where
the behaviour is a user-visible promise, and through the exporter where timing is the point."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.unit.test_filter_capture import OtlpCapture, load_filter_module, wait_until
from tests.unit.test_filter_conversation import CHAT_ID, USER, outlet_body, user_turn

LOGGER = "langfuse_tracing_filter_exporter_test"


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


async def chat_turns(pipe: Any, count: int, prefix: str = "m") -> None:
    for index in range(count):
        message_id = f"{prefix}{index}"
        await pipe.inlet(user_turn(CHAT_ID, message_id, [], "q", stream=False), USER)
        await pipe.outlet(outlet_body(CHAT_ID, message_id, [], "a", None), USER)


def filter_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_batches_respect_max_batch_size(module: ModuleType, capture: OtlpCapture) -> None:
    pipe = make_pipeline(module, capture.url, max_batch_size=4, flush_interval_seconds=30)
    await pipe.on_startup()
    await chat_turns(pipe, 10)
    await pipe.on_shutdown()
    sizes = [
        len(export["body"]["resourceSpans"][0]["scopeSpans"][0]["spans"])
        for export in capture.exports
    ]
    assert sum(sizes) == 10
    assert max(sizes) <= 4
    headers = capture.exports[0]["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["content-encoding"] == "gzip"
    assert capture.exports[0]["path"] == "/api/public/otel/v1/traces"


async def test_outage_is_logged_once_loses_no_chat_and_recovery_is_logged_once(
    module: ModuleType, capture: OtlpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    pipe = make_pipeline(module, capture.url)
    await pipe.on_startup()
    capture.status = 500
    await chat_turns(pipe, 5, "down")
    wait_until(lambda: len(capture.rejected) >= 3, 10, "retries during the outage")
    await chat_turns(pipe, 5, "still-down")  # chats go on, answered at once
    assert capture.spans() == []
    capture.status = 200
    spans = capture.wait_for_spans(10, timeout=40)
    assert len(spans) == 10  # every turn of the outage arrived, none twice
    wait_until(lambda: any("recovered" in m for m in filter_warnings(caplog)), 5, "recovery")
    warnings = filter_warnings(caplog)
    assert len([m for m in warnings if "failing" in m]) == 1, warnings
    assert len([m for m in warnings if "recovered" in m]) == 1, warnings
    assert "HTTP 500" in warnings[0]
    assert "sk-lf-test" not in caplog.text
    await pipe.on_shutdown()


async def test_unreachable_langfuse_does_not_slow_chats(
    module: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    pipe = make_pipeline(module, f"http://127.0.0.1:{free_port()}", flush_timeout_seconds=0.5)
    await pipe.on_startup()
    started = time.perf_counter()
    await chat_turns(pipe, 200)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # no network on the chat path (usually ~5 ms for 200 turns)
    wait_until(lambda: len(filter_warnings(caplog)) >= 1, 5, "the outage warning")
    shutdown_started = time.perf_counter()
    await pipe.on_shutdown()
    assert time.perf_counter() - shutdown_started < 3.0  # bounded by flush_timeout
    warnings = filter_warnings(caplog)
    assert len([m for m in warnings if "failing" in m and "unreachable" in m]) == 1, warnings
    assert any("200 spans lost" in m for m in warnings), warnings


async def test_full_queue_drops_oldest_and_counts(
    module: ModuleType, capture: OtlpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    # A long flush interval keeps the worker from draining while the queue fills.
    pipe = make_pipeline(
        module, capture.url, max_queue_size=5, max_batch_size=100, flush_interval_seconds=30
    )
    await pipe.on_startup()
    await chat_turns(pipe, 12)
    exporter = pipe._exporter
    assert exporter.dropped == 7
    await pipe.on_shutdown()
    spans = capture.spans()
    kept = {s["attributes"]["langfuse.observation.metadata.message_id"] for s in spans}
    assert kept == {f'"m{i}"' for i in range(7, 12)}  # the newest five
    warnings = filter_warnings(caplog)
    assert len([m for m in warnings if "queue full" in m]) == 1, warnings
    assert len([m for m in warnings if "7 spans were dropped" in m]) == 1, warnings


async def test_rejected_keys_are_logged_once_and_not_retried(
    module: ModuleType, capture: OtlpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    pipe = make_pipeline(module, capture.url, secret_key="sk-lf-wrong")
    await pipe.on_startup()
    await chat_turns(pipe, 3, "a")
    wait_until(lambda: pipe._exporter.rejected_spans >= 3, 5, "the rejection")
    await chat_turns(pipe, 3, "b")
    wait_until(lambda: pipe._exporter.rejected_spans >= 6, 5, "the second rejection")
    rejected_posts = len(capture.rejected)
    assert rejected_posts <= 6  # one try per batch, no retry loop
    warnings = filter_warnings(caplog)
    assert len([m for m in warnings if "HTTP 401" in m]) == 1, warnings
    assert "check public/secret key" in warnings[0]
    assert "sk-lf-wrong" not in caplog.text
    await pipe.on_shutdown()


async def test_close_is_idempotent_and_flushes(module: ModuleType, capture: OtlpCapture) -> None:
    config = module.ExporterConfig(
        host=capture.url + "/",  # a trailing slash must not break the path
        public_key="pk-lf-test",
        secret_key="sk-lf-test",
        flush_interval=30.0,
    )
    exporter = module.LangfuseExporter(config)
    assert "sk-lf-test" not in repr(config)
    obs = module.Observation(
        trace_key="t",
        kind="chat",
        session_id="s",
        user_id="u",
        tags=("x",),
        name="n",
        start_ns=time.time_ns(),
        model="m",
        model_id="m",
        model_name=None,
        chat_id="t",
        message_id="1",
        task=None,
        stream=None,
        capture_content=True,
    )
    exporter.submit(obs)
    exporter.close(timeout=5)
    exporter.close(timeout=5)
    assert exporter.sent_spans == 1
    assert capture.exports[0]["path"] == "/api/public/otel/v1/traces"
    assert not exporter._thread.is_alive()


async def test_overflow_during_an_outage_is_reported_once_with_its_count(
    module: ModuleType, capture: OtlpCapture, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    pipe = make_pipeline(module, capture.url, max_queue_size=3)
    await pipe.on_startup()
    capture.status = 503
    await chat_turns(pipe, 20)
    wait_until(lambda: any("queue full" in m for m in filter_warnings(caplog)), 10, "drop line")
    capture.status = 200
    wait_until(lambda: any("were dropped" in m for m in filter_warnings(caplog)), 40, "count")
    exporter = pipe._exporter
    assert exporter.dropped > 0
    assert len(capture.spans()) + exporter.dropped == 20  # each turn delivered or counted
    warnings = filter_warnings(caplog)
    assert len([m for m in warnings if "queue full" in m]) == 1, warnings
    [summary] = [m for m in warnings if "were dropped" in m]
    assert f"{exporter.dropped} spans were dropped" in summary
    await pipe.on_shutdown()
