"""kopf wiring: the only module with kopf decorators; thin adapters over ``runtime``.

* indices: LangfuseTracings by the Secrets/ConfigMaps they reference (trigger index) and by
  the upstream objects they own (deletion must not remove what another resource still uses).
  Reconciles read references from memory, but only the referenced ones are kept there
  (``references``: fed by the watch, and by one GET the first time an object is referenced).
* one daemon per LangfuseTracing: its worker reconciles on create/resume, on spec changes, on
  referenced Secret/ConfigMap changes and every ``resyncInterval`` (see ``runtime``).
* watch-event handlers only wake workers; the deletion handler cleans up, bounded in time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import kopf

from openwebui_langfuse import targets
from openwebui_langfuse.config import Settings
from openwebui_langfuse.kopf_session import (
    bounded_session,
    connection_limit,
    trim_heap_periodically,
)
from openwebui_langfuse.kube import (
    KubeApi,
    KubeClient,
    KubeCredentials,
    KubeError,
    credentials_of,
    login_info,
)
from openwebui_langfuse.kube import login as kube_login
from openwebui_langfuse.models import GROUP, PLURAL, VERSION, referenced_names
from openwebui_langfuse.readiness import Readiness, served
from openwebui_langfuse.readiness import serve as serve_readiness
from openwebui_langfuse.references import ReferenceCache
from openwebui_langfuse.runtime import (
    FILTER_KINDS,
    INSTALL_ANNOTATION,
    IndexReader,
    Runtime,
    sharing_keys,
)

FINALIZER = "openwebui-langfuse.io/cleanup"
ANNOTATION_PREFIX = "openwebui-langfuse.io"
HANDLER_WORKER = "reconcile-worker"
HANDLER_CLEANUP = "cleanup"
HANDLER_SPEC_WATCH = "spec-watch"
HANDLER_SECRET_WATCH = "secret-watch"
HANDLER_CONFIGMAP_WATCH = "configmap-watch"
HANDLER_READINESS = "readiness"
# On the Secret the operator makes for the Pipelines key: who made it, for `kubectl get -l`.
PIPELINES_KEY_LABELS = {
    "app.kubernetes.io/name": "openwebui-langfuse",
    "app.kubernetes.io/component": "pipelines",
    "app.kubernetes.io/created-by": "openwebui-langfuse-operator",
}

LFT = (GROUP, VERSION, PLURAL)

logger = logging.getLogger("openwebui_langfuse")


# -- startup, login, shutdown -------------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """All kopf settings, each with its reason."""
    # The project's own names, not kopf's defaults (docs/design.md, "Names").
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # After its own finalizer patch kopf waits for the matching event; 5 s is plenty on a
    # healthy API server and a bound on a slow one.
    settings.persistence.consistency_timeout = 5.0
    # Events come from the workers on transitions only; kopf's per-handler INFO chatter
    # ("Handler succeeded") would post an Event on every pass.
    settings.posting.level = logging.WARNING
    # Watches: ask the server to end a watch after 5 min and give up on a silent socket a bit
    # later, so a half-dead connection is replaced instead of hanging forever.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # The first listing in pages of 200: unpaged, 5,000 Secrets of 8 KB were one 55 MB answer,
    # parsed at once, and the operator peaked at 313 MiB on its start (bench/operator_memory.md).
    settings.watching.chunk_size = 200
    # API calls kopf makes (finalizer, progress, events): 30 s, not aiohttp's 5 min default.
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    # A worker shuts its queue 0.1 s after its last event; a new event restarts it cheaply. An
    # idle worker holds its object's last body: at kopf's 5 s, a burst of unrelated Secrets
    # (5,000 of 8 KB) left the operator ~20 MB bigger for good (bench/operator_memory.md).
    settings.queueing.idle_timeout = 0.1

    op_settings: Settings = memo["settings"]
    memo["kopf_settings"] = settings  # for re-logins of the status writer
    # Give the cold start's freed heap back to the system (kopf_session.py).
    if "heap_trim" not in memo:
        memo["heap_trim"] = asyncio.get_running_loop().create_task(trim_heap_periodically())
    # Namespaced mode has no RBAC to list namespaces (least privilege); without this kopf
    # retries that listing for about a minute before falling back to the named namespaces.
    # The price: the CRD is discovered once at startup, so it must exist before the operator
    # starts (the chart installs both, CRD first; a pod restart picks up a late CRD).
    settings.scanning.disabled = not op_settings.all_namespaces
    memo["runtime"] = Runtime(
        op_settings,
        kube=KubeApi(
            lambda: memo["kube_credentials"],
            relogin=lambda: _login_credentials(memo),
            timeout=op_settings.http_timeout,
        ),
        emit=_emit,
    )


@kopf.on.startup()
async def pipelines_key(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Create the Pipelines API-key Secret once when the chart asks for it and it is absent."""
    settings: Settings = memo["settings"]
    if settings.pipelines_key_secret is None:
        return
    namespace, _sep, name = settings.pipelines_key_secret.partition("/")
    # Startup handlers run before kopf's login, so this one logs in the same way on its own.
    try:
        credentials = kube_login()
        api = KubeApi(lambda: credentials, timeout=settings.http_timeout)
        try:
            created = await api.create_secret_once(
                namespace,
                name,
                {settings.pipelines_key_secret_key: secrets.token_urlsafe(36)},
                PIPELINES_KEY_LABELS,
            )
        finally:
            await api.aclose()
    except KubeError as exc:
        # Retried by kopf (startup handlers block until they succeed): nothing can use
        # Pipelines without its key, and the message says which right or object is missing.
        raise kopf.TemporaryError(
            f"cannot create the Pipelines key Secret: {exc}", delay=5
        ) from None
    if created:
        logger.info("created the Pipelines API-key Secret %s/%s", namespace, name)


@kopf.on.startup()
async def readiness(memo: kopf.Memo, **_: Any) -> None:
    """Serve the readiness endpoint, then check that the CRD is served before kopf looks."""
    settings: Settings = memo["settings"]
    state: Readiness = memo.setdefault("readiness", Readiness())
    if settings.readiness and "readiness_server" not in memo:
        try:
            memo["readiness_server"] = await serve_readiness(settings.readiness, state)
        except OSError as exc:  # e.g. the port is taken: no retry helps
            raise kopf.PermanentError(f"cannot serve {settings.readiness}: {exc}") from None
    # Discovery is open to every authenticated user; kopf has not logged in yet (startup).
    try:
        discovery = await asyncio.to_thread(_discovery)
    except KubeError as exc:
        if exc.status != 404:
            raise kopf.TemporaryError(f"cannot read the API discovery: {exc}", delay=2) from None
        discovery = {}
    state.crd_served = served(discovery)
    if not state.crd_served:
        logger.warning("not ready: %s", state.reason())


def _discovery() -> dict[str, Any]:
    client = KubeClient(kube_login())
    try:
        return client.get(f"/apis/{GROUP}/{VERSION}")
    finally:
        client.close()


@kopf.on.login()
async def login(memo: kopf.Memo, **kwargs: Any) -> kopf.AiohttpSession | None:
    """In-cluster token, then kubeconfig (``kube.login_info``), shared with our status writer;
    kopf gets it as a session with a bounded pool (kopf_session.py says why)."""
    info = login_info(kwargs["settings"])
    if info is None:
        return None
    memo["kube_credentials"] = credentials_of(info)
    op: Settings = memo["settings"]
    limit = connection_limit(len(op.namespaces), all_namespaces=op.all_namespaces)
    return bounded_session(info, limit)


def _login_credentials(memo: kopf.Memo) -> KubeCredentials | None:
    """A fresh login for the status writer (re-reads a rotated service-account token)."""
    settings: kopf.OperatorSettings = memo["kopf_settings"]
    info = login_info(settings)
    if info is None:
        return None
    memo["kube_credentials"] = creds = credentials_of(info)
    return creds


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.aclose()
    server: aiohttp.web.AppRunner | None = memo.get("readiness_server")
    if server is not None:
        await server.cleanup()


def _emit(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    kopf.event(body, type=type_, reason=reason, message=message)  # type: ignore[arg-type]


# -- indices ------------------------------------------------------------------------------------


@kopf.on.startup()
async def reference_cache(memo: kopf.Memo, **_: Any) -> None:
    """The referenced Secrets' and ConfigMaps' data (``references``), shared by all resources:
    set before kopf copies the memo for each object."""

    async def fetch(kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        runtime: Runtime = memo["runtime"]
        assert runtime.kube is not None, "configure() gives the runtime its KubeApi"
        return await runtime.kube.read(kind, namespace, name)

    memo["references"] = ReferenceCache(fetch)


@kopf.index(*LFT)
def lft_references(
    namespace: str | None, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(namespace, kind, object name) -> resource, for every Secret/ConfigMap it reads: what
    its spec references, and the Pipelines key its install record names (to remove a filter
    it installed before it moved)."""
    ns = namespace or ""
    secrets, config_maps = referenced_names(dict(spec))
    record = (meta.get("annotations") or {}).get(INSTALL_ANNOTATION)
    secrets |= targets.record_secret_names(record)
    keys = {(ns, "Secret", s): (ns, name) for s in secrets}
    keys.update({(ns, "ConfigMap", c): (ns, name) for c in config_maps})
    return keys


@kopf.index(*LFT)
def lft_owned(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, ...], tuple[str, str]]:
    """Upstream objects (pipeline id on a server, Open WebUI connection) -> resource."""
    ns = namespace or ""
    return {key: (ns, name) for key in sharing_keys(ns, name, dict(spec))}


def _reader(memo: kopf.Memo) -> IndexReader:
    """Reads references from the cache of referenced Secrets/ConfigMaps."""
    references: ReferenceCache = memo["references"]
    return IndexReader(references.secrets, references.config_maps, prefetch=references.prefetch)


# -- triggers -----------------------------------------------------------------------------------


@kopf.on.event("configmaps", id=HANDLER_READINESS)
def watching(memo: kopf.Memo, **_: Any) -> None:
    """kopf runs no handler before the indexed LangfuseTracings are listed: the first
    ConfigMap event means ready (``readiness``: every namespace has a ConfigMap, so one comes
    at once). Secrets need not be listed yet: a pass reads what it lacks (``references``)."""
    state: Readiness | None = memo.get("readiness")
    if state is not None and not state.watching:
        state.watching = True
        logger.info("watching: ready")


@kopf.daemon(*LFT, id=HANDLER_WORKER, cancellation_timeout=5.0)
async def reconcile_worker(
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    **indices: Any,
) -> None:
    # cancellation_timeout: a pass is idempotent, so kopf may cancel it at once on deletion;
    # 5 s only bounds how long kopf waits for the cancelled task to unwind.
    runtime: Runtime = memo["runtime"]

    async def wait_stopped() -> None:
        await stopped.wait()

    owned: kopf.Index[tuple[str, ...], tuple[str, str]] = indices["lft_owned"]
    await runtime.run_worker(
        body,
        _reader(memo),
        stopped=lambda: bool(stopped),
        wait_stopped=wait_stopped,
        owners=lambda key: list(owned.get(key, [])),
    )


# The watch handlers are coroutines: they run on the event loop, as the workers they wake and
# the cache they update (kopf runs a plain function in a thread).


@kopf.on.event(*LFT, id=HANDLER_SPEC_WATCH)
async def spec_watch(
    type: str,
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    spec: kopf.Spec,
    memo: kopf.Memo,
    **indices: Any,
) -> None:
    runtime: Runtime = memo["runtime"]
    ns = namespace or ""
    # kopf has updated the index for this event: a deletion, or a spec that no longer names
    # an object, lets its data go unless another resource still references it.
    references: ReferenceCache = memo["references"]
    references.forget_unreferenced(ns, indices["lft_references"])
    if type == "DELETED":
        # kopf has already dropped the resource from its indices: a resource kept off a
        # pipeline id this one held (PipelineIdConflict) may take it now.
        owned: kopf.Index[tuple[str, ...], tuple[str, str]] = indices["lft_owned"]
        for key in sharing_keys(ns, name, dict(spec)):
            for owner in owned.get(key, []):
                runtime.wake(*owner)
        return
    runtime.spec_changed(ns, name, meta.get("generation"))


@kopf.on.event("secrets", id=HANDLER_SECRET_WATCH)
async def secret_watch(
    type: str | None,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    **indices: Any,
) -> None:
    references: ReferenceCache = memo["references"]
    runtime: Runtime = memo["runtime"]
    refs = indices["lft_references"]
    references.on_event("Secret", type, namespace or "", name, body, index=refs, wake=runtime.wake)


@kopf.on.event("configmaps", id=HANDLER_CONFIGMAP_WATCH)
async def configmap_watch(
    type: str | None,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    **indices: Any,
) -> None:
    references: ReferenceCache = memo["references"]
    runtime: Runtime = memo["runtime"]
    refs = indices["lft_references"]
    references.on_event(
        "ConfigMap", type, namespace or "", name, body, index=refs, wake=runtime.wake
    )


# -- deletion -----------------------------------------------------------------------------------


def _shared(
    index: kopf.Index[tuple[str, ...], tuple[str, str]], key: tuple[str, ...], me: tuple[str, str]
) -> bool:
    return any(owner != me for owner in index.get(key, []))


@kopf.on.delete(*LFT, id=HANDLER_CLEANUP)
async def cleanup(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    memo: kopf.Memo,
    **indices: Any,
) -> None:
    runtime: Runtime = memo["runtime"]
    lft_owned: kopf.Index[tuple[str, ...], tuple[str, str]] = indices["lft_owned"]
    ns = namespace or ""
    me = (ns, name)
    keys = sharing_keys(ns, name, dict(body.get("spec") or {}))
    filter_shared = any(_shared(lft_owned, k, me) for k in keys if k[0] in FILTER_KINDS)
    connection_shared = any(_shared(lft_owned, k, me) for k in keys if k[0] == "connection")
    result = await runtime.cleanup(
        body,
        _reader(memo),
        filter_shared=filter_shared,
        connection_shared=connection_shared,
    )
    if result.done:
        logger.info("%s/%s: deleted (%s)", namespace, name, result.message)
        return
    elapsed = _seconds_since(meta.get("deletionTimestamp"))
    remaining = runtime.settings.delete_timeout - elapsed
    if result.temporary and remaining > 0:
        raise kopf.TemporaryError(f"cleanup waits: {result.message}", delay=min(2.0, remaining))
    message = (
        f"released the finalizer without cleaning up after {elapsed:.0f}s: {result.message}; "
        "remove what is left (the filter in Pipelines, the connection in Open WebUI) by hand"
    )
    logger.warning("%s/%s: %s", namespace, name, message)
    runtime.emit(body, "Warning", "CleanupAbandoned", message)


def _seconds_since(timestamp: str | None) -> float:
    if not timestamp:
        return 0.0
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - then).total_seconds()
