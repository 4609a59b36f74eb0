"""The Langfuse public API routes the stand-in serves.

See docs/upstream/langfuse.md, "What the stand-in implements".
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from . import models, views
from .http_common import (
    BodyError,
    decompress,
    html_response,
    json_response,
    not_found_page,
    query_int,
    read_json,
)
from .ingestion import EventError, apply_score, process_batch
from .keys import INVALID_CREDENTIALS, ORGANIZATION_KEY, Project
from .otlp_decode import OtlpError, decode_json, decode_protobuf
from .otlp_mapping import ingest_spans
from .state import StandInState
from .values import new_id, now_iso, parse_iso

STATE_KEY: web.AppKey[StandInState] = web.AppKey("standin_state", StandInState)

EVENTS_ONLY_NOT_AVAILABLE = (
    "This endpoint is not available on deployments running in Langfuse v4 events_only mode. "
    "Learn more about Langfuse v4 at: https://langfuse.com/docs/v4"
)
MAX_INGESTION_VERSION = 4
# The server's body limit on /api/public/ingestion (its Next.js bodyParser sizeLimit).
MAX_INGESTION_BODY_BYTES = int(4.5 * 1024 * 1024)


def _state(request: web.Request) -> StandInState:
    return request.app[STATE_KEY]


async def _failure_response(state: StandInState, mode: str | None) -> web.Response | None:
    """Answer as the failure switch says, or None to carry on (after sleeping if slow)."""
    if mode == "slow":
        await asyncio.sleep(state.switches.slow_seconds)
        return None
    if mode == "html":
        return html_response()
    if mode in ("500", "503"):
        message = "Internal Server Error" if mode == "500" else "Service Unavailable"
        return json_response(int(mode), {"message": message})
    if mode == "401":
        return json_response(401, {"message": INVALID_CREDENTIALS})
    if mode == "403":
        return json_response(403, {"message": ORGANIZATION_KEY})
    return None


async def _authorize(
    request: web.Request, *, legacy_read: bool = False, ingestion: bool = False
) -> Project | web.Response:
    """The common front of every authenticated route, in the server's order: failure
    switch, then the events_only 404 (before auth), then Basic auth."""
    state = _state(request)
    failed = await _failure_response(state, state.switches.failure)
    if failed is not None:
        return failed
    if legacy_read and state.switches.events_only:
        return json_response(404, {"message": EVENTS_ONLY_NOT_AVAILABLE})
    result = state.keys.authenticate(request.headers.get("Authorization"))
    if result.project is None:
        # /ingestion has its own error shape; the other routes answer {"message"}.
        body: dict[str, Any] = {"message": result.error}
        if ingestion:
            body = {"error": "UnauthorizedError", "message": result.error}
        return json_response(401, body)
    return result.project


# --- health and projects ----------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    state = _state(request)
    mode = state.switches.health_failure
    if mode == "503":
        return json_response(
            503, {"status": "Database not available", "version": state.switches.version}
        )
    failed = await _failure_response(state, mode)
    if failed is not None:
        return failed
    return json_response(200, {"status": "OK", "version": state.switches.version})


async def projects(request: web.Request) -> web.Response:
    authorized = await _authorize(request)
    if isinstance(authorized, web.Response):
        return authorized
    if _state(request).switches.failure == "empty":
        return json_response(200, {"data": []})
    return json_response(200, {"data": [authorized.as_api_project()]})


async def method_not_allowed(request: web.Request) -> web.Response:
    return json_response(405, {"message": "Method not allowed"})


# --- OTLP ------------------------------------------------------------------------------


async def otel_traces(request: web.Request) -> web.Response:
    if not _state(request).switches.otlp:
        return not_found_page()  # no such route on a server before OTLP ingestion
    authorized = await _authorize(request)
    if isinstance(authorized, web.Response):
        return authorized
    content_type = request.headers.get("Content-Type", "").lower()
    is_protobuf = "application/x-protobuf" in content_type
    if not is_protobuf and "application/json" not in content_type:
        return json_response(400, {"error": "Invalid content type"})
    version = request.headers.get("x-langfuse-ingestion-version")
    if version is not None and version.strip().isdigit() and int(version) > MAX_INGESTION_VERSION:
        return json_response(
            400, {"error": f"Unsupported x-langfuse-ingestion-version {version.strip()}"}
        )
    try:
        raw = decompress(request, await request.read())
        spans = decode_protobuf(raw) if is_protobuf else decode_json(json.loads(raw or b"{}"))
    except (BodyError, OtlpError, ValueError) as error:
        return json_response(400, {"error": "Invalid OTLP request", "message": str(error)})
    ingest_spans(_state(request).store, authorized.project_id, spans)
    return json_response(200, {})


# --- legacy ingestion and scores -------------------------------------------------------


async def ingestion(request: web.Request) -> web.Response:
    authorized = await _authorize(request, ingestion=True)
    if isinstance(authorized, web.Response):
        return authorized
    if len(await request.read()) > MAX_INGESTION_BODY_BYTES:
        return json_response(413, {"message": "Body exceeded 4.5mb limit"})
    try:
        document = await read_json(request)
    except BodyError as error:
        return json_response(400, {"message": "Invalid request data", "errors": [str(error)]})
    if not isinstance(document, dict) or not isinstance(document.get("batch"), list):
        return json_response(
            400, {"message": "Invalid request data", "errors": ["batch: expected array"]}
        )
    state = _state(request)
    result = process_batch(
        state.store,
        authorized.project_id,
        document["batch"],
        events_only=state.switches.events_only,
    )
    return json_response(207, result)


async def scores(request: web.Request) -> web.Response:
    authorized = await _authorize(request)
    if isinstance(authorized, web.Response):
        return authorized
    try:
        document = await read_json(request)
    except BodyError as error:
        return json_response(400, {"message": "Invalid request data", "error": str(error)})
    store = _state(request).store
    if isinstance(document, list):
        # The v5 SDK posts arrays: 202 when all were accepted, 207 otherwise.
        errors = []
        for item in document:
            try:
                apply_score(store, authorized.project_id, item, now_iso())
            except EventError as error:
                errors.append({"message": error.error})
        if not errors:
            return json_response(202, {"message": "Accepted"})
        accepted = len(document) - len(errors)
        return json_response(207, {"accepted": accepted, "rejected": len(errors), "errors": errors})
    try:
        score_id = apply_score(store, authorized.project_id, document, now_iso())
    except EventError as error:
        return json_response(400, {"message": "Invalid request data", "error": error.error})
    return json_response(200, {"id": score_id})


async def delete_score(request: web.Request) -> web.Response:
    authorized = await _authorize(request)
    if isinstance(authorized, web.Response):
        return authorized
    score_id = request.match_info["score_id"]
    if not _state(request).store.delete_score(authorized.project_id, score_id):
        return json_response(404, {"message": "Score not found within authorized project"})
    return web.Response(status=204)


# --- reads -----------------------------------------------------------------------------


def _newest_first(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: row.get(key) or "", reverse=True)


async def _authorized_page(
    request: web.Request, *, legacy_read: bool = False
) -> tuple[Project, int, int] | web.Response:
    """``_authorize``, then the page and limit of a v1 list read: the front of every paged
    read, or the answer that ends it."""
    authorized = await _authorize(request, legacy_read=legacy_read)
    if isinstance(authorized, web.Response):
        return authorized
    paging = _paging(request)
    if isinstance(paging, web.Response):
        return paging
    return authorized, *paging


def _paging(request: web.Request) -> tuple[int, int] | web.Response:
    """(page, limit) of a v1 list read, or the 400 answer for a bad one."""
    try:
        return query_int(request, "page", 1), query_int(request, "limit", 50)
    except BodyError as error:
        return json_response(400, {"message": str(error)})


def _query_differs(request: web.Request, values: dict[str, Any]) -> bool:
    """True when a filter parameter present in the query names another value than the row's
    (exact match; a parameter left out filters nothing)."""
    return any(request.query.get(param) not in (None, value) for param, value in values.items())


async def list_traces(request: web.Request) -> web.Response:
    front = await _authorized_page(request, legacy_read=True)
    if isinstance(front, web.Response):
        return front
    authorized, page_number, limit = front
    store = _state(request).store
    project_id = authorized.project_id
    wanted_tags = request.query.getall("tags", [])
    # One copy of each table per request, grouped by trace (not one per listed trace).
    observations_by_trace: dict[str, list[dict[str, Any]]] = {}
    for observation in store.observations(project_id):
        observations_by_trace.setdefault(observation.get("traceId") or "", []).append(observation)
    scores_by_trace: dict[str, list[str]] = {}
    for score in store.scores(project_id):
        scores_by_trace.setdefault(score.get("traceId") or "", []).append(score["id"])
    rows = []
    for trace in _newest_first(store.traces(project_id), "timestamp"):
        if _query_differs(
            request,
            {
                "userId": trace.get("userId"),
                "name": trace.get("name"),
                "sessionId": trace.get("sessionId"),
                "environment": trace.get("environment"),
            },
        ):
            continue
        if not set(wanted_tags) <= set(trace.get("tags") or []):
            continue
        rows.append(
            views.trace_with_details(
                trace,
                observations_by_trace.get(trace["id"], []),
                scores_by_trace.get(trace["id"], []),
            )
        )
    return json_response(200, views.page(rows, page_number, limit))


async def get_trace(request: web.Request) -> web.Response:
    authorized = await _authorize(request, legacy_read=True)
    if isinstance(authorized, web.Response):
        return authorized
    store = _state(request).store
    trace_id = request.match_info["trace_id"]
    found = [t for t in store.traces(authorized.project_id) if t["id"] == trace_id]
    if not found:
        return json_response(404, {"message": "Trace not found within authorized project"})
    observations = store.observations(authorized.project_id, trace_id)
    trace_scores = [s for s in store.scores(authorized.project_id) if s.get("traceId") == trace_id]
    return json_response(200, views.trace_with_full_details(found[0], observations, trace_scores))


async def list_observations_v1(request: web.Request) -> web.Response:
    front = await _authorized_page(request, legacy_read=True)
    if isinstance(front, web.Response):
        return front
    authorized, page_number, limit = front
    store = _state(request).store
    traces = {t["id"]: t for t in store.traces(authorized.project_id)}
    rows = []
    for observation in _newest_first(store.observations(authorized.project_id), "startTime"):
        trace = traces.get(observation.get("traceId") or "", {})
        checks = {
            "traceId": observation.get("traceId"),
            "type": observation.get("type"),
            "name": observation.get("name"),
            "parentObservationId": observation.get("parentObservationId"),
            "userId": observation.get("userId") or trace.get("userId"),
        }
        if _query_differs(request, checks):
            continue
        rows.append(views.observation_v1(observation))
    return json_response(200, views.page(rows, page_number, limit))


async def get_observation_v1(request: web.Request) -> web.Response:
    authorized = await _authorize(request, legacy_read=True)
    if isinstance(authorized, web.Response):
        return authorized
    wanted = request.match_info["observation_id"]
    for observation in _state(request).store.observations(authorized.project_id):
        if observation["id"] == wanted:
            return json_response(200, views.observation_v1(observation))
    return json_response(404, {"message": "Observation not found within authorized project"})


def _v2_matches(request: web.Request, row: dict[str, Any], trace: dict[str, Any]) -> bool:
    query = request.query
    values = {
        "name": row.get("name"),
        "userId": row.get("userId") or trace.get("userId"),
        "sessionId": row.get("sessionId") or trace.get("sessionId"),
        "type": row.get("type"),
        "traceId": row.get("traceId"),
        "level": row.get("level"),
        "parentObservationId": row.get("parentObservationId"),
        "environment": row.get("environment"),
        "version": row.get("version"),
    }
    if _query_differs(request, values):
        return False
    if "isRootObservation" in query:
        is_root = row.get("parentObservationId") is None
        if (query["isRootObservation"].lower() == "true") != is_root:
            return False
    started = parse_iso(row.get("startTime"))
    since, until = parse_iso(query.get("fromStartTime")), parse_iso(query.get("toStartTime"))
    if since and (started is None or started < since):
        return False
    return not (until and (started is None or started >= until))


async def list_observations_v2(request: web.Request) -> web.Response:
    authorized = await _authorize(request)
    if isinstance(authorized, web.Response):
        return authorized
    query = request.query
    if query.get("parseIoAsJson", "").lower() == "true":
        return json_response(
            400, {"message": "parseIoAsJson is deprecated; input and output are raw strings"}
        )
    try:
        limit = query_int(request, "limit", 50)
        offset = views.decode_cursor(query.get("cursor"))
    except (BodyError, ValueError) as error:
        return json_response(400, {"message": str(error)})
    if limit > 1000:
        return json_response(400, {"message": "limit must be <= 1000"})
    requested = {g.strip() for g in query.get("fields", "").split(",") if g.strip()}
    unknown = requested - set(views.V2_GROUPS)
    if unknown:
        return json_response(400, {"message": f"Unknown field groups: {sorted(unknown)}"})
    groups = requested or set(views.V2_DEFAULT_GROUPS)
    expanded = {k.strip() for k in query.get("expandMetadata", "").split(",") if k.strip()}
    store = _state(request).store
    traces = {t["id"]: t for t in store.traces(authorized.project_id)}
    rows = [
        views.observation_v2(row, traces.get(row.get("traceId") or ""), groups, expanded)
        for row in _newest_first(store.observations(authorized.project_id), "startTime")
        if _v2_matches(request, row, traces.get(row.get("traceId") or "", {}))
    ]
    window = rows[offset : offset + limit]
    meta = {"cursor": views.encode_cursor(offset + limit)} if offset + limit < len(rows) else {}
    return json_response(200, {"data": window, "meta": meta})


# --- score reads ----------------------------------------------------------------------

MAX_SCORES_V3_LIMIT = 100
# v3 filter parameter → stored field; each takes a comma-separated list (OR within a list,
# AND across parameters).
_SCORE_V3_FILTERS = {
    "id": "id",
    "name": "name",
    "environment": "environment",
    "configId": "configId",
    "queueId": "queueId",
    "authorUserId": "authorUserId",
    "traceId": "traceId",
    "sessionId": "sessionId",
    "observationId": "observationId",
    "experimentId": "datasetRunId",
}
# Matched ignoring case (`api` equals `API`).
_SCORE_V3_FOLDED_FILTERS = {"source": "source", "dataType": "dataType"}
# Which subject filters exclude each other (the server answers 400).
_SCORE_SUBJECT_CONFLICTS = (
    ("sessionId", ("traceId", "observationId", "experimentId")),
    ("experimentId", ("traceId", "sessionId", "observationId")),
)


def _csv(request: web.Request, name: str) -> list[str] | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _score_v3_query_error(request: web.Request) -> str | None:
    """Why the server refuses this filter combination with 400, or None."""
    query = request.query
    if "observationId" in query and "traceId" not in query:
        return "observationId requires traceId"
    for name, others in _SCORE_SUBJECT_CONFLICTS:
        if name in query and any(other in query for other in others):
            return f"{name} cannot be combined with {', '.join(others)}"
    data_types = [t.upper() for t in _csv(request, "dataType") or []]
    if "value" in query and (
        len(data_types) != 1 or data_types[0] == "TEXT" or data_types[0] == "CORRECTION"
    ):
        return "value requires a single dataType of NUMERIC, BOOLEAN or CATEGORICAL"
    if ("valueMin" in query or "valueMax" in query) and data_types != ["NUMERIC"]:
        return "valueMin and valueMax require dataType=NUMERIC"
    return None


def _score_value_matches(request: web.Request, score: dict[str, Any]) -> bool:
    query = request.query
    value = score.get("value")
    wanted = _csv(request, "value")
    if wanted is not None:
        if score.get("dataType") == "BOOLEAN":
            shown = "true" if value else "false"
            if shown not in [w.lower() for w in wanted]:
                return False
        elif score.get("dataType") == "NUMERIC":
            if not any(float(w) == value for w in wanted):
                return False
        elif str(value) not in wanted:
            return False
    number = value if isinstance(value, int | float) else None
    low, high = query.get("valueMin"), query.get("valueMax")
    if low is not None and (number is None or number < float(low)):
        return False
    return not (high is not None and (number is None or number > float(high)))


def _score_v3_matches(request: web.Request, score: dict[str, Any]) -> bool:
    for param, field in _SCORE_V3_FILTERS.items():
        wanted = _csv(request, param)
        if wanted is not None and score.get(field) not in wanted:
            return False
    for param, field in _SCORE_V3_FOLDED_FILTERS.items():
        wanted = _csv(request, param)
        if wanted is not None and str(score.get(field) or "").upper() not in {
            w.upper() for w in wanted
        }:
            return False
    stamp = parse_iso(score.get("timestamp"))
    since = parse_iso(request.query.get("fromTimestamp"))
    until = parse_iso(request.query.get("toTimestamp"))
    if since and (stamp is None or stamp < since):
        return False
    if until and (stamp is None or stamp >= until):
        return False
    return _score_value_matches(request, score)


async def list_scores_v3(request: web.Request) -> web.Response:
    """`GET /v3/scores` (what the v5 SDK's `api.scores.get_many` calls): cursor pages of at
    most 100, newest first, `meta: {limit, cursor?}`."""
    authorized = await _authorize(request)
    if isinstance(authorized, web.Response):
        return authorized
    try:
        limit = query_int(request, "limit", 50)
        offset = views.decode_url_cursor(request.query.get("cursor"))
        for bound in ("valueMin", "valueMax"):
            if bound in request.query:
                float(request.query[bound])
    except (BodyError, ValueError) as error:
        return json_response(400, {"message": str(error)})
    if limit > MAX_SCORES_V3_LIMIT:
        return json_response(400, {"message": f"limit must be <= {MAX_SCORES_V3_LIMIT}"})
    groups = set(_csv(request, "fields") or [])
    unknown = groups - set(views.SCORE_V3_GROUPS)
    if unknown:
        return json_response(400, {"message": f"Unknown field groups: {sorted(unknown)}"})
    problem = _score_v3_query_error(request)
    if problem is not None:
        return json_response(400, {"message": problem})
    try:
        rows = [
            views.score_v3(score, groups)
            for score in _newest_first(
                _state(request).store.scores(authorized.project_id), "timestamp"
            )
            if _score_v3_matches(request, score)
        ]
    except ValueError as error:  # a `value` filter that is not a number, for NUMERIC
        return json_response(400, {"message": str(error)})
    meta: dict[str, Any] = {"limit": limit}
    if offset + limit < len(rows):
        meta["cursor"] = views.encode_url_cursor(offset + limit)
    return json_response(200, {"data": rows[offset : offset + limit], "meta": meta})


async def list_scores_legacy(request: web.Request) -> web.Response:
    """`GET /scores` and `GET /v2/scores`: pages of v1 score items; not served by a v4
    server in events_only mode (404 before auth, like the other v1 reads)."""
    front = await _authorized_page(request, legacy_read=True)
    if isinstance(front, web.Response):
        return front
    authorized, page_number, limit = front
    rows = []
    for score in _newest_first(_state(request).store.scores(authorized.project_id), "timestamp"):
        checks = {
            field: score.get(field)
            for field in ("traceId", "observationId", "sessionId", "name", "source", "dataType")
        }
        if not _query_differs(request, checks):
            rows.append(views.score_v1(score))
    return json_response(200, views.page(rows, page_number, limit))


# --- models ----------------------------------------------------------------------------


async def list_models(request: web.Request) -> web.Response:
    front = await _authorized_page(request)
    if isinstance(front, web.Response):
        return front
    authorized, page_number, limit = front
    rows = models.ordered(_state(request).store.models(authorized.project_id))
    return json_response(200, views.page([models.model_view(m) for m in rows], page_number, limit))


async def get_model(request: web.Request) -> web.Response:
    authorized = await _authorize(request)
    if isinstance(authorized, web.Response):
        return authorized
    found = _state(request).store.model(authorized.project_id, request.match_info["model_id"])
    if found is None:
        return json_response(404, {"message": models.NOT_FOUND})
    return json_response(200, models.model_view(found))


def _name_taken(request: web.Request, project_id: str, name: str, model_id: str | None) -> bool:
    # Model names are unique among a project's own models (a managed one may share it: that
    # is how a project overrides a managed price).
    return any(
        m["modelName"] == name and m["id"] != model_id and not m["isLangfuseManaged"]
        for m in _state(request).store.models(project_id)
    )


async def _store_model(request: web.Request, project_id: str, model_id: str | None) -> web.Response:
    """Validate a create/upsert body and store it; `model_id` None creates a new id."""
    store = _state(request).store
    try:
        body = await read_json(request)
    except BodyError as error:
        return json_response(400, {"message": "Invalid request data", "error": str(error)})
    previous = store.own_model(project_id, model_id) if model_id else None
    try:
        model = models.model_from_request(
            body,
            project_id,
            model_id or new_id(),
            created_at=previous["createdAt"] if previous else now_iso(),
        )
    except models.ModelError as error:
        return json_response(400, {"message": str(error)})
    if _name_taken(request, project_id, model["modelName"], model["id"]):
        return json_response(
            400, {"message": f"Model name '{model['modelName']}' already exists in project"}
        )
    store.put_model(project_id, model)
    return json_response(200, models.model_view(model))


async def create_model(request: web.Request) -> web.Response:
    authorized = await _authorize(request)
    if isinstance(authorized, web.Response):
        return authorized
    return await _store_model(request, authorized.project_id, None)


async def upsert_model(request: web.Request) -> web.Response:
    """`PUT /models/{id}`: create or replace one of the project's own models; a managed
    model (or another project's) is not found, as the server answers."""
    authorized = await _authorize(request)
    if isinstance(authorized, web.Response):
        return authorized
    model_id = request.match_info["model_id"]
    store = _state(request).store
    visible = store.model(authorized.project_id, model_id)
    if visible is not None and visible["isLangfuseManaged"]:
        return json_response(404, {"message": models.NOT_FOUND})
    return await _store_model(request, authorized.project_id, model_id)


async def delete_model(request: web.Request) -> web.Response:
    authorized = await _authorize(request)
    if isinstance(authorized, web.Response):
        return authorized
    model_id = request.match_info["model_id"]
    if not _state(request).store.delete_model(authorized.project_id, model_id):
        return json_response(404, {"message": models.NOT_FOUND_ON_DELETE})
    return json_response(200, {"message": "Model successfully deleted"})


def add_public_routes(app: web.Application) -> None:
    app.router.add_get("/api/public/health", health)
    app.router.add_get("/api/public/projects", projects)
    app.router.add_route("*", "/api/public/projects", method_not_allowed)
    app.router.add_post("/api/public/otel/v1/traces", otel_traces)
    app.router.add_post("/api/public/ingestion", ingestion)
    app.router.add_post("/api/public/scores", scores)
    app.router.add_get("/api/public/scores", list_scores_legacy)
    app.router.add_delete("/api/public/scores/{score_id}", delete_score)
    app.router.add_get("/api/public/v2/scores", list_scores_legacy)
    app.router.add_get("/api/public/v3/scores", list_scores_v3)
    app.router.add_get("/api/public/models", list_models)
    app.router.add_post("/api/public/models", create_model)
    app.router.add_get("/api/public/models/{model_id}", get_model)
    app.router.add_put("/api/public/models/{model_id}", upsert_model)
    app.router.add_delete("/api/public/models/{model_id}", delete_model)
    app.router.add_get("/api/public/traces", list_traces)
    app.router.add_get("/api/public/traces/{trace_id}", get_trace)
    app.router.add_get("/api/public/observations", list_observations_v1)
    app.router.add_get("/api/public/observations/{observation_id}", get_observation_v1)
    app.router.add_get("/api/public/v2/observations", list_observations_v2)
