"""Early deletion with four eyes: one user requests it, a different user approves it.

The law deletes at once a recording that must not be kept (the core of private life, a § 53 StPO
place, made without the legal preconditions); the recording side decides, with a superior's
consent. So ``delete`` only logs a request (delete-request event, with the reason), and the clip
goes only when a *different* person logs an approval (delete-approve event). The deletion itself
is done like expiry: the clip row is marked expired, an expire event names the objects, and the
object files are removed after the commit; so ``verify`` keeps passing.

A request's id is the log index of its delete-request event. Who asked is the actor text of that
event (the effective user, plus SUDO_USER when someone used sudo); the person is SUDO_USER when the
effective user is root (sudo set it), else the effective user (see ``person``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from evidence_store import events as ev
from evidence_store.errors import UsageError
from evidence_store.vocabulary import ClipState

log = logging.getLogger(__name__)

HINT_HOLD = "hint: 'bodycam-evidence release CLIP --case REF --reason TEXT' ends a hold first"


@dataclass
class Request:
    request_id: str
    clip_id: str
    event_index: int
    time: str = ""
    actor: str | None = None


@dataclass
class Deleted:
    request_id: str
    clip_id: str
    approve_event: int
    expire_event: int
    objects_removed: int = 0


def person(actor: str | None) -> str | None:
    """The person behind an actor text. "alice (as root)" -> "alice": sudo to root sets SUDO_USER
    and nobody else can. "alice (as bob)" -> "bob": without root, SUDO_USER is only an environment
    variable that bob could set himself, so bob is who acted. "alice" -> "alice"."""
    if actor is None:
        return None
    claimed, _, effective = actor.partition(" (as ")
    if not effective:
        return claimed
    effective = effective.removesuffix(")")
    return claimed if effective == "root" else effective


def pending_requests(store, clip_id: str | None = None) -> list[Request]:
    """Deletion requests not yet approved, whose clip is still there."""
    approved = {ev.parse_leaf(bytes(leaf)).get("request")
                for _idx, _clip, _time, leaf in store.index.deletion_events(ev.DELETE_APPROVE)}
    out = []
    for idx, clip, time, _leaf in store.index.deletion_events(ev.DELETE_REQUEST):
        if idx in approved or (clip_id is not None and clip != clip_id):
            continue
        if store.index.deletion_clip_state(clip) in (None, ClipState.EXPIRED):
            continue
        out.append(Request(str(idx), clip, idx, time, store.log.texts_of(idx).get("actor")))
    return out


def _refuse_held(info) -> None:
    if info.holds:
        cases = ", ".join(h["case"] or "[erased]" for h in info.holds)
        raise UsageError(f"clip {info.clip_id} is held (case {cases}); a held clip cannot be deleted", HINT_HOLD)


def request_deletion(store, clip_id: str, *, reason: str) -> Request:
    """Log a deletion request (delete-request event). UsageError for an unknown, expired or held
    clip, a missing reason, or a clip that already has a pending request."""
    if not reason or not reason.strip():
        raise UsageError("a reason is required (--reason TEXT)")
    with store._command() as tx:
        info = store._live_clip(clip_id)
        _refuse_held(info)
        for pending in pending_requests(store, clip_id):
            raise UsageError(f"clip {clip_id} already has a pending deletion request: {pending.request_id}",
                             f"hint: a different user approves it with 'bodycam-evidence approve {pending.request_id}'")
        appended = tx.append(ev.Event(ev.DELETE_REQUEST, tx.time, clip_id, clip=clip_id,
                                      personal={"actor": store.actor, "reason": reason}))
    log.info("deletion of clip %s requested (request %d)", clip_id, appended.index)
    return Request(str(appended.index), clip_id, appended.index)


def approve_deletion(store, request_id: str, *, reason: str) -> Deleted:
    """A second person approves request ``request_id``: delete-approve event, then the clip is
    deleted like expiry (expire event, objects removed). UsageError when the approver is the
    requester, the request is unknown or done, or the clip is held."""
    if not reason or not reason.strip():
        raise UsageError("a reason is required (--reason TEXT)")
    if not str(request_id).isdigit() or len(str(request_id)) > 18:
        raise UsageError(f"not a deletion request id: {request_id!r}",
                         "hint: 'bodycam-evidence list' names pending requests")
    index = int(request_id)
    with store._command() as tx:
        found = store.index.deletion_request_clip(index, ev.DELETE_REQUEST)
        if found is None:
            raise UsageError(f"no deletion request {request_id}", "hint: 'bodycam-evidence list' names pending requests")
        clip_id = found
        if not any(r.event_index == index for r in pending_requests(store, clip_id)):
            raise UsageError(f"deletion request {request_id} is already approved or its clip is gone")
        info = store._live_clip(clip_id)
        _refuse_held(info)
        requester = person(store.log.texts_of(index).get("actor"))
        if requester is None:
            raise UsageError(f"the requester of {request_id} is no longer known (erased); make a new request")
        if requester == person(store.actor):
            raise UsageError(f"{person(store.actor)} made deletion request {request_id} and cannot approve it",
                             "hint: four eyes: a different user must approve (the law wants a superior's consent)")
        approve = tx.append(ev.Event(ev.DELETE_APPROVE, tx.time, clip_id, clip=clip_id,
                                     personal={"actor": store.actor, "reason": reason}, data={"request": index}))
        objects = {s["sha256"] for s in store.segments(clip_id)} | {info.manifest_sha256, info.journal_sha256}
        objects.discard(None)
        store.index.expire_clips([clip_id], tx.time)
        expire = tx.append(ev.Event(ev.EXPIRE, tx.time, clip_id, clip=clip_id, personal={"actor": store.actor},
                                    data={"cause": "early deletion approved (four eyes)", "deadline": info.deadline,
                                          "late": False, "objects": sorted(objects), "request": index,
                                          "approval": approve.index}))
        gone = sorted(objects - store._live_objects(objects))
        store.index.mark_objects_deleted(gone, tx.time)
    removed = store.sweep()
    log.info("clip %s deleted early (request %d approved as event %d)", clip_id, index, approve.index)
    return Deleted(str(index), clip_id, approve.index, expire.index, removed)
