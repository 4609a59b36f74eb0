"""The Function target against the real Open WebUI 0.12.4: the operator's runtime (no cluster;
Secrets and ConfigMaps from a reader, status kept in memory) installs the bundled filter as a
Filter Function, and the chats of a Pipe function served by Open WebUI itself are traced.

Covered: apply → Ready → plain and streamed chats traced with usage; keys rotated through the
Secret reach the valves; drift repaired (switched off, made non-global, deleted, content and
valves edited by hand, an attachment removed); a person's own function and model filters left
alone; deletion per policy; a non-admin account, an Open WebUI that is down and content Open
WebUI refuses each give their reason. The whole flow through a cluster and the move from the
Pipelines target are in test_operator_function_target.py.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from openwebui_langfuse.config import Settings
from openwebui_langfuse.passes import CleanupResult
from openwebui_langfuse.runtime import IndexReader, Runtime, Worker

from tests.integration.test_bundled_filter import FAST
from tests.integration.test_bundled_filter_function import (
    ECHO_PIPE_FUNCTION,
    EXPECTED_USAGE,
    api_chat,
    create_function,
    observations_in,
    refresh_models,
    switch_on,
)
from tests.peers.langfuse_standin.keys import Project
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.open_webui import OpenWebUI

pytestmark = pytest.mark.world
T = TypeVar("T")

NAMESPACE = "team-a"
PIPE_ID = "owl_target_echo"
PERSON_FILTER_ID = "owl_person_filter"
PERSON_FILTER = '''\
"""
title: A person's own filter
"""


class Filter:
    def inlet(self, body: dict) -> dict:
        return body
'''


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class Operator:
    """The operator's runtime on one resource, driven pass by pass."""

    open_webui: OpenWebUI
    langfuse: LangfuseStandIn
    name: str
    secrets: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    generation: int = 0

    def __post_init__(self) -> None:
        self.runtime = Runtime(
            Settings(namespaces=(NAMESPACE,)),
            kube=None,
            emit=lambda _body, kind, reason, message: self.events.append((kind, reason, message)),
        )
        self.worker = Worker(key=(NAMESPACE, self.name), status={})
        self.put_secret("langfuse", self.langfuse.default_project)
        self.secrets[(NAMESPACE, "open-webui-admin")] = [
            {
                "email": b64(self.open_webui.admin_email),
                "password": b64(self.open_webui.admin_password),
            }
        ]

    def put_secret(self, name: str, project: Project) -> None:
        self.secrets[(NAMESPACE, name)] = [
            {"public-key": b64(project.public_key), "secret-key": b64(project.secret_key)}
        ]

    @property
    def function_id(self) -> str:
        return f"lft_{NAMESPACE.replace('-', '_')}_{self.name}"

    def resource(self, **changes: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "target": "function",
            "langfuse": {
                "host": self.langfuse.url,
                "publicKey": {"secretKeyRef": {"name": "langfuse", "key": "public-key"}},
                "secretKey": {"secretKeyRef": {"name": "langfuse", "key": "secret-key"}},
            },
            "filter": {"source": "bundled", "valves": dict(FAST)},
            "openWebUI": {
                "url": self.open_webui.url,
                "auth": {"credentials": {"secretRef": {"name": "open-webui-admin"}}},
            },
        }
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(spec.get(key), dict):
                spec[key] = {**spec[key], **value}
            else:
                spec[key] = value
        return spec

    def body(self) -> dict[str, Any]:
        return {
            "metadata": {
                "namespace": NAMESPACE,
                "name": self.name,
                "generation": self.generation,
                "uid": "uid-" + self.name,
            },
            "spec": self.spec,
            "status": self.worker.status,
        }

    def reader(self) -> IndexReader:
        return IndexReader(self.secrets, self.config_maps)

    def apply(self, spec: dict[str, Any] | None = None) -> float:
        """One pass (after a spec change when ``spec`` is given); the next wake-up in s."""
        if spec is not None and spec != self.spec:
            self.spec = spec
            self.generation += 1
        self.writes_before = len(self.events)
        return asyncio.run(self._pass())

    async def _pass(self) -> float:
        return await self._in_own_loop(
            self.runtime.pass_once(self.worker, self.body(), self.reader())
        )

    async def _in_own_loop(self, step: Awaitable[T]) -> T:
        try:
            return await step
        finally:  # each step runs in an event loop of its own: its pools go with it
            await self.runtime.close_pools()
            await self.runtime.http.aclose()
            self.runtime.http = httpx.AsyncClient(timeout=10)

    def delete(self) -> CleanupResult:
        return asyncio.run(
            self._in_own_loop(
                self.runtime.cleanup(
                    self.body(), self.reader(), filter_shared=False, connection_shared=False
                )
            )
        )

    def condition(self, type_: str) -> dict[str, Any]:
        status = self.worker.status or {}
        return next(c for c in status.get("conditions", []) if c["type"] == type_)

    def synced(self) -> list[str]:
        """The Synced Events of the last pass: what it changed upstream."""
        return [m for k, r, m in self.events[self.writes_before :] if r == "Synced"]


@pytest.fixture
def echo_pipe(open_webui: OpenWebUI) -> Iterator[str]:
    """A Pipe function that answers with the user's message and reports usage."""
    with open_webui.client() as http:
        created = create_function(http, PIPE_ID, "OWL Target Echo", ECHO_PIPE_FUNCTION)
        assert created.status_code == 200, created.text
        switch_on(http, PIPE_ID)
        assert PIPE_ID in refresh_models(http)
        try:
            yield PIPE_ID
        finally:
            http.delete(f"/api/v1/functions/id/{PIPE_ID}/delete")
            http.delete(f"/api/v1/models/model/delete?id={PIPE_ID}")
            refresh_models(http)


@pytest.fixture
def operator(
    open_webui: OpenWebUI, langfuse: LangfuseStandIn, echo_pipe: str
) -> Iterator[Operator]:
    op = Operator(open_webui, langfuse, name="t" + uuid.uuid4().hex[:8])
    try:
        yield op
    finally:
        with open_webui.client() as http:
            http.delete(f"/api/v1/functions/id/{op.function_id}/delete")
        assert not any(langfuse.secret_key in str(e) for e in op.events)
        assert langfuse.secret_key not in str(op.worker.status)


def function(open_webui: OpenWebUI, function_id: str) -> dict[str, Any] | None:
    with open_webui.client() as http:
        answer = http.get(f"/api/v1/functions/id/{function_id}")
    return answer.json() if answer.status_code == 200 else None


def stored_valves(open_webui: OpenWebUI, function_id: str) -> dict[str, Any]:
    with open_webui.client() as http:
        body: dict[str, Any] = http.get(f"/api/v1/functions/id/{function_id}/valves").json()
    return body


def filter_ids(open_webui: OpenWebUI, model_id: str) -> list[str]:
    with open_webui.client() as http:
        answer = http.get("/api/v1/models/model", params={"id": model_id})
    if answer.status_code != 200:
        return []
    return list((answer.json().get("meta") or {}).get("filterIds") or [])


# -- the tests -------------------------------------------------------------------------------------


def test_apply_makes_it_ready_chats_are_traced_and_a_resync_writes_nothing(
    operator: Operator, open_webui: OpenWebUI, langfuse: LangfuseStandIn
) -> None:
    operator.apply(operator.resource())
    ready = operator.condition("Ready")
    assert ready["status"] == "True", ready
    status = operator.worker.status or {}
    assert status["target"] == "function" and status["functionId"] == operator.function_id
    assert "pipelineId" not in status
    assert {c["type"] for c in status["conditions"]} >= {"FilterInstalled", "ValvesSynced"}
    assert "ConnectionRegistered" not in {c["type"] for c in status["conditions"]}
    stored = function(open_webui, operator.function_id)
    assert stored is not None and stored["is_active"] and stored["is_global"]
    assert stored["meta"]["description"].startswith("Managed by openwebui-langfuse")
    valves = stored_valves(open_webui, operator.function_id)
    assert valves["public_key"] == langfuse.default_project.public_key
    assert valves["host"] == langfuse.url

    before = dict(status)
    operator.apply()
    assert operator.synced() == []  # nothing written upstream
    assert operator.worker.status == before  # nor to the status

    project = langfuse.default_project
    assert api_chat(open_webui, "traced by the function", model=PIPE_ID).startswith("echo:")
    api_chat(open_webui, "streamed through the function", model=PIPE_ID, stream=True)
    observations = observations_in(langfuse, project, 2)
    assert {o["metadata"]["stream"] for o in observations} == {False, True}
    for observation in observations:
        assert observation["model"] == PIPE_ID
        assert observation["usageDetails"] == EXPECTED_USAGE
        trace = langfuse.trace(observation["traceId"])
        assert trace is not None and trace["userId"] and trace["output"]


def test_rotated_keys_reach_the_function(
    operator: Operator, open_webui: OpenWebUI, langfuse: LangfuseStandIn
) -> None:
    operator.apply(operator.resource())
    assert operator.condition("Ready")["status"] == "True"
    rotated = langfuse.add_project(name="rotated")
    operator.put_secret("langfuse", rotated)
    operator.apply()
    assert operator.synced() == [f"updated valves public_key, secret_key of {operator.function_id}"]
    valves = stored_valves(open_webui, operator.function_id)
    assert (valves["public_key"], valves["secret_key"]) == (rotated.public_key, rotated.secret_key)
    api_chat(open_webui, "after rotation", model=PIPE_ID)
    [observation] = observations_in(langfuse, rotated, 1)
    assert observation["output"] == "echo: after rotation"


def test_drift_is_repaired_at_the_next_pass(operator: Operator, open_webui: OpenWebUI) -> None:
    fid = operator.function_id
    operator.apply(operator.resource())
    assert operator.condition("Ready")["status"] == "True"
    stored = function(open_webui, fid)
    assert stored is not None
    content = stored["content"]

    with open_webui.client() as http:
        http.post(f"/api/v1/functions/id/{fid}/toggle")  # switched off by hand
        http.post(f"/api/v1/functions/id/{fid}/toggle/global")  # and made non-global
    operator.apply()
    assert operator.synced() == [
        f"switched on function {fid}; made function {fid} run for every model"
    ]
    again = function(open_webui, fid)
    assert again is not None and again["is_active"] and again["is_global"]

    with open_webui.client() as http:
        edited = http.post(
            f"/api/v1/functions/id/{fid}/update",
            json={
                "id": fid,
                "name": "edited",
                "content": content + "\n# edited by hand\n",
                "meta": {"description": stored["meta"]["description"]},
            },
        )
        assert edited.status_code == 200, edited.text
        answer = http.post(f"/api/v1/functions/id/{fid}/valves/update", json={"debug": True})
        assert answer.status_code == 200  # every other valve is gone now
    operator.apply()
    [synced] = operator.synced()
    assert synced.startswith(f"updated function {fid}; updated valves ")
    assert "public_key" in synced and "secret_key" in synced
    repaired = function(open_webui, fid)
    assert repaired is not None and repaired["content"] == content
    valves = stored_valves(open_webui, fid)
    assert valves["debug"] is True  # what a person set is kept: a valve of the filter
    assert valves["public_key"]

    with open_webui.client() as http:
        http.delete(f"/api/v1/functions/id/{fid}/delete")
    operator.apply()
    assert operator.synced()[0].startswith(f"created function {fid}")
    assert operator.condition("Ready")["status"] == "True"
    recreated = function(open_webui, fid)
    assert recreated is not None and recreated["is_active"] and recreated["is_global"]


def test_listed_models_get_the_filter_and_keep_a_persons_own(
    operator: Operator, open_webui: OpenWebUI
) -> None:
    fid = operator.function_id
    with open_webui.client() as http:
        made = create_function(http, PERSON_FILTER_ID, "Person", PERSON_FILTER)
        assert made.status_code == 200, made.text
        record = http.post(
            "/api/v1/models/create",
            json={
                "id": PIPE_ID,
                "base_model_id": None,
                "name": "OWL Target Echo",
                "meta": {"filterIds": [PERSON_FILTER_ID]},
                "params": {},
            },
        )
        assert record.status_code == 200, record.text
    try:
        operator.apply(operator.resource(filter={"models": [PIPE_ID]}))
        assert operator.condition("Ready")["status"] == "True", operator.condition("Ready")
        assert filter_ids(open_webui, PIPE_ID) == [PERSON_FILTER_ID, fid]
        stored = function(open_webui, fid)
        assert stored is not None and stored["is_active"] and not stored["is_global"]
        assert (operator.worker.status or {})["openWebUI"] == {"attachedModels": [PIPE_ID]}

        with open_webui.client() as http:  # the attachment removed by hand
            http.post(
                "/api/v1/models/model/update",
                json={
                    "id": PIPE_ID,
                    "base_model_id": None,
                    "name": "OWL Target Echo",
                    "meta": {"filterIds": [PERSON_FILTER_ID]},
                    "params": {},
                },
            )
        operator.apply()
        assert operator.synced() == [f"attached {fid} to model {PIPE_ID}"]

        operator.apply(operator.resource(filter={"models": ["*"]}))
        assert filter_ids(open_webui, PIPE_ID) == [PERSON_FILTER_ID]
        stored = function(open_webui, fid)
        assert stored is not None and stored["is_global"]

        operator.apply(operator.resource(filter={"models": [PIPE_ID, "no-such-model"]}))
        installed = operator.condition("FilterInstalled")
        assert installed["reason"] == "ModelNotFound" and "no-such-model" in installed["message"]
        assert filter_ids(open_webui, PIPE_ID) == [PERSON_FILTER_ID, fid]

        result = operator.delete()
        assert result.done, result
        assert filter_ids(open_webui, PIPE_ID) == [PERSON_FILTER_ID]
        assert function(open_webui, fid) is None
        assert function(open_webui, PERSON_FILTER_ID) is not None
    finally:
        with open_webui.client() as http:
            http.delete(f"/api/v1/functions/id/{PERSON_FILTER_ID}/delete")


def test_deletion_follows_the_policy_and_never_takes_a_persons_function(
    operator: Operator, open_webui: OpenWebUI
) -> None:
    fid = operator.function_id
    operator.apply(operator.resource(deletionPolicy="Retain"))
    assert operator.delete().done
    assert function(open_webui, fid) is not None  # Retain: kept

    operator.apply(operator.resource(deletionPolicy="Delete"))
    result = operator.delete()
    assert result.done and f"deleted function {fid}" in result.writes
    assert function(open_webui, fid) is None

    with open_webui.client() as http:  # a person's function under the resource's id
        assert create_function(http, fid, "mine", PERSON_FILTER).status_code == 200
    operator.apply()
    installed = operator.condition("FilterInstalled")
    assert installed["reason"] == "FunctionIdTaken", installed
    assert operator.condition("Stalled")["status"] == "True"
    assert operator.delete().done
    assert function(open_webui, fid) is not None  # not ours: left alone


def test_a_non_admin_open_webui_down_and_refused_content_give_their_reason(
    operator: Operator, open_webui: OpenWebUI
) -> None:
    email = f"user-{uuid.uuid4().hex[:6]}@example.com"
    password = uuid.uuid4().hex
    with open_webui.client() as http:
        added = http.post(
            "/api/v1/auths/add",
            json={"name": "User", "email": email, "password": password, "role": "user"},
        )
        assert added.status_code == 200, added.text
    operator.secrets[(NAMESPACE, "open-webui-user")] = [
        {"email": b64(email), "password": b64(password)}
    ]
    operator.apply(
        operator.resource(
            openWebUI={"auth": {"credentials": {"secretRef": {"name": "open-webui-user"}}}}
        )
    )
    installed = operator.condition("FilterInstalled")
    assert installed["reason"] == "NotAdmin" and password not in installed["message"]
    assert operator.condition("Stalled")["status"] == "True"

    operator.apply(operator.resource(openWebUI={"url": "http://127.0.0.1:9"}))
    installed = operator.condition("FilterInstalled")
    assert installed["reason"] == "OpenWebUIUnreachable", installed
    assert operator.condition("Reconciling")["reason"] == "RetryingAfterError"

    operator.config_maps[(NAMESPACE, "broken")] = [{"filter.py": "class Filter(:\n"}]
    broken = {"source": "configMap", "configMap": {"name": "broken", "key": "filter.py"}}
    wake = operator.apply(operator.resource(filter=broken))
    installed = operator.condition("FilterInstalled")
    assert installed["reason"] == "FunctionRejected", installed
    assert operator.condition("Stalled")["status"] == "True"
    assert 0 < wake <= 10  # tried again with backoff, not only at the next resync
    assert function(open_webui, operator.function_id) is None
