"""Register (and remove) the Pipelines server as an OpenAI-API connection in Open WebUI.

This is step 5 of docs/design.md, "Reconcile". Open WebUI has no per-connection API: its
connections are parallel lists (URLs, keys) plus a dict of per-connection configs keyed by the
*index* as a string, and ``POST /openai/config/update`` replaces all of it. So every change is
read-modify-write of the whole object, and the pure functions below (config in, config out)
carry the rules:

* **Which entry is ours.** The first entry whose URL is the connection URL after normalising:
  scheme and host lower-cased, default port dropped, trailing ``/`` removed, and a trailing
  ``/v1`` ignored. A cluster DNS name counts by its Service: ``p.ns.svc``,
  ``p.ns.svc.cluster.local`` and ``p.ns.svc.cluster.local.`` (any cluster domain) are one
  server, so the connection that the official open-webui chart writes for its own Pipelines
  (``http://<release>-pipelines.<ns>.svc.cluster.local:9099``) is adopted, not duplicated. The
  short forms ``p`` and ``p.ns`` depend on the namespace of whoever resolves them and are
  compared as written. Pipelines serves every route both with and without ``/v1``
  (docs/upstream/pipelines.md, "Routes"), so ``http://p:9099`` and ``http://p:9099/v1/`` are
  the same server; a person's entry written either way is adopted (and its URL string left as
  they wrote it) instead of adding a duplicate.
* **What ours must look like.** A non-empty key (the Pipelines key); config ``enable: true``;
  no ``model_ids`` (Open WebUI then never asks Pipelines for ``/models``, so no filter is ever
  found), no ``prefix_id`` (filter ids get the prefix and every inlet call answers 404, which
  breaks every chat), ``auth_type`` absent or ``bearer`` (any other type stops Open WebUI from
  sending the key when it lists models, so Pipelines answers 401). Every other key of its
  config is kept. See docs/upstream/open-webui.md, "Per-connection config".
* **Everything else is untouched**: other connections, their keys and configs, byte for byte.
  ``ENABLE_OPENAI_API`` is always sent as ``true`` (leaving it out stores ``null``, which turns
  every OpenAI connection off, docs/upstream/open-webui.md, "The OpenAI connection config").
* **Removal** drops our entry and shifts the configs of higher indexes down by one, so every
  other connection keeps its own config.

The async functions at the bottom drive the client: write only when something differs
(a second call writes nothing), re-read right before writing and start over from the fresh read
if a person changed the config meanwhile, then make Open WebUI re-read the models and confirm
it detects Pipelines and sees the filter.

**ENABLE_PERSISTENT_CONFIG=false** cannot be read from Open WebUI 0.12.4: in that mode every
config read (``/openai/config``, ``/api/v1/configs/export``, …) serves the same in-memory
values the writes went to. What can be seen is the loss at a restart; :func:`judge_persistence`
explains the three small markers that catch it. Until Open WebUI has restarted once after the
first sync (or another of its workers answered), the mode is unknown and not reported. The
markers are only written to an Open WebUI whose ``/api/v1/configs/import`` merges
(:data:`IMPORT_MERGES_SINCE`); on any other version the mode stays unknown.
"""

from __future__ import annotations

import copy
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from openwebui_langfuse.clients.openwebui import (
    ApiKeyAuth,
    CredentialsAuth,
    OpenAIConfig,
    OpenWebUIClient,
    OpenWebUIError,
    OpenWebUIServerError,
    OpenWebUIUnauthorized,
    OpenWebUIUnreachable,
    TokenCache,
    open_webui_pool,
)
from openwebui_langfuse.tls import shared_context

__all__ = [
    "ConnectionOutcome",
    "OpenWebUIConnections",
    "ConnectionPlan",
    "plan_registration",
    "plan_removal",
    "plan_usage_capability",
    "judge_persistence",
    "PersistenceJudgement",
    "import_merges",
    "parse_version",
    "same_connection_url",
    "find_connection",
    "remove_connection",
    "sync_connection",
    "sync_connection_with",
    "remove_connection_with",
]

#: Keys of a connection's config that silently disable the filters
#: (docs/upstream/open-webui.md, "Per-connection config").
FORBIDDEN_CONFIG_KEYS = ("model_ids", "prefix_id")

#: How often the read-compare-write loop starts over when the config keeps changing under it.
MAX_WRITE_ATTEMPTS = 3

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: JWTs of CredentialsAuth sign-ins, shared by the short-lived clients of this process.
_TOKENS = TokenCache()


# -- outcome ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionOutcome:
    """What one sync or removal did; maps onto the ``ConnectionRegistered`` condition."""

    registered: bool  # ConnectionRegistered condition status
    reason: str  # CamelCase reason
    message: str  # never a secret
    connection_url: str
    wrote: bool  # an upstream write happened
    temporary: bool  # True: retry with backoff (unreachable/5xx); False: needs a spec/secret change
    # True when this call appended the connection rather than adopting one a person had made:
    # deletion removes only what the operator added, so the caller remembers this.
    added: bool = False


# -- pure config logic --------------------------------------------------------------------------


def normalise_connection_url(url: str) -> str:
    """The form two connection URLs are compared in (see the module docstring)."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = _service_host((parts.hostname or "").lower())
    if ":" in host:  # an IPv6 literal loses its brackets in .hostname
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # not a valid port: compare the text as written
        return url.strip().rstrip("/")
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((scheme, netloc, path.rstrip("/"), parts.query, ""))


def _service_host(host: str) -> str:
    """``name.namespace.svc`` for any fully qualified form of a Service's DNS name."""
    labels = host.rstrip(".").split(".")
    if len(labels) >= 3 and labels[2] == "svc":
        return ".".join(labels[:3])
    return host.rstrip(".")


def same_connection_url(a: str, b: str) -> bool:
    """True when both URLs name the same Pipelines server."""
    return normalise_connection_url(a) == normalise_connection_url(b)


def find_connection(config: OpenAIConfig, connection_url: str) -> int | None:
    """Index of the first connection with this URL, or None."""
    for idx, url in enumerate(config.base_urls):
        if same_connection_url(url, connection_url):
            return idx
    return None


@dataclass(frozen=True)
class ConnectionPlan:
    """The config to store and why. ``changes`` is empty when nothing needs writing."""

    config: OpenAIConfig
    idx: int | None  # our connection's index in ``config`` (None after a removal)
    changes: tuple[str, ...]  # short, secret-free phrases for messages and Events
    added: bool = False  # the connection was appended (it was not there before)


def _aligned(config: OpenAIConfig) -> OpenAIConfig:
    """A deep copy with the keys list as long as the URL list, as Open WebUI itself stores it.

    Open WebUI cuts or pads the keys with ``""`` on update (docs/upstream/open-webui.md,
    "The OpenAI connection config"), so a short keys list is not a difference worth a write.
    """
    n = len(config.base_urls)
    keys = list(config.keys[:n]) + [""] * max(0, n - len(config.keys))
    return OpenAIConfig(
        enable=config.enable,
        base_urls=list(config.base_urls),
        keys=keys,
        configs=copy.deepcopy(config.configs),
    )


def plan_registration(current: OpenAIConfig, connection_url: str, key: str) -> ConnectionPlan:
    """Desired config: ``current`` with our connection present, keyed, enabled and clean.

    ``changes`` lists what differs; it is empty exactly when nothing needs writing.
    """
    if not key:
        raise ValueError("the Pipelines key must be non-empty (Open WebUI skips keyless filters)")
    desired = _aligned(current)
    _index_legacy_configs(desired)
    changes: list[str] = []

    idx = find_connection(desired, connection_url)
    if idx is None:
        idx = len(desired.base_urls)
        # Open WebUI joins "{url}/models" and "{url}/{id}/filter/inlet": no trailing slash.
        desired.base_urls.append(connection_url.strip().rstrip("/"))
        desired.keys.append(key)
        desired.configs[str(idx)] = {"enable": True}
        changes.append(f"added the connection at index {idx}")
    else:
        if desired.keys[idx] != key:
            desired.keys[idx] = key
            changes.append("set the Pipelines key")
        raw = desired.configs.get(str(idx))
        entry: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
        if entry.get("enable") is not True:
            entry["enable"] = True
            # No entry at all counts as enabled in Open WebUI; an explicit false is a person's.
            if isinstance(raw, dict) and "enable" in raw:
                changes.append("enabled the connection (it was disabled)")
            else:
                changes.append("set enable on the connection")
        for forbidden in FORBIDDEN_CONFIG_KEYS:
            if forbidden in entry:
                del entry[forbidden]
                changes.append(f"removed {forbidden} (it stops Open WebUI from running filters)")
        if entry.get("auth_type") not in (None, "bearer"):
            entry["auth_type"] = "bearer"
            changes.append("set auth_type to bearer (Pipelines needs the key)")
        desired.configs[str(idx)] = entry

    if desired.enable is not True:
        desired.enable = True
        changes.append("turned on OpenAI-API connections (ENABLE_OPENAI_API)")

    added = idx == len(current.base_urls)
    return ConnectionPlan(config=desired, idx=idx, changes=tuple(changes), added=added)


def _index_legacy_configs(config: OpenAIConfig) -> None:
    """Key URL-keyed configs (written by Open WebUI ≤0.5.4) by index, in place.

    Open WebUI still reads them as a fallback, but its update drops every key that is not an
    index, so writing them back as they are would silently reset those connections' configs.
    Legacy keys that match no connection, or whose connection has an index-keyed config already
    (which wins on read), are left for Open WebUI to drop: they have no effect today.
    """
    for name in [n for n in config.configs if not n.isdigit()]:
        for idx, url in enumerate(config.base_urls):
            if url == name and str(idx) not in config.configs:
                config.configs[str(idx)] = config.configs[name]
                break


def plan_removal(current: OpenAIConfig, connection_url: str) -> ConnectionPlan:
    """Desired config: ``current`` without our connection, higher configs shifted down.

    ``ENABLE_OPENAI_API`` is sent back as it was: removing our connection is no reason to turn
    a person's other connections on or off.
    """
    desired = _aligned(current)
    _index_legacy_configs(desired)
    idx = find_connection(desired, connection_url)
    if idx is None:
        return ConnectionPlan(config=desired, idx=None, changes=())
    desired.base_urls.pop(idx)
    desired.keys.pop(idx)
    configs: dict[str, Any] = {}
    for name, value in desired.configs.items():
        if not name.isdigit():
            continue  # legacy keys were re-keyed above; Open WebUI drops the rest anyway
        position = int(name)
        if position < idx:
            configs[name] = value
        elif position > idx:
            configs[str(position - 1)] = value
        # position == idx: ours, dropped
    desired.configs = configs
    return ConnectionPlan(
        config=desired, idx=None, changes=(f"removed the connection at index {idx}",)
    )


def plan_usage_capability(models_config: dict[str, Any]) -> dict[str, Any] | None:
    """``models_config`` with ``DEFAULT_MODEL_METADATA.capabilities.usage = true``, or None.

    Only that one flag is added: every other default (other capabilities, tags, …) is kept.
    Capabilities missing from the defaults count as on in Open WebUI, so adding a
    ``capabilities`` object holding only ``usage`` switches nothing else off. A model whose own
    settings say ``usage: false`` keeps that (per-model settings win over the defaults).
    Returns None when the flag is already on (nothing to write).
    """
    metadata = models_config.get("DEFAULT_MODEL_METADATA")
    metadata = copy.deepcopy(metadata) if isinstance(metadata, dict) else {}
    capabilities = metadata.get("capabilities")
    capabilities = dict(capabilities) if isinstance(capabilities, dict) else {}
    if capabilities.get("usage") is True:
        return None
    capabilities["usage"] = True
    metadata["capabilities"] = capabilities
    desired = copy.deepcopy(models_config)
    # The update is a full form whose first three fields are required (null allowed).
    for required in ("DEFAULT_MODELS", "DEFAULT_PINNED_MODELS", "MODEL_ORDER_LIST"):
        desired.setdefault(required, None)
    desired["DEFAULT_MODEL_METADATA"] = metadata
    return desired


# -- is Open WebUI keeping what we write? ---------------------------------------------------

#: Config key Open WebUI keeps across restarts unless ENABLE_PERSISTENT_CONFIG=false (or
#: RESET_CONFIG_ON_START=true): it lives wherever our connection does.
PERSISTENCE_PROBE_KEY = "openwebui_langfuse.persistence_probe"
#: Config key Open WebUI never persists (``oauth.*`` while ENABLE_OAUTH_PERSISTENT_CONFIG is
#: false, its default since 0.6.27): it lives in the memory of the one process (uvicorn worker,
#: replica) that served the write, and vanishes when that process restarts.
RESTART_PROBE_KEY = "oauth.openwebui_langfuse.restart_probe"
#: Key in the operator account's ``info`` (a users-table column, persistent in every mode):
#: the probe's nonce and last verdict.
PROBE_RECORD_KEY = "openwebui_langfuse_persistence"
#: First Open WebUI version whose ``POST /api/v1/configs/import`` upserts the keys it is given
#: (one config row per key since 0.10.0); up to 0.9.x it replaced the whole stored config with
#: the body (docs/upstream/open-webui.md, "Persistent config"). The probe writes nothing to an
#: older server, nor to one whose version it cannot read.
IMPORT_MERGES_SINCE = (0, 10, 0)

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(version: str | None) -> tuple[int, int, int] | None:
    """``"0.12.4"`` → ``(0, 12, 4)``; None for anything that does not start like a version."""
    match = _VERSION.match(version.strip()) if isinstance(version, str) else None
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def import_merges(version: str | None) -> bool:
    """True when this Open WebUI version's config import leaves the keys it is not sent alone."""
    parsed = parse_version(version)
    return parsed is not None and parsed >= IMPORT_MERGES_SINCE


@dataclass(frozen=True)
class PersistenceJudgement:
    """What the markers say, and what (if anything) must be written."""

    verdict: str  # "persistent", "lost" or "unknown"
    write_probes: bool  # (re)write both probe keys with the record's nonce
    write_record: bool  # write the record {nonce, verdict}


def judge_persistence(
    persistence_probe: object, restart_probe: object, record: object
) -> PersistenceJudgement:
    """Verdict on whether Open WebUI keeps config written through its API, from three markers.

    Why three: with ENABLE_PERSISTENT_CONFIG=false Open WebUI 0.12.4 serves every config read,
    ``/api/v1/configs/export`` included, from the same in-memory values its writes go to, so
    no single read reveals the mode (checked: both modes export the same keys and values). The
    only observable is the loss itself. So the operator arms a nonce in three places, once, and
    looks at them on each sync:

    * the record (persistent always) says that the probes were armed, and the last verdict;
    * the persistence probe is stored like the connection: where it is missing, what was written
      through the API is missing too (a restart with persistence off or RESET_CONFIG_ON_START,
      or another worker or replica with persistence off, whose memory never saw the write);
    * the restart probe lives only in the memory of the process that took the write, and both
      probes are written in one request, so in one process's memory they come and go together.
      Hence a persistence probe *without* the restart probe was read from the database, not
      from memory: persistent config is on.

    The reading "persistence probe, no restart probe" is what a restarted process shows, but
    also what every other uvicorn worker or replica shows all the time (each has its own
    memory). It cannot tell the two apart, so it never leads to a write: nothing is re-armed
    for it, the verdict is simply "persistent". Only a loss rewrites the probes, and with the
    same nonce, so several workers converge instead of invalidating each other. A
    steady Open WebUI, with any number of workers, therefore costs no write at all.

    Values are compared by presence, not by nonce: another operator account (or resource)
    arming the same keys with its own nonce proves the same thing about this Open WebUI.

    The verdict is sticky while both probes are there (same process as the write), so a
    status does not flap while nothing changed. "lost" is left only on the reading that proves
    the database holds the probe; with RESET_CONFIG_ON_START and several workers that reading
    also comes from a worker that has not restarted, so there the loss shows only from a
    restart until a pass lands on another worker (the connection is re-registered either way).
    """
    nonce = record.get("nonce") if isinstance(record, dict) else None
    last = record.get("verdict") if isinstance(record, dict) else None
    if not (isinstance(nonce, str) and nonce):
        return PersistenceJudgement("unknown", write_probes=True, write_record=True)
    if persistence_probe is None:
        # What was written is gone where this read was served: write it again (once per process
        # that lacks it), and say so; the record changes only on the way into "lost".
        return PersistenceJudgement("lost", write_probes=True, write_record=last != "lost")
    if restart_probe is None:
        # From the database, not from this process's memory: persistent config is on.
        return PersistenceJudgement("persistent", write_probes=False, write_record=last == "lost")
    verdict = last if last in ("persistent", "lost", "unknown") else "unknown"
    return PersistenceJudgement(verdict, write_probes=False, write_record=False)


# -- driving Open WebUI -------------------------------------------------------------------------


class _ConfigKeptChanging(Exception):
    """The config changed between every read and re-read: someone is editing it right now."""


async def _read_compare_write(
    client: OpenWebUIClient, plan_for: Callable[[OpenAIConfig], ConnectionPlan]
) -> tuple[ConnectionPlan, bool]:
    """Plan from a read; before writing, re-read and start over if the config moved meanwhile.

    Open WebUI has no optimistic locking, so this cannot close the window completely, but it
    narrows it from "the whole reconcile" to the time between the re-read and the write, and it
    never writes a plan computed from a config a person has changed since.
    """
    current = await client.get_openai_config()
    for _ in range(MAX_WRITE_ATTEMPTS):
        plan = plan_for(current)
        if not plan.changes:
            return plan, False
        fresh = await client.get_openai_config()
        if fresh.to_wire() != current.to_wire():
            current = fresh
            continue
        await client.update_openai_config(plan.config)
        return plan, True
    raise _ConfigKeptChanging


async def sync_connection(
    *,
    openwebui_url: str,
    auth: ApiKeyAuth | CredentialsAuth,
    connection_url: str,
    pipelines_key: str,
    usage_capability: bool,
    pipeline_id: str,
    refresh_models: bool = True,
    timeout: float = 10.0,  # noqa: ASYNC109 - per HTTP request, not a deadline for the whole call
) -> ConnectionOutcome:
    """Make Open WebUI use Pipelines at ``connection_url`` and confirm it sees the filter."""
    async with OpenWebUIClient(openwebui_url, auth, timeout=timeout, token_cache=_TOKENS) as client:
        return await sync_connection_with(
            client,
            connection_url=connection_url,
            pipelines_key=pipelines_key,
            usage_capability=usage_capability,
            pipeline_id=pipeline_id,
            refresh_models=refresh_models,
        )


async def remove_connection(
    *,
    openwebui_url: str,
    auth: ApiKeyAuth | CredentialsAuth,
    connection_url: str,
    timeout: float = 10.0,  # noqa: ASYNC109 - per HTTP request, not a deadline for the whole call
) -> ConnectionOutcome:
    """Remove only the connection with this URL; every other connection keeps its config."""
    async with OpenWebUIClient(openwebui_url, auth, timeout=timeout, token_cache=_TOKENS) as client:
        return await remove_connection_with(client, connection_url=connection_url)


class OpenWebUIConnections:
    """The Open WebUI step as the reconcile pass calls it (``reconcile.ConnectionApi``): each
    call opens a client with the given auth and the operator's HTTP timeout."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._pools: dict[str, httpx.AsyncClient] = {}

    def auth(
        self, api_key: str | None, email: str | None, password: str | None
    ) -> ApiKeyAuth | CredentialsAuth:
        if api_key is not None:
            return ApiKeyAuth(api_key=api_key)
        return CredentialsAuth(email=email or "", password=password or "")

    async def sync(
        self,
        *,
        openwebui_url: str,
        auth: ApiKeyAuth | CredentialsAuth,
        connection_url: str,
        pipelines_key: str,
        usage_capability: bool,
        pipeline_id: str,
        refresh_models: bool,
    ) -> ConnectionOutcome:
        async with self.client(openwebui_url, auth) as client:
            return await sync_connection_with(
                client,
                connection_url=connection_url,
                pipelines_key=pipelines_key,
                usage_capability=usage_capability,
                pipeline_id=pipeline_id,
                refresh_models=refresh_models,
            )

    def client(self, openwebui_url: str, auth: ApiKeyAuth | CredentialsAuth) -> OpenWebUIClient:
        """A client of that Open WebUI for a few calls (``async with``), on the one pool this
        process keeps per Open WebUI URL: passes reuse its connections instead of opening new
        ones (and a TLS context) each time."""
        url = openwebui_url.rstrip("/")
        pool = self._pools.get(url)
        if pool is None or pool.is_closed:
            pool = self._pools[url] = open_webui_pool(url, self._timeout, verify=shared_context())
        return OpenWebUIClient(url, auth, timeout=self._timeout, token_cache=_TOKENS, http=pool)

    async def remove(
        self, *, openwebui_url: str, auth: ApiKeyAuth | CredentialsAuth, connection_url: str
    ) -> ConnectionOutcome:
        async with self.client(openwebui_url, auth) as client:
            return await remove_connection_with(client, connection_url=connection_url)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


async def sync_connection_with(
    client: OpenWebUIClient,
    *,
    connection_url: str,
    pipelines_key: str,
    usage_capability: bool,
    pipeline_id: str,
    refresh_models: bool = True,
) -> ConnectionOutcome:
    """:func:`sync_connection` on a given client (tests hand in one with a hooked transport).

    Open WebUI's models are refreshed (every provider is asked for its list again) only when
    chats may not see the filter yet: ``refresh_models`` (the caller installed it, or has not
    confirmed it since it started), or a changed connection (also the one re-registered after
    Open WebUI lost it). A restart alone is none: Open WebUI starts with an empty model list and
    builds it afresh on first use.
    """
    wrote = False
    added = False

    def outcome(registered: bool, reason: str, message: str, temporary: bool) -> ConnectionOutcome:
        return ConnectionOutcome(
            registered=registered,
            reason=reason,
            message=message,
            connection_url=connection_url,
            wrote=wrote,
            temporary=temporary,
            added=added,
        )

    try:
        plan, wrote = await _read_compare_write(
            client, lambda current: plan_registration(current, connection_url, pipelines_key)
        )
        assert plan.idx is not None
        added = wrote and plan.added
        if usage_capability and await ensure_usage_capability(client):
            wrote = True
        verdict, probed = await _probe_persistence(client)
        # A restarted Open WebUI builds its model list afresh on first use (it is empty at
        # start), so only a change here, or the caller, is a reason to ask every provider.
        refresh = refresh_models or wrote
        wrote = wrote or probed
        confirmed = await _confirm(client, plan, pipeline_id, outcome, refresh=refresh)
        if confirmed.registered and verdict == "lost":
            return outcome(
                True,
                "PersistentConfigDisabled",
                f"{confirmed.message}; but Open WebUI lost settings written through its API at "
                "a restart, or does not have them on another of its workers or replicas "
                "(ENABLE_PERSISTENT_CONFIG=false or RESET_CONFIG_ON_START=true): the connection "
                "is re-registered at each resync, and is missing from a restart until then. Turn "
                "persistent config on, or configure the connection through Open WebUI's "
                "OPENAI_API_* environment variables",
                False,
            )
        return confirmed
    except _ConfigKeptChanging:
        return outcome(
            False,
            "ConfigContended",
            f"Open WebUI's connection settings changed on each of {MAX_WRITE_ATTEMPTS} "
            "attempts to update them (someone is editing them); will try again",
            True,
        )
    except OpenWebUIError as exc:
        return outcome(False, *error_reason(exc))


async def remove_connection_with(
    client: OpenWebUIClient, *, connection_url: str
) -> ConnectionOutcome:
    """:func:`remove_connection` on a given client."""
    wrote = False
    try:
        plan, wrote = await _read_compare_write(
            client, lambda current: plan_removal(current, connection_url)
        )
        if wrote:
            # Chats use Open WebUI's cached model list: drop the filters from it now.
            await client.refresh_models()
            message = f"{plan.changes[0]}; other connections kept"
            reason = "Removed"
        else:
            message = "no connection with this URL in Open WebUI; nothing to remove"
            reason = "NotRegistered"
        return ConnectionOutcome(False, reason, message, connection_url, wrote, False)
    except _ConfigKeptChanging:
        return ConnectionOutcome(
            False,
            "ConfigContended",
            "Open WebUI's connection settings kept changing during removal; will try again",
            connection_url,
            wrote,
            True,
        )
    except OpenWebUIError as exc:
        return ConnectionOutcome(False, *_error_reason_for(exc, connection_url, wrote))


def error_reason(exc: OpenWebUIError) -> tuple[str, str, bool]:
    if isinstance(exc, OpenWebUIUnauthorized):
        return "OpenWebUIUnauthorized", f"Open WebUI refused the admin credentials: {exc}", False
    if isinstance(exc, OpenWebUIUnreachable):
        return "OpenWebUIUnreachable", str(exc), True
    if isinstance(exc, OpenWebUIServerError):
        return "OpenWebUIError", str(exc), True
    # Any other status or an unexpected body: retrying the same call will not help.
    return "OpenWebUIError", f"unexpected answer from Open WebUI: {exc}", False


def _error_reason_for(
    exc: OpenWebUIError, connection_url: str, wrote: bool
) -> tuple[str, str, str, bool, bool]:
    reason, message, temporary = error_reason(exc)
    return reason, message, connection_url, wrote, temporary


async def _probe_persistence(client: OpenWebUIClient) -> tuple[str, bool]:
    """Read the three markers, judge, write what the judgement asks; returns (verdict, wrote).

    Nothing at all is read or written on an Open WebUI whose config import would replace its
    whole configuration (or whose version is unknown): the verdict is then "unknown".
    """
    if not import_merges(await client.get_version()):
        return "unknown", False
    persistence_probe = (await client.get_config_namespace("openwebui_langfuse")).get(
        PERSISTENCE_PROBE_KEY
    )
    restart_probe = (await client.get_config_namespace("oauth.openwebui_langfuse")).get(
        RESTART_PROBE_KEY
    )
    record = (await client.get_user_info()).get(PROBE_RECORD_KEY)
    judgement = judge_persistence(persistence_probe, restart_probe, record)
    nonce = record.get("nonce") if isinstance(record, dict) else None
    if not (isinstance(nonce, str) and nonce):
        nonce = secrets.token_hex(8)
    if judgement.write_probes:
        await client.set_config_values({PERSISTENCE_PROBE_KEY: nonce, RESTART_PROBE_KEY: nonce})
    if judgement.write_record:
        await client.merge_user_info(
            {PROBE_RECORD_KEY: {"nonce": nonce, "verdict": judgement.verdict}}
        )
    return judgement.verdict, judgement.write_probes or judgement.write_record


async def ensure_usage_capability(client: OpenWebUIClient) -> bool:
    """Turn on the default ``usage`` capability; True when that needed a write."""
    desired = plan_usage_capability(await client.get_models_config())
    if desired is None:
        return False
    await client.update_models_config(desired)
    return True


async def _confirm(
    client: OpenWebUIClient,
    plan: ConnectionPlan,
    pipeline_id: str,
    outcome: Callable[[bool, str, str, bool], ConnectionOutcome],
    *,
    refresh: bool,
) -> ConnectionOutcome:
    """Refresh Open WebUI's models when needed, then check it detects Pipelines and sees the
    filter."""
    assert plan.idx is not None
    idx = plan.idx
    done = "; ".join(plan.changes) if plan.changes else "already registered as required"
    # Chats use Open WebUI's cached model list; filters only take part after a refresh
    # (docs/upstream/open-webui.md, "How filters run in a chat").
    if refresh:
        await client.refresh_models()
    detected = await client.list_pipelines_connections()
    if not any(conn.idx == idx for conn in detected):
        return outcome(
            False,
            "PipelinesNotDetected",
            f"{done}; but Open WebUI does not detect a Pipelines server at connection {idx}: "
            "check that connectionUrl is reachable from Open WebUI and that the key is the "
            "Pipelines API key",
            True,
        )
    models = await client.connection_models(idx)
    if not any(_is_filter(model, pipeline_id) for model in models):
        return outcome(
            False,
            "FilterNotVisible",
            f"{done}; Open WebUI detects Pipelines at connection {idx} but does not see the "
            f"filter {pipeline_id!r} there (not installed, or failed to load)",
            True,
        )
    return outcome(
        True,
        "Registered",
        f"{done}; Open WebUI detects Pipelines at connection {idx} and sees the filter "
        f"{pipeline_id!r}",
        False,
    )


def _is_filter(model: dict[str, Any], pipeline_id: str) -> bool:
    pipeline = model.get("pipeline")
    return (
        model.get("id") == pipeline_id
        and isinstance(pipeline, dict)
        and pipeline.get("type") == "filter"
    )


# The bundled filter's valve of connection prefixes it cuts from the model name it sends, so a
# prefixed connection's model is priced as the upstream model (docs/tracing.md, "The model
# name (why: cost)"). The function target fills it from Open WebUI's connections unless
# filter.valves sets it.
MODEL_PREFIXES_VALVE = "model_prefixes"


async def connection_prefixes(client: OpenWebUIClient) -> list[str] | None:
    """The ``prefix_id`` of every OpenAI connection of that Open WebUI, sorted; None when its
    connection config cannot be read (the valve is then left as it is)."""
    try:
        config = await client.get_openai_config()
    except OpenWebUIError:
        return None
    prefixes = {
        str(c["prefix_id"]).strip()
        for c in config.configs.values()
        if isinstance(c, Mapping) and isinstance(c.get("prefix_id"), str) and c["prefix_id"].strip()
    }
    return sorted(prefixes)
