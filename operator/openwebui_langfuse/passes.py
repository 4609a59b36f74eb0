"""What every step of a reconcile pass shares, whichever target the filter runs on: the inputs
(references, upstream clients as Protocols, the install memory), the pass's own record of
conditions, outcomes and writes, and the result of a cleanup.

``reconcile`` runs the pass; each target module (``openwebui_langfuse.targets``) does its part
of it through a ``Pass``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from openwebui_langfuse import conditions as cond
from openwebui_langfuse.clients.langfuse import LangfuseCheck
from openwebui_langfuse.clients.openwebui import OpenWebUIClient
from openwebui_langfuse.clients.pipelines import PipelineInfo
from openwebui_langfuse.conditions import Condition
from openwebui_langfuse.connection import ConnectionOutcome
from openwebui_langfuse.models import ApiKeyAuthSpec, LangfuseTracingSpec, SecretKeyRef

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
        refresh_models: bool,
    ) -> ConnectionOutcome: ...

    async def remove(
        self, *, openwebui_url: str, auth: Any, connection_url: str
    ) -> ConnectionOutcome: ...

    def auth(self, api_key: str | None, email: str | None, password: str | None) -> Any: ...

    def client(self, openwebui_url: str, auth: Any) -> OpenWebUIClient:
        """A client for several calls to one Open WebUI (the Function target)."""
        ...


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


# The first retry of a filter that did not load; each next one waits twice as long, up to the
# resource's resyncInterval. A failure can be transient (a url filter's `requirements:` install
# while PyPI is down), but each upload makes Pipelines reload every module, so a broken file is
# not uploaded on every pass either.
LOAD_RETRY_FIRST_SECONDS = 10.0


@dataclass(frozen=True)
class FailedInstall:
    """A filter version (``marker``) that did not load, and when to try it again."""

    marker: str
    attempts: int
    retry_at: float  # on the memory's clock


@dataclass
class InstallMemory:
    """What this process installed where, so a resync with nothing changed writes nothing.

    Pipelines has no API to read a module's content, so "is the installed file the one we
    want?" is answered from memory: ``installed[(url, id)]`` is the marker (content digest or
    source URL) of the last install that loaded. After an operator restart the memory is empty
    and each filter is installed once more — cheap for a filter without ``requirements:``.
    ``failed`` remembers versions that did not load, so one is uploaded again only with
    backoff (``load_failed``), or at once when its content or the spec changes.
    """

    installed: dict[tuple[str, str], str] = field(default_factory=dict)
    failed: dict[tuple[str, str], FailedInstall] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    # (Open WebUI URL, connection URL, filter id) that Open WebUI was seen using since this
    # process started: its cached model list holds the filter, so no refresh is needed.
    confirmed: set[tuple[str, str, str]] = field(default_factory=set)
    # The digest of the content Open WebUI stored for ``installed[key]``'s version of a
    # function: Open WebUI rewrites some import lines, so the stored text may not be ours.
    stored: dict[tuple[str, str], str] = field(default_factory=dict)

    def load_failed(self, key: tuple[str, str], marker: str, cap: float) -> FailedInstall:
        """Record one more failed load of ``marker``; the next attempt waits twice as long."""
        previous = self.failed.get(key)
        attempts = previous.attempts + 1 if previous and previous.marker == marker else 1
        delay = min(LOAD_RETRY_FIRST_SECONDS * 2 ** (attempts - 1), max(cap, 1.0))
        record = FailedInstall(marker, attempts, self.clock() + delay)
        self.failed[key] = record
        self.installed.pop(key, None)
        return record

    def forget(self, key: tuple[str, str]) -> None:
        """The filter at ``key`` (Pipelines or Open WebUI URL, id) was removed: nothing of it
        is remembered."""
        self.installed.pop(key, None)
        self.failed.pop(key, None)
        self.stored.pop(key, None)
        self.confirmed = {seen for seen in self.confirmed if seen[2] != key[1]}

    def seconds_until(self, record: FailedInstall) -> float:
        return max(0.0, record.retry_at - self.clock())

    def waiting(self, key: tuple[str, str], marker: str) -> FailedInstall | None:
        """The failure of this very version whose retry is not due yet, if any."""
        record = self.failed.get(key)
        if record is None or record.marker != marker or record.retry_at <= self.clock():
            return None
        return record


@dataclass(frozen=True)
class ResourceRef:
    namespace: str
    name: str
    generation: int


# -- one pass -------------------------------------------------------------------------------------


@dataclass
class Pass:
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
    # Seconds until a step wants another pass although its failure counts as permanent.
    retry_in: float | None = None

    def set(self, type_: str, status: cond.ConditionStatus, reason: str, message: str) -> None:
        self.new[type_] = Condition(
            type_, status, reason, message, observed_generation=self.ref.generation
        )

    def fail(self, type_: str, reason: str, message: str, *, temporary: bool) -> None:
        self.set(type_, "False", reason, message)
        self.outcomes.append("temporary" if temporary else "permanent")

    def has_unknown_valves(self, desired: Mapping[str, Any], known: Any, what: str) -> bool:
        """Fail ``ValvesSynced`` (permanently: only a spec change helps) when ``desired`` names
        a valve ``what`` (the filter, as the message calls it) does not have."""
        unknown = sorted(k for k in desired if k not in known)
        if unknown:
            self.fail(
                cond.VALVES_SYNCED,
                "UnknownValves",
                f"{what} has no valve(s) {', '.join(unknown)}",
                temporary=False,
            )
        return bool(unknown)

    def secret(self, ref: SecretKeyRef) -> str:
        return self.reader.secret_value(self.ref.namespace, ref.name, ref.key)

    def openwebui_auth(self, api: ConnectionApi) -> Any:
        """The Open WebUI admin auth ``spec.openWebUI.auth`` names, read from its Secrets."""
        return api.auth(*openwebui_credentials(self.reader, self.ref.namespace, self.spec))


def openwebui_credentials(
    reader: ReferenceReader, namespace: str, spec: LangfuseTracingSpec
) -> tuple[str | None, str | None, str | None]:
    """(API key, email, password) of ``spec.openWebUI.auth``, from its Secrets: the key, or
    the email and password. ``MissingReference`` when one is missing."""
    assert spec.open_webui is not None
    auth = spec.open_webui.auth
    if isinstance(auth, ApiKeyAuthSpec):
        return reader.secret_value(namespace, auth.api_key.name, auth.api_key.key), None, None
    email = reader.secret_value(namespace, auth.secret_name, auth.email_key)
    password = reader.secret_value(namespace, auth.secret_name, auth.password_key)
    return None, email, password


def langfuse_keys(
    reader: ReferenceReader, namespace: str, spec: LangfuseTracingSpec
) -> tuple[str, str]:
    """(public key, secret key) of ``spec.langfuse``: the public key inline or from its
    Secret, the secret key from its Secret. ``MissingReference`` when one is missing."""
    public = spec.langfuse.public_key
    public_key = public.value
    if public_key is None:
        assert public.secret_key_ref is not None
        ref = public.secret_key_ref
        public_key = reader.secret_value(namespace, ref.name, ref.key)
    secret = spec.langfuse.secret_key
    return public_key, reader.secret_value(namespace, secret.name, secret.key)


@dataclass(frozen=True)
class CleanupResult:
    done: bool
    temporary: bool
    message: str
    writes: tuple[str, ...] = ()
    # Done, and yet something this resource added stays upstream (a person must remove it):
    # what and why, for a Warning Event. Never a secret.
    left_behind: str | None = None


def desired_valves(spec: LangfuseTracingSpec, public_key: str, secret_key: str) -> dict[str, Any]:
    """The valves this resource sets, on either target: its filter valves, then the keys it
    owns."""
    desired: dict[str, Any] = dict(spec.filter.valves)
    desired.update(
        pipelines=list(spec.filter.models),
        priority=spec.filter.priority,
        public_key=public_key,
        secret_key=secret_key,
        host=spec.langfuse.host,
    )
    return desired


def overlay_valves(
    current: Mapping[str, Any],
    desired: Mapping[str, Any],
    *,
    known: frozenset[str] | None = None,
) -> tuple[dict[str, Any], list[str]] | None:
    """The whole valves object to write: what is stored, with what the resource sets over it
    (both targets replace the stored object whole), and the names of the valves that change;
    None when nothing differs. ``known``: keep only those stored valves (Open WebUI drops
    unknown and null ones, so they would differ forever)."""
    kept = {k: v for k, v in current.items() if known is None or (k in known and v is not None)}
    wanted = {**kept, **desired}
    if wanted == dict(current):
        return None
    return wanted, sorted(k for k in desired if current.get(k) != desired[k])
