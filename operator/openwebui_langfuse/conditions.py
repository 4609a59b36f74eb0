"""Pure helpers for Kubernetes-style status conditions.

Condition types and the meaning of each reason (decided here, documented once):

* ``CredentialsValid``: ``True/Verified``; ``Unknown/VerificationDisabled`` (``verify: false``);
  ``False`` with a reason of ``clients.langfuse`` (``InvalidCredentials``, ``AccessDenied``,
  ``NoProject``, ``NotLangfuse``, ``UnexpectedResponse`` are permanent; ``LangfuseUnreachable``,
  ``LangfuseTimeout``, ``LangfuseServerError`` are temporary) or a reference reason.
* ``FilterInstalled``: ``True/Installed``; ``False/FilterLoadFailed`` (Pipelines accepted the file
  but did not load it; stalled, and uploaded again with backoff from 10 s up to the
  ``resyncInterval``, at once when the spec or ConfigMap changes), ``DigestMismatch``,
  ``DownloadFailed``, ``PipelinesUnauthorized`` (permanent), ``PipelinesUnreachable``,
  ``PipelinesError`` (temporary).
* ``ValvesSynced``: ``True/Synced``; ``False/CredentialsNotVerified`` (a failed verification
  never overwrites valves), ``FilterNotInstalled``, ``ValvesRejected`` (permanent),
  ``PipelinesUnreachable``/``PipelinesError`` (temporary).
* ``ConnectionRegistered``: from ``openwebui_langfuse.connection`` (only with ``spec.openWebUI``).
* Reference problems (any condition they block): ``SecretNotFound``, ``SecretKeyNotFound``,
  ``ConfigMapNotFound``, ``ConfigMapKeyNotFound`` — the resource recovers by itself when the
  object appears, but only a user can make it appear, so these count as stalled.
* ``Ready``: ``True/Ready`` when every other required condition is True; otherwise ``False``
  with the reason of the first failing condition.
* ``Reconciling`` (kstatus): ``True/RetryingAfterError`` while a temporary error waits for its
  retry, ``True/Progressing`` while a pass runs (not persisted: a pass ends before it is
  written), else ``False/Idle``.
* ``Stalled`` (kstatus): ``True`` with the blocking reason when only a change by the user can
  make progress (bad spec, bad credentials, a filter that does not load, a missing reference);
  else ``False/NotStalled``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]

READY = "Ready"
CREDENTIALS_VALID = "CredentialsValid"
FILTER_INSTALLED = "FilterInstalled"
VALVES_SYNCED = "ValvesSynced"
CONNECTION_REGISTERED = "ConnectionRegistered"
RECONCILING = "Reconciling"
STALLED = "Stalled"

# Order matters: Ready names the first failing condition in this order.
COMPONENT_TYPES = (CREDENTIALS_VALID, FILTER_INSTALLED, VALVES_SYNCED, CONNECTION_REGISTERED)
ALL_TYPES = (READY, *COMPONENT_TYPES, RECONCILING, STALLED)


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
            "observedGeneration": self.observed_generation,
        }

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> Condition:
        status = raw.get("status", "Unknown")
        return cls(
            type=str(raw.get("type", "")),
            status=status if status in ("True", "False", "Unknown") else "Unknown",
            reason=str(raw.get("reason", "")),
            message=str(raw.get("message", "")),
            last_transition_time=str(raw.get("lastTransitionTime", "")),
            observed_generation=int(raw.get("observedGeneration", 0) or 0),
        )


def find(conditions: Iterable[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def set_condition(conditions: Sequence[Condition], new: Condition, *, now: str) -> list[Condition]:
    """Return ``conditions`` with ``new`` set, keeping lastTransitionTime unless status flips."""
    old = find(conditions, new.type)
    stamp = old.last_transition_time if old is not None and old.status == new.status else now
    updated = replace(new, last_transition_time=stamp or now)
    result = [c for c in conditions if c.type != new.type]
    result.append(updated)
    order = {t: i for i, t in enumerate(ALL_TYPES)}
    result.sort(key=lambda c: order.get(c.type, len(order)))
    return result


def remove_condition(conditions: Sequence[Condition], type_: str) -> list[Condition]:
    return [c for c in conditions if c.type != type_]


def is_satisfied(condition: Condition | None) -> bool:
    """A component condition lets Ready be True: True, or verification switched off."""
    if condition is None:
        return False
    return condition.status == "True" or (
        condition.type == CREDENTIALS_VALID and condition.reason == "VerificationDisabled"
    )


def ready_condition(
    conditions: Sequence[Condition],
    *,
    required: Iterable[str],
    generation: int,
    ready: tuple[str, str] = ("Ready", "Langfuse tracing is installed and configured"),
) -> Condition:
    """The aggregate Ready condition over the ``required`` component types; ``ready`` is the
    reason and message when all of them are satisfied."""
    for type_ in COMPONENT_TYPES:
        if type_ not in required:
            continue
        cond = find(conditions, type_)
        if not is_satisfied(cond):
            if cond is None:
                return Condition(
                    READY,
                    "Unknown",
                    "Pending",
                    f"{type_} not yet known",
                    observed_generation=generation,
                )
            status: ConditionStatus = "Unknown" if cond.status == "Unknown" else "False"
            return Condition(
                READY,
                status,
                cond.reason,
                f"{type_}: {cond.message}",
                observed_generation=generation,
            )
    return Condition(READY, "True", ready[0], ready[1], observed_generation=generation)


def transitions(
    before: Sequence[Condition], after: Sequence[Condition]
) -> list[tuple[Condition | None, Condition]]:
    """Conditions whose status or reason changed: what deserves a log line or an Event."""
    changed: list[tuple[Condition | None, Condition]] = []
    for cond in after:
        old = find(before, cond.type)
        if old is None or old.status != cond.status or old.reason != cond.reason:
            changed.append((old, cond))
    return changed
