"""ci/provision.py fails fast and says which step, which command and where its log is."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "ci" / "provision.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("owl_provision", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


provision = _load()


def test_every_pinned_part_is_read_from_the_versions_file() -> None:
    versions = provision.read_versions()
    for key in (
        "KUBERNETES_VERSION",
        "ETCD_VERSION",
        "KWOK_VERSION",
        "HELM_VERSION",
        "HELM_DOCS_VERSION",
        "OPEN_WEBUI_VERSION",
        "PIPELINES_VERSION",
    ):
        assert versions[key], key
    assert "pydantic==2.7.1" in versions["PIPELINES_PINS"]


def test_a_failing_command_names_the_step_the_command_and_its_log(tmp_path: Path) -> None:
    prov = provision.Provisioner(tmp_path, provision.read_versions())
    with pytest.raises(provision.StepFailed) as failed:
        prov.run("example", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
    message = str(failed.value)
    assert "step 'example' failed (exit 3)" in message
    assert "raise SystemExit(3)" in message
    assert str(tmp_path / "logs" / "example.log") in message
    assert "boom" in message  # the log's last lines


def test_a_missing_command_is_named_in_the_message_and_the_log(tmp_path: Path) -> None:
    prov = provision.Provisioner(tmp_path, provision.read_versions())
    with pytest.raises(provision.StepFailed, match="command not found: no-such-tool"):
        prov.run("example", ["no-such-tool", "--version"])
    assert "command not found: no-such-tool" in (tmp_path / "logs" / "example.log").read_text()


def test_without_go_provisioning_stops_at_once_naming_go(tmp_path: Path) -> None:
    # A PATH with only the Python interpreter: no go.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bindir), "OWL_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "kubernetes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "step 'go': Go >= 1.26 is required and 'go' is not on PATH" in result.stdout


def test_an_interrupted_part_is_rebuilt_and_a_complete_one_is_kept(tmp_path: Path) -> None:
    prov = provision.Provisioner(tmp_path, provision.read_versions())
    builds: list[Path] = []

    def build(out: Path) -> None:
        builds.append(out)
        (out / "artifact").write_text("built")

    (tmp_path / "part-1").mkdir()
    (tmp_path / "part-1" / "half-written").write_text("")  # no completion marker
    final = prov.part("part", "part-1", build)
    assert builds == [final]
    assert not (final / "half-written").exists()
    assert prov.part("part", "part-1", build) == final
    assert builds == [final]  # the complete part was not built again


def test_both_kubernetes_releases_are_listed_by_role_and_keyed_by_version(tmp_path: Path) -> None:
    versions = {**provision.read_versions(), "KUBERNETES_OLDEST_VERSION": "1.30.99"}
    prov = provision.Provisioner(tmp_path, versions)
    current = versions["KUBERNETES_VERSION"]
    for version in (current, "1.30.99"):  # already built: nothing runs
        (tmp_path / f"kubernetes-{version}").mkdir()
        (tmp_path / f"kubernetes-{version}" / ".complete").write_text("")
    prov.kubernetes()
    prov.kubernetes_oldest()
    assert prov.manifest["bin"]["kube-apiserver"] == str(
        tmp_path / f"kubernetes-{current}" / "bin" / "kube-apiserver"
    )
    assert prov.manifest["kubernetes"] == {
        "current": {"version": current, "bin": str(tmp_path / f"kubernetes-{current}" / "bin")},
        "oldest": {"version": "1.30.99", "bin": str(tmp_path / "kubernetes-1.30.99" / "bin")},
    }
