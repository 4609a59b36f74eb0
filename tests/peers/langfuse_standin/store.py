"""In-memory data of one stand-in: traces and observations (merged by id), scores (replaced
by id) and custom models.

Records are plain dicts with the camelCase field names of the Langfuse public API, so
reads are mostly projections. A lock guards every access because the server thread writes
while a test thread reads.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from . import models as model_defs
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
        self._models: dict[tuple[str, str], dict[str, Any]] = {}
        # Observations whose costDetails the stand-in computed from prices (not sent): those
        # are recomputed when usage or model change; a sent cost is never overwritten.
        self._computed_costs: set[tuple[str, str]] = set()

    def clear(self) -> None:
        """Forget data and custom models (the managed models are not data: they stay)."""
        with self._lock:
            self._traces.clear()
            self._observations.clear()
            self._scores.clear()
            self._models.clear()
            self._computed_costs.clear()

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
        """Merge `fields` into the observation, then price it when no cost was ever sent."""
        key = (project_id, fields["id"])
        with self._lock:
            self._upsert(self._observations, OBSERVATION_FIELDS, project_id, fields)
            if fields.get("costDetails"):
                self._computed_costs.discard(key)
            else:
                self._price_observation(project_id, self._observations[key])

    def _price_observation(self, project_id: str, record: dict[str, Any]) -> None:
        # The server computes cost only when none was provided: from the first model whose
        # pattern matches the observation's model string
        # (docs/upstream/langfuse.md, "Usage and cost").
        key = (project_id, record["id"])
        if record.get("costDetails") and key not in self._computed_costs:
            return
        usage, name = record.get("usageDetails"), record.get("model")
        cost = None
        if isinstance(usage, dict) and usage and isinstance(name, str):
            model = model_defs.matching_model(
                self._visible_models(project_id), name, record.get("startTime")
            )
            if model is not None:
                cost = model_defs.cost_from_prices(usage, model_defs.default_prices(model))
        if cost is None:
            if key in self._computed_costs:
                record["costDetails"] = None
                self._computed_costs.discard(key)
            return
        record["costDetails"] = cost
        self._computed_costs.add(key)

    def upsert_score(self, project_id: str, fields: dict[str, Any]) -> None:
        """Store the score, replacing any of the same id whole: the server keeps one score
        row per id, so a field left out of a second write (e.g. `comment`) is gone.
        Only `createdAt` survives the replacement."""
        key = (project_id, fields["id"])
        with self._lock:
            previous = self._scores.get(key)
            record = dict.fromkeys(SCORE_FIELDS, None)
            record.update(copy.deepcopy(fields))
            stamp = now_iso()
            record.update(
                id=fields["id"],
                projectId=project_id,
                createdAt=previous["createdAt"] if previous else stamp,
                updatedAt=stamp,
            )
            self._scores[key] = record

    def delete_score(self, project_id: str, score_id: str) -> bool:
        """Forget one score; False when the project has no score of that id."""
        with self._lock:
            return self._scores.pop((project_id, score_id), None) is not None

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

    # --- models ------------------------------------------------------------------------

    def _visible_models(self, project_id: str) -> list[dict[str, Any]]:
        own = [m for (owner, _), m in self._models.items() if owner == project_id]
        # Custom ids never collide with managed ones: a PUT to a managed id answers 404.
        return own + list(model_defs.MANAGED_MODELS)

    def models(self, project_id: str) -> list[dict[str, Any]]:
        """Copies of the models a project sees: its own and the managed ones."""
        with self._lock:
            return copy.deepcopy(self._visible_models(project_id))

    def model(self, project_id: str, model_id: str) -> dict[str, Any] | None:
        with self._lock:
            for model in self._visible_models(project_id):
                if model["id"] == model_id:
                    return copy.deepcopy(model)
        return None

    def own_model(self, project_id: str, model_id: str) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self._models.get((project_id, model_id)))

    def put_model(self, project_id: str, model: dict[str, Any]) -> None:
        with self._lock:
            self._models[(project_id, model["id"])] = copy.deepcopy(model)

    def delete_model(self, project_id: str, model_id: str) -> bool:
        """Forget a custom model; False for an unknown or a managed one."""
        with self._lock:
            return self._models.pop((project_id, model_id), None) is not None
