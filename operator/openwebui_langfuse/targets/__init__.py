"""Where the filter runs: one module per target, each with the same small part of a pass.

A target is built on the pass (``openwebui_langfuse.passes.Pass``), used as ``async with``
(it may hold a client for the pass), and offers:

- ``resolve()``: read the target's own credentials; False (with the condition set) blocks it;
- ``conflict(holder)``: the reason and message when another resource holds the filter's id;
- ``install(content, marker)``: put the filter there and confirm it loaded (``FilterInstalled``);
- ``sync_valves(keys)``: read the valves, write the whole set only when it differs
  (``ValvesSynced``);
- ``publish(filter_installed=...)``: make Open WebUI use the filter, and confirm it does;
- ``required``: the conditions Ready needs beyond the common three; ``ready_message()`` and
  ``warning``: what Ready says beyond the conditions;

and, at module level, ``place(spec)`` (the filter's sharing key), ``install_record`` /
``remember_install`` / ``recorded_place`` / ``retire`` (the install record, kept in an annotation,
and the removal of a filter the resource installed before it moved), and ``remove`` for deletion,
which removes only what the resource added. This module picks the target of a spec or record.

``pipelines``: a module of an open-webui Pipelines server, reached through a connection.
``function``: an Open WebUI Filter Function, inside Open WebUI.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any, Protocol

from openwebui_langfuse.models import LangfuseTracingSpec
from openwebui_langfuse.passes import InstallMemory, Pass
from openwebui_langfuse.targets import function, pipelines


class Target(Protocol):
    warning: str | None
    required: tuple[str, ...]
    adds_by_url: bool  # can fetch a filter file from its URL itself

    async def __aenter__(self) -> Target: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def resolve(self) -> bool: ...

    def conflict(self, holder: str) -> tuple[str, str]: ...

    async def install(self, content: bytes | None, marker: str) -> bool: ...

    async def sync_valves(self, keys: tuple[str, str]) -> None: ...

    async def publish(self, *, filter_installed: bool) -> None: ...

    def ready_message(self) -> tuple[str, str] | None: ...


def module_for(spec: LangfuseTracingSpec) -> ModuleType:
    return function if spec.target == "function" else pipelines


def for_pass(p: Pass) -> Target:
    if p.spec.target == "function":
        return function.FunctionTarget(p)
    return pipelines.PipelinesTarget(p)


def place(spec: LangfuseTracingSpec) -> tuple[str, str, str]:
    """(kind, URL, id): where the spec's filter lives, and its sharing key."""
    result: tuple[str, str, str] = module_for(spec).place(spec)
    return result


# -- install records ------------------------------------------------------------------------------


def install_record(spec: LangfuseTracingSpec, memory: InstallMemory) -> str | None:
    """The spec's install record once its target confirmed the install (None before)."""
    record: str | None = module_for(spec).install_record(spec, memory)
    return record


def read_record(record: str | None) -> tuple[ModuleType, dict[str, Any]] | None:
    """The target module and data of a record; None when absent or unreadable (hand-edited,
    or from another version: the next pass then installs once more)."""
    if not record:
        return None
    try:
        data = json.loads(record)
        module = function if data.get("target") == function.KIND else pipelines
        module.recorded_place(data)  # all fields there
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return module, data


def recorded_place(record: str | None) -> tuple[str, str, str] | None:
    """Where a record says the filter was installed."""
    read = read_record(record)
    if read is None:
        return None
    result: tuple[str, str, str] = read[0].recorded_place(read[1])
    return result


def remember_install(record: str | None, memory: InstallMemory) -> None:
    """Seed the memory from a record written by an earlier operator process."""
    read = read_record(record)
    if read is not None:
        read[0].remember_install(read[1], memory)


def record_secret_names(record: str | None) -> frozenset[str]:
    """Secrets a record names (the Pipelines key of a filter installed before a move): the
    resource still reads them, to remove that filter, though its spec no longer does."""
    read = read_record(record)
    key = read[1].get("apiKey") if read is not None else None
    name = key.get("name") if isinstance(key, dict) else None
    return frozenset({name}) if isinstance(name, str) and name else frozenset()
