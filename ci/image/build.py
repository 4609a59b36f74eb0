#!/usr/bin/env python3
"""Build a project image reproducibly, without Docker: an OCI layout of a commit.

    python3 ci/image/build.py operator --output DIR

writes DIR/operator-oci/ (OCI image layout: oci-layout, index.json, blobs/), DIR/operator.digest
(the manifest digest, sha256:...), DIR/operator.json (reference, layers, sizes),
DIR/operator.sbom.spdx.json (syft) and DIR/operator.build.log. One spec per image
(ci/image/<image>.toml) over one shared Debian base (ci/image/base.toml).

The image is a function of the commit (default HEAD): the source, specs and locks are read
from `git archive` of it, SOURCE_DATE_EPOCH is its commit time, and nothing is resolved
(debian.lock and <image>.lock pin every .deb and wheel by sha256), so two builds of one
commit give one digest. Downloads are cached under the project cache by lock hash; a warm
build uses no network.

    python3 ci/image/build.py operator --update-lock

resolves the base and the image's wheels anew against deb.debian.org and PyPI and rewrites the
locks in the working tree (commit them, then build).

Standard library only, run by any Python >= 3.11: it drives mmdebstrap, bubblewrap, dpkg-deb
and apt-get (installed by ci/provision.py, root required); the host's pip (the project
virtualenv's, from world.json) only downloads and resolves, the image's own Python installs.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # ci/: provision's cache path

import debian  # noqa: E402
import layers  # noqa: E402
import oci  # noqa: E402
import wheels  # noqa: E402
from proc import BuildError, run  # noqa: E402
from provision import default_cache  # noqa: E402
from spec import ImageSpec, available_images, load_base, load_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent.parent
SOURCE_URL = "https://github.com/openwebui-langfuse/openwebui-langfuse"
# Paths whose uncommitted changes a build of the commit does not see (said, not hidden).
IMAGE_INPUTS = ("ci/image", "ci/versions.env", "pyproject.toml", "operator", "README.md")


def world_manifest(cache: Path) -> dict[str, dict[str, str]]:
    path = Path(os.environ.get("OWL_WORLD") or cache / "world.json")
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def host_python(cache: Path) -> Path:
    """A Python with pip for downloads: the project virtualenv's, else this interpreter."""
    venv = world_manifest(cache).get("venv", {}).get("project")
    for candidate in ([Path(venv) / "bin" / "python"] if venv else []) + [Path(sys.executable)]:
        if (
            candidate.exists()
            and subprocess.run(
                [str(candidate), "-m", "pip", "--version"], capture_output=True, check=False
            ).returncode
            == 0
        ):
            return candidate
    raise BuildError("no Python with pip to download wheels: run `python3 ci/provision.py`")


def tool(cache: Path, name: str) -> str:
    """A provisioned binary (world.json) or one on PATH."""
    listed = world_manifest(cache).get("bin", {}).get(name)
    found = listed if listed and Path(listed).exists() else shutil.which(name)
    if not found:
        raise BuildError(f"{name} is not installed: run `python3 ci/provision.py`")
    return found


def file_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class Progress:
    def __init__(self, image: str) -> None:
        self.image = image
        self.started = self.last = time.monotonic()

    def say(self, step: str, detail: str) -> None:
        now = time.monotonic()
        print(f"[image] {self.image:<9} {step:<16} {now - self.last:6.1f}s  {detail}", flush=True)
        self.last = now


# -- the commit --------------------------------------------------------------------------------


def export_commit(commit: str, dest: Path, log: Path) -> tuple[str, int]:
    sha = run(
        "git",
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{commit}^{{commit}}"],
        log,
        capture=True,
    ).strip()
    epoch = int(
        run("git", ["git", "-C", str(ROOT), "log", "-1", "--format=%ct", sha], log, capture=True)
    )
    dest.mkdir(parents=True)
    archive = subprocess.Popen(
        ["git", "-C", str(ROOT), "archive", "--format=tar", sha], stdout=subprocess.PIPE
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise BuildError(f"git archive {sha} failed")
    return sha, epoch


def uncommitted(paths: tuple[str, ...]) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", *paths],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [line[3:] for line in out.splitlines()]


# -- update-lock -------------------------------------------------------------------------------


def update_locks(name: str, cache: Path, log: Path, progress: Progress) -> int:
    """Resolve the base and the image's wheels from the working tree's specs; rewrite locks."""
    base, spec = load_base(ROOT), load_image(ROOT, name)
    python = host_python(cache)
    epoch = int(time.time())
    with tempfile.TemporaryDirectory(prefix="owl-lock-") as tmp:
        work = Path(tmp)
        debs, fetched = debian.resolve(base, work, log, epoch)
        old = base.lock.read_text() if base.lock.exists() else ""
        debian.write_lock(base.lock, base, debs)
        debian.repository(
            base, debs, file_hash(base.lock), cache / "image", work, log, seed=fetched
        )
        progress.say("debian.lock", f"{len(debs)} packages" + _changed(old, base.lock))
        for lock, what, reqs, forbid in (
            (base.build_tools_lock, "Build tools (pip, setuptools)", base.build_tools, []),
            (spec.lock, f"Wheels of the {name} image", spec.requirements, spec.forbid),
        ):
            resolved = wheels.resolve(python, base, reqs, work, log)
            wheels.check_forbidden(lock.name, resolved, forbid)
            old = lock.read_text() if lock.exists() else ""
            wheels.write_lock(lock, what, base, reqs, resolved)
            progress.say(lock.name, f"{len(resolved)} wheels" + _changed(old, lock))
    print(f"[image] locks written in {ROOT / 'ci' / 'image'}: commit them, then build")
    return 0


def _changed(old: str, path: Path) -> str:
    return "" if old == path.read_text() else " (changed)"


# -- build -------------------------------------------------------------------------------------


def build(name: str, output: Path, commit: str, cache: Path, sbom: bool, keep: bool) -> int:
    output.mkdir(parents=True, exist_ok=True)
    log = output / f"{name}.build.log"
    log.write_text("")
    progress = Progress(name)
    work = Path(tempfile.mkdtemp(prefix=f"owl-image-{name}-"))
    try:
        sha, epoch = export_commit(commit, work / "src", log)
        created = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        base, spec = load_base(work / "src"), load_image(work / "src", name)
        dirty = uncommitted(IMAGE_INPUTS) if commit == "HEAD" else []
        progress.say(
            "commit",
            f"{sha[:12]} of {created}"
            + (
                f" (uncommitted changes not in the image: {', '.join(dirty[:4])}"
                f"{' ...' if len(dirty) > 4 else ''})"
                if dirty
                else ""
            ),
        )
        image_cache = cache / "image"
        image_cache.mkdir(parents=True, exist_ok=True)
        layout = output / f"{name}-oci"
        shutil.rmtree(layout, ignore_errors=True)
        blobs = layout / "blobs" / "sha256"

        # 1. Debian base from the locked .debs, then the runtime user.
        debs = debian.read_lock(base.lock, base)
        repo, fetched = debian.repository(base, debs, file_hash(base.lock), image_cache, work, log)
        rootfs = work / "rootfs"
        debian.bootstrap(base, repo, debs, rootfs, log, epoch)
        removed = debian.strip(base, rootfs)
        debian.add_user(base, rootfs)
        before = layers.snapshot(rootfs)
        base_layer = layers.write_layer(rootfs, before, blobs, epoch)
        progress.say(
            "debian base",
            f"{len(debs)} packages ({'downloaded' if fetched else 'cached'}"
            f" .debs), removed {len(removed)} paths, layer {_mb(base_layer.size)}",
        )
        stack = [
            (
                base_layer,
                f"debian {base.suite} base: {len(debs)} packages of "
                f"{base.lock.name} (mmdebstrap --variant={base.variant}); user "
                f"{base.user.uid}:{base.user.gid}",
            )
        ]

        # 2. The locked wheels, installed and compiled by the image's Python.
        python = host_python(cache)
        tools_lock = base.build_tools_lock
        tools_wheels = wheels.read_lock(tools_lock, base, base.build_tools, [])
        tools, _ = wheels.download(
            python, base, tools_lock, file_hash(tools_lock), len(tools_wheels), image_cache, log
        )
        locked = wheels.read_lock(spec.lock, base, spec.requirements, spec.forbid)
        wheel_dir, fetched = wheels.download(
            python, base, spec.lock, file_hash(spec.lock), len(locked), image_cache, log
        )
        wheels.install_locked(rootfs, tools, wheel_dir, spec.lock, log)
        compiled = wheels.compile_new(
            rootfs, layers.changed_paths(before, layers.snapshot(rootfs)), log
        )
        after = layers.snapshot(rootfs)
        deps_layer = layers.write_layer(rootfs, layers.changed_paths(before, after), blobs, epoch)
        progress.say(
            "wheels",
            f"{len(locked)} wheels ({'downloaded' if fetched else 'cached'}),"
            f" {compiled} modules compiled, layer {_mb(deps_layer.size)}",
        )
        stack.append((deps_layer, f"python: {len(locked)} wheels of {spec.lock.name}"))

        # 3. The application: the project's own wheel and the spec's directories.
        before = after
        what = []
        if spec.project:
            wheel = wheels.build_project(
                rootfs, tools, tools_lock, work / "src", work / "app", log, epoch
            )
            wheels.install_project(rootfs, tools, wheel, log)
            wheels.compile_new(rootfs, layers.changed_paths(before, layers.snapshot(rootfs)), log)
            what.append(f"{wheel.name} built from {sha[:12]}")
        for d in spec.dirs:
            target = rootfs / d.path.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            uid, gid = (int(x) for x in d.owner.split(":"))
            os.chown(target, uid, gid)
            target.chmod(d.mode)
            what.append(f"{d.path} ({d.owner}, {d.mode:o})")
        if what:
            app_layer = layers.write_layer(
                rootfs, layers.changed_paths(before, layers.snapshot(rootfs)), blobs, epoch
            )
            stack.append((app_layer, "app: " + "; ".join(what)))
            progress.say("app", f"{'; '.join(what)}, layer {_mb(app_layer.size)}")

        # 4. Config, manifest, index.
        labels = {
            "org.opencontainers.image.source": SOURCE_URL,
            "org.opencontainers.image.version": spec.version,
            "org.opencontainers.image.revision": sha,
            "org.opencontainers.image.created": created,
            "org.opencontainers.image.licenses": spec.licenses,
            "org.opencontainers.image.title": spec.title,
            "org.opencontainers.image.description": spec.description,
        }
        config = oci.ImageConfig(
            user=f"{base.user.uid}:{base.user.gid}",
            entrypoint=spec.entrypoint,
            cmd=spec.cmd,
            env=spec.env,
            ports=spec.ports,
            labels=labels,
            workdir=spec.workdir,
        )
        digest = oci.write_layout(layout, stack, config, created, spec.version)
        (output / f"{name}.digest").write_text(digest + "\n")
        info = {
            "image": name,
            "repository": spec.repository,
            "tag": spec.version,
            "reference": f"{spec.repository}:{spec.version}@{digest}",
            "digest": digest,
            "layout": layout.name,
            "layout_ref": f"oci:{layout}:{spec.version}",
            "revision": sha,
            "created": created,
            "layers": [
                {
                    "digest": layer.digest,
                    "size": layer.size,
                    "diff_id": layer.diff_id,
                    "unpacked": layer.unpacked,
                    "entries": layer.entries,
                    "created_by": why,
                }
                for layer, why in stack
            ],
            "size": {
                "compressed": sum(layer.size for layer, _ in stack),
                "unpacked": sum(layer.unpacked for layer, _ in stack),
            },
            "removed": removed,
        }
        (output / f"{name}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        progress.say(
            "layout",
            f"{digest} ({_mb(info['size']['compressed'])} compressed, "
            f"{_mb(info['size']['unpacked'])} unpacked)",
        )

        if sbom:
            sbom_path = output / f"{name}.sbom.spdx.json"
            write_sbom(cache, layout, spec, sbom_path, log)
            packages = json.loads(sbom_path.read_text()).get("packages", [])
            progress.say("sbom", f"{sbom_path.name}: {len(packages)} packages (syft)")
        print(
            f"[image] {name}: {info['reference']} in {time.monotonic() - progress.started:.1f}s"
            f" -> {layout}",
            flush=True,
        )
        return 0
    finally:
        if keep:
            print(f"[image] work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def write_sbom(cache: Path, layout: Path, spec: ImageSpec, out: Path, log: Path) -> None:
    """SPDX JSON by syft of the layout: dpkg's status and the Python dist-info it finds."""
    syft = tool(cache, "syft")
    run(
        "sbom",
        [
            syft,
            "scan",
            f"oci-dir:{layout}",
            "--quiet",
            "--output",
            f"spdx-json={out}",
            "--source-name",
            spec.repository,
            "--source-version",
            spec.version,
        ],
        log,
        # No update check: a build talks to nothing but the package mirrors.
        env={"SYFT_CHECK_FOR_APP_UPDATE": "false"},
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    images = available_images(ROOT)
    parser = argparse.ArgumentParser(
        prog="ci/image/build.py",
        description=__doc__.split("\n\n")[0].strip(),
        epilog="Specs: ci/image/<image>.toml over ci/image/base.toml. Needs root, mmdebstrap, "
        "bwrap (python3 ci/provision.py installs them).",
    )
    parser.add_argument("image", choices=images, help="which image spec to build")
    parser.add_argument("--output", type=Path, help="directory for the layout, digest, SBOM")
    parser.add_argument("--commit", default="HEAD", help="commit to build (default: HEAD)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=default_cache(),
        help="project cache (default: $OWL_CACHE or ~/.cache/openwebui-langfuse)",
    )
    parser.add_argument(
        "--update-lock",
        action="store_true",
        help="resolve debian.lock, build-tools.lock and <image>.lock anew "
        "(network) into the working tree, and build nothing",
    )
    parser.add_argument("--no-sbom", dest="sbom", action="store_false", help="skip the SBOM")
    parser.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the temporary work directory (root filesystem, source)",
    )
    args = parser.parse_args(argv)
    try:
        if args.update_lock:
            log = Path(tempfile.gettempdir()) / f"owl-update-lock-{args.image}.log"
            log.write_text("")
            print(f"[image] log: {log}")
            return update_locks(args.image, args.cache, log, Progress(args.image))
        if args.output is None:
            parser.error("--output is required to build")
        if os.geteuid() != 0:
            raise BuildError(
                "building needs root (mmdebstrap --mode=root installs packages with their owners)"
            )
        return build(
            args.image, args.output.resolve(), args.commit, args.cache, args.sbom, args.keep_work
        )
    except BuildError as exc:
        print(f"[image] FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
