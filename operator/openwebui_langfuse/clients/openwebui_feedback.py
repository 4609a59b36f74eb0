"""Open WebUI's feedback (message ratings), read by an admin: what the feedback sync polls.

Facts this rests on (docs/upstream/open-webui.md, "Feedback"; observed on 0.12.4):
``GET /api/v1/evaluations/feedbacks/all/ids`` lists every feedback as
``{id, user_id, created_at, updated_at}`` (epoch seconds), without the heavy chat snapshot;
``GET /api/v1/evaluations/feedback/{id}`` is one feedback (404 once deleted: deletes are hard).
Routes Open WebUI does not have answer 200 with its HTML page (the SPA's catch-all), so an
answer that is not JSON means "no evaluations API here", not a parse error to retry.
``/api/config`` says whether message rating is on (``features.enable_message_rating``): a UI
switch only, the API keeps accepting feedback.

Like ``openwebui.py``, no body, key or token ever reaches a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from openwebui_langfuse.clients.openwebui import (
    OpenWebUIClient,
    OpenWebUIUnexpectedResponse,
)

FEEDBACK_IDS_PATH = "/api/v1/evaluations/feedbacks/all/ids"
FEEDBACK_PATH = "/api/v1/evaluations/feedback/{id}"
CONFIG_PATH = "/api/config"


class FeedbackUnavailable(OpenWebUIUnexpectedResponse):
    """This Open WebUI has no evaluations API (older, or a proxy in front answers instead)."""


@dataclass(frozen=True)
class FeedbackList:
    """The id list, and the second Open WebUI answered it in (its ``Date`` header): feedback
    stamps are on Open WebUI's clock, so the sync compares them with that, not with ours."""

    rows: list[dict[str, Any]]
    server_second: int | None


class FeedbackApi:
    """The feedback calls of one Open WebUI admin client (the caller opens and closes it)."""

    def __init__(self, client: OpenWebUIClient) -> None:
        self._client = client

    async def list_ids(self) -> FeedbackList:
        response = await self._client.admin_request("GET", FEEDBACK_IDS_PATH)
        body = _json_or_unavailable(response, f"GET {FEEDBACK_IDS_PATH}")
        if not isinstance(body, list):
            raise OpenWebUIUnexpectedResponse(f"GET {FEEDBACK_IDS_PATH}: answer is not a list")
        rows = [row for row in body if isinstance(row, dict)]
        return FeedbackList(rows=rows, server_second=_date_second(response))

    async def get(self, feedback_id: str) -> dict[str, Any] | None:
        """One feedback with its ``data`` and ``meta``; None when it is gone."""
        path = FEEDBACK_PATH.format(id=quote(feedback_id, safe=""))
        response = await self._client.admin_request("GET", path)
        if response.status_code == 404:
            return None
        body = _json_or_unavailable(response, "GET /api/v1/evaluations/feedback/{id}")
        if not isinstance(body, dict) or "id" not in body:
            raise OpenWebUIUnexpectedResponse(
                "GET /api/v1/evaluations/feedback/{id}: answer is not a feedback"
            )
        return body

    async def rating_enabled(self) -> bool | None:
        """Whether Open WebUI shows its rating buttons; None when it does not say."""
        response = await self._client.admin_request("GET", CONFIG_PATH)
        if response.status_code != 200:
            return None
        try:
            features = response.json().get("features")
        except (ValueError, AttributeError):
            return None
        flag = features.get("enable_message_rating") if isinstance(features, dict) else None
        return flag if isinstance(flag, bool) else None


def _json_or_unavailable(response: httpx.Response, what: str) -> object:
    content_type = response.headers.get("content-type", "")
    if response.status_code in (404, 405) or (
        response.status_code == 200 and "json" not in content_type
    ):
        raise FeedbackUnavailable(
            f"{what}: Open WebUI has no evaluations API here "
            f"(HTTP {response.status_code}, {content_type.split(';')[0] or 'no content type'})",
            status=response.status_code,
        )
    if response.status_code != 200:
        raise OpenWebUIUnexpectedResponse(
            f"{what} answered HTTP {response.status_code}", status=response.status_code
        )
    try:
        return response.json()
    except ValueError:
        raise OpenWebUIUnexpectedResponse(f"{what}: answer is not JSON") from None


def _date_second(response: httpx.Response) -> int | None:
    header = response.headers.get("date")
    if not header:
        return None
    try:
        return int(parsedate_to_datetime(header).timestamp())
    except (TypeError, ValueError):
        return None
