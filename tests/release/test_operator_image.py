"""The operator image as a registry, a scanner and a kubelet would see it.

Built once per session (conftest.operator_image) from the checked-out commit; unpacked by umoci;
run with bubblewrap read-only, as uid 10001 and as an arbitrary uid without a passwd entry.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.release.conftest import BuiltImage, build_image
from tests.release.contents import (
    SECRET_PATTERNS,
    SITE,
    commit_time,
    committed,
    paths,
    purl_packages,
    run,
)

pytestmark = [pytest.mark.world, pytest.mark.timeout(900)]

# -- the layout and its config -----------------------------------------------------------------


def test_layout_blobs_match_their_digests(operator_image: BuiltImage) -> None:
    layout = operator_image.layout
    descriptor = layout.manifest_descriptor()
    assert descriptor["digest"] == operator_image.digest == operator_image.info["digest"]
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == operator_image.tag
    # layers() hashes every blob, compressed and uncompressed, against manifest and config.
    assert len(layout.layers()) == len(operator_image.info["layers"]) == 3
    config = layout.config()
    assert (config["os"], config["architecture"]) == ("linux", "amd64")


def test_config_user_entrypoint_env_and_labels(
    operator_image: BuiltImage, release_commit: str
) -> None:
    config = operator_image.layout.config()
    runtime = config["config"]
    assert runtime["User"] == "10001:10001"
    assert (runtime["Entrypoint"], runtime["Cmd"]) == (["openwebui-langfuse"], ["run"])
    assert runtime["ExposedPorts"] == {"8080/tcp": {}}
    env = operator_image.env()
    for key, value in {
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "USER": "openwebui-langfuse",
        "LOGNAME": "openwebui-langfuse",
    }.items():
        assert env.get(key) == value, key
    created = commit_time(release_commit)
    version = tomllib.loads(committed(release_commit, "pyproject.toml"))["project"]["version"]
    assert runtime["Labels"] == {
        "org.opencontainers.image.source": "https://github.com/openwebui-langfuse/openwebui-langfuse",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": release_commit,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "MIT",
        "org.opencontainers.image.title": "openwebui-langfuse operator",
        "org.opencontainers.image.description": runtime["Labels"][
            "org.opencontainers.image.description"
        ],
    }
    assert config["created"] == created
    assert {h["created"] for h in config["history"]} == {created}


# -- what is in it -----------------------------------------------------------------------------


def test_only_what_runs(operator_image: BuiltImage) -> None:
    files = paths(operator_image)
    names = set(files)
    # The package manager's traces: no lists, no downloaded .debs, no apt at all.
    assert not [p for p in names if p.startswith(("var/lib/apt/", "var/cache/apt/", "etc/apt/"))]
    assert not [p for p in names if p.endswith(".deb")]
    # No compiler, no pip (pip ran from its wheel outside the tree).
    tools = {"gcc", "cc", "c++", "g++", "ld", "as", "make", "pip", "pip3", "apt", "apt-get"}
    assert not [
        p
        for p in names
        if p.startswith(("usr/bin/", "usr/local/bin/")) and p.rsplit("/", 1)[1] in tools
    ]
    assert not [p for p in names if p.startswith((f"{SITE}/pip/", f"{SITE}/setuptools/"))]
    # dpkg's database is kept (the SBOM reads it) and lists no build tool.
    status = files["var/lib/dpkg/status"]
    assert status is not None
    packages = set(re.findall(rb"^Package: (\S+)$", status, re.M))
    assert not packages & {
        b"apt",
        b"gcc-12",
        b"cpp-12",
        b"binutils",
        b"libc6-dev",
        b"python3-pip",
        b"python3-setuptools",
        b"perl",
    }
    # The official Kubernetes client is a test dependency only.
    assert not [p for p in names if re.match(rf"{SITE}/kubernetes([-/_.]|$)", p)]
    # Nothing of the checkout but the package: no tests, no conftest, no source tree.
    assert not [p for p in names if p.startswith(f"{SITE}/tests/")]
    assert not [p for p in names if p.endswith("conftest.py") or "langfuse_standin" in p]
    assert f"{SITE}/openwebui_langfuse/cli.py" in names
    assert [p for p in names if re.match(rf"{SITE}/openwebui_langfuse/filters/\w+\.py$", p)]


def test_modules_are_precompiled_for_a_read_only_root(operator_image: BuiltImage) -> None:
    files = paths(operator_image)
    sources = [p for p in files if p.startswith(f"{SITE}/") and p.endswith(".py")]
    assert len(sources) > 500
    for source in sources:
        folder, _, name = source.rpartition("/")
        pyc = files.get(f"{folder}/__pycache__/{name[:-3]}.cpython-311.pyc")
        assert pyc is not None, f"{source} has no .pyc"
        # PEP 552 flags word: 0b01 = hash-based, not checked against the source (reproducible;
        # nothing to rewrite on a read-only root).
        assert int.from_bytes(pyc[4:8], "little") == 0b01, source


def test_no_secret_in_any_layer_or_config(operator_image: BuiltImage) -> None:
    canaries = [c.encode() for c in operator_image.canaries]
    assert canaries, "the build ran without canaries"
    layout = operator_image.layout
    documents = [
        ("config", layout.blob(layout.manifest()["config"])),
        ("manifest", layout.blob(layout.manifest_descriptor())),
    ]
    documents += [(p, data) for p, data in paths(operator_image).items() if data is not None]
    found = []
    for where, data in documents:
        found += [(where, c.decode()[:12]) for c in canaries if c in data]
        found += [
            (where, m.group()[:24].decode(errors="replace"))
            for pattern in SECRET_PATTERNS
            for m in [pattern.search(data)]
            if m
        ]
    # A CA bundle holds certificates only, so no exception is needed for it.
    assert not found


# -- the SBOM ----------------------------------------------------------------------------------


def test_sbom_lists_every_locked_package(operator_image: BuiltImage) -> None:
    document = json.loads(operator_image.sbom.read_text())
    assert document["spdxVersion"].startswith("SPDX-")
    debs, wheels = purl_packages(document, "deb"), purl_packages(document, "pypi")
    locked_debs = {
        tuple(line.split()[0].split("=", 1))
        for line in committed(operator_image.commit, "ci/image/debian.lock").splitlines()
        if line and not line.startswith("#")
    }
    assert len(locked_debs) > 50
    assert locked_debs == debs, (sorted(locked_debs - debs), sorted(debs - locked_debs))
    assert "python3.11" in {name for name, _ in debs}
    locked_wheels = set(
        re.findall(
            r"^(\S+)==(\S+) \\$", committed(operator_image.commit, "ci/image/operator.lock"), re.M
        )
    )
    normal = {(re.sub(r"[-_.]+", "-", n).lower(), v) for n, v in locked_wheels}
    assert normal <= {(re.sub(r"[-_.]+", "-", n).lower(), v) for n, v in wheels}
    names = {name for name, _ in wheels}
    assert {"kopf", "httpx", "langfuse", "openwebui-langfuse"} <= names
    assert "kubernetes" not in names


# -- running it --------------------------------------------------------------------------------


@pytest.mark.parametrize("uid", [10001, 1234567], ids=["uid-10001", "uid-without-passwd-entry"])
def test_help_runs_read_only_as_any_uid(
    operator_image: BuiltImage, operator_rootfs: Path, uid: int
) -> None:
    config = operator_image.layout.config()["config"]
    code, out = run(operator_rootfs, [*config["Entrypoint"], "--help"], operator_image.env(), uid)
    assert code == 0, out
    assert "usage: openwebui-langfuse" in out


def test_root_is_read_only_and_tmp_writable(
    operator_image: BuiltImage, operator_rootfs: Path
) -> None:
    probe = (
        "import os\n"
        "for path in ('/probe', '/usr/local/lib/python3.11/dist-packages/probe', '/etc/probe'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except OSError as exc:\n"
        "        print(path, exc.errno)\n"
        "open('/tmp/probe', 'w').write('ok')\n"
        "print('/tmp', open('/tmp/probe').read(), os.getuid(), os.getgid())\n"
    )
    code, out = run(operator_rootfs, ["python3", "-c", probe], operator_image.env())
    assert code == 0, out
    assert out.splitlines() == [
        "/probe 30",  # EROFS
        "/usr/local/lib/python3.11/dist-packages/probe 30",
        "/etc/probe 30",
        "/tmp ok 10001 10001",
    ]


def test_kopf_names_its_identity_under_a_uid_without_passwd_entry(
    operator_image: BuiltImage, operator_rootfs: Path
) -> None:
    """kopf's peering.detect_own_id calls getpass.getuser(), which reads LOGNAME/USER before
    pwd.getpwuid(); the image sets both, so a uid unknown to /etc/passwd (OpenShift) starts."""
    probe = (
        "from kopf._core.engines.peering import detect_own_id\n"
        "print(detect_own_id(manual=True).split('@')[0])\n"
    )
    env = operator_image.env()
    code, out = run(operator_rootfs, ["python3", "-c", probe], env, uid=1234567)
    assert (code, out.strip()) == (0, "openwebui-langfuse"), out
    # Without them, the very crash the image is built to avoid.
    bare = {k: v for k, v in env.items() if k not in ("USER", "LOGNAME")}
    code, out = run(operator_rootfs, ["python3", "-c", probe], bare, uid=1234567)
    assert code == 1 and "getpwuid(): uid not found: 1234567" in out, out


# -- reproducible ------------------------------------------------------------------------------


def test_a_second_build_of_the_commit_has_the_same_digest_without_network(
    operator_image: BuiltImage, release_commit: str, tmp_path: Path
) -> None:
    # The session's build filled the caches; this one runs with no network at all.
    again = build_image("operator", tmp_path, release_commit, sbom=False, offline=True)
    assert again.digest == operator_image.digest
