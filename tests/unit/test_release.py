"""ci/release.py without building anything: one version number, a clean tree, pinned images."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests import ci_scripts

REPO = Path(__file__).resolve().parents[2]


release = ci_scripts.load("release")


def test_chart_and_package_versions_are_one_number() -> None:
    chart = yaml.safe_load((REPO / "charts/openwebui-langfuse/Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == release.pyproject_version()
    assert release.check_versions(None) == chart["version"]
    assert release.check_versions(f"v{chart['version']}") == chart["version"]


def test_a_tag_that_disagrees_stops_the_release() -> None:
    with pytest.raises(release.ReleaseError) as raised:
        release.check_versions("v9.9.9")
    message = str(raised.value)
    assert "versions disagree" in message
    assert "tag v9.9.9 = 9.9.9" in message
    assert "Chart.yaml appVersion = " in message


def test_a_drifted_chart_field_is_named() -> None:
    text = (REPO / "charts/openwebui-langfuse/Chart.yaml").read_text()
    drifted = text.replace('appVersion: "', 'appVersion: "7.', 1)
    assert release.chart_field("appVersion", drifted).startswith("7.")


def test_pin_image_sets_repository_and_digest_of_that_component_only() -> None:
    values = (REPO / "charts/openwebui-langfuse/values.yaml").read_text()
    digest = "sha256:" + "ab" * 32
    pinned = release.pin_image(values, "operator", "127.0.0.1:5000/owl/operator", digest)
    loaded = yaml.safe_load(pinned)
    assert loaded["operator"]["image"]["repository"] == "127.0.0.1:5000/owl/operator"
    assert loaded["operator"]["image"]["digest"] == digest
    original = yaml.safe_load(values)
    assert loaded["pipelines"]["image"] == original["pipelines"]["image"]
    # Every comment survives: `helm show values` of the packaged chart still documents itself.
    assert pinned.count("# --") == values.count("# --")
    with pytest.raises(release.ReleaseError, match="no nothing.image block"):
        release.pin_image(values, "nothing", "r", digest)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_a_dirty_tree_stops_the_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("a")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "commit", "-q", "-m", "a")
    monkeypatch.setattr(release, "ROOT", tmp_path)
    assert release.check_clean() == _git(tmp_path, "rev-parse", "HEAD").strip()
    (tmp_path / "a.txt").write_text("changed")
    (tmp_path / "new.txt").write_text("new")
    with pytest.raises(release.ReleaseError) as raised:
        release.check_clean()
    assert "the work tree is not clean" in str(raised.value)
    assert "a.txt" in str(raised.value) and "new.txt" in str(raised.value)


def test_dirty_builds_are_never_pushed() -> None:
    code = release.main(["--allow-dirty", "--push", "127.0.0.1:1/x", "--output", "/nonexistent"])
    assert code == 1
