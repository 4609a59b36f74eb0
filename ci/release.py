#!/usr/bin/env python3
"""Build a release: the operator image, its SBOM and the packaged chart; push them when asked.

Run through ``./ci/release`` (which provisions the tools first). Standard library only, like
``ci/provision.py``: it runs before any virtualenv is needed, on a developer's machine or on
the forge's runner, and it is the only release path (the workflow just calls it).

    ./ci/release [--output DIR] [--push REGISTRY [--plain-http]] [--allow-dirty]

Leaves in DIR (default ``dist/``):

* ``operator-oci/``           the operator image as an OCI image layout
* ``operator.digest``         its manifest digest (``sha256:...``)
* ``operator.sbom.spdx.json`` its SBOM (every Debian and Python package in it)
* ``openwebui-langfuse-<version>.tgz`` the chart, whose default operator image is
  ``<REGISTRY>/operator@<digest>``: the image of this very commit, pinned by digest
* ``release.json``            what was built (and pushed), for people and the workflow

Refuses a dirty work tree (the image says which commit it is: it must be that commit), a
version that differs between ``pyproject.toml``, ``Chart.yaml`` (``version``, ``appVersion``) and
the tag being released (``--tag`` or ``GITHUB_REF_NAME``). A push reports done only after the
registry answers with the same digest for the image and the chart is stored; any refusal is
printed with the registry's answer and the release exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The cache provisioning fills (one definition: ci/provision.py, a sibling script).
sys.path.insert(0, str(ROOT / "ci"))
from provision import default_cache  # noqa: E402

CHART_DIR = ROOT / "charts" / "openwebui-langfuse"
DEFAULT_REGISTRY = "ghcr.io/openwebui-langfuse"
# Built and pushed together; the packaged chart pins each by digest (values `<name>.image`).
IMAGES = ("operator", "pipelines")


class ReleaseError(Exception):
    """The release cannot go on; the message says why and what to do."""


def say(message: str) -> None:
    print(f"[release] {message}", flush=True)


def run(cmd: list[str], *, what: str, cwd: Path = ROOT) -> str:
    """Run a command; its output (stdout, then stderr). On failure raise with the command's
    own answer, so a registry's refusal reaches the person releasing."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        answer = (proc.stderr.strip() or proc.stdout.strip() or "no output")[-2000:]
        raise ReleaseError(f"{what} failed (exit {proc.returncode}): {answer}")
    return proc.stdout + proc.stderr


def world_binary(name: str) -> str:
    manifest = default_cache() / "world.json"
    try:
        return str(json.loads(manifest.read_text())["bin"][name])
    except (OSError, KeyError, ValueError):
        found = shutil.which(name)
        if found:
            return found
        raise ReleaseError(f"{name} is not provisioned ({manifest}): run ./ci/release") from None


# -- what is released -----------------------------------------------------------------------


def pyproject_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if not match:
        raise ReleaseError("pyproject.toml has no [project] version")
    return match[1]


def chart_field(name: str, text: str | None = None) -> str:
    text = text if text is not None else (CHART_DIR / "Chart.yaml").read_text()
    match = re.search(rf"^{name}:\s*\"?([^\"\n]+?)\"?\s*$", text, re.M)
    if not match:
        raise ReleaseError(f"Chart.yaml has no {name}")
    return match[1]


def check_versions(tag: str | None) -> str:
    """The one release number, or an error naming each place that disagrees."""
    found = {
        "pyproject.toml version": pyproject_version(),
        "Chart.yaml version": chart_field("version"),
        "Chart.yaml appVersion": chart_field("appVersion"),
    }
    if tag:
        found[f"tag {tag}"] = tag[1:] if tag.startswith("v") else tag
    if len(set(found.values())) != 1:
        listing = ", ".join(f"{where} = {value}" for where, value in found.items())
        raise ReleaseError(f"versions disagree: {listing}; make them one number")
    return found["pyproject.toml version"]


def check_clean() -> str:
    """The commit being released; refuses uncommitted or untracked files."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=normal"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if status.strip():
        lines = status.strip().splitlines()
        shown = "\n  ".join(lines[:10]) + ("\n  ..." if len(lines) > 10 else "")
        raise ReleaseError(
            "the work tree is not clean; a release is built from a commit, commit or remove:\n  "
            + shown
        )
    return head()


def head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


# -- building ---------------------------------------------------------------------------------


def build_image(name: str, out: Path) -> str:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, str(ROOT / "ci" / "image" / "build.py"), name, "--output", str(out)],
        cwd=ROOT,
        check=True,
    )
    digest = (out / f"{name}.digest").read_text().strip()
    say(f"image {name}: {digest} in {time.monotonic() - started:.1f}s")
    return digest


def package_chart(version: str, registry: str, digests: dict[str, str], out: Path) -> Path:
    """helm package a copy of the chart whose default images are this release's, by digest."""
    helm = world_binary("helm")
    with tempfile.TemporaryDirectory(prefix="owl-chart-") as tmp:
        chart = Path(tmp) / CHART_DIR.name
        shutil.copytree(CHART_DIR, chart)
        values = chart / "values.yaml"
        text = values.read_text()
        for name, digest in digests.items():
            text = pin_image(text, name, f"{registry}/{name}", digest)
        values.write_text(text)
        run([helm, "lint", str(chart)], what="helm lint")
        run(
            [
                helm,
                "package",
                str(chart),
                "--version",
                version,
                "--app-version",
                version,
                "--destination",
                str(out),
            ],
            what="helm package",
        )
    package = out / f"openwebui-langfuse-{version}.tgz"
    if not package.is_file():
        raise ReleaseError(f"helm package left no {package.name}")
    return package


def pin_image(values: str, component: str, repository: str, digest: str) -> str:
    """Set ``<component>.image.repository`` and ``.digest`` in values.yaml text, keeping every
    comment (the packaged chart's README and `helm show values` still read as documented)."""
    block = re.search(
        rf"^{component}:\n(?:(?:  .*)?\n)*?  image:\n((?:    .*\n|\s*\n)+)", values, re.M
    )
    if not block:
        raise ReleaseError(f"values.yaml has no {component}.image block")
    start, end = block.span(1)
    image = block[1]
    for key, value in (("repository", repository), ("digest", digest)):
        image, count = re.subn(
            rf"^(    {key}:).*$", rf'\g<1> "{value}"', image, count=1, flags=re.M
        )
        if count != 1:
            raise ReleaseError(f"values.yaml has no {component}.image.{key}")
    return values[:start] + image + values[end:]


# -- pushing ------------------------------------------------------------------------------------


def push(
    registry: str, version: str, digests: dict[str, str], chart: Path, out: Path, plain_http: bool
) -> dict[str, str]:
    """Push each image (then check the registry's digest) and the chart; the pushed refs."""
    crane = world_binary("crane")
    helm = world_binary("helm")
    crane_flags = ["--insecure"] if plain_http else []
    pushed: dict[str, str] = {}
    for name, digest in digests.items():
        ref = f"{registry}/{name}:{version}"
        run([crane, "push", *crane_flags, str(out / f"{name}-oci"), ref], what=f"push of {ref}")
        remote = run([crane, "digest", *crane_flags, ref], what=f"digest of {ref}").strip()
        if remote != digest:
            raise ReleaseError(f"{ref}: the registry holds {remote}, the release built {digest}")
        pushed[name] = f"{registry}/{name}@{digest}"
        say(f"pushed {ref} ({digest})")
    helm_flags = ["--plain-http"] if plain_http else []
    answer = run(
        [helm, "push", str(chart), f"oci://{registry}/charts", *helm_flags],
        what=f"helm push to oci://{registry}/charts",
    )
    chart_digest = re.search(r"Digest:\s*(sha256:[0-9a-f]{64})", answer)
    pushed["chart"] = f"oci://{registry}/charts/openwebui-langfuse:{version}"
    if chart_digest:
        pushed["chart_digest"] = chart_digest[1]
    say(f"pushed {pushed['chart']} ({pushed.get('chart_digest', 'digest not reported')})")
    return pushed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist", metavar="DIR")
    parser.add_argument(
        "--push", metavar="REGISTRY", help=f"push the images and the chart, e.g. {DEFAULT_REGISTRY}"
    )
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="the registry speaks plain HTTP (a local test registry)",
    )
    parser.add_argument(
        "--tag",
        default=os.environ.get("GITHUB_REF_NAME") or None,
        help="the tag being released, checked against the versions (default: $GITHUB_REF_NAME)",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="skip the clean-tree check; the images are still built from HEAD, the chart is "
        "packaged from the work tree (never for a push)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        if args.tag and not args.tag.startswith("v"):
            args.tag = None  # a branch name, not a version tag
        version = check_versions(args.tag)
        if args.allow_dirty and args.push:
            raise ReleaseError("--allow-dirty cannot be pushed: a release is a commit")
        revision = head() if args.allow_dirty else check_clean()
        registry = (args.push or DEFAULT_REGISTRY).removeprefix("oci://").rstrip("/")
        out = args.output.resolve()
        out.mkdir(parents=True, exist_ok=True)
        say(f"openwebui-langfuse {version} at {revision[:12]} into {out}")
        digests = {name: build_image(name, out) for name in IMAGES}
        for stale in out.glob("openwebui-langfuse-*.tgz"):
            stale.unlink()
        chart = package_chart(version, registry, digests, out)
        say(
            f"chart {chart.name}: default images "
            + ", ".join(f"{registry}/{n}@{d}" for n, d in digests.items())
        )
        record: dict[str, object] = {
            "version": version,
            "revision": revision,
            "registry": registry,
            "images": digests,
            "chart": chart.name,
            "pushed": {},
        }
        (out / "release.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        if args.push:
            record["pushed"] = push(registry, version, digests, chart, out, args.plain_http)
            (out / "release.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    except ReleaseError as exc:
        say(f"FAILED: {exc}")
        return 1
    except subprocess.CalledProcessError as exc:
        say(f"FAILED: {' '.join(map(str, exc.cmd[:3]))} ... exited {exc.returncode}")
        return 1
    say(f"done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
