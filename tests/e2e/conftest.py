"""Fixtures of the end-to-end tests: the whole stack (tests/e2e/stack.py) in a fresh namespace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.e2e.stack import Stack

if TYPE_CHECKING:
    from tests.peers.langfuse_standin.server import LangfuseStandIn
    from tests.world.cluster import Cluster
    from tests.world.manifest import World
    from tests.world.open_webui import OpenWebUI

# A connection a person added before the operator came: it must come out of every test exactly
# as it went in. Port 9 on loopback: nothing listens, nothing leaves the host.
OTHER_URL = "http://127.0.0.1:9/v1"
OTHER_KEY = "sk-other-connection"
OTHER_CONFIG = {"enable": True, "tags": [{"name": "kept"}], "connection_type": "external"}


@pytest.fixture
def stack(
    world: World,
    cluster: Cluster,
    open_webui: OpenWebUI,
    langfuse: LangfuseStandIn,
    namespace: str,
) -> Iterator[Stack]:
    """The chart installed in ``namespace`` (nothing started yet), with Open WebUI holding one
    hand-made connection; everything the stack starts is stopped afterwards."""
    open_webui.set_connections([OTHER_URL], [OTHER_KEY], {"0": OTHER_CONFIG})
    with Stack(world, cluster, open_webui, langfuse, namespace) as s:
        yield s
    open_webui.set_connections([], [])
