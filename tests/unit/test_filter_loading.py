"""The bundled filter as a file Pipelines loads: frontmatter, imports, valves, package data."""

from __future__ import annotations

import ast
import hashlib
import sys

import pytest
from openwebui_langfuse import filters

from tests.unit.test_filter_capture import FILTER_PATH, load_filter_module

# What every Pipelines image ships besides the standard library
# (docs/design.md, "The bundled filter").
ALLOWED_THIRD_PARTY = {"pydantic", "httpx", "requests"}


def frontmatter() -> dict[str, str]:
    text = FILTER_PATH.read_text()
    assert text.startswith('"""'), "Pipelines only parses frontmatter at the very start"
    fields = {}
    for line in text[3:].split('"""', 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return fields


def test_frontmatter_has_metadata_and_no_dependency_line() -> None:
    fields = frontmatter()
    assert fields["title"] == "Langfuse Tracing"
    assert fields["version"] == filters.bundled_filter_version()
    assert fields["license"] == "MIT"
    assert fields["author"] and fields["description"]
    assert "requirements" not in fields


def test_imports_only_stdlib_and_what_pipelines_ships() -> None:
    tree = ast.parse(FILTER_PATH.read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    third_party = {name for name in roots if name not in sys.stdlib_module_names}
    assert third_party <= ALLOWED_THIRD_PARTY, third_party


def test_every_valve_has_a_default_so_partial_updates_validate() -> None:
    module = load_filter_module("langfuse_tracing_filter_loading_test")
    schema = module.Pipeline.Valves.model_json_schema()
    assert not schema.get("required")
    # Pipelines builds Valves(**body) from the posted object alone.
    partial = module.Pipeline.Valves(secret_key="sk-lf-x")
    assert partial.pipelines == ["*"] and partial.priority == 0
    assert partial.host == "https://cloud.langfuse.com"
    expected = {"pipelines", "priority", "public_key", "secret_key", "host", "tags"}
    expected |= {"use_model_name_instead_of_id_for_generation", "debug", "user_identity"}
    expected |= {"capture_content"}
    assert expected <= set(schema["properties"])


def test_environment_seeds_the_first_valves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-env")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-env")
    monkeypatch.setenv("LANGFUSE_HOST", "http://langfuse.example:3000")
    module = load_filter_module("langfuse_tracing_filter_env_test")
    valves = module.Pipeline().valves
    assert (valves.public_key, valves.secret_key, valves.host) == (
        "pk-lf-env",
        "sk-lf-env",
        "http://langfuse.example:3000",
    )


def test_package_exposes_the_file_for_upload() -> None:
    data = filters.bundled_filter_bytes()
    assert data == FILTER_PATH.read_bytes()
    assert filters.bundled_filter_text().startswith('"""')
    assert filters.bundled_filter_sha256() == hashlib.sha256(data).hexdigest()
    assert FILTER_PATH.name == filters.BUNDLED_FILTER_FILENAME
