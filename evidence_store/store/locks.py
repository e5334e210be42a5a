"""The law mapped onto the object storage's lock (S3 Object Lock; a folder has none, and its
lock methods do nothing): each object of a clip or quarantined item is retained until the item's
deadline, and carries a legal hold while the item is held.

Order, so that no object of a stored item is ever without its lock:

* objects arrive before their clip's deadline is known (the dock copies segments before the
  ingest checks the manifest), so they are written with a short retention (objects_s3's
  ARRIVAL_RETENTION); the ingest (and quarantine) transaction extends it to the deadline
  *before it commits*: if the extension fails the transaction rolls back and the clip stays on
  the camera; if the process dies after the extension, the objects are orphans that are locked a
  little longer than needed, and expiry deletes them with the bypass right;
* a hold sets the legal hold before its transaction commits (a failure leaves the clip unheld
  and maybe its objects held: safe for the evidence; running ``hold`` again makes both agree);
* the last release first extends the retention to the deadline (never shorter than an hour from
  now, S3 refuses dates in the past), then clears the legal hold, both before it commits (a
  failure leaves the hold in force in the store, and ``release`` can simply be run again);
* deletion (expiry, the four-eyes approval, quarantine expiry) removes every version with the
  bypass right after its events commit (Store.sweep), as for the folder.

``apply_lock`` sets an item's whole lock from the store's state: migrate uses it for every item it
copies, and it repairs what ``verify`` reports as unlocked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from evidence_store.clip.ids import parse_time
from evidence_store.errors import IntegrityError
from evidence_store.objects import LocalObjects
from evidence_store.store.base import StoreBase
from evidence_store.store.records import EXPIRED

log = logging.getLogger(__name__)

#: Objects whose lock is set at once (S3 clients are thread-safe; each lock is a few requests).
LOCK_WORKERS = 8


class LocksMixin(StoreBase):
    """The store's lock mapping (mixed into evidence_store.store.Store)."""

    def item_objects(self, item_id: str) -> tuple[list[str], datetime, bool]:
        """(object SHA-256s, deadline, held) of a clip or quarantined item: what its lock must say.
        No objects for an expired item. UsageError for an unknown id."""
        info = self.clip(item_id)
        if info.state == EXPIRED:
            return [], parse_time(info.deadline), False
        named = [s["sha256"] for s in self.segments(info.clip_id)] + [info.manifest_sha256, info.journal_sha256]
        return sorted({h for h in named if h}), parse_time(info.deadline), bool(info.holds)

    def apply_lock(self, item_id: str) -> int:
        """Lock the objects of ``item_id`` as the law says: retention until its deadline (extended
        only, never shortened; at least an hour from now), legal hold on while it is held and off
        otherwise. Returns how many object versions changed. Idempotent; for migrate and for
        repairing an object ``verify`` reports unlocked."""
        hashes, deadline, held = self.item_objects(item_id)
        return self.lock_objects(hashes, deadline, held=held)

    def lock_objects(self, hashes: Iterable[str], deadline: datetime, *, held: bool | None = None) -> int:
        """Extend every object's retention to ``deadline``, then, unless ``held`` is None, switch
        its legal hold on or off. The retention comes first, so that clearing a legal hold never
        leaves a version without any lock. A missing object is skipped with a warning: the lock
        cannot bring it back, and verify names it. The objects are locked side by side (each is a
        few round trips to the storage, inside the ingest's transaction: its commit waits)."""

        def lock(sha: str) -> int:
            try:
                changed = self.objects.extend_retention(sha, deadline)
                if held is not None:
                    changed += self.objects.set_legal_hold(sha, held)
                return changed
            except IntegrityError:
                log.warning("object %s is missing: its lock cannot be set", sha)
                return 0

        hashes = list(hashes)
        if len(hashes) <= 1 or isinstance(self.objects, LocalObjects):  # a folder has no locks to set
            return sum(map(lock, hashes))
        with ThreadPoolExecutor(max_workers=min(LOCK_WORKERS, len(hashes)), thread_name_prefix="lock") as pool:
            return sum(pool.map(lock, hashes))
