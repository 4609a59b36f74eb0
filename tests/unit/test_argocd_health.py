"""The Argo CD health check shipped in docs/ (argocd-health.lua), run for real twice: in
gopher-lua as Argo CD runs it (its libraries, its object conversion, its result check) and in the
reference Lua 5.1 (lupa). Both must give the same verdict and message.

Same objects as the kstatus test; Argo CD must agree with kstatus (Healthy/Progressing/Degraded
for Current/InProgress/Failed), report Suspended for ``spec.suspend`` and, unlike kstatus, wait
for the operator's first status instead of calling a fresh object healthy.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.e2e.gitops_health import (
    ARGOCD_HEALTH_LUA,
    KSTATUS_TO_ARGOCD,
    REPO,
    ArgoCDHealth,
    Verdict,
    argocd_gopher_lua,
)
from tests.e2e.status_samples import Sample, operator_samples, samples

# Hand-assembled states, then what the operator's reconcile pass itself writes.
SAMPLES = samples() + asyncio.run(operator_samples())


@pytest.fixture(scope="module")
def health() -> ArgoCDHealth:
    return ArgoCDHealth()


@pytest.fixture(scope="module")
def in_argocd() -> dict[str, Verdict]:
    """Every sample judged by gopher-lua in one process."""
    verdicts = argocd_gopher_lua([s.obj for s in SAMPLES])
    return {s.name: v for s, v in zip(SAMPLES, verdicts, strict=True)}


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_argocd_health(sample: Sample, in_argocd: dict[str, Verdict]) -> None:
    assert in_argocd[sample.name].status == sample.argocd


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.name for s in SAMPLES])
def test_reference_lua_agrees_with_argocds_interpreter(
    sample: Sample, health: ArgoCDHealth, in_argocd: dict[str, Verdict]
) -> None:
    assert health(sample.obj) == in_argocd[sample.name]


def test_a_script_needing_the_string_library_fails_as_in_argocd(tmp_path: object) -> None:
    """The test harness is as strict as Argo CD: no string library."""
    from pathlib import Path

    script = Path(str(tmp_path)) / "uses-string.lua"
    script.write_text('return {status = string.upper("healthy"), message = ""}\n')
    with pytest.raises(RuntimeError, match="string"):
        argocd_gopher_lua([SAMPLES[0].obj], script)


# Argo CD has its own word for these states (see test_argocd_health and the samples).
COMPARABLE = [s for s in SAMPLES if s.name not in ("suspended", "deleting", "fresh")]


@pytest.mark.parametrize("sample", COMPARABLE, ids=[s.name for s in COMPARABLE])
def test_argocd_agrees_with_kstatus(sample: Sample, health: ArgoCDHealth) -> None:
    assert health(sample.obj).status == KSTATUS_TO_ARGOCD[sample.kstatus]


def test_degraded_message_names_reason_and_message(health: ArgoCDHealth) -> None:
    bad_keys = next(s for s in SAMPLES if s.name == "bad-keys").obj
    verdict = health(bad_keys)
    assert verdict.message.startswith("InvalidCredentials: ")


def test_progressing_message_says_what_is_awaited(health: ArgoCDHealth) -> None:
    retrying = next(s for s in SAMPLES if s.name == "retrying").obj
    assert health(retrying).message.startswith("RetryingAfterError")
    assert (
        "generation 2" in health(next(s for s in SAMPLES if s.name == "new-generation").obj).message
    )


def test_missing_fields_do_not_break_the_script(health: ArgoCDHealth) -> None:
    # Argo CD hands over whatever the API server has; nil at every level must be survivable.
    bare = {"apiVersion": "openwebui-langfuse.io/v1alpha1", "kind": "LangfuseTracing"}
    assert health(bare).status == "Progressing"
    no_reasons = {
        **bare,
        "metadata": {"generation": 1},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]},
    }
    verdict = health(no_reasons)
    assert (verdict.status, verdict.message) == ("Progressing", "Not ready yet")


def test_install_doc_embeds_the_script_verbatim() -> None:
    """docs/install.md shows the argocd-cm snippet; it must be the tested script, not a copy
    that drifted."""
    doc = (REPO / "docs" / "install.md").read_text()
    match = re.search(
        r"resource\.customizations\.health\.openwebui-langfuse\.io_LangfuseTracing: \|\n"
        r"((?:    .*\n|\n)+)",
        doc,
    )
    assert match, "docs/install.md has no argocd-cm health snippet"
    embedded = "\n".join(line[4:] for line in match.group(1).rstrip("\n").split("\n"))
    assert embedded.strip() == ARGOCD_HEALTH_LUA.read_text().strip()
