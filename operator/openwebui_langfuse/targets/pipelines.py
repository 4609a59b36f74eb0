"""The Pipelines target: the filter as a module of an open-webui Pipelines server, which Open
WebUI reaches through an OpenAI-API connection.

Its part of a pass: read the Pipelines key, upload the filter and confirm it loaded, push the
valves, register the connection; and at deletion, remove what the resource added. Writes to one
Pipelines server are serialised by a lock per URL, because the server has none and every upload
reloads every module.
"""

from __future__ import annotations

import json
from typing import Any

from openwebui_langfuse import conditions as cond
from openwebui_langfuse.clients.openwebui import OpenWebUIError
from openwebui_langfuse.clients.pipelines import PipelinesError
from openwebui_langfuse.models import LangfuseTracingSpec, PipelinesSpec
from openwebui_langfuse.passes import (
    CleanupResult,
    FailedInstall,
    InstallMemory,
    MissingReference,
    Pass,
    PipelinesApi,
    ReferenceReader,
    ResourceRef,
    Upstreams,
    desired_valves,
    overlay_valves,
)

# Upstream Pipelines' default PIPELINES_API_KEY, published in its source; the official open-webui
# chart's pipelines subchart runs with it (docs/upstream/pipelines.md, "Authentication").
WELL_KNOWN_PIPELINES_KEY = "0p3n-w3bu!"
KIND = "pipeline"


def server(spec: LangfuseTracingSpec) -> PipelinesSpec:
    """``spec.pipelines``, which the pipelines target requires (parse_spec checks it)."""
    assert spec.pipelines is not None, "the pipelines target requires spec.pipelines"
    return spec.pipelines


def place(spec: LangfuseTracingSpec) -> tuple[str, str, str]:
    """Where the filter lives: the sharing key of the pipeline (``runtime.sharing_keys``)."""
    return (KIND, server(spec).url, spec.filter_id)


def connection_url(spec: LangfuseTracingSpec) -> str:
    assert spec.open_webui is not None and spec.open_webui.connection_url is not None
    return spec.open_webui.connection_url


class PipelinesTarget:
    """One pass's view of the resource's Pipelines server."""

    def __init__(self, p: Pass) -> None:
        self.p = p
        self.server = server(p.spec)
        self.key: str | None = None  # the Pipelines API key, once read
        self.warning: str | None = None  # for Ready's message: working, but not safe
        self.uploaded = False  # this pass put the filter into Pipelines
        self.adds_by_url = True  # Pipelines can fetch a file by its URL itself
        # Beyond the common three, Ready needs Open WebUI's side when the resource manages it.
        self.required: tuple[str, ...] = (
            (cond.CONNECTION_REGISTERED,) if p.spec.open_webui is not None else ()
        )

    async def __aenter__(self) -> PipelinesTarget:
        return self

    async def __aexit__(self, *_: object) -> None:
        """Nothing to close: the Pipelines clients share the operator's HTTP pool."""

    def conflict(self, holder: str) -> tuple[str, str]:
        return (
            "PipelineIdConflict",
            f"LangfuseTracing {holder} already uses pipeline id {self.p.spec.filter_id} on "
            f"{self.server.url}: set spec.filter.pipelineId to another id",
        )

    def resolve(self) -> bool:
        """Read the Pipelines key; a missing one blocks the install (and so all that follows)."""
        try:
            self.key = self.p.secret(self.server.api_key)
        except MissingReference as exc:
            self.p.fail(cond.FILTER_INSTALLED, exc.reason, exc.message, temporary=False)
            return False
        if self.key == WELL_KNOWN_PIPELINES_KEY:
            self.warning = well_known_key_warning(self.p.spec)
        return True

    def _client(self) -> PipelinesApi:
        assert self.key is not None, "resolve() first"
        return self.p.upstreams.pipelines(self.server.url, self.key)

    async def install(self, content: bytes | None, marker: str) -> bool:
        """Upload the filter (or have Pipelines add it from its URL when ``content`` is None)
        under the resource's pipeline id, and confirm that Pipelines loaded it."""
        p = self.p
        spec = p.spec
        pid = spec.filter_id
        key = (self.server.url, pid)
        client = self._client()
        try:
            async with p.upstreams.lock_for(self.server.url):
                remembered = p.memory.installed.get(key) == marker
                waiting = p.memory.waiting(key, marker)
                if remembered or waiting is not None:
                    listed = await client.list_pipelines()
                    loaded = any(row.id == pid for row in listed)
                    if loaded and remembered:
                        p.set(
                            cond.FILTER_INSTALLED,
                            "True",
                            "Installed",
                            f"filter {pid} is loaded in Pipelines",
                        )
                        return True
                    if waiting is not None and not loaded:
                        # Failed before and not due again: report it, upload nothing.
                        _load_failed(p, waiting)
                        return False
                self.uploaded = True
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
            _load_failed(p, p.memory.load_failed(key, marker, cap=spec.resync_seconds))
            return False
        p.memory.installed[key] = marker
        p.memory.failed.pop(key, None)
        p.set(cond.FILTER_INSTALLED, "True", "Installed", f"filter {pid} is loaded in Pipelines")
        return True

    async def sync_valves(self, keys: tuple[str, str]) -> None:
        """GET, overlay, POST the whole object, only when something differs."""
        p = self.p
        spec = p.spec
        pid = spec.filter_id
        desired = desired_valves(spec, *keys)
        client = self._client()
        try:
            async with p.upstreams.lock_for(self.server.url):
                current = await client.get_valves(pid)
                if p.has_unknown_valves(desired, current, f"filter {pid}"):
                    return
                change = overlay_valves(current, desired)
                if change is not None:
                    merged, changed = change
                    await client.update_valves(pid, merged)
                    p.writes.append(f"updated valves {', '.join(changed)} of {pid}")
        except PipelinesError as exc:
            p.fail(cond.VALVES_SYNCED, exc.reason, exc.message, temporary=exc.temporary)
            return
        p.set(cond.VALVES_SYNCED, "True", "Synced", f"valves of {pid} match the resource")

    async def publish(self, *, filter_installed: bool) -> None:
        """Register Pipelines as a connection in Open WebUI (with ``spec.openWebUI``) and confirm
        that Open WebUI sees the filter there."""
        p = self.p
        spec = p.spec
        if spec.open_webui is None:
            return
        pipelines_key = self.key
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
            auth = p.openwebui_auth(api)
        except MissingReference as exc:
            p.fail(cond.CONNECTION_REGISTERED, exc.reason, exc.message, temporary=False)
            return
        seen = (spec.open_webui.url, connection_url(spec), spec.filter_id)
        outcome = await api.sync(
            openwebui_url=spec.open_webui.url,
            auth=auth,
            connection_url=connection_url(spec),
            pipelines_key=pipelines_key,
            usage_capability=spec.open_webui.usage_capability,
            pipeline_id=spec.filter_id,
            # An upload reloads Pipelines' modules; until confirmed, Open WebUI's cached model
            # list may lack the filter. Otherwise a refresh would ask every provider for nothing.
            refresh_models=self.uploaded or seen not in p.memory.confirmed,
        )
        if outcome.registered:
            p.memory.confirmed.add(seen)
        else:
            p.memory.confirmed.discard(seen)
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
                cond.CONNECTION_REGISTERED,
                outcome.reason,
                outcome.message,
                temporary=outcome.temporary,
            )

    def ready_message(self) -> tuple[str, str] | None:
        """Ready's reason and message when the resource does not manage Open WebUI (None: the
        default)."""
        if self.p.spec.open_webui is not None:
            return None
        return ("ConnectionNotManaged", connection_to_add(self.p.spec))


def _load_failed(p: Pass, failed: FailedInstall) -> None:
    """Stalled (most often the file is wrong: a person should look), and yet tried again on its
    own with backoff, since the cause may be transient. No retry time in the message: it would
    change the status (a write) on every pass."""
    pid = p.spec.filter_id
    p.fail(
        cond.FILTER_INSTALLED,
        "FilterLoadFailed",
        f"Pipelines accepted {pid}.py but did not load it (a syntax or import error, or a "
        "failed requirements install; see the Pipelines log); uploaded again with backoff "
        f"(failed {failed.attempts} time(s)), and at once when the filter or the spec changes",
        temporary=False,
    )
    p.retry_in = p.memory.seconds_until(failed)


# Connection reasons that only echo a failed filter step (Open WebUI cannot see a filter that
# is not loaded, nor a Pipelines server that refuses the key): not outcomes of their own, so a
# permanent filter failure still stalls instead of being retried as a temporary one forever.
_FILTER_CONSEQUENCES = frozenset({"FilterNotVisible", "PipelinesNotDetected"})


# -- deletion -------------------------------------------------------------------------------------


async def remove(
    ref: ResourceRef,
    spec: LangfuseTracingSpec,
    *,
    reader: ReferenceReader,
    upstreams: Upstreams,
    memory: InstallMemory,
    filter_shared: bool,
    connection_shared: bool,
    connection_added: bool,
) -> CleanupResult:
    """Delete the filter and the connection this resource added (``reconcile.cleanup``)."""
    writes: list[str] = []
    pipelines = server(spec)
    try:
        pipelines_key = reader.secret_value(
            ref.namespace, pipelines.api_key.name, pipelines.api_key.key
        )
    except MissingReference as exc:
        # Without the key nothing can be removed; waiting would not bring the Secret back.
        left = f"filter {spec.filter_id} in Pipelines {pipelines.url}"
        if spec.open_webui is not None and connection_added and not connection_shared:
            left += f" and the connection {connection_url(spec)} in Open WebUI"
        return CleanupResult(
            True,
            False,
            f"nothing removed: {exc.message}",
            left_behind=f"{left} ({exc.message}): remove them by hand",
        )
    if not filter_shared:
        client = upstreams.pipelines(pipelines.url, pipelines_key)
        view = _OpenWebUIView(ref, spec, reader=reader, upstreams=upstreams, memory=memory)
        await _drain(client, pipelines.url, spec.filter_id, view, upstreams)
        try:
            async with upstreams.lock_for(pipelines.url):
                if await client.delete(spec.filter_id):
                    writes.append(f"deleted filter {spec.filter_id}")
        except PipelinesError as exc:
            return CleanupResult(False, exc.temporary, exc.message, tuple(writes))
        memory.forget((pipelines.url, spec.filter_id))
    if spec.open_webui is not None and not connection_added:
        kept = "removed the filter; the Open WebUI connection was there before: kept"
        return CleanupResult(True, False, kept, tuple(writes))
    if spec.open_webui is not None and not connection_shared and upstreams.connection:
        p = Pass(ref=ref, spec=spec, reader=reader, upstreams=upstreams, memory=memory)
        try:
            auth = p.openwebui_auth(upstreams.connection)
        except MissingReference as exc:
            return CleanupResult(
                True,
                False,
                f"connection kept: {exc.message}",
                tuple(writes),
                left_behind=f"the connection {connection_url(spec)} in Open WebUI "
                f"({exc.message}): remove it by hand",
            )
        outcome = await upstreams.connection.remove(
            openwebui_url=spec.open_webui.url,
            auth=auth,
            connection_url=connection_url(spec),
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


# -- the install record (survives operator restarts) -----------------------------------------------


def install_record(spec: LangfuseTracingSpec, memory: InstallMemory) -> str | None:
    """What this resource's filter install is known to be, as a small JSON string.

    Kept in an annotation of the resource by the runtime, so that a restarted operator does not
    upload every filter again: each upload makes Pipelines reload *every* module, which stalls
    the single-process server for a moment per module. It names a public file digest or URL
    and where the Pipelines key is kept (to remove the filter after a move to another target),
    never a secret.
    """
    pipelines = server(spec)
    marker = memory.installed.get((pipelines.url, spec.filter_id))
    if marker is None:
        return None
    key = pipelines.api_key
    return json.dumps(
        {
            "pipelines": pipelines.url,
            "pipelineId": spec.filter_id,
            "file": marker,
            "apiKey": {"name": key.name, "key": key.key},
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def recorded_place(data: dict[str, Any]) -> tuple[str, str, str]:
    return (KIND, str(data["pipelines"]), str(data["pipelineId"]))


def remember_install(data: dict[str, Any], memory: InstallMemory) -> None:
    """Seed the memory from a record written by an earlier operator process."""
    _, url, pipeline_id = recorded_place(data)
    memory.installed.setdefault((url, pipeline_id), str(data["file"]))


async def retire(
    ref: ResourceRef,
    spec: LangfuseTracingSpec,
    data: dict[str, Any],
    *,
    reader: ReferenceReader,
    upstreams: Upstreams,
    memory: InstallMemory,
) -> str | None:
    """Delete the filter this resource installed before its pipeline id, server or target
    changed.

    Left in place it would go on tracing the same chats with the old settings (duplicate
    traces). Uses the Pipelines key the record names (a record of an older operator names
    none: then the resource's current one). Returns what was done, or None.
    """
    _, url, pipeline_id = recorded_place(data)
    ref_data = data.get("apiKey")
    if isinstance(ref_data, dict):
        key_ref = (str(ref_data.get("name")), str(ref_data.get("key")))
    elif spec.pipelines is not None:
        key_ref = (spec.pipelines.api_key.name, spec.pipelines.api_key.key)
    else:
        raise MissingReference(
            "PipelinesKeyUnknown", "the install record names no Secret with the Pipelines key"
        )
    pipelines_key = reader.secret_value(ref.namespace, *key_ref)
    client = upstreams.pipelines(url, pipelines_key)
    openwebui = _OpenWebUIView(ref, spec, reader=reader, upstreams=upstreams, memory=memory)
    await _drain(client, url, pipeline_id, openwebui, upstreams)
    async with upstreams.lock_for(url):
        deleted = await client.delete(pipeline_id)
    memory.forget((url, pipeline_id))
    # Also when this is a retry and the failed attempt deleted the filter already.
    await openwebui.refresh()
    return f"deleted the previous filter {pipeline_id}" if deleted else None


class _OpenWebUIView:
    """Open WebUI's cached model list, refreshed as the resource's admin (when it has one)."""

    def __init__(
        self,
        ref: ResourceRef,
        spec: LangfuseTracingSpec,
        *,
        reader: ReferenceReader,
        upstreams: Upstreams,
        memory: InstallMemory,
    ) -> None:
        self.spec = spec
        self.api = upstreams.connection
        self.pass_ = Pass(ref=ref, spec=spec, reader=reader, upstreams=upstreams, memory=memory)

    @property
    def managed(self) -> bool:
        return self.spec.open_webui is not None and self.api is not None

    async def refresh(self) -> None:
        if self.spec.open_webui is None or self.api is None:
            return
        auth = self.pass_.openwebui_auth(self.api)
        async with self.api.client(self.spec.open_webui.url, auth) as client:
            await client.refresh_models()


async def _drain(
    client: PipelinesApi,
    url: str,
    pipeline_id: str,
    openwebui: _OpenWebUIView,
    upstreams: Upstreams,
) -> None:
    """Take the filter out of Open WebUI's chats before it leaves Pipelines.

    Open WebUI calls every filter of its cached model list, and a chat through one that
    Pipelines no longer has fails (Pipelines answers 404). So first the filter's ``pipelines``
    valve becomes ``[]`` (it then applies to no model), and Open WebUI's list is refreshed;
    only then is the file deleted. Best effort: without Open WebUI (or with it down) the
    filter is deleted all the same.
    """
    if not openwebui.managed:
        return
    try:
        async with upstreams.lock_for(url):
            valves = await client.get_valves(pipeline_id)
            if valves.get("pipelines") != []:
                await client.update_valves(pipeline_id, {**valves, "pipelines": []})
        await openwebui.refresh()
    except (PipelinesError, OpenWebUIError, MissingReference):
        return


# -- messages -------------------------------------------------------------------------------------


def well_known_key_warning(spec: LangfuseTracingSpec) -> str:
    """The status warning for a Pipelines that anyone may call: it names where the key is kept,
    never the key."""
    key = server(spec).api_key
    return (
        f"warning: the Pipelines key in Secret {key.name} (key {key.key}) is upstream's "
        "well-known default, so any pod that reaches Pipelines may install code there: give "
        "Pipelines a random PIPELINES_API_KEY and put it in that Secret, and admit only Open "
        "WebUI and the operator to Pipelines' port with a NetworkPolicy (its valves routes, "
        "which return the Langfuse secret key, need no key at all; the open-webui chart's "
        "pipelines subchart has neither)"
    )


def connection_to_add(spec: LangfuseTracingSpec) -> str:
    """What Open WebUI still needs when this resource does not manage it: without the
    connection, the filter is installed and verified and yet no chat is ever traced."""
    pipelines = server(spec)
    key = pipelines.api_key
    return (
        "the filter is installed in Pipelines, but this resource has no spec.openWebUI, so "
        "nothing points Open WebUI at Pipelines: add an OpenAI API connection in Open WebUI "
        f"(Admin Settings > Connections) with URL {pipelines.url} and the key in Secret "
        f"{key.name} (key {key.key}), no model IDs and no prefix, or set spec.openWebUI"
    )
