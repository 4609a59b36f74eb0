"""The operator's own status/annotation writer: merge patches, errors, re-login on 401."""

from __future__ import annotations

import json
import ssl

import httpx
import kopf
import pytest
from openwebui_langfuse.kube import (
    KubeApi,
    KubeClient,
    KubeCredentials,
    KubeError,
    login_info,
    resource_path,
    secret_path,
)


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


async def test_create_secret_once_creates_then_leaves_an_existing_one_alone() -> None:
    bodies: list[dict[str, object]] = []
    existing = {"count": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.url.path) == ("POST", "/api/v1/namespaces/ns/secrets")
        bodies.append(json.loads(request.content))
        existing["count"] += 1
        if existing["count"] > 1:
            return httpx.Response(409, json={"reason": "AlreadyExists"})
        return httpx.Response(201, json={})

    api = KubeApi(lambda: creds("t"), transport=httpx.MockTransport(handler))
    labels = {"app.kubernetes.io/name": "openwebui-langfuse"}
    assert await api.create_secret_once("ns", "key", {"api-key": "first"}, labels) is True
    assert await api.create_secret_once("ns", "key", {"api-key": "second"}, labels) is False
    await api.aclose()
    assert bodies[0]["metadata"] == {"name": "key", "namespace": "ns", "labels": labels}
    assert bodies[0]["stringData"] == {"api-key": "first"}


async def test_create_secret_once_reports_a_refusal_without_the_value() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"message": "secrets is forbidden"})

    api = KubeApi(lambda: creds("t"), transport=httpx.MockTransport(handler))
    try:
        await api.create_secret_once("ns", "key", {"api-key": "do-not-print"}, {})
    except KubeError as exc:
        assert exc.status == 403
        assert str(exc) == "create Secret ns/key answered HTTP 403"
    else:
        raise AssertionError("no KubeError")
    finally:
        await api.aclose()


def test_hook_client_reads_lists_and_deletes() -> None:
    calls: list[tuple[str, str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, request.url.query.decode()))
        assert request.headers["authorization"] == "Bearer t"
        if request.method == "DELETE":
            return httpx.Response(404 if request.url.path.endswith("/gone") else 200, json={})
        if request.url.path.endswith("/secrets/denied"):
            return httpx.Response(403, json={"message": "secret body echo"})
        return httpx.Response(200, json={"items": [{"metadata": {"name": "a"}}]})

    kube = KubeClient(creds("t"), transport=httpx.MockTransport(handler))
    listing = kube.get(resource_path("ns"), {"labelSelector": "app=x"})
    assert listing["items"][0]["metadata"]["name"] == "a"
    assert kube.delete(resource_path("ns", "a")) is True
    assert kube.delete(resource_path("ns", "gone")) is False
    try:
        kube.get(secret_path("ns", "denied"))
    except KubeError as exc:
        assert exc.status == 403
        assert "secret body echo" not in str(exc)
    else:
        raise AssertionError("no KubeError")
    kube.close()
    base = "/apis/openwebui-langfuse.io/v1alpha1/namespaces/ns/langfusetracings"
    assert calls[:3] == [
        ("GET", base, "labelSelector=app%3Dx"),
        ("DELETE", f"{base}/a", ""),
        ("DELETE", f"{base}/gone", ""),
    ]


@pytest.mark.parametrize(
    ("host", "port", "server"),
    [
        ("10.96.0.1", "443", "https://10.96.0.1:443"),
        ("fd00::1", "6443", "https://[fd00::1]:6443"),
        ("", "", "https://kubernetes.default.svc"),
    ],
)
def test_in_cluster_login_uses_the_service_variables(
    monkeypatch: pytest.MonkeyPatch, host: str, port: str, server: str
) -> None:
    # kopf's own service-account login names kubernetes.default.svc, which needs cluster DNS;
    # a pod's KUBERNETES_SERVICE_HOST/PORT work without it, as client-go uses them.
    pod = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t")
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: pod)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    info = login_info(kopf.OperatorSettings())
    assert info is not None and info.server == server and info.token == "t"


def test_without_a_service_account_the_kubeconfig_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = kopf.ConnectionInfo(server="https://127.0.0.1:6443")
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)
    monkeypatch.setattr(kopf, "login_with_kubeconfig", lambda **_: local)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert login_info(kopf.OperatorSettings()) is local
