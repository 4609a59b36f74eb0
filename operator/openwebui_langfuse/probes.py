"""Cheap probes of the upstream servers between resyncs, so a restart is repaired at once.

A Pipelines server restarted without persistence has lost every filter, and an Open WebUI that
restarted may have lost what was written through its API; waiting for the next resync (5 min
by default) leaves tracing off that long. One probe per upstream URL, shared by every resource
there, asks every ``interval`` seconds and wakes exactly the resources that need a pass:

- Pipelines: ``GET /pipelines`` (the list, with the key of a resource on it): the resources whose
  filter is missing; and all of them when the server answers again after it did not.
- Open WebUI: ``GET /health`` (no credentials): all of its resources when it answers again
  after it did not.

A resource woken for a missing filter is not woken again for it until ``quiet`` seconds have
passed (its pass may still be running, or failing for a reason a wake does not cure). Nothing is
written; nothing but a URL and an id is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

logger = logging.getLogger("openwebui_langfuse.probes")

Key = tuple[str, str]

# Probe period: a restarted server is noticed within this, and repaired by the pass it wakes.
PROBE_INTERVAL_SECONDS = 1.0
# After waking a resource for its missing filter, leave it this long before waking it again.
QUIET_SECONDS = 5.0


@dataclass
class _Watch:
    """What is probed at one URL, and what was seen there last."""

    kind: str  # "pipelines" or "open-webui"
    url: str
    resources: dict[Key, str] = field(default_factory=dict)  # resource -> filter id ("" for none)
    keys: dict[Key, str] = field(default_factory=dict)  # resource -> Pipelines key (never logged)
    up: bool | None = None  # unknown until the first answer
    woken_at: dict[Key, float] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


class UpstreamProbes:
    """The probes of one operator process; ``wake(key)`` starts a pass of that resource."""

    def __init__(
        self,
        http_for: Callable[[str], httpx.AsyncClient],
        wake: Callable[[Key], object],
        *,
        interval: float = PROBE_INTERVAL_SECONDS,
        quiet: float = QUIET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http_for = http_for  # the pool of one upstream URL
        self._wake = wake
        self._interval = interval
        self._quiet = quiet
        self._clock = clock
        self._watches: dict[tuple[str, str], _Watch] = {}

    # -- what to probe ------------------------------------------------------------------------

    def track_pipelines(self, resource: Key, url: str, api_key: str, pipeline_id: str) -> None:
        """``resource`` has ``pipeline_id`` loaded at ``url``: wake it when that changes."""
        watch = self._watch("pipelines", url)
        watch.resources[resource] = pipeline_id
        watch.keys[resource] = api_key

    def track_open_webui(self, resource: Key, url: str) -> None:
        """``resource`` relies on what it wrote into the Open WebUI at ``url``."""
        self._watch("open-webui", url).resources[resource] = ""

    def forget(self, resource: Key, *, keep: frozenset[tuple[str, str]] = frozenset()) -> None:
        """Stop probing for ``resource``, but at the (kind, URL)s in ``keep``; a probe with no
        resource left stops."""
        for where, watch in list(self._watches.items()):
            if where in keep:
                continue
            watch.resources.pop(resource, None)
            watch.keys.pop(resource, None)
            watch.woken_at.pop(resource, None)
            if not watch.resources:
                self._stop(where)

    def _watch(self, kind: str, url: str) -> _Watch:
        where = (kind, url.rstrip("/"))
        watch = self._watches.get(where)
        if watch is None:
            watch = self._watches[where] = _Watch(kind=kind, url=where[1])
            watch.task = asyncio.ensure_future(self._run(watch))
        return watch

    def _stop(self, where: tuple[str, str]) -> None:
        watch = self._watches.pop(where, None)
        if watch is not None and watch.task is not None:
            watch.task.cancel()

    async def aclose(self) -> None:
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        self._watches.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- probing ------------------------------------------------------------------------------

    async def _run(self, watch: _Watch) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.probe_once(watch)
            except Exception as exc:  # a probe must never end: the next one tries again
                logger.debug("probe of %s failed: %s", watch.url, type(exc).__name__)

    async def probe_once(self, watch: _Watch) -> None:
        if not watch.resources:
            return
        if watch.kind == "pipelines":
            listed = await self._pipelines_list(watch)
            up = listed is not None
        else:
            listed = None
            up = await self._healthy(watch.url)
        came_back = up and watch.up is False
        watch.up = up
        if not up:
            return
        now = self._clock()
        for resource, filter_id in list(watch.resources.items()):
            missing = listed is not None and filter_id not in listed
            if came_back:
                self._wake_one(watch, resource, now, "answers again")
            elif missing and now - watch.woken_at.get(resource, -self._quiet) >= self._quiet:
                self._wake_one(watch, resource, now, f"has no filter {filter_id}")

    def _wake_one(self, watch: _Watch, resource: Key, now: float, why: str) -> None:
        watch.woken_at[resource] = now
        logger.info("%s/%s: %s %s %s: reconciling now", *resource, watch.kind, watch.url, why)
        self._wake(resource)

    async def _pipelines_list(self, watch: _Watch) -> set[str] | None:
        """The ids loaded at the URL; None when the server does not answer it (down, or a key
        it refuses: then the resources' own passes report why)."""
        for api_key in dict.fromkeys(watch.keys.values()):
            try:
                response = await self._http_for(watch.url).get(
                    f"{watch.url}/pipelines",
                    headers={"Authorization": f"Bearer {api_key}"},
                    timeout=max(self._interval, 1.0),
                )
            except httpx.HTTPError:
                return None
            if response.status_code == 200:
                try:
                    rows = response.json().get("data") or []
                    return {str(row.get("id")) for row in rows if isinstance(row, dict)}
                except (ValueError, AttributeError):
                    return None
        return None

    async def _healthy(self, url: str) -> bool:
        try:
            response = await self._http_for(url).get(
                f"{url}/health", timeout=max(self._interval, 1.0)
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200
