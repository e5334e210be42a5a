"""What the signed log says the store holds: clips, quarantined items, holds, devices, deletions
and the configuration, derived from parsed leaves alone.

The index tables are a fast copy of this for list, show and report; expiry and ingest act on
what is derived here (or check the index against it), because the index is unsigned: one edited
row (a start time, a deleted hold row, a ``deleted_at``) must not delete evidence. verify compares
every index row with this state.

Pure: no SQL, no files; the caller reads the leaves (and proves them against a signed checkpoint).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: Event kinds this module reads; the others (view, export, gap, justify, ...) change no state
#: that expiry or ingest act on.
STATE_KINDS = frozenset({"ingest", "quarantine", "hold", "release", "expire", "enroll", "assign", "revoke",
                         "justify", "config", "docking"})


@dataclass
class ClipFacts:
    clip_id: str
    index: int
    device: str | None
    sequence: int | None
    trigger: str | None
    started_at: str | None
    ingested_at: str | None  # the ingest event's time: the clip's arrival
    manifest: str | None
    journal: str | None
    objects: list[dict]
    flags: list[str]
    expired_index: int | None = None
    expired_at: str | None = None
    justified: bool = False

    @property
    def late(self) -> bool:
        return "late" in self.flags

    def object_hashes(self) -> set[str]:
        out = {h for h in (self.manifest, self.journal) if isinstance(h, str)}
        out |= {o["sha256"] for o in self.objects if isinstance(o, dict) and isinstance(o.get("sha256"), str)}
        return out


@dataclass
class QuarantineFacts:
    qid: str
    index: int
    device: str | None
    claimed_clip: str | None
    cause: str | None
    at: str | None
    started_at: str | None  # None in events written before it was logged: the caller derives it
    manifest: str | None
    journal: str | None
    objects: list[dict]
    expired_index: int | None = None
    expired_at: str | None = None

    def object_hashes(self) -> set[str]:
        out = {h for h in (self.manifest, self.journal) if isinstance(h, str)}
        out |= {o["sha256"] for o in self.objects if isinstance(o, dict) and isinstance(o.get("sha256"), str)}
        return out


@dataclass
class HoldFacts:
    index: int
    clip_id: str | None
    kind: str | None
    time: str | None
    after_view: bool
    release_index: int | None = None
    release_time: str | None = None

    @property
    def active(self) -> bool:
        return self.release_index is None


@dataclass
class DeviceFacts:
    device_id: str
    index: int
    public_key: str | None
    profile: dict | None
    enrolled_at: str | None
    revoked: bool = False
    revoke_index: int | None = None
    assign_index: int | None = None  # the latest assign event: the officer's salted hash is there
    last_sequence: int | None = None
    last_manifest: str | None = None
    #: (log index, time) of each docking event, in log order; the last one bounds the next clips.
    dockings: list[tuple[int, str]] = field(default_factory=list)

    @property
    def last_docking(self) -> str | None:
        return self.dockings[-1][1] if self.dockings else None

    def docking_row_agrees(self, row: str | None) -> bool:
        """Whether an index row's last docking is the logged one. A row time with no docking event
        at all is a store's from before they were logged: it bounds nothing (ingest takes the
        bound from the log alone), so it agrees."""
        return not self.dockings or row == self.last_docking

    def docking_before(self, index: int) -> str | None:
        """The time of the latest docking logged before log index ``index`` (None: none was).
        A bisection: verify asks it for every clip, and a camera docks twice a day for years."""
        before = bisect.bisect_left(self.dockings, index, key=lambda docking: docking[0])
        return self.dockings[before - 1][1] if before else None


@dataclass
class LogState:
    size: int = 0
    clips: dict[str, ClipFacts] = field(default_factory=dict)
    quarantine: dict[str, QuarantineFacts] = field(default_factory=dict)
    holds: dict[int, HoldFacts] = field(default_factory=dict)
    devices: dict[str, DeviceFacts] = field(default_factory=dict)
    #: Every object an expire event names (clips', quarantined items', unreferenced ones), with
    #: the times of those events.
    expired_objects: dict[str, set[str]] = field(default_factory=dict)
    #: Subjects (clip ids, quarantine ids, ``object:<sha>``) with an expire event.
    expired_subjects: set[str] = field(default_factory=set)
    #: The latest config event's file hashes (name -> sha256), None if the log has none.
    config: dict[str, str] | None = None
    config_index: int | None = None

    def active_holds(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for hold in self.holds.values():
            if hold.active and hold.clip_id:
                out.setdefault(hold.clip_id, []).append(hold.kind or "?")
        return out

    def live_objects(self) -> set[str]:
        """Objects a clip or quarantined item that has not expired names: never to be deleted."""
        live: set[str] = set()
        for facts in list(self.clips.values()) + list(self.quarantine.values()):
            if facts.expired_index is None:
                live |= facts.object_hashes()
        return live


def _str(value) -> str | None:
    return value if isinstance(value, str) else None


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list(value) -> list:
    return value if isinstance(value, list) else []


def derive(bodies: Iterable[tuple[int, dict]], leaf_hash: Callable[[int], str], size: int = 0) -> LogState:
    """The state after the events ``bodies`` ((index, parsed leaf), in log order: at least those of
    STATE_KINDS and every event that names no clip). ``leaf_hash(index)`` is the hex leaf hash of
    entry ``index``: an expire event of quarantined material written before it named the item
    finds it through its ``prev`` link, the chain of events about that item."""
    state = LogState(size=size)
    quarantine_heads: dict[str, str] = {}  # leaf hash -> quarantine id of events about quarantined items
    for idx, body in bodies:
        kind = body.get("kind")
        if body.get("clip") is None and kind != "quarantine":
            qid = _str(body.get("quarantine")) or quarantine_heads.get(_str(body.get("prev")) or "")
            if qid is not None:
                quarantine_heads[leaf_hash(idx)] = qid
                body = dict(body, quarantine=qid)
        if kind == "ingest":
            clip_id = _str(body.get("clip"))
            if clip_id is None or clip_id in state.clips:
                continue  # a second ingest of one id is refused by the store; verify names it
            objects = _list(body.get("objects"))
            flags = _list(body.get("flags"))
            facts = ClipFacts(clip_id, idx, _str(body.get("device")), _int(body.get("sequence")),
                              _str(body.get("trigger")), _str(body.get("started_at")), _str(body.get("time")),
                              _str(body.get("manifest")), _str(body.get("journal")), objects, flags)
            state.clips[clip_id] = facts
            device = state.devices.get(facts.device or "")
            if device is not None and facts.sequence is not None and (
                    device.last_sequence is None or facts.sequence > device.last_sequence):
                device.last_sequence, device.last_manifest = facts.sequence, facts.manifest
        elif kind == "quarantine":
            qid = _str(body.get("quarantine"))
            if qid is None or qid in state.quarantine:
                continue
            objects = _list(body.get("objects"))
            quarantine_heads[leaf_hash(idx)] = qid
            state.quarantine[qid] = QuarantineFacts(
                qid, idx, _str(body.get("device")), _str(body.get("claimed_clip")), _str(body.get("cause")),
                _str(body.get("time")), _str(body.get("started_at")), _str(body.get("manifest")),
                _str(body.get("journal")), objects)
        elif kind == "hold":
            state.holds[idx] = HoldFacts(idx, _str(body.get("clip")), _str(body.get("hold_kind")),
                                         _str(body.get("time")), body.get("after_view") is True)
        elif kind == "release":
            hold_index = _int(body.get("hold_event"))
            hold = state.holds.get(hold_index) if hold_index is not None else None
            if hold is not None and hold.active and hold.clip_id == body.get("clip"):
                hold.release_index, hold.release_time = idx, _str(body.get("time"))
        elif kind == "justify":
            clip = state.clips.get(_str(body.get("clip")) or "")
            if clip is not None:
                clip.justified = True
        elif kind == "expire":
            objects = _list(body.get("objects"))
            for sha in objects:
                if isinstance(sha, str):
                    state.expired_objects.setdefault(sha, set()).add(_str(body.get("time")) or "")
            clip_id = _str(body.get("clip"))
            qid = _str(body.get("quarantine"))
            subject = clip_id or qid
            target: ClipFacts | QuarantineFacts | None = (
                state.clips.get(clip_id) if clip_id else state.quarantine.get(qid) if qid else None)
            if target is not None and subject is not None and target.expired_index is None:
                target.expired_index, target.expired_at = idx, _str(body.get("time"))
                state.expired_subjects.add(subject)
        elif kind == "enroll":
            device_id = _str(body.get("device"))
            if device_id and device_id not in state.devices:
                profile = body.get("profile") if isinstance(body.get("profile"), dict) else None
                state.devices[device_id] = DeviceFacts(device_id, idx, _str(body.get("public_key")), profile,
                                                       _str(body.get("time")))
        elif kind == "assign":
            device = state.devices.get(_str(body.get("device")) or "")
            if device is not None:
                device.assign_index = idx
        elif kind == "revoke":
            device = state.devices.get(_str(body.get("device")) or "")
            if device is not None:
                device.revoked, device.revoke_index = True, idx
        elif kind == "docking":
            device = state.devices.get(_str(body.get("device")) or "")
            at = _str(body.get("at"))
            if device is not None and at is not None:
                device.dockings.append((idx, at))
        elif kind == "config":
            files = body.get("files")
            if isinstance(files, dict) and all(isinstance(v, str) for v in files.values()):
                state.config, state.config_index = dict(files), idx
    return state

