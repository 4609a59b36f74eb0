"""Request/response helpers shared by the public and the control routes."""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

from aiohttp import web

HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign in</title></head>"
    '<body><div id="root">Not an API</div></body></html>'
)


# What Next.js (the Langfuse web app) answers for a route it does not have.
NOT_FOUND_PAGE = (
    "<!DOCTYPE html><html><head><title>404: This page could not be found</title></head>"
    "<body><h1>404</h1><h2>This page could not be found.</h2></body></html>"
)


def not_found_page() -> web.Response:
    return web.Response(status=404, text=NOT_FOUND_PAGE, content_type="text/html")


def json_response(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status)


def html_response() -> web.Response:
    # What a wrong host (a web UI or a proxy) answers: 200, but not JSON.
    return web.Response(status=200, text=HTML_PAGE, content_type="text/html")


class BodyError(ValueError):
    pass


def decompress(request: web.Request, raw: bytes) -> bytes:
    """Undo `Content-Encoding: gzip` (the v5 SDK default); the server's auto-decompression
    is off so the stand-in sees what clients really sent."""
    encoding = request.headers.get("Content-Encoding", "").lower()
    if "gzip" in encoding:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise BodyError(f"Invalid gzip body: {error}") from error
    if "deflate" in encoding:
        try:
            return zlib.decompress(raw)
        except zlib.error as error:
            raise BodyError(f"Invalid deflate body: {error}") from error
    return raw


async def read_body(request: web.Request) -> bytes:
    return decompress(request, await request.read())


async def read_json(request: web.Request) -> Any:
    raw = await read_body(request)
    try:
        return json.loads(raw or b"null")
    except ValueError as error:
        raise BodyError(f"Invalid JSON body: {error}") from error


def query_int(request: web.Request, name: str, default: int, minimum: int = 1) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        parsed = int(value)
    except ValueError as error:
        raise BodyError(f"Query parameter {name} must be an integer") from error
    if parsed < minimum:
        raise BodyError(f"Query parameter {name} must be >= {minimum}")
    return parsed
