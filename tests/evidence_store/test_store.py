"""The Store facade: the dock contract (enroll, put_object, ingest, quarantine, receipts) and the
officers' operations (hold, release, justify, expire, erasure of personal texts)."""

import io
import os
import stat
from datetime import timedelta

import pytest

from evidence_store.clip.ids import format_time
from evidence_store.clip.outbox import Enrollment, Receipt
from evidence_store.errors import EvidenceError, IntegrityError, UsageError
from evidence_store.objects import ObjectTooLarge
from evidence_store.store import NotAStore, Store
from evidence_store.verify import verify_store
from tests.clipfactory import EMERGENCY, DeviceFixture, make_clip
from tests.evidence_store.conftest import PASSPHRASE, local_objects, local_only, put_and_ingest


def test_store_open_folder_without_store_raises_not_a_store(tmp_path):
    with pytest.raises(NotAStore, match="is not an evidence store"):
        Store.open(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_store_init_non_empty_folder_refused(tmp_path):
    (tmp_path / "x").write_text("x")
    with pytest.raises(UsageError, match="not empty"):
        Store.init(tmp_path, PASSPHRASE, scrypt_log_n=10)


def test_store_init_keys_only_for_the_group_and_identity_opens(store):
    assert stat.S_IMODE(os.stat(store.root / "log.key").st_mode) == 0o640
    assert store.recipients[0].startswith("age1")
    assert "+" in store.verifier_key and not store.verifier_key.startswith("PRIVATE")
    (identity,) = store.identities(PASSPHRASE)
    assert str(identity.recipient) == store.recipients[0]


def test_store_identities_wrong_passphrase_raises(store):
    with pytest.raises(EvidenceError, match="wrong passphrase"):
        store.identities(b"nope")


def test_store_enroll_returns_note_signed_by_store(store):
    cam = DeviceFixture.new("cam-01")
    note = store.enroll(cam.device_id, cam.public_key)
    enrollment = Enrollment.open(note, store.verifier_key)
    assert enrollment.recipients == store.recipients and enrollment.device_id == "cam-01"
    assert store.device("cam-01").public_key == cam.public_key


def test_store_enroll_same_key_twice_one_event(store):
    cam = DeviceFixture.new("cam-01")
    store.enroll(cam.device_id, cam.public_key)
    store.enroll(cam.device_id, cam.public_key)
    assert [e["kind"] for e in store.events()] == ["config", "enroll"]


def test_store_enroll_other_key_refused(store):
    store.enroll("cam-01", DeviceFixture.new().public_key)
    with pytest.raises(UsageError, match="another key"):
        store.enroll("cam-01", DeviceFixture.new().public_key)


def test_store_assign_reaches_enrollment_note(store, camera):
    store.assign(camera.device_id, "PK-0815")
    assert Enrollment.open(store.enrollment_note(camera.device_id), store.verifier_key).officer == "PK-0815"


def test_store_record_docking_returns_previous(store, camera, clock):
    assert store.record_docking(camera.device_id, clock.now()) is None
    assert store.record_docking(camera.device_id, clock.now() + timedelta(hours=1)) == clock.now()


def _wrong_clock_clip(store, camera, tmp_path, claimed):
    """A clip whose camera's clock says ``claimed`` (far before the previous docking)."""
    return make_clip(tmp_path / "outbox", camera, store.recipients, started_at=claimed)


def _set_docking_row(store, camera, at):
    """What an insider with write access to the index does to the devices row."""
    store.conn.execute("UPDATE devices SET last_docking = ? WHERE device_id = ?", (format_time(at), camera.device_id))


def test_store_docking_logged_and_the_next_clips_deadline_counts_from_it(store, camera, clock, tmp_path):
    docked = clock.now()
    store.record_docking(camera.device_id, docked)
    docking = store.events()[-1]
    assert (docking["kind"], docking["device"], docking["at"]) == ("docking", camera.device_id, format_time(docked))
    assert store.last_docking(camera.device_id) == docked
    clock.advance(hours=2)
    clip = _wrong_clock_clip(store, camera, tmp_path, docked - timedelta(days=20))
    put_and_ingest(store, clip)
    assert store.clip(clip.clip_id).deadline == format_time(docked + store.policy.retention)
    assert verify_store(store) == []


def test_store_docking_row_moved_by_insider_refused_at_ingest_and_named_by_verify(store, camera, clock, tmp_path):
    """Lowering the row would let a wrongly clocked clip keep its impossible start (deleted at
    once as late); raising it would keep a clip past its two weeks. The log decides."""
    docked = clock.now()
    store.record_docking(camera.device_id, docked)
    clock.advance(hours=2)
    for moved in (docked - timedelta(days=30), docked + timedelta(hours=1)):
        _set_docking_row(store, camera, moved)
        faults = verify_store(store)
        assert [(f.where, "last_docking" in f.message) for f in faults] == [
            (f"device {camera.device_id} (log index 1)", True)]
        clip = _wrong_clock_clip(store, camera, tmp_path, docked - timedelta(days=20))
        with pytest.raises(IntegrityError, match="differs from its events in the log"):
            put_and_ingest(store, clip)
        assert store.clips() == []
    _set_docking_row(store, camera, docked)
    assert verify_store(store) == []


def test_store_docking_row_without_docking_event_bounds_nothing(store, camera, clock, tmp_path):
    """A store from before dockings were logged keeps a time in the row with no event behind it:
    it is no bound (the log has none), and not a fault."""
    _set_docking_row(store, camera, clock.now())
    clock.advance(hours=2)
    claimed = clock.now() - timedelta(days=1)
    clip = _wrong_clock_clip(store, camera, tmp_path, claimed)
    put_and_ingest(store, clip)
    assert store.last_docking(camera.device_id) is None
    assert store.clip(clip.clip_id).deadline == format_time(claimed + store.policy.retention)
    assert verify_store(store) == []


def test_store_verify_recomputes_each_start_from_the_docking_before_it(store, camera, clock, tmp_path, monkeypatch):
    """An ingest whose start ignored the camera's last docking (as an edited row could once make
    it) is named by verify, from the leaves alone."""
    from evidence_store import retention

    docked = clock.now()
    store.record_docking(camera.device_id, docked)
    clock.advance(hours=2)
    with monkeypatch.context() as m:
        m.setattr(retention, "earliest_start", lambda claimed, previous, arrived: claimed)
        clip = _wrong_clock_clip(store, camera, tmp_path, docked - timedelta(days=20))
        put_and_ingest(store, clip)
    faults = verify_store(store)
    assert len(faults) == 1 and faults[0].where.startswith(f"clip {clip.clip_id}"), faults
    assert f"docking at {format_time(docked)}" in faults[0].message


@local_objects
def test_store_put_object_is_read_only_and_idempotent(store):
    ref = store.put_object(io.BytesIO(b"ciphertext"), 100)
    again = store.put_object(io.BytesIO(b"ciphertext"), 100)
    assert ref == again and ref.size == 10
    path = store.objects.path(ref.sha256)
    assert path.parent.name == ref.sha256[:2]
    assert stat.S_IMODE(path.stat().st_mode) == 0o440
    assert list((store.root / "tmp").iterdir()) == []


def test_store_put_object_larger_than_allowed_stores_nothing(store):
    with pytest.raises(ObjectTooLarge, match="more than the 5 bytes"):
        store.put_object(io.BytesIO(b"0123456789"), 5)
    assert list(store.objects.names()) == []


def test_store_ingest_twice_is_idempotent(store, add_clip):
    clip = add_clip()
    result = put_and_ingest(store, clip)
    assert result.already
    assert store.manifest_status(clip.manifest_sha256) == "stored"
    assert [e["kind"] for e in store.events(clip_id=clip.clip_id)] == ["ingest"]


def test_store_ingest_same_clip_id_other_manifest_raises(store, camera, add_clip, tmp_path):
    clip = add_clip()
    fake = make_clip(tmp_path / "other", camera, store.recipients, clip_id=clip.clip_id, advance=False)
    with pytest.raises(IntegrityError, match="already stored with another manifest"):
        put_and_ingest(store, fake)


def test_store_ingest_skipped_sequence_writes_gap_events(store, camera, add_clip):
    add_clip()
    camera.next_sequence = 3  # sequences 1 and 2 never arrive
    result = add_clip()
    assert result.manifest.sequence == 3
    gaps = [e for e in store.events() if e["kind"] == "gap"]
    assert [g["sequence"] for g in gaps] == [1, 2]


def test_store_ingest_replayed_sequence_raises(store, camera, add_clip):
    add_clip()
    add_clip()
    with pytest.raises(IntegrityError, match="out-of-order or replayed"):
        add_clip(sequence=1, advance=False)


def test_store_ingest_wrong_previous_manifest_raises(store, add_clip):
    add_clip()
    with pytest.raises(IntegrityError, match="previous_manifest"):
        add_clip(previous_manifest="ab" * 32)


def test_store_ingest_revoked_device_raises(store, camera, add_clip):
    store.revoke(camera.device_id, "lost on duty")
    with pytest.raises(IntegrityError, match="revoked"):
        add_clip()


def test_store_ingest_emergency_clip_justification_pending(store, add_clip):
    clip = add_clip(trigger=EMERGENCY)
    assert store.clip(clip.clip_id).justification == "pending"
    store.justify(clip.clip_id, reason="knife attack, no time to announce")
    assert store.clip(clip.clip_id).justification == "justified"


def test_store_justify_announced_clip_refused(store, add_clip):
    clip = add_clip()
    with pytest.raises(UsageError, match="only emergency clips"):
        store.justify(clip.clip_id, reason="x")


def test_store_quarantine_keeps_bytes_and_is_idempotent(store, camera, tmp_path):
    clip = make_clip(tmp_path / "q", camera, store.recipients)
    refs = {n: store.put_object(io.BytesIO(d), len(d)) for n, d in clip.segments.items()}
    args = dict(reason="manifest signature does not verify", device_id=camera.device_id, clip_id=clip.clip_id,
                manifest_bytes=clip.manifest_bytes, journal_bytes=clip.journal_bytes, objects=refs)
    qid = store.quarantine(**args)
    assert store.quarantine(**args) == qid
    assert store.manifest_status(clip.manifest_sha256) == "quarantined"
    assert store.clip(qid).state == "quarantined"
    assert all(store.objects.exists(r.sha256) for r in refs.values())
    assert [e["kind"] for e in store.events()].count("quarantine") == 1
    assert verify_store(store) == []


def test_store_sign_receipt_verifies_with_store_key(store, add_clip, clock):
    clip = add_clip()
    note = store.sign_receipt(Receipt(clip.clip_id, "cam-07", clip.manifest_sha256, "stored", "2026-11-01T08:00:00.000Z"))
    assert Receipt.open(note, store.verifier_key).clip_id == clip.clip_id


def test_store_hold_unknown_clip_raises_and_changes_nothing(store, camera):
    size = store.log.size()
    with pytest.raises(UsageError, match="unknown clip"):
        store.hold("0190c3f2-0000-7000-8000-000000000000", case="A", reason="r")
    assert store.log.size() == size


def test_store_hold_without_reason_refused(store, add_clip):
    clip = add_clip()
    with pytest.raises(UsageError, match="reason is required"):
        store.hold(clip.clip_id, case="A", reason=" ")


def test_store_release_last_hold_restores_deadline(store, add_clip, clock):
    clip = add_clip()
    store.hold(clip.clip_id, case="A-1", reason="evidence")
    store.hold(clip.clip_id, case="B-2", reason="hazard", kind="hazard")
    clock.advance(days=20)
    assert store.expire().deleted == []
    store.release(clip.clip_id, case="A-1", reason="case closed")
    assert store.clip(clip.clip_id).state == "held"
    store.release(clip.clip_id, case="B-2", reason="no danger")
    assert [d.item_id for d in store.expire().deleted] == [clip.clip_id]
    assert store.clip(clip.clip_id).state == "expired"


def test_store_release_unknown_case_refused(store, add_clip):
    clip = add_clip()
    with pytest.raises(UsageError, match="no active hold"):
        store.release(clip.clip_id, case="nope", reason="r")


def test_store_expire_with_now_without_dry_run_refused(store, clock):
    with pytest.raises(UsageError, match="only previews"):
        store.expire(now=clock.now())


def test_store_expire_deletes_objects_keeps_tombstone_and_log_verifies(store, add_clip, clock):
    clip = add_clip(age=timedelta(days=13, hours=23, minutes=30))
    result = store.expire()
    assert [d.item_id for d in result.deleted] == [clip.clip_id]
    assert not any(store.objects.exists(s["sha256"]) for s in store.segments(clip.clip_id))
    info = store.clip(clip.clip_id)
    assert info.state == "expired" and info.manifest_sha256 == clip.manifest_sha256
    assert store.manifest_status(clip.manifest_sha256) == "stored"  # a re-docked copy gets a receipt
    assert [e["kind"] for e in store.events(clip_id=clip.clip_id)] == ["ingest", "expire"]
    assert verify_store(store) == []


def test_store_expire_quarantine_follows_same_deadline(store, camera, tmp_path, clock):
    clip = make_clip(tmp_path / "q", camera, store.recipients, started_at=clock.now() - timedelta(days=3))
    refs = {n: store.put_object(io.BytesIO(d), len(d)) for n, d in clip.segments.items()}
    qid = store.quarantine(reason="bad", device_id="cam-07", clip_id=clip.clip_id, manifest_bytes=clip.manifest_bytes,
                           journal_bytes=clip.journal_bytes, objects=refs)
    clock.advance(days=10)
    assert store.expire().deleted == []
    clock.advance(days=1)
    assert [d.item_id for d in store.expire().deleted] == [qid]
    assert not any(store.objects.exists(r.sha256) for r in refs.values())
    assert verify_store(store) == []


def test_store_expire_erases_personal_texts_after_two_years_log_verifies(store, add_clip, clock):
    clip = add_clip()
    store.log_access("view", clip.clip_id, reason="review of complaint 17")
    clock.advance(days=731)
    result = store.expire()
    assert result.erased_texts >= 3
    view = [e for e in store.events() if e["kind"] == "view"][0]
    assert view["reason"] == "[erased]" and view["actor"] == "[erased]"
    row = store.conn.execute("SELECT COUNT(*) FROM texts WHERE text LIKE '%complaint%'").fetchone()
    assert row[0] == 0
    # The officer's name on the expired clip's row goes with the texts.
    assert store.clip(clip.clip_id).officer is None
    assert verify_store(store) == []


def test_store_expire_keeps_officer_on_expired_clip_within_two_years(store, add_clip, clock):
    clip = add_clip()
    clock.advance(days=20)
    store.expire()
    info = store.clip(clip.clip_id)
    assert info.state == "expired" and info.officer is not None  # the access log still needs it


def test_store_expire_keeps_texts_of_held_clip(store, add_clip, clock):
    clip = add_clip()
    store.hold(clip.clip_id, case="StA-9", reason="evidence")
    clock.advance(days=800)
    store.expire()
    assert store.clip(clip.clip_id).holds[0]["case"] == "StA-9"


@local_objects  # 384 expiry runs; on S3, test_locks.py checks what expiry and holds do to the lock
def test_store_time_travel_no_unheld_clip_survives_no_held_clip_deleted(store, add_clip, clock):
    # Clips recorded with an old clock: 0..20 days before they arrive, every 12 hours.
    clips = [add_clip(age=timedelta(hours=12 * k)) for k in range(0, 42, 3)]
    held = {c.clip_id for c in clips[::4]}
    for clip_id in held:
        store.hold(clip_id, case=f"C-{clip_id[:4]}", reason="evidence")
    for _ in range(24 * 16):  # sixteen days of hourly runs
        store.expire()
        now = clock.now()
        for info in store.clips(include_expired=True):
            if info.clip_id in held:
                assert info.state == "held"
            elif info.state != "expired":
                # Whatever is kept now is younger than 14 days at the next run too.
                from evidence_store.clip.ids import parse_time
                assert parse_time(info.recorded_at) + timedelta(days=14) > now + timedelta(hours=1)
        clock.advance(hours=1)
    assert {c.clip_id for c in store.clips()} == held
    assert verify_store(store) == []


def test_store_late_arrival_counted_and_deleted_at_next_run(store, add_clip):
    clip = add_clip(age=timedelta(days=15))
    assert store.clip(clip.clip_id).late
    (decision,) = store.expire().deleted
    assert decision.late and "after its deadline" in decision.reason


def test_store_ingest_camera_clock_a_year_ahead_deadline_counts_from_arrival(store, add_clip, clock):
    # The camera's clock runs a year ahead: it claims a start in the future.
    clip = add_clip(age=-timedelta(days=365))
    info = store.clip(clip.clip_id)
    assert info.recorded_at == clip.manifest.started_at  # the claim stays visible
    assert info.deadline == (clock.now() + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    clock.advance(days=13, hours=22)
    assert store.expire().deleted == []
    clock.advance(hours=1)  # the deadline falls before the next hourly run
    assert [d.item_id for d in store.expire().deleted] == [clip.clip_id]
    assert store.clip(clip.clip_id).state == "expired"
    assert verify_store(store) == []


@local_only
def test_store_hold_read_only_database_raises_typed_error_changes_nothing(store, add_clip):
    from evidence_store.db import DatabaseReadOnly

    clip = add_clip()
    size = store.log.size()
    store.conn.execute("PRAGMA query_only = ON")  # what a database this user may not write looks like
    with pytest.raises(DatabaseReadOnly, match="readonly") as caught:
        store.hold(clip.clip_id, case="A-1", reason="evidence")
    assert "group" in caught.value.hints[0]
    store.conn.execute("PRAGMA query_only = OFF")
    assert store.log.size() == size and store.clip(clip.clip_id).holds == []


def _backdate(path, moment):
    os.utime(path, (moment.timestamp(), moment.timestamp()))


@local_objects
def test_store_expire_removes_orphan_older_than_retention_logs_it_and_stale_tmp(store, add_clip, clock):
    clip = add_clip()
    # A dock died between copying and ingesting, and its camera never came back.
    old = store.put_object(io.BytesIO(b"ciphertext of a clip never ingested"), 100)
    young = store.put_object(io.BytesIO(b"ciphertext of an ingest still running"), 100)
    _backdate(store.objects.path(old.sha256), clock.now() - timedelta(days=14, hours=1))
    stale = store.root / "tmp" / "put-123-abcdef"
    stale.write_bytes(b"half a copy")
    _backdate(stale, clock.now() - timedelta(days=2))
    fresh = store.root / "tmp" / "put-456-abcdef"
    fresh.write_bytes(b"a copy in progress")
    _backdate(fresh, clock.now() - timedelta(minutes=5))
    result = store.expire()
    assert result.orphans == [old.sha256] and result.removed_tmp == 1
    assert not store.objects.exists(old.sha256)
    assert store.objects.exists(young.sha256) and fresh.exists() and not stale.exists()
    assert store.clip(clip.clip_id).state == "stored"
    (event,) = [e for e in store.events() if e["kind"] == "expire"]
    assert event["objects"] == [old.sha256] and "unreferenced" in event["cause"]
    assert verify_store(store) == []


@local_objects
def test_store_put_object_again_refreshes_time_of_old_orphan(store, clock):
    data = b"the same segment, delivered again"
    ref = store.put_object(io.BytesIO(data), 100)
    _backdate(store.objects.path(ref.sha256), clock.now() - timedelta(days=20))
    store.put_object(io.BytesIO(data), 100)  # the camera came back: its ingest is about to commit
    assert store.expire().orphans == []
    assert store.objects.read(ref.sha256) == data
