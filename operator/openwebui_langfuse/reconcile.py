"""One idempotent reconcile pass of a LangfuseTracing (docs/design.md, "Reconcile"), and cleanup.

No kopf here: the pass takes its inputs (the raw spec, the previous status, a reader of
Secrets/ConfigMaps) and its upstream clients as Protocols (``openwebui_langfuse.passes``), and
returns the new status plus what happened. Running it twice in a row changes nothing the second
time: every write is preceded by a read that shows it is needed.

Steps: resolve references → verify Langfuse (concurrently with the filter install, which needs
no credentials) → install the filter and confirm it loaded → valves (read, overlay, write only
when different; never after a failed verification) → make Open WebUI use the filter → status.
What is specific to where the filter runs (install, valves, Open WebUI, removal) is the target's
(``openwebui_langfuse.targets``); this module reads the same for each.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from openwebui_langfuse import conditions as cond
from openwebui_langfuse.clients.langfuse import LangfuseCheckError
from openwebui_langfuse.conditions import Condition
from openwebui_langfuse.models import LangfuseTracingSpec, SpecError, parse_spec, url_file_stem
from openwebui_langfuse.passes import (
    CleanupResult,
    DownloadError,
    InstallMemory,
    MissingReference,
    Outcome,
    Pass,
    ReferenceReader,
    ResourceRef,
    Upstreams,
    langfuse_keys,
)
from openwebui_langfuse.targets import Target, for_pass
from openwebui_langfuse.targets import function as function_target
from openwebui_langfuse.targets import pipelines as pipelines_target


@dataclass
class ReconcileResult:
    """The new status and what the pass did (for logs, Events, and the next wake-up)."""

    status: dict[str, Any]
    outcome: Outcome
    transitions: list[tuple[Condition | None, Condition]]
    writes: list[str]
    spec: LangfuseTracingSpec | None
    status_changed: bool = False
    retry_in: float | None = None  # wake sooner than the resync (seconds)


# -- helpers --------------------------------------------------------------------------------------


def bundled_filter_source() -> bytes:
    """The bundled filter file, shipped as package data by ``openwebui_langfuse.filters``."""
    from openwebui_langfuse.filters import bundled_filter_bytes

    return bundled_filter_bytes()


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _merge_outcomes(outcomes: Sequence[Outcome]) -> Outcome:
    if "temporary" in outcomes:
        return "temporary"
    if "permanent" in outcomes:
        return "permanent"
    return "ok"


# -- the pass -------------------------------------------------------------------------------------


async def reconcile(
    ref: ResourceRef,
    raw_spec: Mapping[str, Any],
    old_status: Mapping[str, Any] | None,
    *,
    reader: ReferenceReader,
    upstreams: Upstreams,
    memory: InstallMemory,
    now: str,
    pipeline_id_holder: tuple[str, str] | None = None,
) -> ReconcileResult:
    """Bring upstream state in line with the resource and compute its new status.

    ``pipeline_id_holder`` names another resource that uses the same pipeline id on the same
    Pipelines server: two resources pushing their valves into one filter would send each
    other's chats to the other's Langfuse project, so this one installs nothing.
    """
    old_status = dict(old_status or {})
    old_conditions = [Condition.from_wire(c) for c in old_status.get("conditions") or []]
    try:
        spec = parse_spec(raw_spec, namespace=ref.namespace, name=ref.name)
    except SpecError as exc:
        return _finish(
            ref,
            None,
            old_status,
            old_conditions,
            {
                cond.READY: Condition(
                    cond.READY, "False", "InvalidSpec", str(exc), observed_generation=ref.generation
                ),
            },
            ["permanent"],
            [],
            now,
            langfuse=None,
            openwebui=None,
            where=None,
        )

    p = Pass(
        ref=ref,
        spec=spec,
        reader=reader,
        upstreams=upstreams,
        memory=memory,
        previous_openwebui_status=old_status.get("openWebUI") or {},
    )
    async with for_pass(p) as target:
        await _steps(p, target, pipeline_id_holder)
    return _finish(
        ref,
        spec,
        old_status,
        old_conditions,
        p.new,
        p.outcomes,
        p.writes,
        now,
        langfuse=p.langfuse_status,
        openwebui=p.openwebui_status,
        where=_where(spec),
        required=target.required,
        ready=target.ready_message(),
        warning=target.warning,
        retry_in=p.retry_in,
    )


async def _steps(p: Pass, target: Target, holder: tuple[str, str] | None) -> None:
    """Steps 1 to 5 of a pass; each records its conditions in ``p``."""
    spec = p.spec
    # Step 1: references. Each missing one blocks only the stages that need it.
    target_ready = target.resolve()
    keys: tuple[str, str] | None = None
    try:
        keys = langfuse_keys(p.reader, p.ref.namespace, spec)
    except MissingReference as exc:
        p.fail(cond.CREDENTIALS_VALID, exc.reason, exc.message, temporary=False)

    # Steps 2 and 3 run concurrently: the install needs no credentials, and the check is
    # read-only, so a slow Langfuse does not delay the filter.
    verify_task = asyncio.ensure_future(_verify(p, keys))
    installed = False
    if holder is not None:
        reason, message = target.conflict("/".join(holder))
        p.fail(cond.FILTER_INSTALLED, reason, message, temporary=False)
    elif target_ready:
        installed = await _install(p, target)
    verified = await verify_task

    # Step 4: valves, only over a loaded filter and with credentials that passed.
    if keys is not None and installed and verified:
        await target.sync_valves(keys)
    elif cond.VALVES_SYNCED not in p.new:
        blocker = (
            p.new.get(cond.FILTER_INSTALLED) if not installed else p.new.get(cond.CREDENTIALS_VALID)
        )
        reason = "FilterNotInstalled" if not installed else "CredentialsNotVerified"
        detail = f"{blocker.reason}: {blocker.message}" if blocker else "waiting"
        # Not an outcome of its own: the blocking stage already counted.
        p.set(cond.VALVES_SYNCED, "False", reason, f"valves left as they are ({detail})")

    # Step 5: Open WebUI uses the filter.
    await target.publish(filter_installed=installed)


def _where(spec: LangfuseTracingSpec) -> dict[str, str]:
    """Status fields that say where the filter runs."""
    id_field = "functionId" if spec.target == "function" else "pipelineId"
    return {"target": spec.target, id_field: spec.filter_id}


async def _verify(p: Pass, keys: tuple[str, str] | None) -> bool:
    """Step 2. True when valves may be pushed (checked, or checking switched off)."""
    if keys is None:
        return False
    if not p.spec.langfuse.verify:
        p.set(
            cond.CREDENTIALS_VALID,
            "Unknown",
            "VerificationDisabled",
            "spec.langfuse.verify is false: keys are pushed unchecked",
        )
        return True
    client = p.upstreams.langfuse(p.spec.langfuse.host)
    try:
        check = await client.check(*keys)
    except LangfuseCheckError as exc:
        p.fail(cond.CREDENTIALS_VALID, exc.reason, exc.message, temporary=exc.temporary)
        return False
    p.langfuse_status = {
        "projectId": check.project.id,
        "projectName": check.project.name,
        "serverVersion": check.server_version,
        "ingestionMode": check.ingestion_mode,
    }
    # The bundled filter sends OTLP (on either target); a filter of one's own may not.
    refusal = check.refusal(sends_otlp=p.spec.filter.source == "bundled")
    if refusal is not None:
        p.fail(cond.CREDENTIALS_VALID, refusal.reason, refusal.message, temporary=False)
        return False
    message = f"keys open project {check.project.name!r} on Langfuse {check.server_version}"
    if check.warning:
        message = f"{message}; {check.warning}"
    p.set(cond.CREDENTIALS_VALID, "True", "Verified", message)
    return True


async def _filter_content(p: Pass, *, adds_by_url: bool) -> tuple[bytes | None, str]:
    """The file to upload (``None`` for add-by-URL, with a target that can) and its install
    marker."""
    f = p.spec.filter
    content: bytes | None
    if f.source == "bundled":
        try:
            content = bundled_filter_source()
        except (FileNotFoundError, ImportError):
            raise MissingReference(
                "BundledFilterMissing", "the operator package ships no bundled filter"
            ) from None
    elif f.source == "configMap":
        assert f.config_map is not None
        content = p.reader.config_map_value(
            p.ref.namespace, f.config_map.name, f.config_map.key
        ).encode()
    else:
        assert f.url is not None
        # Pipelines saves a file added by URL under the URL's file name; under any other id
        # (or with a digest to check) the operator fetches the file and uploads it itself.
        if adds_by_url and f.sha256 is None and p.spec.filter_id == url_file_stem(f.url):
            return None, f"url:{f.url}"
        content = await p.upstreams.download(f.url)
    digest = _digest(content)
    if f.sha256 is not None and digest != f.sha256:
        raise MissingReference(
            "DigestMismatch",
            f"the filter file's sha256 is {digest}, not spec.filter.sha256 {f.sha256}",
        )
    return content, f"sha256:{digest}"


async def _install(p: Pass, target: Target) -> bool:
    """Step 3: the filter's content, then the target installs it and confirms it loaded."""
    try:
        content, marker = await _filter_content(p, adds_by_url=target.adds_by_url)
    except MissingReference as exc:
        p.fail(cond.FILTER_INSTALLED, exc.reason, exc.message, temporary=False)
        return False
    except DownloadError as exc:
        p.fail(cond.FILTER_INSTALLED, "DownloadFailed", exc.message, temporary=exc.temporary)
        return False
    return await target.install(content, marker)


# -- status ---------------------------------------------------------------------------------------

# Conditions only some targets have; a resource whose target does not need one loses it.
TARGET_CONDITIONS = (cond.CONNECTION_REGISTERED,)


def _finish(
    ref: ResourceRef,
    spec: LangfuseTracingSpec | None,
    old_status: dict[str, Any],
    old_conditions: list[Condition],
    new: Mapping[str, Condition],
    outcomes: Sequence[Outcome],
    writes: list[str],
    now: str,
    *,
    langfuse: dict[str, Any] | None,
    openwebui: dict[str, Any] | None,
    where: Mapping[str, str] | None,
    required: Sequence[str] = (),
    ready: tuple[str, str] | None = None,
    warning: str | None = None,
    retry_in: float | None = None,
) -> ReconcileResult:
    """The new status. ``where`` says where the filter runs; ``required`` are the target's
    conditions Ready needs beyond the common three; ``ready`` is Ready's reason and message
    when the target has more to say (the resource leaves Open WebUI to the user: what Open
    WebUI still needs); ``warning`` is appended to Ready's message when tracing works but is
    not safe."""
    outcome = _merge_outcomes(outcomes)
    conditions = list(old_conditions)
    for condition in new.values():
        conditions = cond.set_condition(conditions, condition, now=now)
    if spec is not None:
        needed = [cond.CREDENTIALS_VALID, cond.FILTER_INSTALLED, cond.VALVES_SYNCED, *required]
        ready_when_done = ready or ("Ready", "Langfuse tracing is installed and configured")
        for owned in TARGET_CONDITIONS:
            if owned not in needed:  # e.g. the connection of a target left behind
                conditions = cond.remove_condition(conditions, owned)
        if warning is not None:
            # Working, but not safe: Ready stays True (tracing runs) and says why it should not.
            ready_when_done = (ready_when_done[0], f"{ready_when_done[1]}; {warning}")
        aggregate = cond.ready_condition(
            conditions, required=needed, generation=ref.generation, ready=ready_when_done
        )
        conditions = cond.set_condition(conditions, aggregate, now=now)
    ready_now = cond.find(conditions, cond.READY)
    blocking = ready_now.reason if ready_now is not None else "Unknown"
    blocking_message = ready_now.message if ready_now is not None else ""
    if outcome == "temporary":
        reconciling = Condition(
            cond.RECONCILING,
            "True",
            "RetryingAfterError",
            blocking_message,
            observed_generation=ref.generation,
        )
        stalled = Condition(
            cond.STALLED, "False", "NotStalled", "", observed_generation=ref.generation
        )
    elif outcome == "permanent":
        reconciling = Condition(
            cond.RECONCILING, "False", "Stalled", "", observed_generation=ref.generation
        )
        stalled = Condition(
            cond.STALLED, "True", blocking, blocking_message, observed_generation=ref.generation
        )
    else:
        reconciling = Condition(
            cond.RECONCILING, "False", "Idle", "", observed_generation=ref.generation
        )
        stalled = Condition(
            cond.STALLED, "False", "NotStalled", "", observed_generation=ref.generation
        )
    conditions = cond.set_condition(conditions, reconciling, now=now)
    conditions = cond.set_condition(conditions, stalled, now=now)

    status: dict[str, Any] = {
        k: v for k, v in old_status.items() if k not in ("conditions", "observedGeneration")
    }
    status["observedGeneration"] = ref.generation
    status["conditions"] = [c.to_wire() for c in conditions]
    if where is not None:
        for stale in ("target", "pipelineId", "functionId"):
            status.pop(stale, None)
        status.update(where)
    if langfuse is not None:
        status["langfuse"] = langfuse
    if spec is not None and spec.open_webui is None:
        status.pop("openWebUI", None)
    elif openwebui is not None:
        status["openWebUI"] = openwebui
    changed_transitions = cond.transitions(old_conditions, conditions)
    if writes or _without_sync_time(status) != _without_sync_time(old_status):
        status["lastSyncTime"] = now
    return ReconcileResult(
        status=status,
        outcome=outcome,
        transitions=changed_transitions,
        writes=writes,
        spec=spec,
        status_changed=status != old_status,
        retry_in=retry_in,
    )


def _without_sync_time(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "lastSyncTime"}


# -- cleanup --------------------------------------------------------------------------------------


async def cleanup(
    ref: ResourceRef,
    raw_spec: Mapping[str, Any],
    *,
    status: Mapping[str, Any] | None = None,
    reader: ReferenceReader,
    upstreams: Upstreams,
    memory: InstallMemory,
    filter_shared: bool,
    connection_shared: bool,
) -> CleanupResult:
    """Remove what this resource added, per ``deletionPolicy``.

    ``*_shared`` say another LangfuseTracing still uses the same filter (same id in the same
    place), or the same Open WebUI connection; those are left in place. ``status`` is the
    resource's last status: what it added there (a connection it adopted instead of adding is
    left in place, and so are models it did not attach the function to).
    """
    try:
        spec = parse_spec(raw_spec, namespace=ref.namespace, name=ref.name)
    except SpecError as exc:
        return CleanupResult(True, False, f"nothing removed: the spec is invalid ({exc})")
    if spec.deletion_policy == "Retain":
        return CleanupResult(True, False, "deletionPolicy is Retain: the filter is kept")
    openwebui_status = (status or {}).get("openWebUI") or {}
    if spec.target == "function":
        return await function_target.remove(
            ref,
            spec,
            reader=reader,
            upstreams=upstreams,
            memory=memory,
            attached=function_target.attached_models(openwebui_status),
            filter_shared=filter_shared,
        )
    return await pipelines_target.remove(
        ref,
        spec,
        reader=reader,
        upstreams=upstreams,
        memory=memory,
        filter_shared=filter_shared,
        connection_shared=connection_shared,
        # No record (never registered, or written by an older operator): the adder, as before.
        connection_added=openwebui_status.get("connectionAdded") is not False,
    )
