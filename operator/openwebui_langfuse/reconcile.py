"""One idempotent reconcile pass of a LangfuseTracing (docs/design.md, "Reconcile"), and cleanup.

No kopf here: the pass takes its inputs (the raw spec, the previous status, a reader of
Secrets/ConfigMaps) and its upstream clients as Protocols, and returns the new status plus what
happened. Running it twice in a row changes nothing the second time: every write is preceded
by a read that shows it is needed.

Steps: resolve references → verify Langfuse (concurrently with the filter install, which needs
no credentials) → install the filter and confirm it loaded → valves (read, overlay, write only
when different; never after a failed verification) → Open WebUI connection (another module) →
status. Writes to one Pipelines server are serialised by a lock per URL, because the server has
none and every upload reloads every module.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from openwebui_langfuse import conditions as cond
from openwebui_langfuse.clients.langfuse import LangfuseCheck, LangfuseCheckError
from openwebui_langfuse.clients.pipelines import PipelineInfo, PipelinesError
from openwebui_langfuse.conditions import Condition
from openwebui_langfuse.connection import ConnectionOutcome
from openwebui_langfuse.models import (
    ApiKeyAuthSpec,
    LangfuseTracingSpec,
    SecretKeyRef,
    SpecError,
    parse_spec,
    url_file_stem,
)

Outcome = Literal["ok", "temporary", "permanent"]


# -- inputs ---------------------------------------------------------------------------------------


class MissingReference(Exception):
    """A referenced Secret/ConfigMap or key does not exist; the message names it, no value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ReferenceReader(Protocol):
    """Reads referenced objects of the resource's namespace (a cache or the API)."""

    def secret_value(self, namespace: str, name: str, key: str) -> str: ...

    def config_map_value(self, namespace: str, name: str, key: str) -> str: ...


class PipelinesApi(Protocol):
    async def list_pipelines(self) -> list[PipelineInfo]: ...

    async def add_by_url(self, url: str) -> None: ...

    async def upload(self, filename: str, content: bytes) -> None: ...

    async def delete(self, pipeline_id: str) -> bool: ...

    async def get_valves(self, pipeline_id: str) -> dict[str, Any]: ...

    async def update_valves(self, pipeline_id: str, valves: Mapping[str, Any]) -> None: ...


class LangfuseApi(Protocol):
    async def check(self, public_key: str, secret_key: str) -> LangfuseCheck: ...


class ConnectionApi(Protocol):
    """Step 5, implemented by ``openwebui_langfuse.connection.OpenWebUIConnections``."""

    async def sync(
        self,
        *,
        openwebui_url: str,
        auth: Any,
        connection_url: str,
        pipelines_key: str,
        usage_capability: bool,
        pipeline_id: str,
    ) -> ConnectionOutcome: ...

    async def remove(
        self, *, openwebui_url: str, auth: Any, connection_url: str
    ) -> ConnectionOutcome: ...

    def auth(self, api_key: str | None, email: str | None, password: str | None) -> Any: ...


class DownloadError(Exception):
    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.message = message
        self.temporary = temporary


@dataclass
class Upstreams:
    """Factories for the upstream clients of one pass (the engine binds its HTTP pool)."""

    pipelines: Callable[[str, str], PipelinesApi]
    langfuse: Callable[[str], LangfuseApi]
    download: Callable[[str], Awaitable[bytes]]
    connection: ConnectionApi | None = None  # needed only by resources with spec.openWebUI
    lock_for: Callable[[str], asyncio.Lock] = field(default_factory=lambda: _LockRegistry())


class _LockRegistry:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def __call__(self, url: str) -> asyncio.Lock:
        return self._locks.setdefault(url.rstrip("/"), asyncio.Lock())


@dataclass
class InstallMemory:
    """What this process installed where, so a resync with nothing changed writes nothing.

    Pipelines has no API to read a module's content, so "is the installed file the one we
    want?" is answered from memory: ``installed[(url, id)]`` is the marker (content digest or
    source URL) of the last install that loaded. After an operator restart the memory is empty
    and each filter is installed once more — cheap for a filter without ``requirements:``.
    ``failed`` remembers markers that did not load, so a broken filter is not re-uploaded on
    every pass (no hot loop) until its content or the spec changes.
    """

    installed: dict[tuple[str, str], str] = field(default_factory=dict)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceRef:
    namespace: str
    name: str
    generation: int


@dataclass
class ReconcileResult:
    """The new status and what the pass did (for logs, Events, and the next wake-up)."""

    status: dict[str, Any]
    outcome: Outcome
    transitions: list[tuple[Condition | None, Condition]]
    writes: list[str]
    spec: LangfuseTracingSpec | None
    status_changed: bool = False


# -- the install record (survives operator restarts) -----------------------------------------------


def install_record(spec: LangfuseTracingSpec, memory: InstallMemory) -> str | None:
    """What this resource's filter install is known to be, as a small JSON string.

    Kept in an annotation of the resource by the runtime, so that a restarted operator does not
    upload every filter again: each upload makes Pipelines reload *every* module, which stalls
    the single-process server for a moment per module. It names a public file digest or URL,
    never a secret.
    """
    marker = memory.installed.get((spec.pipelines.url, spec.pipeline_id))
    if marker is None:
        return None
    return json.dumps(
        {"pipelines": spec.pipelines.url, "pipelineId": spec.pipeline_id, "file": marker},
        sort_keys=True,
        separators=(",", ":"),
    )


def remember_install(record: str | None, memory: InstallMemory) -> None:
    """Seed the memory from a record written by an earlier operator process."""
    if not record:
        return
    try:
        data = json.loads(record)
        key = (str(data["pipelines"]), str(data["pipelineId"]))
        marker = str(data["file"])
    except (ValueError, KeyError, TypeError):
        return  # hand-edited or from another version: the next pass simply uploads again
    memory.installed.setdefault(key, marker)


def recorded_target(record: str | None) -> tuple[str, str] | None:
    """(Pipelines URL, pipeline id) an install record names, if it is readable."""
    if not record:
        return None
    try:
        data = json.loads(record)
        return str(data["pipelines"]), str(data["pipelineId"])
    except (ValueError, KeyError, TypeError):
        return None


async def retire_previous(
    ref: ResourceRef,
    spec: LangfuseTracingSpec,
    previous: tuple[str, str],
    *,
    reader: ReferenceReader,
    upstreams: Upstreams,
    memory: InstallMemory,
) -> str | None:
    """Delete the filter this resource installed before its pipeline id or server changed.

    Left in place it would go on tracing the same chats with the old settings (duplicate
    traces). Uses the resource's current Pipelines key. Returns what was done, or None.
    """
    url, pipeline_id = previous
    pipelines_key = reader.secret_value(
        ref.namespace, spec.pipelines.api_key.name, spec.pipelines.api_key.key
    )
    client = upstreams.pipelines(url, pipelines_key)
    async with upstreams.lock_for(url):
        deleted = await client.delete(pipeline_id)
    memory.installed.pop(previous, None)
    memory.failed.pop(previous, None)
    return f"deleted the previous filter {pipeline_id}" if deleted else None


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


@dataclass
class _Pass:
    ref: ResourceRef
    spec: LangfuseTracingSpec
    reader: ReferenceReader
    upstreams: Upstreams
    memory: InstallMemory
    new: dict[str, Condition] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    langfuse_status: dict[str, Any] | None = None
    openwebui_status: dict[str, Any] | None = None
    previous_openwebui_status: Mapping[str, Any] = field(default_factory=dict)

    def set(self, type_: str, status: cond.ConditionStatus, reason: str, message: str) -> None:
        self.new[type_] = Condition(
            type_, status, reason, message, observed_generation=self.ref.generation
        )

    def fail(self, type_: str, reason: str, message: str, *, temporary: bool) -> None:
        self.set(type_, "False", reason, message)
        self.outcomes.append("temporary" if temporary else "permanent")

    def secret(self, ref: SecretKeyRef) -> str:
        return self.reader.secret_value(self.ref.namespace, ref.name, ref.key)


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
            pipeline_id=None,
        )

    p = _Pass(
        ref=ref,
        spec=spec,
        reader=reader,
        upstreams=upstreams,
        memory=memory,
        previous_openwebui_status=old_status.get("openWebUI") or {},
    )

    # Step 1: references. Each missing one blocks only the stages that need it.
    pipelines_key: str | None = None
    try:
        pipelines_key = p.secret(spec.pipelines.api_key)
    except MissingReference as exc:
        p.fail(cond.FILTER_INSTALLED, exc.reason, exc.message, temporary=False)
    warning = _well_known_key_warning(spec) if pipelines_key == WELL_KNOWN_PIPELINES_KEY else None
    keys: tuple[str, str] | None = None
    try:
        public = spec.langfuse.public_key
        public_key = (
            public.value
            if public.value is not None
            else p.secret(
                public.secret_key_ref  # type: ignore[arg-type]
            )
        )
        keys = (public_key, p.secret(spec.langfuse.secret_key))
    except MissingReference as exc:
        p.fail(cond.CREDENTIALS_VALID, exc.reason, exc.message, temporary=False)

    # Steps 2 and 3 run concurrently: the install needs no credentials, and the check is
    # read-only, so a slow Langfuse does not delay the filter.
    verify_task = asyncio.ensure_future(_verify(p, keys))
    installed = False
    if pipeline_id_holder is not None:
        holder = "/".join(pipeline_id_holder)
        p.fail(
            cond.FILTER_INSTALLED,
            "PipelineIdConflict",
            f"LangfuseTracing {holder} already uses pipeline id {spec.pipeline_id} on "
            f"{spec.pipelines.url}: set spec.filter.pipelineId to another id",
            temporary=False,
        )
    elif pipelines_key is not None:
        installed = await _install_filter(p, pipelines_key)
    verified = await verify_task

    # Step 4: valves, only over a loaded filter and with credentials that passed.
    if pipelines_key is not None and keys is not None and installed and verified:
        await _sync_valves(p, pipelines_key, keys)
    elif cond.VALVES_SYNCED not in p.new:
        blocker = (
            p.new.get(cond.FILTER_INSTALLED) if not installed else p.new.get(cond.CREDENTIALS_VALID)
        )
        reason = "FilterNotInstalled" if not installed else "CredentialsNotVerified"
        detail = f"{blocker.reason}: {blocker.message}" if blocker else "waiting"
        # Not an outcome of its own: the blocking stage already counted.
        p.set(cond.VALVES_SYNCED, "False", reason, f"valves left as they are ({detail})")

    # Step 5: the Open WebUI connection.
    if spec.open_webui is not None:
        await _sync_connection(p, pipelines_key, filter_installed=installed)

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
        pipeline_id=spec.pipeline_id,
        warning=warning,
    )


async def _verify(p: _Pass, keys: tuple[str, str] | None) -> bool:
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
    message = f"keys open project {check.project.name!r} on Langfuse {check.server_version}"
    if check.warning:
        message = f"{message}; {check.warning}"
    p.set(cond.CREDENTIALS_VALID, "True", "Verified", message)
    p.langfuse_status = {
        "projectId": check.project.id,
        "projectName": check.project.name,
        "serverVersion": check.server_version,
        "ingestionMode": check.ingestion_mode,
    }
    return True


async def _filter_content(p: _Pass) -> tuple[bytes | None, str]:
    """The file to upload (``None`` for add-by-URL) and its install marker."""
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
        if f.sha256 is None and p.spec.pipeline_id == url_file_stem(f.url):
            return None, f"url:{f.url}"
        content = await p.upstreams.download(f.url)
    digest = _digest(content)
    if f.sha256 is not None and digest != f.sha256:
        raise MissingReference(
            "DigestMismatch",
            f"the filter file's sha256 is {digest}, not spec.filter.sha256 {f.sha256}",
        )
    return content, f"sha256:{digest}"


async def _install_filter(p: _Pass, pipelines_key: str) -> bool:
    """Step 3: make sure the filter is loaded under the resource's pipeline id."""
    spec = p.spec
    pid = spec.pipeline_id
    key = (spec.pipelines.url, pid)
    try:
        content, marker = await _filter_content(p)
    except MissingReference as exc:
        p.fail(cond.FILTER_INSTALLED, exc.reason, exc.message, temporary=False)
        return False
    except DownloadError as exc:
        p.fail(cond.FILTER_INSTALLED, "DownloadFailed", exc.message, temporary=exc.temporary)
        return False

    client = p.upstreams.pipelines(spec.pipelines.url, pipelines_key)
    try:
        async with p.upstreams.lock_for(spec.pipelines.url):
            remembered = p.memory.installed.get(key) == marker
            listed: list[PipelineInfo] | None = None
            if remembered or p.memory.failed.get(key) == marker:
                listed = await client.list_pipelines()
                if any(row.id == pid for row in listed) and remembered:
                    p.set(
                        cond.FILTER_INSTALLED,
                        "True",
                        "Installed",
                        f"filter {pid} is loaded in Pipelines",
                    )
                    return True
                if p.memory.failed.get(key) == marker and not any(r.id == pid for r in listed):
                    p.fail(
                        cond.FILTER_INSTALLED,
                        "FilterLoadFailed",
                        _load_failed_message(pid),
                        temporary=False,
                    )
                    return False
            if content is None:
                assert spec.filter.url is not None
                await client.add_by_url(spec.filter.url)
                p.writes.append(f"added filter {pid} from its URL")
            else:
                await client.upload(f"{pid}.py", content)
                p.writes.append(f"uploaded filter {pid}")
            # add/upload answer 200 even when loading failed: only the list tells.
            listed = await client.list_pipelines()
    except PipelinesError as exc:
        p.fail(cond.FILTER_INSTALLED, exc.reason, exc.message, temporary=exc.temporary)
        return False
    if not any(row.id == pid for row in listed):
        p.memory.failed[key] = marker
        p.memory.installed.pop(key, None)
        p.fail(
            cond.FILTER_INSTALLED, "FilterLoadFailed", _load_failed_message(pid), temporary=False
        )
        return False
    p.memory.installed[key] = marker
    p.memory.failed.pop(key, None)
    p.set(cond.FILTER_INSTALLED, "True", "Installed", f"filter {pid} is loaded in Pipelines")
    return True


def _load_failed_message(pid: str) -> str:
    return (
        f"Pipelines accepted {pid}.py but did not load it (a syntax or import error, or a "
        "failed requirements install; see the Pipelines log). Not retried until the filter "
        "or the spec changes"
    )


def desired_valves(spec: LangfuseTracingSpec, public_key: str, secret_key: str) -> dict[str, Any]:
    """The valves this resource sets: its filter valves, then the keys it owns."""
    desired: dict[str, Any] = dict(spec.filter.valves)
    desired.update(
        pipelines=list(spec.filter.models),
        priority=spec.filter.priority,
        public_key=public_key,
        secret_key=secret_key,
        host=spec.langfuse.host,
    )
    return desired


async def _sync_valves(p: _Pass, pipelines_key: str, keys: tuple[str, str]) -> None:
    """Step 4: GET, overlay, POST the whole object, only when something differs."""
    spec = p.spec
    pid = spec.pipeline_id
    desired = desired_valves(spec, *keys)
    client = p.upstreams.pipelines(spec.pipelines.url, pipelines_key)
    try:
        async with p.upstreams.lock_for(spec.pipelines.url):
            current = await client.get_valves(pid)
            unknown = sorted(k for k in desired if k not in current)
            if unknown:
                p.fail(
                    cond.VALVES_SYNCED,
                    "UnknownValves",
                    f"filter {pid} has no valve(s) {', '.join(unknown)}",
                    temporary=False,
                )
                return
            merged = {**current, **desired}
            if merged != current:
                changed = sorted(k for k in desired if current.get(k) != desired[k])
                await client.update_valves(pid, merged)
                p.writes.append(f"updated valves {', '.join(changed)} of {pid}")
    except PipelinesError as exc:
        p.fail(cond.VALVES_SYNCED, exc.reason, exc.message, temporary=exc.temporary)
        return
    p.set(cond.VALVES_SYNCED, "True", "Synced", f"valves of {pid} match the resource")


# Connection reasons that only echo a failed filter step (Open WebUI cannot see a filter that
# is not loaded, nor a Pipelines server that refuses the key): not outcomes of their own, so a
# permanent filter failure still stalls instead of being retried as a temporary one forever.
_FILTER_CONSEQUENCES = frozenset({"FilterNotVisible", "PipelinesNotDetected"})


async def _sync_connection(
    p: _Pass, pipelines_key: str | None, *, filter_installed: bool = True
) -> None:
    """Step 5 through ``openwebui_langfuse.connection`` (when present)."""
    spec = p.spec
    assert spec.open_webui is not None
    api = p.upstreams.connection
    assert api is not None, "Upstreams.connection is required for a spec with openWebUI"
    if pipelines_key is None:
        p.fail(
            cond.CONNECTION_REGISTERED,
            "PipelinesKeyMissing",
            "the Pipelines key is missing",
            temporary=False,
        )
        return
    try:
        auth = _openwebui_auth(p, api)
    except MissingReference as exc:
        p.fail(cond.CONNECTION_REGISTERED, exc.reason, exc.message, temporary=False)
        return
    outcome = await api.sync(
        openwebui_url=spec.open_webui.url,
        auth=auth,
        connection_url=spec.open_webui.connection_url,
        pipelines_key=pipelines_key,
        usage_capability=spec.open_webui.usage_capability,
        pipeline_id=spec.pipeline_id,
    )
    if outcome.wrote:
        p.writes.append("updated the Open WebUI connection")
    # Whether this resource added the connection or adopted one a person had made decides
    # whether deleting the resource removes it (issue 7: only what this resource added).
    # Ownership, once taken, is kept; re-adding a connection deleted by hand takes it. A pass
    # that appended the connection records that even when the registration is not confirmed
    # yet (Pipelines not ready), or the next pass would find it present and call it adopted.
    previous = p.previous_openwebui_status
    added_before = (
        previous.get("connectionUrl") == outcome.connection_url
        and previous.get("connectionAdded") is True
    )
    if outcome.registered or outcome.added:
        p.openwebui_status = {
            "connectionUrl": outcome.connection_url,
            "connectionAdded": added_before or outcome.added,
        }
    if outcome.registered:
        p.set(cond.CONNECTION_REGISTERED, "True", outcome.reason, outcome.message)
    elif not filter_installed and outcome.reason in _FILTER_CONSEQUENCES:
        p.set(cond.CONNECTION_REGISTERED, "False", outcome.reason, outcome.message)
    else:
        p.fail(
            cond.CONNECTION_REGISTERED, outcome.reason, outcome.message, temporary=outcome.temporary
        )


def _openwebui_auth(p: _Pass, api: ConnectionApi) -> Any:
    assert p.spec.open_webui is not None
    auth = p.spec.open_webui.auth
    if isinstance(auth, ApiKeyAuthSpec):
        return api.auth(p.secret(auth.api_key), None, None)
    email = p.reader.secret_value(p.ref.namespace, auth.secret_name, auth.email_key)
    password = p.reader.secret_value(p.ref.namespace, auth.secret_name, auth.password_key)
    return api.auth(None, email, password)


# -- status ---------------------------------------------------------------------------------------


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
    pipeline_id: str | None,
    warning: str | None = None,
) -> ReconcileResult:
    outcome = _merge_outcomes(outcomes)
    conditions = list(old_conditions)
    for condition in new.values():
        conditions = cond.set_condition(conditions, condition, now=now)
    if spec is not None:
        required = [cond.CREDENTIALS_VALID, cond.FILTER_INSTALLED, cond.VALVES_SYNCED]
        ready_when_done = ("Ready", "Langfuse tracing is installed and configured")
        if spec.open_webui is not None:
            required.append(cond.CONNECTION_REGISTERED)
        else:
            conditions = cond.remove_condition(conditions, cond.CONNECTION_REGISTERED)
            ready_when_done = ("ConnectionNotManaged", _connection_to_add(spec))
        if warning is not None:
            # Working, but not safe: Ready stays True (tracing runs) and says why it should not.
            ready_when_done = (ready_when_done[0], f"{ready_when_done[1]}; {warning}")
        ready = cond.ready_condition(
            conditions, required=required, generation=ref.generation, ready=ready_when_done
        )
        conditions = cond.set_condition(conditions, ready, now=now)
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
    if pipeline_id is not None:
        status["pipelineId"] = pipeline_id
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
    )


def _without_sync_time(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k != "lastSyncTime"}


# -- cleanup --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupResult:
    done: bool
    temporary: bool
    message: str
    writes: tuple[str, ...] = ()


async def cleanup(
    ref: ResourceRef,
    raw_spec: Mapping[str, Any],
    *,
    reader: ReferenceReader,
    upstreams: Upstreams,
    memory: InstallMemory,
    pipeline_id_shared: bool,
    connection_shared: bool,
    connection_added: bool = True,
) -> CleanupResult:
    """Remove what this resource added, per ``deletionPolicy``.

    ``*_shared`` say another LangfuseTracing still uses the same pipeline id on the same
    Pipelines server, or the same Open WebUI connection; those are left in place.
    ``connection_added`` is False when the connection was there before this resource (a
    person made it and the operator adopted it): it is left in place too.
    """
    try:
        spec = parse_spec(raw_spec, namespace=ref.namespace, name=ref.name)
    except SpecError as exc:
        return CleanupResult(True, False, f"nothing removed: the spec is invalid ({exc})")
    if spec.deletion_policy == "Retain":
        return CleanupResult(True, False, "deletionPolicy is Retain: the filter is kept")
    writes: list[str] = []
    try:
        pipelines_key = reader.secret_value(
            ref.namespace, spec.pipelines.api_key.name, spec.pipelines.api_key.key
        )
    except MissingReference as exc:
        return CleanupResult(True, False, f"nothing removed: {exc.message}")
    if not pipeline_id_shared:
        client = upstreams.pipelines(spec.pipelines.url, pipelines_key)
        try:
            async with upstreams.lock_for(spec.pipelines.url):
                if await client.delete(spec.pipeline_id):
                    writes.append(f"deleted filter {spec.pipeline_id}")
        except PipelinesError as exc:
            return CleanupResult(False, exc.temporary, exc.message, tuple(writes))
        memory.installed.pop((spec.pipelines.url, spec.pipeline_id), None)
        memory.failed.pop((spec.pipelines.url, spec.pipeline_id), None)
    if spec.open_webui is not None and not connection_added:
        kept = "removed the filter; the Open WebUI connection was there before: kept"
        return CleanupResult(True, False, kept, tuple(writes))
    if spec.open_webui is not None and not connection_shared and upstreams.connection:
        p = _Pass(ref=ref, spec=spec, reader=reader, upstreams=upstreams, memory=memory)
        try:
            auth = _openwebui_auth(p, upstreams.connection)
        except MissingReference as exc:
            return CleanupResult(True, False, f"connection kept: {exc.message}", tuple(writes))
        outcome = await upstreams.connection.remove(
            openwebui_url=spec.open_webui.url,
            auth=auth,
            connection_url=spec.open_webui.connection_url,
        )
        if outcome.wrote:
            writes.append("removed the Open WebUI connection")
        if outcome.temporary:
            return CleanupResult(False, True, outcome.message, tuple(writes))
        if outcome.reason not in ("Removed", "NotRegistered"):
            # e.g. the admin credentials stopped working: nothing to wait for, but say that the
            # connection stays (the finalizer is released with a Warning, not as a success).
            return CleanupResult(False, False, outcome.message, tuple(writes))
    return CleanupResult(True, False, "removed what this resource added", tuple(writes))


# Upstream Pipelines' default PIPELINES_API_KEY, published in its source; the official open-webui
# chart's pipelines subchart runs with it (docs/upstream/pipelines.md, "Authentication").
WELL_KNOWN_PIPELINES_KEY = "0p3n-w3bu!"


def _well_known_key_warning(spec: LangfuseTracingSpec) -> str:
    """The status warning for a Pipelines that anyone may call: it names where the key is kept,
    never the key."""
    key = spec.pipelines.api_key
    return (
        f"warning: the Pipelines key in Secret {key.name} (key {key.key}) is upstream's "
        "well-known default, so any pod that reaches Pipelines may install code there: give "
        "Pipelines a random PIPELINES_API_KEY and put it in that Secret, and admit only Open "
        "WebUI and the operator to Pipelines' port with a NetworkPolicy (its valves routes, "
        "which return the Langfuse secret key, need no key at all; the open-webui chart's "
        "pipelines subchart has neither)"
    )


def _connection_to_add(spec: LangfuseTracingSpec) -> str:
    """What Open WebUI still needs when this resource does not manage it: without the
    connection, the filter is installed and verified and yet no chat is ever traced."""
    key = spec.pipelines.api_key
    return (
        "the filter is installed in Pipelines, but this resource has no spec.openWebUI, so "
        "nothing points Open WebUI at Pipelines: add an OpenAI API connection in Open WebUI "
        f"(Admin Settings > Connections) with URL {spec.pipelines.url} and the key in Secret "
        f"{key.name} (key {key.key}), no model IDs and no prefix, or set spec.openWebUI"
    )
