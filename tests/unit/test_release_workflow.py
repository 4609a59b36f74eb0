"""The release workflow stays thin: it tests, then releases, with the commands the default run
proves (it cannot run here, so nothing else may hide in it)."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "release.yml"


def test_it_runs_the_test_suite_then_the_release_on_a_version_tag() -> None:
    flow = yaml.safe_load(WORKFLOW.read_text())
    # PyYAML reads the bare key `on` as True.
    trigger = flow.get("on", flow.get(True))
    assert trigger == {"push": {"tags": ["v*"]}}
    (job,) = flow["jobs"].values()
    runs = [step["run"] for step in job["steps"] if "run" in step]
    project = [r for r in runs if "./ci/" in r]
    assert project[0] == "./ci/test"
    assert project[1].startswith("./ci/release --tag ") and '--push "ghcr.io/' in project[1]
    assert len(project) == 2, "every project command the workflow runs is one the suite runs"
    assert flow["permissions"] == {"contents": "read", "packages": "write"}
