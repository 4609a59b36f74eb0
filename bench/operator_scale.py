"""Operator scale benchmark (issue 14, item 1): 200 LangfuseTracings, a cold start, an idle
operator.

On the local world: N namespaces, each with its own real Pipelines server (started in parallel),
its own Langfuse project (one Secret shared by the namespace's resources) and M
LangfuseTracings (bundled filter, each its own derived pipeline id, no ``spec.openWebUI``,
``resyncInterval: 10s``). All resources exist before the operator starts; then the operator
(a process with a TokenRequest token of the chart's ServiceAccount, the chart's Roles in the N
namespaces) starts cold, and:

1. time to Ready: from the operator's start to the first watch event showing ``Ready=True``,
   per resource (p50, p95) and for all of them; per server, when its uploads ran (they are
   serialised by the operator's lock per server) and its first Ready; when the Langfuse
   stand-in answered (its request log is wrapped, in this process, to time each request).
2. idle writes: over 10 resync periods with nothing changed, the upstream writes in the
   Pipelines access logs (upload, add, delete, valves update) and the LangfuseTracing writes
   (watch MODIFIED events, and resourceVersions compared before and after).
3. the operator's ``VmRSS`` once all are Ready, the highest while idle and at the end
   (``VmHWM`` too); its CPU time, and the Pipelines servers' and the machine's, while idle.
4. the spread of resyncs: ``GET /<id>/valves`` (one per pass and resource) per second of the idle
   window, from the access logs timestamped as they are written (a tail polled every 50 ms:
   uvicorn's access lines carry no time); and each resource's measured period against
   ``runtime.spread`` (its resync interval shortened by its own fraction of a tenth).
5. connections: the distinct client ports in the Pipelines access logs during the idle window
   (each is a TCP connection the operator opened), against the passes and the probes served;
   and the operator's open connections to the Pipelines servers, sampled every 0.25 s from
   ``/proc/<pid>/fd`` and ``/proc/<pid>/net/tcp``.

Nothing secret is printed; the operator's log is checked for every secret value written.
Run from the repository root:

    <project venv>/bin/python -m bench.operator_scale [--namespaces 20] [--per-namespace 10]
        [--idle-periods 10]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import platform
import re
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openwebui_langfuse.runtime import spread

from bench.operator_latency import PACKAGE, PIPELINES_WRITE, langfuse_spec, percentile
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.cluster import Cluster
from tests.world.manifest import World
from tests.world.operator import (
    GROUP,
    PLURAL,
    VERSION,
    Harness,
    OperatorProcess,
    chart_rbac,
    install_crd,
    token_kubeconfig,
)
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

RESYNC_SECONDS = 10
RELEASE_NAMESPACE = "scale-operator"
READY_TIMEOUT = 300.0
# Before the idle window: no upstream write and no resource change for this long (the tail of
# the cold start: kopf's finalizer patches, the last status writes).
SETTLE_QUIET = 3.0
TAIL_INTERVAL = 0.05
SAMPLE_INTERVAL = 0.25
ACCESS = re.compile(r'127\.0\.0\.1:(\d+) - "(\S+) (\S+) HTTP/[\d.]+" (\d+)')
VALVES_READ = re.compile(r"^/([^/]+)/valves$")


# -- what the benchmark watches ----------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """One access line of a Pipelines server, timestamped when the tail read it."""

    at: float
    server: int
    client_port: int
    method: str
    path: str
    line: str

    @property
    def write(self) -> bool:
        return PIPELINES_WRITE.search(self.line) is not None


class AccessLogs:
    """Tails the access logs of the Pipelines servers (uvicorn's lines have no time)."""

    def __init__(self, servers: Sequence[PipelinesServer]) -> None:
        self.paths = [s.log_path for s in servers]
        self.lines: list[Access] = []
        self._offsets = [0] * len(self.paths)
        self._partial = [b""] * len(self.paths)
        self._lock = threading.Lock()  # the tail thread, and a last poll after a window
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(TAIL_INTERVAL):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            for index in range(len(self.paths)):
                self._read(index)

    def _read(self, index: int) -> None:
        path = self.paths[index]
        with path.open("rb") as handle:
            handle.seek(self._offsets[index])
            chunk = handle.read()
        if not chunk:
            return
        now = time.monotonic()
        self._offsets[index] += len(chunk)
        *complete, self._partial[index] = (self._partial[index] + chunk).split(b"\n")
        for raw in complete:
            line = raw.decode(errors="replace")
            match = ACCESS.search(line)
            if match:
                port, method, path_, _ = match.groups()
                self.lines.append(Access(now, index, int(port), method, path_, line))

    def between(self, start: float, end: float) -> list[Access]:
        return [a for a in list(self.lines) if start <= a.at < end]


class LangfuseRequests:
    """When the Langfuse stand-in answered each request (its own log keeps no time): its
    request log's ``record`` is wrapped, in this process, for the run."""

    def __init__(self, langfuse: LangfuseStandIn) -> None:
        self.times: list[float] = []
        log = langfuse.state.log
        record = log.record

        def timed(**kwargs: Any) -> None:
            self.times.append(time.monotonic())
            record(**kwargs)

        log.record = timed  # type: ignore[method-assign]

    def between(self, start: float, end: float) -> list[float]:
        return [t for t in list(self.times) if start <= t < end]


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine so far (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])
    return (total - values[3] - values[4]) / os.sysconf("SC_CLK_TCK"), total / os.sysconf(
        "SC_CLK_TCK"
    )


def servers_cpu(servers: Sequence[PipelinesServer]) -> float:
    pids = [s.process.pid for s in servers if s.process is not None and s.process.pid]
    return sum(cpu_seconds(pid) for pid in pids)


@dataclass(frozen=True)
class Change:
    at: float
    type: str
    key: tuple[str, str]
    fields: tuple[str, ...]


def _ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def changed_fields(old: dict[str, Any] | None, new: dict[str, Any]) -> tuple[str, ...]:
    """Which parts of a resource a write moved (names only: no values)."""
    if old is None:
        return ()
    found = []
    old_meta, new_meta = old["metadata"], new["metadata"]
    for name in ("generation", "finalizers", "deletionTimestamp", "labels"):
        if old_meta.get(name) != new_meta.get(name):
            found.append(f"metadata.{name}")
    old_ann, new_ann = old_meta.get("annotations") or {}, new_meta.get("annotations") or {}
    for name in sorted(set(old_ann) | set(new_ann)):
        if old_ann.get(name) != new_ann.get(name):
            found.append(f"annotations[{name}]")
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    for name in sorted(set(old_status) | set(new_status)):
        if name == "conditions":
            continue
        if old_status.get(name) != new_status.get(name):
            found.append(f"status.{name}")
    old_conds = {c.get("type"): c for c in old_status.get("conditions") or []}
    new_conds = {c.get("type"): c for c in new_status.get("conditions") or []}
    for type_ in sorted(set(old_conds) | set(new_conds), key=str):
        a, b = old_conds.get(type_) or {}, new_conds.get(type_) or {}
        moved = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if moved:
            found.append(f"conditions[{type_}].{'/'.join(moved)}")
    return tuple(found) or ("(metadata only)",)


class ClusterWatch:
    """One admin watch over every namespace: when each resource was first Ready, and every
    change (with the names of the fields it moved).

    The API server ends a watch whose reader falls behind (this process also serves the
    Langfuse stand-in, busiest during the cold start), and any watch at its timeout: the
    watch resumes from the last resourceVersion seen, or lists again when that is gone.
    """

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.ready_at: dict[tuple[str, str], float] = {}
        self.changes: list[Change] = []
        self.latest: dict[tuple[str, str], dict[str, Any]] = {}
        self.restarts = 0
        self.relists = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True

    def _run(self) -> None:
        try:
            self._watch()
        except Exception:  # the cluster went away at the end of the run
            if not self._stop:
                raise

    def _see(self, type_: str, obj: dict[str, Any], at: float) -> None:
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        previous = self.latest.get(key)
        if previous is not None and type_ == "LISTED":
            if previous["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]:
                return
            type_ = "MODIFIED"  # a change the dropped watch did not deliver
        self.latest[key] = obj
        self.changes.append(Change(at, type_, key, changed_fields(previous, obj)))
        if key not in self.ready_at and _ready(obj):
            self.ready_at[key] = at

    def _watch(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        custom = self.harness.custom
        version: str | None = None
        while not self._stop:
            if version is None:
                listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
                now = time.monotonic()
                for obj in listed["items"]:
                    self._see("LISTED", obj, now)
                version = listed["metadata"]["resourceVersion"]
                self.relists += 1
            w = watch.Watch()
            try:
                for event in w.stream(
                    custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PLURAL,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=600,
                ):
                    now = time.monotonic()
                    obj: dict[str, Any] = event["object"]
                    if event["type"] == "ERROR":
                        version = None
                        break
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._see(event["type"], obj, now)
                    if self._stop:
                        w.stop()  # type: ignore[no-untyped-call]
                        return
            except ApiException as exc:
                if exc.status != 410:
                    raise
                version = None  # too old: list again
            self.restarts += 1

    def modified_between(self, start: float, end: float) -> list[Change]:
        return [c for c in list(self.changes) if c.type == "MODIFIED" and start <= c.at < end]


def proc_status_kib(pid: int, name: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_connections(pid: int) -> set[tuple[int, int]]:
    """(local port, remote port) of the IPv4 TCP sockets ``pid`` holds (no listeners)."""
    inodes = set()
    for fd in os.scandir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(fd.path)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[9] in inodes and parts[3] != "0A":  # 0A: LISTEN
            found.add((int(parts[1].split(":")[1], 16), int(parts[2].split(":")[1], 16)))
    return found


@dataclass(frozen=True)
class Sample:
    at: float
    rss_kib: int
    cpu: float
    connections: frozenset[tuple[int, int]]


@dataclass
class OperatorSampler:
    """RSS, CPU time and TCP connections of the operator process every ``SAMPLE_INTERVAL``."""

    pid: int
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def sample(self) -> Sample:
        now = time.monotonic()
        rss = proc_status_kib(self.pid, "VmRSS")
        taken = Sample(now, rss, cpu_seconds(self.pid), frozenset(tcp_connections(self.pid)))
        self.samples.append(taken)
        return taken

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            with contextlib.suppress(OSError, RuntimeError):  # the process ended
                self.sample()

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in list(self.samples) if start <= s.at <= end]


# -- setting the world up ------------------------------------------------------------------------


def start_all(servers: Sequence[PipelinesServer]) -> float:
    """Start the servers in parallel threads (each takes seconds and its own memory)."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        list(pool.map(lambda s: s.start(), servers))
    return time.monotonic() - started


def stop_all(servers: Sequence[PipelinesServer]) -> None:
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        list(pool.map(lambda s: s.stop(), servers))


def spec(langfuse: LangfuseStandIn, pipelines: PipelinesServer) -> dict[str, Any]:
    return {
        "langfuse": langfuse_spec(langfuse, "langfuse"),
        "pipelines": {
            "url": pipelines.url,
            "apiKey": {"secretKeyRef": {"name": "pipelines", "key": "api-key"}},
        },
        "resyncInterval": f"{RESYNC_SECONDS}s",
    }


def create_resources(
    harness: Harness,
    langfuse: LangfuseStandIn,
    servers: Sequence[PipelinesServer],
    namespaces: Sequence[str],
    per_namespace: int,
) -> list[tuple[str, str]]:
    """Namespace i: server i's key, a Langfuse project of its own, ``per_namespace`` resources."""
    keys = []
    for namespace, server in zip(namespaces, servers, strict=True):
        project = langfuse.add_project(name=namespace)
        harness.put_secret(
            namespace,
            "langfuse",
            {"public-key": project.public_key, "secret-key": project.secret_key},
        )
        harness.put_secret(namespace, "pipelines", {"api-key": server.api_key})
        for i in range(per_namespace):
            name = f"r{i:02d}"
            harness.apply(namespace, name, spec(langfuse, server))
            keys.append((namespace, name))
    return keys


# -- figures ---------------------------------------------------------------------------------


def seconds_summary(values: Sequence[float]) -> str:
    return (
        f"n={len(values)} p50={statistics.median(values):.1f} s "
        f"p95={percentile(list(values), 95):.1f} s min={min(values):.1f} s "
        f"max={max(values):.1f} s"
    )


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def per_second(times: Iterable[float], start: float, seconds: int) -> list[int]:
    bins = [0] * seconds
    for at in times:
        index = int(at - start)
        if 0 <= index < seconds:
            bins[index] += 1
    return bins


def distribution(bins: Sequence[int]) -> str:
    """How many seconds saw k requests, as ``k:seconds`` pairs in increasing k."""
    counts = collections.Counter(bins)
    return " ".join(f"{k}:{counts[k]}" for k in sorted(counts))


def request_kinds(lines: Iterable[Access]) -> dict[str, int]:
    kinds: collections.Counter[str] = collections.Counter()
    for a in lines:
        path = a.path if a.path.startswith("/pipelines") else re.sub(r"^/[^/]+/", "/{id}/", a.path)
        kinds[f"{a.method} {path}"] += 1
    return dict(kinds.most_common())


def spread_check(
    valves_reads: Sequence[Access], pipeline_ids: dict[str, tuple[str, str]]
) -> tuple[list[float], list[float]]:
    """Per resource: the median period between its valves reads, and that minus
    ``spread(10 s, key)`` (what is left is the pass itself)."""
    by_id: dict[str, list[float]] = collections.defaultdict(list)
    for a in valves_reads:
        match = VALVES_READ.match(a.path)
        if match:
            by_id[match.group(1)].append(a.at)
    periods, excess = [], []
    for pid, times in by_id.items():
        key = pipeline_ids.get(pid)
        if key is None or len(times) < 2:
            continue
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        period = statistics.median(gaps)
        periods.append(period)
        excess.append(period - spread(RESYNC_SECONDS, key))
    return periods, excess


def settle(logs: AccessLogs, watch: ClusterWatch, quiet: float = SETTLE_QUIET) -> float:
    """Wait until nothing was written upstream nor to any resource for ``quiet`` seconds."""
    started = time.monotonic()

    def last_write() -> float:
        writes = [a.at for a in list(logs.lines) if a.write]
        changes = [c.at for c in list(watch.changes) if c.type == "MODIFIED"]
        return max([*writes, *changes, started])

    wait_for(
        lambda: time.monotonic() - last_write() >= quiet,
        120,
        f"{quiet:g} s without writes",
        interval=0.2,
        max_interval=0.2,
    )
    return time.monotonic() - started


LOG_LEVEL = re.compile(r"\[(WARNING|ERROR|CRITICAL)\s*\] (.*)")


def log_summary(text: str) -> dict[str, str]:
    """How many WARNING/ERROR lines the operator logged, and the commonest few (first words
    only: no URL or value is kept)."""
    kinds: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        match = LOG_LEVEL.search(line)
        if match:
            message = re.sub(r"^\S+/\S+: ", "", match.group(2))
            kinds[" ".join(re.findall(r"[A-Za-z]+", message)[:8])] += 1
    result = {"operator log WARNING/ERROR lines": str(sum(kinds.values()))}
    for kind, count in kinds.most_common(5):
        result[f"  {count}x"] = kind
    return result


# -- the run ----------------------------------------------------------------------------------


def measure(
    cluster: Cluster,
    world: World,
    harness: Harness,
    langfuse: LangfuseStandIn,
    servers: Sequence[PipelinesServer],
    per_namespace: int,
    idle_periods: int,
) -> dict[str, str]:
    from kubernetes.client import V1Namespace, V1ObjectMeta

    results: dict[str, str] = {}
    count = len(servers)
    namespaces = [f"scale-{i:02d}" for i in range(count)]
    for namespace in (RELEASE_NAMESPACE, *namespaces):
        harness.core.create_namespace(V1Namespace(metadata=V1ObjectMeta(name=namespace)))
    account = chart_rbac(cluster, world, RELEASE_NAMESPACE, watch_namespaces=namespaces)
    tmp = Path(tempfile.mkdtemp(prefix="owl-bench-scale-"))
    kubeconfig = token_kubeconfig(cluster, RELEASE_NAMESPACE, account, tmp / "kubeconfig")
    keys = create_resources(harness, langfuse, servers, namespaces, per_namespace)
    total = len(keys)
    results["resources"] = (
        f"{total} LangfuseTracings in {count} namespaces over {count} Pipelines servers "
        f"({per_namespace} per server, one Langfuse Secret per namespace)"
    )
    logs = AccessLogs(servers)
    logs.start()
    langfuse_requests = LangfuseRequests(langfuse)
    watch = ClusterWatch(harness)
    watch.start()
    wait_for(lambda: len(watch.latest) == total, 60, "the watch listing every resource")
    pipelines_ports = {urlsplit(s.url).port for s in servers}
    langfuse_port = urlsplit(langfuse.url).port
    # A snapshot of the package: a file another engineer edits mid-run would rightly be
    # uploaded again and count as an idle write the operator did not cause.
    snapshot = tmp / "snapshot"
    shutil.copytree(PACKAGE, snapshot / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__"))
    operator = OperatorProcess(
        world, kubeconfig, namespaces, env={"PYTHONPATH": str(snapshot)}, log_dir=tmp
    )
    sampler: OperatorSampler | None = None
    try:
        # 1. cold start -> all Ready
        results["1-minute load average at the cold start"] = f"{os.getloadavg()[0]:.1f}"
        started = time.monotonic()
        operator.start()
        live = time.monotonic() - started
        assert operator.process is not None and operator.process.pid is not None
        sampler = OperatorSampler(operator.process.pid)
        sampler.start()
        wait_for(
            lambda: len(watch.ready_at) >= total,
            READY_TIMEOUT,
            f"{total} resources Ready",
            interval=0.1,
            max_interval=0.1,
        )
        all_ready = time.monotonic()
        ready_sample = sampler.sample()
        times = [watch.ready_at[k] - started for k in keys]
        results["operator liveness answering after"] = f"{live:.1f} s"
        results["cold start -> Ready=True per resource"] = seconds_summary(times)
        results[f"cold start -> all {total} Ready=True"] = f"{all_ready - started:.1f} s"
        cold = logs.between(started, all_ready)
        results["upstream writes during the cold start"] = str(sum(a.write for a in cold))
        results["  by kind"] = ", ".join(
            f"{k} {v}" for k, v in request_kinds(a for a in cold if a.write).items()
        )
        results.update(cold_start_per_server(cold, watch, namespaces, started))
        answered = langfuse_requests.between(started, all_ready)
        if answered:
            results["Langfuse stand-in during the cold start"] = (
                f"{len(answered)} requests answered, the first at {answered[0] - started:.1f} s, "
                f"the last at {answered[-1] - started:.1f} s"
            )
        results["admin watch: resumed / listed again"] = f"{watch.restarts} / {watch.relists - 1}"
        results["operator CPU time for the cold start"] = f"{ready_sample.cpu:.1f} s"
        uploads = [a.at for a in cold if a.path == "/pipelines/upload"]
        early = [s for s in sampler.samples if s.at <= min(uploads, default=all_ready)]
        if early:
            wall = early[-1].at - started
            results["  of which before the first upload"] = (
                f"{early[-1].cpu:.1f} s in {wall:.1f} s ({100 * early[-1].cpu / wall:.0f} % of "
                "one core)"
            )
        results["operator VmRSS when all were Ready"] = mib(ready_sample.rss_kib)

        # 2.-5. the idle window
        settled = settle(logs, watch)
        results["settled (no write for 3 s) after"] = f"{settled:.1f} s more"
        versions = resource_versions(harness)
        window = idle_periods * RESYNC_SECONDS
        results["1-minute load average at the idle window's start"] = f"{os.getloadavg()[0]:.1f}"
        idle_start = time.monotonic()
        first = sampler.sample()
        servers_before, machine_before = servers_cpu(servers), machine_cpu()
        time.sleep(window)  # the window is the measurement
        last = sampler.sample()
        servers_after, machine_after = servers_cpu(servers), machine_cpu()
        idle_end = time.monotonic()
        logs.poll()
        idle = logs.between(idle_start, idle_end)
        after = resource_versions(harness)
        touched = sorted(k for k in after if versions.get(k) != after[k])
        modified = watch.modified_between(idle_start, idle_end)
        label = f"{idle_periods} resync periods ({window} s), {total} resources"
        results[f"upstream writes during {label}"] = str(sum(a.write for a in idle))
        results["LangfuseTracing writes in the window (MODIFIED events)"] = str(len(modified))
        results["  resources whose resourceVersion moved"] = str(len(touched))
        moved = collections.Counter(f for c in modified for f in c.fields)
        if moved:
            results["  fields moved"] = ", ".join(f"{k} x{v}" for k, v in moved.most_common(8))

        samples = sampler.between(idle_start, idle_end)
        pid = operator.process.pid
        results["operator VmRSS at the window's start / highest in it / at the end"] = (
            f"{mib(first.rss_kib)} / {mib(max(s.rss_kib for s in samples))} / {mib(last.rss_kib)}"
        )
        results["operator VmHWM (peak RSS) at the end"] = mib(proc_status_kib(pid, "VmHWM"))
        results["operator CPU while idle"] = (
            f"{last.cpu - first.cpu:.1f} s in {window} s "
            f"({100 * (last.cpu - first.cpu) / window:.1f} % of one core)"
        )
        results[f"the {count} Pipelines servers' CPU while idle"] = (
            f"{servers_after - servers_before:.1f} s in {window} s"
        )
        busy = machine_after[0] - machine_before[0]
        results["machine CPU busy while idle (everyone's)"] = (
            f"{100 * busy / (machine_after[1] - machine_before[1]):.0f} % of {os.cpu_count()} cores"
        )
        results["Langfuse stand-in requests per second while idle"] = (
            f"{len(langfuse_requests.between(idle_start, idle_end)) / window:.1f}"
        )

        results["Pipelines requests in the window"] = ", ".join(
            f"{k} {v}" for k, v in request_kinds(idle).items()
        )
        valves_reads = [a for a in idle if a.method == "GET" and VALVES_READ.match(a.path)]
        results.update(spread_figures(idle, valves_reads, idle_start, idle_periods, keys, watch))
        results.update(connection_figures(logs, idle, cold, idle_start, len(valves_reads), count))
        earlier = sampler.between(0, idle_start - 1e-6)
        results["operator sockets to Pipelines (sampled every 0.25 s)"] = sockets(
            earlier, samples, pipelines_ports
        )
        results["operator sockets to the Langfuse stand-in (sampled)"] = sockets(
            earlier, samples, {langfuse_port}
        )

        text = operator.log_text()
        results.update(log_summary(text))
        secrets_logged = [v for v in harness.secret_values if v in text]
        assert not secrets_logged, "a secret value showed up in the operator's log"
    finally:
        if sampler is not None:
            sampler.stop()
        operator.stop()
        watch.stop()
        logs.stop()
    return results


def spread_figures(
    idle: Sequence[Access],
    valves_reads: Sequence[Access],
    start: float,
    idle_periods: int,
    keys: Sequence[tuple[str, str]],
    watch: ClusterWatch,
) -> dict[str, str]:
    """Passes per second over the idle window (one valves read each), per period, and each
    resource's period against ``runtime.spread``."""
    results: dict[str, str] = {}
    window = idle_periods * RESYNC_SECONDS
    bins = per_second((a.at for a in valves_reads), start, window)
    mean = len(valves_reads) / window
    results["GET /{id}/valves per second: mean / max"] = f"{mean:.1f} / {max(bins)}"
    results["  seconds with k reads (k:seconds)"] = distribution(bins)
    results["  per second, in order"] = " ".join(str(b) for b in bins)
    for period in range(idle_periods):
        chunk = bins[period * RESYNC_SECONDS : (period + 1) * RESYNC_SECONDS]
        results[f"  period {period + 1}: reads / max in one second"] = (
            f"{sum(chunk)} / {max(chunk)}"
        )
    lists = [a for a in idle if a.method == "GET" and a.path == "/pipelines"]
    list_bins = per_second((a.at for a in lists), start, window)
    results["GET /pipelines per second (probes + passes): mean / max"] = (
        f"{len(lists) / window:.1f} / {max(list_bins)}"
    )
    pipeline_ids = {str((watch.latest[k].get("status") or {}).get("pipelineId")): k for k in keys}
    periods, excess = spread_check(valves_reads, pipeline_ids)
    fractions = [spread(RESYNC_SECONDS, k) for k in keys]
    if periods:
        results["per-resource period between valves reads"] = (
            f"n={len(periods)} min={min(periods):.2f} s median="
            f"{statistics.median(periods):.2f} s max={max(periods):.2f} s "
            f"(spread(10 s) over the keys: {min(fractions):.2f}..{max(fractions):.2f} s)"
        )
        results["  measured period - spread(10 s, key)"] = (
            f"median {statistics.median(excess) * 1000:.0f} ms, "
            f"p95 {percentile(excess, 95) * 1000:.0f} ms, "
            f"min {min(excess) * 1000:.0f} ms"
        )
    return results


def connection_figures(
    logs: AccessLogs,
    idle: Sequence[Access],
    cold: Sequence[Access],
    start: float,
    passes: int,
    count: int,
) -> dict[str, str]:
    """TCP connections seen by the Pipelines servers: a client port is a connection."""
    results: dict[str, str] = {}
    before = {(a.server, a.client_port) for a in logs.between(0, start)}
    in_window = {(a.server, a.client_port) for a in idle}
    new = in_window - before
    results["client connections serving Pipelines requests in the window"] = (
        f"{len(in_window)} ({len(new)} opened in the window, "
        f"{len(in_window - new)} carried over) for {len(idle)} requests ({passes} passes)"
    )
    per_connection = collections.Counter((a.server, a.client_port) for a in idle)
    results["  requests per connection in the window: median / max"] = (
        f"{statistics.median(per_connection.values()):.0f} / {max(per_connection.values())}"
    )
    per_server = collections.Counter(server for server, _ in in_window)
    counts = [per_server[i] for i in range(count)]
    results["  connections per server in the window: min / max"] = f"{min(counts)} / {max(counts)}"
    cold_ports = {(a.server, a.client_port) for a in cold}
    results["Pipelines client connections during the cold start"] = (
        f"{len(cold_ports)} for {len(cold)} requests"
    )
    return results


def cold_start_per_server(
    cold: Sequence[Access], watch: ClusterWatch, namespaces: Sequence[str], started: float
) -> dict[str, str]:
    """Where a server's cold start goes: its uploads (serialised by the operator's lock per
    server, each reloading every module there) and its first Ready."""
    first_upload, upload_span, after_last = [], [], []
    for index, namespace in enumerate(namespaces):
        uploads = [a.at for a in cold if a.server == index and a.path == "/pipelines/upload"]
        ready = [at for (ns, _), at in watch.ready_at.items() if ns == namespace]
        if not uploads or not ready:
            continue
        first_upload.append(min(uploads) - started)
        upload_span.append(max(uploads) - min(uploads))
        after_last.append(min(ready) - max(uploads))
    if not after_last:
        return {}
    return {
        "per server: operator start -> first upload": seconds_summary(first_upload),
        "per server: first -> last of its uploads": seconds_summary(upload_span),
        "per server: last upload -> first Ready in its namespace": seconds_summary(after_last),
    }


def sockets(earlier: Sequence[Sample], window: Sequence[Sample], ports: set[int | None]) -> str:
    """The operator's connections to ``ports`` in the window: how many, how many new."""
    before = {c for s in earlier for c in s.connections if c[1] in ports}
    seen = {c for s in window for c in s.connections if c[1] in ports}
    at_once = [sum(1 for c in s.connections if c[1] in ports) for s in window]
    return (
        f"{len(seen)} distinct in the window, {len(seen - before)} of them opened in it; "
        f"open at once min {min(at_once)} / median {statistics.median(at_once):.0f} / "
        f"max {max(at_once)}"
    )


def resource_versions(harness: Harness) -> dict[tuple[str, str], str]:
    listed: dict[str, Any] = harness.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    return {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
        for o in listed["items"]
    }


def run(namespaces: int, per_namespace: int, idle_periods: int) -> dict[str, str]:
    world = World.load()
    servers = [PipelinesServer(world) for _ in range(namespaces)]
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(Cluster(world))
        langfuse = stack.enter_context(LangfuseStandIn())
        stack.callback(stop_all, servers)
        took = start_all(servers)
        install_crd(cluster)
        api = cluster.api_client()
        stack.callback(api.close)
        harness = Harness(api)
        results = {f"{namespaces} Pipelines servers started (in parallel) in": f"{took:.1f} s"}
        results.update(
            measure(cluster, world, harness, langfuse, servers, per_namespace, idle_periods)
        )
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=20, help="and Pipelines servers")
    parser.add_argument("--per-namespace", type=int, default=10)
    parser.add_argument("--idle-periods", type=int, default=10)
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()
    for key, value in run(args.namespaces, args.per_namespace, args.idle_periods).items():
        print(f"{key}: {value}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; started {started}; load "
        f"average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) at the start, "
        f"{os.getloadavg()[0]:.1f} (1 min) at the end"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
