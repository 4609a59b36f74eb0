"""The Debian base: its lock, the cached .debs, and the root filesystem mmdebstrap makes of them.

``debian.lock`` names every package of the closure with its version, architecture and the
.deb's sha256. A build never resolves anything: it serves exactly the locked .debs from a local
repository in the project cache (``debs-<lock hash>/``, filled from deb.debian.org on the first
build and checked against the lock's hashes), so mmdebstrap can only install the lock, and the
result is checked against it once more. ``--update-lock`` is the one step that resolves, against
the real mirrors.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from proc import BuildError, run
from spec import Base

DEB_ARCH = {"x86_64": "amd64"}
LOCK_HEADER = """\
# Debian packages of the image base: the whole closure, name=version architecture sha256.
# Written by `python3 ci/image/build.py IMAGE --update-lock` from ci/image/base.toml; do not edit.
"""


@dataclass(frozen=True, order=True)
class Deb:
    name: str
    version: str
    arch: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def lock_key(base: Base) -> str:
    """What a lock was resolved from; a lock with another key is stale."""
    return (
        f"suite={base.suite} variant={base.variant} include={','.join(base.include)} "
        f"hooks={','.join(base.hook_dirs)}"
    )


def read_lock(path: Path, base: Base) -> list[Deb]:
    debs: list[Deb] = []
    key = ""
    for line in path.read_text().splitlines():
        if line.startswith("# resolved from: "):
            key = line.removeprefix("# resolved from: ")
        if not line.strip() or line.startswith("#"):
            continue
        pin, arch, sha = line.split()
        name, _, version = pin.partition("=")
        debs.append(Deb(name, version, arch, sha.removeprefix("sha256:")))
    if key != lock_key(base):
        raise BuildError(
            f"{path.name} is stale: it was resolved from '{key}', base.toml now says "
            f"'{lock_key(base)}'; run `python3 ci/image/build.py IMAGE --update-lock`"
        )
    return debs


def write_lock(path: Path, base: Base, debs: list[Deb]) -> None:
    lines = [LOCK_HEADER + f"# resolved from: {lock_key(base)}"]
    lines += [f"{d.name}={d.version} {d.arch} sha256:{d.sha256}" for d in sorted(debs)]
    path.write_text("\n".join(lines) + "\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _deb_fields(deb: Path, log: Path) -> tuple[str, str, str]:
    out = run(
        "debian",
        ["dpkg-deb", "--show", "--showformat", "${Package}\t${Version}\t${Architecture}", str(deb)],
        log,
        capture=True,
    )
    name, version, arch = out.split("\t")
    return name, version, arch


# -- mmdebstrap --------------------------------------------------------------------------------


def _mmdebstrap(
    base: Base, rootfs: Path, sources: list[str], log: Path, epoch: int, extra: list[str]
) -> None:
    cmd = [
        "mmdebstrap",
        "--mode=root",
        f"--variant={base.variant}",
        "--format=directory",
        f"--architectures={DEB_ARCH[base.arch]}",
        f"--include={','.join(base.include)}",
    ]
    cmd += [f"--hook-dir={d}" for d in base.hook_dirs]
    cmd += [f"--dpkgopt=path-exclude={p}" for p in base.dpkg_path_exclude]
    cmd += [f"--dpkgopt=path-include={p}" for p in base.dpkg_path_include]
    # Maintainer scripts compile Debian's Python modules (py3compile): a fixed hash seed keeps
    # the marshalled constants (frozensets) in one order, so the .pyc files are reproducible.
    env = {"SOURCE_DATE_EPOCH": str(epoch), "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"}
    run("debian", [*cmd, *extra, base.suite, str(rootfs), *sources], log, env=env)


def installed(rootfs: Path, log: Path) -> set[tuple[str, str, str]]:
    out = run(
        "debian",
        [
            "dpkg-query",
            f"--admindir={rootfs}/var/lib/dpkg",
            "--show",
            "--showformat",
            "${db:Status-Status}\t${Package}\t${Version}\t${Architecture}\n",
        ],
        log,
        capture=True,
    )
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    return {(name, version, arch) for status, name, version, arch in rows if status == "installed"}


def resolve(base: Base, work: Path, log: Path, epoch: int) -> tuple[list[Deb], Path]:
    """Bootstrap from the real mirrors once; the installed closure and its .debs become the lock.

    Returns the lock's packages and the directory holding their .debs (seed for the cache).
    """
    rootfs, fetched = work / "resolve-rootfs", work / "resolve-debs"
    fetched.mkdir(parents=True)
    sources = [f"deb [signed-by={base.keyring}] {m}" for m in base.mirrors]
    _mmdebstrap(
        base,
        rootfs,
        sources,
        log,
        epoch,
        [
            "--skip=essential/unlink",
            f"--customize-hook=sync-out /var/cache/apt/archives {fetched}",
        ],
    )
    by_fields = {_deb_fields(p, log): p for p in fetched.glob("*.deb")}
    debs: list[Deb] = []
    for fields in sorted(installed(rootfs, log)):
        if fields not in by_fields:
            raise BuildError(f"update-lock: no downloaded .deb for installed {fields}")
        path = by_fields[fields]
        deb = Deb(*fields, sha256=_sha256(path))
        path.rename(fetched / deb.filename)
        debs.append(deb)
    shutil.rmtree(rootfs)
    return debs, fetched


# -- the local repository of locked .debs ------------------------------------------------------


def repository(
    base: Base,
    debs: list[Deb],
    lock_hash: str,
    cache: Path,
    work: Path,
    log: Path,
    seed: Path | None = None,
) -> tuple[Path, bool]:
    """A local apt repository serving exactly ``debs``; returns it and whether it was fetched.

    Cached as ``<cache>/debs-<lock hash>``: .debs already in another cached repository (an
    earlier lock) or in ``seed`` are reused after their hash is checked; the rest come from the
    mirrors through a private apt state (the host's apt lists and status are never touched).
    """
    final = cache / f"debs-{lock_hash}"
    if (final / ".complete").exists():
        return final, False
    tmp = cache / f"debs-{lock_hash}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    pool = tmp / "pool"
    pool.mkdir(parents=True)
    known = [seed] if seed else []
    known += [d / "pool" for d in sorted(cache.glob("debs-*")) if (d / ".complete").exists()]
    missing: list[Deb] = []
    for deb in debs:
        for where in known:
            candidate = where / deb.filename
            if candidate.exists() and _sha256(candidate) == deb.sha256:
                shutil.copy2(candidate, pool / deb.filename)
                break
        else:
            missing.append(deb)
    fetched = bool(missing)
    if missing:
        _download(base, missing, pool, work, log)
    for deb in debs:
        got = _sha256(pool / deb.filename)
        if got != deb.sha256:
            raise BuildError(f"{deb.filename}: sha256 {got} is not the locked {deb.sha256}")
    _write_index(base, debs, tmp, log)
    (tmp / ".complete").write_text("")
    try:
        tmp.rename(final)
    except OSError:  # another build finished the same repository first: use that one
        shutil.rmtree(tmp)
    return final, fetched


def _download(base: Base, debs: list[Deb], pool: Path, work: Path, log: Path) -> None:
    apt = work / "apt"
    for sub in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "status").write_text("")
    (apt / "sources.list").write_text(
        "".join(f"deb [signed-by={base.keyring}] {m}\n" for m in base.mirrors)
    )
    arch = DEB_ARCH[base.arch]
    (apt / "apt.conf").write_text(
        "".join(
            f'{k} "{v}";\n'
            for k, v in {
                "Dir::State": apt / "state",
                "Dir::State::status": apt / "status",
                "Dir::Cache": apt / "cache",
                "Dir::Etc::SourceList": apt / "sources.list",
                "Dir::Etc::SourceParts": apt / "sources.list.d",
                "Dir::Etc::PreferencesParts": apt / "preferences.d",
                "APT::Architecture": arch,
                "Acquire::Languages": "none",
                # Downloads land in our own directory as root; apt's _apt sandbox user could not.
                "APT::Sandbox::User": "root",
            }.items()
        )
        + f'APT::Architectures {{ "{arch}"; }};\n'
    )
    env = {"APT_CONFIG": str(apt / "apt.conf")}
    run("debian", ["apt-get", "update", "-q"], log, env=env)
    pins = [f"{d.name}:{d.arch}={d.version}" for d in debs]
    try:
        run("debian", ["apt-get", "download", "-q", *pins], log, cwd=pool, env=env)
    except BuildError as exc:
        gone = [line for line in log.read_text().splitlines()[-50:] if "was not found" in line]
        if gone:
            raise BuildError(
                "locked Debian versions are no longer served by "
                + ", ".join(base.mirrors)
                + " (a point release or security update replaced them):\n    "
                + "\n    ".join(gone)
                + "\n  run `python3 ci/image/build.py IMAGE --update-lock` and commit "
                f"{base.lock.name}"
            ) from None
        raise exc
    # apt names files after the version as served; give each its lock name (by hash).
    wanted = {d.sha256: d for d in debs}
    for path in list(pool.glob("*.deb")):
        deb = wanted.get(_sha256(path))
        if deb is None:
            raise BuildError(f"downloaded {path.name} matches no sha256 of {base.lock.name}")
        if path.name != deb.filename:
            path.rename(pool / deb.filename)


def _write_index(base: Base, debs: list[Deb], repo: Path, log: Path) -> None:
    stanzas = []
    for deb in sorted(debs):
        path = repo / "pool" / deb.filename
        control = run("debian", ["dpkg-deb", "--field", str(path)], log, capture=True)
        stanzas.append(
            control.rstrip("\n") + f"\nFilename: pool/{deb.filename}\n"
            f"Size: {path.stat().st_size}\nSHA256: {deb.sha256}\n"
        )
    packages = "\n".join(stanzas).encode()
    arch = DEB_ARCH[base.arch]
    index = repo / "dists" / base.suite / "main" / f"binary-{arch}"
    index.mkdir(parents=True)
    (index / "Packages").write_bytes(packages)
    (repo / "dists" / base.suite / "Release").write_text(
        f"Origin: openwebui-langfuse\nLabel: {base.lock.name}\nSuite: {base.suite}\n"
        f"Codename: {base.suite}\nArchitectures: {arch}\nComponents: main\nSHA256:\n"
        f" {hashlib.sha256(packages).hexdigest()} {len(packages)} main/binary-{arch}/Packages\n"
    )


# -- the root filesystem -----------------------------------------------------------------------


def bootstrap(base: Base, repo: Path, debs: list[Deb], rootfs: Path, log: Path, epoch: int) -> None:
    """Install the locked closure into ``rootfs`` and check that exactly the lock is there."""
    # copy:// (not file://): the .debs are copied into the tree's apt cache, where dpkg in the
    # chroot sees them (and mmdebstrap's cleanup removes them). trusted=yes: the repository is
    # this build's own, every .deb in it checked against the lock's sha256 (taken from the
    # signed mirrors by --update-lock).
    _mmdebstrap(
        base,
        rootfs,
        [f"deb [trusted=yes] copy://{repo} {base.suite} main"],
        log,
        epoch,
        ["--skip=check/signed-by"],
    )
    want = {(d.name, d.version, d.arch) for d in debs}
    got = installed(rootfs, log)
    if got != want:
        raise BuildError(
            f"installed packages differ from {base.lock.name}: extra "
            f"{sorted(got - want)}, missing {sorted(want - got)}"
        )


def strip(base: Base, rootfs: Path) -> list[str]:
    """Remove ``base.remove`` (globs under the root); returns what was removed."""
    removed: list[str] = []
    for pattern in base.remove:
        for path in sorted(rootfs.glob(pattern)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(str(path.relative_to(rootfs)))
    return removed


def add_user(base: Base, rootfs: Path) -> None:
    """The runtime user and its group, appended to the tree's passwd and group files."""
    u = base.user
    for name, line in (
        ("passwd", f"{u.name}:x:{u.uid}:{u.gid}:{u.name}:{u.home}:{u.shell}"),
        ("group", f"{u.name}:x:{u.gid}:"),
    ):
        path = rootfs / "etc" / name
        text = path.read_text()
        if f"\n{u.name}:" in f"\n{text}":
            raise BuildError(f"/etc/{name} already has an entry '{u.name}'")
        path.write_text(text + line + "\n")
