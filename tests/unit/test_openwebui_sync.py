"""sync_connection / remove_connection driven against a small in-memory Open WebUI.

The fake keeps Open WebUI 0.12.4's semantics that matter here (docs/upstream/open-webui.md,
"The OpenAI connection config", "Per-connection config" and "Pipelines detection and the
proxy"): the update stores what it is sent, dropping non-index config keys; a
connection counts as Pipelines when it is enabled, has no ``model_ids`` and its key is the
Pipelines key. The real server is exercised in tests/integration/test_openwebui_connection.py.
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


class FakeOpenWebUI:
    def __init__(self) -> None:
        self.openai: dict[str, Any] = {
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
        self.store: dict[str, Any] = {}  # flat config keys written through /configs/import
        self.user_info: dict[str, Any] | None = None
        self.persistent = True
        self.filters: list[str] = [FILTER]
        self.writes: list[str] = []
        self.after_config_read: Callable[[], None] | None = None
        self.fail: int | None = None
        self.refreshes = 0  # GET /api/models?refresh=true: every provider asked again

    def restart(self) -> None:
        """What a restart loses: oauth.* always; with persistence off every API write."""
        self.store = {k: v for k, v in self.store.items() if not k.startswith("oauth.")}
        if not self.persistent:
            self.store = {}
            self.openai = {
                "ENABLE_OPENAI_API": True,
                "OPENAI_API_BASE_URLS": [],
                "OPENAI_API_KEYS": [],
                "OPENAI_API_CONFIGS": {},
            }

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def pipelines_idxs(self) -> list[int]:
        found = []
        for idx, url in enumerate(self.openai["OPENAI_API_BASE_URLS"]):
            keys = self.openai["OPENAI_API_KEYS"]
            key = keys[idx] if idx < len(keys) else ""
            entry = self.openai["OPENAI_API_CONFIGS"].get(str(idx), {})
            if (
                url == PIPELINES
                and key == PIPELINES_KEY
                and entry.get("enable", True)
                and not entry.get("model_ids")
            ):
                found.append(idx)
        return found

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.fail is not None:
            return httpx.Response(self.fail, text="boom")
        if request.headers.get("authorization") != f"Bearer {ADMIN_KEY}":
            return httpx.Response(401, json={"detail": "Not authenticated"})
        path, method = request.url.path, request.method
        if (method, path) == ("GET", "/openai/config"):
            answer = httpx.Response(200, json=copy.deepcopy(self.openai))
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
            self.openai = body
            self.writes.append("openai")
            return httpx.Response(200, json=body)
        if (method, path) == ("GET", "/api/models"):
            if request.url.params.get("refresh") == "true":
                self.refreshes += 1
            return httpx.Response(200, json={"data": []})
        if (method, path) == ("GET", "/api/v1/pipelines/list"):
            urls = self.openai["OPENAI_API_BASE_URLS"]
            data = [{"url": urls[i], "idx": i} for i in self.pipelines_idxs()]
            return httpx.Response(200, json={"data": data})
        if method == "GET" and path.startswith("/openai/models/"):
            idx = int(path.rsplit("/", 1)[1])
            if idx not in self.pipelines_idxs():
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
            found = {k: v for k, v in self.store.items() if k.startswith(prefix)}
            return httpx.Response(200, json=found)
        if (method, path) == ("POST", "/api/v1/configs/import"):
            self.store.update(json.loads(request.content)["config"])
            self.writes.append("import")
            return httpx.Response(200, json=self.store)
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
    owui.restart()  # a restarted Open WebUI rebuilt its model list: refreshed once more
    await sync(owui, refresh=False)
    assert owui.refreshes == 3
    await sync(owui, refresh=False)
    assert owui.refreshes == 3


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
    owui.pipelines_idxs = lambda: []  # type: ignore[method-assign]
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
        True,  # re-registered (when lost) and probe re-armed
        False,
    )
    steady = await sync(owui)
    assert (steady.reason, steady.wrote) == (reason, False)  # sticky, and no writes


@pytest.mark.parametrize(
    ("persistence_probe", "restart_probe", "record", "verdict", "rearm"),
    [
        (None, None, None, "unknown", True),
        ("n1", "n1", {"nonce": "n1", "verdict": "unknown"}, "unknown", False),
        ("n1", "n1", {"nonce": "n1", "verdict": "lost"}, "lost", False),
        ("n1", None, {"nonce": "n1", "verdict": "unknown"}, "persistent", True),
        (None, None, {"nonce": "n1", "verdict": "persistent"}, "lost", True),
        (None, "n1", {"nonce": "n1", "verdict": "persistent"}, "lost", False),
        ("n1", "n1", {"nonce": "n1", "verdict": "bogus"}, "unknown", False),
    ],
)
def test_judge_persistence(
    persistence_probe: object, restart_probe: object, record: object, verdict: str, rearm: bool
) -> None:
    assert judge_persistence(persistence_probe, restart_probe, record) == (verdict, rearm)
