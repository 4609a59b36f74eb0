"""Operator settings from ``OPENWEBUI_LANGFUSE_*`` environment variables, validated at startup.

Command-line flags (``cli.py``) override the environment; everything has a default that suits
the chart, so an empty environment is a valid configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from openwebui_langfuse.readiness import parse_endpoint

ENV_PREFIX = "OPENWEBUI_LANGFUSE_"
LogFormat = Literal["text", "json"]
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class ConfigError(ValueError):
    """An operator setting is invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    liveness: str | None = None
    # URL of the readiness endpoint (``readiness.py``), e.g. http://0.0.0.0:8081/readyz.
    readiness: str | None = None
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    # How long a finalizer waits for an unreachable upstream before it lets go (deletes never
    # wedge); the chart's pre-delete hook waits 120 s, so this must stay below that.
    delete_timeout: float = 60.0
    # Per-request timeout towards Pipelines, Langfuse and Open WebUI. A reconcile makes a few
    # sequential calls; 10 s keeps a hung upstream from holding the per-URL write lock for long.
    http_timeout: float = 10.0
    # Upper bound of the retry backoff after temporary errors (starts at 1 s, doubles).
    max_backoff: float = 60.0
    # ``namespace/name`` of the Pipelines API-key Secret to create once at start-up when it is
    # absent (the chart's default): a key made here, not in a template, so `helm template`
    # renders the same bytes every time and GitOps never rotates the key by syncing.
    pipelines_key_secret: str | None = None
    # The key inside that Secret.
    pipelines_key_secret_key: str = "api-key"
    # ``namespace/name`` of the Lease that elects the one replica that reconciles (leader.py);
    # None: no election (one replica, or a process run by hand).
    leader_lease: str | None = None

    def validate(self) -> Settings:
        if self.all_namespaces and self.namespaces:
            raise ConfigError("use either --all-namespaces or --namespace, not both")
        if not self.all_namespaces and not self.namespaces:
            raise ConfigError(
                "no namespace to watch: pass --namespace NS (or OPENWEBUI_LANGFUSE_NAMESPACES) "
                "or --all-namespaces"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError("log format must be text or json")
        if self.readiness is not None:
            try:
                parse_endpoint(self.readiness)
            except ValueError as exc:
                raise ConfigError(f"{ENV_PREFIX}READINESS: {exc}") from None
        if self.log_level.upper() not in _LOG_LEVELS:
            raise ConfigError(f"log level must be one of {', '.join(_LOG_LEVELS)}")
        if self.pipelines_key_secret is not None:
            namespace, _, name = self.pipelines_key_secret.partition("/")
            if not namespace or not name or "/" in name:
                raise ConfigError(f"{ENV_PREFIX}PIPELINES_KEY_SECRET must be namespace/name")
        if self.leader_lease is not None:
            namespace, _, name = self.leader_lease.partition("/")
            if not namespace or not name or "/" in name:
                raise ConfigError(f"{ENV_PREFIX}LEADER_LEASE must be namespace/name")
        if not self.pipelines_key_secret_key:
            raise ConfigError(f"{ENV_PREFIX}PIPELINES_KEY_SECRET_KEY must not be empty")
        for name in ("delete_timeout", "http_timeout", "max_backoff"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be positive")
        return self


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(ENV_PREFIX + name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{ENV_PREFIX}{name} must be true or false")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(ENV_PREFIX + name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name} must be a number of seconds") from None


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from the environment (not yet validated: flags may still override)."""
    env = os.environ if env is None else env
    namespaces = tuple(
        ns.strip() for ns in env.get(ENV_PREFIX + "NAMESPACES", "").split(",") if ns.strip()
    )
    log_format = env.get(ENV_PREFIX + "LOG_FORMAT", "text").strip().lower() or "text"
    if log_format not in ("text", "json"):
        raise ConfigError(f"{ENV_PREFIX}LOG_FORMAT must be text or json")
    return Settings(
        namespaces=namespaces,
        all_namespaces=_flag(env, "ALL_NAMESPACES", False),
        liveness=env.get(ENV_PREFIX + "LIVENESS") or None,
        readiness=env.get(ENV_PREFIX + "READINESS") or None,
        log_format="json" if log_format == "json" else "text",
        log_level=(env.get(ENV_PREFIX + "LOG_LEVEL", "INFO").strip() or "INFO").upper(),
        delete_timeout=_seconds(env, "DELETE_TIMEOUT", 60.0),
        http_timeout=_seconds(env, "HTTP_TIMEOUT", 10.0),
        max_backoff=_seconds(env, "MAX_BACKOFF", 60.0),
        pipelines_key_secret=env.get(ENV_PREFIX + "PIPELINES_KEY_SECRET", "").strip() or None,
        pipelines_key_secret_key=env.get(
            ENV_PREFIX + "PIPELINES_KEY_SECRET_KEY", "api-key"
        ).strip(),
        leader_lease=env.get(ENV_PREFIX + "LEADER_LEASE", "").strip() or None,
    )
