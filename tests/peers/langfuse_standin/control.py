"""HTTP control and read endpoints under `/_standin/`, so another process (the demo, a
benchmark) can drive a stand-in it did not start. Loopback test tool: no auth, and
nothing here ever returns a secret key."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .http_common import BodyError, json_response, read_json
from .keys import Project
from .routes import STATE_KEY
from .state import FAILURE_MODES, HEALTH_FAILURE_MODES, StandInState, check_mode
from .values import new_id

PREFIX = "/_standin"


def describe(state: StandInState) -> dict[str, Any]:
    switches = state.switches
    return {
        "version": switches.version,
        "failure": switches.failure,
        "healthFailure": switches.health_failure,
        "slowSeconds": switches.slow_seconds,
        "eventsOnly": switches.events_only,
        "otlp": switches.otlp,
        "projects": [
            {"publicKey": p.public_key, "projectId": p.project_id, "name": p.name}
            for p in state.keys.projects()
        ],
    }


def apply_switches(state: StandInState, document: dict[str, Any]) -> None:
    """Apply the switches named in `document`; absent keys stay as they are."""
    switches = state.switches
    if "failure" in document:
        switches.failure = check_mode(document["failure"], FAILURE_MODES)
    if "healthFailure" in document:
        switches.health_failure = check_mode(document["healthFailure"], HEALTH_FAILURE_MODES)
    if "slowSeconds" in document:
        switches.slow_seconds = float(document["slowSeconds"])
    if "eventsOnly" in document:
        switches.events_only = bool(document["eventsOnly"])
    if "otlp" in document:
        switches.otlp = bool(document["otlp"])
    if "version" in document:
        switches.version = str(document["version"])


async def _object_body(request: web.Request) -> dict[str, Any]:
    document = await read_json(request)
    if not isinstance(document, dict):
        raise BodyError("expected a JSON object")
    return document


async def get_state(request: web.Request) -> web.Response:
    return json_response(200, describe(request.app[STATE_KEY]))


async def post_switches(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        apply_switches(state, await _object_body(request))
    except (BodyError, ValueError, TypeError) as error:
        return json_response(400, {"message": str(error)})
    return json_response(200, describe(state))


async def post_project(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        document = await _object_body(request)
        public_key, secret_key = document["publicKey"], document["secretKey"]
        if not (isinstance(public_key, str) and isinstance(secret_key, str)):
            raise BodyError("publicKey and secretKey must be strings")
    except (BodyError, KeyError) as error:
        return json_response(400, {"message": f"invalid project: {error}"})
    project = Project(
        public_key=public_key,
        secret_key=secret_key,
        project_id=str(document.get("projectId") or new_id()),
        name=str(document.get("name") or "standin-project"),
    )
    state.keys.add(project)
    return json_response(
        201,
        {"publicKey": project.public_key, "projectId": project.project_id, "name": project.name},
    )


async def get_traces(request: web.Request) -> web.Response:
    store = request.app[STATE_KEY].store
    return json_response(200, {"data": store.traces(request.query.get("projectId"))})


async def get_observations(request: web.Request) -> web.Response:
    store = request.app[STATE_KEY].store
    rows = store.observations(request.query.get("projectId"), request.query.get("traceId"))
    return json_response(200, {"data": rows})


async def get_scores(request: web.Request) -> web.Response:
    store = request.app[STATE_KEY].store
    return json_response(200, {"data": store.scores(request.query.get("projectId"))})


async def get_requests(request: web.Request) -> web.Response:
    entries = request.app[STATE_KEY].log.entries()
    return web.Response(
        status=200,
        text=json.dumps({"data": [entry.as_dict() for entry in entries]}),
        content_type="application/json",
    )


async def post_reset(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    state.store.clear()
    state.log.clear()
    return json_response(200, describe(state))


def add_control_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/state", get_state)
    app.router.add_post(f"{PREFIX}/switches", post_switches)
    app.router.add_post(f"{PREFIX}/projects", post_project)
    app.router.add_get(f"{PREFIX}/traces", get_traces)
    app.router.add_get(f"{PREFIX}/observations", get_observations)
    app.router.add_get(f"{PREFIX}/scores", get_scores)
    app.router.add_get(f"{PREFIX}/requests", get_requests)
    app.router.add_post(f"{PREFIX}/reset", post_reset)
