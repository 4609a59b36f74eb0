"""In-memory data of one stand-in: traces, observations and scores, upserted by id.

Records are plain dicts with the camelCase field names of the Langfuse public API, so
reads are mostly projections. A lock guards every access because the server thread writes
while a test thread reads.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from .values import now_iso

# Fields whose updates merge instead of replace: metadata by key, tags as a set union.
_MERGED_DICT_FIELDS = frozenset({"metadata"})
_UNION_LIST_FIELDS = frozenset({"tags"})
# Set once by the first write; later partial updates never move them.
_FIRST_WRITE_WINS = frozenset({"createdAt", "projectId"})
# A trace starts with its earliest observation, whatever order spans arrive in (the v5 SDK
# exports child spans first). All stored times share one ISO format, so strings compare.
_EARLIEST_WINS = frozenset({"timestamp"})
# Every record carries all of its fields (None when never set), so readers can index them.
TRACE_FIELDS = (
    "id",
    "projectId",
    "timestamp",
    "name",
    "input",
    "output",
    "sessionId",
    "userId",
    "metadata",
    "tags",
    "release",
    "version",
    "public",
    "environment",
    "externalId",
)
OBSERVATION_FIELDS = (
    "id",
    "projectId",
    "traceId",
    "type",
    "name",
    "startTime",
    "endTime",
    "completionStartTime",
    "model",
    "modelParameters",
    "input",
    "output",
    "metadata",
    "level",
    "statusMessage",
    "parentObservationId",
    "version",
    "environment",
    "usageDetails",
    "costDetails",
    "promptName",
    "promptVersion",
    "userId",
    "sessionId",
)
SCORE_FIELDS = (
    "id",
    "projectId",
    "name",
    "value",
    "dataType",
    "traceId",
    "sessionId",
    "observationId",
    "comment",
    "metadata",
    "source",
    "environment",
    "timestamp",
)


def merge_record(existing: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge a partial update into a record: non-null fields overwrite, metadata merges
    by key, tags accumulate. This is how repeated `trace-create` events for one id
    (e.g. SDK v2's `trace.update(output=...)`) combine."""
    for key, value in update.items():
        if value is None:
            continue
        current = existing.get(key)
        if key in _MERGED_DICT_FIELDS and isinstance(current, dict) and isinstance(value, dict):
            current.update(value)
        elif key in _UNION_LIST_FIELDS and isinstance(current, list) and isinstance(value, list):
            current.extend(item for item in value if item not in current)
        elif key in _FIRST_WRITE_WINS and current is not None:
            continue
        elif key in _EARLIEST_WINS and current is not None:
            existing[key] = min(current, value)
        else:
            existing[key] = copy.deepcopy(value)


class Store:
    """Traces, observations and scores of every project of one stand-in."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._traces: dict[tuple[str, str], dict[str, Any]] = {}
        self._observations: dict[tuple[str, str], dict[str, Any]] = {}
        self._scores: dict[tuple[str, str], dict[str, Any]] = {}

    def clear(self) -> None:
        with self._lock:
            self._traces.clear()
            self._observations.clear()
            self._scores.clear()

    def _upsert(
        self,
        table: dict[tuple[str, str], dict[str, Any]],
        template: tuple[str, ...],
        project_id: str,
        fields: dict[str, Any],
        defaults: dict[str, Any] | None = None,
    ) -> None:
        key = (project_id, fields["id"])
        with self._lock:
            record = table.get(key)
            if record is None:
                record = dict.fromkeys(template, None)
                record.update(id=fields["id"], projectId=project_id, createdAt=now_iso())
                table[key] = record
            merge_record(record, fields)
            for name, value in (defaults or {}).items():
                if record.get(name) is None and value is not None:
                    record[name] = copy.deepcopy(value)
            record["updatedAt"] = now_iso()

    def upsert_trace(
        self, project_id: str, fields: dict[str, Any], defaults: dict[str, Any] | None = None
    ) -> None:
        """Merge `fields` into the trace; `defaults` only fill fields still empty."""
        self._upsert(self._traces, TRACE_FIELDS, project_id, fields, defaults)

    def upsert_observation(self, project_id: str, fields: dict[str, Any]) -> None:
        self._upsert(self._observations, OBSERVATION_FIELDS, project_id, fields)

    def upsert_score(self, project_id: str, fields: dict[str, Any]) -> None:
        self._upsert(self._scores, SCORE_FIELDS, project_id, fields)

    def has_trace(self, project_id: str, trace_id: str) -> bool:
        with self._lock:
            return (project_id, trace_id) in self._traces

    @staticmethod
    def _select(
        table: dict[tuple[str, str], dict[str, Any]], project_id: str | None
    ) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(record)
            for (owner, _), record in table.items()
            if project_id is None or owner == project_id
        ]

    def traces(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Copies of the stored traces (of one project, or all), oldest first."""
        with self._lock:
            return self._select(self._traces, project_id)

    def observations(
        self, project_id: str | None = None, trace_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Copies of the stored observations, optionally of one trace, in arrival order."""
        with self._lock:
            rows = self._select(self._observations, project_id)
        return [row for row in rows if trace_id is None or row.get("traceId") == trace_id]

    def scores(self, project_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return self._select(self._scores, project_id)
