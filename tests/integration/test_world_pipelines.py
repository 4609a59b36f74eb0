"""The real Pipelines server, driven the way the operator will drive it."""

from __future__ import annotations

import json

import pytest

from tests.world.pipelines import PipelinesServer
from tests.world.sample_pipelines import ECHO_PIPE_ID, RECORDING_FILTER_ID

pytestmark = pytest.mark.world

FILTER = RECORDING_FILTER_ID


def _install_filter(pipelines: PipelinesServer) -> None:
    response = pipelines.upload(FILTER)
    assert response.status_code == 200, response.text
    with pipelines.client() as http:
        listed = http.get("/pipelines").json()["data"]
    assert {"id": FILTER, "name": FILTER, "type": "filter", "valves": True} in listed


def test_filter_upload_full_valves_update_inlet_and_outlet(pipelines: PipelinesServer) -> None:
    _install_filter(pipelines)
    with pipelines.client() as http:
        models = http.get("/models").json()
        assert models["pipelines"] is True
        [entry] = [m for m in models["data"] if m["id"] == FILTER]
        assert entry["pipeline"] == {
            "type": "filter",
            "pipelines": ["*"],
            "priority": 0,
            "valves": True,
        }

        valves = http.get(f"/{FILTER}/valves").json()
        assert valves == {
            "pipelines": ["*"],
            "priority": 0,
            "secret_key": "unset",
            "note": "default-note",
            "count": 1,
        }

        desired = {**valves, "secret_key": "s3cret", "note": "first", "count": 5}
        updated = http.post(f"/{FILTER}/valves/update", json=desired)
        assert updated.status_code == 200, updated.text
        assert updated.json() == desired
        assert http.get(f"/{FILTER}/valves").json() == desired
        stored = json.loads((pipelines.pipelines_dir / FILTER / "valves.json").read_text())
        assert stored == desired

        user = {"id": "u-1", "email": "someone@owl.test", "name": "Someone", "role": "user"}
        body = {"model": "any-model", "messages": [{"role": "user", "content": "hi"}]}
        inlet = http.post(f"/{FILTER}/filter/inlet", json={"body": body, "user": user})
        assert inlet.status_code == 200, inlet.text
        assert inlet.json()["metadata"] == {"owl_recording_filter": "first"}

        answer = {
            **body,
            "messages": [*body["messages"], {"role": "assistant", "content": "hello"}],
        }
        outlet = http.post(f"/{FILTER}/filter/outlet", json={"body": answer, "user": user})
        assert outlet.status_code == 200, outlet.text
        assert outlet.json() == answer

    records = pipelines.records()
    assert [r["hook"] for r in records] == ["inlet", "outlet"]
    assert all(r["valves"] == desired for r in records)
    assert records[0]["user"] == user
    assert records[1]["body"]["messages"][-1]["content"] == "hello"


def test_partial_valves_update_resets_other_fields_to_class_defaults(
    pipelines: PipelinesServer,
) -> None:
    """The documented quirk (docs/upstream/pipelines.md, "Valves"), observed on the real server."""
    _install_filter(pipelines)
    with pipelines.client() as http:
        full = {"pipelines": ["*"], "priority": 3, "secret_key": "a", "note": "custom", "count": 7}
        assert http.post(f"/{FILTER}/valves/update", json=full).json() == full

        partial = http.post(f"/{FILTER}/valves/update", json={"secret_key": "b"})
        assert partial.status_code == 200, partial.text
        # Not the values set before, and not the ["*"] of __init__: the class defaults.
        assert partial.json() == {
            "pipelines": [],
            "priority": 0,
            "secret_key": "b",
            "note": "default-note",
            "count": 1,
        }
        assert http.get(f"/{FILTER}/valves").json()["pipelines"] == []
        [entry] = [m for m in http.get("/models").json()["data"] if m["id"] == FILTER]
        assert entry["pipeline"]["pipelines"] == []  # the filter no longer applies to anything

        missing_required = http.post(f"/{FILTER}/valves/update", json={"note": "x"})
        assert missing_required.status_code == 500
        detail = missing_required.json()["detail"]
        assert "secret_key" in detail and "Field required" in detail


def test_echo_pipe_answers_chat_completions(pipelines: PipelinesServer) -> None:
    assert pipelines.upload(ECHO_PIPE_ID).status_code == 200
    with pipelines.client() as http:
        [entry] = http.get("/models").json()["data"]
        assert entry["id"] == ECHO_PIPE_ID
        assert entry["pipeline"] == {"type": "pipe", "valves": False}
        response = http.post(
            "/chat/completions",
            json={
                "model": ECHO_PIPE_ID,
                "stream": False,
                "messages": [{"role": "user", "content": "ping"}],
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "echo: ping"


def test_restart_keeps_port_and_valves_wipe_empties_the_directory(
    pipelines: PipelinesServer,
) -> None:
    _install_filter(pipelines)
    url = pipelines.url
    desired = {"pipelines": ["*"], "priority": 1, "secret_key": "kept", "note": "n", "count": 2}
    with pipelines.client() as http:
        assert http.post(f"/{FILTER}/valves/update", json=desired).status_code == 200

    pipelines.restart()
    assert pipelines.url == url
    with pipelines.client() as http:
        assert http.get(f"/{FILTER}/valves").json() == desired

    pipelines.restart(wipe=True)
    assert pipelines.url == url
    with pipelines.client() as http:
        assert http.get("/pipelines").json() == {"data": []}
        assert http.get(f"/{FILTER}/valves").status_code == 404
