"""Spec parsing: defaults, derived pipeline ids, and clear errors for bad input."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from openwebui_langfuse.models import (
    ApiKeyAuthSpec,
    CredentialsAuthSpec,
    SpecError,
    derived_pipeline_id,
    parse_duration,
    parse_spec,
    referenced_names,
    url_file_stem,
)


def minimal(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "langfuse": {
            "host": "https://cloud.langfuse.com/",
            "publicKey": {"value": "pk-lf-1"},
            "secretKey": {"secretKeyRef": {"name": "lf", "key": "sk"}},
        },
        "pipelines": {
            "url": "http://pipelines.ns.svc:9099",
            "apiKey": {"secretKeyRef": {"name": "pl", "key": "key"}},
        },
    }
    spec.update(overrides)
    return spec


def test_defaults_apply() -> None:
    spec = parse_spec(minimal(), namespace="team-a", name="tracing")
    assert spec.langfuse.host == "https://cloud.langfuse.com"  # trailing slash stripped
    assert spec.langfuse.verify is True
    assert spec.filter.source == "bundled"
    assert spec.filter.models == ("*",)
    assert spec.filter.priority == 0
    assert spec.filter_id == "lft_team_a_tracing"
    assert spec.resync_seconds == 300
    assert spec.suspend is False
    assert spec.deletion_policy == "Delete"
    assert spec.open_webui is None
    assert spec.secret_names() == {"lf", "pl"}


def test_derived_pipeline_id_is_a_module_stem_and_stays_unique_when_cut() -> None:
    assert derived_pipeline_id("My-NS", "a.b") == "lft_my_ns_a_b"
    long_a = derived_pipeline_id("n" * 40, "x" * 30 + "a")
    long_b = derived_pipeline_id("n" * 40, "x" * 30 + "b")
    assert len(long_a) == 63 and long_a != long_b
    digest = hashlib.sha256(("n" * 40 + "/" + "x" * 30 + "a").encode()).hexdigest()[:8]
    assert long_a == ("lft_" + "n" * 40 + "_" + "x" * 30 + "a")[:54] + f"_{digest}"


def test_url_source_uses_the_file_stem() -> None:
    spec = parse_spec(
        minimal(filter={"source": "url", "url": "https://x.test/f/langfuse_filter_pipeline.py"}),
        namespace="ns",
        name="n",
    )
    assert spec.filter_id == "langfuse_filter_pipeline"
    assert url_file_stem("http://h/a/b.py?x=1") == "b"


def test_explicit_pipeline_id_wins() -> None:
    spec = parse_spec(minimal(filter={"pipelineId": "mine"}), namespace="ns", name="n")
    assert spec.filter_id == "mine"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2h", 7200)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "1d", "5m3h", "-1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(SpecError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"resyncInterval": "5s"}, "resyncInterval"),
        ({"filter": {"source": "url"}}, "spec.filter.url"),
        ({"filter": {"source": "url", "url": "https://x/y.txt"}}, ".py"),
        ({"filter": {"source": "configMap"}}, "configMap"),
        ({"filter": {"url": "https://x/y.py"}}, "only allowed"),
        ({"filter": {"sha256": "ABC"}}, "sha256"),
        ({"filter": {"pipelineId": "1bad"}}, "pipelineId"),
        ({"filter": {"models": "gpt"}}, "models"),
        ({"deletionPolicy": "Orphan"}, "deletionPolicy"),
        ({"pipelines": {"url": "ftp://x"}}, "spec.pipelines"),
    ],
)
def test_invalid_specs_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_spec(minimal(**change), namespace="ns", name="n")


def test_public_key_needs_exactly_one_source() -> None:
    spec = minimal()
    spec["langfuse"]["publicKey"] = {
        "value": "pk",
        "secretKeyRef": {"name": "a", "key": "b"},
    }
    with pytest.raises(SpecError, match="exactly one"):
        parse_spec(spec, namespace="ns", name="n")


def test_open_webui_auth_and_connection_url_default() -> None:
    spec = parse_spec(
        minimal(
            openWebUI={
                "url": "http://owui:8080",
                "auth": {"credentials": {"secretRef": {"name": "admin"}}},
            }
        ),
        namespace="ns",
        name="n",
    )
    assert spec.open_webui is not None
    assert spec.open_webui.connection_url == "http://pipelines.ns.svc:9099"
    assert spec.open_webui.auth == CredentialsAuthSpec("admin", "email", "password")
    assert spec.open_webui.usage_capability is True
    assert "admin" in spec.secret_names()
    keyed = parse_spec(
        minimal(
            openWebUI={
                "url": "http://owui:8080",
                "auth": {"apiKey": {"secretKeyRef": {"name": "k", "key": "v"}}},
                "connectionUrl": "http://p:9099/",
            }
        ),
        namespace="ns",
        name="n",
    )
    assert keyed.open_webui is not None
    assert isinstance(keyed.open_webui.auth, ApiKeyAuthSpec)
    assert keyed.open_webui.connection_url == "http://p:9099"


def test_referenced_names_survive_an_invalid_spec() -> None:
    raw = minimal(
        filter={
            "source": "configMap",
            "configMap": {"name": "cm", "key": "f.py"},
            "valves": {"secretKeyRef": {"name": "not-a-ref"}},
        },
        resyncInterval="bogus",
    )
    secrets, config_maps = referenced_names(raw)
    assert secrets == {"lf", "pl"}
    assert config_maps == {"cm"}
