"""The real Open WebUI, with the real Pipelines server registered through its admin API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.world.open_webui import OpenWebUI
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for
from tests.world.sample_pipelines import ECHO_PIPE_ID, RECORDING_FILTER_ID

pytestmark = pytest.mark.world


def test_admin_signs_in_and_mints_an_api_key(open_webui: OpenWebUI) -> None:
    token = open_webui.sign_in()
    with open_webui.client(token) as http:
        me = http.get("/api/v1/auths/")
        assert me.status_code == 200, me.text
        assert me.json()["role"] == "admin"
        assert me.json()["email"] == open_webui.admin_email

    wrong = httpx.post(
        f"{open_webui.url}/api/v1/auths/signin",
        timeout=30,
        json={"email": open_webui.admin_email, "password": "wrong-password"},
    )
    assert wrong.status_code == 400

    key = open_webui.mint_api_key(token)
    assert key.startswith("sk-")
    with open_webui.client(key) as http:
        config = http.get("/openai/config")
        assert config.status_code == 200, config.text
        assert config.json()["ENABLE_OPENAI_API"] is True

    anonymous = httpx.get(f"{open_webui.url}/openai/config", timeout=30)
    assert anonymous.status_code == 401


@pytest.fixture
def connected(open_webui: OpenWebUI, pipelines: PipelinesServer) -> Iterator[PipelinesServer]:
    """The test's Pipelines server as Open WebUI's only connection, removed afterwards."""
    yield pipelines
    open_webui.set_connections([], [])


def test_chat_through_open_webui_runs_the_pipelines_filter(
    open_webui: OpenWebUI, connected: PipelinesServer
) -> None:
    pipelines = connected
    for pipeline_id in (RECORDING_FILTER_ID, ECHO_PIPE_ID):
        assert pipelines.upload(pipeline_id).status_code == 200

    with open_webui.client() as http:
        update = http.post(
            "/openai/config/update",
            json={
                "ENABLE_OPENAI_API": True,
                "OPENAI_API_BASE_URLS": [pipelines.url],
                "OPENAI_API_KEYS": [pipelines.api_key],
                "OPENAI_API_CONFIGS": {"0": {"enable": True}},
            },
        )
        assert update.status_code == 200, update.text
        assert update.json()["OPENAI_API_BASE_URLS"] == [pipelines.url]

        detected = http.get("/api/v1/pipelines/list").json()
        assert detected["data"] == [{"url": pipelines.url, "idx": 0}]

        models = http.get("/api/models", params={"refresh": "true"})
        assert models.status_code == 200, models.text
        ids = {m["id"] for m in models.json()["data"]}
        assert ECHO_PIPE_ID in ids
        assert RECORDING_FILTER_ID not in ids  # filters are hidden from the model list

        chat = http.post(
            "/api/chat/completions",
            json={
                "model": ECHO_PIPE_ID,
                "stream": False,
                "messages": [{"role": "user", "content": "hello world"}],
            },
        )
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"] == "echo: hello world"

    # Outlet filters run after the answer was sent (0.10+ runs them for API callers too).
    records = wait_for(
        lambda: (r := pipelines.records()) and {"inlet", "outlet"} <= {x["hook"] for x in r} and r,
        30,
        "the recording filter's inlet and outlet",
    )
    inlet = next(r for r in records if r["hook"] == "inlet")
    outlet = next(r for r in records if r["hook"] == "outlet")
    assert inlet["body"]["model"] == ECHO_PIPE_ID
    assert inlet["body"]["messages"][-1]["content"] == "hello world"
    assert inlet["user"]["email"] == open_webui.admin_email
    assert inlet["user"]["role"] == "admin"
    contents = [m.get("content") for m in outlet["body"]["messages"]]
    assert "echo: hello world" in contents
