"""Model definitions (`/api/public/models`): the Langfuse-managed defaults every project sees,
validation of a custom model, the `Model` read shape and cost from prices.

See docs/upstream/langfuse.md, "Scores and models (SDK 5.0.4 client, server code)".
A model's prices live in pricing tiers; the flat `inputPrice`/`outputPrice`/`totalPrice` of
a request become one default tier named "Standard", and the read shape repeats the default
tier's prices as `prices` (the v5 SDK's `Model` type requires it).
"""

from __future__ import annotations

import re
from typing import Any

from .values import new_id, normalise_iso, parse_iso

UNITS = frozenset({"CHARACTERS", "TOKENS", "MILLISECONDS", "SECONDS", "IMAGES", "REQUESTS"})
TOKENIZERS = frozenset({"openai", "claude"})
FLAT_PRICES = {"inputPrice": "input", "outputPrice": "output", "totalPrice": "total"}
INVALID_PATTERN = "matchPattern is not a valid regex pattern (Postgres)"
NOT_FOUND = "No model with this id found."
NOT_FOUND_ON_DELETE = (
    "No model with this id found. Note: You cannot delete built-in models, override them with "
    "a model with the same name."
)
_MANAGED_CREATED_AT = "2024-05-13T00:00:00.000Z"


class ModelError(ValueError):
    """A create/upsert body the server refuses with 400 `{"message"}`."""


def _managed(model_id: str, name: str, pattern: str, prices: dict[str, float]) -> dict[str, Any]:
    return {
        "id": model_id,
        "projectId": None,  # managed models belong to no project: every project sees them
        "modelName": name,
        "matchPattern": pattern,
        "startDate": None,
        "unit": "TOKENS",
        "tokenizerId": "openai",
        "tokenizerConfig": {"tokenizerModel": name, "tokensPerName": 1, "tokensPerMessage": 3},
        "isLangfuseManaged": True,
        "createdAt": _MANAGED_CREATED_AT,
        "pricingTiers": [_default_tier(model_id, prices)],
    }


def _default_tier(model_id: str, prices: dict[str, float]) -> dict[str, Any]:
    return {
        "id": f"{model_id}_tier_default",
        "name": "Standard",
        "isDefault": True,
        "priority": 0,
        "conditions": [],
        "prices": dict(prices),
    }


# A few of the server's default models (per-token USD, OpenAI's list prices), enough for a
# client to tell a priced model name from an unpriced one such as an Ollama `llama3.1:8b`.
MANAGED_MODELS: tuple[dict[str, Any], ...] = (
    _managed(
        "standin-gpt-4o",
        "gpt-4o",
        r"(?i)^(openai/)?(gpt-4o)$",
        {"input": 2.5e-6, "input_cached_tokens": 1.25e-6, "output": 1e-5},
    ),
    _managed(
        "standin-gpt-4o-mini",
        "gpt-4o-mini",
        r"(?i)^(openai/)?(gpt-4o-mini)$",
        {"input": 1.5e-7, "input_cached_tokens": 7.5e-8, "output": 6e-7},
    ),
    _managed(
        "standin-gpt-4.1",
        "gpt-4.1",
        r"(?i)^(openai/)?(gpt-4.1)$",
        {"input": 2e-6, "input_cached_tokens": 5e-7, "output": 8e-6},
    ),
)


def _price(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ModelError(f"{field} must be a non-negative number")
    return float(value)


def _tiers_from_request(model_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    flat: dict[str, float] = {}
    for field, key in FLAT_PRICES.items():
        price = _price(body.get(field), field)
        if price is not None:
            flat[key] = price
    tiers = body.get("pricingTiers")
    if tiers is not None and flat:
        raise ModelError("Cannot provide both flat prices and pricingTiers")
    if "total" in flat and ("input" in flat or "output" in flat):
        raise ModelError("Cannot set totalPrice together with inputPrice or outputPrice")
    if tiers is None:
        if not flat:
            raise ModelError("Provide either pricingTiers or inputPrice/outputPrice/totalPrice")
        return [_default_tier(model_id, flat)]
    return _validated_tiers(tiers)


def _validated_tiers(tiers: Any) -> list[dict[str, Any]]:
    if not isinstance(tiers, list) or not tiers:
        raise ModelError("pricingTiers must be a non-empty array")
    checked = []
    for tier in tiers:
        if not isinstance(tier, dict) or not isinstance(tier.get("name"), str):
            raise ModelError("each pricing tier needs a name")
        prices = tier.get("prices")
        if not isinstance(prices, dict) or not prices:
            raise ModelError("each pricing tier must define at least one price")
        checked.append(
            {
                "id": new_id(),
                "name": tier["name"],
                "isDefault": bool(tier.get("isDefault", False)),
                "priority": tier.get("priority"),
                "conditions": list(tier.get("conditions") or []),
                "prices": {k: _price(v, f"prices.{k}") for k, v in prices.items()},
            }
        )
    defaults = [t for t in checked if t["isDefault"]]
    if len(defaults) != 1 or defaults[0]["priority"] != 0 or defaults[0]["conditions"]:
        raise ModelError(
            "pricingTiers must include exactly one default tier with priority 0 and no conditions"
        )
    if len({t["name"] for t in checked}) != len(checked) or len(
        {t["priority"] for t in checked}
    ) != len(checked):
        raise ModelError("pricing tier names and priorities must be unique")
    return sorted(checked, key=lambda tier: tier["priority"])


def _valid_pattern(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def model_from_request(
    body: Any, project_id: str, model_id: str | None = None, created_at: str | None = None
) -> dict[str, Any]:
    """A stored custom model from a `CreateModelRequest` body (also the PUT body)."""
    if not isinstance(body, dict):
        raise ModelError("Invalid request data: expected an object")
    for field in ("modelName", "matchPattern"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise ModelError(f"Invalid request data: {field} is required")
    if not _valid_pattern(body["matchPattern"]):
        raise ModelError(INVALID_PATTERN)
    unit = body.get("unit")
    if unit is not None and unit not in UNITS:
        raise ModelError(f"Invalid request data: unit must be one of {sorted(UNITS)}")
    tokenizer = body.get("tokenizerId")
    if tokenizer is not None and tokenizer not in TOKENIZERS:
        raise ModelError(f"Invalid request data: tokenizerId must be one of {sorted(TOKENIZERS)}")
    start_date = body.get("startDate")
    if start_date is not None and normalise_iso(start_date) is None:
        raise ModelError("Invalid request data: startDate must be an ISO 8601 datetime")
    model_id = model_id or new_id()
    return {
        "id": model_id,
        "projectId": project_id,
        "modelName": body["modelName"],
        "matchPattern": body["matchPattern"],
        "startDate": normalise_iso(start_date) if start_date is not None else None,
        "unit": unit,
        "tokenizerId": tokenizer,
        "tokenizerConfig": body.get("tokenizerConfig"),
        "isLangfuseManaged": False,
        "createdAt": created_at,
        "pricingTiers": _tiers_from_request(model_id, body),
    }


def default_prices(model: dict[str, Any]) -> dict[str, float]:
    for tier in model["pricingTiers"]:
        if tier["isDefault"]:
            return dict(tier["prices"])
    return {}


def model_view(model: dict[str, Any]) -> dict[str, Any]:
    """The `Model` read shape: the flat prices and `prices` come from the default tier."""
    prices = default_prices(model)
    view = {key: value for key, value in model.items() if key != "projectId"}
    view.update({field: prices.get(key) for field, key in FLAT_PRICES.items()})
    view["prices"] = {usage: {"price": price} for usage, price in prices.items()}
    return view


def ordered(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The server's list order: model name, unit, then newest start date, undated last.
    Two stable sorts: newest first, then by name, unit and whether a date is set."""
    newest_first = sorted(models, key=lambda m: m.get("startDate") or "", reverse=True)
    return sorted(
        newest_first,
        key=lambda m: (m["modelName"], m.get("unit") or "", m.get("startDate") is None),
    )


def matching_model(
    models: list[dict[str, Any]], model_name: str, started: str | None
) -> dict[str, Any] | None:
    """The model that prices an observation: its pattern matches the model string (search, as
    Postgres `~` does; the patterns anchor themselves), its start date is not after the
    observation's; custom models win over managed ones, then the newest start date."""
    moment = parse_iso(started)
    candidates = []
    for model in models:
        begins = parse_iso(model.get("startDate"))
        if begins is not None and moment is not None and begins > moment:
            continue
        try:
            if re.search(model["matchPattern"], model_name):
                candidates.append(model)
        except re.error:
            continue
    candidates.sort(key=lambda m: m.get("startDate") or "", reverse=True)
    candidates.sort(key=lambda m: bool(m["isLangfuseManaged"]))
    return candidates[0] if candidates else None


def cost_from_prices(usage: dict[str, Any], prices: dict[str, float]) -> dict[str, float] | None:
    """Each usage key times the price of the same key; `total` is the sum of the others (or
    the priced total alone when only `total` has a price). None when nothing is priced."""
    priced = {
        key: float(units) * prices[key]
        for key, units in usage.items()
        if key in prices and isinstance(units, int | float)
    }
    parts = {key: cost for key, cost in priced.items() if key != "total"}
    if parts:
        return {**parts, "total": sum(parts.values())}
    if "total" in priced:
        return {"total": priced["total"]}
    return None
