"""Image specs: ``base.toml`` (the Debian base all images share) and ``<image>.toml``.

Values may name ``${VAR}`` of ci/versions.env, or ``${pyproject:version}`` and
``${pyproject:dependencies}`` of pyproject.toml. A list item that is only such a reference
becomes as many items as the value has (a versions.env value split like a shell word list;
the dependency list as it is), so `requirements = ["${PIPELINES_PINS}"]` reads naturally.
Everything is read from one source tree: the exported commit when building.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proc import BuildError

_REF = re.compile(r"\$\{([A-Za-z0-9_:]+)\}")


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    name: str
    home: str
    shell: str


@dataclass(frozen=True)
class Base:
    suite: str
    mirrors: list[str]
    keyring: str
    lock: Path
    variant: str
    include: list[str]
    hook_dirs: list[str]
    dpkg_path_exclude: list[str]
    dpkg_path_include: list[str]
    remove: list[str]
    python_version: str
    glibc: str
    arch: str
    build_tools: list[str]
    build_tools_lock: Path
    user: User


@dataclass(frozen=True)
class Dir:
    path: str
    mode: int
    owner: str  # "uid:gid"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    repository: str
    version: str
    title: str
    description: str
    licenses: str
    requirements: list[str]
    lock: Path
    forbid: list[str]
    project: bool
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    ports: list[str]
    workdir: str
    dirs: list[Dir]


class Values:
    """What ``${...}`` may name in a source tree."""

    def __init__(self, src: Path) -> None:
        self.versions: dict[str, str] = {}
        for line in (src / "ci" / "versions.env").read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                self.versions[key.strip()] = shlex.split(value)[0] if value.strip() else ""
        self.pyproject = tomllib.loads((src / "pyproject.toml").read_text())["project"]

    def lookup(self, ref: str) -> list[str]:
        if ref == "pyproject:version":
            return [str(self.pyproject["version"])]
        if ref == "pyproject:dependencies":
            return [str(d) for d in self.pyproject.get("dependencies", [])]
        if ref in self.versions:
            return shlex.split(self.versions[ref]) or [""]
        raise BuildError(
            f"spec names ${{{ref}}}, which is neither in ci/versions.env nor "
            "pyproject:version / pyproject:dependencies"
        )

    def string(self, value: str) -> str:
        return _REF.sub(lambda m: " ".join(self.lookup(m[1])), value)

    def items(self, values: list[str]) -> list[str]:
        out: list[str] = []
        for value in values:
            whole = _REF.fullmatch(value)
            out += self.lookup(whole[1]) if whole else [self.string(value)]
        return out


def _load(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BuildError(f"no image spec {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{path}: {exc}") from None


def load_base(src: Path) -> Base:
    here = src / "ci" / "image"
    raw = _load(here / "base.toml")
    fields = {k: v for k, v in raw.items() if k != "user"}
    fields["lock"] = here / raw["lock"]
    fields["build_tools_lock"] = here / raw["build_tools_lock"]
    return Base(**fields, user=User(**raw["user"]))


def load_image(src: Path, name: str) -> ImageSpec:
    here = src / "ci" / "image"
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name) or name == "base":
        raise BuildError(f"not an image name: {name!r}")
    raw = _load(here / f"{name}.toml")
    values = Values(src)
    python, config = raw.get("python", {}), raw.get("config", {})
    return ImageSpec(
        name=name,
        repository=raw["repository"],
        version=values.string(raw["version"]),
        title=raw["title"],
        description=raw["description"],
        licenses=raw["licenses"],
        requirements=values.items(python.get("requirements", [])),
        lock=here / python["lock"],
        forbid=python.get("forbid", []),
        project=bool(python.get("project", False)),
        entrypoint=config["entrypoint"],
        cmd=config.get("cmd", []),
        env=[values.string(e) for e in config.get("env", [])],
        ports=config.get("ports", []),
        workdir=values.string(config.get("workdir", "")),
        dirs=[Dir(d["path"], int(d["mode"], 8), d["owner"]) for d in raw.get("dirs", [])],
    )


def available_images(src: Path) -> list[str]:
    return sorted(p.stem for p in (src / "ci" / "image").glob("*.toml") if p.stem != "base")
