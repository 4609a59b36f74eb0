"""Read models of the public API: v1 traces/observations (paged) and v2 observations (field
groups, cursor), projected from stored records (docs/upstream/langfuse.md, "Reading data
back")."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from .values import parse_iso

TRACE_FIELDS = (
    "id",
    "timestamp",
    "name",
    "input",
    "output",
    "sessionId",
    "release",
    "version",
    "userId",
    "metadata",
    "tags",
    "public",
    "environment",
    "externalId",
)
OBSERVATION_V1_FIELDS = (
    "id",
    "traceId",
    "type",
    "name",
    "startTime",
    "endTime",
    "completionStartTime",
    "model",
    "modelParameters",
    "input",
    "output",
    "metadata",
    "version",
    "level",
    "statusMessage",
    "parentObservationId",
    "environment",
    "usageDetails",
    "costDetails",
    "promptName",
    "promptVersion",
)
V2_GROUPS: dict[str, tuple[str, ...]] = {
    "core": ("id", "traceId", "startTime", "endTime", "projectId", "parentObservationId", "type"),
    "basic": (
        "name",
        "level",
        "statusMessage",
        "version",
        "environment",
        "bookmarked",
        "public",
        "userId",
        "sessionId",
        "isRootObservation",
    ),
    "time": ("completionStartTime", "createdAt", "updatedAt"),
    "io": ("input", "output"),
    "metadata": ("metadata",),
    "model": ("model", "internalModelId", "modelParameters"),
    "usage": ("usageDetails", "costDetails", "totalCost", "usagePricingTierName"),
    "prompt": ("promptId", "promptName", "promptVersion"),
    "metrics": ("latency", "timeToFirstToken"),
    "trace_context": ("traceName", "tags", "release"),
}
V2_DEFAULT_GROUPS = ("core", "basic")
V2_ALWAYS_PRESENT = ("modelId", "inputPrice", "outputPrice", "totalPrice")
METADATA_TRUNCATE = 200


def _seconds_between(start: Any, end: Any) -> float | None:
    started, ended = parse_iso(start), parse_iso(end)
    if started is None or ended is None:
        return None
    return (ended - started).total_seconds()


def _total_cost(observation: dict[str, Any]) -> float | None:
    costs = observation.get("costDetails") or {}
    total = costs.get("total")
    return float(total) if total is not None else None


def _legacy_usage(observation: dict[str, Any]) -> dict[str, Any]:
    usage = observation.get("usageDetails") or {}
    costs = observation.get("costDetails") or {}
    return {
        "input": usage.get("input", 0),
        "output": usage.get("output", 0),
        "total": usage.get("total", 0),
        "unit": observation.get("usageUnit", "TOKENS"),
        "inputCost": costs.get("input"),
        "outputCost": costs.get("output"),
        "totalCost": costs.get("total"),
    }


def observation_v1(observation: dict[str, Any]) -> dict[str, Any]:
    """An `ObservationsView`: the v1 observation plus derived usage, cost and latency."""
    view = {field: observation.get(field) for field in OBSERVATION_V1_FIELDS}
    view["usageDetails"] = view["usageDetails"] or {}
    view["costDetails"] = view["costDetails"] or {}
    costs: dict[str, Any] = view["costDetails"] or {}
    view.update(
        {
            "usage": _legacy_usage(observation),
            "promptId": None,
            "modelId": None,
            "inputPrice": None,
            "outputPrice": None,
            "totalPrice": None,
            "calculatedInputCost": costs.get("input"),
            "calculatedOutputCost": costs.get("output"),
            "calculatedTotalCost": costs.get("total"),
            "latency": _seconds_between(observation.get("startTime"), observation.get("endTime")),
            "timeToFirstToken": _seconds_between(
                observation.get("startTime"), observation.get("completionStartTime")
            ),
        }
    )
    return view


def _trace_base(trace: dict[str, Any], observations: list[dict[str, Any]]) -> dict[str, Any]:
    view = {field: trace.get(field) for field in TRACE_FIELDS}
    view["tags"] = view["tags"] or []
    view["public"] = bool(view["public"])
    view["metadata"] = view["metadata"] if view["metadata"] is not None else {}
    starts = [o["startTime"] for o in observations if o.get("startTime")]
    ends = [o.get("endTime") or o["startTime"] for o in observations if o.get("startTime")]
    costs = [cost for o in observations if (cost := _total_cost(o)) is not None]
    view.update(
        {
            "htmlPath": f"/project/{trace.get('projectId')}/traces/{trace['id']}",
            "latency": _seconds_between(min(starts), max(ends)) if starts else 0.0,
            "totalCost": sum(costs) if costs else 0.0,
        }
    )
    return view


def trace_with_details(
    trace: dict[str, Any], observations: list[dict[str, Any]], score_ids: list[str]
) -> dict[str, Any]:
    """`TraceWithDetails` (list item): observations and scores as id lists."""
    view = _trace_base(trace, observations)
    view["observations"] = [o["id"] for o in observations]
    view["scores"] = score_ids
    return view


def trace_with_full_details(
    trace: dict[str, Any], observations: list[dict[str, Any]], scores: list[dict[str, Any]]
) -> dict[str, Any]:
    """`TraceWithFullDetails` (`GET /traces/{id}`): observations and scores in full."""
    view = _trace_base(trace, observations)
    view["observations"] = [observation_v1(o) for o in observations]
    view["scores"] = scores
    return view


def page(items: list[Any], page_number: int, limit: int) -> dict[str, Any]:
    """v1 pagination: `page` starts at 1."""
    start = (page_number - 1) * limit
    return {
        "data": items[start : start + limit],
        "meta": {
            "page": page_number,
            "limit": limit,
            "totalItems": len(items),
            "totalPages": math.ceil(len(items) / limit) if limit else 0,
        },
    }


def _raw_io(value: Any) -> Any:
    # v2 returns input and output as the raw strings that were ingested.
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


def _truncated_metadata(metadata: Any, expanded: set[str]) -> Any:
    if not isinstance(metadata, dict):
        return metadata
    shown: dict[str, Any] = {}
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if key not in expanded and len(text) > METADATA_TRUNCATE:
            shown[key] = text[:METADATA_TRUNCATE]
        else:
            shown[key] = value
    return shown


def observation_v2(
    observation: dict[str, Any],
    trace: dict[str, Any] | None,
    groups: set[str],
    expanded_metadata: set[str],
) -> dict[str, Any]:
    """An `ObservationV2` with the requested field groups (core always)."""
    trace = trace or {}
    source = {
        **observation,
        "bookmarked": False,
        "public": bool(trace.get("public")),
        "userId": observation.get("userId") or trace.get("userId"),
        "sessionId": observation.get("sessionId") or trace.get("sessionId"),
        "isRootObservation": observation.get("parentObservationId") is None,
        "input": _raw_io(observation.get("input")),
        "output": _raw_io(observation.get("output")),
        "metadata": _truncated_metadata(observation.get("metadata") or {}, expanded_metadata),
        "usageDetails": observation.get("usageDetails") or {},
        "costDetails": observation.get("costDetails") or {},
        "totalCost": _total_cost(observation),
        "latency": _seconds_between(observation.get("startTime"), observation.get("endTime")),
        "timeToFirstToken": _seconds_between(
            observation.get("startTime"), observation.get("completionStartTime")
        ),
        "traceName": trace.get("name"),
        "tags": trace.get("tags") or [],
        "release": trace.get("release"),
    }
    view = {field: None for field in V2_ALWAYS_PRESENT}
    for group in ("core", *sorted(groups - {"core"})):
        for field in V2_GROUPS.get(group, ()):
            view[field] = source.get(field)
    return view


def encode_cursor(offset: int) -> str:
    return base64.b64encode(json.dumps({"offset": offset}).encode()).decode("ascii")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return int(json.loads(base64.b64decode(cursor))["offset"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError("Invalid cursor") from error


# --- scores ----------------------------------------------------------------------------

# v3 scores: core fields always, the rest by group (`fields=details,subject,annotation`).
SCORE_V3_CORE = (
    "id",
    "projectId",
    "name",
    "value",
    "dataType",
    "source",
    "timestamp",
    "environment",
    "createdAt",
    "updatedAt",
)
SCORE_V3_GROUPS: dict[str, tuple[str, ...]] = {
    "details": ("comment", "configId", "metadata"),
    "subject": ("subject",),
    "annotation": ("authorUserId", "queueId"),
}


def _score_subject(score: dict[str, Any]) -> dict[str, Any] | None:
    # The most specific entity the score addresses: an observation (within its trace), a
    # trace, a session, or an experiment (dataset run).
    if score.get("observationId"):
        return {
            "kind": "observation",
            "id": score["observationId"],
            "traceId": score.get("traceId"),
        }
    for field, kind in (
        ("traceId", "trace"),
        ("sessionId", "session"),
        ("datasetRunId", "experiment"),
    ):
        if score.get(field):
            return {"kind": kind, "id": score[field]}
    return None


def _typed_value(score: dict[str, Any]) -> Any:
    """v3's polymorphic `value`: a number, a boolean, or a string, by data type."""
    value, data_type = score.get("value"), score.get("dataType")
    if data_type == "NUMERIC":
        return float(value) if value is not None else 0.0
    if data_type == "BOOLEAN":
        return bool(value)
    return "" if value is None else str(value)


def score_v3(score: dict[str, Any], groups: set[str]) -> dict[str, Any]:
    view = {field: score.get(field) for field in SCORE_V3_CORE}
    view["value"] = _typed_value(score)
    view["environment"] = score.get("environment") or "default"
    source = {**score, "subject": _score_subject(score)}
    for group in sorted(groups):
        for field in SCORE_V3_GROUPS[group]:
            view[field] = source.get(field)
    return view


SCORE_V1_FIELDS = (
    "id",
    "traceId",
    "sessionId",
    "observationId",
    "datasetRunId",
    "name",
    "source",
    "timestamp",
    "createdAt",
    "updatedAt",
    "authorUserId",
    "comment",
    "metadata",
    "configId",
    "queueId",
    "environment",
    "dataType",
)


def score_v1(score: dict[str, Any]) -> dict[str, Any]:
    """The v1/v2 list item: a numeric `value`, and `stringValue` for the string types and
    booleans (those store their text next to a number)."""
    view = {field: score.get(field) for field in SCORE_V1_FIELDS}
    view["environment"] = score.get("environment") or "default"
    value = score.get("value")
    if isinstance(value, str):
        view["value"] = 0.0
        view["stringValue"] = value
    else:
        view["value"] = float(value) if value is not None else None
        if score.get("dataType") == "BOOLEAN":
            view["stringValue"] = "True" if value else "False"
    return view


def encode_url_cursor(offset: int) -> str:
    """v3 scores page with a base64url cursor (the v2 observations cursor is plain base64)."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode("ascii")


def decode_url_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return int(json.loads(base64.urlsafe_b64decode(padded))["offset"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError("Invalid cursor") from error
