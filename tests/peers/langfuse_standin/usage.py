"""Usage and cost normalisation, as the Langfuse worker applies it.

See docs/upstream/langfuse.md, "Usage and cost".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

Number = TypeVar("Number", int, float)

# OpenAI's two complete usage shapes; only a complete trio is converted, a partial one
# (e.g. {input_tokens, output_tokens}) is kept raw, as the server does.
_OPENAI_SHAPES = (
    (
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    ),
    (
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "input_tokens_details",
        "output_tokens_details",
    ),
)


def _as_non_negative_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str):
        try:
            parsed = int(value.strip())
        except ValueError:
            return None
        return parsed if parsed >= 0 else None
    return None


def _as_non_negative_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if parsed >= 0 else None
    return None


def _from_openai_shape(raw: dict[str, Any]) -> dict[str, Any] | None:
    for prompt, completion, total, prompt_details, completion_details in _OPENAI_SHAPES:
        if not all(key in raw for key in (prompt, completion, total)):
            continue
        converted: dict[str, Any] = {}
        input_rest = _as_non_negative_int(raw[prompt]) or 0
        output_rest = _as_non_negative_int(raw[completion]) or 0
        for details_key, prefix in ((prompt_details, "input"), (completion_details, "output")):
            details = raw.get(details_key)
            if not isinstance(details, dict):
                continue
            for name, count in details.items():
                amount = _as_non_negative_int(count)
                if amount is None:
                    continue
                converted[f"{prefix}_{name}"] = amount
                if prefix == "input":
                    input_rest -= amount
                else:
                    output_rest -= amount
        converted["input"] = max(input_rest, 0)
        converted["output"] = max(output_rest, 0)
        converted["total"] = raw[total]
        return converted
    return None


def _cleaned_with_total(
    source: dict[Any, Any], amount_of: Callable[[Any], Number | None]
) -> dict[str, Number] | None:
    """The entries ``amount_of`` accepts (keys as strings), None when none is; `total` is the
    sum of the others when not given."""
    cleaned = {
        str(key): amount
        for key, value in source.items()
        if (amount := amount_of(value)) is not None
    }
    if not cleaned:
        return None
    if "total" not in cleaned:
        cleaned["total"] = sum(cleaned.values())
    return cleaned


def normalise_usage_details(raw: Any) -> dict[str, int] | None:
    """Clean a usage map: convert complete OpenAI shapes, drop negative or non-integer
    values, parse numeric strings, and add `total` (the sum) when it is missing."""
    if not isinstance(raw, dict) or not raw:
        return None
    return _cleaned_with_total(_from_openai_shape(raw) or raw, _as_non_negative_int)


def normalise_cost_details(raw: Any) -> dict[str, float] | None:
    """Clean a cost map (USD); `total` is the sum of the others when not given."""
    if not isinstance(raw, dict) or not raw:
        return None
    return _cleaned_with_total(raw, _as_non_negative_float)


def from_legacy_usage(usage: Any) -> tuple[dict[str, int] | None, dict[str, float] | None]:
    """Convert the legacy `usage` object of SDK v2 into usage and cost details.

    Accepts `{input, output, total, unit, inputCost, outputCost, totalCost}` and the
    OpenAI-style `{promptTokens, completionTokens, totalTokens}`.
    """
    if not isinstance(usage, dict):
        return None, None
    counts = {
        "input": usage.get("input", usage.get("promptTokens")),
        "output": usage.get("output", usage.get("completionTokens")),
        "total": usage.get("total", usage.get("totalTokens")),
    }
    costs = {
        "input": usage.get("inputCost"),
        "output": usage.get("outputCost"),
        "total": usage.get("totalCost"),
    }
    usage_details = normalise_usage_details({k: v for k, v in counts.items() if v is not None})
    cost_details = normalise_cost_details({k: v for k, v in costs.items() if v is not None})
    return usage_details, cost_details
