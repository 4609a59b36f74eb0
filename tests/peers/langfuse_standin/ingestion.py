"""Legacy batch ingestion (`POST /api/public/ingestion`, SDK v2 and v3/v4 scores).

Each event is validated and applied on its own; the request as a whole answers 207 with
per-event successes and errors, as the server does (docs/upstream/langfuse.md, "Legacy ingestion").
"""

from __future__ import annotations

import re
from typing import Any

from .store import Store
from .usage import from_legacy_usage, normalise_cost_details, normalise_usage_details
from .values import new_id, normalise_iso

EVENTS_ONLY_MESSAGE = "Event type not accepted"
EVENTS_ONLY_ALLOWED = frozenset({"score-create", "sdk-log", "dataset-run-item-create"})
# Accepted but never stored: SDK logs are only logged; dataset run items are internal.
ACCEPTED_NOT_STORED = frozenset({"sdk-log", "dataset-run-item-create"})

OBSERVATION_TYPES = {
    "span-create": "SPAN",
    "span-update": "SPAN",
    "generation-create": "GENERATION",
    "generation-update": "GENERATION",
    "event-create": "EVENT",
    "agent-create": "AGENT",
    "tool-create": "TOOL",
    "chain-create": "CHAIN",
    "retriever-create": "RETRIEVER",
    "evaluator-create": "EVALUATOR",
    "embedding-create": "EMBEDDING",
    "guardrail-create": "GUARDRAIL",
}
LEGACY_OBSERVATION_EVENTS = frozenset({"observation-create", "observation-update"})
KNOWN_TYPES = (
    frozenset(OBSERVATION_TYPES)
    | LEGACY_OBSERVATION_EVENTS
    | {"trace-create", "score-create"}
    | ACCEPTED_NOT_STORED
)

# Body keys each schema keeps; anything else is stripped, like the server's zod objects.
_TRACE_KEYS = (
    "id",
    "timestamp",
    "name",
    "externalId",
    "input",
    "output",
    "sessionId",
    "userId",
    "environment",
    "metadata",
    "release",
    "version",
    "public",
    "tags",
)
_OBSERVATION_KEYS = (
    "id",
    "traceId",
    "environment",
    "name",
    "startTime",
    "endTime",
    "metadata",
    "input",
    "output",
    "level",
    "statusMessage",
    "parentObservationId",
    "version",
    "completionStartTime",
    "model",
    "modelParameters",
    "promptName",
    "promptVersion",
)
_SCORE_KEYS = (
    "id",
    "name",
    "traceId",
    "sessionId",
    "observationId",
    "datasetRunId",
    "environment",
    "comment",
    "metadata",
    "source",
    "value",
    "dataType",
    "configId",
    "timestamp",
)
_TIME_KEYS = ("timestamp", "startTime", "endTime", "completionStartTime")
_ENVIRONMENT = re.compile(r"^[a-z0-9_-]+$")


class EventError(ValueError):
    """One event was rejected; `status` and `error` go into its entry of the 207."""

    def __init__(self, error: str, status: int = 400) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def normalise_environment(value: Any) -> str:
    """Lowercase, strip leading `langfuse`, cut to 40 characters; otherwise `default`."""
    if not isinstance(value, str):
        return "default"
    cleaned = value.lower()
    while cleaned.startswith("langfuse"):
        cleaned = cleaned[len("langfuse") :].lstrip("-_")
    cleaned = cleaned[:40]
    return cleaned if _ENVIRONMENT.match(cleaned) else "default"


def _pick(body: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    picked = {key: body[key] for key in keys if key in body}
    for key in _TIME_KEYS:
        if picked.get(key) is not None:
            normalised = normalise_iso(picked[key])
            if normalised is None:
                raise EventError(f"Invalid datetime in body.{key}")
            picked[key] = normalised
    if "environment" in picked:
        picked["environment"] = normalise_environment(picked["environment"])
    return picked


def _apply_trace(store: Store, project_id: str, body: dict[str, Any], stamp: str) -> None:
    fields = _pick(body, _TRACE_KEYS)
    fields.setdefault("id", new_id())
    fields.setdefault("timestamp", stamp)
    if fields.get("tags") is not None and not isinstance(fields["tags"], list):
        raise EventError("body.tags must be an array of strings")
    store.upsert_trace(project_id, fields, defaults={"environment": "default"})


def _apply_observation(
    store: Store, project_id: str, event_type: str, body: dict[str, Any], stamp: str
) -> None:
    if not isinstance(body.get("id"), str) or not body["id"]:
        raise EventError("body.id is required for observation events")
    fields = _pick(body, _OBSERVATION_KEYS)
    if event_type in LEGACY_OBSERVATION_EVENTS:
        fields["type"] = str(body.get("type") or "SPAN").upper()
    else:
        fields["type"] = OBSERVATION_TYPES[event_type]
    if event_type.endswith("-create"):
        fields.setdefault("startTime", stamp)
    if event_type == "event-create":
        fields.setdefault("endTime", fields["startTime"])
    if "level" in fields and fields["level"] is not None:
        fields["level"] = str(fields["level"]).upper()
    usage_details = normalise_usage_details(body.get("usageDetails"))
    legacy_usage, legacy_cost = from_legacy_usage(body.get("usage"))
    fields["usageDetails"] = usage_details or legacy_usage
    fields["costDetails"] = normalise_cost_details(body.get("costDetails")) or legacy_cost
    if isinstance(body.get("usage"), dict) and body["usage"].get("unit"):
        fields["usageUnit"] = str(body["usage"]["unit"])
    if not fields.get("traceId"):
        # The server gives an orphan observation a trace of its own.
        trace_id = new_id()
        store.upsert_trace(project_id, {"id": trace_id, "timestamp": stamp})
        fields["traceId"] = trace_id
    store.upsert_observation(project_id, fields)


SCORE_DATA_TYPES = frozenset({"NUMERIC", "CATEGORICAL", "BOOLEAN", "CORRECTION", "TEXT"})
_STRING_SCORE_TYPES = frozenset({"CATEGORICAL", "CORRECTION", "TEXT"})


def _score_data_type(body: dict[str, Any]) -> str:
    """The score's data type, inferred from its value when not sent (a string is
    categorical, a number numeric), and checked against the value as the server does."""
    value = body.get("value")
    if value is None:
        raise EventError("body.value is required for scores")
    data_type = body.get("dataType")
    if data_type is None:
        data_type = "CATEGORICAL" if isinstance(value, str) else "NUMERIC"
    if data_type not in SCORE_DATA_TYPES:
        raise EventError(f"body.dataType must be one of {sorted(SCORE_DATA_TYPES)}")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if data_type in _STRING_SCORE_TYPES and not isinstance(value, str):
        raise EventError(f"{data_type} scores need a string value")
    if data_type == "NUMERIC" and not is_number:
        raise EventError("NUMERIC scores need a numeric value")
    if data_type == "BOOLEAN" and value not in (0, 1):
        raise EventError("BOOLEAN scores need the value 1 or 0")
    return str(data_type)


def _apply_score(store: Store, project_id: str, body: dict[str, Any], stamp: str) -> str:
    if not isinstance(body.get("name"), str) or not body["name"]:
        raise EventError("body.name is required for scores")
    data_type = _score_data_type(body)
    fields = _pick(body, _SCORE_KEYS)
    fields["dataType"] = data_type
    fields.setdefault("id", new_id())
    fields.setdefault("timestamp", stamp)
    fields.setdefault("source", "API")
    fields.setdefault("environment", "default")
    store.upsert_score(project_id, fields)
    return str(fields["id"])


def apply_score(store: Store, project_id: str, body: Any, stamp: str) -> str:
    """Store one score object (also used by `POST /api/public/scores`); returns its id."""
    if not isinstance(body, dict):
        raise EventError("score must be an object")
    return _apply_score(store, project_id, body, stamp)


def _validate_envelope(event: Any) -> tuple[str, str, str, dict[str, Any]]:
    if not isinstance(event, dict):
        raise EventError("event must be an object")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 800 or "\r" in event_id:
        raise EventError("id must be a string of 1 to 800 characters")
    event_type = event.get("type")
    if event_type not in KNOWN_TYPES:
        raise EventError(f"Invalid event type: {event_type!r}")
    stamp = normalise_iso(event.get("timestamp"))
    if stamp is None:
        raise EventError("timestamp must be an ISO 8601 datetime")
    body = event.get("body")
    if not isinstance(body, dict):
        raise EventError("body must be an object")
    return event_id, str(event_type), stamp, body


def _event_id(event: Any) -> str:
    if isinstance(event, dict) and isinstance(event.get("id"), str):
        return str(event["id"])
    return "unknown"


def _event_type(event: Any) -> str | None:
    if isinstance(event, dict) and isinstance(event.get("type"), str):
        return str(event["type"])
    return None


def events_only_error(event: Any) -> dict[str, Any]:
    """The per-event rejection of a Langfuse v4 server in `events_only` write mode."""
    shown = _event_type(event) or "unknown"
    return {
        "id": _event_id(event),
        "status": 400,
        "message": EVENTS_ONLY_MESSAGE,
        "error": (
            f'Event type "{shown}" is not accepted by /api/public/ingestion when '
            "LANGFUSE_MIGRATION_V4_WRITE_MODE is events_only. This endpoint only accepts "
            "score, log, and dataset-run-item events."
        ),
    }


def process_batch(
    store: Store, project_id: str, batch: list[Any], *, events_only: bool
) -> dict[str, list[dict[str, Any]]]:
    """Apply a batch and build the 207 body `{"successes": [...], "errors": [...]}`."""
    successes: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    accepted: list[Any] = []
    rejected: list[dict[str, Any]] = []
    for event in batch:
        if events_only and _event_type(event) not in EVENTS_ONLY_ALLOWED:
            rejected.append(events_only_error(event))
        else:
            accepted.append(event)
    # Updates are applied after creates, so an update never precedes its create.
    ordered = sorted(accepted, key=lambda event: (_event_type(event) or "").endswith("-update"))
    for event in ordered:
        try:
            event_id, event_type, stamp, body = _validate_envelope(event)
            if event_type == "trace-create":
                _apply_trace(store, project_id, body, stamp)
            elif event_type == "score-create":
                _apply_score(store, project_id, body, stamp)
            elif event_type in OBSERVATION_TYPES or event_type in LEGACY_OBSERVATION_EVENTS:
                _apply_observation(store, project_id, event_type, body, stamp)
            successes.append({"id": event_id, "status": 201})
        except EventError as error:
            errors.append(
                {
                    "id": _event_id(event),
                    "status": error.status,
                    "message": "Invalid request data",
                    "error": error.error,
                }
            )
    return {"successes": successes, "errors": errors + rejected}
