"""The scripted Open WebUI conversation that every bundled-filter test and the benchmark replay.

Bodies follow what Open WebUI 0.12.4 sends to a Pipelines filter (docs/upstream/open-webui.md,
"How filters run in a chat", and its `routers/pipelines.py` / `utils/middleware.py`): the inlet
gets the chat payload with `metadata` (chat_id, message_id, session_id, task, model); background
tasks (title generation) get an inlet only; the outlet gets `{model, messages, chat_id,
session_id, id}` with `usage` on the assistant message. Plain API calls carry `chat_id: ""` and
no message id at inlet time; Open WebUI mints the outlet's `id` afterwards.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

USER = {"id": "user-alice", "email": "alice@example.com", "name": "Alice", "role": "user"}
CHAT_ID = "3f0c2a8e-chat-one"
TEMP_CHAT_ID = "temporary:9b1d-temp"
MODEL = "gpt-4o"
MODEL_NAME = "GPT-4o (team)"
TASK_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Step:
    hook: Literal["inlet", "outlet"]
    body: dict[str, Any]
    user: dict[str, Any] | None = None


def _metadata(chat_id: str, message_id: str | None, **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "user_id": USER["id"],
        "chat_id": chat_id,
        "message_id": message_id,
        "session_id": "socket-session-1",
        "filter_ids": [],
        "tool_ids": None,
        "files": None,
        "features": {"web_search": False},
        "variables": {"{{USER_NAME}}": "Alice"},
        "model": {"id": MODEL, "name": MODEL_NAME, "owned_by": "openai"},
    }
    metadata.update(extra)
    return metadata


def user_turn(
    chat_id: str,
    message_id: str | None,
    history: list[dict[str, Any]],
    question: str,
    *,
    stream: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [*history, {"role": "user", "content": question}],
        "stream": stream,
        "temperature": 0.2,
        "metadata": _metadata(chat_id, message_id),
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def outlet_body(
    chat_id: str,
    message_id: str,
    history: list[dict[str, Any]],
    answer: str,
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    messages = [
        {"id": f"m{index}", "role": m["role"], "content": m["content"], "timestamp": 1_790_000_000}
        for index, m in enumerate(history)
    ]
    assistant: dict[str, Any] = {
        "id": message_id,
        "role": "assistant",
        "content": answer,
        "info": None,
        "timestamp": 1_790_000_001,
    }
    if usage is not None:
        assistant["usage"] = usage
    return {
        "model": MODEL,
        "messages": [*messages, assistant],
        "filter_ids": [],
        "chat_id": chat_id,
        "session_id": "socket-session-1",
        "id": message_id,
    }


def title_task(chat_id: str, conversation: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": TASK_MODEL,
        "messages": [{"role": "user", "content": "### Task:\nGenerate a concise title."}],
        "stream": False,
        "metadata": {
            "task": "title_generation",
            "task_body": {"model": MODEL, "messages": conversation, "chat_id": chat_id},
            "chat_id": chat_id,
        },
    }


SYSTEM = {"role": "system", "content": "Answer briefly."}
Q1, A1 = "What is Langfuse?", "An open-source LLM observability platform."
Q2, A2 = "Does it price tokens?", "Yes, from model definitions or reported cost."
QA, AA = "Say hi (API).", "hi"
QT, AT = "A private question.", "A private answer."
USAGE_1 = {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}
# A streamed turn with the usage capability on: Open WebUI normalises both key families.
USAGE_2 = {
    "prompt_tokens": 48,
    "completion_tokens": 12,
    "total_tokens": 60,
    "input_tokens": 48,
    "output_tokens": 12,
    "prompt_tokens_details": {"cached_tokens": 16},
    "cost": 0.00042,
}
USAGE_API = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
API_OUTLET_ID = "msg-api-minted-after-inlet"


def scripted_conversation() -> list[Step]:
    """Two chat turns (the second streamed, with usage and cost), a title task, an API call
    without a chat id, and a temporary chat turn. Fresh copies on every call."""
    turn1 = [SYSTEM, {"role": "user", "content": Q1}]
    turn2 = [*turn1, {"role": "assistant", "content": A1}, {"role": "user", "content": Q2}]
    steps = [
        Step("inlet", user_turn(CHAT_ID, "msg-a1", [SYSTEM], Q1, stream=False), USER),
        Step("outlet", outlet_body(CHAT_ID, "msg-a1", turn1, A1, USAGE_1), USER),
        Step("inlet", title_task(CHAT_ID, [*turn1, {"role": "assistant", "content": A1}]), USER),
        Step("inlet", user_turn(CHAT_ID, "msg-a2", turn2[:-1], Q2, stream=True), USER),
        Step("outlet", outlet_body(CHAT_ID, "msg-a2", turn2, A2, USAGE_2), USER),
        Step("inlet", user_turn("", None, [], QA, stream=False), USER),
        Step(
            "outlet",
            outlet_body("", API_OUTLET_ID, [{"role": "user", "content": QA}], AA, USAGE_API),
            USER,
        ),
        Step("inlet", user_turn(TEMP_CHAT_ID, "msg-t1", [], QT, stream=True), USER),
        Step(
            "outlet",
            outlet_body(TEMP_CHAT_ID, "msg-t1", [{"role": "user", "content": QT}], AT, None),
            USER,
        ),
    ]
    return copy.deepcopy(steps)


# What the bundled filter must deliver for the script (valves at their defaults).
EXPECTED_OBSERVATIONS = {
    # name, trace kind, task
    "msg-a1": ("assistant response", "chat", None),
    "title": ("task:title_generation", "chat", "title_generation"),
    "msg-a2": ("assistant response", "chat", None),
    "api": ("assistant response", "api", None),
    "msg-t1": ("assistant response", "temporary-chat", None),
}


def test_script_covers_each_case_once() -> None:
    steps = scripted_conversation()
    assert [s.hook for s in steps].count("inlet") == 5
    assert [s.hook for s in steps].count("outlet") == 4  # tasks get no outlet
    tasks = [s for s in steps if s.body.get("metadata", {}).get("task")]
    assert len(tasks) == 1
    assert (
        steps[5].body["metadata"]["chat_id"] == ""
        and steps[5].body["metadata"]["message_id"] is None
    )
    assert steps is not scripted_conversation()
