"""What an Open WebUI feedback becomes in Langfuse, and which feedbacks a poll must look at.

Pure: no I/O. ``feedback_sync`` polls Open WebUI and writes Langfuse with these
(``spec.feedback``).

Why polling ``GET /api/v1/evaluations/feedbacks/all/ids`` (reference openwebui-functions.md §B)
rather than webhooks or an Event function: the admin webhooks carry only the rating, are sent
once with no retry, and refuse cluster-internal addresses unless ``ENABLE_LOCAL_WEB_FETCH`` opens
local fetching for all of Open WebUI; an Event function would be one more piece of our code
inside Open WebUI, with database access, that sees nothing that happened while it was not
installed. The id list is cheap (no snapshots) and complete, so a poll after any outage, ours
or Open WebUI's, catches up by itself. Its costs shape this module:

- ``updated_at`` has one-second resolution, so an edit in the same second as the last fetch
  keeps the same stamp: feedbacks stamped in the last seconds before the previous list are
  fetched again (``SyncPoint.watermark``), and an unchanged content digest then writes nothing.
- Deletes are hard deletes: a feedback that was sent and is no longer listed is deleted.

Scores are addressed: each score id is derived from the feedback id and the score name, and the
trace and observation ids from the chat and message ids exactly as the bundled filter derives
them, so sending twice changes nothing and a restart loses nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .filters.langfuse_tracing_filter import generation_id_for, trace_id_for

# Score names: part of the contract once the sync ships.
RATING = "user_feedback"  # NUMERIC: 1 thumbs up, -1 thumbs down (Open WebUI's own values)
DETAILED_RATING = "user_feedback_rating"  # NUMERIC: the detailed rating, 1 to 10
REASON = "user_feedback_reason"  # CATEGORICAL: the reason picked in Open WebUI
SCORE_NAMES = (RATING, DETAILED_RATING, REASON)

# A fixed namespace, so a score id depends on nothing but the feedback id and the score name.
SCORE_ID_NAMESPACE = uuid.UUID("3f1c2a52-8d7e-4c39-9a55-6b0f3de1a7c4")

Skip = Literal["not-ours", "no-message", "no-rating"]


def score_id(feedback_id: str, name: str) -> str:
    return str(uuid.uuid5(SCORE_ID_NAMESPACE, f"{feedback_id}/{name}"))


@dataclass(frozen=True, slots=True)
class Score:
    """One Langfuse score, as the body of ``POST /api/public/scores`` (upsert by id)."""

    id: str
    name: str
    trace_id: str
    observation_id: str
    data_type: Literal["NUMERIC", "CATEGORICAL"]
    value: float | str
    comment: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "traceId": self.trace_id,
            "observationId": self.observation_id,
            "dataType": self.data_type,
            "value": self.value,
            "metadata": dict(self.metadata),
        }
        if self.comment:
            body["comment"] = self.comment
        return body


def model_of(feedback: Mapping[str, Any]) -> str | None:
    """The model the rated answer came from: the one the user chose (``data.model_id``)."""
    data = _mapping(feedback.get("data"))
    meta = _mapping(feedback.get("meta"))
    model = data.get("model_id") or meta.get("model_id")
    return model if isinstance(model, str) and model else None


def traces_model(models: Sequence[str], model: str | None) -> bool:
    """Whether a resource whose ``filter.models`` is ``models`` traces chats with ``model``,
    matching the way the filter is attached (``*`` is every model)."""
    return "*" in models or (model is not None and model in models)


def _number(value: Any) -> float | None:
    """A rating as Open WebUI stores it (any int or string is accepted there) as a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def scores_for(feedback: Mapping[str, Any], models: Sequence[str]) -> list[Score] | Skip:
    """The scores one feedback becomes, or why it becomes none."""
    model = model_of(feedback)
    if not traces_model(models, model):
        return "not-ours"
    data = _mapping(feedback.get("data"))
    meta = _mapping(feedback.get("meta"))
    chat_id, message_id = meta.get("chat_id"), meta.get("message_id")
    if not (isinstance(chat_id, str) and chat_id and isinstance(message_id, str) and message_id):
        return "no-message"
    rating = _number(data.get("rating"))
    if rating is None:
        return "no-rating"
    feedback_id = str(feedback["id"])
    trace_id, observation_id = trace_id_for(chat_id), generation_id_for(message_id)
    tags = data.get("tags")
    metadata = {
        "source": "open-webui-feedback",
        "feedback_id": feedback_id,
        "open_webui_user_id": feedback.get("user_id"),
        "model_id": model,
        "chat_id": chat_id,
        "message_id": message_id,
    }
    if isinstance(tags, list) and tags:
        metadata["tags"] = [str(tag) for tag in tags]
    reason = data.get("reason") if isinstance(data.get("reason"), str) else None
    if reason:
        metadata["reason"] = reason
    comment = data.get("comment")
    comment = comment if isinstance(comment, str) else None

    def score(name: str, data_type: Literal["NUMERIC", "CATEGORICAL"], value: Any) -> Score:
        return Score(
            id=score_id(feedback_id, name),
            name=name,
            trace_id=trace_id,
            observation_id=observation_id,
            data_type=data_type,
            value=value,
            comment=comment,
            metadata=metadata,
        )

    scores = [score(RATING, "NUMERIC", rating)]
    detailed = _number(_mapping(data.get("details")).get("rating"))
    if detailed is not None:
        scores.append(score(DETAILED_RATING, "NUMERIC", detailed))
    if reason:
        scores.append(score(REASON, "CATEGORICAL", reason))
    return scores


def digest(scores: Iterable[Score]) -> str:
    """What was sent for a feedback, in a few bytes: an unchanged digest writes nothing."""
    bodies = sorted((s.body() for s in scores), key=lambda b: b["name"])
    text = json.dumps(bodies, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Seen:
    """A feedback whose scores are in Langfuse: its stamp, and the digest of what was sent."""

    updated_at: int
    digest: str


# How long a rating of a message with no trace yet is looked at again: Langfuse ingests spans
# asynchronously (seconds, minutes under load), so a quick thumbs-down may come first.
UNTRACED_RECHECK_SECONDS = 600
# Feedbacks stamped this close to the previous list's second are read again: a feedback is
# stamped before its row is committed, so one stamped just before a list may show up only in
# the next.
RECHECK_MARGIN_SECONDS = 5


@dataclass(slots=True)
class SyncPoint:
    """What a resource's feedback sync has done, kept across restarts (``feedback_sync``).

    Only feedbacks that need remembering are kept: those with scores in Langfuse (to update
    and delete them) and the untraced ones (to count them). Every other feedback stamped before
    ``watermark`` (Open WebUI's clock) was looked at and became nothing: another resource's
    model, no rating. So a quiet poll reads the id list and nothing else."""

    watermark: int = 0
    sent: dict[str, Seen] = field(default_factory=dict)
    untraced: dict[str, int] = field(default_factory=dict)
    # The models the resource traced when the watermark was set (``scope_of``): with other
    # models, what "became nothing" may be ours now, and ours another's: everything is read again.
    scope: str = ""

    def rescope(self, models: Sequence[str]) -> None:
        scope = scope_of(models)
        if scope != self.scope:
            self.scope, self.watermark = scope, 0

    def to_bytes(self) -> bytes:
        doc = {
            "version": 1,
            "watermark": self.watermark,
            "scope": self.scope,
            "sent": {fid: [s.updated_at, s.digest] for fid, s in sorted(self.sent.items())},
            "untraced": dict(sorted(self.untraced.items())),
        }
        text = json.dumps(doc, separators=(",", ":"))
        return gzip.compress(text.encode("utf-8"), mtime=0)

    @classmethod
    def from_bytes(cls, raw: bytes) -> SyncPoint:
        """The sync point written by ``to_bytes``; ValueError for anything else."""
        try:
            doc = json.loads(gzip.decompress(raw).decode("utf-8"))
        except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a feedback sync point ({type(exc).__name__})") from None
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise ValueError("not a feedback sync point of version 1")
        try:
            return cls(
                watermark=int(doc.get("watermark") or 0),
                scope=str(doc.get("scope") or ""),
                sent={fid: Seen(int(v[0]), str(v[1])) for fid, v in doc["sent"].items()},
                untraced={fid: int(stamp) for fid, stamp in doc["untraced"].items()},
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise ValueError("a feedback sync point with a bad field") from None


def scope_of(models: Sequence[str]) -> str:
    return "\n".join(sorted(set(models)))


@dataclass(frozen=True, slots=True)
class Plan:
    fetch: tuple[str, ...]  # to read with GET /feedback/{id} and (re)map
    deleted: tuple[str, ...]  # sent before, gone from Open WebUI now: delete their scores
    forgotten: tuple[str, ...]  # untraced ones gone from Open WebUI: only forget them


def plan(point: SyncPoint, listed: Iterable[Mapping[str, Any]], now: int) -> Plan:
    """Which feedbacks a poll reads and which it deletes, from the id list and the sync point.

    ``now`` is the second Open WebUI answered the list in. A feedback is read when it is
    stamped at or after the watermark (new, or edited since), when its stamp moved from the
    one its scores were sent with, or when it rated an untraced message recently enough that
    the trace may still arrive.
    """
    fetch: list[str] = []
    present: set[str] = set()
    for row in listed:
        feedback_id = row.get("id")
        stamp = row.get("updated_at")
        if not isinstance(feedback_id, str) or not isinstance(stamp, int):
            continue
        present.add(feedback_id)
        sent = point.sent.get(feedback_id)
        untraced = point.untraced.get(feedback_id)
        if (
            stamp >= point.watermark
            or (sent is not None and stamp != sent.updated_at)
            or (untraced is not None and now - untraced < UNTRACED_RECHECK_SECONDS)
        ):
            fetch.append(feedback_id)
    return Plan(
        fetch=tuple(fetch),
        deleted=tuple(sorted(fid for fid in point.sent if fid not in present)),
        forgotten=tuple(sorted(fid for fid in point.untraced if fid not in present)),
    )


def next_watermark(now: int) -> int:
    """The watermark after a poll that read everything it had to (see RECHECK_MARGIN)."""
    return max(now - RECHECK_MARGIN_SECONDS, 0)


def stale_score_ids(feedback_id: str, scores: Iterable[Score] = ()) -> list[str]:
    """The ids of this feedback's scores that are no longer sent (a detailed rating or reason
    taken back in an edit, or every score when the feedback went away): to delete."""
    kept = {s.name for s in scores}
    return [score_id(feedback_id, name) for name in SCORE_NAMES if name not in kept]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
