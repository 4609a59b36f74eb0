"""Async Langfuse check: health with the server version, credentials, ingestion mode.

Credentials go through ``langfuse.api.AsyncLangfuseAPI``, the SDK's low-level generated client,
on the operator's own ``httpx.AsyncClient``: it keeps no process-global state, unlike the
tracing client ``langfuse.Langfuse``, which caches one instance per public key for the whole
process and would keep checking an old secret after a rotation (docs/upstream/langfuse.md,
"SDK client lifecycle"). Its automatic retries are switched off: the operator retries with its
own backoff, and three silent attempts would triple the latency of a check. The ingestion-mode
probe is plain httpx because the SDK (v5) has no call for the legacy trace list
(docs/upstream/langfuse.md, "Reading data back").

A server without the OTLP endpoint (self-hosted Langfuse v2, still common, and v3 before 3.22)
is told by the version its health check reports: it has only ``/api/public/ingestion``, where
filters on the legacy SDK (v2) send, and answers every span of the bundled filter (which sends
OTLP to ``/api/public/otel/v1/traces``) with 404. The OTLP route itself is not probed: without
credentials it answers 401 on any server that has it, but an authenticated request marks the
project as an OTel user, and each probe would show up in the server's (and the stand-in's) log
of ingestion requests at every resync.

Every failure maps to its own ``reason`` (a condition reason) and says whether it is temporary.
No response body, header or key ever reaches a message.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Literal

import httpx
import pydantic
from langfuse.api import AsyncLangfuseAPI
from langfuse.api.commons.errors import AccessDeniedError, UnauthorizedError
from langfuse.api.core import ApiError
from langfuse.api.core.request_options import RequestOptions

DEFAULT_TIMEOUT = 10.0
IngestionMode = Literal["otlp+legacy", "legacy_only", "events_only", "unknown"]
_NO_RETRIES: RequestOptions = {"max_retries": 0}
# Fragment of the 404 a Langfuse v4 server in events_only mode answers on v1 read routes.
_EVENTS_ONLY_MARKER = "events_only"
#: First self-hosted Langfuse with the OTLP endpoint ``/api/public/otel`` (Langfuse's
#: OpenTelemetry docs: "Self-Hosted … (v3.22.0+)"); every older server, v2 included, has only
#: the legacy ``/api/public/ingestion``.
OTLP_SINCE = (3, 22, 0)
#: CredentialsValid reason for a server the bundled (OTLP) filter cannot send to.
OTLP_NOT_SUPPORTED = "OtlpNotSupported"
_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def predates_otlp(server_version: str) -> bool:
    """True for a Langfuse version older than :data:`OTLP_SINCE`; False for a newer one and
    for a version that cannot be read (no claim is made then)."""
    match = _VERSION.match(server_version.strip())
    if match is None:
        return False
    major, minor, patch = match.groups()
    return (int(major), int(minor), int(patch or 0)) < OTLP_SINCE


def ingestion_mode_for(server_version: str, probed: IngestionMode) -> IngestionMode:
    """The ingestion mode from the server version and the events_only probe's answer."""
    if probed != "events_only" and predates_otlp(server_version):
        return "legacy_only"
    return probed


class LangfuseCheckError(Exception):
    """The Langfuse check failed; ``reason`` names the failure, ``temporary`` says retry."""

    def __init__(self, reason: str, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.temporary = temporary


@dataclass(frozen=True)
class LangfuseProject:
    id: str
    name: str


@dataclass(frozen=True)
class LangfuseCheck:
    """A successful check: the keys open this project on a server of this version."""

    project: LangfuseProject
    server_version: str
    ingestion_mode: IngestionMode

    @property
    def warning(self) -> str:
        """A note for the status message when the server drops what some filters send."""
        if self.ingestion_mode == "events_only":
            return (
                "Langfuse runs in v4 events_only mode: only OTLP filters (such as the bundled "
                "one) are traced; filters posting to /api/public/ingestion are dropped"
            )
        if self.ingestion_mode == "legacy_only":
            return (
                f"Langfuse {self.server_version} has no OTLP endpoint (self-hosted Langfuse "
                "has one from v3.22.0): only filters on the legacy SDK, posting to "
                "/api/public/ingestion, are traced; the bundled filter's spans are refused"
            )
        return ""

    def refusal(self, *, sends_otlp: bool) -> LangfuseCheckError | None:
        """The failure to report instead of success when the filter cannot deliver here.

        ``sends_otlp``: the filter sends OTLP (the bundled one does, on either target). A
        filter of the person's own (``url``, ``configMap``) may use the legacy SDK and work,
        so for it the check passes with :attr:`warning`.
        """
        if not (sends_otlp and self.ingestion_mode == "legacy_only"):
            return None
        return LangfuseCheckError(
            OTLP_NOT_SUPPORTED,
            f"keys open project {self.project.name!r}, but Langfuse {self.server_version} has "
            "no OTLP endpoint (/api/public/otel; self-hosted Langfuse has one from v3.22.0), "
            "and the bundled filter sends its traces there: none would arrive. Upgrade "
            "Langfuse to v3.22 or later, or use a filter on the legacy SDK instead "
            "(spec.filter.source: url with the Open WebUI filter of Langfuse's guide, "
            "langfuse_filter_pipeline.py)",
            temporary=False,
        )


class LangfuseClient:
    """Checks one Langfuse host; cheap to create per reconcile, shares the operator's pool."""

    def __init__(
        self, host: str, *, http: httpx.AsyncClient, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.host = host.rstrip("/")
        self._http = http
        self._timeout = timeout

    def _api(
        self, public_key: str | None = None, secret_key: str | None = None
    ) -> AsyncLangfuseAPI:
        return AsyncLangfuseAPI(
            base_url=self.host,
            username=public_key,
            password=secret_key,
            httpx_client=self._http,
            timeout=self._timeout,
        )

    def _transport_error(self, exc: Exception, what: str) -> LangfuseCheckError:
        if isinstance(exc, httpx.TimeoutException):
            return LangfuseCheckError(
                "LangfuseTimeout",
                f"Langfuse at {self.host} did not answer {what} within {self._timeout:g}s",
                temporary=True,
            )
        return LangfuseCheckError(
            "LangfuseUnreachable",
            f"Langfuse at {self.host} is unreachable ({type(exc).__name__})",
            temporary=True,
        )

    def _api_error(self, exc: ApiError, what: str) -> LangfuseCheckError:
        code = exc.status_code or 0
        if isinstance(exc, UnauthorizedError) or code == 401:
            return LangfuseCheckError(
                "InvalidCredentials",
                "Langfuse rejected the public/secret key pair (401)",
                temporary=False,
            )
        if isinstance(exc, AccessDeniedError) or code == 403:
            return LangfuseCheckError(
                "AccessDenied",
                "Langfuse denied access (403): an organization-scoped key? Use a project key",
                temporary=False,
            )
        if 200 <= code < 300:
            return LangfuseCheckError(
                "NotLangfuse",
                f"{self.host} answered {what} with something that is not Langfuse's JSON "
                "(wrong host, or a proxy/UI in front of it?)",
                temporary=False,
            )
        if code >= 500 or code in (408, 429):
            return LangfuseCheckError(
                "LangfuseServerError",
                f"Langfuse answered {what} with HTTP {code}; will retry",
                temporary=True,
            )
        return LangfuseCheckError(
            "UnexpectedResponse",
            f"Langfuse answered {what} with HTTP {code}",
            temporary=False,
        )

    async def server_version(self) -> str:
        """``GET /api/public/health`` (no auth): the server's version string."""
        try:
            health = await self._api().health.health(request_options=_NO_RETRIES)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise self._transport_error(exc, "the health check") from None
        except ApiError as exc:
            raise self._api_error(exc, "the health check") from None
        except pydantic.ValidationError:
            raise LangfuseCheckError(
                "NotLangfuse",
                f"{self.host} answered the health check without a Langfuse version",
                temporary=False,
            ) from None
        return str(health.version)

    async def project(self, public_key: str, secret_key: str) -> LangfuseProject:
        """``GET /api/public/projects`` with Basic auth: the project the keys belong to."""
        try:
            projects = await self._api(public_key, secret_key).projects.get(
                request_options=_NO_RETRIES
            )
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise self._transport_error(exc, "the credentials check") from None
        except ApiError as exc:
            raise self._api_error(exc, "the credentials check") from None
        except pydantic.ValidationError:
            raise LangfuseCheckError(
                "UnexpectedResponse",
                "Langfuse's project list lacks required fields (server older than v3.143?)",
                temporary=False,
            ) from None
        if not projects.data:
            raise LangfuseCheckError(
                "NoProject", "Langfuse found no project for these keys", temporary=False
            )
        first = projects.data[0]
        return LangfuseProject(id=str(first.id), name=str(first.name))

    async def ingestion_mode(self) -> IngestionMode:
        """Detect a Langfuse v4 server in events_only mode.

        See docs/upstream/langfuse.md, "Reading data back".

        Such a server answers the v1 trace list with a 404 naming events_only before it even
        checks credentials, so the probe sends none. Anything else unexpected is ``unknown``:
        this probe only adds a warning and never fails a check.
        """
        try:
            response = await self._http.get(
                f"{self.host}/api/public/traces", params={"limit": 1}, timeout=self._timeout
            )
        except httpx.HTTPError:
            return "unknown"
        if response.status_code == 404 and _EVENTS_ONLY_MARKER in response.text:
            return "events_only"
        if response.status_code in (200, 401, 403):
            return "otlp+legacy"
        return "unknown"

    async def check(self, public_key: str, secret_key: str) -> LangfuseCheck:
        """Health, credentials and ingestion mode, concurrently (they are independent).

        ``legacy_only`` (no OTLP endpoint) comes from the version the health check reports.
        """
        version, project, mode = await asyncio.gather(
            self.server_version(),
            self.project(public_key, secret_key),
            self.ingestion_mode(),
            return_exceptions=True,
        )
        # Credentials decide first: a wrong key is what a user must fix.
        if isinstance(project, BaseException):
            raise project
        if isinstance(version, BaseException):
            raise version
        probed: IngestionMode = "unknown" if isinstance(mode, BaseException) else mode
        return LangfuseCheck(
            project=project,
            server_version=version,
            ingestion_mode=ingestion_mode_for(version, probed),
        )
