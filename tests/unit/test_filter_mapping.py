"""Pure parts of the bundled filter: usage/cost mapping, media stripping, ids, environment."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from tests.unit.test_filter_capture import load_filter_module


@pytest.fixture(scope="module")
def module() -> ModuleType:
    return load_filter_module("langfuse_tracing_filter_mapping_test")


@pytest.mark.parametrize(
    ("usage", "details", "cost"),
    [
        # OpenAI chat completions
        (
            {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            {"input": 10, "output": 5, "total": 15},
            None,
        ),
        # Responses API / Open WebUI's normalised keys only
        ({"input_tokens": 7, "output_tokens": 3}, {"input": 7, "output": 3, "total": 10}, None),
        # Ollama
        (
            {"prompt_eval_count": 30, "eval_count": 20},
            {"input": 30, "output": 20, "total": 50},
            None,
        ),
        # cached and reasoning tokens are split out of input/output, as Langfuse prices them
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "total_tokens": 150,
                "prompt_tokens_details": {"cached_tokens": 40},
                "completion_tokens_details": {"reasoning_tokens": 20},
            },
            {
                "input": 60,
                "input_cached_tokens": 40,
                "output": 30,
                "output_reasoning_tokens": 20,
                "total": 150,
            },
            None,
        ),
        # reported cost (e.g. OpenRouter) is passed on, so Langfuse does not re-price
        (
            {"prompt_tokens": 1, "completion_tokens": 1, "cost": 0.25},
            {"input": 1, "output": 1, "total": 2},
            {"total": 0.25},
        ),
        (None, None, None),
        ("not a dict", None, None),
        ({"prompt_tokens": -1, "completion_tokens": True}, None, None),
        ({"cost": 0.1}, None, {"total": 0.1}),
    ],
)
def test_usage_and_cost(module: ModuleType, usage: Any, details: Any, cost: Any) -> None:
    assert module.usage_and_cost(usage) == (details, cost)


def test_inline_media_is_replaced_and_the_original_left_alone(module: ModuleType) -> None:
    image = "data:image/png;base64," + "A" * 5000
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "see"},
                {"type": "image_url", "image_url": {"url": image}},
            ],
        },
        {"role": "assistant", "content": "ok"},
    ]
    cleaned = module.without_inline_media(messages)
    assert cleaned[0]["content"][1]["image_url"]["url"].startswith("[inline image/png omitted")
    assert cleaned[1] is messages[1]  # untouched parts are not copied
    assert messages[0]["content"][1]["image_url"]["url"] == image
    plain = [{"role": "user", "content": "short data:x"}]
    assert module.without_inline_media(plain) is plain


def test_message_text(module: ModuleType) -> None:
    assert module.message_text({"content": "x"}) == "x"
    assert (
        module.message_text(
            {"content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"text": "b"}]}
        )
        == "a\nb"
    )
    assert module.message_text({"content": None}) is None
    assert module.message_text("nope") is None


def test_trace_ids_are_stable_hex_and_distinct(module: ModuleType) -> None:
    first = module.trace_id_for("chat-1")
    assert first == module.trace_id_for("chat-1")
    assert first != module.trace_id_for("chat-2")
    assert len(first) == 32 and int(first, 16) > 0


def test_generation_ids_follow_the_documented_formula(module: ModuleType) -> None:
    """docs/tracing.md: sha256("message:<id>")[:16], and a task on the message its own id."""
    import hashlib

    turn = module.generation_id_for("msg-1")
    assert turn == hashlib.sha256(b"message:msg-1").hexdigest()[:16]
    assert turn == module.generation_id_for("msg-1")
    assert turn != module.generation_id_for("msg-2")
    assert module.generation_id_for("msg-1", "title_generation") not in (turn, "")
    assert module.trace_id_for("chat-1") == hashlib.sha256(b"chat-1").hexdigest()[:32]


def test_a_span_sent_twice_for_one_message_has_one_id(module: ModuleType) -> None:
    import json

    obs = module.Observation(
        trace_key="chat-1", kind="chat", session_id="chat-1", user_id=None, tags=(),
        name="chat", start_ns=1, model="m", model_id="m", model_name=None, chat_id="chat-1",
        message_id="msg-1", task=None, stream=None, capture_content=False,
    )  # fmt: skip
    first, again = json.loads(module.encode_span(obs)), json.loads(module.encode_span(obs))
    assert first["spanId"] == again["spanId"] == module.generation_id_for("msg-1")
    obs.message_id = None
    assert json.loads(module.encode_span(obs))["spanId"] != first["spanId"]


@pytest.mark.parametrize(
    ("given", "sent"),
    [("production", "production"), ("Staging EU", "staging-eu"), ("langfuse-x", ""), ("", "")],
)
def test_environment_is_made_acceptable_to_langfuse(
    module: ModuleType, given: str, sent: str
) -> None:
    assert module.sanitized_environment(given) == sent


def test_long_text_is_cut_to_its_byte_limit_with_a_marker(module: ModuleType) -> None:
    text = "x" * (module.MAX_TEXT_BYTES + 10)
    cut = module.cut(text)
    kept = cut.partition("... [truncated ")[0]
    assert text.startswith(kept) and len(kept) > module.MAX_TEXT_BYTES - 100
    assert cut.endswith(f"[truncated {len(text) - len(kept)} characters]")
    assert len(cut.encode()) <= module.MAX_TEXT_BYTES


@pytest.mark.parametrize("unit", ["é", "日", "🙂", "aé"])
def test_text_is_cut_in_utf8_bytes_without_splitting_a_character(
    module: ModuleType, unit: str
) -> None:
    limit = 1_000
    size = len(unit.encode())
    fits = unit * (limit // size)
    assert module.cut(fits, limit) is fits  # exactly at the limit: unchanged
    assert module.utf8_size_bound(fits) >= len(fits.encode())
    over = unit * (limit // size + 1)
    cut = module.cut(over, limit)
    assert len(cut.encode()) <= limit
    kept = cut.partition("... [truncated ")[0]
    assert over.startswith(kept) and len(kept.encode()) > limit - 100
    assert cut.endswith(f"[truncated {len(over) - len(kept)} characters]")
    long = unit * 100_000  # far over: the cost is that of the limit, and the result the same
    assert module.cut(long, limit).partition("... [")[0] == kept


def test_otlp_values(module: ModuleType) -> None:
    assert module.otlp_value(True) == {"boolValue": True}
    assert module.otlp_value(3) == {"intValue": "3"}
    assert module.otlp_value(0.5) == {"doubleValue": 0.5}
    assert module.otlp_value(["a"]) == {"arrayValue": {"values": [{"stringValue": "a"}]}}
    assert module.otlp_attributes({"a": None, "b": "x"}) == [
        {"key": "b", "value": {"stringValue": "x"}}
    ]


CUSTOM = {"id": "support-bot", "name": "Support Bot", "info": {"base_model_id": "gpt-4o-mini"}}


@pytest.mark.parametrize(
    ("model_id", "model_info", "prefixes", "sent"),
    [
        # a connection model as /api/models lists it: no `info`, its id is what the upstream knows
        (
            "gpt-4o-mini",
            {"id": "gpt-4o-mini", "owned_by": "openai", "urlIdx": 0},
            [],
            "gpt-4o-mini",
        ),
        ("gpt-4o-mini", None, [], "gpt-4o-mini"),
        # a base-model override: info.base_model_id is null
        ("gpt-4o-mini", {"info": {"base_model_id": None}}, [], "gpt-4o-mini"),
        # a custom Workspace model is priced as its base model
        ("support-bot", CUSTOM, [], "gpt-4o-mini"),
        # a prefixed connection's model: "<prefix_id>.<upstream id>"
        (
            "azure.gpt-4o",
            {"id": "azure.gpt-4o", "openai": {"id": "azure.gpt-4o"}},
            ["azure"],
            "gpt-4o",
        ),
        ("azure.gpt-4o", None, [], "azure.gpt-4o"),
        ("azure.gpt-4o", None, ["azur", "other"], "azure.gpt-4o"),
        # the longest matching prefix wins; the prefix alone is not a model name
        ("eu.azure.gpt-4o", None, ["eu", "eu.azure"], "gpt-4o"),
        ("azure.", None, ["azure"], "azure."),
        # a custom model based on a prefixed connection's model
        ("bot", {"info": {"base_model_id": "azure.gpt-4o"}}, ["azure"], "gpt-4o"),
    ],
)
def test_the_model_name_sent_is_one_langfuse_can_price(
    module: ModuleType, model_id: str, model_info: Any, prefixes: list[str], sent: str
) -> None:
    assert module.pricing_model_name(model_id, model_info, prefixes) == sent
    assert module.pricing_model_name(model_id, model_info, tuple(prefixes)) == sent


def test_base_model_id_of_reads_only_a_named_base(module: ModuleType) -> None:
    assert module.base_model_id_of(CUSTOM) == "gpt-4o-mini"
    for model_info in (None, {}, {"info": None}, {"info": {"base_model_id": ""}}, "x"):
        assert module.base_model_id_of(model_info) is None
