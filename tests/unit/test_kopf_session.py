"""kopf's bounded API session (kopf_session.py): the limit, the session's fields, the trim."""

from __future__ import annotations

import asyncio
import datetime

import kopf
from openwebui_langfuse.kopf_session import (
    OBSERVER_STREAMS,
    REQUEST_MARGIN,
    WATCHED_KINDS,
    bounded_session,
    connection_limit,
    trim_heap,
)


def test_limit_counts_one_watch_per_kind_per_namespace() -> None:
    limit = connection_limit(20, all_namespaces=False)
    assert limit == 3 * 20 + OBSERVER_STREAMS + REQUEST_MARGIN
    # Always room for the other API calls above the watch streams.
    assert limit - WATCHED_KINDS * 20 >= REQUEST_MARGIN > 0


def test_limit_cluster_wide_is_one_watch_per_kind() -> None:
    assert connection_limit(0, all_namespaces=True) == WATCHED_KINDS + OBSERVER_STREAMS + 24
    assert connection_limit(5, all_namespaces=True) == connection_limit(0, all_namespaces=True)


def test_limit_grows_with_the_namespaces_and_is_never_unbounded() -> None:
    limits = [connection_limit(n, all_namespaces=False) for n in (1, 2, 50, 500)]
    assert limits == sorted(limits) and len(set(limits)) == 4
    assert min(limits) > 0  # 0 would mean "no limit" to aiohttp
    assert connection_limit(0, all_namespaces=False) == connection_limit(1, all_namespaces=False)


def test_bounded_session_is_kopfs_session_with_a_limit() -> None:
    expires = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    info = kopf.ConnectionInfo(
        server="https://api.example:6443",
        token="t0ken",
        insecure=True,
        default_namespace="ns",
        priority=7,
        expiration=expires,
    )

    async def make() -> tuple[kopf.AiohttpSession, int | None]:
        made = bounded_session(info, 42)
        connector = made.aiohttp_session.connector
        limit = connector.limit if connector is not None else None
        await made.aiohttp_session.close()
        return made, limit

    made, limit = asyncio.run(make())
    assert made.server == info.server and made.default_namespace == "ns"
    assert made.priority == 7 and made.expiration == expires
    assert limit == 42
    assert made.aiohttp_session.headers["Authorization"] == "Bearer t0ken"


def test_trim_heap_runs() -> None:
    assert trim_heap() in (True, False)
