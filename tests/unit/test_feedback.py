"""What an Open WebUI feedback becomes in Langfuse, and what a poll reads and deletes."""

from __future__ import annotations

import gzip
import uuid
from typing import Any

import pytest
from openwebui_langfuse import feedback
from openwebui_langfuse.feedback import (
    RECHECK_MARGIN_SECONDS,
    Seen,
    SyncPoint,
    next_watermark,
    plan,
    scores_for,
)
from openwebui_langfuse.filters.langfuse_tracing_filter import generation_id_for, trace_id_for


def a_feedback(**data: Any) -> dict[str, Any]:
    """The shape reference openwebui-functions.md §B observed for a thumbs-down with details."""
    return {
        "id": "65378c50-aaaa",
        "user_id": "2574b44f-bbbb",
        "type": "rating",
        "data": {
            "rating": -1,
            "model_id": "mock-gpt",
            "reason": "Inaccurate information",
            "comment": "wrong answer",
            "tags": ["geo"],
            "details": {"rating": 3},
            **data,
        },
        "meta": {"model_id": "mock-gpt", "message_id": "msg-1", "chat_id": "chat-1"},
        "created_at": 1796187604,
        "updated_at": 1796187606,
    }


def test_a_thumbs_down_with_details_becomes_three_scores_on_that_generation() -> None:
    scores = scores_for(a_feedback(), ["*"])
    assert isinstance(scores, list)
    by_name = {s.name: s for s in scores}
    assert by_name[feedback.RATING].value == -1.0
    assert by_name[feedback.DETAILED_RATING].value == 3.0
    assert by_name[feedback.REASON].value == "Inaccurate information"
    assert by_name[feedback.REASON].data_type == "CATEGORICAL"
    for score in scores:
        assert score.trace_id == trace_id_for("chat-1")
        assert score.observation_id == generation_id_for("msg-1")
        assert score.comment == "wrong answer"
        assert score.metadata["feedback_id"] == "65378c50-aaaa"
        assert score.body()["observationId"] == generation_id_for("msg-1")


def test_score_ids_depend_only_on_the_feedback_and_the_name() -> None:
    first = scores_for(a_feedback(), ["*"])
    edited = scores_for(a_feedback(rating=1, comment="fine after all"), ["*"])
    assert isinstance(first, list) and isinstance(edited, list)
    assert [s.id for s in first] == [s.id for s in edited]
    assert len({s.id for s in first}) == 3
    assert feedback.digest(first) != feedback.digest(edited)
    assert feedback.digest(first) == feedback.digest(scores_for(a_feedback(), ["*"]))  # type: ignore[arg-type]


def test_a_plain_thumbs_up_is_one_score_and_the_others_are_stale() -> None:
    scores = scores_for(a_feedback(rating=1, reason=None, details=None), ["*"])
    assert isinstance(scores, list)
    assert [s.name for s in scores] == [feedback.RATING]
    stale = feedback.stale_score_ids("65378c50-aaaa", scores)
    assert stale == [
        feedback.score_id("65378c50-aaaa", feedback.DETAILED_RATING),
        feedback.score_id("65378c50-aaaa", feedback.REASON),
    ]
    assert len(feedback.stale_score_ids("65378c50-aaaa")) == 3


def test_feedback_on_a_model_this_resource_does_not_trace_is_left_alone() -> None:
    assert scores_for(a_feedback(), ["other-model"]) == "not-ours"
    assert isinstance(scores_for(a_feedback(), ["mock-gpt"]), list)


def test_feedback_without_a_message_or_a_rating_becomes_nothing() -> None:
    no_message = a_feedback()
    no_message["meta"] = {"model_id": "mock-gpt"}
    assert scores_for(no_message, ["*"]) == "no-message"
    assert scores_for(a_feedback(rating="great"), ["*"]) == "no-rating"
    assert scores_for(a_feedback(rating=True), ["*"]) == "no-rating"
    numeric_text = scores_for(a_feedback(rating="1"), ["*"])
    assert isinstance(numeric_text, list) and numeric_text[0].value == 1.0


def test_a_poll_reads_the_new_the_edited_and_the_recently_untraced() -> None:
    point = SyncPoint(
        watermark=205,
        sent={
            "same": Seen(100, "d1"),
            "edited": Seen(100, "d2"),
            "recent": Seen(205, "d3"),
            "gone": Seen(90, "d4"),
        },
        untraced={"waiting": 900, "given-up": 100, "untraced-gone": 90},
    )
    listed = [
        {"id": "new", "updated_at": 210, "user_id": "u", "created_at": 210},
        {"id": "recent", "updated_at": 205},
        {"id": "edited", "updated_at": 150},
        {"id": "same", "updated_at": 100},
        {"id": "other-model-long-ago", "updated_at": 120},
        {"id": "waiting", "updated_at": 900},
        {"id": "given-up", "updated_at": 100},
        {"id": None, "updated_at": 1},
    ]
    result = plan(point, listed, now=1000)
    assert result.fetch == ("new", "recent", "edited", "waiting")
    assert result.deleted == ("gone",)
    assert result.forgotten == ("untraced-gone",)


def test_a_quiet_poll_reads_nothing() -> None:
    point = SyncPoint(watermark=995, sent={"a": Seen(100, "d")}, untraced={"b": 101})
    listed = [{"id": "a", "updated_at": 100}, {"id": "b", "updated_at": 101}]
    result = plan(point, listed, now=1000)
    assert result.fetch == () and result.deleted == () and result.forgotten == ()
    assert next_watermark(1000) == 1000 - RECHECK_MARGIN_SECONDS


def test_the_sync_point_survives_a_round_trip_and_refuses_anything_else() -> None:
    point = SyncPoint(watermark=7, sent={"a": Seen(5, "abc")}, untraced={"b": 6}, scope="*")
    assert SyncPoint.from_bytes(point.to_bytes()) == point
    assert point.to_bytes() == SyncPoint.from_bytes(point.to_bytes()).to_bytes()
    for bad in (b"", b"{}", gzip.compress(b'{"version": 2}'), gzip.compress(b'{"version":1}')):
        with pytest.raises(ValueError):
            SyncPoint.from_bytes(bad)


def test_ten_thousand_scored_feedbacks_fit_a_config_map() -> None:
    # A ConfigMap holds at most 1 MiB; the sync point is what limits how many feedbacks a
    # resource can track, so this records the headroom.
    point = SyncPoint(
        watermark=1,
        sent={
            str(uuid.uuid4()): Seen(1796187604 + 37 * i, uuid.uuid4().hex[:16])
            for i in range(10_000)
        },
    )
    assert len(point.to_bytes()) < 400 * 1024  # so 25,000 fit in 1 MiB


def test_other_models_read_everything_again() -> None:
    point = SyncPoint(watermark=500, scope="gpt-4o")
    point.rescope(["gpt-4o"])
    assert point.watermark == 500
    point.rescope(["llama3", "gpt-4o"])
    assert point.watermark == 0 and point.scope == "gpt-4o\nllama3"
