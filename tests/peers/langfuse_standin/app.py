"""The aiohttp application: public routes, control routes and the request-log middleware."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .control import PREFIX, add_control_routes
from .http_common import BodyError, decompress
from .routes import STATE_KEY, add_public_routes
from .state import StandInState

# Langfuse accepts 4.5 MB on /ingestion; OTLP batches from the v5 SDK may be larger.
MAX_BODY_BYTES = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _loggable_body(request: web.Request, raw: bytes) -> Any:
    """The body as JSON when it is JSON, else None (protobuf is kept out of the log)."""
    if not raw or "json" not in request.headers.get("Content-Type", "").lower():
        return None
    try:
        return json.loads(decompress(request, raw))
    except (BodyError, ValueError):
        return None


def _loggable_answer(response: web.StreamResponse) -> Any:
    """The JSON the stand-in answered (e.g. a 207's per-event errors), else None."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return None
    if not isinstance(response.body, bytes):
        return None
    try:
        return json.loads(response.body)
    except ValueError:
        return None


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(PREFIX):
        return await handler(request)
    state = request.app[STATE_KEY]
    raw = await request.read()  # cached by aiohttp: the handler reads it again
    status = 500
    answer: Any = None
    try:
        response = await handler(request)
        status = response.status
        answer = _loggable_answer(response)
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        state.log.record(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=request.headers.items(),
            public_key=state.keys.authenticate(request.headers.get("Authorization")).public_key,
            body=_loggable_body(request, raw),
            body_size=len(raw),
            status=status,
            response=answer,
        )


def build_app(state: StandInState) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[log_requests])
    app[STATE_KEY] = state
    add_public_routes(app)
    add_control_routes(app)
    return app
