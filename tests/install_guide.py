"""docs/install.md as data: its sections and fenced blocks, for the tests that hold the guide
to what it says (the official chart's names and ports, and the install path run as written)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import yaml

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "install.md"
# The namespace every command and resource of the guide uses.
GUIDE_NAMESPACE = "open-webui"


def section(heading: str) -> str:
    """The text from ``heading`` (a whole line, e.g. ``## 3. Apply a LangfuseTracing``) to the
    next heading of level 2."""
    doc = GUIDE.read_text()
    start = doc.index(f"\n{heading}\n") + 1
    end = doc.find("\n## ", start + len(heading))
    return doc[start : end if end != -1 else len(doc)]


def blocks(heading: str, language: str) -> list[str]:
    """The fenced blocks of ``language`` (``yaml``, ``bash``, ``console``) in that section,
    dedented (a block inside a list item is indented with it)."""
    fence = re.compile(rf"^( *)```{language}\n(.*?)^\1```", re.DOTALL | re.MULTILINE)
    return [textwrap.dedent(body) for _, body in fence.findall(section(heading))]


def yaml_blocks(heading: str) -> list[Any]:
    return [yaml.safe_load(b) for b in blocks(heading, "yaml")]
