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
    """Status writes for LangfuseTracing resources."""

    def __init__(
        self, credentials: Callable[[], KubeCredentials], *, timeout: float = 10.0
    ) -> None:
        self._credentials = credentials
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._client_for: KubeCredentials | None = None
        self._closing: list[httpx.AsyncClient] = []

    def _http(self) -> tuple[httpx.AsyncClient, KubeCredentials]:
        creds = self._credentials()
        if self._client is None or self._client_for is not creds:
            # Credentials changed (kopf re-logged in, e.g. a rotated token): new client.
            old = self._client
            self._client = httpx.AsyncClient(verify=creds.ssl_context, timeout=self._timeout)
            self._client_for = creds
            if old is not None:
                self._closing.append(old)
        return self._client, creds

    async def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """JSON-merge-patch ``.status`` of a LangfuseTracing; returns the updated object."""
        client, creds = self._http()
        url = (
            f"{creds.server.rstrip('/')}/apis/{GROUP}/{VERSION}/namespaces/"
            f"{quote(namespace)}/{PLURAL}/{quote(name)}/status"
        )
        try:
            response = await client.patch(
                url,
                json={"status": dict(status)},
                headers={**creds.headers, "Content-Type": "application/merge-patch+json"},
            )
        except httpx.HTTPError as exc:
            raise KubeError(f"status patch failed: {type(exc).__name__}") from None
        if response.status_code == 404:
            raise KubeError("the resource is gone")
        if response.status_code >= 400:
            raise KubeError(f"status patch answered HTTP {response.status_code}")
        body = response.json()
        return body if isinstance(body, dict) else {}

    async def patch_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """JSON-merge-patch annotations of a LangfuseTracing (``None`` removes one)."""
        client, creds = self._http()
        url = (
            f"{creds.server.rstrip('/')}/apis/{GROUP}/{VERSION}/namespaces/"
            f"{quote(namespace)}/{PLURAL}/{quote(name)}"
        )
        try:
            response = await client.patch(
                url,
                json={"metadata": {"annotations": dict(annotations)}},
                headers={**creds.headers, "Content-Type": "application/merge-patch+json"},
            )
        except httpx.HTTPError as exc:
            raise KubeError(f"annotation patch failed: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise KubeError(f"annotation patch answered HTTP {response.status_code}")

    async def aclose(self) -> None:
        for client in [*self._closing, *([self._client] if self._client else [])]:
            await client.aclose()
        self._closing.clear()
        self._client = None
