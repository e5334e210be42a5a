"""Expiry: what retention says is due, decided from what the log proves, deleted in one
transaction (an expire event each), then the objects removed; orphans and stale temp files."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from evidence_store import checkpoint as cpmod
from evidence_store import events as ev
from evidence_store import logstate, merkle, retention
from evidence_store.clip.ids import format_time, parse_time
from evidence_store.clip.manifest import parse_manifest
from evidence_store.errors import EvidenceError, IntegrityError, UsageError
from evidence_store.objects import HEX64
from evidence_store.queries import Queries
from evidence_store.store.base import StoreBase
from evidence_store.store.records import (
    CHECKPOINT_FILE,
    EXPIRED,
    ORPHAN,
    QUARANTINED,
    STORED,
    TEXT_RETENTION,
    TMP_MAX_AGE,
    ExpiryResult,
)

log = logging.getLogger(__name__)


class ExpiryMixin(StoreBase):
    """The store's expiry methods (mixed into evidence_store.store.Store)."""

    def expire(self, *, now: datetime | None = None, dry_run: bool = False, late_only: bool = False) -> ExpiryResult:
        """Delete what retention says is due (expire event each, tombstone rows kept), erase
        personal texts whose retention ended, sign a checkpoint; then remove the objects.

        ``late_only`` deletes only what arrived after its deadline: the dock runs it right after
        a docking, so that a late arrival is deleted at once while clips still within their two
        weeks wait for the hourly run, and an officer's review, as usual.

        ``now`` only with ``dry_run`` (a preview): deleting by a made-up clock is refused with
        UsageError, because it would delete evidence early or keep it too long.
        """
        if now is not None and not dry_run:
            raise UsageError("--now only previews: use it with --dry-run",
                             "hint: expire deletes by the system clock")
        if dry_run:
            with self._snapshot():
                when = now or self.now()
                state = self._proven_state()
                faults = self._index_faults(state)
                result = ExpiryResult(when, [_refused(d) if d.action == retention.DELETE and d.item_id in faults
                                             else d for d in self._decide_from(state, when)], dry_run=True)
                result.faults = [f"{'quarantine' if item in state.quarantine else 'clip'} {item}: {text}"
                                 for item, texts in sorted(faults.items()) for text in texts]
                return result
        with self._command() as tx:
            state = self._proven_state()
            self.check_config(state)
            decisions = self._decide_from(state, tx.now)
            faults = self._index_faults(state)
            if late_only:
                decisions = [d for d in decisions if d.late or d.action != retention.DELETE]
            # An item whose index rows disagree with the log is never deleted: the rows may have
            # been edited to make it look due, or the log may be what was damaged. Both need a human.
            refused = [d for d in decisions if d.action == retention.DELETE and d.item_id in faults]
            due = [d for d in decisions if d.action == retention.DELETE and d.item_id not in faults]
            decisions = [_refused(d) if d in refused else d for d in decisions]
            objects_of = {d.item_id: (state.quarantine[d.item_id] if d.quarantined else state.clips[d.item_id])
                          .object_hashes() for d in due}
            doomed: set[str] = set().union(*objects_of.values())
            self.index.expire_quarantined([d.item_id for d in due if d.quarantined], tx.time)
            self.index.expire_clips([d.item_id for d in due if not d.quarantined], tx.time)
            tx.append_many([ev.Event(ev.EXPIRE, tx.time, d.item_id, clip=None if d.quarantined else d.item_id,
                                     personal={"actor": self.actor},
                                     data={"cause": d.reason, "deadline": format_time(d.deadline),
                                           "late": d.late, "objects": sorted(objects_of[d.item_id])}
                                     | ({"quarantine": d.item_id} if d.quarantined else {}))
                            for d in due])
            # Only objects no live clip or quarantine item still names (the same bytes may be both a
            # clip's segment and a quarantined copy's), by the log and by the index alike.
            due_ids = {d.item_id for d in due}
            live_by_log = set().union(*(f.object_hashes() for f in _items(state)
                                        if f.expired_index is None and _item_id(f) not in due_ids))
            live = self._live_objects(doomed) | live_by_log
            gone = sorted(doomed - live)
            self.index.mark_objects_deleted(gone, tx.time)
            held = self.index.held_clip_ids()
            erased = tx.log.erase_texts(tx.time, sorted(held | set(state.active_holds())))
            # The officer's name on an expired clip's row is a personal text like those in the log:
            # it goes when they go (two years after the ingest), not never.
            self.index.erase_expired_officers(format_time(tx.now - TEXT_RETENTION))
            result = ExpiryResult(tx.now, decisions, erased_texts=erased)
            result.faults = [f"{'quarantine' if item in state.quarantine else 'clip'} {item}: {text}"
                             for item, texts in sorted(faults.items()) for text in texts]
        may_delete = (set(state.expired_objects) | set(gone)) - live_by_log
        if not late_only:  # the hourly run; the dock's quick post-docking run skips the folder scans
            result.orphans = self._expire_orphans(protect=live_by_log)
            may_delete |= set(result.orphans)
            result.removed_tmp = self._remove_stale_tmp()
        # After the commit: a crash here leaves files of expired clips, which sweep() removes on the
        # next run; the other order could leave a stored clip without its objects.
        result.deleted_objects = self.sweep(may_delete, result.faults)
        return result

    def orphans(self, now: datetime | None = None) -> list[tuple[str, float]]:
        """(name, age in seconds) of object files that no index row names: ciphertext copied by a
        dock that died before its ingest committed (and whose camera never came back)."""
        known = self.index.indexed_object_hashes()
        stamp = (now or self.now()).timestamp()
        return [(name, self.objects.age_seconds(name, stamp)) for name in self.objects.names()
                if name not in known]

    def _expire_orphans(self, protect: set[str]) -> list[str]:
        """Delete unreferenced objects older than the retention: a recording that never reached the
        index still may not be kept past two weeks. Each gets an expire event (every deletion is
        logged) and a tombstone row in ``objects``, so that sweep() finishes a crashed run."""
        with self._command() as tx:
            limit = self.policy.retention.total_seconds()
            # Never one the log names for a live clip: its objects row may have been deleted.
            doomed = sorted(name for name, age in self.orphans(tx.now)
                            if age > limit and HEX64.match(name) and name not in protect)
            for sha in doomed:
                size = self.objects.size(sha) or 0
                self.index.index_deleted_object(sha, size, ORPHAN, tx.time)
            tx.append_many([ev.Event(ev.EXPIRE, tx.time, f"object:{sha}", personal={"actor": self.actor},
                                     data={"cause": "unreferenced object (an ingest that never committed) "
                                                    "older than the retention", "objects": [sha]})
                            for sha in doomed])
        if doomed:
            log.warning("deleted %d unreferenced object(s) older than the retention", len(doomed))
        return doomed

    def _remove_stale_tmp(self) -> int:
        """Remove temp files of object writes older than TMP_MAX_AGE (a crashed copy; its camera
        still holds the clip, or the rerun made a new copy). Not evidence: never indexed or named."""
        return self.objects.remove_stale((self.now() - TMP_MAX_AGE).timestamp())

    def sweep(self, may_delete: set[str] | None = None, faults: list[str] | None = None) -> int:
        """Remove object files whose index row says deleted (finishing an interrupted expiry), but
        only those an expire event in the log names and no live clip or quarantined item does
        (``may_delete``; derived from the proven log if not given): an edited ``deleted_at`` alone
        deletes nothing. Refusals are added to ``faults``."""
        if may_delete is None:
            state = self._proven_state()
            may_delete = set(state.expired_objects) - state.live_objects()
        rows = [sha for (sha,) in self.index.deleted_object_hashes()
                if isinstance(sha, str) and HEX64.match(sha)]
        refused = [sha for sha in rows if sha not in may_delete and self.objects.exists(sha)]
        if faults is not None:
            faults.extend(f"object {sha}: not deleted: the index marks it deleted but the log does not "
                          "expire it, or a live clip names it" for sha in refused)
        return self.objects.delete_many(sha for sha in rows if sha in may_delete)

    def _proven_state(self) -> logstate.LogState:
        """The state the signed log says the store is in: every leaf re-hashed, the tree recomputed
        and compared with the latest signed checkpoint of the database and of the checkpoint file.

        Raises IntegrityError (one line naming the fault) if an entry is missing, unparsable or
        not covered by a signed checkpoint, or the entries do not match a signed root: then
        nothing the log says can be acted on.
        """
        leaf_hashes: list[bytes] = []
        bodies: list[tuple[int, dict]] = []
        hint = "hint: run 'bodycam-evidence verify' for the whole extent of the damage"
        sha = hashlib.sha256
        load_leaf = ev.load_leaf
        for idx, leaf in self.index.event_leaves():
            if idx != len(leaf_hashes):
                raise IntegrityError(f"the log is damaged: entry {len(leaf_hashes)} is missing", hint,
                                     where=f"log index {len(leaf_hashes)}")
            leaf_hashes.append(sha(b"\x00" + leaf).digest())  # merkle.leaf_hash, a million times
            try:
                body = load_leaf(leaf)
            except ValueError:
                body = None
            if not isinstance(body, dict) or body.get("index") != idx:
                raise IntegrityError(f"the log is damaged: entry {idx} is not a valid event", hint,
                                     where=f"log index {idx}")
            if body.get("kind") in logstate.STATE_KINDS or body.get("clip") is None:
                bodies.append((idx, body))
        size = len(leaf_hashes)
        _, recomputed = merkle.stored_hashes_for_appends(0, leaf_hashes)
        read = lambda indexes: [recomputed[i] for i in indexes]  # noqa: E731 - from the leaves, not the stored copies
        signed = 0
        for what, note in (("the database's latest checkpoint", self.log.latest_checkpoint()),
                           (f"{CHECKPOINT_FILE}", self.checkpoint_file())):
            if note is None:
                continue
            try:
                cp = cpmod.open_checkpoint(note, self.verifier, self.origin)
            except EvidenceError as exc:
                raise IntegrityError(f"{what} does not verify: {exc}", hint, where=what) from None
            if cp.size > size:
                raise IntegrityError(f"the log has {size} entries but {what} was signed over {cp.size}: "
                                     "entries or checkpoints were removed", hint, where=what)
            if merkle.tree_hash(cp.size, read) != cp.root:
                raise IntegrityError(f"the log's entries do not match {what} (size {cp.size}): the log was "
                                     "rewritten", hint, where=what)
            signed = max(signed, cp.size)
        if signed < size:
            raise IntegrityError(f"log entries {signed}..{size - 1} are not covered by a signed checkpoint", hint,
                                 where=f"log index {signed}")
        return logstate.derive(bodies, lambda i: leaf_hashes[i].hex(), size)

    def _quarantine_start(self, facts: logstate.QuarantineFacts) -> datetime:
        """When a quarantined item's retention clock starts: logged in its event; for events written
        before that, the start its manifest object claims (content-addressed, so derivable), never
        later than its arrival; else its arrival."""
        at = parse_time(facts.at or "")
        if facts.started_at:
            return min(parse_time(facts.started_at), at)
        if facts.manifest and HEX64.match(facts.manifest) and self.objects.exists(facts.manifest):
            try:
                return min(parse_time(parse_manifest(self.objects.read(facts.manifest), None).started_at), at)
            except (EvidenceError, ValueError):
                pass
        return at

    def _decide_from(self, state: logstate.LogState, now: datetime) -> list[retention.Decision]:
        """Retention decisions from the log alone: starts, arrivals and holds as the events say."""
        items = []
        for facts in state.clips.values():
            if facts.expired_index is None:
                try:
                    items.append(retention.Item(facts.clip_id, parse_time(facts.started_at or ""),
                                                parse_time(facts.ingested_at or "")))
                except ValueError:
                    continue  # not an event this store wrote: _index_faults cannot agree with it either
        for quarantined in state.quarantine.values():
            if quarantined.expired_index is None:
                try:
                    items.append(retention.Item(quarantined.qid, self._quarantine_start(quarantined),
                                                parse_time(quarantined.at or ""), quarantined=True))
                except ValueError:
                    continue
        items.sort(key=lambda i: (i.started_at, i.item_id))
        holds = [retention.Hold(clip, kind) for clip, kinds in state.active_holds().items() for kind in kinds]
        return retention.decide(items, holds, self.policy, now, self.policy.next_run(now))

    def _index_faults(self, state: logstate.LogState) -> dict[str, list[str]]:
        """Where the index rows that expiry reads disagree with the log: item id -> differences."""
        faults: dict[str, list[str]] = {}

        def differ(item: str, names: list[str]) -> None:
            if names:
                faults.setdefault(item, []).append(f"the index's {', '.join(names)} differ(s) from the log")

        segments: dict[str, set[str]] = {}
        for clip_id, sha in self.index.segment_hashes_by_clip():
            segments.setdefault(clip_id, set()).add(sha)
        rows = {r[0]: r for r in self.index.clip_rows_checked()}
        for clip_id, facts in state.clips.items():
            row = rows.get(clip_id)
            if row is None:
                faults.setdefault(clip_id, []).append("the log ingested it but its index row is gone")
                continue
            want = (clip_id, facts.device, facts.sequence, facts.started_at, facts.ingested_at, facts.manifest,
                    facts.journal, EXPIRED if facts.expired_index is not None else STORED)
            names = [] if tuple(row) == want else [n for n, a, b in zip(Queries.CLIP_CHECKED, row, want) if a != b]
            if facts.expired_index is None and segments.get(clip_id, set()) != {
                    o.get("sha256") for o in facts.objects if isinstance(o, dict)}:
                names.append("segments")
            differ(clip_id, names)
        for clip_id in rows.keys() - state.clips.keys():
            faults.setdefault(clip_id, []).append("has an index row but no ingest event in the log")
        kept: dict[str, set[str]] = {}
        for qid, sha in self.index.quarantine_object_hashes_by_qid():
            kept.setdefault(qid, set()).add(sha)
        qrows = {r[0]: r for r in self.index.quarantine_rows_checked()}
        for qid, quarantined in state.quarantine.items():
            qrow = qrows.get(qid)
            if qrow is None:
                faults.setdefault(qid, []).append("the log quarantined it but its index row is gone")
                continue
            try:
                start: str | None = format_time(self._quarantine_start(quarantined))
            except ValueError:
                start = None
            qwant = (qid, quarantined.claimed_clip, quarantined.device, quarantined.manifest, quarantined.journal,
                     quarantined.at, start, EXPIRED if quarantined.expired_index is not None else QUARANTINED)
            names = [n for n, a, b in zip(Queries.QUARANTINE_CHECKED, qrow, qwant) if a != b]
            if quarantined.expired_index is None and kept.get(qid, set()) != {
                    o.get("sha256") for o in quarantined.objects if isinstance(o, dict)}:
                names.append("objects")
            differ(qid, names)
        for qid in qrows.keys() - state.quarantine.keys():
            faults.setdefault(qid, []).append("has an index row but no quarantine event in the log")
        table = {r[0]: r for r in self.index.hold_rows_checked()}
        for idx, hold in state.holds.items():
            hold_row = table.get(idx)
            if hold_row is None:
                faults.setdefault(hold.clip_id or "?", []).append(
                    f"the log holds it (log index {idx}) but the holds table has no row for that hold")
            elif tuple(hold_row) != (idx, hold.clip_id, hold.kind, hold.release_time, hold.release_index):
                faults.setdefault(hold.clip_id or "?", []).append(
                    f"its hold row of log index {idx} differs from the hold and release events")
        for idx in table.keys() - state.holds.keys():
            faults.setdefault(table[idx][1], []).append(f"a hold row names log index {idx}, which is no hold event")
        # Objects of live items must have rows that keep them: a missing row makes a file look like
        # an interrupted ingest's leftover, a deleted_at makes sweep() a candidate.
        kept_rows = self.index.undeleted_object_hashes()
        for item in _items(state):
            if item.expired_index is None and not item.object_hashes() <= kept_rows:
                faults.setdefault(_item_id(item), []).append(
                    "an object it names has no objects row or one marked deleted")
        return faults

    def _live_objects(self, candidates: set[str]) -> set[str]:
        """Which of ``candidates`` a stored clip or a quarantined item still names (by the index);
        deletion.py asks it too."""
        return self.index.live_object_hashes(candidates)


def _items(state: logstate.LogState) -> list[logstate.ClipFacts | logstate.QuarantineFacts]:
    """Every clip and quarantined item the log knows of."""
    return [*state.clips.values(), *state.quarantine.values()]


def _item_id(item: logstate.ClipFacts | logstate.QuarantineFacts) -> str:
    """The id a clip or a quarantined item is known by (retention decisions, faults)."""
    return item.clip_id if isinstance(item, logstate.ClipFacts) else item.qid


def _refused(decision: retention.Decision) -> retention.Decision:
    """A deletion expiry does not carry out: the item's index rows disagree with the log."""
    return retention.Decision(decision.item_id, retention.KEEP, "not deleted: its index rows disagree with the log",
                              decision.deadline, decision.late, decision.quarantined)
