"""The Functions client (clients/openwebui_functions.py) against the real Open WebUI 0.12.4.

One Open WebUI for the session (fixture ``open_webui``). Every function, model record and user
a test makes is registered with ``made`` and removed afterwards (then the models cache is
refreshed), so the session's Open WebUI is left as found. Facts:
docs/upstream/open-webui-functions.md.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from openwebui_langfuse.clients.openwebui import ApiKeyAuth, CredentialsAuth, OpenWebUIClient
from openwebui_langfuse.clients.openwebui_functions import (
    FunctionExists,
    FunctionNotFound,
    FunctionRejected,
    FunctionsApi,
    FunctionsUnauthorized,
    InvalidFunctionId,
    ModelNotFound,
    NotAdmin,
    ValvesRejected,
    normalize_function_id,
)

from tests.integration.test_openwebui_connection import admin_api_key  # noqa: F401 (fixture)
from tests.world.poll import async_wait_for

if TYPE_CHECKING:
    from tests.world.open_webui import OpenWebUI

pytestmark = pytest.mark.world

FILTER = '''\
"""
title: OWL Probe Filter
description: Test filter of openwebui-langfuse (functions client).
"""

from pydantic import BaseModel


class Filter:
    class Valves(BaseModel):
        public_key: str = ""
        secret_key: str = ""
        priority: int = 0

    def __init__(self):
        self.valves = self.Valves()

    def inlet(self, body: dict) -> dict:
        return body
'''

# Imports fine at create, fails at update: Open WebUI then names the cause.
BROKEN = FILTER.replace("    def inlet(self, body: dict) -> dict:", "    def inlet(self, body:")

PIPE = """\
class Pipe:
    def pipe(self, body: dict) -> str:
        return "ok"
"""

SECRET = "sk-lf-owl-very-secret-0123456789"
PUBLIC = "pk-lf-owl-public-9876543210"
REFRESH_TIMEOUT = 30.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# -- fixtures -----------------------------------------------------------------------------------


@dataclass
class Made:
    """What a test created in the shared Open WebUI; removed after it."""

    functions: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)


@pytest.fixture
def made(open_webui: OpenWebUI) -> Iterator[Made]:
    things = Made()
    try:
        yield things
    finally:
        with open_webui.client() as http:
            for model_id in things.models:
                response = http.post("/api/v1/models/model/delete", json={"id": model_id})
                assert response.status_code in (200, 401), response.text  # 401: not there
            for function_id in things.functions:
                http.delete(f"/api/v1/functions/id/{function_id}/delete").raise_for_status()
            for user_id in things.users:
                http.delete(f"/api/v1/users/{user_id}").raise_for_status()
            http.get("/api/models", params={"refresh": "true"}).raise_for_status()
            left = {f["id"] for f in http.get("/api/v1/functions/list").json()}
        assert not left & set(things.functions)


@pytest.fixture
async def client(open_webui: OpenWebUI, admin_api_key: str) -> AsyncIterator[OpenWebUIClient]:  # noqa: F811
    async with OpenWebUIClient(open_webui.url, ApiKeyAuth(admin_api_key), timeout=30.0) as c:
        yield c


@pytest.fixture
def api(client: OpenWebUIClient) -> FunctionsApi:
    return FunctionsApi(client)


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the requests a client sends, by path."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def create_filter(api: FunctionsApi, made: Made, content: str = FILTER) -> str:
    fid = unique("owl_fn")
    made.functions.append(fid)
    await api.create_function(fid, "OWL Probe Filter", content, "probe")
    return fid


async def create_pipe(api: FunctionsApi, made: Made) -> str:
    """An active Pipe function: a base model of Open WebUI's own, with no model record."""
    pid = unique("owl_pipe")
    made.functions.append(pid)
    await api.create_function(pid, "OWL Probe Pipe", PIPE)
    assert await api.set_active(pid, True)
    return pid


def admin_http(owui: OpenWebUI) -> httpx.Client:
    return owui.client()


# -- functions ----------------------------------------------------------------------------------


async def test_create_is_inactive_and_flags_change_once(api: FunctionsApi, made: Made) -> None:
    fid = unique("owl_fn")
    made.functions.append(fid)
    created = await api.create_function(fid, "OWL Probe Filter", FILTER, "probe")
    assert (created.id, created.type, created.is_active, created.is_global) == (
        fid,
        "filter",
        False,
        False,
    )
    assert created.content is None  # create answers without content
    assert created.description == "probe"

    stored = await api.get_function(fid)
    assert stored is not None
    assert stored.content == FILTER
    assert stored.content_sha256 is not None and len(stored.content_sha256) == 64
    assert FILTER not in repr(stored)

    # toggle flips: asking twice must flip once.
    assert await api.set_active(fid, True) is True
    assert await api.set_active(fid, True) is False
    assert await api.set_global(fid, True) is True
    assert await api.set_global(fid, True) is False
    after = await api.get_function(fid)
    assert after is not None and (after.is_active, after.is_global) == (True, True)
    assert await api.set_global(fid, False) is True
    assert await api.set_active(fid, False) is True
    assert await api.set_active(fid, False) is False
    after = await api.get_function(fid)
    assert after is not None and (after.is_active, after.is_global) == (False, False)

    listed = {f.id: f for f in await api.list_functions()}
    assert listed[fid].type == "filter"

    with pytest.raises(FunctionExists) as exists:
        await api.create_function(fid, "again", FILTER)
    assert (exists.value.reason, exists.value.temporary) == ("FunctionExists", True)


async def test_update_keeps_flags_and_replaces_content(api: FunctionsApi, made: Made) -> None:
    fid = await create_filter(api, made)
    await api.set_active(fid, True)
    new_content = FILTER.replace("priority: int = 0", "priority: int = 5")
    updated = await api.update_function(fid, "Renamed", new_content, "new description")
    assert (updated.name, updated.description, updated.is_active) == (
        "Renamed",
        "new description",
        True,
    )
    assert updated.content == new_content


async def test_unknown_id_is_not_found_not_an_auth_failure(
    open_webui: OpenWebUI, api: FunctionsApi
) -> None:
    missing = unique("owl_missing")
    assert await api.get_function(missing) is None
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: api.set_active(missing, True),
        lambda: api.set_global(missing, True),
        lambda: api.get_valves(missing),
        lambda: api.valves_spec(missing),
        lambda: api.update_valves(missing, {"priority": 1}),
        lambda: api.update_function(missing, "x", FILTER),
    ]
    for call in calls:
        with pytest.raises(FunctionNotFound) as not_found:
            await call()
        assert (not_found.value.reason, not_found.value.temporary) == ("FunctionNotFound", True)
    await api.delete_function(missing)  # Open WebUI answers true for an unknown id

    # With a password the 401 of an unknown id must not cost a fresh sign-in each time.
    transport = CountingTransport()
    auth = CredentialsAuth(open_webui.admin_email, open_webui.admin_password)
    async with OpenWebUIClient(open_webui.url, auth, transport=transport) as c:
        password_api = FunctionsApi(c)
        for _ in range(3):
            assert await password_api.get_function(missing) is None
        with pytest.raises(FunctionNotFound):
            await password_api.get_valves(missing)
    assert transport.paths.count("/api/v1/auths/signin") == 1, transport.paths


async def test_ids_are_checked_and_lower_cased(
    open_webui: OpenWebUI,
    api: FunctionsApi,
    made: Made,
    admin_api_key: str,  # noqa: F811
) -> None:
    transport = CountingTransport()
    async with OpenWebUIClient(open_webui.url, ApiKeyAuth(admin_api_key), transport=transport) as c:
        checked = FunctionsApi(c)
        for bad in ("owl-fn", "owl fn", "1owl", "", "owl.fn", "öwl"):
            with pytest.raises(InvalidFunctionId) as invalid:
                await checked.create_function(bad, "x", FILTER)
            assert (invalid.value.reason, invalid.value.temporary) == ("InvalidFunctionId", False)
            with pytest.raises(InvalidFunctionId):
                await checked.get_function(bad)
    assert transport.paths == []  # refused before any request

    mixed = unique("Owl_Upper")
    assert normalize_function_id(mixed) == mixed.lower()
    made.functions.append(mixed.lower())
    created = await api.create_function(mixed, "Upper", FILTER)
    assert created.id == mixed.lower()
    found = await api.get_function(mixed)
    assert found is not None and found.id == mixed.lower()


@pytest.fixture
def plain_user(open_webui: OpenWebUI, made: Made) -> tuple[str, str]:
    email = f"{unique('user')}@owl.test"
    password = f"pw-{uuid.uuid4().hex}"
    with admin_http(open_webui) as http:
        response = http.post(
            "/api/v1/auths/add",
            json={"name": "OWL User", "email": email, "password": password, "role": "user"},
        )
        response.raise_for_status()
        made.users.append(response.json()["id"])
    return email, password


async def test_a_non_admin_is_told_so(
    open_webui: OpenWebUI, api: FunctionsApi, made: Made, plain_user: tuple[str, str]
) -> None:
    fid = await create_filter(api, made)
    email, password = plain_user
    token = open_webui.sign_in(email, password)

    async with OpenWebUIClient(open_webui.url, ApiKeyAuth(token)) as c:
        as_user = FunctionsApi(c)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: as_user.get_function(fid),
            lambda: as_user.get_function(unique("owl_missing")),
            lambda: as_user.create_function(unique("owl_fn"), "x", FILTER),
            lambda: as_user.get_valves(fid),
            lambda: as_user.set_active(fid, True),
            lambda: as_user.attach_filter(unique("owl-no-model"), fid),
        ]
        for call in calls:
            with pytest.raises(NotAdmin) as not_admin:
                await call()
            assert (not_admin.value.reason, not_admin.value.temporary) == ("NotAdmin", False)
            assert token not in str(not_admin.value)
        # Model records are readable by any user (access rules apply): no admin needed.
        assert await as_user.model_filter_ids(unique("owl-no-model")) == []

    async with OpenWebUIClient(open_webui.url, CredentialsAuth(email, password)) as c:
        with pytest.raises(NotAdmin) as signed_in:
            await FunctionsApi(c).get_function(fid)
        assert password not in str(signed_in.value)

    async with OpenWebUIClient(open_webui.url, ApiKeyAuth("sk-" + "0" * 32)) as c:
        with pytest.raises(FunctionsUnauthorized) as refused:
            await FunctionsApi(c).get_function(fid)
    assert not isinstance(refused.value, NotAdmin)
    assert (refused.value.reason, refused.value.temporary) == ("OpenWebUIUnauthorized", False)
    stored = await api.get_function(fid)
    assert stored is not None and stored.is_active is False  # nothing changed


async def test_broken_content_is_rejected_with_the_cause(api: FunctionsApi, made: Made) -> None:
    fid = await create_filter(api, made)
    await api.set_active(fid, True)
    with pytest.raises(FunctionRejected) as rejected:
        await api.update_function(fid, "Broken", BROKEN)
    assert (rejected.value.reason, rejected.value.temporary) == ("FunctionRejected", False)
    assert rejected.value.detail and "ERROR: Error" not in rejected.value.detail
    assert rejected.value.detail in rejected.value.message
    kept = await api.get_function(fid)
    assert kept is not None
    assert (kept.content, kept.name, kept.is_active) == (FILTER, "OWL Probe Filter", True)

    # On create Open WebUI only says it failed; nothing is stored.
    broken_id = unique("owl_broken")
    made.functions.append(broken_id)
    with pytest.raises(FunctionRejected) as on_create:
        await api.create_function(broken_id, "Broken", BROKEN)
    assert on_create.value.detail == "[ERROR: Error creating function]"
    assert await api.get_function(broken_id) is None


async def test_valves_replace_the_whole_object(api: FunctionsApi, made: Made) -> None:
    fid = await create_filter(api, made)
    assert await api.get_valves(fid) == {}
    spec = await api.valves_spec(fid)
    assert set(spec["properties"]) == {"public_key", "secret_key", "priority"}

    full = {"public_key": PUBLIC, "secret_key": SECRET, "priority": 2}
    assert await api.update_valves(fid, full) == full
    assert await api.get_valves(fid) == full

    # Replace, not merge: fields sent as null or not sent are not stored; unknown keys dropped.
    partial = {"priority": 3, "secret_key": None, "no_such_valve": "x"}
    assert await api.update_valves(fid, partial) == {"priority": 3}
    assert await api.get_valves(fid) == {"priority": 3}

    assert await api.update_valves(fid, full) == full
    with pytest.raises(ValvesRejected) as rejected:
        await api.update_valves(fid, {"public_key": PUBLIC, "secret_key": SECRET, "priority": "hi"})
    assert (rejected.value.reason, rejected.value.temporary) == ("ValvesRejected", False)
    for shown in (str(rejected.value), repr(rejected.value), rejected.value.message):
        assert SECRET not in shown and PUBLIC not in shown
    assert "secret_key" in rejected.value.message  # the keys are named, never the values
    assert await api.get_valves(fid) == full  # the rejected update stored nothing


async def test_delete(api: FunctionsApi, made: Made) -> None:
    fid = await create_filter(api, made)
    await api.delete_function(fid)
    assert await api.get_function(fid) is None
    await api.delete_function(fid)  # again: fine


# -- model filterIds ----------------------------------------------------------------------------


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A model record without what a write changes besides filterIds."""
    rest = {k: v for k, v in record.items() if k not in ("version_id", "updated_at")}
    rest["meta"] = {k: v for k, v in record["meta"].items() if k != "filterIds"}
    return rest


async def served_filter_ids(client: OpenWebUIClient, model_id: str) -> list[str] | None:
    """``info.meta.filterIds`` as chats see it (after a models refresh)."""
    for model in await client.refresh_models():
        if model.get("id") == model_id:
            ids: list[str] = ((model.get("info") or {}).get("meta") or {}).get("filterIds") or []
            return ids
    return None


async def test_attach_and_detach_on_a_custom_model(
    open_webui: OpenWebUI, api: FunctionsApi, client: OpenWebUIClient, made: Made
) -> None:
    fid = await create_filter(api, made)
    base = await create_pipe(api, made)
    model_id = unique("owl-custom")
    made.models.append(model_id)
    with admin_http(open_webui) as http:
        http.post(
            "/api/v1/models/create",
            json={
                "id": model_id,
                "base_model_id": base,
                "name": "OWL Custom",
                "meta": {
                    "filterIds": ["persons_filter", "another_one"],
                    "description": "a person's model",
                    "tags": [{"name": "team-a"}],
                    "capabilities": {"usage": True, "vision": False},
                    "toolIds": ["a_tool"],
                },
                "params": {"temperature": 0.3, "system": "Be brief."},
            },
        ).raise_for_status()
        http.post(
            "/api/v1/models/model/access/update",
            json={
                "id": model_id,
                "access_grants": [
                    {"principal_type": "user", "principal_id": "*", "permission": "read"}
                ],
            },
        ).raise_for_status()
    before = await api.get_model(model_id)
    assert before is not None

    assert await api.attach_filter(model_id, fid) is True
    assert await api.attach_filter(model_id, fid) is False
    attached = await api.get_model(model_id)
    assert attached is not None
    assert await api.model_filter_ids(model_id) == ["persons_filter", "another_one", fid]
    assert comparable(attached) == comparable(before)
    assert attached["access_grants"] == before["access_grants"]
    await async_wait_for(
        lambda: _served_contains(client, model_id, fid),
        REFRESH_TIMEOUT,
        f"{fid} in the served filterIds of {model_id}",
    )

    assert await api.detach_filter(model_id, fid) is True
    assert await api.detach_filter(model_id, fid) is False
    detached = await api.get_model(model_id)
    assert detached is not None
    assert await api.model_filter_ids(model_id) == ["persons_filter", "another_one"]
    assert comparable(detached) == comparable(before)


async def _served_contains(client: OpenWebUIClient, model_id: str, fid: str) -> bool:
    ids = await served_filter_ids(client, model_id)
    return ids is not None and fid in ids


async def test_attach_and_detach_on_a_base_model(
    open_webui: OpenWebUI, api: FunctionsApi, client: OpenWebUIClient, made: Made
) -> None:
    fid = await create_filter(api, made)
    base = await create_pipe(api, made)
    made.models.append(base)
    assert await api.get_model(base) is None  # a base model has no record of its own
    assert await api.model_filter_ids(base) == []

    # No record: a base-model override is made, with the model's name.
    assert await api.attach_filter(base, fid) is True
    override = await api.get_model(base)
    assert override is not None
    assert (override["base_model_id"], override["name"]) == (None, "OWL Probe Pipe")
    assert await api.model_filter_ids(base) == [fid]
    assert await api.attach_filter(base, fid) is False
    await async_wait_for(
        lambda: _served_contains(client, base, fid),
        REFRESH_TIMEOUT,
        f"{fid} in the served filterIds of {base}",
    )
    assert await api.detach_filter(base, fid) is True
    assert await api.model_filter_ids(base) == []
    assert await api.get_model(base) is not None  # the override stays

    # An override a person made: their filters and settings stay.
    with admin_http(open_webui) as http:
        http.post(
            "/api/v1/models/model/update",
            json={
                "id": base,
                "base_model_id": None,
                "name": "Person's name for it",
                "meta": {"filterIds": ["persons_filter"], "description": "mine"},
                "params": {"temperature": 0.1},
            },
        ).raise_for_status()
    before = await api.get_model(base)
    assert before is not None
    assert await api.attach_filter(base, fid) is True
    attached = await api.get_model(base)
    assert attached is not None
    assert await api.model_filter_ids(base) == ["persons_filter", fid]
    assert comparable(attached) == comparable(before)
    assert await api.detach_filter(base, fid) is True
    assert await api.model_filter_ids(base) == ["persons_filter"]

    # Neither a record nor a base model.
    missing = unique("owl-no-model")
    with pytest.raises(ModelNotFound) as no_model:
        await api.attach_filter(missing, fid)
    assert (no_model.value.reason, no_model.value.temporary) == ("ModelNotFound", True)
    assert await api.detach_filter(missing, fid) is False
