"""Condition helpers: transition times, the Ready aggregate, transition detection."""

from __future__ import annotations

from openwebui_langfuse import conditions as cond
from openwebui_langfuse.conditions import Condition


def test_last_transition_time_kept_unless_status_flips() -> None:
    first = cond.set_condition([], Condition("FilterInstalled", "True", "Installed"), now="t1")
    assert first[0].last_transition_time == "t1"
    same = cond.set_condition(
        first, Condition("FilterInstalled", "True", "Installed", "m"), now="t2"
    )
    assert same[0].last_transition_time == "t1"
    assert same[0].message == "m"
    reason_only = cond.set_condition(same, Condition("FilterInstalled", "True", "Other"), now="t3")
    assert reason_only[0].last_transition_time == "t1"
    flipped = cond.set_condition(same, Condition("FilterInstalled", "False", "X"), now="t4")
    assert flipped[0].last_transition_time == "t4"


def test_conditions_are_kept_in_a_stable_order() -> None:
    conditions: list[Condition] = []
    for type_ in ("Stalled", "ValvesSynced", "Ready", "CredentialsValid"):
        conditions = cond.set_condition(conditions, Condition(type_, "True", "R"), now="t")
    assert [c.type for c in conditions] == ["Ready", "CredentialsValid", "ValvesSynced", "Stalled"]


def test_ready_names_the_first_failing_condition() -> None:
    conditions = [
        Condition("CredentialsValid", "True", "Verified"),
        Condition("FilterInstalled", "False", "FilterLoadFailed", "broken"),
        Condition("ValvesSynced", "False", "FilterNotInstalled"),
    ]
    ready = cond.ready_condition(
        conditions,
        required=["CredentialsValid", "FilterInstalled", "ValvesSynced"],
        generation=3,
    )
    assert (ready.status, ready.reason, ready.observed_generation) == (
        "False",
        "FilterLoadFailed",
        3,
    )
    assert "broken" in ready.message


def test_ready_true_when_verification_is_disabled() -> None:
    conditions = [
        Condition("CredentialsValid", "Unknown", "VerificationDisabled"),
        Condition("FilterInstalled", "True", "Installed"),
        Condition("ValvesSynced", "True", "Synced"),
    ]
    ready = cond.ready_condition(
        conditions,
        required=["CredentialsValid", "FilterInstalled", "ValvesSynced"],
        generation=1,
    )
    assert ready.status == "True"


def test_ready_waits_for_a_required_connection() -> None:
    conditions = [
        Condition("CredentialsValid", "True", "Verified"),
        Condition("FilterInstalled", "True", "Installed"),
        Condition("ValvesSynced", "True", "Synced"),
    ]
    ready = cond.ready_condition(
        conditions,
        required=["CredentialsValid", "FilterInstalled", "ValvesSynced", "ConnectionRegistered"],
        generation=1,
    )
    assert ready.status == "Unknown" and ready.reason == "Pending"


def test_transitions_ignore_message_only_changes() -> None:
    before = [Condition("Ready", "True", "Ready", "a")]
    assert cond.transitions(before, [Condition("Ready", "True", "Ready", "b")]) == []
    changed = cond.transitions(before, [Condition("Ready", "False", "X")])
    assert [(o.status if o else None, n.status) for o, n in changed] == [("True", "False")]


def test_wire_round_trip() -> None:
    c = Condition("Ready", "True", "Ready", "ok", "2026-01-01T00:00:00Z", 4)
    assert Condition.from_wire(c.to_wire()) == c
