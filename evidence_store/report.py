"""``report``: monthly counts for oversight (the data-protection officer, the supervisory authority).

Per month: recordings, the share recorded without announcement and how many of those are
justified, holds by kind and how many were made without a prior view (the law keeps a clip only
"after review"), clips expired, late arrivals, the oldest unheld clip's age (must never exceed
the retention: the figure that shows deletion works), and accesses (views and exports).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from evidence_store import events as ev
from evidence_store import retention
from evidence_store.clip.ids import parse_time
from evidence_store.errors import UsageError
from evidence_store.vocabulary import ClipState, Justification

log = logging.getLogger(__name__)


def month_bounds(month: str) -> tuple[str, str]:
    """('YYYY-MM-01T...', first instant of the next month) as comparable timestamp strings."""
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise UsageError(f"--month must be YYYY-MM, not {month!r}") from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    # format_time's strings compare like the instants they name (fixed width, UTC, 'Z').
    return start.strftime("%Y-%m-%dT%H:%M:%S.000Z"), end.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _share(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def monthly_report(store, month: str | None = None) -> dict:
    """The figures for ``month`` (YYYY-MM; default: the store clock's month) as a dict."""
    now = store.now()
    month = month or now.strftime("%Y-%m")
    lo, hi = month_bounds(month)
    index = store.index
    with index.snapshot():
        rows = index.report_clip_triggers(lo, hi)
        recordings = len(rows)
        emergency = [j for t, j in rows if t == "emergency"]
        justified = sum(1 for j in emergency if j == Justification.JUSTIFIED)
        holds_by_kind = index.report_holds_by_kind(lo, hi)
        without_view = index.report_holds_without_view(lo, hi)
        expired = index.report_clips_expired(lo, hi)
        expired_q = index.report_quarantine_expired(lo, hi)
        late = index.report_late_arrivals(lo, hi)
        views = index.report_event_count(ev.VIEW, lo, hi)
        exports = sum(1 for leaf in index.report_event_leaves(ev.EXPORT, lo, hi)
                      if json.loads(leaf).get("step") == "begin")
        # Oldest unheld clip: clips deleted this month (their age at deletion, late arrivals aside:
        # they were already old when they came) and, for the running month, clips alive now.
        # Age counts against the latest deletion the law allows: the deadline, or for a clip whose
        # last hold was released after it, the first expiry run after that release. Counting a
        # clip held for 60 days from its recording would claim a breach of the two weeks where
        # there was none; counting it from the release alone would hide a released clip left lying.
        released = index.report_last_releases()
        policy = store.policy

        def age(clip_id: str, started: str, ingested: str, end: datetime) -> float:
            allowed = retention.deadline(retention.basis(parse_time(started), parse_time(ingested)), policy)
            if clip_id in released:
                allowed = max(allowed, policy.next_run(parse_time(released[clip_id])))
            return (end - (allowed - policy.retention)).total_seconds()

        ages = [age(c, s, i, parse_time(e)) for c, s, i, e in index.report_expired_on_time(lo, hi)]
        if lo <= now.strftime("%Y-%m-%dT%H:%M:%S.000Z") < hi:
            held = index.report_held_clips()
            ages += [age(c, s, i, now) for c, s, i in index.report_clips_on_time(ClipState.STORED) if c not in held]
    oldest = max(ages) if ages else None
    return {
        "month": month,
        "recordings": recordings,
        "without_announcement": len(emergency),
        "without_announcement_share": _share(len(emergency), recordings),
        "justified": justified,
        "justified_share": _share(justified, len(emergency)),
        "holds_by_kind": holds_by_kind,
        "holds_without_prior_view": without_view,
        "clips_expired": expired,
        "quarantine_expired": expired_q,
        "late_arrivals": late,
        "oldest_unheld_age_days": None if oldest is None else round(oldest / 86400, 2),
        "retention_days": store.policy.retention.days,
        "accesses": views + exports,
        "views": views,
        "exports": exports,
    }


def format_report(report: dict) -> str:
    """The report as plain text lines for the terminal."""
    def pct(value):
        return "-" if value is None else f"{value}%"

    holds = ", ".join(f"{k} {v}" for k, v in report["holds_by_kind"].items()) or "none"
    oldest = report["oldest_unheld_age_days"]
    lines = [
        f"Report for {report['month']}",
        f"  recordings                      {report['recordings']}",
        f"  without announcement            {report['without_announcement']} ({pct(report['without_announcement_share'])})",
        f"  of those justified              {report['justified']} ({pct(report['justified_share'])})",
        f"  holds by kind                   {holds}",
        f"  holds made without prior view   {report['holds_without_prior_view']}",
        f"  clips expired                   {report['clips_expired']} (quarantined items: {report['quarantine_expired']})",
        f"  late arrivals                   {report['late_arrivals']}",
        f"  oldest unheld clip              {'-' if oldest is None else f'{oldest} days'} (limit {report['retention_days']})",
        f"  accesses                        {report['accesses']} (views {report['views']}, exports {report['exports']})",
    ]
    return "\n".join(lines) + "\n"
