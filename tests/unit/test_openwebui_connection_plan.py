"""The pure connection rules: Open WebUI's OpenAI config in, the config to store out."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from openwebui_langfuse.clients.openwebui import OpenAIConfig
from openwebui_langfuse.connection import (
    find_connection,
    import_merges,
    parse_version,
    plan_registration,
    plan_removal,
    plan_usage_capability,
    same_connection_url,
)

PIPELINES = "http://pipelines.ns.svc:9099"
KEY = "pipelines-key-123"


def config(
    urls: list[str],
    keys: list[str] | None = None,
    configs: dict[str, Any] | None = None,
    enable: bool | None = True,
) -> OpenAIConfig:
    return OpenAIConfig(
        enable=enable,
        base_urls=urls,
        keys=keys if keys is not None else [f"key-{i}" for i in range(len(urls))],
        configs=configs if configs is not None else {},
    )


def others() -> OpenAIConfig:
    """Two connections a person set up, each with a rich config."""
    return config(
        ["https://api.openai.com/v1", "http://ollama-openai:11434/v1"],
        ["sk-openai", "ollama"],
        {
            "0": {"enable": True, "prefix_id": "oa", "model_ids": ["gpt-4o"], "tags": ["paid"]},
            "1": {"enable": False, "connection_type": "local", "headers": {"X-A": "b"}},
        },
    )


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://p:9099", "http://p:9099/", True),
        ("http://p:9099", "http://p:9099/v1", True),
        ("http://p:9099/v1/", "http://p:9099", True),
        ("HTTP://P.example:9099", "http://p.example:9099", True),
        ("http://p:80", "http://p", True),
        ("https://p:443/", "https://p", True),
        (" http://p:9099 ", "http://p:9099", True),
        ("http://p:9099", "http://p:9098", False),
        ("http://p:9099", "https://p:9099", False),
        ("http://p:9099/team-a", "http://p:9099/team-b", False),
        ("http://p:9099/v2", "http://p:9099", False),
        # The official open-webui chart writes the fully qualified Service name.
        (
            "http://owui-pipelines.ns.svc.cluster.local:9099",
            "http://owui-pipelines.ns.svc:9099",
            True,
        ),
        ("http://p.ns.svc.cluster.local.:9099/v1", "http://p.ns.svc:9099", True),
        ("http://p.ns.svc.corp.example:9099", "http://p.ns.svc.cluster.local:9099", True),
        ("http://p.ns.svc.cluster.local:9099", "http://p.other.svc:9099", False),
        ("http://p.ns:9099", "http://p.ns.svc:9099", False),
        ("http://a.b.svcx.example:9099", "http://a.b.svcx:9099", False),
    ],
)
def test_connection_urls_compare_by_server(a: str, b: str, same: bool) -> None:
    assert same_connection_url(a, b) is same


def test_registration_appends_to_an_empty_config() -> None:
    plan = plan_registration(config([], [], {}, enable=None), PIPELINES, KEY)
    assert plan.idx == 0
    assert plan.config.to_wire() == {
        "ENABLE_OPENAI_API": True,
        "OPENAI_API_BASE_URLS": [PIPELINES],
        "OPENAI_API_KEYS": [KEY],
        "OPENAI_API_CONFIGS": {"0": {"enable": True}},
    }
    assert plan.changes  # a write is due


def test_registration_appends_and_keeps_every_other_connection_exactly() -> None:
    current = others()
    before = copy.deepcopy(current.to_wire())
    plan = plan_registration(current, PIPELINES, KEY)
    wire = plan.config.to_wire()
    assert plan.idx == 2
    assert plan.added is True
    assert wire["OPENAI_API_BASE_URLS"] == [*before["OPENAI_API_BASE_URLS"], PIPELINES]
    assert wire["OPENAI_API_KEYS"] == [*before["OPENAI_API_KEYS"], KEY]
    assert wire["OPENAI_API_CONFIGS"] == {**before["OPENAI_API_CONFIGS"], "2": {"enable": True}}
    assert current.to_wire() == before  # the input is not mutated


def test_registration_stores_the_url_without_a_trailing_slash() -> None:
    plan = plan_registration(config([]), f" {PIPELINES}/ ", KEY)
    assert plan.config.base_urls == [PIPELINES]
    assert plan_registration(plan.config, f"{PIPELINES}/", KEY).changes == ()


def test_registration_of_a_registered_connection_changes_nothing() -> None:
    current = others()
    first = plan_registration(current, PIPELINES, KEY)
    second = plan_registration(first.config, PIPELINES, KEY)
    assert second.changes == ()
    assert second.config.to_wire() == first.config.to_wire()
    assert second.idx == first.idx


def test_registration_adopts_an_entry_written_with_v1_and_keeps_its_url() -> None:
    current = config(["http://x:1", f"{PIPELINES}/v1/"], ["a", KEY], {"1": {"enable": True}})
    plan = plan_registration(current, PIPELINES, KEY)
    assert plan.idx == 1
    assert plan.changes == ()
    assert plan.config.base_urls == ["http://x:1", f"{PIPELINES}/v1/"]
    assert plan.added is False


@pytest.mark.parametrize(
    ("entry", "expected", "phrase"),
    [
        ({"enable": False, "tags": ["t"]}, {"enable": True, "tags": ["t"]}, "disabled"),
        (
            {"enable": True, "model_ids": ["echo"], "prefix_id": "pl", "connection_type": "local"},
            {"enable": True, "connection_type": "local"},
            "model_ids",
        ),
        ({"enable": True, "auth_type": "none"}, {"enable": True, "auth_type": "bearer"}, "bearer"),
        ({"tags": ["t"]}, {"enable": True, "tags": ["t"]}, "enable"),
    ],
)
def test_registration_repairs_a_connection_changed_by_hand(
    entry: dict[str, Any], expected: dict[str, Any], phrase: str
) -> None:
    current = config(["http://x:1", PIPELINES], ["a", KEY], {"0": {"enable": False}, "1": entry})
    plan = plan_registration(current, PIPELINES, KEY)
    assert plan.idx == 1
    assert plan.config.configs == {"0": {"enable": False}, "1": expected}
    assert any(phrase in change for change in plan.changes)


def test_registration_with_no_config_entry_sets_one() -> None:
    plan = plan_registration(config(["http://x:1", PIPELINES], ["a", KEY], {}), PIPELINES, KEY)
    assert plan.config.configs == {"1": {"enable": True}}
    assert plan.changes


def test_registration_sets_a_wrong_or_empty_key() -> None:
    for old in ("", "old-key"):
        current = config([PIPELINES], [old], {"0": {"enable": True}})
        plan = plan_registration(current, PIPELINES, KEY)
        assert plan.config.keys == [KEY]
        assert plan.changes == ("set the Pipelines key",)


def test_registration_pads_a_short_key_list_like_open_webui_does() -> None:
    # Open WebUI pads missing keys with "": that alone is no reason to write.
    current = config(["http://x:1", "http://y:2", PIPELINES], ["a"], {"2": {"enable": True}})
    current.keys = ["a", "", KEY][:1]
    plan = plan_registration(current, PIPELINES, KEY)
    assert plan.config.keys == ["a", "", KEY]
    current.keys = ["a", "", KEY, "stray"]
    assert plan_registration(current, PIPELINES, KEY).changes == ()


@pytest.mark.parametrize("enable", [None, False])
def test_registration_always_turns_openai_connections_on(enable: bool | None) -> None:
    current = config([PIPELINES], [KEY], {"0": {"enable": True}}, enable=enable)
    plan = plan_registration(current, PIPELINES, KEY)
    assert plan.config.enable is True
    assert plan.changes == ("turned on OpenAI-API connections (ENABLE_OPENAI_API)",)


def test_registration_uses_the_first_of_duplicate_entries() -> None:
    current = config([PIPELINES, f"{PIPELINES}/"], [KEY, "other"], {"0": {"enable": True}})
    plan = plan_registration(current, PIPELINES, KEY)
    assert plan.idx == 0
    assert plan.changes == ()


def test_registration_refuses_an_empty_key() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        plan_registration(config([]), PIPELINES, "")


def test_legacy_url_keyed_configs_survive_a_write() -> None:
    # Open WebUI ≤0.5.4 keyed configs by URL and 0.12.4 still reads them, but its update drops
    # every non-index key: they are re-keyed by index so the write does not reset them.
    current = config(
        ["http://legacy:1", "http://indexed:2"],
        ["a", "b"],
        {"http://legacy:1": {"enable": False}, "1": {"tags": ["x"]}, "http://gone:3": {}},
    )
    plan = plan_registration(current, PIPELINES, KEY)
    assert plan.config.configs["0"] == {"enable": False}
    assert plan.config.configs["1"] == {"tags": ["x"]}
    assert plan.config.configs["2"] == {"enable": True}


def test_removal_drops_only_ours_and_shifts_higher_configs_down() -> None:
    current = config(
        ["http://a:1", PIPELINES, "http://c:3", "http://d:4"],
        ["ka", KEY, "kc", "kd"],
        {"0": {"tags": ["a"]}, "1": {"enable": True}, "2": {"enable": False}, "3": {"tags": ["d"]}},
        enable=True,
    )
    plan = plan_removal(current, f"{PIPELINES}/")
    assert plan.config.to_wire() == {
        "ENABLE_OPENAI_API": True,
        "OPENAI_API_BASE_URLS": ["http://a:1", "http://c:3", "http://d:4"],
        "OPENAI_API_KEYS": ["ka", "kc", "kd"],
        "OPENAI_API_CONFIGS": {"0": {"tags": ["a"]}, "1": {"enable": False}, "2": {"tags": ["d"]}},
    }
    assert plan.changes == ("removed the connection at index 1",)


def test_removal_of_an_absent_connection_changes_nothing() -> None:
    plan = plan_removal(others(), PIPELINES)
    assert plan.changes == ()
    assert plan.config.to_wire() == others().to_wire()


def test_removal_keeps_the_global_switch_as_it_was() -> None:
    current = config([PIPELINES, "http://x:1"], [KEY, "k"], {}, enable=False)
    assert plan_removal(current, PIPELINES).config.enable is False


def test_registration_then_removal_restores_the_original() -> None:
    original = others()
    registered = plan_registration(original, PIPELINES, KEY).config
    removed = plan_removal(registered, PIPELINES).config
    assert removed.to_wire() == original.to_wire()


def test_find_connection() -> None:
    assert find_connection(others(), PIPELINES) is None
    assert find_connection(others(), "http://ollama-openai:11434") == 1


def test_usage_capability_merges_into_existing_defaults() -> None:
    current = {
        "DEFAULT_MODELS": "m1",
        "DEFAULT_PINNED_MODELS": None,
        "MODEL_ORDER_LIST": ["m1", "m2"],
        "DEFAULT_MODEL_METADATA": {"capabilities": {"vision": False}, "tags": [{"name": "t"}]},
        "DEFAULT_MODEL_PARAMS": {"temperature": 0.2},
    }
    desired = plan_usage_capability(current)
    assert desired == {
        **current,
        "DEFAULT_MODEL_METADATA": {
            "capabilities": {"vision": False, "usage": True},
            "tags": [{"name": "t"}],
        },
    }
    assert current["DEFAULT_MODEL_METADATA"]["capabilities"] == {"vision": False}  # not mutated
    assert desired is not None and plan_usage_capability(desired) is None


def test_usage_capability_from_nothing_fills_the_required_fields() -> None:
    desired = plan_usage_capability({"DEFAULT_MODEL_METADATA": None})
    assert desired == {
        "DEFAULT_MODELS": None,
        "DEFAULT_PINNED_MODELS": None,
        "MODEL_ORDER_LIST": None,
        "DEFAULT_MODEL_METADATA": {"capabilities": {"usage": True}},
    }


def test_usage_capability_set_to_false_by_a_person_is_turned_on() -> None:
    desired = plan_usage_capability({"DEFAULT_MODEL_METADATA": {"capabilities": {"usage": False}}})
    assert desired is not None
    assert desired["DEFAULT_MODEL_METADATA"] == {"capabilities": {"usage": True}}


@pytest.mark.parametrize(
    ("version", "parsed", "merges"),
    [
        ("0.12.4", (0, 12, 4), True),
        ("0.10.0", (0, 10, 0), True),
        ("v0.11.1", (0, 11, 1), True),
        ("0.10", (0, 10, 0), True),
        ("0.12.4-dev", (0, 12, 4), True),
        ("1.0.0", (1, 0, 0), True),
        ("0.9.6", (0, 9, 6), False),  # the last single-blob config: import replaced it all
        ("0.9.5", (0, 9, 5), False),
        ("0.6.43", (0, 6, 43), False),
        ("", None, False),
        ("dev", None, False),
        (None, None, False),
    ],
)
def test_config_import_merges_from_0_10(
    version: str | None, parsed: tuple[int, int, int] | None, merges: bool
) -> None:
    assert parse_version(version) == parsed
    assert import_merges(version) is merges
