"""Every citation in the repository resolves inside the repository.

Comments, docstrings and docs cite the project's own documents by path and section name, e.g.
``docs/upstream/pipelines.md, "Valves"`` (a list of sections too: ``…, "A", "B" and "C"``). This
test reads every text file of the repository and fails on

* a cited ``docs/…`` file that does not exist, or a cited section that is no heading of it;
* a citation of something outside the repository: the old design document (``DESIGN §…``),
  ``shared/reference`` and its ``*-api.md`` files, or a bare ``§`` number (sections are cited
  by name here, so a number always points at a document the reader does not have);
* a relative link in ``README.md`` or ``docs/`` whose file or ``#anchor`` does not exist.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
THIS = Path(__file__).resolve()

TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".yaml",
    ".yml",
    ".tpl",
    ".txt",
    ".gotmpl",
    ".lua",
    ".toml",
    ".sh",
    ".env",
    ".json",
    ".cfg",
    ".ini",
}
# Extension-less scripts and files that are text too.
TEXT_NAMES = {"Makefile", "Dockerfile", "run", "test", "demo", "release"}

# `docs/...` not preceded by a path or URL character (so `langfuse.com/docs/v4` is no citation),
# an optional closing backtick, then optionally `, "Section"` (or a list of them).
_QUOTE = r"[\"“']"
_UNQUOTE = r"[\"”']"
_SECTION = rf"{_QUOTE}([^\"“”'\n]+?){_UNQUOTE}"
CITATION = re.compile(
    r"(?<![\w./-])(docs/[\w./-]*\w\.(?:md|lua))`?"
    rf"(?P<sections>,\s*{_SECTION}(?:\s*(?:,\s*and|,|and)\s*{_SECTION})*)?"
)
SECTION = re.compile(_SECTION)
# Citations of documents that are not in the repository.
OUTSIDE = [
    (re.compile(r"\bDESIGN\b"), "the old design document (now docs/design.md)"),
    (re.compile(r"shared/reference"), "shared/reference (now docs/upstream/)"),
    (re.compile(r"\b[\w-]+-api\.md\b"), "a reference file (now docs/upstream/)"),
    (re.compile(r"§\s*\d"), "a section number (cite the section's name)"),
]
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
# Line breaks inside a comment or docstring, with the next line's comment marker: citations
# may wrap (`docs/x.md,` at the end of one line, `# "Section"` on the next).
WRAP = re.compile(r"[ \t]*\n[ \t]*(?:#+|--|//|\*)?[ \t]*")


def repository_files() -> list[Path]:
    """Tracked and untracked-but-not-ignored files (what a commit could hold)."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=30,
        ).stdout.decode()
        paths = [REPO / name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):  # no git: a source tarball
        paths = [p for p in REPO.rglob("*") if ".git" not in p.parts]
    return sorted(
        p
        for p in paths
        if p.is_file()
        and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES)
        and not p.name.endswith(".lock")
    )


def headings(doc: Path) -> set[str]:
    """Heading texts of a Markdown file, also without a leading number (``5. Conditions``)."""
    found: set[str] = set()
    fenced = False
    for line in doc.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            text = match.group(1)
            found.add(text)
            found.add(re.sub(r"^\d+\.\s+", "", text))
    return found


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def dangling_citations(text: str, where: str, root: Path = REPO) -> Iterator[str]:
    """What in ``text`` cites something that does not exist (one message per problem)."""
    for pattern, what in OUTSIDE:
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            yield f"{where}:{line}: cites {what}: {match.group(0)!r}"
    joined = WRAP.sub(" ", text)
    for match in CITATION.finditer(joined):
        path = match.group(1)
        target = root / path
        if not target.is_file():
            yield f"{where}: cites {path}, which does not exist"
            continue
        if match.group("sections") and target.suffix == ".md":
            known = headings(target)
            for section in SECTION.findall(match.group("sections")):
                if section not in known:
                    yield f"{where}: cites {path}, {section!r}, which is no heading there"


def dangling_links(doc: Path) -> Iterator[str]:
    """Relative links of a Markdown file whose file or anchor does not exist."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.DOTALL)
    for match in LINK.finditer(text):
        href = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", href):  # http:, https:, mailto:
            continue
        path, _, fragment = href.partition("#")
        target = (doc.parent / path).resolve() if path else doc
        if not target.exists():
            yield f"{doc.relative_to(REPO)}: links {href}, which does not exist"
        elif (
            fragment
            and target.suffix == ".md"
            and fragment not in {anchor(h) for h in headings(target)}
        ):
            yield f"{doc.relative_to(REPO)}: links {href}, no such heading"


# -- the checker catches what it must (else the repository test below proves nothing) -----------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("see DESIGN §4 step 5", "old design document"),
        ("(reference/pipelines-api.md §3)", "reference file"),
        ("facts: shared/reference/openwebui-api.md", "shared/reference"),
        ("(reference §1.2)", "section number"),
        ('(docs/upstream/nowhere.md, "Valves")', "does not exist"),
        ('(docs/upstream/pipelines.md, "No such section")', "no heading"),
        ('docs/upstream/pipelines.md, "Valves" and "Nope"', "'Nope', which is no heading"),
        ('# see docs/upstream/pipelines.md,\n# "Valvez"', "no heading"),
        ('`docs/upstream/langfuse.md`, "Nope"', "no heading"),
    ],
)
def test_the_checker_finds_a_dangling_citation(text: str, problem: str) -> None:
    problems = list(dangling_citations(text, "sample"))
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    "text",
    [
        '(docs/upstream/pipelines.md, "Valves")',
        '(docs/upstream/open-webui.md, "The OpenAI connection config", "Admin\nauthentication"'
        ' and "Usage capability")',
        '    # (docs/upstream/open-webui.md,\n    # "How filters run in a chat")',
        'docs/install.md, "5. Conditions: what each reason means and how to fix it"',
        'docs/install.md, "Conditions: what each reason means and how to fix it"',
        "the Lua file docs/argocd-health.lua, and https://langfuse.com/docs/v4",
    ],
)
def test_the_checker_accepts_a_valid_citation(text: str) -> None:
    assert list(dangling_citations(text, "sample")) == []


# -- the repository ------------------------------------------------------------------------------


def test_the_file_list_covers_code_docs_and_the_chart() -> None:
    names = {p.relative_to(REPO).as_posix() for p in repository_files()}
    assert {
        "operator/openwebui_langfuse/connection.py",
        "docs/install.md",
        "docs/design.md",
        "charts/openwebui-langfuse/values.yaml",
        "charts/openwebui-langfuse/templates/NOTES.txt",
        "README.md",
    } <= names


def test_every_citation_resolves_inside_the_repository() -> None:
    problems = [
        problem
        for path in repository_files()
        if path != THIS
        for problem in dangling_citations(
            path.read_text(errors="replace"), str(path.relative_to(REPO))
        )
    ]
    assert not problems, "\n".join(problems)


def test_every_relative_link_of_the_docs_resolves() -> None:
    docs = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    problems = [problem for doc in docs for problem in dangling_links(doc)]
    assert not problems, "\n".join(problems)
