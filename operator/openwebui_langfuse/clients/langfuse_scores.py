"""Langfuse scores by id, and whether a generation was traced: what the feedback sync writes.

Plain httpx on the operator's pool for the Langfuse host, not the SDK: the SDK (v5) posts
scores as an array, which only Langfuse ≥ 4.59 accepts, while every Langfuse with a public
scores API (v2 included) takes one score object per ``POST /api/public/scores`` and upserts it
by ``id`` (docs/upstream/langfuse.md, "Scores and models (SDK 5.0.4 client, server code)").
``DELETE /api/public/scores/{id}`` removes one; 404 means it is already gone.

Whether a generation exists is read from ``GET /api/public/v2/observations`` (Langfuse v4),
then ``GET /api/public/observations/{id}`` (v2 and v3, where the v2 route is off): a rating of
a message that was never traced is counted and not sent, as a score on a missing trace would
show nowhere in Langfuse's UI.

No key, header or body reaches a message; Langfuse's own error ``message`` is kept (cut to
200 characters), as it says why a score was refused and quotes no credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

SCORES_PATH = "/api/public/scores"
OBSERVATIONS_V2_PATH = "/api/public/v2/observations"
OBSERVATION_V1_PATH = "/api/public/observations/{id}"
_MESSAGE_LIMIT = 200


class ScoreError(Exception):
    """Langfuse did not take a score call. ``temporary``: worth retrying as it is."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary


class LangfuseScores:
    """One Langfuse project's scores, with its key pair."""

    def __init__(
        self,
        host: str,
        public_key: str,
        secret_key: str,
        *,
        http: httpx.AsyncClient,
        timeout: float = 10.0,
    ) -> None:
        self.host = host.rstrip("/")
        self._auth = httpx.BasicAuth(public_key, secret_key)
        self._http = http
        self._timeout = timeout

    async def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(
                method, f"{self.host}{path}", auth=self._auth, timeout=self._timeout, **kwargs
            )
        except httpx.TimeoutException:
            raise ScoreError(f"{what}: Langfuse did not answer in time", temporary=True) from None
        except httpx.HTTPError as exc:
            raise ScoreError(
                f"{what}: Langfuse at {self.host} is unreachable ({type(exc).__name__})",
                temporary=True,
            ) from None

    async def upsert(self, score: Mapping[str, Any]) -> None:
        """Create the score, or replace the one with its ``id``."""
        response = await self._send("POST", SCORES_PATH, "sending a score", json=dict(score))
        if response.status_code not in (200, 201, 202):
            raise _refusal(response, f"Langfuse refused score {score.get('name')!r}")

    async def delete(self, score_id: str) -> None:
        """Delete a score; one that is not there is fine."""
        path = f"{SCORES_PATH}/{quote(score_id, safe='')}"
        response = await self._send("DELETE", path, "deleting a score")
        if response.status_code not in (200, 202, 204, 404):
            raise _refusal(response, "Langfuse refused to delete a score")

    async def traced(self, trace_id: str, observation_id: str) -> bool | None:
        """Whether the generation ``observation_id`` of ``trace_id`` is in Langfuse; None when
        this server has neither read route (then the score is sent: better one score too many
        than a rating lost)."""
        what = "reading the rated generation"
        response = await self._send(
            "GET",
            OBSERVATIONS_V2_PATH,
            what,
            params={"traceId": trace_id, "fields": "core", "limit": 100},
        )
        if response.status_code == 200:
            try:
                rows = response.json().get("data")
            except (ValueError, AttributeError):
                return None
            if not isinstance(rows, list):
                return None
            return any(isinstance(r, dict) and r.get("id") == observation_id for r in rows)
        if response.status_code not in (404, 405):
            raise _refusal(response, "Langfuse refused to read observations")
        response = await self._send(
            "GET", OBSERVATION_V1_PATH.format(id=quote(observation_id, safe="")), what
        )
        if response.status_code == 200:
            return True
        if (
            response.status_code == 404
            and _langfuse_json(response)
            and "events_only" not in response.text
        ):
            return False  # Langfuse's own "not found", not a route that is missing or off
        if response.status_code in (404, 405):
            return None
        raise _refusal(response, "Langfuse refused to read observations")


def _langfuse_json(response: httpx.Response) -> bool:
    return "json" in response.headers.get("content-type", "")


def _refusal(response: httpx.Response, what: str) -> ScoreError:
    code = response.status_code
    temporary = code >= 500 or code in (408, 429)
    if code == 401:
        return ScoreError(f"{what}: the key pair was rejected (401)", temporary=False)
    detail = ""
    if _langfuse_json(response):
        try:
            message = response.json().get("message")
        except (ValueError, AttributeError):
            message = None
        if isinstance(message, str) and message:
            detail = f": {message[:_MESSAGE_LIMIT]}"
    return ScoreError(f"{what} (HTTP {code}){detail}", temporary=temporary)
