"""Retention: a pure function from (clips, holds, policy, now, next run) to decisions with reasons.

The law (§ 15c (5) PolG NRW via § 24 OBG NRW): recordings are deleted two weeks after they were
made at the latest, unless, after review, they are needed as evidence, for hazard prevention, or
because the recorded person asked for a review. So:

* deadline = recording start + retention; a policy may shorten the 14 days, never lengthen them;
  the recording start is what the camera claims, but never later than the item's arrival: a
  camera clock running a year ahead must not buy its clip a year of storage (``basis``);
* nor earlier than the camera's previous docking for a clip that the device chain proves was
  recorded after it: a camera clock set back must not have a new recording deleted at once as a
  late arrival (``earliest_start``; the store records the corrected start, the clip is flagged);
* the expiry timer runs every ``run_interval``; a run deletes everything that falls due *before
  the next run* (plus a few minutes of slack: the next run may start late), because waiting for
  the next run would keep it past its deadline;
* a clip that arrives already past its deadline is deleted at once and counted late (the dock runs
  ``Store.expire(late_only=True)`` right after each docking; the timer is the backstop);
* a hold suspends the deadline (a clip may have several); after the last release the deadline
  applies again, so a clip whose deadline has passed goes at the next run;
* quarantined material follows the same deadline.

Nothing here reads a clock, a file or a database: tests drive it with any ``now``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from evidence_store.clip.ids import format_time
from evidence_store.errors import UsageError

log = logging.getLogger(__name__)

#: § 15c (5) PolG NRW: two weeks at the latest.
MAX_RETENTION = timedelta(days=14)
#: systemd/bodycam-expire.timer runs hourly.
DEFAULT_RUN_INTERVAL = timedelta(hours=1)
#: The next run starts late by the timer's accuracy, by waiting for the database lock (up to a
#: minute, db.BUSY_TIMEOUT_MS) and by the run itself. Deleting what falls due within this much after
#: the next scheduled run keeps a clip from outliving its deadline by those minutes.
DEFAULT_SLACK = timedelta(minutes=5)

DELETE = "delete"
KEEP = "keep"


@dataclass(frozen=True)
class Policy:
    """``retention`` at most 14 days (UsageError otherwise); ``run_interval`` of the expiry timer;
    ``slack``, how late the next run may start (deleting early by that much is lawful, late is not)."""

    retention: timedelta = MAX_RETENTION
    run_interval: timedelta = DEFAULT_RUN_INTERVAL
    slack: timedelta = DEFAULT_SLACK

    def __post_init__(self) -> None:
        if not timedelta(0) < self.retention <= MAX_RETENTION:
            raise UsageError(f"retention of {self.retention} is not allowed: the law allows at most 14 days")
        if self.run_interval <= timedelta(0):
            raise UsageError("the expiry run interval must be positive")
        if self.slack < timedelta(0):
            raise UsageError("the expiry slack must not be negative")

    def next_run(self, now: datetime) -> datetime:
        """When the next scheduled run starts at the latest: one interval plus the slack."""
        return now + self.run_interval + self.slack


@dataclass(frozen=True)
class Item:
    """A clip (or quarantined material): when its recording started (as claimed) and when it
    reached the store. The deadline counts from the earlier of the two (``basis``)."""

    item_id: str
    started_at: datetime
    arrived_at: datetime
    quarantined: bool = False


@dataclass(frozen=True)
class Hold:
    item_id: str
    kind: str


@dataclass(frozen=True)
class Decision:
    item_id: str
    action: str  # DELETE or KEEP
    reason: str
    deadline: datetime
    late: bool  # arrived after its deadline
    quarantined: bool = False


def basis(started_at: datetime, arrived_at: datetime) -> datetime:
    """When the retention clock starts: the claimed recording start, but never after the arrival.

    The start comes from the camera's clock. One that runs ahead would claim a start in the future
    and so a later deadline; the recording certainly existed when it reached the store.
    """
    return min(started_at, arrived_at)


#: The flag of a clip whose claimed start was impossible and counts from the previous docking.
FLAG_START_CORRECTED = "start-before-previous-docking"


def earliest_start(claimed: datetime, previous_docking: datetime | None, arrived: datetime) -> datetime:
    """The start the deadline counts from for a clip the store accepts into its device's chain.

    Such a clip has a sequence number above every clip stored so far, and a docking is recorded
    only when every clip on the camera was stored or quarantined and none was left unsealed (the
    camera seals its recording when docked): so it was recorded after the previous docking,
    whatever its camera's clock claims. Earlier than that is impossible; the earliest possible
    start is the docking. A docking time after the arrival is no bound (it can only be wrong).
    """
    if previous_docking is not None and claimed < previous_docking <= arrived:
        return previous_docking
    return claimed


def deadline(started_at: datetime, policy: Policy) -> datetime:
    return started_at + policy.retention


def decide(items: Iterable[Item], holds: Iterable[Hold], policy: Policy, now: datetime,
           next_run: datetime | None = None) -> list[Decision]:
    """One decision per item, in input order.

    ``next_run`` (the latest start of the next run) defaults to ``policy.next_run(now)``, one
    interval plus the slack. An item with any hold is kept; else it is deleted if its deadline is
    at or before ``next_run``; else kept until its deadline.
    """
    if next_run is None:
        next_run = policy.next_run(now)
    held: dict[str, list[str]] = {}
    for hold in holds:
        held.setdefault(hold.item_id, []).append(hold.kind)
    out = []
    for item in items:
        due = deadline(basis(item.started_at, item.arrived_at), policy)
        late = item.arrived_at > due
        kinds = held.get(item.item_id)
        if kinds:
            action, reason = KEEP, f"held ({len(kinds)} hold(s): {', '.join(sorted(set(kinds)))})"
        elif late:
            action, reason = DELETE, f"arrived {format_time(item.arrived_at)}, after its deadline {format_time(due)}"
        elif due <= now:
            action, reason = DELETE, f"deadline {format_time(due)} has passed"
        elif due <= next_run:
            action, reason = DELETE, f"falls due at {format_time(due)}, before the next run at {format_time(next_run)}"
        else:
            action, reason = KEEP, f"kept until {format_time(due)}"
        out.append(Decision(item.item_id, action, reason, due, late, item.quarantined))
    return out
