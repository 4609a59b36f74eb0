"""checkov and kube-score on every render of the chart: nothing fails that is not explained.

Renders: the defaults and every ``ci/*-values.yaml``, each rendered once. checkov runs once over
all of them (its start-up is most of its time) and once more, in the same run, over copies
without the skip annotations; kube-score runs per render with and without its ignores. So each
test knows what a scanner reports, and what the chart's exceptions hide:

* nothing is reported with the exceptions in place;
* every exception hides a finding (no needless skip that would hide a future one);
* every exception has its reason, the same in the annotation and in the chart README's
  "Policy scanners" table, and every row of that table is used by some render.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart import scanners
from tests.chart.helm import CHART, SCENARIOS, Helm
from tests.chart.scanners import Finding, Skip
from tests.world.manifest import World

# As platform teams render it for review (the reference command).
RELEASE, NAMESPACE = "owl", "open-webui"
STRIPPED = "stripped-"
README = CHART / "README.md"


@dataclass(frozen=True)
class Scan:
    docs: dict[str, list[dict[str, Any]]]  # scenario -> objects
    files: dict[str, Path]  # scenario -> render as Helm printed it
    checkov: dict[str, list[Finding]]  # file stem (scenario, or stripped-scenario) -> failed
    kube_score: dict[str, list[Finding]]  # scenario -> findings
    kube_score_all: dict[str, list[Finding]]  # scenario -> findings with ignores disabled


def _scenario(values: Path | None) -> str:
    return "default" if values is None else values.name.removesuffix("-values.yaml")


SCENARIO_IDS = ["default", *(_scenario(v) for v in SCENARIOS)]


@pytest.fixture(scope="module")
def scan(world: World, tmp_path_factory: pytest.TempPathFactory) -> Scan:
    helm = Helm(world)
    out = tmp_path_factory.mktemp("renders")
    docs: dict[str, list[dict[str, Any]]] = {}
    files: dict[str, Path] = {}
    for values in [None, *SCENARIOS]:
        name = _scenario(values)
        args = [] if values is None else ["-f", str(values)]
        rendered = helm.template(*args, release=RELEASE, namespace=NAMESPACE)
        files[name] = out / f"{name}.yaml"
        files[name].write_text(rendered)
        docs[name] = [d for d in yaml.safe_load_all(rendered) if d]
        scanners.write_render(out / f"{STRIPPED}{name}.yaml", scanners.without_skips(docs[name]))
    checkov = scanners.checkov(world.binary("checkov"), out, tmp_path_factory.mktemp("home"))
    kube_score = world.binary("kube-score")
    return Scan(
        docs,
        files,
        checkov,
        {name: scanners.kube_score(kube_score, path) for name, path in files.items()},
        {
            name: scanners.kube_score(kube_score, path, honour_ignores=False)
            for name, path in files.items()
        },
    )


def _listing(findings: list[Finding] | list[Skip]) -> str:
    return "\n  " + "\n  ".join(map(str, findings))


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_checkov_finds_nothing_unexplained(scan: Scan, scenario: str) -> None:
    found = scan.checkov[scenario]
    assert not found, f"checkov fails {len(found)} check(s) on {scenario}:" + _listing(found)


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_kube_score_finds_nothing_unexplained(scan: Scan, scenario: str) -> None:
    found = scan.kube_score[scenario]
    assert not found, f"kube-score reports {len(found)} finding(s) on {scenario}:" + _listing(found)


def _skipped(scan: Scan, scenario: str, tool: str) -> set[tuple[str, str]]:
    return {
        (s.check, s.obj) for s in scanners.skips(scenario, scan.docs[scenario]) if s.tool == tool
    }


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_every_exception_hides_a_finding_and_no_more(scan: Scan, scenario: str) -> None:
    """Without the annotations the scanners report exactly what the annotations name."""
    hidden = {
        "checkov": {(f.check, f.obj) for f in scan.checkov[STRIPPED + scenario]},
        "kube-score": {(f.check, f.obj) for f in scan.kube_score_all[scenario]},
    }
    for tool, found in hidden.items():
        declared = _skipped(scan, scenario, tool)
        assert declared - found == set(), f"{tool}: needless exceptions on {scenario}"
        assert found - declared == set(), f"{tool}: findings no exception names on {scenario}"


@dataclass(frozen=True)
class Row:
    components: frozenset[str]
    checkov: str
    kube_score: str
    reason: str


def readme_rows() -> list[Row]:
    """The rows of the README's "Policy scanners" table."""
    text = README.read_text()
    section = text.split("## Policy scanners", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("component", "") or set(cells[0]) <= {"-", " "}:
            continue
        components = frozenset(c.strip() for c in cells[0].split(","))
        rows.append(Row(components, cells[1], cells[2], cells[3]))
    assert rows, f"no exception table under '## Policy scanners' in {README}"
    return rows


def _row(rows: list[Row], skip: Skip) -> Row | None:
    column = "checkov" if skip.tool == "checkov" else "kube_score"
    for row in rows:
        if skip.component in row.components and getattr(row, column) == skip.check:
            return row
    return None


def test_every_exception_has_its_reason_in_the_annotation_and_the_readme(scan: Scan) -> None:
    rows = readme_rows()
    used: set[Row] = set()
    problems = []
    for scenario, docs in scan.docs.items():
        for skip in scanners.skips(scenario, docs):
            row = _row(rows, skip)
            if skip.tool == "checkov" and not skip.reason.strip():
                problems.append(f"{skip}: the annotation gives no reason")
            if row is None:
                problems.append(f"{skip}: not in the README's Policy scanners table")
                continue
            used.add(row)
            if not row.reason:
                problems.append(f"{skip}: the README row gives no reason")
            if skip.tool == "checkov" and skip.reason != row.reason:
                problems.append(f"{skip}: the annotation's reason differs from the README's")
    problems += [f"README row used by no render: {row}" for row in rows if row not in used]
    assert not problems, "\n".join(problems)


def _containers(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", c)
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
    ]


@pytest.mark.parametrize("scenario", SCENARIO_IDS)
def test_every_container_has_what_the_cpu_limit_exception_would_hide(
    scan: Scan, scenario: str
) -> None:
    """kube-score's container-resources cannot skip the CPU limit alone; the rest is here."""
    missing = []
    for obj, container in _containers(scan.docs[scenario]):
        resources = container.get("resources") or {}
        for part, key in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
            ("requests", "ephemeral-storage"),
            ("limits", "ephemeral-storage"),
        ]:
            if key not in (resources.get(part) or {}):
                missing.append(f"{obj} {container['name']}: no {part}.{key}")
        assert "cpu" not in (resources.get("limits") or {}), f"{obj}: a CPU limit, but excepted"
    assert not missing, "\n".join(missing)


def test_readme_reasons_are_one_line_and_safe_for_checkov() -> None:
    # checkov splits the annotation on "=": a reason with one would break its parsing.
    for row in readme_rows():
        assert "=" not in row.reason and row.reason == row.reason.strip(), row
        assert re.fullmatch(r"(CKV2?_K8S_\d+)?", row.checkov), row
