"""The reconcile pass against in-memory fakes of Pipelines and Langfuse.

The fakes keep the upstream quirks that matter to the pass (docs/upstream/pipelines.md,
"Recorded responses"): an upload answers OK even when the module does not load, valves updates
replace the whole object, and a module keeps its class defaults until the first update.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pytest
from openwebui_langfuse import reconcile as rc
from openwebui_langfuse import targets
from openwebui_langfuse.clients.langfuse import (
    IngestionMode,
    LangfuseCheck,
    LangfuseCheckError,
    LangfuseProject,
)
from openwebui_langfuse.clients.pipelines import (
    PipelineInfo,
    PipelineNotFound,
    PipelinesUnreachable,
)
from openwebui_langfuse.models import parse_spec
from openwebui_langfuse.passes import (
    CleanupResult,
    DownloadError,
    InstallMemory,
    MissingReference,
    ResourceRef,
    Upstreams,
)
from openwebui_langfuse.reconcile import cleanup, reconcile
from openwebui_langfuse.targets import pipelines as target

SECRET = "sk-lf-very-secret-value"
PIPELINES_KEY = "pipelines-key-also-secret"
FILTER = b'"""\ntitle: test filter\n"""\nclass Pipeline: ...\n'
DEFAULT_VALVES = {
    "pipelines": [],
    "priority": 0,
    "public_key": "",
    "secret_key": "",
    "host": "https://cloud.langfuse.com",
    "debug": False,
}


class FakePipelines:
    """One Pipelines server: modules by id, valves per id, a log of writes."""

    def __init__(self) -> None:
        self.loaded: set[str] = set()
        self.valves: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, str]] = []
        self.down = False
        self.broken_uploads_load = False  # a transient load failure that went away

    def client(self, url: str, key: str) -> FakePipelines:
        assert key == PIPELINES_KEY
        return self

    def _check(self) -> None:
        if self.down:
            raise PipelinesUnreachable("Pipelines at http://p is unreachable (ConnectError)")

    async def list_pipelines(self) -> list[PipelineInfo]:
        self._check()
        return [PipelineInfo(i, i, "filter", True) for i in sorted(self.loaded)]

    async def add_by_url(self, url: str) -> None:
        self._check()
        pid = url.rsplit("/", 1)[-1][:-3]
        self.writes.append(("add", pid))
        self.loaded.add(pid)
        self.valves.setdefault(pid, dict(DEFAULT_VALVES))

    async def upload(self, filename: str, content: bytes) -> None:
        self._check()
        pid = filename[:-3]
        self.writes.append(("upload", pid))
        if b"BROKEN" in content and not self.broken_uploads_load:
            self.loaded.discard(pid)
            return
        self.loaded.add(pid)
        self.valves.setdefault(pid, dict(DEFAULT_VALVES))

    async def delete(self, pipeline_id: str) -> bool:
        self._check()
        self.writes.append(("delete", pipeline_id))
        if pipeline_id not in self.loaded:
            return False
        self.loaded.discard(pipeline_id)
        return True

    async def get_valves(self, pipeline_id: str) -> dict[str, Any]:
        self._check()
        if pipeline_id not in self.valves:
            raise PipelineNotFound(f"no pipeline {pipeline_id}")
        return dict(self.valves[pipeline_id])

    async def update_valves(self, pipeline_id: str, valves: Mapping[str, Any]) -> None:
        self._check()
        self.writes.append(("valves", pipeline_id))
        # Whole-object replacement from class defaults, unknown keys dropped (pydantic).
        self.valves[pipeline_id] = {k: valves.get(k, v) for k, v in DEFAULT_VALVES.items()}


class FakeLangfuse:
    def __init__(self) -> None:
        self.error: LangfuseCheckError | None = None
        self.good = ("pk-lf-1", SECRET)
        self.calls = 0
        self.version = "3.100.0"
        self.mode: IngestionMode = "otlp+legacy"

    def client(self, host: str) -> FakeLangfuse:
        return self

    async def check(self, public_key: str, secret_key: str) -> LangfuseCheck:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if (public_key, secret_key) != self.good:
            raise LangfuseCheckError(
                "InvalidCredentials", "Langfuse rejected the keys (401)", temporary=False
            )
        return LangfuseCheck(LangfuseProject("p1", "Project One"), self.version, self.mode)


class DictReader:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {
            ("ns", "lf"): {"pk": "pk-lf-1", "sk": SECRET},
            ("ns", "pl"): {"key": PIPELINES_KEY},
        }
        self.config_maps: dict[tuple[str, str], dict[str, str]] = {
            ("ns", "cm"): {"filter.py": FILTER.decode()},
        }

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        if (namespace, name) not in self.secrets:
            raise MissingReference("SecretNotFound", f"Secret {namespace}/{name} not found")
        data = self.secrets[(namespace, name)]
        if key not in data:
            raise MissingReference("SecretKeyNotFound", f"Secret {namespace}/{name} has no {key}")
        return data[key]

    def config_map_value(self, namespace: str, name: str, key: str) -> str:
        if (namespace, name) not in self.config_maps:
            raise MissingReference("ConfigMapNotFound", f"ConfigMap {namespace}/{name} not found")
        return self.config_maps[(namespace, name)][key]


class World:
    def __init__(self) -> None:
        self.pipelines = FakePipelines()
        self.langfuse = FakeLangfuse()
        self.reader = DictReader()
        self.memory = InstallMemory()
        self.downloads: dict[str, bytes] = {}
        self.status: dict[str, Any] = {}
        self.generation = 1
        self.clock = 0

    async def download(self, url: str) -> bytes:
        if url not in self.downloads:
            raise DownloadError("downloading the filter answered HTTP 404", temporary=False)
        return self.downloads[url]

    def upstreams(self) -> Upstreams:
        return Upstreams(
            pipelines=self.pipelines.client,
            langfuse=self.langfuse.client,
            download=self.download,
        )

    async def run(self, spec: dict[str, Any]) -> rc.ReconcileResult:
        self.clock += 1
        result = await reconcile(
            ResourceRef("ns", "tracing", self.generation),
            spec,
            self.status,
            reader=self.reader,
            upstreams=self.upstreams(),
            memory=self.memory,
            now=f"2026-01-01T00:00:{self.clock:02d}Z",
        )
        self.status = result.status
        return result

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == type_)


def spec(**filter_: Any) -> dict[str, Any]:
    return {
        "langfuse": {
            "host": "https://lf.test",
            "publicKey": {"secretKeyRef": {"name": "lf", "key": "pk"}},
            "secretKey": {"secretKeyRef": {"name": "lf", "key": "sk"}},
        },
        "pipelines": {
            "url": "http://p:9099",
            "apiKey": {"secretKeyRef": {"name": "pl", "key": "key"}},
        },
        "filter": {
            "source": "configMap",
            "configMap": {"name": "cm", "key": "filter.py"},
            "models": ["m1"],
            "priority": 2,
            **filter_,
        },
    }


PID = "lft_ns_tracing"


@pytest.fixture
def world() -> World:
    return World()


def assert_no_secret(status: Mapping[str, Any]) -> None:
    text = json.dumps(status)
    assert SECRET not in text and PIPELINES_KEY not in text


async def test_first_pass_installs_and_second_changes_nothing(world: World) -> None:
    first = await world.run(spec())
    assert first.outcome == "ok"
    assert world.pipelines.writes == [("upload", PID), ("valves", PID)]
    assert world.pipelines.valves[PID] == {
        "pipelines": ["m1"],
        "priority": 2,
        "public_key": "pk-lf-1",
        "secret_key": SECRET,
        "host": "https://lf.test",
        "debug": False,
    }
    assert world.condition("Ready")["status"] == "True"
    assert world.condition("Stalled")["status"] == "False"
    assert world.condition("Reconciling")["status"] == "False"
    assert world.status["pipelineId"] == PID
    assert world.status["observedGeneration"] == 1
    assert world.status["langfuse"] == {
        "projectId": "p1",
        "projectName": "Project One",
        "serverVersion": "3.100.0",
        "ingestionMode": "otlp+legacy",
    }
    assert_no_secret(world.status)
    before = dict(world.status)

    second = await world.run(spec())
    assert world.pipelines.writes == [("upload", PID), ("valves", PID)]
    assert second.writes == [] and second.transitions == []
    assert not second.status_changed
    assert world.status == before


async def test_bundled_source_uploads_the_package_file(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rc, "bundled_filter_source", lambda: FILTER)
    raw = spec()
    raw["filter"] = {}
    await world.run(raw)
    assert world.pipelines.writes[0] == ("upload", PID)
    assert world.condition("Ready")["status"] == "True"


async def test_missing_secret_blocks_and_names_it(world: World) -> None:
    del world.reader.secrets[("ns", "lf")]
    result = await world.run(spec())
    assert result.outcome == "permanent"
    cred = world.condition("CredentialsValid")
    assert (cred["status"], cred["reason"]) == ("False", "SecretNotFound")
    assert "ns/lf" in cred["message"]
    assert world.condition("ValvesSynced")["status"] == "False"
    assert world.condition("Stalled")["status"] == "True"
    # The filter itself needs no Langfuse keys, so it is installed anyway; valves are not.
    assert ("valves", PID) not in world.pipelines.writes

    world.reader.secrets[("ns", "lf")] = {"pk": "pk-lf-1", "sk": SECRET}
    await world.run(spec())
    assert world.condition("Ready")["status"] == "True"


async def test_missing_key_in_secret(world: World) -> None:
    world.reader.secrets[("ns", "pl")] = {}
    await world.run(spec())
    installed = world.condition("FilterInstalled")
    assert (installed["status"], installed["reason"]) == ("False", "SecretKeyNotFound")
    assert world.pipelines.writes == []


async def test_wrong_keys_leave_working_valves_alone(world: World) -> None:
    await world.run(spec())
    working = dict(world.pipelines.valves[PID])
    world.reader.secrets[("ns", "lf")]["sk"] = "sk-lf-wrong"
    result = await world.run(spec())
    cred = world.condition("CredentialsValid")
    assert (cred["status"], cred["reason"]) == ("False", "InvalidCredentials")
    assert world.condition("ValvesSynced")["reason"] == "CredentialsNotVerified"
    assert world.pipelines.valves[PID] == working
    assert result.outcome == "permanent"
    assert "sk-lf-wrong" not in json.dumps(world.status)


@pytest.mark.parametrize(
    "reason", ["LangfuseUnreachable", "LangfuseTimeout", "LangfuseServerError"]
)
async def test_temporary_langfuse_errors_retry(world: World, reason: str) -> None:
    world.langfuse.error = LangfuseCheckError(reason, "try later", temporary=True)
    result = await world.run(spec())
    assert result.outcome == "temporary"
    assert world.condition("Reconciling")["status"] == "True"
    assert world.condition("Stalled")["status"] == "False"
    assert world.condition("Ready")["reason"] == reason


async def test_verification_disabled(world: World) -> None:
    raw = spec()
    raw["langfuse"]["verify"] = False
    await world.run(raw)
    assert world.langfuse.calls == 0
    assert world.condition("CredentialsValid")["reason"] == "VerificationDisabled"
    assert world.condition("Ready")["status"] == "True"


async def test_filter_that_fails_to_load_is_retried_with_backoff(world: World) -> None:
    seconds = [0.0]
    world.memory = InstallMemory(clock=lambda: seconds[0])
    world.reader.config_maps[("ns", "cm")]["filter.py"] = "BROKEN"

    def uploads() -> int:
        return len([w for w in world.pipelines.writes if w[0] == "upload"])

    first = await world.run(spec())
    installed = world.condition("FilterInstalled")
    assert (installed["status"], installed["reason"]) == ("False", "FilterLoadFailed")
    # Stalled: most often the file is wrong and a person should look (GitOps shows Degraded);
    # and yet retried on its own, since the cause may be transient.
    assert first.outcome == "permanent"
    assert world.condition("Stalled")["reason"] == "FilterLoadFailed"
    assert first.retry_in == 10.0
    await world.run(spec())
    await world.run(spec())
    assert uploads() == 1  # not due yet: no upload on every pass (each reloads all of Pipelines)

    seconds[0] = 10.0  # the first retry is due: uploaded again, still broken
    await world.run(spec())
    assert uploads() == 2
    seconds[0] = 29.0  # the next one waits twice as long
    waiting = await world.run(spec())
    assert uploads() == 2
    assert waiting.retry_in == 1.0
    assert "failed 2 time(s)" in world.condition("FilterInstalled")["message"]

    # A transient failure ends by itself: the same file loads at the next due retry.
    world.pipelines.broken_uploads_load = True
    seconds[0] = 30.0
    await world.run(spec())
    assert uploads() == 3
    assert world.condition("Ready")["status"] == "True"


async def test_a_changed_filter_that_failed_is_uploaded_at_once(world: World) -> None:
    world.reader.config_maps[("ns", "cm")]["filter.py"] = "BROKEN"
    await world.run(spec())
    world.reader.config_maps[("ns", "cm")]["filter.py"] = FILTER.decode()
    await world.run(spec())
    assert world.condition("Ready")["status"] == "True"


async def test_load_retries_wait_at_most_the_resync_interval(world: World) -> None:
    seconds = [0.0]
    world.memory = InstallMemory(clock=lambda: seconds[0])
    world.reader.config_maps[("ns", "cm")]["filter.py"] = "BROKEN"
    raw = spec()
    raw["resyncInterval"] = "30s"
    for _ in range(4):  # 10, 20, then capped at 30
        await world.run(raw)
        seconds[0] += 30.0
    uploads = [w for w in world.pipelines.writes if w[0] == "upload"]
    assert len(uploads) == 4


async def test_drift_is_repaired(world: World) -> None:
    await world.run(spec())
    world.pipelines.valves[PID]["secret_key"] = "edited-by-hand"
    world.pipelines.valves[PID]["debug"] = True  # not ours: kept
    await world.run(spec())
    assert world.pipelines.valves[PID]["secret_key"] == SECRET
    assert world.pipelines.valves[PID]["debug"] is True

    world.pipelines.loaded.clear()  # Pipelines restarted with an empty directory
    world.pipelines.valves.clear()
    await world.run(spec())
    assert PID in world.pipelines.loaded
    assert world.pipelines.valves[PID]["secret_key"] == SECRET


async def test_pipelines_down_is_temporary(world: World) -> None:
    world.pipelines.down = True
    result = await world.run(spec())
    assert result.outcome == "temporary"
    assert world.condition("FilterInstalled")["reason"] == "PipelinesUnreachable"
    world.pipelines.down = False
    await world.run(spec())
    assert world.condition("Ready")["status"] == "True"


async def test_unknown_filter_valves_are_reported(world: World) -> None:
    await world.run(spec(valves={"no_such_valve": 1}))
    synced = world.condition("ValvesSynced")
    assert (synced["status"], synced["reason"]) == ("False", "UnknownValves")
    assert "no_such_valve" in synced["message"]


async def test_extra_valves_pass_through(world: World) -> None:
    await world.run(spec(valves={"debug": True}))
    assert world.pipelines.valves[PID]["debug"] is True


async def test_url_source_adds_by_url(world: World) -> None:
    raw = spec()
    raw["filter"] = {"source": "url", "url": "http://files.test/my_filter.py"}
    await world.run(raw)
    assert world.pipelines.writes[0] == ("add", "my_filter")
    assert world.status["pipelineId"] == "my_filter"
    await world.run(raw)
    assert [w[0] for w in world.pipelines.writes] == ["add", "valves"]


async def test_url_under_another_pipeline_id_is_fetched_and_uploaded_under_it(
    world: World,
) -> None:
    # Added by URL, Pipelines would save it as langfuse_filter_pipeline.py: not the id asked for.
    url = "http://files.test/langfuse_filter_pipeline.py"
    world.downloads[url] = FILTER
    raw = spec()
    raw["filter"] = {"source": "url", "url": url, "pipelineId": "team_a_langfuse"}
    await world.run(raw)
    assert world.pipelines.writes[0] == ("upload", "team_a_langfuse")
    assert "langfuse_filter_pipeline" not in world.pipelines.loaded
    assert world.condition("FilterInstalled")["status"] == "True"


async def test_pinned_url_is_fetched_checked_and_uploaded(world: World) -> None:
    url = "http://files.test/my_filter.py"
    world.downloads[url] = FILTER
    raw = spec()
    raw["filter"] = {"source": "url", "url": url, "sha256": hashlib.sha256(FILTER).hexdigest()}
    await world.run(raw)
    assert world.pipelines.writes[0] == ("upload", "my_filter")

    world.downloads[url] = FILTER + b"# tampered\n"
    other = World()
    other.downloads = world.downloads
    await other.run(raw)
    installed = other.condition("FilterInstalled")
    assert (installed["status"], installed["reason"]) == ("False", "DigestMismatch")
    assert other.pipelines.writes == []


async def test_invalid_spec_is_stalled(world: World) -> None:
    raw = spec()
    raw["resyncInterval"] = "1s"
    result = await world.run(raw)
    assert result.outcome == "permanent"
    assert world.condition("Ready")["reason"] == "InvalidSpec"
    assert world.condition("Stalled")["status"] == "True"
    assert world.pipelines.writes == []


async def test_transition_time_survives_passes(world: World) -> None:
    await world.run(spec())
    stamp = world.condition("Ready")["lastTransitionTime"]
    world.pipelines.valves[PID]["secret_key"] = "drift"
    await world.run(spec())
    assert world.condition("Ready")["lastTransitionTime"] == stamp


async def test_generation_is_observed(world: World) -> None:
    await world.run(spec())
    world.generation = 2
    await world.run(spec(models=["m2"]))
    assert world.status["observedGeneration"] == 2
    assert all(c["observedGeneration"] == 2 for c in world.status["conditions"])
    assert world.pipelines.valves[PID]["pipelines"] == ["m2"]


async def test_cleanup_per_policy_and_sharing(world: World) -> None:
    await world.run(spec())

    async def clean(raw: dict[str, Any], *, filter_shared: bool = False) -> CleanupResult:
        return await cleanup(
            ResourceRef("ns", "tracing", 1),
            raw,
            reader=world.reader,
            upstreams=world.upstreams(),
            memory=world.memory,
            filter_shared=filter_shared,
            connection_shared=False,
        )

    kept = spec()
    kept["deletionPolicy"] = "Retain"
    result = await clean(kept)
    assert result.done and PID in world.pipelines.loaded

    result = await clean(spec(), filter_shared=True)
    assert result.done and PID in world.pipelines.loaded

    world.pipelines.down = True
    result = await clean(spec())
    assert not result.done and result.temporary

    world.pipelines.down = False
    result = await clean(spec())
    assert result.done and PID not in world.pipelines.loaded
    assert result.writes == (f"deleted filter {PID}",)


async def test_install_record_spares_an_upload_after_a_restart(world: World) -> None:
    await world.run(spec())
    parsed = parse_spec(spec(), namespace="ns", name="tracing")
    record = targets.install_record(parsed, world.memory)
    assert record is not None and SECRET not in record and "sha256:" in record

    restarted = InstallMemory()
    targets.remember_install(record, restarted)
    targets.remember_install("not json", restarted)  # tolerated
    world.memory = restarted
    writes = list(world.pipelines.writes)
    await world.run(spec())
    assert world.pipelines.writes == writes  # listed and remembered: no upload
    world.pipelines.loaded.clear()
    await world.run(spec())
    assert world.pipelines.writes[len(writes)] == ("upload", PID)


async def test_the_well_known_pipelines_key_is_ready_with_a_warning(world: World) -> None:
    """The official open-webui chart's pipelines subchart runs with upstream's published key:
    tracing works, and the status says where that key is kept and what to do, without it."""
    well_known = target.WELL_KNOWN_PIPELINES_KEY
    world.reader.secrets[("ns", "pl")] = {"key": well_known}
    world.pipelines.client = lambda url, key: world.pipelines  # type: ignore[method-assign]
    await world.run(spec())
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ConnectionNotManaged")
    assert "or set spec.openWebUI; warning: the Pipelines key" in ready["message"]
    assert "Secret pl (key key) is upstream's well-known default" in ready["message"]
    assert "NetworkPolicy" in ready["message"]
    assert well_known not in json.dumps(world.status)

    world.reader.secrets[("ns", "pl")] = {"key": PIPELINES_KEY}  # a random key: no warning
    await world.run(spec())
    assert "warning" not in world.condition("Ready")["message"]


async def test_a_langfuse_without_otlp_stops_only_the_bundled_filter(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-hosted Langfuse v2 refuses every span of the bundled (OTLP) filter: not Ready,
    valves left alone. A filter of one's own may use the legacy SDK: Ready, with a warning."""
    monkeypatch.setattr(rc, "bundled_filter_source", lambda: FILTER)
    world.langfuse.version, world.langfuse.mode = "2.95.11", "legacy_only"
    bundled = spec()
    bundled["filter"] = {}
    await world.run(bundled)
    credentials = world.condition("CredentialsValid")
    assert (credentials["status"], credentials["reason"]) == ("False", "OtlpNotSupported")
    assert "Upgrade Langfuse to v3.22" in credentials["message"]
    assert world.condition("Ready")["status"] == "False"
    assert world.condition("Stalled")["status"] == "True"
    assert ("valves", PID) not in world.pipelines.writes
    assert world.status["langfuse"]["ingestionMode"] == "legacy_only"

    await world.run(spec())  # configMap: the person's filter, perhaps on SDK v2
    credentials = world.condition("CredentialsValid")
    assert (credentials["status"], credentials["reason"]) == ("True", "Verified")
    assert "no OTLP endpoint" in credentials["message"]
    assert world.condition("Ready")["status"] == "True"
