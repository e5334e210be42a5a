"""The camera acts only on what the store signed: the dock's time, the enrollment and receipts.

Each test docks and undocks the real controller around the real recorder (mock pins, synthetic
camera, fake clock), plants a record on the partition while the camera is docked, and checks that
the camera keeps its clock or its last good enrollment, sets the record aside, and still records.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

import pytest

from device.clock import FIRMWARE_BUILT, DockClock
from device.controller import State
from device.recover import recover
from evidence_store.clip import note
from evidence_store.clip.manifest import MANIFEST_FILE, manifest_hash
from evidence_store.clip.outbox import ClockStamp, Enrollment, Profile, Receipt
from tests.clock import FakeClock
from tests.device._kit import DEVICE_ID, START, clip_dirs, make_camera
from tests.device.conftest import Rig
from tests.device.fakes import FakeGadget
from tests.device.test_recorder import make_recorder

DOCK_TIME = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # after FIRMWARE_BUILT
UNSIGNED_V1 = b'{"format":"bodycam-clock/v1","source":"dock","time":"2026-11-15T08:00:00.000Z"}\n'  # as before


@pytest.fixture
def camera_rig(mock_factory, tmp_path):
    """(cam, recorder, rig, dock clock): an enrolled camera whose clock the dock may set."""
    base = FakeClock(START)
    clock = DockClock(base)
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock, gadget=FakeGadget())
    rig = Rig(mock_factory, base, recorder)
    rig.camera = camera
    rig.controller._clock = clock  # noqa: SLF001 -- one clock for controller and recorder
    yield cam, recorder, rig, clock
    rig.hardware.close()
    recorder.close()


def docking(rig, plant=lambda: None) -> None:
    """Dock, let ``plant`` write onto the partition (the host's turn), undock."""
    rig.down("dock")
    rig.run(0.1)
    assert rig.state is State.DOCKED
    plant()
    rig.up("dock")
    rig.run(0.1)
    assert rig.state is State.IDLE, "a record on the partition kept the camera docked"


def records(rig, recorder) -> str:
    """Record a short emergency clip through the buttons; returns its clip id."""
    rig.tap("emergency")
    assert rig.state is State.RECORDING, rig.controller.last_refusal
    for _ in range(5):
        rig.camera.produce(1)
        rig.run(0.04)
    rig.hold("record", 1.6)
    rig.up("record")
    rig.run(0.1)
    assert rig.state is State.IDLE and recorder.last_sealed is not None
    return recorder.last_sealed.clip_id


def set_clock_by_dock(cam, rig, clock, moment=DOCK_TIME):
    docking(rig, lambda: cam.stamp_clock(moment))
    assert clock.clock_source == "dock" and abs((clock.now() - moment).total_seconds()) < 1


# --- the clock ------------------------------------------------------------------------------------

def test_trust_clock_signed_for_this_camera_is_taken(camera_rig):
    cam, recorder, rig, clock = camera_rig
    set_clock_by_dock(cam, rig, clock)
    assert recorder.last_undock.clock_set is not None
    started = clock.now()
    clip_id = records(rig, recorder)
    assert recorder.last_sealed.started_at.startswith(started.strftime("%Y-%m-%dT%H:%M")), clip_id


@pytest.mark.parametrize("plant, why", [
    (lambda cam: cam.box.write_clock(UNSIGNED_V1), "signature block"),
    (lambda cam: cam.stamp_clock(DOCK_TIME + timedelta(days=3), signer=note.generate_signer("bodycam-store")),
     "signature"),
    (lambda cam: cam.stamp_clock(DOCK_TIME + timedelta(days=3), device_id="cam-0099"), "for device cam-0099"),
    (lambda cam: cam.stamp_clock(DOCK_TIME - timedelta(days=15)), "earlier than the camera's last known time"),
    (lambda cam: cam.stamp_clock(DOCK_TIME - timedelta(minutes=3)), "a replayed copy"),
    (lambda cam: cam.stamp_clock(datetime(1, 1, 1, tzinfo=UTC)), "before this firmware was built"),
    (lambda cam: cam.stamp_clock(datetime(9999, 12, 31, 23, 59, tzinfo=UTC)), "not a plausible year"),
    (lambda cam: cam.box.write_clock(os.urandom(3000)), "clock"),
    (lambda cam: ((cam.outbox / "clock").unlink(), (cam.outbox / "clock").mkdir()), "not a regular file"),
    (lambda cam: ((cam.outbox / "clock").unlink(), (cam.outbox / "clock").symlink_to("/etc/passwd")), "symbolic link"),
], ids=["unsigned-v1", "other-key", "other-camera", "15-days-back", "replayed", "year-1", "year-9999", "garbage",
        "folder", "link"])
def test_trust_clock_refused_camera_keeps_its_clock_and_records(camera_rig, caplog, plant, why):
    cam, recorder, rig, clock = camera_rig
    set_clock_by_dock(cam, rig, clock)
    before = clock.now()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="device.docking"):
        docking(rig, lambda: plant(cam))
    refused = [r.getMessage() for r in caplog.records if "dock's time refused" in r.getMessage()]
    assert len(refused) == 1 and why in refused[0], refused
    assert abs((clock.now() - before).total_seconds()) < 1  # its own clock ran on, nothing else
    assert not os.path.lexists(cam.outbox / "clock")  # set aside, not read again
    assert any(name.startswith(".clock.rejected") for name in os.listdir(cam.outbox))
    records(rig, recorder)
    assert recorder.last_sealed.started_at[:10] == before.strftime("%Y-%m-%d")


def test_trust_clock_replayed_old_stamp_refused_same_stamp_ignored_quietly(camera_rig, caplog):
    cam, recorder, rig, clock = camera_rig
    old = cam.stamp_clock(DOCK_TIME)  # a copy an attacker keeps
    set_clock_by_dock(cam, rig, clock, DOCK_TIME + timedelta(minutes=5))
    rig.clock.advance(30)
    with caplog.at_level(logging.WARNING, logger="device.docking"):
        docking(rig)  # the same stamp is still on the partition: taken before, nothing to say
        assert not caplog.records and (cam.outbox / "clock").exists()
        docking(rig, lambda: cam.box.write_clock(old))
    assert "a replayed copy" in caplog.records[-1].getMessage()
    assert clock.now() > DOCK_TIME + timedelta(minutes=5, seconds=30)


def test_trust_clock_far_behind_the_cameras_own_time_refused(camera_rig, caplog):
    # Signed, for this camera, newer than the last stamp, but 15 days behind the time the
    # camera has kept since (a dock whose own clock fell back): the camera keeps its clock.
    cam, recorder, rig, clock = camera_rig
    set_clock_by_dock(cam, rig, clock)
    rig.clock.advance(days=16)
    with caplog.at_level(logging.WARNING, logger="device.docking"):
        docking(rig, lambda: cam.stamp_clock(DOCK_TIME + timedelta(days=1)))
    assert "earlier than the camera's last known time" in caplog.records[-1].getMessage()
    assert clock.now() > DOCK_TIME + timedelta(days=16)


def test_trust_clock_15_days_back_on_a_fresh_camera_refused_by_the_first_stamp_taken(camera_rig):
    # Monotonic across restarts: the state folder remembers the last stamp and time.
    cam, recorder, rig, clock = camera_rig
    set_clock_by_dock(cam, rig, clock)
    last_stamp, last_known = recorder._state.clock_record()  # noqa: SLF001
    assert last_stamp == DOCK_TIME and last_known >= DOCK_TIME
    fresh = DockClock(FakeClock(START))  # a restart: the Pi has no battery clock
    from device.docking import apply_clock

    cam.stamp_clock(DOCK_TIME - timedelta(days=15))
    assert apply_clock(cam.box, recorder._state, DEVICE_ID, fresh, None) is None  # noqa: SLF001
    assert fresh.clock_source == "unsynchronised"


def test_trust_clock_before_any_enrollment_not_taken(tmp_path):
    cam = make_camera(tmp_path, enrolled=False)
    clock = DockClock(FakeClock(START))
    recorder, _ = make_recorder(cam, clock, gadget=FakeGadget())
    try:
        recorder.dock()
        cam.stamp_clock(DOCK_TIME)
        recorder.undock()
        assert clock.clock_source == "unsynchronised" and recorder.last_undock.clock_set is None
    finally:
        recorder.close()


def test_trust_clock_year_1_planted_recover_still_works(camera_rig):
    cam, recorder, rig, clock = camera_rig
    set_clock_by_dock(cam, rig, clock)
    docking(rig, lambda: cam.stamp_clock(datetime(1, 1, 1, tzinfo=UTC)))
    rig.tap("emergency")
    rig.camera.produce(3)
    report = recover(cam.outbox, cam.state, cam.key)  # as after a crash mid-recording
    assert report.unsealable == []


# --- the enrollment -------------------------------------------------------------------------------

def _enrollment(cam, officer: str, issued: datetime, signer=None) -> bytes:
    signer = signer or cam.signer
    return Enrollment(DEVICE_ID, str(cam.key.public), [str(cam.identity.recipient)], Profile(), officer,
                      signer.verifier_key(), issued.strftime("%Y-%m-%dT%H:%M:%S.000Z")).sign(signer)


@pytest.mark.parametrize("plant", [
    lambda cam: cam.box.write_enrollment(b"\x00" * 100),
    lambda cam: cam.box.write_enrollment(_enrollment(cam, "INTRUDER", START, note.generate_signer("bodycam-store"))),
    lambda cam: cam.box.write_enrollment(_enrollment(cam, "OLD", START - timedelta(days=30))),
    lambda cam: (cam.outbox / "enrollment").unlink() or (cam.outbox / "enrollment").mkdir(),
    lambda cam: (cam.outbox / "enrollment").unlink(),
], ids=["garbage", "other-key", "replayed-older", "folder", "deleted"])
def test_trust_enrollment_refused_last_good_stays_and_camera_records(camera_rig, caplog, plant):
    cam, recorder, rig, clock = camera_rig
    with caplog.at_level(logging.WARNING, logger="device.docking"):
        docking(rig, lambda: plant(cam))
    assert recorder.enrollment is not None and recorder.enrollment.officer == "PK-1001"
    assert len([r for r in caplog.records if "enrollment refused" in r.getMessage()]) <= 1
    assert not (cam.outbox / "enrollment").exists()
    records(rig, recorder)


def test_trust_enrollment_refused_at_start_the_kept_one_is_in_force(tmp_path):
    # The camera restarts with a damaged enrollment on its partition: the copy in its state
    # folder, verified against the pinned key, keeps it recording.
    cam = make_camera(tmp_path)
    clock = FakeClock(START)
    first, _ = make_recorder(cam, clock)
    first.close()
    cam.box.write_enrollment(b"{not a note")
    again, camera = make_recorder(cam, clock)
    try:
        assert again.enrollment.officer == "PK-1001" and again.can_start() is None
        assert (cam.outbox / ".enrollment.rejected").read_bytes() == b"{not a note"
    finally:
        again.close()


def test_trust_enrollment_status_shows_the_kept_one_in_force(tmp_path, capsys):
    import json

    from device.cli import main

    cam = make_camera(tmp_path)
    recorder, _ = make_recorder(cam, FakeClock(START))
    recorder.close()
    cam.box.write_enrollment(_enrollment(cam, "INTRUDER", START, note.generate_signer("bodycam-store")))
    assert main(["status", "--outbox", str(cam.outbox), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["enrollment"]["officer"] == "PK-1001"


def test_trust_enrollment_newer_signed_one_replaces_the_kept_one(camera_rig):
    cam, recorder, rig, clock = camera_rig
    docking(rig, lambda: cam.box.write_enrollment(_enrollment(cam, "PK-2002", START + timedelta(days=1))))
    assert recorder.enrollment.officer == "PK-2002"
    assert recorder._state.enrollment_copy() == (cam.outbox / "enrollment").read_bytes()  # noqa: SLF001


# --- receipts -------------------------------------------------------------------------------------

def _receipt(cam, clip_id: str, *, device_id=DEVICE_ID, signer=None) -> bytes:
    data = (cam.outbox / "clips" / clip_id / MANIFEST_FILE).read_bytes()
    return Receipt(clip_id, device_id, manifest_hash(data), "stored", "2026-12-01T09:00:00.000Z").sign(
        signer or cam.signer)


@pytest.mark.parametrize("plant", [
    lambda cam, cid: cam.box.write_receipt(cid, os.urandom(500)),
    lambda cam, cid: cam.box.write_receipt(cid, _receipt(cam, cid, signer=note.generate_signer("bodycam-store"))),
    lambda cam, cid: cam.box.write_receipt(cid, _receipt(cam, cid, device_id="cam-0099")),
    lambda cam, cid: (cam.outbox / "receipts" / cid).mkdir(),
    lambda cam, cid: (cam.outbox / "receipts" / cid).symlink_to(cam.outbox / "device.json"),
], ids=["garbage", "other-key", "other-camera", "folder", "link"])
def test_trust_receipt_refused_clip_kept_camera_records(camera_rig, caplog, plant):
    cam, recorder, rig, clock = camera_rig
    clip_id = records(rig, recorder)
    with caplog.at_level(logging.WARNING, logger="device.docking"):
        docking(rig, lambda: plant(cam, clip_id))
    assert [p.name for p in clip_dirs(cam.outbox)] == [clip_id]
    assert len([r for r in caplog.records if "refused and set aside" in r.getMessage()]) == 1
    assert not os.path.lexists(cam.outbox / "receipts" / clip_id)
    records(rig, recorder)


@pytest.mark.parametrize("plant", [
    lambda cam: (os.rename(cam.outbox / "receipts", cam.outbox / "r"), (cam.outbox / "receipts").write_text("x")),
    lambda cam: (os.rename(cam.outbox / "receipts", cam.outbox / "r"), (cam.outbox / "receipts").symlink_to("/tmp")),
], ids=["file", "link"])
def test_trust_receipts_folder_replaced_nothing_deleted_camera_records(camera_rig, plant):
    cam, recorder, rig, clock = camera_rig
    clip_id = records(rig, recorder)
    docking(rig, lambda: plant(cam))
    assert [p.name for p in clip_dirs(cam.outbox)] == [clip_id]
    records(rig, recorder)


def test_trust_genuine_receipt_still_deletes_after_a_refused_clock_and_enrollment(camera_rig):
    cam, recorder, rig, clock = camera_rig
    clip_id = records(rig, recorder)

    def plant():
        cam.box.write_enrollment(b"junk")
        cam.stamp_clock(datetime(1, 1, 1, tzinfo=UTC))
        cam.box.write_receipt(clip_id, _receipt(cam, clip_id))
    docking(rig, plant)
    assert clip_dirs(cam.outbox) == [] and recorder.last_undock.deleted == [clip_id]


def test_trust_clock_stamp_open_checks_signature_and_fields(tmp_path):
    signer = note.generate_signer("bodycam-store")
    data = ClockStamp("cam-1", "2026-12-01T08:00:00.000Z").sign(signer)
    assert ClockStamp.open(data, signer.verifier_key()).moment == DOCK_TIME
    assert FIRMWARE_BUILT < DOCK_TIME
