"""The operator's own status/annotation writer: merge patches, errors, re-login on 401."""

from __future__ import annotations

import json
import ssl

import httpx
from openwebui_langfuse.kube import KubeApi, KubeCredentials, KubeError


def creds(token: str) -> KubeCredentials:
    return KubeCredentials(
        server="https://kube.test:6443",
        headers={"Authorization": f"Bearer {token}"},
        ssl_context=ssl.create_default_context(),
    )


async def test_status_patch_relogs_in_once_on_401() -> None:
    seen: list[tuple[str, str, str, dict[str, object]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append((request.method, request.url.path, request.headers["authorization"], body))
        if request.headers["authorization"] == "Bearer old":
            return httpx.Response(401, json={"kind": "Status"})
        assert request.headers["content-type"] == "application/merge-patch+json"
        return httpx.Response(200, json={"status": body["status"]})

    current = {"creds": creds("old")}

    def relogin() -> KubeCredentials:
        current["creds"] = creds("new")
        return current["creds"]

    api = KubeApi(lambda: current["creds"], relogin=relogin, transport=httpx.MockTransport(handler))
    updated = await api.patch_status("ns", "tracing", {"observedGeneration": 2})
    await api.aclose()
    assert updated == {"status": {"observedGeneration": 2}}
    path = "/apis/openwebui-langfuse.io/v1alpha1/namespaces/ns/langfusetracings/tracing/status"
    assert [(m, p, a) for m, p, a, _ in seen] == [
        ("PATCH", path, "Bearer old"),
        ("PATCH", path, "Bearer new"),
    ]


async def test_errors_carry_no_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"message": "forbidden: echo of the request"})

    api = KubeApi(lambda: creds("t"), transport=httpx.MockTransport(handler))
    try:
        await api.patch_annotations("ns", "tracing", {"a": "b"})
    except KubeError as exc:
        assert str(exc) == "annotation patch answered HTTP 403"
    else:
        raise AssertionError("no KubeError")
    finally:
        await api.aclose()
