"""The Langfuse stand-in's own HTTP behaviour, checked against the documented server answers
(docs/upstream/langfuse.md, "Projects", "Legacy ingestion", "OTLP ingestion" and "What the
stand-in implements"): auth bodies, 207 ingestion with merging and legacy usage, events_only,
OTLP in protobuf and JSON with gzip, scores, reads, the request log's redaction and the HTTP
control surface."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from tests.peers.langfuse_standin import LangfuseStandIn

REPO_ROOT = Path(__file__).resolve().parents[2]
INVALID_CREDENTIALS = "Invalid credentials. Confirm that you've configured the correct host."
EVENTS_ONLY_404 = (
    "This endpoint is not available on deployments running in Langfuse v4 events_only mode. "
    "Learn more about Langfuse v4 at: https://langfuse.com/docs/v4"
)
TRACE_ID = "5b8efff798038103d269b633813fc60c"
ROOT_SPAN = "eee19b7ec3c1b174"
CHILD_SPAN = "eee19b7ec3c1b173"
T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z in Unix nanoseconds


def auth(langfuse: LangfuseStandIn) -> httpx.BasicAuth:
    return httpx.BasicAuth(langfuse.public_key, langfuse.secret_key)


def client(langfuse: LangfuseStandIn, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=langfuse.url, timeout=10, **kwargs)


# --- health and projects ---------------------------------------------------------------


def test_health_reports_the_configured_version_without_auth(langfuse: LangfuseStandIn) -> None:
    langfuse.version = "4.60.1"
    with client(langfuse) as http:
        answer = http.get("/api/public/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "OK", "version": "4.60.1"}


def test_projects_lists_the_keys_project_with_organization_and_metadata(
    langfuse: LangfuseStandIn,
) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        answer = http.get("/api/public/projects")
    assert answer.status_code == 200
    (project,) = answer.json()["data"]
    assert project["id"] == langfuse.project_id
    assert set(project) >= {"id", "name", "organization", "metadata"}
    assert set(project["organization"]) == {"id", "name"}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "No authorization header"),
        ({"Authorization": "Bearer something"}, "Invalid authorization header"),
        ({"Authorization": "Basic !!not-base64!!"}, "Invalid authorization header"),
    ],
)
def test_projects_rejects_missing_or_malformed_auth_with_the_server_messages(
    langfuse: LangfuseStandIn, headers: dict[str, str], message: str
) -> None:
    with client(langfuse) as http:
        answer = http.get("/api/public/projects", headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {"message": message}


def test_wrong_secret_and_unknown_key_get_401_invalid_credentials(
    langfuse: LangfuseStandIn,
) -> None:
    with client(langfuse) as http:
        wrong_secret = http.get("/api/public/projects", auth=(langfuse.public_key, "sk-lf-wrong"))
        unknown_key = http.get("/api/public/projects", auth=("pk-lf-unknown", "sk-lf-x"))
    for answer in (wrong_secret, unknown_key):
        assert answer.status_code == 401
        assert answer.json() == {"message": INVALID_CREDENTIALS}


@pytest.mark.parametrize(
    ("mode", "status", "check"),
    [
        ("403", 403, lambda a: a.json()["message"].startswith("Invalid API key")),
        ("500", 500, lambda a: "message" in a.json()),
        ("html", 200, lambda a: a.headers["content-type"].startswith("text/html")),
        ("empty", 200, lambda a: a.json() == {"data": []}),
        ("401", 401, lambda a: a.json() == {"message": INVALID_CREDENTIALS}),
    ],
)
def test_failure_switches_change_the_projects_answer(
    langfuse: LangfuseStandIn, mode: str, status: int, check: Any
) -> None:
    langfuse.set_failure(mode)
    with client(langfuse, auth=auth(langfuse)) as http:
        answer = http.get("/api/public/projects")
    assert answer.status_code == status
    assert check(answer)
    langfuse.set_failure(None)
    with client(langfuse, auth=auth(langfuse)) as http:
        assert http.get("/api/public/projects").json()["data"]


def test_slow_switch_delays_past_a_client_timeout(langfuse: LangfuseStandIn) -> None:
    langfuse.slow_seconds = 2.0
    langfuse.set_failure("slow")
    started = time.monotonic()
    with (
        httpx.Client(base_url=langfuse.url, timeout=0.5, auth=auth(langfuse)) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.get("/api/public/projects")
    assert time.monotonic() - started < 2.0


def test_health_has_its_own_failure_switch(langfuse: LangfuseStandIn) -> None:
    langfuse.set_health_failure("503")
    with client(langfuse, auth=auth(langfuse)) as http:
        assert http.get("/api/public/health").status_code == 503
        assert http.get("/api/public/projects").status_code == 200
    with pytest.raises(ValueError, match="unknown failure mode"):
        langfuse.set_health_failure("empty")


def test_projects_route_allows_only_get_and_post(langfuse: LangfuseStandIn) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        assert http.delete("/api/public/projects").status_code == 405


# --- legacy ingestion ------------------------------------------------------------------


def envelope(event_type: str, body: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": event_type,
        "timestamp": "2026-11-26T10:00:00.000Z",
        "body": body,
    }


def legacy_batch() -> list[dict[str, Any]]:
    """The shape SDK v2 sends for the upstream filter's inlet and outlet.

    See docs/upstream/langfuse.md, "What the SDKs send".
    """
    return [
        envelope(
            "trace-create",
            {
                "id": "trace-1",
                "name": "chat:chat-123",
                "userId": "alice@example.com",
                "sessionId": "chat-123",
                "input": {"messages": []},
                "tags": ["open-webui"],
                "metadata": {"chat_id": "chat-123"},
            },
            "e1",
        ),
        envelope(
            "event-create",
            {
                "id": "event-1",
                "traceId": "trace-1",
                "name": "user_response:1",
                "startTime": "2026-11-26T10:00:00.100Z",
                "input": [{"role": "user"}],
                "tags": ["open-webui"],  # unknown key on an observation: stripped, not an error
            },
            "e2",
        ),
        envelope(
            "generation-update",
            {
                "id": "gen-1",
                "traceId": "trace-1",
                "name": "llm_response:1",
                "model": "llama3:8b",
                "endTime": "2026-11-26T10:00:01.000Z",
                "usage": {"input": 11, "output": 3, "unit": "TOKENS"},
            },
            "e3",
        ),
        envelope(
            "generation-create",
            {
                "id": "gen-1",
                "traceId": "trace-1",
                "startTime": "2026-11-26T10:00:00.500Z",
            },
            "e4",
        ),
        envelope("trace-create", {"id": "trace-1", "output": "4", "tags": ["second"]}, "e5"),
    ]


def test_ingestion_answers_207_and_merges_partial_updates(langfuse: LangfuseStandIn) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        answer = http.post(
            "/api/public/ingestion",
            json={"batch": legacy_batch(), "metadata": {"sdk_name": "python"}},
        )
    assert answer.status_code == 207
    body = answer.json()
    assert body["errors"] == []
    assert sorted(s["id"] for s in body["successes"]) == ["e1", "e2", "e3", "e4", "e5"]
    assert {s["status"] for s in body["successes"]} == {201}

    trace = langfuse.trace("trace-1")
    assert trace is not None
    assert trace["name"] == "chat:chat-123"  # kept: the second trace-create omitted it
    assert trace["output"] == "4"
    assert trace["userId"] == "alice@example.com"
    assert trace["sessionId"] == "chat-123"
    assert trace["tags"] == ["open-webui", "second"]
    by_id = {o["id"]: o for o in langfuse.observations(trace_id="trace-1")}
    assert by_id["event-1"]["type"] == "EVENT"
    assert "tags" not in by_id["event-1"]
    generation = by_id["gen-1"]
    assert generation["type"] == "GENERATION"
    # The update arrived before its create in the batch and still merged into it.
    assert generation["startTime"] == "2026-11-26T10:00:00.500Z"
    assert generation["endTime"] == "2026-11-26T10:00:01.000Z"
    assert generation["model"] == "llama3:8b"
    assert generation["usageDetails"] == {"input": 11, "output": 3, "total": 14}


def test_ingestion_reports_invalid_events_per_event(langfuse: LangfuseStandIn) -> None:
    batch = [
        envelope("span-create", {"name": "no id"}, "bad-1"),
        {"id": "bad-2", "type": "no-such-type", "timestamp": "2026-11-26T10:00:00Z", "body": {}},
        envelope("trace-create", {"id": "fine"}, "ok-1"),
    ]
    with client(langfuse, auth=auth(langfuse)) as http:
        answer = http.post("/api/public/ingestion", json={"batch": batch})
    assert answer.status_code == 207
    body = answer.json()
    assert [s["id"] for s in body["successes"]] == ["ok-1"]
    assert {e["id"] for e in body["errors"]} == {"bad-1", "bad-2"}
    assert {e["status"] for e in body["errors"]} == {400}


def test_ingestion_rejects_a_request_without_batch_and_bad_auth_with_its_shapes(
    langfuse: LangfuseStandIn,
) -> None:
    with client(langfuse) as http:
        no_batch = http.post("/api/public/ingestion", json={"events": []}, auth=auth(langfuse))
        unauthorized = http.post(
            "/api/public/ingestion", json={"batch": []}, auth=(langfuse.public_key, "sk-lf-wrong")
        )
    assert no_batch.status_code == 400
    assert no_batch.json()["message"] == "Invalid request data"
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {"error": "UnauthorizedError", "message": INVALID_CREDENTIALS}


def test_ingestion_refuses_bodies_over_the_server_limit(langfuse: LangfuseStandIn) -> None:
    huge = {"batch": [envelope("trace-create", {"id": "big", "input": "x" * 5_000_000}, "e")]}
    with client(langfuse, auth=auth(langfuse)) as http:
        answer = http.post("/api/public/ingestion", json=huge)
    assert answer.status_code == 413
    assert langfuse.traces() == []


def test_events_only_rejects_trace_events_per_event_but_keeps_scores(
    langfuse: LangfuseStandIn,
) -> None:
    langfuse.events_only = True
    batch = [
        *legacy_batch(),
        envelope("score-create", {"id": "s1", "name": "quality", "value": 1}, "e6"),
    ]
    with client(langfuse, auth=auth(langfuse)) as http:
        answer = http.post("/api/public/ingestion", json={"batch": batch})
    assert answer.status_code == 207
    body = answer.json()
    assert [s["id"] for s in body["successes"]] == ["e6"]
    assert sorted(e["id"] for e in body["errors"]) == ["e1", "e2", "e3", "e4", "e5"]
    for error in body["errors"]:
        assert error["status"] == 400
        assert error["message"] == "Event type not accepted"
        assert "events_only" in error["error"]
    assert langfuse.traces() == []
    assert langfuse.observations() == []
    assert [s["id"] for s in langfuse.scores()] == ["s1"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/public/traces",
        "/api/public/traces/x",
        "/api/public/observations",
        "/api/public/observations/x",
    ],
)
def test_events_only_v1_reads_answer_404_before_auth(langfuse: LangfuseStandIn, path: str) -> None:
    langfuse.events_only = True
    with client(langfuse) as http:
        answer = http.get(path)  # no credentials at all
    assert answer.status_code == 404
    assert answer.json() == {"message": EVENTS_ONLY_404}


def test_events_only_keeps_v2_observations_and_auth(langfuse: LangfuseStandIn) -> None:
    langfuse.events_only = True
    with client(langfuse) as http:
        assert http.get("/api/public/v2/observations").status_code == 401
        assert http.get("/api/public/v2/observations", auth=auth(langfuse)).status_code == 200


# --- OTLP ------------------------------------------------------------------------------


def kv(key: str, value: str | list[str]) -> KeyValue:
    if isinstance(value, list):
        array = ArrayValue(values=[AnyValue(string_value=item) for item in value])
        return KeyValue(key=key, value=AnyValue(array_value=array))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def protobuf_export(trace_id: bytes, span_id: bytes) -> bytes:
    generation = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=bytes.fromhex(ROOT_SPAN),
        name="llm_response",
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 250_000_000,
        attributes=[
            kv("langfuse.observation.type", "generation"),
            kv("langfuse.observation.model.name", "gpt-4o"),
            kv("langfuse.observation.usage_details", '{"input": 10, "output": 5}'),
            kv("langfuse.observation.cost_details", '{"input": 0.001, "output": 0.002}'),
            kv("langfuse.observation.input", '[{"role": "user", "content": "hi"}]'),
            kv("langfuse.observation.output", "plain text answer"),
            kv("langfuse.observation.metadata.interface", '"open-webui"'),
            kv("langfuse.observation.metadata.raw", "{not json"),
            kv("user.id", "alice@example.com"),
            kv("session.id", "chat-123"),
            kv("langfuse.trace.name", "chat:chat-123"),
            kv("langfuse.trace.tags", ["open-webui", "otlp"]),
        ],
    )
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[generation])])]
    )
    return request.SerializeToString()


def post_otlp(
    langfuse: LangfuseStandIn, body: bytes, content_type: str, **headers: str
) -> httpx.Response:
    with client(langfuse, auth=auth(langfuse)) as http:
        return http.post(
            "/api/public/otel/v1/traces",
            content=body,
            headers={"Content-Type": content_type, **headers},
        )


def test_otlp_protobuf_with_gzip_maps_langfuse_attributes(langfuse: LangfuseStandIn) -> None:
    body = gzip.compress(protobuf_export(bytes.fromhex(TRACE_ID), bytes.fromhex(CHILD_SPAN)))
    answer = post_otlp(
        langfuse,
        body,
        "application/x-protobuf",
        **{"Content-Encoding": "gzip", "x-langfuse-ingestion-version": "4"},
    )
    assert answer.status_code == 200
    assert answer.json() == {}
    trace = langfuse.trace(TRACE_ID)
    assert trace is not None
    assert trace["name"] == "chat:chat-123"
    assert trace["userId"] == "alice@example.com"
    assert trace["sessionId"] == "chat-123"
    assert trace["tags"] == ["open-webui", "otlp"]
    (observation,) = langfuse.observations(trace_id=TRACE_ID)
    assert observation["id"] == CHILD_SPAN
    assert observation["parentObservationId"] == ROOT_SPAN
    assert observation["type"] == "GENERATION"
    assert observation["model"] == "gpt-4o"
    assert observation["usageDetails"] == {"input": 10, "output": 5, "total": 15}
    assert observation["costDetails"] == pytest.approx(
        {"input": 0.001, "output": 0.002, "total": 0.003}
    )
    assert observation["input"] == [{"role": "user", "content": "hi"}]
    assert observation["output"] == "plain text answer"  # not JSON: kept raw
    assert observation["metadata"] == {"interface": "open-webui", "raw": "{not json"}
    assert observation["startTime"] == "2023-11-14T22:13:20.000Z"
    assert observation["endTime"] == "2023-11-14T22:13:20.250Z"


def otlp_json(trace_id: str, span_id: str) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "langfuse.environment", "value": {"stringValue": "staging"}}
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "hand-made"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "root",
                                "startTimeUnixNano": str(T0),
                                "endTimeUnixNano": str(T0 + 1_000_000_000),
                                "attributes": [
                                    {
                                        "key": "langfuse.observation.input",
                                        "value": {"stringValue": '{"q": 1}'},
                                    },
                                    {"key": "langfuse.session.id", "value": {"stringValue": "s-9"}},
                                    {
                                        "key": "gen_ai.usage.input_tokens",
                                        "value": {"intValue": "7"},
                                    },
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_json_uses_hex_ids_and_fills_trace_from_the_root_span(
    langfuse: LangfuseStandIn,
) -> None:
    document = otlp_json(TRACE_ID, ROOT_SPAN)
    answer = post_otlp(
        langfuse,
        gzip.compress(json.dumps(document).encode()),
        "application/json",
        **{"Content-Encoding": "gzip"},
    )
    assert answer.status_code == 200
    trace = langfuse.trace(TRACE_ID)
    assert trace is not None
    assert trace["name"] == "root"
    assert trace["input"] == {"q": 1}
    assert trace["sessionId"] == "s-9"
    assert trace["environment"] == "staging"
    (observation,) = langfuse.observations(trace_id=TRACE_ID)
    assert observation["id"] == ROOT_SPAN
    assert observation["type"] == "SPAN"
    assert observation["usageDetails"] == {"input": 7, "total": 7}


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps(otlp_json("not-hex", ROOT_SPAN)).encode(), "application/json"),
        # OTLP/JSON ids are hex, not base64 as in the generic protobuf JSON mapping.
        (
            json.dumps(
                otlp_json(base64.b64encode(bytes.fromhex(TRACE_ID)).decode(), ROOT_SPAN)
            ).encode(),
            "application/json",
        ),
        (json.dumps(otlp_json(TRACE_ID, "00" * 8)).encode(), "application/json"),
        (json.dumps({"resourceSpans": {"not": "an array"}}).encode(), "application/json"),
        (protobuf_export(b"short", bytes.fromhex(CHILD_SPAN)), "application/x-protobuf"),
        (protobuf_export(bytes.fromhex(TRACE_ID), b""), "application/x-protobuf"),
        (b"\xff\xfe not protobuf", "application/x-protobuf"),
        (b"{}", "text/plain"),
    ],
)
def test_otlp_rejects_malformed_exports_and_content_types_with_400(
    langfuse: LangfuseStandIn, body: bytes, content_type: str
) -> None:
    answer = post_otlp(langfuse, body, content_type)
    assert answer.status_code == 400
    assert langfuse.traces() == []


def test_otlp_rejects_bad_auth_and_a_newer_ingestion_version(langfuse: LangfuseStandIn) -> None:
    body = protobuf_export(bytes.fromhex(TRACE_ID), bytes.fromhex(CHILD_SPAN))
    newer = post_otlp(
        langfuse, body, "application/x-protobuf", **{"x-langfuse-ingestion-version": "5"}
    )
    with client(langfuse) as http:
        unauthorized = http.post(
            "/api/public/otel/v1/traces",
            content=body,
            headers={"Content-Type": "application/x-protobuf"},
            auth=(langfuse.public_key, "sk-lf-wrong"),
        )
    assert newer.status_code == 400
    assert unauthorized.status_code == 401
    assert langfuse.traces() == []


def test_otlp_trace_starts_at_its_earliest_span_whatever_the_order(
    langfuse: LangfuseStandIn,
) -> None:
    trace_id = bytes.fromhex(TRACE_ID)
    child = Span(
        trace_id=trace_id,
        span_id=bytes.fromhex(CHILD_SPAN),
        parent_span_id=bytes.fromhex(ROOT_SPAN),
        name="child",
        start_time_unix_nano=T0 + 100_000_000,
        end_time_unix_nano=T0 + 200_000_000,
    )
    root = Span(
        trace_id=trace_id,
        span_id=bytes.fromhex(ROOT_SPAN),
        name="root",
        start_time_unix_nano=T0,
        end_time_unix_nano=T0 + 300_000_000,
        attributes=[kv("langfuse.observation.output", '{"done": true}')],
    )
    request = ExportTraceServiceRequest(  # child first, as the v5 SDK exports
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[child, root])])]
    )
    assert (
        post_otlp(langfuse, request.SerializeToString(), "application/x-protobuf").status_code
        == 200
    )
    trace = langfuse.trace(TRACE_ID)
    assert trace is not None
    assert trace["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert trace["name"] == "root"  # a root span names its trace when nothing else does
    assert trace["output"] == {"done": True}


def test_otlp_empty_export_answers_200(langfuse: LangfuseStandIn) -> None:
    assert post_otlp(langfuse, b'{"resourceSpans": []}', "application/json").status_code == 200


# --- scores ----------------------------------------------------------------------------


def test_scores_array_gets_202_and_single_object_gets_200_with_id(
    langfuse: LangfuseStandIn,
) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        array = http.post(
            "/api/public/scores", json=[{"id": "a", "traceId": "t", "name": "n", "value": 1}]
        )
        single = http.post("/api/public/scores", json={"traceId": "t", "name": "m", "value": 0})
    assert array.status_code == 202
    assert array.json() == {"message": "Accepted"}
    assert single.status_code == 200
    assert set(single.json()) == {"id"}
    assert {s["name"] for s in langfuse.scores()} == {"n", "m"}


# --- reads -----------------------------------------------------------------------------


def test_v1_reads_page_traces_and_return_full_details(langfuse: LangfuseStandIn) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        http.post("/api/public/ingestion", json={"batch": legacy_batch()})
        listing = http.get("/api/public/traces", params={"limit": 1, "userId": "alice@example.com"})
        detail = http.get("/api/public/traces/trace-1")
        missing = http.get("/api/public/traces/nope")
        observations = http.get(
            "/api/public/observations", params={"traceId": "trace-1", "type": "GENERATION"}
        )
    assert listing.status_code == 200
    assert listing.json()["meta"] == {"page": 1, "limit": 1, "totalItems": 1, "totalPages": 1}
    (row,) = listing.json()["data"]
    assert sorted(row["observations"]) == ["event-1", "gen-1"]
    assert detail.status_code == 200
    full = detail.json()
    generation = next(o for o in full["observations"] if o["id"] == "gen-1")
    assert generation["usageDetails"] == {"input": 11, "output": 3, "total": 14}
    assert generation["usage"]["unit"] == "TOKENS"
    assert missing.status_code == 404
    assert [o["id"] for o in observations.json()["data"]] == ["gen-1"]


def test_v2_observations_honour_field_groups(langfuse: LangfuseStandIn) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        http.post("/api/public/ingestion", json={"batch": legacy_batch()})
        default = http.get("/api/public/v2/observations", params={"traceId": "trace-1"})
        with_io = http.get(
            "/api/public/v2/observations",
            params={"traceId": "trace-1", "fields": "core,io,usage", "type": "EVENT"},
        )
        paged = http.get("/api/public/v2/observations", params={"limit": 1})
        deprecated = http.get("/api/public/v2/observations", params={"parseIoAsJson": "true"})
    rows = default.json()["data"]
    assert {r["id"] for r in rows} == {"event-1", "gen-1"}
    for row in rows:
        assert row["projectId"] == langfuse.project_id
        assert row["userId"] == "alice@example.com"  # basic group, from the trace
        assert "input" not in row and "usageDetails" not in row
        assert set(row) >= {"modelId", "inputPrice", "outputPrice", "totalPrice"}
    (event,) = with_io.json()["data"]
    assert event["input"] == '[{"role": "user"}]'  # v2 io is the raw string
    assert "name" not in event  # basic not requested
    assert "cursor" in paged.json()["meta"]
    assert deprecated.status_code == 400


# --- request log, isolation, control surface -------------------------------------------


def test_request_log_never_holds_a_secret(langfuse: LangfuseStandIn) -> None:
    leaky = {
        "batch": [
            envelope(
                "trace-create",
                {"id": "t", "input": langfuse.secret_key, "metadata": {langfuse.secret_key: 1}},
                "e",
            )
        ]
    }
    with client(langfuse, auth=auth(langfuse)) as http:
        http.post(
            "/api/public/ingestion", json=leaky, headers={"X-Debug": f"key={langfuse.secret_key}"}
        )
        # A swapped pair puts the secret where the public key belongs.
        http.get("/api/public/projects", auth=(langfuse.secret_key, langfuse.public_key))
    entries = langfuse.requests
    assert len(entries) == 2
    # Computed outside the asserts so a failure never prints the secret.
    leaked = langfuse.secret_key in json.dumps(entries)
    assert not leaked, "the secret key is in the request log"
    assert entries[0]["headers"]["authorization"] == "Basic [REDACTED]"
    assert entries[0]["publicKey"] == langfuse.public_key
    assert entries[0]["body"]["batch"][0]["body"]["input"] == "[REDACTED]"
    # The data itself is kept as sent: tests can prove a secret never reached a trace.
    trace = langfuse.trace("t")
    kept_as_sent = trace is not None and trace["input"] == langfuse.secret_key
    assert kept_as_sent, "stored trace input differs from what was sent"


def test_two_stand_ins_share_nothing(langfuse: LangfuseStandIn) -> None:
    with LangfuseStandIn() as other:
        other.add_project()
        other.events_only = True
        with httpx.Client(timeout=10) as http:
            mine = http.get(f"{langfuse.url}/api/public/projects", auth=auth(langfuse))
            theirs = http.get(f"{other.url}/api/public/projects", auth=auth(langfuse))
        assert mine.status_code == 200
        assert theirs.status_code == 401
        assert langfuse.events_only is False
        assert other.requests and all(r["status"] == 401 for r in other.requests)
        assert len(langfuse.requests) == 1


def test_http_control_surface_switches_and_reads(langfuse: LangfuseStandIn) -> None:
    with client(langfuse) as http:
        created = http.post(
            "/_standin/projects", json={"publicKey": "pk-lf-ctl", "secretKey": "sk-lf-ctl-secret"}
        )
        switched = http.post("/_standin/switches", json={"eventsOnly": True, "version": "4.99.0"})
        bad = http.post("/_standin/switches", json={"failure": "teapot"})
        v1 = http.get("/api/public/traces", auth=("pk-lf-ctl", "sk-lf-ctl-secret"))
        http.post("/_standin/switches", json={"eventsOnly": False})
        http.post(
            "/api/public/ingestion",
            auth=("pk-lf-ctl", "sk-lf-ctl-secret"),
            json={"batch": legacy_batch()},
        )
        traces = http.get("/_standin/traces").json()["data"]
        observations = http.get("/_standin/observations", params={"traceId": "trace-1"})
        requests = http.get("/_standin/requests").json()["data"]
        state = http.get("/_standin/state").json()
        http.post("/_standin/reset")
        after_reset = http.get("/_standin/traces").json()["data"]
    assert created.status_code == 201
    assert switched.json()["eventsOnly"] is True and switched.json()["version"] == "4.99.0"
    assert bad.status_code == 400
    assert v1.status_code == 404
    assert [t["id"] for t in traces] == ["trace-1"]
    assert len(observations.json()["data"]) == 2
    assert [r["path"] for r in requests] == ["/api/public/traces", "/api/public/ingestion"]
    leaked = "sk-lf-ctl-secret" in json.dumps(state) + json.dumps(requests)
    assert not leaked, "a control answer holds the secret key"
    assert {p["publicKey"] for p in state["projects"]} == {langfuse.public_key, "pk-lf-ctl"}
    assert after_reset == []


def test_runs_by_hand_as_a_module(tmp_path: Path) -> None:
    with LangfuseStandIn() as probe:  # borrow a free port, then release it
        port = probe.port
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "tests.peers.langfuse_standin",
        "--port",
        str(port),
        "--project",
        "pk-lf-hand:sk-lf-hand",
    ]
    log = tmp_path / "standin.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{port}/api/public/projects",
                    auth=("pk-lf-hand", "sk-lf-hand"),
                    timeout=2,
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"stand-in did not start: {log.read_text()}")
                time.sleep(0.1)
        assert answer.status_code == 200
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
    assert f"http://127.0.0.1:{port}" in log.read_text()
    leaked = "sk-lf-hand" in log.read_text()
    assert not leaked, "the stand-in printed a secret key it was given"


def test_score_delete_answers_204_then_404_for_the_unknown_id(langfuse: LangfuseStandIn) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        created = http.post("/api/public/scores", json={"id": "s-del", "name": "q", "value": 1})
        assert created.status_code == 200
        assert http.delete("/api/public/scores/s-del").status_code == 204
        missing = http.delete("/api/public/scores/s-del")
    assert missing.status_code == 404
    assert missing.json()["message"]
    assert langfuse.scores() == []


def test_score_posted_again_with_its_id_is_replaced_not_merged(langfuse: LangfuseStandIn) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        first = {"id": "s-1", "traceId": "t", "name": "q", "value": 1, "comment": "keep?"}
        assert http.post("/api/public/scores", json=first).status_code == 200
        again = {"id": "s-1", "traceId": "t", "name": "q", "value": 0.25}
        assert http.post("/api/public/scores", json=[again]).status_code == 202
    (score,) = langfuse.scores()
    assert score["value"] == 0.25
    assert score["comment"] is None
    assert score["dataType"] == "NUMERIC"


def test_score_with_a_value_that_contradicts_its_data_type_gets_400(
    langfuse: LangfuseStandIn,
) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        wrong = http.post(
            "/api/public/scores", json={"name": "q", "value": "high", "dataType": "NUMERIC"}
        )
        missing = http.post("/api/public/scores", json={"name": "q"})
    assert wrong.status_code == 400
    assert wrong.json()["message"] == "Invalid request data"
    assert missing.status_code == 400
    assert langfuse.scores() == []


def test_v3_scores_page_with_a_cursor_and_filter(langfuse: LangfuseStandIn) -> None:
    batch = [
        {
            "id": f"s-{n}",
            "traceId": "t",
            "name": "q",
            "value": n,
            "timestamp": f"2024-01-0{n}T00:00:00Z",
        }
        for n in range(1, 4)
    ]
    with client(langfuse, auth=auth(langfuse)) as http:
        http.post("/api/public/scores", json=[*batch, {"traceId": "u", "name": "c", "value": "ok"}])
        first = http.get("/api/public/v3/scores", params={"traceId": "t", "limit": 2}).json()
        rest = http.get(
            "/api/public/v3/scores",
            params={"traceId": "t", "limit": 2, "cursor": first["meta"]["cursor"]},
        ).json()
        categorical = http.get("/api/public/v3/scores", params={"dataType": "categorical"}).json()
        ranged = http.get(
            "/api/public/v3/scores", params={"dataType": "NUMERIC", "valueMin": 2, "valueMax": 2}
        ).json()
    assert [s["id"] for s in first["data"]] == ["s-3", "s-2"]  # newest first
    assert first["meta"]["limit"] == 2
    assert [s["id"] for s in rest["data"]] == ["s-1"]
    assert "cursor" not in rest["meta"]
    assert [s["value"] for s in categorical["data"]] == ["ok"]
    assert [s["id"] for s in ranged["data"]] == ["s-2"]
    assert "comment" not in first["data"][0]  # `details` was not asked for


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 101},
        {"fields": "details,everything"},
        {"observationId": "o"},
        {"sessionId": "s", "traceId": "t"},
        {"value": "1"},
        {"valueMin": 1, "dataType": "CATEGORICAL"},
        {"cursor": "not-a-cursor"},
    ],
)
def test_v3_scores_refuse_bad_queries_with_400(
    langfuse: LangfuseStandIn, params: dict[str, Any]
) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        answer = http.get("/api/public/v3/scores", params=params)
    assert answer.status_code == 400
    assert answer.json()["message"]


@pytest.mark.parametrize(
    "path", ["/api/public/v3/scores", "/api/public/models", "/api/public/models/any"]
)
def test_score_and_model_reads_reject_bad_auth_with_401(
    langfuse: LangfuseStandIn, path: str
) -> None:
    with client(langfuse, auth=httpx.BasicAuth(langfuse.public_key, "sk-lf-wrong")) as http:
        answer = http.get(path)
    assert answer.status_code == 401
    assert answer.json() == {"message": INVALID_CREDENTIALS}


def test_legacy_score_lists_page_and_answer_404_in_events_only(langfuse: LangfuseStandIn) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        http.post("/api/public/scores", json={"traceId": "t", "name": "c", "value": "ok"})
        v1 = http.get("/api/public/scores", params={"page": 1, "limit": 10}).json()
        v2 = http.get("/api/public/v2/scores", params={"traceId": "t"}).json()
        langfuse.events_only = True
        gone = [http.get(path) for path in ("/api/public/scores", "/api/public/v2/scores")]
        v3 = http.get("/api/public/v3/scores")
    assert v1["meta"] == {"page": 1, "limit": 10, "totalItems": 1, "totalPages": 1}
    assert v1["data"][0]["stringValue"] == "ok"
    assert v2["data"] == v1["data"]
    assert [a.status_code for a in gone] == [404, 404]
    assert gone[0].json() == {"message": EVENTS_ONLY_404}
    assert v3.status_code == 200


def test_models_list_pages_managed_models_in_name_order(langfuse: LangfuseStandIn) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        listed = http.get("/api/public/models", params={"page": 1, "limit": 2}).json()
        unknown = http.get("/api/public/models/no-such-model")
    names = [m["modelName"] for m in listed["data"]]
    assert names == sorted(names)
    assert listed["meta"]["limit"] == 2
    assert listed["meta"]["totalPages"] == 2
    assert all(m["isLangfuseManaged"] and m["prices"] for m in listed["data"])
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "No model with this id found."}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"modelName": "m", "matchPattern": "(?i)^(m$", "inputPrice": 1},
            "matchPattern is not a valid regex pattern (Postgres)",
        ),
        ({"matchPattern": "^m$", "inputPrice": 1}, "modelName"),
        ({"modelName": "m", "matchPattern": "^m$", "inputPrice": 1, "totalPrice": 2}, "totalPrice"),
        (
            {
                "modelName": "m",
                "matchPattern": "^m$",
                "inputPrice": 1,
                "pricingTiers": [
                    {
                        "name": "a",
                        "isDefault": True,
                        "priority": 0,
                        "conditions": [],
                        "prices": {"input": 1},
                    }
                ],
            },
            "pricingTiers",
        ),
        (
            {
                "modelName": "m",
                "matchPattern": "^m$",
                "pricingTiers": [
                    {"name": "a", "priority": 1, "conditions": [], "prices": {"input": 1}}
                ],
            },
            "default tier",
        ),
        ({"modelName": "m", "matchPattern": "^m$", "unit": "BYTES", "inputPrice": 1}, "unit"),
    ],
)
def test_model_create_refuses_bad_bodies_with_400(
    langfuse: LangfuseStandIn, body: dict[str, Any], message: str
) -> None:
    with client(langfuse, auth=auth(langfuse)) as http:
        answer = http.post("/api/public/models", json=body)
    assert answer.status_code == 400
    assert message in answer.json()["message"]


def test_model_names_are_unique_within_a_project_and_deletes_answer_the_server_texts(
    langfuse: LangfuseStandIn,
) -> None:
    body = {"modelName": "gpt-4o", "matchPattern": "(?i)^gpt-4o$", "inputPrice": 1e-6}
    with client(langfuse, auth=auth(langfuse)) as http:
        created = http.post("/api/public/models", json=body)  # overrides the managed gpt-4o
        duplicate = http.post("/api/public/models", json=body)
        deleted = http.delete(f"/api/public/models/{created.json()['id']}")
        again = http.delete(f"/api/public/models/{created.json()['id']}")
    assert created.status_code == 200
    assert created.json()["isLangfuseManaged"] is False
    assert duplicate.status_code == 400
    assert duplicate.json() == {"message": "Model name 'gpt-4o' already exists in project"}
    assert deleted.json() == {"message": "Model successfully deleted"}
    assert again.status_code == 404
    assert "cannot delete built-in models" in again.json()["message"]


def test_generation_without_cost_is_priced_by_the_matching_model(langfuse: LangfuseStandIn) -> None:
    def generation(event_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return envelope("generation-create", {"traceId": "t", **body}, event_id)

    batch = [
        generation(
            "e1",
            {
                "id": "priced",
                "model": "openai/GPT-4o",
                "usageDetails": {"input": 1000, "output": 100},
            },
        ),
        generation(
            "e2",
            {
                "id": "sent",
                "model": "gpt-4o",
                "usageDetails": {"input": 1000},
                "costDetails": {"input": 1.0},
            },
        ),
        generation(
            "e3", {"id": "unknown", "model": "llama3.1:8b", "usageDetails": {"input": 1000}}
        ),
        generation(
            "e4", {"id": "custom", "model": "my-model", "usageDetails": {"input": 10, "output": 10}}
        ),
    ]
    with client(langfuse, auth=auth(langfuse)) as http:
        http.post(
            "/api/public/models",
            json={"modelName": "my-model", "matchPattern": "(?i)^my-model$", "totalPrice": 0.5},
        )
        http.post("/api/public/ingestion", json={"batch": batch})
    by_id = {o["id"]: o for o in langfuse.observations()}
    assert by_id["priced"]["costDetails"] == pytest.approx(
        {"input": 0.0025, "output": 0.001, "total": 0.0035}
    )
    assert by_id["sent"]["costDetails"] == {"input": 1.0, "total": 1.0}
    assert by_id["unknown"]["costDetails"] is None
    assert by_id["custom"]["costDetails"] == pytest.approx({"total": 10.0})
