"""kopf's own HTTP session to the API server, bounded; and giving the cold start's heap back.

Checked against kopf 1.45.2 and aiohttp 3.14.5.

kopf builds its session from a returned ``kopf.ConnectionInfo`` in
``kopf/_cogs/clients/auth.py`` (``APIContext.__init__``) with ``aiohttp.TCPConnector(limit=0)``:
no limit, so every concurrent API call opens a TLS connection of its own. On a cold start with
200 resources that was about 250 connections at once, each with asyncio's 256 KiB TLS read
buffer (65 MiB), and the RSS never came back down (bench/operator_scale.md, "Memory").

The supported way around it is kopf's own: a login handler may return a ``kopf.AiohttpSession``
(a session made by the operator) instead of a ``ConnectionInfo``. ``bounded_session`` makes that
session exactly as kopf would (same SSL context, headers, proxy, trust_env, priority,
expiration, default namespace), with a connector limit. Re-logins still work: on a 401 kopf
calls the login handler again and closes the old session itself (``APIContext.close``).

The limit must stay above the number of watch streams: each watch holds one connection for up
to ``settings.watching.server_timeout`` (5 min), so a pool with no free slot left for
patches would stall every finalizer and progress patch behind the watches (and a pool smaller
than the watches never starts some of them). kopf keeps one watch per resource kind per watched
namespace (or one per kind cluster-wide), plus its resource/namespace observers when scanning is
on; ``connection_limit`` adds a fixed margin of connections for the other API calls on top.
Waiting for a free slot counts against the request's total timeout (kopf sets only
``sock_connect`` as the connect timeout), and a patch takes milliseconds, so the margin is ample.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging

import aiohttp
import kopf

logger = logging.getLogger("openwebui_langfuse")

# The kinds kopf watches for this operator's handlers (handlers.py): LangfuseTracings (index,
# daemon, event and delete handlers share one watch), Secrets and ConfigMaps.
WATCHED_KINDS = 3
# kopf's own observers when scanning is on (CRDs, namespaces); none in namespaced mode, where
# scanning is off (handlers.configure), but counted anyway: two idle slots cost nothing.
OBSERVER_STREAMS = 2
# Connections for everything else at once: finalizer/progress patches, events, listings.
# Measured at 200 resources (bench/operator_scale.md): 8 instead of 24 lowered the cold start's
# peak by about 4 MiB (within the runs' spread), not the idle RSS (the extra connections close
# once idle), and one run at load 16 logged 8 retried PATCHes: not worth it.
REQUEST_MARGIN = 24


def connection_limit(
    namespaces: int,
    *,
    all_namespaces: bool,
    kinds: int = WATCHED_KINDS,
    margin: int = REQUEST_MARGIN,
) -> int:
    """The connector limit for kopf's session: the watch streams, the observers, a margin."""
    scopes = 1 if all_namespaces else max(namespaces, 1)
    return kinds * scopes + OBSERVER_STREAMS + margin


def bounded_session(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    """The session kopf would build from ``info`` (auth.py, APIContext), with ``limit``.

    Must be called in the operator's event loop (an ``async`` login handler)."""
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        priority=info.priority,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
    )


# -- heap trimming -------------------------------------------------------------------------------

# glibc keeps freed memory in its heaps (the TLS buffers of the cold start's connections are
# 256 KiB each, below the dynamic mmap threshold once it has grown), so the RSS stays at the
# peak. malloc_trim(0) gives the free pages back. Not glibc (musl, macOS): nothing to do.
_libc_name = ctypes.util.find_library("c")
try:
    _malloc_trim = ctypes.CDLL(_libc_name).malloc_trim if _libc_name else None
except (OSError, AttributeError):
    _malloc_trim = None

# A malloc_trim(0) walks every free chunk: about 20 ms for a fragmented 150 MiB heap with
# nothing left to give back, 0.2 % of a core at this interval. The operator's idle CPU is its
# passes and probes: with the loop off it was no lower (bench/operator_scale.md).
TRIM_INTERVAL = 10.0


def trim_heap() -> bool:
    """Return the C heap's free pages to the system; False where there is no malloc_trim."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


async def trim_heap_periodically(interval: float = TRIM_INTERVAL) -> None:
    """Trim every ``interval`` s: after the cold start, and after any later burst (a few ms)."""
    if not trim_heap():
        return
    while True:
        await asyncio.sleep(interval)
        trim_heap()
