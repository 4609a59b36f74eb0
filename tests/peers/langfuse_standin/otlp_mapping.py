"""Map decoded OTLP spans onto Langfuse traces and observations.

Follows the attribute names of the Langfuse SDKs (docs/upstream/langfuse.md, "What the SDKs
send") and the precedence of the server's OTel ingestion (docs/upstream/langfuse.md, "OTLP
ingestion"). Every span becomes one observation; trace-level attributes on any span upsert the
trace it belongs to.
"""

from __future__ import annotations

import json
from typing import Any

from .otlp_decode import STATUS_CODE_ERROR, DecodedSpan
from .store import Store
from .usage import normalise_cost_details, normalise_usage_details
from .values import decode_io, decode_json_or_raw, iso_from_unix_nanos, normalise_iso

OBSERVATION = "langfuse.observation."
OBSERVATION_METADATA = "langfuse.observation.metadata."
TRACE_METADATA = "langfuse.trace.metadata."

_USER_ID = (
    "langfuse.user.id",
    "user.id",
    "langfuse.observation.metadata.langfuse_user_id",
    "langfuse.trace.metadata.langfuse_user_id",
)
_SESSION_ID = (
    "langfuse.session.id",
    "session.id",
    "gen_ai.conversation.id",
    "langfuse.observation.metadata.langfuse_session_id",
    "langfuse.trace.metadata.langfuse_session_id",
)
_MODEL = (
    "langfuse.observation.model.name",
    "gen_ai.response.model",
    "ai.model.id",
    "gen_ai.request.model",
)
# Fallback token counts when no `usage_details` JSON is present, normalised to Langfuse keys.
_GENAI_USAGE = {
    "gen_ai.usage.input_tokens": "input",
    "gen_ai.usage.prompt_tokens": "input",
    "llm.token_count.prompt": "input",
    "gen_ai.usage.output_tokens": "output",
    "gen_ai.usage.completion_tokens": "output",
    "llm.token_count.completion": "output",
    "gen_ai.usage.total_tokens": "total",
    "llm.token_count.total": "total",
}


def _first(attributes: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        value = attributes.get(name)
        if value not in (None, ""):
            return decode_json_or_raw(value) if "metadata" in name else value
    return None


def _prefixed(attributes: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Collect `<prefix><key>` attributes (JSON-decoded) plus a whole-object attribute
    named `<prefix>` without the trailing dot."""
    collected: dict[str, Any] = {}
    whole = decode_json_or_raw(attributes.get(prefix.rstrip(".")))
    if isinstance(whole, dict):
        collected.update(whole)
    for name, value in attributes.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            collected[name[len(prefix) :]] = decode_json_or_raw(value)
    return collected


def _tags(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        decoded = decode_json_or_raw(value)
        if isinstance(decoded, list):
            value = decoded
        else:
            value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(item) for item in value]
    return None


def _usage(attributes: dict[str, Any]) -> dict[str, int] | None:
    explicit = decode_json_or_raw(attributes.get(OBSERVATION + "usage_details"))
    if isinstance(explicit, dict):
        return normalise_usage_details(explicit)
    fallback = {key: attributes[name] for name, key in _GENAI_USAGE.items() if name in attributes}
    return normalise_usage_details(fallback)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value)


def observation_fields(span: DecodedSpan) -> dict[str, Any]:
    """The observation one span describes, in API field names."""
    attributes = span.attributes
    merged = {**span.resource_attributes, **attributes}
    level = attributes.get(OBSERVATION + "level")
    status_message = attributes.get(OBSERVATION + "status_message")
    if span.status_code == STATUS_CODE_ERROR:
        level = level or "ERROR"
        status_message = status_message or span.status_message or None
    observation_type = str(attributes.get(OBSERVATION + "type") or "span").upper()
    prompt_version = attributes.get(OBSERVATION + "prompt.version")
    return {
        "id": span.span_id,
        "traceId": span.trace_id,
        "parentObservationId": span.parent_span_id,
        "type": observation_type,
        "name": span.name,
        "startTime": iso_from_unix_nanos(span.start_nanos),
        "endTime": iso_from_unix_nanos(span.end_nanos) if span.end_nanos else None,
        "completionStartTime": normalise_iso(
            decode_json_or_raw(attributes.get(OBSERVATION + "completion_start_time"))
        ),
        "model": _first(attributes, _MODEL),
        "modelParameters": decode_json_or_raw(attributes.get(OBSERVATION + "model.parameters")),
        "input": decode_io(attributes.get(OBSERVATION + "input")),
        "output": decode_io(attributes.get(OBSERVATION + "output")),
        "metadata": _prefixed(attributes, OBSERVATION_METADATA),
        "usageDetails": _usage(attributes),
        "costDetails": normalise_cost_details(
            decode_json_or_raw(attributes.get(OBSERVATION + "cost_details"))
        ),
        "level": str(level).upper() if level else "DEFAULT",
        "statusMessage": _str_or_none(status_message),
        "version": merged.get("langfuse.version"),
        "environment": merged.get("langfuse.environment") or "default",
        "promptName": attributes.get(OBSERVATION + "prompt.name"),
        "promptVersion": _int_or_none(prompt_version),
        "userId": _first(attributes, _USER_ID),
        "sessionId": _first(attributes, _SESSION_ID),
    }


def trace_fields(span: DecodedSpan, observation: dict[str, Any]) -> dict[str, Any]:
    """The trace-level values one span carries explicitly (propagated attributes)."""
    attributes = span.attributes
    merged = {**span.resource_attributes, **attributes}
    public = attributes.get("langfuse.trace.public")
    return {
        "id": span.trace_id,
        "timestamp": observation["startTime"],
        "name": attributes.get("langfuse.trace.name"),
        "userId": observation["userId"],
        "sessionId": observation["sessionId"],
        "tags": _tags(attributes.get("langfuse.trace.tags")),
        "metadata": _prefixed(attributes, TRACE_METADATA) or None,
        "input": decode_io(attributes.get("langfuse.trace.input")),
        "output": decode_io(attributes.get("langfuse.trace.output")),
        "public": bool(decode_json_or_raw(public)) if public is not None else None,
        "release": merged.get("langfuse.release"),
        "version": merged.get("langfuse.version"),
        "environment": merged.get("langfuse.environment") or "default",
    }


def trace_defaults(span: DecodedSpan, observation: dict[str, Any]) -> dict[str, Any]:
    """What a root span implies for its trace unless set explicitly: SDK v4+ has no
    trace-level name or io of its own, the trace shows its root observation's."""
    if span.parent_span_id is not None:
        return {}
    return {"name": span.name, "input": observation["input"], "output": observation["output"]}


def ingest_spans(store: Store, project_id: str, spans: list[DecodedSpan]) -> None:
    """Store every span as an observation and upsert the traces they belong to."""
    for span in spans:
        observation = observation_fields(span)
        store.upsert_trace(
            project_id, trace_fields(span, observation), defaults=trace_defaults(span, observation)
        )
        store.upsert_observation(project_id, observation)
