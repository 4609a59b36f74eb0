"""Leader election with a Kubernetes Lease, so that of several operator replicas exactly one
reconciles at a time (``operator.replicas: 2`` in the chart).

A replica that does not hold the Lease waits *before* kopf starts: it watches nothing, writes
nothing, and answers its liveness and readiness probes as a standby (``StandbyProbes``), so a
rolling update proceeds while the old leader still runs. It takes the Lease when the holder
gave it up (a clean shutdown releases it at once) or when the Lease record has not changed for
``duration`` seconds as measured on this replica's own clock (client-go's rule, which needs no
clock agreement between nodes). Every change is a PUT with the record's ``resourceVersion``,
so two replicas that try at once cannot both win.

The leader renews every ``period`` seconds from a thread; if it cannot renew for
``renew_deadline`` seconds (less than ``duration``, so it stops before anyone may take over), it
ends the process at once: kopf is not stopped gracefully, because a graceful stop may take longer
than the Lease has left, and two replicas must never reconcile together. Kubernetes restarts the
container, which then waits as a standby.

With the defaults (8 s, 1 s, 6 s) a leader killed with SIGKILL is replaced within about 10 s
plus kopf's start-up.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from openwebui_langfuse.kube import KubeCredentials

logger = logging.getLogger("openwebui_langfuse.leader")

LEASE_DURATION_SECONDS = 8.0
RETRY_PERIOD_SECONDS = 1.0
RENEW_DEADLINE_SECONDS = 6.0


def identity() -> str:
    """This replica's name in the Lease: the pod name (downward API) or host and process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseError(Exception):
    """The Lease could not be read or written (the message names the call and status)."""


class LeaseLock:
    """One Lease, held by at most one ``identity`` at a time."""

    def __init__(
        self,
        credentials: KubeCredentials,
        namespace: str,
        name: str,
        *,
        holder: str | None = None,
        duration: float = LEASE_DURATION_SECONDS,
        period: float = RETRY_PERIOD_SECONDS,
        renew_deadline: float = RENEW_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.holder = holder or identity()
        self.duration = duration
        self.period = period
        self.renew_deadline = renew_deadline
        self._clock = clock
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        self._http = httpx.Client(
            base_url=credentials.server.rstrip("/"),
            verify=credentials.ssl_context,
            headers=dict(credentials.headers),
            timeout=max(period * 2, 2.0),
            transport=transport,
        )
        # The record as last seen, and when (on our clock) it last changed.
        self._seen_version: str | None = None
        self._seen_at = 0.0
        self._renewed_at = 0.0
        self._stop = threading.Event()

    # -- one attempt --------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise LeaseError(f"{method} lease {self.name}: {type(exc).__name__}") from None

    def try_acquire(self) -> bool:
        """Take or renew the Lease if it is ours to take; True when we hold it now."""
        now = self._clock()
        response = self._call("GET", f"{self._path}/{self.name}")
        if response.status_code == 404:
            created = self._call("POST", self._path, self._record(None, transitions=0))
            if created.status_code in (200, 201):
                self._took(created, now)
                self._log_taken("nobody: created it")
                return True
            if created.status_code == 409:  # another replica created it first
                return False
            raise LeaseError(f"create lease {self.name}: HTTP {created.status_code}")
        if response.status_code != 200:
            raise LeaseError(f"get lease {self.name}: HTTP {response.status_code}")
        lease = response.json()
        version = lease["metadata"].get("resourceVersion")
        spec = lease.get("spec") or {}
        if version != self._seen_version:
            self._seen_version, self._seen_at = version, now
        holder = spec.get("holderIdentity") or ""
        mine = holder == self.holder
        expired = now - self._seen_at >= float(spec.get("leaseDurationSeconds") or self.duration)
        if not (mine or not holder or expired):
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        record = self._record(lease, transitions=transitions, acquire=not mine)
        updated = self._call("PUT", f"{self._path}/{self.name}", record)
        if updated.status_code == 200:
            self._took(updated, now)
            if not mine:
                self._log_taken(holder or "nobody")
            return True
        if updated.status_code == 409:  # changed since our read: someone else acted
            return False
        raise LeaseError(f"update lease {self.name}: HTTP {updated.status_code}")

    def _log_taken(self, previous: str) -> None:
        logger.info(
            "leader: %s took lease %s/%s (from %s)",
            self.holder,
            self.namespace,
            self.name,
            previous,
        )

    def _took(self, response: httpx.Response, now: float) -> None:
        self._seen_version = response.json()["metadata"].get("resourceVersion")
        self._seen_at = now
        self._renewed_at = now

    def _record(
        self, lease: dict[str, Any] | None, *, transitions: int, acquire: bool = True
    ) -> dict[str, Any]:
        stamp = _now()
        spec: dict[str, Any] = dict((lease or {}).get("spec") or {})
        spec.update(
            holderIdentity=self.holder,
            leaseDurationSeconds=int(self.duration),
            renewTime=stamp,
            leaseTransitions=transitions,
        )
        if acquire or "acquireTime" not in spec:
            spec["acquireTime"] = stamp
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if lease is not None:
            metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    # -- the loops ------------------------------------------------------------------------------

    def acquire(self) -> None:
        """Block until this replica holds the Lease."""
        logger.info(
            "leader: %s waits for lease %s/%s as a standby", self.holder, self.namespace, self.name
        )
        while not self._stop.is_set():
            try:
                if self.try_acquire():
                    return
            except LeaseError as exc:
                logger.warning("leader: %s; trying again", exc)
            self._stop.wait(self.period)
        raise LeaseError("stopped while waiting for the lease")

    def keep(self, on_lost: Callable[[], object]) -> threading.Thread:
        """Renew in a daemon thread; ``on_lost()`` when renewing failed past the deadline or
        another replica holds the Lease."""

        def renew() -> None:
            while not self._stop.wait(self.period):
                try:
                    if self.try_acquire():
                        continue
                    logger.error("leader: lease %s is held by another replica", self.name)
                except LeaseError as exc:
                    if self._clock() - self._renewed_at < self.renew_deadline:
                        logger.warning("leader: could not renew (%s); trying again", exc)
                        continue
                    logger.error("leader: could not renew lease %s in time (%s)", self.name, exc)
                on_lost()
                return

        thread = threading.Thread(target=renew, name="lease-renewer", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up (a clean shutdown), so a standby takes over at once."""
        self._stop.set()
        with contextlib.suppress(LeaseError, KeyError, ValueError):
            response = self._call("GET", f"{self._path}/{self.name}")
            if response.status_code != 200:
                return
            lease = response.json()
            if (lease.get("spec") or {}).get("holderIdentity") != self.holder:
                return
            record = self._record(
                lease, transitions=int(lease["spec"].get("leaseTransitions") or 0)
            )
            record["spec"]["holderIdentity"] = ""
            if self._call("PUT", f"{self._path}/{self.name}", record).status_code == 200:
                logger.info("leader: %s released lease %s", self.holder, self.name)
        self._http.close()


# -- probes while standing by -------------------------------------------------------------------


class _Standby(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        body = b'{"status": "standby"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return


@contextlib.contextmanager
def standby_probes(*endpoints: str | None) -> Iterator[None]:
    """Answer 200 on the liveness and readiness endpoints' ports while waiting for the Lease:
    a standby is healthy, and a rollout must not wait for it to lead. Closed before kopf binds
    the same ports."""
    servers = []
    for endpoint in endpoints:
        if not endpoint:
            continue
        parts = urlsplit(endpoint)
        server = http.server.ThreadingHTTPServer(
            (parts.hostname or "0.0.0.0", parts.port or 80),  # noqa: S104 - the probe's own bind
            _Standby,
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
