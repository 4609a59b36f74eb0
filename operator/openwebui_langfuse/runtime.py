"""The operator's runtime state and per-resource workers (no kopf import; ``handlers`` adapts).

Why a worker per resource instead of kopf's create/update handlers: a reconcile has three
triggers (a spec change, a change of a referenced Secret/ConfigMap, the resync timer) and must
never run twice at once for one resource. One long-lived worker per resource (a kopf daemon)
owns all three: triggers only *wake* it, it coalesces bursts into one pass, retries temporary
errors with its own backoff and sleeps ``resyncInterval`` otherwise. It starts as soon as kopf
sees the resource, so the first pass does not wait for kopf's finalizer round trip, and it
writes status itself (``kube.KubeApi``) only when the status changed — no progress annotations
or diff-base churn on the resource, nothing for a GitOps tool to diff.

The one annotation it writes, ``openwebui-langfuse.io/installed-filter``, records which file
(public digest or URL) is installed where, and changes only with an install: a restarted
operator then does not re-upload every filter (each upload makes Pipelines reload every
module), and a changed pipeline id or server lets the previous filter be removed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from openwebui_langfuse import conditions as cond
from openwebui_langfuse import targets
from openwebui_langfuse.clients.langfuse import LangfuseClient
from openwebui_langfuse.clients.openwebui import OpenWebUIError
from openwebui_langfuse.clients.openwebui_functions import FunctionsError
from openwebui_langfuse.clients.pipelines import PipelinesClient, PipelinesError
from openwebui_langfuse.config import Settings
from openwebui_langfuse.connection import OpenWebUIConnections, normalise_connection_url
from openwebui_langfuse.feedback_sync import (
    Access,
    FeedbackSyncs,
    SyncPointStore,
    access_for,
    target_for,
)
from openwebui_langfuse.kube import KubeApi, KubeError
from openwebui_langfuse.models import LangfuseTracingSpec, parse_spec
from openwebui_langfuse.passes import (
    CleanupResult,
    DownloadError,
    InstallMemory,
    MissingReference,
    ResourceRef,
    Upstreams,
)
from openwebui_langfuse.pricing import PRICING_CHECK_SECONDS, check_pricing
from openwebui_langfuse.probes import UpstreamProbes
from openwebui_langfuse.reconcile import ReconcileResult, cleanup, reconcile
from openwebui_langfuse.tls import shared_context

logger = logging.getLogger("openwebui_langfuse")

Key = tuple[str, str]
INSTALL_ANNOTATION = "openwebui-langfuse.io/installed-filter"
EmitFn = Callable[[Mapping[str, Any], str, str, str], None]
_FIRST_BACKOFF = 1.0
# Passes that try to delete the filter a resource installed before its pipeline id or server
# changed, before giving up on it (the old server may be gone for good).
RETIRE_ATTEMPTS = 5
_CONSEQUENTIAL_REASONS = frozenset({"CredentialsNotVerified", "FilterNotInstalled"})
# After a failed status write: try again soon (then backing off), not at the next resync.
_STATUS_RETRY_SECONDS = 2.0


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- reading Secrets and ConfigMaps from kopf's in-memory indices -----------------------------


class IndexReader:
    """Reads referenced Secrets/ConfigMaps from watch-fed caches (no API round trip).

    The caches map ``(namespace, name)`` to the objects' ``data`` (a collection per key, as
    kopf's indices yield; there is exactly one object per namespace/name). The reads are
    synchronous, so what a spec references is loaded before a pass reads it: ``prefetch``
    (``references.ReferenceCache.prefetch``: a GET of what the watch has not brought yet).
    """

    def __init__(
        self,
        secrets: Mapping[Key, Iterable[Mapping[str, Any]]],
        config_maps: Mapping[Key, Iterable[Mapping[str, Any]]],
        *,
        prefetch: Callable[[str, Mapping[str, Any], Iterable[str]], Awaitable[None]] | None = None,
    ) -> None:
        self._secrets = secrets
        self._config_maps = config_maps
        self._prefetch = prefetch

    async def prefetch(
        self, namespace: str, raw_spec: Mapping[str, Any], extra_secrets: Iterable[str] = ()
    ) -> None:
        """Load what ``raw_spec`` references, before a pass or a cleanup reads it."""
        if self._prefetch is not None:
            await self._prefetch(namespace, raw_spec, extra_secrets)

    @staticmethod
    def _first(index: Mapping[Key, Iterable[Mapping[str, Any]]], key: Key) -> Mapping[str, Any]:
        return next(iter(index[key]), {})

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        if (namespace, name) not in self._secrets:
            raise MissingReference("SecretNotFound", f"Secret {namespace}/{name} not found")
        data = self._first(self._secrets, (namespace, name))
        if key not in data:
            raise MissingReference(
                "SecretKeyNotFound", f"Secret {namespace}/{name} has no key {key!r}"
            )
        try:
            return base64.b64decode(data[key], validate=True).decode("utf-8").strip()
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
            raise MissingReference(
                "SecretKeyInvalid", f"Secret {namespace}/{name} key {key!r} is not UTF-8 text"
            ) from None

    def config_map_value(self, namespace: str, name: str, key: str) -> str:
        if (namespace, name) not in self._config_maps:
            raise MissingReference("ConfigMapNotFound", f"ConfigMap {namespace}/{name} not found")
        data = self._first(self._config_maps, (namespace, name))
        if key not in data:
            raise MissingReference(
                "ConfigMapKeyNotFound", f"ConfigMap {namespace}/{name} has no key {key!r}"
            )
        return str(data[key])


# -- workers ----------------------------------------------------------------------------------


@dataclass
class Worker:
    """The single place one resource is reconciled from."""

    key: Key
    wake_event: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    status: dict[str, Any] | None = None
    generation: int | None = None
    backoff: float = _FIRST_BACKOFF
    suspended_logged: bool = False
    install_record: str | None = None
    retire_failures: int = 0  # passes in a row that could not delete the previous filter
    # The last pricing check (generation, monotonic time) and the one that may be running.
    pricing_checked: tuple[int | None, float] | None = None
    pricing_task: asyncio.Task[None] | None = None
    # Which resources own an upstream object, e.g. ("pipeline", url, id) (the kopf index).
    owners: Callable[[tuple[str, ...]], Iterable[Key]] = lambda _: ()

    def wake(self) -> None:
        self.wake_event.set()


class Runtime:
    """Everything that lives as long as the operator: HTTP pool, memory, workers, locks."""

    def __init__(
        self,
        settings: Settings,
        *,
        kube: KubeApi | None,
        emit: EmitFn,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.kube = kube
        self.emit = emit
        # For filter downloads; the upstreams each get a pool of their own (``http_for``).
        self.http = http or httpx.AsyncClient(
            timeout=settings.http_timeout, verify=shared_context()
        )
        self._pools: dict[str, httpx.AsyncClient] = {}
        self.memory = InstallMemory()
        self.workers: dict[Key, Worker] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # A restarted Pipelines or Open WebUI wakes its resources at once (probes.py).
        self.probes = UpstreamProbes(self.http_for, lambda key: self.wake(*key))
        # One HTTP pool per Open WebUI URL, reused by every pass.
        self.open_webui = OpenWebUIConnections(settings.http_timeout)
        # Open WebUI's ratings to Langfuse scores, one task per resource (feedback_sync.py).
        self.feedback = FeedbackSyncs(
            client_for=self.open_webui.client,
            http_for=self.http_for,
            store=SyncPointStore(kube),
            publish=self._publish_feedback,
            timeout=settings.http_timeout,
            max_backoff=settings.max_backoff,
        )
        self.upstreams = Upstreams(
            pipelines=lambda url, key: PipelinesClient(
                url, key, http=self.http_for(url), timeout=settings.http_timeout
            ),
            langfuse=lambda host: LangfuseClient(
                host, http=self.http_for(host), timeout=settings.http_timeout
            ),
            download=self.download,
            connection=self.open_webui,
            lock_for=self.lock_for,
        )

    def http_for(self, url: str) -> httpx.AsyncClient:
        """The HTTP pool of one upstream (scheme, host and port), reused by every pass and
        probe. One shared pool kept too few connections for 20 Pipelines servers and Langfuse
        (a new connection per pass, bench/operator_scale.md), and scans all its connections
        on every request; a pool per upstream keeps a few, and finds one at once."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        pool = self._pools.get(origin)
        if pool is None or pool.is_closed:
            pool = self._pools[origin] = httpx.AsyncClient(
                timeout=self.settings.http_timeout,
                verify=shared_context(),
                limits=httpx.Limits(max_keepalive_connections=10, keepalive_expiry=60),
            )
        return pool

    async def close_pools(self) -> None:
        """Close every upstream pool (the next call opens a new one)."""
        await self.feedback.aclose()
        await self.probes.aclose()
        await self.open_webui.aclose()
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()

    def lock_for(self, url: str) -> asyncio.Lock:
        """One write lock per Pipelines server (it has none, and uploads reload everything)."""
        return self._locks.setdefault(url.rstrip("/"), asyncio.Lock())

    async def download(self, url: str) -> bytes:
        """Fetch a filter file ourselves (``sha256`` pinned sources are checked, then uploaded)."""
        try:
            response = await self.http.get(url, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise DownloadError(
                f"could not download the filter ({type(exc).__name__})", temporary=True
            ) from None
        if response.status_code >= 500:
            raise DownloadError(
                f"downloading the filter answered HTTP {response.status_code}", temporary=True
            )
        if response.status_code >= 400:
            raise DownloadError(
                f"downloading the filter answered HTTP {response.status_code}", temporary=False
            )
        return response.content

    async def aclose(self) -> None:
        await self.close_pools()
        await self.http.aclose()
        if self.kube is not None:
            await self.kube.aclose()

    # -- triggers ---------------------------------------------------------------------------

    def wake(self, namespace: str, name: str) -> bool:
        worker = self.workers.get((namespace, name))
        if worker is None:
            return False
        worker.wake()
        return True

    def spec_changed(self, namespace: str, name: str, generation: int | None) -> None:
        """A watch event for a resource: wake its worker when the spec (generation) moved."""
        worker = self.workers.get((namespace, name))
        if worker is not None and generation is not None and generation != worker.generation:
            worker.wake()

    # -- the worker loop ----------------------------------------------------------------------

    async def run_worker(
        self,
        body: Mapping[str, Any],
        reader: IndexReader,
        *,
        stopped: Callable[[], bool],
        wait_stopped: Callable[[], Awaitable[Any]],
        owners: Callable[[tuple[str, ...]], Iterable[Key]] = lambda _: (),
    ) -> None:
        """Reconcile one resource until it is deleted or the operator stops.

        ``body`` is kopf's live view of the resource (updated in place by the watch).
        """
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        worker = Worker(key=key, status=dict(body.get("status") or {}), owners=owners)
        self.workers[key] = worker
        annotations = meta.get("annotations") or {}
        worker.install_record = annotations.get(INSTALL_ANNOTATION)
        targets.remember_install(worker.install_record, self.memory)
        try:
            while not stopped():
                worker.wake_event.clear()
                try:
                    delay = await self.pass_once(worker, body, reader)
                except Exception as exc:  # a bug must not end the worker for good
                    # Only the type at INFO and above: a message could quote an upstream value.
                    logger.error(
                        "%s/%s: pass failed unexpectedly (%s); retrying", *key, type(exc).__name__
                    )
                    logger.debug("pass failure", exc_info=True)
                    delay = worker.backoff
                    worker.backoff = min(worker.backoff * 2, self.settings.max_backoff)
                await self._sleep(worker, delay, wait_stopped)
        finally:
            if self.workers.get(key) is worker:
                del self.workers[key]
                self.probes.forget(key)
                self.feedback.forget(key)
                if worker.pricing_task is not None:
                    worker.pricing_task.cancel()

    @staticmethod
    async def _sleep(
        worker: Worker, delay: float, wait_stopped: Callable[[], Awaitable[Any]]
    ) -> None:
        wake = asyncio.ensure_future(worker.wake_event.wait())
        stop = asyncio.ensure_future(wait_stopped())
        try:
            await asyncio.wait({wake, stop}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (wake, stop):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def pass_once(
        self, worker: Worker, body: Mapping[str, Any], reader: IndexReader
    ) -> float:
        """One reconcile pass; returns how long to sleep before the next one."""
        namespace, name = worker.key
        async with worker.lock:
            meta = body["metadata"]
            if meta.get("deletionTimestamp"):
                self.feedback.forget(worker.key)
                return 3600.0  # the finalizer's cleanup handler takes over
            generation = int(meta.get("generation") or 0)
            raw_spec = dict(body.get("spec") or {})
            worker.generation = generation
            ref = ResourceRef(namespace, name, generation)
            if raw_spec.get("suspend"):
                self.feedback.forget(worker.key)
                await self._mark_suspended(worker, ref, body)
                return _resync_seconds(raw_spec)
            worker.suspended_logged = False
            await reader.prefetch(
                namespace, raw_spec, targets.record_secret_names(worker.install_record)
            )
            result = await reconcile(
                ref,
                raw_spec,
                worker.status,
                reader=reader,
                upstreams=self.upstreams,
                memory=self.memory,
                now=utc_now(),
                pipeline_id_holder=_pipeline_id_holder(worker, namespace, name, raw_spec),
            )
            status_written = await self._publish(worker, body, result, reader)
            self._probe(worker.key, result, reader)
            await self._sync_feedback(worker, body, result, reader)
        if not status_written:
            # Backs off like any temporary error: a status write that keeps failing (RBAC,
            # a webhook) must not re-run every upstream call every 2 s.
            delay = max(_STATUS_RETRY_SECONDS, worker.backoff)
            worker.backoff = min(delay * 2, self.settings.max_backoff)
            return delay
        if result.outcome == "temporary":
            delay = worker.backoff
            worker.backoff = min(worker.backoff * 2, self.settings.max_backoff)
            return delay
        worker.backoff = _FIRST_BACKOFF
        resync = spread(
            result.spec.resync_seconds if result.spec else _resync_seconds(raw_spec), worker.key
        )
        # A step that retries on its own schedule (a filter that did not load) wakes it sooner.
        return min(resync, result.retry_in) if result.retry_in is not None else resync

    def _probe(self, key: Key, result: ReconcileResult, reader: IndexReader) -> None:
        """Probe the upstreams this resource's filter now works through (``probes``)."""
        spec = result.spec
        kept: set[tuple[str, str]] = set()
        installed = any(
            c.get("type") == cond.FILTER_INSTALLED and c.get("status") == "True"
            for c in result.status.get("conditions") or []
        )
        if spec is not None and installed:
            if spec.pipelines is not None:
                try:
                    api_key = reader.secret_value(
                        key[0], spec.pipelines.api_key.name, spec.pipelines.api_key.key
                    )
                except MissingReference:
                    pass
                else:
                    self.probes.track_pipelines(key, spec.pipelines.url, api_key, spec.filter_id)
                    kept.add(("pipelines", spec.pipelines.url))
            if spec.open_webui is not None:
                self.probes.track_open_webui(key, spec.open_webui.url)
                kept.add(("open-webui", spec.open_webui.url))
        self.probes.forget(key, keep=frozenset(kept))

    async def _sync_feedback(
        self,
        worker: Worker,
        body: Mapping[str, Any],
        result: ReconcileResult,
        reader: IndexReader,
    ) -> None:
        """After a pass: start, update or stop the resource's feedback sync
        (``feedback_sync``), and check which traced models Langfuse cannot price (``pricing``).

        Both run once the Langfuse keys were verified (a wrong key would only fail every call)
        and go on between passes; called under the worker's lock."""
        key = worker.key
        spec = result.spec
        verified = any(
            c.get("type") == cond.CREDENTIALS_VALID and c.get("status") == "True"
            for c in result.status.get("conditions") or []
        )
        access: Access | None = None
        if spec is not None and verified:
            try:
                access = access_for(key[0], spec, reader)
            except MissingReference:
                access = None
        if spec is not None and access is not None:
            self._check_pricing(worker, spec, access)
            target = target_for(str(body["metadata"].get("uid") or ""), spec, access)
            if target is not None:
                self.feedback.track(key, target, (worker.status or {}).get("feedback"))
                return
        if spec is not None and not spec.syncs_feedback:
            self.feedback.forget(key)
            old = dict(worker.status or {})
            if "feedback" in old:  # turned off: its counts no longer say anything
                await self._write_status(
                    worker, old, {k: v for k, v in old.items() if k != "feedback"}
                )

    def _check_pricing(self, worker: Worker, spec: LangfuseTracingSpec, access: Access) -> None:
        """Report the traced models the Langfuse project has no price for, in the background:
        after a spec change, then every ``PRICING_CHECK_SECONDS``."""
        now = time.monotonic()
        due = worker.pricing_checked is None or (
            worker.pricing_checked[0] != worker.generation
            or now - worker.pricing_checked[1] >= PRICING_CHECK_SECONDS
        )
        running = worker.pricing_task is not None and not worker.pricing_task.done()
        if not due or running or spec.open_webui is None:
            return
        worker.pricing_checked = (worker.generation, now)
        client = self.open_webui.client(spec.open_webui.url, access.auth)

        async def check() -> None:
            status = await check_pricing(
                spec,
                client,
                self.http_for(spec.langfuse.host),
                access.public_key,
                access.secret_key,
                http_timeout=self.settings.http_timeout,
            )
            if status is not None:
                await self._publish_part(worker.key, "pricing", status)

        worker.pricing_task = asyncio.get_running_loop().create_task(check())

    async def _publish_feedback(self, key: Key, feedback_status: dict[str, Any]) -> bool:
        return await self._publish_part(key, "feedback", feedback_status)

    async def _publish_part(self, key: Key, part: str, value: dict[str, Any]) -> bool:
        """Write one part of the status that a background task owns (``feedback``,
        ``pricing``), merged into the worker's status; only when it changed."""
        worker = self.workers.get(key)
        if worker is None:
            return False
        async with worker.lock:
            old = dict(worker.status or {})
            if old.get(part) == value:
                return True
            return await self._write_status(worker, old, {**old, part: value})

    async def _mark_suspended(
        self, worker: Worker, ref: ResourceRef, body: Mapping[str, Any]
    ) -> None:
        if not worker.suspended_logged:
            logger.info("%s/%s: suspended; upstream left as it is", *worker.key)
            worker.suspended_logged = True
        old = dict(worker.status or {})
        conditions = [cond.Condition.from_wire(c) for c in old.get("conditions") or []]
        conditions = cond.set_condition(
            conditions,
            cond.Condition(
                cond.RECONCILING,
                "False",
                "Suspended",
                "spec.suspend is true: nothing is reconciled",
                observed_generation=ref.generation,
            ),
            now=utc_now(),
        )
        new = {
            **old,
            "observedGeneration": ref.generation,
            "conditions": [c.to_wire() for c in conditions],
        }
        if new != old:
            await self._write_status(worker, old, new)

    async def _publish(
        self,
        worker: Worker,
        body: Mapping[str, Any],
        result: ReconcileResult,
        reader: IndexReader,
    ) -> bool:
        """Log, post Events, write status and the install record; False if status failed."""
        namespace, name = worker.key
        for action in result.writes:
            logger.info("%s/%s: %s", namespace, name, action)
        if result.writes:
            self.emit(body, "Normal", "Synced", "; ".join(result.writes))
        for old, new in result.transitions:
            if new.type in (cond.RECONCILING, cond.STALLED):
                continue
            was = old.status if old else "(none)"
            logger.info(
                "%s/%s: %s %s->%s (%s) %s",
                namespace,
                name,
                new.type,
                was,
                new.status,
                new.reason,
                new.message,
            )
            # Events: every Ready transition, and each new problem at its source (not the
            # valves' "blocked by" follow-up, which Ready already names).
            if new.type == cond.READY or (
                new.status != "True" and new.reason not in _CONSEQUENTIAL_REASONS
            ):
                kind = "Normal" if new.status == "True" else "Warning"
                self.emit(body, kind, new.reason, f"{new.type}: {new.message}"[:1000])
        # The install record first: whoever sees Ready (a person, a test, a restarted
        # operator) also sees what was installed. It moves only once the previous filter is
        # gone, so a failed removal is tried again instead of being forgotten.
        if result.spec is not None:
            record = targets.install_record(result.spec, self.memory)
            if (
                record is not None
                and record != worker.install_record
                and await self._retire_previous(worker, body, result, reader)
            ):
                await self._write_install_record(worker, record)
        written = True
        if result.status_changed:
            written = await self._write_status(worker, worker.status or {}, result.status)
        return written

    async def _retire_previous(
        self,
        worker: Worker,
        body: Mapping[str, Any],
        result: ReconcileResult,
        reader: IndexReader,
    ) -> bool:
        """Delete the filter this resource installed before a pipeline id or URL change.

        False when that failed (it is tried again at the next pass); True when done or when
        there was nothing to delete."""
        spec = result.spec
        read = targets.read_record(worker.install_record)
        if spec is None or read is None:
            return True
        module, data = read
        previous = module.recorded_place(data)
        if previous == targets.place(spec):
            return True
        if spec.deletion_policy != "Delete" or any(
            owner != worker.key for owner in worker.owners(previous)
        ):
            return True
        namespace, name = worker.key
        try:
            done = await module.retire(
                ResourceRef(namespace, name, 0),
                spec,
                data,
                reader=reader,
                upstreams=self.upstreams,
                memory=self.memory,
            )
        except (PipelinesError, FunctionsError, OpenWebUIError, MissingReference) as exc:
            worker.retire_failures += 1
            message = f"could not delete the previous filter {previous[2]} at {previous[1]}: {exc}"
            if worker.retire_failures >= RETIRE_ATTEMPTS:
                # The old server may be gone for good (a move to a new Pipelines): stop calling
                # it on every pass, and say what may be left.
                worker.retire_failures = 0
                message = f"{message}; gave up after {RETIRE_ATTEMPTS} passes: delete it by hand"
                logger.warning("%s/%s: %s", namespace, name, message)
                self.emit(body, "Warning", "PreviousFilterAbandoned", message)
                return True
            logger.warning("%s/%s: %s", namespace, name, message)
            if worker.retire_failures == 1:  # one Event, not one per pass
                self.emit(body, "Warning", "PreviousFilterKept", f"{message}; tried again")
            return False
        worker.retire_failures = 0
        if done:
            logger.info("%s/%s: %s", namespace, name, done)
            self.emit(body, "Normal", "Synced", done)
        return True

    async def _write_install_record(self, worker: Worker, record: str) -> None:
        if self.kube is not None:
            try:
                await self.kube.patch_annotations(*worker.key, {INSTALL_ANNOTATION: record})
            except KubeError as exc:
                logger.warning("%s/%s: could not record the install: %s", *worker.key, exc)
                return
        worker.install_record = record

    async def _write_status(
        self, worker: Worker, old: Mapping[str, Any], new: dict[str, Any]
    ) -> bool:
        if self.kube is None:
            worker.status = new
            return True
        patch: dict[str, Any] = dict(new)
        for stale in set(old) - set(new):
            patch[stale] = None  # merge-patch deletes keys set to null
        try:
            updated = await self.kube.patch_status(*worker.key, patch)
        except KubeError as exc:
            logger.warning("%s/%s: could not write status: %s", *worker.key, exc)
            return False
        worker.status = dict(updated.get("status") or new)
        return True

    # -- deletion -----------------------------------------------------------------------------

    async def cleanup(
        self,
        body: Mapping[str, Any],
        reader: IndexReader,
        *,
        filter_shared: bool,
        connection_shared: bool,
    ) -> CleanupResult:
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        worker = self.workers.get(key)
        lock = worker.lock if worker is not None else asyncio.Lock()
        async with lock:
            raw_spec = dict(body.get("spec") or {})
            if raw_spec.get("suspend"):
                return CleanupResult(True, False, "suspended: upstream left as it is")
            try:
                await reader.prefetch(key[0], raw_spec)
                result = await cleanup(
                    ResourceRef(key[0], key[1], int(meta.get("generation") or 0)),
                    raw_spec,
                    status=body.get("status") or {},
                    reader=reader,
                    upstreams=self.upstreams,
                    memory=self.memory,
                    filter_shared=filter_shared,
                    connection_shared=connection_shared,
                )
            except Exception as exc:  # noqa: BLE001 - a bug must not escape the delete bound
                # Only the type, as for a pass: an exception's text may quote what it was handed.
                what = type(exc).__name__
                logger.error("%s/%s: cleanup failed unexpectedly (%s); retrying", *key, what)
                return CleanupResult(False, True, f"cleanup failed unexpectedly ({what})")
        for action in result.writes:
            logger.info("%s/%s: %s", key[0], key[1], action)
        if result.left_behind is not None:
            logger.warning("%s/%s: deleted, but left behind %s", *key, result.left_behind)
            self.emit(body, "Warning", "CleanupIncomplete", f"left behind {result.left_behind}")
        return result


# The first element of the sharing keys that name a filter (``targets.place``).
FILTER_KINDS = (targets.pipelines.KIND, targets.function.KIND)


def _pipeline_id_holder(
    worker: Worker, namespace: str, name: str, raw_spec: Mapping[str, Any]
) -> Key | None:
    """Another resource with the same pipeline id on the same server that keeps it.

    Of two such resources the one first in (namespace, name) order keeps the id, so both
    operators' views agree without any extra state; the other waits for its spec to change
    or for the holder to go (its deletion wakes the other).
    """
    for key in sharing_keys(namespace, name, raw_spec):
        if key[0] not in FILTER_KINDS:
            continue
        others = sorted(owner for owner in worker.owners(key) if owner != worker.key)
        if others and others[0] < worker.key:
            return others[0]
    return None


# Resyncs of different resources are spread over the last tenth of the interval.
RESYNC_SPREAD = 0.1


def spread(resync: float, key: Key) -> float:
    """``resync`` shortened by up to a tenth, by an amount fixed per resource: resources
    created together (an operator's cold start, a GitOps sync) do not all resync in the same
    second, period after period, and a resource still resyncs within its interval."""
    digest = hashlib.sha256("/".join(key).encode()).digest()
    fraction = int.from_bytes(digest[:4], "big") / 2**32
    return resync * (1 - RESYNC_SPREAD * fraction)


def _resync_seconds(raw_spec: Mapping[str, Any]) -> float:
    from openwebui_langfuse.models import DEFAULT_RESYNC_SECONDS, SpecError, parse_duration

    try:
        return max(parse_duration(str(raw_spec.get("resyncInterval") or "5m")), 10.0)
    except SpecError:
        return DEFAULT_RESYNC_SECONDS


def sharing_keys(namespace: str, name: str, raw_spec: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Index keys naming the upstream objects a resource owns (for the deletion check)."""
    try:
        spec = parse_spec(raw_spec, namespace=namespace, name=name)
    except ValueError:
        return []
    keys: list[tuple[str, ...]] = [targets.place(spec)]
    if spec.open_webui is not None and spec.open_webui.connection_url is not None:
        # Open WebUI matches connections by their normalised URL (with or without /v1, any
        # letter case), so two resources naming one connection differently still share it.
        keys.append(
            (
                "connection",
                normalise_connection_url(spec.open_webui.url),
                normalise_connection_url(spec.open_webui.connection_url),
            )
        )
    return keys
