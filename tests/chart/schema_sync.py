"""Keep `tracing.spec` in the chart's values.schema.json in step with the CRD.

The CRD (charts/openwebui-langfuse/files/crd-langfusetracings.yaml) is the single source of the
LangfuseTracing schema. Helm validates values before it creates anything, so the chart's values
schema carries a JSON-schema translation of the CRD's spec; without it a bad `tracing.spec` would
only be rejected by the API server half way through an install. CEL rules do not translate; the
URL and duration rules are restated as patterns below, the cross-field rules are checked by the
chart's `_tracing.tpl`.

    python -m tests.chart.schema_sync          # rewrite values.schema.json
    python -m tests.chart.schema_sync --check  # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "openwebui-langfuse"
CRD_FILE = CHART / "files" / "crd-langfusetracings.yaml"
VALUES_SCHEMA = CHART / "values.schema.json"

# JSON-schema keywords that mean the same in a CRD's OpenAPI v3 schema.
_COPIED = (
    "type",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "maxProperties",
    "required",
)

_HOST = r"^https?://[^/?#\s@]+$"
# Patterns that restate the CRD's CEL rules (keyed by dotted path below spec).
_CEL_AS_PATTERN = {
    "langfuse.host": _HOST,
    "pipelines.url": _HOST,
    "openWebUI.url": _HOST,
    "openWebUI.connectionUrl": r"^https?://[^/?#\s@]+(/[^?#\s]*[^/?#\s])?$",
    "filter.url": r"^https?://[^/?#\s@]+/[^?#\s]*\.py(\?[^#\s]*)?$",
    "resyncInterval": r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$",
}


def translate(node: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Translate one CRD schema node (and its children) into strict JSON schema."""
    out: dict[str, Any] = {key: node[key] for key in _COPIED if key in node}
    if path in _CEL_AS_PATTERN:
        out["pattern"] = _CEL_AS_PATTERN[path]
    if node.get("x-kubernetes-preserve-unknown-fields"):
        # free-form (filter.valves); its declared keys are forbidden ones, which _tracing.tpl
        # refuses with a clearer message than a schema could give
        out["additionalProperties"] = True
    elif "properties" in node:
        out["additionalProperties"] = False
        out["properties"] = {
            name: translate(child, f"{path}.{name}".lstrip("."))
            for name, child in node["properties"].items()
        }
    if "items" in node:
        out["items"] = translate(node["items"], path + "[]")
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


def spec_schema() -> dict[str, Any]:
    """The JSON schema of `tracing.spec`, translated from the CRD's spec.

    Nothing is required at the top: the chart's default is an empty spec (tracing disabled),
    `_tracing.tpl` demands `langfuse` when tracing is enabled and, with target pipelines, fills
    in `pipelines`.
    """
    crd = yaml.safe_load(CRD_FILE.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    schema = translate(spec)
    schema.pop("required", None)
    return schema


def updated_values_schema() -> str:
    """values.schema.json text with `tracing.spec` regenerated."""
    schema = json.loads(VALUES_SCHEMA.read_text())
    schema["properties"]["tracing"]["properties"]["spec"] = spec_schema()
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, exit 1 if stale")
    args = parser.parse_args(argv)
    text = updated_values_schema()
    if args.check:
        if VALUES_SCHEMA.read_text() != text:
            print(
                f"{VALUES_SCHEMA} is stale: run python -m tests.chart.schema_sync", file=sys.stderr
            )
            return 1
        return 0
    VALUES_SCHEMA.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
