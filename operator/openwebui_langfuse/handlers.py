"""kopf wiring: the only module with kopf decorators; thin adapters over ``runtime``.

* indices: Secrets and ConfigMaps by (namespace, name) — reconciles read references from
  memory, fed by the watch, and kopf fills them before any handler runs; LangfuseTracings by
  the Secrets/ConfigMaps they reference (trigger index) and by the upstream objects they own
  (deletion must not remove what another resource still uses).
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

from openwebui_langfuse.config import Settings
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
from openwebui_langfuse.runtime import FILTER_KINDS, IndexReader, Runtime, sharing_keys

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
# Secrets that can never be a LangfuseTracing reference and can be large: not kept in memory.
_IGNORED_SECRET_TYPES = frozenset({"helm.sh/release.v1", "kubernetes.io/service-account-token"})

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
    # API calls kopf makes (finalizer, progress, events): 30 s, not aiohttp's 5 min default.
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    # A worker shuts its queue after 5 s without events; a new event restarts it cheaply.
    settings.queueing.idle_timeout = 5.0

    op_settings: Settings = memo["settings"]
    memo["kopf_settings"] = settings  # for re-logins of the status writer
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
def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster token, then kubeconfig (``kube.login_info``), shared with our status writer."""
    info = login_info(kwargs["settings"])
    if info is not None:
        memo["kube_credentials"] = credentials_of(info)
    return info


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


@kopf.index("secrets")
def secret_data(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], Mapping[str, Any]] | None:
    if body.get("type") in _IGNORED_SECRET_TYPES:
        return None
    return {(namespace or "", name): dict(body.get("data") or {})}


@kopf.index("configmaps")
def configmap_data(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(namespace or "", name): dict(body.get("data") or {})}


@kopf.index(*LFT)
def lft_references(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(namespace, kind, object name) -> resource, for every Secret/ConfigMap it reads."""
    ns = namespace or ""
    secrets, config_maps = referenced_names(dict(spec))
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


def _reader(indices: Mapping[str, Any]) -> IndexReader:
    """Reads references from the live Secret/ConfigMap indices kopf passes as kwargs."""
    return IndexReader(indices["secret_data"], indices["configmap_data"])


# -- triggers -----------------------------------------------------------------------------------


@kopf.on.event("configmaps", id=HANDLER_READINESS)
def watching(memo: kopf.Memo, **_: Any) -> None:
    """kopf runs no handler before every watched list is in: the first event means ready
    (``readiness``: every namespace has a ConfigMap, so one comes at once)."""
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
        _reader(indices),
        stopped=lambda: bool(stopped),
        wait_stopped=wait_stopped,
        owners=lambda key: list(owned.get(key, [])),
    )


@kopf.on.event(*LFT, id=HANDLER_SPEC_WATCH)
def spec_watch(
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
    if type == "DELETED":
        # kopf has already dropped the resource from its indices: a resource kept off a
        # pipeline id this one held (PipelineIdConflict) may take it now.
        owned: kopf.Index[tuple[str, ...], tuple[str, str]] = indices["lft_owned"]
        for key in sharing_keys(ns, name, dict(spec)):
            for owner in owned.get(key, []):
                runtime.wake(*owner)
        return
    runtime.spec_changed(ns, name, meta.get("generation"))


def _wake_referencing(
    runtime: Runtime,
    index: kopf.Index[tuple[str, str, str], tuple[str, str]],
    namespace: str,
    kind: str,
    name: str,
) -> None:
    for target in index.get((namespace, kind, name), []):
        runtime.wake(*target)


@kopf.on.event("secrets", id=HANDLER_SECRET_WATCH)
def secret_watch(
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **indices: Any,
) -> None:
    refs = indices["lft_references"]
    _wake_referencing(memo["runtime"], refs, namespace or "", "Secret", name)


@kopf.on.event("configmaps", id=HANDLER_CONFIGMAP_WATCH)
def configmap_watch(
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    **indices: Any,
) -> None:
    refs = indices["lft_references"]
    _wake_referencing(memo["runtime"], refs, namespace or "", "ConfigMap", name)


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
        _reader(indices),
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
