"""Retention is a pure function: decisions with reasons, from (items, holds, policy, now, next run)."""

from datetime import UTC, datetime, timedelta

import pytest

from evidence_store.errors import UsageError
from evidence_store.retention import DELETE, KEEP, Hold, Item, Policy, decide

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def item(name, age, arrived_age=None):
    return Item(name, NOW - age, NOW - (arrived_age if arrived_age is not None else timedelta(0)))


def test_retention_policy_longer_than_14_days_refused():
    with pytest.raises(UsageError, match="at most 14 days"):
        Policy(retention=timedelta(days=15))


def test_retention_policy_may_shorten():
    (d,) = decide([item("a", timedelta(days=8), timedelta(days=7))], [], Policy(retention=timedelta(days=7)), NOW)
    assert d.action == DELETE


def test_retention_young_clip_kept_until_deadline():
    (d,) = decide([item("a", timedelta(days=3), timedelta(days=3))], [], Policy(), NOW)
    assert (d.action, d.deadline) == (KEEP, NOW + timedelta(days=11))
    assert "kept until" in d.reason


def test_retention_due_before_next_run_deleted_now():
    (d,) = decide([item("a", timedelta(days=14) - timedelta(minutes=30), timedelta(days=13))], [], Policy(), NOW)
    assert d.action == DELETE and "before the next run" in d.reason


def test_retention_due_after_next_run_kept():
    (d,) = decide([item("a", timedelta(days=14) - timedelta(minutes=90), timedelta(days=13))], [], Policy(), NOW)
    assert d.action == KEEP


def test_retention_next_run_parameter_respected():
    age = timedelta(days=14) - timedelta(hours=5)
    (d,) = decide([item("a", age, age)], [], Policy(), NOW, next_run=NOW + timedelta(hours=6))
    assert d.action == DELETE


def test_retention_late_arrival_deleted_and_flagged():
    (d,) = decide([item("a", timedelta(days=20), timedelta(0))], [], Policy(), NOW)
    assert d.action == DELETE and d.late and "after its deadline" in d.reason


def test_retention_hold_suspends_deadline():
    decisions = decide([item("a", timedelta(days=30), timedelta(days=29)), item("b", timedelta(days=30), timedelta(days=29))],
                       [Hold("a", "evidence"), Hold("a", "hazard")], Policy(), NOW)
    assert [(d.item_id, d.action) for d in decisions] == [("a", KEEP), ("b", DELETE)]
    assert "2 hold(s): evidence, hazard" in decisions[0].reason


def test_retention_quarantined_same_deadline():
    q = Item("q", NOW - timedelta(days=15), NOW - timedelta(days=14, hours=23), quarantined=True)
    (d,) = decide([q], [], Policy(), NOW)
    assert d.action == DELETE and d.quarantined


def test_retention_is_pure_same_input_same_output():
    items = [item(str(i), timedelta(hours=7 * i), timedelta(hours=7 * i)) for i in range(60)]
    assert decide(items, [], Policy(), NOW) == decide(items, [], Policy(), NOW)


def test_retention_claimed_start_after_arrival_deadline_counts_from_arrival():
    # A camera clock a year ahead: the claimed start is in the future, the arrival is not.
    future = Item("a", NOW + timedelta(days=365), NOW - timedelta(days=14))
    (d,) = decide([future], [], Policy(), NOW)
    assert (d.action, d.deadline, d.late) == (DELETE, NOW, False)


def test_retention_due_just_after_next_run_deleted_within_slack():
    # Due 63 minutes from now: after the next hourly run, but that run may start minutes late
    # (timer accuracy, a minute of lock wait): it must go now, not two minutes too late.
    (d,) = decide([item("a", timedelta(days=14) - timedelta(minutes=63), timedelta(days=13))], [], Policy(), NOW)
    assert d.action == DELETE
    assert Policy().next_run(NOW) == NOW + timedelta(hours=1, minutes=5)


def test_retention_due_beyond_slack_kept():
    (d,) = decide([item("a", timedelta(days=14) - timedelta(minutes=66), timedelta(days=13))], [], Policy(), NOW)
    assert d.action == KEEP


def test_retention_negative_slack_refused():
    with pytest.raises(UsageError, match="slack"):
        Policy(slack=timedelta(minutes=-1))


def test_retention_earliest_start_impossible_claim_counts_from_previous_docking():
    from evidence_store.retention import earliest_start

    docked = NOW - timedelta(days=2)
    assert earliest_start(NOW - timedelta(days=15), docked, NOW) == docked
    assert earliest_start(datetime(1, 1, 1, tzinfo=UTC), docked, NOW) == docked
    assert earliest_start(NOW - timedelta(days=1), docked, NOW) == NOW - timedelta(days=1)  # a possible claim
    assert earliest_start(NOW - timedelta(days=15), None, NOW) == NOW - timedelta(days=15)  # no bound known


def test_retention_earliest_start_docking_after_arrival_is_no_bound():
    # Only a wrong docking row can lie in the future; it must not buy the clip more time.
    from evidence_store.retention import earliest_start

    assert earliest_start(NOW - timedelta(days=15), NOW + timedelta(days=300), NOW) == NOW - timedelta(days=15)
