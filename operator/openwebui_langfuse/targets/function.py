"""The Function target: the filter as an Open WebUI Filter Function, with no Pipelines server.

Its part of a pass: read the Open WebUI admin auth, create or update the function and confirm
that Open WebUI imports it, push the valves as one whole object (Open WebUI replaces the stored
set on every update), then switch it on for every model or attach it to the listed ones, turn
on the usage capability, and refresh Open WebUI's models when something changed. At deletion,
remove what the resource added: the function (only one it created) and the model attachments.

What Open WebUI does differently from Pipelines is in docs/upstream/open-webui-functions.md:
functions are created inactive and not global, an unknown id answers 401, and model
``filterIds`` take effect only after a models refresh.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from openwebui_langfuse import conditions as cond
from openwebui_langfuse.clients.openwebui import OpenWebUIClient, OpenWebUIError
from openwebui_langfuse.clients.openwebui_functions import (
    FunctionInfo,
    FunctionRejected,
    FunctionsApi,
    FunctionsError,
    FunctionsServerError,
    ModelNotFound,
)
from openwebui_langfuse.connection import (
    MODEL_PREFIXES_VALVE,
    connection_prefixes,
    ensure_usage_capability,
    error_reason,
)
from openwebui_langfuse.models import LangfuseTracingSpec
from openwebui_langfuse.passes import (
    CleanupResult,
    FailedInstall,
    InstallMemory,
    MissingReference,
    Pass,
    ReferenceReader,
    ResourceRef,
    Upstreams,
    desired_valves,
    overlay_valves,
)

KIND = "function"
FUNCTION_NAME = "Langfuse tracing"
# A function whose description starts so was made by this operator; any other function of the
# same id is a person's, and is neither overwritten nor deleted.
OWNED_PREFIX = "Managed by openwebui-langfuse"


def place(spec: LangfuseTracingSpec) -> tuple[str, str, str]:
    """Where the filter lives: the sharing key of the function (``runtime.sharing_keys``)."""
    assert spec.open_webui is not None, "the function target requires spec.openWebUI"
    return (KIND, spec.open_webui.url, spec.filter_id)


def description(ref: ResourceRef) -> str:
    return f"{OWNED_PREFIX} for LangfuseTracing {ref.namespace}/{ref.name}; edits are undone"


def is_owned(info: FunctionInfo) -> bool:
    return (info.description or "").startswith(OWNED_PREFIX)


class FunctionTarget:
    """One pass's view of the resource's function in Open WebUI."""

    def __init__(self, p: Pass) -> None:
        assert p.spec.open_webui is not None, "the function target requires spec.openWebUI"
        self.p = p
        self.url = p.spec.open_webui.url
        self.fid = p.spec.filter_id
        self.key = (self.url, self.fid)
        self.warning: str | None = None
        self.required: tuple[str, ...] = ()  # no condition beyond the common three
        self.adds_by_url = False  # Open WebUI cannot fetch a file: the operator does
        self._auth: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._client: OpenWebUIClient | None = None
        self._valve_names: frozenset[str] = frozenset()
        self._changed = False  # Open WebUI's cached model list may not reflect this pass

    async def __aenter__(self) -> FunctionTarget:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._stack.aclose()

    def conflict(self, holder: str) -> tuple[str, str]:
        return (
            "FunctionIdConflict",
            f"LangfuseTracing {holder} already uses function id {self.fid} in Open WebUI "
            f"{self.url}: set spec.filter.functionId to another id",
        )

    def resolve(self) -> bool:
        """Read the Open WebUI admin auth; a missing one blocks everything (nothing else can
        install the function)."""
        api = self.p.upstreams.connection
        assert api is not None, "Upstreams.connection is required for the function target"
        try:
            self._auth = self.p.openwebui_auth(api)
        except MissingReference as exc:
            self.p.fail(cond.FILTER_INSTALLED, exc.reason, exc.message, temporary=False)
            return False
        return True

    async def _open(self) -> tuple[OpenWebUIClient, FunctionsApi]:
        if self._client is None:
            api = self.p.upstreams.connection
            assert api is not None and self._auth is not None, "resolve() first"
            self._client = await self._stack.enter_async_context(api.client(self.url, self._auth))
        return self._client, FunctionsApi(self._client)

    # -- install ----------------------------------------------------------------------------

    async def install(self, content: bytes | None, marker: str) -> bool:
        """Create the function, or update it when its content is not ours (a new version, or
        edited by hand), and confirm that Open WebUI imports it."""
        p = self.p
        assert content is not None, "the function target fetches url filters itself"
        text = content.decode()
        try:
            _, api = await self._open()
            info = await api.get_function(self.fid)
            if info is not None and not is_owned(info):
                p.fail(
                    cond.FILTER_INSTALLED,
                    "FunctionIdTaken",
                    f"Open WebUI already has a function {self.fid} that this operator did not "
                    "create: it is left alone; set spec.filter.functionId to another id, or "
                    "delete that function",
                    temporary=False,
                )
                return False
            current = info is not None and self._is_current(info, text, marker)
            waiting = p.memory.waiting(self.key, marker)
            if waiting is not None and not current:
                _rejected(p, waiting, "was refused")  # failed before, not due again
                return False
            if info is None:
                await api.create_function(self.fid, FUNCTION_NAME, text, description(p.ref))
                p.writes.append(f"created function {self.fid}")
                info = await api.get_function(self.fid)  # create answers without the content
                self._changed = True
            elif not current:
                info = await api.update_function(self.fid, FUNCTION_NAME, text, description(p.ref))
                p.writes.append(f"updated function {self.fid}")
                self._changed = True
            try:
                # Imports the module in Open WebUI (from its cache, or afresh): proof it loads.
                schema = await api.valves_spec(self.fid)
            except FunctionsServerError:
                record = p.memory.load_failed(self.key, marker, cap=p.spec.resync_seconds)
                _rejected(p, record, "is stored but Open WebUI cannot import it")
                return False
        except FunctionRejected as exc:
            record = p.memory.load_failed(self.key, marker, cap=p.spec.resync_seconds)
            _rejected(p, record, f"was refused ({exc.detail})")
            return False
        except FunctionsError as exc:
            p.fail(cond.FILTER_INSTALLED, exc.reason, exc.message, temporary=exc.temporary)
            return False
        if info is None:  # deleted between create and read: the next pass creates it again
            p.fail(
                cond.FILTER_INSTALLED,
                "FunctionNotFound",
                f"function {self.fid} vanished right after it was created",
                temporary=True,
            )
            return False
        p.memory.installed[self.key] = marker
        p.memory.stored[self.key] = info.content_sha256 or ""
        p.memory.failed.pop(self.key, None)
        properties = schema.get("properties")
        self._valve_names = frozenset(properties) if isinstance(properties, dict) else frozenset()
        p.set(
            cond.FILTER_INSTALLED, "True", "Installed", f"function {self.fid} loads in Open WebUI"
        )
        return True

    def _is_current(self, info: FunctionInfo, text: str, marker: str) -> bool:
        """The stored content is ours: the same bytes, or what Open WebUI stored the last time
        this process installed this version (it rewrites some import lines)."""
        if info.content == text:
            return True
        return (
            self.p.memory.installed.get(self.key) == marker
            and self.p.memory.stored.get(self.key) == info.content_sha256
        )

    # -- valves -----------------------------------------------------------------------------

    async def sync_valves(self, keys: tuple[str, str]) -> None:
        """Read the stored valves and write the whole object only when it differs: an update
        replaces every field, so the set sent holds what a person set too."""
        p = self.p
        desired = desired_valves(p.spec, *keys)
        # Which models it runs for is Open WebUI's (global, or the models' filterIds), not the
        # Pipelines-only `pipelines` valve's: left at its default rather than shown as synced.
        desired.pop("pipelines", None)
        if p.has_unknown_valves(desired, self._valve_names, f"function {self.fid}"):
            return
        try:
            client, api = await self._open()
            if MODEL_PREFIXES_VALVE in self._valve_names and MODEL_PREFIXES_VALVE not in desired:
                prefixes = await connection_prefixes(client)
                if prefixes is not None:
                    desired[MODEL_PREFIXES_VALVE] = prefixes
            current = await api.get_valves(self.fid)
            change = overlay_valves(current, desired, known=self._valve_names)
            if change is not None:
                wanted, changed = change
                await api.update_valves(self.fid, wanted)
                p.writes.append(f"updated valves {', '.join(changed) or '(cleaned)'} of {self.fid}")
        except FunctionsError as exc:
            p.fail(cond.VALVES_SYNCED, exc.reason, exc.message, temporary=exc.temporary)
            return
        p.set(cond.VALVES_SYNCED, "True", "Synced", f"valves of {self.fid} match the resource")

    # -- make Open WebUI use it -------------------------------------------------------------

    async def publish(self, *, filter_installed: bool) -> None:
        """Switch the function on, for every model or for the listed ones (every other filter
        of those models stays), turn on the usage capability, refresh Open WebUI's models when
        its cached list may not hold the change, and confirm."""
        if not filter_installed:
            return
        p = self.p
        spec = p.spec
        assert spec.open_webui is not None
        everywhere = "*" in spec.filter.models  # as the Pipelines valve reads it
        wanted = () if everywhere else spec.filter.models
        before = attached_models(p.previous_openwebui_status)
        attached = set(before)
        missing: list[str] = []
        seen = (self.url, KIND, self.fid)
        try:
            client, api = await self._open()
            if await api.set_active(self.fid, True):
                p.writes.append(f"switched on function {self.fid}")
                self._changed = True
            if await api.set_global(self.fid, everywhere):
                what = "for every model" if everywhere else "for the listed models only"
                p.writes.append(f"made function {self.fid} run {what}")
                self._changed = True
            # A model record is read, changed and written whole: resources of one Open WebUI
            # take turns, or one would write back a record without the other's filter id.
            async with p.upstreams.lock_for(self.url):
                for model in wanted:
                    try:
                        if await api.attach_filter(model, self.fid):
                            p.writes.append(f"attached {self.fid} to model {model}")
                            self._changed = True
                        attached.add(model)
                    except ModelNotFound:
                        missing.append(model)
                for model in sorted(attached - set(wanted)):
                    with contextlib.suppress(ModelNotFound):
                        if await api.detach_filter(model, self.fid):
                            p.writes.append(f"detached {self.fid} from model {model}")
                            self._changed = True
                    attached.discard(model)
            if spec.open_webui.usage_capability and await ensure_usage_capability(client):
                p.writes.append("turned on the usage capability")
            if self._changed or seen not in p.memory.confirmed:
                # Chats read a cached model list; attachments apply only after a refresh.
                await client.refresh_models()
        except FunctionsError as exc:
            p.memory.confirmed.discard(seen)
            p.fail(cond.FILTER_INSTALLED, exc.reason, exc.message, temporary=exc.temporary)
            return
        except OpenWebUIError as exc:  # the usage capability or the models refresh
            p.memory.confirmed.discard(seen)
            reason, message, temporary = error_reason(exc)
            p.fail(cond.FILTER_INSTALLED, reason, message, temporary=temporary)
            return
        finally:
            p.openwebui_status = {"attachedModels": sorted(attached)}
        if missing:
            p.memory.confirmed.discard(seen)
            p.fail(
                cond.FILTER_INSTALLED,
                "ModelNotFound",
                f"function {self.fid} loads, but Open WebUI has no model {', '.join(missing)} "
                "to attach it to (a typo in spec.filter.models, or the model's connection is "
                "down); attached to the others",
                temporary=True,
            )
            return
        p.memory.confirmed.add(seen)
        scope = "every model" if everywhere else f"model(s) {', '.join(wanted)}"
        p.set(
            cond.FILTER_INSTALLED,
            "True",
            "Installed",
            f"function {self.fid} loads in Open WebUI and runs, switched on, for {scope}",
        )

    def ready_message(self) -> tuple[str, str] | None:
        return None


def attached_models(openwebui_status: Any) -> tuple[str, ...]:
    models = (
        openwebui_status.get("attachedModels") if isinstance(openwebui_status, Mapping) else None
    )
    return tuple(m for m in models if isinstance(m, str)) if isinstance(models, list) else ()


def _rejected(p: Pass, failed: FailedInstall, what: str) -> None:
    """Stalled (most often the file is wrong), and yet tried again with backoff, at once when
    the filter or the spec changes. No retry time in the message: it would change each pass."""
    fid = p.spec.filter_id
    p.fail(
        cond.FILTER_INSTALLED,
        "FunctionRejected",
        f"function {fid} {what}: a syntax or import error (a package the filter imports that "
        "Open WebUI's Python lacks?); see Open WebUI's log; tried again with backoff (failed "
        f"{failed.attempts} time(s)), and at once when the filter or the spec changes",
        temporary=False,
    )
    p.retry_in = p.memory.seconds_until(failed)


# -- install records ------------------------------------------------------------------------------


def install_record(spec: LangfuseTracingSpec, memory: InstallMemory) -> str | None:
    """The record of a function confirmed in use (``runtime`` keeps it in an annotation): the
    previous filter (a Pipelines one, after a move to this target) is removed only then."""
    key = (place(spec)[1], spec.filter_id)
    marker = memory.installed.get(key)
    if marker is None or (key[0], KIND, key[1]) not in memory.confirmed:
        return None
    return json.dumps(
        {"target": KIND, "openWebUI": key[0], "functionId": key[1], "file": marker},
        sort_keys=True,
        separators=(",", ":"),
    )


def recorded_place(data: dict[str, Any]) -> tuple[str, str, str]:
    return (KIND, str(data["openWebUI"]), str(data["functionId"]))


def remember_install(data: dict[str, Any], memory: InstallMemory) -> None:
    """Nothing to seed: the stored content is read on every pass, not remembered."""


# -- deletion -------------------------------------------------------------------------------------


async def remove(
    ref: ResourceRef,
    spec: LangfuseTracingSpec,
    *,
    reader: ReferenceReader,
    upstreams: Upstreams,
    memory: InstallMemory,
    attached: Iterable[str],
    filter_shared: bool,
) -> CleanupResult:
    """Detach the function from the models this resource attached it to, and delete it if this
    operator created it and no other resource uses it."""
    assert spec.open_webui is not None
    fid = spec.filter_id
    api_factory = upstreams.connection
    assert api_factory is not None
    p = Pass(ref=ref, spec=spec, reader=reader, upstreams=upstreams, memory=memory)
    try:
        auth = p.openwebui_auth(api_factory)
    except MissingReference as exc:
        return CleanupResult(
            True,
            False,
            f"nothing removed: {exc.message}",
            left_behind=f"function {fid} in Open WebUI {spec.open_webui.url} ({exc.message}): "
            "remove it by hand",
        )
    writes: list[str] = []
    try:
        async with api_factory.client(spec.open_webui.url, auth) as client:
            api = FunctionsApi(client)
            if not filter_shared:
                async with upstreams.lock_for(spec.open_webui.url):  # as in publish
                    for model in attached:
                        with contextlib.suppress(ModelNotFound):
                            if await api.detach_filter(model, fid):
                                writes.append(f"detached {fid} from model {model}")
                info = await api.get_function(fid)
                if info is not None and is_owned(info):
                    await api.delete_function(fid)
                    writes.append(f"deleted function {fid}")
            if writes:
                await client.refresh_models()  # chats read the cached list
    except FunctionsError as exc:
        return CleanupResult(False, exc.temporary, exc.message, tuple(writes))
    except OpenWebUIError as exc:  # the models refresh
        _, message, temporary = error_reason(exc)
        return CleanupResult(False, temporary, message, tuple(writes))
    memory.forget((spec.open_webui.url, fid))
    if filter_shared:
        return CleanupResult(True, False, "another resource uses the function: kept")
    return CleanupResult(True, False, "removed the function", tuple(writes))


async def retire(
    ref: ResourceRef,
    spec: LangfuseTracingSpec,
    data: dict[str, Any],
    *,
    reader: ReferenceReader,
    upstreams: Upstreams,
    memory: InstallMemory,
) -> str | None:
    """Delete the function this resource installed before its id, Open WebUI or target
    changed (left in place it would trace the same chats twice). Needs the current
    ``spec.openWebUI`` auth for the Open WebUI of the record."""
    _, url, fid = recorded_place(data)
    api_factory = upstreams.connection
    if spec.open_webui is None or api_factory is None:
        raise MissingReference(
            "OpenWebUIAuthMissing", "the spec has no spec.openWebUI to remove the function with"
        )
    p = Pass(ref=ref, spec=spec, reader=reader, upstreams=upstreams, memory=memory)
    auth = p.openwebui_auth(api_factory)
    async with api_factory.client(url, auth) as client:
        api = FunctionsApi(client)
        info = await api.get_function(fid)
        done = None
        if info is not None and is_owned(info):
            await api.delete_function(fid)
            await client.refresh_models()
            done = f"deleted the previous function {fid}"
    memory.forget((url, fid))
    return done
