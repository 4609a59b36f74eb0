"""The cache of referenced Secrets and ConfigMaps (``references``): only what a
LangfuseTracing references is held, a late reference is read from the API once, and the watch
keeps it up to date before it wakes the resources."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from openwebui_langfuse.config import Settings
from openwebui_langfuse.kube import KubeApi, KubeCredentials, KubeError
from openwebui_langfuse.passes import MissingReference
from openwebui_langfuse.references import ReferenceCache
from openwebui_langfuse.runtime import IndexReader, Runtime, Worker

from tests.unit.test_reconcile import PIPELINES_KEY, SECRET, FakeLangfuse, FakePipelines, spec

SECRETS = [("Secret", "lf"), ("Secret", "pl")]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(data: Mapping[str, str], type_: str = "Opaque") -> dict[str, Any]:
    return {"type": type_, "data": {k: b64(v) for k, v in data.items()}}


class FakeApi:
    """The objects the API server holds, and the GETs made of them."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.gets: list[tuple[str, str, str]] = []
        self.gate: asyncio.Event | None = None  # set: the GET answers
        self.error: KubeError | None = None

    async def fetch(self, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.gets.append((namespace, kind, name))
        answer = self.objects.get((namespace, kind, name))  # read when the GET is served
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return answer


async def reading(api: FakeApi, count: int) -> None:
    """Until ``count`` GETs have started (each then waits for ``api.gate``)."""
    for _ in range(100):
        if len(api.gets) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{count} GETs expected, {len(api.gets)} started")


def reader_of(cache: ReferenceCache) -> IndexReader:
    return IndexReader(cache.secrets, cache.config_maps, prefetch=cache.prefetch)


def lf_spec(name: str = "lf") -> dict[str, Any]:
    return {
        "langfuse": {
            "host": "https://lf",
            "publicKey": {"secretKeyRef": {"name": name, "key": "pk"}},
            "secretKey": {"secretKeyRef": {"name": name, "key": "sk"}},
        },
        "filter": {"source": "configMap", "configMap": {"name": "cm", "key": "f.py"}},
    }


def test_referenced_is_kept_and_unreferenced_dropped() -> None:
    cache = ReferenceCache(FakeApi().fetch)
    index = {("ns", "Secret", "lf"): [("ns", "tracing")]}
    woken: list[tuple[str, str]] = []

    def event(name: str, data: Mapping[str, str], type_: str | None = "ADDED") -> None:
        cache.on_event(
            "Secret", type_, "ns", name, secret(data), index=index, wake=lambda *k: woken.append(k)
        )

    event("lf", {"sk": "one"})
    event("unrelated", {"blob": "x" * 8192})
    event("listed", {"blob": "y"}, type_=None)  # the initial listing
    assert len(cache) == 1 and ("ns", "Secret", "unrelated") not in cache
    assert reader_of(cache).secret_value("ns", "lf", "sk") == "one"
    assert woken == [("ns", "tracing")]
    # No longer referenced: its next event lets it go.
    index.clear()
    event("lf", {"sk": "two"}, type_="MODIFIED")
    assert len(cache) == 0
    assert woken == [("ns", "tracing")]


def test_ignored_secret_types_hold_nothing() -> None:
    cache = ReferenceCache(FakeApi().fetch)
    index = {("ns", "Secret", "release"): [("ns", "tracing")]}
    body = secret({"release": "x" * 8192}, type_="helm.sh/release.v1")
    cache.on_event("Secret", "ADDED", "ns", "release", body, index=index, wake=lambda *_: None)
    with pytest.raises(MissingReference) as info:
        reader_of(cache).secret_value("ns", "release", "release")
    assert info.value.reason == "SecretNotFound"


async def test_a_late_reference_is_read_once_then_follows_the_watch() -> None:
    api = FakeApi()
    cache = ReferenceCache(api.fetch)
    reader = reader_of(cache)
    # The Secret's and the ConfigMap's events came while nothing referenced them.
    index: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    body = secret({"sk": "one"})
    cache.on_event("Secret", "ADDED", "ns", "lf", body, index=index, wake=lambda *_: None)
    assert len(cache) == 0
    api.objects[("ns", "Secret", "lf")] = secret({"pk": "pk-1", "sk": "one"})
    api.objects[("ns", "ConfigMap", "cm")] = {"data": {"f.py": "class Pipeline: ...\n"}}
    # Then a resource references them: its pass reads them first.
    index[("ns", "Secret", "lf")] = [("ns", "tracing")]
    index[("ns", "ConfigMap", "cm")] = [("ns", "tracing")]
    await reader.prefetch("ns", lf_spec())
    assert sorted(api.gets) == [("ns", "ConfigMap", "cm"), ("ns", "Secret", "lf")]
    assert reader.secret_value("ns", "lf", "sk") == "one"
    assert reader.config_map_value("ns", "cm", "f.py") == "class Pipeline: ...\n"
    # Held from now on: no more GETs, and the watch brings a rotation.
    await reader.prefetch("ns", lf_spec())
    assert len(api.gets) == 2
    body = secret({"pk": "pk-1", "sk": "two"})
    cache.on_event("Secret", "MODIFIED", "ns", "lf", body, index=index, wake=lambda *_: None)
    assert reader.secret_value("ns", "lf", "sk") == "two"
    assert len(api.gets) == 2


async def test_missing_is_remembered_until_created_and_deleted_is_gone() -> None:
    api = FakeApi()
    cache = ReferenceCache(api.fetch)
    reader = reader_of(cache)
    index = {("ns", "Secret", "lf"): [("ns", "tracing")]}
    for _ in range(3):
        await reader.prefetch("ns", {"langfuse": lf_spec()["langfuse"]})
    assert api.gets == [("ns", "Secret", "lf")]  # a 404 is remembered: one GET, not one a pass
    with pytest.raises(MissingReference) as info:
        reader.secret_value("ns", "lf", "sk")
    assert info.value.reason == "SecretNotFound"
    woken: list[tuple[str, str]] = []
    body = secret({"sk": "one"})
    cache.on_event(
        "Secret", "ADDED", "ns", "lf", body, index=index, wake=lambda *k: woken.append(k)
    )
    assert reader.secret_value("ns", "lf", "sk") == "one"
    assert woken == [("ns", "tracing")]
    cache.on_event("Secret", "DELETED", "ns", "lf", body, index=index, wake=lambda *_: None)
    with pytest.raises(MissingReference) as info:
        reader.secret_value("ns", "lf", "sk")
    assert info.value.reason == "SecretNotFound"
    assert ("ns", "lf") not in cache.secrets and list(cache.secrets) == []
    await reader.prefetch("ns", lf_spec("lf"))
    assert api.gets.count(("ns", "Secret", "lf")) == 1  # still known to be absent


def test_rotation_updates_the_cache_before_the_wake() -> None:
    cache = ReferenceCache(FakeApi().fetch)
    reader = reader_of(cache)
    index = {("ns", "Secret", "lf"): [("ns", "a"), ("ns", "b")]}
    cache.on_event(
        "Secret", None, "ns", "lf", secret({"sk": "old"}), index=index, wake=lambda *_: None
    )
    seen: dict[tuple[str, str], str] = {}

    def wake(namespace: str, name: str) -> None:
        seen[(namespace, name)] = reader.secret_value("ns", "lf", "sk")

    cache.on_event("Secret", "MODIFIED", "ns", "lf", secret({"sk": "new"}), index=index, wake=wake)
    assert seen == {("ns", "a"): "new", ("ns", "b"): "new"}


async def test_an_event_during_the_read_wins_over_its_answer() -> None:
    api = FakeApi()
    api.gate = asyncio.Event()
    cache = ReferenceCache(api.fetch)
    reader = reader_of(cache)
    index = {("ns", "Secret", "lf"): [("ns", "tracing")]}
    api.objects[("ns", "Secret", "lf")] = secret({"sk": "old"})
    # Two passes want it at once: one GET.
    passes = [asyncio.ensure_future(reader.prefetch("ns", lf_spec())) for _ in range(2)]
    await reading(api, 2)
    body = secret({"sk": "new"})
    cache.on_event("Secret", "MODIFIED", "ns", "lf", body, index=index, wake=lambda *_: None)
    api.gate.set()
    await asyncio.gather(*passes)
    assert [g for g in api.gets if g[1] == "Secret"] == [("ns", "Secret", "lf")]
    assert reader.secret_value("ns", "lf", "sk") == "new"

    # A deletion during the read: absent, not the answer's data.
    api.gate = asyncio.Event()
    api.objects[("ns", "Secret", "other")] = secret({"sk": "gone"})
    index[("ns", "Secret", "other")] = [("ns", "tracing")]
    task = asyncio.ensure_future(reader.prefetch("ns", lf_spec("other")))
    await reading(api, 3)
    cache.on_event(
        "Secret", "DELETED", "ns", "other", secret({}), index=index, wake=lambda *_: None
    )
    api.gate.set()
    await task
    assert ("ns", "Secret", "other") in cache and ("ns", "other") not in cache.secrets


async def test_forget_drops_what_no_resource_references() -> None:
    api = FakeApi()
    cache = ReferenceCache(api.fetch)
    for namespace in ("ns", "other"):
        api.objects[(namespace, "Secret", "lf")] = secret({"sk": "one"})
        api.objects[(namespace, "ConfigMap", "cm")] = {"data": {"f.py": "x"}}
        await cache.prefetch(namespace, lf_spec())
    assert len(cache) == 4
    # The resource of "ns" now names only the Secret; "other" is not looked at.
    cache.forget_unreferenced("ns", {("ns", "Secret", "lf")})
    assert ("ns", "ConfigMap", "cm") not in cache
    assert ("ns", "Secret", "lf") in cache and len(cache) == 3
    # Forgotten while its GET runs: the answer is not kept.
    api.gate = asyncio.Event()
    task = asyncio.ensure_future(cache.prefetch("ns", lf_spec()))
    await reading(api, 5)
    cache.forget_unreferenced("ns", set())
    api.gate.set()
    await task
    assert ("ns", "ConfigMap", "cm") not in cache and ("ns", "Secret", "lf") not in cache


async def test_a_failed_read_fails_the_pass_and_is_tried_again() -> None:
    api = FakeApi()
    api.error = KubeError("get Secret ns/lf answered HTTP 403", 403)
    cache = ReferenceCache(api.fetch)
    with pytest.raises(KubeError):
        await cache.prefetch("ns", {"langfuse": lf_spec()["langfuse"]})
    assert len(cache) == 0
    api.error = None
    api.objects[("ns", "Secret", "lf")] = secret({"sk": "one"})
    await cache.prefetch("ns", {"langfuse": lf_spec()["langfuse"]})
    assert reader_of(cache).secret_value("ns", "lf", "sk") == "one"
    assert len(api.gets) == 2


async def test_a_pass_reads_what_the_watch_has_not_brought() -> None:
    """The runtime awaits the prefetch: a resource whose Secrets came before it is Ready on
    its first pass, with no watch event for them."""
    api = FakeApi()
    api.objects[("ns", "Secret", "lf")] = secret({"pk": "pk-lf-1", "sk": SECRET})
    api.objects[("ns", "Secret", "pl")] = secret({"key": PIPELINES_KEY})
    api.objects[("ns", "ConfigMap", "cm")] = {"data": {"filter.py": "class Pipeline: ...\n"}}
    cache = ReferenceCache(api.fetch)
    runtime = Runtime(Settings(namespaces=("ns",)), kube=None, emit=lambda *_: None)
    pipelines, langfuse = FakePipelines(), FakeLangfuse()
    runtime.upstreams.pipelines = pipelines.client
    runtime.upstreams.langfuse = langfuse.client
    worker = Worker(key=("ns", "tracing"), status={})
    body = {"metadata": {"namespace": "ns", "name": "tracing", "generation": 1}, "spec": spec()}
    await runtime.pass_once(worker, body, reader_of(cache))
    assert worker.status is not None
    ready = next(c for c in worker.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    assert pipelines.valves["lft_ns_tracing"]["secret_key"] == SECRET
    assert sorted(api.gets) == [("ns", k, n) for k, n in [("ConfigMap", "cm"), *SECRETS]]
    await runtime.aclose()


async def test_kube_read_gets_one_object_and_says_none_for_404() -> None:
    seen: list[tuple[str, str, bytes, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(
            (request.method, request.url.path, request.content, request.headers.get("content-type"))
        )
        name = request.url.path.rsplit("/", 1)[-1]
        if name == "gone":
            return httpx.Response(404, json={"kind": "Status"})
        if name == "forbidden":
            return httpx.Response(403, json={"kind": "Status", "message": "secret text"})
        return httpx.Response(200, json={"kind": "Secret", "data": {"k": b64("v")}})

    creds = KubeCredentials("https://kube.test:6443", {}, ssl.create_default_context())
    api = KubeApi(lambda: creds, transport=httpx.MockTransport(handler))
    assert await api.read("Secret", "ns", "lf") == {"kind": "Secret", "data": {"k": b64("v")}}
    assert await api.read("ConfigMap", "ns", "gone") is None
    with pytest.raises(KubeError) as info:
        await api.read("Secret", "ns", "forbidden")
    assert info.value.status == 403 and "secret text" not in str(info.value)
    assert seen[:2] == [
        ("GET", "/api/v1/namespaces/ns/secrets/lf", b"", None),
        ("GET", "/api/v1/namespaces/ns/configmaps/gone", b"", None),
    ]
    await api.aclose()
