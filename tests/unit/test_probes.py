"""The upstream probes: who is woken when a Pipelines loses its filters or a server comes back."""

from __future__ import annotations

import httpx
import pytest
from openwebui_langfuse.probes import UpstreamProbes

PIPELINES = "http://pipelines:9099"
OPEN_WEBUI = "http://open-webui:8080"


class Upstream:
    """A Pipelines and an Open WebUI behind a mock transport."""

    def __init__(self) -> None:
        self.loaded = {"lft_a", "lft_b"}
        self.down = False
        self.keys_seen: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/pipelines":
            self.keys_seen.append(request.headers.get("authorization", ""))
            return httpx.Response(200, json={"data": [{"id": i} for i in sorted(self.loaded)]})
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": True})
        return httpx.Response(404)


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def probes_for(
    upstream: Upstream, woken: list[tuple[str, str]], clock: Clock
) -> UpstreamProbes:
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream.handle))
    # A long interval: the tests call probe_once themselves, the background loop never fires.
    return UpstreamProbes(lambda _url: http, woken.append, interval=3600, quiet=5, clock=clock)


def watch_of(probes: UpstreamProbes, kind: str, url: str):  # type: ignore[no-untyped-def]
    return probes._watches[(kind, url)]


async def test_a_missing_filter_wakes_only_its_resource_then_stays_quiet(
    upstream: Upstream,
) -> None:
    woken: list[tuple[str, str]] = []
    clock = Clock()
    probes = await probes_for(upstream, woken, clock)
    probes.track_pipelines(("ns", "a"), PIPELINES, "key-a", "lft_a")
    probes.track_pipelines(("ns", "b"), PIPELINES, "key-a", "lft_b")
    watch = watch_of(probes, "pipelines", PIPELINES)

    await probes.probe_once(watch)
    assert woken == []  # both loaded

    upstream.loaded = {"lft_b"}
    await probes.probe_once(watch)
    assert woken == [("ns", "a")]
    clock.now += 1
    await probes.probe_once(watch)
    assert woken == [("ns", "a")]  # quiet: its pass is on the way
    clock.now += 5
    await probes.probe_once(watch)
    assert woken == [("ns", "a"), ("ns", "a")]
    assert set(upstream.keys_seen) == {"Bearer key-a"}
    await probes.aclose()


async def test_a_server_that_answers_again_wakes_all_its_resources(upstream: Upstream) -> None:
    woken: list[tuple[str, str]] = []
    probes = await probes_for(upstream, woken, Clock())
    probes.track_pipelines(("ns", "a"), PIPELINES, "key", "lft_a")
    probes.track_open_webui(("ns", "a"), OPEN_WEBUI)
    probes.track_open_webui(("ns", "c"), OPEN_WEBUI)
    pipelines = watch_of(probes, "pipelines", PIPELINES)
    open_webui = watch_of(probes, "open-webui", OPEN_WEBUI)
    await probes.probe_once(pipelines)
    await probes.probe_once(open_webui)
    assert woken == []

    upstream.down = True
    await probes.probe_once(pipelines)
    await probes.probe_once(open_webui)
    assert woken == []  # nothing to repair while it is down

    upstream.down = False
    await probes.probe_once(pipelines)
    await probes.probe_once(open_webui)
    assert woken == [("ns", "a"), ("ns", "a"), ("ns", "c")]
    await probes.probe_once(open_webui)
    assert len(woken) == 3  # once per return, not on every probe
    await probes.aclose()


async def test_forget_stops_a_probe_with_no_resource_left(upstream: Upstream) -> None:
    probes = await probes_for(upstream, [], Clock())
    probes.track_pipelines(("ns", "a"), PIPELINES, "key", "lft_a")
    probes.track_open_webui(("ns", "a"), OPEN_WEBUI)
    task = watch_of(probes, "pipelines", PIPELINES).task
    probes.forget(("ns", "a"), keep=frozenset({("open-webui", OPEN_WEBUI)}))
    assert ("pipelines", PIPELINES) not in probes._watches
    assert ("open-webui", OPEN_WEBUI) in probes._watches
    assert task is not None
    probes.forget(("ns", "a"))
    assert probes._watches == {}
    await probes.aclose()
