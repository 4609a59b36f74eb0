"""The few Kubernetes API calls the operator makes outside kopf's own handler cycle.

Reconciles triggered by a Secret change or the resync timer run in a per-resource worker, not in
a kopf handler, so they cannot return a ``patch``; they write the status subresource here, with
the same credentials kopf logged in with (``handlers.login`` hands them over).

The chart's hook commands (``pre-delete``, ``smoke-test``) use ``KubeClient``, a small
synchronous client on the same login, so the image needs no second Kubernetes library.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import kopf

from openwebui_langfuse.models import GROUP, PLURAL, VERSION


class KubeError(Exception):
    """A Kubernetes API call failed; the message holds the status code and reason only."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class KubeCredentials:
    server: str
    headers: Mapping[str, str]
    ssl_context: ssl.SSLContext


def credentials_of(info: kopf.ConnectionInfo) -> KubeCredentials:
    return KubeCredentials(
        server=info.server, headers=info.as_http_headers(), ssl_context=info.as_ssl_context()
    )


def login_info(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """The in-cluster service account, else the kubeconfig (``KUBECONFIG`` or
    ``~/.kube/config``): kopf's own plain logins, with one correction. kopf's service-account
    login always names ``https://kubernetes.default.svc``, which only cluster DNS resolves; a
    pod also gets ``KUBERNETES_SERVICE_HOST``/``_PORT``, which client-go and the official
    clients use, and which work where that name does not resolve (``hostNetwork`` pods, a
    custom ``dnsConfig``)."""
    info = kopf.login_with_service_account(settings=settings)
    if info is not None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "").strip()
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "").strip()
        if host and port:
            netloc = f"[{host}]" if ":" in host else host
            info = dataclasses.replace(info, server=f"https://{netloc}:{port}")
        return info
    return kopf.login_with_kubeconfig(settings=settings)


def login() -> KubeCredentials:
    """Credentials for the hook commands, found as the operator finds its own."""
    info = login_info(kopf.OperatorSettings())
    if info is None:
        raise KubeError("no Kubernetes credentials: no in-cluster service account, no kubeconfig")
    return credentials_of(info)


def resource_path(namespace: str, name: str | None = None) -> str:
    """The API path of the LangfuseTracings of a namespace, or of one of them."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}"
    return f"{path}/{quote(name)}" if name else path


_CORE_PLURALS = {"Secret": "secrets", "ConfigMap": "configmaps"}


def secret_path(namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/secrets"
    return f"{path}/{quote(name)}" if name else path


class KubeClient:
    """Synchronous reads and deletes for the hook commands; errors carry the status only."""

    def __init__(
        self,
        credentials: KubeCredentials | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        creds = credentials or login()
        self._server = creds.server.rstrip("/")
        self._client = httpx.Client(
            verify=creds.ssl_context,
            timeout=timeout,
            headers=dict(creds.headers),
            transport=transport,
        )

    def _call(self, method: str, path: str, params: Mapping[str, str] | None = None) -> Any:
        try:
            response = self._client.request(method, self._server + path, params=params)
        except httpx.HTTPError as exc:
            raise KubeError(f"{method} {path} failed: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise KubeError(
                f"{method} {path} answered HTTP {response.status_code} {response.reason_phrase}",
                response.status_code,
            )
        return response.json()

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        body = self._call("GET", path, params)
        return body if isinstance(body, dict) else {}

    def delete(self, path: str) -> bool:
        """Delete one object; False when it was already gone."""
        try:
            self._call("DELETE", path)
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def close(self) -> None:
        self._client.close()


class KubeApi:
    """Status and annotation writes for LangfuseTracing resources, and reads of the Secrets
    and ConfigMaps they reference (``references``: once, the first time one is referenced)."""

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

    async def _send(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        what: str,
        content_type: str | None,
    ) -> httpx.Response:
        for attempt in (1, 2):
            client, creds = self._http()
            headers = dict(creds.headers)
            if content_type is not None:
                headers["Content-Type"] = content_type
            try:
                response = await client.request(
                    method,
                    f"{creds.server.rstrip('/')}{path}",
                    json=dict(body) if body is not None else None,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                raise KubeError(f"{what} failed: {type(exc).__name__}") from None
            retry = response.status_code == 401 and attempt == 1 and self._relogin is not None
            if retry and self._relogin is not None and self._relogin() is not None:
                continue
            if response.status_code == 404:
                raise KubeError("the resource is gone", 404)
            if response.status_code >= 400:
                raise KubeError(
                    f"{what} answered HTTP {response.status_code}", response.status_code
                )
            return response
        raise KubeError(f"{what} answered HTTP 401 after a fresh login", 401)

    async def _merge_patch(self, path: str, body: Mapping[str, Any], what: str) -> httpx.Response:
        return await self._send("PATCH", path, body, what, "application/merge-patch+json")

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """GET one Secret or ConfigMap (``kind``); None when there is none of that name."""
        path = f"/api/v1/namespaces/{quote(namespace)}/{_CORE_PLURALS[kind]}/{quote(name)}"
        try:
            response = await self._send("GET", path, None, f"get {kind} {namespace}/{name}", None)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        body = response.json()
        return body if isinstance(body, dict) else {}

    async def create_secret_once(
        self, namespace: str, name: str, data: Mapping[str, str], labels: Mapping[str, str]
    ) -> bool:
        """Create a Secret unless one of that name exists (it is then never touched); True when
        this call created it. ``data`` values are plain text (sent as ``stringData``)."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "type": "Opaque",
            "stringData": dict(data),
        }
        try:
            await self._send(
                "POST",
                secret_path(namespace),
                body,
                f"create Secret {namespace}/{name}",
                "application/json",
            )
        except KubeError as exc:
            if exc.status == 409:  # AlreadyExists: someone's key, or ours from an earlier start
                return False
            raise
        return True

    async def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """JSON-merge-patch ``.status`` of a LangfuseTracing; returns the updated object."""
        response = await self._merge_patch(
            resource_path(namespace, name) + "/status", {"status": dict(status)}, "status patch"
        )
        body = response.json()
        return body if isinstance(body, dict) else {}

    async def patch_annotations(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """JSON-merge-patch annotations of a LangfuseTracing (``None`` removes one)."""
        await self._merge_patch(
            resource_path(namespace, name),
            {"metadata": {"annotations": dict(annotations)}},
            "annotation patch",
        )

    async def put_config_map_data(
        self,
        namespace: str,
        name: str,
        binary_data: Mapping[str, str],
        *,
        labels: Mapping[str, str],
        owner: Mapping[str, Any],
    ) -> None:
        """Create the ConfigMap with ``binary_data`` (base64 values) owned by ``owner`` (an
        ownerReference: it goes when its owner goes), or merge it into the existing one."""
        path = f"/api/v1/namespaces/{quote(namespace)}/configmaps"
        what = f"create ConfigMap {namespace}/{name}"
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(labels),
                "ownerReferences": [dict(owner)],
            },
            "binaryData": dict(binary_data),
        }
        try:
            await self._send("POST", path, body, what, "application/json")
            return
        except KubeError as exc:
            if exc.status != 409:
                raise
        await self._merge_patch(
            f"{path}/{quote(name)}",
            {"binaryData": dict(binary_data)},
            f"update ConfigMap {namespace}/{name}",
        )

    async def aclose(self) -> None:
        for client in [*self._closing, *([self._client] if self._client else [])]:
            await client.aclose()
        self._closing.clear()
        self._client = None
