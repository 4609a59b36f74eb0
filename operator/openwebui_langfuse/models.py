"""Typed parsing of the LangfuseTracing resource (camelCase on the wire, snake_case here).

The CRD's schema and CEL rules reject most bad input at admission; this module re-checks what
the operator relies on, because a resource can predate a schema fix or be applied with
validation off, and a clear ``SpecError`` beats a ``KeyError`` deep inside a reconcile.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

GROUP = "openwebui-langfuse.io"
VERSION = "v1alpha1"
KIND = "LangfuseTracing"
PLURAL = "langfusetracings"

FilterSource = Literal["bundled", "url", "configMap"]
DeletionPolicy = Literal["Delete", "Retain"]
# Where the filter runs: a module of a Pipelines server, or a Filter Function inside Open WebUI.
Target = Literal["pipelines", "function"]

DEFAULT_RESYNC_SECONDS = 300.0
MIN_RESYNC_SECONDS = 10.0
DEFAULT_FEEDBACK_POLL_SECONDS = 2.0
MIN_FEEDBACK_POLL_SECONDS = 1.0
PIPELINE_ID_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Open WebUI lower-cases function ids and accepts identifiers only.
FUNCTION_ID_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_DURATION_PATTERN = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class SpecError(ValueError):
    """The resource's spec is invalid; the message names the field, never a value of a Secret."""


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class ConfigMapKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class PublicKeySource:
    """A public key is not secret, so it may be inline (``value``) or referenced."""

    value: str | None = None
    secret_key_ref: SecretKeyRef | None = None


@dataclass(frozen=True)
class LangfuseSpec:
    host: str
    public_key: PublicKeySource
    secret_key: SecretKeyRef
    verify: bool = True


@dataclass(frozen=True)
class PipelinesSpec:
    url: str
    api_key: SecretKeyRef


@dataclass(frozen=True)
class FilterSpec:
    source: FilterSource = "bundled"
    url: str | None = None
    config_map: ConfigMapKeyRef | None = None
    sha256: str | None = None
    pipeline_id: str | None = None
    models: tuple[str, ...] = ("*",)
    priority: int = 0
    valves: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiKeyAuthSpec:
    api_key: SecretKeyRef


@dataclass(frozen=True)
class CredentialsAuthSpec:
    secret_name: str
    email_key: str = "email"
    password_key: str = "password"


@dataclass(frozen=True)
class OpenWebUISpec:
    url: str
    auth: ApiKeyAuthSpec | CredentialsAuthSpec
    # The URL Open WebUI reaches Pipelines at; None with the function target (no connection).
    connection_url: str | None
    usage_capability: bool = True


@dataclass(frozen=True)
class FeedbackSpec:
    """``spec.feedback``: Open WebUI's message ratings sent to Langfuse as scores
    (``feedback_sync``). On by default whenever ``spec.openWebUI`` is set."""

    enabled: bool = True
    poll_seconds: float = DEFAULT_FEEDBACK_POLL_SECONDS


@dataclass(frozen=True)
class LangfuseTracingSpec:
    langfuse: LangfuseSpec
    pipelines: PipelinesSpec | None  # None with the function target
    filter: FilterSpec
    # The filter's id where it runs: its pipeline id, or its function id in Open WebUI.
    filter_id: str
    open_webui: OpenWebUISpec | None = None
    target: Target = "pipelines"
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    suspend: bool = False
    deletion_policy: DeletionPolicy = "Delete"
    feedback: FeedbackSpec = field(default_factory=FeedbackSpec)

    @property
    def syncs_feedback(self) -> bool:
        """Whether feedback goes to Langfuse: it is read from the Open WebUI ``openWebUI``
        names, so without one there is none to read."""
        return self.feedback.enabled and self.open_webui is not None

    def secret_names(self) -> frozenset[str]:
        """Names of every Secret this resource reads (the trigger index keys on them)."""
        names = {self.langfuse.secret_key.name}
        if self.pipelines is not None:
            names.add(self.pipelines.api_key.name)
        if self.langfuse.public_key.secret_key_ref is not None:
            names.add(self.langfuse.public_key.secret_key_ref.name)
        if self.open_webui is not None:
            auth = self.open_webui.auth
            names.add(auth.api_key.name if isinstance(auth, ApiKeyAuthSpec) else auth.secret_name)
        return frozenset(names)

    def config_map_names(self) -> frozenset[str]:
        """Names of every ConfigMap this resource reads."""
        if self.filter.config_map is None:
            return frozenset()
        return frozenset({self.filter.config_map.name})


def derived_pipeline_id(namespace: str, name: str) -> str:
    """The default pipeline id for bundled/configMap filters: unique per resource.

    ``lft_<namespace>_<name>`` lowercased, every character outside ``[a-z0-9_]`` replaced by
    ``_``; past 63 characters it is cut to 54 plus ``_`` and 8 hex of sha256("ns/name"), so
    two long names that share a prefix still differ.
    """
    raw = f"lft_{namespace}_{name}".lower()
    ident = re.sub(r"[^a-z0-9_]", "_", raw)
    if len(ident) > 63:
        digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:8]
        ident = f"{ident[:54]}_{digest}"
    return ident


def url_file_stem(url: str) -> str:
    """The file stem Pipelines uses as the id of a filter added by URL."""
    path = urlsplit(url).path
    base = path.rsplit("/", 1)[-1]
    return base[:-3] if base.endswith(".py") else base


def parse_duration(text: str) -> float:
    """Parse a Go-style duration of h/m/s units (``30s``, ``5m``, ``1h30m``) into seconds."""
    match = _DURATION_PATTERN.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise SpecError(f"resyncInterval {text!r} is not a duration like 30s, 5m or 1h30m")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def _mapping(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where} must be an object")
    return raw


def _string(raw: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise SpecError(f"{where}.{key} is required")
        return ""
    if not isinstance(value, str):
        raise SpecError(f"{where}.{key} must be a string")
    return value


def _http_url(value: str, where: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SpecError(f"{where} must be an http(s) URL")
    return value.rstrip("/")


def _secret_key_ref(raw: Any, where: str) -> SecretKeyRef:
    ref = _mapping(_mapping(raw, where).get("secretKeyRef"), f"{where}.secretKeyRef")
    if not ref:
        raise SpecError(f"{where}.secretKeyRef is required")
    return SecretKeyRef(
        name=_string(ref, "name", f"{where}.secretKeyRef"),
        key=_string(ref, "key", f"{where}.secretKeyRef"),
    )


def _public_key(raw: Any) -> PublicKeySource:
    where = "spec.langfuse.publicKey"
    obj = _mapping(raw, where)
    has_value = bool(obj.get("value"))
    has_ref = obj.get("secretKeyRef") is not None
    if has_value == has_ref:
        raise SpecError(f"{where} needs exactly one of value or secretKeyRef")
    if has_value:
        return PublicKeySource(value=_string(obj, "value", where))
    return PublicKeySource(secret_key_ref=_secret_key_ref(obj, where))


def _filter(raw: Any, namespace: str, name: str, target: Target) -> tuple[FilterSpec, str]:
    where = "spec.filter"
    obj = _mapping(raw, where)
    source = obj.get("source", "bundled")
    if source not in ("bundled", "url", "configMap"):
        raise SpecError(f"{where}.source must be one of bundled, url, configMap")
    url: str | None = None
    config_map: ConfigMapKeyRef | None = None
    if source == "url":
        url = _http_url(_string(obj, "url", where), f"{where}.url")
        if not urlsplit(url).path.endswith(".py"):
            raise SpecError(f"{where}.url must name a .py file")
    elif obj.get("url"):
        raise SpecError(f"{where}.url is only allowed with source: url")
    if source == "configMap":
        cm = _mapping(obj.get("configMap"), f"{where}.configMap")
        if not cm:
            raise SpecError(f"{where}.configMap is required with source: configMap")
        config_map = ConfigMapKeyRef(
            name=_string(cm, "name", f"{where}.configMap"),
            key=_string(cm, "key", f"{where}.configMap"),
        )
    elif obj.get("configMap"):
        raise SpecError(f"{where}.configMap is only allowed with source: configMap")
    sha256 = obj.get("sha256") or None
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256_PATTERN.match(sha256)):
        raise SpecError(f"{where}.sha256 must be 64 lowercase hex characters")
    id_field, id_pattern, other_field = (
        ("functionId", FUNCTION_ID_PATTERN, "pipelineId")
        if target == "function"
        else ("pipelineId", PIPELINE_ID_PATTERN, "functionId")
    )
    if obj.get(other_field):
        raise SpecError(f"{where}.{other_field} is not allowed when spec.target is {target}")
    explicit_id = obj.get(id_field) or None
    if explicit_id is not None and (
        not isinstance(explicit_id, str) or not id_pattern.match(explicit_id)
    ):
        raise SpecError(f"{where}.{id_field} must match {id_pattern.pattern}")
    if explicit_id:
        pipeline_id = explicit_id
    elif url is not None and target == "pipelines":
        pipeline_id = url_file_stem(url)
        if not PIPELINE_ID_PATTERN.match(pipeline_id):
            raise SpecError(f"{where}.url's file name is not a usable pipeline id; set pipelineId")
    else:
        pipeline_id = derived_pipeline_id(namespace, name)
    models = obj.get("models", ["*"])
    if (
        not isinstance(models, Sequence)
        or isinstance(models, str)
        or not all(isinstance(m, str) for m in models)
    ):
        raise SpecError(f"{where}.models must be a list of strings")
    priority = obj.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise SpecError(f"{where}.priority must be an integer")
    valves = _mapping(obj.get("valves"), f"{where}.valves")
    spec = FilterSpec(
        source=source,
        url=url,
        config_map=config_map,
        sha256=sha256,
        pipeline_id=explicit_id,
        models=tuple(models),
        priority=priority,
        valves=dict(valves),
    )
    return spec, pipeline_id


def _open_webui(raw: Any, pipelines_url: str | None) -> OpenWebUISpec | None:
    if raw is None:
        return None
    where = "spec.openWebUI"
    obj = _mapping(raw, where)
    url = _http_url(_string(obj, "url", where), f"{where}.url")
    auth_raw = _mapping(obj.get("auth"), f"{where}.auth")
    has_key = auth_raw.get("apiKey") is not None
    has_creds = auth_raw.get("credentials") is not None
    if has_key == has_creds:
        raise SpecError(f"{where}.auth needs exactly one of apiKey or credentials")
    auth: ApiKeyAuthSpec | CredentialsAuthSpec
    if has_key:
        auth = ApiKeyAuthSpec(api_key=_secret_key_ref(auth_raw["apiKey"], f"{where}.auth.apiKey"))
    else:
        creds = _mapping(auth_raw["credentials"], f"{where}.auth.credentials")
        secret_ref = _mapping(creds.get("secretRef"), f"{where}.auth.credentials.secretRef")
        auth = CredentialsAuthSpec(
            secret_name=_string(secret_ref, "name", f"{where}.auth.credentials.secretRef"),
            email_key=creds.get("emailKey") or "email",
            password_key=creds.get("passwordKey") or "password",
        )
    connection_url: str | None = None
    if pipelines_url is None:
        if obj.get("connectionUrl"):
            raise SpecError(
                f"{where}.connectionUrl is not allowed when spec.target is function: there is "
                "no connection"
            )
    else:
        connection_url = _http_url(
            obj.get("connectionUrl") or pipelines_url, f"{where}.connectionUrl"
        )
    usage = obj.get("usageCapability", True)
    return OpenWebUISpec(
        url=url, auth=auth, connection_url=connection_url, usage_capability=bool(usage)
    )


def parse_spec(raw: Mapping[str, Any], *, namespace: str, name: str) -> LangfuseTracingSpec:
    """Parse ``.spec`` of a LangfuseTracing, applying the CRD's defaults.

    Raises ``SpecError`` naming the offending field (a permanent error: only a spec change
    fixes it).
    """
    spec = _mapping(raw, "spec")
    lf = _mapping(spec.get("langfuse"), "spec.langfuse")
    if not lf:
        raise SpecError("spec.langfuse is required")
    langfuse = LangfuseSpec(
        host=_http_url(_string(lf, "host", "spec.langfuse"), "spec.langfuse.host"),
        public_key=_public_key(lf.get("publicKey")),
        secret_key=_secret_key_ref(lf.get("secretKey"), "spec.langfuse.secretKey"),
        verify=bool(lf.get("verify", True)),
    )
    raw_target = spec.get("target") or "pipelines"
    if raw_target not in ("pipelines", "function"):
        raise SpecError("spec.target must be pipelines or function")
    target: Target = "function" if raw_target == "function" else "pipelines"
    pl = _mapping(spec.get("pipelines"), "spec.pipelines")
    pipelines: PipelinesSpec | None = None
    if target == "function":
        if pl:
            raise SpecError(
                "spec.pipelines is not allowed when spec.target is function: the filter runs "
                "inside Open WebUI"
            )
        if spec.get("openWebUI") is None:
            raise SpecError("spec.openWebUI is required when spec.target is function")
    else:
        if not pl:
            raise SpecError("spec.pipelines is required when spec.target is pipelines")
        pipelines = PipelinesSpec(
            url=_http_url(_string(pl, "url", "spec.pipelines"), "spec.pipelines.url"),
            api_key=_secret_key_ref(pl.get("apiKey"), "spec.pipelines.apiKey"),
        )
    filter_spec, filter_id = _filter(spec.get("filter"), namespace, name, target)
    resync = parse_duration(str(spec.get("resyncInterval") or "5m"))
    if resync < MIN_RESYNC_SECONDS:
        raise SpecError("spec.resyncInterval must be at least 10s")
    feedback = _feedback(spec.get("feedback"))
    policy = spec.get("deletionPolicy", "Delete")
    if policy not in ("Delete", "Retain"):
        raise SpecError("spec.deletionPolicy must be Delete or Retain")
    return LangfuseTracingSpec(
        langfuse=langfuse,
        pipelines=pipelines,
        filter=filter_spec,
        filter_id=filter_id,
        open_webui=_open_webui(spec.get("openWebUI"), pipelines.url if pipelines else None),
        target=target,
        resync_seconds=resync,
        suspend=bool(spec.get("suspend", False)),
        deletion_policy=policy,
        feedback=feedback,
    )


def _feedback(raw: Any) -> FeedbackSpec:
    obj = _mapping(raw, "spec.feedback")
    enabled = obj.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SpecError("spec.feedback.enabled must be true or false")
    text = str(obj.get("pollInterval") or "2s")
    try:
        poll = parse_duration(text)
    except SpecError:
        raise SpecError(
            f"spec.feedback.pollInterval {text!r} is not a duration like 2s or 1m"
        ) from None
    if poll < MIN_FEEDBACK_POLL_SECONDS:
        raise SpecError("spec.feedback.pollInterval must be at least 1s")
    return FeedbackSpec(enabled=enabled, poll_seconds=poll)


def referenced_names(raw_spec: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """Secret and ConfigMap names a raw spec references, even when the rest of it is invalid.

    The trigger index needs these for resources that fail full parsing too: a resource waiting
    for a Secret must still be woken when that Secret appears.
    """
    secrets: set[str] = set()
    config_maps: set[str] = set()

    def walk(node: Any, parent_key: str | None) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                ref_name = value.get("name") if isinstance(value, Mapping) else None
                if key in ("secretKeyRef", "secretRef") and isinstance(ref_name, str):
                    secrets.add(ref_name)
                elif key == "configMap" and parent_key == "filter" and isinstance(ref_name, str):
                    config_maps.add(ref_name)
                elif key != "valves":
                    walk(value, key)
        elif isinstance(node, list):
            for item in node:
                walk(item, parent_key)

    walk(raw_spec, None)
    return secrets, config_maps
