"""What the release tests read out of a built image: its files, its SBOM, its commit.

Shared by the tests of each image; nothing here builds or starts anything long-lived.
"""

from __future__ import annotations

import datetime
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from tests.release.conftest import ROOT, BuiltImage
from tests.release.sandbox import run_in_image

SITE = "usr/local/lib/python3.11/dist-packages"
# Langfuse keys are pk-lf-/sk-lf- and a UUID; PEM private keys of any kind.
SECRET_PATTERNS = [
    re.compile(rb"sk-lf-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    re.compile(rb"PIPELINES_API_KEY=[^\s\"'$]+"),
    re.compile(rb"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
]


@cache
def paths(image: BuiltImage) -> dict[str, bytes | None]:
    """Every path of the image (layers merged; none deletes) with a regular file's content."""
    return {info.name: data for _, info, data in image.layout.members()}


def run(rootfs: Path, argv: list[str], env: dict[str, str], uid: int = 10001) -> tuple[int, str]:
    proc = run_in_image(
        rootfs, argv, env=env, uid=uid, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out.decode(errors="replace")


def commit_time(commit: str) -> str:
    epoch = subprocess.run(
        ["git", "-C", str(ROOT), "show", "-s", "--format=%ct", commit],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def committed(commit: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def purl_packages(document: dict[str, Any], kind: str) -> set[tuple[str, str]]:
    """(name, version) of the SBOM's packages whose purl is ``pkg:<kind>/...``."""
    found = set()
    for package in document["packages"]:
        for ref in package.get("externalRefs", []):
            locator = ref["referenceLocator"]
            if ref.get("referenceType") == "purl" and locator.startswith(f"pkg:{kind}/"):
                # pkg:deb/debian/bsdutils@1%3A2.38.1-5%2Bdeb12u3?arch=amd64&...
                name, _, version = unquote(locator.split("?")[0]).rpartition("/")[2].partition("@")
                found.add((name, version))
    return found
