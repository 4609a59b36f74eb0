"""Operator settings from OPENWEBUI_LANGFUSE_* variables."""

from __future__ import annotations

import dataclasses

import pytest
from openwebui_langfuse.config import ConfigError, Settings, settings_from_env


def test_env_is_read() -> None:
    settings = settings_from_env(
        {
            "OPENWEBUI_LANGFUSE_NAMESPACES": "a, b,,",
            "OPENWEBUI_LANGFUSE_LIVENESS": "http://0.0.0.0:8080/healthz",
            "OPENWEBUI_LANGFUSE_LOG_FORMAT": "JSON",
            "OPENWEBUI_LANGFUSE_LOG_LEVEL": "debug",
            "OPENWEBUI_LANGFUSE_DELETE_TIMEOUT": "3",
        }
    ).validate()
    assert settings.namespaces == ("a", "b")
    assert settings.liveness == "http://0.0.0.0:8080/healthz"
    assert settings.log_format == "json"
    assert settings.log_level == "DEBUG"
    assert settings.delete_timeout == 3.0
    assert settings.all_namespaces is False


def test_all_namespaces_flag() -> None:
    settings = settings_from_env({"OPENWEBUI_LANGFUSE_ALL_NAMESPACES": "true"}).validate()
    assert settings.all_namespaces is True


@pytest.mark.parametrize(
    "env",
    [
        {"OPENWEBUI_LANGFUSE_ALL_NAMESPACES": "maybe"},
        {"OPENWEBUI_LANGFUSE_LOG_FORMAT": "xml"},
        {"OPENWEBUI_LANGFUSE_DELETE_TIMEOUT": "soon"},
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="OPENWEBUI_LANGFUSE_"):
        settings_from_env(env)


def test_validation() -> None:
    with pytest.raises(ConfigError, match="no namespace"):
        Settings().validate()
    with pytest.raises(ConfigError, match="either"):
        Settings(namespaces=("a",), all_namespaces=True).validate()
    with pytest.raises(ConfigError, match="log level"):
        Settings(namespaces=("a",), log_level="LOUD").validate()
    with pytest.raises(ConfigError, match="positive"):
        dataclasses.replace(Settings(namespaces=("a",)), http_timeout=0).validate()


def test_pipelines_key_secret() -> None:
    settings = settings_from_env(
        {
            "OPENWEBUI_LANGFUSE_NAMESPACES": "a",
            "OPENWEBUI_LANGFUSE_PIPELINES_KEY_SECRET": "tracing/owl-pipelines-api-key",
        }
    ).validate()
    assert settings.pipelines_key_secret == "tracing/owl-pipelines-api-key"
    assert settings.pipelines_key_secret_key == "api-key"
    assert settings_from_env({}).pipelines_key_secret is None
    for bad in ("no-namespace", "/name", "ns/", "a/b/c"):
        with pytest.raises(ConfigError, match="PIPELINES_KEY_SECRET must be namespace/name"):
            Settings(namespaces=("a",), pipelines_key_secret=bad).validate()
