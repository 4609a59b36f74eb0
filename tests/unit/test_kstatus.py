"""The operator's status means the right thing to kstatus (Flux, Helm 4 --wait, cli-utils).

Runs the real ``sigs.k8s.io/cli-utils/pkg/kstatus/status`` (built from the Go module proxy on
first use and cached; see tests/e2e/gitops_health.py) on objects in every state the operator
reports: Current when Ready, InProgress while reconciling or before the latest generation is
observed, Failed when stalled.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.gitops_health import kstatus
from tests.e2e.status_samples import Sample, operator_samples, samples

# Hand-assembled states, then what the operator's reconcile pass itself writes.
SAMPLES = samples() + asyncio.run(operator_samples())


@pytest.fixture(scope="module")
def verdicts() -> dict[str, str]:
    results = kstatus([s.obj for s in SAMPLES])  # one process for all samples
    return {s.name: r.status for s, r in zip(SAMPLES, results, strict=True)}


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_kstatus_verdict(sample: Sample, verdicts: dict[str, str]) -> None:
    assert verdicts[sample.name] == sample.kstatus


def test_stalled_message_names_the_reason() -> None:
    bad_keys = next(s for s in SAMPLES if s.name == "bad-keys")
    (verdict,) = kstatus([bad_keys.obj])
    assert verdict.status == "Failed"
    assert "InvalidCredentials" in verdict.message


def test_a_ready_object_with_a_newer_generation_is_not_current() -> None:
    ready = next(s for s in SAMPLES if s.name == "ready").obj
    bumped = {**ready, "metadata": {**ready["metadata"], "generation": 7}}
    (verdict,) = kstatus([bumped])
    assert verdict.status == "InProgress"
    assert "generation is 7" in verdict.message
