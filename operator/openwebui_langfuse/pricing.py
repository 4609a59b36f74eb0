"""Which traced models the Langfuse project cannot price (``status.pricing``).

Langfuse prices a generation by matching its model name against each model definition's
``matchPattern``, a case-insensitive regular expression (docs/upstream/langfuse.md, "Usage and
cost"); a name nothing matches costs $0 and nothing says so. The filter sends the name
``pricing_model_name`` gives (a Workspace model as its base model, a connection prefix cut:
docs/tracing.md), so the operator maps Open WebUI's models the same way and reports the names
no definition of the project matches, for the user to add a price (Langfuse → Settings →
Models) or fix the mapping.

Read every ``PRICING_CHECK_SECONDS`` per resource (and after a spec change): Open WebUI's model
list as it last read it (no refresh, so no provider is asked) and the project's models, a page
of 100 at a time (about 170 built-in ones).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from openwebui_langfuse.clients.openwebui import OpenWebUIClient, OpenWebUIError
from openwebui_langfuse.connection import MODEL_PREFIXES_VALVE, connection_prefixes
from openwebui_langfuse.feedback import traces_model
from openwebui_langfuse.filters.langfuse_tracing_filter import pricing_model_name
from openwebui_langfuse.models import LangfuseTracingSpec

logger = logging.getLogger("openwebui_langfuse")

MODELS_PATH = "/api/public/models"
PRICING_CHECK_SECONDS = 3600.0
# A status is no place for thousands of names: the first ones, sorted, and the count.
REPORTED_LIMIT = 50
_PAGE = 100
_MAX_PAGES = 50


class PricingError(Exception):
    """The project's models could not be read (the message names the call and status)."""


def traced_names(
    open_webui_models: Iterable[Mapping[str, Any]],
    models: Sequence[str],
    prefixes: Iterable[str],
) -> set[str]:
    """The model names the filter sends for the models this resource traces: Open WebUI's
    chat models (not Pipelines filters, not arena models), mapped as the filter maps them."""
    names: set[str] = set()
    prefixes = list(prefixes)
    for model in open_webui_models:
        model_id = model.get("id")
        if not isinstance(model_id, str) or not traces_model(models, model_id):
            continue
        pipeline = model.get("pipeline")
        if isinstance(pipeline, Mapping) and pipeline.get("type") == "filter":
            continue
        if model.get("owned_by") == "arena":
            continue
        names.add(pricing_model_name(model_id, model, prefixes))
    return names


def unpriced(names: Iterable[str], definitions: Iterable[Mapping[str, Any]]) -> list[str]:
    """The names no definition's ``matchPattern`` matches, sorted."""
    patterns = []
    for definition in definitions:
        pattern = definition.get("matchPattern")
        if not isinstance(pattern, str):
            continue
        try:
            patterns.append(re.compile(pattern, re.IGNORECASE))
        except re.error:
            continue  # a Postgres-only construct: that definition is not checked here
    return sorted(name for name in names if not any(p.search(name) for p in patterns))


async def project_models(
    http: httpx.AsyncClient, host: str, public_key: str, secret_key: str, http_timeout: float
) -> list[dict[str, Any]]:
    """Every model definition the project sees (its own and Langfuse's built-in ones)."""
    found: list[dict[str, Any]] = []
    auth = httpx.BasicAuth(public_key, secret_key)
    for page in range(1, _MAX_PAGES + 1):
        try:
            response = await http.get(
                f"{host.rstrip('/')}{MODELS_PATH}",
                params={"page": page, "limit": _PAGE},
                auth=auth,
                timeout=http_timeout,
            )
        except httpx.HTTPError as exc:
            raise PricingError(f"GET {MODELS_PATH} failed ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise PricingError(f"GET {MODELS_PATH} answered HTTP {response.status_code}")
        try:
            body = response.json()
            rows, meta = body["data"], body.get("meta") or {}
        except (ValueError, KeyError, TypeError):
            raise PricingError(f"GET {MODELS_PATH}: not Langfuse's model list") from None
        found.extend(r for r in rows if isinstance(r, dict))
        if page >= int(meta.get("totalPages") or 1) or not rows:
            break
    return found


def pricing_status(names: set[str], missing: list[str]) -> dict[str, Any]:
    """``status.pricing``; no timestamp, so a check that finds the same writes nothing."""
    status: dict[str, Any] = {
        "checkedModels": len(names),
        "unpricedModels": missing[:REPORTED_LIMIT],
    }
    if len(missing) > REPORTED_LIMIT:
        status["unpricedCount"] = len(missing)
    return status


async def check_pricing(
    spec: LangfuseTracingSpec,
    client: OpenWebUIClient,
    http: httpx.AsyncClient,
    public_key: str,
    secret_key: str,
    *,
    http_timeout: float,
) -> dict[str, Any] | None:
    """``status.pricing`` of a resource, or None when Open WebUI or Langfuse could not be read
    (logged; the next check tries again). ``client`` is closed here."""
    prefixes: list[str] = []
    valve = spec.filter.valves.get(MODEL_PREFIXES_VALVE)
    try:
        async with client:
            if isinstance(valve, list):
                prefixes = [str(p) for p in valve]
            elif spec.target == "function":  # the operator fills the valve from these
                prefixes = await connection_prefixes(client) or []
            models = await client.list_models()
        definitions = await project_models(
            http, spec.langfuse.host, public_key, secret_key, http_timeout
        )
    except (OpenWebUIError, PricingError) as exc:
        logger.info("pricing check skipped: %s", exc)
        return None
    names = traced_names(models, spec.filter.models, prefixes)
    return pricing_status(names, unpriced(names, definitions))
