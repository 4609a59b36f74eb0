"""The operator's readiness endpoint (``--readiness``): ready once kopf watches its resources.

kopf's own health server (``--liveness``) answers as long as the operator runs, which is what a
liveness probe must know, and nothing more. Readiness is what rollouts wait for (``helm
--wait``, ``kubectl rollout status``, kstatus in Argo CD and Flux), so it is stricter:

* the LangfuseTracing CRD was served when the operator started. kopf discovers resources right
  after the startup handlers, and in namespaced mode only then (``handlers.configure``), so an
  operator that started before its CRD never watches LangfuseTracings until it restarts;
* kopf has handled its first watch event. kopf holds every handler until the initial listing of
  every indexed resource in every watched namespace is complete, and LangfuseTracings, Secrets
  and ConfigMaps all have indices here: the first handled event proves that all those lists
  went through (RBAC, CRD, API server) and their watch streams run. Every namespace holds the
  ``kube-root-ca.crt`` ConfigMap (kube-controller-manager publishes it; pods' service-account
  tokens need it), so that first event comes at once, with or without LangfuseTracings.

Once ready it stays ready: kopf re-establishes broken watches itself and exits when it cannot,
and nothing routes traffic to the operator pod, so there is nothing to take it out of.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp.web

from openwebui_langfuse.models import GROUP, PLURAL, VERSION

CRD_NAME = f"{PLURAL}.{GROUP}"


@dataclass
class Readiness:
    """What the endpoint reports; set by the startup handler and the first watch event."""

    # None until the startup check ran; then whether the API server served the CRD.
    crd_served: bool | None = None
    watching: bool = False

    @property
    def ready(self) -> bool:
        return self.crd_served is True and self.watching

    def reason(self) -> str:
        """Why it is not ready (empty when it is): what an operator's admin would check."""
        if self.crd_served is None:
            return "starting: the startup checks have not finished"
        if not self.crd_served:
            return (
                f"the CRD {CRD_NAME} ({GROUP}/{VERSION}) was not served when the operator "
                "started: install it, then restart the operator"
            )
        if not self.watching:
            return "waiting for the initial listing of the watched resources"
        return ""


def served(discovery: dict[str, object]) -> bool:
    """Whether an APIResourceList (``GET /apis/<group>/<version>``) lists LangfuseTracings."""
    resources = discovery.get("resources")
    if not isinstance(resources, list):
        return False
    return any(isinstance(r, dict) and r.get("name") == PLURAL for r in resources)


def parse_endpoint(url: str) -> tuple[str, int, str]:
    """``http://host:port/path`` -> (host, port, path); ValueError names what is wrong."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"readiness endpoint must be http://host:port/path, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"readiness endpoint has an invalid port: {url!r}") from None
    if port is None:
        raise ValueError(f"readiness endpoint needs a port: {url!r}")
    return parts.hostname, port, parts.path or "/"


async def serve(url: str, readiness: Readiness) -> aiohttp.web.AppRunner:
    """Serve ``readiness`` at ``url`` (200 or 503 with the reason); stop with ``cleanup()``."""
    host, port, path = parse_endpoint(url)

    async def get(_: aiohttp.web.Request) -> aiohttp.web.Response:
        if readiness.ready:
            return aiohttp.web.json_response({"ready": True})
        return aiohttp.web.json_response({"ready": False, "reason": readiness.reason()}, status=503)

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get(path, get)])
    # No signal handling: kopf owns the process's signals.
    runner = aiohttp.web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await aiohttp.web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
