"""Async client for the open-webui Pipelines server (docs/upstream/pipelines.md).

Quirks it absorbs so callers need not:

* add/upload answer 200 even when the module failed to load: callers confirm with ``list``.
* delete of an id that is not loaded is a plain-text 500: ``delete`` reports ``False``.
* valves routes need no key but return the secret key in clear: their bodies never reach an
  exception message or a log line, and ``update_valves`` does not return the echoed object.
* valves update replaces the whole object: callers always send the complete object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_TIMEOUT = 10.0
# add/upload reload every module and pip-install the file's requirements (3-7 s observed for
# the upstream Langfuse filter, more with many modules): they get a much longer bound than
# reads, or a slow-but-successful install would be retried forever.
INSTALL_TIMEOUT = 120.0


class PipelinesError(Exception):
    """A Pipelines call failed; ``reason`` is a condition reason, ``temporary`` says retry."""

    reason = "PipelinesError"
    temporary = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PipelinesUnreachable(PipelinesError):
    reason = "PipelinesUnreachable"


class PipelinesServerError(PipelinesError):
    reason = "PipelinesError"


class PipelinesUnauthorized(PipelinesError):
    reason = "PipelinesUnauthorized"
    temporary = False


class PipelinesRejected(PipelinesError):
    """A 4xx on a management call: the request itself is wrong (e.g. a URL that is no .py)."""

    reason = "PipelinesRejected"
    temporary = False


class PipelineNotFound(PipelinesError):
    """The module is not loaded (any more): a restart between two calls; the retry re-installs."""

    reason = "PipelineNotFound"


@dataclass(frozen=True)
class PipelineInfo:
    """One row of ``GET /pipelines``: a module that loaded (failed ones are never listed)."""

    id: str
    name: str
    type: str
    has_valves: bool


def _safe_detail(response: httpx.Response) -> str:
    """The ``detail`` of a management-route error (never used on valves routes).

    Add and upload reload every module, and a stored ``valves.json`` that no longer validates
    makes that reload fail with pydantic's text, which quotes the offending value
    (``input_value=...``): possibly another filter's secret key. Such a detail is dropped.
    """
    try:
        body = response.json()
    except ValueError:
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str) or "input_value" in detail or "validation error" in detail:
        return ""
    return detail[:200]


class PipelinesClient:
    """Talks to one Pipelines server with its bearer key; cheap to create per reconcile."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        http: httpx.AsyncClient,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._http = http
        self._timeout = timeout

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        authed: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109 - per HTTP request, passed to httpx
        **kwargs: Any,
    ) -> httpx.Response:
        try:
            return await self._http.request(
                method,
                f"{self.base_url}{path}",
                headers=self._auth if authed else None,
                timeout=timeout or self._timeout,
                **kwargs,
            )
        except httpx.TimeoutException:
            raise PipelinesUnreachable(f"Pipelines did not answer {what} in time") from None
        except httpx.TransportError as exc:
            raise PipelinesUnreachable(
                f"Pipelines at {self.base_url} is unreachable ({type(exc).__name__})"
            ) from None

    def _raise_for_status(self, response: httpx.Response, what: str, *, detail: bool) -> None:
        code = response.status_code
        if code < 400:
            return
        if code in (401, 403):
            raise PipelinesUnauthorized(f"Pipelines refused the API key ({code}) on {what}")
        extra = _safe_detail(response) if detail else ""
        suffix = f": {extra}" if extra else ""
        if code >= 500:
            raise PipelinesServerError(f"Pipelines answered {code} to {what}{suffix}")
        raise PipelinesRejected(f"Pipelines answered {code} to {what}{suffix}")

    async def list_pipelines(self) -> list[PipelineInfo]:
        """The loaded modules (``GET /pipelines``)."""
        response = await self._request("GET", "/pipelines", what="list pipelines")
        self._raise_for_status(response, "list pipelines", detail=True)
        try:
            rows = response.json()["data"]
            return [
                PipelineInfo(
                    id=str(row["id"]),
                    name=str(row.get("name", row["id"])),
                    type=str(row.get("type", "")),
                    has_valves=bool(row.get("valves", False)),
                )
                for row in rows
            ]
        except (ValueError, KeyError, TypeError):
            raise PipelinesServerError("Pipelines answered list pipelines with no list") from None

    async def add_by_url(self, url: str) -> None:
        """Ask Pipelines to download and load ``url`` (200 does not prove it loaded)."""
        response = await self._request(
            "POST",
            "/pipelines/add",
            what="add pipeline by URL",
            json={"url": url},
            timeout=max(self._timeout, INSTALL_TIMEOUT),
        )
        self._raise_for_status(response, "add pipeline by URL", detail=True)

    async def upload(self, filename: str, content: bytes) -> None:
        """Upload ``content`` as ``filename`` (overwrites; 200 does not prove it loaded)."""
        response = await self._request(
            "POST",
            "/pipelines/upload",
            what="upload pipeline",
            files={"file": (filename, content, "text/x-python")},
            timeout=max(self._timeout, INSTALL_TIMEOUT),
        )
        self._raise_for_status(response, "upload pipeline", detail=True)

    async def delete(self, pipeline_id: str) -> bool:
        """Delete a loaded module; ``False`` when Pipelines did not have it loaded."""
        response = await self._request(
            "DELETE", "/pipelines/delete", what="delete pipeline", json={"id": pipeline_id}
        )
        if response.status_code == 500 and response.headers.get("content-type", "").startswith(
            "text/plain"
        ):
            # Upstream raises KeyError for ids it has not loaded: a plain-text 500, not a 404.
            return False
        self._raise_for_status(response, "delete pipeline", detail=True)
        return True

    async def get_valves(self, pipeline_id: str) -> dict[str, Any]:
        """Current valves of a module (holds the secret key: never log the result)."""
        response = await self._request(
            "GET", f"/{pipeline_id}/valves", what="read valves", authed=False
        )
        if response.status_code == 404:
            raise PipelineNotFound(f"Pipelines has no valves for {pipeline_id}")
        self._raise_for_status(response, "read valves", detail=False)
        try:
            body = response.json()
        except ValueError:
            raise PipelinesServerError("Pipelines answered read valves with no JSON") from None
        if not isinstance(body, dict):
            raise PipelinesServerError("Pipelines answered read valves with no object")
        return body

    async def get_valves_spec(self, pipeline_id: str) -> dict[str, Any]:
        """The JSON schema of a module's valves (no values, safe to log)."""
        response = await self._request(
            "GET", f"/{pipeline_id}/valves/spec", what="read valves spec", authed=False
        )
        if response.status_code == 404:
            raise PipelineNotFound(f"Pipelines has no valves for {pipeline_id}")
        self._raise_for_status(response, "read valves spec", detail=True)
        body = response.json()
        return body if isinstance(body, dict) else {}

    async def update_valves(self, pipeline_id: str, valves: Mapping[str, Any]) -> None:
        """Replace the whole valves object (upstream resets omitted fields to class defaults)."""
        response = await self._request(
            "POST",
            f"/{pipeline_id}/valves/update",
            what="update valves",
            authed=False,
            json=dict(valves),
        )
        if response.status_code == 404:
            raise PipelineNotFound(f"Pipelines has no valves for {pipeline_id}")
        if response.status_code in (422, 500) and response.headers.get(
            "content-type", ""
        ).startswith("application/json"):
            # A pydantic validation failure: its text echoes the submitted values (secrets).
            raise PipelinesRejected(
                f"Pipelines rejected the valves of {pipeline_id} (validation failed)"
            )
        self._raise_for_status(response, "update valves", detail=False)
