"""Leader election on a Lease: one holder at a time, takeover after the holder stops renewing,
at once after a release, and never by a replica whose write is based on an old read."""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx
from openwebui_langfuse.kube import KubeCredentials
from openwebui_langfuse.leader import LeaseLock

PATH = "/apis/coordination.k8s.io/v1/namespaces/ops/leases"


class LeaseApi:
    """The API server's Lease routes: optimistic concurrency by resourceVersion."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=self.lease) if self.lease else httpx.Response(404)
        body = json.loads(request.content)
        if request.method == "POST":
            if self.lease is not None:
                return httpx.Response(409)
        elif self.lease is None or body["metadata"].get("resourceVersion") != str(self.version):
            return httpx.Response(409)
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)
        self.lease = body
        return httpx.Response(200, json=body)

    @property
    def holder(self) -> str:
        return str((self.lease or {}).get("spec", {}).get("holderIdentity", ""))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lock(api: LeaseApi, holder: str, clock: Clock) -> LeaseLock:
    credentials = KubeCredentials("https://kube", {}, ssl.create_default_context())
    return LeaseLock(
        credentials,
        "ops",
        "operator",
        holder=holder,
        duration=8,
        clock=clock,
        transport=httpx.MockTransport(api.handle),
    )


def test_one_holder_takeover_after_silence_and_at_once_after_release() -> None:
    api = LeaseApi()
    clock = Clock()
    a, b = lock(api, "a", clock), lock(api, "b", clock)
    assert a.try_acquire() and api.holder == "a"
    assert not b.try_acquire()  # held, and just renewed

    clock.now += 5
    assert a.try_acquire()  # a renews: the record changes
    clock.now += 5
    assert not b.try_acquire()  # changed 5 s ago on b's clock: not expired

    clock.now += 8  # a stopped renewing (killed) 8 s ago
    assert b.try_acquire() and api.holder == "b"
    assert (api.lease or {})["spec"]["leaseTransitions"] == 1
    assert not a.try_acquire()  # the old holder does not take it back

    b.release()
    assert api.holder == ""
    c = lock(api, "c", clock)
    assert c.try_acquire() and api.holder == "c"  # no wait after a release


def test_a_write_based_on_an_old_read_loses() -> None:
    api = LeaseApi()
    clock = Clock()
    a, b = lock(api, "a", clock), lock(api, "b", clock)
    assert a.try_acquire()
    assert not b.try_acquire()
    clock.now += 9
    # a renews between b's read and b's write: b's PUT carries the old resourceVersion.
    real = api.handle

    def renew_first(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and api.holder == "a":
            a.try_acquire()
        return real(request)

    b._http = httpx.Client(base_url="https://kube", transport=httpx.MockTransport(renew_first))
    assert not b.try_acquire()
    assert api.holder == "a"
