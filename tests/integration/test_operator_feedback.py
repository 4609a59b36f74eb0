"""Feedback to scores through the cluster: the operator process, a LangfuseTracing, the real
Open WebUI (its evaluations API, a rating as the web UI posts it) and the Langfuse stand-in.

A rating is posted the way the 0.12.4 web UI builds it (reference openwebui-functions.md §B.1):
``data`` with the rating, reason and comment and the model id; ``meta`` with the chat id and
the id of the rated answer. The chats are deleted right after their turn (``saved_chat_turn``),
so every rating here is also one on a deleted chat: its feedback stays in Open WebUI and its
trace in Langfuse.
"""

from __future__ import annotations

from typing import Any

import pytest
from openwebui_langfuse.feedback import score_id
from openwebui_langfuse.filters.langfuse_tracing_filter import generation_id_for

from tests.integration.operator_fixtures import (  # noqa: F401 - fixtures by name
    crd_fixture,
    harness_fixture,
    operator_fixture,
    secret_guard_fixture,
    secrets_in_fixture,
    spec,
)
from tests.integration.test_bundled_filter import trace_id
from tests.integration.test_bundled_filter_function import SavedTurn, saved_chat_turn
from tests.integration.test_function_target import (
    PIPE_ID,
    echo_pipe,  # noqa: F401 - fixture by name
)
from tests.integration.test_operator_function_target import (
    admin_secret,  # noqa: F401 - fixture by name
    function_spec,
    openwebui_auth,
)
from tests.peers.langfuse_standin.server import LangfuseStandIn
from tests.world.open_webui import OpenWebUI
from tests.world.operator import Harness, OperatorProcess
from tests.world.pipelines import PipelinesServer
from tests.world.poll import wait_for

pytestmark = [
    pytest.mark.world,
    pytest.mark.usefixtures("secret_guard", "secrets_in", "admin_secret", "echo_pipe"),
]

FEEDBACK = "/api/v1/evaluations/feedback"


def rate(
    open_webui: OpenWebUI, turn: SavedTurn, rating: int, feedback_id: str | None = None, **data: Any
) -> str:
    """Post (or, with ``feedback_id``, edit) a rating of the turn's answer; its id."""
    return rate_model(open_webui, turn, PIPE_ID, rating, feedback_id, **data)


def rate_model(
    open_webui: OpenWebUI,
    turn: SavedTurn,
    model: str,
    rating: int,
    feedback_id: str | None = None,
    **data: Any,
) -> str:
    body = {
        "type": "rating",
        "data": {"rating": rating, "model_id": model, **data},
        "meta": {
            "arena": False,
            "model_id": model,
            "chat_id": turn.chat_id,
            "message_id": turn.answer_id,
            "message_index": 1,
        },
    }
    path = f"{FEEDBACK}/{feedback_id}" if feedback_id else FEEDBACK
    with open_webui.client() as http:
        answer = http.post(path, json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def unrate(open_webui: OpenWebUI, feedback_id: str) -> None:
    with open_webui.client() as http:
        assert http.delete(f"{FEEDBACK}/{feedback_id}").status_code == 200


def scores_of(langfuse: LangfuseStandIn, feedback_id: str) -> dict[str, dict[str, Any]]:
    return {
        s["name"]: s
        for s in langfuse.scores()
        if (s.get("metadata") or {}).get("feedback_id") == feedback_id
    }


def traced_turn(open_webui: OpenWebUI, langfuse: LangfuseStandIn, prompt: str) -> SavedTurn:
    turn = saved_chat_turn(open_webui, prompt, model=PIPE_ID)
    wait_for(lambda: langfuse.observations(trace_id=trace_id(turn.chat_id)), 20, "the generation")
    return turn


def apply_ready(harness: Harness, namespace: str, name: str, body: dict[str, Any]) -> None:
    harness.apply(namespace, name, body)
    harness.wait_condition(namespace, name, "Ready", "True", timeout=60)


def feedback_status(harness: Harness, namespace: str, name: str = "tracing") -> dict[str, Any]:
    status = (harness.get(namespace, name) or {}).get("status") or {}
    return dict(status.get("feedback") or {})


def test_a_rating_becomes_a_score_an_edit_updates_it_and_a_delete_removes_it_across_a_restart(
    harness: Harness,
    namespace: str,
    operator: OperatorProcess,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    open_webui: OpenWebUI,
) -> None:
    apply_ready(harness, namespace, "tracing", function_spec(pipelines, langfuse, open_webui))
    turn = traced_turn(open_webui, langfuse, "rate me")

    feedback_id = rate(open_webui, turn, -1, reason="Inaccurate information", comment="wrong")
    scores = wait_for(
        lambda: len(found := scores_of(langfuse, feedback_id)) == 2 and found, 10, "two scores"
    )
    thumbs = scores["user_feedback"]
    assert thumbs["value"] == -1 and thumbs["comment"] == "wrong"
    assert thumbs["id"] == score_id(feedback_id, "user_feedback")
    assert thumbs["traceId"] == trace_id(turn.chat_id)
    assert thumbs["observationId"] == generation_id_for(turn.answer_id)
    assert scores["user_feedback_reason"]["value"] == "Inaccurate information"
    status = wait_for(
        lambda: (s := feedback_status(harness, namespace)).get("scored") == 1 and s,
        10,
        "status.feedback",
    )
    assert status["state"] == "Syncing" and status["untraced"] == 0

    # Edited while the operator is down: picked up from the sync point, nothing twice.
    operator.stop()
    rate(open_webui, turn, 1, feedback_id, comment="fine after all")
    operator.start()
    wait_for(
        lambda: scores_of(langfuse, feedback_id).get("user_feedback", {}).get("value") == 1,
        30,
        "the score to turn into a thumbs up",
    )
    assert set(scores_of(langfuse, feedback_id)) == {"user_feedback"}  # the reason taken back
    assert [s["id"] for s in langfuse.scores()] == [score_id(feedback_id, "user_feedback")]

    operator.stop()
    unrate(open_webui, feedback_id)
    operator.start()
    wait_for(lambda: not langfuse.scores(), 30, "the score to be deleted")
    wait_for(lambda: feedback_status(harness, namespace).get("scored") == 0, 10, "scored 0")


def test_a_rating_of_an_untraced_message_or_another_model_is_not_sent(
    harness: Harness,
    namespace: str,
    operator: OperatorProcess,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    open_webui: OpenWebUI,
) -> None:
    apply_ready(harness, namespace, "tracing", function_spec(pipelines, langfuse, open_webui))
    traced = traced_turn(open_webui, langfuse, "traced")
    never = SavedTurn(chat_id="no-such-chat", answer_id="no-such-message", reply="")
    untraced_id = rate(open_webui, never, -1)
    rated_id = rate(open_webui, traced, 1)
    wait_for(lambda: scores_of(langfuse, rated_id), 10, "the traced message's score")
    status = wait_for(
        lambda: (s := feedback_status(harness, namespace)).get("untraced") == 1 and s,
        10,
        "the untraced rating counted",
    )
    assert status["scored"] == 1 and scores_of(langfuse, untraced_id) == {}

    # Now the resource traces another model only: its ratings are no longer its to send.
    harness.patch_spec(namespace, "tracing", {"filter": {"models": ["some-other-model"]}})
    wait_for(lambda: not langfuse.scores(), 20, "the score of a model it no longer traces")
    unrate(open_webui, untraced_id)
    unrate(open_webui, rated_id)


def test_feedback_off_sends_nothing_and_leaves_no_status(
    harness: Harness,
    namespace: str,
    operator: OperatorProcess,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    open_webui: OpenWebUI,
) -> None:
    body = function_spec(pipelines, langfuse, open_webui)
    body["feedback"] = {"enabled": False}
    apply_ready(harness, namespace, "tracing", body)
    turn = traced_turn(open_webui, langfuse, "not rated in Langfuse")
    feedback_id = rate(open_webui, turn, -1)
    # A resource with the sync on, in the same namespace, is the witness that a poll ran.
    witness = function_spec(pipelines, langfuse, open_webui)
    witness["filter"] = {"models": ["nothing-rated"], "functionId": "owl_feedback_witness"}
    harness.apply(namespace, "witness", witness)
    wait_for(lambda: feedback_status(harness, namespace, "witness"), 60, "the witness's poll")
    assert langfuse.scores() == [] and "feedback" not in (
        (harness.get(namespace, "tracing") or {}).get("status") or {}
    )
    assert not harness.config_map(namespace, "tracing-feedback-sync")
    unrate(open_webui, feedback_id)


CUSTOM = "owl-feedback-custom"


def test_two_resources_routing_different_models_score_in_their_own_projects(
    harness: Harness,
    namespace: str,
    operator: OperatorProcess,
    pipelines: PipelinesServer,
    langfuse: LangfuseStandIn,
    open_webui: OpenWebUI,
) -> None:
    """The echo pipe traced through the real Pipelines into the default project; a Workspace
    model based on it traced by a Filter Function into a second project. Each rating goes to
    the project of the resource that traces its model, and the custom model's generation is
    named after its base model (what Langfuse prices)."""
    second = langfuse.add_project(name="custom-model-team")
    harness.put_secret(
        namespace, "langfuse-2", {"public-key": second.public_key, "secret-key": second.secret_key}
    )
    with open_webui.workspace_model(CUSTOM, PIPE_ID, "OWL Feedback Custom"):
        via_pipelines = spec(
            pipelines,
            langfuse,
            filter={"models": [PIPE_ID]},
            openWebUI=openwebui_auth(open_webui),
        )
        harness.apply(namespace, "pipes", via_pipelines)
        custom = function_spec(pipelines, langfuse, open_webui)
        custom["filter"] = {"models": [CUSTOM]}
        custom["langfuse"] = {
            **custom["langfuse"],
            "publicKey": {"secretKeyRef": {"name": "langfuse-2", "key": "public-key"}},
            "secretKey": {"secretKeyRef": {"name": "langfuse-2", "key": "secret-key"}},
        }
        harness.apply(namespace, "custom", custom)
        for name in ("pipes", "custom"):
            harness.wait_condition(namespace, name, "Ready", "True", timeout=60)

        piped = traced_turn(open_webui, langfuse, "through Pipelines")
        customised = saved_chat_turn(open_webui, "through the function", model=CUSTOM)
        [generation] = wait_for(
            lambda: langfuse.observations(trace_id=trace_id(customised.chat_id)), 20, "custom"
        )
        assert generation["model"] == PIPE_ID  # the base model, not the custom id
        assert generation["metadata"]["model_id"] == CUSTOM

        piped_feedback = rate(open_webui, piped, -1)
        custom_feedback = rate_model(open_webui, customised, CUSTOM, 1)
        wait_for(
            lambda: scores_of(langfuse, piped_feedback) and scores_of(langfuse, custom_feedback),
            15,
            "both scores",
        )
        in_default = {s["metadata"]["feedback_id"] for s in langfuse.scores(langfuse.project_id)}
        in_second = {s["metadata"]["feedback_id"] for s in langfuse.scores(second.project_id)}
        assert (in_default, in_second) == ({piped_feedback}, {custom_feedback})
        unrate(open_webui, piped_feedback)
        unrate(open_webui, custom_feedback)
