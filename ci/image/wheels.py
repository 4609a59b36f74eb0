"""Python wheels: hash-pinned locks, the cached downloads, and installing them into the tree.

A lock is a pip requirements file of the whole closure, one wheel per package with its sha256,
for the image's interpreter (CPython 3.11, manylinux for bookworm's glibc, x86_64): resolved by
the host's pip (``install --dry-run --report`` with the image's platform tags), so no wheel of
the host's own platform sneaks in. Builds only download (``--require-hashes --no-deps``) into
``<cache>/wheels-<lock hash>/`` and install from there with the network unshared.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from proc import BuildError, run
from sandbox import run_in_tree
from spec import Base

LOCK_HEADER = """\
# {what}: the whole closure, one wheel each, with its sha256.
# Written by `python3 ci/image/build.py IMAGE --update-lock`; do not edit.
"""


@dataclass(frozen=True, order=True)
class Wheel:
    name: str
    version: str
    sha256: str


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def target_args(base: Base) -> list[str]:
    """pip options selecting wheels for the image's interpreter instead of the host's."""
    major, minor = (int(x) for x in base.glibc.split("."))
    tags = [f"manylinux_{major}_{m}_{base.arch}" for m in range(minor, 4, -1)]
    # The legacy names of manylinux_2_17 / 2_12 / 2_5, which older wheels still carry alone.
    tags += [f"manylinux2014_{base.arch}", f"manylinux2010_{base.arch}", f"manylinux1_{base.arch}"]
    args = [
        "--only-binary=:all:",
        "--python-version",
        base.python_version,
        "--implementation",
        "cp",
        "--abi",
        f"cp{base.python_version.replace('.', '')}",
    ]
    for tag in tags:
        args += ["--platform", tag]
    return args


def lock_key(base: Base) -> str:
    """The interpreter a lock is for; a lock for another one is stale."""
    return f"cp{base.python_version.replace('.', '')} glibc {base.glibc} {base.arch}"


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9_.-]+)\s*(\[[^\]]*\])?\s*(?:==\s*([^\s;,]+))?")


def unmet(requirements: list[str], wheels: list[Wheel]) -> list[str]:
    """Requirements the locked set does not satisfy: a missing name, or another pinned version.

    Satisfaction rather than equality with the resolved list, so a dependency that joins
    pyproject.toml while already in the closure needs no new lock; --update-lock still prunes.
    """
    locked = {normalize(w.name): w.version for w in wheels}
    missing = []
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if not match:
            raise BuildError(f"cannot read the requirement {requirement!r}")
        name, pinned = normalize(match[1]), match[3]
        if name not in locked or (pinned is not None and locked[name] != pinned):
            missing.append(requirement)
    return missing


def resolve(
    host_python: Path, base: Base, requirements: list[str], work: Path, log: Path
) -> list[Wheel]:
    """The closure of ``requirements`` for the image, as pip would install it there."""
    report = work / f"report-{os.getpid()}-{len(list(work.glob('report-*')))}.json"
    run(
        "wheels",
        [
            str(host_python),
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--report",
            str(report),
            "--target",
            str(work / "unused-target"),
            *target_args(base),
            *requirements,
        ],
        log,
    )
    wheels = []
    for item in json.loads(report.read_text())["install"]:
        info = item["download_info"]
        sha = info.get("archive_info", {}).get("hashes", {}).get("sha256")
        if not sha or not info["url"].endswith(".whl"):
            raise BuildError(f"pip resolved {info['url']} without a wheel sha256")
        wheels.append(Wheel(item["metadata"]["name"], item["metadata"]["version"], sha))
    return sorted(wheels, key=lambda w: normalize(w.name))


def write_lock(
    path: Path, what: str, base: Base, requirements: list[str], wheels: list[Wheel]
) -> None:
    lines = [
        LOCK_HEADER.format(what=what)
        + f"# for: {lock_key(base)}; requires: {' '.join(requirements)}"
    ]
    lines += [f"{w.name}=={w.version} \\\n    --hash=sha256:{w.sha256}" for w in wheels]
    path.write_text("\n".join(lines) + "\n")


def read_lock(path: Path, base: Base, requirements: list[str], forbid: list[str]) -> list[Wheel]:
    text = path.read_text() if path.exists() else ""
    key = next(
        (line.removeprefix("# for: ") for line in text.splitlines() if line.startswith("# for: ")),
        "",
    )
    wheels = [
        Wheel(m[1], m[2], m[3])
        for m in re.finditer(
            r"^([A-Za-z0-9_.-]+)==(\S+) \\\n\s+--hash=sha256:([0-9a-f]{64})$", text, re.M
        )
    ]
    stale = unmet(requirements, wheels)
    if key.split(";")[0] != lock_key(base) or stale:
        raise BuildError(
            f"{path.name} is stale or missing (locked for '{key}'; not satisfied: "
            f"{', '.join(stale) or '-'}): run `python3 ci/image/build.py IMAGE --update-lock`"
        )
    check_forbidden(path.name, wheels, forbid)
    return wheels


def check_forbidden(what: str, wheels: list[Wheel], forbid: list[str]) -> None:
    banned = {normalize(f) for f in forbid}
    found = sorted(w.name for w in wheels if normalize(w.name) in banned)
    if found:
        raise BuildError(
            f"{what} contains {', '.join(found)}, which the spec forbids "
            "(a dependency pulls it in: see `pip install --dry-run --report`)"
        )


def download(
    host_python: Path, base: Base, lock: Path, lock_hash: str, count: int, cache: Path, log: Path
) -> tuple[Path, bool]:
    """The wheels of ``lock`` in ``<cache>/wheels-<lock hash>``; returns it and whether fetched."""
    final = cache / f"wheels-{lock_hash}"
    if (final / ".complete").exists():
        return final, False
    tmp = cache / f"wheels-{lock_hash}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    run(
        "wheels",
        [
            str(host_python),
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--disable-pip-version-check",
            "--no-cache-dir",
            *target_args(base),
            "--dest",
            str(tmp),
            "--requirement",
            str(lock),
        ],
        log,
    )
    got = len(list(tmp.glob("*.whl")))
    if got != count:
        raise BuildError(f"{lock.name}: {count} wheels locked, pip downloaded {got}")
    (tmp / ".complete").write_text("")
    try:
        tmp.rename(final)
    except OSError:  # a concurrent build completed it first
        shutil.rmtree(tmp)
    return final, True


# -- inside the tree ---------------------------------------------------------------------------

PIP_OPTIONS = [
    "--no-index",
    "--no-deps",
    "--only-binary=:all:",
    "--no-compile",
    "--no-cache-dir",
    "--disable-pip-version-check",
    "--root-user-action=ignore",
    # Debian marks its Python externally managed (PEP 668); in an image build the
    # locked set is the only thing that ever goes into /usr/local, so that is moot.
    "--break-system-packages",
    "--quiet",
]


def _pip(tools: Path) -> str:
    wheels = sorted(tools.glob("pip-*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"expected one pip wheel in {tools}, found {len(wheels)}")
    # pip runs from its own wheel (a zip on sys.path), so it never lands in the image.
    return f"/tmp/owl/tools/{wheels[0].name}/pip"


def install_locked(rootfs: Path, tools: Path, wheels: Path, lock: Path, log: Path) -> None:
    run_in_tree(
        "install wheels",
        rootfs,
        [
            "python3",
            _pip(tools),
            "install",
            *PIP_OPTIONS,
            "--require-hashes",
            "--find-links",
            "/tmp/owl/wheels",
            "--requirement",
            f"/tmp/owl/{lock.name}",
        ],
        log,
        ro_binds={
            "/tmp/owl/tools": tools,
            "/tmp/owl/wheels": wheels,
            f"/tmp/owl/{lock.name}": lock,
        },
    )


def build_project(
    rootfs: Path, tools: Path, tools_lock: Path, src: Path, out: Path, log: Path, epoch: int
) -> Path:
    """``pip wheel --no-deps`` of the source tree with the locked setuptools; returns the wheel.

    setuptools goes to the sandbox's /tmp for this one command, never into the tree.
    """
    out.mkdir(parents=True, exist_ok=True)
    script = (
        f"python3 {_pip(tools)} install {' '.join(PIP_OPTIONS)} --require-hashes "
        "--find-links /tmp/owl/tools --target /tmp/build-tools "
        f"--requirement /tmp/owl/{tools_lock.name} && "
        "PYTHONPATH=/tmp/build-tools python3 -m pip wheel --quiet --no-deps "
        "--no-build-isolation --no-index --no-cache-dir --disable-pip-version-check "
        "--wheel-dir /tmp/owl/out /tmp/owl/src"
    )
    run_in_tree(
        "build project wheel",
        rootfs,
        ["sh", "-c", script],
        log,
        ro_binds={"/tmp/owl/tools": tools, f"/tmp/owl/{tools_lock.name}": tools_lock},
        binds={"/tmp/owl/src": src, "/tmp/owl/out": out},
        env={"SOURCE_DATE_EPOCH": str(epoch), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    built = sorted(out.glob("*.whl"))
    if len(built) != 1:
        raise BuildError(f"pip wheel made {len(built)} wheels of the project, expected one")
    return built[0]


def install_project(rootfs: Path, tools: Path, wheel: Path, log: Path) -> None:
    name, version = wheel.name.split("-")[:2]
    run_in_tree(
        "install project",
        rootfs,
        [
            "python3",
            _pip(tools),
            "install",
            *PIP_OPTIONS,
            "--find-links",
            "/tmp/owl/out",
            f"{name}=={version}",
        ],
        log,
        ro_binds={"/tmp/owl/tools": tools, "/tmp/owl/out": wheel.parent},
    )


def compile_new(rootfs: Path, paths: list[str], log: Path) -> int:
    """Byte-compile the new .py files: unchecked-hash .pyc files (no source mtime in them, and
    never rewritten at run time on a read-only root), with a fixed hash seed for stable
    constant ordering."""
    sources = [f"/{p}" for p in paths if p.endswith(".py") and (rootfs / p).is_file()]
    listing = rootfs.parent / f"compile-{os.getpid()}.txt"
    listing.write_text("\n".join(sources) + "\n")
    run_in_tree(
        "compile",
        rootfs,
        [
            "python3",
            "-m",
            "compileall",
            "-q",
            "--invalidation-mode",
            "unchecked-hash",
            "-i",
            "/tmp/owl/list",
        ],
        log,
        ro_binds={"/tmp/owl/list": listing},
        env={"PYTHONHASHSEED": "0"},
    )
    listing.unlink()
    return len(sources)
