"""sync_connection / remove_connection driven against a small in-memory Open WebUI.

The fake keeps Open WebUI 0.12.4's semantics that matter here (docs/upstream/open-webui.md,
"The OpenAI connection config", "Per-connection config" and "Pipelines detection and the
proxy"): the update stores what it is sent, dropping non-index config keys; a
connection counts as Pipelines when it is enabled, has no ``model_ids`` and its key is the
Pipelines key. The real server is exercised in tests/integration/test_openwebui_connection.py.

It can also answer like several uvicorn workers (or replicas) of one Open WebUI 0.12.4
(docs/upstream/open-webui.md, "Persistent config"): the database (flat config keys, the users'
``info``) is shared, but each worker has its own memory, which holds every ``oauth.*`` key it
was sent and, with persistent config off, every config write, the OpenAI connections included.
``routing`` says which worker serves what: each pass (one client, one kept-alive connection, as
with uvicorn's workers) or each request, alternating.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from openwebui_langfuse.clients.openwebui import ApiKeyAuth, OpenWebUIClient
from openwebui_langfuse.connection import (
    MAX_WRITE_ATTEMPTS,
    ConnectionOutcome,
    PersistenceJudgement,
    judge_persistence,
    remove_connection,
    remove_connection_with,
    sync_connection,
    sync_connection_with,
)

ADMIN_KEY = "sk-admin-0000"
PIPELINES = "http://pipelines.test:9099"
PIPELINES_KEY = "pipelines-key-secret"
FILTER = "lft_ns_demo"


BOOT_OPENAI: dict[str, Any] = {  # what a worker with persistent config off starts from (env)
    "ENABLE_OPENAI_API": True,
    "OPENAI_API_BASE_URLS": [],
    "OPENAI_API_KEYS": [],
    "OPENAI_API_CONFIGS": {},
}


class FakeOpenWebUI:
    def __init__(self, workers: int = 1) -> None:
        self._openai: dict[str, Any] = {
            "ENABLE_OPENAI_API": True,
            "OPENAI_API_BASE_URLS": ["http://other:1/v1"],
            "OPENAI_API_KEYS": ["other-key"],
            "OPENAI_API_CONFIGS": {"0": {"enable": True, "prefix_id": "o"}},
        }
        self.models_config: dict[str, Any] = {
            "DEFAULT_MODELS": "",
            "DEFAULT_PINNED_MODELS": "",
            "MODEL_ORDER_LIST": [],
            "DEFAULT_MODEL_METADATA": {"capabilities": {"vision": False}},
            "DEFAULT_MODEL_PARAMS": {},
        }
        self.version: str | None = "0.12.4"  # GET /api/version; None: the route answers 404
        self.db: dict[str, Any] = {}  # flat config keys written through /configs/import
        self.user_info: dict[str, Any] | None = None
        self._persistent = True
        self.workers = workers
        self.routing = "pass"  # "pass": one worker per client, in turn; "request": alternating
        self.memory: list[dict[str, Any]] = [{} for _ in range(workers)]  # per worker
        self.worker_openai: list[dict[str, Any] | None] = [None] * workers  # persistence off
        self._passes = 0
        self._requests = 0
        self.filters: list[str] = [FILTER]
        self.writes: list[str] = []
        self.after_config_read: Callable[[], None] | None = None
        self.fail: int | None = None
        self.refreshes = 0  # GET /api/models?refresh=true: every provider asked again

    @property
    def persistent(self) -> bool:
        return self._persistent

    @persistent.setter
    def persistent(self, value: bool) -> None:  # set before the first pass: "how it booted"
        self._persistent = value
        if not value:
            self.worker_openai = [copy.deepcopy(self._openai) for _ in range(self.workers)]

    @property
    def openai(self) -> dict[str, Any]:
        """The OpenAI config worker 0 serves (the only one, unless the test made several)."""
        return self.openai_of(0)

    @openai.setter
    def openai(self, value: dict[str, Any]) -> None:
        self.set_openai(0, value)

    def openai_of(self, worker: int) -> dict[str, Any]:
        view = self.worker_openai[worker]
        return self._openai if self.persistent or view is None else view

    def set_openai(self, worker: int, value: dict[str, Any]) -> None:
        if self.persistent:
            self._openai = value
        else:
            self.worker_openai[worker] = value

    @property
    def store(self) -> dict[str, Any]:
        """The flat config keys worker 0 serves."""
        return self.config_of(0)

    def config_of(self, worker: int) -> dict[str, Any]:
        return {**(self.db if self.persistent else {}), **self.memory[worker]}

    def restart(self) -> None:
        """Every worker restarts: its memory is gone (oauth.*, and with persistence off every
        API write: it starts from its environment again)."""
        self.memory = [{} for _ in range(self.workers)]
        if not self.persistent:
            self.worker_openai = [copy.deepcopy(BOOT_OPENAI) for _ in range(self.workers)]

    def transport(self) -> httpx.MockTransport:
        """One client's transport: with ``routing == "pass"`` all its requests go to one
        worker, the next client's to the next worker."""
        worker = self._passes % self.workers
        self._passes += 1

        def handle(request: httpx.Request) -> httpx.Response:
            if self.routing == "pass":
                return self.handle(request, worker)
            self._requests += 1
            return self.handle(request, (self._requests - 1) % self.workers)

        return httpx.MockTransport(handle)

    def pipelines_idxs(self, worker: int = 0) -> list[int]:
        found = []
        openai = self.openai_of(worker)
        for idx, url in enumerate(openai["OPENAI_API_BASE_URLS"]):
            keys = openai["OPENAI_API_KEYS"]
            key = keys[idx] if idx < len(keys) else ""
            entry = openai["OPENAI_API_CONFIGS"].get(str(idx), {})
            if (
                url == PIPELINES
                and key == PIPELINES_KEY
                and entry.get("enable", True)
                and not entry.get("model_ids")
            ):
                found.append(idx)
        return found

    def handle(self, request: httpx.Request, worker: int = 0) -> httpx.Response:
        if self.fail is not None:
            return httpx.Response(self.fail, text="boom")
        if (request.method, request.url.path) == ("GET", "/api/version"):  # no auth needed
            if self.version is None:
                return httpx.Response(404, json={"detail": "Not Found"})
            return httpx.Response(200, json={"version": self.version, "deployment_id": ""})
        if request.headers.get("authorization") != f"Bearer {ADMIN_KEY}":
            return httpx.Response(401, json={"detail": "Not authenticated"})
        path, method = request.url.path, request.method
        if (method, path) == ("GET", "/openai/config"):
            answer = httpx.Response(200, json=copy.deepcopy(self.openai_of(worker)))
            if self.after_config_read is not None:
                self.after_config_read()
            return answer
        if (method, path) == ("POST", "/openai/config/update"):
            body = json.loads(request.content)
            n = len(body["OPENAI_API_BASE_URLS"])
            body["OPENAI_API_KEYS"] = (body["OPENAI_API_KEYS"] + [""] * n)[:n]
            body["OPENAI_API_CONFIGS"] = {
                k: v for k, v in body["OPENAI_API_CONFIGS"].items() if k in map(str, range(n))
            }
            self.set_openai(worker, body)
            self.writes.append("openai")
            return httpx.Response(200, json=body)
        if (method, path) == ("GET", "/api/models"):
            if request.url.params.get("refresh") == "true":
                self.refreshes += 1
            return httpx.Response(200, json={"data": []})
        if (method, path) == ("GET", "/api/v1/pipelines/list"):
            urls = self.openai_of(worker)["OPENAI_API_BASE_URLS"]
            data = [{"url": urls[i], "idx": i} for i in self.pipelines_idxs(worker)]
            return httpx.Response(200, json={"data": data})
        if method == "GET" and path.startswith("/openai/models/"):
            idx = int(path.rsplit("/", 1)[1])
            if idx not in self.pipelines_idxs(worker):
                return httpx.Response(500, json={"detail": "Unexpected error"})
            data = [{"id": f, "pipeline": {"type": "filter"}} for f in self.filters]
            return httpx.Response(200, json={"data": data, "pipelines": True})
        if (method, path) == ("GET", "/api/v1/configs/models"):
            return httpx.Response(200, json=copy.deepcopy(self.models_config))
        if (method, path) == ("POST", "/api/v1/configs/models"):
            self.models_config = json.loads(request.content)
            self.writes.append("models")
            return httpx.Response(200, json=self.models_config)
        if method == "GET" and path.startswith("/api/v1/configs/namespace/"):
            prefix = path.rsplit("/", 1)[1] + "."
            found = {k: v for k, v in self.config_of(worker).items() if k.startswith(prefix)}
            return httpx.Response(200, json=found)
        if (method, path) == ("POST", "/api/v1/configs/import"):
            for key, value in json.loads(request.content)["config"].items():
                if self.persistent and not key.startswith("oauth."):
                    self.db[key] = value
                else:
                    self.memory[worker][key] = value
            self.writes.append("import")
            return httpx.Response(200, json=self.config_of(worker))
        if (method, path) == ("GET", "/api/v1/users/user/info"):
            # A fresh account's info is null (json=None would send no body at all).
            return httpx.Response(200, text=json.dumps(self.user_info))
        if (method, path) == ("POST", "/api/v1/users/user/info/update"):
            self.user_info = {**(self.user_info or {}), **json.loads(request.content)}
            self.writes.append("user_info")
            return httpx.Response(200, json=self.user_info)
        return httpx.Response(404, json={"detail": "Not Found"})


@pytest.fixture
def owui() -> FakeOpenWebUI:
    return FakeOpenWebUI()


async def sync(
    owui: FakeOpenWebUI, *, usage: bool = True, key: str = ADMIN_KEY, refresh: bool = True
) -> ConnectionOutcome:
    async with OpenWebUIClient(
        "http://owui.test", ApiKeyAuth(key), transport=owui.transport()
    ) as c:
        return await sync_connection_with(
            c,
            connection_url=PIPELINES,
            pipelines_key=PIPELINES_KEY,
            usage_capability=usage,
            pipeline_id=FILTER,
            refresh_models=refresh,
        )


async def remove(owui: FakeOpenWebUI, url: str = PIPELINES) -> ConnectionOutcome:
    async with OpenWebUIClient(
        "http://owui.test", ApiKeyAuth(ADMIN_KEY), transport=owui.transport()
    ) as c:
        return await remove_connection_with(c, connection_url=url)


async def test_register_then_nothing_to_do(owui: FakeOpenWebUI) -> None:
    first = await sync(owui)
    assert (first.registered, first.reason, first.wrote, first.temporary) == (
        True,
        "Registered",
        True,
        False,
    )
    assert first.connection_url == PIPELINES
    assert first.added is True
    assert owui.openai["OPENAI_API_BASE_URLS"] == ["http://other:1/v1", PIPELINES]
    assert owui.openai["OPENAI_API_CONFIGS"] == {
        "0": {"enable": True, "prefix_id": "o"},
        "1": {"enable": True},
    }
    assert owui.models_config["DEFAULT_MODEL_METADATA"] == {
        "capabilities": {"vision": False, "usage": True}
    }
    assert owui.writes == ["openai", "models", "import", "user_info"]  # + persistence probe

    second = await sync(owui)
    assert (second.registered, second.reason, second.wrote) == (True, "Registered", False)
    assert second.added is False
    assert owui.writes == ["openai", "models", "import", "user_info"]
    assert PIPELINES_KEY not in first.message + second.message


async def test_models_are_refreshed_only_when_chats_may_not_see_the_filter(
    owui: FakeOpenWebUI,
) -> None:
    await sync(owui, refresh=False)  # the connection is new: refreshed although not asked
    assert owui.refreshes == 1
    await sync(owui, refresh=False)  # steady state: no provider is asked for its models
    assert owui.refreshes == 1
    await sync(owui, refresh=True)  # the caller (re)installed the filter
    assert owui.refreshes == 2
    # A restart that kept the connection is no reason: Open WebUI starts with an empty model
    # list and builds it on first use (main.py chat_completion), with the filter in it.
    owui.restart()
    await sync(owui, refresh=False)
    assert owui.refreshes == 2


async def test_models_are_refreshed_when_a_restart_lost_the_connection(
    owui: FakeOpenWebUI,
) -> None:
    owui.persistent = False
    await sync(owui, refresh=False)
    assert owui.refreshes == 1
    owui.restart()  # the connection is gone: re-registered, and the models refreshed with it
    await sync(owui, refresh=False)
    assert owui.refreshes == 2
    await sync(owui, refresh=False)
    assert owui.refreshes == 2


async def test_usage_capability_off_leaves_the_defaults_alone(owui: FakeOpenWebUI) -> None:
    await sync(owui, usage=False)
    assert "models" not in owui.writes
    assert owui.models_config["DEFAULT_MODEL_METADATA"] == {"capabilities": {"vision": False}}


async def test_a_connection_added_between_read_and_write_is_kept(owui: FakeOpenWebUI) -> None:
    def person_adds_a_connection() -> None:
        owui.after_config_read = None  # once
        owui.openai["OPENAI_API_BASE_URLS"].append("http://added-by-hand:2")
        owui.openai["OPENAI_API_KEYS"].append("hand-key")
        owui.openai["OPENAI_API_CONFIGS"]["1"] = {"enable": True, "tags": ["hand"]}

    owui.after_config_read = person_adds_a_connection
    outcome = await sync(owui)
    assert outcome.reason == "Registered"
    assert owui.openai["OPENAI_API_BASE_URLS"] == [
        "http://other:1/v1",
        "http://added-by-hand:2",
        PIPELINES,
    ]
    assert owui.openai["OPENAI_API_KEYS"] == ["other-key", "hand-key", PIPELINES_KEY]
    assert owui.openai["OPENAI_API_CONFIGS"]["1"] == {"enable": True, "tags": ["hand"]}
    assert owui.openai["OPENAI_API_CONFIGS"]["2"] == {"enable": True}


async def test_a_config_that_never_settles_is_not_written(owui: FakeOpenWebUI) -> None:
    counter = 0

    def person_keeps_editing() -> None:
        nonlocal counter
        counter += 1
        owui.openai["OPENAI_API_CONFIGS"]["0"]["tags"] = [str(counter)]

    owui.after_config_read = person_keeps_editing
    outcome = await sync(owui)
    assert (outcome.registered, outcome.reason, outcome.temporary, outcome.wrote) == (
        False,
        "ConfigContended",
        True,
        False,
    )
    assert owui.writes == []
    assert counter == MAX_WRITE_ATTEMPTS + 1


async def test_pipelines_not_detected(owui: FakeOpenWebUI) -> None:
    owui.pipelines_idxs = lambda worker=0: []  # type: ignore[method-assign]
    outcome = await sync(owui, usage=False)
    assert (outcome.registered, outcome.reason, outcome.temporary, outcome.wrote) == (
        False,
        "PipelinesNotDetected",
        True,
        True,
    )


async def test_filter_not_visible(owui: FakeOpenWebUI) -> None:
    owui.filters = ["some_other_filter"]
    outcome = await sync(owui, usage=False)
    assert (outcome.registered, outcome.reason, outcome.temporary) == (
        False,
        "FilterNotVisible",
        True,
    )
    assert FILTER in outcome.message


async def test_wrong_admin_key(owui: FakeOpenWebUI) -> None:
    outcome = await sync(owui, key="sk-wrong")
    assert (outcome.registered, outcome.reason, outcome.temporary, outcome.wrote) == (
        False,
        "OpenWebUIUnauthorized",
        False,
        False,
    )
    assert "sk-wrong" not in outcome.message


@pytest.mark.parametrize(("status", "temporary"), [(500, True), (502, True), (404, False)])
async def test_server_errors(owui: FakeOpenWebUI, status: int, temporary: bool) -> None:
    owui.fail = status
    outcome = await sync(owui)
    assert (outcome.reason, outcome.temporary, outcome.registered) == (
        "OpenWebUIError",
        temporary,
        False,
    )
    assert "boom" not in outcome.message


async def test_unreachable() -> None:
    outcome = await sync_connection(
        openwebui_url="http://127.0.0.1:9",  # discard port: nothing listens
        auth=ApiKeyAuth(ADMIN_KEY),
        connection_url=PIPELINES,
        pipelines_key=PIPELINES_KEY,
        usage_capability=True,
        pipeline_id=FILTER,
        timeout=2.0,
    )
    assert (outcome.registered, outcome.reason, outcome.temporary, outcome.wrote) == (
        False,
        "OpenWebUIUnreachable",
        True,
        False,
    )
    removal = await remove_connection(
        openwebui_url="http://127.0.0.1:9",
        auth=ApiKeyAuth(ADMIN_KEY),
        connection_url=PIPELINES,
        timeout=2.0,
    )
    assert (removal.reason, removal.temporary) == ("OpenWebUIUnreachable", True)


async def test_remove_only_ours(owui: FakeOpenWebUI) -> None:
    await sync(owui, usage=False)
    owui.openai["OPENAI_API_BASE_URLS"].append("http://later:3")
    owui.openai["OPENAI_API_KEYS"].append("later-key")
    owui.openai["OPENAI_API_CONFIGS"]["2"] = {"enable": False, "tags": ["later"]}

    outcome = await remove(owui)
    assert (outcome.registered, outcome.reason, outcome.wrote, outcome.temporary) == (
        False,
        "Removed",
        True,
        False,
    )
    assert owui.openai == {
        "ENABLE_OPENAI_API": True,
        "OPENAI_API_BASE_URLS": ["http://other:1/v1", "http://later:3"],
        "OPENAI_API_KEYS": ["other-key", "later-key"],
        "OPENAI_API_CONFIGS": {
            "0": {"enable": True, "prefix_id": "o"},
            "1": {"enable": False, "tags": ["later"]},
        },
    }
    again = await remove(owui)
    assert (again.reason, again.wrote) == ("NotRegistered", False)


@pytest.mark.parametrize(
    ("persistent", "reason"), [(True, "Registered"), (False, "PersistentConfigDisabled")]
)
async def test_persistence_is_judged_at_a_restart(
    owui: FakeOpenWebUI, persistent: bool, reason: str
) -> None:
    owui.persistent = persistent
    assert (await sync(owui)).reason == "Registered"  # nothing to judge before a restart
    owui.restart()
    after = await sync(owui)
    assert (after.registered, after.reason, after.wrote, after.temporary) == (
        True,
        reason,
        not persistent,  # only a loss is written again: the connection and the probes
        False,
    )
    steady = await sync(owui)
    assert (steady.reason, steady.wrote) == (reason, False)  # sticky, and no writes
    owui.restart()
    again = await sync(owui)
    assert (again.reason, again.wrote) == (reason, not persistent)


@pytest.mark.parametrize(
    ("persistence_probe", "restart_probe", "record", "verdict", "probes", "record_write"),
    [
        # Never armed: arm.
        (None, None, None, "unknown", True, True),
        ("n0", "n0", None, "unknown", True, True),  # another account's probes: arm our record
        # Both probes there: the process that took the write; the verdict is kept.
        ("n1", "n1", {"nonce": "n1", "verdict": "unknown"}, "unknown", False, False),
        ("n1", "n1", {"nonce": "n1", "verdict": "lost"}, "lost", False, False),
        ("n1", "n1", {"nonce": "n1", "verdict": "persistent"}, "persistent", False, False),
        ("n1", "n1", {"nonce": "n1", "verdict": "bogus"}, "unknown", False, False),
        # The persistence probe without the restart probe: read from the database. A restart,
        # or just another worker: no write for it (that re-arming was issue 14's bug).
        ("n1", None, {"nonce": "n1", "verdict": "unknown"}, "persistent", False, False),
        ("n1", None, {"nonce": "n1", "verdict": "persistent"}, "persistent", False, False),
        # Another account's restart probe in this process's memory: the same process.
        ("n1", "n0", {"nonce": "n1", "verdict": "unknown"}, "unknown", False, False),
        ("n1", None, {"nonce": "n1", "verdict": "lost"}, "persistent", False, True),
        # Another account's nonce proves the same (compared by presence).
        ("n2", "n2", {"nonce": "n1", "verdict": "unknown"}, "unknown", False, False),
        # The persistence probe gone: lost; written again (the record only on the way in).
        (None, None, {"nonce": "n1", "verdict": "persistent"}, "lost", True, True),
        (None, "n1", {"nonce": "n1", "verdict": "unknown"}, "lost", True, True),
        (None, None, {"nonce": "n1", "verdict": "lost"}, "lost", True, False),
    ],
)
def test_judge_persistence(
    persistence_probe: object,
    restart_probe: object,
    record: object,
    verdict: str,
    probes: bool,
    record_write: bool,
) -> None:
    assert judge_persistence(persistence_probe, restart_probe, record) == PersistenceJudgement(
        verdict, write_probes=probes, write_record=record_write
    )


# -- several workers or replicas ------------------------------------------------------------------


@pytest.mark.parametrize("routing", ["pass", "request"])
async def test_two_workers_with_persistent_config_cost_no_write_at_a_resync(routing: str) -> None:
    """Each worker has its own memory, so the restart probe is seen by one and missing on the
    other: that reading is what a restart looks like, and must not re-arm the probe (issue 14:
    a write, a Synced Event and a status patch on most resyncs)."""
    owui = FakeOpenWebUI(workers=2)
    owui.routing = routing
    first = await sync(owui)
    assert (first.reason, first.wrote) == ("Registered", True)
    armed = list(owui.writes)
    assert armed == ["openai", "models", "import", "user_info"]
    for _ in range(10):
        outcome = await sync(owui)
        assert (outcome.registered, outcome.reason, outcome.wrote) == (True, "Registered", False)
    assert owui.writes == armed  # 10 resyncs, 0 writes


async def test_a_restart_of_two_persistent_workers_costs_no_write() -> None:
    owui = FakeOpenWebUI(workers=2)
    await sync(owui)
    owui.restart()
    armed = list(owui.writes)
    for _ in range(4):
        outcome = await sync(owui)
        assert (outcome.reason, outcome.wrote) == ("Registered", False)
    assert owui.writes == armed


async def test_two_workers_with_persistent_config_off_are_reported_and_settle() -> None:
    """Persistent config off: each worker keeps only what it was sent itself. The second
    worker lacks the connection and the probe: lost (no restart needed to see it). Once each
    worker holds both, resyncs write nothing, and the verdict stays."""
    owui = FakeOpenWebUI(workers=2)
    owui.persistent = False
    first = await sync(owui)  # worker 0
    assert (first.reason, first.wrote) == ("Registered", True)
    second = await sync(owui)  # worker 1: its memory has neither the connection nor the probe
    assert (second.registered, second.reason, second.wrote) == (
        True,
        "PersistentConfigDisabled",
        True,
    )
    assert "another of its workers" in second.message
    settled = list(owui.writes)
    for _ in range(10):
        outcome = await sync(owui)
        assert (outcome.reason, outcome.wrote) == ("PersistentConfigDisabled", False)
    assert owui.writes == settled
    # One nonce for both workers: re-arming never invalidates what the other worker holds.
    assert owui.config_of(0) == owui.config_of(1)


async def test_lost_clears_at_the_first_restart_that_keeps_the_probe(
    owui: FakeOpenWebUI,
) -> None:
    owui.persistent = False
    await sync(owui)
    owui.restart()
    assert (await sync(owui)).reason == "PersistentConfigDisabled"
    owui.persistent = True  # someone turns persistent config on: it takes a restart
    owui.restart()
    # What was written while it was off lived in memory only: still missing, written again,
    # this time into the database.
    assert (await sync(owui)).reason == "PersistentConfigDisabled"
    owui.restart()
    kept = await sync(owui)  # the probe survived a restart
    assert (kept.reason, kept.wrote) == ("Registered", True)  # the record leaves "lost"
    steady = await sync(owui)
    assert (steady.reason, steady.wrote) == ("Registered", False)


# -- versions whose config import replaces everything ---------------------------------------------


@pytest.mark.parametrize("version", ["0.9.5", "0.6.43", None, "dev"])
async def test_no_config_import_below_the_version_that_merges(
    owui: FakeOpenWebUI, version: str | None
) -> None:
    """Up to 0.9.x ``/api/v1/configs/import`` replaced the whole stored config; a version the
    operator cannot read counts as such."""
    owui.version = version
    seen: list[str] = []
    handle = owui.handle

    def recording(request: httpx.Request, worker: int = 0) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        return handle(request, worker)

    owui.handle = recording  # type: ignore[method-assign]
    for _ in range(3):
        outcome = await sync(owui)
        assert (outcome.registered, outcome.reason) == (True, "Registered")
    assert "import" not in owui.writes
    assert owui.writes == ["openai", "models"]
    assert not [s for s in seen if "/configs/import" in s or "/configs/namespace" in s]
    assert not [s for s in seen if "/users/user/info" in s]
    assert owui.db == {} and owui.user_info is None


@pytest.mark.parametrize("version", ["0.10.0", "0.12.4", "v0.11.1", "1.0"])
async def test_the_probe_is_armed_from_the_version_that_merges(
    owui: FakeOpenWebUI, version: str
) -> None:
    owui.version = version
    await sync(owui)
    assert "import" in owui.writes
