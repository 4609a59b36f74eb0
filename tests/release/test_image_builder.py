"""The image builder's own rules, without building: layer bytes, and when a lock is stale.

ci/image/ is a directory of scripts (run as ``python3 ci/image/build.py``), so its modules are
imported from there.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

from tests.release.conftest import ROOT

sys.path.insert(0, str(ROOT / "ci" / "image"))

import debian  # noqa: E402
import layers  # noqa: E402
import spec  # noqa: E402
import wheels  # noqa: E402
from proc import BuildError  # noqa: E402

EPOCH = 1_700_000_000


def tree(root: Path, mtime: int, order: list[str]) -> Path:
    """A small tree with a file, a hard link, a symlink and a directory, made in ``order``."""
    make = {
        "usr/bin/tool": lambda p: p.write_bytes(b"#!/bin/sh\n"),
        "usr/share/data.txt": lambda p: p.write_text("data\n"),
    }
    for rel in order:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        make[rel](path)
    (root / "usr/bin/tool").chmod(0o755)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-alias")
    (root / "bin").symlink_to("usr/bin")
    (root / "dev").mkdir()
    (root / "dev" / "null-copy").write_text("mount point content is left out\n")
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (mtime, mtime), follow_symlinks=False)
    return root


def test_a_layer_is_the_same_bytes_whatever_the_order_and_times(tmp_path: Path) -> None:
    one = tree(tmp_path / "one", EPOCH + 500, ["usr/bin/tool", "usr/share/data.txt"])
    two = tree(tmp_path / "two", EPOCH + 9000, ["usr/share/data.txt", "usr/bin/tool"])
    a = layers.write_layer(one, layers.snapshot(one), tmp_path / "blobs-a", EPOCH)
    b = layers.write_layer(two, layers.snapshot(two), tmp_path / "blobs-b", EPOCH)
    assert (a.digest, a.diff_id) == (b.digest, b.diff_id)
    assert a.path.read_bytes() == b.path.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(a.path.read_bytes()))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == list(members), "entries are sorted"
    assert "dev" in members and "dev/null-copy" not in members
    assert {m.mtime for m in members.values()} == {EPOCH}, "clamped to SOURCE_DATE_EPOCH"
    # Numeric owners as on disk (dpkg's; root's for what the build adds), no names.
    owners = {(m.uid, m.gid, m.uname, m.gname) for m in members.values()}
    assert owners == {(os.getuid(), os.getgid(), "", "")}
    assert members["usr/bin/tool-alias"].islnk()
    assert members["usr/bin/tool-alias"].linkname == "usr/bin/tool"
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["usr/bin/tool"].mode == 0o755


def test_an_upper_layer_holds_changes_and_their_parents_and_refuses_deletions(
    tmp_path: Path,
) -> None:
    root = tree(tmp_path / "root", EPOCH, ["usr/bin/tool", "usr/share/data.txt"])
    before = layers.snapshot(root)
    (root / "usr/local/lib").mkdir(parents=True)
    (root / "usr/local/lib/new.py").write_text("x = 1\n")
    assert layers.changed_paths(before, layers.snapshot(root)) == [
        "usr",
        "usr/local",
        "usr/local/lib",
        "usr/local/lib/new.py",
    ]
    (root / "usr/share/data.txt").unlink()
    with pytest.raises(ValueError, match="deleted"):
        layers.changed_paths(before, layers.snapshot(root))


def test_a_wheel_lock_must_satisfy_the_requirements_and_never_hold_a_forbidden_package(
    tmp_path: Path,
) -> None:
    base = spec.load_base(ROOT)
    lock = tmp_path / "x.lock"
    locked = [wheels.Wheel("kopf", "1.45.2", "a" * 64), wheels.Wheel("PyYAML", "6.0.3", "b" * 64)]
    wheels.write_lock(lock, "Wheels of x", base, ["kopf==1.45.2", "pyyaml"], locked)
    assert wheels.read_lock(lock, base, ["kopf==1.45.2", "PyYAML==6.0.3"], []) == locked
    with pytest.raises(BuildError, match=r"not satisfied: kopf==1\.46\.0"):
        wheels.read_lock(lock, base, ["kopf==1.46.0"], [])
    with pytest.raises(BuildError, match="not satisfied: httpx"):
        wheels.read_lock(lock, base, ["kopf", "httpx"], [])
    with pytest.raises(BuildError, match="forbids"):
        wheels.read_lock(lock, base, ["kopf"], ["pyyaml"])


def test_the_committed_locks_fit_the_specs() -> None:
    base = spec.load_base(ROOT)
    debs = debian.read_lock(base.lock, base)
    assert {"python3.11", "ca-certificates", "tzdata", "dpkg"} <= {d.name for d in debs}
    assert not {"apt", "perl", "usrmerge"} & {d.name for d in debs}
    operator = spec.load_image(ROOT, "operator")
    assert not [r for r in operator.requirements if r.startswith("kubernetes")]
    wheels.read_lock(operator.lock, base, operator.requirements, operator.forbid)
    wheels.read_lock(base.build_tools_lock, base, base.build_tools, [])


def test_a_debian_lock_from_another_include_list_is_stale(tmp_path: Path) -> None:
    base = spec.load_base(ROOT)
    lock = tmp_path / "debian.lock"
    debian.write_lock(lock, base, [debian.Deb("dash", "0.5.12-2", "amd64", "c" * 64)])
    assert debian.read_lock(lock, base)[0].name == "dash"
    other = spec.Base(**{**base.__dict__, "include": [*base.include, "curl"]})
    with pytest.raises(BuildError, match="stale"):
        debian.read_lock(lock, other)
