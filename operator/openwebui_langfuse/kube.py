"""The few Kubernetes API calls the operator makes outside kopf's own handler cycle.

Reconciles triggered by a Secret change or the resync timer run in a per-resource worker, not in
a kopf handler, so they cannot return a ``patch``; they write the status subresource here, with
the same credentials kopf logged in with (``handlers.login`` hands them over).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from openwebui_langfuse.models import GROUP, PLURAL, VERSION


class KubeError(Exception):
    """A Kubernetes API call failed; the message holds the status code and reason only."""


@dataclass(frozen=True)
class KubeCredentials:
    server: str
    headers: Mapping[str, str]
    ssl_context: ssl.SSLContext


class KubeApi:
    """Status and annotation writes for LangfuseTracing resources."""

    def __init__(
        self,
        credentials: Callable[[], KubeCredentials],
        *,
        relogin: Callable[[], KubeCredentials | None] | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._credentials = credentials
        # Called once when the API server answers 401 (e.g. an expired token): kopf only
        # re-logs in when its own calls fail, which may be much later than ours.
        self._relogin = relogin
        self._timeout = timeout
        self._transport = transport  # tests only
        self._client: httpx.AsyncClient | None = None
        self._client_for: KubeCredentials | None = None
        self._closing: list[httpx.AsyncClient] = []

    def _http(self) -> tuple[httpx.AsyncClient, KubeCredentials]:
        creds = self._credentials()
        if self._client is None or self._client_for is not creds:
            # Credentials changed (a re-login, e.g. a rotated token): new client.
            old = self._client
            self._client = httpx.AsyncClient(
                verify=creds.ssl_context, timeout=self._timeout, transport=self._transport
            )
            self._client_for = creds
            if old is not None:
                self._closing.append(old)
        return self._client, creds

    async def _merge_patch(self, path: str, body: Mapping[str, Any], what: str) -> httpx.Response:
        for attempt in (1, 2):
            client, creds = self._http()
            try:
                response = await client.patch(
                    f"{creds.server.rstrip('/')}{path}",
                    json=dict(body),
                    headers={**creds.headers, "Content-Type": "application/merge-patch+json"},
                )
            except httpx.HTTPError as exc:
                raise KubeError(f"{what} failed: {type(exc).__name__}") from None
            retry = response.status_code == 401 and attempt == 1 and self._relogin is not None
            if retry and self._relogin is not None and self._relogin() is not None:
                continue
            if response.status_code == 404:
                raise KubeError("the resource is gone")
            if response.status_code >= 400:
                raise KubeError(f"{what} answered HTTP {response.status_code}")
            return response
        raise KubeError(f"{what} answered HTTP 401 after a fresh login")

    @staticmethod
    def _path(namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"

    async def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """JSON-merge-patch ``.status`` of a LangfuseTracing; returns the updated object."""
        response = await self._merge_patch(
            self._path(namespace, name) + "/status", {"status": dict(status)}, "status patch"
        )
        body = response.json()
        return body if isinstance(body, dict) else {}

    async def patch_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """JSON-merge-patch annotations of a LangfuseTracing (``None`` removes one)."""
        await self._merge_patch(
            self._path(namespace, name),
            {"metadata": {"annotations": dict(annotations)}},
            "annotation patch",
        )

    async def aclose(self) -> None:
        for client in [*self._closing, *([self._client] if self._client else [])]:
            await client.aclose()
        self._closing.clear()
        self._client = None
