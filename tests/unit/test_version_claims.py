"""The versions the docs claim are the versions the test world runs.

``ci/versions.env`` pins what every test runs against. A user-facing document (the READMEs, the
install guide, the design, the chart's README and NOTES.txt, the examples) that names an Open
WebUI version must name exactly the pinned one, with no range (``≥ 0.10``, ``0.11+``, ``0.10 or
later``): nothing else is tested. Helm versions must be the pinned major.minor. The notes under
``docs/upstream/`` are exempt: they record upstream history by release, which is no claim of
support; their "tested" row must still be the pinned version.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLAIMS = [
    REPO / "README.md",
    REPO / "docs" / "install.md",
    REPO / "docs" / "design.md",
    REPO / "charts" / "openwebui-langfuse" / "README.md.gotmpl",
    REPO / "charts" / "openwebui-langfuse" / "README.md",
    REPO / "charts" / "openwebui-langfuse" / "templates" / "NOTES.txt",
    REPO / "charts" / "openwebui-langfuse" / "values.yaml",
    REPO / "examples" / "README.md",
    REPO / "operator" / "openwebui_langfuse" / "filters" / "README.md",
]
_RANGE_BEFORE = r"(?P<op>≥|≤|>=|<=|>|<|~|\^|at least|newer than|older than|up to|from)?"
_VERSION = r"v?(?P<version>\d+\.\d+(?:\.\d+)?)"
_RANGE_AFTER = (
    r"(?P<suffix>\+|\.x|\s*(?:or|and)\s+(?:later|newer|above|higher|up|older|earlier|below)"
    r"|\s*(?:-|–|to)\s*v?\d)?"
)
OPEN_WEBUI = re.compile(
    rf"Open\s+WebUI\s*(?:version\s*)?{_RANGE_BEFORE}\s*{_VERSION}{_RANGE_AFTER}"
)
HELM = re.compile(rf"\bHelm\s*{_RANGE_BEFORE}\s*{_VERSION}{_RANGE_AFTER}")


def pinned() -> dict[str, str]:
    values = {}
    for line in (REPO / "ci" / "versions.env").read_text().splitlines():
        match = re.match(r"^([A-Z_]+)=\"?([^\"]*)\"?$", line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def open_webui_claim_problems(text: str, tested: str, where: str) -> list[str]:
    problems = []
    for match in OPEN_WEBUI.finditer(text):
        if match.group("op") or match.group("suffix") or match.group("version") != tested:
            problems.append(f"{where}: {match.group(0)!r} (the world tests Open WebUI {tested})")
    return problems


def helm_claim_problems(text: str, tested: str, where: str) -> list[str]:
    major_minor = ".".join(tested.split(".")[:2])
    problems = []
    for match in HELM.finditer(text):
        version = match.group("version")
        if match.group("op") or match.group("suffix") or version not in (tested, major_minor):
            problems.append(f"{where}: {match.group(0)!r} (the world tests Helm {tested})")
    return problems


@pytest.mark.parametrize(
    "text",
    [
        "Open WebUI ≥ 0.10 (older versions …",
        "Open WebUI >= 0.12.4",
        "Open WebUI 0.11+",
        "Open WebUI 0.12 or later",
        "Open WebUI v0.10.2",
        "Open WebUI 0.10 to 0.12.4",
        "Open WebUI version 0.11.0",
    ],
)
def test_the_check_refuses_an_untested_open_webui_claim(text: str) -> None:
    assert open_webui_claim_problems(text, "0.12.4", "sample")


@pytest.mark.parametrize(
    "text",
    [
        "Open WebUI 0.12.4, the version every test runs against",
        "the real Open WebUI 0.12.4 from PyPI",
        "an Open WebUI that already runs",
    ],
)
def test_the_check_accepts_the_tested_open_webui(text: str) -> None:
    assert not open_webui_claim_problems(text, "0.12.4", "sample")


def test_the_check_holds_helm_to_its_pin() -> None:
    assert helm_claim_problems("Helm ≥ 4.0", "4.3.1", "sample")
    assert helm_claim_problems("tested with Helm 3.14", "4.3.1", "sample")
    assert not helm_claim_problems("Helm 4.3 and Helm v4.3.1", "4.3.1", "sample")


def test_the_docs_claim_only_the_tested_open_webui_and_helm() -> None:
    versions = pinned()
    problems = []
    for path in CLAIMS:
        text = path.read_text()
        where = str(path.relative_to(REPO))
        problems += open_webui_claim_problems(text, versions["OPEN_WEBUI_VERSION"], where)
        problems += helm_claim_problems(text, versions["HELM_VERSION"], where)
    assert not problems, "\n".join(problems)


def test_the_install_guide_names_the_tested_open_webui() -> None:
    tested = pinned()["OPEN_WEBUI_VERSION"]
    guide = (REPO / "docs" / "install.md").read_text()
    assert f"Open WebUI {tested}" in guide
    upstream = (REPO / "docs" / "upstream" / "open-webui.md").read_text()
    (row,) = [line for line in upstream.splitlines() if line.startswith("| tested")]
    assert f"**{tested}**" in row, row
