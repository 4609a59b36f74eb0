"""pytest plugin: the `langfuse` fixture, a fresh stand-in per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import LangfuseStandIn


@pytest.fixture
def langfuse() -> Iterator[LangfuseStandIn]:
    """A started stand-in with one project whose keys are random (`.public_key`,
    `.secret_key`, `.project_id`, `.url`); nothing is shared with other tests."""
    with LangfuseStandIn() as standin:
        standin.add_project(name="test-project")
        yield standin
