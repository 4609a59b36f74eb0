"""Which traced models the Langfuse project cannot price (pricing.py), from Open WebUI's model
list as /api/models answers it and the project's model definitions."""

from __future__ import annotations

from openwebui_langfuse.pricing import REPORTED_LIMIT, pricing_status, traced_names, unpriced

OPEN_WEBUI_MODELS = [
    {"id": "gpt-4o", "name": "GPT-4o", "owned_by": "openai"},
    {"id": "owlpfx.gpt-4o-mini", "name": "owlpfx.GPT-4o mini", "urlIdx": 1},
    {"id": "support-bot", "name": "Support", "info": {"base_model_id": "gpt-4.1"}},
    {"id": "llama3.1:8b", "name": "Llama", "owned_by": "ollama"},
    {"id": "lft_tracing", "name": "Langfuse", "pipeline": {"type": "filter"}},
    {"id": "arena-model", "name": "Arena", "owned_by": "arena"},
]
DEFINITIONS = [
    {"modelName": "gpt-4o", "matchPattern": "(?i)^(openai/)?(gpt-4o)$"},
    {"modelName": "gpt-4o-mini", "matchPattern": "(?i)^(openai/)?(gpt-4o-mini)$"},
    {"modelName": "gpt-4.1", "matchPattern": "(?i)^(openai/)?(gpt-4.1)$"},
    {"modelName": "broken", "matchPattern": "(unclosed"},
]


def test_traced_names_are_what_the_filter_sends() -> None:
    names = traced_names(OPEN_WEBUI_MODELS, ["*"], ["owlpfx"])
    assert names == {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "llama3.1:8b"}
    assert traced_names(OPEN_WEBUI_MODELS, ["support-bot"], []) == {"gpt-4.1"}


def test_only_names_no_definition_matches_are_unpriced() -> None:
    names = traced_names(OPEN_WEBUI_MODELS, ["*"], [])
    assert unpriced(names, DEFINITIONS) == ["llama3.1:8b", "owlpfx.gpt-4o-mini"]
    assert unpriced({"GPT-4O"}, DEFINITIONS) == []  # case-insensitive, as Langfuse matches


def test_a_long_list_is_cut_and_counted() -> None:
    names = {f"m{i:03}" for i in range(REPORTED_LIMIT + 5)}
    status = pricing_status(names, sorted(names))
    assert len(status["unpricedModels"]) == REPORTED_LIMIT
    assert status["unpricedCount"] == REPORTED_LIMIT + 5 and status["checkedModels"] == 55
    assert "unpricedCount" not in pricing_status({"a"}, ["a"])
