"""Ingest of well-formed clips: order, idempotence, chain gaps, flags, receipts, the camera's notes."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import timedelta

import pytest

import dock._copy
import dock.ingest
from dock.errors import NotEnrolledError
from dock.ingest import (
    FLAG_BEFORE_DOCKING,
    FLAG_CUT,
    FLAG_EXTRA_FILES,
    FLAG_FUTURE,
    OUT_ALREADY,
    OUT_QUARANTINED,
    OUT_STORED,
)
from evidence_store.clip.outbox import Enrollment
from evidence_store.store import Store
from tests.dock.conftest import new_camera
from tests.dock.helpers import assert_cleared, assert_store_sound, ingest_events, outbox_clip_names, stored_clips


def test_ingest_sealed_clips_stored_receipted_and_cleared(camera, ingester, store, store_root):
    clips = [camera.clip(), camera.clip(segments=2), camera.clip(trigger="emergency")]
    report = ingester.ingest(camera.outbox.root)
    assert report.ok and [c.outcome for c in report.clips] == [OUT_STORED] * 3
    assert stored_clips(store_root) == {c.clip_id: c.manifest_sha256 for c in clips}
    assert_cleared(camera.outbox, clips, store.verifier_key)
    assert outbox_clip_names(camera.outbox) == []
    assert_store_sound(store_root)


def test_ingest_clips_in_sequence_order_not_folder_order(camera, ingester, store_root, clock):
    # Clip ids sort by their (camera-clock) start time; make the camera clock run backwards so
    # that folder order is the reverse of sequence order.
    clips = [camera.clip(started_at=clock.now() - timedelta(minutes=10 + i)) for i in range(4)]
    assert sorted(c.clip_id for c in clips) == [c.clip_id for c in reversed(clips)]
    report = ingester.ingest(camera.outbox.root)
    assert report.ok
    assert [c.sequence for c in report.clips] == [0, 1, 2, 3]
    assert [e["sequence"] for e in ingest_events(store_root)] == [0, 1, 2, 3]


def test_ingest_unsealed_clip_reported_and_left(camera, ingester, store_root):
    sealed = camera.clip()
    unsealed = camera.clip()
    (unsealed.folder / "manifest").unlink()
    report = ingester.ingest(camera.outbox.root)
    assert not report.ok and report.unsealed == [unsealed.clip_id]
    assert list(stored_clips(store_root)) == [sealed.clip_id]
    assert outbox_clip_names(camera.outbox) == [unsealed.clip_id]
    assert sorted(os.listdir(unsealed.folder)) == sorted(["journal", *unsealed.segments])


def test_ingest_stored_clip_back_on_camera_only_receipted(camera, ingester, store, store_root, tmp_path):
    clip = camera.clip()
    shutil.copytree(clip.folder, tmp_path / "copy")
    assert ingester.ingest(camera.outbox.root).ok
    shutil.copytree(tmp_path / "copy", clip.folder)  # a crash before the delete leaves it there
    before = len(store.events())
    report = ingester.ingest(camera.outbox.root)
    assert report.ok and report.clips[0].outcome == OUT_ALREADY
    # Nothing new in the log but the docking itself (the bound of the camera's next clips).
    assert [e["kind"] for e in Store.open(store_root).events()[before:]] == ["docking"]
    assert_cleared(camera.outbox, [clip], store.verifier_key)


def test_ingest_missing_clip_becomes_gap_event(camera, ingester, store_root):
    first, lost, third = camera.clip(), camera.clip(), camera.clip()
    shutil.rmtree(lost.folder)
    report = ingester.ingest(camera.outbox.root)
    assert report.ok
    with Store.open(store_root) as s:
        gaps = [e for e in s.events() if e["kind"] == "gap"]
    assert [g["sequence"] for g in gaps] == [1]
    assert set(stored_clips(store_root)) == {first.clip_id, third.clip_id}


def test_ingest_cut_segment_with_matching_journal_stored_and_flagged(camera, ingester, store_root):
    clip = camera.clip(cut_last=True, segments=2)
    report = ingester.ingest(camera.outbox.root)
    assert report.ok and FLAG_CUT in report.clips[0].flags
    with Store.open(store_root) as s:
        states = {seg["name"]: seg for seg in s.segments(clip.clip_id)}
    assert len(states) == 2
    assert_store_sound(store_root)


def test_ingest_manifest_dated_before_last_docking_flagged(camera, make_ingester, clock):
    assert make_ingester().ingest(camera.outbox.root).ok  # the first docking
    clock.advance(3600)
    camera.clip(started_at=clock.now() - timedelta(hours=2))
    report = make_ingester().ingest(camera.outbox.root)
    assert report.ok and report.clips[0].flags == [FLAG_BEFORE_DOCKING]


def test_ingest_manifest_dated_in_future_flagged(camera, ingester, clock):
    camera.clip(started_at=clock.now() + timedelta(hours=3))
    report = ingester.ingest(camera.outbox.root)
    assert report.ok and report.clips[0].flags == [FLAG_FUTURE]


def test_ingest_extra_file_in_clip_folder_flagged_and_kept_in_quarantine(camera, ingester, store_root, caplog):
    clip = camera.clip()
    (clip.folder / "seg-00007.age").write_bytes(b"a segment the manifest forgot")
    with caplog.at_level(logging.WARNING):
        report = ingester.ingest(camera.outbox.root)
    assert report.ok and report.clips[0].extra_files == ["seg-00007.age"]
    assert FLAG_EXTRA_FILES in report.clips[0].flags
    assert "seg-00007.age" in caplog.text
    # The clip folder is cleared, but the unlisted file was kept first, beside the clip.
    assert outbox_clip_names(camera.outbox) == []
    with Store.open(store_root) as s:
        (q,) = [e for e in s.events() if e["kind"] == "quarantine"]
        assert q["claimed_clip"] == clip.clip_id and [o["name"] for o in q["objects"]] == ["seg-00007.age"]
        assert s.objects.path(q["objects"][0]["sha256"]).read_bytes() == b"a segment the manifest forgot"
    assert_store_sound(store_root)


def test_ingest_unenrolled_camera_refused_and_untouched(store, tmp_path, ingester):
    stranger = new_camera(store, tmp_path / "stranger", "cam-99", enroll=False)
    clip = stranger.clip()
    with pytest.raises(NotEnrolledError, match="cam-99 is not enrolled"):
        ingester.ingest(stranger.outbox.root)
    assert outbox_clip_names(stranger.outbox) == [clip.clip_id]
    assert stranger.outbox.receipt_ids() == []


def test_ingest_revoked_camera_clips_quarantined_and_cleared(camera, ingester, store, store_root):
    clip = camera.clip()
    store.revoke(camera.device_id, "lost on duty")
    report = ingester.ingest(camera.outbox.root)
    assert not report.ok and report.clips[0].outcome == OUT_QUARANTINED
    assert "revoked" in report.clips[0].reason
    assert stored_clips(store_root) == {}
    assert_cleared(camera.outbox, [clip], store.verifier_key, status="quarantined")
    assert_store_sound(store_root)


def test_ingest_copy_claiming_another_clip_id_never_blocks_genuine(store, tmp_path, ingester, store_root):
    genuine_cam = new_camera(store, tmp_path / "a", "cam-a")
    other_cam = new_camera(store, tmp_path / "b", "cam-b")
    genuine = genuine_cam.clip()
    # A copy of the genuine clip appears on another camera first (same id, same manifest).
    shutil.copytree(genuine.folder, other_cam.outbox.root / "clips" / genuine.clip_id)
    first = ingester.ingest(other_cam.outbox.root)
    assert first.clips[0].outcome == OUT_QUARANTINED and "found on camera cam-b" in first.clips[0].reason
    second = ingester.ingest(genuine_cam.outbox.root)
    assert second.ok and second.clips[0].outcome == OUT_STORED
    # And a forgery with the genuine id but other content, after the genuine one is stored.
    forged = other_cam.clip(clip_id=genuine.clip_id)
    third = ingester.ingest(other_cam.outbox.root)
    assert third.clips[0].outcome == OUT_QUARANTINED and "another manifest" in third.clips[0].reason
    assert stored_clips(store_root) == {genuine.clip_id: genuine.manifest_sha256}
    assert forged.manifest_sha256 != genuine.manifest_sha256
    assert_store_sound(store_root)


def test_ingest_writes_clock_and_current_enrollment_onto_camera(camera, ingester, store, clock):
    store.assign(camera.device_id, "PK-0815")
    clock.advance(60)
    assert ingester.ingest(camera.outbox.root).ok
    stamp = camera.outbox.clock(store.verifier_key)  # signed by the store, for this camera
    assert abs((stamp.moment - clock.now()).total_seconds()) < 0.01 and stamp.device_id == camera.device_id
    enrollment: Enrollment = camera.outbox.enrollment(store.verifier_key)
    assert enrollment.officer == "PK-0815" and enrollment.recipients == store.recipients
    assert store.device(camera.device_id).last_docking is not None


def test_ingest_reads_each_segment_once(camera, ingester, monkeypatch):
    clips = [camera.clip(segments=3), camera.clip()]
    opened: list[str] = []
    real_open = dock.ingest.open_regular
    monkeypatch.setattr(dock.ingest, "open_regular",
                        lambda path, **kw: opened.append(os.path.basename(path)) or real_open(path, **kw))
    read_bytes = []
    real_read = dock._copy.os.read

    def counting_read(fd, n):
        data = real_read(fd, n)
        read_bytes.append(len(data))
        return data

    monkeypatch.setattr(dock._copy.os, "read", counting_read)
    assert ingester.ingest(camera.outbox.root).ok
    names = [n for c in clips for n in c.segments]
    assert sorted(n for n in opened if n.startswith("seg-")) == sorted(names)  # one open per segment
    # One read of each segment byte; the clearing hashes only the small signed files again to
    # prove the store holds them (the segments' hashes are remembered from the copy).
    small = sum(len(c.manifest_bytes) + len(c.journal_bytes) for c in clips)
    assert sum(read_bytes) == sum(len(b) for c in clips for b in c.segments.values()) + small


def test_ingest_progress_reports_all_bytes(camera, make_ingester):
    clips = [camera.clip(), camera.clip(segments=2)]
    seen = []
    report = make_ingester(progress=lambda done, total, label: seen.append((done, total))).ingest(camera.outbox.root)
    total = sum(len(b) for c in clips for b in c.segments.values())
    assert report.ok and seen[-1] == (total, total)


def test_ingest_two_cameras_concurrently_both_stored(store, tmp_path, make_ingester, store_root):
    import threading

    cams = [new_camera(store, tmp_path / f"cam{i}", f"cam-{i}") for i in range(3)]
    clips = [cam.clip() for cam in cams for _ in range(3)]
    ingester = make_ingester()
    reports = []
    threads = [threading.Thread(target=lambda c=cam: reports.append(ingester.ingest(c.outbox.root))) for cam in cams]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reports) == 3 and all(r.ok for r in reports)
    assert set(stored_clips(store_root)) == {c.clip_id for c in clips}
    assert_store_sound(store_root)


def test_ingest_same_camera_twice_at_once_serialised(camera, make_ingester, store_root):
    import threading

    clips = [camera.clip() for _ in range(5)]
    ingester = make_ingester()
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(ingester.ingest(camera.outbox.root))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r.clips) for r in reports) == 5  # the second run found nothing left
    assert set(stored_clips(store_root)) == {c.clip_id for c in clips}
    assert_store_sound(store_root)


def test_ingest_late_arrival_deleted_at_once_and_still_receipted(camera, ingester, store_root, clock):
    # A camera left undocked for over two weeks: its old clip must not live another hour.
    old = camera.clip(started_at=clock.now() - timedelta(days=15))
    fresh = camera.clip(started_at=clock.now() - timedelta(days=1))
    report = ingester.ingest(camera.outbox.root)
    assert report.ok and report.expired == [old.clip_id]
    assert "1 deleted at once" in report.summary()
    with Store.open(store_root) as s:
        assert s.clip(old.clip_id).state == "expired" and s.clip(fresh.clip_id).state == "stored"
        expire = [e for e in s.events(clip_id=old.clip_id) if e["kind"] == "expire"]
        assert len(expire) == 1 and expire[0]["late"] is True
        assert not any(s.objects.path(h).exists() for h in expire[0]["objects"])
    assert outbox_clip_names(camera.outbox) == []
    assert sorted(os.listdir(camera.outbox.root / "receipts")) == sorted([old.clip_id, fresh.clip_id])
    assert_store_sound(store_root)


def test_ingest_nothing_late_expires_nothing(camera, ingester):
    camera.clip()
    report = ingester.ingest(camera.outbox.root)
    assert report.ok and report.expired == []


def test_ingest_clip_due_within_the_hour_left_for_review(camera, ingester, store_root, clock):
    # Not late: still inside its two weeks, so the officer may review and hold it before the timer.
    soon = camera.clip(started_at=clock.now() - timedelta(days=14) + timedelta(minutes=20))
    report = ingester.ingest(camera.outbox.root)
    assert report.ok and report.expired == []
    with Store.open(store_root) as s:
        assert s.clip(soon.clip_id).state == "stored"


def test_ingest_clock_stamp_is_the_docking_start_not_its_end(camera, make_ingester, store, clock):
    # The camera adds its own measured docked time to the stamp; a stamp taken after a long copy
    # would set every later manifest's time fast by the length of the ingest.
    camera.clip()
    start = clock.now()
    report = make_ingester(progress=lambda done, total, label: clock.advance(600)).ingest(camera.outbox.root)
    assert report.ok and clock.now() > start
    assert abs((camera.outbox.clock(store.verifier_key).moment - start).total_seconds()) < 0.001  # stamps keep ms


def test_ingest_progress_ends_at_total_when_a_clip_was_already_stored(camera, make_ingester, tmp_path):
    first, _ = camera.clip(), camera.clip()
    shutil.copytree(first.folder, tmp_path / "copy")
    assert make_ingester().ingest(camera.outbox.root).ok
    shutil.copytree(tmp_path / "copy", first.folder)  # a crash before the clear left it there
    seen = []
    report = make_ingester(progress=lambda done, total, label: seen.append((done, total))).ingest(camera.outbox.root)
    total = sum(len(b) for b in first.segments.values())
    assert report.ok and report.clips[0].outcome == OUT_ALREADY and seen[-1] == (total, total)


def test_progress_bar_draws_on_a_terminal_and_ends_the_line():
    import io

    from dock._progress import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(stream, force=True)
    bar.update(0, 4 * 2**20, "clip a")
    bar.update(4 * 2**20, 4 * 2**20, "clip a")
    bar.close()
    text = stream.getvalue()
    assert "[" + "#" * ProgressBar.WIDTH + "] 100.0%" in text and "4.0/4.0 MiB clip a" in text and text.endswith("\n")
    quiet = io.StringIO()
    ProgressBar(quiet).update(1, 2)  # not a terminal (journald, a pipe): nothing drawn
    assert quiet.getvalue() == ""


def test_ingest_recipients_replaced_no_enrollment_written_error_named(camera, ingester, store, store_root):
    """A member of the store's group swaps in an insider's recipient: the camera must not get it."""
    from evidence_store.clip.age import Identity

    clip = camera.clip()
    before = camera.outbox.enrollment(store.verifier_key)
    (store_root / "recipients").write_text(f"{Identity.generate().recipient}\n")
    report = ingester.ingest(camera.outbox.root)
    assert [c.clip_id for c in report.clips] == [clip.clip_id]  # the clips are stored all the same
    assert any("recipients differs from the copy recorded in the log" in e for e in report.errors)
    assert camera.outbox.enrollment(store.verifier_key) == before
