"""Pure rules of the Langfuse stand-in: usage/cost normalisation (docs/upstream/langfuse.md,
"Usage and cost"), record merging, environment cleaning and value decoding. No server
involved."""

from __future__ import annotations

import pytest

from tests.peers.langfuse_standin.ingestion import normalise_environment
from tests.peers.langfuse_standin.store import merge_record
from tests.peers.langfuse_standin.usage import (
    from_legacy_usage,
    normalise_cost_details,
    normalise_usage_details,
)
from tests.peers.langfuse_standin.values import decode_io, decode_json_or_raw, normalise_iso


def test_usage_total_is_added_as_the_sum_when_missing() -> None:
    assert normalise_usage_details({"input": 10, "output": 5}) == {
        "input": 10,
        "output": 5,
        "total": 15,
    }
    assert normalise_usage_details({"input": 10, "total": 99}) == {"input": 10, "total": 99}


def test_usage_drops_negative_and_non_integer_values_and_parses_numeric_strings() -> None:
    cleaned = normalise_usage_details(
        {"input": "12", "output": -3, "x": 1.5, "y": True, "z": "many"}
    )
    assert cleaned == {"input": 12, "total": 12}
    assert normalise_usage_details({"output": -1}) is None
    assert normalise_usage_details("not a map") is None


def test_full_openai_usage_is_converted_with_details_subtracted() -> None:
    converted = normalise_usage_details(
        {
            "prompt_tokens": 100,
            "completion_tokens": 40,
            "total_tokens": 140,
            "prompt_tokens_details": {"cached_tokens": 30},
            "completion_tokens_details": {"reasoning_tokens": 10},
        }
    )
    assert converted == {
        "input": 70,
        "input_cached_tokens": 30,
        "output": 30,
        "output_reasoning_tokens": 10,
        "total": 140,
    }


def test_responses_api_trio_is_converted_but_a_partial_shape_is_kept_raw() -> None:
    assert normalise_usage_details({"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}) == {
        "input": 5,
        "output": 2,
        "total": 7,
    }
    assert normalise_usage_details({"input_tokens": 5, "output_tokens": 2}) == {
        "input_tokens": 5,
        "output_tokens": 2,
        "total": 7,
    }


def test_legacy_usage_becomes_usage_and_cost_details() -> None:
    usage, cost = from_legacy_usage({"input": 11, "output": 3, "unit": "TOKENS"})
    assert usage == {"input": 11, "output": 3, "total": 14}
    assert cost is None
    usage, cost = from_legacy_usage(
        {"promptTokens": 4, "completionTokens": 1, "inputCost": 0.5, "outputCost": 0.25}
    )
    assert usage == {"input": 4, "output": 1, "total": 5}
    assert cost == {"input": 0.5, "output": 0.25, "total": 0.75}


def test_cost_keeps_a_provided_total() -> None:
    assert normalise_cost_details({"input": 1.0, "total": 5.0}) == {"input": 1.0, "total": 5.0}


def test_merge_overwrites_non_null_fields_merges_metadata_and_unions_tags() -> None:
    record = {
        "name": "first",
        "output": None,
        "metadata": {"a": 1},
        "tags": ["x"],
        "createdAt": "2026-01-01T00:00:00.000Z",
        "timestamp": "2026-01-01T00:00:05.000Z",
    }
    merge_record(
        record,
        {
            "name": None,
            "output": "4",
            "metadata": {"b": 2},
            "tags": ["x", "y"],
            "createdAt": "2027-01-01T00:00:00.000Z",
            "timestamp": "2026-01-01T00:00:01.000Z",
        },
    )
    assert record == {
        "name": "first",
        "output": "4",
        "metadata": {"a": 1, "b": 2},
        "tags": ["x", "y"],
        "createdAt": "2026-01-01T00:00:00.000Z",
        "timestamp": "2026-01-01T00:00:01.000Z",
    }


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Production", "production"),
        ("langfuse-prod", "prod"),
        ("has space", "default"),
        (None, "default"),
        ("x" * 50, "x" * 40),
    ],
)
def test_environment_is_cleaned_like_the_server_does(raw: object, clean: str) -> None:
    assert normalise_environment(raw) == clean


def test_values_decode_json_with_a_raw_fallback() -> None:
    assert decode_json_or_raw('"open-webui"') == "open-webui"
    assert decode_json_or_raw("{not json") == "{not json"
    assert decode_io("4") == "4"  # a raw Python str stays text
    assert decode_io('{"a": 1}') == {"a": 1}
    assert normalise_iso("2026-11-26T10:00:00+02:00") == "2026-11-26T08:00:00.000Z"
    assert normalise_iso("yesterday") is None
