"""Connection registration against the real Open WebUI 0.12.4 and the real Pipelines server.

Open WebUI is one server for the session (fixture ``open_webui``); ``owui_config`` snapshots its
OpenAI connections and model defaults before each test and puts them back afterwards, so tests
never see each other's connections. Each test gets its own Pipelines server with the recording
filter installed. Tests that need restarts start an Open WebUI of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from openwebui_langfuse.clients.openwebui import (
    ApiKeyAuth,
    CredentialsAuth,
    OpenWebUIClient,
)
from openwebui_langfuse.connection import (
    PERSISTENCE_PROBE_KEY,
    RESTART_PROBE_KEY,
    ConnectionOutcome,
    remove_connection,
    sync_connection,
    sync_connection_with,
)

from tests.world.poll import async_wait_for, wait_for
from tests.world.proc import free_port
from tests.world.sample_pipelines import ECHO_PIPE_ID, RECORDING_FILTER_ID

if TYPE_CHECKING:
    from tests.world.manifest import World
    from tests.world.open_webui import OpenWebUI
    from tests.world.pipelines import PipelinesServer

pytestmark = pytest.mark.world

# Connections a person already had: closed loopback ports (refused at once, never off-host).
PERSON_URLS = ["http://127.0.0.1:9/v1", "http://127.0.0.1:7/v1"]
PERSON_KEYS = ["person-key-0", "person-key-1"]
PERSON_CONFIGS = {
    "0": {
        "enable": True,
        "prefix_id": "a",
        "tags": [{"name": "team-a"}],
        "connection_type": "local",
    },
    "1": {"enable": False, "model_ids": ["m1", "m2"], "headers": {"X-Team": "b"}},
}


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def admin_api_key(open_webui: OpenWebUI) -> str:
    """The admin's sk- key, minted once (minting again would rotate it)."""
    return open_webui.mint_api_key()


@pytest.fixture
def owui_config(open_webui: OpenWebUI) -> Iterator[OpenWebUI]:
    """Open WebUI with two connections of "a person"; its config restored after the test."""
    with open_webui.client() as http:
        saved_openai = http.get("/openai/config").raise_for_status().json()
        saved_models = http.get("/api/v1/configs/models").raise_for_status().json()
    open_webui.set_connections(list(PERSON_URLS), list(PERSON_KEYS), copy.deepcopy(PERSON_CONFIGS))
    # Start from Open WebUI's own default model metadata: an earlier test of the session (the
    # demo, the end-to-end path) may have turned the usage capability on, which is server-wide.
    baseline = copy.deepcopy(saved_models)
    baseline["DEFAULT_MODEL_METADATA"] = {}
    with open_webui.client() as http:
        http.post("/api/v1/configs/models", json=baseline).raise_for_status()
    try:
        yield open_webui
    finally:
        with open_webui.client() as http:
            http.post("/openai/config/update", json=saved_openai).raise_for_status()
            http.post("/api/v1/configs/models", json=saved_models).raise_for_status()


@pytest.fixture
def filter_pipelines(pipelines: PipelinesServer) -> PipelinesServer:
    """A real Pipelines server holding the recording filter."""
    pipelines.upload(RECORDING_FILTER_ID).raise_for_status()
    return pipelines


def openai_config(owui: OpenWebUI) -> dict[str, Any]:
    with owui.client() as http:
        result: dict[str, Any] = http.get("/openai/config").raise_for_status().json()
        return result


async def sync(
    owui: OpenWebUI,
    pipelines: PipelinesServer,
    auth: ApiKeyAuth | CredentialsAuth,
    *,
    pipeline_id: str = RECORDING_FILTER_ID,
    connection_url: str | None = None,
    pipelines_key: str | None = None,
) -> ConnectionOutcome:
    return await sync_connection(
        openwebui_url=owui.url,
        auth=auth,
        connection_url=connection_url or pipelines.url,
        pipelines_key=pipelines_key or pipelines.api_key,
        usage_capability=True,
        pipeline_id=pipeline_id,
        timeout=30.0,
    )


def assert_person_connections_untouched(config: dict[str, Any]) -> None:
    assert config["OPENAI_API_BASE_URLS"][:2] == PERSON_URLS
    assert config["OPENAI_API_KEYS"][:2] == PERSON_KEYS
    assert {k: config["OPENAI_API_CONFIGS"][k] for k in ("0", "1")} == PERSON_CONFIGS


def assert_no_secret(outcome: ConnectionOutcome, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in outcome.message


# -- registration -------------------------------------------------------------------------------


async def test_register_with_an_api_key_then_nothing_to_do(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer, admin_api_key: str
) -> None:
    owui, pipelines = owui_config, filter_pipelines
    first = await sync(owui, pipelines, ApiKeyAuth(admin_api_key))
    assert (first.registered, first.reason, first.wrote, first.temporary) == (
        True,
        "Registered",
        True,
        False,
    ), first.message
    assert_no_secret(first, admin_api_key, pipelines.api_key)
    assert first.added is True

    stored = openai_config(owui)
    assert stored["ENABLE_OPENAI_API"] is True
    assert stored["OPENAI_API_BASE_URLS"] == [*PERSON_URLS, pipelines.url]
    assert stored["OPENAI_API_KEYS"] == [*PERSON_KEYS, pipelines.api_key]
    assert stored["OPENAI_API_CONFIGS"] == {**PERSON_CONFIGS, "2": {"enable": True}}
    with owui.client() as http:
        detected = http.get("/api/v1/pipelines/list").raise_for_status().json()["data"]
        defaults = http.get("/api/v1/configs/models").raise_for_status().json()
    assert {"url": pipelines.url, "idx": 2} in detected
    assert defaults["DEFAULT_MODEL_METADATA"]["capabilities"]["usage"] is True

    second = await sync(owui, pipelines, ApiKeyAuth(admin_api_key))
    assert (second.registered, second.reason, second.wrote) == (True, "Registered", False)
    assert openai_config(owui) == stored


async def test_register_with_email_and_password(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer
) -> None:
    owui = owui_config
    outcome = await sync(
        owui, filter_pipelines, CredentialsAuth(owui.admin_email, owui.admin_password)
    )
    assert (outcome.registered, outcome.reason) == (True, "Registered"), outcome.message
    assert_no_secret(outcome, owui.admin_password, filter_pipelines.api_key)
    assert_person_connections_untouched(openai_config(owui))


async def test_resyncs_with_credentials_do_not_sign_in_every_time(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer
) -> None:
    # Open WebUI refuses the 16th sign-in of an email within 3 minutes (HTTP 429); a resync
    # loop that signed in on every pass would lock itself out.
    owui = owui_config
    auth = CredentialsAuth(owui.admin_email, owui.admin_password)
    for attempt in range(16):
        outcome = await sync(owui, filter_pipelines, auth)
        assert outcome.reason == "Registered", f"pass {attempt}: {outcome.message}"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback server that accepts connections and never answers (a hung provider)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


async def test_a_hung_provider_of_a_person_does_not_look_like_open_webui_down(
    owui_config: OpenWebUI,
    filter_pipelines: PipelinesServer,
    admin_api_key: str,
    silent_server: str,
) -> None:
    # Open WebUI waits up to 10 s for each connection's model list; with the per-request
    # timeout at 10 s too, the model-listing calls need (and get) extra time.
    owui = owui_config
    owui.set_connections(
        [*PERSON_URLS, silent_server],
        [*PERSON_KEYS, "hung-key"],
        copy.deepcopy(PERSON_CONFIGS),
    )
    outcome = await sync_connection(
        openwebui_url=owui.url,
        auth=ApiKeyAuth(admin_api_key),
        connection_url=filter_pipelines.url,
        pipelines_key=filter_pipelines.api_key,
        usage_capability=False,
        pipeline_id=RECORDING_FILTER_ID,
        timeout=10.0,
    )
    assert (outcome.registered, outcome.reason) == (True, "Registered"), outcome.message


async def test_usage_capability_merges_with_existing_defaults(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer, admin_api_key: str
) -> None:
    owui = owui_config
    with owui.client() as http:
        models = http.get("/api/v1/configs/models").raise_for_status().json()
        models["DEFAULT_MODEL_METADATA"] = {
            "capabilities": {"vision": False, "web_search": False},
            "description": "set by a person",
        }
        models["DEFAULT_MODEL_PARAMS"] = {"temperature": 0.3}
        http.post("/api/v1/configs/models", json=models).raise_for_status()

    assert (await sync(owui, filter_pipelines, ApiKeyAuth(admin_api_key))).registered

    with owui.client() as http:
        after = http.get("/api/v1/configs/models").raise_for_status().json()
    assert after["DEFAULT_MODEL_METADATA"] == {
        "capabilities": {"vision": False, "web_search": False, "usage": True},
        "description": "set by a person",
    }
    assert after["DEFAULT_MODEL_PARAMS"] == {"temperature": 0.3}


async def test_a_persons_entry_for_the_same_server_is_adopted_not_duplicated(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer, admin_api_key: str
) -> None:
    # Pipelines serves every route under /v1 too, so this entry is the same server; its
    # model_ids (which hide every filter) are removed, its other settings kept.
    owui, pipelines = owui_config, filter_pipelines
    theirs = f"{pipelines.url}/v1"
    owui.set_connections(
        [*PERSON_URLS, theirs],
        [*PERSON_KEYS, ""],
        {**copy.deepcopy(PERSON_CONFIGS), "2": {"model_ids": ["x"], "tags": [{"name": "p"}]}},
    )
    outcome = await sync(owui, pipelines, ApiKeyAuth(admin_api_key))
    assert (outcome.registered, outcome.reason, outcome.added) == (True, "Registered", False)
    assert "model_ids" in outcome.message
    stored = openai_config(owui)
    assert stored["OPENAI_API_BASE_URLS"] == [*PERSON_URLS, theirs]
    assert stored["OPENAI_API_KEYS"] == [*PERSON_KEYS, pipelines.api_key]
    assert stored["OPENAI_API_CONFIGS"]["2"] == {"enable": True, "tags": [{"name": "p"}]}


def chat_with_echo(owui: OpenWebUI, content: str, *, stream: bool) -> str:
    """One user message to the echo pipe through Open WebUI's chat API; the answer's text."""
    with owui.client() as http:
        answer = http.post(
            "/api/chat/completions",
            json={
                "model": ECHO_PIPE_ID,
                "stream": stream,
                "messages": [{"role": "user", "content": content}],
            },
        ).raise_for_status()
    return answer.text


@pytest.mark.parametrize("suffix", ["", "/v1"], ids=["plain-url", "v1-url"])
async def test_after_registration_a_chat_runs_through_the_filter(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer, admin_api_key: str, suffix: str
) -> None:
    owui, pipelines = owui_config, filter_pipelines
    pipelines.upload(ECHO_PIPE_ID).raise_for_status()
    outcome = await sync(
        owui, pipelines, ApiKeyAuth(admin_api_key), connection_url=pipelines.url + suffix
    )
    assert outcome.reason == "Registered", outcome.message
    assert "echo: hello filter" in chat_with_echo(owui, "hello filter", stream=False)
    # The outlet may finish after the answer was sent: poll with a deadline.
    wait_for(
        lambda: {"inlet", "outlet"} <= {record["hook"] for record in pipelines.records()},
        30,
        "the recording filter's inlet and outlet",
    )


async def test_usage_capability_makes_streamed_chats_ask_for_usage(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer, admin_api_key: str
) -> None:
    # docs/upstream/open-webui.md, "Usage capability": with the capability, Open WebUI adds
    # stream_options.include_usage to streamed requests; the filter's inlet sees it.
    owui, pipelines = owui_config, filter_pipelines
    pipelines.upload(ECHO_PIPE_ID).raise_for_status()

    def streamed_chat_stream_options() -> object:
        before = len(pipelines.records())
        assert "count my tokens" in chat_with_echo(owui, "count my tokens", stream=True)
        inlets = [r for r in pipelines.records()[before:] if r["hook"] == "inlet"]
        assert inlets, "the filter's inlet did not run"
        return inlets[0]["body"].get("stream_options")

    without = await sync_connection(
        openwebui_url=owui.url,
        auth=ApiKeyAuth(admin_api_key),
        connection_url=pipelines.url,
        pipelines_key=pipelines.api_key,
        usage_capability=False,
        pipeline_id=RECORDING_FILTER_ID,
    )
    assert without.reason == "Registered", without.message
    assert streamed_chat_stream_options() is None

    with_usage = await sync(owui, pipelines, ApiKeyAuth(admin_api_key))
    assert (with_usage.reason, with_usage.wrote) == ("Registered", True)
    assert streamed_chat_stream_options() == {"include_usage": True}


# -- bad input ----------------------------------------------------------------------------------


async def test_wrong_admin_credentials(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer
) -> None:
    owui = owui_config
    before = openai_config(owui)
    wrong: list[ApiKeyAuth | CredentialsAuth] = [
        CredentialsAuth(owui.admin_email, "not-the-password"),
        CredentialsAuth("nobody@owl.test", owui.admin_password),
        ApiKeyAuth("sk-00000000000000000000000000000000"),
    ]
    for auth in wrong:
        outcome = await sync(owui, filter_pipelines, auth)
        assert (outcome.registered, outcome.reason, outcome.temporary, outcome.wrote) == (
            False,
            "OpenWebUIUnauthorized",
            False,
            False,
        ), outcome.message
        assert_no_secret(outcome, owui.admin_password, filter_pipelines.api_key)
    assert openai_config(owui) == before


async def test_a_user_who_is_not_an_admin_is_refused(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer
) -> None:
    owui = owui_config
    email, password = f"user-{free_port()}@owl.test", "user-password-123"
    with owui.client() as http:
        user_id = (
            http.post(
                "/api/v1/auths/add",
                json={"name": "Plain User", "email": email, "password": password, "role": "user"},
            )
            .raise_for_status()
            .json()["id"]
        )
    try:
        outcome = await sync(owui, filter_pipelines, CredentialsAuth(email, password))
    finally:
        with owui.client() as http:  # the session's Open WebUI: leave no user behind
            http.delete(f"/api/v1/users/{user_id}").raise_for_status()
    assert (outcome.reason, outcome.temporary) == ("OpenWebUIUnauthorized", False)
    assert "not an admin" in outcome.message


async def test_open_webui_down(filter_pipelines: PipelinesServer) -> None:
    outcome = await sync_connection(
        openwebui_url=f"http://127.0.0.1:{free_port()}",
        auth=ApiKeyAuth("sk-whatever"),
        connection_url=filter_pipelines.url,
        pipelines_key=filter_pipelines.api_key,
        usage_capability=True,
        pipeline_id=RECORDING_FILTER_ID,
        timeout=5.0,
    )
    assert (outcome.registered, outcome.reason, outcome.temporary, outcome.wrote) == (
        False,
        "OpenWebUIUnreachable",
        True,
        False,
    )


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(
            lambda cfg: cfg["OPENAI_API_CONFIGS"]["2"].update(enable=False), id="disabled"
        ),
        pytest.param(
            lambda cfg: cfg["OPENAI_API_CONFIGS"]["2"].update(model_ids=["echo"]), id="model_ids"
        ),
        pytest.param(
            lambda cfg: cfg["OPENAI_API_CONFIGS"]["2"].update(prefix_id="pl"), id="prefix_id"
        ),
        pytest.param(lambda cfg: cfg["OPENAI_API_KEYS"].__setitem__(2, ""), id="key-emptied"),
        pytest.param(
            lambda cfg: [cfg[k].pop() for k in ("OPENAI_API_BASE_URLS", "OPENAI_API_KEYS")],
            id="deleted",
        ),
    ],
)
async def test_a_connection_changed_by_hand_is_repaired(
    owui_config: OpenWebUI,
    filter_pipelines: PipelinesServer,
    admin_api_key: str,
    edit: Callable[[dict[str, Any]], object],
) -> None:
    owui, pipelines = owui_config, filter_pipelines
    assert (await sync(owui, pipelines, ApiKeyAuth(admin_api_key))).registered
    good = openai_config(owui)

    broken = copy.deepcopy(good)
    edit(broken)
    with owui.client() as http:
        http.post("/openai/config/update", json=broken).raise_for_status()
    assert openai_config(owui) != good

    repaired = await sync(owui, pipelines, ApiKeyAuth(admin_api_key))
    assert (repaired.registered, repaired.reason, repaired.wrote) == (True, "Registered", True)
    assert openai_config(owui) == good


async def test_pipelines_not_detected_with_a_wrong_key(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer, admin_api_key: str
) -> None:
    outcome = await sync(
        owui_config, filter_pipelines, ApiKeyAuth(admin_api_key), pipelines_key="not-the-key"
    )
    assert (outcome.registered, outcome.reason, outcome.temporary) == (
        False,
        "PipelinesNotDetected",
        True,
    )


async def test_filter_not_visible(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer, admin_api_key: str
) -> None:
    outcome = await sync(
        owui_config, filter_pipelines, ApiKeyAuth(admin_api_key), pipeline_id="not_installed"
    )
    assert (outcome.registered, outcome.reason, outcome.temporary) == (
        False,
        "FilterNotVisible",
        True,
    )
    assert "not_installed" in outcome.message


class PersonWritesAfterFirstRead(httpx.AsyncBaseTransport):
    """Real HTTP, plus a person's edit right after the operator's first config read."""

    def __init__(self, person_edit: Callable[[], None]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._person_edit: Callable[[], None] | None = person_edit
        self.config_reads = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.method == "GET" and request.url.path == "/openai/config":
            self.config_reads += 1
            await response.aread()  # the operator's read is complete before the person writes
            if self._person_edit is not None:
                edit, self._person_edit = self._person_edit, None
                edit()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_a_connection_added_between_read_and_write_is_kept(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer, admin_api_key: str
) -> None:
    owui, pipelines = owui_config, filter_pipelines
    added = {"enable": True, "tags": [{"name": "added-meanwhile"}]}

    def person_adds_a_connection() -> None:
        owui.set_connections(
            [*PERSON_URLS, "http://127.0.0.1:5/v1"],
            [*PERSON_KEYS, "added-key"],
            {**copy.deepcopy(PERSON_CONFIGS), "2": added},
        )

    transport = PersonWritesAfterFirstRead(person_adds_a_connection)
    async with OpenWebUIClient(
        owui.url, ApiKeyAuth(admin_api_key), timeout=30.0, transport=transport
    ) as client:
        outcome = await sync_connection_with(
            client,
            connection_url=pipelines.url,
            pipelines_key=pipelines.api_key,
            usage_capability=False,
            pipeline_id=RECORDING_FILTER_ID,
        )
    assert (outcome.registered, outcome.reason, outcome.wrote) == (True, "Registered", True)
    assert transport.config_reads >= 3  # first read, re-read that saw the edit, clean re-read
    stored = openai_config(owui)
    assert stored["OPENAI_API_BASE_URLS"] == [*PERSON_URLS, "http://127.0.0.1:5/v1", pipelines.url]
    assert stored["OPENAI_API_KEYS"] == [*PERSON_KEYS, "added-key", pipelines.api_key]
    assert stored["OPENAI_API_CONFIGS"] == {**PERSON_CONFIGS, "2": added, "3": {"enable": True}}


# -- removal ------------------------------------------------------------------------------------


async def test_remove_connection_removes_only_that_entry(
    owui_config: OpenWebUI, filter_pipelines: PipelinesServer, admin_api_key: str
) -> None:
    owui, pipelines = owui_config, filter_pipelines
    assert (await sync(owui, pipelines, ApiKeyAuth(admin_api_key))).registered
    # A person adds one more connection after ours: its config must move from "3" to "2".
    registered = openai_config(owui)
    later = {"enable": False, "tags": [{"name": "later"}]}
    owui.set_connections(
        [*registered["OPENAI_API_BASE_URLS"], "http://127.0.0.1:5/v1"],
        [*registered["OPENAI_API_KEYS"], "later-key"],
        {**registered["OPENAI_API_CONFIGS"], "3": later},
    )

    removed = await remove_connection(
        openwebui_url=owui.url,
        auth=ApiKeyAuth(admin_api_key),
        connection_url=f"{pipelines.url}/",
        timeout=30.0,
    )
    assert (removed.registered, removed.reason, removed.wrote, removed.temporary) == (
        False,
        "Removed",
        True,
        False,
    )
    assert openai_config(owui) == {
        "ENABLE_OPENAI_API": True,
        "OPENAI_API_BASE_URLS": [*PERSON_URLS, "http://127.0.0.1:5/v1"],
        "OPENAI_API_KEYS": [*PERSON_KEYS, "later-key"],
        "OPENAI_API_CONFIGS": {**PERSON_CONFIGS, "2": later},
    }
    with owui.client() as http:
        assert http.get("/api/v1/pipelines/list").raise_for_status().json()["data"] == []

    again = await remove_connection(
        openwebui_url=owui.url, auth=ApiKeyAuth(admin_api_key), connection_url=pipelines.url
    )
    assert (again.reason, again.wrote) == ("NotRegistered", False)


# -- ENABLE_PERSISTENT_CONFIG -------------------------------------------------------------------


@pytest.fixture
async def restartable_open_webui(
    world: World, request: pytest.FixtureRequest
) -> AsyncIterator[OpenWebUI]:
    """An Open WebUI of this test's own, persistent config as parametrized."""
    from tests.world.open_webui import OpenWebUI

    # No clearing of connections at start: that would hide what a restart itself keeps.
    server = OpenWebUI(world, persistent_config=request.param, clear_connections=False).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("restartable_open_webui", "reason_after_restart"),
    [(False, "PersistentConfigDisabled"), (True, "Registered")],
    indirect=["restartable_open_webui"],
    ids=["persistent-config-off", "persistent-config-on"],
)
async def test_persistent_config_off_is_detected_at_a_restart(
    restartable_open_webui: OpenWebUI, filter_pipelines: PipelinesServer, reason_after_restart: str
) -> None:
    owui, pipelines = restartable_open_webui, filter_pipelines
    auth = CredentialsAuth(owui.admin_email, owui.admin_password)
    before = await sync(owui, pipelines, auth)
    assert (before.registered, before.reason) == (True, "Registered"), before.message

    owui.restart()
    survived = pipelines.url in openai_config(owui)["OPENAI_API_BASE_URLS"]
    assert survived is (reason_after_restart == "Registered")  # the upstream behaviour itself
    after = await sync(owui, pipelines, auth)
    assert (after.registered, after.reason, after.temporary) == (
        True,
        reason_after_restart,
        False,
    ), after.message
    # Either way the connection works again after this sync.
    assert pipelines.url in openai_config(owui)["OPENAI_API_BASE_URLS"]

    steady = await sync(owui, pipelines, auth)
    assert (steady.reason, steady.wrote) == (reason_after_restart, False)
    if reason_after_restart == "PersistentConfigDisabled":
        assert "ENABLE_PERSISTENT_CONFIG" in after.message


# -- several uvicorn workers ----------------------------------------------------------------------


@pytest.fixture
async def two_worker_open_webui(world: World) -> AsyncIterator[OpenWebUI]:
    """An Open WebUI of this test's own, with two uvicorn workers (persistent config on).

    Its first boot has one worker: two workers booting against an empty SQLite database both
    run the migrations, and one of them fails (observed on 0.12.4). So it boots once, then
    restarts on the same data with UVICORN_WORKERS=2 (uvicorn reads its options from
    ``UVICORN_*``).
    """
    from tests.world.open_webui import OpenWebUI

    server = OpenWebUI(world).start()
    try:
        server.extra_env["UVICORN_WORKERS"] = "2"
        server.restart()
        yield server
    finally:
        server.stop()


async def _probe_readings(owui: OpenWebUI, token: str, n: int) -> set[tuple[bool, bool]]:
    """(persistence probe there, restart probe there), each as seen on a fresh connection; the
    connections are opened together, so the workers share them."""

    async def one() -> tuple[bool, bool]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=owui.url, headers=headers, timeout=60) as http:
            restart = (await http.get("/api/v1/configs/namespace/oauth.openwebui_langfuse")).json()
            kept = (await http.get("/api/v1/configs/namespace/openwebui_langfuse")).json()
            return PERSISTENCE_PROBE_KEY in kept, RESTART_PROBE_KEY in restart

    return set(await asyncio.gather(*[one() for _ in range(n)]))


async def test_two_workers_cost_no_write_at_a_resync(
    two_worker_open_webui: OpenWebUI, filter_pipelines: PipelinesServer
) -> None:
    """Each worker keeps its own in-memory copy of the ``oauth.*`` restart probe, so the worker
    that did not take the write looks as if it had restarted; that must not cost a write at
    every resync (issue 14)."""
    owui, pipelines = two_worker_open_webui, filter_pipelines
    auth = CredentialsAuth(owui.admin_email, owui.admin_password)
    first = await sync(owui, pipelines, auth)
    assert (first.registered, first.reason, first.wrote) == (True, "Registered", True)

    # The upstream behaviour itself: the probe kept in the database is seen on every
    # connection, the in-memory one only on the worker that took the write.
    token = owui.token

    async def both_workers_seen() -> set[tuple[bool, bool]] | None:
        readings = await _probe_readings(owui, token, 8)
        return readings if readings == {(True, True), (True, False)} else None

    await async_wait_for(both_workers_seen, timeout=60, what="reads served by both workers")

    # Resyncs in rounds of concurrent passes (each pass its own client and connection), so
    # both workers serve some of them.
    for _ in range(5):
        outcomes = await asyncio.gather(*[sync(owui, pipelines, auth) for _ in range(4)])
        for outcome in outcomes:
            assert (outcome.registered, outcome.reason, outcome.wrote) == (
                True,
                "Registered",
                False,
            ), outcome.message
