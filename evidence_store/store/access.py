"""Clips as the officers see them, holds, justifications and the access log (every view and
export is logged before any plaintext exists)."""

from __future__ import annotations

import json

from evidence_store import events as ev
from evidence_store import retention
from evidence_store.clip.ids import format_time, parse_time
from evidence_store.clip.manifest import EMERGENCY
from evidence_store.errors import UsageError
from evidence_store.log import Appended
from evidence_store.store.base import StoreBase
from evidence_store.store.records import (
    EXPIRED,
    HELD,
    HOLD_KINDS,
    JUSTIFIED,
    QUARANTINED,
    STORED,
    ClipInfo,
    _require_reason,
)
from evidence_store.vocabulary import HoldKind


class AccessMixin(StoreBase):
    """The store's access methods (mixed into evidence_store.store.Store)."""

    def clip(self, clip_id: str) -> ClipInfo:
        """The clip (or quarantined item) ``clip_id``. Raises UsageError if there is none."""
        row = self.index.clip_row(clip_id)
        if row is not None:
            return self._clip_info(row, self._holds({clip_id}))
        # By its quarantine id; by the id it claims only when no real clip has that id (then the
        # officer may look for it under the id the camera used).
        row = self.index.quarantine_row(clip_id) or self.index.quarantine_row_claiming(clip_id)
        if row is not None:
            return self._quarantine_info(row, self._holds({row[0]}))
        raise UsageError(f"unknown clip {clip_id}", "hint: 'bodycam-evidence list --all' shows every clip")

    def clips(self, *, include_expired: bool = False) -> list[ClipInfo]:
        """All clips and quarantined items, oldest recording first."""
        holds = self._holds(None)
        out = [self._clip_info(r, holds) for r in self.index.clip_rows()]
        out += [self._quarantine_info(r, holds) for r in self.index.quarantine_rows()]
        if not include_expired:
            out = [c for c in out if c.state != EXPIRED]
        out.sort(key=lambda c: (c.recorded_at, c.clip_id))
        return out

    def _holds(self, clip_ids: set[str] | None) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for clip_id, kind, case, created, _hold_id in self.index.active_holds():
            if clip_ids is None or clip_id in clip_ids:
                out.setdefault(clip_id, []).append({"kind": kind, "case": case, "since": created})
        return out

    def _clip_info(self, row, holds: dict[str, list[dict]]) -> ClipInfo:
        (clip_id, device_id, sequence, officer, trigger, started_at, manifest_sha, journal_sha, ingested_at,
         flags, state, justification, late, expired_at) = row
        mine = holds.get(clip_id, []) if state != EXPIRED else []
        shown = EXPIRED if state == EXPIRED else (HELD if mine else STORED)
        deadline = retention.deadline(retention.basis(parse_time(started_at), parse_time(ingested_at)), self.policy)
        return ClipInfo(clip_id, device_id, officer, started_at, trigger, justification, mine,
                        format_time(deadline), shown, sequence, manifest_sha, journal_sha, ingested_at,
                        json.loads(flags), bool(late), expired_at)

    def _quarantine_info(self, row, holds: dict[str, list[dict]] | None = None) -> ClipInfo:
        qid, clip_id, device_id, manifest_sha, journal_sha, reason, at, started_at, state, late, expired_at = row
        deadline = retention.deadline(parse_time(started_at), self.policy)
        mine = (holds or {}).get(qid, []) if state != EXPIRED else []
        # Listed under its own id: under the claimed one, a forged copy of a real clip would look
        # like a duplicate of it, and show would mix the real clip's segments and events in.
        return ClipInfo(qid, device_id, None, started_at, None, None, mine, format_time(deadline),
                        EXPIRED if state == EXPIRED else QUARANTINED, None, manifest_sha, journal_sha, at,
                        [], bool(late), expired_at, quarantine_reason=reason, claimed_clip_id=clip_id)

    def segments(self, clip_id: str) -> list[dict]:
        """Segments of a clip: name, bytes, sha256 (ciphertext), plaintext bytes/sha256, state.
        For a quarantine id: its kept objects (name, bytes, sha256, state "quarantined")."""
        rows = self.index.segment_rows(clip_id)
        if not rows:
            return [{"name": n, "bytes": b, "sha256": s, "state": QUARANTINED}
                    for n, b, s in self.index.quarantine_object_rows(clip_id)]
        return [{"name": n, "bytes": b, "sha256": s, "plaintext_bytes": pb, "plaintext_sha256": ps,
                 "duration_ms": d, "cut": bool(c), "state": st} for n, b, s, pb, ps, d, c, st in rows]

    def events(self, *, clip_id: str | None = None) -> list[dict]:
        """Events (all, or those about ``clip_id``) with their texts where not erased."""
        rows = self.index.event_rows(clip_id)
        texts: dict[int, dict[str, str | None]] = {}
        for idx, fieldname, text in self.index.event_text_rows(clip_id):
            texts.setdefault(idx, {})[fieldname] = text
        out = []
        for idx, kind, time, clip, device, leaf in rows.fetchall():
            body = ev.parse_leaf(bytes(leaf), f"log entry {idx}")
            extra = {k: v for k, v in body.items() if k not in ev.BASE_FIELDS and k not in ev.PERSONAL_FIELDS}
            personal = {f: (texts.get(idx, {}).get(f, None) if f in body else None) for f in ev.PERSONAL_FIELDS}
            item = {"index": idx, "kind": kind, "time": time, "clip": clip, "device": device}
            item.update({f: ("[erased]" if t is None and f in body else t) for f, t in personal.items() if f in body})
            item.update(extra)
            item["leaf_sha256"] = ev.leaf_hash_hex(bytes(leaf))
            out.append(item)
        return out

    def _live_item(self, clip_id: str) -> ClipInfo:
        """A clip or a quarantined item that has not expired. Hold, release, view and export take
        both: a genuine recording quarantined by mistake (a planted file, a damaged journal) must
        be reviewable and keepable, never forced to expire unreviewed. Its ``clip_id`` is the id
        the item is known by (the quarantine id for quarantined material)."""
        check = self.clip(clip_id)
        if check.state == EXPIRED:
            raise UsageError(f"{clip_id} has expired; its objects are deleted")
        return check

    def _live_clip(self, clip_id: str) -> ClipInfo:
        check = self.clip(clip_id)
        if check.state == EXPIRED:
            raise UsageError(f"clip {clip_id} has expired; its objects are deleted")
        if check.state == QUARANTINED:
            raise UsageError(f"{clip_id} is quarantined material, not a stored clip")
        return check

    def hold(self, clip_id: str, *, case: str, reason: str, kind: str = HoldKind.EVIDENCE) -> int:
        """Hold a clip or a quarantined item (hold event). Returns the hold id. UsageError for an
        unknown or expired clip, an unknown kind, or a missing reason or case reference."""
        if kind not in HOLD_KINDS:
            raise UsageError(f"hold kind must be one of {', '.join(HOLD_KINDS)}")
        _require_reason(reason)
        if not case.strip():
            raise UsageError("a hold needs a case reference (--case REF)")
        with self._command() as tx:
            clip_id = self._live_item(clip_id).clip_id
            # The legal hold before the commit (see locks.py): a held clip's objects are never
            # deletable, not even by the deletion role.
            hashes, deadline, _ = self.item_objects(clip_id)
            self.lock_objects(hashes, deadline, held=True)
            viewed = self.index.has_event(clip_id, ev.VIEW)
            appended = tx.append(ev.Event(ev.HOLD, tx.time, clip_id, clip=clip_id,
                                          personal={"actor": self.actor, "case": case, "reason": reason},
                                          data={"hold_kind": kind, "after_view": viewed}))
            text_ids = self.index.event_text_ids(appended.index)
            return self.index.add_hold(clip_id=clip_id, kind=kind, case_text=text_ids["case"],
                                       reason_text=text_ids["reason"], actor_text=text_ids["actor"],
                                       created_at=tx.time, event_index=appended.index, after_view=int(viewed))

    def release(self, clip_id: str, *, case: str, reason: str) -> None:
        """Release the active hold with case reference ``case`` (release event). After the last
        release the deadline applies again. UsageError if there is no such hold."""
        _require_reason(reason)
        if not (case or "").strip():
            raise UsageError("a release names the case reference of the hold it ends (--case REF)",
                             "hint: 'bodycam-evidence show CLIP' lists its holds")
        with self._command() as tx:
            clip_id = self._live_item(clip_id).clip_id
            row = self.index.active_hold_with_case(clip_id, case)
            if row is None:
                raise UsageError(f"clip {clip_id} has no active hold with case {case!r}",
                                 f"hint: 'bodycam-evidence show {clip_id}' lists its holds")
            appended = tx.append(ev.Event(ev.RELEASE, tx.time, clip_id, clip=clip_id,
                                          personal={"actor": self.actor, "case": case, "reason": reason},
                                          data={"hold_event": row[1]}))
            self.index.release_hold(row[0], tx.time, appended.index)
            if not self._holds({clip_id}):
                # The last release: retention to the deadline first, then the legal hold off,
                # before the commit (see locks.py).
                hashes, deadline, _ = self.item_objects(clip_id)
                self.lock_objects(hashes, deadline, held=False)

    def justify(self, clip_id: str, *, reason: str) -> None:
        """Record why an emergency clip was not announced (justify event)."""
        _require_reason(reason)
        with self._command() as tx:
            info = self._live_clip(clip_id)
            if info.trigger != EMERGENCY:
                raise UsageError(f"clip {clip_id} was announced; only emergency clips need a justification")
            self.index.set_justification(clip_id, JUSTIFIED)
            tx.append(ev.Event(ev.JUSTIFY, tx.time, clip_id, clip=clip_id,
                               personal={"actor": self.actor, "reason": reason}))

    def log_access(self, kind: str, clip_id: str, *, reason: str, data: dict | None = None) -> Appended:
        """Commit a view or export event *before* any plaintext exists (the law: every access is
        logged; a crash after decrypting must not leave an unlogged access). Returns the event."""
        if kind not in ev.ACCESS_KINDS:
            raise ValueError(f"{kind} is not an access")
        _require_reason(reason)
        with self._command() as tx:
            clip_id = self._live_item(clip_id).clip_id
            objects = [s["sha256"] for s in self.segments(clip_id)]
            return tx.append(ev.Event(kind, tx.time, clip_id, clip=clip_id,
                                      personal={"actor": self.actor, "reason": reason},
                                      data={"objects": objects} | (data or {})))

    def append_event(self, kind: str, clip_id: str, *, data: dict) -> Appended:
        """Append a non-personal follow-up event about a clip (export: the sealed file list)."""
        with self._command() as tx:
            return tx.append(ev.Event(kind, tx.time, clip_id, clip=clip_id,
                                      personal={"actor": self.actor}, data=data))
