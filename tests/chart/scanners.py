"""The two policy scanners platform teams run on charts, and the chart's declared exceptions.

checkov (``--framework kubernetes``) and kube-score run on rendered manifests. The exceptions the
chart keeps on purpose are the scanners' own annotations on an object: checkov
``checkov.io/skipN: CHECK=reason``, kube-score ``kube-score/ignore: check,...``. Everything here
returns plain records, so the tests can print findings as "tool check on Kind/name".

Both run offline: checkov with ``--skip-download`` and every HTTP(S) proxy pointed at a closed
loopback port, so a forgotten download fails at once instead of leaving the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHECKOV_SKIP = "checkov.io/skip"
KUBE_SCORE_IGNORE = "kube-score/ignore"
COMPONENT = "app.kubernetes.io/component"
# Port 9 (discard) on loopback: nothing listens, a connection is refused at once.
_NOWHERE = "http://127.0.0.1:9"


@dataclass(frozen=True, order=True)
class Finding:
    """One check a scanner reports against one object of one render."""

    scenario: str
    tool: str
    check: str
    obj: str  # Kind/name
    detail: str = ""

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"[{self.scenario}] {self.tool} {self.check} on {self.obj}{detail}"


@dataclass(frozen=True, order=True)
class Skip:
    """One declared exception: the annotation on an object, with its reason (checkov only)."""

    scenario: str
    tool: str
    check: str
    obj: str
    component: str
    reason: str

    def __str__(self) -> str:
        return f"[{self.scenario}] {self.tool} {self.check} on {self.obj} ({self.component})"


def skips(scenario: str, docs: list[dict[str, Any]]) -> list[Skip]:
    """The exceptions the objects of one render declare."""
    out: list[Skip] = []
    for doc in docs:
        meta = doc.get("metadata") or {}
        component = (meta.get("labels") or {}).get(COMPONENT, "")
        obj = f"{doc['kind']}/{meta['name']}"
        for key, value in (meta.get("annotations") or {}).items():
            if key.startswith(CHECKOV_SKIP):
                check, _, reason = str(value).partition("=")
                out.append(Skip(scenario, "checkov", check, obj, component, reason))
            elif key == KUBE_SCORE_IGNORE:
                for check in str(value).split(","):
                    out.append(Skip(scenario, "kube-score", check.strip(), obj, component, ""))
    return sorted(out)


def without_skips(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same objects without checkov's skip annotations (to see what they hide)."""
    stripped = []
    for doc in docs:
        doc = json.loads(json.dumps(doc))
        annotations = (doc.get("metadata") or {}).get("annotations") or {}
        for key in [k for k in annotations if k.startswith(CHECKOV_SKIP)]:
            del annotations[key]
        stripped.append(doc)
    return stripped


def _kind_name(resource: str) -> str:
    # checkov names a resource Kind.namespace.name (names may contain dots, kinds do not)
    kind, _, rest = resource.partition(".")
    return f"{kind}/{rest.partition('.')[2] or rest}"


def checkov(binary: Path, directory: Path, home: Path) -> dict[str, list[Finding]]:
    """Failed checks per file stem of every ``*.yaml`` in ``directory``: one checkov run for all
    (most of its time is start-up). Raises when checkov could not parse a file."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HTTP_PROXY": _NOWHERE,
        "HTTPS_PROXY": _NOWHERE,
        "http_proxy": _NOWHERE,
        "https_proxy": _NOWHERE,
    }
    result = subprocess.run(
        [str(binary), "--framework", "kubernetes", "-d", str(directory), "--skip-download"]
        + ["--quiet", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    # 0: nothing failed, 1: something failed; anything else is checkov itself failing.
    assert result.returncode in (0, 1), f"checkov failed ({result.returncode}):\n{result.stderr}"
    report = json.loads(result.stdout)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, f"checkov could not parse a render: {summary}"
    found: dict[str, list[Finding]] = {p.stem: [] for p in directory.glob("*.yaml")}
    for failed in report["results"].get("failed_checks", []):
        stem = Path(failed["file_path"]).stem
        found[stem].append(
            Finding(
                stem,
                "checkov",
                failed["check_id"],
                _kind_name(failed["resource"]),
                failed["check_name"],
            )
        )
    return {stem: sorted(findings) for stem, findings in found.items()}


def kube_score(binary: Path, render: Path, *, honour_ignores: bool = True) -> list[Finding]:
    """kube-score's warnings and criticals on one render (skipped checks are not findings)."""
    argv = [str(binary), "score", str(render), "--output-format", "json"]
    if not honour_ignores:
        argv.append("--disable-ignore-checks-annotations")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    # 0: all fine, 1: something below OK; anything else is kube-score itself failing.
    assert result.returncode in (0, 1), f"kube-score failed ({result.returncode}):\n{result.stderr}"
    findings = []
    for obj in json.loads(result.stdout):
        kind = obj["type_meta"]["kind"]
        name = obj["object_meta"]["name"]
        for check in obj["checks"]:
            if check["skipped"] or check["grade"] >= 10:  # 10: OK
                continue
            comments = "; ".join(c["summary"] for c in check.get("comments") or [])
            findings.append(
                Finding(render.stem, "kube-score", check["check"]["id"], f"{kind}/{name}", comments)
            )
    return sorted(findings)


def write_render(path: Path, docs: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
