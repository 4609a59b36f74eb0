"""docs/install.md explains every condition reason the operator can write.

The reasons are collected from the operator's source (every CamelCase string literal of the
package outside ``__all__``, less the few words that are not reasons), so a new reason fails
this test until the install guide says what it means and how to fix it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "openwebui_langfuse"
DOC = REPO / "docs" / "install.md"
CAMEL = re.compile(r"^[A-Z][a-z]+(?:[A-Z][a-z0-9]*)*$")
# CamelCase literals that are no reason: condition types and statuses, kinds, policies, Event
# types, an HTTP header.
NOT_REASONS = {
    "Ready",
    "CredentialsValid",
    "FilterInstalled",
    "ValvesSynced",
    "ConnectionRegistered",
    "Reconciling",
    "True",
    "False",
    "Unknown",
    "LangfuseTracing",
    "ConfigMap",
    "Secret",
    "Delete",
    "Retain",
    "Normal",
    "Warning",
    "Authorization",
    "Opaque",
    "Lease",
}


def operator_reasons() -> set[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if "filters" in path.parts:  # the filter runs in Pipelines; it writes no condition
            continue
        tree = ast.parse(path.read_text())
        exported = {
            id(element)
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for element in getattr(node.value, "elts", [])
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and CAMEL.match(node.value)
                and id(node) not in exported
            ):
                found.add(node.value)
    return found - NOT_REASONS


def test_the_collection_finds_known_reasons() -> None:
    assert {
        "InvalidCredentials",
        "FilterLoadFailed",
        "SecretNotFound",
        "PersistentConfigDisabled",
        "RetryingAfterError",
    } <= operator_reasons()


def test_every_reason_is_in_the_condition_table() -> None:
    doc = DOC.read_text()
    table = doc[doc.index("## 5. Conditions") : doc.index("## 6. GitOps")]
    missing = sorted(r for r in operator_reasons() if f"`{r}`" not in table)
    assert not missing, f"docs/install.md's condition table does not explain: {', '.join(missing)}"
