"""LangfuseTracing objects in each state the operator reports, for the GitOps health tests.

The conditions are built with the operator's own helpers (``openwebui_langfuse.conditions``),
so a change in how the operator spells a condition shows up here, not only in production.
Each sample names what kstatus and Argo CD must say about it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from openwebui_langfuse import conditions as c

NOW = "2026-11-27T01:00:00Z"
REQUIRED = (c.CREDENTIALS_VALID, c.FILTER_INSTALLED, c.VALVES_SYNCED, c.CONNECTION_REGISTERED)


@dataclass(frozen=True)
class Sample:
    name: str
    obj: dict[str, Any]
    kstatus: str
    argocd: str


def _base(generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "openwebui-langfuse.io/v1alpha1",
        "kind": "LangfuseTracing",
        "metadata": {
            "name": "tracing",
            "namespace": "team-a",
            "generation": generation,
            "uid": "9a1c0de4-0000-4000-8000-000000000001",
        },
        "spec": {"langfuse": {"host": "https://cloud.langfuse.com"}, "suspend": False},
    }


State = tuple[c.ConditionStatus, str]


def _with_status(
    components: dict[str, State],
    *,
    reconciling: State,
    stalled: State,
    generation: int = 1,
    observed: int | None = None,
) -> dict[str, Any]:
    """An object whose status carries ``components`` (type -> (status, reason)) and the
    aggregate Ready, Reconciling and Stalled conditions derived as the operator derives them."""
    observed = generation if observed is None else observed
    conds: list[c.Condition] = []
    for type_, (status, reason) in components.items():
        conds = c.set_condition(
            conds,
            c.Condition(
                type_,
                status,
                reason,
                f"{type_} is {reason}",
                observed_generation=observed,
            ),
            now=NOW,
        )
    conds = c.set_condition(
        conds, c.ready_condition(conds, required=components, generation=observed), now=NOW
    )
    for type_, (status, reason) in ((c.RECONCILING, reconciling), (c.STALLED, stalled)):
        conds = c.set_condition(
            conds,
            c.Condition(
                type_,
                status,
                reason,
                f"{type_}: {reason}",
                observed_generation=observed,
            ),
            now=NOW,
        )
    obj = _base(generation)
    obj["status"] = {
        "observedGeneration": observed,
        "conditions": [cond.to_wire() for cond in conds],
        "pipelineId": "lft_team_a_tracing",
        "lastSyncTime": NOW,
    }
    return obj


ALL_TRUE: dict[str, State] = {
    c.CREDENTIALS_VALID: ("True", "Verified"),
    c.FILTER_INSTALLED: ("True", "Installed"),
    c.VALVES_SYNCED: ("True", "Synced"),
    c.CONNECTION_REGISTERED: ("True", "Registered"),
}
IDLE: State = ("False", "Idle")
NOT_STALLED: State = ("False", "NotStalled")


def samples() -> list[Sample]:
    ready = _with_status(ALL_TRUE, reconciling=IDLE, stalled=NOT_STALLED)

    retrying = _with_status(
        {
            **ALL_TRUE,
            c.CREDENTIALS_VALID: ("False", "LangfuseUnreachable"),
            c.VALVES_SYNCED: ("False", "CredentialsNotVerified"),
        },
        reconciling=("True", "RetryingAfterError"),
        stalled=NOT_STALLED,
    )

    bad_keys = _with_status(
        {
            **ALL_TRUE,
            c.CREDENTIALS_VALID: ("False", "InvalidCredentials"),
            c.VALVES_SYNCED: ("False", "CredentialsNotVerified"),
        },
        reconciling=IDLE,
        stalled=("True", "InvalidCredentials"),
    )

    missing_secret = _with_status(
        {
            c.CREDENTIALS_VALID: ("False", "SecretNotFound"),
            c.FILTER_INSTALLED: ("False", "SecretNotFound"),
            c.VALVES_SYNCED: ("False", "SecretNotFound"),
        },
        reconciling=IDLE,
        stalled=("True", "SecretNotFound"),
    )

    filter_broken = _with_status(
        {
            **ALL_TRUE,
            c.FILTER_INSTALLED: ("False", "FilterLoadFailed"),
            c.VALVES_SYNCED: ("False", "FilterNotInstalled"),
        },
        reconciling=IDLE,
        stalled=("True", "FilterLoadFailed"),
    )

    # Ready=False without Reconciling or Stalled set: kstatus' Ready fallback says InProgress.
    not_ready_quiet = _with_status(
        {**ALL_TRUE, c.CONNECTION_REGISTERED: ("False", "OpenWebUIUnreachable")},
        reconciling=IDLE,
        stalled=NOT_STALLED,
    )

    # The user changed the spec; the operator has not caught up: the old Ready is stale.
    new_generation = _with_status(
        ALL_TRUE, reconciling=IDLE, stalled=NOT_STALLED, generation=2, observed=1
    )

    suspended = copy.deepcopy(ready)
    suspended["spec"]["suspend"] = True

    deleting = copy.deepcopy(ready)
    deleting["metadata"]["deletionTimestamp"] = NOW
    deleting["metadata"]["finalizers"] = ["openwebui-langfuse.io/cleanup"]

    # Before the operator's first write there is no status at all. kstatus cannot tell such an
    # object from one whose controller never writes status and calls it Current (its documented
    # limit); the Argo CD check knows this kind and waits.
    fresh = _base()

    return [
        Sample("ready", ready, "Current", "Healthy"),
        Sample("retrying", retrying, "InProgress", "Progressing"),
        Sample("bad-keys", bad_keys, "Failed", "Degraded"),
        Sample("missing-secret", missing_secret, "Failed", "Degraded"),
        Sample("filter-broken", filter_broken, "Failed", "Degraded"),
        Sample("not-ready-quiet", not_ready_quiet, "InProgress", "Progressing"),
        Sample("new-generation", new_generation, "InProgress", "Progressing"),
        Sample("suspended", suspended, "Current", "Suspended"),
        Sample("deleting", deleting, "Terminating", "Progressing"),
        Sample("fresh", fresh, "Current", "Progressing"),
    ]
