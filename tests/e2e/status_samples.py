"""LangfuseTracing objects in each state the operator reports, for the GitOps health tests.

The conditions are built with the operator's own helpers (``openwebui_langfuse.conditions``),
so a change in how the operator spells a condition shows up here, not only in production.
Each sample names what kstatus and Argo CD must say about it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
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
    # The same moment with a CRD that defaults status to {observedGeneration: 0} (structural
    # defaulting applies on every read): generation 1 is not observed yet, kstatus waits too.
    fresh_defaulted = _base()
    fresh_defaulted["status"] = {"observedGeneration": 0}

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
        Sample("fresh-defaulted", fresh_defaulted, "InProgress", "Progressing"),
    ]


# -- statuses written by the operator's own reconcile pass ---------------------------------------
#
# The samples above are assembled from the operator's condition helpers; these come out of
# `openwebui_langfuse.reconcile.reconcile` itself, run against small in-memory upstreams, so the
# GitOps judges see exactly what the operator writes for each situation.

_NS, _NAME = "team-a", "tracing"
_SECRET = "sk-lf-sample-secret"
_PIPELINES_KEY = "sample-pipelines-key"


class _Reader:
    def __init__(
        self, secrets: dict[str, dict[str, str]], config_maps: dict[str, dict[str, str]]
    ) -> None:
        self.secrets, self.config_maps = secrets, config_maps

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        from openwebui_langfuse.passes import MissingReference

        if name not in self.secrets:
            raise MissingReference("SecretNotFound", f"Secret {namespace}/{name} not found")
        if key not in self.secrets[name]:
            raise MissingReference("SecretKeyNotFound", f"Secret {namespace}/{name} has no {key}")
        return self.secrets[name][key]

    def config_map_value(self, namespace: str, name: str, key: str) -> str:
        from openwebui_langfuse.passes import MissingReference

        if name not in self.config_maps:
            raise MissingReference("ConfigMapNotFound", f"ConfigMap {namespace}/{name} not found")
        return self.config_maps[name][key]


class _Pipelines:
    """Loads any file without the word BROKEN; valves are replaced whole, as Pipelines does."""

    def __init__(self) -> None:
        self.loaded: dict[str, dict[str, Any]] = {}

    async def list_pipelines(self) -> list[Any]:
        from openwebui_langfuse.clients.pipelines import PipelineInfo

        return [PipelineInfo(pid, pid, "filter", True) for pid in sorted(self.loaded)]

    async def add_by_url(self, url: str) -> None:
        self.loaded[url.rsplit("/", 1)[-1][:-3]] = {}

    async def upload(self, filename: str, content: bytes) -> None:
        if b"BROKEN" not in content:
            self.loaded.setdefault(
                filename[:-3],
                {
                    "pipelines": ["*"],
                    "priority": 0,
                    "public_key": "",
                    "secret_key": "",
                    "host": "https://cloud.langfuse.com",
                },
            )

    async def delete(self, pipeline_id: str) -> bool:
        return self.loaded.pop(pipeline_id, None) is not None

    async def get_valves(self, pipeline_id: str) -> dict[str, Any]:
        return dict(self.loaded[pipeline_id])

    async def update_valves(self, pipeline_id: str, valves: Mapping[str, Any]) -> None:
        self.loaded[pipeline_id] = dict(valves)


class _Langfuse:
    def __init__(self, failure: tuple[str, bool] | None) -> None:
        self.failure = failure  # (reason, temporary)

    async def check(self, public_key: str, secret_key: str) -> Any:
        from openwebui_langfuse.clients.langfuse import (
            LangfuseCheck,
            LangfuseCheckError,
            LangfuseProject,
        )

        if self.failure is not None:
            reason, temporary = self.failure
            raise LangfuseCheckError(reason, f"sample failure {reason}", temporary=temporary)
        return LangfuseCheck(LangfuseProject("p1", "Project One"), "4.16.0", "otlp+legacy")


def _spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "langfuse": {
            "host": "https://lf.example",
            "publicKey": {"value": "pk-lf-sample"},
            "secretKey": {"secretKeyRef": {"name": "langfuse", "key": "secret-key"}},
        },
        "pipelines": {
            "url": "http://pipelines.example:9099",
            "apiKey": {"secretKeyRef": {"name": "pipelines", "key": "api-key"}},
        },
        "filter": {"source": "configMap", "configMap": {"name": "filter", "key": "filter.py"}},
    }
    spec.update(changes)
    return spec


async def _reconciled(
    spec: dict[str, Any],
    *,
    secrets: dict[str, dict[str, str]] | None = None,
    filter_text: str = "class Pipeline: ...\n",
    langfuse_failure: tuple[str, bool] | None = None,
) -> dict[str, Any]:
    from openwebui_langfuse.passes import InstallMemory, ResourceRef, Upstreams
    from openwebui_langfuse.reconcile import reconcile

    pipelines, langfuse = _Pipelines(), _Langfuse(langfuse_failure)

    async def no_download(url: str) -> bytes:
        raise AssertionError("the samples use no filter URL")

    secrets = (
        secrets
        if secrets is not None
        else {"langfuse": {"secret-key": _SECRET}, "pipelines": {"api-key": _PIPELINES_KEY}}
    )
    result = await reconcile(
        ResourceRef(_NS, _NAME, 1),
        spec,
        None,
        reader=_Reader(secrets, {"filter": {"filter.py": filter_text}}),
        upstreams=Upstreams(
            pipelines=lambda url, key: pipelines,
            langfuse=lambda host: langfuse,
            download=no_download,
        ),
        memory=InstallMemory(),
        now=NOW,
    )
    obj = _base()
    obj["metadata"].update(name=_NAME, namespace=_NS)
    obj["spec"] = spec
    obj["status"] = result.status
    return obj


async def operator_samples() -> list[Sample]:
    """What the operator's reconcile pass writes in each situation."""
    return [
        Sample("op-ready", await _reconciled(_spec()), "Current", "Healthy"),
        Sample(
            "op-bad-keys",
            await _reconciled(_spec(), langfuse_failure=("InvalidCredentials", False)),
            "Failed",
            "Degraded",
        ),
        Sample(
            "op-langfuse-down",
            await _reconciled(_spec(), langfuse_failure=("LangfuseUnreachable", True)),
            "InProgress",
            "Progressing",
        ),
        Sample(
            "op-missing-secret",
            await _reconciled(_spec(), secrets={"pipelines": {"api-key": _PIPELINES_KEY}}),
            "Failed",
            "Degraded",
        ),
        Sample(
            "op-filter-does-not-load",
            await _reconciled(_spec(), filter_text="BROKEN = (\n"),
            "Failed",
            "Degraded",
        ),
        Sample(
            "op-invalid-spec", await _reconciled(_spec(resyncInterval="1s")), "Failed", "Degraded"
        ),
    ]
