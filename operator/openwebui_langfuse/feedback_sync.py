"""The feedback sync: Open WebUI's message ratings become Langfuse scores (``spec.feedback``).

One task per resource, started after a pass that verified the Langfuse keys and stopped when
the resource goes or turns the sync off (``Runtime``). Each poll reads Open WebUI's feedback id
list (one request, shared by every resource on the same Open WebUI with the same admin:
``SharedLists``), reads the few feedbacks that are new or changed, and upserts or deletes their
scores (``feedback`` says which and what they become). Why polling: ``feedback``'s docstring.

What the sync has done (the ``feedback.SyncPoint``) lives in a ConfigMap the resource owns,
``<name>-feedback-sync``, written only when it changed: a restarted operator (or the other
replica taking over) goes on from there, so nothing is sent twice as a second score and no
deletion is missed; the scores are addressed, so what is sent again only rewrites the same
score. Failures are retried with backoff and say why in ``status.feedback``; the watermark does
not move past a feedback that failed, so none is dropped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from openwebui_langfuse import feedback
from openwebui_langfuse.clients.langfuse_scores import LangfuseScores, ScoreError
from openwebui_langfuse.clients.openwebui import (
    ApiKeyAuth,
    CredentialsAuth,
    OpenWebUIClient,
    OpenWebUIError,
)
from openwebui_langfuse.clients.openwebui_feedback import (
    FeedbackApi,
    FeedbackList,
    FeedbackUnavailable,
)
from openwebui_langfuse.kube import KubeApi, KubeError
from openwebui_langfuse.models import GROUP, KIND, VERSION, LangfuseTracingSpec
from openwebui_langfuse.passes import ReferenceReader, langfuse_keys, openwebui_credentials

logger = logging.getLogger("openwebui_langfuse.feedback")

Key = tuple[str, str]
State = Literal["Syncing", "Failing", "Unavailable", "RatingDisabled"]
SYNC_POINT_KEY = "sync-point.json.gz"
SYNC_POINT_LABELS = {
    "app.kubernetes.io/name": "openwebui-langfuse",
    "app.kubernetes.io/component": "feedback-sync",
    "app.kubernetes.io/created-by": "openwebui-langfuse-operator",
}
_FIRST_BACKOFF = 2.0


def sync_point_name(resource_name: str) -> str:
    return f"{resource_name}-feedback-sync"


@dataclass(frozen=True)
class FeedbackTarget:
    """What one resource's polls need, from its last pass (secrets kept out of ``repr``)."""

    uid: str
    open_webui_url: str
    auth: ApiKeyAuth | CredentialsAuth
    langfuse_host: str
    public_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    models: tuple[str, ...]
    poll_seconds: float
    slow_seconds: float  # the resource's resync interval: the pace when nothing can be done


# -- the sync point's ConfigMap ------------------------------------------------------------------


class SyncPointStore:
    """Each resource's sync point in its own ConfigMap; in memory when there is no API (tests)."""

    def __init__(self, kube: KubeApi | None) -> None:
        self._kube = kube
        self._memory: dict[Key, bytes] = {}

    async def load(self, key: Key, uid: str) -> feedback.SyncPoint:
        if self._kube is None:
            raw = self._memory.get(key)
            return feedback.SyncPoint.from_bytes(raw) if raw else feedback.SyncPoint()
        name = sync_point_name(key[1])
        found = await self._kube.read("ConfigMap", key[0], name)
        if found is None:
            return feedback.SyncPoint()
        owners = (found.get("metadata") or {}).get("ownerReferences") or []
        if not any(o.get("uid") == uid for o in owners if isinstance(o, Mapping)):
            raise KubeError(
                f"ConfigMap {key[0]}/{name} exists and is not this resource's: rename or "
                "delete it, the feedback sync keeps its place there"
            )
        encoded = (found.get("binaryData") or {}).get(SYNC_POINT_KEY)
        if not encoded:
            return feedback.SyncPoint()
        try:
            return feedback.SyncPoint.from_bytes(base64.b64decode(encoded))
        except ValueError as exc:
            # Start over rather than stop: every score is addressed, so a full pass rewrites
            # the same scores; only deletions made while it was unreadable can be missed.
            logger.warning("%s/%s: the feedback sync point is unreadable (%s)", *key, exc)
            return feedback.SyncPoint()

    async def save(self, key: Key, uid: str, point: feedback.SyncPoint) -> None:
        raw = point.to_bytes()
        if self._kube is None:
            self._memory[key] = raw
            return
        owner = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": key[1],
            "uid": uid,
            "blockOwnerDeletion": False,
        }
        await self._kube.put_config_map_data(
            key[0],
            sync_point_name(key[1]),
            {SYNC_POINT_KEY: base64.b64encode(raw).decode("ascii")},
            labels=SYNC_POINT_LABELS,
            owner=owner,
        )


# -- the id list, one request per Open WebUI and admin ------------------------------------------


class SharedLists:
    """The feedback id list of each Open WebUI (per admin identity), read at most once per
    ``max_age`` whatever the number of resources polling it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lists: dict[tuple[str, str], tuple[float, FeedbackList]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def get(
        self, url: str, auth: ApiKeyAuth | CredentialsAuth, api: FeedbackApi, max_age: float
    ) -> FeedbackList:
        key = (url.rstrip("/"), _identity(auth))
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._lists.get(key)
            if cached is not None and self._clock() - cached[0] < max_age:
                return cached[1]
            listing = await api.list_ids()
            self._lists[key] = (self._clock(), listing)
            return listing


def _identity(auth: ApiKeyAuth | CredentialsAuth) -> str:
    """Who reads the list, as a digest: two resources share a list only with the same admin."""
    secret = auth.api_key if isinstance(auth, ApiKeyAuth) else f"{auth.email}\0{auth.password}"
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


# -- one poll ------------------------------------------------------------------------------------


@dataclass
class PollResult:
    state: State
    message: str | None = None
    changed: bool = False  # a score was sent or deleted
    # Feedbacks were read: the watermark moved past them, worth keeping, or a restart reads
    # them (every feedback, if nothing was ever saved) again. A quiet poll reads none.
    read_some: bool = False
    failed: bool = False  # something is retried: back off


async def poll(
    target: FeedbackTarget,
    point: feedback.SyncPoint,
    *,
    client: OpenWebUIClient,
    scores: LangfuseScores,
    lists: SharedLists,
    clock: Callable[[], float] = time.time,
) -> PollResult:
    """One poll: bring the scores in Langfuse in line with the feedback in Open WebUI; updates
    ``point`` in place."""
    api = FeedbackApi(client)
    try:
        listing = await lists.get(
            target.open_webui_url, target.auth, api, max_age=target.poll_seconds * 0.9
        )
    except FeedbackUnavailable as exc:
        return PollResult("Unavailable", str(exc))
    except OpenWebUIError as exc:
        return PollResult("Failing", f"reading Open WebUI's feedback: {exc}", failed=True)
    now = listing.server_second if listing.server_second is not None else int(clock())
    point.rescope(target.models)
    todo = feedback.plan(point, listing.rows, now)
    result = PollResult("Syncing")
    for feedback_id in todo.forgotten:
        del point.untraced[feedback_id]
        result.changed = True
    failures: list[str] = []
    for feedback_id in todo.deleted:
        try:
            await _delete_scores(scores, feedback_id)
        except ScoreError as exc:
            failures.append(str(exc))
            continue
        del point.sent[feedback_id]
        result.changed = True
    result.read_some = bool(todo.fetch or todo.forgotten)
    for feedback_id in todo.fetch:
        try:
            if await _sync_one(api, scores, target, point, feedback_id, now):
                result.changed = True
        except (ScoreError, OpenWebUIError) as exc:
            failures.append(str(exc))
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        result.state, result.message, result.failed = "Failing", failures[0] + more, True
    else:
        point.watermark = max(point.watermark, feedback.next_watermark(now))
    return result


async def _sync_one(
    api: FeedbackApi,
    scores: LangfuseScores,
    target: FeedbackTarget,
    point: feedback.SyncPoint,
    feedback_id: str,
    now: int,
) -> bool:
    """Read one feedback and send, update or delete its scores; True when Langfuse changed."""
    found = await api.get(feedback_id)
    previous = point.sent.get(feedback_id)
    mapped = feedback.scores_for(found, target.models) if found is not None else "gone"
    if isinstance(mapped, str):  # gone since the list, another resource's model, unrated
        point.untraced.pop(feedback_id, None)
        if previous is None:
            return False
        await _delete_scores(scores, feedback_id)
        del point.sent[feedback_id]
        return True
    assert found is not None
    stamp = found.get("updated_at")
    stamp = stamp if isinstance(stamp, int) else now
    digest = feedback.digest(mapped)
    if previous is not None and previous.digest == digest:
        point.sent[feedback_id] = feedback.Seen(stamp, digest)
        return False
    if previous is None:
        traced = await scores.traced(mapped[0].trace_id, mapped[0].observation_id)
        if traced is False:
            point.untraced[feedback_id] = stamp
            return False
    for score in mapped:
        await scores.upsert(score.body())
    if previous is not None:
        for stale in feedback.stale_score_ids(feedback_id, mapped):
            await scores.delete(stale)
    point.sent[feedback_id] = feedback.Seen(stamp, digest)
    point.untraced.pop(feedback_id, None)
    return True


async def _delete_scores(scores: LangfuseScores, feedback_id: str) -> None:
    for score_id in feedback.stale_score_ids(feedback_id):
        await scores.delete(score_id)


def feedback_status(
    result: PollResult, point: feedback.SyncPoint, previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``status.feedback`` after a poll: counts and state; ``lastSyncTime`` moves only when a
    score was sent or deleted, so a quiet poll writes nothing."""
    status: dict[str, Any] = {
        "state": result.state,
        "scored": len(point.sent),
        "untraced": len(point.untraced),
    }
    if result.message:
        status["message"] = result.message[:1000]
    last = (previous or {}).get("lastSyncTime")
    if result.changed or last is None and result.state == "Syncing":
        last = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if last is not None:
        status["lastSyncTime"] = last
    return status


# -- the tasks -----------------------------------------------------------------------------------

# Writes ``status.feedback`` of a resource; False when the write failed (tried again later).
Publish = Callable[[Key, dict[str, Any]], Awaitable[bool]]


@dataclass
class _Sync:
    target: FeedbackTarget
    task: asyncio.Task[None] | None = None
    published: dict[str, Any] | None = None
    # Whether Open WebUI shows its rating buttons, read once per ``slow_seconds`` (a UI switch:
    # not worth a request per poll).
    rating_enabled: bool | None = None
    rating_read_at: float | None = None


class FeedbackSyncs:
    """The feedback syncs of one operator process."""

    def __init__(
        self,
        *,
        client_for: Callable[[str, ApiKeyAuth | CredentialsAuth], OpenWebUIClient],
        http_for: Callable[[str], httpx.AsyncClient],
        store: SyncPointStore,
        publish: Publish,
        timeout: float,
        max_backoff: float,
    ) -> None:
        self._client_for = client_for
        self._http_for = http_for
        self._store = store
        self._publish = publish
        self._timeout = timeout
        self._max_backoff = max_backoff
        self._lists = SharedLists()
        self._syncs: dict[Key, _Sync] = {}

    def track(
        self, key: Key, target: FeedbackTarget, published: Mapping[str, Any] | None = None
    ) -> None:
        """Sync ``key``'s feedback with ``target`` (the latest pass's view: new keys, models)."""
        sync = self._syncs.get(key)
        if sync is not None and sync.target.uid == target.uid:
            sync.target = target
            return
        self.forget(key)
        sync = self._syncs[key] = _Sync(target, published=dict(published or {}) or None)
        sync.task = asyncio.get_running_loop().create_task(self._run(key, sync))

    def forget(self, key: Key) -> None:
        sync = self._syncs.pop(key, None)
        if sync is not None and sync.task is not None:
            sync.task.cancel()

    async def aclose(self) -> None:
        tasks = [s.task for s in self._syncs.values() if s.task is not None]
        self._syncs.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, key: Key, sync: _Sync) -> None:
        backoff = _FIRST_BACKOFF
        point: feedback.SyncPoint | None = None
        dirty = False
        while True:
            target = sync.target
            try:
                if point is None:
                    point = await self._store.load(key, target.uid)
                result = await self._poll_once(sync, point)
                dirty = dirty or result.changed or result.read_some
                if dirty:
                    await self._store.save(key, target.uid, point)
                    dirty = False
            except KubeError as exc:
                result = PollResult("Failing", f"the feedback sync point: {exc}", failed=True)
            except Exception as exc:  # a bug must not end the sync for good
                logger.error("%s/%s: feedback poll failed (%s)", *key, type(exc).__name__)
                logger.debug("feedback poll failure", exc_info=True)
                result = PollResult("Failing", f"unexpected {type(exc).__name__}", failed=True)
            # Before the sync point is read, counts are unknown: reported as 0 with the reason.
            await self._report(key, sync, result, point or feedback.SyncPoint())
            if result.failed:
                delay, backoff = backoff, min(backoff * 2, self._max_backoff)
            elif result.state in ("Unavailable", "RatingDisabled"):
                delay, backoff = target.slow_seconds, _FIRST_BACKOFF
            else:
                delay, backoff = target.poll_seconds, _FIRST_BACKOFF
            await asyncio.sleep(delay)

    async def _poll_once(self, sync: _Sync, point: feedback.SyncPoint) -> PollResult:
        target = sync.target
        scores = LangfuseScores(
            target.langfuse_host,
            target.public_key,
            target.secret_key,
            http=self._http_for(target.langfuse_host),
            timeout=self._timeout,
        )
        async with self._client_for(target.open_webui_url, target.auth) as client:
            result = await poll(target, point, client=client, scores=scores, lists=self._lists)
            if result.state == "Syncing":
                now = time.monotonic()
                if sync.rating_read_at is None or now - sync.rating_read_at >= target.slow_seconds:
                    sync.rating_enabled = await _rating_enabled(client)
                    sync.rating_read_at = now
                if sync.rating_enabled is False and not result.failed:
                    result.state = "RatingDisabled"
                    result.message = (
                        "message rating is off in Open WebUI (Admin Settings > Interface, "
                        "ENABLE_MESSAGE_RATING): no new feedback is expected; existing feedback "
                        "is still synced"
                    )
            return result

    async def _report(
        self, key: Key, sync: _Sync, result: PollResult, point: feedback.SyncPoint
    ) -> None:
        status = feedback_status(result, point, sync.published)
        if status == sync.published:
            return
        if (sync.published or {}).get("state") != status["state"]:
            level = logging.INFO if status["state"] == "Syncing" else logging.WARNING
            logger.log(level, "%s/%s: feedback %s %s", *key, status["state"], result.message or "")
        if await self._publish(key, status):
            sync.published = status


async def _rating_enabled(client: OpenWebUIClient) -> bool | None:
    try:
        return await FeedbackApi(client).rating_enabled()
    except OpenWebUIError:
        return None


@dataclass(frozen=True)
class Access:
    """A resource's way into its Open WebUI (admin auth) and Langfuse project (key pair)."""

    auth: ApiKeyAuth | CredentialsAuth
    public_key: str = field(repr=False)
    secret_key: str = field(repr=False)


def access_for(namespace: str, spec: LangfuseTracingSpec, reader: ReferenceReader) -> Access | None:
    """The admin auth of ``spec.openWebUI`` and the Langfuse keys, read from their Secrets;
    None without ``spec.openWebUI``. ``MissingReference`` when a Secret it names is missing
    (the pass reports that)."""
    if spec.open_webui is None:
        return None
    api_key, email, password = openwebui_credentials(reader, namespace, spec)
    auth: ApiKeyAuth | CredentialsAuth = (
        ApiKeyAuth(api_key) if api_key is not None else CredentialsAuth(email or "", password or "")
    )
    public_key, secret_key = langfuse_keys(reader, namespace, spec)
    return Access(auth=auth, public_key=public_key, secret_key=secret_key)


def target_for(uid: str, spec: LangfuseTracingSpec, access: Access) -> FeedbackTarget | None:
    """The feedback sync of a resource as its spec says; None when it has none
    (``spec.feedback.enabled: false``, no ``spec.openWebUI``)."""
    if not spec.syncs_feedback or spec.open_webui is None:
        return None
    return FeedbackTarget(
        uid=uid,
        open_webui_url=spec.open_webui.url,
        auth=access.auth,
        langfuse_host=spec.langfuse.host,
        public_key=access.public_key,
        secret_key=access.secret_key,
        models=spec.filter.models,
        poll_seconds=spec.feedback.poll_seconds,
        slow_seconds=spec.resync_seconds,
    )
