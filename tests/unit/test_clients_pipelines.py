"""The Pipelines client against the real Pipelines server.

The quirks are those of docs/upstream/pipelines.md, "Recorded responses".
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from openwebui_langfuse.clients.pipelines import (
    PipelineNotFound,
    PipelinesClient,
    PipelinesError,
    PipelinesRejected,
    PipelinesUnauthorized,
    PipelinesUnreachable,
)

from tests.world.pipelines import PipelinesServer
from tests.world.proc import free_port
from tests.world.sample_pipelines import RECORDING_FILTER, RECORDING_FILTER_ID

BROKEN = "import no_such_module_anywhere\nclass Pipeline:\n    pass\n"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def client(pipelines: PipelinesServer, http: httpx.AsyncClient) -> PipelinesClient:
    return PipelinesClient(pipelines.url, pipelines.api_key, http=http)


async def test_upload_list_valves_delete(client: PipelinesClient) -> None:
    assert await client.list_pipelines() == []
    await client.upload("my_filter.py", RECORDING_FILTER.encode())
    rows = await client.list_pipelines()
    assert [(r.id, r.type) for r in rows] == [("my_filter", "filter")]

    valves = await client.get_valves("my_filter")
    spec = await client.get_valves_spec("my_filter")
    assert "pipelines" in valves and spec.get("title") == "Valves"
    await client.update_valves("my_filter", {**valves, "pipelines": ["m1"], "priority": 3})
    assert (await client.get_valves("my_filter"))["pipelines"] == ["m1"]

    assert await client.delete("my_filter") is True
    assert await client.list_pipelines() == []
    assert await client.delete("my_filter") is False  # upstream: plain-text 500


async def test_failed_load_answers_ok_but_is_not_listed(client: PipelinesClient) -> None:
    await client.upload("broken_filter.py", BROKEN.encode())
    assert [r.id for r in await client.list_pipelines()] == []
    assert await client.delete("broken_filter") is False


async def test_unknown_valves(client: PipelinesClient) -> None:
    with pytest.raises(PipelineNotFound):
        await client.get_valves("nope")


async def test_rejected_valves_do_not_echo_them(client: PipelinesClient) -> None:
    await client.upload(f"{RECORDING_FILTER_ID}.py", RECORDING_FILTER.encode())
    with pytest.raises(PipelinesRejected) as info:
        await client.update_valves(RECORDING_FILTER_ID, {"pipelines": "not-a-list-sk-secret"})
    assert "sk-secret" not in str(info.value)


async def test_a_reload_error_quoting_a_stored_valve_is_not_echoed(
    client: PipelinesClient, pipelines: PipelinesServer
) -> None:
    # Another filter's stored valves no longer validate (a field changed type): every upload
    # reloads every module and answers 500 with pydantic's text, which quotes the value.
    await client.upload("other_filter.py", RECORDING_FILTER.encode())
    stored = pipelines.pipelines_dir / "other_filter" / "valves.json"
    stored.write_text('{"secret_key": ["sk-lf-stored-secret-value"]}')
    with pytest.raises(PipelinesError) as failed:
        await client.upload("my_filter.py", RECORDING_FILTER.encode())
    assert "sk-lf-stored-secret-value" not in str(failed.value)
    assert "500" in str(failed.value)


async def test_wrong_key(pipelines: PipelinesServer, http: httpx.AsyncClient) -> None:
    client = PipelinesClient(pipelines.url, "wrong-key", http=http)
    with pytest.raises(PipelinesUnauthorized) as info:
        await client.list_pipelines()
    assert not info.value.temporary
    assert pipelines.api_key not in str(info.value)


async def test_add_by_url_errors_are_readable(client: PipelinesClient) -> None:
    with pytest.raises(PipelinesRejected, match="Python file"):
        await client.add_by_url("http://127.0.0.1:1/notes.txt")


async def test_unreachable(http: httpx.AsyncClient) -> None:
    client = PipelinesClient(f"http://127.0.0.1:{free_port()}", "k", http=http)
    with pytest.raises(PipelinesUnreachable) as info:
        await client.list_pipelines()
    assert info.value.temporary
