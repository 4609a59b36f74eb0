"""The runtime around the pass: reading references, workers, backoff, suspend, Events, Step 5."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from openwebui_langfuse.config import Settings
from openwebui_langfuse.connection import ConnectionOutcome
from openwebui_langfuse.passes import MissingReference
from openwebui_langfuse.runtime import RETIRE_ATTEMPTS, IndexReader, Runtime, Worker

from tests.unit.test_reconcile import (
    PIPELINES_KEY,
    SECRET,
    FakeLangfuse,
    FakePipelines,
    spec,
)
from tests.world.poll import async_wait_for


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_index_reader_decodes_and_names_what_is_missing() -> None:
    reader = IndexReader(
        {("ns", "s"): [{"k": b64("value\n"), "bad": "%%%"}]},
        {("ns", "c"): [{"f.py": "print()"}]},
    )
    assert reader.secret_value("ns", "s", "k") == "value"
    assert reader.config_map_value("ns", "c", "f.py") == "print()"
    for call, reason in [
        (lambda: reader.secret_value("ns", "nope", "k"), "SecretNotFound"),
        (lambda: reader.secret_value("ns", "s", "nope"), "SecretKeyNotFound"),
        (lambda: reader.secret_value("ns", "s", "bad"), "SecretKeyInvalid"),
        (lambda: reader.config_map_value("ns", "nope", "f"), "ConfigMapNotFound"),
        (lambda: reader.config_map_value("ns", "c", "nope"), "ConfigMapKeyNotFound"),
    ]:
        with pytest.raises(MissingReference) as info:
            call()
        assert info.value.reason == reason


class FakeConnection:
    def __init__(self) -> None:
        self.outcome = ConnectionOutcome(
            True, "Registered", "Open WebUI uses Pipelines", "http://p:9099", True, False
        )
        self.synced: list[dict[str, Any]] = []
        self.removed: list[dict[str, Any]] = []
        self.remove_outcome: ConnectionOutcome | None = None
        self.refreshes = 0

    def auth(self, api_key: str | None, email: str | None, password: str | None) -> Any:
        return ("key", api_key) if api_key else ("creds", email, password)

    async def sync(self, **kwargs: Any) -> ConnectionOutcome:
        self.synced.append(kwargs)
        return self.outcome

    def client(self, openwebui_url: str, auth: Any) -> FakeOpenWebUI:
        return FakeOpenWebUI(self)

    async def remove(self, **kwargs: Any) -> ConnectionOutcome:
        self.removed.append(kwargs)
        if self.remove_outcome is not None:
            return self.remove_outcome
        return ConnectionOutcome(False, "Removed", "", kwargs["connection_url"], True, False)


class FakeOpenWebUI:
    """The client ``FakeConnection.client`` opens: counts the models refreshes."""

    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection

    async def __aenter__(self) -> FakeOpenWebUI:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def refresh_models(self) -> list[dict[str, Any]]:
        self.connection.refreshes += 1
        return []


class Harness:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.runtime = Runtime(Settings(namespaces=("ns",)), kube=None, emit=self.emit)
        self.pipelines = FakePipelines()
        self.langfuse = FakeLangfuse()
        self.connection = FakeConnection()
        self.runtime.upstreams.pipelines = self.pipelines.client
        self.runtime.upstreams.langfuse = self.langfuse.client
        self.runtime.upstreams.connection = self.connection
        self.secrets: dict[tuple[str, str], list[dict[str, str]]] = {
            ("ns", "lf"): [{"pk": b64("pk-lf-1"), "sk": b64(SECRET)}],
            ("ns", "pl"): [{"key": b64(PIPELINES_KEY)}],
            ("ns", "owui"): [{"email": b64("admin@example.com"), "password": b64("pw-123456")}],
        }
        self.config_maps = {("ns", "cm"): [{"filter.py": "class Pipeline: ...\n"}]}
        self.reader = IndexReader(self.secrets, self.config_maps)

    def emit(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def spec_with_open_webui() -> dict[str, Any]:
    raw = spec()
    raw["openWebUI"] = {
        "url": "http://owui:8080",
        "auth": {"credentials": {"secretRef": {"name": "owui"}}},
    }
    return raw


def body(raw_spec: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "tracing", "generation": generation},
        "spec": raw_spec,
        "status": {},
    }


async def test_pass_writes_status_and_emits_only_transitions() -> None:
    h = Harness()
    worker = Worker(key=("ns", "tracing"), status={})
    delay = await h.runtime.pass_once(worker, body(spec()), h.reader)
    assert 270 <= delay <= 300  # the resync, spread per resource
    assert worker.status is not None
    ready = next(c for c in worker.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    # No spec.openWebUI: Ready, and the message says exactly what Open WebUI still needs.
    assert ready["reason"] == "ConnectionNotManaged"
    assert "nothing points Open WebUI at Pipelines" in ready["message"]
    assert "with URL http://p:9099 and the key in Secret pl (key key)" in (ready["message"])
    reasons = [e[1] for e in h.events]
    assert "ConnectionNotManaged" in reasons and "Synced" in reasons
    h.events.clear()
    await h.runtime.pass_once(worker, body(spec()), h.reader)
    assert h.events == []  # nothing changed: no Event, no status write


async def test_temporary_errors_back_off_then_reset() -> None:
    h = Harness()
    h.pipelines.down = True
    worker = Worker(key=("ns", "tracing"), status={})
    delays = [await h.runtime.pass_once(worker, body(spec()), h.reader) for _ in range(3)]
    assert delays == [1.0, 2.0, 4.0]
    h.pipelines.down = False
    assert 270 <= await h.runtime.pass_once(worker, body(spec()), h.reader) <= 300
    assert worker.backoff == 1.0


async def test_suspended_resource_is_left_alone() -> None:
    h = Harness()
    worker = Worker(key=("ns", "tracing"), status={})
    raw = {**spec(), "suspend": True, "resyncInterval": "1m"}
    assert 54 <= await h.runtime.pass_once(worker, body(raw), h.reader) <= 60
    assert h.pipelines.writes == []
    assert worker.status is not None
    reconciling = next(c for c in worker.status["conditions"] if c["type"] == "Reconciling")
    assert reconciling["reason"] == "Suspended"


async def test_wake_interrupts_the_sleep() -> None:
    h = Harness()
    stop = asyncio.Event()
    spec_body = body(spec())
    task = asyncio.create_task(
        h.runtime.run_worker(spec_body, h.reader, stopped=stop.is_set, wait_stopped=stop.wait)
    )

    async def first_pass_done() -> bool:
        return bool(h.pipelines.writes)

    await async_wait_for(first_pass_done, 2, "the first pass", interval=0.005)
    h.secrets[("ns", "lf")] = [{"pk": b64("pk-lf-1"), "sk": b64("sk-lf-rotated-value")}]
    h.langfuse.good = ("pk-lf-1", "sk-lf-rotated-value")
    assert h.runtime.wake("ns", "tracing")

    async def rotated() -> bool:
        return h.pipelines.valves["lft_ns_tracing"]["secret_key"] == "sk-lf-rotated-value"

    # Far below the 300 s resync: only the wake-up can have done it.
    await async_wait_for(rotated, 2, "the woken pass", interval=0.005)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert ("ns", "tracing") not in h.runtime.workers
    await h.runtime.aclose()


async def test_open_webui_step_and_its_cleanup() -> None:
    h = Harness()
    raw = spec_with_open_webui()
    worker = Worker(key=("ns", "tracing"), status={})
    await h.runtime.pass_once(worker, body(raw), h.reader)
    assert worker.status is not None
    conds = {c["type"]: c for c in worker.status["conditions"]}
    assert conds["ConnectionRegistered"]["status"] == "True"
    assert conds["Ready"]["status"] == "True"
    # The fake found the connection already there: adopted, not added.
    assert worker.status["openWebUI"] == {
        "connectionUrl": "http://p:9099",
        "connectionAdded": False,
    }
    call = h.connection.synced[0]
    assert call["auth"] == ("creds", "admin@example.com", "pw-123456")
    assert call["pipelines_key"] == PIPELINES_KEY and call["pipeline_id"] == "lft_ns_tracing"

    h.connection.outcome = ConnectionOutcome(
        False, "OpenWebUIUnreachable", "down", "http://p:9099", False, True
    )
    assert await h.runtime.pass_once(worker, body(raw), h.reader) == 1.0
    assert worker.status is not None
    ready = next(c for c in worker.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "OpenWebUIUnreachable"

    result = await h.runtime.cleanup(
        body(raw), h.reader, filter_shared=False, connection_shared=True
    )
    assert result.done and h.connection.removed == []
    result = await h.runtime.cleanup(
        body(raw), h.reader, filter_shared=True, connection_shared=False
    )
    assert result.done and len(h.connection.removed) == 1


async def test_only_a_connection_this_resource_added_is_removed_on_deletion() -> None:
    h = Harness()
    raw = spec_with_open_webui()

    def outcome(added: bool) -> ConnectionOutcome:
        return ConnectionOutcome(True, "Registered", "", "http://p:9099", added, False, added)

    # Adopted: a person's connection was there; deleting the resource leaves it.
    adopted = Worker(key=("ns", "tracing"), status={})
    h.connection.outcome = outcome(added=False)
    await h.runtime.pass_once(adopted, body(raw), h.reader)
    assert adopted.status is not None
    assert adopted.status["openWebUI"]["connectionAdded"] is False
    gone = {**body(raw), "status": adopted.status}
    result = await h.runtime.cleanup(gone, h.reader, filter_shared=False, connection_shared=False)
    assert result.done and h.connection.removed == []
    assert "lft_ns_tracing" not in h.pipelines.loaded  # the filter it installed is removed

    # Added by this resource: ownership sticks on later passes that find it present.
    added = Worker(key=("ns", "tracing"), status={})
    h.connection.outcome = outcome(added=True)
    await h.runtime.pass_once(added, body(raw), h.reader)
    h.connection.outcome = outcome(added=False)
    await h.runtime.pass_once(added, {**body(raw, 2), "status": added.status}, h.reader)
    assert added.status is not None
    assert added.status["openWebUI"]["connectionAdded"] is True
    gone = {**body(raw, 2), "status": added.status}
    result = await h.runtime.cleanup(gone, h.reader, filter_shared=False, connection_shared=False)
    assert result.done and len(h.connection.removed) == 1


async def test_appending_the_connection_is_remembered_before_it_is_confirmed() -> None:
    # The first pass appends the connection but Open WebUI does not see Pipelines yet; the
    # next pass finds it present. It is still this resource's to remove.
    h = Harness()
    raw = spec_with_open_webui()
    worker = Worker(key=("ns", "tracing"), status={})
    h.connection.outcome = ConnectionOutcome(
        False, "PipelinesNotDetected", "", "http://p:9099", True, True, True
    )
    await h.runtime.pass_once(worker, body(raw), h.reader)
    h.connection.outcome = ConnectionOutcome(
        True, "Registered", "", "http://p:9099", False, False, False
    )
    await h.runtime.pass_once(worker, {**body(raw), "status": worker.status}, h.reader)
    assert worker.status is not None
    assert worker.status["openWebUI"]["connectionAdded"] is True


async def test_a_connection_that_cannot_be_removed_is_not_reported_as_removed() -> None:
    h = Harness()
    raw = spec_with_open_webui()
    h.connection.remove_outcome = ConnectionOutcome(
        False, "OpenWebUIUnauthorized", "Open WebUI refused the admin credentials", "", False, False
    )
    result = await h.runtime.cleanup(
        body(raw), h.reader, filter_shared=False, connection_shared=False
    )
    assert not result.done and not result.temporary
    assert "refused the admin credentials" in result.message


class FailingKube:
    def __init__(self) -> None:
        self.calls = 0

    async def patch_status(self, namespace: str, name: str, status: Any) -> dict[str, Any]:
        from openwebui_langfuse.kube import KubeError

        self.calls += 1
        raise KubeError("status patch answered HTTP 503")

    async def patch_annotations(self, namespace: str, name: str, annotations: Any) -> None:
        return None


async def test_a_failed_status_write_is_retried_soon_then_backs_off() -> None:
    h = Harness()
    kube = FailingKube()
    h.runtime.kube = kube  # type: ignore[assignment]
    worker = Worker(key=("ns", "tracing"), status={})
    assert await h.runtime.pass_once(worker, body(spec()), h.reader) == 2.0
    assert kube.calls == 1 and worker.status == {}
    # Still failing: the retries back off instead of re-running every pass every 2 s.
    assert await h.runtime.pass_once(worker, body(spec()), h.reader) == 4.0
    assert await h.runtime.pass_once(worker, body(spec()), h.reader) == 8.0


async def test_events_name_the_source_not_its_consequences() -> None:
    h = Harness()
    h.langfuse.good = ("pk-lf-1", "another-secret")
    worker = Worker(key=("ns", "tracing"), status={})
    await h.runtime.pass_once(worker, body(spec()), h.reader)
    warnings = sorted(reason for kind, reason, _ in h.events if kind == "Warning")
    assert warnings == ["InvalidCredentials", "InvalidCredentials"]  # Ready + its source


async def test_a_permanent_filter_failure_stalls_even_with_open_webui() -> None:
    # Open WebUI cannot see a filter that is not installed; that echo is not a temporary problem
    # of its own, or the resource would retry forever instead of reporting Stalled.
    h = Harness()
    raw = spec_with_open_webui()
    raw["filter"]["sha256"] = "0" * 64  # not the file's digest: only a spec change helps
    h.connection.outcome = ConnectionOutcome(
        False,
        "FilterNotVisible",
        "Open WebUI does not see the filter",
        "http://p:9099",
        False,
        True,
    )
    worker = Worker(key=("ns", "tracing"), status={})
    delay = await h.runtime.pass_once(worker, body(raw), h.reader)
    assert worker.status is not None
    conds = {c["type"]: c for c in worker.status["conditions"]}
    assert (conds["Stalled"]["status"], conds["Stalled"]["reason"]) == ("True", "DigestMismatch")
    assert conds["ConnectionRegistered"]["reason"] == "FilterNotVisible"
    assert 270 <= delay <= 300  # the resync, not a backoff retry


async def test_a_filter_that_fails_to_load_stalls_and_is_tried_again_before_the_resync() -> None:
    h = Harness()
    h.config_maps[("ns", "cm")] = [{"filter.py": "BROKEN"}]
    worker = Worker(key=("ns", "tracing"), status={})
    delay = await h.runtime.pass_once(worker, body(spec()), h.reader)
    assert worker.status is not None
    conds = {c["type"]: c for c in worker.status["conditions"]}
    assert (conds["Stalled"]["status"], conds["Stalled"]["reason"]) == ("True", "FilterLoadFailed")
    assert 9.0 < delay <= 10.0  # the first load retry, not the resync


async def test_a_deletion_without_the_pipelines_key_warns_what_is_left_behind() -> None:
    h = Harness()
    raw = spec_with_open_webui()
    worker = Worker(key=("ns", "tracing"), status={})
    await h.runtime.pass_once(worker, body(raw), h.reader)
    deleted = body(raw)
    deleted["status"] = worker.status
    h.secrets.pop(("ns", "pl"))  # the Pipelines key Secret is gone before the resource
    h.events.clear()
    result = await h.runtime.cleanup(
        deleted, h.reader, filter_shared=False, connection_shared=False
    )
    assert result.done  # waiting would not bring the Secret back
    ((kind, reason, message),) = h.events
    assert (kind, reason) == ("Warning", "CleanupIncomplete")
    assert "Secret ns/pl not found" in message and "remove them by hand" in message
    assert PIPELINES_KEY not in message and SECRET not in message


async def test_an_unexpected_error_in_cleanup_stays_within_the_delete_bound() -> None:
    h = Harness()

    async def broken(pipeline_id: str) -> bool:
        raise KeyError(SECRET)  # a bug whose text quotes what it was handed

    h.pipelines.delete = broken  # type: ignore[method-assign]
    result = await h.runtime.cleanup(
        body(spec()), h.reader, filter_shared=False, connection_shared=False
    )
    # Temporary: retried by the handler until the delete bound, then released with a Warning.
    assert (result.done, result.temporary) == (False, True)
    assert result.message == "cleanup failed unexpectedly (KeyError)"


async def test_the_previous_filter_on_a_server_gone_for_good_is_given_up_after_a_bound() -> None:
    h = Harness()
    old_server = FakePipelines()
    old_server.down = True  # the server the resource moved away from is gone for good
    h.runtime.upstreams.pipelines = lambda url, key: (
        old_server if url == "http://old:9099" else h.pipelines
    )
    raw = spec()
    raw["pipelines"]["url"] = "http://old:9099"
    worker = Worker(key=("ns", "tracing"), status={})
    old_server.down = False
    await h.runtime.pass_once(worker, body(raw), h.reader)
    assert worker.install_record is not None and "old" in worker.install_record
    old_server.down = True

    moved = spec()  # now on http://p:9099
    h.events.clear()
    for _ in range(RETIRE_ATTEMPTS):
        await h.runtime.pass_once(worker, body(moved, generation=2), h.reader)
    warnings = [reason for kind, reason, _ in h.events if kind == "Warning"]
    # One Event when it starts failing, one when it gives up; not one per pass.
    assert warnings == ["PreviousFilterKept", "PreviousFilterAbandoned"]
    assert worker.install_record is not None and "old" not in worker.install_record
    old_server.down = False  # were it called again, it would now log the delete
    await h.runtime.pass_once(worker, body(moved, generation=2), h.reader)
    assert [w for w in old_server.writes if w[0] == "delete"] == []


async def test_open_webui_refreshes_its_models_only_while_the_filter_is_new_to_it() -> None:
    h = Harness()
    raw = spec_with_open_webui()
    worker = Worker(key=("ns", "tracing"), status={})
    for _ in range(3):
        await h.runtime.pass_once(worker, body(raw), h.reader)
    # First pass: uploaded and not yet confirmed; then confirmed and nothing installed.
    assert [call["refresh_models"] for call in h.connection.synced] == [True, False, False]
    h.pipelines.loaded.clear()  # Pipelines restarted without persistence: re-uploaded
    await h.runtime.pass_once(worker, body(raw), h.reader)
    assert h.connection.synced[-1]["refresh_models"] is True


def test_resyncs_of_resources_made_together_are_spread() -> None:
    from openwebui_langfuse.runtime import spread

    delays = [spread(300.0, (f"team-{i % 20}", f"tracing-{i}")) for i in range(200)]
    assert all(270 <= d <= 300 for d in delays)
    assert max(delays) - min(delays) > 25  # over most of the last tenth
    assert len({round(d, 3) for d in delays}) > 190  # hardly two in the same millisecond
    assert spread(300.0, ("team-0", "tracing-0")) == delays[0]  # fixed per resource
