"""One TLS context for every HTTP pool of the process.

An ``httpx.AsyncClient`` made without ``verify=`` builds an SSL context of its own and loads
the CA bundle into it: about 0.8 MiB each. The operator keeps a pool per upstream (20 Pipelines
servers, Langfuse, each Open WebUI), so 200 resources over 20 servers held ~22 of them, ~18 MiB
of the 150 MB budget (bench/operator_scale.md). One context, built the way httpx builds its
default (``create_ssl_context``: certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set), is
shared instead: verification is the same for every pool, and a context is safe to share.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def shared_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()
