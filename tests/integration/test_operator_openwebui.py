"""Step 5 through the operator: the real Open WebUI gets (and loses) the Pipelines connection."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    crd_fixture,
    harness_fixture,
    operator_fixture,
    secret_guard_fixture,
    secrets_in_fixture,
    spec,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.open_webui import OpenWebUI
from tests.world.operator import Harness
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

pytestmark = [pytest.mark.world, pytest.mark.usefixtures("secret_guard", "secrets_in")]


def apply_with_open_webui(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    open_webui: OpenWebUI,
) -> None:
    """A LangfuseTracing that registers Pipelines in Open WebUI with the admin's credentials."""
    harness.put_secret(
        namespace,
        "open-webui-admin",
        {"email": open_webui.admin_email, "password": open_webui.admin_password},
    )
    harness.apply(
        namespace,
        "tracing",
        spec(
            pipelines,
            langfuse,
            openWebUI={
                "url": open_webui.url,
                "auth": {"credentials": {"secretRef": {"name": "open-webui-admin"}}},
            },
        ),
    )


def openai_config(open_webui: OpenWebUI) -> dict[str, Any]:
    with open_webui.client() as http:
        response = http.get("/openai/config")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def test_connection_is_registered_and_removed_with_the_resource(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    open_webui: OpenWebUI,
) -> None:
    apply_with_open_webui(harness, namespace, pipelines, langfuse, open_webui)
    cond = harness.wait_condition(namespace, "tracing", "ConnectionRegistered", "True", timeout=60)
    assert open_webui.admin_password not in cond["message"]
    harness.wait_condition(namespace, "tracing", "Ready", "True")
    status = (harness.get(namespace, "tracing") or {})["status"]
    assert status["openWebUI"] == {"connectionUrl": pipelines.url, "connectionAdded": True}
    config = openai_config(open_webui)
    urls = config["OPENAI_API_BASE_URLS"]
    assert pipelines.url in urls
    assert config["OPENAI_API_KEYS"][urls.index(pipelines.url)] == pipelines.api_key

    harness.delete(namespace, "tracing")
    wait_for(lambda: harness.get(namespace, "tracing") is None, 30, "the resource to be gone")
    assert pipelines.url not in openai_config(open_webui)["OPENAI_API_BASE_URLS"]


def test_a_connection_a_person_made_is_adopted_and_kept_on_deletion(
    harness: Harness,
    namespace: str,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    open_webui: OpenWebUI,
) -> None:
    # A person registered this Pipelines server by hand (disabled, with a stale key); the
    # operator repairs it, and deleting the resource removes only the filter it installed.
    saved = openai_config(open_webui)
    open_webui.set_connections([pipelines.url], ["a-stale-key"], {"0": {"enable": False}})
    try:
        apply_with_open_webui(harness, namespace, pipelines, langfuse, open_webui)
        harness.wait_condition(namespace, "tracing", "Ready", "True", timeout=60)
        status = (harness.get(namespace, "tracing") or {})["status"]
        assert status["openWebUI"] == {"connectionUrl": pipelines.url, "connectionAdded": False}
        config = openai_config(open_webui)
        assert config["OPENAI_API_BASE_URLS"] == [pipelines.url]
        assert config["OPENAI_API_KEYS"] == [pipelines.api_key]
        assert config["OPENAI_API_CONFIGS"]["0"]["enable"] is True

        harness.delete(namespace, "tracing")
        wait_for(lambda: harness.get(namespace, "tracing") is None, 30, "the resource to be gone")
        assert openai_config(open_webui)["OPENAI_API_BASE_URLS"] == [pipelines.url]
        with pipelines.client() as http:
            loaded = [p["id"] for p in http.get("/pipelines").raise_for_status().json()["data"]]
        assert not any(pid.startswith("lft_") for pid in loaded)
    finally:
        with open_webui.client() as http:
            http.post("/openai/config/update", json=saved).raise_for_status()
